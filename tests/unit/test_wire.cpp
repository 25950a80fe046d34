#include "transport/wire.hpp"

#include "transport/bencode.hpp"

#include <openace/engine.hpp>

#include <fmt/format.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

using namespace openace::transport;
using namespace openace::transport::wire;
using openace::Errc;

namespace {

// The detail of the openace::Error `f` throws with `code` and component
// "wire"; "" when it does not throw, "<wrong error>" for any other error.
template <class F>
std::string error_of(F &&f, Errc code = Errc::PROTO)
{
    try {
        f();
    } catch (const openace::Error &e) {
        return e.code() == code && e.component() == "wire" ? e.detail() : "<wrong error>";
    }
    return {};
}

std::string be32(std::uint32_t v)
{
    return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
            static_cast<char>(v)};
}

// A message with length prefix `length` and id `id`, body zero-filled.
std::string frame(std::uint32_t length, std::uint8_t id)
{
    std::string s = be32(length);
    if (length > 0) {
        s.push_back(static_cast<char>(id));
        s.append(length - 1, '\0');
    }
    return s;
}

std::string encoded(const Message &m)
{
    std::string out;
    encode_to(out, m);
    return out;
}

bool same(const Message &a, const Message &b)
{
    return a.type == b.type && a.index == b.index && a.begin == b.begin && a.length == b.length &&
           a.port == b.port && a.ext_id == b.ext_id && a.payload == b.payload;
}

Message msg(MsgType t, std::uint32_t index = 0, std::uint32_t begin = 0, std::uint32_t length = 0)
{
    Message m;
    m.type = t;
    m.index = index;
    m.begin = begin;
    m.length = length;
    return m;
}

const std::string kBlock(kBlockSize, 'B');
const std::string kBits = "\xff\x0f\x80";
const std::string kExtPayload = "d1:md6:ut_pexi1eee";

// One message of every type, with the fields each carries; the piece carries
// `block`.
std::vector<Message> every_message(std::string_view block = kBlock)
{
    std::vector<Message> v;
    for (MsgType t : {MsgType::KeepAlive, MsgType::Choke, MsgType::Unchoke, MsgType::Interested,
                      MsgType::NotInterested, MsgType::HaveAll, MsgType::HaveNone})
        v.push_back(msg(t));
    v.push_back(msg(MsgType::Have, 0xdeadbeef));
    v.push_back(msg(MsgType::Suggest, 7));
    v.push_back(msg(MsgType::AllowedFast, 1312));
    v.push_back(msg(MsgType::Request, 3, 2 * kBlockSize, kBlockSize));
    v.push_back(msg(MsgType::Cancel, 4, kBlockSize, 100));
    v.push_back(msg(MsgType::Reject, 0xffffffff, 0xfffffffe, kMaxRequestLength));
    Message port = msg(MsgType::Port);
    port.port = 0xc8d5;
    v.push_back(port);
    Message bits = msg(MsgType::Bitfield);
    bits.payload = kBits;
    v.push_back(bits);
    Message piece = msg(MsgType::Piece, 9, kBlockSize, static_cast<std::uint32_t>(block.size()));
    piece.payload = block;
    v.push_back(piece);
    Message ext = msg(MsgType::Extended);
    ext.payload = kExtPayload;
    v.push_back(ext);
    Message ext3 = ext;
    ext3.ext_id = 3;
    ext3.payload = {};
    v.push_back(ext3);
    return v;
}

std::string encode_all(const std::vector<Message> &ms)
{
    std::string s;
    for (const auto &m : ms)
        encode_to(s, m);
    return s;
}

InfoHash filled(std::uint8_t b)
{
    InfoHash h;
    h.fill(b);
    return h;
}

// Byte-level mutations shared by the fuzz loops.
void mutate(std::string &s, std::mt19937 &rng)
{
    int muts = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < muts; ++m) {
        std::size_t pos = s.empty() ? 0 : rng() % s.size();
        switch (rng() % 5) {
        case 0:
            if (!s.empty())
                s[pos] = static_cast<char>(rng() & 0xff);
            break;
        case 1:
            if (!s.empty())
                s.erase(pos, 1 + rng() % 8);
            break;
        case 2:
            s.insert(pos, 1, static_cast<char>(rng() & 0xff));
            break;
        case 3:
            if (!s.empty())
                s[pos] = "0123456789ilde:"[rng() % 15];
            break;
        case 4:
            if (!s.empty())
                s[pos] = static_cast<char>(s[pos] ^ (1 << (rng() % 8)));
            break;
        }
    }
}

} // namespace

