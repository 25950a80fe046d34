#include "live/live_chat.hpp"

#include "core/error.hpp"
#include "core/sha1.hpp"

#include "live/ecdsa.hpp"

#include <mbedtls/sha256.h>

#include <limits>

namespace openace::live {

namespace wire = transport::wire;

namespace {

using Digest = std::array<std::uint8_t, 32>;
constexpr std::string_view kChatDomain = "oa_live chat";

[[noreturn]] void chat_error(const std::string &why)
{
    throw_error(Errc::INVAL, "live", "chat", why);
}

void sha256_update(mbedtls_sha256_context &ctx, std::string_view bytes)
{
    mbedtls_sha256_update_ret(&ctx, reinterpret_cast<const unsigned char *>(bytes.data()), bytes.size());
}

// SHA-256("oa_live chat" || id || timestamp BE || text): what the key signs.
Digest chat_digest(const ContentId &id, std::int64_t timestamp_ms, std::string_view text) noexcept
{
    unsigned char ts[8];
    auto v = static_cast<std::uint64_t>(timestamp_ms);
    for (int i = 7; i >= 0; --i, v >>= 8)
        ts[i] = static_cast<unsigned char>(v & 0xff);
    mbedtls_sha256_context ctx;
    mbedtls_sha256_init(&ctx);
    mbedtls_sha256_starts_ret(&ctx, 0);
    sha256_update(ctx, kChatDomain);
    mbedtls_sha256_update_ret(&ctx, id.data(), id.size());
    mbedtls_sha256_update_ret(&ctx, ts, sizeof ts);
    sha256_update(ctx, text);
    Digest d;
    mbedtls_sha256_finish_ret(&ctx, d.data());
    mbedtls_sha256_free(&ctx);
    return d;
}

// The text sign and verify accept: 1..512 bytes of UTF-8.
bool text_ok(std::string_view text) noexcept
{
    return !text.empty() && text.size() <= wire::kMaxChatText && wire::valid_utf8(text);
}

// a + b, clamped to the int64 range (now_ms comes from the caller).
std::int64_t saturating_add(std::int64_t a, std::int64_t b) noexcept
{
    std::int64_t r;
    if (!__builtin_add_overflow(a, b, &r))
        return r;
    return b < 0 ? std::numeric_limits<std::int64_t>::min() : std::numeric_limits<std::int64_t>::max();
}

} // namespace

struct ChatSigner::Impl {
    EcdsaSigner key;
};

ChatSigner::ChatSigner(const std::string &key_pem) : impl_(std::make_unique<Impl>(Impl{EcdsaSigner(key_pem, "chat")}))
{
}

ChatSigner::~ChatSigner() = default;
ChatSigner::ChatSigner(ChatSigner &&) noexcept = default;
ChatSigner &ChatSigner::operator=(ChatSigner &&) noexcept = default;

const std::string &ChatSigner::public_key_der() const noexcept
{
    return impl_->key.public_key_der();
}

wire::LiveChat ChatSigner::sign(const ContentId &id, std::int64_t timestamp_ms, std::string_view text) const
{
    if (!text_ok(text))
        chat_error(fmt::format("text of {} bytes: expected 1..{} bytes of UTF-8", text.size(), wire::kMaxChatText));
    wire::LiveChat c;
    c.public_key_der = impl_->key.public_key_der();
    c.timestamp_ms = timestamp_ms;
    c.text = text;
    c.signature = impl_->key.sign(chat_digest(id, timestamp_ms, text));
    return c;
}

wire::LiveChat sign_chat(const std::string &key_pem, const ContentId &id, std::int64_t timestamp_ms,
                         std::string_view text)
{
    return ChatSigner(key_pem).sign(id, timestamp_ms, text);
}

bool verify_chat(const wire::LiveChat &c, const ContentId &id) noexcept
{
    if (c.public_key_der.empty() || c.public_key_der.size() > wire::kMaxChatKey || !text_ok(c.text) ||
        c.signature.empty() || c.signature.size() > kMaxSignature)
        return false;
    try {
        return EcdsaVerifier(c.public_key_der).verify(chat_digest(id, c.timestamp_ms, c.text), c.signature);
    } catch (const Error &) {
        return false; // not a P-256 key
    }
}

const char *to_string(ChatVerdict v) noexcept
{
    switch (v) {
    case ChatVerdict::New:
        return "new";
    case ChatVerdict::Duplicate:
        return "duplicate";
    case ChatVerdict::TooOld:
        return "too old";
    case ChatVerdict::TooLong:
        return "too long";
    case ChatVerdict::RateLimited:
        return "rate limited";
    case ChatVerdict::BadSignature:
        return "bad signature";
    }
    return "unknown";
}

ChatVerdict ChatLog::add(const wire::LiveChat &c, const ContentId &id, std::int64_t now_ms)
{
    expire(now_ms);
    if (c.text.size() > wire::kMaxChatText)
        return ChatVerdict::TooLong;
    if (c.timestamp_ms < saturating_add(now_ms, -kChatHistoryMs) ||
        c.timestamp_ms > saturating_add(now_ms, kChatMaxAheadMs))
        return ChatVerdict::TooOld;
    std::string encoded;
    try {
        encoded = wire::encode_live_chat(c);
    } catch (const Error &) {
        return ChatVerdict::BadSignature; // malformed: no message a peer could have signed and sent
    }
    // The line without its signature: ECDSA signatures are malleable (and
    // randomised), so the signature must not make a seen line look new.
    const std::size_t unsigned_size = encoded.size() - 2 - c.signature.size();
    Digest digest;
    mbedtls_sha256_ret(reinterpret_cast<const unsigned char *>(encoded.data()), unsigned_size, digest.data(), 0);
    if (lines_.count(Key{c.timestamp_ms, digest}))
        return ChatVerdict::Duplicate;
    if (rate_limited(c.public_key_der))
        return ChatVerdict::RateLimited;
    if (!verify_chat(c, id))
        return ChatVerdict::BadSignature;
    admit(c, digest, now_ms);
    return ChatVerdict::New;
}

std::vector<wire::LiveChat> ChatLog::history() const
{
    std::vector<wire::LiveChat> out;
    out.reserve(lines_.size());
    for (const auto &[key, line] : lines_)
        out.push_back(line);
    return out;
}

void ChatLog::expire(std::int64_t now_ms)
{
    const std::int64_t oldest = saturating_add(now_ms, -kChatHistoryMs);
    while (!lines_.empty() && lines_.begin()->first.timestamp_ms < oldest)
        lines_.erase(lines_.begin());
    const std::int64_t rate_start = saturating_add(now_ms, -kChatRateWindowMs);
    while (!arrivals_.empty() && arrivals_.front().first <= rate_start) {
        auto it = recent_.find(arrivals_.front().second);
        if (--it->second == 0)
            recent_.erase(it);
        arrivals_.pop_front();
    }
}

bool ChatLog::rate_limited(const std::string &key_der) const
{
    auto it = recent_.find(key_der);
    return it != recent_.end() && it->second >= kChatRateLimit;
}

void ChatLog::admit(const wire::LiveChat &c, const Digest &digest, std::int64_t now_ms)
{
    lines_.emplace(Key{c.timestamp_ms, digest}, c);
    if (lines_.size() > max_lines_)
        lines_.erase(lines_.begin());
    arrivals_.emplace_back(now_ms, c.public_key_der);
    ++recent_[c.public_key_der];
}

nlohmann::json chat_line_json(const transport::wire::LiveChat &c)
{
    return {{"from", to_hex(core::Sha1::hash(c.public_key_der)).substr(0, 16)},
            {"timestamp_ms", c.timestamp_ms},
            {"text", c.text}};
}

} // namespace openace::live
