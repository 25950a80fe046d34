#include "media/segmenter_engine.hpp"

#include "core/error.hpp"
#include "engine/engine_manager.hpp"
#include "engine/job.hpp"
#include "media/media_api.hpp"
#include "media/media_job.hpp"
#include "net/uv_handle.hpp"


namespace openace::media {

SegmenterEngine::SegmenterEngine(engine::EngineContext &ctx)
    : SubEngine(ctx, "segmenter", {"main"})
{
}

SegmenterEngine::~SegmenterEngine()
{
    // Normally on_stop has joined everything; never let a joinable thread
    // reach std::thread's destructor.
    stop_threads();
    if (log_routed_)
        media_api().route_log(ctx_.log, false);
}

const MediaApi &SegmenterEngine::api() const
{
    // The first media job loads FFmpeg (media_api.hpp): an engine that never
    // segments never maps it.  Loop thread only.
    const MediaApi &api = media_api();
    if (!log_routed_) {
        api.route_log(ctx_.log, true);
        log_routed_ = true;
        auto v = api.ffmpeg_versions();
        log_.info("media module loaded from {}: FFmpeg {} (libavformat {})", media_module_path(),
                  v.value("version", "?"), v.value("libavformat", "?"));
    }
    return api;
}

bool SegmenterEngine::owns_job(std::string_view type) const
{
    return type == "segment" || type == "transcode";
}

void SegmenterEngine::validate_job(const nlohmann::json &spec) const
{
    if (spec.value("type", "") == "transcode")
        api().validate_transcode_job(spec);
    else
        api().validate_segment_job(spec);
}

void SegmenterEngine::on_start()
{
    auto *h = new uv_async_t{};
    if (int rc = uv_async_init(ctx_.loop, h, &SegmenterEngine::on_async)) {
        delete h;
        throw_errorf(Errc::INTERNAL, "segmenter", "start", "uv_async_init: {}", uv_strerror(rc));
    }
    h->data = this;
    async_ = h;
    std::lock_guard lock(mu_);
    accepting_ = true;
}

bool SegmenterEngine::post(std::function<void()> fn)
{
    std::lock_guard lock(mu_);
    if (!accepting_)
        return false;
    queue_.push_back(std::move(fn));
    uv_async_send(async_);
    return true;
}

void SegmenterEngine::on_async(uv_async_t *h)
{
    static_cast<SegmenterEngine *>(h->data)->drain();
}

void SegmenterEngine::drain()
{
    std::vector<std::function<void()>> batch;
    {
        std::lock_guard lock(mu_);
        batch.swap(queue_);
    }
    for (auto &fn : batch) {
        try {
            fn();
        } catch (const std::exception &e) {
            log_.error("media thread callback failed: {}", e.what());
        }
    }
}

void SegmenterEngine::run_job(const engine::JobPtr &job)
{
    start_run(job, job->type, job->spec, {});
}

void SegmenterEngine::start_feed(const engine::JobPtr &job, nlohmann::json media_spec, Feed feed)
{
    std::string type = media_spec.value("type", "segment");
    start_run(job, std::move(type), std::move(media_spec), std::move(feed));
}

void SegmenterEngine::stop_feed(int64_t job_id)
{
    if (auto it = runs_.find(job_id); it != runs_.end())
        it->second->cancel = true;
}

void SegmenterEngine::start_run(const engine::JobPtr &job, std::string type, nlohmann::json spec, Feed feed)
{
    if (!async_)
        throw_error(Errc::STATE, "segmenter", job->type, "the segmenter engine is not running");
    auto run = std::make_unique<Run>();
    run->job = job;
    const bool is_feed = static_cast<bool>(feed.on_end);
    run->feed = std::move(feed);
    Run *r = run.get();
    const int64_t id = job->id;

    // Built here, on the loop thread; the thread owns the copies.
    MediaJobContext mctx;
    mctx.log = log_.with_job(id);
    mctx.cancel = &r->cancel;
    mctx.hardware_acceleration = ctx_.config && ctx_.config->streaming.hardware_acceleration;
    if (ctx_.config)
        mctx.piece_duration = ctx_.config->streaming.piece_duration;
    if (!is_feed)
        mctx.progress = [this, id](nlohmann::json p) {
            post([this, id, p = std::move(p)]() mutable {
                if (auto it = runs_.find(id); it != runs_.end())
                    ctx_.manager->jobs().progress(it->second->job, std::move(p));
            });
        };
    mctx.chunk = [this, id](Chunk c) {
        post([this, id, c = std::move(c)]() mutable {
            ++chunks_out_;
            auto it = runs_.find(id);
            if (it != runs_.end() && it->second->feed.on_chunk)
                it->second->feed.on_chunk(std::move(c));
            else if (chunk_sink_)
                chunk_sink_(id, std::move(c));
        });
    };

    const MediaApi &m = api(); // throws when the module cannot load
    // The run must be registered before its thread can post its end.
    runs_.emplace(id, std::move(run));
    if (!is_feed)
        job->on_cancel = [r] { r->cancel = true; };
    try {
        r->thread = std::thread([this, &m, id, spec = std::move(spec), type = std::move(type),
                                 mctx = std::move(mctx)]() mutable {
            nlohmann::json result;
            std::exception_ptr error;
            try {
                result = type == "transcode" ? m.run_transcode_job(spec, mctx) : m.run_segment_job(spec, mctx);
            } catch (...) {
                error = std::current_exception();
            }
            // Drop our callbacks (they capture nothing owned) before the end.
            post([this, id, result = std::move(result), error]() mutable {
                end_run(id, std::move(result), error);
            });
        });
    } catch (const std::system_error &e) {
        if (!is_feed)
            job->on_cancel = nullptr;
        runs_.erase(id);
        throw_errorf(Errc::INTERNAL, "segmenter", job->type, "cannot start a media thread: {}", e.what());
    }
    ++jobs_started_;
}

void SegmenterEngine::end_run(int64_t id, nlohmann::json result, std::exception_ptr error)
{
    auto it = runs_.find(id);
    if (it == runs_.end())
        return;
    std::unique_ptr<Run> run = std::move(it->second);
    runs_.erase(it);
    if (run->thread.joinable())
        run->thread.join(); // it posted this as its last act
    if (run->feed.on_end) {
        if (!error && run->cancel)
            error = std::make_exception_ptr(Error(Errc::CANCELLED, "segmenter", "feed", "stopped"));
        run->feed.on_end(std::move(result), error);
        return;
    }
    engine::JobPtr job = run->job;
    auto &jobs = ctx_.manager->jobs();
    if (job->cancel_requested || run->cancel) {
        jobs.cancelled(job);
        return;
    }
    if (!error) {
        jobs.finish(job, std::move(result));
        return;
    }
    try {
        std::rethrow_exception(error);
    } catch (const Error &e) {
        if (e.code() == Errc::CANCELLED)
            jobs.cancelled(job);
        else
            jobs.fail(job, e);
    } catch (const std::exception &e) {
        jobs.fail(job, Error(Errc::INTERNAL, "segmenter", job->type, e.what()));
    } catch (...) {
        jobs.fail(job, Error(Errc::INTERNAL, "segmenter", job->type, "unknown exception"));
    }
}

void SegmenterEngine::stop_threads()
{
    {
        std::lock_guard lock(mu_);
        accepting_ = false;
    }
    // They notice within a few tens of milliseconds: every blocking FFmpeg
    // call polls the cancel flag.
    for (auto &[id, run] : runs_)
        run->cancel = true;
    for (auto &[id, run] : runs_)
        if (run->thread.joinable())
            run->thread.join();
}

void SegmenterEngine::on_stop(std::function<void()> done)
{
    // The job queue has already ended these jobs (engine_stopping).
    stop_threads();
    runs_.clear();
    {
        std::lock_guard lock(mu_);
        queue_.clear();
    }
    if (!async_) {
        done();
        return;
    }
    auto *h = async_;
    async_ = nullptr;
    net::close_and_delete(h, std::move(done));
}

nlohmann::json SegmenterEngine::details() const
{
    nlohmann::json ffmpeg = {{"loaded", media_loaded()}};
    if (media_loaded()) {
        ffmpeg = media_api().ffmpeg_versions();
        ffmpeg["loaded"] = true;
        ffmpeg["module"] = media_module_path();
    }
    return {{"ffmpeg", ffmpeg},
            {"broadcasts", 0},
            {"jobs_running", runs_.size()},
            {"jobs_started", jobs_started_},
            {"chunks_out", chunks_out_}};
}

} // namespace openace::media
