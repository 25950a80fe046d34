#include "core/sha1.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <mbedtls/sha1.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace openace::core::detail {
bool sha1_force_portable(bool on); // defined in sha1.cpp, for tests only
}

using openace::core::Sha1;

namespace {

// Selects the portable path (or not) for its lifetime.
class PathGuard {
public:
    explicit PathGuard(bool portable) : prev_(openace::core::detail::sha1_force_portable(portable)) {}
    ~PathGuard() { openace::core::detail::sha1_force_portable(prev_); }
    PathGuard(const PathGuard &) = delete;
    PathGuard &operator=(const PathGuard &) = delete;

private:
    bool prev_;
};

// The paths this machine can exercise: SHA-NI only where the CPU has it.
std::vector<bool> portable_settings()
{
    if (Sha1::hardware())
        return {false, true};
    WARN("no SHA extensions on this CPU: only the portable path is tested");
    return {true};
}

Sha1::Digest reference(std::string_view s)
{
    Sha1::Digest d{};
    REQUIRE(mbedtls_sha1_ret(reinterpret_cast<const unsigned char *>(s.data()), s.size(), d.data()) == 0);
    return d;
}

std::string hex(const Sha1::Digest &d)
{
    std::string s;
    for (auto b : d)
        s += fmt::format("{:02x}", b);
    return s;
}

std::string random_bytes(std::size_t n, std::mt19937_64 &rng)
{
    std::string s(n, '\0');
    for (auto &c : s)
        c = static_cast<char>(rng());
    return s;
}

// Feeds s in random-sized pieces (including empty ones, pieces inside one
// block and pieces spanning many) and returns the digest.
Sha1::Digest hash_in_pieces(Sha1 &h, std::string_view s, std::mt19937_64 &rng)
{
    std::size_t at = 0;
    while (at < s.size()) {
        std::size_t piece = rng() % 4 == 0 ? rng() % 70000 : rng() % 150;
        piece = std::min(piece, s.size() - at);
        h.update(s.data() + at, piece);
        at += piece;
    }
    return h.finish();
}

double mb_per_s(const std::function<void()> &f, std::size_t bytes)
{
    auto t0 = std::chrono::steady_clock::now();
    f();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return static_cast<double>(bytes) / (1 << 20) / s;
}

} // namespace

TEST_CASE("sha1: FIPS 180 known answers on every path")
{
    const std::string million(1000000, 'a');
    for (bool portable : portable_settings()) {
        PathGuard g(portable);
        INFO("portable path: " << portable);
        CHECK(hex(Sha1::hash("abc")) == "a9993e364706816aba3e25717850c26c9cd0d89d");
        CHECK(hex(Sha1::hash("")) == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        CHECK(hex(Sha1::hash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
              "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
        CHECK(hex(Sha1::hash(million)) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    }
}

TEST_CASE("sha1: matches mbedTLS for every length 0 to 1000, one-shot and in pieces")
{
    std::mt19937_64 rng(0x5A1);
    const std::string data = random_bytes(1000, rng);
    for (bool portable : portable_settings()) {
        PathGuard g(portable);
        Sha1 h;
        for (std::size_t len = 0; len <= 1000; ++len) {
            INFO("portable path: " << portable << ", length " << len);
            const std::string_view s(data.data(), len);
            const auto want = reference(s);
            REQUIRE(Sha1::hash(s) == want);
            REQUIRE(hash_in_pieces(h, s, rng) == want); // h reused: finish() resets it
        }
    }
}

TEST_CASE("sha1: matches mbedTLS for large inputs, one-shot and in pieces")
{
    std::mt19937_64 rng(0xB16);
    for (std::size_t len : {std::size_t{1} << 20, (std::size_t{4} << 20) + 7, std::size_t{3 * 64 * 1024 - 1}}) {
        const std::string data = random_bytes(len, rng);
        const auto want = reference(data);
        for (bool portable : portable_settings()) {
            PathGuard g(portable);
            INFO("portable path: " << portable << ", length " << len);
            CHECK(Sha1::hash(data) == want);
            Sha1 h;
            CHECK(hash_in_pieces(h, data, rng) == want);
        }
    }
}

TEST_CASE("sha1: a path switch mid-message keeps the digest")
{
    if (!Sha1::hardware()) {
        WARN("no SHA extensions on this CPU: nothing to switch between");
        return;
    }
    std::mt19937_64 rng(7);
    const std::string data = random_bytes(10000, rng);
    Sha1 h;
    h.update(data.data(), 4321);
    {
        PathGuard g(true);
        CHECK_FALSE(Sha1::hardware());
        h.update(data.data() + 4321, 3000);
    }
    CHECK(Sha1::hardware());
    h.update(data.data() + 7321, data.size() - 7321);
    CHECK(h.finish() == reference(data));
}

TEST_CASE("sha1: empty updates, null with zero length, and finish twice")
{
    Sha1 h;
    h.update(nullptr, 0);
    h.update("ab", 2);
    h.update(nullptr, 0);
    h.update("c", 1);
    CHECK(hex(h.finish()) == "a9993e364706816aba3e25717850c26c9cd0d89d");
    CHECK(hex(h.finish()) == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
}

TEST_CASE("sha1: throughput on 64 MiB against mbedTLS (printed, not a pass condition)")
{
    std::mt19937_64 rng(64);
    const std::string data = random_bytes(std::size_t{64} << 20, rng);
    Sha1::Digest ref{}, ni{}, portable{};
    const double ref_rate = mb_per_s([&] { ref = reference(data); }, data.size());
    double ni_rate = 0;
    if (Sha1::hardware()) {
        ni_rate = mb_per_s([&] { ni = Sha1::hash(data); }, data.size());
        CHECK(ni == ref);
    }
    PathGuard g(true);
    const double portable_rate = mb_per_s([&] { portable = Sha1::hash(data); }, data.size());
    CHECK(portable == ref);
    WARN(fmt::format("sha1 64 MiB: SHA-NI {}, portable {:.0f} MB/s, mbedtls_sha1_ret {:.0f} MB/s "
                     "(best of ours {:.1f}x mbedTLS)",
                     ni_rate > 0 ? fmt::format("{:.0f} MB/s", ni_rate) : "n/a", portable_rate, ref_rate,
                     std::max(ni_rate, portable_rate) / ref_rate));
}
