// TLS between OpenAce peers: the persistent identity (key, certificate, peer
// id) and TLS sessions over memory buffers, in memory and over real libuv
// TCP sockets on 127.0.0.1.  Identities live in temporary directories that
// are removed at the end; every loop is bounded in rounds and time.
#include "net/tls.hpp"
#include "net/uv_handle.hpp"
#include "transport/identity.hpp"
#include "transport/magnet.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>

#include <mbedtls/chachapoly.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/x509_crt.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>

using namespace openace;
using namespace openace::net;
using namespace openace::transport;
namespace fs = std::filesystem;

namespace {

// A fresh directory under /tmp, removed with everything in it.
struct TempDir {
    fs::path path;
    TempDir()
    {
        std::string tmpl = (fs::temp_directory_path() / "openace-tls-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir()
    {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
};

unsigned mode_of(const fs::path &p)
{
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

std::string slurp(const fs::path &p)
{
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

void spit(const fs::path &p, const std::string &data)
{
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << data;
}

// Two identities made once for all session tests (key generation is the
// slow part).
const Identity &identity(int which)
{
    static TempDir dir;
    static const Identity ids[2] = {load_or_create_identity((dir.path / "a").string()),
                                    load_or_create_identity((dir.path / "b").string())};
    return ids[which];
}

std::string random_bytes(std::size_t n, unsigned seed)
{
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (char &c : s)
        c = static_cast<char>(rng() & 0xff);
    return s;
}

std::string suite_name(int id)
{
    return mbedtls_ssl_get_ciphersuite_name(id);
}

// One end of an in-memory connection: ciphertext it produced waits in
// `wire` until pump() moves it to the other end.
struct Side {
    TlsContext ctx;
    TlsSession s;
    std::string wire;
    std::string got;
    int done = 0;

    Side(const Identity &id, bool server) : ctx(id.cert_pem, id.key_pem), s(ctx, server)
    {
        s.on_ciphertext = [this](std::string_view b) { wire.append(b); };
        s.on_plaintext = [this](std::string_view b) { got.append(b); };
        s.on_handshake_done = [this] { ++done; };
    }
};

struct Pair {
    Side client{identity(0), false};
    Side server{identity(1), true};
};

// Feeds everything `from` has produced into `to`, in pieces of `chunk`.
void move(Side &from, Side &to, std::size_t chunk)
{
    std::string data;
    data.swap(from.wire);
    for (std::size_t off = 0; off < data.size(); off += chunk)
        to.s.feed(std::string_view(data).substr(off, chunk));
}

// Moves bytes both ways until neither side has anything left to send.
void pump(Pair &p, std::size_t chunk = SIZE_MAX)
{
    for (int round = 0; round < 1000 && (!p.client.wire.empty() || !p.server.wire.empty()); ++round) {
        move(p.client, p.server, chunk);
        move(p.server, p.client, chunk);
    }
    REQUIRE(p.client.wire.empty());
    REQUIRE(p.server.wire.empty());
}

void handshake(Pair &p)
{
    p.client.s.start();
    pump(p);
    REQUIRE(p.client.s.handshake_done());
    REQUIRE(p.server.s.handshake_done());
}

} // namespace

// ------------------------------------------------------------------ identity

TEST_CASE("identity: created then reloaded gives the same key, cert and peer id")
{
    TempDir tmp;
    const fs::path dir = tmp.path / "state" / "engine";
    Identity a = load_or_create_identity(dir.string());

    CHECK(mode_of(dir) == 0700);
    CHECK(mode_of(dir / "identity.key") == 0600);
    CHECK(mode_of(dir / "identity.crt") == 0600);
    CHECK_FALSE(fs::exists(dir / "identity.key.tmp"));
    CHECK_FALSE(fs::exists(dir / "identity.crt.tmp"));
    CHECK(slurp(dir / "identity.key") == a.key_pem);
    CHECK(slurp(dir / "identity.crt") == a.cert_pem);
    CHECK(a.key_pem.find("-----BEGIN EC PRIVATE KEY-----") == 0);
    CHECK(a.peer_id == peer_id_for_key(a.public_key_der));
    CHECK(is_openace_peer_id(a.peer_id));

    Identity b = load_or_create_identity(dir.string() + "/");
    CHECK(b.key_pem == a.key_pem);
    CHECK(b.cert_pem == a.cert_pem);
    CHECK(b.public_key_der == a.public_key_der);
    CHECK(b.peer_id == a.peer_id);

    TempDir other;
    CHECK(load_or_create_identity(other.path.string()).peer_id != a.peer_id);
}

TEST_CASE("identity: the certificate is self-signed for the key, CN openace-<peer id hex>, 20 years")
{
    TempDir tmp;
    Identity id = load_or_create_identity(tmp.path.string());
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    REQUIRE(mbedtls_x509_crt_parse(&crt, reinterpret_cast<const unsigned char *>(id.cert_pem.c_str()),
                                   id.cert_pem.size() + 1) == 0);
    char subject[256], issuer[256];
    REQUIRE(mbedtls_x509_dn_gets(subject, sizeof subject, &crt.subject) > 0);
    REQUIRE(mbedtls_x509_dn_gets(issuer, sizeof issuer, &crt.issuer) > 0);
    CHECK(std::string(subject) == "CN=openace-" + to_hex(id.peer_id));
    CHECK(std::string(issuer) == subject);
    int years = crt.valid_to.year - crt.valid_from.year;
    CHECK((years == 19 || years == 20));
    CHECK(mbedtls_x509_time_is_past(&crt.valid_from));
    // Self-signed: it verifies against itself.
    uint32_t flags = 0;
    CHECK(mbedtls_x509_crt_verify(&crt, &crt, nullptr, nullptr, &flags, nullptr, nullptr) == 0);
    unsigned char der[512];
    int n = mbedtls_pk_write_pubkey_der(&crt.pk, der, sizeof der);
    REQUIRE(n > 0);
    CHECK(std::string(reinterpret_cast<char *>(der + sizeof der - n), static_cast<std::size_t>(n)) ==
          id.public_key_der);
    mbedtls_x509_crt_free(&crt);
}

TEST_CASE("identity: peer id is -OA0100- and the first 12 bytes of SHA-256 of the key")
{
    const std::string der = random_bytes(91, 7);
    unsigned char digest[32];
    mbedtls_sha256_ret(reinterpret_cast<const unsigned char *>(der.data()), der.size(), digest, 0);
    PeerId id = peer_id_for_key(der);
    CHECK(std::string(id.begin(), id.begin() + 8) == "-OA0100-");
    CHECK(std::equal(id.begin() + 8, id.end(), digest));
    CHECK(is_openace_peer_id(id));
    PeerId qb{};
    std::memcpy(qb.data(), "-qB4500-abcdefghijkl", 20);
    CHECK_FALSE(is_openace_peer_id(qb));
}

TEST_CASE("identity: a corrupt key file gives a PARSE error naming the path and is kept")
{
    TempDir tmp;
    const fs::path key = tmp.path / "identity.key";
    for (const std::string &junk : {std::string("not a key at all"),
                                    std::string("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"),
                                    std::string()}) {
        spit(key, junk);
        try {
            load_or_create_identity(tmp.path.string());
            FAIL("a corrupt key was accepted");
        } catch (const Error &e) {
            CHECK(e.code() == Errc::PARSE);
            CHECK(e.component() == "identity");
            CHECK(std::string(e.what()).find(key.string()) != std::string::npos);
        }
        CHECK(slurp(key) == junk);
    }
}

TEST_CASE("identity: a state dir that is a file gives an IO error naming the path")
{
    TempDir tmp;
    const fs::path file = tmp.path / "plain-file";
    spit(file, "x");
    try {
        load_or_create_identity(file.string());
        FAIL("a file was taken for a directory");
    } catch (const Error &e) {
        CHECK(e.code() == Errc::IO);
        CHECK(std::string(e.what()).find(file.string()) != std::string::npos);
    }
}

TEST_CASE("identity: a missing or foreign certificate is regenerated for the existing key")
{
    TempDir tmp, other;
    const fs::path crt = tmp.path / "identity.crt";
    Identity a = load_or_create_identity(tmp.path.string());

    fs::remove(crt);
    Identity b = load_or_create_identity(tmp.path.string());
    CHECK(b.key_pem == a.key_pem);
    CHECK(b.peer_id == a.peer_id);
    CHECK(fs::exists(crt));
    CHECK(mode_of(crt) == 0600);
    CHECK(slurp(crt) == b.cert_pem);
    CHECK_NOTHROW(TlsContext(b.cert_pem, b.key_pem)); // the new cert matches the key

    spit(crt, load_or_create_identity(other.path.string()).cert_pem);
    Identity c = load_or_create_identity(tmp.path.string());
    CHECK(c.peer_id == a.peer_id);
    CHECK(c.cert_pem != slurp(other.path / "identity.crt"));
    CHECK_NOTHROW(TlsContext(c.cert_pem, c.key_pem));

    spit(crt, "garbage");
    CHECK_NOTHROW(TlsContext(load_or_create_identity(tmp.path.string()).cert_pem, a.key_pem));
}

// ------------------------------------------------------------------ context

TEST_CASE("tls: context rejects an unreadable certificate, key, or a pair that does not match")
{
    const Identity &a = identity(0), &b = identity(1);
    auto code_of = [](const std::string &cert, const std::string &key) {
        try {
            TlsContext ctx(cert, key);
        } catch (const Error &e) {
            CHECK(e.component() == "tls");
            CHECK(e.operation() == "config");
            return e.code();
        }
        return Errc::OK;
    };
    CHECK(code_of("junk", a.key_pem) == Errc::INVAL);
    CHECK(code_of(a.cert_pem, "junk") == Errc::INVAL);
    CHECK(code_of(a.cert_pem, b.key_pem) == Errc::INVAL);
    CHECK(code_of(a.cert_pem, a.key_pem) == Errc::OK);
}

// ------------------------------------------------------------------ sessions in memory

TEST_CASE("tls: handshake completes with CHACHA20-POLY1305 and each side learns the other's peer id")
{
    Pair p;
    CHECK(p.client.s.cipher_suite().empty());
    CHECK(p.client.s.peer_public_key_der().empty());
    handshake(p);
    CHECK(p.client.done == 1);
    CHECK(p.server.done == 1);
    const std::string chacha = suite_name(MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256);
    CHECK(p.client.s.cipher_suite() == chacha);
    CHECK(p.server.s.cipher_suite() == chacha);
    CHECK(peer_id_for_key(p.client.s.peer_public_key_der()) == identity(1).peer_id);
    CHECK(peer_id_for_key(p.server.s.peer_public_key_der()) == identity(0).peer_id);
    CHECK_FALSE(p.client.s.failed());
    CHECK(p.client.s.error().empty());
}

TEST_CASE("tls: the first byte on the wire is 0x16 (tells TLS from BitTorrent's 0x13)")
{
    Pair p;
    p.client.s.start();
    REQUIRE_FALSE(p.client.wire.empty());
    CHECK(p.client.wire[0] == '\x16');
    p.server.s.start(); // the server sends nothing first
    CHECK(p.server.wire.empty());
}

TEST_CASE("tls: data flows both ways in any chunking, including writes queued before the handshake")
{
    Pair p;
    CHECK(p.client.s.write("client early "));
    CHECK(p.server.s.write("server early "));
    p.client.s.start();
    pump(p, 7); // 7-byte pieces: every record and handshake message split
    REQUIRE(p.client.s.handshake_done());
    CHECK(p.server.got == "client early ");
    CHECK(p.client.got == "server early ");

    const std::string big = random_bytes(1 << 20, 42);
    std::mt19937 rng(99);
    std::size_t off = 0;
    for (int i = 0; off < big.size() && i < 100000; ++i) {
        std::size_t n = std::min<std::size_t>(big.size() - off, 1 + rng() % 40000);
        REQUIRE(p.client.s.write(std::string_view(big).substr(off, n)));
        REQUIRE(p.server.s.write(std::string_view(big).substr(off, n)));
        off += n;
        if (i % 3 == 0)
            pump(p, 1 + rng() % 5000);
    }
    pump(p, 4093);
    CHECK(p.server.got.size() == big.size() + 13);
    CHECK(p.server.got.substr(13) == big);
    CHECK(p.client.got.substr(13) == big);
}

TEST_CASE("tls: sessions wired straight into each other, with callbacks that write and destroy")
{
    Side client(identity(0), false);
    auto server = std::make_unique<Side>(identity(1), true);
    bool server_feed_ok = true;
    client.s.on_ciphertext = [&](std::string_view b) {
        if (server)
            server_feed_ok = server->s.feed(b) && server_feed_ok;
    };
    server->s.on_ciphertext = [&](std::string_view b) { client.s.feed(b); };
    // Re-entrant: the server answers every message from inside on_plaintext,
    // and goes away from inside it on "bye".
    server->s.on_plaintext = [&](std::string_view b) {
        if (b.find("bye") != std::string_view::npos) {
            server.reset();
            return;
        }
        server->s.write(std::string("echo:") + std::string(b));
    };
    client.s.on_handshake_done = [&] { client.s.write("ping"); };
    client.s.start();
    CHECK(client.s.handshake_done());
    CHECK(client.got == "echo:ping");
    CHECK(client.s.write("bye"));
    CHECK(server == nullptr);
    CHECK(server_feed_ok);
}

TEST_CASE("tls: a write made from a callback while a write is under way goes behind it")
{
    Side client(identity(0), false), server(identity(1), true);
    client.s.on_ciphertext = [&](std::string_view b) { server.s.feed(b); };
    server.s.on_ciphertext = [&](std::string_view b) { client.s.feed(b); };
    server.s.on_plaintext = [&](std::string_view b) {
        server.got.append(b);
        server.s.write("ack"); // reaches the client while its big write is still going out
    };
    int acks = 0;
    client.s.on_plaintext = [&](std::string_view) {
        if (acks++ == 0)
            CHECK(client.s.write("MARK"));
    };
    client.s.start();
    REQUIRE(client.s.handshake_done());
    const std::string big = random_bytes(300 * 1024, 5);
    REQUIRE(client.s.write(big));
    CHECK(acks > 1); // the ack came back before the big write was done
    CHECK(server.got.size() == big.size() + 4);
    CHECK(server.got == big + "MARK");
}

TEST_CASE("tls: plain BitTorrent bytes fail the handshake with an error")
{
    const std::string bt = std::string("\x13" "BitTorrent protocol") + std::string(8, '\0') + random_bytes(40, 1);
    SECTION("server")
    {
        Pair p;
        CHECK_FALSE(p.server.s.feed(bt));
        CHECK(p.server.s.failed());
        CHECK(p.server.s.error().rfind("tls: handshake failed: ", 0) == 0);
        CHECK_FALSE(p.server.s.feed("more"));
        CHECK_FALSE(p.server.s.write("x"));
        CHECK(p.server.done == 0);
    }
    SECTION("client")
    {
        Pair p;
        p.client.s.start();
        CHECK_FALSE(p.client.s.feed(bt));
        CHECK(p.client.s.error().rfind("tls: handshake failed: ", 0) == 0);
    }
}

TEST_CASE("tls: a byte flipped in a record in transit fails the session")
{
    const std::string msg = random_bytes(1000, 3);
    for (int where : {5, 500, -1}) { // first byte after the header, middle, last byte of the tag
        Pair p;
        handshake(p);
        REQUIRE(p.client.s.write(msg));
        std::string &w = p.client.wire;
        std::size_t pos = where < 0 ? w.size() - 1 : static_cast<std::size_t>(where);
        w[pos] = static_cast<char>(w[pos] ^ 0x01);
        move(p.client, p.server, SIZE_MAX);
        CHECK(p.server.s.failed());
        CHECK(p.server.s.error().rfind("tls: receive failed: ", 0) == 0);
        CHECK(p.server.got.empty());
        // The server told the client with an alert; the client fails on it.
        REQUIRE_FALSE(p.server.wire.empty());
        move(p.server, p.client, SIZE_MAX);
        CHECK(p.client.s.failed());
    }
}

TEST_CASE("tls: a record header larger than TLS allows fails at once")
{
    Pair p;
    CHECK_FALSE(p.server.s.feed(std::string("\x16\x03\x01\xff\xff", 5)));
    CHECK(p.server.s.failed());
}

TEST_CASE("tls: a handshake that never ends fails")
{
    Pair p;
    p.client.s.start();
    move(p.client, p.server, SIZE_MAX); // the server now waits for the client's certificate
    p.server.wire.clear();
    // Warning alerts (user_canceled) are legal during a handshake and
    // mbedTLS skips them; an endless stream of them must still stop.
    const std::string alert("\x15\x03\x03\x00\x02\x01\x5a", 7);
    std::string stream;
    for (int i = 0; i < 1000; ++i)
        stream += alert;
    bool ok = true;
    std::size_t fed = 0;
    for (int i = 0; i < 100 && ok; ++i) {
        ok = p.server.s.feed(stream);
        fed += stream.size();
    }
    CHECK_FALSE(ok);
    CHECK(fed > TlsSession::kMaxHandshakeBytes); // mbedTLS took the alerts until the limit
    CHECK(fed <= TlsSession::kMaxHandshakeBytes + stream.size());
    CHECK(p.server.s.error() == "tls: handshake failed: more than 64 KiB of handshake input");
}

TEST_CASE("tls: more than 1 MiB written before the handshake fails the session")
{
    Pair p;
    CHECK(p.client.s.write(std::string(TlsSession::kMaxQueuedPlaintext, 'x')));
    CHECK_FALSE(p.client.s.write("y"));
    CHECK(p.client.s.failed());
}

TEST_CASE("tls: close_notify ends the stream and later input is ignored")
{
    Pair p;
    handshake(p);
    REQUIRE(p.client.s.write("last words"));
    p.client.s.close_notify();
    CHECK_FALSE(p.client.s.write("too late"));
    pump(p);
    CHECK(p.server.got == "last words");
    CHECK(p.server.s.peer_closed());
    CHECK_FALSE(p.server.s.failed());
    CHECK(p.server.s.feed("anything after the end"));
    CHECK(p.server.got == "last words");
}

TEST_CASE("tls: mutated handshake input never crashes and never completes a handshake")
{
    // Seeds: the client's ClientHello, and its whole handshake input (both
    // flights) recorded from a real handshake; and the server's first flight.
    Pair rec;
    rec.client.s.start();
    const std::string hello = rec.client.wire;
    std::string client_flights = hello;
    move(rec.client, rec.server, SIZE_MAX);
    const std::string server_flight = rec.server.wire;
    move(rec.server, rec.client, SIZE_MAX);
    client_flights += rec.client.wire;

    const std::vector<std::pair<std::string, bool>> seeds = {
        {hello, true}, {client_flights, true}, {server_flight, false}};
    TlsContext client_ctx(identity(0).cert_pem, identity(0).key_pem);
    TlsContext server_ctx(identity(1).cert_pem, identity(1).key_pem);
    std::mt19937 rng(4242);
    int failed = 0, waiting = 0;
    const int iterations = 1500;
    for (int iter = 0; iter < iterations; ++iter) {
        const auto &[seed, to_server] = seeds[rng() % seeds.size()];
        std::string s = seed;
        int muts = 1 + static_cast<int>(rng() % 4);
        for (int m = 0; m < muts; ++m) {
            std::size_t pos = rng() % s.size();
            switch (rng() % 4) {
            case 0: s[pos] = static_cast<char>(rng() & 0xff); break;
            case 1: s.erase(pos, 1 + rng() % 8); break;
            case 2: s.insert(pos, 1, static_cast<char>(rng() & 0xff)); break;
            case 3: s.resize(std::max<std::size_t>(pos, 1)); break;
            }
            if (s.empty())
                s = "\x16";
        }
        TlsSession session(to_server ? server_ctx : client_ctx, to_server);
        session.on_ciphertext = [](std::string_view) {};
        if (!to_server)
            session.start();
        std::size_t chunk = 1 + rng() % 2000;
        for (std::size_t off = 0; off < s.size() && !session.failed(); off += chunk)
            session.feed(std::string_view(s).substr(off, chunk));
        REQUIRE_FALSE(session.handshake_done());
        (session.failed() ? failed : waiting)++;
    }
    INFO("failed " << failed << ", waiting for more " << waiting);
    CHECK(failed > iterations / 2);
}

// ------------------------------------------------------------------ a bare mbedTLS peer

namespace {

// An mbedTLS client configured by hand, to send what TlsSession never
// sends: no certificate, empty records.
struct RawClient {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt crt;
    mbedtls_pk_context key;
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    std::string in, out;

    // suites: a 0-terminated list, or null for mbedTLS's defaults.
    explicit RawClient(const Identity *id, const int *suites = nullptr)
    {
        mbedtls_entropy_init(&entropy);
        mbedtls_ctr_drbg_init(&drbg);
        mbedtls_x509_crt_init(&crt);
        mbedtls_pk_init(&key);
        mbedtls_ssl_config_init(&conf);
        mbedtls_ssl_init(&ssl);
        REQUIRE(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, nullptr, 0) == 0);
        REQUIRE(mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                            MBEDTLS_SSL_PRESET_DEFAULT) == 0);
        mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_NONE);
        mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
        if (suites)
            mbedtls_ssl_conf_ciphersuites(&conf, suites);
        if (id) {
            auto *c = reinterpret_cast<const unsigned char *>(id->cert_pem.c_str());
            auto *k = reinterpret_cast<const unsigned char *>(id->key_pem.c_str());
            REQUIRE(mbedtls_x509_crt_parse(&crt, c, id->cert_pem.size() + 1) == 0);
            REQUIRE(mbedtls_pk_parse_key(&key, k, id->key_pem.size() + 1, nullptr, 0) == 0);
            REQUIRE(mbedtls_ssl_conf_own_cert(&conf, &crt, &key) == 0);
        }
        REQUIRE(mbedtls_ssl_setup(&ssl, &conf) == 0);
        mbedtls_ssl_set_bio(&ssl, this, send, recv, nullptr);
    }
    ~RawClient()
    {
        mbedtls_ssl_free(&ssl);
        mbedtls_ssl_config_free(&conf);
        mbedtls_pk_free(&key);
        mbedtls_x509_crt_free(&crt);
        mbedtls_ctr_drbg_free(&drbg);
        mbedtls_entropy_free(&entropy);
    }
    static int send(void *self, const unsigned char *b, std::size_t n)
    {
        static_cast<RawClient *>(self)->out.append(reinterpret_cast<const char *>(b), n);
        return static_cast<int>(n);
    }
    static int recv(void *self, unsigned char *b, std::size_t n)
    {
        std::string &in = static_cast<RawClient *>(self)->in;
        n = std::min(n, in.size());
        if (n == 0)
            return MBEDTLS_ERR_SSL_WANT_READ;
        std::memcpy(b, in.data(), n);
        in.erase(0, n);
        return static_cast<int>(n);
    }
    // Runs the handshake against `server`; the last mbedTLS status.
    int handshake(Side &server)
    {
        int rc = MBEDTLS_ERR_SSL_WANT_READ;
        for (int round = 0; round < 10 && rc == MBEDTLS_ERR_SSL_WANT_READ && !server.s.failed(); ++round) {
            rc = mbedtls_ssl_handshake(&ssl);
            server.s.feed(out);
            out.clear();
            in += server.wire;
            server.wire.clear();
        }
        return rc;
    }
};

} // namespace

TEST_CASE("tls: a peer without a certificate is refused")
{
    Side server(identity(1), true);
    RawClient raw(nullptr);
    raw.handshake(server);
    CHECK(server.s.failed());
    CHECK(server.s.error() == "tls: handshake failed: the peer sent no certificate");
    CHECK(server.done == 0);
    CHECK_FALSE(server.s.handshake_done());
}

TEST_CASE("tls: AES-128-GCM is accepted when the peer lacks CHACHA20-POLY1305, other suites are not")
{
    static const int gcm[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 0};
    static const int cbc[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, 0};
    {
        Side server(identity(1), true);
        RawClient raw(&identity(0), gcm);
        CHECK(raw.handshake(server) == 0);
        CHECK(server.s.cipher_suite() == suite_name(MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256));
    }
    {
        Side server(identity(1), true);
        RawClient raw(&identity(0), cbc);
        CHECK(raw.handshake(server) != 0);
        CHECK(server.s.failed());
        CHECK(server.s.error().rfind("tls: handshake failed: ", 0) == 0);
    }
}

TEST_CASE("tls: empty records between data records do not stall the stream")
{
    Side server(identity(1), true);
    RawClient raw(&identity(0));
    REQUIRE(raw.handshake(server) == 0);
    REQUIRE(server.s.handshake_done());
    CHECK(peer_id_for_key(server.s.peer_public_key_der()) == identity(0).peer_id);
    const unsigned char abc[] = {'a', 'b', 'c'};
    REQUIRE(mbedtls_ssl_write(&raw.ssl, abc, 0) == 0); // an empty record
    REQUIRE(mbedtls_ssl_write(&raw.ssl, abc, 0) == 0);
    REQUIRE(mbedtls_ssl_write(&raw.ssl, abc, 3) == 3);
    REQUIRE(mbedtls_ssl_write(&raw.ssl, abc, 0) == 0);
    REQUIRE(mbedtls_ssl_write(&raw.ssl, abc, 2) == 2);
    CHECK(server.s.feed(raw.out)); // all records in one piece
    CHECK(server.got == "abcab");
}

// ------------------------------------------------------------------ real TCP sockets

namespace {

// Client and server connections over libuv on one loop; the server echoes
// everything back, the client checks the echo.  Ciphertext goes through the
// kernel, so it arrives in whatever pieces TCP makes.
struct TcpEcho {
    struct Conn {
        TcpEcho *test = nullptr;
        UvHandle<uv_tcp_t> tcp;
        std::unique_ptr<TlsSession> tls;
        std::string got;
        std::string first_bytes;
        char buf[65536];
    };

