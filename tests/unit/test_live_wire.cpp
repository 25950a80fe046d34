#include "transport/live_wire.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <random>
#include <string>
#include <vector>

using namespace openace;
using namespace openace::transport::wire;

namespace {

// Big-endian bytes of v, n bytes wide: the test's own encoder for hand-built
// buffers.
std::string be(std::uint64_t v, int n)
{
    REQUIRE(n >= 1);
    REQUIRE(n <= 8);
    std::string out;
    for (int shift = 8 * (n - 1); shift >= 0; shift -= 8)
        out.push_back(static_cast<char>((v >> shift) & 0xff));
    return out;
}

// The detail of the Error decode_live throws: "" when it does not throw,
// "<wrong error>" for anything but Error(PROTO, "wire", "oa_live").
std::string decode_error(std::string_view payload)
{
    try {
        decode_live(payload);
    } catch (const Error &e) {
        return e.code() == Errc::PROTO && e.component() == "wire" && e.operation() == "oa_live" ? e.detail()
                                                                                              : "<wrong error>";
    }
    return {};
}

// The same for an encoder, which throws INVAL.
template <class F>
std::string encode_error(F &&f)
{
    try {
        f();
    } catch (const Error &e) {
        return e.code() == Errc::INVAL && e.component() == "wire" && e.operation() == "oa_live" ? e.detail()
                                                                                              : "<wrong error>";
    }
    return {};
}

bool starts_with(const std::string &s, std::string_view prefix)
{
    return s.compare(0, prefix.size(), prefix) == 0;
}

std::string sig(std::size_t n)
{
    std::string s;
    for (std::size_t i = 0; i < n; ++i)
        s.push_back(static_cast<char>(0x30 + i % 50));
    return s;
}

LiveHead sample_head()
{
    LiveHead h;
    h.sequence = 0x0102030405060708ULL;
    h.timestamp_ms = -2; // two's complement on the wire
    for (std::size_t i = 0; i < h.data_sha256.size(); ++i)
        h.data_sha256[i] = static_cast<std::uint8_t>(0xa0 + i);
    h.signature = sig(71);
    return h;
}

live::LivePiece sample_piece()
{
    live::LivePiece p;
    p.sequence = 894'999'999'123ULL;
    p.timestamp_ms = 1'790'000'000'123;
    p.signature = sig(70);
    for (int i = 0; i < 188 * 3; ++i)
        p.data.push_back(static_cast<char>(i * 7));
    return p;
}

LiveChat sample_chat()
{
    LiveChat c;
    c.public_key_der = std::string(91, 'K');
    c.timestamp_ms = 1'790'000'000'456;
    c.text = "hello, caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\xa5"; // 2-, 3- and 4-byte UTF-8
    c.signature = sig(72);
    return c;
}

// One valid payload of every type.
std::vector<std::string> samples()
{
    return {encode_live_head(sample_head()),
            encode_live_have({{1, 5}, {7, 7}, {9, 100}}),
            encode_live_request(42),
            encode_live_piece(sample_piece()),
            encode_live_reject(43),
            encode_live_desc_request(),
            encode_live_desc("d7:createdi1e4:name1:xe"),
            encode_live_chat(sample_chat())};
}

// Re-encodes a decoded message with the encoder of its type.
std::string reencode(const LiveMsg &m)
{
    switch (m.type) {
    case LiveMsg::Head:
        return encode_live_head(m.head);
    case LiveMsg::Have:
        return encode_live_have(m.ranges);
    case LiveMsg::Request:
        return encode_live_request(m.sequence);
    case LiveMsg::Piece:
        return encode_live_piece(m.piece);
    case LiveMsg::Reject:
        return encode_live_reject(m.sequence);
    case LiveMsg::DescRequest:
        return encode_live_desc_request();
    case LiveMsg::Desc:
        return encode_live_desc(m.descriptor);
    case LiveMsg::Chat:
        return encode_live_chat(m.chat);
    case LiveMsg::Unknown:
        break;
    }
    return {};
}

} // namespace

