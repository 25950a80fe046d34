// Tracker clients against real trackers on 127.0.0.1: Debian's
// opentracker (started per test, whitelisted infohash, killed at the end),
// the embedded tracker on an HttpServer, and a tiny fake UDP tracker on the
// test loop where packet loss must be staged.  Every test runs its own
// libuv loop on the test thread, bounded by deadlines.
#include "transport/tracker.hpp"

#include "test_loop.hpp"

#include "net/http_server.hpp"
#include "net/url.hpp"
#include "transport/bencode.hpp"
#include "transport/embedded_tracker.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

extern char **environ;

using namespace openace;
using namespace openace::transport;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ------------------------------------------------------------ loop helpers

core::Logger test_logger()
{
    static core::Log log;
    return core::Logger(log, "tracker");
}

struct Server {
    net::HttpServer http;
    TestLoop &tl;
    explicit Server(TestLoop &l) : http(&l.loop, test_logger()), tl(l) { http.listen("127.0.0.1", 0); }
    ~Server()
    {
        bool closed = false;
        http.close([&] { closed = true; });
        tl.run_until([&] { return closed; }, 2000ms);
    }
    std::string url(const std::string &path) const
    {
        return "http://127.0.0.1:" + std::to_string(http.port()) + path;
    }
};

// ------------------------------------------------------------ opentracker

// Debian's opentracker, whitelist build: serves only the infohashes listed
// in its whitelist.  Runs in a private directory (it chroots there when
// started as root), on a port free for both TCP and UDP.
class OpenTracker {
public:
    static bool available() { return ::access("/usr/bin/opentracker", X_OK) == 0; }

    explicit OpenTracker(const std::vector<InfoHash> &whitelist)
    {
        char tmpl[] = "/tmp/oa-opentracker-XXXXXX";
        REQUIRE(::mkdtemp(tmpl));
        dir_ = tmpl;
        ::chmod(dir_.c_str(), 0755); // readable after it drops privileges
        port_ = free_port();
        REQUIRE(port_ != 0);
        {
            std::ofstream white(dir_ + "/white.txt");
            for (const auto &h : whitelist)
                white << to_hex(h) << "\n";
            std::ofstream conf(dir_ + "/ot.conf");
            conf << "listen.tcp_udp 127.0.0.1:" << port_ << "\n"
                 << "tracker.rootdir " << dir_ << "\n"
                 << "access.whitelist white.txt\n"; // relative: valid inside the chroot and without one
        }
        ::chmod((dir_ + "/white.txt").c_str(), 0644);
        std::string conf = dir_ + "/ot.conf", log = dir_ + "/log.txt";
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        const char *argv[] = {"/usr/bin/opentracker", "-f", conf.c_str(), nullptr};
        int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, const_cast<char **>(argv), environ);
        posix_spawn_file_actions_destroy(&fa);
        REQUIRE(rc == 0);
        wait_ready(whitelist.empty() ? std::nullopt : std::optional<InfoHash>(whitelist.front()));
    }

    ~OpenTracker()
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            auto t0 = Clock::now();
            while (::waitpid(pid_, nullptr, WNOHANG) == 0) {
                if (since(t0) > 2.0) {
                    ::kill(pid_, SIGKILL);
                    ::waitpid(pid_, nullptr, 0);
                    break;
                }
                std::this_thread::sleep_for(5ms);
            }
        }
        for (const char *f : {"/white.txt", "/ot.conf", "/log.txt"})
            ::unlink((dir_ + f).c_str());
        ::rmdir(dir_.c_str());
    }

    std::string http_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/announce"; }
    std::string udp_url() const { return "udp://127.0.0.1:" + std::to_string(port_); }

