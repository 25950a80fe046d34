#include "engine/event_queue.hpp"

#include <catch2/catch.hpp>

#include <poll.h>

#include <atomic>
#include <thread>

using openace::Event;
using openace::engine::EventClass;
using openace::engine::EventQueue;

static Event make(openace_event_id id, int64_t job = 0, bool final = false)
{
    Event e;
    e.id = id;
    e.job_id = job;
    e.final = final;
    e.json = "{\"job_id\":" + std::to_string(job) + "}";
    return e;
}

TEST_CASE("event queue: pop(0) polls and returns nothing when empty")
{
    EventQueue q(8);
    CHECK_FALSE(q.pop(0).has_value());
}

TEST_CASE("event queue: events come out in order")
{
    EventQueue q(8);
    for (int i = 1; i <= 3; ++i)
        q.push(make(OPENACE_EVENT_JOB_STATE, i), EventClass::Normal);
    for (int i = 1; i <= 3; ++i) {
        auto e = q.pop(0);
        REQUIRE(e);
        CHECK(e->job_id == i);
    }
}

TEST_CASE("event queue: a waiting pop wakes up when an event arrives from another thread")
{
    EventQueue q(8);
    std::thread t([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        q.push(make(OPENACE_EVENT_JOB_STATE, 7), EventClass::Normal);
    });
    auto e = q.pop(-1);
    t.join();
    REQUIRE(e);
    CHECK(e->job_id == 7);
}

TEST_CASE("event queue: overflow drops progress events first and reports one overflow event")
{
    EventQueue q(4);
    q.push(make(OPENACE_EVENT_JOB_PROGRESS, 1), EventClass::Droppable);
    q.push(make(OPENACE_EVENT_JOB_STATE, 2), EventClass::Normal);
    q.push(make(OPENACE_EVENT_JOB_PROGRESS, 3), EventClass::Droppable);
    q.push(make(OPENACE_EVENT_JOB_STATE, 4), EventClass::Normal);
    // Full: the next two evict the two progress events, oldest first.
    q.push(make(OPENACE_EVENT_JOB_STATE, 5), EventClass::Normal);
    q.push(make(OPENACE_EVENT_JOB_STATE, 6), EventClass::Normal);
    auto first = q.pop(0);
    REQUIRE(first);
    CHECK(first->id == OPENACE_EVENT_OVERFLOW);
    CHECK(first->json == "{\"dropped\":2}");
    std::vector<int64_t> jobs;
    while (auto e = q.pop(0))
        jobs.push_back(e->job_id);
    CHECK(jobs == std::vector<int64_t>{2, 4, 5, 6});
    CHECK(q.stats().dropped == 2);
}

TEST_CASE("event queue: reserved final events are never dropped")
{
    EventQueue q(4);
    REQUIRE(q.reserve());
    REQUIRE(q.reserve());
    // Only two free slots remain for ordinary events; flood them.
    for (int i = 0; i < 50; ++i)
        q.push(make(OPENACE_EVENT_JOB_PROGRESS, 100 + i), EventClass::Droppable);
    q.push(make(OPENACE_EVENT_JOB_STATE, 1, true), EventClass::Final);
    q.push(make(OPENACE_EVENT_JOB_STATE, 2, true), EventClass::Final);
    int finals = 0;
    bool overflow = false;
    while (auto e = q.pop(0)) {
        if (e->id == OPENACE_EVENT_OVERFLOW)
            overflow = true;
        if (e->final)
            ++finals;
    }
    CHECK(overflow);
    CHECK(finals == 2);
}

TEST_CASE("event queue: reserve fails once reservations and final events fill it")
{
    EventQueue q(4);
    for (int i = 0; i < 4; ++i)
        REQUIRE(q.reserve());
    CHECK_FALSE(q.reserve());
    q.unreserve();
    CHECK(q.reserve());
}

TEST_CASE("event queue: the wakeup fd is readable exactly while events are pending")
{
    EventQueue q(8);
    auto readable = [&] {
        pollfd p{q.fd(), POLLIN, 0};
        return ::poll(&p, 1, 0) == 1;
    };
    REQUIRE(q.fd() >= 0);
    CHECK_FALSE(readable());
    q.push(make(OPENACE_EVENT_JOB_STATE, 1), EventClass::Normal);
    q.push(make(OPENACE_EVENT_JOB_STATE, 2), EventClass::Normal);
    CHECK(readable());
    q.pop(0);
    CHECK(readable());
    q.pop(0);
    CHECK_FALSE(readable());
}

TEST_CASE("event queue: the wakeup callback fires when the queue becomes non-empty")
{
    EventQueue q(8);
    std::atomic<int> calls{0};
    q.set_wakeup([&] { ++calls; });
    q.push(make(OPENACE_EVENT_JOB_STATE, 1), EventClass::Normal);
    q.push(make(OPENACE_EVENT_JOB_STATE, 2), EventClass::Normal);
    CHECK(calls == 1); // already signalled: no second call until drained
    q.pop(0);
    q.pop(0);
    q.push(make(OPENACE_EVENT_JOB_STATE, 3), EventClass::Normal);
    CHECK(calls == 2);
    q.set_wakeup(nullptr);
    q.pop(0);
    q.push(make(OPENACE_EVENT_JOB_STATE, 4), EventClass::Normal);
    CHECK(calls == 2);
}

TEST_CASE("event queue: close wakes a waiter and later pops return at once")
{
    EventQueue q(8);
    std::thread t([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        q.close();
    });
    CHECK_FALSE(q.pop(-1).has_value());
    t.join();
    CHECK_FALSE(q.pop(-1).has_value());
}
