// The LiveEngine end to end between OpenAce engines in one process, over
// real loopback sockets and a real FFmpeg source (lavfi): a broadcast, a
// chain of viewers where each reaches only the one before it, a viewer that
// starts from the descriptor file, a broadcaster restart, and the job field
// checks.  Many viewers, hostile peers and churn, with processes, are in
// tests/interop/test_live_interop.py.
#include <openace/engine.hpp>

#include "transport/identity.hpp"

#include "command.hpp"
#include "http_client.hpp"
#include "temp_dir.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace openace;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char *kSource = "lavfi:testsrc2=size=192x108:rate=25";

std::string live_config(const std::string &state_dir, bool pex = true)
{
    json c = {{"engine", {{"http_address", "127.0.0.1:0"}, {"state_dir", state_dir}}},
              {"logging", {{"console", false}}},
              {"transport", {{"listen_port", 0}, {"pex", pex}}},
              {"live", {{"join_delay", 2.0}}}};
    return c.dump();
}

// A number field of a progress object that may not have come yet.
std::int64_t number(const json &progress, const char *key)
{
    return progress.is_object() ? progress.value(key, std::int64_t{0}) : 0;
}

// The latest progress of each job, pumped from one engine's events.
struct Watch {
    Engine &engine;
    std::map<int64_t, json> progress;
    std::map<int64_t, json> final_state;
    void pump(double seconds)
    {
        auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
        do {
            auto ev = engine.wait_event(0.05);
            if (!ev)
                continue;
            auto j = json::parse(ev->json);
            if (ev->id == OPENACE_EVENT_JOB_PROGRESS)
                progress[ev->job_id] = j["progress"];
            else if (ev->id == OPENACE_EVENT_JOB_STATE && ev->final)
                final_state[ev->job_id] = j;
        } while (std::chrono::steady_clock::now() < end);
    }
};

// Pumps every watch until `done` or the timeout; true when done.
bool pump_until(std::vector<Watch *> watches, const std::function<bool()> &done, double timeout_s)
{
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < end) {
        for (Watch *w : watches)
            w->pump(0.02);
        if (done())
            return true;
    }
    return false;
}

struct Broadcaster {
    std::unique_ptr<Engine> engine;
    std::unique_ptr<Watch> watch;
    int64_t job = 0;
    json live; // the first progress with a content id
    void start(const std::string &state_dir, const std::string &save = {})
    {
        engine = std::make_unique<Engine>(live_config(state_dir));
        watch = std::make_unique<Watch>(Watch{*engine, {}, {}});
        json spec = {{"type", "broadcast"}, {"source", kSource}, {"name", "test"}};
        if (!save.empty())
            spec["save"] = save;
        job = engine->submit_job(spec.dump());
        REQUIRE(job > 0);
        REQUIRE(pump_until({watch.get()}, [&] { return number(watch->progress[job], "pieces") >= 3; }, 30));
        live = watch->progress[job];
    }
    std::string peer() const { return "127.0.0.1:" + std::to_string(live["listen_port"].get<int>()); }
    std::string id() const { return live["content_id"].get<std::string>(); }
};

struct Viewer {
    std::unique_ptr<Engine> engine;
    std::unique_ptr<Watch> watch;
    int64_t job = 0;
    std::string output;
    void start(const std::string &state_dir, json source, const std::string &peer, bool pex = true)
    {
        engine = std::make_unique<Engine>(live_config(state_dir, pex));
        watch = std::make_unique<Watch>(Watch{*engine, {}, {}});
        output = state_dir + "/out.ts";
        source["type"] = "play";
        source["output"] = output;
        source["peers"] = {peer};
        job = engine->submit_job(source.dump());
        REQUIRE(job > 0);
    }
    const json &p() { return watch->progress[job]; }
    std::int64_t written() { return number(p(), "pieces_written"); }
    // Our listen port, from the engine's stats.
    std::string peer()
    {
        json s = json::parse(engine->stats_json());
        const int port = s["engines"]["transport"]["details"]["listen_port"].get<int>();
        REQUIRE(port > 0);
        return "127.0.0.1:" + std::to_string(port);
    }
};

