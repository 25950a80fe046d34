// LiveEngine (DESIGN §2): signed live pieces, viewer sessions, chat.  The
// foundation gives it its lifecycle; the live issue adds broadcasts.
#pragma once

#include "engine/sub_engine.hpp"

namespace openace::live {

class LiveEngine : public engine::SubEngine {
public:
    explicit LiveEngine(engine::EngineContext &ctx);

protected:
    nlohmann::json details() const override;
};

} // namespace openace::live
