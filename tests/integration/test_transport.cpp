// The TransportEngine end to end between two OpenAce engines in one process,
// over real loopback sockets: a seed job, a play job that gets its metadata
// from the seeder (BEP 9) and streams a chosen file, TLS between the two with
// the peer id bound to the certificate, a peer whose certificate does not
// match its peer id, streaming before the download ends, and a seek that
// moves the deadline window.  Interoperability with libtorrent, Transmission
// and opentracker is in tests/interop (pytest).
#include <openace/engine.hpp>

#include "core/config.hpp"
#include "net/tls.hpp"
#include "transport/identity.hpp"
#include "transport/storage.hpp"
#include "transport/torrent.hpp"
#include "transport/transport_context.hpp"
#include "transport/wire.hpp"

#include "temp_dir.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

using namespace openace;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string random_bytes(std::size_t n, unsigned seed)
{
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto &c : s)
        c = static_cast<char>(rng());
    return s;
}

void write_file(const std::string &path, const std::string &data)
{
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string read_file(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

std::string engine_config(const std::string &state_dir, json transport = json::object())
{
    json c = {{"engine", {{"http_address", "127.0.0.1:0"}, {"state_dir", state_dir}}},
              {"logging", {{"console", false}}},
              {"transport", {{"listen_port", 0}}}};
    for (auto it = transport.begin(); it != transport.end(); ++it)
        c["transport"][it.key()] = it.value();
    return c.dump();
}

// Events of one job until `until` says stop (or the final event).
json wait_job(Engine &e, int64_t job, const std::function<bool(const json &)> &until, double timeout_s = 60)
{
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
        auto ev = e.wait_event(0.2);
        if (!ev || ev->job_id != job)
            continue;
        auto j = json::parse(ev->json);
        if (ev->id == OPENACE_EVENT_JOB_PROGRESS && until && until(j["progress"]))
            return j["progress"];
        if (ev->id == OPENACE_EVENT_JOB_STATE && ev->final)
            return j;
    }
    FAIL("job " << job << ": nothing awaited within " << timeout_s << " s");
    return {};
}

// A seeding engine: returns the "seeding" progress (infohash, listen_port).
json start_seed(Engine &e, const std::string &path, int64_t piece_length, int64_t *job_id = nullptr)
{
    int64_t id = e.submit_job(json{{"type", "seed"}, {"path", path}, {"piece_length", piece_length}}.dump());
    if (job_id)
        *job_id = id;
    json p = wait_job(e, id, [](const json &p) { return p.value("state", "") == "seeding"; });
    REQUIRE(p.value("state", "") == "seeding");
    REQUIRE(p.value("listen_port", 0) > 0);
    return p;
}

std::string peer_of(const json &seeding)
{
    return "127.0.0.1:" + std::to_string(seeding["listen_port"].get<int>());
}

} // namespace

