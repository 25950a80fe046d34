#include "transport/wire.hpp"

#include "core/error.hpp"
#include "live/live_descriptor.hpp"
#include "transport/bencode.hpp"
#include "transport/metainfo.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <unordered_set>

namespace openace::transport::wire {

namespace {

constexpr std::string_view kProtocol = "BitTorrent protocol";
constexpr std::uint8_t kExtensionBit = 0x10; // reserved[5]
constexpr std::uint8_t kFastBit = 0x04;      // reserved[7]
constexpr std::size_t kMaxMetadataPieces =
    static_cast<std::size_t>(kMaxMetadataSize) / kMetadataPieceSize;
// Nesting allowed in extension payloads: they are flat dicts, a little slack
// for unknown keys.
constexpr std::size_t kPayloadDepth = 16;

void put32(std::string &out, std::uint32_t v)
{
    const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                       static_cast<char>(v >> 8), static_cast<char>(v)};
    out.append(b, 4);
}

std::uint32_t get32(std::string_view s, std::size_t at)
{
    auto b = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(s[at + i])); };
    return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

void put_header(std::string &out, std::uint32_t length, MsgType t)
{
    put32(out, length);
    out.push_back(static_cast<char>(t));
}

// ---- message shapes ----

struct Shape {
    std::uint32_t length; // exact length, or the minimum when !fixed
    bool fixed;
};

bool known_id(std::uint8_t id)
{
    return id <= 9 || (id >= 13 && id <= 17) || id == 20;
}

Shape shape_of(MsgType t)
{
    switch (t) {
    case MsgType::Have:
    case MsgType::Suggest:
    case MsgType::AllowedFast:
        return {5, true};
    case MsgType::Request:
    case MsgType::Cancel:
    case MsgType::Reject:
        return {13, true};
    case MsgType::Port:
        return {3, true};
    case MsgType::Bitfield:
        return {1, false};
    case MsgType::Piece:
        return {9, false};
    case MsgType::Extended:
        return {2, false};
    default: // choke, unchoke, (not-)interested, have-all, have-none
        return {1, true};
    }
}

template <class... Args>
[[noreturn]] void bad_message(std::uint8_t id, fmt::format_string<Args...> f, Args &&...args)
{
    throw_errorf(Errc::PROTO, "wire", "decode", "message {} ({}): {}", id,
                 to_string(static_cast<MsgType>(id)), fmt::format(f, std::forward<Args>(args)...));
}

// Everything the length prefix and the id byte alone decide.
void check_header(std::uint8_t id, std::uint32_t length)
{
    if (!known_id(id))
        throw_errorf(Errc::PROTO, "wire", "decode", "message {}: unknown message id", id);
    Shape s = shape_of(static_cast<MsgType>(id));
    if (s.fixed && length != s.length)
        bad_message(id, "length {}, expected {}", length, s.length);
    if (!s.fixed && length < s.length)
        bad_message(id, "length {}, expected at least {}", length, s.length);
}

void parse_body(std::string_view body, MsgType t, Message &out)
{
    out.type = t;
    switch (t) {
    case MsgType::Have:
    case MsgType::Suggest:
    case MsgType::AllowedFast:
        out.index = get32(body, 0);
        break;
    case MsgType::Request:
    case MsgType::Cancel:
    case MsgType::Reject:
        out.index = get32(body, 0);
        out.begin = get32(body, 4);
        out.length = get32(body, 8);
        if (out.length > kMaxRequestLength)
            bad_message(static_cast<std::uint8_t>(t), "block length {} exceeds {}", out.length,
                        kMaxRequestLength);
        break;
    case MsgType::Piece:
        out.index = get32(body, 0);
        out.begin = get32(body, 4);
        out.payload = body.substr(8);
        out.length = static_cast<std::uint32_t>(out.payload.size());
        break;
    case MsgType::Port:
        out.port = static_cast<std::uint16_t>(static_cast<unsigned char>(body[0]) << 8 |
                                              static_cast<unsigned char>(body[1]));
        break;
    case MsgType::Bitfield:
        out.payload = body;
        break;
    case MsgType::Extended:
        out.ext_id = static_cast<std::uint8_t>(body[0]);
        out.payload = body.substr(1);
        break;
    default:
        break;
    }
}

