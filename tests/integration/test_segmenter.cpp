// The SegmenterEngine's remux path with real FFmpeg: chunks from a lavfi
// source and from a generated H.264+AAC file, the segment job through the
// engine, bad inputs, a live playlist across a forced source restart, and
// cancellation.  Media is made with the ffmpeg program and checked with
// ffprobe; every external command runs under `timeout`.
#include <openace/engine.hpp>

#include "command.hpp"
#include "temp_dir.hpp"
#include "media/av_util.hpp"
#include "media/chunk_ring.hpp"
#include "media/hls.hpp"
#include "media/source.hpp"
#include "media/ts_chunker.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <thread>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

using namespace openace;
using namespace openace::media;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char *kConfig = R"({"engine":{"http_address":"127.0.0.1:0"},"logging":{"console":false}})";
constexpr double kFrame = 1.0 / 25; // the test media's frame duration

using Cmd = testcmd::Result;

// stderr merged into the output.
Cmd sh(const std::string &cmd, int timeout_s = 120)
{
    return testcmd::run(cmd, timeout_s, true);
}

std::string quote(const std::string &s)
{
    return "'" + s + "'";
}

// A directory for one process's test media, removed at exit.
testdir::TempDir &tmp()
{
    static testdir::TempDir d("segmenter-test");
    REQUIRE(!d.path.empty());
    return d;
}

// 6 s of H.264 (keyframe every second) + AAC in MP4.
const std::string &test_file()
{
    static std::string path;
    if (path.empty()) {
        std::string p = tmp().path + "/av.mp4";
        auto r = sh("ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i "
                    "sine=frequency=440:sample_rate=48000 -c:v libx264 -preset veryfast -pix_fmt yuv420p -g 25 "
                    "-c:a aac -t 6 " +
                    quote(p));
        INFO(r.out);
        REQUIRE(r.code == 0);
        path = p;
    }
    return path;
}

double probe_double(const std::string &args)
{
    auto r = sh("ffprobe -v error " + args);
    INFO(r.out);
    REQUIRE(r.code == 0);
    return std::stod(r.out);
}

double video_duration(const std::string &file)
{
    return probe_double("-select_streams v:0 -show_entries stream=duration -of csv=p=0 " + quote(file));
}

void write_file(const std::string &path, const std::string &data)
{
    std::ofstream(path, std::ios::binary) << data;
}