    uv_loop_t loop{};
    TlsContext client_ctx{identity(0).cert_pem, identity(0).key_pem};
    TlsContext server_ctx{identity(1).cert_pem, identity(1).key_pem};
    UvHandle<uv_tcp_t> listener;
    UvHandle<uv_timer_t> watchdog;
    uv_connect_t connect_req{};
    Conn client, server;
    const std::string payload = random_bytes(4 << 20, 11);
    const std::string expected = "queued " + payload;
    bool timed_out = false;

    TcpEcho() { uv_loop_init(&loop); }

    static void send(Conn &c, std::string_view bytes)
    {
        if (!c.tcp)
            return;
        struct Req {
            uv_write_t req;
            std::string data;
        };
        auto *r = new Req{{}, std::string(bytes)};
        r->req.data = r;
        uv_buf_t b = uv_buf_init(r->data.data(), static_cast<unsigned>(r->data.size()));
        if (uv_write(&r->req, c.tcp.stream(), &b, 1, [](uv_write_t *req, int) { delete static_cast<Req *>(req->data); }))
            delete r;
    }

    static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *)
    {
        auto *c = static_cast<Conn *>(s->data);
        if (n < 0) {
            c->test->finish();
            return;
        }
        std::string_view bytes(c->buf, static_cast<std::size_t>(n));
        if (c->first_bytes.empty())
            c->first_bytes = bytes.substr(0, 1);
        if (!c->tls->feed(bytes))
            c->test->finish();
    }

