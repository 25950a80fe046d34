// Hexadecimal digits: infohashes, content ids, percent escapes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace openace::core {

// 0-15, or -1 for a character that is not a hex digit (either case).
constexpr int hex_digit(char c) noexcept
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// Lower-case hex of `n` bytes.
inline std::string to_hex(const std::uint8_t *data, std::size_t n)
{
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * n);
    for (std::size_t i = 0; i < n; ++i) {
        out += digits[data[i] >> 4];
        out += digits[data[i] & 15];
    }
    return out;
}

// Exactly 2*N hex digits (either case) to N bytes; nullopt otherwise.
template <std::size_t N> std::optional<std::array<std::uint8_t, N>> from_hex(std::string_view text) noexcept
{
    if (text.size() != 2 * N)
        return std::nullopt;
    std::array<std::uint8_t, N> out{};
    for (std::size_t i = 0; i < N; ++i) {
        int hi = hex_digit(text[2 * i]), lo = hex_digit(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return std::nullopt;
        out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return out;
}

} // namespace openace::core
