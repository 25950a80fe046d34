// The Ace Stream HTTP API for torrents, end to end in one process: one
// engine seeds an MP4 (made by FFmpeg) and a text file, another engine
// plays them through /ace/getstream (progressive, HTTP ranges, HEAD, media
// types, _idx), /ace/manifest.m3u8 (VOD HLS cut while it downloads),
// /ace/stat and /ace/cmd, every source selector (infohash, magnet, data,
// url=file://, content_id after get_content_id) and /server/api.  FFmpeg
// decodes what the players would.  Live HLS and liveseek are in
// test_live.cpp; real players, libtorrent and the TCP API in tests/interop.
#include <openace/engine.hpp>

#include "command.hpp"
#include "http_client.hpp"
#include "temp_dir.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <mbedtls/base64.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

using namespace openace;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string read_file(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

std::string config(const std::string &state_dir, json transport = json::object())
{
    json c = {{"engine", {{"http_address", "127.0.0.1:0"}, {"state_dir", state_dir}, {"tcp_api_address", ""}}},
              {"logging", {{"console", false}}},
              {"transport", {{"listen_port", 0}}},
              {"streaming", {{"idle_timeout", 30.0}}}};
    for (auto it = transport.begin(); it != transport.end(); ++it)
        c["transport"][it.key()] = it.value();
    return c.dump();
}

json wait_progress(Engine &e, int64_t job, const std::function<bool(const json &)> &until, double timeout_s = 60)
{
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
        auto ev = e.wait_event(0.2);
        if (!ev || ev->job_id != job)
            continue;
        auto j = json::parse(ev->json);
        if (ev->id == OPENACE_EVENT_JOB_PROGRESS && until(j["progress"]))
            return j["progress"];
        if (ev->id == OPENACE_EVENT_JOB_STATE && ev->final)
            return j;
    }
    return {};
}

std::string base64(const std::string &s)
{
    std::size_t n = 0;
    std::string out(s.size() * 4 / 3 + 8, '\0');
    mbedtls_base64_encode(reinterpret_cast<unsigned char *>(out.data()), out.size(), &n,
                          reinterpret_cast<const unsigned char *>(s.data()), s.size());
    out.resize(n);
    return out;
}

std::string url_encode(const std::string &s)
{
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.')
            out += static_cast<char>(c);
        else
            out += fmt::format("%{:02X}", c);
    }
    return out;
}

// The Location path of a 302.
std::string follow(const testhttp::Response &r)
{
    REQUIRE(r.status == 302);
    return r.headers.at("location");
}

} // namespace