void require_decodes(const std::string &path)
{
    REQUIRE(fs::exists(path));
    REQUIRE(fs::file_size(path) > 0);
    auto r = testcmd::run("ffprobe -v error -show_entries stream=codec_type -of csv=p=0 '" + path + "'", 30, true);
    INFO(r.out);
    REQUIRE(r.code == 0);
    REQUIRE(r.out.find("video") != std::string::npos);
    // Errors (not warnings) while decoding every frame.
    auto d = testcmd::run("ffmpeg -v error -i '" + path + "' -f null -", 60, true);
    INFO(d.out);
    REQUIRE(d.code == 0);
    REQUIRE(d.out.empty());
}

} // namespace

TEST_CASE("live: a broadcast reaches the end of a chain where each viewer reaches only the one before it")
{
    testdir::TempDir tmp("live-chain");
    REQUIRE(!tmp.path.empty());
    Broadcaster b;
    b.start(tmp.path + "/b");
    REQUIRE(b.id().size() == 40);
    REQUIRE(b.live.value("link", "") == "acestream://" + b.id());

    // B <- V1 <- V2 <- V3, PEX off so that nobody learns a shortcut.
    std::vector<std::unique_ptr<Viewer>> v;
    std::string upstream = b.peer();
    for (int i = 0; i < 3; ++i) {
        auto viewer = std::make_unique<Viewer>();
        viewer->start(tmp.path + "/v" + std::to_string(i), {{"content_id", "acestream://" + b.id()}}, upstream, false);
        upstream = viewer->peer();
        v.push_back(std::move(viewer));
    }
    std::vector<Watch *> all{b.watch.get()};
    for (auto &x : v)
        all.push_back(x->watch.get());
    const bool flowing = pump_until(all, [&] { return v[2]->written() >= 6; }, 40);
    INFO("end of chain: " << v[2]->p().dump());
    REQUIRE(flowing);
    for (auto &x : v) {
        INFO(x->p().dump());
        CHECK(x->p().value("state", "") == "playing");
        CHECK(x->p()["startup_s"].is_number());
        CHECK(x->p().value("bans", 1) == 0);
    }
    // Only the first viewer talks to the broadcaster; the others got every
    // byte from a peer.
    CHECK(v[0]->p().value("bytes_from_source", 0) > 0);
    CHECK(v[2]->p().value("bytes_from_source", 1) == 0);
    CHECK(v[2]->p().value("bytes_from_peers", 0) > 0);
    CHECK(v[1]->p().value("uploaded", 0) > 0);
    for (auto &x : v) {
        x->engine->cancel_job(x->job);
        x->engine.reset(); // closes the output
        require_decodes(x->output);
    }
}

TEST_CASE("live: a viewer plays from the descriptor file, and the broadcaster restarts with the same content id")
{
    testdir::TempDir tmp("live-restart");
    REQUIRE(!tmp.path.empty());
    const std::string desc = tmp.path + "/channel.acelive";
    Broadcaster b;
    b.start(tmp.path + "/b", desc);
    const std::string id = b.id();
    REQUIRE(fs::exists(desc));
    REQUIRE(b.live.value("descriptor", "") == desc);

    Viewer v;
    v.start(tmp.path + "/v", {{"descriptor", desc}}, b.peer());
    REQUIRE(pump_until({b.watch.get(), v.watch.get()}, [&] { return v.written() >= 3; }, 30));
    const auto before = v.written();

    // Restart: same state dir, so the same key and creation time.
    const auto port = b.live["listen_port"].get<int>();
    b.engine.reset();
    json cfg = json::parse(live_config(tmp.path + "/b"));
    cfg["transport"]["listen_port"] = port; // where the viewer looks for it
    b.engine = std::make_unique<Engine>(cfg.dump());
    b.watch = std::make_unique<Watch>(Watch{*b.engine, {}, {}});
    b.job = b.engine->submit_job(json{{"type", "broadcast"}, {"source", kSource}, {"name", "test"}}.dump());
    REQUIRE(pump_until({b.watch.get(), v.watch.get()}, [&] { return !b.watch->progress[b.job].is_null(); }, 10));
    CHECK(b.watch->progress[b.job].value("content_id", "") == id);

    const bool resumed = pump_until({b.watch.get(), v.watch.get()}, [&] { return v.written() >= before + 4; }, 45);
    INFO(v.p().dump());
    REQUIRE(resumed);
    v.engine->cancel_job(v.job);
    v.engine.reset();
    require_decodes(v.output);
}

