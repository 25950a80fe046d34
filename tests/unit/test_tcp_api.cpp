// Ace TCP API (port 62062) tests.  The parser and formatters are tested as
// pure functions, then a TcpApi runs on 127.0.0.1:<ephemeral> in a test loop
// with hooks that record what they are asked; the client is a non-blocking
// socket pumped from the loop's wait predicate, so everything runs on the
// test thread and every wait is bounded.
#include "streamer/tcp_api.hpp"

#include "core/hex.hpp"
#include "core/log.hpp"
#include "core/sha1.hpp"
#include "streamer/ace_compat.hpp"
#include "test_loop.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace openace;
using namespace openace::streamer;
using namespace std::chrono_literals;
using nlohmann::json;
using Params = TcpApiHooks::Params;

namespace {

const std::string kIh = "0123456789abcdef0123456789abcdef01234567";

// READY key as HTTPAceProxy, Plexus and the orchestrator compute it.
std::string client_key(const std::string &request_key, const std::string &product_key)
{
    auto d = core::Sha1::hash(request_key + product_key);
    return product_key.substr(0, product_key.find('-')) + "-" + core::to_hex(d.data(), d.size());
}

// "A k=v k2=v2" -> {k: v, k2: v2}, as HTTPAceProxy reads HELLOTS and START.
std::map<std::string, std::string> kv_words(const std::string &line)
{
    std::map<std::string, std::string> out;
    for (const auto &w : ace_tcp::parse_line(line).args)
        if (auto eq = w.find('='); eq != std::string::npos)
            out[w.substr(0, eq)] = w.substr(eq + 1);
    return out;
}

Errc error_code_of(const std::function<void()> &f)
{
    try {
        f();
    } catch (const Error &e) {
        return e.code();
    }
    return Errc::OK;
}

ace_tcp::Command cmd(const std::string &line)
{
    return ace_tcp::parse_line(line);
}

// -------------------------------------------------------------- test engine

struct Recorder {
    std::vector<std::pair<Params, bool>> starts;
    std::vector<std::pair<std::string, std::string>> stops;
    std::vector<Params> loads;
    std::vector<std::string> seeks;
    json stat_value = json::object();
    int stat_calls = 0;
    bool live = false;
    bool defer_start = false;          // keep the Done instead of answering
    std::vector<TcpApiHooks::Done> deferred;
    std::string start_error, load_error, seek_error;

    json result_for(int n) const
    {
        std::string key = "k" + std::to_string(n);
        return {{"playback_url", "http://127.0.0.1:6878/ace/r/" + kIh + "/" + key},
                {"stat_url", "http://127.0.0.1:6878/ace/stat/" + kIh + "/" + key},
                {"command_url", "http://127.0.0.1:6878/ace/cmd/" + kIh + "/" + key},
                {"infohash", kIh},
                {"playback_session_id", key},
                {"is_live", live ? 1 : 0}};
    }

    TcpApiHooks hooks()
    {
        TcpApiHooks h;
        h.http_port = 6878;
        h.start = [this](const Params &p, bool hls, TcpApiHooks::Done done) {
            starts.emplace_back(p, hls);
            if (defer_start)
                deferred.push_back(std::move(done));
            else if (!start_error.empty())
                done(nullptr, start_error);
            else
                done(result_for(static_cast<int>(starts.size())), "");
        };
        h.stat = [this](const std::string &, const std::string &) {
            ++stat_calls;
            return stat_value;
        };
        h.stop = [this](const std::string &ih, const std::string &key) { stops.emplace_back(ih, key); };
        h.media_files = [this](const Params &p, TcpApiHooks::Done done) {
            loads.push_back(p);
            if (!load_error.empty()) {
                done(nullptr, load_error);
                return;
            }
            done({{"infohash", kIh},
                  {"name", "pack"},
                  {"type", "vod"},
                  {"files", {{{"index", 0}, {"filename", "a b.mp4"}, {"size", 10}},
                             {{"index", 3}, {"filename", "c.mkv"}, {"size", 20}}}}},
                 "");
        };
        h.liveseek = [this](const std::string &, const std::string &, const std::string &pos) {
            seeks.push_back(pos);
            return seek_error;
        };
        return h;
    }
};

class Client {
public:
    explicit Client(std::uint16_t port)
    {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        // Loopback connects complete in the kernel's backlog, before the loop accepts.
        if (::connect(fd_, reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0) {
            ::close(fd_);
            fd_ = -1;
            return;
        }
        ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
    }
    ~Client() { close(); }
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    bool ok() const { return fd_ >= 0; }
    bool eof() const { return eof_; }
    void close()
    {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
    }
    void send(const std::string &s) { out_ += s; }

    // Moves bytes both ways without blocking.
    void pump()
    {
        if (fd_ < 0)
            return;
        while (!out_.empty()) {
            ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n <= 0)
                break;
            out_.erase(0, static_cast<std::size_t>(n));
        }
        char buf[65536];
        for (;;) {
            ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) {
                in_.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
                eof_ = true;
            break;
        }
    }
    bool has_line() const { return in_.find("\r\n") != std::string::npos; }
    std::string take_line()
    {
        std::size_t end = in_.find("\r\n");
        std::string line = in_.substr(0, end);
        in_.erase(0, end + 2);
        return line;
    }
    std::size_t unsent() const { return out_.size(); }

private:
    int fd_ = -1;
    std::string in_, out_;
    bool eof_ = false;
};

struct Fixture {
    core::Log log{core::Log::Options{core::LogLevel::Trace, 1000, 1 << 20}};
    TestLoop tl;
    Recorder rec;
    std::unique_ptr<TcpApi> api;

