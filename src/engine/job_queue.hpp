// The job queue (DESIGN §2, §4): validates job JSON, assigns ids, queues by
// priority, starts jobs on their owning engine when it runs, and emits
// JOB_STATE events queued → running → done | failed | cancelled.  Loop
// thread only.
#pragma once

#include "engine/event_queue.hpp"
#include "engine/job.hpp"
#include "engine/sub_engine.hpp"

#include <openace/engine.hpp>

#include <deque>
#include <map>
#include <string_view>
#include <vector>

namespace openace::engine {

class JobQueue {
public:
    JobQueue(EngineContext &ctx, EventQueue &events, size_t max_active);

    // Throws Error: EPARSE (not JSON), EJOB (field named), EBUSY (no event
    // slot for the final event).
    int64_t submit(std::string_view job_json);
    // Throws Error: ENOTFOUND, ESTATE (already ended).
    void cancel(int64_t id);

    // Called by the owning engine for a running job.
    void progress(const JobPtr &job, nlohmann::json data);
    void finish(const JobPtr &job, nlohmann::json result);
    void fail(const JobPtr &job, const Error &err);
    void cancelled(const JobPtr &job);

    // Starts queued jobs whose engine is running, highest priority first,
    // FIFO within a priority, up to max_active at once.
    void dispatch();
    // The engine is going away: its running jobs fail, queued ones wait.
    void engine_stopping(SubEngine &engine);
    // Shutdown: every unfinished job ends cancelled.
    void cancel_all();

    size_t active() const noexcept { return running_.size(); }
    nlohmann::json stats_json() const;

private:
    void emit_state(const JobPtr &job, nlohmann::json extra = nlohmann::json::object());
    void end(const JobPtr &job, JobState state, nlohmann::json extra);
    void remember_finished(const JobPtr &job);

    EngineContext &ctx_;
    EventQueue &events_;
    size_t max_active_;
    core::Logger log_;
    int64_t next_id_ = 1;
    uint64_t next_order_ = 0;
    std::vector<JobPtr> queued_;
    std::map<int64_t, JobPtr> running_;
    std::deque<int64_t> finished_order_;     // bounded memory of ended ids
    std::map<int64_t, JobState> finished_;
    uint64_t submitted_ = 0, done_ = 0, failed_ = 0, cancelled_ = 0, rejected_ = 0;
};

} // namespace openace::engine