TEST_CASE("live: broadcast and live play job fields are checked and named")
{
    testdir::TempDir tmp("live-fields");
    REQUIRE(!tmp.path.empty());
    Engine e(live_config(tmp.path));
    auto rejects = [&](const json &spec, const std::string &field) {
        INFO(spec.dump());
        try {
            e.submit_job(spec.dump());
            FAIL("accepted");
        } catch (const Error &err) {
            INFO(err.what());
            CHECK(err.code() == Errc::JOB);
            CHECK(std::string(err.what()).find("'" + field + "'") != std::string::npos);
        }
    };
    rejects({{"type", "broadcast"}}, "source");
    rejects({{"type", "broadcast"}, {"source", kSource}, {"piece_duration", 0}}, "piece_duration");
    rejects({{"type", "broadcast"}, {"source", kSource}, {"ladder", {"720p", "480p"}}}, "ladder");
    rejects({{"type", "broadcast"}, {"source", kSource}, {"colour", "red"}}, "colour");
    rejects({{"type", "play"}, {"content_id", "acestream://1234"}, {"output", "-"}}, "content_id");
    rejects({{"type", "play"}, {"content_id", std::string(40, 'a')}, {"descriptor", "x.acelive"}, {"output", "-"}},
            "content_id");
    rejects({{"type", "play"}, {"content_id", std::string(40, 'a')}}, "output");
    rejects({{"type", "play"}, {"content_id", std::string(40, 'a')}, {"output", "-"}, {"peers", {"nowhere"}}}, "peers");

    // A descriptor file that is not one fails the job and names the file.
    const std::string bogus = tmp.path + "/bogus.acelive";
    std::ofstream(bogus) << "d4:name3:abce";
    int64_t id = e.submit_job(json{{"type", "play"}, {"descriptor", bogus}, {"output", tmp.path + "/o.ts"}}.dump());
    Watch w{e, {}, {}};
    REQUIRE(pump_until({&w}, [&] { return w.final_state.count(id) != 0; }, 10));
    INFO(w.final_state[id].dump());
    CHECK(w.final_state[id].value("state", "") == "failed");
    CHECK(w.final_state[id].dump().find("bogus.acelive") != std::string::npos);
}

TEST_CASE("live: chat lines reach the other side, and a sender over the rate limit is held back")
{
    testdir::TempDir tmp("live-chat");
    REQUIRE(!tmp.path.empty());
    Broadcaster b;
    b.start(tmp.path + "/b");
    Viewer v;
    v.start(tmp.path + "/v", {{"content_id", b.id()}}, b.peer());
    REQUIRE(pump_until({b.watch.get(), v.watch.get()}, [&] { return v.written() >= 1; }, 30));

    // Lines received, as the jobs report them.
    auto collect = [](Watch &w, int64_t job, std::vector<std::string> &out) {
        auto &p = w.progress[job];
        if (p.contains("chat")) {
            for (auto &l : p["chat"])
                out.push_back(l["text"].get<std::string>());
            p.erase("chat");
        }
    };
    std::vector<std::string> at_b, at_v;
    auto chat = [&](Engine &e, const std::string &text) {
        return e.submit_job(json{{"type", "chat"}, {"content_id", b.id()}, {"text", text}}.dump());
    };
    // Six lines at once from the viewer: its own log takes five (5 per 10 s).
    std::vector<int64_t> jobs;
    for (int i = 0; i < 6; ++i)
        jobs.push_back(chat(*v.engine, "hello " + std::to_string(i)));
    chat(*b.engine, "welcome");
    REQUIRE(pump_until({b.watch.get(), v.watch.get()},
                       [&] {
                           collect(*b.watch, b.job, at_b);
                           collect(*v.watch, v.job, at_v);
                           return at_b.size() >= 5 && !at_v.empty() && v.watch->final_state.count(jobs.back());
                       },
                       15));
    // The broadcaster's job shows its own line too.
    std::erase(at_b, "welcome");
    CHECK(at_b == std::vector<std::string>{"hello 0", "hello 1", "hello 2", "hello 3", "hello 4"});
    CHECK(std::find(at_v.begin(), at_v.end(), "welcome") != at_v.end());
    CHECK(v.watch->final_state[jobs[0]].value("state", "") == "done");
    CHECK(v.watch->final_state[jobs.back()].value("state", "") == "failed");
    CHECK(v.watch->final_state[jobs.back()].dump().find("rate") != std::string::npos);

    // Bounded: too long, or for a stream we do not watch.
    CHECK_THROWS_AS(chat(*v.engine, std::string(513, 'x')), Error);
    const int64_t other = v.engine->submit_job(
        json{{"type", "chat"}, {"content_id", std::string(40, 'b')}, {"text", "anyone?"}}.dump());
    REQUIRE(pump_until({v.watch.get()}, [&] { return v.watch->final_state.count(other) != 0; }, 10));
    CHECK(v.watch->final_state[other].value("state", "") == "failed");
}

