// ABR transcoding with real FFmpeg: the transcode job (VOD HLS and live
// chunks), hardware encoder selection without a GPU, the mid-stream
// fallback to libx264, and errors that name the input.  Outputs are checked
// with ffprobe.
#include <openace/engine.hpp>

#include "core/log.hpp"
#include "command.hpp"
#include "media/encoder_select.hpp"
#include "media/ladder.hpp"
#include "media/media_job.hpp"
#include "media/source.hpp"
#include "media/transcoder.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

using namespace openace;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char *kConfig = R"({"engine":{"http_address":"127.0.0.1:0"},"logging":{"console":false}})";
const char *kConfigHw =
    R"({"engine":{"http_address":"127.0.0.1:0"},"logging":{"console":false},"streaming":{"hardware_acceleration":true}})";

using Cmd = testcmd::Result;

// stdout only (stderr to the terminal unless the command redirects it).
Cmd sh(const std::string &cmd, int timeout_s = 60)
{
    return testcmd::run(cmd, timeout_s, false);
}

// A temporary directory removed at the end of the test.
struct TempDir {
    fs::path path;
    TempDir()
    {
        char tmpl[] = "/tmp/openace-transcode-XXXXXX";
        REQUIRE(::mkdtemp(tmpl));
        path = tmpl;
    }
    ~TempDir()
    {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string operator/(const std::string &name) const { return (path / name).string(); }
};

// ~4 s of 25 fps 1280x720 testsrc2 + a 440 Hz sine, H.264 + AAC in MP4.
std::string make_input(const TempDir &dir, const std::string &audio_codec = "aac",
                       const std::string &name = "in.mp4")
{
    std::string path = dir / name;
    auto r = sh("ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i "
                "sine=frequency=440:sample_rate=48000 -t 4 -c:v libx264 -preset ultrafast -g 50 "
                "-pix_fmt yuv420p -c:a " +
                audio_codec + " '" + path + "' 2>&1");
    INFO(r.out);
    REQUIRE(r.code == 0);
    return path;
}

json wait_final(Engine &e, int64_t job, std::vector<json> *progress = nullptr, double limit_s = 90)
{
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit_s);
    while (std::chrono::steady_clock::now() < deadline) {
        auto ev = e.wait_event(0.5);
        if (!ev || ev->job_id != job)
            continue;
        if (ev->id == OPENACE_EVENT_JOB_PROGRESS && progress)
            progress->push_back(json::parse(ev->json));
        if (ev->id == OPENACE_EVENT_JOB_STATE && ev->final)
            return json::parse(ev->json);
    }
    FAIL("no final event for job " << job);
    return {};
}

// pts_time of every video keyframe of a playlist or file, as ffprobe sees them.
std::vector<std::string> keyframe_times(const std::string &path)
{
    auto r = sh("ffprobe -v error -select_streams v:0 -show_frames -show_entries "
                "frame=key_frame,pts_time -of csv=p=0 '" + path + "'");
    REQUIRE(r.code == 0);
    std::vector<std::string> out;
    std::istringstream in(r.out);
    std::string line;
    while (std::getline(in, line)) {
        auto comma = line.find(',');
        if (comma != std::string::npos && line.substr(0, comma) == "1")
            out.push_back(line.substr(comma + 1));
    }
    return out;
}

std::string video_size(const std::string &path)
{
    auto r = sh("ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of "
                "csv=p=0:s=x '" + path + "'");
    REQUIRE(r.code == 0);
    std::string s = r.out;
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
        s.pop_back();
    return s.substr(0, s.find('\n'));
}

std::string read_file(const std::string &path)
{
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

} // namespace

