#include "transport/live_wire.hpp"

#include "core/error.hpp"

namespace openace::transport::wire {

namespace {

constexpr std::size_t kHeadFixed = 8 + 8 + 32 + 2; // before the signature
constexpr std::size_t kRangeBytes = 16;

template <class... Args>
[[noreturn]] void malformed(LiveMsg::Type t, fmt::format_string<Args...> f, Args &&...args)
{
    throw_errorf(Errc::PROTO, "wire", "oa_live", "{}: {}", to_string(t), fmt::format(f, std::forward<Args>(args)...));
}

template <class... Args>
[[noreturn]] void invalid(LiveMsg::Type t, fmt::format_string<Args...> f, Args &&...args)
{
    throw_errorf(Errc::INVAL, "wire", "oa_live", "{}: {}", to_string(t), fmt::format(f, std::forward<Args>(args)...));
}

// ---- writing ----

void put_be(std::string &out, std::uint64_t v, int bytes)
{
    for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8)
        out.push_back(static_cast<char>((v >> shift) & 0xff));
}

std::string start(LiveMsg::Type t, std::size_t body)
{
    std::string out;
    out.reserve(1 + body);
    out.push_back(static_cast<char>(t));
    return out;
}

// A length-prefixed field (u16 length, bytes), its length checked against lo..hi.
void put_field(std::string &out, LiveMsg::Type t, const char *what, std::string_view v, std::size_t lo,
               std::size_t hi)
{
    if (v.size() < lo || v.size() > hi)
        invalid(t, "{} of {} bytes, expected {}..{}", what, v.size(), lo, hi);
    put_be(out, v.size(), 2);
    out += v;
}

void check_ranges(const std::vector<SeqRange> &ranges, void (*fail)(const std::string &))
{
    if (ranges.empty() || ranges.size() > kMaxLiveRanges)
        fail(fmt::format("{} ranges, expected 1..{}", ranges.size(), kMaxLiveRanges));
    for (std::size_t i = 0; i < ranges.size(); ++i) {
        if (ranges[i].first > ranges[i].second)
            fail(fmt::format("range {} runs backwards ({} > {})", i, ranges[i].first, ranges[i].second));
        if (i > 0 && ranges[i].first <= ranges[i - 1].second)
            fail(fmt::format("range {} (from {}) does not follow range {} (to {})", i, ranges[i].first, i - 1,
                             ranges[i - 1].second));
    }
}

// ---- reading ----

// A bounds-checked cursor over one message body; every shortfall throws
// naming the message type and the field.
class Reader {
public:
    Reader(LiveMsg::Type t, std::string_view body) : type_(t), body_(body) {}

    std::uint64_t be(int bytes, const char *what)
    {
        need(static_cast<std::size_t>(bytes), what);
        std::uint64_t v = 0;
        for (int i = 0; i < bytes; ++i)
            v = (v << 8) | static_cast<unsigned char>(body_[pos_++]);
        return v;
    }

    std::string_view bytes(std::size_t n, const char *what)
    {
        need(n, what);
        std::string_view v = body_.substr(pos_, n);
        pos_ += n;
        return v;
    }

    // u16 length in lo..hi, then that many bytes.
    std::string_view field(const char *what, std::size_t lo, std::size_t hi)
    {
        const std::size_t n = be(2, what);
        if (n < lo || n > hi)
            malformed(type_, "{} of {} bytes, expected {}..{}", what, n, lo, hi);
        return bytes(n, what);
    }

    void finish() const
    {
        if (pos_ != body_.size())
            malformed(type_, "{} bytes after the end of the message", body_.size() - pos_);
    }

private:
    void need(std::size_t n, const char *what) const
    {
        if (body_.size() - pos_ < n)
            malformed(type_, "body of {} bytes ends inside the {}", body_.size(), what);
    }