// ---- bencoded extension payloads ----

// Decodes a peer's bencoded dict leniently (unsorted keys allowed); bencode
// errors become PROTO errors of `op`.
bencode::Value decode_dict(std::string_view in, const char *op, std::size_t max_size)
{
    bencode::Limits lim;
    lim.max_depth = kPayloadDepth;
    lim.max_size = max_size;
    lim.max_items = max_size / 2;
    lim.require_sorted_keys = false;
    bencode::Value v;
    try {
        v = bencode::decode(in, lim);
    } catch (const Error &e) {
        throw_errorf(Errc::PROTO, "wire", op, "not bencoded: {}", e.detail());
    }
    if (!v.is_dict())
        throw_errorf(Errc::PROTO, "wire", op, "payload is not a dictionary");
    return v;
}

const bencode::Value *find_int(const bencode::Value &d, std::string_view key)
{
    const bencode::Value *v = d.find(key);
    return v && v->is_int() ? v : nullptr;
}

const std::string *find_string(const bencode::Value &d, std::string_view key)
{
    const bencode::Value *v = d.find(key);
    return v && v->is_string() ? &v->as_string() : nullptr;
}

std::int64_t int_or(const bencode::Value &d, std::string_view key, std::int64_t lo,
                    std::int64_t hi, std::int64_t fallback)
{
    const bencode::Value *v = find_int(d, key);
    return v && v->as_int() >= lo && v->as_int() <= hi ? v->as_int() : fallback;
}

template <class... Args>
[[noreturn]] void bad_metadata(fmt::format_string<Args...> f, Args &&...args)
{
    throw_errorf(Errc::PROTO, "wire", "metadata", f, std::forward<Args>(args)...);
}

// End of the bencoded value at the front of `s` (structure only; the strict
// decoder validates the span afterwards).  Iterative, depth-bounded.
std::size_t value_end(std::string_view s)
{
    auto fail = [] { bad_metadata("payload does not start with a bencoded value"); };
    std::size_t pos = 0, depth = 0;
    do {
        if (pos >= s.size())
            fail();
        char c = s[pos];
        if (c == 'i') {
            pos = s.find('e', pos);
            if (pos == std::string_view::npos)
                fail();
            ++pos;
        } else if (c >= '0' && c <= '9') {
            std::size_t colon = s.find(':', pos);
            std::size_t len = 0;
            if (colon == std::string_view::npos)
                fail();
            auto [end, ec] = std::from_chars(s.data() + pos, s.data() + colon, len);
            if (ec != std::errc() || end != s.data() + colon || len > s.size() - colon - 1)
                fail();
            pos = colon + 1 + len;
        } else if ((c == 'l' || c == 'd') && depth < kPayloadDepth) {
            ++depth;
            ++pos;
        } else if (c == 'e' && depth > 0) {
            --depth;
            ++pos;
        } else {
            fail();
        }
    } while (depth > 0);
    return pos;
}

// ---- PEX ----

void append_peer(std::string &peers, std::string &flags, const PeerAddress &p, std::uint8_t flag,
                 bool ipv6)
{
    std::string one = encode_compact_peers({p}, ipv6);
    if (one.empty())
        return;
    peers += one;
    flags.push_back(static_cast<char>(flag));
}

// Entry by entry so flags stay aligned when port-0 entries are dropped.
void take_peers(const bencode::Value &d, std::string_view key, bool ipv6,
                std::vector<PeerAddress> &out, std::vector<std::uint8_t> *flags)
{
    const std::string *peers = find_string(d, key);
    if (!peers)
        return;
    const std::string *f = flags ? find_string(d, std::string(key) + ".f") : nullptr;
    const std::size_t step = ipv6 ? 18 : 6;
    for (std::size_t i = 0; (i + 1) * step <= peers->size() && out.size() < kMaxPexPeers; ++i) {
        auto one = parse_compact_peers(std::string_view(*peers).substr(i * step, step), ipv6);
        if (one.empty())
            continue;
        out.push_back(std::move(one.front()));
        if (flags)
            flags->push_back(f && i < f->size() ? static_cast<std::uint8_t>((*f)[i]) : 0);
    }
}

} // namespace

// ---- handshake ----

