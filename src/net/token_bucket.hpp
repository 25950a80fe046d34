// Token bucket for rate limits (transport.download_rate_limit /
// upload_rate_limit).  Pure logic: time is passed in.  Loop thread only.
//
//   TokenBucket up(512 * 1024);          // 512 KiB/s, burst = 1 s worth
//   if (up.consume(16384, now)) send(); else retry after up.wait_for(16384, now);
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace openace::net {

class TokenBucket {
public:
    using clock = std::chrono::steady_clock;

    // rate: bytes per second; 0 = unlimited.  burst: the bucket's size
    // (default one second of rate, at least 64 KiB so a block always fits).
    explicit TokenBucket(std::int64_t rate = 0, std::int64_t burst = 0) { set_rate(rate, burst); }

    void set_rate(std::int64_t rate, std::int64_t burst = 0)
    {
        rate_ = std::max<std::int64_t>(rate, 0);
        burst_ = burst > 0 ? burst : std::max<std::int64_t>(rate_, 64 * 1024);
        tokens_ = static_cast<double>(burst_);
    }
    bool unlimited() const noexcept { return rate_ == 0; }
    std::int64_t rate() const noexcept { return rate_; }

    // Takes n tokens when they are there (true), else takes nothing.
    bool consume(std::int64_t n, clock::time_point now)
    {
        if (unlimited())
            return true;
        refill(now);
        if (tokens_ < static_cast<double>(n))
            return false;
        tokens_ -= static_cast<double>(n);
        return true;
    }
    // Takes n tokens even when that makes the balance negative (bytes that
    // already arrived); the debt delays later consumers.
    void charge(std::int64_t n, clock::time_point now)
    {
        if (unlimited())
            return;
        refill(now);
        tokens_ -= static_cast<double>(n);
    }
    // Whether any consumer should wait now (balance below zero).
    bool in_debt(clock::time_point now)
    {
        if (unlimited())
            return false;
        refill(now);
        return tokens_ < 0;
    }
    // How long until n tokens are available (zero when they are).
    std::chrono::milliseconds wait_for(std::int64_t n, clock::time_point now)
    {
        if (unlimited())
            return std::chrono::milliseconds(0);
        refill(now);
        double missing = static_cast<double>(n) - tokens_;
        if (missing <= 0)
            return std::chrono::milliseconds(0);
        return std::chrono::milliseconds(static_cast<std::int64_t>(missing * 1000.0 / static_cast<double>(rate_)) + 1);
    }

private:
    void refill(clock::time_point now)
    {
        if (last_ != clock::time_point{}) {
            double dt = std::chrono::duration<double>(now - last_).count();
            if (dt > 0)
                tokens_ = std::min(static_cast<double>(burst_), tokens_ + dt * static_cast<double>(rate_));
        }
        last_ = now;
    }

    std::int64_t rate_ = 0, burst_ = 0;
    double tokens_ = 0;
    clock::time_point last_{};
};

} // namespace openace::net