TEST_CASE("transcode: a 3-rung ladder gives HLS renditions at the asked sizes with aligned keyframes "
          "and a master playlist")
{
    TempDir dir;
    auto input = make_input(dir);
    auto out = dir / "hls";
    Engine e(kConfig);
    json spec = {{"type", "transcode"},
                 {"input", input},
                 {"ladder", {"480p", "360p", "240p"}},
                 {"output_dir", out},
                 {"segment_duration", 1}};
    std::vector<json> progress;
    auto fin = wait_final(e, e.submit_job(spec.dump()), &progress);
    INFO(fin.dump());
    REQUIRE(fin["state"] == "done");
    auto &r = fin["result"];
    CHECK(r["encoder"] == "libx264");
    CHECK(r["duration_s"].get<double>() == Approx(4.0).margin(0.1));
    CHECK(r["master_playlist"] == out + "/master.m3u8");
    REQUIRE(r["renditions"].size() == 3);

    const std::map<std::string, std::string> sizes = {
        {"480p", "854x480"}, {"360p", "640x360"}, {"240p", "426x240"}};
    std::vector<std::vector<std::string>> keys;
    for (auto &rd : r["renditions"]) {
        std::string name = rd["name"];
        INFO(name);
        CHECK(rd["segments"].get<int>() >= 3);
        std::string playlist = rd["playlist"];
        CHECK(playlist == out + "/" + name + "/index.m3u8");
        CHECK(video_size(playlist) == sizes.at(name));
        CHECK(std::to_string(rd["width"].get<int>()) + "x" + std::to_string(rd["height"].get<int>()) ==
              sizes.at(name));
        // Decodes without a single complaint.
        auto dec = sh("ffmpeg -nostdin -v error -i '" + playlist + "' -f null - 2>&1");
        CHECK(dec.code == 0);
        CHECK(dec.out.empty());
        auto audio = sh("ffprobe -v error -select_streams a:0 -show_entries stream=codec_name -of "
                        "csv=p=0 '" + playlist + "'");
        CHECK(audio.out.find("aac") == 0);
        keys.push_back(keyframe_times(playlist));
    }
    // A keyframe every second (1 s segments), at the same times in every rendition.
    CHECK(keys[0].size() >= 4);
    CHECK(keys[0] == keys[1]);
    CHECK(keys[0] == keys[2]);

    auto master = read_file(out + "/master.m3u8");
    INFO(master);
    CHECK(master.rfind("#EXTM3U\n", 0) == 0);
    size_t n = 0;
    for (size_t pos = 0; (pos = master.find("#EXT-X-STREAM-INF:", pos)) != std::string::npos; ++pos)
        ++n;
    CHECK(n == 3);
    CHECK(master.find("RESOLUTION=854x480") != std::string::npos);
    CHECK(master.find("RESOLUTION=640x360") != std::string::npos);
    CHECK(master.find("RESOLUTION=426x240") != std::string::npos);
    CHECK(master.find("BANDWIDTH=") != std::string::npos);
    CHECK(master.find("CODECS=\"avc1.64") != std::string::npos); // High profile from the SPS
    CHECK(master.find(",mp4a.40.2\"") != std::string::npos);
    CHECK(master.find("\n480p/index.m3u8\n") != std::string::npos);
    // ffprobe reads the whole ABR set through the master playlist.
    auto variants = sh("ffprobe -v error -show_entries stream=width -of csv=p=0 '" + out +
                       "/master.m3u8'");
    CHECK(variants.code == 0);
    CHECK(variants.out.find("854") != std::string::npos);
    CHECK(variants.out.find("426") != std::string::npos);

    REQUIRE_FALSE(progress.empty());
    INFO(progress.back().dump());
    auto p = progress.back()["progress"];
    CHECK(p.contains("seconds_done"));
    CHECK(p.contains("fps"));
    CHECK(p.contains("speed"));
}