TEST_CASE("live: a broadcast with its own key has another content id, the same on every start, and a bad source fails the job")
{
    testdir::TempDir tmp("live-key");
    REQUIRE(!tmp.path.empty());
    // A key of its own (made the way the engine makes its identity key).
    const std::string key = tmp.path + "/channel/identity.key";
    transport::load_or_create_identity(tmp.path + "/channel");
    REQUIRE(fs::exists(key));

    Engine e(live_config(tmp.path + "/state"));
    Watch w{e, {}, {}};
    auto first_progress = [&](const json &spec) {
        const int64_t id = e.submit_job(spec.dump());
        REQUIRE(pump_until({&w}, [&] { return w.progress[id].is_object() || w.final_state.count(id); }, 20));
        return std::make_pair(id, w.progress[id]);
    };
    json spec = {{"type", "broadcast"}, {"source", kSource}, {"name", "keyed"}};
    auto [plain_job, plain] = first_progress(spec);
    e.cancel_job(plain_job);
    spec["key"] = key;
    auto [keyed_job, keyed] = first_progress(spec);
    e.cancel_job(keyed_job);
    auto [again_job, again] = first_progress(spec);
    e.cancel_job(again_job);
    INFO(plain.dump() << "\n" << keyed.dump());
    REQUIRE(plain.value("content_id", "").size() == 40);
    CHECK(keyed.value("content_id", "") != plain.value("content_id", ""));
    CHECK(again.value("content_id", "") == keyed.value("content_id", ""));

    // A key that is not one, and a source that is not there: the job fails
    // and says which.
    const std::string bogus = tmp.path + "/bogus.pem";
    std::ofstream(bogus) << "not a key";
    spec["key"] = bogus;
    const int64_t bad_key = e.submit_job(spec.dump());
    spec.erase("key");
    spec["source"] = tmp.path + "/missing.ts";
    const int64_t bad_source = e.submit_job(spec.dump());
    REQUIRE(pump_until({&w}, [&] { return w.final_state.count(bad_key) && w.final_state.count(bad_source); }, 30));
    INFO(w.final_state[bad_key].dump() << "\n" << w.final_state[bad_source].dump());
    CHECK(w.final_state[bad_key].value("state", "") == "failed");
    CHECK(w.final_state[bad_key].dump().find("bogus.pem") != std::string::npos);
    CHECK(w.final_state[bad_source].value("state", "") == "failed");
    CHECK(w.final_state[bad_source].dump().find("missing.ts") != std::string::npos);
}