    explicit Fixture(std::size_t max_clients = 64)
    {
        api = std::make_unique<TcpApi>(&tl.loop, core::Logger(log, "tcp api"), rec.hooks(), max_clients);
        api->listen("127.0.0.1", 0);
    }
    ~Fixture()
    {
        if (!api)
            return;
        bool done = false;
        api->close([&] { done = true; });
        tl.run_until([&] { return done; }, 3s);
    }

    // The next line from the engine (empty when none came within `limit`).
    std::string line(Client &c, std::chrono::milliseconds limit = 3000ms)
    {
        bool got = tl.run_until([&] {
            c.pump();
            return c.has_line();
        }, limit);
        return got ? c.take_line() : std::string();
    }
    // The next line that is not a periodic STATUS / EVENT livepos report.
    std::string answer(Client &c)
    {
        for (int i = 0; i < 20; ++i) {
            std::string l = line(c);
            if (l.rfind("STATUS ", 0) != 0 && l.rfind("EVENT livepos", 0) != 0)
                return l;
        }
        return {};
    }
    bool closed(Client &c, std::chrono::milliseconds limit = 3000ms)
    {
        return tl.run_until([&] {
            c.pump();
            while (c.has_line())
                c.take_line();
            return c.eof();
        }, limit);
    }
    // Connects and authenticates; returns the HELLOTS key.
    std::string login(Client &c)
    {
        c.send("HELLOBG version=4\r\n");
        std::string key = kv_words(line(c))["key"];
        c.send("READY key=" + client_key(key, "testproduct-0000") + "\r\n");
        REQUIRE(line(c) == "AUTH 1");
        return key;
    }
};

std::string status_of(const json &stat)
{
    return ace_tcp::status_line(stat);
}

} // namespace

// ==================================================================== parser

TEST_CASE("tcp api: lines split into an upper-cased command and its words")
{
    auto c = ace_tcp::parse_line("hellobg   version=4\r");
    CHECK(c.name == "HELLOBG");
    CHECK(c.args == std::vector<std::string>{"version=4"});
    c = ace_tcp::parse_line("START\tPID  abc 0 output_format=http");
    CHECK(c.name == "START");
    CHECK(c.args == std::vector<std::string>{"PID", "abc", "0", "output_format=http"});
    CHECK(ace_tcp::parse_line("").name.empty());
    CHECK(ace_tcp::parse_line(" \t \r").name.empty());
    // Arguments keep their case; non-ASCII bytes pass.
    CHECK(ace_tcp::parse_line("x Ab\xc3\xa9").args.front() == "Ab\xc3\xa9");
}

TEST_CASE("tcp api: lines with control characters, too many words or too many bytes are refused")
{
    CHECK(error_code_of([] { ace_tcp::parse_line(std::string("STOP\0x", 6)); }) == Errc::PARSE);
    CHECK(error_code_of([] { ace_tcp::parse_line("STOP\x1b"); }) == Errc::PARSE);
    std::string many = "CMD";
    for (std::size_t i = 0; i < ace_tcp::kMaxTokens; ++i)
        many += " w";
    CHECK(error_code_of([&] { ace_tcp::parse_line(many); }) == Errc::PARSE); // 65 words
    many.resize(many.size() - 2);
    CHECK(ace_tcp::parse_line(many).args.size() == ace_tcp::kMaxTokens - 1);
    std::string big(ace_tcp::kMaxLineBytes + 1, 'a');
    CHECK(error_code_of([&] { ace_tcp::parse_line(big); }) == Errc::PARSE);
    big.pop_back();
    CHECK(ace_tcp::parse_line(big).name.size() == ace_tcp::kMaxLineBytes);
}

TEST_CASE("tcp api: options are URL-decoded k=v words and other words are skipped")
{
    auto o = ace_tcp::parse_options({"PID", "x", "a=1", "b=%20z", "=bad", "plain", "a=2", "c=%zz"}, 1);
    CHECK(o == Params{{"a", "2"}, {"b", " z"}, {"c", "%zz"}});
}

