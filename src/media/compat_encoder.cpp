#include "media/compat_encoder.hpp"

#include "core/error.hpp"

extern "C" {
#include <libavfilter/avfilter.h>
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
}

#include <cmath>
#include <cstdio>
#include <string_view>

namespace openace::media {

namespace {

[[noreturn]] void fail(const char *op, const std::string &what)
{
    throw_error(Errc::MEDIA, "segmenter", op, what);
}

void check(int rc, const char *op, const char *what)
{
    if (rc < 0)
        fail(op, fmt::format("{}: {}", what, av_error(rc)));
}

} // namespace

struct CompatEncoder::Filter {
    AVFilterGraph *graph = nullptr;
    AVFilterContext *src = nullptr;
    AVFilterContext *sink = nullptr;
    ~Filter() { avfilter_graph_free(&graph); }
};

bool CompatEncoder::needed(const AVCodecParameters *par) noexcept
{
    switch (par->codec_id) {
    // What FFmpeg 5.1's mpegts muxer maps to a proper stream_type.
    case AV_CODEC_ID_H264:
    case AV_CODEC_ID_HEVC:
    case AV_CODEC_ID_MPEG1VIDEO:
    case AV_CODEC_ID_MPEG2VIDEO:
    case AV_CODEC_ID_MPEG4:
    case AV_CODEC_ID_CAVS:
    case AV_CODEC_ID_DIRAC:
    case AV_CODEC_ID_VC1:
    case AV_CODEC_ID_AAC:
    case AV_CODEC_ID_AAC_LATM:
    case AV_CODEC_ID_MP2:
    case AV_CODEC_ID_MP3:
    case AV_CODEC_ID_AC3:
    case AV_CODEC_ID_EAC3:
    case AV_CODEC_ID_DTS:
    case AV_CODEC_ID_TRUEHD:
    case AV_CODEC_ID_OPUS:
    case AV_CODEC_ID_S302M:
        return false;
    default:
        return par->codec_type == AVMEDIA_TYPE_VIDEO || par->codec_type == AVMEDIA_TYPE_AUDIO;
    }
}

CompatEncoder::CompatEncoder(const AVCodecParameters *in, AVRational in_tb, AVRational frame_rate,
                             double keyframe_interval_s, core::Logger log)
    : log_(std::move(log)), type_(in->codec_type), in_tb_(in_tb), frame_rate_(frame_rate),
      keyframe_interval_s_(keyframe_interval_s > 0 ? keyframe_interval_s : 1.0),
      frame_(make_frame()), filtered_(make_frame())
{
    open_decoder(in, in_tb);

    const AVCodec *codec = nullptr;
    if (type_ == AVMEDIA_TYPE_VIDEO) {
        codec = avcodec_find_encoder_by_name("libx264");
        if (!codec)
            codec = avcodec_find_encoder(AV_CODEC_ID_MPEG2VIDEO);
    } else {
        codec = avcodec_find_encoder(AV_CODEC_ID_AAC);
    }
    if (!codec)
        fail("encode", fmt::format("no encoder for {} streams in this FFmpeg build",
                                   av_get_media_type_string(type_)));
    enc_.reset(avcodec_alloc_context3(codec));
    if (!enc_)
        throw_error(Errc::NOMEM, "segmenter", "encode", "cannot allocate an encoder");
    AVCodecContext *e = enc_.get();
    if (type_ == AVMEDIA_TYPE_VIDEO) {
        if (in->width <= 0 || in->height <= 0)
            fail("encode", "video stream without a frame size");
        e->width = in->width;
        e->height = in->height;
        e->pix_fmt = AV_PIX_FMT_YUV420P;
        e->sample_aspect_ratio = in->sample_aspect_ratio;
        if (frame_rate_.num <= 0 || frame_rate_.den <= 0)
            frame_rate_ = AVRational{25, 1};
        e->framerate = frame_rate_;
        e->time_base = in_tb_;
        // Keyframes are forced on the interval grid (send_frame); the GOP
        // limit is only a backstop, above the grid so the two never clash.
        e->gop_size = std::max(2, int(std::lround(2 * av_q2d(frame_rate_) * keyframe_interval_s_)));
        e->max_b_frames = 0;
        if (std::string_view(codec->name) == "libx264") {
            av_opt_set(e->priv_data, "preset", "veryfast", 0);
            av_opt_set(e->priv_data, "tune", "zerolatency", 0);
            // Forced keyframes must be IDR: a chunk must decode on its own.
            av_opt_set(e->priv_data, "forced-idr", "1", 0);
        } else {
            e->bit_rate = 4'000'000;
        }
        // No AV_CODEC_FLAG_GLOBAL_HEADER: SPS/PPS repeat in front of every
        // keyframe, which every chunk needs.
    } else {
        int rate = in->sample_rate > 0 ? in->sample_rate : 48000;
        bool supported = false;
        for (const int *r = codec->supported_samplerates; r && *r; ++r)
            supported |= *r == rate;
        e->sample_rate = supported ? rate : 48000;
        e->sample_fmt = AV_SAMPLE_FMT_FLTP;
        int channels = in->ch_layout.nb_channels;
        av_channel_layout_default(&e->ch_layout, channels == 1 ? 1 : 2);
        e->bit_rate = channels == 1 ? 96'000 : 128'000;
        e->time_base = AVRational{1, e->sample_rate};
        e->flags |= AV_CODEC_FLAG_GLOBAL_HEADER; // the TS muxer builds ADTS from it
    }
    check(avcodec_open2(e, codec, nullptr), "encode",
          fmt::format("cannot open the {} encoder", codec->name).c_str());
    out_par_ = avcodec_parameters_alloc();
    if (!out_par_)
        throw_error(Errc::NOMEM, "segmenter", "encode", "cannot allocate codec parameters");
    check(avcodec_parameters_from_context(out_par_, e), "encode", "encoder parameters");
    log_.info("encoding {} stream ({}) to {} because MPEG-TS cannot carry it as is",
              av_get_media_type_string(type_), avcodec_get_name(in->codec_id), codec->name);
}

CompatEncoder::~CompatEncoder()
{
    avcodec_parameters_free(&out_par_);
}

AVRational CompatEncoder::out_time_base() const noexcept
{
    return enc_->time_base;
}

void CompatEncoder::open_decoder(const AVCodecParameters *in, AVRational in_tb)
{
    const AVCodec *codec = avcodec_find_decoder(in->codec_id);
    if (!codec)
        fail("decode", fmt::format("no decoder for codec {}", avcodec_get_name(in->codec_id)));
    CodecContextPtr dec(avcodec_alloc_context3(codec));
    if (!dec)
        throw_error(Errc::NOMEM, "segmenter", "decode", "cannot allocate a decoder");
    check(avcodec_parameters_to_context(dec.get(), in), "decode", "decoder parameters");
    dec->pkt_timebase = in_tb;
    check(avcodec_open2(dec.get(), codec, nullptr), "decode",
          fmt::format("cannot open the {} decoder", codec->name).c_str());
    dec_ = std::move(dec);
    in_tb_ = in_tb;
}

void CompatEncoder::reset_input(const AVCodecParameters *in, AVRational in_tb)
{
    open_decoder(in, in_tb);
    filter_.reset(); // rebuilt for the new input's first frame
    // The new input's first frame is a keyframe, and the grid restarts
    // there: the chunk after a discontinuity begins with it.
    next_key_pts_ = AV_NOPTS_VALUE;
}

void CompatEncoder::build_filter(const AVFrame *f)
{
    auto filter = std::make_unique<Filter>();
    filter->graph = avfilter_graph_alloc();
    if (!filter->graph)
        throw_error(Errc::NOMEM, "segmenter", "filter", "cannot allocate a filter graph");
    filter->graph->nb_threads = 1;
    AVCodecContext *e = enc_.get();
    std::string src_args, chain;
    const char *src_name, *sink_name;
    if (type_ == AVMEDIA_TYPE_VIDEO) {
        src_name = "buffer";
        sink_name = "buffersink";
        AVRational sar = f->sample_aspect_ratio.num ? f->sample_aspect_ratio : AVRational{1, 1};
        src_args = fmt::format("video_size={}x{}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}",
                               f->width, f->height, f->format, in_tb_.num, in_tb_.den, sar.num,
                               sar.den);
        chain = fmt::format("scale={}:{},format=pix_fmts={}", e->width, e->height,
                            av_get_pix_fmt_name(e->pix_fmt));
    } else {
        src_name = "abuffer";
        sink_name = "abuffersink";
        char layout[128] = {};
        if (f->ch_layout.order != AV_CHANNEL_ORDER_UNSPEC)
            av_channel_layout_describe(&f->ch_layout, layout, sizeof layout);
        else
            snprintf(layout, sizeof layout, "%dc", f->ch_layout.nb_channels);
        src_args = fmt::format("time_base={}/{}:sample_rate={}:sample_fmt={}:channel_layout={}",
                               in_tb_.num, in_tb_.den, f->sample_rate,
                               av_get_sample_fmt_name(AVSampleFormat(f->format)), layout);
        char out_layout[128] = {};
        av_channel_layout_describe(&e->ch_layout, out_layout, sizeof out_layout);
        chain = fmt::format("aresample={},aformat=sample_fmts={}:channel_layouts={}",
                            e->sample_rate, av_get_sample_fmt_name(e->sample_fmt), out_layout);
    }
    check(avfilter_graph_create_filter(&filter->src, avfilter_get_by_name(src_name), "in",
                                       src_args.c_str(), nullptr, filter->graph),
          "filter", "cannot create the filter source");
    check(avfilter_graph_create_filter(&filter->sink, avfilter_get_by_name(sink_name), "out",
                                       nullptr, nullptr, filter->graph),
          "filter", "cannot create the filter sink");
    AVFilterInOut *outputs = avfilter_inout_alloc();
    AVFilterInOut *inputs = avfilter_inout_alloc();
    outputs->name = av_strdup("in");
    outputs->filter_ctx = filter->src;
    inputs->name = av_strdup("out");
    inputs->filter_ctx = filter->sink;
    int rc = avfilter_graph_parse_ptr(filter->graph, chain.c_str(), &inputs, &outputs, nullptr);
    avfilter_inout_free(&inputs);
    avfilter_inout_free(&outputs);
    check(rc, "filter", "cannot build the conversion filter");
    check(avfilter_graph_config(filter->graph, nullptr), "filter",
          "cannot configure the conversion filter");
    if (type_ == AVMEDIA_TYPE_AUDIO && e->frame_size > 0)
        av_buffersink_set_frame_size(filter->sink, unsigned(e->frame_size));
    filter_ = std::move(filter);
}

void CompatEncoder::encode(const AVPacket *pkt, std::vector<PacketPtr> &out)
{
    if (encoder_flushed_)
        return;
    int rc = avcodec_send_packet(dec_.get(), pkt);
    if (rc < 0 && rc != AVERROR_EOF) {
        // A corrupt packet: the decoder skips it, the stream goes on.
        log_.debug("decoder dropped a packet: {}", av_error(rc));
    }
    for (;;) {
        rc = avcodec_receive_frame(dec_.get(), frame_.get());
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            break;
        if (rc < 0) {
            log_.debug("decoder error: {}", av_error(rc));
            break;
        }
        frame_->pts = frame_->best_effort_timestamp;
        if (!filter_)
            build_filter(frame_.get());
        rc = av_buffersrc_add_frame_flags(filter_->src, frame_.get(), AV_BUFFERSRC_FLAG_KEEP_REF);
        av_frame_unref(frame_.get());
        check(rc, "filter", "cannot feed the conversion filter");
        pump_filter(out, false);
    }
    if (!pkt) {
        if (filter_) {
            check(av_buffersrc_add_frame_flags(filter_->src, nullptr, 0), "filter",
                  "cannot flush the conversion filter");
            pump_filter(out, true);
        }
        send_frame(nullptr, out);
        encoder_flushed_ = true;
    }
}

void CompatEncoder::pump_filter(std::vector<PacketPtr> &out, bool flush)
{
    (void)flush;
    AVRational sink_tb = av_buffersink_get_time_base(filter_->sink);
    for (;;) {
        int rc = av_buffersink_get_frame(filter_->sink, filtered_.get());
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return;
        check(rc, "filter", "conversion filter failed");
        if (filtered_->pts != AV_NOPTS_VALUE)
            filtered_->pts = av_rescale_q(filtered_->pts, sink_tb, enc_->time_base);
        send_frame(filtered_.get(), out);
        av_frame_unref(filtered_.get());
    }
}

void CompatEncoder::send_frame(AVFrame *frame, std::vector<PacketPtr> &out)
{
    if (frame && type_ == AVMEDIA_TYPE_VIDEO) {
        frame->pict_type = AV_PICTURE_TYPE_NONE;
        if (frame->pts != AV_NOPTS_VALUE) {
            // Keyframes on a fixed grid of the timeline, so chunks are cut on
            // time whatever the encoder's own GOP decisions.
            int64_t step = std::max<int64_t>(
                1, av_rescale_q(int64_t(std::llround(keyframe_interval_s_ * 1e6)), AVRational{1, 1000000},
                                enc_->time_base));
            if (next_key_pts_ == AV_NOPTS_VALUE || frame->pts >= next_key_pts_) {
                frame->pict_type = AV_PICTURE_TYPE_I;
                if (next_key_pts_ == AV_NOPTS_VALUE)
                    next_key_pts_ = frame->pts;
                while (next_key_pts_ <= frame->pts)
                    next_key_pts_ += step;
            }
        }
    }
    int rc = avcodec_send_frame(enc_.get(), frame);
    if (rc < 0 && rc != AVERROR_EOF)
        check(rc, "encode", "encoder refused a frame");
    receive_packets(out);
}

void CompatEncoder::receive_packets(std::vector<PacketPtr> &out)
{
    for (;;) {
        PacketPtr p = make_packet();
        int rc = avcodec_receive_packet(enc_.get(), p.get());
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return;
        check(rc, "encode", "encoder failed");
        out.push_back(std::move(p));
    }
}

} // namespace openace::media
