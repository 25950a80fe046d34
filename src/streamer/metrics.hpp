// Prometheus text exposition (format 0.0.4) of the engine statistics.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace openace::streamer {

// `stats` is the object returned by openace_get_stats.
std::string render_prometheus(const nlohmann::json &stats);

} // namespace openace::streamer