TEST_CASE("tcp api: READY keys are accepted in the form clients compute and nothing else")
{
    std::string good = client_key("0a1b2c3d4e", "n51Lv_Q9-abc-def");
    CHECK(ace_tcp::valid_ready_key(good));
    CHECK(ace_tcp::valid_ready_key("x-" + std::string(40, 'F')));
    CHECK_FALSE(ace_tcp::valid_ready_key(""));
    CHECK_FALSE(ace_tcp::valid_ready_key(good.substr(0, good.size() - 1))); // 39 hex
    CHECK_FALSE(ace_tcp::valid_ready_key(good + "0"));                      // 41 hex
    CHECK_FALSE(ace_tcp::valid_ready_key("-" + std::string(40, 'a')));      // no prefix
    CHECK_FALSE(ace_tcp::valid_ready_key(std::string(40, 'a')));            // no dash
    CHECK_FALSE(ace_tcp::valid_ready_key("a-b-" + std::string(40, 'a')));   // two dashes
    CHECK_FALSE(ace_tcp::valid_ready_key("a.b-" + std::string(40, 'a')));
    CHECK_FALSE(ace_tcp::valid_ready_key("a-" + std::string(39, 'a') + "g"));
    CHECK_FALSE(ace_tcp::valid_ready_key(std::string(65, 'p') + "-" + std::string(40, 'a')));
}

TEST_CASE("tcp api: START words become start hook parameters")
{
    auto r = ace_tcp::parse_start(cmd("START INFOHASH " + kIh + " 2 0 0 0 output_format=hls transcode_ac3=0"));
    CHECK(r.params == Params{{"infohash", kIh}, {"_idx", "2"}});
    CHECK(r.hls);
    CHECK(r.index == 2u);

    r = ace_tcp::parse_start(cmd("START PID cafe 0"));
    CHECK(r.params == Params{{"content_id", "cafe"}, {"_idx", "0"}});
    CHECK_FALSE(r.hls);

    r = ace_tcp::parse_start(cmd("START PID cafe output_format=http"));
    CHECK(r.params == Params{{"content_id", "cafe"}});
    CHECK_FALSE(r.index);

    r = ace_tcp::parse_start(cmd("START TORRENT http://t/x.torrent?a=b 3,1,2 0 0 0 0 output_format=http"));
    CHECK(r.params == Params{{"url", "http://t/x.torrent?a=b"}, {"_idx", "3"}});
    r = ace_tcp::parse_start(cmd("start torrent magnet:?xt=urn:btih:" + kIh + " 0"));
    CHECK(r.params.at("magnet") == "magnet:?xt=urn:btih:" + kIh);
    r = ace_tcp::parse_start(cmd("START URL http://h/v.mp4 0 0 0 0"));
    CHECK(r.params.at("url") == "http://h/v.mp4");
    r = ace_tcp::parse_start(cmd("START RAW ZGF0YQ== 0 0 0 0"));
    CHECK(r.params.at("data") == "ZGF0YQ==");
}

TEST_CASE("tcp api: malformed START and LOADASYNC arguments are refused with the reason")
{
    auto reason = [](const std::string &line, auto parse) {
        try {
            parse(cmd(line));
        } catch (const Error &e) {
            return e.detail();
        }
        return std::string("accepted");
    };
    auto start = [](const ace_tcp::Command &c) { ace_tcp::parse_start(c); };
    auto load = [](const ace_tcp::Command &c) { ace_tcp::parse_load(c); };
    CHECK_THAT(reason("START", start), Catch::Contains("needs a content type"));
    CHECK_THAT(reason("START FOO x 0", start), Catch::Contains("unknown content type 'FOO'"));
    CHECK_THAT(reason("START EFILE http://x", start), Catch::Contains("not supported"));
    CHECK_THAT(reason("START PID", start), Catch::Contains("START PID needs an argument"));
    CHECK_THAT(reason("START PID c x", start), Catch::Contains("bad file index 'x'"));
    CHECK_THAT(reason("START PID c -1", start), Catch::Contains("bad file index '-1'"));
    CHECK_THAT(reason("START PID c 1234567890", start), Catch::Contains("bad file index"));
    CHECK_THAT(reason("START PID c 0 output_format=dash", start), Catch::Contains("unknown output_format 'dash'"));
    CHECK_THAT(reason("LOADASYNC", load), Catch::Contains("needs a request id"));
    CHECK_THAT(reason("LOADASYNC PID cafe", load), Catch::Contains("needs a request id"));
    CHECK_THAT(reason("LOADASYNC 7", load), Catch::Contains("needs a content type"));
    CHECK_THAT(reason("LOADASYNC 7 PID", load), Catch::Contains("needs an argument"));
    CHECK_THAT(reason("LOADASYNC " + std::string(65, '1') + " PID c", load), Catch::Contains("too long"));
    CHECK(error_code_of([] { ace_tcp::parse_start(cmd("START PID c x")); }) == Errc::INVAL);

    auto l = ace_tcp::parse_load(cmd("LOADASYNC 42 TORRENT http://t/a.torrent 0 0 0"));
    CHECK(l.request_id == "42");
    CHECK(l.params == Params{{"url", "http://t/a.torrent"}});
    l = ace_tcp::parse_load(cmd("LOAD PID cafe"));
    CHECK(l.request_id.empty());
    CHECK(l.params == Params{{"content_id", "cafe"}});
}

