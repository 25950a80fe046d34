#include "engine/sub_engine.hpp"

#include "core/error.hpp"
#include "engine/engine_manager.hpp"

namespace openace::engine {

const char *to_string(EngineState s) noexcept
{
    switch (s) {
    case EngineState::Uninitialized: return "uninitialized";
    case EngineState::Initializing: return "initializing";
    case EngineState::Ready: return "ready";
    case EngineState::Running: return "running";
    case EngineState::Paused: return "paused";
    case EngineState::Stopping: return "stopping";
    case EngineState::Stopped: return "stopped";
    case EngineState::Error: return "error";
    }
    return "unknown";
}

SubEngine::SubEngine(EngineContext &ctx, std::string name, std::vector<std::string> dependencies)
    : ctx_(ctx), log_(*ctx.log, name), name_(std::move(name)), deps_(std::move(dependencies))
{
}

void SubEngine::set_state(EngineState s, std::string reason)
{
    if (s == state_ && reason == reason_)
        return;
    state_ = s;
    reason_ = std::move(reason);
    if (s == EngineState::Running && started_at_ == std::chrono::steady_clock::time_point{})
        started_at_ = std::chrono::steady_clock::now();
    if (s == EngineState::Stopped || s == EngineState::Error)
        started_at_ = {};
    if (reason_.empty())
        log_.debug("state {}", to_string(s));
    else
        log_.info("state {}: {}", to_string(s), reason_);
    if (ctx_.manager)
        ctx_.manager->engine_state_changed(*this);
}

// Runs one lifecycle step; a failure leaves the engine in Error with the
// reason and is rethrown with the engine as component.
template <class F> static void guarded(SubEngine &self, const char *op, F &&fn,
                                       const std::function<void(std::string)> &to_error)
{
    try {
        fn();
    } catch (const Error &e) {
        to_error(e.detail());
        throw Error(e.code(), self.name(), op, e.detail());
    } catch (const std::exception &e) {
        to_error(e.what());
        throw Error(Errc::INTERNAL, self.name(), op, e.what());
    }
}

void SubEngine::initialize()
{
    if (state_ != EngineState::Uninitialized && state_ != EngineState::Stopped &&
        state_ != EngineState::Error)
        return;
    set_state(EngineState::Initializing);
    guarded(*this, "initialize", [&] { on_initialize(); },
            [&](std::string why) { set_state(EngineState::Error, std::move(why)); });
    set_state(EngineState::Ready);
}

void SubEngine::start()
{
    if (state_ == EngineState::Running || state_ == EngineState::Paused)
        return;
    if (state_ == EngineState::Stopping)
        throw_errorf(Errc::STATE, name_, "start", "engine '{}' is still stopping", name_);
    initialize();
    guarded(*this, "start", [&] { on_start(); },
            [&](std::string why) { set_state(EngineState::Error, std::move(why)); });
    set_state(EngineState::Running);
}

void SubEngine::pause()
{
    if (state_ == EngineState::Paused)
        return;
    if (state_ != EngineState::Running)
        throw_errorf(Errc::STATE, name_, "pause", "engine '{}' is {}, not running", name_,
                     to_string(state_));
    on_pause();
    set_state(EngineState::Paused);
}

void SubEngine::resume()
{
    if (state_ == EngineState::Running)
        return;
    if (state_ != EngineState::Paused)
        throw_errorf(Errc::STATE, name_, "resume", "engine '{}' is {}, not paused", name_,
                     to_string(state_));
    on_resume();
    set_state(EngineState::Running);
}

void SubEngine::stop(std::function<void()> done)
{
    if (state_ != EngineState::Running && state_ != EngineState::Paused &&
        state_ != EngineState::Ready) {
        if (state_ == EngineState::Initializing || state_ == EngineState::Uninitialized)
            set_state(EngineState::Stopped);
        done();
        return;
    }
    set_state(EngineState::Stopping);
    on_stop([this, done = std::move(done)] {
        set_state(EngineState::Stopped);
        done();
    });
}

void SubEngine::record_operation(bool ok, double elapsed_ms) noexcept
{
    ++ops_total_;
    (ok ? ops_ok_ : ops_failed_) += 1;
    ops_ms_total_ += elapsed_ms;
}

const char *SubEngine::health() const noexcept
{
    if (state_ == EngineState::Error)
        return "critical";
    if (state_ != EngineState::Running)
        return "warning";
    double failed = ops_total_ ? double(ops_failed_) / double(ops_total_) : 0.0;
    if (failed > 0.10)
        return "critical";
    if (failed >= 0.05)
        return "warning";
    return "healthy";
}

nlohmann::json SubEngine::stats_json() const
{
    using namespace std::chrono;
    int64_t uptime = 0;
    if (started_at_ != steady_clock::time_point{})
        uptime = duration_cast<milliseconds>(steady_clock::now() - started_at_).count();
    nlohmann::json j = {
        {"state", to_string(state_)},
        {"reason", reason_},
        {"uptime_ms", uptime},
        {"operations", {{"total", ops_total_}, {"successful", ops_ok_}, {"failed", ops_failed_}}},
        {"avg_response_ms", ops_total_ ? ops_ms_total_ / double(ops_total_) : 0.0},
        {"memory_bytes", memory_bytes()},
        {"health", health()},
        {"dependencies", deps_},
    };
    j["details"] = details();
    return j;
}

} // namespace openace::engine