std::string encode_handshake(const Handshake &h)
{
    std::string out;
    out.reserve(kHandshakeSize);
    out.push_back(static_cast<char>(kProtocol.size()));
    out += kProtocol;
    char reserved[8] = {};
    if (h.extensions)
        reserved[5] = static_cast<char>(kExtensionBit);
    if (h.fast)
        reserved[7] = static_cast<char>(kFastBit);
    out.append(reserved, 8);
    out.append(reinterpret_cast<const char *>(h.info_hash.data()), h.info_hash.size());
    out.append(reinterpret_cast<const char *>(h.peer_id.data()), h.peer_id.size());
    return out;
}

Handshake decode_handshake(std::string_view data)
{
    if (data.size() != kHandshakeSize)
        throw_errorf(Errc::INVAL, "wire", "handshake", "{} bytes given, expected {}", data.size(),
                     kHandshakeSize);
    if (static_cast<unsigned char>(data[0]) != kProtocol.size())
        throw_errorf(Errc::PROTO, "wire", "handshake", "protocol name length {}, expected {}",
                     static_cast<unsigned char>(data[0]), kProtocol.size());
    if (data.substr(1, kProtocol.size()) != kProtocol)
        throw_errorf(Errc::PROTO, "wire", "handshake", "protocol name is not '{}'", kProtocol);
    Handshake h;
    const auto *p = reinterpret_cast<const std::uint8_t *>(data.data());
    h.extensions = (p[20 + 5] & kExtensionBit) != 0;
    h.fast = (p[20 + 7] & kFastBit) != 0;
    std::memcpy(h.info_hash.data(), p + 28, h.info_hash.size());
    std::memcpy(h.peer_id.data(), p + 48, h.peer_id.size());
    return h;
}

// ---- messages ----

const char *to_string(MsgType t) noexcept
{
    switch (t) {
    case MsgType::Choke: return "choke";
    case MsgType::Unchoke: return "unchoke";
    case MsgType::Interested: return "interested";
    case MsgType::NotInterested: return "not-interested";
    case MsgType::Have: return "have";
    case MsgType::Bitfield: return "bitfield";
    case MsgType::Request: return "request";
    case MsgType::Piece: return "piece";
    case MsgType::Cancel: return "cancel";
    case MsgType::Port: return "port";
    case MsgType::Suggest: return "suggest";
    case MsgType::HaveAll: return "have-all";
    case MsgType::HaveNone: return "have-none";
    case MsgType::Reject: return "reject";
    case MsgType::AllowedFast: return "allowed-fast";
    case MsgType::Extended: return "extended";
    case MsgType::KeepAlive: return "keep-alive";
    }
    return "unknown";
}

std::size_t decode_message(std::string_view buf, Message &out, std::uint32_t max_length)
{
    if (buf.size() < 4)
        return 0;
    const std::uint32_t length = get32(buf, 0);
    if (length > max_length)
        throw_errorf(Errc::PROTO, "wire", "decode", "message length {} exceeds the limit of {}",
                     length, max_length);
    if (length == 0) {
        out = Message{};
        return 4;
    }
    if (buf.size() < 5)
        return 0;
    const auto id = static_cast<std::uint8_t>(buf[4]);
    check_header(id, length);
    if (buf.size() - 4 < length)
        return 0;
    out = Message{};
    parse_body(buf.substr(5, length - 1), static_cast<MsgType>(id), out);
    return 4 + std::size_t{length};
}

void encode_to(std::string &out, const Message &m)
{
    if (m.type == MsgType::KeepAlive) {
        put32(out, 0);
        return;
    }
    if (!known_id(static_cast<std::uint8_t>(m.type)))
        throw_errorf(Errc::INVAL, "wire", "encode", "message type {} is not a wire message",
                     static_cast<unsigned>(m.type));
    const Shape s = shape_of(m.type);
    if (!s.fixed && m.payload.size() > std::numeric_limits<std::uint32_t>::max() - s.length)
        throw_errorf(Errc::INVAL, "wire", "encode", "{} payload of {} bytes is too large",
                     to_string(m.type), m.payload.size());
    const auto length = static_cast<std::uint32_t>(s.fixed ? s.length : s.length + m.payload.size());
    switch (m.type) {
    case MsgType::Piece:
        encode_piece_header(out, m.index, m.begin, static_cast<std::uint32_t>(m.payload.size()));
        break;
    case MsgType::Extended:
        put_header(out, length, m.type);
        out.push_back(static_cast<char>(m.ext_id));
        break;
    case MsgType::Port:
        put_header(out, length, m.type);
        out.push_back(static_cast<char>(m.port >> 8));
        out.push_back(static_cast<char>(m.port & 0xff));
        break;
    default:
        put_header(out, length, m.type);
        if (s.length >= 5)
            put32(out, m.index);
        if (s.length >= 13) {
            put32(out, m.begin);
            put32(out, m.length);
        }
        break;
    }
    if (!s.fixed)
        out += m.payload;
}

