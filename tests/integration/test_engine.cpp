// A whole engine through the public C++ facade: loop thread, five engines,
// jobs, events, statistics, logs.
#include <openace/engine.hpp>

#include "http_client.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <poll.h>

#include <atomic>
#include <set>
#include <thread>
#include <chrono>

using namespace openace;
using nlohmann::json;

namespace {

const char *kConfig = R"({"engine":{"http_address":"127.0.0.1:0"},"logging":{"console":false}})";

// Reads events until the job's final one (bounded).
json wait_final(Engine &e, int64_t job, std::vector<std::string> *states = nullptr)
{
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
        auto ev = e.wait_event(1.0);
        if (!ev || ev->id != OPENACE_EVENT_JOB_STATE || ev->job_id != job)
            continue;
        auto j = json::parse(ev->json);
        if (states)
            states->push_back(j["state"]);
        if (ev->final)
            return j;
    }
    FAIL("no final event for job " << job);
    return {};
}

json stats(Engine &e) { return json::parse(e.stats_json()); }

} // namespace

TEST_CASE("engine: a probe job runs end to end and its result arrives in the final event")
{
    Engine e(kConfig);
    auto id = e.submit_job(R"({"type":"probe"})");
    CHECK(id > 0);
    std::vector<std::string> states;
    auto fin = wait_final(e, id, &states);
    CHECK(states == std::vector<std::string>{"queued", "running", "done"});
    auto &r = fin["result"];
    CHECK(r["version"] == version_string());
    CHECK(r["ffmpeg"]["libavformat"].get<std::string>().size() >= 5);
    CHECK(r["ffmpeg"]["version"].is_string());
    CHECK(r["build_type"].is_string());
    REQUIRE(r["hardware_devices"].is_array());
    for (auto &d : r["hardware_devices"]) {
        CHECK(d["type"].is_string());
        CHECK(d["available"].is_boolean());
        if (!d["available"].get<bool>())
            CHECK(d["error"].is_string()); // each rejected device says why
    }
}

TEST_CASE("engine: statistics report each engine, the process, the log and the jobs")
{
    Engine e(kConfig);
    wait_final(e, e.submit_job(R"({"type":"probe","hardware":false})"));
    auto s = stats(e);
    for (auto name : {"main", "segmenter", "transport", "live", "streamer"}) {
        INFO(name);
        auto &en = s["engines"][name];
        CHECK(en["state"] == "running");
        CHECK(en["health"] == "healthy");
        CHECK(en["uptime_ms"].get<int64_t>() >= 0);
        CHECK(en["operations"]["total"].is_number_unsigned());
        CHECK(en["avg_response_ms"].is_number());
        CHECK(en["memory_bytes"].is_number());
    }
    CHECK(s["engines"]["main"]["operations"]["successful"] == 1);
    CHECK(s["jobs"]["done"] == 1);
    CHECK(s["process"]["rss_bytes"].get<uint64_t>() > 1000000);
    CHECK(s["process"]["cpu_seconds"].get<double>() > 0);
    CHECK(s["log"]["health"] == "healthy");
    CHECK(s["log"]["total"].get<uint64_t>() > 0);
}

TEST_CASE("engine: stopping transport stops its dependents and start brings the HTTP API back")
{
    Engine e(kConfig);
    auto addr = e.http_address();
    CHECK(testhttp::get(addr, "/api/stats").status == 200);
    e.control("transport", "stop");
    auto s = stats(e);
    CHECK(s["engines"]["transport"]["state"] == "stopped");
    CHECK(s["engines"]["live"]["state"] == "stopped");
    CHECK(s["engines"]["streamer"]["state"] == "stopped");
    CHECK(s["engines"]["segmenter"]["state"] == "running");
    CHECK(s["engines"]["streamer"]["health"] == "warning");
    CHECK(e.http_address().empty());
    CHECK_THROWS(testhttp::get(addr, "/api/stats")); // nothing listens now
    e.control("streamer", "start");                 // brings live and transport back first
    s = stats(e);
    for (auto name : {"transport", "live", "streamer"})
        CHECK(s["engines"][name]["state"] == "running");
    CHECK(testhttp::get(e.http_address(), "/api/stats").status == 200);
}

TEST_CASE("engine: restarting one engine leaves the others running")
{
    Engine e(kConfig);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto before = stats(e);
    e.control("segmenter", "restart");
    auto after = stats(e);
    CHECK(after["engines"]["segmenter"]["state"] == "running");
    CHECK(after["engines"]["segmenter"]["uptime_ms"] < before["engines"]["segmenter"]["uptime_ms"]);
    for (auto name : {"main", "transport", "live", "streamer"})
        CHECK(after["engines"][name]["uptime_ms"] >= before["engines"][name]["uptime_ms"]);
}

TEST_CASE("engine: a paused main engine holds jobs in the queue and cancel ends them")
{
    Engine e(kConfig);
    e.control("main", "pause");
    auto a = e.submit_job(R"({"type":"probe","hardware":false})");
    auto b = e.submit_job(R"({"type":"probe","hardware":false,"priority":5})");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto s = stats(e);
    CHECK(s["jobs"]["queued"] == 2);
    CHECK(s["engines"]["main"]["state"] == "paused");
    e.cancel_job(a);
    CHECK(wait_final(e, a)["state"] == "cancelled");
    try {
        e.cancel_job(a);
        FAIL("second cancel must fail");
    } catch (const Error &err) {
        CHECK(err.code() == Errc::STATE);
    }
    e.control("main", "resume");
    CHECK(wait_final(e, b)["state"] == "done");
}

