#include "live/ecdsa.hpp"

#include "core/error.hpp"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#include <mutex>

namespace openace::live {

namespace {

std::string mbed_error(int rc)
{
    char text[160];
    mbedtls_strerror(rc, text, sizeof text);
    return fmt::format("{} (-0x{:04x})", text, -rc);
}

bool is_p256(mbedtls_pk_context &pk)
{
    return mbedtls_pk_get_type(&pk) == MBEDTLS_PK_ECKEY && mbedtls_pk_ec(pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
}

} // namespace

Sha256 sha256(std::string_view data) noexcept
{
    Sha256 d;
    mbedtls_sha256_ret(reinterpret_cast<const unsigned char *>(data.data()), data.size(), d.data(), 0);
    return d;
}

struct EcdsaSigner::Impl {
    std::string public_key_der;
    mutable std::mutex mu; // guards pk (lazy curve tables) and the generator
    mbedtls_pk_context pk;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;

    Impl()
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

EcdsaSigner::EcdsaSigner(const std::string &key_pem, const char *operation) : impl_(std::make_unique<Impl>())
{
    auto fail = [operation](const std::string &why) { throw_error(Errc::INVAL, "live", operation, why); };
    if (key_pem.find("-----BEGIN") == std::string::npos)
        fail("not a PEM private key");
    auto *bytes = reinterpret_cast<const unsigned char *>(key_pem.c_str());
    if (int rc = mbedtls_pk_parse_key(&impl_->pk, bytes, key_pem.size() + 1, nullptr, 0))
        fail("unreadable private key: " + mbed_error(rc));
    if (!is_p256(impl_->pk))
        fail("not an ECDSA P-256 private key");
    unsigned char buf[512];
    int n = mbedtls_pk_write_pubkey_der(&impl_->pk, buf, sizeof buf);
    if (n <= 0)
        fail("cannot write the public key: " + mbed_error(n));
    impl_->public_key_der.assign(reinterpret_cast<const char *>(buf + sizeof buf - n), static_cast<std::size_t>(n));
    static constexpr unsigned char pers[] = "openace-live-ecdsa";
    if (int rc = mbedtls_ctr_drbg_seed(&impl_->drbg, mbedtls_entropy_func, &impl_->entropy, pers, sizeof pers - 1))
        fail("no entropy for signing: " + mbed_error(rc));
}

EcdsaSigner::~EcdsaSigner() = default;
EcdsaSigner::EcdsaSigner(EcdsaSigner &&) noexcept = default;
EcdsaSigner &EcdsaSigner::operator=(EcdsaSigner &&) noexcept = default;

const std::string &EcdsaSigner::public_key_der() const noexcept
{
    return impl_->public_key_der;
}

std::string EcdsaSigner::sign(const Sha256 &digest) const
{
    unsigned char sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
    std::size_t len = 0;
    std::lock_guard lock(impl_->mu);
    if (int rc = mbedtls_pk_sign(&impl_->pk, MBEDTLS_MD_SHA256, digest.data(), digest.size(), sig, &len,
                                 mbedtls_ctr_drbg_random, &impl_->drbg))
        throw_error(Errc::INTERNAL, "live", "sign", mbed_error(rc));
    return std::string(reinterpret_cast<const char *>(sig), len);
}

struct EcdsaVerifier::Impl {
    mutable std::mutex mu; // guards pk: its curve tables are filled in lazily
    mbedtls_pk_context pk;

    Impl() { mbedtls_pk_init(&pk); }
    ~Impl() { mbedtls_pk_free(&pk); }
    Impl(const Impl &) = delete;
    Impl &operator=(const Impl &) = delete;
};

EcdsaVerifier::EcdsaVerifier(std::string_view public_key_der) : impl_(std::make_unique<Impl>())
{
    auto *bytes = reinterpret_cast<const unsigned char *>(public_key_der.data());
    if (int rc = mbedtls_pk_parse_public_key(&impl_->pk, bytes, public_key_der.size()))
        throw_error(Errc::INVAL, "live", "key", "unreadable public key: " + mbed_error(rc));
    if (!is_p256(impl_->pk))
        throw_error(Errc::INVAL, "live", "key", "not an ECDSA P-256 public key");
}

EcdsaVerifier::~EcdsaVerifier() = default;
EcdsaVerifier::EcdsaVerifier(EcdsaVerifier &&) noexcept = default;
EcdsaVerifier &EcdsaVerifier::operator=(EcdsaVerifier &&) noexcept = default;

bool EcdsaVerifier::verify(const Sha256 &digest, std::string_view signature) const noexcept
{
    std::lock_guard lock(impl_->mu);
    return mbedtls_pk_verify(&impl_->pk, MBEDTLS_MD_SHA256, digest.data(), digest.size(),
                             reinterpret_cast<const unsigned char *>(signature.data()), signature.size()) == 0;
}

} // namespace openace::live
