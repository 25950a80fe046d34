#include "live/live_piece.hpp"

#include "core/error.hpp"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#include <array>
#include <mutex>

namespace openace::live {

namespace {

constexpr std::size_t kHeaderBytes = 8 + 8 + 2;
using Digest = std::array<unsigned char, 32>;

std::string mbed_error(int rc)
{
    char text[160];
    mbedtls_strerror(rc, text, sizeof text);
    return fmt::format("{} (-0x{:04x})", text, -rc);
}

[[noreturn]] void key_error(const std::string &why)
{
    throw_error(Errc::INVAL, "live", "key", why);
}

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
Digest signed_digest(const ContentId &id, const LivePiece &p)
{
    unsigned char msg[20 + 8 + 8 + 32];
    std::copy(id.begin(), id.end(), msg);
    put_be64(msg + 20, p.sequence);
    put_be64(msg + 28, static_cast<std::uint64_t>(p.timestamp_ms));
    mbedtls_sha256_ret(reinterpret_cast<const unsigned char *>(p.data.data()), p.data.size(), msg + 36, 0);
    Digest d;
    mbedtls_sha256_ret(msg, sizeof msg, d.data(), 0);
    return d;
}

bool is_p256(mbedtls_pk_context &pk)
{
    return mbedtls_pk_get_type(&pk) == MBEDTLS_PK_ECKEY && mbedtls_pk_ec(pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
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

} // namespace

struct LiveSigner::Impl {
    ContentId id;
    mutable std::mutex mu; // guards pk (lazy curve tables) and the generator
    mbedtls_pk_context pk;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;

    explicit Impl(const ContentId &cid) : id(cid)
    {
        mbedtls_pk_init(&pk);
        mbedtls_entropy_init(&entropy);
        mbedtls_ctr_drbg_init(&drbg);
    }
    ~Impl()
    {
        mbedtls_ctr_drbg_free(&drbg);
        mbedtls_entropy_free(&entropy);
        mbedtls_pk_free(&pk);
    }
    Impl(const Impl &) = delete;
    Impl &operator=(const Impl &) = delete;
};

LiveSigner::LiveSigner(const std::string &key_pem, const ContentId &id) : impl_(std::make_unique<Impl>(id))
{
    auto *bytes = reinterpret_cast<const unsigned char *>(key_pem.c_str());
    if (key_pem.find("-----BEGIN") == std::string::npos)
        key_error("not a PEM private key");
    if (int rc = mbedtls_pk_parse_key(&impl_->pk, bytes, key_pem.size() + 1, nullptr, 0))
        key_error("unreadable private key: " + mbed_error(rc));
    if (!is_p256(impl_->pk))
        key_error("not an ECDSA P-256 private key");
    static constexpr unsigned char pers[] = "openace-live-signer";
    if (int rc = mbedtls_ctr_drbg_seed(&impl_->drbg, mbedtls_entropy_func, &impl_->entropy, pers, sizeof pers - 1))
        key_error("no entropy for signing: " + mbed_error(rc));
}

LiveSigner::~LiveSigner() = default;
LiveSigner::LiveSigner(LiveSigner &&) noexcept = default;
LiveSigner &LiveSigner::operator=(LiveSigner &&) noexcept = default;

void LiveSigner::sign(LivePiece &piece) const
{
    const Digest digest = signed_digest(impl_->id, piece);
    unsigned char sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
    std::size_t len = 0;
    std::lock_guard lock(impl_->mu);
    if (int rc = mbedtls_pk_sign(&impl_->pk, MBEDTLS_MD_SHA256, digest.data(), digest.size(), sig, &len,
                                 mbedtls_ctr_drbg_random, &impl_->drbg))
        throw_error(Errc::INTERNAL, "live", "sign", mbed_error(rc));
    piece.signature.assign(reinterpret_cast<const char *>(sig), len);
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
    mutable std::mutex mu; // guards pk: its curve tables are filled in lazily
    mbedtls_pk_context pk;

    explicit Impl(const ContentId &cid) : id(cid) { mbedtls_pk_init(&pk); }
    ~Impl() { mbedtls_pk_free(&pk); }
    Impl(const Impl &) = delete;
    Impl &operator=(const Impl &) = delete;
};

LiveVerifier::LiveVerifier(const LiveDescriptor &d) : impl_(std::make_unique<Impl>(d.content_id()))
{
    auto *bytes = reinterpret_cast<const unsigned char *>(d.public_key_der.data());
    if (int rc = mbedtls_pk_parse_public_key(&impl_->pk, bytes, d.public_key_der.size()))
        key_error("unreadable public key: " + mbed_error(rc));
    if (!is_p256(impl_->pk))
        key_error("not an ECDSA P-256 public key");
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
    if (p.signature.empty() || p.signature.size() > kMaxSignature || p.data.size() > kMaxPieceData)
        return Verdict::Malformed;
    const std::uint64_t seq_gap = p.sequence > newest ? p.sequence - newest : newest - p.sequence;
    if (seq_gap > window_pieces)
        return Verdict::OutsideWindow;
    const std::uint64_t window = window_ms > 0 ? static_cast<std::uint64_t>(window_ms) : 0;
    if (further_than(p.timestamp_ms, now_ms, window))
        return p.timestamp_ms < now_ms ? Verdict::TooOld : Verdict::OutsideWindow;
    const Digest digest = signed_digest(impl_->id, p);
    std::lock_guard lock(impl_->mu);
    int rc = mbedtls_pk_verify(&impl_->pk, MBEDTLS_MD_SHA256, digest.data(), digest.size(),
                               reinterpret_cast<const unsigned char *>(p.signature.data()), p.signature.size());
    return rc == 0 ? Verdict::Ok : Verdict::BadSignature;
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