std::string read_file(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// ------------------------------------------------------------ MPEG-TS

struct TsPacket {
    unsigned pid = 0;
    bool pusi = false;
    bool has_payload = false;
    unsigned cc = 0;
    bool random_access = false;
    bool discontinuity = false;
    size_t payload = 0; // offset of the payload in the chunk
};

std::vector<TsPacket> ts_packets(const std::string &d)
{
    std::vector<TsPacket> out;
    REQUIRE(d.size() % 188 == 0);
    for (size_t i = 0; i < d.size(); i += 188) {
        auto b = reinterpret_cast<const uint8_t *>(&d[i]);
        REQUIRE(b[0] == 0x47); // sync byte
        TsPacket p;
        p.pid = unsigned(b[1] & 0x1f) << 8 | b[2];
        p.pusi = (b[1] & 0x40) != 0;
        unsigned afc = (b[3] >> 4) & 3;
        p.has_payload = (afc & 1) != 0;
        p.cc = b[3] & 0x0f;
        size_t off = 4;
        if (afc & 2) {
            unsigned len = b[4];
            if (len > 0) {
                p.discontinuity = (b[5] & 0x80) != 0;
                p.random_access = (b[5] & 0x40) != 0;
            }
            off += 1 + len;
        }
        p.payload = i + off;
        out.push_back(p);
    }
    return out;
}

// PMT PID from a PAT packet, video PID from a PMT packet (first H.264 or
// other video stream type).
unsigned pmt_pid_of(const std::string &d, const TsPacket &pat)
{
    auto b = reinterpret_cast<const uint8_t *>(&d[pat.payload]);
    b += 1 + b[0]; // pointer field
    REQUIRE(b[0] == 0x00); // table_id: program_association_section
    // 8 bytes of header, then (program_number, PID) pairs.
    for (const uint8_t *e = b + 8; e + 4 <= b + 3 + ((b[1] & 0x0f) << 8 | b[2]) - 4; e += 4) {
        unsigned program = unsigned(e[0]) << 8 | e[1];
        if (program != 0)
            return unsigned(e[2] & 0x1f) << 8 | e[3];
    }
    FAIL("no program in the PAT");
    return 0;
}

std::map<unsigned, unsigned> pmt_streams(const std::string &d, const TsPacket &pmt)
{
    auto b = reinterpret_cast<const uint8_t *>(&d[pmt.payload]);
    b += 1 + b[0];
    REQUIRE(b[0] == 0x02); // table_id: TS_program_map_section
    size_t section_len = (b[1] & 0x0f) << 8 | b[2];
    size_t info_len = (b[10] & 0x0f) << 8 | b[11];
    std::map<unsigned, unsigned> pids; // pid -> stream_type
    const uint8_t *e = b + 12 + info_len, *end = b + 3 + section_len - 4;
    while (e + 5 <= end) {
        pids[unsigned(e[1] & 0x1f) << 8 | e[2]] = e[0];
        e += 5 + ((e[3] & 0x0f) << 8 | e[4]);
    }
    return pids;
}

bool is_video_type(unsigned t)
{
    return t == 0x1b || t == 0x24 || t == 0x02 || t == 0x01 || t == 0x10;
}

// Every chunk: PAT first, then PMT, then (with video) the first packet of
// the video PID starts a PES with the random access flag; and ffprobe sees
// a keyframe as the chunk's first video frame.
void check_chunk_start(const Chunk &c, bool video, const std::string &scratch)
{
    INFO("chunk " << c.seq);
    REQUIRE(c.data);
    const std::string &d = *c.data;
    auto pkts = ts_packets(d);
    REQUIRE(pkts.size() >= 3);
    CHECK(pkts[0].pid == 0);
    CHECK(pkts[0].pusi);
    unsigned pmt = pmt_pid_of(d, pkts[0]);
    CHECK(pkts[1].pid == pmt);
    CHECK(pkts[1].pusi);
    auto streams = pmt_streams(d, pkts[1]);
    REQUIRE(!streams.empty());
    if (!video)
        return;
    unsigned vpid = 0;
    for (auto [pid, type] : streams)
        if (is_video_type(type))
            vpid = pid;
    REQUIRE(vpid != 0);
    // Nothing but tables before the keyframe's first packet.
    for (auto &p : pkts) {
        if (p.pid == 0 || p.pid == pmt || p.pid == 0x11)
            continue;
        CHECK(p.pid == vpid);
        CHECK(p.pusi);
        CHECK(p.random_access);
        break;
    }
    CHECK(c.keyframe);
    write_file(scratch, d);
    auto r = sh("ffprobe -v error -select_streams v:0 -show_frames -read_intervals %+#1 -show_entries "
                "frame=key_frame -of csv=p=0 " +
                quote(scratch));
    INFO(r.out);
    CHECK(r.code == 0);
    CHECK(r.out.substr(0, 1) == "1");
}

// Continuity counters of concatenated chunks: +1 per payload packet of a
// PID, across every chunk boundary.
void check_continuity(const std::string &all)
{
    std::map<unsigned, unsigned> last;
    size_t errors = 0;
    for (auto &p : ts_packets(all)) {
        if (p.pid == 0x1fff)
            continue;
        auto it = last.find(p.pid);
        if (it != last.end() && !p.discontinuity) {
            unsigned want = p.has_payload ? (it->second + 1) & 0xf : it->second;
            if (p.cc != want)
                ++errors;
        }
        last[p.pid] = p.cc;
    }
    CHECK(errors == 0);
}

struct Chunked {
    std::vector<Chunk> chunks;
    double duration = 0;
    bool video = false;
};

Chunked chunk_source(SourceOptions so, double target, int force_restart_after_packets = -1)
{
    Source src(std::move(so));
    src.open();
    Chunked out;
    out.video = src.has_video();
    TsChunkerOptions co;
    co.target_duration = target;
    TsChunker ch(src.streams(), co, [&](Chunk c) { out.chunks.push_back(std::move(c)); });
    auto pkt = make_packet();
    int n = 0;
    while (src.read(pkt.get())) {
        if (src.discontinuity())
            ch.mark_discontinuity();
        ch.write(pkt.get());
        av_packet_unref(pkt.get());
        if (++n == force_restart_after_packets)
            src.force_reconnect();
    }
    ch.finish();
    out.duration = ch.duration_s();
    return out;
}

void check_chunks(const Chunked &c, const std::string &name, double expect_duration, double target)
{
    REQUIRE(c.chunks.size() >= 3);
    std::string all;
    for (size_t i = 0; i < c.chunks.size(); ++i) {
        auto &ch = c.chunks[i];
        CHECK(ch.seq == i);
        CHECK(ch.size() % 188 == 0);
        if (i + 1 < c.chunks.size()) {
            CHECK(ch.duration_s >= target - 0.002);          // cut at or after the target
            CHECK(c.chunks[i + 1].first_pts > ch.first_pts); // in order
        }
        check_chunk_start(ch, c.video, tmp().path + "/" + name + "-chunk.ts");
        all += *ch.data;
    }
    check_continuity(all);
    std::string file = tmp().path + "/" + name + "-all.ts";
    write_file(file, all);
    // Decodes without a word from FFmpeg.
    auto dec = sh("ffmpeg -nostdin -v error -i " + quote(file) + " -f null -");
    INFO(dec.out);
    CHECK(dec.code == 0);
    CHECK(dec.out.empty());
    auto probe = sh("ffprobe -v error " + quote(file));
    CHECK(probe.code == 0);
    CHECK(probe.out.empty());
    // Same duration as the input, within one frame.
    CHECK(std::abs(c.duration - expect_duration) <= kFrame + 1e-6);
    if (c.video)
        CHECK(std::abs(video_duration(file) - expect_duration) <= kFrame + 1e-6);
}

// ------------------------------------------------------------ engine

json wait_final(Engine &e, int64_t job, std::vector<json> *progress = nullptr, double timeout_s = 60)
{
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
        auto ev = e.wait_event(0.5);
        if (!ev || ev->job_id != job)
            continue;
        auto j = json::parse(ev->json);
        if (ev->id == OPENACE_EVENT_JOB_PROGRESS && progress)
            progress->push_back(j["progress"]);
        if (ev->id == OPENACE_EVENT_JOB_STATE && ev->final)
            return j;
    }
    FAIL("no final event for job " << job << " within " << timeout_s << " s");
    return {};
}

