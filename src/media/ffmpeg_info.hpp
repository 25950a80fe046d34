// What the linked FFmpeg libraries are and which hardware devices libavutil
// can actually open here (used by the probe job and, later, encoder
// selection).
#pragma once

#include <nlohmann/json.hpp>

namespace openace::media {

// {"version": "5.1.x", "libavformat": "59.27.100", ...}
nlohmann::json ffmpeg_versions();

// [{"type":"cuda","available":false,"error":"..."}, ...] for every hardware
// device type this FFmpeg build knows.  Opens (and closes) each device, so it
// may block for a while: call it off the loop thread.
nlohmann::json probe_hw_devices();

} // namespace openace::media