void encode_piece_header(std::string &out, std::uint32_t index, std::uint32_t begin,
                         std::uint32_t length)
{
    put_header(out, 9 + length, MsgType::Piece);
    put32(out, index);
    put32(out, begin);
}

// ---- extension handshake ----

std::string encode_ext_handshake(const ExtHandshake &h)
{
    bencode::Value m{bencode::Dict{}};
    for (const auto &[name, id] : h.m)
        m.set(name, bencode::Value(id));
    bencode::Value d{bencode::Dict{}};
    d.set("m", std::move(m));
    if (h.metadata_size >= 0)
        d.set("metadata_size", bencode::Value(h.metadata_size));
    if (!h.client.empty())
        d.set("v", bencode::Value(h.client));
    if (h.listen_port != 0)
        d.set("p", bencode::Value(std::int64_t{h.listen_port}));
    if (h.reqq != 0)
        d.set("reqq", bencode::Value(h.reqq));
    if (!h.yourip.empty())
        d.set("yourip", bencode::Value(h.yourip));
    if (h.oa_tls)
        d.set("oa_tls", bencode::Value(1));
    if (h.live_window >= 0)
        d.set("oa_live_window", bencode::Value(h.live_window));
    if (h.live_newest >= 0)
        d.set("oa_live_newest", bencode::Value(h.live_newest));
    if (h.live_desc_size >= 0)
        d.set("oa_live_desc", bencode::Value(h.live_desc_size));
    return bencode::encode(d);
}

ExtHandshake decode_ext_handshake(std::string_view payload)
{
    if (payload.size() > kMaxExtHandshakeSize)
        throw_errorf(Errc::PROTO, "wire", "ext-handshake", "{} bytes exceed the limit of {}",
                     payload.size(), kMaxExtHandshakeSize);
    const bencode::Value d = decode_dict(payload, "ext-handshake", kMaxExtHandshakeSize);
    ExtHandshake h;
    if (const bencode::Value *m = d.find("m"); m && m->is_dict()) {
        for (const auto &[name, id] : m->as_dict()) {
            if (!id.is_int())
                continue;
            if (id.as_int() < 0 || id.as_int() > 255)
                throw_errorf(Errc::PROTO, "wire", "ext-handshake",
                             "field 'm.{}': id {} outside 0..255", name, id.as_int());
            h.m[name] = static_cast<int>(id.as_int());
        }
    }
    h.metadata_size = int_or(d, "metadata_size", 1, kMaxMetadataSize, -1);
    if (const std::string *v = find_string(d, "v"))
        h.client = *v;
    h.listen_port = static_cast<std::uint16_t>(int_or(d, "p", 1, 65535, 0));
    h.reqq = static_cast<int>(int_or(d, "reqq", 1, std::numeric_limits<int>::max(), 0));
    if (const std::string *ip = find_string(d, "yourip"); ip && (ip->size() == 4 || ip->size() == 16))
        h.yourip = *ip;
    h.oa_tls = int_or(d, "oa_tls", 1, 1, 0) == 1;
    constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
    h.live_window = int_or(d, "oa_live_window", 1, kInt64Max, -1);
    h.live_newest = int_or(d, "oa_live_newest", 0, kInt64Max, -1);
    h.live_desc_size = int_or(d, "oa_live_desc", 1, static_cast<std::int64_t>(live::kMaxDescriptorBytes), -1);
    return h;
}

// ---- ut_metadata ----

