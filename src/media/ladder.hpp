// The ABR ladder of a transcode: which renditions to produce.
//
// The "ladder" job option is an array of rungs, each either a name
// ("1080p", "720p", …) or an object {"width":int?,"height":int,
// "bitrate":int|"2500k"?, "name":str?}.  parse_ladder() checks the syntax
// (cheap, for job validation); resolve_ladder() fills in what depends on the
// source (widths from its display aspect ratio).
#pragma once

#include "core/log.hpp"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace openace::media {

struct Rung {
    std::string name;    // "720p", or the object's "name", or "<h>p"
    int width = 0;       // 0 until resolve_ladder() when only the height was given
    int height = 0;
    int64_t bitrate = 0; // video bits per second
};

inline constexpr size_t kMaxLadderRungs = 6;

// Throws Error(Errc::JOB, "job", "validate", "field 'ladder[2]': unknown rung
// '999p' (known: 2160p, …)").  `field` names the option in messages.
std::vector<Rung> parse_ladder(const nlohmann::json &ladder, const std::string &field = "ladder");

// "2500k", "5M", "800000", 800000 → bits per second.  Throws
// Error(Errc::JOB, …, "field '<field>': …").
int64_t parse_bitrate(const nlohmann::json &value, const std::string &field);

// Derives missing widths from the source's display aspect ratio (even,
// rounded to nearest) and logs rungs above the source height (allowed: the
// caller asked for them).  sar may be 0/1 (unknown: square pixels).
void resolve_ladder(std::vector<Rung> &ladder, int source_width, int source_height,
                    int sar_num, int sar_den, const core::Logger &log);

// The default video bitrate of a named rung height (bits per second), or the
// nearest named rung at or above `height`.
int64_t default_bitrate_for_height(int height);

} // namespace openace::media
