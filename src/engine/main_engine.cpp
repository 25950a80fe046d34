#include "engine/main_engine.hpp"

#include "core/error.hpp"
#include "engine/engine_manager.hpp"
#include "media/media_api.hpp"

#include <mbedtls/version.h>

#include <chrono>

namespace openace::engine {

MainEngine::MainEngine(EngineContext &ctx) : SubEngine(ctx, "main", {}) {}

nlohmann::json MainEngine::build_info()
{
    char tls[32] = {};
    mbedtls_version_get_string_full(tls);
    return {
        {"version", version_string()},
        {"api_version", openace_api_version()},
        {"build_type", OPENACE_BUILD_TYPE_STRING},
        {"sanitize", OPENACE_SANITIZE_STRING},
        {"compiler", fmt::format("{} {}", "GCC", __VERSION__)},
        {"cxx_standard", __cplusplus},
        {"libuv", uv_version_string()},
        {"tls", tls},
        {"platform", "linux"},
    };
}

void MainEngine::validate_job(const nlohmann::json &spec) const
{
    // probe: {"type":"probe","priority":N?,"hardware":bool?}
    for (auto &[key, value] : spec.items()) {
        if (key == "type" || key == "priority")
            continue;
        if (key == "hardware") {
            if (!value.is_boolean())
                throw_errorf(Errc::JOB, "job", "validate",
                             "field 'hardware': expected a boolean, got {}", value.type_name());
            continue;
        }
        throw_errorf(Errc::JOB, "job", "validate",
                     "field '{}': unknown field for a probe job (known: type, priority, hardware)",
                     key);
    }
}

namespace {
// One probe running on the libuv thread pool: opening hardware devices may
// block for a long time, so it never runs on the loop.
struct ProbeWork {
    uv_work_t req{};
    JobPtr job;
    MainEngine *engine = nullptr;
    EngineManager *manager = nullptr;
    size_t *in_flight = nullptr;
    bool hardware = true;
    bool hardware_acceleration = false; // streaming.hardware_acceleration
    core::Logger log;
    nlohmann::json result;
    std::string error;
};
} // namespace

void MainEngine::run_job(const JobPtr &job)
{
    auto *w = new ProbeWork;
    w->req.data = w;
    w->job = job;
    w->engine = this;
    w->manager = ctx_.manager;
    w->in_flight = &probes_in_flight_;
    w->hardware = job->spec.value("hardware", true);
    w->hardware_acceleration = ctx_.config && ctx_.config->streaming.hardware_acceleration;
    w->log = log_.with_job(job->id);
    ++probes_in_flight_;
    // Cancelling a queued work request removes it from the pool; a request
    // already running finishes and its result is dropped.
    job->on_cancel = [w] { uv_cancel(reinterpret_cast<uv_req_t *>(&w->req)); };
    int rc = uv_queue_work(
        ctx_.loop, &w->req,
        [](uv_work_t *req) {
            auto *w = static_cast<ProbeWork *>(req->data);
            try {
                auto t0 = std::chrono::steady_clock::now();
                w->result = build_info();
                // Loads the media module (FFmpeg) on first use: the thread
                // pool, not the loop, pays for mapping it.
                w->result.update(media::media_api().probe(w->hardware, w->hardware_acceleration, w->log));
                w->result["probe_ms"] = std::chrono::duration<double, std::milli>(
                                            std::chrono::steady_clock::now() - t0)
                                            .count();
            } catch (const std::exception &e) {
                w->error = e.what();
            }
        },
        [](uv_work_t *req, int status) {
            std::unique_ptr<ProbeWork> w(static_cast<ProbeWork *>(req->data));
            --*w->in_flight;
            auto &jobs = w->manager->jobs();
            if (status == UV_ECANCELED || w->job->cancel_requested)
                jobs.cancelled(w->job);
            else if (!w->error.empty())
                jobs.fail(w->job, Error(Errc::INTERNAL, "main", "probe", w->error));
            else
                jobs.finish(w->job, std::move(w->result));
        });
    if (rc != 0) {
        --probes_in_flight_;
        job->on_cancel = nullptr;
        delete w;
        throw_errorf(Errc::INTERNAL, "main", "probe", "cannot queue probe work: {}",
                     uv_strerror(rc));
    }
}

nlohmann::json MainEngine::details() const
{
    return {{"probes_in_flight", probes_in_flight_}};
}

} // namespace openace::engine
