// Bounded event queue between the loop thread (producer) and the caller's
// event thread (consumer), as mpv_wait_event.
//
// Capacity counts queued events plus reserved slots.  A job reserves its final
// event's slot at submit time, so final events are never dropped.  When the
// queue is full, an incoming ordinary event evicts the oldest droppable one
// (progress, log), then the oldest non-final one; the consumer then sees one
// OPENACE_EVENT_OVERFLOW event saying how many were lost.
#pragma once

#include <openace/engine.hpp>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>

namespace openace::engine {

enum class EventClass { Droppable, Normal, Final };

class EventQueue {
public:
    explicit EventQueue(size_t capacity);
    ~EventQueue();
    EventQueue(const EventQueue &) = delete;
    EventQueue &operator=(const EventQueue &) = delete;

    // Reserve a slot for one final event; false when the queue is full of
    // undelivered final events and reservations.
    bool reserve();
    void unreserve();
    // Final events consume one reservation made earlier.
    void push(Event ev, EventClass cls);
    // timeout_s: 0 polls, < 0 waits forever.  nullopt on timeout.
    std::optional<Event> pop(double timeout_s);
    // After close() pop() returns queued events, then nullopt at once.
    void close();

    // Called with the queue lock held whenever the queue becomes non-empty.
    void set_wakeup(std::function<void()> fn);
    int fd() const noexcept { return pipe_[0]; }

    struct Stats {
        size_t queued = 0, reserved = 0, capacity = 0;
        uint64_t pushed = 0, dropped = 0;
    };
    Stats stats() const;

private:
    struct Item {
        Event ev;
        EventClass cls;
    };
    void signal_locked();
    bool evict_one_locked();

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Item> items_;
    size_t capacity_;
    size_t reserved_ = 0;
    uint64_t pushed_ = 0, dropped_total_ = 0, dropped_pending_ = 0;
    bool signaled_ = false, closed_ = false;
    std::function<void()> wakeup_;
    int pipe_[2] = {-1, -1};
};

} // namespace openace::engine
