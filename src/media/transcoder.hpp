// ABR transcoder: one input's video decoded once, scaled and encoded once per
// ladder rung; its audio transcoded to AAC once (or copied when it already is
// AAC) and handed to every rendition.
//
// Keyframes are forced in every rendition on the same decoded frames: the
// first frame whose time crosses k × keyframe_interval (from the first
// frame).  Chunks cut "at the first keyframe past the target" therefore start
// at the same media time in every rendition, which is what lets a player
// switch renditions at any chunk or segment boundary.
//
// Runs entirely on the calling (media) thread.  Memory is bounded: packets
// and frames go straight through; only the codecs' own lookahead is held.
#pragma once

#include "core/log.hpp"
#include "media/av_util.hpp"
#include "media/ladder.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace openace::media {

struct TranscoderOptions {
    std::vector<Rung> ladder;           // parsed; widths resolved against the source here
    double keyframe_interval = 1.0;     // seconds; chunk / segment duration
    std::string encoder = "libx264";    // from select_h264_encoder()
    std::string preset = "veryfast";    // libx264 preset
    const std::atomic<bool> *cancel = nullptr; // checked every frame: throws Error(CANCELLED)
    // Test hook: rendition 0's first encoder fails at this input frame the
    // way a hardware encoder can mid-stream (−1: never), to exercise the
    // fallback to libx264.
    int64_t simulate_encoder_failure_at = -1;
};

// Gets every output packet: rendition index, stream (0 video, 1 audio) and
// the packet, timestamps in that stream's StreamSpec time base.  The packet
// is the sink's to keep (av_packet_move_ref) or leave; it is unreferenced
// after the call.
using PacketSink = std::function<void(size_t rendition, int stream, AVPacket *pkt)>;

class Transcoder {
public:
    // streams: the input's streams (a Source's streams(); packets given to
    // send() index them).  The first video stream is transcoded along the
    // ladder, the first audio stream goes to every rendition; others are
    // ignored.  Opens the decoders now; the encoders open at the first
    // decoded frame, when its real size and the frame rate are known.
    // Throws openace::Error naming `input`: MEDIA when there is no video
    // stream, UNSUPPORTED when the video cannot be decoded.
    Transcoder(std::string input, const std::vector<StreamSpec> &streams, TranscoderOptions opts,
               core::Logger log, PacketSink sink);
    ~Transcoder();
    Transcoder(const Transcoder &) = delete;
    Transcoder &operator=(const Transcoder &) = delete;

    size_t renditions() const noexcept;
    // Widths are resolved once the encoders are open (started()).
    const Rung &rung(size_t r) const;
    // True once the encoders are open: always before the first packet
    // reaches the sink.
    bool started() const noexcept;
    // What each rendition's muxer is opened with; valid once started() and
    // for the transcoder's lifetime.
    StreamSpec video_stream(size_t r) const;
    bool has_audio() const noexcept;
    StreamSpec audio_stream() const;

    // One demuxed packet of the `video` or `audio` stream given to the
    // constructor (by stream_index; others are ignored).  Throws Error.
    void send(const AVPacket *pkt);
    // The input ended: drains decoders and encoders into the sink.
    void finish();
    // The next decoded frame becomes a keyframe in every rendition and the
    // keyframe schedule restarts from it (after a source discontinuity).
    void force_keyframe() noexcept;

    int64_t frames() const noexcept;        // video frames encoded (per rendition)
    double seconds_done() const noexcept;   // media time of the last video frame
    // RFC 6381 codecs of rendition r, "avc1.64001f,mp4a.40.2"; known after
    // its first keyframe (a default before).
    std::string codecs(size_t r) const;
    // The encoder now in use for rendition r ("libx264" after a fallback).
    std::string encoder(size_t r) const;
    int fallbacks() const noexcept;         // hardware encoders replaced mid-stream
    double frame_rate() const noexcept;     // of the output, once started()

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace openace::media
