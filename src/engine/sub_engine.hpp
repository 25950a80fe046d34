// The lifecycle every internal engine shares (Main, Segmenter, Live,
// Transport, Streamer; DESIGN §2).  All members run on the loop thread.
#pragma once

#include "core/config.hpp"
#include "core/log.hpp"

#include <nlohmann/json.hpp>
#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace openace::engine {

class EngineManager;
class EventQueue;
class Job;
using JobPtr = std::shared_ptr<Job>;

enum class EngineState { Uninitialized, Initializing, Ready, Running, Paused, Stopping, Stopped, Error };
const char *to_string(EngineState s) noexcept;

// What every internal engine can reach.  Owned by Engine::Impl; outlives
// every SubEngine.
struct EngineContext {
    uv_loop_t *loop = nullptr;
    core::Log *log = nullptr;
    const core::Config *config = nullptr;
    EngineManager *manager = nullptr;
    // The engine-wide statistics object (openace_get_stats), for /api/stats
    // and /metrics.
    std::function<nlohmann::json()> stats;
    std::chrono::steady_clock::time_point created = std::chrono::steady_clock::now();
};

class SubEngine {
public:
    SubEngine(EngineContext &ctx, std::string name, std::vector<std::string> dependencies);
    virtual ~SubEngine() = default;
    SubEngine(const SubEngine &) = delete;
    SubEngine &operator=(const SubEngine &) = delete;

    const std::string &name() const noexcept { return name_; }
    const std::vector<std::string> &dependencies() const noexcept { return deps_; }
    EngineState state() const noexcept { return state_; }
    const std::string &reason() const noexcept { return reason_; }
    bool running() const noexcept { return state_ == EngineState::Running; }

    // Lifecycle.  Errors move the engine to Error with the reason and are
    // rethrown as openace::Error.  stop() is asynchronous: `done` runs once
    // the engine's handles are closed.
    void initialize();
    void start();
    void pause();
    void resume();
    void stop(std::function<void()> done);

    // Jobs.  An engine owns job types; validate_job throws Error(EJOB)
    // naming the field; run_job must end the job (finish/fail/cancelled) on
    // the loop thread, now or later.
    virtual bool owns_job(std::string_view /*type*/) const { return false; }
    // Whether this engine runs this particular job (two engines may share a
    // type: "play" of a torrent vs of a live stream).  Default: owns_job(type).
    virtual bool owns_job(std::string_view type, const nlohmann::json & /*spec*/) const { return owns_job(type); }
    virtual void validate_job(const nlohmann::json & /*spec*/) const {}
    virtual void run_job(const JobPtr & /*job*/) {}

    // Statistics (DESIGN §7).
    void record_operation(bool ok, double elapsed_ms) noexcept;
    nlohmann::json stats_json() const;
    const char *health() const noexcept;
    virtual size_t memory_bytes() const { return 0; }

protected:
    virtual void on_initialize() {}
    virtual void on_start() {}
    virtual void on_pause() {}
    virtual void on_resume() {}
    virtual void on_stop(std::function<void()> done) { done(); }
    // Engine-specific counters merged into stats_json()["details"].
    virtual nlohmann::json details() const { return nlohmann::json::object(); }

    void set_state(EngineState s, std::string reason = {});
    EngineContext &ctx_;
    core::Logger log_;

private:
    std::string name_;
    std::vector<std::string> deps_;
    EngineState state_ = EngineState::Uninitialized;
    std::string reason_;
    std::chrono::steady_clock::time_point started_at_{};
    uint64_t ops_total_ = 0, ops_ok_ = 0, ops_failed_ = 0;
    double ops_ms_total_ = 0;
};

} // namespace openace::engine