// ================================================================ formatters

TEST_CASE("tcp api: LOADRESP json counts the files and URL-encodes their names")
{
    json mf = {{"infohash", kIh}, {"files", json::array()}};
    CHECK(json::parse(ace_tcp::loadresp_json(mf)) ==
          json({{"status", 0}, {"infohash", kIh}, {"checksum", kIh}, {"files", json::array()}}));
    mf["files"].push_back({{"index", 4}, {"filename", "my film.mkv"}, {"size", 1}});
    auto one = json::parse(ace_tcp::loadresp_json(mf));
    CHECK(one["status"] == 1);
    CHECK(one["files"] == json::array({json::array({"my%20film.mkv", 4})}));
    mf["files"].push_back({{"index", 5}, {"filename", "b"}, {"size", 1}});
    mf["files"].push_back({{"filename", "no index"}});
    auto two = json::parse(ace_tcp::loadresp_json(mf));
    CHECK(two["status"] == 2);
    CHECK(two["files"].size() == 2);
    // No spaces anywhere: HTTPAceProxy joins the words after the request id.
    CHECK(ace_tcp::loadresp_json(mf).find(' ') == std::string::npos);
    CHECK(json::parse(ace_tcp::load_error_json("no such thing")) ==
          json({{"status", 100}, {"message", "no%20such%20thing"}}));
    CHECK(json::parse(ace_tcp::loadresp_json(nullptr))["status"] == 0);
}

TEST_CASE("tcp api: STATUS lines follow the reference format")
{
    json st = {{"status", "prebuf"}, {"progress", 42},   {"total_progress", 7}, {"speed_down", 300},
               {"speed_up", 20},     {"peers", 9},       {"downloaded", 123456}, {"uploaded", 789}};
    // common = total_progress;immediate_progress;speed_down;http_speed_down;speed_up;peers;http_peers;downloaded;http_downloaded;uploaded
    const std::string common = "7;42;300;0;20;9;0;123456;0;789";
    CHECK(status_of(st) == "STATUS main:prebuf;42;2147483447;" + common);
    st["status"] = "buf";
    CHECK(status_of(st) == "STATUS main:buf;42;2147483447;" + common);
    st["status"] = "dl";
    CHECK(status_of(st) == "STATUS main:dl;" + common);
    st["status"] = "check";
    CHECK(status_of(st) == "STATUS main:check;42");
    st["status"] = "wait";
    CHECK(status_of(st) == "STATUS main:wait;2147483447;" + common);
    st["status"] = "weird";
    CHECK(status_of(st) == "STATUS main:idle");
    CHECK(status_of(nullptr) == "STATUS main:idle");
    // Counters are taken from numbers, numeric strings and floats; the rest is 0.
    json odd = {{"status", "dl"}, {"total_progress", "12"}, {"progress", -5}, {"speed_down", 2.9},
                {"peers", true},  {"downloaded", "x"},      {"uploaded", json::array()}};
    CHECK(status_of(odd) == "STATUS main:dl;12;0;2;0;0;1;0;0;0;0");
}

TEST_CASE("tcp api: STATE follows the stat status")
{
    CHECK(ace_tcp::state_of({{"status", "prebuf"}}, 0) == 1);
    CHECK(ace_tcp::state_of({{"status", "dl"}}, 1) == 2);
    CHECK(ace_tcp::state_of({{"status", "buf"}}, 2) == 3);
    CHECK(ace_tcp::state_of({{"status", "check"}}, 2) == 5);
    CHECK(ace_tcp::state_of({{"status", "other"}}, 2) == 2);
    CHECK(ace_tcp::state_of(nullptr, 3) == 3);
}

TEST_CASE("tcp api: START lines carry the playback URL and mark live content")
{
    Recorder rec;
    json r = rec.result_for(1);
    auto kv = kv_words(ace_tcp::start_line(r, 3));
    CHECK(kv["url"] == r["playback_url"]);
    CHECK(kv["infohash"] == kIh);
    CHECK(kv["file_index"] == "3");
    CHECK(kv["stat_url"] == r["stat_url"]);
    CHECK(kv["command_url"] == r["command_url"]);
    CHECK(kv["playback_session_id"] == "k1");
    CHECK(kv.count("stream") == 0); // HTTPAceProxy reads any stream= as live
    r["is_live"] = 1;
    r["playback_url"] = "http://h/a b=c";
    kv = kv_words(ace_tcp::start_line(r, std::nullopt));
    CHECK(kv["stream"] == "1");
    CHECK(kv["url"] == "http://h/a%20b%3Dc");
    CHECK(kv.count("file_index") == 0);
    r.erase("playback_url");
    CHECK(ace_tcp::start_line(r, 0).empty());
}

