// A job: one unit of work submitted as JSON (DESIGN §4).  Lives on the loop
// thread; the owning engine ends it through JobQueue.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace openace::engine {

class SubEngine;

enum class JobState { Queued, Running, Done, Failed, Cancelled };
const char *to_string(JobState s) noexcept;
inline bool is_final(JobState s) noexcept { return s >= JobState::Done; }

class Job {
public:
    int64_t id = 0;
    std::string type;
    int priority = 0;
    uint64_t order = 0; // submission order, FIFO within a priority
    nlohmann::json spec;
    JobState state = JobState::Queued;
    SubEngine *owner = nullptr;
    int64_t submitted_ms = 0, started_ms = 0, finished_ms = 0;

    // Set by the running engine: asked to stop the work.  The engine then
    // calls JobQueue::cancelled(job) (now or later).
    std::function<void()> on_cancel;
    bool cancel_requested = false;
};

using JobPtr = std::shared_ptr<Job>;

} // namespace openace::engine
