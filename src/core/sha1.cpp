#include "core/sha1.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#define OPENACE_SHA1_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace openace::core {

namespace detail {
// Tests only: forces the portable path even where SHA-NI exists; returns the
// previous setting.  Declared here rather than in the header so that it is
// no part of the API.
bool sha1_force_portable(bool on);
} // namespace detail

namespace {

constexpr std::array<std::uint32_t, 5> kInit{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};

std::atomic<bool> force_portable{false};

constexpr std::uint32_t rotl(std::uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

std::uint32_t load_be32(const std::uint8_t *p)
{
    return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

void store_be32(std::uint8_t *p, std::uint32_t v)
{
    p[0] = static_cast<std::uint8_t>(v >> 24);
    p[1] = static_cast<std::uint8_t>(v >> 16);
    p[2] = static_cast<std::uint8_t>(v >> 8);
    p[3] = static_cast<std::uint8_t>(v);
}

// FIPS 180-4 §6.1.2, with the schedule kept in a 16-word ring (§6.1.3).  One
// loop per 20-round stage keeps f and K constant so the loops unroll cleanly.
void compress_portable(std::uint32_t *h, const std::uint8_t *p, std::size_t blocks)
{
    for (; blocks; --blocks, p += 64) {
        std::uint32_t w[16];
        for (int t = 0; t < 16; ++t)
            w[t] = load_be32(p + 4 * t);
        std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        auto word = [&w](int t) {
            if (t >= 16)
                w[t & 15] = rotl(w[(t - 3) & 15] ^ w[(t - 8) & 15] ^ w[(t - 14) & 15] ^ w[t & 15], 1);
            return w[t & 15];
        };
        auto step = [&](std::uint32_t f, std::uint32_t k, std::uint32_t wt) {
            const std::uint32_t tmp = rotl(a, 5) + f + e + k + wt;
            e = d;
            d = c;
            c = rotl(b, 30);
            b = a;
            a = tmp;
        };
#pragma GCC unroll 20
        for (int t = 0; t < 20; ++t)
            step((b & c) | (~b & d), 0x5A827999, word(t));
#pragma GCC unroll 20
        for (int t = 20; t < 40; ++t)
            step(b ^ c ^ d, 0x6ED9EBA1, word(t));
#pragma GCC unroll 20
        for (int t = 40; t < 60; ++t)
            step((b & c) | (b & d) | (c & d), 0x8F1BBCDC, word(t));
#pragma GCC unroll 20
        for (int t = 60; t < 80; ++t)
            step(b ^ c ^ d, 0xCA62C1D6, word(t));
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
}

#ifdef OPENACE_SHA1_X86

#define OPENACE_SHA_NI __attribute__((target("sha,sse4.1")))

// Registers hold four schedule words with the earliest in the top lane, and
// ABCD with A on top, as SHA1RNDS4 expects; E lives in the top lane of its
// own register.  msg[g % 4] holds W[4g .. 4g+3] when group g consumes it.
//
// Group g of four rounds: SHA1NEXTE derives this group's E from A of the
// state before the previous group (E = rotl(A, 30)) and adds it to W[4g];
// the state entering this group becomes the source of the next E.  The
// schedule for later groups advances in three steps spread over groups:
// SHA1MSG1 (W[t-16] ^ W[t-14]), XOR with W[t-8], SHA1MSG2 (^ W[t-3],
// rotate), which lets each step overlap the rounds.
template <int G>
OPENACE_SHA_NI __attribute__((always_inline)) inline void ni_group(__m128i &abcd, __m128i &e_src, __m128i (&msg)[4])
{
    __m128i we;
    if constexpr (G == 0)
        we = _mm_add_epi32(e_src, msg[0]); // e_src is still the block's E
    else
        we = _mm_sha1nexte_epu32(e_src, msg[G % 4]);
    e_src = abcd;
    abcd = _mm_sha1rnds4_epu32(abcd, we, G / 5);
    if constexpr (G >= 3 && G <= 18) // W[4(G+1)..] ready
        msg[(G + 1) % 4] = _mm_sha1msg2_epu32(msg[(G + 1) % 4], msg[G % 4]);
    if constexpr (G >= 2 && G <= 17) // W[4(G+2)..] gets its W[t-8] term
        msg[(G + 2) % 4] = _mm_xor_si128(msg[(G + 2) % 4], msg[G % 4]);
    if constexpr (G >= 1 && G <= 16) // W[4(G+3)..] starts from W[t-16] ^ W[t-14]
        msg[(G + 3) % 4] = _mm_sha1msg1_epu32(msg[(G + 3) % 4], msg[G % 4]);
}

template <int... G>
OPENACE_SHA_NI __attribute__((always_inline)) inline void ni_rounds(__m128i &abcd, __m128i &e_src, __m128i (&msg)[4],
                                                                   std::integer_sequence<int, G...>)
{
    (ni_group<G>(abcd, e_src, msg), ...);
}

OPENACE_SHA_NI void compress_ni(std::uint32_t *h, const std::uint8_t *p, std::size_t blocks)
{
    // Reverses the 16 bytes: big-endian words, first word in the top lane.
    const __m128i order = _mm_set_epi64x(0x0001020304050607LL, 0x08090A0B0C0D0E0FLL);
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(h)), 0x1B);
    __m128i e = _mm_set_epi32(static_cast<int>(h[4]), 0, 0, 0);
    for (; blocks; --blocks, p += 64) {
        const __m128i abcd_in = abcd, e_in = e;
        const auto *in = reinterpret_cast<const __m128i *>(p);
        __m128i msg[4] = {_mm_shuffle_epi8(_mm_loadu_si128(in), order), _mm_shuffle_epi8(_mm_loadu_si128(in + 1), order),
                          _mm_shuffle_epi8(_mm_loadu_si128(in + 2), order),
                          _mm_shuffle_epi8(_mm_loadu_si128(in + 3), order)};
        __m128i e_src = e;
        ni_rounds(abcd, e_src, msg, std::make_integer_sequence<int, 20>{});
        e = _mm_sha1nexte_epu32(e_src, e_in); // E after round 80, plus the input E
        abcd = _mm_add_epi32(abcd, abcd_in);
    }
    _mm_storeu_si128(reinterpret_cast<__m128i *>(h), _mm_shuffle_epi32(abcd, 0x1B));
    h[4] = static_cast<std::uint32_t>(_mm_extract_epi32(e, 3));
}

// CPUID directly: Clang's __builtin_cpu_supports does not know "sha".
bool cpu_has_sha_ni()
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1))
        return false;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
}