    void start_conn(Conn &c, TlsContext &ctx, bool is_server)
    {
        c.test = this;
        c.tls = std::make_unique<TlsSession>(ctx, is_server);
        c.tls->on_ciphertext = [&c](std::string_view b) { send(c, b); };
        uv_read_start(
            c.tcp.stream(),
            [](uv_handle_t *h, size_t, uv_buf_t *b) {
                auto *conn = static_cast<Conn *>(h->data);
                *b = uv_buf_init(conn->buf, sizeof conn->buf);
            },
            on_read);
    }

    void write_payload_in_odd_pieces()
    {
        std::mt19937 rng(5);
        for (std::size_t off = 0; off < payload.size();) {
            std::size_t n = std::min<std::size_t>(payload.size() - off, 1 + rng() % 30011);
            client.tls->write(std::string_view(payload).substr(off, n));
            off += n;
        }
    }

    void finish()
    {
        client.tcp.close();
        server.tcp.close();
        listener.close();
        watchdog.close();
    }

    void run()
    {
        REQUIRE(listener.init(this, uv_tcp_init, &loop) == 0);
        sockaddr_in addr{};
        uv_ip4_addr("127.0.0.1", 0, &addr);
        REQUIRE(uv_tcp_bind(listener.get(), reinterpret_cast<const sockaddr *>(&addr), 0) == 0);
        REQUIRE(uv_listen(listener.stream(), 4, [](uv_stream_t *l, int status) {
                    auto *t = static_cast<TcpEcho *>(l->data);
                    if (status < 0 || t->server.tcp.init(&t->server, uv_tcp_init, &t->loop) != 0 ||
                        uv_accept(l, t->server.tcp.stream()) != 0)
                        return t->finish();
                    t->start_conn(t->server, t->server_ctx, true);
                    TlsSession &tls = *t->server.tls;
                    tls.on_plaintext = [&tls](std::string_view b) { tls.write(b); }; // echo
                }) == 0);
        int len = sizeof addr;
        uv_tcp_getsockname(listener.get(), reinterpret_cast<sockaddr *>(&addr), &len);

        REQUIRE(client.tcp.init(&client, uv_tcp_init, &loop) == 0);
        connect_req.data = this;
        REQUIRE(uv_tcp_connect(&connect_req, client.tcp.get(), reinterpret_cast<const sockaddr *>(&addr),
                               [](uv_connect_t *req, int status) {
                                   auto *t = static_cast<TcpEcho *>(req->data);
                                   if (status < 0)
                                       return t->finish();
                                   t->start_conn(t->client, t->client_ctx, false);
                                   t->client.tls->on_plaintext = [t](std::string_view b) {
                                       t->client.got.append(b);
                                       if (t->client.got.size() >= t->expected.size())
                                           t->finish();
                                   };
                                   t->client.tls->on_handshake_done = [t] { t->write_payload_in_odd_pieces(); };
                                   t->client.tls->write("queued "); // before the handshake
                                   t->client.tls->start();
                               }) == 0);

        REQUIRE(watchdog.init(this, uv_timer_init, &loop) == 0);
        uv_timer_start(
            watchdog.get(),
            [](uv_timer_t *h) {
                auto *t = static_cast<TcpEcho *>(h->data);
                t->timed_out = true;
                t->finish();
            },
            20000, 0);
        uv_run(&loop, UV_RUN_DEFAULT);
    }

