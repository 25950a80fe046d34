#include "media/segmenter_engine.hpp"

#include "media/ffmpeg_info.hpp"

namespace openace::media {

SegmenterEngine::SegmenterEngine(engine::EngineContext &ctx)
    : SubEngine(ctx, "segmenter", {"main"})
{
}

void SegmenterEngine::on_initialize()
{
    ffmpeg_ = ffmpeg_versions();
    log_.debug("FFmpeg {} (libavformat {})", ffmpeg_.value("version", "?"),
               ffmpeg_.value("libavformat", "?"));
}

nlohmann::json SegmenterEngine::details() const
{
    return {{"ffmpeg", ffmpeg_}, {"broadcasts", 0}};
}

} // namespace openace::media
