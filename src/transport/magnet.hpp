// Magnet links (BEP 9): xt=urn:btih:<40 hex | 32 base32>, dn, tr, x.pe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace openace::transport {

using InfoHash = std::array<std::uint8_t, 20>;

struct Magnet {
    InfoHash infohash{};
    std::string name;                  // dn, percent-decoded ('+' = space); may be empty
    std::vector<std::string> trackers; // tr, in order, percent-decoded
    std::vector<std::string> peers;    // x.pe ("host:port"), percent-decoded
};

// Throws openace::Error(Errc::INVAL, "magnet", "parse", ...) naming the bad
// part ("parameter 'xt': ...") when the scheme is not magnet:, a percent
// escape is malformed, or no valid urn:btih: xt is present.  Unknown
// parameters (and urn:btmh: v2 xt values) are ignored.
Magnet parse_magnet(std::string_view uri);

// An infohash as text: 40 hex digits or 32 base32 characters (either
// case); nullopt otherwise.
std::optional<InfoHash> parse_infohash(std::string_view text);

// "magnet:?xt=urn:btih:<hex>&dn=<name>&tr=<t1>&tr=<t2>" (dn omitted when
// empty); dn and tr are percent-encoded.
std::string to_magnet(const InfoHash &infohash, std::string_view name = {},
                      const std::vector<std::string> &trackers = {});

// 40 lowercase hex digits.
std::string to_hex(const InfoHash &infohash);

} // namespace openace::transport
