// Media jobs (segment, transcode) run on their own media thread (DESIGN §3).
// The SegmenterEngine starts the thread, marshals callbacks to the loop
// thread, and ends the job from the result or the exception.
#pragma once

#include "core/log.hpp"
#include "media/chunk.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <functional>

namespace openace::media {

struct MediaJobContext {
    // Called from the media thread; the engine turns them into events.  Keep
    // progress calls to a few per second.
    std::function<void(nlohmann::json)> progress;
    // Live output (transcode/broadcast to chunks): every finished chunk.
    std::function<void(Chunk)> chunk;
    core::Logger log;
    // Set when the job is cancelled: stop soon (FFmpeg I/O is interrupted
    // through an AVIOInterruptCB reading it).
    const std::atomic<bool> *cancel = nullptr;
    bool hardware_acceleration = false; // streaming.hardware_acceleration
    double piece_duration = 1.0;        // streaming.piece_duration: live chunk target
    bool cancelled() const noexcept { return cancel && cancel->load(std::memory_order_relaxed); }
};

// Throw openace::Error(Errc::JOB, "job", "validate", "field 'x': ...") for a
// bad spec.  Called on the loop thread at submit: cheap, no I/O.
void validate_segment_job(const nlohmann::json &spec);
void validate_transcode_job(const nlohmann::json &spec);

// Run to completion on the calling media thread and return the job's result
// object, or throw openace::Error naming the input (Errc::MEDIA, Errc::IO,
// Errc::CANCELLED when ctx.cancel was set).
nlohmann::json run_segment_job(const nlohmann::json &spec, MediaJobContext &ctx);
nlohmann::json run_transcode_job(const nlohmann::json &spec, MediaJobContext &ctx);

} // namespace openace::media
