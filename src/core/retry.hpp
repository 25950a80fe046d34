// Exponential backoff for retries (tracker announces, peer reconnects, HTTP
// fetches).  Pure logic: it computes delays and never sleeps, so callers
// arm their own timers and tests are deterministic given a seed.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>

namespace openace::core {

// Not thread-safe; each retrying operation owns one.
class Backoff {
public:
    struct Options {
        std::chrono::milliseconds initial{500};
        std::chrono::milliseconds max{60000}; // no delay is ever longer
        double multiplier = 2.0;              // >= 1
        // Each delay is the exponential base times a uniform factor in
        // [1 - jitter, 1 + jitter] (0 <= jitter <= 1), then capped at max.
        double jitter = 0.2;
        // "Full jitter" instead: uniform in [0, base].  Spreads out clients
        // that failed together the most, at the price of some short waits.
        bool full_jitter = false;
        int max_attempts = 0; // 0 = unlimited
    };

    // Throws std::invalid_argument for negative durations, multiplier < 1,
    // jitter outside [0, 1] or max_attempts < 0.
    explicit Backoff(Options options, uint64_t seed = std::random_device{}());

    // The delay before the next attempt; std::nullopt once max_attempts
    // delays have been handed out.
    std::optional<std::chrono::milliseconds> next_delay();
    // After a success: the next delay starts from `initial` again.
    void reset() noexcept { attempts_ = 0; }
    // Delays handed out since construction or the last reset().
    int attempts() const noexcept { return attempts_; }
    const Options &options() const noexcept { return options_; }

private:
    double uniform01(); // [0, 1)

    Options options_;
    std::mt19937_64 rng_;
    int attempts_ = 0;
};

} // namespace openace::core
