#include "media/ffmpeg_info.hpp"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavfilter/avfilter.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/error.h>
#include <libavutil/hwcontext.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
}

#include <fmt/format.h>

namespace openace::media {

static std::string version_of(unsigned v)
{
    return fmt::format("{}.{}.{}", AV_VERSION_MAJOR(v), AV_VERSION_MINOR(v), AV_VERSION_MICRO(v));
}

nlohmann::json ffmpeg_versions()
{
    return {
        {"version", av_version_info()},
        {"libavformat", version_of(avformat_version())},
        {"libavcodec", version_of(avcodec_version())},
        {"libavutil", version_of(avutil_version())},
        {"libavfilter", version_of(avfilter_version())},
        {"libswscale", version_of(swscale_version())},
        {"libswresample", version_of(swresample_version())},
    };
}

nlohmann::json probe_hw_devices()
{
    nlohmann::json out = nlohmann::json::array();
    // Quiet FFmpeg while probing: failing to open absent devices is expected.
    int old_level = av_log_get_level();
    av_log_set_level(AV_LOG_QUIET);
    for (auto t = av_hwdevice_iterate_types(AV_HWDEVICE_TYPE_NONE); t != AV_HWDEVICE_TYPE_NONE;
         t = av_hwdevice_iterate_types(t)) {
        AVBufferRef *dev = nullptr;
        int rc = av_hwdevice_ctx_create(&dev, t, nullptr, nullptr, 0);
        nlohmann::json d = {{"type", av_hwdevice_get_type_name(t)}, {"available", rc >= 0}};
        if (rc < 0) {
            char buf[AV_ERROR_MAX_STRING_SIZE] = {};
            av_strerror(rc, buf, sizeof buf);
            d["error"] = buf;
        }
        av_buffer_unref(&dev);
        out.push_back(std::move(d));
    }
    av_log_set_level(old_level);
    return out;
}

} // namespace openace::media
