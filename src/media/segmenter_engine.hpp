// SegmenterEngine (DESIGN §2): FFmpeg ingest, keyframe-aligned chunks, HLS.
// The foundation gives it its lifecycle and the FFmpeg facts it reports; the
// segmenter issue adds the segment and transcode jobs.
#pragma once

#include "engine/sub_engine.hpp"

namespace openace::media {

class SegmenterEngine : public engine::SubEngine {
public:
    explicit SegmenterEngine(engine::EngineContext &ctx);

protected:
    void on_initialize() override;
    nlohmann::json details() const override;

private:
    nlohmann::json ffmpeg_;
};

} // namespace openace::media
