#include "core/circuit_breaker.hpp"

#include <stdexcept>

namespace openace::core {

CircuitBreaker::CircuitBreaker(Options options) : options_(options)
{
    if (options_.failure_threshold < 1 || options_.half_open_successes < 1)
        throw std::invalid_argument("circuit breaker: thresholds must be at least 1");
    if (options_.open_duration.count() < 0)
        throw std::invalid_argument("circuit breaker: open_duration must not be negative");
}

CircuitBreaker::CircuitBreaker() : CircuitBreaker(Options{}) {}

const char *CircuitBreaker::state_name(State s) noexcept
{
    switch (s) {
    case State::Closed: return "closed";
    case State::Open: return "open";
    case State::HalfOpen: return "half-open";
    }
    return "unknown";
}

CircuitBreaker::State CircuitBreaker::state(time_point now) const
{
    if (state_ == State::Open && now - opened_at_ >= options_.open_duration)
        return State::HalfOpen;
    return state_;
}

void CircuitBreaker::advance(time_point now)
{
    if (state(now) == State::HalfOpen && state_ == State::Open) {
        state_ = State::HalfOpen;
        successes_ = 0;
        trial_in_flight_ = false;
    }
}

void CircuitBreaker::open(time_point now)
{
    state_ = State::Open;
    opened_at_ = now;
    successes_ = 0;
    trial_in_flight_ = false;
}

bool CircuitBreaker::allow(time_point now)
{
    advance(now);
    switch (state_) {
    case State::Closed:
        return true;
    case State::Open:
        return false;
    case State::HalfOpen:
        if (trial_in_flight_ && now - trial_started_at_ < options_.open_duration)
            return false;
        trial_in_flight_ = true;
        trial_started_at_ = now;
        return true;
    }
    return false;
}

void CircuitBreaker::record_success(time_point now)
{
    advance(now);
    switch (state_) {
    case State::Closed:
        failures_ = 0;
        break;
    case State::Open:
        break;
    case State::HalfOpen:
        trial_in_flight_ = false;
        if (++successes_ >= options_.half_open_successes) {
            state_ = State::Closed;
            failures_ = 0;
            successes_ = 0;
        }
        break;
    }
}

void CircuitBreaker::record_failure(time_point now)
{
    advance(now);
    switch (state_) {
    case State::Closed:
        if (++failures_ >= options_.failure_threshold)
            open(now);
        break;
    case State::Open:
        break;
    case State::HalfOpen:
        open(now);
        break;
    }
}

} // namespace openace::core