private:
    // A port that is free for TCP and UDP at once (opentracker needs both).
    static uint16_t free_port()
    {
        for (int attempt = 0; attempt < 20; ++attempt) {
            int t = ::socket(AF_INET, SOCK_STREAM, 0), u = ::socket(AF_INET, SOCK_DGRAM, 0);
            sockaddr_in sa{};
            sa.sin_family = AF_INET;
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            socklen_t len = sizeof sa;
            uint16_t port = 0;
            if (::bind(t, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0 &&
                ::getsockname(t, reinterpret_cast<sockaddr *>(&sa), &len) == 0 &&
                ::bind(u, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0)
                port = ntohs(sa.sin_port);
            ::close(t);
            ::close(u);
            if (port)
                return port;
        }
        return 0;
    }

    // One blocking HTTP/1.0 GET (bounded by socket timeouts); "" when the
    // port does not accept yet.
    std::string raw_get(const std::string &target) const
    {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        timeval tv{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(port_);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        std::string out;
        if (::connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0) {
            std::string req = "GET " + target + " HTTP/1.0\r\n\r\n";
            ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
            char buf[2048];
            for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
                out.append(buf, static_cast<size_t>(n));
        }
        ::close(fd);
        return out;
    }

    // Until it serves `probe` (it loads its whitelist in a thread of its
    // own, after it starts listening), failing with its log.  The probe
    // peer (port 1) says "stopped" right after, so no test sees it.
    void wait_ready(std::optional<InfoHash> probe)
    {
        std::string target = "/announce?port=1&peer_id=-OA0000-probeprobe00&info_hash=";
        if (probe)
            target += net::percent_encode(std::string_view(reinterpret_cast<const char *>(probe->data()), probe->size()));
        auto t0 = Clock::now();
        while (since(t0) < 5.0) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                FAIL("opentracker exited at start: " << log_text());
            }
            std::string reply = raw_get(target);
            if (!reply.empty() && (!probe || reply.find("failure reason") == std::string::npos)) {
                if (probe)
                    REQUIRE(raw_get(target + "&event=stopped").find("incomplete") != std::string::npos);
                return;
            }
            std::this_thread::sleep_for(10ms);
        }
        FAIL("opentracker did not serve within 5 s: " << log_text());
    }

    std::string log_text() const
    {
        std::ifstream in(dir_ + "/log.txt");
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

    std::string dir_;
    uint16_t port_ = 0;
    pid_t pid_ = -1;
};

#define NEED_OPENTRACKER()                                                                                  \
    if (!OpenTracker::available()) {                                                                        \
        WARN("SKIPPED: /usr/bin/opentracker is not installed (apt-get install opentracker); CI installs it"); \
        return;                                                                                             \
    }

// ------------------------------------------------------------ fake UDP tracker

// A BEP 15 tracker on the test loop that can lose packets, stay silent or
// answer with an error.  It answers every announce with the same peers.
struct FakeUdpTracker {
    static constexpr std::uint64_t kConnectionId = 0x1122334455667788ULL;

    TestLoop &tl;
    uv_udp_t udp{};
    uint16_t port = 0;
    int drop = 0;          // the first `drop` packets are lost
    bool silent = false;   // never answers
    std::string error;     // answers everything with action 3 and this text
    int packets = 0, connects = 0, announces = 0;
    std::string last_announce; // the raw 98 bytes
    std::vector<PeerAddress> peers{{"1.2.3.4", 5678}, {"5.6.7.8", 9}};

    explicit FakeUdpTracker(TestLoop &l) : tl(l)
    {
        uv_udp_init(&tl.loop, &udp);
        udp.data = this;
        sockaddr_in sa{};
        uv_ip4_addr("127.0.0.1", 0, &sa);
        uv_udp_bind(&udp, reinterpret_cast<sockaddr *>(&sa), 0);
        int len = sizeof sa;
        uv_udp_getsockname(&udp, reinterpret_cast<sockaddr *>(&sa), &len);
        port = ntohs(sa.sin_port);
        uv_udp_recv_start(
            &udp,
            [](uv_handle_t *, size_t, uv_buf_t *b) {
                static char buf[2048];
                *b = uv_buf_init(buf, sizeof buf);
            },
            [](uv_udp_t *h, ssize_t n, const uv_buf_t *b, const sockaddr *from, unsigned) {
                if (n > 0 && from)
                    static_cast<FakeUdpTracker *>(h->data)->on_packet(std::string(b->base, static_cast<size_t>(n)), from);
            });
    }
    ~FakeUdpTracker()
    {
        uv_close(reinterpret_cast<uv_handle_t *>(&udp), nullptr);
        uv_run(&tl.loop, UV_RUN_NOWAIT);
    }
    std::string url() const { return "udp://127.0.0.1:" + std::to_string(port) + "/announce"; }

    static void put(std::string &s, std::uint64_t v, int bytes)
    {
        for (int i = bytes - 1; i >= 0; --i)
            s.push_back(static_cast<char>(v >> (8 * i)));
    }
    static std::uint64_t get(const std::string &s, size_t at, int bytes)
    {
        std::uint64_t v = 0;
        for (int i = 0; i < bytes; ++i)
            v = v << 8 | static_cast<unsigned char>(s[at + i]);
        return v;
    }

    void on_packet(const std::string &p, const sockaddr *from)
    {
        ++packets;
        if (packets <= drop || silent || p.size() < 16)
            return;
        std::string reply;
        auto tid = get(p, 12, 4);
        if (!error.empty()) {
            put(reply, 3, 4);
            put(reply, tid, 4);
            reply += error;
        } else if (get(p, 0, 8) == 0x41727101980ULL && get(p, 8, 4) == 0) {
            ++connects;
            put(reply, 0, 4);
            put(reply, tid, 4);
            put(reply, kConnectionId, 8);
        } else if (p.size() >= 98 && get(p, 0, 8) == kConnectionId && get(p, 8, 4) == 1) {
            ++announces;
            last_announce = p;
            put(reply, 1, 4);
            put(reply, tid, 4);
            put(reply, 900, 4); // interval
            put(reply, 3, 4);   // leechers
            put(reply, 2, 4);   // seeders
            reply += encode_compact_peers(peers, false);
        } else {
            return;
        }
        uv_buf_t b = uv_buf_init(reply.data(), static_cast<unsigned>(reply.size()));
        uv_udp_try_send(&udp, &b, 1, from);
    }
};

// ------------------------------------------------------------ announce helpers

InfoHash make_hash(std::uint8_t seed)
{
    InfoHash h{};
    for (size_t i = 0; i < h.size(); ++i)
        h[i] = static_cast<std::uint8_t>(seed * 31 + i * 7);
    h[3] = 0; // a NUL byte travels too
    return h;
}

PeerId make_peer_id(int n)
{
    PeerId id{};
    std::string s = "-OA0001-" + std::to_string(100000000000 + n);
    std::copy_n(s.begin(), 20, id.begin());
    return id;
}

AnnounceRequest make_request(const InfoHash &h, int n, std::uint16_t port, TrackerEvent ev = TrackerEvent::Started)
{
    AnnounceRequest r;
    r.info_hash = h;
    r.peer_id = make_peer_id(n);
    r.port = port;
    r.left = 1000;
    r.event = ev;
    r.key = 0xabcd0000u + static_cast<unsigned>(n);
    return r;
}

struct Answer {
    bool done = false;
    int calls = 0;
    std::optional<AnnounceResult> result;
    std::string error;
};

Answer announce(TestLoop &tl, const std::string &url, const AnnounceRequest &req,
                std::chrono::milliseconds timeout = 3000ms)
{
    Answer a;
    TrackerAnnounce ta(&tl.loop, url, req, [&](const AnnounceResult *r, const std::string &e) {
        ++a.calls;
        a.done = true;
        if (r)
            a.result = *r;
        a.error = e;
    }, timeout);
    tl.run_until([&] { return a.done; }, timeout + 2000ms);
    return a;
}

bool has_peer(const AnnounceResult &r, const PeerAddress &p)
{
    return std::find(r.peers.begin(), r.peers.end(), p) != r.peers.end();
}

} // namespace

