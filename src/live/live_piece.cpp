#include "live/live_piece.hpp"

#include "core/error.hpp"

#include "live/ecdsa.hpp"

#include <mbedtls/sha256.h>

#include <array>

namespace openace::live {

namespace {

constexpr std::size_t kHeaderBytes = 8 + 8 + 2;
using Digest = Sha256;

[[noreturn]] void piece_error(const std::string &why)
{
    throw_error(Errc::PROTO, "live", "piece", why);
}

void put_be64(unsigned char *out, std::uint64_t v)
{
    for (int i = 7; i >= 0; --i, v >>= 8)
        out[i] = static_cast<unsigned char>(v & 0xff);
}

std::uint64_t get_be(std::string_view in, std::size_t at, std::size_t n)
{
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i)
        v = (v << 8) | static_cast<unsigned char>(in[at + i]);
    return v;
}

// The digest ECDSA signs: SHA-256(id || seq BE || ts BE || SHA-256(data)).
// Pieces and heads both go through here, a piece with the hash of its data.
Digest signed_digest(const ContentId &id, std::uint64_t sequence, std::int64_t timestamp_ms,
                     const Digest &data_sha256)
{
    unsigned char msg[20 + 8 + 8 + 32];
    std::copy(id.begin(), id.end(), msg);
    put_be64(msg + 20, sequence);
    put_be64(msg + 28, static_cast<std::uint64_t>(timestamp_ms));
    std::copy(data_sha256.begin(), data_sha256.end(), msg + 36);
    Digest d;
    mbedtls_sha256_ret(msg, sizeof msg, d.data(), 0);
    return d;
}

void check_limits(const LivePiece &p)
{
    if (p.signature.empty() || p.signature.size() > kMaxSignature)
        piece_error(fmt::format("signature of {} bytes, expected 1..{}", p.signature.size(), kMaxSignature));
    if (p.data.size() > kMaxPieceData)
        piece_error(fmt::format("data of {} bytes, over the {} byte limit", p.data.size(), kMaxPieceData));
}

// |a - b| > limit, without overflow.
bool further_than(std::int64_t a, std::int64_t b, std::uint64_t limit)
{
    std::uint64_t diff = a > b ? static_cast<std::uint64_t>(a) - static_cast<std::uint64_t>(b)
                               : static_cast<std::uint64_t>(b) - static_cast<std::uint64_t>(a);
    return diff > limit;
}

// Verification steps 1 to 3 (docs/protocol.md §2), everything but the
// signature itself: Ok when the signature is worth checking.
Verdict cheap_checks(std::uint64_t sequence, std::int64_t timestamp_ms, std::string_view signature,
                     std::uint64_t newest, std::uint64_t window_pieces, std::int64_t now_ms, std::int64_t window_ms)
{
    if (signature.empty() || signature.size() > kMaxSignature)
        return Verdict::Malformed;
    const std::uint64_t seq_gap = sequence > newest ? sequence - newest : newest - sequence;
    if (seq_gap > window_pieces)
        return Verdict::OutsideWindow;
    const std::uint64_t window = window_ms > 0 ? static_cast<std::uint64_t>(window_ms) : 0;
    if (further_than(timestamp_ms, now_ms, window))
        return timestamp_ms < now_ms ? Verdict::TooOld : Verdict::OutsideWindow;
    return Verdict::Ok;
}

} // namespace

struct LiveSigner::Impl {
    ContentId id;
    EcdsaSigner key;
};

LiveSigner::LiveSigner(const std::string &key_pem, const ContentId &id)
    : impl_(std::make_unique<Impl>(Impl{id, EcdsaSigner(key_pem, "key")}))
{
}

LiveSigner::~LiveSigner() = default;
LiveSigner::LiveSigner(LiveSigner &&) noexcept = default;
LiveSigner &LiveSigner::operator=(LiveSigner &&) noexcept = default;

void LiveSigner::sign(LivePiece &piece) const
{
    piece.signature =
        impl_->key.sign(signed_digest(impl_->id, piece.sequence, piece.timestamp_ms, sha256(piece.data)));
}

