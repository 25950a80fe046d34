#include "live/live_chat.hpp"

#include "transport/identity.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <mbedtls/asn1.h>
#include <mbedtls/asn1write.h>
#include <mbedtls/ecp.h>

#include <cstdlib>
#include <filesystem>

using namespace openace;
using namespace openace::live;
using transport::wire::LiveChat;

namespace {

transport::Identity make_key()
{
    char tmpl[] = "/tmp/oa-chat-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    transport::Identity id = transport::load_or_create_identity(std::string(tmpl) + "/identity");
    std::filesystem::remove_all(tmpl);
    return id;
}

const transport::Identity &alice()
{
    static const transport::Identity id = make_key();
    return id;
}

const transport::Identity &bob()
{
    static const transport::Identity id = make_key();
    return id;
}

ContentId content_id(std::uint8_t fill)
{
    ContentId id;
    id.fill(fill);
    return id;
}

const ContentId kId = content_id(0x11);
constexpr std::int64_t kNow = 1'790'000'000'000;
constexpr std::int64_t kHour = 3'600'000;

bool is_chat_error(const Error &e)
{
    return e.code() == Errc::INVAL && e.component() == "live" && e.operation() == "chat";
}

// The other valid form of a DER ECDSA P-256 signature (r, s): (r, n - s).
// Anyone can make it without the key.
std::string malleate(const std::string &der)
{
    auto *p = reinterpret_cast<unsigned char *>(const_cast<char *>(der.data()));
    const unsigned char *end = p + der.size();
    std::size_t len = 0;
    mbedtls_mpi r, s, flipped;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    mbedtls_mpi_init(&flipped);
    mbedtls_ecp_group grp;
    mbedtls_ecp_group_init(&grp);
    REQUIRE(mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) == 0);
    REQUIRE(mbedtls_asn1_get_mpi(&p, end, &r) == 0);
    REQUIRE(mbedtls_asn1_get_mpi(&p, end, &s) == 0);
    REQUIRE(mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) == 0);
    REQUIRE(mbedtls_mpi_sub_mpi(&flipped, &grp.N, &s) == 0);
    unsigned char buf[100];
    unsigned char *q = buf + sizeof buf;
    int n = mbedtls_asn1_write_mpi(&q, buf, &flipped);
    n += mbedtls_asn1_write_mpi(&q, buf, &r);
    n += mbedtls_asn1_write_len(&q, buf, static_cast<std::size_t>(n));
    n += mbedtls_asn1_write_tag(&q, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE);
    mbedtls_ecp_group_free(&grp);
    mbedtls_mpi_free(&flipped);
    mbedtls_mpi_free(&s);
    mbedtls_mpi_free(&r);
    REQUIRE(n > 0);
    return std::string(reinterpret_cast<const char *>(q), static_cast<std::size_t>(n));
}

} // namespace

TEST_CASE("live chat: signed lines verify, for their content id only")
{
    const ChatSigner signer(alice().key_pem);
    CHECK(signer.public_key_der() == alice().public_key_der);
    const LiveChat c = signer.sign(kId, kNow, "hello \xe2\x82\xac");
    CHECK(c.public_key_der == alice().public_key_der);
    CHECK(c.timestamp_ms == kNow);
    CHECK(c.text == "hello \xe2\x82\xac");
    REQUIRE(!c.signature.empty());
    CHECK(c.signature.size() <= kMaxSignature);
    CHECK(verify_chat(c, kId));

    // The free function signs the same statement.
    CHECK(verify_chat(sign_chat(alice().key_pem, kId, kNow, "hi"), kId));

    // Bound to the content id, timestamp, text and key.
    CHECK_FALSE(verify_chat(c, content_id(0x12)));
    LiveChat changed = c;
    changed.timestamp_ms += 1;
    CHECK_FALSE(verify_chat(changed, kId));
    changed = c;
    changed.text[0] = 'j';
    CHECK_FALSE(verify_chat(changed, kId));
    changed = c;
    changed.public_key_der = bob().public_key_der;
    CHECK_FALSE(verify_chat(changed, kId));
    changed = c;
    changed.signature.back() = static_cast<char>(changed.signature.back() ^ 1);
    CHECK_FALSE(verify_chat(changed, kId));

    // Malformed lines are false, not exceptions.
    for (auto mutate : std::initializer_list<void (*)(LiveChat &)>{
             [](LiveChat &l) { l.public_key_der = "not a key"; },
             [](LiveChat &l) { l.public_key_der.clear(); },
             [](LiveChat &l) { l.public_key_der.assign(2000, 'k'); },
             [](LiveChat &l) { l.text.clear(); },
             [](LiveChat &l) { l.text.assign(513, 't'); },
             [](LiveChat &l) { l.text = "\xff"; },
             [](LiveChat &l) { l.signature.clear(); },
             [](LiveChat &l) { l.signature.assign(81, 's'); },
         }) {
        LiveChat bad = c;
        mutate(bad);
        CHECK_FALSE(verify_chat(bad, kId));
    }
}