TEST_CASE("tcp api: EVENT livepos is sent for live stats only")
{
    json st = {{"status", "dl"},
               {"is_live", 1},
               {"livepos",
                {{"last", "1700000100"}, {"live_first", "1700000000"}, {"live_last", "1700000100"},
                 {"pos", "1700000090"}, {"first_ts", "1700000000"}, {"last_ts", "1700000100"},
                 {"buffer_pieces", "15"}}}};
    CHECK(ace_tcp::livepos_line(st) ==
          "EVENT livepos last=1700000100 live_first=1700000000 pos=1700000090 first_ts=1700000000 "
          "last_ts=1700000100 is_live=1 live_last=1700000100 buffer_pieces=15");
    st["livepos"]["pos"] = 1700000095; // numbers are fine too
    CHECK(kv_words(ace_tcp::livepos_line(st))["pos"] == "1700000095");
    st["is_live"] = 0;
    CHECK(ace_tcp::livepos_line(st).empty());
    st["is_live"] = 1;
    st["livepos"] = json::object();
    CHECK(ace_tcp::livepos_line(st).empty());
}

TEST_CASE("tcp api: mutated command lines parse or throw openace::Error")
{
    const std::vector<std::string> seeds = {
        "HELLOBG version=4",
        "READY key=n51LvQoTlJzNGaFxseRK-" + std::string(40, 'a'),
        "LOADASYNC 123 INFOHASH " + kIh + " 0 0 0",
        "START TORRENT http://x/y.torrent 0,1 0 0 0 0 output_format=hls transcode_audio=0",
        "START PID " + kIh + " 0 output_format=http",
        "LOAD RAW ZGF0YQ== 0 0 0",
        "LIVESEEK 1700000000",
    };
    std::mt19937 rng(4711);
    const std::string alphabet = "= ,%0aA\t\r\n-x9";
    int accepted = 0, refused = 0;
    for (int iter = 0; iter < 5000; ++iter) {
        std::string s = seeds[rng() % seeds.size()];
        for (int m = 0, muts = 1 + static_cast<int>(rng() % 4); m < muts; ++m) {
            std::size_t pos = s.empty() ? 0 : rng() % s.size();
            switch (rng() % 4) {
            case 0:
                if (!s.empty())
                    s[pos] = alphabet[rng() % alphabet.size()];
                break;
            case 1:
                if (!s.empty())
                    s.erase(pos, 1 + rng() % 5);
                break;
            case 2:
                s.insert(pos, 1, static_cast<char>(rng() & 0xff));
                break;
            case 3:
                s.resize(pos);
                break;
            }
        }
        try {
            auto c = ace_tcp::parse_line(s);
            for (const auto &w : c.args)
                REQUIRE((!w.empty() && w.find_first_of(" \t") == std::string::npos));
            if (c.name == "START") {
                auto r = ace_tcp::parse_start(c);
                REQUIRE(r.params.size() == (r.index ? 2u : 1u));
            } else if (c.name == "LOADASYNC" || c.name == "LOAD") {
                auto l = ace_tcp::parse_load(c);
                REQUIRE(l.params.size() == 1);
            } else {
                auto o = ace_tcp::parse_options(c.args, 0);
                if (o.count("key"))
                    (void)ace_tcp::valid_ready_key(o["key"]);
            }
            ++accepted;
        } catch (const Error &) {
            ++refused;
        }
    }
    CHECK(accepted > 100);
    CHECK(refused > 100);
}

TEST_CASE("tcp api: formatters make one line of any json the engine might return")
{
    const std::vector<std::string> seeds = {
        R"({"status":"dl","progress":5,"peers":"3","speed_down":1.5,"is_live":1,"livepos":{"last":"1","pos":2}})",
        R"({"infohash":"ab","files":[{"index":0,"filename":"a\nb"},{"index":"x","filename":3}]})",
        R"({"playback_url":"http://h/x y","infohash":"a=b","is_live":true,"playback_session_id":null})",
    };
    std::mt19937 rng(99);
    int parsed = 0;
    for (int iter = 0; iter < 3000; ++iter) {
        std::string s = seeds[rng() % seeds.size()];
        for (int m = 0, muts = 1 + static_cast<int>(rng() % 3); m < muts; ++m) {
            std::size_t pos = rng() % s.size();
            s[pos] = "{}[]\",:0a-.e\\"[rng() % 14];
        }
        json j = json::parse(s, nullptr, false);
        if (j.is_discarded())
            continue;
        ++parsed;
        for (const std::string &line : {ace_tcp::status_line(j), ace_tcp::livepos_line(j), ace_tcp::loadresp_json(j),
                                        ace_tcp::start_line(j, 1)}) {
            REQUIRE(line.find_first_of("\r\n") == std::string::npos);
            REQUIRE(line.find('\0') == std::string::npos);
        }
        REQUIRE(ace_tcp::status_line(j).find(' ', 7) == std::string::npos);
        (void)ace_tcp::state_of(j, 0);
    }
    CHECK(parsed > 50);
}

// ================================================================== sockets