TEST_CASE("live wire: every message round trips")
{
    const LiveHead h = sample_head();
    LiveMsg m = decode_live(encode_live_head(h));
    REQUIRE(m.type == LiveMsg::Head);
    CHECK(m.head.sequence == h.sequence);
    CHECK(m.head.timestamp_ms == h.timestamp_ms);
    CHECK(m.head.data_sha256 == h.data_sha256);
    CHECK(m.head.signature == h.signature);

    const std::vector<SeqRange> ranges{{0, 0}, {1, 1}, {3, UINT64_MAX - 1}, {UINT64_MAX, UINT64_MAX}};
    m = decode_live(encode_live_have(ranges));
    REQUIRE(m.type == LiveMsg::Have);
    CHECK(m.ranges == ranges);

    m = decode_live(encode_live_request(UINT64_MAX));
    REQUIRE(m.type == LiveMsg::Request);
    CHECK(m.sequence == UINT64_MAX);
    m = decode_live(encode_live_reject(7));
    REQUIRE(m.type == LiveMsg::Reject);
    CHECK(m.sequence == 7);

    const live::LivePiece p = sample_piece();
    m = decode_live(encode_live_piece(p));
    REQUIRE(m.type == LiveMsg::Piece);
    CHECK(m.piece.sequence == p.sequence);
    CHECK(m.piece.timestamp_ms == p.timestamp_ms);
    CHECK(m.piece.signature == p.signature);
    CHECK(m.piece.data == p.data);

    CHECK(decode_live(encode_live_desc_request()).type == LiveMsg::DescRequest);
    m = decode_live(encode_live_desc("descriptor bytes"));
    REQUIRE(m.type == LiveMsg::Desc);
    CHECK(m.descriptor == "descriptor bytes");

    const LiveChat c = sample_chat();
    m = decode_live(encode_live_chat(c));
    REQUIRE(m.type == LiveMsg::Chat);
    CHECK(m.chat.public_key_der == c.public_key_der);
    CHECK(m.chat.timestamp_ms == c.timestamp_ms);
    CHECK(m.chat.text == c.text);
    CHECK(m.chat.signature == c.signature);

    // Each sample decodes to its own type byte and re-encodes to itself.
    for (const std::string &s : samples()) {
        const LiveMsg back = decode_live(s);
        CHECK(static_cast<std::uint8_t>(back.type) == static_cast<std::uint8_t>(s[0]));
        CHECK(reencode(back) == s);
    }
}