TEST_CASE("live chat: bad keys and texts are refused when signing")
{
    auto chat_error = Catch::Predicate<Error>(is_chat_error);
    CHECK_THROWS_MATCHES(ChatSigner(""), Error, chat_error);
    CHECK_THROWS_MATCHES(ChatSigner("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), Error,
                         chat_error);
    CHECK_THROWS_MATCHES(ChatSigner(alice().cert_pem), Error, chat_error);
    CHECK_THROWS_MATCHES(sign_chat("junk", kId, kNow, "hi"), Error, chat_error);

    const ChatSigner signer(alice().key_pem);
    CHECK_THROWS_MATCHES(signer.sign(kId, kNow, ""), Error, chat_error);
    CHECK_THROWS_MATCHES(signer.sign(kId, kNow, std::string(513, 't')), Error, chat_error);
    CHECK_THROWS_MATCHES(signer.sign(kId, kNow, "\xc0\x80"), Error, chat_error);
    CHECK(verify_chat(signer.sign(kId, kNow, std::string(512, 't')), kId));
}

TEST_CASE("live chat: the log judges each verdict")
{
    const ChatSigner a(alice().key_pem);
    ChatLog log;
    const LiveChat first = a.sign(kId, kNow, "first");
    CHECK(log.add(first, kId, kNow) == ChatVerdict::New);
    CHECK(log.add(first, kId, kNow + 1) == ChatVerdict::Duplicate);

    // Age: exactly an hour old and a minute ahead pass, one ms more does not.
    CHECK(log.add(a.sign(kId, kNow - kHour, "oldest"), kId, kNow) == ChatVerdict::New);
    CHECK(log.add(a.sign(kId, kNow - kHour - 1, "too old"), kId, kNow) == ChatVerdict::TooOld);
    CHECK(log.add(a.sign(kId, kNow + 60'000, "ahead"), kId, kNow) == ChatVerdict::New);
    CHECK(log.add(a.sign(kId, kNow + 60'001, "too far ahead"), kId, kNow) == ChatVerdict::TooOld);
    CHECK(log.add(a.sign(kId, INT64_MIN, "x"), kId, kNow) == ChatVerdict::TooOld);
    CHECK(log.add(a.sign(kId, INT64_MAX, "x"), kId, kNow) == ChatVerdict::TooOld);

    // Too long: judged before the signature (which no signer would make).
    LiveChat long_line = a.sign(kId, kNow, "x");
    long_line.text.assign(513, 'x');
    CHECK(log.add(long_line, kId, kNow) == ChatVerdict::TooLong);

    // Bad signatures: altered, under another content id, or malformed.
    const ChatSigner b(bob().key_pem);
    LiveChat altered = b.sign(kId, kNow, "bob says hi");
    altered.text = "bob says bye";
    CHECK(log.add(altered, kId, kNow) == ChatVerdict::BadSignature);
    const LiveChat other_stream = b.sign(content_id(0x22), kNow, "wrong channel");
    CHECK(log.add(other_stream, kId, kNow) == ChatVerdict::BadSignature);
    CHECK(ChatLog().add(other_stream, content_id(0x22), kNow) == ChatVerdict::New);
    LiveChat no_sig = b.sign(kId, kNow, "unsigned");
    no_sig.signature.clear();
    CHECK(log.add(no_sig, kId, kNow) == ChatVerdict::BadSignature);
    LiveChat empty_text = no_sig;
    empty_text.text.clear();
    CHECK(log.add(empty_text, kId, kNow) == ChatVerdict::BadSignature);

    // Rate: alice has 3 accepted lines (first, oldest, ahead) in this 10 s; two more pass.
    CHECK(log.add(a.sign(kId, kNow, "four"), kId, kNow + 1) == ChatVerdict::New);
    CHECK(log.add(a.sign(kId, kNow, "five"), kId, kNow + 2) == ChatVerdict::New);
    CHECK(log.add(a.sign(kId, kNow, "six"), kId, kNow + 3) == ChatVerdict::RateLimited);
    CHECK(log.add(b.sign(kId, kNow, "bob is not limited"), kId, kNow + 3) == ChatVerdict::New);
    // A line already seen is a duplicate, not a rate violation, also with
    // another valid signature (made by anyone from the one seen) or signed
    // again by its sender.
    CHECK(log.add(first, kId, kNow + 4) == ChatVerdict::Duplicate);
    LiveChat malleated = first;
    malleated.signature = malleate(first.signature);
    REQUIRE(malleated.signature != first.signature);
    CHECK(verify_chat(malleated, kId));
    CHECK(log.add(malleated, kId, kNow + 4) == ChatVerdict::Duplicate);
    CHECK(log.add(a.sign(kId, first.timestamp_ms, first.text), kId, kNow + 4) == ChatVerdict::Duplicate);

    // Kept: first, ahead, four, five and bob's line ("oldest" expired at kNow + 1).
    CHECK(log.size() == 5);
    CHECK(std::string(to_string(ChatVerdict::New)) == "new");
    CHECK(std::string(to_string(ChatVerdict::Duplicate)) == "duplicate");
    CHECK(std::string(to_string(ChatVerdict::TooOld)) == "too old");
    CHECK(std::string(to_string(ChatVerdict::TooLong)) == "too long");
    CHECK(std::string(to_string(ChatVerdict::RateLimited)) == "rate limited");
    CHECK(std::string(to_string(ChatVerdict::BadSignature)) == "bad signature");
}

TEST_CASE("live chat: history is oldest first and lasts one hour")
{
    const ChatSigner a(alice().key_pem);
    const ChatSigner b(bob().key_pem);
    ChatLog log;
    // Arrival order differs from timestamp order.
    REQUIRE(log.add(a.sign(kId, kNow, "second"), kId, kNow) == ChatVerdict::New);
    REQUIRE(log.add(b.sign(kId, kNow - 30 * 60'000, "first"), kId, kNow) == ChatVerdict::New);
    REQUIRE(log.add(b.sign(kId, kNow + 30'000, "third"), kId, kNow) == ChatVerdict::New);
    auto texts = [&] {
        std::vector<std::string> out;
        for (const LiveChat &c : log.history())
            out.push_back(c.text);
        return out;
    };
    CHECK(texts() == std::vector<std::string>{"first", "second", "third"});
    CHECK(log.history().front().public_key_der == bob().public_key_der);

    // Half an hour later "first" is exactly an hour old and stays; 1 ms more and it goes.
    const std::int64_t later = kNow + 30 * 60'000;
    REQUIRE(log.add(a.sign(kId, later, "fourth"), kId, later) == ChatVerdict::New);
    CHECK(texts() == std::vector<std::string>{"first", "second", "third", "fourth"});
    const LiveChat again = a.sign(kId, later + 1, "fifth");
    REQUIRE(log.add(again, kId, later + 1) == ChatVerdict::New);
    CHECK(texts() == std::vector<std::string>{"second", "third", "fourth", "fifth"});

    // An hour after that only lines from the last hour remain; even a
    // refused line expires the old ones.
    const std::int64_t much_later = later + 1 + kHour + 1;
    CHECK(log.add(again, kId, much_later) == ChatVerdict::TooOld);
    CHECK(log.history().empty());
}

TEST_CASE("live chat: the rate window slides")
{
    const ChatSigner a(alice().key_pem);
    ChatLog log;
    int n = 0;
    auto say = [&](std::int64_t at) { return log.add(a.sign(kId, at, fmt::format("line {}", ++n)), kId, at); };
    for (std::int64_t t = 0; t < 10'000; t += 2'000)
        REQUIRE(say(kNow + t) == ChatVerdict::New); // at 0, 2, 4, 6, 8 s
    CHECK(say(kNow + 9'999) == ChatVerdict::RateLimited);
    CHECK(say(kNow + 10'000) == ChatVerdict::New); // the line at 0 s left the window
    CHECK(say(kNow + 10'500) == ChatVerdict::RateLimited);
    CHECK(say(kNow + 11'999) == ChatVerdict::RateLimited);
    CHECK(say(kNow + 12'000) == ChatVerdict::New);
    CHECK(say(kNow + 30'000) == ChatVerdict::New);
    CHECK(log.size() == 8);

    // Lines forged in alice's name do not use up her rate.
    const ChatSigner b(bob().key_pem);
    ChatLog fresh;
    for (int i = 0; i < 10; ++i) {
        LiveChat forged = b.sign(kId, kNow, fmt::format("forged {}", i));
        forged.public_key_der = alice().public_key_der;
        CHECK(fresh.add(forged, kId, kNow) == ChatVerdict::BadSignature);
    }
    CHECK(fresh.add(a.sign(kId, kNow, "really alice"), kId, kNow) == ChatVerdict::New);
}

TEST_CASE("live chat: the history is bounded, the oldest line goes first")
{
    const ChatSigner a(alice().key_pem);
    const ChatSigner b(bob().key_pem);
    ChatLog log(3);
    CHECK(log.add(a.sign(kId, kNow + 1, "one"), kId, kNow) == ChatVerdict::New);
    CHECK(log.add(b.sign(kId, kNow + 2, "two"), kId, kNow) == ChatVerdict::New);
    CHECK(log.add(a.sign(kId, kNow + 3, "three"), kId, kNow) == ChatVerdict::New);
    CHECK(log.add(b.sign(kId, kNow + 4, "four"), kId, kNow) == ChatVerdict::New);
    REQUIRE(log.size() == 3);
    CHECK(log.history().front().text == "two");
    // A new line older than everything kept is New (relayed) but not kept.
    CHECK(log.add(b.sign(kId, kNow, "zero"), kId, kNow) == ChatVerdict::New);
    CHECK(log.history().front().text == "two");
    CHECK(log.size() == 3);
    CHECK(kMaxChatHistory == 10000);
}