TEST_CASE("transcode: without a GPU the probe job reports libx264 selected and why each hardware "
          "encoder was rejected")
{
    Engine e(kConfigHw);
    auto fin = wait_final(e, e.submit_job(R"({"type":"probe"})"));
    REQUIRE(fin["state"] == "done");
    auto &enc = fin["result"]["encoders"];
    INFO(enc.dump(2));
    CHECK(enc["hardware_acceleration"] == true);
    REQUIRE(enc["candidates"].size() == 5);
    std::vector<std::string> names, devices;
    for (auto &c : enc["candidates"]) {
        names.push_back(c["name"]);
        devices.push_back(c["device"]);
    }
    CHECK(names == std::vector<std::string>{"h264_nvenc", "h264_qsv", "h264_vaapi",
                                            "h264_videotoolbox", "h264_amf"});
    CHECK(devices[0] == "cuda");
    CHECK(devices[1] == "qsv");
    CHECK(devices[2] == "vaapi");
    std::string first_ok;
    for (auto &c : enc["candidates"])
        if (c["ok"].get<bool>() && first_ok.empty())
            first_ok = c["name"];
    if (first_ok.empty()) {
        // The machines this runs on have no GPU: every candidate was really
        // tried and says why it failed.
        CHECK(enc["selected"] == "libx264");
        for (auto &c : enc["candidates"]) {
            INFO(c.dump());
            CHECK(c["ok"] == false);
            REQUIRE(c["reason"].is_string());
            CHECK_FALSE(c["reason"].get<std::string>().empty());
            CHECK(c["reason"].get<std::string>().rfind("skipped", 0) != 0);
        }
    } else {
        CHECK(enc["selected"] == first_ok);
    }
    // The choice and the rejections are in the central log.
    auto logs = json::parse(e.logs_json(R"({"text":"H.264 encoder"})"));
    CHECK(logs.dump().find("H.264 encoder") != std::string::npos);
}

TEST_CASE("transcode: with hardware acceleration off every hardware candidate is skipped and "
          "libx264 selected")
{
    auto sel = media::probe_h264_encoders(false);
    CHECK(sel.selected == "libx264");
    REQUIRE(sel.candidates.size() == 5);
    for (auto &c : sel.candidates) {
        CHECK_FALSE(c.ok);
        CHECK(c.reason == "skipped: streaming.hardware_acceleration is false");
    }
    Engine e(kConfig);
    auto fin = wait_final(e, e.submit_job(R"({"type":"probe","hardware":false})"));
    REQUIRE(fin["state"] == "done");
    CHECK(fin["result"]["encoders"]["selected"] == "libx264");
    CHECK(fin["result"]["encoders"]["hardware_acceleration"] == false);
}

TEST_CASE("transcode: a live transcode hands out keyframe-aligned chunks for every rendition")
{
    TempDir dir;
    auto input = make_input(dir, "mp2", "in.ts"); // MP2 audio: transcoded to AAC
    core::Log log;
    media::MediaJobContext ctx;
    ctx.log = core::Logger(log, "segmenter");
    std::atomic<bool> cancel{false};
    ctx.cancel = &cancel;
    std::vector<media::Chunk> chunks;
    ctx.chunk = [&](media::Chunk c) { chunks.push_back(std::move(c)); };
    std::vector<json> progress;
    ctx.progress = [&](json p) { progress.push_back(std::move(p)); };
    json spec = {{"type", "transcode"},
                 {"input", input},
                 {"ladder", json::parse(R"(["360p",{"width":320,"height":180,"bitrate":"300k"}])")},
                 {"segment_duration", 1}};
    media::validate_transcode_job(spec);
    auto result = media::run_transcode_job(spec, ctx);
    INFO(result.dump());
    CHECK(result["renditions"].size() == 2);
    CHECK_FALSE(result.contains("output_dir"));
    std::map<int, std::vector<media::Chunk>> by;
    for (auto &c : chunks)
        by[c.rendition].push_back(c);
    REQUIRE(by.size() == 2);
    REQUIRE(by[0].size() >= 3);
    REQUIRE(by[0].size() == by[1].size());
    for (size_t i = 0; i < by[0].size(); ++i) {
        INFO("chunk " << i);
        for (int r = 0; r < 2; ++r) {
            auto &c = by[r][i];
            CHECK(c.seq == i);
            CHECK(c.keyframe);
            CHECK(c.size() % 188 == 0);
            REQUIRE(c.size() > 188);
            CHECK((*c.data)[0] == 0x47);
        }
        // Same media time in both renditions: a player can switch at any chunk.
        CHECK(by[0][i].first_pts == by[1][i].first_pts);
        if (i + 1 < by[0].size())
            CHECK(by[0][i].duration_s == Approx(1.0).margin(0.05));
    }
    CHECK(result["renditions"][1]["chunks"] == by[1].size());
    // The concatenated chunks of the small rendition are a valid TS file.
    std::string ts = dir / "r1.ts";
    {
        std::ofstream f(ts, std::ios::binary);
        for (auto &c : by[1])
            f.write(c.data->data(), std::streamsize(c.size()));
    }
    CHECK(video_size(ts) == "320x180");
    auto dec = sh("ffmpeg -nostdin -v error -i '" + ts + "' -f null - 2>&1");
    CHECK(dec.out.empty());
    auto audio = sh("ffprobe -v error -select_streams a:0 -show_entries stream=codec_name -of csv=p=0 '" +
                    ts + "'");
    CHECK(audio.out.find("aac") == 0);
    REQUIRE_FALSE(progress.empty());
}