json segment_job(const std::string &input, const std::string &out, json extra = json::object())
{
    json j = {{"type", "segment"}, {"input", input}, {"output_dir", out}};
    j.update(extra);
    return j;
}

} // namespace

TEST_CASE("segmenter: chunks from an H.264+AAC file start with PAT, PMT and a keyframe and add up to the input")
{
    SourceOptions so;
    so.input = test_file();
    auto c = chunk_source(so, 1.0);
    CHECK(c.video);
    CHECK(c.chunks.size() == 6);
    check_chunks(c, "file", video_duration(test_file()), 1.0);
}

TEST_CASE("segmenter: chunks from a lavfi source start with PAT, PMT and a keyframe and add up to the source")
{
    SourceOptions so;
    so.input = "lavfi:testsrc2=size=320x240:rate=25:duration=4[out0];sine=frequency=440:sample_rate=48000:duration=4[out1]";
    auto c = chunk_source(so, 1.0);
    CHECK(c.video);
    CHECK(c.chunks.size() == 4);
    check_chunks(c, "lavfi", 4.0, 1.0);
}

TEST_CASE("segmenter: a source with keyframes every 2 s gives chunks of the real keyframe distance")
{
    std::string file = tmp().path + "/gop50.mp4";
    auto r = sh("ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -c:v libx264 -preset "
                "veryfast -pix_fmt yuv420p -g 50 -keyint_min 50 -sc_threshold 0 -t 6 " +
                quote(file));
    REQUIRE(r.code == 0);
    SourceOptions so;
    so.input = file;
    auto c = chunk_source(so, 1.0);
    REQUIRE(c.chunks.size() == 3);
    for (auto &ch : c.chunks)
        CHECK(ch.duration_s == Approx(2.0).margin(0.001));
}

