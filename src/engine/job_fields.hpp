// Checks every job type's validator shares.  Errors are
// Error(JOB, "job", "validate", "field 'x': ...") naming the field.
#pragma once

#include "core/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>

namespace openace::engine::fields {

[[noreturn]] inline void bad(const std::string &key, const std::string &why)
{
    throw_errorf(Errc::JOB, "job", "validate", "field '{}': {}", key, why);
}

// An array of strings (tracker URLs, peers).
inline void check_string_array(const std::string &key, const nlohmann::json &value, const char *what)
{
    if (!value.is_array() || !std::all_of(value.begin(), value.end(), [](const auto &v) { return v.is_string(); }))
        bad(key, std::string("expected an array of ") + what);
}

// A "play" job of a live stream (the LiveEngine's) rather than of a torrent
// (the TransportEngine's): it names a content id or a descriptor file.
inline bool is_live_play(const nlohmann::json &spec)
{
    return spec.is_object() && (spec.contains("content_id") || spec.contains("descriptor"));
}

} // namespace openace::engine::fields