// ---- handshake ----

TEST_CASE("wire: handshake round trips and places the reserved flag bits")
{
    Handshake h;
    h.info_hash = filled(0xaa);
    for (std::size_t i = 0; i < h.peer_id.size(); ++i)
        h.peer_id[i] = static_cast<std::uint8_t>(i);
    std::string s = encode_handshake(h);
    REQUIRE(s.size() == kHandshakeSize);
    CHECK(s[0] == 19);
    CHECK(s.substr(1, 19) == "BitTorrent protocol");
    CHECK(s.substr(20, 8) == std::string("\0\0\0\0\0\x10\0\x04", 8));
    CHECK(s.substr(28, 20) == std::string(20, '\xaa'));
    Handshake back = decode_handshake(s);
    CHECK(back.info_hash == h.info_hash);
    CHECK(back.peer_id == h.peer_id);
    CHECK(back.extensions);
    CHECK(back.fast);

    h.extensions = false;
    h.fast = false;
    s = encode_handshake(h);
    CHECK(s.substr(20, 8) == std::string(8, '\0'));
    back = decode_handshake(s);
    CHECK_FALSE(back.extensions);
    CHECK_FALSE(back.fast);

    // Other reserved bits (e.g. DHT, reserved[7] & 0x01) are ignored.
    s[27] = '\x01';
    CHECK_FALSE(decode_handshake(s).fast);
}

TEST_CASE("wire: handshake with a wrong protocol name or size is rejected")
{
    std::string good = encode_handshake({});
    std::string s = good;
    s[0] = 18;
    CHECK(error_of([&] { decode_handshake(s); }) == "protocol name length 18, expected 19");
    s = good;
    s[1] = 'b';
    CHECK(error_of([&] { decode_handshake(s); }) == "protocol name is not 'BitTorrent protocol'");
    CHECK(error_of([&] { decode_handshake(good.substr(0, 67)); }, Errc::INVAL) ==
          "67 bytes given, expected 68");
    CHECK(error_of([&] { decode_handshake(good + "x"); }, Errc::INVAL) == "69 bytes given, expected 68");
}

// ---- messages ----

TEST_CASE("wire: every message type round trips")
{
    for (const Message &m : every_message()) {
        INFO(to_string(m.type));
        std::string s = encoded(m);
        Message back;
        back.index = 99; // decode resets fields the type does not carry
        REQUIRE(decode_message(s, back) == s.size());
        CHECK(same(back, m));
    }
}

TEST_CASE("wire: encodings follow the BEP 3 byte layout")
{
    CHECK(encoded(msg(MsgType::KeepAlive)) == std::string(4, '\0'));
    CHECK(encoded(msg(MsgType::Interested)) == be32(1) + "\x02");
    CHECK(encoded(msg(MsgType::Have, 0x01020304)) == be32(5) + "\x04" + be32(0x01020304));
    CHECK(encoded(msg(MsgType::Request, 1, 0x4000, 0x4000)) ==
          be32(13) + "\x06" + be32(1) + be32(0x4000) + be32(0x4000));
    Message port = msg(MsgType::Port);
    port.port = 6881;
    CHECK(encoded(port) == be32(3) + "\x09\x1a\xe1");
    Message piece = msg(MsgType::Piece, 2, 16, 999); // length is taken from the payload
    piece.payload = "abc";
    CHECK(encoded(piece) == be32(12) + "\x07" + be32(2) + be32(16) + "abc");
    Message ext = msg(MsgType::Extended);
    ext.ext_id = 5;
    ext.payload = "xy";
    CHECK(encoded(ext) == be32(4) + "\x14\x05xy");
}

TEST_CASE("wire: encode_piece_header is the header of the full piece encoding")
{
    Message piece = msg(MsgType::Piece, 12, 3 * kBlockSize);
    piece.payload = kBlock;
    std::string full = encoded(piece);
    std::string header;
    encode_piece_header(header, 12, 3 * kBlockSize, kBlockSize);
    CHECK(header.size() == 13);
    CHECK(header + kBlock == full);
}

