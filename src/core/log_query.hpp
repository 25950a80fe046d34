// Turns a log filter given as JSON (C ABI, Python) or as HTTP query
// parameters (/api/logs) into a LogFilter.  Errors name the bad field.
#pragma once

#include "core/log.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace openace::core {

// Keys: level, component, text, job_id, since_ms, until_ms, limit.  Numbers
// may be given as JSON numbers or decimal strings.  Throws openace::Error
// (EINVAL) naming the key.
LogFilter parse_log_filter(const nlohmann::json &filter);
LogFilter parse_log_filter(const std::vector<std::pair<std::string, std::string>> &params);

// {"entries":[...],"stats":{...}}
nlohmann::json query_logs(const Log &log, const LogFilter &filter);

} // namespace openace::core
