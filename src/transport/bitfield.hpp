// A fixed-size set of piece indices, in the BitTorrent wire layout (BEP 3
// "bitfield": piece 0 is the high bit of the first byte; spare bits zero).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace openace::transport {

class Bitfield {
public:
    Bitfield() = default;
    explicit Bitfield(std::uint32_t size, bool value = false) { resize(size, value); }

    // Keeps the first min(old, new) bits; new bits take `value`.
    void resize(std::uint32_t size, bool value = false)
    {
        const std::uint32_t old = size_;
        bytes_.resize((size + 7) / 8, 0);
        size_ = size;
        if (size > old)
            for (std::uint32_t i = old; i < size; ++i)
                assign(i, value);
        clear_spare_bits();
        recount();
    }

    std::uint32_t size() const noexcept { return size_; }
    std::uint32_t count() const noexcept { return count_; }
    bool all() const noexcept { return count_ == size_; }
    bool none() const noexcept { return count_ == 0; }

    bool test(std::uint32_t i) const noexcept
    {
        return i < size_ && (static_cast<std::uint8_t>(bytes_[i / 8]) & (0x80u >> (i % 8))) != 0;
    }
    void set(std::uint32_t i) noexcept
    {
        if (i < size_ && !test(i)) {
            bytes_[i / 8] = static_cast<char>(static_cast<std::uint8_t>(bytes_[i / 8]) | (0x80u >> (i % 8)));
            ++count_;
        }
    }
    void reset(std::uint32_t i) noexcept
    {
        if (i < size_ && test(i)) {
            bytes_[i / 8] = static_cast<char>(static_cast<std::uint8_t>(bytes_[i / 8]) & ~(0x80u >> (i % 8)));
            --count_;
        }
    }
    void assign(std::uint32_t i, bool v) noexcept { v ? set(i) : reset(i); }
    void set_all()
    {
        for (auto &b : bytes_)
            b = static_cast<char>(0xff);
        clear_spare_bits();
        recount();
    }

    // The wire bytes ((size + 7) / 8 of them).
    std::string_view bytes() const noexcept { return {bytes_.data(), bytes_.size()}; }

    // From wire bytes for `size` pieces.  False (and *this unchanged) when the
    // length is wrong or a spare bit is set, which BEP 3 says is an error.
    bool assign_bytes(std::string_view data, std::uint32_t size)
    {
        if (data.size() != (static_cast<std::size_t>(size) + 7) / 8)
            return false;
        if (size % 8 != 0 && !data.empty() &&
            (static_cast<std::uint8_t>(data.back()) & (0xffu >> (size % 8))) != 0)
            return false;
        bytes_.assign(data.begin(), data.end());
        size_ = size;
        recount();
        return true;
    }

    bool operator==(const Bitfield &o) const noexcept { return size_ == o.size_ && bytes_ == o.bytes_; }

private:
    void clear_spare_bits() noexcept
    {
        if (size_ % 8 != 0 && !bytes_.empty())
            bytes_.back() = static_cast<char>(static_cast<std::uint8_t>(bytes_.back()) & (0xff00u >> (size_ % 8)));
    }
    void recount() noexcept
    {
        std::uint32_t n = 0;
        for (char c : bytes_)
            n += static_cast<std::uint32_t>(__builtin_popcount(static_cast<std::uint8_t>(c)));
        count_ = n;
    }

    std::vector<char> bytes_;
    std::uint32_t size_ = 0;
    std::uint32_t count_ = 0;
};

} // namespace openace::transport