TEST_CASE("wire: encoding a type outside the enum throws INVAL")
{
    std::string out;
    CHECK(error_of([&] { encode_to(out, msg(static_cast<MsgType>(42))); }, Errc::INVAL) ==
          "message type 42 is not a wire message");
    CHECK(out.empty());
}

TEST_CASE("wire: message types have readable names")
{
    CHECK(std::string(to_string(MsgType::Request)) == "request");
    CHECK(std::string(to_string(MsgType::KeepAlive)) == "keep-alive");
    CHECK(std::string(to_string(MsgType::NotInterested)) == "not-interested");
    CHECK(std::string(to_string(MsgType::AllowedFast)) == "allowed-fast");
    CHECK(std::string(to_string(static_cast<MsgType>(42))) == "unknown");
}

TEST_CASE("wire: every fixed-length violation is named")
{
    struct Fixed {
        MsgType type;
        std::uint32_t length;
    };
    const Fixed fixed[] = {
        {MsgType::Choke, 1},     {MsgType::Unchoke, 1},  {MsgType::Interested, 1},
        {MsgType::NotInterested, 1}, {MsgType::HaveAll, 1}, {MsgType::HaveNone, 1},
        {MsgType::Have, 5},      {MsgType::Suggest, 5},  {MsgType::AllowedFast, 5},
        {MsgType::Request, 13},  {MsgType::Cancel, 13},  {MsgType::Reject, 13},
        {MsgType::Port, 3},
    };
    for (const Fixed &f : fixed) {
        const auto id = static_cast<std::uint8_t>(f.type);
        Message out;
        CHECK(decode_message(frame(f.length, id), out) == 4 + f.length);
        for (std::uint32_t bad : {f.length - 1, f.length + 1, f.length + 100}) {
            if (bad == 0)
                continue; // a zero prefix is a keep-alive
            std::string want = fmt::format("message {} ({}): length {}, expected {}", id,
                                           to_string(f.type), bad, f.length);
            CHECK(error_of([&] { decode_message(frame(bad, id), out); }) == want);
        }
    }
    Message out;
    CHECK(error_of([&] { decode_message(frame(9, 6), out); }) == "message 6 (request): length 9, expected 13");
    CHECK(error_of([&] { decode_message(frame(8, 7), out); }) ==
          "message 7 (piece): length 8, expected at least 9");
    CHECK(error_of([&] { decode_message(frame(1, 20), out); }) ==
          "message 20 (extended): length 1, expected at least 2");
    // The shortest legal variable-length messages.
    CHECK(decode_message(frame(9, 7), out) == 13);
    CHECK((out.type == MsgType::Piece && out.payload.empty() && out.length == 0));
    CHECK(decode_message(frame(1, 5), out) == 5);
    CHECK((out.type == MsgType::Bitfield && out.payload.empty()));
}

TEST_CASE("wire: unknown message ids throw")
{
    Message out;
    for (int id : {10, 11, 12, 18, 19, 21, 22, 100, 255}) {
        INFO(id);
        CHECK(error_of([&] { decode_message(frame(1, static_cast<std::uint8_t>(id)), out); }) ==
              fmt::format("message {}: unknown message id", id));
    }
}

TEST_CASE("wire: max_length is enforced from the prefix before the body arrives")
{
    Message out;
    CHECK(error_of([&] { decode_message(be32(kMaxMessageLength + 1), out); }) ==
          fmt::format("message length {} exceeds the limit of {}", kMaxMessageLength + 1,
                      kMaxMessageLength));
    CHECK(error_of([&] { decode_message(be32(0xffffffff), out); }) != "");
    // At the limit, a partial body just waits for more.
    CHECK(decode_message(be32(kMaxMessageLength) + "\x07" + std::string(100, 'x'), out) == 0);
    // A caller-chosen limit.
    CHECK(decode_message(be32(100) + "\x05", out, 100) == 0);
    CHECK(error_of([&] { decode_message(be32(101), out, 100); }) ==
          "message length 101 exceeds the limit of 100");
}