TEST_CASE("live: players read a live stream through the Ace Stream HTTP API, five at once, and stop it")
{
    testdir::TempDir tmp("live-ace");
    REQUIRE(!tmp.path.empty());
    Broadcaster b;
    b.start(tmp.path + "/b");
    json cfg = json::parse(live_config(tmp.path + "/v"));
    cfg["transport"]["peers"] = {b.peer()};
    cfg["streaming"]["idle_timeout"] = 2.0; // seconds without a reader before a session stops
    Engine viewer(cfg.dump());
    const std::string api = viewer.http_address();
    const std::string id = b.id();

    // format=json: Acexy's fields with Ace's JSON types.
    auto r = testhttp::get(api, "/ace/getstream?id=" + id + "&format=json&pid=acexy-1");
    REQUIRE(r.status == 200);
    json j = json::parse(r.body);
    INFO(j.dump());
    REQUIRE(j["error"].is_null());
    const json &resp = j["response"];
    CHECK(resp["infohash"] == id);
    CHECK(resp["is_live"] == 1);
    CHECK(resp["is_encrypted"] == 0);
    CHECK(resp["client_session_id"] == -1);
    for (const char *k : {"playback_url", "stat_url", "command_url", "playback_session_id"})
        CHECK(resp[k].is_string());
    const std::string prefix = "http://" + api;
    auto path_of = [&](const std::string &url) { return url.substr(prefix.size()); };
    const std::string stat = path_of(resp["stat_url"]), cmd = path_of(resp["command_url"]);
    CHECK(json::parse(testhttp::get(api, stat).body)["response"]["status"] == "prebuf");

    // The JSON player reads its playback_url, then its stat says dl with livepos strings.
    auto read = testcmd::run("ffmpeg -nostdin -v error -t 2 -i '" + resp["playback_url"].get<std::string>() +
                                 "' -f null -",
                             30, true);
    INFO(read.out);
    CHECK(read.code == 0);
    json st = json::parse(testhttp::get(api, stat).body);
    INFO(st.dump());
    CHECK(st["error"].is_null());
    CHECK(st["response"]["status"] == "dl");
    CHECK(st["response"]["peers"].get<int>() >= 1);
    CHECK(st["response"]["livepos"]["last"].is_string());
    CHECK(st["response"]["livepos"]["live_first"].is_string());
    CHECK(st["response"]["speed_down"].is_number_integer());

    // stop, then the session is gone.
    auto stop = testhttp::get(api, cmd + "?method=stop");
    CHECK(json::parse(stop.body) == json::parse(R"({"response":"ok","error":null})"));
    CHECK(json::parse(testhttp::get(api, stat).body)["error"] == "unknown playback session id");

    // Five players at once through the redirect; the first leaves after 1 s,
    // the others each decode 4 s without an error.
    const std::string url = prefix + "/ace/getstream?id=acestream://" + id;
    const std::string script = tmp.path + "/five.sh";
    std::ofstream(script) << "for i in 1 2 3 4 5; do t=4; [ $i = 1 ] && t=1; "
                             "(ffmpeg -nostdin -v error -t $t -i '" << url << "' -f null - || echo FAIL $i) & done; wait\n";
    auto five = testcmd::run("sh " + script, 60, true);
    INFO(five.out);
    CHECK(five.code == 0);
    CHECK(five.out.empty());

    // Bad requests get 4xx with the reason, and the engine goes on serving.
    CHECK(testhttp::get(api, "/ace/getstream").status == 400);
    auto bad = testhttp::get(api, "/ace/getstream?id=xyz&format=json");
    CHECK(bad.status == 400);
    CHECK(json::parse(bad.body)["error"].get<std::string>().find("xyz") != std::string::npos);
    CHECK(testhttp::get(api, "/ace/r/" + id + "/nokey").status == 404);
    CHECK(testhttp::get(api, "/webui/api/service?method=get_version").status == 200);

    // A session nobody reads stops by itself after streaming.idle_timeout.
    json idle = json::parse(testhttp::get(api, "/ace/getstream?id=" + id + "&format=json").body);
    const std::string idle_stat = path_of(idle["response"]["stat_url"]);
    CHECK(json::parse(testhttp::get(api, idle_stat).body)["error"].is_null());
    std::this_thread::sleep_for(std::chrono::milliseconds(4500));
    CHECK(json::parse(testhttp::get(api, idle_stat).body)["error"] == "unknown playback session id");
}

