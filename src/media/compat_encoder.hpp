// CompatEncoder: makes a stream that MPEG-TS cannot carry as it is (raw
// video and PCM from lavfi test sources, VP9, FLAC, Vorbis, …) into one it
// can — H.264 (libx264) for video, AAC for audio — so that the segmenter
// stays a remuxer for everything else.  Video keyframes are forced every
// keyframe_interval seconds so chunks can be cut on time.
//
// Not the ABR transcoder (transcode job): one rendition, the source's size,
// software only.  Used by one media thread; not thread-safe.
#pragma once

#include "core/log.hpp"
#include "media/av_util.hpp"

#include <memory>
#include <vector>

namespace openace::media {

class CompatEncoder {
public:
    // True when MPEG-TS cannot carry a stream with these parameters as is.
    static bool needed(const AVCodecParameters *par) noexcept;

    // in/in_tb: the demuxed stream; frame_rate: its frame rate if known
    // ({0,1} otherwise).  Throws Error(MEDIA) when no decoder or encoder
    // can be opened.
    CompatEncoder(const AVCodecParameters *in, AVRational in_tb, AVRational frame_rate,
                  double keyframe_interval_s, core::Logger log);
    ~CompatEncoder();
    CompatEncoder(const CompatEncoder &) = delete;
    CompatEncoder &operator=(const CompatEncoder &) = delete;

    // What the muxer gets.
    const AVCodecParameters *out_par() const noexcept { return out_par_; }
    AVRational out_time_base() const noexcept;

    // Feeds one demuxed packet (timestamps in in_tb), or nullptr at the end
    // of the stream to drain everything.  Encoded packets (timestamps in
    // out_time_base()) are appended to `out`.  Throws Error(MEDIA).
    void encode(const AVPacket *pkt, std::vector<PacketPtr> &out);

    // A reconnected source: new decoder for the (possibly different) input;
    // the encoder and its timeline go on.
    void reset_input(const AVCodecParameters *in, AVRational in_tb);

private:
    struct Filter;
    void open_decoder(const AVCodecParameters *in, AVRational in_tb);
    void build_filter(const AVFrame *first);
    void pump_filter(std::vector<PacketPtr> &out, bool flush);
    void send_frame(AVFrame *frame, std::vector<PacketPtr> &out);
    void receive_packets(std::vector<PacketPtr> &out);

    core::Logger log_;
    AVMediaType type_;
    AVRational in_tb_{1, 90000};
    AVRational frame_rate_{0, 1};
    double keyframe_interval_s_;
    int64_t next_key_pts_ = AV_NOPTS_VALUE; // in encoder time base
    CodecContextPtr dec_;
    CodecContextPtr enc_;
    std::unique_ptr<Filter> filter_;
    FramePtr frame_, filtered_;
    AVCodecParameters *out_par_ = nullptr;
    bool encoder_flushed_ = false;
};

} // namespace openace::media