// ------------------------------------------------------------ response parser

TEST_CASE("tracker: parses compact, dictionary and IPv6 peer lists")
{
    std::string compact = encode_compact_peers({{"10.0.0.1", 6881}, {"10.0.0.2", 80}}, false);
    std::string v6 = encode_compact_peers({{"2001:db8::1", 51413}}, true);
    auto body = bencode::encode(bencode::Value(bencode::Dict{
        {"interval", 900}, {"min interval", 60}, {"complete", 5}, {"incomplete", 7},
        {"peers", compact}, {"peers6", v6}, {"warning message", "be nice"}}));
    auto r = parse_http_announce_response(body);
    CHECK(r.interval == 900);
    CHECK(r.min_interval == 60);
    CHECK(r.complete == 5);
    CHECK(r.incomplete == 7);
    CHECK(r.warning == "be nice");
    CHECK(r.peers == std::vector<PeerAddress>{{"10.0.0.1", 6881}, {"10.0.0.2", 80}, {"2001:db8::1", 51413}});

    bencode::List list{bencode::Dict{{"ip", "10.1.1.1"}, {"peer id", std::string(20, 'x')}, {"port", 1}},
                       bencode::Dict{{"ip", "tracker.example"}, {"port", 2}}, // host names are skipped
                       bencode::Dict{{"ip", "::1"}, {"port", 3}},
                       bencode::Dict{{"ip", "10.1.1.1"}, {"port", 1}}}; // duplicate
    auto dict = parse_http_announce_response(bencode::encode(bencode::Value(bencode::Dict{{"peers", list}})));
    CHECK(dict.peers == std::vector<PeerAddress>{{"10.1.1.1", 1}, {"::1", 3}});
    CHECK(dict.interval == 1800); // default when absent
    CHECK(dict.complete == -1);
}