    LiveMsg::Type type_;
    std::string_view body_;
    std::size_t pos_ = 0;
};

void decode_head(Reader &r, LiveHead &h)
{
    h.sequence = r.be(8, "sequence");
    h.timestamp_ms = static_cast<std::int64_t>(r.be(8, "timestamp"));
    const std::string_view hash = r.bytes(h.data_sha256.size(), "data hash");
    std::copy(hash.begin(), hash.end(), h.data_sha256.begin());
    h.signature = r.field("signature", 1, live::kMaxSignature);
    r.finish();
}

void decode_have(Reader &r, std::string_view body, std::vector<SeqRange> &ranges)
{
    const std::size_t count = r.be(2, "count");
    if (count == 0 || count > kMaxLiveRanges)
        malformed(LiveMsg::Have, "{} ranges, expected 1..{}", count, kMaxLiveRanges);
    if (body.size() != 2 + count * kRangeBytes)
        malformed(LiveMsg::Have, "body of {} bytes for {} ranges, expected {}", body.size(), count,
                  2 + count * kRangeBytes);
    ranges.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        const std::uint64_t first = r.be(8, "range");
        ranges.emplace_back(first, r.be(8, "range"));
    }
    check_ranges(ranges, [](const std::string &why) { malformed(LiveMsg::Have, "{}", why); });
}

void decode_piece_body(std::string_view body, live::LivePiece &p)
{
    try {
        p = live::decode_piece(body);
    } catch (const Error &e) {
        malformed(LiveMsg::Piece, "{}", e.detail());
    }
    if (p.data.empty())
        malformed(LiveMsg::Piece, "no data");
}

void decode_chat(Reader &r, LiveChat &c)
{
    c.public_key_der = r.field("key", 1, kMaxChatKey);
    c.timestamp_ms = static_cast<std::int64_t>(r.be(8, "timestamp"));
    c.text = r.field("text", 1, kMaxChatText);
    if (!valid_utf8(c.text))
        malformed(LiveMsg::Chat, "text is not UTF-8");
    c.signature = r.field("signature", 1, live::kMaxSignature);
    r.finish();
}

// Length of the UTF-8 sequence a lead byte starts, 0 for a byte that cannot lead.
int sequence_length(unsigned char lead)
{
    if (lead < 0x80)
        return 1;
    if (lead >= 0xc2 && lead <= 0xdf)
        return 2;
    if (lead >= 0xe0 && lead <= 0xef)
        return 3;
    if (lead >= 0xf0 && lead <= 0xf4)
        return 4;
    return 0;
}

} // namespace

const char *to_string(LiveMsg::Type t) noexcept
{
    switch (t) {
    case LiveMsg::Head:
        return "head";
    case LiveMsg::Have:
        return "have";
    case LiveMsg::Request:
        return "request";
    case LiveMsg::Piece:
        return "piece";
    case LiveMsg::Reject:
        return "reject";
    case LiveMsg::DescRequest:
        return "desc request";
    case LiveMsg::Desc:
        return "desc";
    case LiveMsg::Chat:
        return "chat";
    case LiveMsg::Unknown:
        break;
    }
    return "unknown";
}

bool valid_utf8(std::string_view s) noexcept
{
    for (std::size_t i = 0; i < s.size();) {
        const auto lead = static_cast<unsigned char>(s[i]);
        const int n = sequence_length(lead);
        if (n == 0 || s.size() - i < static_cast<std::size_t>(n))
            return false;
        for (int k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80)
                return false;
        if (n > 2) {
            const auto second = static_cast<unsigned char>(s[i + 1]);
            if ((lead == 0xe0 && second < 0xa0) || (lead == 0xed && second > 0x9f) || // overlong, surrogate
                (lead == 0xf0 && second < 0x90) || (lead == 0xf4 && second > 0x8f))   // overlong, > U+10FFFF
                return false;
        }
        i += static_cast<std::size_t>(n);
    }
    return true;
}

std::string encode_live_head(const LiveHead &h)
{
    std::string out = start(LiveMsg::Head, kHeadFixed + h.signature.size());
    put_be(out, h.sequence, 8);
    put_be(out, static_cast<std::uint64_t>(h.timestamp_ms), 8);
    out.append(reinterpret_cast<const char *>(h.data_sha256.data()), h.data_sha256.size());
    put_field(out, LiveMsg::Head, "signature", h.signature, 1, live::kMaxSignature);
    return out;
}