TEST_CASE("wire: a malformed header fails as soon as its id byte arrives")
{
    Message out;
    CHECK(error_of([&] { decode_message(be32(100) + "\x06", out); }) ==
          "message 6 (request): length 100, expected 13");
    CHECK(error_of([&] { decode_message(be32(100) + "\x2a", out); }) == "message 42: unknown message id");
    CHECK(decode_message(be32(13) + "\x06", out) == 0);
    CHECK(decode_message(be32(13), out) == 0);
}

TEST_CASE("wire: request, cancel and reject may name at most 128 KiB")
{
    for (MsgType t : {MsgType::Request, MsgType::Cancel, MsgType::Reject}) {
        Message out;
        CHECK(decode_message(encoded(msg(t, 0, 0, kMaxRequestLength)), out) == 17);
        CHECK(out.length == kMaxRequestLength);
        std::string want = fmt::format("message {} ({}): block length {} exceeds {}",
                                       static_cast<int>(t), to_string(t), kMaxRequestLength + 1,
                                       kMaxRequestLength);
        CHECK(error_of([&] { decode_message(encoded(msg(t, 0, 0, kMaxRequestLength + 1)), out); }) == want);
    }
}

TEST_CASE("wire: partial input returns 0 at every split point of a stream")
{
    const std::vector<Message> ms = every_message();
    const std::string stream = encode_all(ms);
    std::vector<std::size_t> ends; // message boundaries
    for (const auto &m : ms)
        ends.push_back((ends.empty() ? 0 : ends.back()) + encoded(m).size());
    REQUIRE(ends.back() == stream.size());

    for (std::size_t split = 0; split <= stream.size(); ++split) {
        // What has arrived so far frames exactly the messages that fit in it.
        std::string_view head(stream.data(), split);
        std::size_t pos = 0, count = 0;
        Message m;
        while (std::size_t used = decode_message(head.substr(pos), m)) {
            REQUIRE(count < ms.size());
            REQUIRE(same(m, ms[count]));
            pos += used;
            ++count;
        }
        REQUIRE(pos == (count == 0 ? 0 : ends[count - 1]));
        REQUIRE((count == ms.size() || ends[count] > split));
        // The rest arrives: every remaining message follows, in order.
        std::string_view all(stream);
        while (std::size_t used = decode_message(all.substr(pos), m)) {
            REQUIRE(same(m, ms[count]));
            pos += used;
            ++count;
        }
        REQUIRE(count == ms.size());
        REQUIRE(pos == stream.size());
    }
}

TEST_CASE("wire: mutated message streams either decode or throw openace::Error")
{
    // A short block, so that most mutations hit headers rather than data.
    const std::string seed = encode_all(every_message("block"));
    std::mt19937 rng(20240601);
    int consumed_all = 0, errors = 0, partial = 0;
    for (int iter = 0; iter < 5000; ++iter) {
        std::string s = seed;
        mutate(s, rng);
        std::string_view rest(s);
        try {
            Message m;
            int guard = 0;
            while (std::size_t used = decode_message(rest, m)) {
                REQUIRE(used <= rest.size());
                REQUIRE(m.payload.size() <= rest.size());
                rest.remove_prefix(used);
                REQUIRE(++guard <= 100000);
            }
            (rest.empty() ? consumed_all : partial)++;
        } catch (const openace::Error &e) {
            REQUIRE(e.code() == Errc::PROTO);
            ++errors;
        }
    }
    CHECK(consumed_all + partial + errors == 5000);
    CHECK(errors > 500);
    CHECK(consumed_all > 100);
    CHECK(partial > 0);
}

// ---- BEP 6 allowed fast ----

TEST_CASE("wire: allowed-fast set matches the BEP 6 example vectors")
{
    const InfoHash ih = filled(0xaa);
    const std::uint32_t ip = 80u << 24 | 4u << 16 | 4u << 8 | 200u; // 80.4.4.200
    // The BEP's examples: 1313 pieces, infohash 0xaa * 20, k = 7 and k = 9.
    CHECK(allowed_fast_set(ih, ip, 1313, 7) ==
          std::vector<std::uint32_t>{1059, 431, 808, 1217, 287, 376, 1188});
    CHECK(allowed_fast_set(ih, ip, 1313, 9) ==
          std::vector<std::uint32_t>{1059, 431, 808, 1217, 287, 376, 1188, 353, 508});
    // Only the /24 counts.
    CHECK(allowed_fast_set(ih, ip & 0xffffff00u, 1313, 9) == allowed_fast_set(ih, ip, 1313, 9));
    CHECK(allowed_fast_set(ih, ip + 256, 1313, 9) != allowed_fast_set(ih, ip, 1313, 9));
}