TEST_CASE("tracker: the response parser rejects malformed bodies with PROTO errors")
{
    struct Case {
        std::string body;
        std::string detail;
    };
    std::vector<Case> cases = {
        {"", "response is not bencode: at byte 0: empty input"},
        {"le", "response is not a dictionary"},
        {"d8:intervali-1ee", "'interval' must not be negative (-1)"},
        {"d8:interval2:10e", "'interval' must be an integer"},
        {"d12:min intervali-5ee", "'min interval' must not be negative (-5)"},
        {"d8:completei1:xe", ""}, // bencode itself is broken: detail from the decoder
        {"d5:peers5:abcdee", "'peers' length 5 is not a multiple of 6"},
        {"d6:peers612:abcdefabcdefe", "'peers6' length 12 is not a multiple of 18"},
        {"d6:peers6i1ee", "'peers6' must be a string"},
        {"d5:peersi5ee", "'peers' must be a string or a list"},
        {"d5:peersli1eee", "'peers'[0] is not a dictionary"},
        {"d5:peersld2:ip3:1.2eee", "'peers'[0] needs a string 'ip' and an integer 'port'"},
        {"d5:peersld2:ip7:1.2.3.44:porti70000eeee", "'peers'[0]: port 70000 outside 1-65535"},
        {"d5:peersld2:ip7:1.2.3.44:porti0eeee", "'peers'[0]: port 0 outside 1-65535"},
    };
    for (const auto &c : cases) {
        INFO(c.body);
        try {
            parse_http_announce_response(c.body);
            FAIL("accepted");
        } catch (const Error &e) {
            CHECK(e.code() == Errc::PROTO);
            CHECK(e.component() == "tracker");
            if (!c.detail.empty())
                CHECK(e.detail() == c.detail);
        }
    }
    std::string huge(5u << 20, 'x');
    CHECK_THROWS_AS(parse_http_announce_response(huge), Error);
    try {
        parse_http_announce_response("d14:failure reason16:unknown torrent\x01" "e");
        FAIL("accepted");
    } catch (const Error &e) {
        CHECK(e.operation() == "announce");
        CHECK(e.detail() == "failure reason: unknown torrent?");
    }
}

TEST_CASE("tracker: response parser fuzz loop never crashes")
{
    std::vector<std::string> seeds = {
        bencode::encode(bencode::Value(bencode::Dict{
            {"interval", 1800}, {"peers", encode_compact_peers({{"1.2.3.4", 1}, {"5.6.7.8", 2}}, false)},
            {"peers6", encode_compact_peers({{"::1", 3}}, true)}})),
        bencode::encode(bencode::Value(bencode::Dict{
            {"peers", bencode::List{bencode::Dict{{"ip", "1.2.3.4"}, {"port", 5}}}}, {"complete", 1}})),
        "d14:failure reason3:bade",
    };
    std::mt19937 rng(12345);
    int parsed = 0, rejected = 0;
    for (int i = 0; i < 5000; ++i) {
        std::string s = seeds[i % seeds.size()];
        int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits && !s.empty(); ++e) {
            size_t at = rng() % s.size();
            switch (rng() % 4) {
            case 0: s[at] = static_cast<char>(rng()); break;
            case 1: s.erase(at, 1 + rng() % 3); break;
            case 2: s.insert(at, 1, "0123456789:deil-"[rng() % 16]); break;
            default: s = s.substr(0, at); break;
            }
        }
        try {
            auto r = parse_http_announce_response(s);
            ++parsed;
            for (const auto &p : r.peers)
                CHECK(p.port != 0);
            CHECK(r.interval >= 0);
        } catch (const Error &e) {
            ++rejected;
            CHECK(e.code() == Errc::PROTO);
        }
    }
    CHECK(parsed > 0);
    CHECK(rejected > 0);
}

TEST_CASE("tracker: announce URLs carry every field, binary-safe")
{
    AnnounceRequest req = make_request(make_hash(9), 4, 6881, TrackerEvent::Completed);
    req.uploaded = 11;
    req.downloaded = 22;
    req.numwant = 30;
    req.key = 0x1f;
    std::string url = build_http_announce_url("http://t.example/announce?passkey=abc#frag", req);
    REQUIRE(url.rfind("http://t.example/announce?passkey=abc&info_hash=", 0) == 0);
    auto q = net::parse_query(url.substr(url.find('?') + 1));
    auto value = [&](const char *k) { return net::query_value(q, k).value_or("<none>"); };
    CHECK(value("passkey") == "abc");
    CHECK(value("info_hash") == std::string(reinterpret_cast<const char *>(req.info_hash.data()), 20));
    CHECK(value("peer_id") == std::string(reinterpret_cast<const char *>(req.peer_id.data()), 20));
    CHECK(value("port") == "6881");
    CHECK(value("uploaded") == "11");
    CHECK(value("downloaded") == "22");
    CHECK(value("left") == "1000");
    CHECK(value("compact") == "1");
    CHECK(value("numwant") == "30");
    CHECK(value("key") == "0000001f");
    CHECK(value("event") == "completed");
    req.event = TrackerEvent::None;
    CHECK(build_http_announce_url("http://t/a", req).find("event=") == std::string::npos);
}