std::string encode_live_have(const std::vector<SeqRange> &ranges)
{
    check_ranges(ranges, [](const std::string &why) { invalid(LiveMsg::Have, "{}", why); });
    std::string out = start(LiveMsg::Have, 2 + ranges.size() * kRangeBytes);
    put_be(out, ranges.size(), 2);
    for (const auto &[first, last] : ranges) {
        put_be(out, first, 8);
        put_be(out, last, 8);
    }
    return out;
}

std::string encode_live_request(std::uint64_t sequence)
{
    std::string out = start(LiveMsg::Request, 8);
    put_be(out, sequence, 8);
    return out;
}

std::string encode_live_piece(const live::LivePiece &p)
{
    if (p.data.empty())
        invalid(LiveMsg::Piece, "no data");
    std::string body;
    try {
        body = live::encode_piece(p);
    } catch (const Error &e) {
        invalid(LiveMsg::Piece, "{}", e.detail());
    }
    std::string out = start(LiveMsg::Piece, body.size());
    out += body;
    return out;
}

std::string encode_live_reject(std::uint64_t sequence)
{
    std::string out = start(LiveMsg::Reject, 8);
    put_be(out, sequence, 8);
    return out;
}

std::string encode_live_desc_request()
{
    return start(LiveMsg::DescRequest, 0);
}

std::string encode_live_desc(std::string_view descriptor)
{
    if (descriptor.empty() || descriptor.size() > live::kMaxDescriptorBytes)
        invalid(LiveMsg::Desc, "descriptor of {} bytes, expected 1..{}", descriptor.size(), live::kMaxDescriptorBytes);
    std::string out = start(LiveMsg::Desc, descriptor.size());
    out += descriptor;
    return out;
}

std::string encode_live_chat(const LiveChat &c)
{
    if (!valid_utf8(c.text))
        invalid(LiveMsg::Chat, "text is not UTF-8");
    std::string out = start(LiveMsg::Chat, 2 + c.public_key_der.size() + 8 + 2 + c.text.size() + 2 +
                                               c.signature.size());
    put_field(out, LiveMsg::Chat, "key", c.public_key_der, 1, kMaxChatKey);
    put_be(out, static_cast<std::uint64_t>(c.timestamp_ms), 8);
    put_field(out, LiveMsg::Chat, "text", c.text, 1, kMaxChatText);
    put_field(out, LiveMsg::Chat, "signature", c.signature, 1, live::kMaxSignature);
    return out;
}

LiveMsg decode_live(std::string_view payload)
{
    if (payload.empty())
        throw_error(Errc::PROTO, "wire", "oa_live", "empty message: no type byte");
    LiveMsg m;
    const auto type = static_cast<std::uint8_t>(payload[0]);
    if (type > LiveMsg::Chat)
        return m; // Unknown: ignored by the caller
    m.type = static_cast<LiveMsg::Type>(type);
    const std::string_view body = payload.substr(1);
    Reader r(m.type, body);
    switch (m.type) {
    case LiveMsg::Head:
        decode_head(r, m.head);
        break;
    case LiveMsg::Have:
        decode_have(r, body, m.ranges);
        break;
    case LiveMsg::Request:
    case LiveMsg::Reject:
        m.sequence = r.be(8, "sequence");
        r.finish();
        break;
    case LiveMsg::Piece:
        decode_piece_body(body, m.piece);
        break;
    case LiveMsg::DescRequest:
        r.finish();
        break;
    case LiveMsg::Desc:
        if (body.empty() || body.size() > live::kMaxDescriptorBytes)
            malformed(m.type, "descriptor of {} bytes, expected 1..{}", body.size(), live::kMaxDescriptorBytes);
        m.descriptor = body;
        break;
    case LiveMsg::Chat:
        decode_chat(r, m.chat);
        break;
    case LiveMsg::Unknown:
        break;
    }
    return m;
}

} // namespace openace::transport::wire
