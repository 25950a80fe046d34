// A chunk: the unit of media the rest of OpenAce moves (DESIGN §2).  An
// MPEG-TS byte string that starts with PAT and PMT followed by a video
// keyframe (audio-only: cut on time), so a player can start at any chunk.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace openace::media {

struct Chunk {
    uint64_t seq = 0;            // monotonic, also across source restarts
    int64_t first_pts = 0;       // 90 kHz, of the first packet
    double duration_s = 0;       // real duration (next chunk's first pts - ours)
    int64_t wall_clock_ms = 0;   // Unix ms when the chunk was cut
    bool keyframe = false;       // begins with a video keyframe
    bool discontinuity = false;  // first chunk after a source reset
    int rendition = 0;           // index into the ladder; 0 for stream copy
    std::shared_ptr<const std::string> data; // TS packets, size % 188 == 0
    size_t size() const noexcept { return data ? data->size() : 0; }
};

} // namespace openace::media