// ------------------------------------------------------------ opentracker

TEST_CASE("tracker: HTTP announces to opentracker find each other (compact)")
{
    NEED_OPENTRACKER();
    TestLoop tl;
    InfoHash h = make_hash(1);
    OpenTracker ot({h});
    auto first = announce(tl, ot.http_url(), make_request(h, 1, 6881));
    REQUIRE(first.error == "");
    REQUIRE(first.result);
    CHECK(first.result->interval > 0);
    auto second = announce(tl, ot.http_url(), make_request(h, 2, 6882));
    REQUIRE(second.result);
    CHECK(second.calls == 1);
    CHECK(has_peer(*second.result, {"127.0.0.1", 6881}));
    CHECK(second.result->incomplete == 2);

    // opentracker forgets a peer that says "stopped".
    announce(tl, ot.http_url(), make_request(h, 1, 6881, TrackerEvent::Stopped));
    auto third = announce(tl, ot.http_url(), make_request(h, 3, 6883));
    REQUIRE(third.result);
    CHECK_FALSE(has_peer(*third.result, {"127.0.0.1", 6881}));
    CHECK(has_peer(*third.result, {"127.0.0.1", 6882}));
}

TEST_CASE("tracker: UDP announces to opentracker find each other")
{
    NEED_OPENTRACKER();
    TestLoop tl;
    InfoHash h = make_hash(2);
    OpenTracker ot({h});
    clear_udp_connection_cache();
    auto first = announce(tl, ot.udp_url(), make_request(h, 1, 7881));
    REQUIRE(first.error == "");
    REQUIRE(first.result);
    auto second = announce(tl, ot.udp_url(), make_request(h, 2, 7882)); // with the cached connection id
    REQUIRE(second.error == "");
    REQUIRE(second.result);
    CHECK(has_peer(*second.result, {"127.0.0.1", 7881}));
    CHECK(second.result->interval > 0);
    CHECK(second.result->incomplete == 2);
}

TEST_CASE("tracker: opentracker's refusal reaches the callback as the failure reason")
{
    NEED_OPENTRACKER();
    TestLoop tl;
    OpenTracker ot({make_hash(3)});
    InfoHash unknown = make_hash(4);
    auto http = announce(tl, ot.http_url(), make_request(unknown, 1, 6881));
    CHECK_FALSE(http.result);
    CHECK(http.error.rfind(ot.http_url() + ": failure reason: ", 0) == 0);
    CHECK(http.error.find("not authorized") != std::string::npos);
    auto udp = announce(tl, ot.udp_url(), make_request(unknown, 1, 6881));
    CHECK_FALSE(udp.result);
    // Over UDP it answers with a bare 8-byte announce header instead.
    CHECK(udp.error == ot.udp_url() + ": announce answer too short (8 bytes): the tracker refused it");
}

// ------------------------------------------------------------ embedded tracker

TEST_CASE("tracker: HTTP announces to the embedded tracker on an HttpServer")
{
    TestLoop tl;
    EmbeddedTracker embedded(test_logger());
    Server srv(tl);
    embedded.install(srv.http);
    InfoHash h = make_hash(5);
    auto first = announce(tl, srv.url("/announce"), make_request(h, 1, 6881));
    REQUIRE(first.result);
    CHECK(first.result->peers.empty()); // not itself
    auto second = announce(tl, srv.url("/announce"), make_request(h, 2, 6882));
    REQUIRE(second.result);
    CHECK(second.result->peers == std::vector<PeerAddress>{{"127.0.0.1", 6881}});
    CHECK(embedded.torrents() == 1);
    CHECK(embedded.peers() == 2);
    AnnounceRequest bad = make_request(h, 3, 0);
    auto refused = announce(tl, srv.url("/announce"), bad);
    CHECK(refused.error == srv.url("/announce") + ": failure reason: invalid port '0'");
}

