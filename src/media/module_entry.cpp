// The media module's entry point (libopenace_media.so): the table the core
// calls through (media/media_api.hpp), plus the two process-wide FFmpeg
// concerns that must live beside FFmpeg: its log callback and the probe.
#include "core/log.hpp"
#include "media/encoder_select.hpp"
#include "media/ffmpeg_info.hpp"
#include "media/media_api.hpp"

extern "C" {
#include <libavutil/log.h>
}

#include <cstdarg>
#include <mutex>

namespace openace::media {

namespace {

// FFmpeg logs from every media thread through one process-wide callback; it
// goes to the central log of the engine that attached last, or to FFmpeg's
// default stderr printer when none is attached.
std::mutex g_av_log_mu;
core::Log *g_av_log = nullptr;

void av_log_to_central(void *avcl, int level, const char *fmt, va_list vl)
{
    if (level > av_log_get_level() || level > AV_LOG_VERBOSE)
        return;
    std::unique_lock lock(g_av_log_mu);
    if (!g_av_log) {
        lock.unlock();
        av_log_default_callback(avcl, level, fmt, vl);
        return;
    }
    // FFmpeg's errors are mostly recoverable (a damaged packet, a probe that
    // failed): our own code reports the ones that end a job.
    core::LogLevel ours = level <= AV_LOG_ERROR     ? core::LogLevel::Warn
                          : level <= AV_LOG_WARNING ? core::LogLevel::Debug
                                                    : core::LogLevel::Trace;
    if (!g_av_log->enabled(ours))
        return;
    char buf[1024];
    int print_prefix = 1;
    av_log_format_line2(avcl, level, fmt, vl, buf, sizeof buf, &print_prefix);
    std::string line(buf);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
        line.pop_back();
    if (!line.empty())
        g_av_log->write(ours, "ffmpeg", 0, std::move(line));
}

void route_log(core::Log *log, bool attach)
{
    std::lock_guard lock(g_av_log_mu);
    if (attach) {
        g_av_log = log;
        av_log_set_callback(&av_log_to_central);
    } else if (g_av_log == log) {
        g_av_log = nullptr;
    }
}

nlohmann::json probe(bool hardware, bool hardware_acceleration, const core::Logger &log)
{
    nlohmann::json out;
    out["ffmpeg"] = ffmpeg_versions();
    out["hardware_devices"] = hardware ? probe_hw_devices() : nlohmann::json::array();
    // H.264 encoder selection as the transcoder sees it (cached per process
    // after the first probe).
    if (hardware || !hardware_acceleration) {
        out["encoders"] = to_json(select_h264_encoder(hardware_acceleration, log));
    } else {
        auto sel = probe_h264_encoders(false, "skipped: the probe job asked for \"hardware\": false");
        sel.hardware_acceleration = true;
        out["encoders"] = to_json(sel);
    }
    return out;
}

MediaApi make_api()
{
    MediaApi api;
    api.ffmpeg_versions = &ffmpeg_versions;
    api.probe = &probe;
    api.route_log = &route_log;
    api.validate_segment_job = &validate_segment_job;
    api.run_segment_job = &run_segment_job;
    api.validate_transcode_job = &validate_transcode_job;
    api.run_transcode_job = &run_transcode_job;
    return api;
}

} // namespace

} // namespace openace::media

extern "C" __attribute__((visibility("default"))) const openace::media::MediaApi *openace_media_api_v1(void)
{
    static const openace::media::MediaApi api = openace::media::make_api();
    return &api;
}
