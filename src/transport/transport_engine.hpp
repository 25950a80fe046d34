// TransportEngine (DESIGN §2, §5): the BitTorrent layer.  The foundation gives
// it its lifecycle and configuration; the transport issue adds the peer wire,
// trackers, the picker and storage.
#pragma once

#include "engine/sub_engine.hpp"

namespace openace::transport {

class TransportEngine : public engine::SubEngine {
public:
    explicit TransportEngine(engine::EngineContext &ctx);

protected:
    nlohmann::json details() const override;
};

} // namespace openace::transport
