#include "core/circuit_breaker.hpp"
#include "core/retry.hpp"

#include <catch2/catch.hpp>

#include <stdexcept>

using namespace std::chrono_literals;
using openace::core::Backoff;
using openace::core::CircuitBreaker;
using State = CircuitBreaker::State;

namespace {

Backoff::Options no_jitter(int max_attempts = 0)
{
    Backoff::Options o;
    o.initial = 100ms;
    o.max = 1000ms;
    o.multiplier = 2.0;
    o.jitter = 0.0;
    o.max_attempts = max_attempts;
    return o;
}

} // namespace

TEST_CASE("backoff: delays grow by the multiplier and stop at the cap")
{
    Backoff b(no_jitter(), 1);
    CHECK(b.next_delay() == 100ms);
    CHECK(b.next_delay() == 200ms);
    CHECK(b.next_delay() == 400ms);
    CHECK(b.next_delay() == 800ms);
    CHECK(b.next_delay() == 1000ms);
    CHECK(b.next_delay() == 1000ms);
    CHECK(b.attempts() == 6);
}

TEST_CASE("backoff: thousands of attempts stay at the cap without overflowing")
{
    Backoff::Options o = no_jitter();
    o.max = 60000ms;
    Backoff b(o, 1);
    for (int i = 0; i < 5000; ++i)
        REQUIRE(*b.next_delay() <= 60000ms);
    CHECK(b.next_delay() == 60000ms);
}

TEST_CASE("backoff: defaults start at 500 ms with 20% jitter, capped at 60 s")
{
    Backoff b(Backoff::Options{}, 7);
    const auto first = *b.next_delay();
    CHECK(first >= 400ms);
    CHECK(first <= 600ms);
    for (int i = 0; i < 50; ++i)
        CHECK(*b.next_delay() <= 60000ms);
    CHECK(b.options().max_attempts == 0);
}

TEST_CASE("backoff: jitter stays within plus or minus the fraction and spreads out")
{
    Backoff::Options o = no_jitter();
    o.initial = 1000ms;
    o.max = 100000ms;
    o.multiplier = 1.0; // every delay has the same 1000 ms base
    o.jitter = 0.2;
    Backoff b(o, 42);
    std::chrono::milliseconds lo = 1000ms, hi = 1000ms;
    double sum = 0;
    const int n = 10000;
    for (int i = 0; i < n; ++i) {
        const auto d = *b.next_delay();
        REQUIRE(d >= 800ms);
        REQUIRE(d <= 1200ms);
        lo = std::min(lo, d);
        hi = std::max(hi, d);
        sum += static_cast<double>(d.count());
    }
    CHECK(lo <= 810ms);
    CHECK(hi >= 1190ms);
    CHECK(sum / n == Approx(1000.0).epsilon(0.01));
}

TEST_CASE("backoff: jitter never pushes a delay past the cap")
{
    Backoff::Options o = no_jitter();
    o.jitter = 0.5;
    Backoff b(o, 3);
    for (int i = 0; i < 1000; ++i)
        REQUIRE(*b.next_delay() <= 1000ms);
}

TEST_CASE("backoff: full jitter is uniform between zero and the base")
{
    Backoff::Options o = no_jitter();
    o.initial = 1000ms;
    o.max = 1000ms;
    o.full_jitter = true;
    Backoff b(o, 9);
    std::chrono::milliseconds lo = 1000ms, hi = 0ms;
    for (int i = 0; i < 10000; ++i) {
        const auto d = *b.next_delay();
        REQUIRE(d >= 0ms);
        REQUIRE(d <= 1000ms);
        lo = std::min(lo, d);
        hi = std::max(hi, d);
    }
    CHECK(lo <= 10ms);
    CHECK(hi >= 990ms);
}

TEST_CASE("backoff: the same seed gives the same delays")
{
    Backoff::Options o;
    Backoff a(o, 123), b(o, 123);
    for (int i = 0; i < 20; ++i)
        CHECK(a.next_delay() == b.next_delay());
}

TEST_CASE("backoff: max_attempts ends the sequence")
{
    Backoff b(no_jitter(3), 1);
    CHECK(b.next_delay().has_value());
    CHECK(b.next_delay().has_value());
    CHECK(b.next_delay().has_value());
    CHECK(b.attempts() == 3);
    CHECK_FALSE(b.next_delay().has_value());
    CHECK_FALSE(b.next_delay().has_value());
    CHECK(b.attempts() == 3);
}

TEST_CASE("backoff: reset starts again from the initial delay")
{
    Backoff b(no_jitter(2), 1);
    CHECK(b.next_delay() == 100ms);
    CHECK(b.next_delay() == 200ms);
    CHECK_FALSE(b.next_delay());
    b.reset();
    CHECK(b.attempts() == 0);
    CHECK(b.next_delay() == 100ms);
}

TEST_CASE("backoff: nonsensical options are rejected")
{
    Backoff::Options o;
    o.multiplier = 0.5;
    CHECK_THROWS_AS(Backoff(o), std::invalid_argument);
    o = {};
    o.jitter = 1.5;
    CHECK_THROWS_AS(Backoff(o), std::invalid_argument);
    o = {};
    o.initial = -1ms;
    CHECK_THROWS_AS(Backoff(o), std::invalid_argument);
    o = {};
    o.max_attempts = -1;
    CHECK_THROWS_AS(Backoff(o), std::invalid_argument);
}