TEST_CASE("playback: torrent files play through the Ace Stream HTTP API with ranges, HLS, stat and every selector")
{
    testdir::TempDir tmp("playback");
    REQUIRE(!tmp.path.empty());
    const std::string content = tmp.path + "/content";
    fs::create_directories(content);
    auto made = testcmd::run("ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=192x108:rate=25:duration=12 "
                             "-f lavfi -i sine=duration=12 -c:v libx264 -g 25 -c:a aac -shortest '" +
                                 content + "/movie.mp4'",
                             60, true);
    INFO(made.out);
    REQUIRE(made.code == 0);
    std::ofstream(content + "/notes.txt") << std::string(5000, 'n') << "end\n";
    const std::string movie = read_file(content + "/movie.mp4"), notes = read_file(content + "/notes.txt");

    Engine seeder(config(tmp.path + "/s"));
    const std::string torrent_file = tmp.path + "/c.torrent";
    int64_t seed = seeder.submit_job(
        json{{"type", "seed"}, {"path", content}, {"piece_length", 32768}, {"save_torrent", torrent_file}}.dump());
    json seeding = wait_progress(seeder, seed, [](const json &p) { return p.value("state", "") == "seeding"; });
    REQUIRE(seeding.value("state", "") == "seeding");
    const std::string ih = seeding["infohash"], peer = "127.0.0.1:" + std::to_string(seeding["listen_port"].get<int>());

    Engine viewer(config(tmp.path + "/v", {{"peers", {peer}}}));
    const std::string api = viewer.http_address();

    // Files are "content/movie.mp4" (index 0) and "content/notes.txt" (index 1).
    auto files = testhttp::get(api, "/server/api?api_version=3&method=get_media_files&infohash=" + ih);
    INFO(files.body);
    REQUIRE(files.status == 200);
    json fl = json::parse(files.body)["result"];
    CHECK(fl["infohash"] == ih);
    CHECK(fl["type"] == "vod");
    REQUIRE(fl["files"].size() == 2);
    CHECK(fl["files"][0]["filename"] == "content/movie.mp4");
    CHECK(fl["files"][0]["size"] == movie.size());
    CHECK(fl["files"][1]["size"] == notes.size());

    // The progressive stream: the largest file by default, byte for byte.
    const std::string r_path = follow(testhttp::get(api, "/ace/getstream?infohash=" + ih + "&pid=p1"));
    auto whole = testhttp::get(api, r_path);
    CHECK(whole.status == 200);
    CHECK(whole.headers["content-type"] == "video/mp4");
    CHECK(whole.headers["accept-ranges"] == "bytes");
    CHECK(whole.body.size() == movie.size());
    CHECK(whole.body == movie);

    // Ranges: a-b, a-, -n; outside -> 416; HEAD has the length only.
    auto part = testhttp::request(api, "GET", r_path, "Range: bytes=1000-1999\r\n");
    CHECK(part.status == 206);
    CHECK(part.headers["content-range"] == fmt::format("bytes 1000-1999/{}", movie.size()));
    CHECK(part.body == movie.substr(1000, 1000));
    auto tail = testhttp::request(api, "GET", r_path, "Range: bytes=-777\r\n");
    CHECK(tail.status == 206);
    CHECK(tail.body == movie.substr(movie.size() - 777));
    auto from = testhttp::request(api, "GET", r_path, fmt::format("Range: bytes={}-\r\n", movie.size() - 5000));
    CHECK(from.body == movie.substr(movie.size() - 5000));
    auto beyond = testhttp::request(api, "GET", r_path, fmt::format("Range: bytes={}-\r\n", movie.size()));
    CHECK(beyond.status == 416);
    CHECK(beyond.headers["content-range"] == fmt::format("bytes */{}", movie.size()));
    auto head = testhttp::request(api, "HEAD", r_path);
    CHECK(head.status == 200);
    CHECK(head.headers["content-length"] == std::to_string(movie.size()));
    CHECK(head.body.empty());

    // FFmpeg plays it over HTTP (seeking in the MP4 through ranges).
    auto decode = testcmd::run("ffmpeg -nostdin -v error -i 'http://" + api + r_path + "' -f null -", 60, true);
    INFO(decode.out);
    CHECK(decode.code == 0);

    // stat: the Ace fields with their JSON types.
    const std::string key = r_path.substr(r_path.rfind('/') + 1);
    json st = json::parse(testhttp::get(api, "/ace/stat/" + ih + "/" + key).body);
    INFO(st.dump());
    CHECK(st["error"].is_null());
    CHECK(st["response"]["status"] == "dl");
    CHECK(st["response"]["is_live"] == 0);
    CHECK(st["response"]["total_progress"].is_number_integer());
    CHECK(st["response"]["peers"].is_number_integer());
    CHECK(st["response"]["downloaded"].get<std::int64_t>() >= static_cast<std::int64_t>(movie.size()));

    // _idx: the other file, with its own media type; out of range -> 404 naming _idx.
    auto txt = testhttp::get(api, follow(testhttp::get(api, "/ace/getstream?infohash=" + ih + "&_idx=1")));
    CHECK(txt.headers["content-type"] == "application/octet-stream");
    CHECK(txt.body == notes);
    auto bad_idx = testhttp::get(api, follow(testhttp::get(api, "/ace/getstream?infohash=" + ih + "&_idx=7")));
    CHECK(bad_idx.status == 404);
    CHECK(bad_idx.body.find("_idx") != std::string::npos);
    CHECK(testhttp::get(api, "/ace/getstream?infohash=" + ih + "&_idx=x1").status == 400);

    // Every other selector reaches the same torrent session.
    const std::string torrent = read_file(torrent_file);
    REQUIRE(!torrent.empty());
    const std::string selectors[] = {"magnet=" + url_encode("magnet:?xt=urn:btih:" + ih + "&x.pe=" + peer),
                                     "data=" + url_encode(base64(torrent)),
                                     "url=" + url_encode("file://" + torrent_file)};
    for (const auto &sel : selectors) {
        json j = json::parse(testhttp::get(api, "/ace/getstream?format=json&_idx=1&" + sel).body);
        INFO(sel.substr(0, 60) << " -> " << j.dump());
        REQUIRE(j["error"].is_null());
        CHECK(j["response"]["infohash"] == ih);
        CHECK(j["response"]["is_live"] == 0);
        const std::string url = j["response"]["playback_url"];
        CHECK(testhttp::get(api, url.substr(url.find("/ace/"))).body == notes);
    }
    auto not_transport = testhttp::get(api, "/ace/getstream?data=" + url_encode(base64("hello")));
    CHECK(not_transport.status == 400);
    CHECK(not_transport.body.find("not a transport file") != std::string::npos);

    // get_content_id gives an id that content_id= plays.
    json cid = json::parse(testhttp::get(api, "/server/api?method=get_content_id&infohash=" + ih).body);
    REQUIRE(cid["result"]["content_id"] == ih);
    json by_cid = json::parse(testhttp::get(api, "/ace/getstream?format=json&content_id=" + ih).body);
    CHECK(by_cid["response"]["is_live"] == 0);

    // VOD HLS: the playlist ends with ENDLIST once the file is cut; FFmpeg
    // plays the whole thing from it.
    const std::string m_path = follow(testhttp::get(api, "/ace/manifest.m3u8?infohash=" + ih + "&pid=hls"));
    CHECK(m_path.rfind("/ace/m/" + ih + "/", 0) == 0);
    std::string playlist;
    for (int i = 0; i < 120 && playlist.find("#EXT-X-ENDLIST") == std::string::npos; ++i) {
        auto pl = testhttp::get(api, m_path);
        if (pl.status == 200)
            playlist = pl.body;
        else
            std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    INFO(playlist);
    CHECK(playlist.find("#EXT-X-ENDLIST") != std::string::npos);
    CHECK(playlist.find("/ace/c/" + ih + "/0/0.ts") != std::string::npos);
    auto hls = testcmd::run("ffprobe -v error -show_entries format=duration -of csv=p=0 'http://" + api + m_path + "'",
                            60, true);
    INFO(hls.out);
    CHECK(hls.code == 0);
    CHECK(std::stod(hls.out) > 10.0);
    CHECK(testhttp::get(api, "/ace/c/" + ih + "/0/999.ts").status == 404);

    // stop ends the player; its stat is then unknown.
    auto stop = testhttp::get(api, "/ace/cmd/" + ih + "/" + key + "?method=stop");
    CHECK(json::parse(stop.body) == json::parse(R"({"response":"ok","error":null})"));
    CHECK(json::parse(testhttp::get(api, "/ace/stat/" + ih + "/" + key).body)["error"] ==
          "unknown playback session id");

    // /server/api: the other public methods.
    json token = json::parse(testhttp::get(api, "/server/api?method=get_api_access_token").body);
    CHECK(token["result"]["token"].is_string());
    json status = json::parse(testhttp::get(api, "/server/api?api_version=3&method=get_status").body);
    CHECK(status["result"]["version"]["code"].is_number_integer());
    CHECK(status["result"]["peers"].is_number_integer());
    json net = json::parse(testhttp::get(api, "/server/api?method=get_network_connection_status").body);
    CHECK(net["result"]["connected"] == true);
    auto unknown = testhttp::get(api, "/server/api?method=nope");
    CHECK(unknown.status == 404);
    CHECK(json::parse(unknown.body)["error"]["message"].get<std::string>().find("nope") != std::string::npos);
}