TEST_CASE("wire: allowed-fast set is clamped to the piece count")
{
    const InfoHash ih = filled(0x11);
    CHECK(allowed_fast_set(ih, 0x7f000001, 0, 10).empty());
    CHECK(allowed_fast_set(ih, 0x7f000001, 100, 0).empty());
    CHECK(allowed_fast_set(ih, 0x7f000001, 100, -3).empty());
    auto all = allowed_fast_set(ih, 0x7f000001, 5, 10);
    std::sort(all.begin(), all.end());
    CHECK(all == std::vector<std::uint32_t>{0, 1, 2, 3, 4});
}

// ---- BEP 10 extension handshake ----

TEST_CASE("wire: extension handshake round trips")
{
    ExtHandshake h;
    h.m = {{"ut_metadata", 2}, {"ut_pex", 1}, {"lt_donthave", 0}};
    h.metadata_size = 31235;
    h.client = "OpenAce 0.1";
    h.listen_port = 8621;
    h.reqq = 250;
    h.yourip = std::string("\x7f\0\0\x01", 4);
    h.oa_tls = true;
    std::string s = encode_ext_handshake(h);
    CHECK(s.find("6:oa_tlsi1e") != std::string::npos);
    ExtHandshake back = decode_ext_handshake(s);
    CHECK(back.m == h.m);
    CHECK(back.metadata_size == h.metadata_size);
    CHECK(back.client == h.client);
    CHECK(back.listen_port == h.listen_port);
    CHECK(back.reqq == h.reqq);
    CHECK(back.yourip == h.yourip);
    CHECK(back.oa_tls);

    // Absent fields stay absent.
    std::string empty = encode_ext_handshake({});
    CHECK(empty == "d1:mdee");
    ExtHandshake none = decode_ext_handshake(empty);
    CHECK(none.m.empty());
    CHECK(none.metadata_size == -1);
    CHECK(none.listen_port == 0);
    CHECK(none.reqq == 0);
    CHECK_FALSE(none.oa_tls);
}

TEST_CASE("wire: extension handshake tolerates unknown, unsorted and wrong-typed keys")
{
    // Unsorted top-level and "m" keys, a repeated key (last wins), unknown
    // keys with nested values, and wrong-typed optional fields.
    const std::string s =
        "d1:v3:abc1:md6:ut_pexi1e11:ut_metadatai3e5:x_badli1ee6:ut_pexi4ee"
        "13:metadata_size3:big1:pi70000e4:reqqi-5e6:yourip3:abc6:oa_tlsi2e"
        "7:unknownd1:ali1ei2eee1:v3:xyze";
    ExtHandshake h = decode_ext_handshake(s);
    CHECK(h.m == std::map<std::string, int>{{"ut_metadata", 3}, {"ut_pex", 4}});
    CHECK(h.client == "xyz");
    CHECK(h.metadata_size == -1);
    CHECK(h.listen_port == 0);
    CHECK(h.reqq == 0);
    CHECK(h.yourip.empty());
    CHECK_FALSE(h.oa_tls);
    // "m" of the wrong type is ignored too; metadata_size over the limit is absent.
    ExtHandshake h2 = decode_ext_handshake(
        fmt::format("d1:mi5e13:metadata_sizei{}ee", kMaxMetadataSize + 1));
    CHECK(h2.m.empty());
    CHECK(h2.metadata_size == -1);

    // The bencode option behind this: strict by default, lenient on request.
    bencode::Limits lenient;
    lenient.require_sorted_keys = false;
    CHECK_THROWS_AS(bencode::decode("d1:bi1e1:ai2ee"), openace::Error);
    CHECK(bencode::encode(bencode::decode("d1:bi1e1:ai2e1:bi3ee", lenient)) == "d1:ai2e1:bi3ee");
}

