// Constants of the Ace Stream engine API that OpenAce answers as
// (shared/reference/acestream-api.md §2.7).  Players gate features on the
// engine version, so get_version reports the Ace API level we implement and
// our own version in a separate field.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace openace::streamer {

inline constexpr const char *kAceApiVersion = "3.1.70";
inline constexpr int kAceApiVersionCode = 3017000;

// JSON text of an answer that may quote client input or torrent names:
// invalid UTF-8 becomes U+FFFD instead of an exception.
inline std::string json_text(const nlohmann::json &j)
{
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace openace::streamer
