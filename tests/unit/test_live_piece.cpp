#include "live/live_descriptor.hpp"
#include "live/live_piece.hpp"

#include "core/error.hpp"
#include "core/sha1.hpp"
#include "transport/bencode.hpp"
#include "transport/identity.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <mbedtls/sha256.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

using namespace openace;
using namespace openace::live;
namespace bencode = openace::transport::bencode;

namespace {

// A fresh broadcaster key, made the way the broadcast job makes it.
transport::Identity make_key()
{
    char tmpl[] = "/tmp/oa-live-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    transport::Identity id = transport::load_or_create_identity(std::string(tmpl) + "/broadcast");
    std::filesystem::remove_all(tmpl);
    return id;
}

const transport::Identity &key_a()
{
    static const transport::Identity id = make_key();
    return id;
}

const transport::Identity &key_b()
{
    static const transport::Identity id = make_key();
    return id;
}

LiveDescriptor descriptor(const transport::Identity &key = key_a())
{
    LiveDescriptor d;
    d.name = "Channel One";
    d.public_key_der = key.public_key_der;
    d.piece_duration = 2.0;
    d.created = 1'790'000'000;
    return d;
}

LivePiece piece(std::uint64_t seq, std::int64_t ts_ms)
{
    LivePiece p;
    p.sequence = seq;
    p.timestamp_ms = ts_ms;
    for (int i = 0; i < 1316; ++i) // seven TS packets of varied bytes
        p.data += static_cast<char>((i * 31 + static_cast<int>(seq)) & 0xff);
    return p;
}

constexpr std::int64_t kNow = 1'790'000'100'000;
constexpr std::uint64_t kWindowPieces = 30;
constexpr std::int64_t kWindowMs = 60'000;

Verdict check(const LiveVerifier &v, const LivePiece &p, std::uint64_t newest = 100)
{
    return v.verify(p, newest, kWindowPieces, kNow, kWindowMs);
}

// The descriptor encoding with one field replaced (built in memory, so it is canonical).
std::string with_field(std::string_view key, bencode::Value value)
{
    bencode::Value dict = bencode::decode(descriptor().encode());
    dict.set(key, std::move(value));
    return bencode::encode(dict);
}

void require_field_error(const std::string &encoded, std::string_view field)
{
    try {
        parse_descriptor(encoded);
        FAIL("accepted a descriptor with a bad '" << field << "'");
    } catch (const Error &e) {
        CHECK(e.code() == Errc::PARSE);
        CHECK(e.component() == "live");
        CHECK(e.operation() == "descriptor");
        CHECK_THAT(e.detail(), Catch::Contains(fmt::format("field '{}'", field)));
    }
}

} // namespace

TEST_CASE("live: descriptor round trips and its content id is the SHA-1 of its encoding")
{
    const LiveDescriptor d = descriptor();
    const std::string encoded = d.encode();
    CHECK(d.content_id() == core::Sha1::hash(encoded));

    const LiveDescriptor back = parse_descriptor(encoded);
    CHECK(back.name == d.name);
    CHECK(back.public_key_der == d.public_key_der);
    CHECK(back.piece_duration == d.piece_duration);
    CHECK(back.created == d.created);
    CHECK(back.encode() == encoded);
    CHECK(back.content_id() == d.content_id());

    // The fields the issue names are all in the encoding, keyed as documented.
    const bencode::Value v = bencode::decode(encoded);
    CHECK(v.find("name")->as_string() == d.name);
    CHECK(v.find("public key")->as_string() == d.public_key_der);
    CHECK(v.find("piece duration ms")->as_int() == 2000);
    CHECK(v.find("created")->as_int() == d.created);
    CHECK(v.find("version")->as_int() == 1);

    // Another key, name or time is another broadcast.
    CHECK(descriptor(key_b()).content_id() != d.content_id());
    LiveDescriptor renamed = d;
    renamed.name += "!";
    CHECK(renamed.content_id() != d.content_id());
}

TEST_CASE("live: the same key and parameters give the same content id after a restart")
{
    char tmpl[] = "/tmp/oa-live-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    const std::string dir = std::string(tmpl) + "/broadcast";
    LiveDescriptor first = descriptor(transport::load_or_create_identity(dir));
    LiveDescriptor again = descriptor(transport::load_or_create_identity(dir));
    std::filesystem::remove_all(tmpl);
    CHECK(first.content_id() == again.content_id());
}

