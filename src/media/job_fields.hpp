// Checks of the job fields that segment and transcode jobs share.  Errors are
// Error(JOB, "job", "validate", "field 'x': ...").
#pragma once

#include "core/error.hpp"
#include "engine/job_fields.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <string>

namespace openace::media::fields {

inline constexpr double kMaxSegmentDuration = 600;

using engine::fields::bad;

// Checks `value` when `key` is one of the shared fields (type, priority,
// input, output_dir, format, segment_duration, realtime, loop) and returns
// true; returns false for any other key.
inline bool check_common(const std::string &key, const nlohmann::json &value)
{
    if (key == "type" || key == "priority")
        return true; // checked by the job queue
    if (key == "input" || key == "output_dir" || key == "format") {
        if (!value.is_string())
            bad(key, fmt::format("expected a string, got {}", value.type_name()));
        if (key != "format" && value.get_ref<const std::string &>().empty())
            bad(key, "must not be empty");
        return true;
    }
    if (key == "segment_duration") {
        if (!value.is_number())
            bad(key, fmt::format("expected a number of seconds, got {}", value.type_name()));
        double d = value.get<double>();
        if (!(d > 0) || !std::isfinite(d) || d > kMaxSegmentDuration)
            bad(key, fmt::format("{} is outside (0, {}] seconds", d, kMaxSegmentDuration));
        return true;
    }
    if (key == "realtime" || key == "loop") {
        if (!value.is_boolean())
            bad(key, fmt::format("expected a boolean, got {}", value.type_name()));
        return true;
    }
    return false;
}

} // namespace openace::media::fields