TEST_CASE("tcp api: the HTTPAceProxy conversation from HELLOBG to SHUTDOWN")
{
    Fixture f;
    Client c(f.api->port());
    REQUIRE(c.ok());

    c.send("HELLOBG version=4\r\n");
    std::string hello = f.line(c);
    REQUIRE(hello.rfind("HELLOTS ", 0) == 0);
    auto kv = kv_words(hello);
    CHECK(kv["version"] == kAceApiVersion);
    CHECK(kv["version_code"] == std::to_string(kAceApiVersionCode));
    CHECK(kv["http_port"] == "6878");
    REQUIRE(kv["key"].size() == 10);
    CHECK(core::from_hex<5>(kv["key"]).has_value());

    c.send("READY key=" + client_key(kv["key"], "product-key-x") + "\r\n");
    CHECK(f.line(c) == "AUTH 1");
    c.send("SETOPTIONS use_stop_notifications=1\r\nUSERDATA [{\"gender\": 1}, {\"age\": 4}]\r\n");

    c.send("LOADASYNC 4711 INFOHASH " + kIh + " 0 0 0\r\n");
    std::string resp = f.line(c);
    REQUIRE(resp.rfind("LOADRESP 4711 ", 0) == 0); // SETOPTIONS/USERDATA got no answer
    json lr = json::parse(resp.substr(14));
    CHECK(lr["status"] == 2);
    CHECK(lr["infohash"] == kIh);
    CHECK(lr["checksum"] == kIh);
    CHECK(lr["files"] == json::array({json::array({"a%20b.mp4", 0}), json::array({"c.mkv", 3})}));
    REQUIRE(f.rec.loads.size() == 1);
    CHECK(f.rec.loads[0] == Params{{"infohash", kIh}});

    f.rec.stat_value = {{"status", "prebuf"}, {"progress", 10}, {"peers", 2}, {"speed_down", 50}, {"is_live", 0}};
    c.send("START INFOHASH " + kIh + " 3 0 0 0 output_format=hls\r\n");
    std::string start = f.line(c);
    REQUIRE(f.rec.starts.size() == 1);
    CHECK(f.rec.starts[0].first == Params{{"infohash", kIh}, {"_idx", "3"}, {"pid", "tcp-" + kv["key"]}});
    CHECK(f.rec.starts[0].second); // hls
    auto sk = kv_words(start);
    CHECK(sk["url"] == f.rec.result_for(1)["playback_url"]);
    CHECK(sk["infohash"] == kIh);
    CHECK(sk["file_index"] == "3");
    CHECK(sk.count("stream") == 0);
    CHECK(f.line(c) == "STATE 1");

    // The periodic report, then a state change.
    std::string periodic = f.line(c, 2500ms);
    CHECK(periodic == status_of(f.rec.stat_value));
    f.rec.stat_value["status"] = "dl";
    f.rec.stat_value["peers"] = 5;
    c.send("STATUS\r\n");
    std::string now = f.line(c);
    CHECK(now == status_of(f.rec.stat_value));
    CHECK(now.rfind("STATUS main:dl;", 0) == 0);
    CHECK(f.line(c) == "STATE 2");

    c.send("EVENT pause\r\nSTOP\r\n");
    CHECK(f.answer(c) == "STATE 0");
    REQUIRE(f.rec.stops.size() == 1);
    CHECK(f.rec.stops[0] == std::make_pair(kIh, std::string("k1")));
    c.send("STATUS\r\n");
    CHECK(f.line(c) == "STATUS main:idle");

    c.send("SHUTDOWN\r\n");
    CHECK(f.closed(c));
    CHECK(f.rec.stops.size() == 1); // nothing was playing any more
    auto st = f.api->stats();
    CHECK(st.commands == 11);
    CHECK(st.errors == 0);
    CHECK(st.connections_total == 1);
    CHECK(st.clients == 0);
}

TEST_CASE("tcp api: commands before AUTH get NOTREADY and a bare READY authenticates")
{
    Fixture f;
    Client c(f.api->port());
    c.send("START PID cafe 0\r\nLOADASYNC 1 PID cafe\r\n");
    CHECK(f.line(c) == "NOTREADY");
    CHECK(f.line(c) == "NOTREADY");
    CHECK(f.rec.starts.empty());
    CHECK(f.rec.loads.empty());
    c.send("READY\r\n");
    CHECK(f.line(c) == "AUTH 1");
    c.send("STATUS\r\n");
    CHECK(f.line(c) == "STATUS main:idle");
}

TEST_CASE("tcp api: a malformed READY key gets AUTH 0 and the connection closes")
{
    Fixture f;
    Client c(f.api->port());
    c.send("HELLOBG version=3\r\n");
    REQUIRE(f.line(c).rfind("HELLOTS ", 0) == 0);
    c.send("READY key=not-a-valid-key\r\n");
    CHECK(f.line(c) == "AUTH 0");
    CHECK(f.closed(c));
    CHECK(f.api->stats().errors == 1);
}

