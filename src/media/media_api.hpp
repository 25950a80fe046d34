// The media module boundary.  Everything that touches FFmpeg lives in
// libopenace_media.so, loaded with dlopen the first time media work is asked
// for (a probe, a segment or transcode job).  An engine that only serves its
// API never maps FFmpeg's ~170 shared libraries: it starts in milliseconds
// and idles at a few MB instead of ~40 MB.
#pragma once

#include "media/media_job.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>

namespace openace::media {

inline constexpr uint32_t kMediaApiVersion = 1;

// Filled by the module (src/media/module_entry.cpp).  Functions throw
// openace::Error as documented in media_job.hpp.
struct MediaApi {
    uint32_t version = kMediaApiVersion;
    uint32_t size = sizeof(MediaApi);
    // {"version": "5.1.x", "libavformat": "59.27.100", ...}
    nlohmann::json (*ffmpeg_versions)() = nullptr;
    // The probe job's media facts: {"ffmpeg", "hardware_devices", "encoders"}.
    // May block (opens devices): call it off the loop thread.
    nlohmann::json (*probe)(bool hardware, bool hardware_acceleration, const core::Logger &log) = nullptr;
    // FFmpeg's log callback is process-wide: attach=true sends FFmpeg's lines
    // to `log` (component "ffmpeg"); attach=false detaches `log` if it is the
    // current one (FFmpeg's default printer again).
    void (*route_log)(core::Log *log, bool attach) = nullptr;
    void (*validate_segment_job)(const nlohmann::json &) = nullptr;
    nlohmann::json (*run_segment_job)(const nlohmann::json &, MediaJobContext &) = nullptr;
    void (*validate_transcode_job)(const nlohmann::json &) = nullptr;
    nlohmann::json (*run_transcode_job)(const nlohmann::json &, MediaJobContext &) = nullptr;
};

// Loads the module on first use (thread-safe) and returns its table.  Throws
// openace::Error(UNSUPPORTED, "media", "load", ...) naming every path tried.
// Search order: $OPENACE_MEDIA_MODULE; libopenace_media.so beside the binary
// or library that contains this code; the install directory; the build tree.
const MediaApi &media_api();

// Whether the module (and so FFmpeg) is loaded; never loads it.
bool media_loaded() noexcept;

// Where it was loaded from ("" when not loaded).
std::string media_module_path();

} // namespace openace::media

// The module's one exported symbol.
extern "C" const openace::media::MediaApi *openace_media_api_v1(void);