TEST_CASE("engine: a full event queue reports overflow and keeps every final event")
{
    // Log entries become events (debug and up) and flood a tiny queue.
    Engine e(R"({"engine":{"http_address":"127.0.0.1:0","event_queue_size":8,"log_level":"debug"},
                 "logging":{"console":false,"event_level":"debug"}})");
    std::vector<int64_t> ids;
    for (int i = 0; i < 3; ++i)
        ids.push_back(e.submit_job(R"({"type":"probe","hardware":false})"));
    // Wait (without reading events) until all three ended.
    for (int i = 0; i < 600 && stats(e)["jobs"]["done"] != 3; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    int overflow = 0;
    std::set<int64_t> finals;
    while (auto ev = e.wait_event(0)) {
        overflow += ev->id == OPENACE_EVENT_OVERFLOW;
        if (ev->final)
            finals.insert(ev->job_id);
    }
    CHECK(overflow >= 1);
    CHECK(finals == std::set<int64_t>(ids.begin(), ids.end()));
    CHECK(stats(e)["events"]["dropped"].get<uint64_t>() > 0);
}

TEST_CASE("engine: the wakeup callback and the wakeup fd signal pending events")
{
    Engine e(kConfig);
    while (e.wait_event(0)) {
    }
    std::atomic<int> wakeups{0};
    e.set_wakeup_callback([&] { ++wakeups; });
    e.submit_job(R"({"type":"probe","hardware":false})");
    pollfd p{e.wakeup_fd(), POLLIN, 0};
    CHECK(::poll(&p, 1, 10000) == 1);
    CHECK(wakeups >= 1);
    e.set_wakeup_callback(nullptr);
}

TEST_CASE("engine: a bad config is refused with the key and line named")
{
    try {
        Engine e("[engine]\nhttp_address = \"127.0.0.1:0\"\nmax_peers = \"many\"\n");
        FAIL("config must be refused");
    } catch (const Error &err) {
        CHECK(err.code() == Errc::CONFIG);
        std::string msg = err.what();
        CHECK(msg.find("engine.max_peers") != std::string::npos);
        CHECK(msg.find(":3") != std::string::npos);
    }
}

TEST_CASE("engine: an HTTP address in use fails start with a clear error")
{
    Engine first(kConfig);
    auto taken = first.http_address();
    try {
        Engine second(R"({"engine":{"http_address":")" + taken + R"("},"logging":{"console":false}})");
        FAIL("second engine must not start on a taken port");
    } catch (const Error &err) {
        CHECK(err.code() == Errc::NET);
        CHECK(std::string(err.what()).find(taken) != std::string::npos);
    }
    CHECK(testhttp::get(taken, "/api/stats").status == 200); // the first one is unharmed
}

TEST_CASE("engine: shutdown is idempotent and later calls report ESHUTDOWN")
{
    Engine e(kConfig);
    e.submit_job(R"({"type":"probe"})"); // still running or queued at shutdown
    e.shutdown();
    e.shutdown();
    try {
        e.submit_job(R"({"type":"probe"})");
        FAIL("submit after shutdown must fail");
    } catch (const Error &err) {
        CHECK(err.code() == Errc::SHUTDOWN);
    }
    bool saw_shutdown = false;
    while (auto ev = e.wait_event(0))
        saw_shutdown |= ev->id == OPENACE_EVENT_SHUTDOWN;
    CHECK(saw_shutdown);
}

TEST_CASE("engine: logs can be searched by component, level, text and job id")
{
    Engine e(R"({"engine":{"http_address":"127.0.0.1:0","log_level":"debug"},"logging":{"console":false}})");
    auto id = e.submit_job(R"({"type":"probe","hardware":false})");
    wait_final(e, id);
    auto by_job = json::parse(e.logs_json(R"({"job_id":)" + std::to_string(id) + "}"));
    REQUIRE(by_job["entries"].size() >= 2);
    for (auto &en : by_job["entries"])
        CHECK(en["job_id"] == id);
    auto by_text = json::parse(e.logs_json(R"({"text":"HTTP API LISTENING"})"));
    REQUIRE(by_text["entries"].size() == 1);
    CHECK(by_text["entries"][0]["component"] == "streamer");
    auto warn = json::parse(e.logs_json(R"({"level":"warn"})"));
    for (auto &en : warn["entries"])
        CHECK((en["level"] == "warn" || en["level"] == "error"));
    CHECK_THROWS_AS(e.logs_json(R"({"level":"loud"})"), Error);
    CHECK_THROWS_AS(e.logs_json("{oops"), Error);
}

TEST_CASE("engine: the media module loads on the first media job, not at start")
{
    Engine e(kConfig);
    auto details = [&] { return stats(e)["engines"]["segmenter"]["details"]["ffmpeg"]; };
    // ctest runs each case in its own process, so nothing loaded it before.
    bool before = details()["loaded"].get<bool>();
    CHECK_FALSE(before);
    CHECK(testhttp::get(e.http_address(), "/metrics").status == 200);
    CHECK(details()["loaded"] == before);
    wait_final(e, e.submit_job(R"({"type":"probe","hardware":false})"));
    auto d = details();
    CHECK(d["loaded"] == true);
    CHECK(d["libavformat"].is_string());
    CHECK(d["module"].get<std::string>().find("libopenace_media.so") != std::string::npos);
}
