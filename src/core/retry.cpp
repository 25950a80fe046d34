#include "core/retry.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace openace::core {

Backoff::Backoff(Options options, uint64_t seed) : options_(options), rng_(seed)
{
    if (options_.initial.count() < 0 || options_.max.count() < 0)
        throw std::invalid_argument("backoff: durations must not be negative");
    // The negated comparisons also reject NaN.
    if (!(options_.multiplier >= 1.0))
        throw std::invalid_argument("backoff: multiplier must be at least 1");
    if (!(options_.jitter >= 0.0 && options_.jitter <= 1.0))
        throw std::invalid_argument("backoff: jitter must be between 0 and 1");
    if (options_.max_attempts < 0)
        throw std::invalid_argument("backoff: max_attempts must not be negative");
}

double Backoff::uniform01()
{
    // The top 53 bits of the generator: exact doubles, and the same sequence
    // on every standard library (uniform_real_distribution is not specified).
    return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

std::optional<std::chrono::milliseconds> Backoff::next_delay()
{
    if (options_.max_attempts > 0 && attempts_ >= options_.max_attempts)
        return std::nullopt;
    const double max = static_cast<double>(options_.max.count());
    // In floating point, so that many attempts saturate at max instead of
    // overflowing; pow() of a huge exponent is simply inf.
    double base = static_cast<double>(options_.initial.count()) *
                  std::pow(options_.multiplier, attempts_);
    base = std::min(base, max);
    double delay;
    if (options_.full_jitter)
        delay = base * uniform01();
    else
        delay = base * (1.0 - options_.jitter + 2.0 * options_.jitter * uniform01());
    delay = std::clamp(std::round(delay), 0.0, max);
    if (attempts_ < std::numeric_limits<int>::max())
        ++attempts_;
    return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(delay));
}

} // namespace openace::core