TEST_CASE("live wire: byte layouts follow docs/protocol.md")
{
    const LiveHead h = sample_head();
    const std::string head = std::string(1, '\0') + be(h.sequence, 8) + be(static_cast<std::uint64_t>(-2), 8) +
                             std::string(h.data_sha256.begin(), h.data_sha256.end()) + be(71, 2) + h.signature;
    CHECK(encode_live_head(h) == head);
    CHECK(head.size() == 1 + 8 + 8 + 32 + 2 + 71);
    CHECK(head.substr(1, 8) == std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
    CHECK(head.substr(9, 8) == std::string("\xff\xff\xff\xff\xff\xff\xff\xfe", 8));

    const std::string have = std::string(1, '\x01') + be(2, 2) + be(10, 8) + be(20, 8) + be(0x1'0000'0000ULL, 8) +
                             be(0x1'0000'0005ULL, 8);
    CHECK(encode_live_have({{10, 20}, {0x1'0000'0000ULL, 0x1'0000'0005ULL}}) == have);

    const live::LivePiece p = sample_piece();
    const std::string piece = std::string(1, '\x03') + be(p.sequence, 8) +
                              be(static_cast<std::uint64_t>(p.timestamp_ms), 8) + be(p.signature.size(), 2) +
                              p.signature + p.data;
    CHECK(encode_live_piece(p) == piece);

    CHECK(encode_live_request(0x0a0b) == std::string(1, '\x02') + be(0x0a0b, 8));
    CHECK(encode_live_reject(0x0a0b) == std::string(1, '\x04') + be(0x0a0b, 8));
    CHECK(encode_live_desc_request() == std::string(1, '\x05'));
    CHECK(encode_live_desc("abc") == "\x06" "abc");

    const LiveChat c = sample_chat();
    const std::string chat = std::string(1, '\x07') + be(c.public_key_der.size(), 2) + c.public_key_der +
                             be(static_cast<std::uint64_t>(c.timestamp_ms), 8) + be(c.text.size(), 2) + c.text +
                             be(c.signature.size(), 2) + c.signature;
    CHECK(encode_live_chat(c) == chat);

    // Hand-built bytes decode, too.
    CHECK(decode_live(head).head.sequence == h.sequence);
    CHECK(decode_live(have).ranges == std::vector<SeqRange>{{10, 20}, {0x1'0000'0000ULL, 0x1'0000'0005ULL}});
    CHECK(decode_live(piece).piece.data == p.data);
}

TEST_CASE("live wire: type names")
{
    const std::vector<std::string> names{"head",         "have", "request", "piece", "reject",
                                         "desc request", "desc", "chat"};
    for (std::size_t t = 0; t < names.size(); ++t)
        CHECK(to_string(static_cast<LiveMsg::Type>(t)) == names[t]);
    CHECK(std::string(to_string(LiveMsg::Unknown)) == "unknown");
    CHECK(std::string(kLiveExtension) == "oa_live");
}

TEST_CASE("live wire: unknown types are returned, not refused")
{
    for (int t : {8, 9, 100, 254, 255}) {
        const LiveMsg m = decode_live(std::string(1, static_cast<char>(t)) + "whatever body");
        CHECK(m.type == LiveMsg::Unknown);
        CHECK(decode_live(std::string(1, static_cast<char>(t))).type == LiveMsg::Unknown);
    }
    CHECK(decode_error("") == "empty message: no type byte");
}

TEST_CASE("live wire: short, long and out-of-range bodies throw naming the type")
{
    // Every sample of exact layout (all but piece and desc, whose last field
    // is "the rest": see below) cut by one byte and grown by one.
    for (const std::string &s : samples()) {
        if (s[0] == LiveMsg::Piece || s[0] == LiveMsg::Desc)
            continue;
        const std::string name = to_string(static_cast<LiveMsg::Type>(s[0]));
        INFO(name);
        if (s.size() > 1)
            CHECK(starts_with(decode_error(s.substr(0, s.size() - 1)), name + ": "));
        CHECK(starts_with(decode_error(s + "x"), name + ": "));
    }
    CHECK(decode_error(encode_live_desc_request() + "x") == "desc request: 1 bytes after the end of the message");
    CHECK(decode_error(std::string(1, '\x02') + be(1, 7)) == "request: body of 7 bytes ends inside the sequence");
    CHECK(decode_error(std::string(1, '\x04') + be(1, 8) + std::string(1, '\x01')) == "reject: 1 bytes after the end of the message");

    // Head: signature length 0 and 81 (with the bytes present).
    const std::string head_fixed = encode_live_head(sample_head()).substr(0, 1 + 8 + 8 + 32);
    CHECK(decode_error(head_fixed + be(0, 2)) == "head: signature of 0 bytes, expected 1..80");
    CHECK(decode_error(head_fixed + be(81, 2) + sig(81)) == "head: signature of 81 bytes, expected 1..80");
    CHECK(decode_error(head_fixed + be(80, 2) + sig(79)) == "head: body of 129 bytes ends inside the signature");

    // Have: count 0, over 256, and a body that does not match the count.
    CHECK(decode_error(std::string(1, '\x01') + be(0, 2)) == "have: 0 ranges, expected 1..256");
    CHECK(decode_error(std::string(1, '\x01') + be(257, 2) + std::string(257 * 16, '\0')) ==
          "have: 257 ranges, expected 1..256");
    CHECK(decode_error(std::string(1, '\x01') + be(2, 2) + be(1, 8) + be(2, 8)) ==
          "have: body of 18 bytes for 2 ranges, expected 34");
    CHECK(decode_error(std::string(1, '\x01') + be(1, 1)) == "have: body of 1 bytes ends inside the count");

    // Piece: header cut, signature out of range, no data.
    const live::LivePiece p = sample_piece();
    CHECK(starts_with(decode_error(std::string(1, '\x03') + be(1, 8)), "piece: "));
    std::string zero_sig = std::string(1, '\x03') + be(1, 8) + be(1, 8) + be(0, 2) + p.data;
    CHECK(decode_error(zero_sig) == "piece: signature of 0 bytes, expected 1..80");
    std::string no_data = std::string(1, '\x03') + be(1, 8) + be(1, 8) + be(3, 2) + "sig";
    CHECK(decode_error(no_data) == "piece: no data");

    // Desc: empty.
    CHECK(decode_error(std::string(1, '\x06')) == "desc: descriptor of 0 bytes, expected 1..65536");

    // Chat: each length field at 0 and at its maximum + 1.
    const LiveChat c = sample_chat();
    auto chat = [](std::string_view key, std::int64_t ts, std::string_view text, std::string_view signature) {
        return std::string(1, '\x07') + be(key.size(), 2) + std::string(key) + be(static_cast<std::uint64_t>(ts), 8) +
               be(text.size(), 2) + std::string(text) + be(signature.size(), 2) + std::string(signature);
    };
    CHECK(decode_error(chat(c.public_key_der, 1, c.text, c.signature)).empty());
    CHECK(decode_error(chat("", 1, c.text, c.signature)) == "chat: key of 0 bytes, expected 1..1024");
    CHECK(decode_error(chat(std::string(1025, 'k'), 1, c.text, c.signature)) ==
          "chat: key of 1025 bytes, expected 1..1024");
    CHECK(decode_error(chat(c.public_key_der, 1, "", c.signature)) == "chat: text of 0 bytes, expected 1..512");
    CHECK(decode_error(chat(c.public_key_der, 1, std::string(513, 't'), c.signature)) ==
          "chat: text of 513 bytes, expected 1..512");
    CHECK(decode_error(chat(c.public_key_der, 1, c.text, "")) == "chat: signature of 0 bytes, expected 1..80");
    CHECK(decode_error(chat(c.public_key_der, 1, c.text, sig(81))) == "chat: signature of 81 bytes, expected 1..80");
    CHECK(decode_error(chat(c.public_key_der, 1, "bad \xff byte", c.signature)) == "chat: text is not UTF-8");
}

TEST_CASE("live wire: have ranges must ascend without overlapping")
{
    auto have = [](std::vector<SeqRange> ranges) {
        std::string s = std::string(1, '\x01') + be(ranges.size(), 2);
        for (const auto &[first, last] : ranges)
            s += be(first, 8) + be(last, 8);
        return s;
    };
    // Accepted: adjacent, single pieces, the extremes.
    CHECK(decode_error(have({{1, 2}, {3, 4}})).empty());
    CHECK(decode_error(have({{0, 0}, {UINT64_MAX, UINT64_MAX}})).empty());

    const std::vector<std::pair<std::vector<SeqRange>, std::string>> bad{
        {{{5, 4}}, "range 0 runs backwards (5 > 4)"},
        {{{1, 2}, {9, 3}}, "range 1 runs backwards (9 > 3)"},
        {{{10, 20}, {1, 2}}, "range 1 (from 1) does not follow range 0 (to 20)"},
        {{{10, 20}, {20, 30}}, "range 1 (from 20) does not follow range 0 (to 20)"},
        {{{10, 20}, {15, 16}}, "range 1 (from 15) does not follow range 0 (to 20)"},
        {{{1, 1}, {1, 1}}, "range 1 (from 1) does not follow range 0 (to 1)"},
    };
    for (const auto &[ranges, why] : bad) {
        CHECK(decode_error(have(ranges)) == "have: " + why);
        CHECK(encode_error([&] { encode_live_have(ranges); }) == "have: " + why);
    }
    CHECK(encode_error([] { encode_live_have({}); }) == "have: 0 ranges, expected 1..256");
}

TEST_CASE("live wire: the largest messages are accepted, one byte more is refused")
{
    // 256 ranges.
    std::vector<SeqRange> ranges;
    for (std::uint64_t i = 0; i < kMaxLiveRanges; ++i)
        ranges.emplace_back(i * 10, i * 10 + 5);
    CHECK(decode_live(encode_live_have(ranges)).ranges == ranges);
    ranges.emplace_back(10'000, 10'001);
    CHECK(encode_error([&] { encode_live_have(ranges); }) == "have: 257 ranges, expected 1..256");

    // 80-byte signatures.
    LiveHead h = sample_head();
    h.signature = sig(live::kMaxSignature);
    CHECK(decode_live(encode_live_head(h)).head.signature == h.signature);
    h.signature += "x";
    CHECK(encode_error([&] { encode_live_head(h); }) == "head: signature of 81 bytes, expected 1..80");
    h.signature.clear();
    CHECK(encode_error([&] { encode_live_head(h); }) == "head: signature of 0 bytes, expected 1..80");

    // The largest piece: 8 MiB of data and an 80-byte signature, within kMaxLiveMessage.
    live::LivePiece p = sample_piece();
    p.signature = sig(live::kMaxSignature);
    p.data.assign(live::kMaxPieceData, 'G');
    std::string piece = encode_live_piece(p);
    CHECK(piece.size() <= kMaxLiveMessage);
    CHECK(decode_live(piece).piece.data.size() == live::kMaxPieceData);
    piece += "x";
    CHECK(decode_error(piece) == fmt::format("piece: data of {} bytes, over the {} byte limit",
                                             live::kMaxPieceData + 1, live::kMaxPieceData));
    p.data += "x";
    CHECK(starts_with(encode_error([&] { encode_live_piece(p); }), "piece: data of 8388609 bytes"));
    p.data.clear();
    CHECK(encode_error([&] { encode_live_piece(p); }) == "piece: no data");

    // A 64 KiB descriptor.
    const std::string desc(live::kMaxDescriptorBytes, 'd');
    CHECK(decode_live(encode_live_desc(desc)).descriptor == desc);
    CHECK(decode_error(std::string(1, '\x06') + desc + "d") == "desc: descriptor of 65537 bytes, expected 1..65536");
    CHECK(encode_error([&] { encode_live_desc(desc + "d"); }) == "desc: descriptor of 65537 bytes, expected 1..65536");
    CHECK(encode_error([] { encode_live_desc(""); }) == "desc: descriptor of 0 bytes, expected 1..65536");

    // Chat: 1024-byte key and 512-byte text.
    LiveChat c = sample_chat();
    c.public_key_der.assign(kMaxChatKey, 'k');
    c.text.assign(kMaxChatText, 't');
    const LiveMsg m = decode_live(encode_live_chat(c));
    CHECK(m.chat.public_key_der.size() == kMaxChatKey);
    CHECK(m.chat.text.size() == kMaxChatText);
    c.text += "t";
    CHECK(encode_error([&] { encode_live_chat(c); }) == "chat: text of 513 bytes, expected 1..512");
    c.text = "ok";
    c.public_key_der += "k";
    CHECK(encode_error([&] { encode_live_chat(c); }) == "chat: key of 1025 bytes, expected 1..1024");
    c.public_key_der = "k";
    c.text = "\xc0\x80"; // overlong NUL
    CHECK(encode_error([&] { encode_live_chat(c); }) == "chat: text is not UTF-8");
}

TEST_CASE("live wire: UTF-8 check")
{
    for (std::string_view ok : {"a", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x8e\xa5", "\xef\xbf\xbf",
                                "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf"})
        CHECK(valid_utf8(ok));
    for (std::string_view bad : {"\x80", "\xc3", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xed\xa0\x80",
                                 "\xf0\x80\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xe2\x82",
                                 "\xe2\x28\xa1", "a\xff"})
        CHECK_FALSE(valid_utf8(bad));
    CHECK(valid_utf8(""));
}

TEST_CASE("live wire: mutated messages decode or throw, never crash")
{
    const std::vector<std::string> seeds = samples();
    std::mt19937 rng(20240611);
    int threw = 0, decoded = 0, unknown = 0;
    constexpr int kIters = 4000;
    for (int iter = 0; iter < kIters; ++iter) {
        std::string s = seeds[rng() % seeds.size()];
        for (int m = 1 + static_cast<int>(rng() % 3); m > 0 && !s.empty(); --m) {
            const std::size_t pos = rng() % s.size();
            switch (rng() % 5) {
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
            case 4: // a length or count byte set high
                s[pos] = static_cast<char>(0xff);
                break;
            }
        }
        try {
            const LiveMsg m = decode_live(s);
            if (m.type == LiveMsg::Unknown) {
                REQUIRE(static_cast<std::uint8_t>(s[0]) > LiveMsg::Chat);
                ++unknown;
            } else {
                REQUIRE(reencode(m) == s); // a decoded message is exactly what it says
                ++decoded;
            }
        } catch (const Error &e) {
            REQUIRE(e.code() == Errc::PROTO);
            REQUIRE(e.operation() == "oa_live");
            ++threw;
        }
    }
    INFO(fmt::format("fuzz: {} threw, {} decoded, {} unknown", threw, decoded, unknown));
    CHECK(threw + decoded + unknown == kIters);
    CHECK(threw > 0);
    CHECK(decoded > 0);
}
