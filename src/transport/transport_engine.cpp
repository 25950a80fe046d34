#include "transport/transport_engine.hpp"

namespace openace::transport {

TransportEngine::TransportEngine(engine::EngineContext &ctx)
    : SubEngine(ctx, "transport", {"main"})
{
}

nlohmann::json TransportEngine::details() const
{
    const auto &t = ctx_.config->transport;
    return {{"listen_port", t.listen_port},
            {"tls_enabled", ctx_.config->security.tls_enabled},
            {"peers", 0},
            {"torrents", 0}};
}

} // namespace openace::transport