TEST_CASE("segmenter: an audio-only source is cut on time and every chunk starts with PAT and PMT")
{
    SourceOptions so;
    so.input = "lavfi:sine=frequency=440:sample_rate=48000:duration=3";
    auto c = chunk_source(so, 1.0);
    CHECK(!c.video);
    REQUIRE(c.chunks.size() >= 3);
    for (auto &ch : c.chunks) {
        check_chunk_start(ch, false, tmp().path + "/audio-chunk.ts");
        CHECK(!ch.keyframe);
    }
    CHECK(std::abs(c.duration - 3.0) <= 0.05); // within one AAC frame or two
}

TEST_CASE("segmenter: the segment job through the engine writes index.m3u8 and segments that ffprobe reads")
{
    Engine e(kConfig);
    std::string out = tmp().path + "/job-out";
    auto id = e.submit_job(segment_job(test_file(), out, {{"segment_duration", 2}}).dump());
    std::vector<json> progress;
    auto fin = wait_final(e, id, &progress);
    INFO(fin.dump());
    REQUIRE(fin["state"] == "done");
    auto &r = fin["result"];
    CHECK(r["output_dir"] == out);
    CHECK(r["playlist"] == out + "/index.m3u8");
    CHECK(r["segments"] == 3);
    CHECK(std::abs(r["duration_s"].get<double>() - 6.0) <= kFrame);
    CHECK(r["bytes"].get<uint64_t>() > 10000);
    REQUIRE(!progress.empty());
    CHECK(progress.back()["segments"] == 3);
    CHECK(progress.back()["percent"].get<double>() == Approx(100).margin(1));
    CHECK(progress.back()["seconds_done"].get<double>() >= 5.9);

    auto m3u8 = read_file(out + "/index.m3u8");
    CHECK(m3u8.rfind("#EXTM3U\n", 0) == 0);
    CHECK(m3u8.find("#EXT-X-PLAYLIST-TYPE:VOD\n") != std::string::npos);
    CHECK(m3u8.find("#EXT-X-TARGETDURATION:2\n") != std::string::npos);
    CHECK(m3u8.size() >= 15);
    CHECK(m3u8.substr(m3u8.size() - 15) == "#EXT-X-ENDLIST\n");
    for (auto &ent : fs::directory_iterator(out))
        CHECK(ent.path().extension() != ".tmp");
    auto probe = sh("ffprobe -v error -show_entries format=duration -of csv=p=0 " + quote(out + "/index.m3u8"));
    INFO(probe.out);
    CHECK(probe.code == 0);
    CHECK(std::abs(std::stod(probe.out) - 6.0) <= 0.1);
    auto dec = sh("ffmpeg -nostdin -v error -i " + quote(out + "/index.m3u8") + " -f null -");
    CHECK(dec.code == 0);
    CHECK(dec.out.empty());
}

