// SegmenterEngine (DESIGN §2): FFmpeg ingest, keyframe-aligned chunks, HLS.
// Owns the job types "segment" (remux to VOD HLS, segment_job.cpp) and
// "transcode" (ABR ladder, transcode_job.cpp).  Each job runs on its own
// media thread (DESIGN §3); its progress, chunks and end come back to the
// loop thread through one uv_async_t and a mutex-guarded queue that is
// drained whole on every wakeup.
#pragma once

#include "engine/sub_engine.hpp"
#include "media/chunk.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace openace::media {

struct MediaApi;

class SegmenterEngine : public engine::SubEngine {
public:
    explicit SegmenterEngine(engine::EngineContext &ctx);
    ~SegmenterEngine() override;

    bool owns_job(std::string_view type) const override;
    void validate_job(const nlohmann::json &spec) const override;
    void run_job(const engine::JobPtr &job) override;

    // Where chunks of live transcode jobs (no output_dir) go.  Loop thread;
    // called on the loop thread with the job id and each chunk.
    using ChunkSink = std::function<void(int64_t job_id, Chunk)>;
    void set_chunk_sink(ChunkSink sink) { chunk_sink_ = std::move(sink); }

    // A media feed for another engine's job (the LiveEngine's broadcast):
    // runs `media_spec` (a "segment" spec without output_dir, or a
    // "transcode" spec without output_dir, by `media_spec["type"]`) on a
    // media thread of its own.  Every chunk goes to on_chunk, and the end
    // (result, or the error: Errc::CANCELLED after stop_feed) to on_end,
    // both on the loop thread; the segmenter never ends `job` itself.
    // Throws Error(STATE) when the engine is not running, Error(UNSUPPORTED)
    // when the media module cannot load.  Loop thread.
    struct Feed {
        std::function<void(Chunk)> on_chunk;
        std::function<void(nlohmann::json result, std::exception_ptr error)> on_end;
    };
    void start_feed(const engine::JobPtr &job, nlohmann::json media_spec, Feed feed);
    // Asks the feed of `job_id` to stop; on_end follows (soon) unless the
    // feed has ended already.
    void stop_feed(int64_t job_id);

protected:
    void on_start() override;
    void on_stop(std::function<void()> done) override;
    nlohmann::json details() const override;

private:
    struct Run {
        engine::JobPtr job;
        std::atomic<bool> cancel{false};
        std::thread thread;
        Feed feed; // set for feeds: they end through feed.on_end
    };

    void start_run(const engine::JobPtr &job, std::string type, nlohmann::json spec, Feed feed);

    // Media thread → loop thread.  Returns false once the engine stopped
    // taking posts (the closure is dropped).
    bool post(std::function<void()> fn);
    static void on_async(uv_async_t *h);
    void drain();
    void end_run(int64_t job_id, nlohmann::json result, std::exception_ptr error);
    // Stops taking posts, cancels every job thread and joins it.
    void stop_threads();
    // The media module (loaded on first use) with FFmpeg's log routed to ours.
    const MediaApi &api() const;

    // Set once the media module's log routing points at our log.
    mutable bool log_routed_ = false;
    uv_async_t *async_ = nullptr; // heap: freed in its close callback
    std::mutex mu_;
    std::vector<std::function<void()>> queue_; // guarded by mu_
    bool accepting_ = false;                   // guarded by mu_
    std::map<int64_t, std::unique_ptr<Run>> runs_; // loop thread only
    ChunkSink chunk_sink_;
    uint64_t jobs_started_ = 0, chunks_out_ = 0;
};

} // namespace openace::media