TEST_CASE("wire: extension handshake carries the live keys")
{
    ExtHandshake h;
    h.m = {{"oa_live", 3}, {"ut_pex", 1}};
    h.live_window = 60;
    h.live_newest = 894'999'999;
    h.live_desc_size = 180;
    const std::string s = encode_ext_handshake(h);
    CHECK(s.find("14:oa_live_windowi60e") != std::string::npos);
    CHECK(s.find("14:oa_live_newesti894999999e") != std::string::npos);
    CHECK(s.find("12:oa_live_desci180e") != std::string::npos);
    const ExtHandshake back = decode_ext_handshake(s);
    CHECK(back.m == h.m);
    CHECK(back.live_window == 60);
    CHECK(back.live_newest == 894'999'999);
    CHECK(back.live_desc_size == 180);

    // Absent stays absent; newest 0 is a value, not absence.
    ExtHandshake none = decode_ext_handshake(encode_ext_handshake({}));
    CHECK(none.live_window == -1);
    CHECK(none.live_newest == -1);
    CHECK(none.live_desc_size == -1);
    ExtHandshake zero;
    zero.live_newest = 0;
    CHECK(decode_ext_handshake(encode_ext_handshake(zero)).live_newest == 0);

    // The bounds are accepted; out of range or wrong-typed values are ignored.
    auto decoded = [](std::string_view window, std::string_view newest, std::string_view desc) {
        return decode_ext_handshake(fmt::format("d1:mde12:oa_live_desc{}14:oa_live_newest{}14:oa_live_window{}e",
                                                desc, newest, window));
    };
    ExtHandshake edge = decoded("i1e", "i9223372036854775807e", "i65536e");
    CHECK(edge.live_window == 1);
    CHECK(edge.live_newest == INT64_MAX);
    CHECK(edge.live_desc_size == 65536);
    for (const ExtHandshake &bad : {decoded("i0e", "i-1e", "i65537e"), decoded("i-5e", "i-9e", "i0e"),
                                    decoded("1:x", "le", "de")}) {
        CHECK(bad.live_window == -1);
        CHECK(bad.live_newest == -1);
        CHECK(bad.live_desc_size == -1);
    }
}

TEST_CASE("wire: bad extension handshakes are rejected")
{
    CHECK(error_of([] { decode_ext_handshake("li1ee"); }) == "payload is not a dictionary");
    CHECK(error_of([] { decode_ext_handshake(""); }).find("not bencoded") == 0);
    CHECK(error_of([] { decode_ext_handshake("d1:md6:ut_pexi1eee trailing"); }).find("not bencoded") == 0);
    CHECK(error_of([] { decode_ext_handshake("d1:md6:ut_pexi256eee"); }) ==
          "field 'm.ut_pex': id 256 outside 0..255");
    CHECK(error_of([] { decode_ext_handshake("d1:md6:ut_pexi-1eee"); }) ==
          "field 'm.ut_pex': id -1 outside 0..255");
    std::string big = "d1:v" + std::to_string(kMaxExtHandshakeSize) + ":" +
                      std::string(kMaxExtHandshakeSize, 'v') + "e";
    CHECK(error_of([&] { decode_ext_handshake(big); }) ==
          fmt::format("{} bytes exceed the limit of {}", big.size(), kMaxExtHandshakeSize));
    std::string deep = "d1:x" + std::string(100, 'l') + std::string(100, 'e') + "e";
    CHECK(error_of([&] { decode_ext_handshake(deep); }).find("not bencoded") == 0);
}

// ---- BEP 9 ut_metadata ----