TEST_CASE("segmenter: truncated, garbage and missing inputs end in error events naming the input")
{
    Engine e(kConfig);
    const std::string &good = test_file();
    auto data = read_file(good);
    std::string truncated = tmp().path + "/truncated.mp4";
    write_file(truncated, data.substr(0, data.size() * 4 / 10));
    std::string garbage = tmp().path + "/garbage.mp4";
    std::string junk(200000, '\0');
    uint32_t x = 12345;
    for (auto &ch : junk) {
        x = x * 1103515245 + 12345;
        ch = char(x >> 24);
    }
    write_file(garbage, junk);
    std::string missing = tmp().path + "/missing.mp4";
    std::string faststart = tmp().path + "/faststart.mp4";
    REQUIRE(sh("ffmpeg -nostdin -v error -y -i " + quote(good) + " -c copy -movflags +faststart " + quote(faststart))
                .code == 0);
    auto fs_data = read_file(faststart);
    std::string truncated_fs = tmp().path + "/truncated-faststart.mp4";
    write_file(truncated_fs, fs_data.substr(0, fs_data.size() * 4 / 10));
    std::string no_av = tmp().path + "/subtitles.srt";
    write_file(no_av, "1\n00:00:01,000 --> 00:00:02,000\nhello\n\n");

    struct Case {
        std::string input;
        Errc code;
        std::string says;
    };
    for (auto &c : std::vector<Case>{{truncated, Errc::MEDIA, "truncated"},
                                     {truncated_fs, Errc::MEDIA, "truncated"},
                                     {garbage, Errc::MEDIA, "not a media file"},
                                     {missing, Errc::IO, "does not exist"},
                                     {no_av, Errc::MEDIA, "no video and no audio"}}) {
        INFO(c.input);
        auto id = e.submit_job(segment_job(c.input, tmp().path + "/bad-out").dump());
        auto fin = wait_final(e, id);
        INFO(fin.dump());
        REQUIRE(fin["state"] == "failed");
        auto msg = fin["error"]["message"].get<std::string>();
        CHECK(msg.find(c.input) != std::string::npos);
        CHECK(msg.find(c.says) != std::string::npos);
        CHECK(fin["error"]["code"] == int(c.code));
    }
    // The engine is still fine.
    auto id = e.submit_job(segment_job(good, tmp().path + "/after-bad").dump());
    CHECK(wait_final(e, id)["state"] == "done");
}

TEST_CASE("segmenter: a live playlist obeys RFC 8216 over a sliding window and across a forced source restart")
{
    // A file, restarted by force midway (FFmpeg 5.1's lavfi device leaks a
    // frame when closed mid-stream, which an ASan build would report).
    SourceOptions so;
    so.input = test_file();
    so.realtime = false;
    LivePlaylist pl({2.0, 0, 0, "", ".ts", 0});
    std::vector<std::string> snapshots;
    Source src(so);
    src.open();
    TsChunkerOptions co;
    co.target_duration = 1.0;
    std::vector<Chunk> chunks;
    TsChunker ch(src.streams(), co, [&](Chunk c) {
        chunks.push_back(c);
        pl.add(std::move(c));
        snapshots.push_back(pl.playlist());
    });
    auto pkt = make_packet();
    bool forced = false;
    while (src.read(pkt.get())) {
        if (src.discontinuity())
            ch.mark_discontinuity();
        ch.write(pkt.get());
        av_packet_unref(pkt.get());
        if (!forced && src.position_s() >= 4.3) {
            src.force_reconnect(); // as if the source had dropped
            forced = true;
        }
    }
    ch.finish();
    pl.end();
    snapshots.push_back(pl.playlist());
    CHECK(src.reconnects() == 1);

    // The restart: exactly one chunk flagged, and it starts with a keyframe.
    size_t flagged = 0;
    for (auto &c : chunks)
        if (c.discontinuity) {
            ++flagged;
            CHECK(c.keyframe);
            CHECK(c.seq > 0);
        }
    CHECK(flagged == 1);
    for (size_t i = 1; i < chunks.size(); ++i) {
        CHECK(chunks[i].seq == chunks[i - 1].seq + 1);
        CHECK(chunks[i].first_pts > chunks[i - 1].first_pts); // the timeline went on
    }

    // Every playlist the server ever showed.
    int target = -1;
    int64_t last_seq = -1;
    std::map<int64_t, std::string> uri_of;
    std::map<int64_t, int64_t> dseq_of;
    bool saw_tag = false, slid = false;
    for (auto &text : snapshots) {
        INFO(text);
        std::istringstream in(text);
        std::string line;
        int64_t media_seq = -1, dseq = 0, idx = 0;
        bool disc = false, pdt = false;
        double total = 0;
        while (std::getline(in, line)) {
            auto val = line.substr(line.find(':') + 1);
            if (line.rfind("#EXT-X-TARGETDURATION:", 0) == 0) {
                int t = std::stoi(val);
                if (target < 0)
                    target = t;
                CHECK(t == target);
            } else if (line.rfind("#EXT-X-MEDIA-SEQUENCE:", 0) == 0) {
                media_seq = std::stoll(val);
                CHECK(media_seq >= last_seq);
                last_seq = media_seq;
                slid |= media_seq > 0;
            } else if (line.rfind("#EXT-X-DISCONTINUITY-SEQUENCE:", 0) == 0) {
                dseq = std::stoll(val);
            } else if (line == "#EXT-X-DISCONTINUITY") {
                disc = true;
            } else if (line.rfind("#EXT-X-PROGRAM-DATE-TIME:", 0) == 0) {
                pdt = true;
            } else if (line.rfind("#EXTINF:", 0) == 0) {
                double d = std::stod(val);
                CHECK(std::lround(d) <= target);
                total += d;
            } else if (!line.empty() && line[0] != '#') {
                CHECK(pdt);
                int64_t seq = media_seq + idx++;
                if (disc) {
                    ++dseq;
                    saw_tag = true;
                }
                CHECK(uri_of.emplace(seq, line).first->second == line);
                CHECK(dseq_of.emplace(seq, dseq).first->second == dseq);
                disc = pdt = false;
            }
        }
        if (&text != &snapshots.back() && media_seq > 0)
            CHECK(total >= 3.0 * target - 1e-6); // never below three target durations once sliding
    }
    CHECK(target == 2);
    CHECK(slid);
    CHECK(saw_tag);
    CHECK(snapshots.back().find("#EXT-X-ENDLIST") != std::string::npos);
}