TEST_CASE("transport: an engine plays a chosen file of a multi-file torrent that another engine seeds, metadata by BEP 9, over TLS")
{
    testdir::TempDir tmp("transport-test");
    REQUIRE(!tmp.path.empty());
    const std::string a = random_bytes(100'000, 1), b = random_bytes(1'234'567, 2), c = random_bytes(5, 3);
    write_file(tmp.path + "/content/a.bin", a);
    write_file(tmp.path + "/content/sub/b.mkv", b);
    write_file(tmp.path + "/content/z.txt", c);

    Engine seeder(engine_config(tmp.path + "/state-seed"));
    json seeding = start_seed(seeder, tmp.path + "/content", 3 * 16384); // an unusual piece size
    const std::string ih = seeding["infohash"].get<std::string>();

    Engine player(engine_config(tmp.path + "/state-play", {{"peers", {peer_of(seeding)}}}));
    const std::string out = tmp.path + "/out.mkv";
    int64_t id = player.submit_job(json{{"type", "play"}, {"infohash", ih}, {"file_index", 1}, {"output", out}}.dump());
    std::vector<std::string> states;
    json fin = wait_job(player, id, [&](const json &p) {
        if (states.empty() || states.back() != p.value("state", ""))
            states.push_back(p.value("state", ""));
        return false;
    });
    INFO(fin.dump());
    REQUIRE(fin.value("state", "") == "done");
    CHECK(read_file(out) == b);
    const json &r = fin["result"];
    CHECK(r["written"] == b.size());
    CHECK(r["file_index"] == 1);
    // The two engines found each other to be OpenAce peers and moved to TLS.
    CHECK(r["tls_peers"].get<int>() >= 1);
    // resolving (no metadata yet) -> prebuffering -> playing, in that order.
    REQUIRE(states.size() >= 3);
    CHECK(states[0] == "resolving");
    CHECK(std::find(states.begin(), states.end(), "playing") != states.end());
}

TEST_CASE("transport: a play job fails with a clear error for a file index the torrent does not have")
{
    testdir::TempDir tmp("transport-test");
    write_file(tmp.path + "/one.bin", random_bytes(50'000, 4));
    Engine seeder(engine_config(tmp.path + "/s"));
    json seeding = start_seed(seeder, tmp.path + "/one.bin", 16384);
    Engine player(engine_config(tmp.path + "/p", {{"peers", {peer_of(seeding)}}}));
    int64_t id = player.submit_job(json{{"type", "play"},
                                        {"infohash", seeding["infohash"]},
                                        {"file_index", 3},
                                        {"output", tmp.path + "/x"}}
                                       .dump());
    json fin = wait_job(player, id, nullptr);
    INFO(fin.dump());
    REQUIRE(fin.value("state", "") == "failed");
    CHECK(fin["error"]["message"].get<std::string>().find("file_index 3 is out of range: the torrent has 1 file") !=
          std::string::npos);
}

TEST_CASE("transport: play and seed jobs name the bad field")
{
    testdir::TempDir tmp("transport-test");
    Engine e(engine_config(tmp.path + "/s"));
    auto err = [&](const json &spec) {
        try {
            e.submit_job(spec.dump());
        } catch (const Error &x) {
            return std::string(x.what());
        }
        return std::string("accepted");
    };
    CHECK_THAT(err({{"type", "play"}, {"infohash", "xyz"}, {"output", "-"}}),
               Catch::Contains("field 'infohash': expected 40 hexadecimal digits"));
    CHECK_THAT(err({{"type", "play"}, {"output", "-"}}), Catch::Contains("exactly one of 'infohash', 'magnet' or 'torrent'"));
    CHECK_THAT(err({{"type", "play"}, {"magnet", "magnet:?dn=x"}, {"output", "-"}}), Catch::Contains("field 'magnet'"));
    CHECK_THAT(err({{"type", "play"}, {"infohash", std::string(40, 'a')}, {"output", "-"}, {"peers", {"nohost"}}}),
               Catch::Contains("field 'peers'"));
    CHECK_THAT(err({{"type", "play"}, {"infohash", std::string(40, 'a')}}), Catch::Contains("field 'output'"));
    CHECK_THAT(err({{"type", "seed"}}), Catch::Contains("field 'path'"));
    CHECK_THAT(err({{"type", "seed"}, {"path", "/x"}, {"piece_length", 1000}}), Catch::Contains("field 'piece_length'"));
}

TEST_CASE("transport: a seed job of a missing path fails naming the path")
{
    testdir::TempDir tmp("transport-test");
    Engine e(engine_config(tmp.path + "/s"));
    int64_t id = e.submit_job(json{{"type", "seed"}, {"path", tmp.path + "/does-not-exist"}}.dump());
    json fin = wait_job(e, id, nullptr);
    REQUIRE(fin.value("state", "") == "failed");
    CHECK_THAT(fin["error"]["message"].get<std::string>(), Catch::Contains("does-not-exist"));
}

TEST_CASE("transport: playing starts while later pieces are still missing")
{
    testdir::TempDir tmp("transport-test");
    const std::string data = random_bytes(6 << 20, 5);
    write_file(tmp.path + "/movie.ts", data);
    // The seeder uploads at 1.5 MiB/s: the 6 MiB take about 4 s.
    Engine seeder(engine_config(tmp.path + "/s", {{"upload_rate_limit", 1536}}));
    json seeding = start_seed(seeder, tmp.path + "/movie.ts", 64 * 1024);
    Engine player(engine_config(tmp.path + "/p", {{"peers", {peer_of(seeding)}}}));
    int64_t id = player.submit_job(
        json{{"type", "play"}, {"infohash", seeding["infohash"]}, {"output", tmp.path + "/out.ts"}}.dump());
    json playing = wait_job(player, id, [](const json &p) { return p.value("state", "") == "playing"; });
    INFO(playing.dump());
    REQUIRE(playing.value("state", "") == "playing");
    CHECK(playing["written"].get<int64_t>() > 0);
    CHECK(playing["pieces_have"].get<int64_t>() < playing["pieces"].get<int64_t>());
    json fin = wait_job(player, id, nullptr);
    REQUIRE(fin.value("state", "") == "done");
    CHECK(read_file(tmp.path + "/out.ts") == data);
}

namespace {

// Blocking TLS client over a real socket, for the identity tests.
struct TlsClient {
    int fd = -1;
    std::unique_ptr<net::TlsContext> ctx;
    std::unique_ptr<net::TlsSession> tls;
    std::string plain;
    bool closed = false;

    TlsClient(int port, const transport::Identity &id)
    {
        fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(static_cast<uint16_t>(port));
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0);
        ctx = std::make_unique<net::TlsContext>(id.cert_pem, id.key_pem);
        tls = std::make_unique<net::TlsSession>(*ctx, false);
        tls->on_ciphertext = [this](std::string_view b) { REQUIRE(::send(fd, b.data(), b.size(), MSG_NOSIGNAL) == ssize_t(b.size())); };
        tls->on_plaintext = [this](std::string_view b) { plain.append(b); };
        tls->start();
    }
    ~TlsClient() { ::close(fd); }
    // Pumps socket bytes into the session until pred() or the peer closes.
    bool pump(const std::function<bool()> &pred, double timeout_s = 10)
    {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        while (!pred() && !closed && std::chrono::steady_clock::now() < deadline) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0)
                continue;
            char buf[16384];
            ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) {
                closed = true;
                break;
            }
            if (!tls->feed(std::string_view(buf, static_cast<size_t>(n))))
                closed = true;
        }
        return pred();
    }
};