std::string encode_metadata_msg(const MetadataMsg &m)
{
    bencode::Value d{bencode::Dict{}};
    d.set("msg_type", bencode::Value(m.msg_type));
    d.set("piece", bencode::Value(std::int64_t{m.piece}));
    if (m.msg_type == 1)
        d.set("total_size", bencode::Value(m.total_size));
    std::string out = bencode::encode(d);
    if (m.msg_type == 1)
        out += m.data;
    return out;
}

MetadataMsg decode_metadata_msg(std::string_view payload)
{
    const std::size_t end = value_end(payload);
    const bencode::Value d = decode_dict(payload.substr(0, end), "metadata", end);
    MetadataMsg m;
    const bencode::Value *type = find_int(d, "msg_type");
    if (!type || type->as_int() < 0 || type->as_int() > 2)
        bad_metadata("field 'msg_type': missing or not 0, 1 or 2");
    m.msg_type = static_cast<int>(type->as_int());
    const bencode::Value *piece = find_int(d, "piece");
    if (!piece || piece->as_int() < 0 || static_cast<std::uint64_t>(piece->as_int()) >= kMaxMetadataPieces)
        bad_metadata("field 'piece': missing or outside 0..{}", kMaxMetadataPieces - 1);
    m.piece = static_cast<std::uint32_t>(piece->as_int());
    if (m.msg_type != 1)
        return m;
    m.total_size = int_or(d, "total_size", 1, kMaxMetadataSize, -1);
    if (m.total_size < 0)
        bad_metadata("field 'total_size': missing or outside 1..{}", kMaxMetadataSize);
    if (std::int64_t{m.piece} * std::int64_t{kMetadataPieceSize} >= m.total_size)
        bad_metadata("piece {} is beyond total_size {}", m.piece, m.total_size);
    m.data = payload.substr(end);
    if (m.data.size() > kMetadataPieceSize)
        bad_metadata("{} data bytes exceed the piece size {}", m.data.size(), kMetadataPieceSize);
    return m;
}

// ---- ut_pex ----

std::string encode_pex(const PexMsg &m)
{
    std::string added, added_f, added6, added6_f;
    for (std::size_t i = 0; i < m.added.size(); ++i) {
        const PeerAddress &p = m.added[i];
        const std::uint8_t flag = i < m.added_flags.size() ? m.added_flags[i] : 0;
        if (p.ip.find(':') == std::string::npos)
            append_peer(added, added_f, p, flag, false);
        else
            append_peer(added6, added6_f, p, flag, true);
    }
    bencode::Value d{bencode::Dict{
        {"added", bencode::Value(added)},
        {"added.f", bencode::Value(added_f)},
        {"added6", bencode::Value(added6)},
        {"added6.f", bencode::Value(added6_f)},
        {"dropped", bencode::Value(encode_compact_peers(m.dropped, false))},
        {"dropped6", bencode::Value(encode_compact_peers(m.dropped, true))},
    }};
    return bencode::encode(d);
}

PexMsg decode_pex(std::string_view payload)
{
    const bencode::Value d = decode_dict(payload, "pex", kMaxMessageLength);
    PexMsg m;
    take_peers(d, "added", false, m.added, &m.added_flags);
    take_peers(d, "added6", true, m.added, &m.added_flags);
    take_peers(d, "dropped", false, m.dropped, nullptr);
    take_peers(d, "dropped6", true, m.dropped, nullptr);
    return m;
}

// ---- allowed fast ----

std::vector<std::uint32_t> allowed_fast_set(const InfoHash &ih, std::uint32_t ipv4,
                                            std::uint32_t num_pieces, int k)
{
    std::vector<std::uint32_t> out;
    if (num_pieces == 0 || k <= 0)
        return out;
    const std::size_t want = std::min<std::size_t>(static_cast<std::size_t>(k), num_pieces);
    std::string x;
    put32(x, ipv4 & 0xffffff00u);
    x.append(reinterpret_cast<const char *>(ih.data()), ih.size());
    std::unordered_set<std::uint32_t> seen;
    while (out.size() < want) {
        const InfoHash h = sha1(x);
        x.assign(reinterpret_cast<const char *>(h.data()), h.size());
        for (std::size_t j = 0; j < 20 && out.size() < want; j += 4) {
            const std::uint32_t index = get32(x, j) % num_pieces;
            if (seen.insert(index).second)
                out.push_back(index);
        }
    }
    return out;
}

} // namespace openace::transport::wire