TEST_CASE("segmenter: cancelling a running realtime segment job ends it cancelled promptly")
{
    Engine e(kConfig);
    std::string out = tmp().path + "/cancel-out";
    auto id = e.submit_job(
        segment_job("testsrc2=size=320x240:rate=25", out, {{"format", "lavfi"}, {"realtime", true}, {"segment_duration", 1}})
            .dump());
    // Wait until it produces something, in real time.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    bool progressed = false;
    while (!progressed && std::chrono::steady_clock::now() < deadline) {
        auto ev = e.wait_event(0.5);
        if (ev && ev->job_id == id && ev->id == OPENACE_EVENT_JOB_PROGRESS)
            progressed = json::parse(ev->json)["progress"]["seconds_done"].get<double>() >= 1.0;
        if (ev && ev->job_id == id && ev->final)
            FAIL("ended early: " << ev->json);
    }
    REQUIRE(progressed);
    auto t0 = std::chrono::steady_clock::now();
    e.cancel_job(id);
    auto fin = wait_final(e, id, nullptr, 10);
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(fin["state"] == "cancelled");
    CHECK(took < 2.0);
    // What was recorded until then is a valid VOD playlist.
    auto m3u8 = read_file(out + "/index.m3u8");
    CHECK(m3u8.find("#EXTINF:") != std::string::npos);
    CHECK(m3u8.find("#EXT-X-ENDLIST") != std::string::npos);
}

TEST_CASE("segmenter: restarting the segmenter engine ends its running job and the next job runs")
{
    Engine e(kConfig);
    auto id = e.submit_job(
        segment_job("lavfi:testsrc2=size=160x120:rate=25", tmp().path + "/restart-out", {{"realtime", true}}).dump());
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    bool running = false;
    while (!running && std::chrono::steady_clock::now() < deadline) {
        auto ev = e.wait_event(0.5);
        running = ev && ev->job_id == id && ev->id == OPENACE_EVENT_JOB_PROGRESS;
    }
    REQUIRE(running);
    auto t0 = std::chrono::steady_clock::now();
    e.control("segmenter", "restart"); // joins the media thread
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3));
    auto fin = wait_final(e, id, nullptr, 10);
    CHECK(fin["state"] == "failed");
    CHECK(fin["error"]["message"].get<std::string>().find("stopped") != std::string::npos);
    auto st = json::parse(e.stats_json());
    CHECK(st["engines"]["segmenter"]["state"] == "running");
    CHECK(st["engines"]["segmenter"]["details"]["jobs_running"] == 0);
    auto id2 = e.submit_job(segment_job(test_file(), tmp().path + "/restart-after").dump());
    CHECK(wait_final(e, id2)["state"] == "done");
}