TEST_CASE("breaker: stays closed below the failure threshold")
{
    CircuitBreaker cb({.failure_threshold = 3, .open_duration = 1000ms, .half_open_successes = 1});
    const auto t = CircuitBreaker::time_point{} + 1h;
    CHECK(cb.state(t) == State::Closed);
    cb.record_failure(t);
    cb.record_failure(t);
    CHECK(cb.allow(t));
    CHECK(cb.consecutive_failures() == 2);
    cb.record_success(t); // failures must be consecutive
    CHECK(cb.consecutive_failures() == 0);
    cb.record_failure(t);
    cb.record_failure(t);
    CHECK(cb.state(t) == State::Closed);
    CHECK(std::string(cb.state_name(t)) == "closed");
}

TEST_CASE("breaker: opens after threshold failures and rejects until the timer runs out")
{
    CircuitBreaker cb({.failure_threshold = 3, .open_duration = 1000ms, .half_open_successes = 1});
    const auto t = CircuitBreaker::time_point{} + 1h;
    for (int i = 0; i < 3; ++i)
        cb.record_failure(t);
    CHECK(cb.state(t) == State::Open);
    CHECK(std::string(cb.state_name(t)) == "open");
    CHECK_FALSE(cb.allow(t));
    CHECK_FALSE(cb.allow(t + 999ms));
    CHECK(cb.state(t + 999ms) == State::Open);
    CHECK(cb.state(t + 1000ms) == State::HalfOpen);
    CHECK(std::string(cb.state_name(t + 1000ms)) == "half-open");
}

TEST_CASE("breaker: half-open allows a single trial at a time")
{
    CircuitBreaker cb({.failure_threshold = 1, .open_duration = 1000ms, .half_open_successes = 1});
    const auto t = CircuitBreaker::time_point{} + 1h;
    cb.record_failure(t);
    const auto t1 = t + 1000ms;
    CHECK(cb.allow(t1));
    CHECK_FALSE(cb.allow(t1));
    CHECK_FALSE(cb.allow(t1 + 10ms));
    CHECK(cb.state(t1) == State::HalfOpen);
}

TEST_CASE("breaker: a successful trial closes it")
{
    CircuitBreaker cb({.failure_threshold = 2, .open_duration = 1000ms, .half_open_successes = 1});
    const auto t = CircuitBreaker::time_point{} + 1h;
    cb.record_failure(t);
    cb.record_failure(t);
    const auto t1 = t + 1500ms;
    REQUIRE(cb.allow(t1));
    cb.record_success(t1);
    CHECK(cb.state(t1) == State::Closed);
    CHECK(cb.allow(t1));
    CHECK(cb.allow(t1));
    // A fresh run of failures is needed to open it again.
    cb.record_failure(t1);
    CHECK(cb.state(t1) == State::Closed);
}

TEST_CASE("breaker: several half-open successes can be required")
{
    CircuitBreaker cb({.failure_threshold = 1, .open_duration = 100ms, .half_open_successes = 2});
    const auto t = CircuitBreaker::time_point{} + 1h;
    cb.record_failure(t);
    const auto t1 = t + 100ms;
    REQUIRE(cb.allow(t1));
    cb.record_success(t1);
    CHECK(cb.state(t1) == State::HalfOpen);
    REQUIRE(cb.allow(t1)); // the next trial
    CHECK_FALSE(cb.allow(t1));
    cb.record_success(t1);
    CHECK(cb.state(t1) == State::Closed);
}

TEST_CASE("breaker: a failed trial re-opens it with the timer restarted")
{
    CircuitBreaker cb({.failure_threshold = 1, .open_duration = 1000ms, .half_open_successes = 1});
    const auto t = CircuitBreaker::time_point{} + 1h;
    cb.record_failure(t);
    const auto t1 = t + 5000ms;
    REQUIRE(cb.allow(t1));
    cb.record_failure(t1);
    CHECK(cb.state(t1) == State::Open);
    CHECK_FALSE(cb.allow(t1 + 999ms)); // measured from the re-open, not the first open
    CHECK(cb.state(t1 + 1000ms) == State::HalfOpen);
    CHECK(cb.allow(t1 + 1000ms));
}

TEST_CASE("breaker: results reported while open are ignored")
{
    CircuitBreaker cb({.failure_threshold = 1, .open_duration = 1000ms, .half_open_successes = 1});
    const auto t = CircuitBreaker::time_point{} + 1h;
    cb.record_failure(t);
    cb.record_success(t + 10ms); // a call that started before it opened
    CHECK(cb.state(t + 10ms) == State::Open);
    cb.record_failure(t + 500ms); // must not restart the timer
    CHECK(cb.state(t + 1000ms) == State::HalfOpen);
}

TEST_CASE("breaker: a trial that never reports is given up after open_duration")
{
    CircuitBreaker cb({.failure_threshold = 1, .open_duration = 1000ms, .half_open_successes = 1});
    const auto t = CircuitBreaker::time_point{} + 1h;
    cb.record_failure(t);
    REQUIRE(cb.allow(t + 1000ms));
    CHECK_FALSE(cb.allow(t + 1999ms));
    CHECK(cb.allow(t + 2000ms));
}

TEST_CASE("breaker: nonsensical options are rejected")
{
    CHECK_THROWS_AS(CircuitBreaker({.failure_threshold = 0}), std::invalid_argument);
    CHECK_THROWS_AS(CircuitBreaker({.open_duration = -1ms}), std::invalid_argument);
    CHECK_THROWS_AS(CircuitBreaker({.half_open_successes = 0}), std::invalid_argument);
}

TEST_CASE("breaker: default options open after 5 failures for 30 s")
{
    CircuitBreaker cb;
    const auto t = CircuitBreaker::time_point{} + 1h;
    for (int i = 0; i < 4; ++i)
        cb.record_failure(t);
    CHECK(cb.state(t) == State::Closed);
    cb.record_failure(t);
    CHECK(cb.state(t) == State::Open);
    CHECK(cb.state(t + 29999ms) == State::Open);
    CHECK(cb.state(t + 30s) == State::HalfOpen);
}