// ------------------------------------------------------------ UDP details

TEST_CASE("tracker: UDP retransmits a lost packet")
{
    TestLoop tl;
    FakeUdpTracker fake(tl);
    fake.drop = 1;
    clear_udp_connection_cache();
    auto t0 = Clock::now();
    auto a = announce(tl, fake.url(), make_request(make_hash(6), 1, 6881), 1000ms); // first retry after 250 ms
    double took = since(t0);
    REQUIRE(a.error == "");
    REQUIRE(a.result);
    CHECK(a.result->peers == fake.peers);
    CHECK(a.result->interval == 900);
    CHECK(a.result->incomplete == 3);
    CHECK(a.result->complete == 2);
    CHECK(fake.packets == 3); // lost connect, connect, announce
    CHECK(fake.connects == 1);
    CHECK(took >= 0.24);
    CHECK(took < 0.9);
}

TEST_CASE("tracker: UDP reuses the connection id and sends BEP 15 fields")
{
    TestLoop tl;
    FakeUdpTracker fake(tl);
    clear_udp_connection_cache();
    InfoHash h = make_hash(7);
    AnnounceRequest req = make_request(h, 5, 6999);
    req.uploaded = 3;
    req.downloaded = 4;
    req.left = 5;
    req.numwant = 77;
    REQUIRE(announce(tl, fake.url(), req).result);
    req.event = TrackerEvent::Stopped;
    REQUIRE(announce(tl, fake.url(), req).result);
    CHECK(fake.connects == 1);
    CHECK(fake.announces == 2);
    const std::string &p = fake.last_announce;
    REQUIRE(p.size() == 98);
    CHECK(p.substr(16, 20) == std::string(reinterpret_cast<const char *>(h.data()), 20));
    CHECK(p.substr(36, 20) == std::string(reinterpret_cast<const char *>(req.peer_id.data()), 20));
    CHECK(FakeUdpTracker::get(p, 56, 8) == 4);  // downloaded
    CHECK(FakeUdpTracker::get(p, 64, 8) == 5);  // left
    CHECK(FakeUdpTracker::get(p, 72, 8) == 3);  // uploaded
    CHECK(FakeUdpTracker::get(p, 80, 4) == 3);  // stopped
    CHECK(FakeUdpTracker::get(p, 88, 4) == req.key);
    CHECK(FakeUdpTracker::get(p, 92, 4) == 77); // num_want
    CHECK(FakeUdpTracker::get(p, 96, 2) == 6999);
}

TEST_CASE("tracker: UDP errors, silence and refusal name the URL")
{
    TestLoop tl;
    clear_udp_connection_cache();
    {
        FakeUdpTracker fake(tl);
        fake.error = "go away";
        auto a = announce(tl, fake.url(), make_request(make_hash(8), 1, 1));
        CHECK(a.error == fake.url() + ": tracker error: go away");
    }
    {
        FakeUdpTracker fake(tl);
        fake.silent = true;
        auto t0 = Clock::now();
        auto a = announce(tl, fake.url(), make_request(make_hash(8), 1, 1), 400ms);
        CHECK(a.error == fake.url() + ": timed out after 400 ms waiting for the connect answer");
        CHECK(since(t0) >= 0.39);
        CHECK(fake.packets == 3); // at 0, 100 and 300 ms
    }
    {
        int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof sa;
        ::bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa);
        ::getsockname(fd, reinterpret_cast<sockaddr *>(&sa), &len);
        ::close(fd);
        std::string url = "udp://127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
        auto a = announce(tl, url, make_request(make_hash(8), 1, 1), 2000ms);
        CHECK(a.error == url + ": receive failed: connection refused");
    }
}

TEST_CASE("tracker: bad URLs fail through the callback")
{
    TestLoop tl;
    for (auto [url, error] : std::vector<std::pair<std::string, std::string>>{
             {"udp://tracker.example", "udp://tracker.example: a UDP tracker URL needs a port (udp://host:port)"},
             {"udp://tracker.example:0/announce",
              "udp://tracker.example:0/announce: expected udp://host:port with a port in 1-65535"},
             {"https://t.example/announce", "https is not supported"},
             {"wss://t.example/announce", "unsupported scheme 'wss'"}}) {
        INFO(url);
        Answer a;
        TrackerAnnounce ta(&tl.loop, url, make_request(make_hash(1), 1, 1), [&](const AnnounceResult *r, const std::string &e) {
            ++a.calls;
            a.done = true;
            a.error = e;
            CHECK_FALSE(r);
        });
        CHECK_FALSE(a.done); // never from the constructor
        REQUIRE(tl.run_until([&] { return a.done; }, 2000ms));
        CHECK(a.error.find(error) != std::string::npos);
    }
}