TEST_CASE("wire: metadata messages round trip")
{
    MetadataMsg req;
    req.msg_type = 0;
    req.piece = 3;
    std::string s = encode_metadata_msg(req);
    CHECK(s == "d8:msg_typei0e5:piecei3ee");
    MetadataMsg back = decode_metadata_msg(s);
    CHECK(back.msg_type == 0);
    CHECK(back.piece == 3);
    CHECK(back.total_size == -1);
    CHECK(back.data.empty());

    MetadataMsg rej;
    rej.msg_type = 2;
    rej.piece = 1;
    back = decode_metadata_msg(encode_metadata_msg(rej));
    CHECK(back.msg_type == 2);
    CHECK(back.piece == 1);

    const std::string block(kMetadataPieceSize, 'm');
    MetadataMsg data;
    data.msg_type = 1;
    data.piece = 1;
    data.total_size = 2 * kMetadataPieceSize;
    data.data = block;
    s = encode_metadata_msg(data);
    CHECK(s.substr(s.size() - block.size()) == block);
    back = decode_metadata_msg(s);
    CHECK(back.msg_type == 1);
    CHECK(back.piece == 1);
    CHECK(back.total_size == data.total_size);
    CHECK(back.data == block);
    CHECK(back.data.data() == s.data() + s.size() - block.size()); // points into the input

    // A dict whose data happens to start with bencode-looking bytes.
    data.piece = 0;
    data.total_size = 5;
    data.data = "i1e:e";
    s = encode_metadata_msg(data); // back.data points into s
    back = decode_metadata_msg(s);
    CHECK(back.data == "i1e:e");
    // Keys in any order, unknown keys with nested values.
    back = decode_metadata_msg("d5:piecei0e1:xld1:ai1eee8:msg_typei2ee");
    CHECK(back.msg_type == 2);
}

TEST_CASE("wire: bad metadata messages are rejected")
{
    auto err = [](std::string_view s) { return error_of([&] { decode_metadata_msg(s); }); };
    CHECK(err("d8:msg_typei3e5:piecei0ee") == "field 'msg_type': missing or not 0, 1 or 2");
    CHECK(err("d5:piecei0ee") == "field 'msg_type': missing or not 0, 1 or 2");
    CHECK(err("d8:msg_typei0ee") == "field 'piece': missing or outside 0..511");
    CHECK(err("d8:msg_typei0e5:piece1:0e") == "field 'piece': missing or outside 0..511");
    CHECK(err("d8:msg_typei0e5:piecei512ee") == "field 'piece': missing or outside 0..511");
    CHECK(err("d8:msg_typei1e5:piecei0eexyz") == "field 'total_size': missing or outside 1..8388608");
    CHECK(err("d8:msg_typei1e5:piecei0e10:total_sizei0eexyz") ==
          "field 'total_size': missing or outside 1..8388608");
    CHECK(err("d8:msg_typei1e5:piecei0e10:total_sizei8388609eexyz") ==
          "field 'total_size': missing or outside 1..8388608");
    CHECK(err("d8:msg_typei1e5:piecei1e10:total_sizei16384eexyz") ==
          "piece 1 is beyond total_size 16384");
    CHECK(err("d8:msg_typei1e5:piecei0e10:total_sizei99999ee" + std::string(kMetadataPieceSize + 1, 'x')) ==
          "16385 data bytes exceed the piece size 16384");
    CHECK(err("") == "payload does not start with a bencoded value");
    CHECK(err("xyz") == "payload does not start with a bencoded value");
    CHECK(err("d8:msg_typei0e") == "payload does not start with a bencoded value");
    CHECK(err("d99999999999999999999999:x") == "payload does not start with a bencoded value");
    CHECK(err("li1ee") == "payload is not a dictionary");
    CHECK(err("d8:msg_typei01e5:piecei0ee").find("not bencoded") == 0);
}

// ---- BEP 11 ut_pex ----

TEST_CASE("wire: pex messages round trip with flags in order")
{
    PexMsg m;
    m.added = {{"10.0.0.1", 6881}, {"2001:db8::1", 51413}, {"10.0.0.2", 80}, {"::1", 7}};
    m.added_flags = {0x12, 0x01, 0x02}; // the last peer has none: 0
    m.dropped = {{"192.168.1.9", 1000}, {"fe80::2", 2000}};
    PexMsg back = decode_pex(encode_pex(m));
    // IPv4 peers come first, then IPv6, each family in its original order.
    CHECK(back.added == std::vector<PeerAddress>{{"10.0.0.1", 6881}, {"10.0.0.2", 80},
                                                 {"2001:db8::1", 51413}, {"::1", 7}});
    CHECK(back.added_flags == std::vector<std::uint8_t>{0x12, 0x02, 0x01, 0x00});
    CHECK(back.dropped == std::vector<PeerAddress>{{"192.168.1.9", 1000}, {"fe80::2", 2000}});

    PexMsg empty = decode_pex(encode_pex({}));
    CHECK(empty.added.empty());
    CHECK(empty.added_flags.empty());
    CHECK(empty.dropped.empty());
}