TEST_CASE("tcp api: malformed arguments get INFO 0 and the connection stays")
{
    Fixture f;
    Client c(f.api->port());
    f.login(c);
    c.send("START PID cafe x\r\n");
    CHECK(f.line(c) == "INFO 0;START: bad file index 'x' (a number, or numbers joined by commas)");
    c.send("LOADASYNC PID cafe\r\n");
    CHECK(f.line(c) == "INFO 0;LOADASYNC needs a request id before the content type");
    c.send("LIVESEEK 100\r\n");
    CHECK(f.line(c) == "INFO 0;LIVESEEK: nothing is playing");
    c.send("BOGUS 1 2\r\nGETPID " + kIh + " 0 0 0\r\nSTATUS\r\n"); // unknown: ignored
    CHECK(f.line(c) == "STATUS main:idle");
    CHECK(f.rec.starts.empty());
    CHECK(f.api->stats().errors == 3);
    CHECK(f.api->stats().clients == 1);
}

TEST_CASE("tcp api: a failed START answers INFO 0 and STATE 6, a failed LOADASYNC status 100")
{
    Fixture f;
    Client c(f.api->port());
    f.login(c);
    f.rec.start_error = "failed to load content: no such content id";
    c.send("START PID cafe 0\r\n");
    CHECK(f.line(c) == "INFO 0;failed to load content: no such content id");
    CHECK(f.line(c) == "STATE 6");
    f.rec.load_error = "failed to load content: timeout";
    c.send("LOADASYNC 9 PID cafe\r\n");
    std::string resp = f.line(c);
    REQUIRE(resp.rfind("LOADRESP 9 ", 0) == 0);
    CHECK(json::parse(resp.substr(11)) == json({{"status", 100}, {"message", "failed%20to%20load%20content%3A%20timeout"}}));
    f.rec.load_error.clear();
    c.send("LOAD PID cafe\r\n");
    resp = f.line(c);
    REQUIRE(resp.rfind("##{", 0) == 0);
    CHECK(json::parse(resp.substr(2))["status"] == 2);
    CHECK(f.rec.stops.empty());
}

TEST_CASE("tcp api: a live session reports livepos, LIVESEEK repeats START and a second START replaces the first")
{
    Fixture f;
    f.rec.live = true;
    f.rec.stat_value = {{"status", "dl"},
                        {"is_live", 1},
                        {"livepos", {{"last", "1700000100"}, {"pos", "1700000090"}, {"buffer_pieces", "7"}}}};
    Client c(f.api->port());
    f.login(c);
    c.send("START PID cafe 0\r\n");
    std::string start = f.line(c);
    CHECK(kv_words(start)["stream"] == "1");
    CHECK(f.line(c) == "STATE 1");
    c.send("STATUS\r\n");
    CHECK(f.line(c) == status_of(f.rec.stat_value));
    CHECK(f.line(c) == "STATE 2");
    CHECK(f.line(c) == ace_tcp::livepos_line(f.rec.stat_value));

    c.send("LIVESEEK 1700000050\r\n");
    CHECK(f.answer(c) == start);
    CHECK(f.rec.seeks == std::vector<std::string>{"1700000050"});
    f.rec.seek_error = "position out of range";
    c.send("LIVESEEK 1\r\n");
    CHECK(f.answer(c) == "INFO 0;position out of range");

    c.send("START PID beef 1\r\n");
    std::string second = f.answer(c);
    CHECK(kv_words(second)["playback_session_id"] == "k2");
    REQUIRE(f.rec.stops.size() == 1);
    CHECK(f.rec.stops[0].second == "k1");
    CHECK(f.answer(c) == "STATE 1");
}

TEST_CASE("tcp api: a session the engine ended gives STATE 0 and STOP")
{
    Fixture f;
    Client c(f.api->port());
    f.login(c);
    c.send("START INFOHASH " + kIh + " 0 0 0 0\r\n");
    REQUIRE(f.line(c).rfind("START url=", 0) == 0);
    REQUIRE(f.line(c) == "STATE 1");
    f.rec.stat_value = nullptr;
    CHECK(f.line(c, 2500ms) == "STATE 0"); // from the periodic poll
    CHECK(f.line(c) == "STOP");
    int calls = f.rec.stat_calls;
    c.send("STATUS\r\n");
    CHECK(f.line(c) == "STATUS main:idle");
    CHECK(f.rec.stat_calls == calls); // forgotten: no more polls
    CHECK(f.rec.stops.empty());       // the engine ended it itself
}

