// EngineManager: owns the five internal engines, starts them in dependency
// order, stops them in reverse, restarts one without the others, and routes
// jobs to the engine that owns their type.  Loop thread only.
#pragma once

#include "engine/job_queue.hpp"
#include "engine/sub_engine.hpp"

#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace openace::engine {

class EngineManager {
public:
    EngineManager(EngineContext &ctx, EventQueue &events);
    ~EngineManager();

    // Engines must be added after their dependencies (that order is the
    // start order).  Throws EINTERNAL on an unknown dependency.
    void add(std::unique_ptr<SubEngine> engine);
    SubEngine *find(std::string_view name) const;
    const std::vector<std::unique_ptr<SubEngine>> &engines() const noexcept { return engines_; }

    // Starts every engine in dependency order.  Throws on the first failure
    // (the engine is left in Error with the reason).
    void start_all();
    // Cancels all jobs and stops every engine in reverse order.
    void stop_all(std::function<void()> done);

    // action: start | stop | pause | resume | restart.  start also starts
    // stopped dependencies; stop also stops running dependents (as a service
    // manager would); restart touches only the named engine.  `done` gets
    // nullptr or the error.
    using Done = std::function<void(std::exception_ptr)>;
    void control(std::string_view engine, std::string_view action, Done done);

    JobQueue &jobs() noexcept { return jobs_; }
    SubEngine *owner_of(std::string_view job_type) const;
    // The engine that runs this job (spec-aware: see SubEngine::owns_job).
    SubEngine *owner_of(std::string_view job_type, const nlohmann::json &spec) const;
    std::vector<std::string> job_types() const;
    // Schedules JobQueue::dispatch on the next loop iteration (coalesced).
    void post_dispatch();

    // Called by SubEngine::set_state.
    void engine_state_changed(SubEngine &engine);

    nlohmann::json stats_json() const;

private:
    std::vector<SubEngine *> dependents_of(const SubEngine &engine) const;
    void stop_sequence(std::vector<SubEngine *> order, size_t i, std::function<void()> done);

    EngineContext &ctx_;
    EventQueue &events_;
    std::vector<std::unique_ptr<SubEngine>> engines_;
    JobQueue jobs_;
    uv_idle_t *dispatch_idle_ = nullptr; // heap: freed in its close callback
    bool dispatch_pending_ = false;
};

} // namespace openace::engine
