// Circuit breaker for a failing dependency (a tracker, an HTTP source).
//
// Closed: calls flow; failure_threshold consecutive failures open it.
// Open: calls are rejected until open_duration has passed, then it is
// half-open.  HalfOpen: one trial call at a time; half_open_successes
// successes close it, one failure re-opens it with the timer restarted.
//
// Pure logic: time is passed in, so tests are deterministic.  Not
// thread-safe; each dependency's breaker lives on one thread.
#pragma once

#include <chrono>

namespace openace::core {

class CircuitBreaker {
public:
    using clock = std::chrono::steady_clock;
    using time_point = clock::time_point;

    enum class State { Closed, Open, HalfOpen };

    struct Options {
        int failure_threshold = 5; // >= 1
        std::chrono::milliseconds open_duration{30000};
        int half_open_successes = 1; // >= 1
    };

    // Throws std::invalid_argument for thresholds < 1 or a negative duration.
    explicit CircuitBreaker(Options options);
    CircuitBreaker(); // default Options

    // Whether a call may go ahead now.  In HalfOpen a true answer hands out
    // the single trial; report its outcome with record_success/failure.  A
    // trial that never reports is given up after open_duration, so a lost
    // result cannot keep the breaker half-open forever.
    bool allow(time_point now);
    // In Open (a call started before it opened), results are ignored.
    void record_success(time_point now);
    void record_failure(time_point now);

    State state(time_point now) const;
    const char *state_name(time_point now) const { return state_name(state(now)); }
    static const char *state_name(State s) noexcept; // "closed", "open", "half-open"
    // Failures since the last success while closed.
    int consecutive_failures() const noexcept { return failures_; }

private:
    void advance(time_point now); // Open -> HalfOpen once the timer has run out
    void open(time_point now);

    Options options_;
    State state_ = State::Closed;
    int failures_ = 0;
    int successes_ = 0; // in HalfOpen
    time_point opened_at_{};
    bool trial_in_flight_ = false;
    time_point trial_started_at_{};
};

} // namespace openace::core
