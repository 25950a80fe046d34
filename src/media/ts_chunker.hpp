// TsChunker: stream-copied (or freshly encoded) packets → MPEG-TS chunks in
// memory (DESIGN §2, "Chunks").
//
// One mpegts muxer serves the whole stream, writing through a custom
// AVIOContext into a memory buffer (no temporary files), so continuity
// counters and PCR run on across chunk boundaries exactly as in one long TS
// file: concatenated chunks are that file.  A chunk is cut in front of the
// first video keyframe at or after `target_duration` seconds (audio-only
// streams: the first packet at or after it); before that keyframe the
// muxer is flushed and told to resend its tables, so every chunk begins
// with PAT, then PMT, then the keyframe's PES (with PCR and the random
// access flag).  A source whose keyframes are rare gives longer chunks that
// report their real duration.
//
// Timestamps in Chunk are those of the packets given (the muxer adds its
// own fixed delay inside the TS bytes).  Not thread-safe: one media thread.
#pragma once

#include "core/log.hpp"
#include "media/av_util.hpp"
#include "media/chunk.hpp"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace openace::media {

struct TsChunkerOptions {
    double target_duration = 1.0; // seconds
    int rendition = 0;            // copied into every Chunk
    uint64_t first_seq = 0;       // seq of the first chunk (carry next_seq() over a rebuild)
    // A stream without keyframes for this long is cut anyway (the chunk
    // then has keyframe == false) so memory stays bounded.
    double max_duration = 60.0;
    core::Logger log;
};

class TsChunker {
public:
    // Called with each finished chunk, on the thread calling write/finish.
    using Sink = std::function<void(Chunk)>;

    // streams: what packets' stream_index refers to; parameters are copied.
    // Throws Error(MEDIA) when the muxer refuses the streams.
    TsChunker(const std::vector<StreamSpec> &streams, TsChunkerOptions options, Sink sink);
    ~TsChunker();
    TsChunker(const TsChunker &) = delete;
    TsChunker &operator=(const TsChunker &) = delete;

    // Muxes one packet (timestamps in its stream's time base).  The packet
    // is left as it was (the muxer takes its own reference).  Packets with
    // a backwards dts or no timestamp are dropped and counted; video and
    // audio before the first keyframe are dropped.  Throws Error(MEDIA).
    void write(AVPacket *pkt);

    // The next chunk starts a new timeline: cut at the next keyframe,
    // whatever the duration so far, and flag that chunk.
    void mark_discontinuity() noexcept { discontinuity_pending_ = true; }

    // End of stream: flushes the muxer and emits the last chunk.  Further
    // writes are errors.
    void finish();

    uint64_t next_seq() const noexcept { return seq_; }
    uint64_t chunks() const noexcept { return chunks_; }
    uint64_t bytes() const noexcept { return bytes_; }
    uint64_t dropped_packets() const noexcept { return dropped_; }
    // Sum of the emitted chunks' durations.
    double duration_s() const noexcept { return duration_s_; }

private:
    struct Track {
        AVMediaType type = AVMEDIA_TYPE_UNKNOWN;
        AVRational in_tb{1, 90000};
        AVStream *st = nullptr;
        int64_t last_dts = AV_NOPTS_VALUE;
    };
    static int on_write(void *opaque, uint8_t *buf, int size);
    void cut(int64_t next_start_90k, bool closing);
    void mux(AVPacket *pkt);
    void request_tables();

    TsChunkerOptions opts_;
    Sink sink_;
    OutputFormatPtr ctx_;
    IoContextPtr io_;
    std::vector<Track> tracks_;
    int ref_ = 0;          // the stream chunks are cut on: first video, else first audio
    bool has_video_ = false;
    std::string buf_;      // bytes of the chunk being built
    size_t reserve_ = 1 << 20;
    // Chunk buffers come back here when the last reader drops them, so a
    // steady stream reuses memory instead of faulting in fresh pages.
    struct BufferPool;
    std::shared_ptr<BufferPool> pool_;
    bool started_ = false; // a chunk is open
    bool finished_ = false;
    bool discontinuity_pending_ = false;
    Chunk cur_;            // fields of the open chunk
    int64_t cur_start_ = 0;   // 90 kHz
    int64_t cur_end_ = AV_NOPTS_VALUE; // 90 kHz, end of the last ref packet
    int64_t last_ref_pts_ = AV_NOPTS_VALUE;
    int64_t ref_step_ = 0; // last pts step of the ref stream, for packets without a duration
    int64_t target_90k_;
    uint64_t seq_;
    uint64_t chunks_ = 0, bytes_ = 0, dropped_ = 0;
    double duration_s_ = 0;
};

} // namespace openace::media