TEST_CASE("tracker: destroying an announce cancels its callback")
{
    TestLoop tl;
    FakeUdpTracker silent(tl);
    silent.silent = true;
    Server srv(tl);
    std::vector<std::shared_ptr<net::HttpResponse>> held; // never answered
    srv.http.route("/announce", [&](const net::HttpRequest &, std::shared_ptr<net::HttpResponse> res) {
        held.push_back(std::move(res));
    });
    int calls = 0;
    auto cb = [&](const AnnounceResult *, const std::string &) { ++calls; };
    auto udp = std::make_unique<TrackerAnnounce>(&tl.loop, silent.url(), make_request(make_hash(1), 1, 1), cb, 200ms);
    auto http = std::make_unique<TrackerAnnounce>(&tl.loop, srv.url("/announce"), make_request(make_hash(1), 1, 1), cb, 200ms);
    tl.run_until([&] { return !held.empty(); }, 1000ms);
    CHECK(held.size() == 1);
    udp.reset();
    http.reset();
    tl.run_for(300ms); // past both timeouts
    CHECK(calls == 0);
    held.clear();
}

// ------------------------------------------------------------ Announcer

TEST_CASE("tracker: the announcer backs off a dead tracker, opens its breaker, and keeps the live one")
{
    NEED_OPENTRACKER();
    TestLoop tl;
    InfoHash h = make_hash(10);
    OpenTracker ot({h});
    Server dead(tl);
    int dead_hits = 0;
    dead.http.route("/announce", [&](const net::HttpRequest &, std::shared_ptr<net::HttpResponse> res) {
        ++dead_hits;
        res->send(503, "text/plain", "down");
    });
    clear_udp_connection_cache();
    auto other = announce(tl, ot.udp_url(), make_request(h, 1, 9001)); // somebody to find
    INFO(other.error);
    REQUIRE(other.result);

    AnnouncerOptions opt;
    opt.timeout = 1000ms;
    opt.backoff.initial = 50ms;
    opt.backoff.max = 5000ms;
    opt.backoff.jitter = 0;
    opt.breaker.failure_threshold = 3;
    opt.breaker.open_duration = 600ms;
    opt.min_interval_s = 1;
    Announcer ann(&tl.loop, test_logger(), {dead.url("/announce"), ot.udp_url()}, opt);
    ann.make_request = [&] { return make_request(h, 2, 9002, TrackerEvent::None); };
    std::vector<PeerAddress> got;
    ann.on_peers = [&](const std::vector<PeerAddress> &p) { got.insert(got.end(), p.begin(), p.end()); };
    auto t0 = Clock::now();
    ann.start();

    auto breaker = [&] { return ann.status()[0]["breaker"].get<std::string>(); };
    // Failures at about 0, 50 and 150 ms open the breaker.
    REQUIRE(tl.run_until([&] { return breaker() == "open"; }, 2000ms));
    double opened_at = since(t0);
    CHECK(dead_hits == 3);
    CHECK(opened_at >= 0.14);
    // While open, the tracker is left alone.
    tl.run_for(400ms);
    CHECK(dead_hits == 3);
    auto st = ann.status();
    CHECK(st[0]["state"] == "error");
    CHECK(st[0]["last_error"] == dead.url("/announce") + ": HTTP 503");
    CHECK(st[0]["failures"] == 3);
    CHECK(st[0]["next_announce_s"].get<double>() > 0);
    // The live tracker delivered the other peer meanwhile.
    CHECK(std::find(got.begin(), got.end(), PeerAddress{"127.0.0.1", 9001}) != got.end());
    CHECK(st[1]["state"] == "ok");
    CHECK(st[1]["breaker"] == "closed");
    CHECK(st[1]["peers"].get<int>() >= 1);
    CHECK(st[1]["next_announce_s"].get<double>() > 1);
    // Half-open after open_duration: one trial, which fails and re-opens it.
    REQUIRE(tl.run_until([&] { return dead_hits == 4; }, 2000ms));
    CHECK(since(t0) - opened_at >= 0.55);
    CHECK(tl.run_until([&] { return breaker() == "open"; }, 1000ms));
    CHECK(dead_hits == 4);

    // stop: "stopped" goes to the tracker that took "started" (opentracker
    // forgets us), not to the dead one; done within 2 s.
    bool stopped = false;
    auto s0 = Clock::now();
    ann.stop([&] { stopped = true; });
    CHECK_FALSE(stopped); // never from inside stop()
    REQUIRE(tl.run_until([&] { return stopped; }, 2500ms));
    CHECK(since(s0) < 2.1);
    CHECK(dead_hits == 4);
    auto after = announce(tl, ot.udp_url(), make_request(h, 3, 9003));
    REQUIRE(after.result);
    CHECK(has_peer(*after.result, {"127.0.0.1", 9001}));
    CHECK_FALSE(has_peer(*after.result, {"127.0.0.1", 9002}));
}