const char *to_string(Verdict v) noexcept
{
    switch (v) {
    case Verdict::Ok:
        return "ok";
    case Verdict::BadSignature:
        return "bad signature";
    case Verdict::OutsideWindow:
        return "outside window";
    case Verdict::TooOld:
        return "too old";
    case Verdict::Malformed:
        return "malformed";
    }
    return "unknown";
}

struct LiveVerifier::Impl {
    ContentId id;
    EcdsaVerifier key;

    // Step 4: the signature over (id, sequence, timestamp, data hash).
    Verdict check_signature(std::uint64_t sequence, std::int64_t timestamp_ms, const Digest &data_sha256,
                            std::string_view signature) const
    {
        return key.verify(signed_digest(id, sequence, timestamp_ms, data_sha256), signature) ? Verdict::Ok
                                                                                                 : Verdict::BadSignature;
    }
};

LiveVerifier::LiveVerifier(const LiveDescriptor &d)
    : impl_(std::make_unique<Impl>(Impl{d.content_id(), EcdsaVerifier(d.public_key_der)}))
{
}

LiveVerifier::~LiveVerifier() = default;
LiveVerifier::LiveVerifier(LiveVerifier &&) noexcept = default;
LiveVerifier &LiveVerifier::operator=(LiveVerifier &&) noexcept = default;

const ContentId &LiveVerifier::content_id() const noexcept
{
    return impl_->id;
}

Verdict LiveVerifier::verify(const LivePiece &p, std::uint64_t newest, std::uint64_t window_pieces,
                             std::int64_t now_ms, std::int64_t window_ms) const
{
    if (p.data.size() > kMaxPieceData)
        return Verdict::Malformed;
    const Verdict v = cheap_checks(p.sequence, p.timestamp_ms, p.signature, newest, window_pieces, now_ms, window_ms);
    if (v != Verdict::Ok)
        return v;
    return impl_->check_signature(p.sequence, p.timestamp_ms, sha256(p.data), p.signature);
}

Verdict LiveVerifier::verify_head(std::uint64_t sequence, std::int64_t timestamp_ms,
                                  const std::array<std::uint8_t, 32> &data_sha256, std::string_view signature,
                                  std::uint64_t newest, std::uint64_t window_pieces, std::int64_t now_ms,
                                  std::int64_t window_ms) const
{
    const Verdict v = cheap_checks(sequence, timestamp_ms, signature, newest, window_pieces, now_ms, window_ms);
    if (v != Verdict::Ok)
        return v;
    return impl_->check_signature(sequence, timestamp_ms, data_sha256, signature);
}

std::string encode_piece(const LivePiece &p)
{
    check_limits(p);
    std::string out(kHeaderBytes, '\0');
    auto *h = reinterpret_cast<unsigned char *>(out.data());
    put_be64(h, p.sequence);
    put_be64(h + 8, static_cast<std::uint64_t>(p.timestamp_ms));
    h[16] = static_cast<unsigned char>(p.signature.size() >> 8);
    h[17] = static_cast<unsigned char>(p.signature.size() & 0xff);
    out.reserve(kHeaderBytes + p.signature.size() + p.data.size());
    out += p.signature;
    out += p.data;
    return out;
}

LivePiece decode_piece(std::string_view bytes)
{
    if (bytes.size() < kHeaderBytes)
        piece_error(fmt::format("{} bytes, shorter than the {} byte header", bytes.size(), kHeaderBytes));
    const std::size_t sig_len = get_be(bytes, 16, 2);
    if (sig_len == 0 || sig_len > kMaxSignature)
        piece_error(fmt::format("signature of {} bytes, expected 1..{}", sig_len, kMaxSignature));
    if (bytes.size() < kHeaderBytes + sig_len)
        piece_error(fmt::format("{} bytes, shorter than header and {} byte signature", bytes.size(), sig_len));
    if (bytes.size() - kHeaderBytes - sig_len > kMaxPieceData)
        piece_error(fmt::format("data of {} bytes, over the {} byte limit", bytes.size() - kHeaderBytes - sig_len,
                                kMaxPieceData));
    LivePiece p;
    p.sequence = get_be(bytes, 0, 8);
    p.timestamp_ms = static_cast<std::int64_t>(get_be(bytes, 8, 8));
    p.signature = bytes.substr(kHeaderBytes, sig_len);
    p.data = bytes.substr(kHeaderBytes + sig_len);
    return p;
}

} // namespace openace::live