std::string handshake_bytes(const std::string &ih_hex, const transport::PeerId &id)
{
    transport::wire::Handshake h;
    for (size_t i = 0; i < 20; ++i)
        h.info_hash[i] = static_cast<uint8_t>(std::stoi(ih_hex.substr(2 * i, 2), nullptr, 16));
    h.peer_id = id;
    return transport::wire::encode_handshake(h);
}

} // namespace

TEST_CASE("transport: over TLS the peer id must be the one derived from the certificate's key")
{
    testdir::TempDir tmp("transport-test");
    write_file(tmp.path + "/f.bin", random_bytes(40'000, 6));
    Engine seeder(engine_config(tmp.path + "/s"));
    json seeding = start_seed(seeder, tmp.path + "/f.bin", 16384);
    const int port = seeding["listen_port"].get<int>();
    const std::string ih = seeding["infohash"].get<std::string>();
    transport::Identity me = transport::load_or_create_identity(tmp.path + "/me");

    SECTION("the matching peer id is answered with the seeder's handshake")
    {
        TlsClient c(port, me);
        REQUIRE(c.pump([&] { return c.tls->handshake_done(); }));
        REQUIRE(c.tls->write(handshake_bytes(ih, me.peer_id)));
        REQUIRE(c.pump([&] { return c.plain.size() >= transport::wire::kHandshakeSize; }));
        auto theirs = transport::wire::decode_handshake(c.plain.substr(0, transport::wire::kHandshakeSize));
        // And the seeder's own peer id is bound to its certificate.
        CHECK(theirs.peer_id == transport::peer_id_for_key(c.tls->peer_public_key_der()));
    }
    SECTION("another OpenAce peer id on this certificate is refused")
    {
        transport::Identity other = transport::load_or_create_identity(tmp.path + "/other");
        TlsClient c(port, me);
        REQUIRE(c.pump([&] { return c.tls->handshake_done(); }));
        REQUIRE(c.tls->write(handshake_bytes(ih, other.peer_id)));
        c.pump([] { return false; }, 5);
        CHECK(c.closed);
        CHECK(c.plain.empty()); // not even the seeder's handshake
    }
}

TEST_CASE("transport: a seek far ahead moves the deadline window there")
{
    testdir::TempDir tmp("transport-test");
    const std::string data = random_bytes(8 << 20, 7);
    write_file(tmp.path + "/big.bin", data);
    // Slow enough that the start of the file cannot be done when we look.
    Engine seeder(engine_config(tmp.path + "/s", {{"upload_rate_limit", 2048}}));
    json seeding = start_seed(seeder, tmp.path + "/big.bin", 64 * 1024);

    // A Torrent driven directly on a loop of this thread (which then writes
    // to sockets: a peer closing must not raise SIGPIPE here).
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);
    uv_loop_t loop;
    uv_loop_init(&loop);
    core::Log log;
    core::Config cfg = core::default_config();
    cfg.streaming.buffer_size = 1; // a window of one second of media
    {
        transport::TransportContext tctx;
        tctx.loop = &loop;
        tctx.log = core::Logger(log, "transport");
        tctx.config = &cfg;
        tctx.peer_id = transport::load_or_create_identity(tmp.path + "/me").peer_id;
        transport::DiskCache cache(&loop, tctx.log, tmp.path + "/cache", 64 << 20);
        tctx.cache = &cache;
        transport::InfoHash ih{};
        const std::string hex = seeding["infohash"].get<std::string>();
        for (size_t i = 0; i < 20; ++i)
            ih[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
        auto t = std::make_unique<transport::Torrent>(tctx, ih);
        t->add_peers({transport::parse_peer_address(peer_of(seeding))}, true);
        t->start();
        auto run_until = [&](const std::function<bool()> &pred, double timeout_s) {
            auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
            while (!pred() && std::chrono::steady_clock::now() < deadline)
                uv_run(&loop, UV_RUN_ONCE);
            return pred();
        };
        REQUIRE(run_until([&] { return t->has_metadata(); }, 20));
        const int64_t size = static_cast<int64_t>(data.size());
        const int reader = t->open_reader(0, size);
        const int64_t far = size - (1 << 20); // 1 MiB before the end
        t->seek(reader, far);
        std::string got;
        bool done = false;
        t->read(reader, 65536, [&](std::string d, const std::string &err) {
            REQUIRE(err.empty());
            got = std::move(d);
            done = true;
        });
        REQUIRE(run_until([&] { return done; }, 30));
        CHECK(got == data.substr(static_cast<size_t>(far), got.size()));
        // The window went there first: most of the file before it is still missing.
        const json st = t->status();
        INFO(st.dump());
        CHECK(st["pieces_have"].get<int64_t>() < st["pieces"].get<int64_t>() / 2);
        bool stopped = false;
        t->stop([&] { stopped = true; });
        run_until([&] { return stopped; }, 5);
        t.reset();
    }
    while (uv_run(&loop, UV_RUN_NOWAIT) != 0) {
    }
    uv_loop_close(&loop);
}

TEST_CASE("transport: the download rate limit holds a play job back")
{
    testdir::TempDir tmp("transport-test");
    const std::string data = random_bytes(3 << 20, 8);
    write_file(tmp.path + "/f.bin", data);
    Engine seeder(engine_config(tmp.path + "/s"));
    json seeding = start_seed(seeder, tmp.path + "/f.bin", 64 * 1024);
    // 1 MiB/s with a one-second burst: 3 MiB cannot take much less than 2 s.
    Engine player(engine_config(tmp.path + "/p", {{"peers", {peer_of(seeding)}}, {"download_rate_limit", 1024}}));
    auto t0 = std::chrono::steady_clock::now();
    int64_t id = player.submit_job(
        json{{"type", "play"}, {"infohash", seeding["infohash"]}, {"output", tmp.path + "/out.bin"}}.dump());
    json fin = wait_job(player, id, nullptr);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    REQUIRE(fin.value("state", "") == "done");
    CHECK(read_file(tmp.path + "/out.bin") == data);
    CHECK(seconds > 1.5);
}

TEST_CASE("transport: a connection where neither side is interested closes after transport.idle_timeout")
{
    testdir::TempDir tmp("transport-test");
    write_file(tmp.path + "/f.bin", random_bytes(20'000, 9));
    Engine seeder(engine_config(tmp.path + "/s", {{"idle_timeout", 1.5}}));
    json seeding = start_seed(seeder, tmp.path + "/f.bin", 16384);
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(seeding["listen_port"].get<int>()));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0);
    transport::PeerId id{};
    std::memcpy(id.data(), "-XX0001-idle-test-12", 20);
    std::string hs = handshake_bytes(seeding["infohash"].get<std::string>(), id);
    REQUIRE(::send(fd, hs.data(), hs.size(), MSG_NOSIGNAL) == ssize_t(hs.size()));
    // Keep-alives every 300 ms: traffic, but no interest either way.
    auto t0 = std::chrono::steady_clock::now();
    bool closed = false;
    while (!closed && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(8)) {
        const char keepalive[4] = {0, 0, 0, 0};
        ::send(fd, keepalive, 4, MSG_NOSIGNAL);
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 300) > 0) {
            char buf[4096];
            closed = ::recv(fd, buf, sizeof buf, 0) <= 0;
        }
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ::close(fd);
    CHECK(closed);
    CHECK(seconds >= 1.4); // not before the timeout
}