TEST_CASE("wire: pex keeps at most 200 peers per list and stays aligned")
{
    PexMsg m;
    for (std::uint32_t i = 0; i < 300; ++i) {
        m.added.push_back({fmt::format("10.0.{}.{}", i / 256, i % 256), 1000});
        m.added_flags.push_back(static_cast<std::uint8_t>(i));
        m.dropped.push_back({fmt::format("10.1.{}.{}", i / 256, i % 256), 2000});
    }
    PexMsg back = decode_pex(encode_pex(m));
    REQUIRE(back.added.size() == kMaxPexPeers);
    REQUIRE(back.added_flags.size() == kMaxPexPeers);
    CHECK(back.dropped.size() == kMaxPexPeers);
    CHECK(back.added[199] == m.added[199]);
    CHECK(back.added_flags[199] == 199);

    // A port-0 entry is dropped without shifting the flags of the next one.
    std::string added = std::string("\x0a\0\0\x01\0\0", 6) + std::string("\x0a\0\0\x02\x1a\xe1", 6);
    bencode::Value d{bencode::Dict{{"added", bencode::Value(added)},
                                   {"added.f", bencode::Value(std::string("\x01\x02"))}}};
    back = decode_pex(bencode::encode(d));
    CHECK(back.added == std::vector<PeerAddress>{{"10.0.0.2", 6881}});
    CHECK(back.added_flags == std::vector<std::uint8_t>{0x02});
}

TEST_CASE("wire: pex ignores wrong-typed keys and rejects non-dicts")
{
    PexMsg m = decode_pex("d5:addedi1e7:dropped6:abcdef4:junkle8:dropped6li1eee");
    CHECK(m.added.empty());
    CHECK(m.dropped.size() == 1);
    CHECK(error_of([] { decode_pex("i1e"); }) == "payload is not a dictionary");
    CHECK(error_of([] { decode_pex("d5:added"); }).find("not bencoded") == 0);
}

TEST_CASE("wire: mutated extension payloads either decode or throw openace::Error")
{
    ExtHandshake h;
    h.m = {{"ut_metadata", 2}, {"ut_pex", 1}};
    h.metadata_size = 20000;
    h.client = "OpenAce";
    h.yourip = "\x01\x02\x03\x04";
    MetadataMsg md;
    md.msg_type = 1;
    md.total_size = 100;
    md.data = "0123456789";
    PexMsg px;
    px.added = {{"1.2.3.4", 5}, {"::2", 6}};
    px.added_flags = {1, 2};
    px.dropped = {{"5.6.7.8", 9}};
    const std::string seeds[] = {encode_ext_handshake(h), encode_metadata_msg(md), encode_pex(px)};
    std::mt19937 rng(777);
    int ok[3] = {}, errors[3] = {};
    for (int iter = 0; iter < 6000; ++iter) {
        const int kind = iter % 3;
        std::string s = seeds[kind];
        mutate(s, rng);
        try {
            // Decoded outside REQUIRE, which would swallow the exception.
            std::size_t bounded = 0, limit = 1;
            if (kind == 0) {
                bounded = decode_ext_handshake(s).m.size();
                limit = s.size();
            } else if (kind == 1) {
                bounded = decode_metadata_msg(s).data.size();
                limit = kMetadataPieceSize;
            } else {
                bounded = decode_pex(s).added.size();
                limit = kMaxPexPeers;
            }
            REQUIRE(bounded <= limit);
            ++ok[kind];
        } catch (const openace::Error &e) {
            REQUIRE(e.code() == Errc::PROTO);
            REQUIRE(e.component() == "wire");
            ++errors[kind];
        }
    }
    for (int kind = 0; kind < 3; ++kind) {
        INFO(kind << ": " << ok[kind] << " decoded, " << errors[kind] << " rejected");
        CHECK(ok[kind] > 100);
        CHECK(errors[kind] > 100);
    }
}