    ~TcpEcho()
    {
        finish();
        uv_run(&loop, UV_RUN_DEFAULT); // close callbacks, cancelled writes
        CHECK(uv_loop_close(&loop) == 0);
    }
};

} // namespace

TEST_CASE("tls: echo of 4 MiB over real TCP sockets on 127.0.0.1")
{
    TcpEcho t;
    t.run();
    CHECK_FALSE(t.timed_out);
    REQUIRE(t.client.tls);
    REQUIRE(t.server.tls);
    CHECK(t.server.first_bytes == "\x16");
    CHECK(t.client.tls->error() == "");
    CHECK(t.server.tls->error() == "");
    CHECK(peer_id_for_key(t.server.tls->peer_public_key_der()) == identity(0).peer_id);
    CHECK(peer_id_for_key(t.client.tls->peer_public_key_der()) == identity(1).peer_id);
    CHECK(t.client.got.size() == t.expected.size());
    CHECK(t.client.got == t.expected);
}

// ------------------------------------------------------------------ throughput

namespace {

// Seconds for the bare AEAD to seal and open `total` bytes in 16 KiB records:
// what the TLS pair below is compared with.
double raw_chachapoly_seconds(std::size_t total)
{
    mbedtls_chachapoly_context ctx;
    mbedtls_chachapoly_init(&ctx);
    unsigned char key[32] = {1}, nonce[12] = {0}, tag[16];
    mbedtls_chachapoly_setkey(&ctx, key);
    std::string in = random_bytes(16384, 9), sealed(16384, '\0'), opened(16384, '\0');
    auto *i = reinterpret_cast<unsigned char *>(in.data());
    auto *s = reinterpret_cast<unsigned char *>(sealed.data());
    auto *o = reinterpret_cast<unsigned char *>(opened.data());
    int bad = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (std::size_t done = 0; done < total; done += in.size()) {
        mbedtls_chachapoly_encrypt_and_tag(&ctx, in.size(), nonce, nullptr, 0, i, s, tag);
        bad += mbedtls_chachapoly_auth_decrypt(&ctx, in.size(), nonce, nullptr, 0, tag, s, o) != 0;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    mbedtls_chachapoly_free(&ctx);
    CHECK(bad == 0);
    return secs;
}

} // namespace

TEST_CASE("tls: throughput of 64 MiB client to server in memory (report only)")
{
    Side client(identity(0), false), server(identity(1), true);
    client.s.on_ciphertext = [&](std::string_view b) { server.s.feed(b); };
    server.s.on_ciphertext = [&](std::string_view b) { client.s.feed(b); };
    std::size_t received = 0;
    server.s.on_plaintext = [&](std::string_view b) { received += b.size(); };

    auto t0 = std::chrono::steady_clock::now();
    client.s.start();
    REQUIRE(client.s.handshake_done());
    double handshake_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

    const std::string block = random_bytes(256 * 1024, 8);
    const std::size_t total = 64u << 20;
    t0 = std::chrono::steady_clock::now();
    for (std::size_t sent = 0; sent < total; sent += block.size())
        REQUIRE(client.s.write(block));
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(received == total);
    double raw = raw_chachapoly_seconds(total);
    WARN("tls: " << client.s.cipher_suite() << " session pair, encrypt + decrypt on one core: "
                 << static_cast<int>(total / 1e6 / secs) << " MB/s = " << static_cast<int>(100 * raw / secs)
                 << "% of bare ChaCha20-Poly1305 seal + open (" << static_cast<int>(total / 1e6 / raw)
                 << " MB/s); handshake " << static_cast<int>(handshake_ms) << " ms");
}
