// HTTP byte ranges (RFC 9110 §14) for files served while they download, and
// the media type of a file by its extension.  Pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace openace::net {

struct ByteRange {
    std::int64_t first = 0, last = 0; // inclusive, first <= last < size
    std::int64_t length() const noexcept { return last - first + 1; }
};

enum class RangeResult { None, Ok, Unsatisfiable };

// Parses one "bytes=a-b" | "bytes=a-" | "bytes=-n" range against a
// resource of `size` bytes.  A header that is malformed, names several
// ranges or another unit is treated as absent (None: serve the whole
// resource, as RFC 9110 allows); a well-formed range outside the resource
// is Unsatisfiable (416).  Never throws.
RangeResult parse_range(std::string_view header, std::int64_t size, ByteRange &out) noexcept;

// "video/mp4" for "movie.MP4", "video/mp2t" for ".ts", ...;
// "application/octet-stream" for anything unknown.
std::string_view media_type_for(std::string_view filename) noexcept;

} // namespace openace::net