TEST_CASE("segmenter: a realtime source is paced by the wall clock")
{
    SourceOptions so;
    so.input = "lavfi:testsrc2=size=160x120:rate=25:duration=2";
    so.realtime = true;
    auto t0 = std::chrono::steady_clock::now();
    auto c = chunk_source(so, 1.0);
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(c.chunks.size() == 2);
    CHECK(took >= 1.9);  // 2 s of media, last frame at 1.96 s
    CHECK(took < 4.0);
}

TEST_CASE("segmenter: a looped file keeps its timestamps monotonic and never flags a discontinuity")
{
    SourceOptions so;
    so.input = test_file();
    so.loop = true;
    Source src(so);
    src.open();
    std::vector<Chunk> chunks;
    TsChunkerOptions co;
    TsChunker ch(src.streams(), co, [&](Chunk c) { chunks.push_back(std::move(c)); });
    auto pkt = make_packet();
    while (src.position_s() < 15 && src.read(pkt.get())) {
        CHECK(!src.discontinuity());
        ch.write(pkt.get());
        av_packet_unref(pkt.get());
    }
    ch.finish();
    CHECK(src.reconnects() == 2);
    REQUIRE(chunks.size() >= 14);
    for (size_t i = 1; i < chunks.size(); ++i)
        CHECK(chunks[i].first_pts > chunks[i - 1].first_pts);
    std::string all;
    for (auto &c : chunks)
        all += *c.data;
    check_continuity(all);
    std::string file = tmp().path + "/loop-all.ts";
    write_file(file, all);
    auto dec = sh("ffmpeg -nostdin -v error -i " + quote(file) + " -f null -");
    INFO(dec.out);
    CHECK(dec.out.empty());
}

TEST_CASE("segmenter: openace segment writes HLS and exits 0, and exits 1 naming a missing input")
{
    std::string cli = OPENACE_CLI_PATH;
    if (cli.empty())
        return; // built without the CLI
    std::string out = tmp().path + "/cli-out";
    auto ok = sh(quote(cli) + " --log-level error segment " + quote(test_file()) + " " + quote(out) +
                 " --segment-duration 3");
    INFO(ok.out);
    CHECK(ok.code == 0);
    CHECK(ok.out.find("\"segments\": 2") != std::string::npos);
    CHECK(fs::exists(out + "/index.m3u8"));
    CHECK(fs::exists(out + "/segment_00001.ts"));
    std::string missing = tmp().path + "/nope.mp4";
    auto bad = sh(quote(cli) + " --log-level off segment " + quote(missing) + " " + quote(out));
    INFO(bad.out);
    CHECK(bad.code == 1);
    CHECK(bad.out.find("openace: ") != std::string::npos);
    CHECK(bad.out.find(missing) != std::string::npos);
}

TEST_CASE("segmenter: an unreachable live URL is retried with backoff, then fails naming it")
{
    SourceOptions so;
    so.input = "http://127.0.0.1:1/live.ts"; // nothing listens on port 1
    so.reconnect = {std::chrono::milliseconds(50), std::chrono::milliseconds(100), 2.0, 0.0, false, 2};
    Source src(so);
    auto t0 = std::chrono::steady_clock::now();
    try {
        src.open();
        FAIL("opened an unreachable URL");
    } catch (const Error &e) {
        CHECK(e.code() == Errc::NET);
        CHECK(std::string(e.what()).find(so.input) != std::string::npos);
        CHECK(std::string(e.what()).find("3 attempts") != std::string::npos);
    }
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
}

