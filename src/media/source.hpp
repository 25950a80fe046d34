// Source: the ingest side of the SegmenterEngine (DESIGN §2).  Opens
// anything libavformat reads — files, http(s), udp/rtp, rtmp, srt, and
// lavfi test sources ("lavfi:testsrc2=size=1280x720:rate=25", or the graph
// with format "lavfi") — and hands out packets ready for the MPEG-TS
// muxer: stream-copied where MPEG-TS can carry the codec, encoded by a
// CompatEncoder where it cannot (raw video and PCM from lavfi).
//
// Timelines: packet timestamps stay monotonic whatever the source does.
// A looped file, a reconnect and a timestamp jump inside a live stream all
// continue the timeline where it stopped.  `realtime` paces packets against
// a wall clock anchored at the first packet (never per-packet sleeps that
// add up), so a file can be broadcast as if it were live.
//
// Failures: a live (network) source that fails — unreachable, read error,
// end of stream — is reopened with core::Backoff and the next packet is
// marked as a discontinuity; after reconnect.max_attempts failed attempts
// in a row the source gives up.  Files fail at once with an Error naming
// the input: missing (Errc::IO), not media, truncated or corrupt, or without
// any video or audio stream (Errc::MEDIA).
//
// One Source belongs to one media thread.  force_reconnect() is the only
// member safe to call from another thread.
#pragma once

#include "core/log.hpp"
#include "core/retry.hpp"
#include "media/av_util.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace openace::media {

class CompatEncoder;

struct SourceOptions {
    std::string input;  // path, URL, or "lavfi:<graph>"
    std::string format; // forced input format ("lavfi", "mpegts", …); empty = probe
    bool realtime = false; // pace at native rate (files and lavfi; live sources pace themselves)
    bool loop = false;     // restart a file at its end, timestamps continuing
    // Reconnects of a failing live source; a file that is looped and fails
    // is restarted the same way.
    core::Backoff::Options reconnect{std::chrono::milliseconds(500), std::chrono::milliseconds(10000),
                                     2.0, 0.2, false, 8};
    std::chrono::milliseconds open_timeout{15000};
    std::chrono::milliseconds read_timeout{15000}; // a live read that stalls this long fails
    double keyframe_interval = 1.0; // seconds, for streams that have to be encoded
    // Encode streams MPEG-TS cannot carry (CompatEncoder).  A consumer that
    // decodes anyway (the transcoder) sets false and gets them as they are.
    bool compat_encode = true;
    const std::atomic<bool> *cancel = nullptr;
    core::Logger log;
};

class Source {
public:
    explicit Source(SourceOptions options);
    ~Source();
    Source(const Source &) = delete;
    Source &operator=(const Source &) = delete;

    // Opens the input (the first time; reconnects happen inside read()).
    // Throws Error naming the input: Errc::IO (missing, unreadable),
    // Errc::MEDIA (not media, truncated, no video and no audio stream),
    // Errc::NET (a live source still unreachable after every retry),
    // Errc::CANCELLED.
    void open();

    // The next packet: stream_index indexes streams(), timestamps are in
    // that stream's time_base.  false at the end of a finite source (file,
    // lavfi graph with a duration).  Throws like open(), and Error(MEDIA)
    // for a file that turns out truncated or corrupt while reading.
    bool read(AVPacket *pkt);

    // True when the packet read() just returned is the first after a source
    // reset (reconnect or timestamp jump): the chunk it starts is a
    // discontinuity.
    bool discontinuity() const noexcept { return discontinuity_; }

    // The streams packets belong to.  Valid until layout_version() changes
    // (a reconnected source with different streams); then rebuild the muxer.
    const std::vector<StreamSpec> &streams() const noexcept { return specs_; }
    uint64_t layout_version() const noexcept { return layout_version_; }
    bool has_video() const noexcept;

    // Thread-safe: drop the connection and reconnect as if it had failed
    // (tests, operators).  The next packet is a discontinuity.
    void force_reconnect() noexcept { force_reconnect_.store(true); }

    const std::string &input() const noexcept { return opts_.input; }
    bool live() const noexcept { return live_; }
    // The input's duration in seconds, < 0 when unknown (live).
    double duration_s() const noexcept { return duration_s_; }
    // Media seconds handed out since the first packet.
    double position_s() const noexcept;
    // Reconnects and restarts so far.
    uint64_t reconnects() const noexcept { return reconnects_; }

private:
    struct Input;
    struct Stream;
    std::unique_ptr<Input> open_input();
    void adopt(std::unique_ptr<Input> in, bool first);
    bool demux(AVPacket *pkt);
    void restart(const char *why, bool failure);
    void pace(int64_t ts_us);
    void throw_cancelled() const;

    SourceOptions opts_;
    std::string url_;
    bool lavfi_ = false;
    bool network_ = false;
    bool live_ = false;
    double duration_s_ = -1;
    Interrupter interrupter_;
    std::unique_ptr<Input> in_;
    std::vector<std::unique_ptr<Stream>> streams_; // output streams
    std::vector<StreamSpec> specs_;
    uint64_t layout_version_ = 0;
    core::Backoff backoff_;
    std::atomic<bool> force_reconnect_{false};
    bool discontinuity_ = false;
    bool pending_discontinuity_ = false;
    uint64_t reconnects_ = 0;
    // Timeline (microseconds): offset added to every input timestamp, the
    // furthest end reached, the first timestamp handed out.
    int64_t offset_us_ = 0;
    int64_t end_us_ = INT64_MIN;
    int64_t first_us_ = INT64_MIN;
    bool need_offset_ = false;
    // Realtime pacing anchor.
    std::chrono::steady_clock::time_point wall_anchor_{};
    int64_t media_anchor_us_ = INT64_MIN;
    // Encoded packets waiting to be handed out.
    std::vector<PacketPtr> queue_;
    size_t queue_pos_ = 0;
    bool ended_ = false;
    PacketPtr scratch_;
};

} // namespace openace::media