#else

bool cpu_has_sha_ni() { return false; }

#endif

bool use_ni()
{
    static const bool has = cpu_has_sha_ni();
    return has && !force_portable.load(std::memory_order_relaxed);
}

} // namespace

bool detail::sha1_force_portable(bool on) { return force_portable.exchange(on); }

Sha1::Sha1() : h_(kInit) {}

bool Sha1::hardware() { return use_ni(); }

void Sha1::compress(const std::uint8_t *blocks, std::size_t count)
{
#ifdef OPENACE_SHA1_X86
    if (use_ni())
        return compress_ni(h_.data(), blocks, count);
#endif
    compress_portable(h_.data(), blocks, count);
}

void Sha1::update(const void *data, std::size_t n)
{
    if (n == 0)
        return;
    auto p = static_cast<const std::uint8_t *>(data);
    std::size_t used = total_ % 64;
    total_ += n;
    if (used) {
        const std::size_t take = std::min(n, 64 - used);
        std::memcpy(buf_.data() + used, p, take);
        p += take;
        n -= take;
        if (used + take < 64)
            return;
        compress(buf_.data(), 1);
    }
    compress(p, n / 64);
    std::memcpy(buf_.data(), p + n / 64 * 64, n % 64);
}

Sha1::Digest Sha1::finish()
{
    // FIPS 180-4 §5.1.1: a 1 bit, zeros to 56 mod 64 bytes, the bit length.
    const std::uint64_t bits = total_ * 8;
    std::size_t used = total_ % 64;
    buf_[used++] = 0x80;
    if (used > 56) {
        std::memset(buf_.data() + used, 0, 64 - used);
        compress(buf_.data(), 1);
        used = 0;
    }
    std::memset(buf_.data() + used, 0, 56 - used);
    store_be32(buf_.data() + 56, static_cast<std::uint32_t>(bits >> 32));
    store_be32(buf_.data() + 60, static_cast<std::uint32_t>(bits));
    compress(buf_.data(), 1);

    Digest out;
    for (int i = 0; i < 5; ++i)
        store_be32(out.data() + 4 * i, h_[i]);
    h_ = kInit;
    total_ = 0;
    return out;
}

Sha1::Digest Sha1::hash(std::string_view data)
{
    Sha1 s;
    s.update(data.data(), data.size());
    return s.finish();
}

} // namespace openace::core