TEST_CASE("transcode: a hardware encoder failing mid-stream is replaced by libx264 and the "
          "stream goes on")
{
    TempDir dir;
    auto input = make_input(dir);
    core::Log log;
    core::Logger lg(log, "segmenter");
    media::SourceOptions so;
    so.input = input;
    so.log = lg;
    media::Source source(so);
    source.open();
    media::TranscoderOptions to;
    to.ladder = media::parse_ladder(json::parse(R"(["360p","240p"])"));
    to.keyframe_interval = 1.0;
    to.simulate_encoder_failure_at = 30; // rendition 0 breaks at frame 30
    struct Seen {
        int packets = 0;
        double last_pts_s = 0;
        std::vector<double> keys;
    };
    std::map<size_t, Seen> seen;
    std::unique_ptr<media::Transcoder> tx;
    tx = std::make_unique<media::Transcoder>(
        input, source.streams(), to, lg, [&](size_t r, int stream, AVPacket *pkt) {
            if (stream != 0)
                return;
            auto &s = seen[r];
            ++s.packets;
            double t = pkt->pts * av_q2d(pkt->time_base);
            s.last_pts_s = std::max(s.last_pts_s, t);
            if (pkt->flags & AV_PKT_FLAG_KEY)
                s.keys.push_back(t);
        });
    media::PacketPtr pkt = media::make_packet();
    while (source.read(pkt.get())) {
        tx->send(pkt.get());
        av_packet_unref(pkt.get());
    }
    tx->finish();
    CHECK(tx->fallbacks() == 1);
    CHECK(tx->encoder(0) == "libx264");
    // Rendition 0 keeps going to the end of the input, with a keyframe
    // where the replacement started and the regular ones after it.
    CHECK(seen[0].last_pts_s == Approx(seen[1].last_pts_s).margin(0.05));
    CHECK(seen[0].last_pts_s > 3.8);
    CHECK(seen[0].packets >= 80); // a few frames inside the failed encoder are lost
    CHECK(seen[1].packets == 100);
    REQUIRE(seen[0].keys.size() >= 4);
    CHECK(seen[0].keys.back() == Approx(seen[1].keys.back()));
    auto warn = log.search(core::LogFilter{core::LogLevel::Warn, "", "failed mid-stream", 0, {}, {}, 10});
    REQUIRE(warn.size() == 1);
    CHECK(warn[0].message.find("continuing with libx264") != std::string::npos);
}

