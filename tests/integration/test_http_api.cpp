// The engine's HTTP API over real sockets: the Ace Stream get_version call,
// /metrics, /api/stats, /api/logs, and bad requests that must not hurt it.
#include <openace/engine.hpp>

#include "http_client.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace openace;
using nlohmann::json;

namespace {
const char *kConfig = R"({"engine":{"http_address":"127.0.0.1:0"},"logging":{"console":false}})";
}

TEST_CASE("http api: get_version answers in the Ace Stream format with Ace's JSON types")
{
    Engine e(kConfig);
    auto r = testhttp::get(e.http_address(), "/webui/api/service?method=get_version");
    CHECK(r.status == 200);
    CHECK(r.headers["content-type"].find("application/json") == 0);
    CHECK(r.headers["access-control-allow-origin"] == "*");
    auto j = json::parse(r.body);
    CHECK(j["error"].is_null());
    CHECK(j["result"]["code"].is_number_integer());
    CHECK(j["result"]["platform"] == "linux");
    CHECK(j["result"]["version"].is_string());
    CHECK(j["result"]["openace_version"] == version_string());
}

TEST_CASE("http api: get_version as JSONP wraps the object in the callback")
{
    Engine e(kConfig);
    auto r = testhttp::get(e.http_address(),
                           "/webui/api/service?method=get_version&format=jsonp&callback=cb_1");
    CHECK(r.status == 200);
    REQUIRE(r.body.rfind("cb_1(", 0) == 0);
    REQUIRE(r.body.size() > 7);
    CHECK(r.body.substr(r.body.size() - 2) == ");");
    auto inner = json::parse(r.body.substr(5, r.body.size() - 7));
    CHECK(inner["result"]["platform"] == "linux");
    auto bad = testhttp::get(e.http_address(),
                             "/webui/api/service?method=get_version&format=jsonp&callback=alert(1)");
    CHECK(bad.status == 400);
    CHECK(bad.body.find("callback") != std::string::npos);
}

TEST_CASE("http api: unknown or missing service methods get an Ace-style error")
{
    Engine e(kConfig);
    auto r = testhttp::get(e.http_address(), "/webui/api/service?method=fly");
    CHECK(r.status == 404);
    auto j = json::parse(r.body);
    CHECK(j["result"].is_null());
    CHECK(j["error"].get<std::string>().find("fly") != std::string::npos);
    CHECK(testhttp::get(e.http_address(), "/webui/api/service").status == 400);
}

TEST_CASE("http api: /metrics is Prometheus text with engine, job, log and process series")
{
    Engine e(kConfig);
    auto r = testhttp::get(e.http_address(), "/metrics");
    CHECK(r.status == 200);
    CHECK(r.headers["content-type"].find("text/plain") == 0);
    for (auto needle : {"# TYPE openace_engine_up gauge", "openace_engine_up{engine=\"streamer\"} 1",
                        "openace_engine_up{engine=\"main\"} 1", "openace_jobs_total{state=\"done\"}",
                        "openace_log_entries_total{level=\"info\"}",
                        "openace_process_resident_memory_bytes", "openace_http_requests_total"})
        CHECK(r.body.find(needle) != std::string::npos);
    // Every sample line is "name{labels} value" or "name value".
    std::istringstream in(r.body);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#')
            continue;
        auto sp = line.rfind(' ');
        REQUIRE(sp != std::string::npos);
        CHECK_NOTHROW(std::stod(line.substr(sp + 1)));
    }
}

TEST_CASE("http api: /api/stats is the stats object and /api/logs filters entries")
{
    Engine e(kConfig);
    auto s = testhttp::get(e.http_address(), "/api/stats");
    CHECK(s.status == 200);
    CHECK(json::parse(s.body)["engines"]["streamer"]["state"] == "running");

    auto l = testhttp::get(e.http_address(), "/api/logs?component=streamer&text=listening&limit=5");
    CHECK(l.status == 200);
    auto j = json::parse(l.body);
    REQUIRE(j["entries"].size() == 1);
    CHECK(j["entries"][0]["component"] == "streamer");
    CHECK(j["stats"]["health"].is_string());

    auto bad = testhttp::get(e.http_address(), "/api/logs?level=loud");
    CHECK(bad.status == 400);
    CHECK(json::parse(bad.body)["error"].get<std::string>().find("level") != std::string::npos);
    auto bad2 = testhttp::get(e.http_address(), "/api/logs?limit=lots");
    CHECK(bad2.status == 400);
}

TEST_CASE("http api: malformed and oversized requests get 4xx and the engine keeps serving")
{
    Engine e(kConfig);
    auto addr = e.http_address();
    auto garbage = testhttp::raw_exchange(addr, "\x16\x03\x01 this is not HTTP\r\n\r\n");
    CHECK(garbage.status == 400);
    std::string huge(64 * 1024, 'a');
    auto big = testhttp::request(addr, "GET", "/api/stats", "X-Big: " + huge + "\r\n");
    CHECK(big.status == 431);
    auto missing = testhttp::get(addr, "/no/such/thing");
    CHECK(missing.status == 404);
    CHECK(json::parse(missing.body)["error"].get<std::string>().find("/no/such/thing") != std::string::npos);
    CHECK(testhttp::get(addr, "/webui/api/service?method=get_version").status == 200);
    auto st = json::parse(e.stats_json());
    CHECK(st["http"]["responses_4xx"].get<int>() >= 3);
    CHECK(st["engines"]["streamer"]["state"] == "running");
}

TEST_CASE("http api: a paused streamer answers 503 until resumed")
{
    Engine e(kConfig);
    auto addr = e.http_address();
    e.control("streamer", "pause");
    auto r = testhttp::get(addr, "/api/stats");
    CHECK(r.status == 503);
    CHECK(r.body.find("paused") != std::string::npos);
    e.control("streamer", "resume");
    CHECK(testhttp::get(addr, "/api/stats").status == 200);
}