TEST_CASE("segmenter: a live UDP source that stops is reconnected and the next chunk is a discontinuity")
{
    int port = 20000 + int(::getpid() % 20000);
    std::string url = "udp://127.0.0.1:" + std::to_string(port);
    // Two senders, one after the other, with a silence between them.
    auto sender = [&](int seconds) {
        return "ffmpeg -nostdin -v error -re -f lavfi -i testsrc2=size=160x120:rate=25:duration=" +
               std::to_string(seconds) +
               " -c:v libx264 -preset ultrafast -tune zerolatency -g 25 -pix_fmt yuv420p -f mpegts " +
               quote(url + "?pkt_size=1316");
    };
    std::thread feed([&] {
        sh(sender(3), 30);
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        sh(sender(3), 30);
    });
    SourceOptions so;
    so.input = url + "?timeout=5000000";
    so.format = "mpegts";
    so.read_timeout = std::chrono::milliseconds(800);
    so.open_timeout = std::chrono::milliseconds(3000);
    so.reconnect = {std::chrono::milliseconds(50), std::chrono::milliseconds(200), 2.0, 0.0, false, 20};
    std::vector<Chunk> chunks;
    std::string error;
    try {
        Source src(so);
        src.open();
        CHECK(src.live());
        TsChunkerOptions co;
        TsChunker ch(src.streams(), co, [&](Chunk c) { chunks.push_back(std::move(c)); });
        auto pkt = make_packet();
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (std::chrono::steady_clock::now() < deadline && src.read(pkt.get())) {
            if (src.discontinuity())
                ch.mark_discontinuity();
            ch.write(pkt.get());
            av_packet_unref(pkt.get());
            // Enough once the second sender has run for a while.
            if (src.reconnects() > 0 && src.position_s() > 4.5)
                break;
        }
        ch.finish();
        CHECK(src.reconnects() >= 1);
    } catch (const Error &e) {
        error = e.what();
    }
    feed.join();
    INFO(error);
    CHECK(error.empty());
    size_t flagged = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
        if (chunks[i].discontinuity) {
            ++flagged;
            CHECK(i > 0);
            CHECK(chunks[i].keyframe);
        }
        if (i > 0) {
            CHECK(chunks[i].seq == chunks[i - 1].seq + 1);
            CHECK(chunks[i].first_pts > chunks[i - 1].first_pts);
        }
    }
    CHECK(flagged >= 1);
}

TEST_CASE("segmenter: readers joining a chunk ring at different times each get a stream that decodes from its first byte")
{
    // Real chunks from FFmpeg (lavfi video + audio), fanned out to readers
    // that attach while the stream runs, as players joining a live stream.
    SourceOptions so;
    so.input = "lavfi:testsrc2=size=320x240:rate=25:duration=8[out0];sine=frequency=440:sample_rate=48000:duration=8[out1]";
    auto c = chunk_source(so, 1.0);
    REQUIRE(c.chunks.size() >= 7);
    ChunkRing ring(ChunkRing::Options{30, 64u << 20});
    std::vector<std::shared_ptr<ChunkRing::Reader>> readers;
    std::vector<std::string> outs;
    for (size_t i = 0; i < c.chunks.size(); ++i) {
        ring.push(c.chunks[i]);
        if (i == 0 || i == 3 || i == 5) {
            readers.push_back(ring.attach());
            outs.emplace_back();
        }
        for (size_t r = 0; r < readers.size(); ++r)
            while (auto ch = readers[r]->next())
                outs[r] += *ch->data;
    }
    ring.close();
    REQUIRE(readers.size() == 3);
    for (size_t r = 0; r < readers.size(); ++r) {
        INFO("reader " << r);
        CHECK(readers[r]->ended());
        CHECK(readers[r]->skipped() == 0);
        REQUIRE(!outs[r].empty());
        CHECK(outs[r].size() % 188 == 0);
        auto file = tmp().path + "/ring_reader_" + std::to_string(r) + ".ts";
        write_file(file, outs[r]);
        // Decodes from its first byte without a single error ...
        auto dec = sh("ffmpeg -v error -i " + quote(file) + " -f null -");
        CHECK(dec.code == 0);
        CHECK(dec.out.empty());
        // ... and the first video frame is a keyframe.
        auto kf = sh("ffprobe -v error -select_streams v -show_entries frame=key_frame -of csv=p=0 " + quote(file));
        REQUIRE(kf.code == 0);
        CHECK(kf.out.rfind("1", 0) == 0);
    }
    // Later readers joined later: strictly less media each.
    CHECK(outs[0].size() > outs[1].size());
    CHECK(outs[1].size() > outs[2].size());
    CHECK(ring.readers() == 3);
    readers.clear();
    CHECK(ring.readers() == 0);
}
