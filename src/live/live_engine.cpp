#include "live/live_engine.hpp"

namespace openace::live {

LiveEngine::LiveEngine(engine::EngineContext &ctx)
    : SubEngine(ctx, "live", {"segmenter", "transport"})
{
}

nlohmann::json LiveEngine::details() const
{
    return {{"window_seconds", ctx_.config->live.window_seconds}, {"sessions", 0}};
}

} // namespace openace::live