TEST_CASE("live: descriptor parser names every bad field")
{
    require_field_error(with_field("name", ""), "name");
    require_field_error(with_field("name", std::string(kMaxNameBytes + 1, 'n')), "name");
    require_field_error(with_field("name", 5), "name");
    require_field_error(with_field("public key", std::string(kMaxPublicKeyBytes + 1, 'k')), "public key");
    require_field_error(with_field("public key", "not a key"), "public key");
    require_field_error(with_field("public key", 1), "public key");
    require_field_error(with_field("piece duration ms", 99), "piece duration ms");
    require_field_error(with_field("piece duration ms", 60'001), "piece duration ms");
    require_field_error(with_field("piece duration ms", "1000"), "piece duration ms");
    require_field_error(with_field("created", -1), "created");
    require_field_error(with_field("created", "now"), "created");
    require_field_error(with_field("version", 2), "version");
    require_field_error(with_field("extra", 1), "extra");
    for (std::string_view key : {"created", "name", "piece duration ms", "public key", "version"}) {
        bencode::Value dict = bencode::decode(descriptor().encode());
        bencode::Dict entries = dict.as_dict();
        std::erase_if(entries, [&](const auto &kv) { return kv.first == key; });
        require_field_error(bencode::encode(bencode::Value(entries)), key);
    }
    // The bounds themselves are accepted.
    CHECK(parse_descriptor(with_field("piece duration ms", 100)).piece_duration == 0.1);
    CHECK(parse_descriptor(with_field("piece duration ms", 60'000)).piece_duration == 60.0);
    CHECK(parse_descriptor(with_field("name", std::string(kMaxNameBytes, 'n'))).name.size() == kMaxNameBytes);

    // Not a descriptor at all.
    for (const std::string &bad : {std::string("le"), std::string("i1e"), std::string("d4:name"),
                                   descriptor().encode() + "x", std::string(kMaxDescriptorBytes + 1, 'd')}) {
        CHECK_THROWS_MATCHES(parse_descriptor(bad), Error,
                             Catch::Predicate<Error>([](const Error &e) { return e.code() == Errc::PARSE; }));
    }
}

TEST_CASE("live: content ids parse from hex and both acestream forms")
{
    const ContentId id = descriptor().content_id();
    const std::string hex = to_hex(id);
    REQUIRE(hex.size() == 40);
    CHECK(hex.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(parse_content_id(hex) == id);
    CHECK(parse_content_id("acestream://" + hex) == id);
    CHECK(parse_content_id("acestream:?content_id=" + hex) == id);
    std::string upper = hex;
    for (char &c : upper)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK(parse_content_id(upper) == id);

    for (const std::string &bad :
         {std::string(), hex.substr(1), hex + "0", "g" + hex.substr(1), "acestream://" + hex.substr(2),
          "acestream:" + hex, "acestream:?infohash=" + hex, "magnet:?xt=urn:btih:" + hex, " " + hex,
          "acestream://acestream://" + hex}) {
        try {
            parse_content_id(bad);
            FAIL("accepted '" << bad << "'");
        } catch (const Error &e) {
            CHECK(e.code() == Errc::INVAL);
            CHECK(e.operation() == "content id");
        }
    }
}

TEST_CASE("live: a signed piece verifies, any change breaks the signature")
{
    const LiveDescriptor d = descriptor();
    const LiveSigner signer(key_a().key_pem, d.content_id());
    const LiveVerifier verifier(d);
    CHECK(verifier.content_id() == d.content_id());

    LivePiece p = piece(100, kNow - 1000);
    signer.sign(p);
    REQUIRE(!p.signature.empty());
    CHECK(p.signature.size() <= kMaxSignature);
    CHECK(check(verifier, p) == Verdict::Ok);

    LivePiece flipped = p;
    flipped.data[700] = static_cast<char>(flipped.data[700] ^ 0x01);
    CHECK(check(verifier, flipped) == Verdict::BadSignature);

    LivePiece renumbered = p;
    renumbered.sequence = 101;
    CHECK(check(verifier, renumbered) == Verdict::BadSignature);

    LivePiece redated = p;
    redated.timestamp_ms += 1;
    CHECK(check(verifier, redated) == Verdict::BadSignature);

    LivePiece bad_sig = p;
    bad_sig.signature.back() = static_cast<char>(bad_sig.signature.back() ^ 0x01);
    CHECK(check(verifier, bad_sig) == Verdict::BadSignature);

    // Signed for another broadcast with the same key.
    LiveDescriptor other_broadcast = d;
    other_broadcast.name = "Channel Two";
    LivePiece moved = p;
    LiveSigner(key_a().key_pem, other_broadcast.content_id()).sign(moved);
    CHECK(check(verifier, moved) == Verdict::BadSignature);
    CHECK(check(LiveVerifier(other_broadcast), moved) == Verdict::Ok);

    // Signed by someone else for this content id.
    LivePiece forged = p;
    LiveSigner(key_b().key_pem, d.content_id()).sign(forged);
    CHECK(check(verifier, forged) == Verdict::BadSignature);
}

TEST_CASE("live: verification enforces the sequence and time windows")
{
    const LiveDescriptor d = descriptor();
    const LiveSigner signer(key_a().key_pem, d.content_id());
    const LiveVerifier verifier(d);
    auto signed_piece = [&](std::uint64_t seq, std::int64_t ts) {
        LivePiece p = piece(seq, ts);
        signer.sign(p);
        return p;
    };

    // Sequence: exactly at the window edges passes, one beyond fails.
    CHECK(check(verifier, signed_piece(100 - kWindowPieces, kNow)) == Verdict::Ok);
    CHECK(check(verifier, signed_piece(100 + kWindowPieces, kNow)) == Verdict::Ok);
    CHECK(check(verifier, signed_piece(100 - kWindowPieces - 1, kNow)) == Verdict::OutsideWindow);
    CHECK(check(verifier, signed_piece(100 + kWindowPieces + 1, kNow)) == Verdict::OutsideWindow);
    CHECK(check(verifier, signed_piece(UINT64_MAX, kNow)) == Verdict::OutsideWindow);
    CHECK(check(verifier, signed_piece(0, kNow), UINT64_MAX) == Verdict::OutsideWindow);
    // The first piece a viewer sees: newest is the piece itself.
    LivePiece first = signed_piece(123'456'789, kNow);
    CHECK(check(verifier, first, first.sequence) == Verdict::Ok);

    // Time: a validly signed piece replayed after the window is refused.
    CHECK(check(verifier, signed_piece(100, kNow - kWindowMs)) == Verdict::Ok);
    CHECK(check(verifier, signed_piece(100, kNow - kWindowMs - 1)) == Verdict::TooOld);
    CHECK(check(verifier, signed_piece(100, kNow + kWindowMs)) == Verdict::Ok);
    CHECK(check(verifier, signed_piece(100, kNow + kWindowMs + 1)) == Verdict::OutsideWindow);
    CHECK(check(verifier, signed_piece(100, INT64_MIN)) == Verdict::TooOld);
    CHECK(check(verifier, signed_piece(100, INT64_MAX)) == Verdict::OutsideWindow);
    LivePiece replay = signed_piece(100, kNow - 1000);
    CHECK(check(verifier, replay) == Verdict::Ok);
    CHECK(verifier.verify(replay, 100, kWindowPieces, kNow + kWindowMs, kWindowMs) == Verdict::TooOld);

    // Malformed.
    LivePiece unsigned_piece = piece(100, kNow);
    CHECK(check(verifier, unsigned_piece) == Verdict::Malformed);
    LivePiece long_sig = signed_piece(100, kNow);
    long_sig.signature.append(kMaxSignature, 'x');
    CHECK(check(verifier, long_sig) == Verdict::Malformed);

    CHECK(std::string(to_string(Verdict::Ok)) == "ok");
    CHECK(std::string(to_string(Verdict::TooOld)) == "too old");
}

TEST_CASE("live: a head verifies exactly when its piece does")
{
    const LiveDescriptor d = descriptor();
    const LiveSigner signer(key_a().key_pem, d.content_id());
    const LiveVerifier verifier(d);
    auto data_hash = [](const LivePiece &p) {
        std::array<std::uint8_t, 32> h{};
        mbedtls_sha256_ret(reinterpret_cast<const unsigned char *>(p.data.data()), p.data.size(), h.data(), 0);
        return h;
    };
    auto head = [&](std::uint64_t seq, std::int64_t ts, const std::array<std::uint8_t, 32> &hash,
                    std::string_view sig, std::uint64_t newest = 100) {
        return verifier.verify_head(seq, ts, hash, sig, newest, kWindowPieces, kNow, kWindowMs);
    };

    LivePiece p = piece(100, kNow - 1000);
    signer.sign(p);
    const auto hash = data_hash(p);
    REQUIRE(check(verifier, p) == Verdict::Ok);
    CHECK(head(p.sequence, p.timestamp_ms, hash, p.signature) == Verdict::Ok);

    // Any changed field breaks it, as it breaks the piece.
    auto other_hash = hash;
    other_hash[5] ^= 0x20;
    CHECK(head(p.sequence, p.timestamp_ms, other_hash, p.signature) == Verdict::BadSignature);
    CHECK(head(p.sequence + 1, p.timestamp_ms, hash, p.signature) == Verdict::BadSignature);
    CHECK(head(p.sequence, p.timestamp_ms + 1, hash, p.signature) == Verdict::BadSignature);
    CHECK(head(p.sequence, p.timestamp_ms, data_hash(piece(101, 0)), p.signature) == Verdict::BadSignature);

    // The same windows and bounds, in the same order, for heads and pieces:
    // each case's head gets the verdict its piece gets.
    enum class Sig { Signed, Empty, Long };
    struct Case {
        std::uint64_t seq, newest;
        std::int64_t ts;
        Sig sig;
    };
    for (const Case &c : {Case{100 + kWindowPieces + 1, 100, kNow, Sig::Signed},
                          Case{100, 100, kNow - kWindowMs - 1, Sig::Signed},
                          Case{100, 100, kNow + kWindowMs + 1, Sig::Signed}, Case{100, 100, kNow, Sig::Empty},
                          Case{100, 100, kNow, Sig::Long}, Case{5, 5, kNow - kWindowMs, Sig::Signed},
                          Case{0, UINT64_MAX, kNow, Sig::Signed}, Case{200, 100, kNow - kWindowMs - 1, Sig::Empty}}) {
        LivePiece q = piece(c.seq, c.ts);
        signer.sign(q);
        if (c.sig == Sig::Empty)
            q.signature.clear();
        if (c.sig == Sig::Long)
            q.signature.resize(kMaxSignature + 1, 'x');
        const Verdict want = check(verifier, q, c.newest);
        INFO(fmt::format("seq {} newest {} ts {} sig {}: {}", c.seq, c.newest, c.ts, q.signature.size(),
                         to_string(want)));
        CHECK(head(q.sequence, q.timestamp_ms, data_hash(q), q.signature, c.newest) == want);
    }
    CHECK(head(100, kNow, hash, "") == Verdict::Malformed);
    CHECK(head(100, kNow - kWindowMs - 1, hash, p.signature) == Verdict::TooOld);
    CHECK(head(100 + kWindowPieces + 1, kNow, hash, p.signature) == Verdict::OutsideWindow);
}

TEST_CASE("live: keys that are not ECDSA P-256 are refused")
{
    const ContentId id = descriptor().content_id();
    auto is_key_error = Catch::Predicate<Error>(
        [](const Error &e) { return e.code() == Errc::INVAL && e.operation() == "key"; });
    CHECK_THROWS_MATCHES(LiveSigner("", id), Error, is_key_error);
    CHECK_THROWS_MATCHES(LiveSigner("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", id),
                         Error, is_key_error);
    CHECK_THROWS_MATCHES(LiveSigner(key_a().cert_pem, id), Error, is_key_error);
    LiveDescriptor d = descriptor();
    d.public_key_der = "junk";
    CHECK_THROWS_MATCHES(LiveVerifier(d), Error, is_key_error);
}

TEST_CASE("live: pieces round trip through the wire form, bad input throws")
{
    const LiveDescriptor d = descriptor();
    const LiveSigner signer(key_a().key_pem, d.content_id());
    LivePiece p = piece(0x0102030405060708ULL, -5);
    signer.sign(p);
    const std::string wire = encode_piece(p);
    REQUIRE(wire.size() == 18 + p.signature.size() + p.data.size());
    CHECK(wire.substr(0, 8) == std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
    const LivePiece back = decode_piece(wire);
    CHECK(back.sequence == p.sequence);
    CHECK(back.timestamp_ms == -5);
    CHECK(back.signature == p.signature);
    CHECK(back.data == p.data);
    LivePiece empty_data = p;
    empty_data.data.clear();
    CHECK(decode_piece(encode_piece(empty_data)).data.empty());

    auto is_piece_error = Catch::Predicate<Error>(
        [](const Error &e) { return e.code() == Errc::PROTO && e.operation() == "piece"; });
    for (std::size_t cut : {std::size_t{0}, std::size_t{17}, std::size_t{18}, 18 + p.signature.size() - 1})
        CHECK_THROWS_MATCHES(decode_piece(std::string_view(wire).substr(0, cut)), Error, is_piece_error);
    std::string zero_sig = wire;
    zero_sig[16] = zero_sig[17] = '\0';
    CHECK_THROWS_MATCHES(decode_piece(zero_sig), Error, is_piece_error);
    std::string long_sig = wire;
    long_sig[16] = '\0';
    long_sig[17] = static_cast<char>(kMaxSignature + 1);
    CHECK_THROWS_MATCHES(decode_piece(long_sig), Error, is_piece_error);
    std::string big = wire;
    big.resize(18 + p.signature.size() + kMaxPieceData + 1, 'x');
    CHECK_THROWS_MATCHES(decode_piece(big), Error, is_piece_error);
    big.pop_back();
    CHECK(decode_piece(big).data.size() == kMaxPieceData);

    LivePiece oversized = p;
    oversized.data.assign(kMaxPieceData + 1, 'x');
    CHECK_THROWS_MATCHES(encode_piece(oversized), Error, is_piece_error);
    CHECK_THROWS_MATCHES(encode_piece(piece(1, 1)), Error, is_piece_error); // unsigned
}

TEST_CASE("live: mutated wire pieces either throw or decode to a piece verify judges")
{
    const LiveDescriptor d = descriptor();
    const LiveSigner signer(key_a().key_pem, d.content_id());
    const LiveVerifier verifier(d);
    std::vector<std::string> seeds;
    for (std::uint64_t seq : {100, 101, 110}) {
        LivePiece p = piece(seq, kNow - 500);
        p.data.resize(seq % 7 * 40);
        signer.sign(p);
        seeds.push_back(encode_piece(p));
    }
    std::mt19937 rng(4242);
    int errors = 0, ok = 0, rejected = 0;
    constexpr int kIters = 3000;
    for (int iter = 0; iter < kIters; ++iter) {
        std::string s = seeds[rng() % seeds.size()];
        for (int m = 1 + static_cast<int>(rng() % 3); m > 0; --m) {
            std::size_t pos = rng() % s.size();
            switch (rng() % 4) {
            case 0:
                s[pos] = static_cast<char>(s[pos] ^ (1 << (rng() % 8)));
                break;
            case 1:
                s.erase(pos, 1 + rng() % 4);
                break;
            case 2:
                s.insert(pos, 1, static_cast<char>(rng() & 0xff));
                break;
            case 3:
                s.resize(pos);
                break;
            }
            if (s.empty())
                break;
        }
        try {
            const LivePiece p = decode_piece(s);
            REQUIRE(encode_piece(p) == s);
            (check(verifier, p) == Verdict::Ok ? ok : rejected)++;
        } catch (const Error &e) {
            REQUIRE(e.code() == Errc::PROTO);
            ++errors;
        }
    }
    INFO(fmt::format("fuzz: {} threw, {} decoded and were rejected, {} still verified", errors, rejected, ok));
    CHECK(errors + ok + rejected == kIters);
    CHECK(errors > 0);
    CHECK(rejected > 0);
}

TEST_CASE("live: one signer and one verifier serve several threads at once")
{
    const LiveDescriptor d = descriptor();
    const LiveSigner signer(key_a().key_pem, d.content_id());
    const LiveVerifier verifier(d);
    constexpr int kThreads = 4, kEach = 10;
    std::vector<int> verified(kThreads, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kEach; ++i) {
                LivePiece p = piece(100 + static_cast<std::uint64_t>(i), kNow);
                signer.sign(p);
                verified[static_cast<std::size_t>(t)] += check(verifier, p) == Verdict::Ok;
            }
        });
    }
    for (std::thread &t : threads)
        t.join();
    for (int n : verified)
        CHECK(n == kEach);
}

TEST_CASE("live: signing and verification rates")
{
    const LiveDescriptor d = descriptor();
    const LiveSigner signer(key_a().key_pem, d.content_id());
    const LiveVerifier verifier(d);
    constexpr int kPieces = 200;
    std::vector<LivePiece> pieces;
    for (int i = 0; i < kPieces; ++i)
        pieces.push_back(piece(100 + static_cast<std::uint64_t>(i) % kWindowPieces, kNow));
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    for (LivePiece &p : pieces)
        signer.sign(p);
    const auto t1 = Clock::now();
    int verified = 0;
    for (const LivePiece &p : pieces)
        verified += check(verifier, p) == Verdict::Ok;
    const auto t2 = Clock::now();
    CHECK(verified == kPieces);
    auto rate = [](Clock::duration d) { return kPieces / std::chrono::duration<double>(d).count(); };
    WARN(fmt::format("live pieces ({} B data): sign {:.0f}/s, verify {:.0f}/s", pieces[0].data.size(),
                     rate(t1 - t0), rate(t2 - t1)));
}
