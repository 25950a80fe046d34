// What the live jobs (broadcast_job.cpp, live_play_job.cpp) share: the
// session they hold, a progress report about once a second that carries
// the chat lines received since the last one, and the job's end (finished,
// failed or cancelled, exactly once) with the session released.
// Loop thread only.
#pragma once

#include "core/error.hpp"
#include "engine/job.hpp"
#include "live/live_descriptor.hpp"
#include "net/uv_handle.hpp"

#include <nlohmann/json.hpp>
#include <uv.h>

#include <exception>
#include <memory>

namespace openace::live {

class LiveEngine;
class LiveSwarm;

class LiveJob : public std::enable_shared_from_this<LiveJob> {
public:
    LiveJob(LiveEngine &engine, engine::JobPtr job);
    virtual ~LiveJob();
    LiveJob(const LiveJob &) = delete;
    LiveJob &operator=(const LiveJob &) = delete;

    // Throws Error when the job cannot start (the engine then fails it).
    virtual void start() = 0;
    void cancel();
    virtual nlohmann::json status() const = 0;
    // The swarm the job plays or broadcasts, once it started (null before).
    const LiveSwarm *swarm() const noexcept { return swarm_; }

protected:
    // Acquires the session of `id` and listens to its chat (once).
    LiveSwarm &hold(const ContentId &id);
    // The 1 s progress tick, cancel on request, and a first report now.
    void start_reporting();
    void report();
    // Ends the job: an Error fails it (Errc::CANCELLED cancels it), no
    // error finishes it with `result`.  Once; later calls do nothing.
    void end(const std::exception_ptr &error, nlohmann::json result = {});
    // What a job lets go of besides the session (its source feed).
    virtual void release() {}

    template <class T> std::weak_ptr<T> weak_self()
    {
        return std::static_pointer_cast<T>(shared_from_this());
    }

    LiveEngine &engine_;
    engine::JobPtr job_;
    ContentId id_{};
    LiveSwarm *swarm_ = nullptr;
    bool ended_ = false;

private:
    static void on_tick(uv_timer_t *t);
    void detach();

    int chat_listener_ = 0;
    nlohmann::json chat_ = nlohmann::json::array(); // lines since the last report
    net::UvHandle<uv_timer_t> tick_;
};

} // namespace openace::live
