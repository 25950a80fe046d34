// SHA-1 (FIPS 180-4) for BitTorrent v1 piece and info-hash verification.
//
// SHA-1 is broken for collision resistance; it is here only because BEP 3
// fixes it for piece hashes and info hashes.  Do not use it for anything new.
//
// On x86 CPUs with the SHA extensions (SHA-NI) the compression runs on
// those instructions, chosen at run time, so the rest of the build needs no
// -m flags; elsewhere a portable implementation runs.  Both give identical
// digests.
//
// Threads: a Sha1 object is not thread-safe; give each hashing thread its
// own.  The static functions may be called from any thread.
// Errors: none; nothing here throws or allocates.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace openace::core {

// Incremental hasher: update() any number of times, then finish().
class Sha1 {
public:
    using Digest = std::array<std::uint8_t, 20>;

    Sha1(); // ready to hash

    // Appends n bytes at data (not retained; data may be null when n == 0).
    // Whole 64-byte blocks are hashed straight from data; only a tail of
    // under 64 bytes is copied into the object.
    void update(const void *data, std::size_t n);

    // The digest of everything passed to update() since construction or the
    // last finish(); the object then starts a fresh message.
    Digest finish();

    // One-shot digest of data.
    static Digest hash(std::string_view data);

    // True when this process hashes with the SHA extensions (the CPU has
    // SHA and SSE4.1, and the build targets x86).
    static bool hardware();

private:
    void compress(const std::uint8_t *blocks, std::size_t count);

    std::array<std::uint32_t, 5> h_;
    std::uint64_t total_ = 0; // message bytes so far
    std::array<std::uint8_t, 64> buf_{};
};

} // namespace openace::core
