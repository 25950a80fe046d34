// ECDSA P-256 over SHA-256 digests (mbedTLS): what live signs and checks —
// pieces, heads and chat lines (docs/protocol.md §2-3).
//
// Threads: sign() and verify() may be called from any thread, also
// concurrently on one object (each holds a mutex around its mbedTLS
// context, whose curve tables are filled in lazily).  Movable, not
// copyable; a moved-from object may only be destroyed or assigned to.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace openace::live {

using Sha256 = std::array<std::uint8_t, 32>;
Sha256 sha256(std::string_view data) noexcept;

class EcdsaSigner {
public:
    // key_pem: an ECDSA P-256 private key (PEM, as transport::Identity::key_pem).
    // Throws Error(INVAL, "live", operation, ...) when it is not PEM, is
    // unreadable or not P-256, or when no random generator can be seeded.
    EcdsaSigner(const std::string &key_pem, const char *operation);
    ~EcdsaSigner();
    EcdsaSigner(EcdsaSigner &&) noexcept;
    EcdsaSigner &operator=(EcdsaSigner &&) noexcept;

    // The key's SubjectPublicKeyInfo (DER).
    const std::string &public_key_der() const noexcept;
    // A DER signature of `digest`; throws Error(INTERNAL) only if mbedTLS fails.
    std::string sign(const Sha256 &digest) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

class EcdsaVerifier {
public:
    // Throws Error(INVAL, "live", "key", ...) when `public_key_der` is not
    // an ECDSA P-256 SubjectPublicKeyInfo.
    explicit EcdsaVerifier(std::string_view public_key_der);
    ~EcdsaVerifier();
    EcdsaVerifier(EcdsaVerifier &&) noexcept;
    EcdsaVerifier &operator=(EcdsaVerifier &&) noexcept;

    bool verify(const Sha256 &digest, std::string_view signature) const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace openace::live