TEST_CASE("tcp api: disconnecting stops the session, also one whose START is still pending")
{
    Fixture f;
    {
        Client c(f.api->port());
        f.login(c);
        c.send("START PID cafe 0\r\n");
        REQUIRE(f.line(c).rfind("START url=", 0) == 0);
    }
    REQUIRE(f.tl.run_until([&] { return !f.rec.stops.empty(); }, 3s));
    CHECK(f.rec.stops[0] == std::make_pair(kIh, std::string("k1")));
    CHECK(f.api->stats().clients == 0);

    f.rec.defer_start = true;
    {
        Client c(f.api->port());
        f.login(c);
        c.send("START PID cafe 0\r\n");
        REQUIRE(f.tl.run_until([&] {
            c.pump();
            return f.rec.deferred.size() == 1;
        }, 3s));
    }
    REQUIRE(f.tl.run_until([&] { return f.api->stats().clients == 0; }, 3s));
    f.rec.deferred[0](f.rec.result_for(2), ""); // the engine answers after the client left
    REQUIRE(f.rec.stops.size() == 2);
    CHECK(f.rec.stops[1].second == "k2");
}

TEST_CASE("tcp api: a START answer that a STOP or a newer START overtook is stopped, not sent")
{
    Fixture f;
    f.rec.defer_start = true;
    Client c(f.api->port());
    f.login(c);
    c.send("START PID cafe 0\r\nSTOP\r\n");
    CHECK(f.line(c) == "STATE 0");
    c.send("START PID beef 0\r\n");
    REQUIRE(f.tl.run_until([&] {
        c.pump();
        return f.rec.deferred.size() == 2;
    }, 3s));
    f.rec.deferred[0](f.rec.result_for(1), "");
    CHECK(f.rec.stops == std::vector<std::pair<std::string, std::string>>{{kIh, "k1"}});
    f.rec.deferred[1](f.rec.result_for(2), "");
    CHECK(kv_words(f.line(c))["playback_session_id"] == "k2"); // only the current START is answered
    CHECK(f.line(c) == "STATE 1");
    CHECK(f.rec.stops.size() == 1);
}

TEST_CASE("tcp api: a line over 1 MiB gets INFO 0 and the connection closes")
{
    Fixture f;
    Client c(f.api->port());
    f.login(c);
    c.send(std::string(ace_tcp::kMaxLineBytes + 100, 'A'));
    std::string l = f.line(c, 5000ms);
    CHECK(l == "INFO 0;line too long");
    CHECK(f.closed(c));
    CHECK(f.api->stats().errors == 1);
}

TEST_CASE("tcp api: clients beyond max_clients are closed at once")
{
    Fixture f(2);
    Client a(f.api->port()), b(f.api->port()), extra(f.api->port());
    a.send("HELLOBG\r\n");
    b.send("HELLOBG\r\n");
    CHECK(f.line(a).rfind("HELLOTS ", 0) == 0);
    CHECK(f.line(b).rfind("HELLOTS ", 0) == 0);
    CHECK(f.closed(extra));
    auto st = f.api->stats();
    CHECK(st.clients == 2);
    CHECK(st.connections_total == 3);
    CHECK(st.errors == 1);
    a.close();
    REQUIRE(f.tl.run_until([&] { return f.api->stats().clients == 1; }, 3s));
    Client again(f.api->port());
    again.send("HELLOBG\r\n");
    CHECK(f.line(again).rfind("HELLOTS ", 0) == 0);
}

TEST_CASE("tcp api: close() with clients attached stops their sessions and finishes")
{
    Fixture f;
    Client a(f.api->port()), b(f.api->port());
    f.login(a);
    f.login(b);
    a.send("START PID cafe 0\r\n");
    REQUIRE(f.line(a).rfind("START url=", 0) == 0);
    bool done = false;
    f.api->close([&] { done = true; });
    CHECK(f.rec.stops.size() == 1); // synchronously
    CHECK(f.tl.run_until([&] { return done; }, 3s));
    CHECK(f.closed(a));
    CHECK(f.closed(b));
    CHECK_THROWS_AS(f.api->listen("127.0.0.1", 0), Error);
    bool again = false;
    f.api->close([&] { again = true; });
    CHECK(again);
}

TEST_CASE("tcp api: a TcpApi destroyed while open frees itself and calls no hook")
{
    Fixture f;
    Client c(f.api->port());
    f.login(c);
    c.send("START PID cafe 0\r\n");
    REQUIRE(f.line(c).rfind("START url=", 0) == 0);
    f.api.reset();
    CHECK(f.closed(c));
    CHECK(f.rec.stops.empty());
}

TEST_CASE("tcp api: listening on a busy port names the address")
{
    Fixture f;
    TcpApi second(&f.tl.loop, core::Logger(f.log, "tcp api"), f.rec.hooks());
    try {
        second.listen("127.0.0.1", f.api->port());
        FAIL("listen on a busy port succeeded");
    } catch (const Error &e) {
        CHECK(e.code() == Errc::NET);
        CHECK_THAT(e.detail(), Catch::StartsWith("cannot listen on 127.0.0.1:" + std::to_string(f.api->port()) + ": "));
    }
    CHECK(error_code_of([&] { second.listen("not an address", 0); }) == Errc::NET);
    bool done = false;
    second.close([&] { done = true; });
    CHECK(f.tl.run_until([&] { return done; }, 3s));
}