TEST_CASE("transcode: inputs the ladder cannot use end in an error event naming the input")
{
    TempDir dir;
    Engine e(kConfig);
    auto fail_of = [&](const std::string &input) {
        json spec = {{"type", "transcode"}, {"input", input}, {"ladder", {"240p"}},
                     {"output_dir", dir / "out"}};
        auto fin = wait_final(e, e.submit_job(spec.dump()));
        INFO(fin.dump());
        CHECK(fin["state"] == "failed");
        return fin["error"];
    };
    SECTION("no video stream")
    {
        std::string audio = dir / "audio.m4a";
        REQUIRE(sh("ffmpeg -nostdin -v error -y -f lavfi -i sine=sample_rate=48000 -t 1 -c:a aac '" +
                   audio + "' 2>&1")
                    .code == 0);
        auto err = fail_of(audio);
        CHECK(err["name"] == "OPENACE_EMEDIA");
        CHECK_THAT(err["message"].get<std::string>(),
                   Catch::Contains(audio) && Catch::Contains("no video stream"));
    }
    SECTION("a video codec that cannot be decoded")
    {
        std::string nut = dir / "unknown.nut";
        REQUIRE(sh("ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -t 1 "
                   "-c:v mpeg4 -vtag ABCD -strict -2 '" + nut + "' 2>&1")
                    .code == 0);
        auto err = fail_of(nut);
        CHECK_THAT(err["message"].get<std::string>(), Catch::Contains(nut));
        CHECK_THAT(err["message"].get<std::string>(), Catch::Contains("decode", Catch::CaseSensitive::No));
    }
    SECTION("a missing file")
    {
        auto err = fail_of(dir / "missing.mp4");
        CHECK_THAT(err["message"].get<std::string>(), Catch::Contains(dir / "missing.mp4"));
    }
}

TEST_CASE("transcode: bad specs are rejected at submit with the field named")
{
    Engine e(kConfig);
    auto submit_error = [&](const std::string &spec) -> std::string {
        try {
            e.submit_job(spec);
        } catch (const Error &err) {
            CHECK(err.code() == Errc::JOB);
            return err.what();
        }
        FAIL("accepted: " << spec);
        return {};
    };
    CHECK_THAT(submit_error(R"({"type":"transcode","input":"x.mp4","ladder":["720p","480p","999p"]})"),
               Catch::Contains("field 'ladder[2]': unknown rung '999p'"));
    CHECK_THAT(submit_error(R"({"type":"transcode","input":"x.mp4"})"),
               Catch::Contains("field 'ladder'"));
    CHECK_THAT(submit_error(R"({"type":"transcode","ladder":["240p"]})"),
               Catch::Contains("field 'input'"));
    CHECK_THAT(submit_error(
                   R"({"type":"transcode","input":"x","ladder":["240p"],"output_dir":"/tmp/x","loop":true})"),
               Catch::Contains("field 'loop'"));
    CHECK_THAT(submit_error(R"({"type":"transcode","input":"x","ladder":["240p"],"preset":"warp"})"),
               Catch::Contains("field 'preset'"));
    CHECK_THAT(submit_error(R"({"type":"transcode","input":"x","ladder":["240p"],"segment_duration":0})"),
               Catch::Contains("field 'segment_duration'"));
}

TEST_CASE("transcode: cancelling a live transcode ends the job as cancelled")
{
    TempDir dir;
    auto input = make_input(dir);
    Engine e(kConfig);
    json spec = {{"type", "transcode"}, {"input", input}, {"ladder", {"240p"}},
                 {"realtime", true},    {"loop", true}};
    auto id = e.submit_job(spec.dump());
    // Let it run (progress arrives), then cancel.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    bool progressed = false;
    while (!progressed && std::chrono::steady_clock::now() < deadline) {
        auto ev = e.wait_event(0.5);
        if (ev && ev->job_id == id && ev->id == OPENACE_EVENT_JOB_PROGRESS)
            progressed = true;
        REQUIRE_FALSE((ev && ev->job_id == id && ev->final));
    }
    REQUIRE(progressed);
    auto t0 = std::chrono::steady_clock::now();
    e.cancel_job(id);
    auto fin = wait_final(e, id, nullptr, 20);
    CHECK(fin["state"] == "cancelled");
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
}