TEST_CASE("tracker: the announcer sends completed once and announce_now respects min_interval_s")
{
    TestLoop tl;
    EmbeddedTracker embedded(test_logger());
    Server srv(tl);
    std::vector<std::string> events;
    srv.http.route("/announce", [&](const net::HttpRequest &req, std::shared_ptr<net::HttpResponse> res) {
        events.push_back(req.param("event").value_or(""));
        res->send(200, "text/plain", embedded.announce(req.query, req.peer_ip));
    });
    InfoHash h = make_hash(11);
    AnnouncerOptions opt;
    opt.min_interval_s = 30;
    Announcer ann(&tl.loop, test_logger(), {srv.url("/announce")}, opt);
    std::int64_t left = 500;
    ann.make_request = [&] {
        auto r = make_request(h, 1, 6881, TrackerEvent::None);
        r.left = left;
        return r;
    };
    ann.start();
    REQUIRE(tl.run_until([&] { return ann.status()[0]["state"] == "ok"; }, 2000ms));
    ann.announce_now(); // announced just now: nothing
    tl.run_for(50ms);
    CHECK(events == std::vector<std::string>{"started"});
    left = 0;
    ann.completed();
    ann.completed(); // once
    REQUIRE(tl.run_until([&] { return events.size() == 2 && ann.status()[0]["state"] == "ok"; }, 2000ms));
    tl.run_for(50ms);
    CHECK(events == std::vector<std::string>{"started", "completed"});
    auto view = parse_http_announce_response(embedded.announce(
        net::parse_query(build_http_announce_url("", make_request(h, 2, 6882)).substr(1)), "127.0.0.2"));
    CHECK(view.complete == 1);
    CHECK(ann.status()[0]["next_announce_s"].get<double>() > 29);
}

TEST_CASE("tracker: the announcer's stop finishes within 2 s when a tracker hangs")
{
    TestLoop tl;
    Server srv(tl);
    std::vector<std::shared_ptr<net::HttpResponse>> held;
    int requests = 0;
    srv.http.route("/announce", [&](const net::HttpRequest &, std::shared_ptr<net::HttpResponse> res) {
        if (++requests == 1) // takes "started", then hangs
            res->send(200, "text/plain", "d8:intervali1800e5:peers0:e");
        else
            held.push_back(std::move(res));
    });
    AnnouncerOptions opt;
    opt.timeout = 10000ms;
    auto ann = std::make_unique<Announcer>(&tl.loop, test_logger(), std::vector<std::string>{srv.url("/announce")}, opt);
    ann->make_request = [&] { return make_request(make_hash(12), 1, 6881, TrackerEvent::None); };
    ann->start();
    REQUIRE(tl.run_until([&] { return ann->status()[0]["state"] == "ok"; }, 2000ms));
    bool stopped = false;
    auto t0 = Clock::now();
    ann->stop([&] { stopped = true; });
    REQUIRE(tl.run_until([&] { return stopped; }, 3000ms));
    double took = since(t0);
    CHECK(requests == 2); // the "stopped" announce went out
    CHECK(took >= 1.9);
    CHECK(took < 2.5);
    bool again = false; // a stop after the stop still gets its done
    ann->stop([&] { again = true; });
    CHECK_FALSE(again);
    CHECK(tl.run_until([&] { return again; }, 500ms));
    ann.reset();
    held.clear();

    // Destroyed in the middle of a stop: done never runs.
    requests = 0;
    ann = std::make_unique<Announcer>(&tl.loop, test_logger(), std::vector<std::string>{srv.url("/announce")}, opt);
    ann->make_request = [&] { return make_request(make_hash(12), 1, 6881, TrackerEvent::None); };
    ann->start();
    REQUIRE(tl.run_until([&] { return ann->status()[0]["state"] == "ok"; }, 2000ms));
    bool late = false;
    ann->stop([&] { late = true; });
    tl.run_until([&] { return requests == 2; }, 1000ms);
    ann.reset();
    tl.run_for(100ms);
    CHECK_FALSE(late);
    held.clear();
}
