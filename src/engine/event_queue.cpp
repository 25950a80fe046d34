#include "engine/event_queue.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>

namespace openace::engine {

EventQueue::EventQueue(size_t capacity) : capacity_(capacity < 4 ? 4 : capacity)
{
    if (::pipe2(pipe_, O_NONBLOCK | O_CLOEXEC) != 0)
        pipe_[0] = pipe_[1] = -1; // wakeup fd unavailable; wait_event still works
}

EventQueue::~EventQueue()
{
    for (int fd : pipe_)
        if (fd >= 0)
            ::close(fd);
}

bool EventQueue::reserve()
{
    std::lock_guard lk(mu_);
    if (items_.size() + reserved_ >= capacity_ && !evict_one_locked())
        return false;
    ++reserved_;
    return true;
}

void EventQueue::unreserve()
{
    std::lock_guard lk(mu_);
    if (reserved_ > 0)
        --reserved_;
}

bool EventQueue::evict_one_locked()
{
    for (auto cls : {EventClass::Droppable, EventClass::Normal}) {
        for (auto it = items_.begin(); it != items_.end(); ++it) {
            if (it->cls == cls) {
                items_.erase(it);
                ++dropped_total_;
                ++dropped_pending_;
                return true;
            }
        }
    }
    return false;
}

void EventQueue::push(Event ev, EventClass cls)
{
    std::lock_guard lk(mu_);
    if (closed_)
        return;
    ++pushed_;
    if (cls == EventClass::Final) {
        if (reserved_ > 0)
            --reserved_;
        else if (items_.size() >= capacity_)
            evict_one_locked(); // final event without reservation: make room anyway
    } else if (items_.size() + reserved_ >= capacity_ && !evict_one_locked()) {
        ++dropped_total_;
        ++dropped_pending_;
        signal_locked();
        return;
    }
    items_.push_back(Item{std::move(ev), cls});
    signal_locked();
}

void EventQueue::signal_locked()
{
    cv_.notify_one();
    if (signaled_)
        return;
    signaled_ = true;
    if (pipe_[1] >= 0) {
        char b = 1;
        [[maybe_unused]] auto n = ::write(pipe_[1], &b, 1);
    }
    if (wakeup_)
        wakeup_();
}

std::optional<Event> EventQueue::pop(double timeout_s)
{
    std::unique_lock lk(mu_);
    auto ready = [&] { return closed_ || !items_.empty() || dropped_pending_ > 0; };
    if (timeout_s < 0) {
        cv_.wait(lk, ready);
    } else if (timeout_s > 0) {
        cv_.wait_for(lk, std::chrono::duration<double>(timeout_s), ready);
    }
    std::optional<Event> out;
    if (dropped_pending_ > 0) {
        Event ev;
        ev.id = OPENACE_EVENT_OVERFLOW;
        ev.json = "{\"dropped\":" + std::to_string(dropped_pending_) + "}";
        dropped_pending_ = 0;
        out = std::move(ev);
    } else if (!items_.empty()) {
        out = std::move(items_.front().ev);
        items_.pop_front();
    }
    if (items_.empty() && dropped_pending_ == 0 && signaled_) {
        signaled_ = false;
        char buf[64];
        while (pipe_[0] >= 0 && ::read(pipe_[0], buf, sizeof buf) > 0) {
        }
    }
    return out;
}

void EventQueue::close()
{
    std::lock_guard lk(mu_);
    closed_ = true;
    cv_.notify_all();
}

void EventQueue::set_wakeup(std::function<void()> fn)
{
    std::lock_guard lk(mu_);
    wakeup_ = std::move(fn);
}

EventQueue::Stats EventQueue::stats() const
{
    std::lock_guard lk(mu_);
    return Stats{items_.size(), reserved_, capacity_, pushed_, dropped_total_};
}

} // namespace openace::engine