TEST_CASE("live: the Ace API serves a live stream as HLS and liveseek moves a player back in the window")
{
    testdir::TempDir tmp("live-hls");
    REQUIRE(!tmp.path.empty());
    Broadcaster b;
    b.start(tmp.path + "/b");
    json cfg = json::parse(live_config(tmp.path + "/v"));
    cfg["transport"]["peers"] = {b.peer()};
    Engine viewer(cfg.dump());
    const std::string api = viewer.http_address();
    const std::string id = b.id();

    // The playlist waits for its first segments, then slides (RFC 8216).
    auto redirect = testhttp::get(api, "/ace/manifest.m3u8?id=" + id + "&pid=hls-1");
    REQUIRE(redirect.status == 302);
    const std::string m3u8 = redirect.headers["location"];
    CHECK(m3u8.rfind("/ace/m/" + id + "/", 0) == 0);
    auto pl = testhttp::get(api, m3u8);
    INFO(pl.body);
    REQUIRE(pl.status == 200);
    CHECK(pl.headers["content-type"] == "application/vnd.apple.mpegurl");
    CHECK(pl.body.rfind("#EXTM3U\n", 0) == 0);
    CHECK(pl.body.find("#EXT-X-TARGETDURATION:") != std::string::npos);
    CHECK(pl.body.find("#EXT-X-ENDLIST") == std::string::npos);
    const auto uri_at = pl.body.find("/ace/c/" + id + "/");
    REQUIRE(uri_at != std::string::npos);
    const std::string seg_uri = pl.body.substr(uri_at, pl.body.find('\n', uri_at) - uri_at);
    auto seg = testhttp::get(api, seg_uri);
    CHECK(seg.status == 200);
    CHECK(seg.headers["content-type"] == "video/mp2t");
    REQUIRE(!seg.body.empty());
    CHECK(seg.body.size() % 188 == 0);
    CHECK(seg.body[0] == 0x47);
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    auto later = testhttp::get(api, m3u8);
    CHECK(later.body != pl.body); // newer segments came
    CHECK(testhttp::get(api, "/ace/c/" + id + "/99999999.ts").status == 404);

    // FFmpeg plays the HLS URL as a player would.
    auto hls = testcmd::run("ffmpeg -nostdin -v error -t 3 -i 'http://" + api + "/ace/manifest.m3u8?id=" + id +
                                "' -f null -",
                            60, true);
    INFO(hls.out);
    CHECK(hls.code == 0);

    // liveseek: a progressive reader asks for the start of the window and
    // gets those pieces at once, well faster than real time.
    json s = json::parse(testhttp::get(api, "/ace/getstream?id=" + id + "&format=json&pid=seek").body)["response"];
    const std::string prefix = "http://" + api;
    const std::string r_path = s["playback_url"].get<std::string>().substr(prefix.size());
    const std::string stat = s["stat_url"].get<std::string>().substr(prefix.size());
    const std::string cmd = s["command_url"].get<std::string>().substr(prefix.size());
    int fd = testhttp::connect_to(api, 1);
    testhttp::send_all(fd, "GET " + r_path + " HTTP/1.1\r\nHost: x\r\n\r\n");
    auto read_for = [&](double seconds) {
        std::size_t got = 0;
        char buf[65536];
        auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
        while (std::chrono::steady_clock::now() < end) {
            ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n > 0)
                got += static_cast<std::size_t>(n);
            else if (n == 0)
                break;
        }
        return got;
    };
    const std::size_t live_rate = read_for(3.0) / 3; // bytes a second at the live edge
    REQUIRE(live_rate > 0);
    json livepos = json::parse(testhttp::get(api, stat).body)["response"]["livepos"];
    INFO(livepos.dump());
    REQUIRE(livepos["live_first"].is_string());
    const std::uint64_t first = std::stoull(livepos["live_first"].get<std::string>());
    const std::uint64_t last = std::stoull(livepos["live_last"].get<std::string>());
    REQUIRE(last >= first + 4);
    auto ok = testhttp::get(api, cmd + "?method=liveseek&pos=" + std::to_string(first));
    CHECK(json::parse(ok.body) == json::parse(R"({"response":"ok","error":null})"));
    const std::size_t after = read_for(1.0);
    CHECK(after > 3 * live_rate); // several seconds of the window arrived within one
    ::close(fd);
    auto outside = testhttp::get(api, cmd + "?method=liveseek&pos=" + std::to_string(last + 100000));
    CHECK(outside.status == 400);
    CHECK(outside.body.find("pos") != std::string::npos);
    auto garbage = testhttp::get(api, cmd + "?method=liveseek&pos=abc");
    CHECK(garbage.status == 400);
    CHECK(testhttp::get(api, cmd + "?method=dance").status == 400);
}
