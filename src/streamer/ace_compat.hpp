// Constants of the Ace Stream engine API that OpenAce answers as
// (shared/reference/acestream-api.md §2.7).  Players gate features on the
// engine version, so get_version reports the Ace API level we implement and
// our own version in a separate field.
#pragma once

namespace openace::streamer {

inline constexpr const char *kAceApiVersion = "3.1.70";
inline constexpr int kAceApiVersionCode = 3017000;

} // namespace openace::streamer
