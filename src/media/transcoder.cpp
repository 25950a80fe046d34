#include "media/transcoder.hpp"

#include "core/error.hpp"
#include "media/encoder_select.hpp"

extern "C" {
#include <libavutil/audio_fifo.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libavutil/samplefmt.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
}

#include <chrono>
#include <cmath>

namespace openace::media {

namespace {

constexpr AVRational kMicros{1, 1000000};

struct SwsDeleter {
    void operator()(SwsContext *s) const noexcept { sws_freeContext(s); }
};
struct SwrDeleter {
    void operator()(SwrContext *s) const noexcept { swr_free(&s); }
};
struct FifoDeleter {
    void operator()(AVAudioFifo *f) const noexcept { av_audio_fifo_free(f); }
};
struct ParamsDeleter {
    void operator()(AVCodecParameters *p) const noexcept { avcodec_parameters_free(&p); }
};
using ParamsPtr = std::unique_ptr<AVCodecParameters, ParamsDeleter>;

void mark_key(AVFrame *f, bool key)
{
    f->pict_type = key ? AV_PICTURE_TYPE_I : AV_PICTURE_TYPE_NONE;
#ifdef AV_FRAME_FLAG_KEY
    if (key)
        f->flags |= AV_FRAME_FLAG_KEY;
    else
        f->flags &= ~AV_FRAME_FLAG_KEY;
#else
    f->key_frame = key ? 1 : 0;
#endif
}

// "avc1.PPCCLL" from the first SPS of an Annex B packet (what the TS muxer
// carries), or an empty string.
std::string avc1_from_annexb(const uint8_t *d, int size)
{
    for (int i = 0; i + 6 < size; ++i) {
        if (d[i] == 0 && d[i + 1] == 0 && d[i + 2] == 1 && (d[i + 3] & 0x1f) == 7)
            return fmt::format("avc1.{:02x}{:02x}{:02x}", d[i + 4], d[i + 5], d[i + 6]);
    }
    return {};
}

std::string mp4a_of(int profile)
{
    // RFC 6381: mp4a.40.<audio object type>
    switch (profile) {
    case FF_PROFILE_AAC_HE: return "mp4a.40.5";
    case FF_PROFILE_AAC_HE_V2: return "mp4a.40.29";
    default: return "mp4a.40.2";
    }
}

struct RungState {
    Rung rung;
    std::unique_ptr<EncoderSession> enc;
    std::unique_ptr<SwsContext, SwsDeleter> sws;
    int sws_w = 0, sws_h = 0, sws_fmt = -1, sws_out = -1; // what `sws` converts
    FramePtr frame;              // scaled picture handed to the encoder
    ParamsPtr par;               // fixed at open: what the muxer was given
    int64_t frames_in = 0;
    int64_t last_dts = AV_NOPTS_VALUE;
    bool replaceable = false;    // a hardware (or simulated) encoder that may fall back
    int64_t fail_at = -1;
    std::string avc1;
};

} // namespace

struct Transcoder::Impl {
    std::string input;
    TranscoderOptions opts;
    core::Logger log;
    PacketSink sink;

    int video_index = -1;
    int audio_index = -1;
    AVRational vtb{1, 90000};     // input video time base = encoder time base
    AVRational frame_rate{25, 1};
    int64_t frame_dur = 0;        // in vtb
    CodecContextPtr vdec;
    std::vector<RungState> rungs;
    FramePtr frame = make_frame();
    PacketPtr pkt = make_packet();
    PacketPtr tmp = make_packet();

    // Timeline: out = in - origin + offset (origin/offset in µs).
    bool have_origin = false;
    int64_t origin_us = 0;
    int64_t offset_us = 0;
    int64_t last_out_pts = AV_NOPTS_VALUE; // video, vtb
    int64_t next_key_us = 0;
    int64_t key_anchor_us = 0;
    int64_t frames = 0;
    int fallbacks = 0;
    int corrupt = 0;
    bool started = false;
    bool force_key = false;
    FramePtr pending;              // the first frame, while the frame rate is unknown
    int64_t pending_pts = AV_NOPTS_VALUE;

    // Audio.
    bool audio_copy = false;
    AVRational atb_in{1, 48000};
    CodecContextPtr adec;
    CodecContextPtr aenc;
    std::unique_ptr<SwrContext, SwrDeleter> swr;
    std::unique_ptr<AVAudioFifo, FifoDeleter> fifo;
    ParamsPtr apar;
    AVRational atb_out{1, 48000};
    int64_t next_sample = AV_NOPTS_VALUE; // pts of the next fifo sample, atb_out
    int64_t last_audio_dts = AV_NOPTS_VALUE;
    FramePtr aframe = make_frame();
    FramePtr rframe = make_frame();

    [[noreturn]] void fail(Errc code, const char *op, const std::string &what) const
    {
        throw_errorf(code, "transcode", op, "input '{}': {}", input, what);
    }

    void check_cancel() const
    {
        if (opts.cancel && opts.cancel->load(std::memory_order_relaxed))
            throw_errorf(Errc::CANCELLED, "transcode", "run", "'{}': transcode cancelled", input);
    }

    // ------------------------------------------------------------ setup
    void open_video(const StreamSpec &spec, int index)
    {
        video_index = index;
        vtb = spec.time_base;
        const AVCodecParameters *par = spec.par;
        const AVCodec *dec = avcodec_find_decoder(par->codec_id);
        if (!dec)
            fail(Errc::UNSUPPORTED, "open",
                 fmt::format("unsupported codec for the ladder: video codec '{}' cannot be decoded "
                             "by this FFmpeg",
                             avcodec_get_name(par->codec_id)));
        vdec.reset(avcodec_alloc_context3(dec));
        if (!vdec)
            throw_error(Errc::NOMEM, "transcode", "open", "cannot allocate a decoder");
        int rc = avcodec_parameters_to_context(vdec.get(), par);
        if (rc < 0)
            fail(Errc::MEDIA, "open", "bad video parameters: " + av_error(rc));
        vdec->pkt_timebase = vtb;
        vdec->thread_count = 0;
        frame_dur = std::max<int64_t>(1, av_rescale_q(1, av_inv_q(frame_rate), vtb));
        rc = avcodec_open2(vdec.get(), dec, nullptr);
        if (rc < 0)
            fail(Errc::UNSUPPORTED, "open",
                 fmt::format("unsupported codec for the ladder: cannot open the {} decoder: {}",
                             dec->name, av_error(rc)));
        // Until the first frame tells better.
        for (auto &r : opts.ladder) {
            RungState rs;
            rs.rung = r;
            rungs.push_back(std::move(rs));
        }
    }

    // Opens one encoder per rung from the first frame (its size and aspect)
    // and the frame rate (`next_pts`: the second frame's time, or
    // AV_NOPTS_VALUE when it is not known).
    void start(const AVFrame *f, int64_t first_pts, int64_t next_pts)
    {
        AVRational fr = vdec->framerate;
        if (!(fr.num > 0 && fr.den > 0 && av_q2d(fr) >= 1 && av_q2d(fr) <= 240)) {
            fr = AVRational{25, 1};
            if (first_pts != AV_NOPTS_VALUE && next_pts != AV_NOPTS_VALUE && next_pts > first_pts) {
                double d = double(next_pts - first_pts) * av_q2d(vtb);
                if (d > 1.0 / 240 && d <= 1.0)
                    fr = av_d2q(1.0 / d, 1001000);
            }
        }
        frame_rate = fr;
        frame_dur = std::max<int64_t>(1, av_rescale_q(1, av_inv_q(fr), vtb));

        resolve_ladder(opts.ladder, f->width, f->height, f->sample_aspect_ratio.num,
                       f->sample_aspect_ratio.den, log);
        for (size_t i = 0; i < rungs.size(); ++i) {
            RungState &rs = rungs[i];
            rs.rung = opts.ladder[i];
            rs.enc = open_encoder(rs.rung, opts.encoder, gop_frames(), true);
            rs.replaceable = rs.enc->hardware();
            if (i == 0 && opts.simulate_encoder_failure_at >= 0) {
                rs.replaceable = true;
                rs.fail_at = opts.simulate_encoder_failure_at;
            }
            rs.par.reset(avcodec_parameters_alloc());
            if (!rs.par || avcodec_parameters_from_context(rs.par.get(), rs.enc->ctx()) < 0)
                throw_error(Errc::NOMEM, "transcode", "open", "cannot copy encoder parameters");
        }
        started = true;
        log.info("input '{}': transcoding {}x{} {:.3f} fps with {} to {}", input, f->width, f->height,
                 av_q2d(fr), opts.encoder, ladder_text());
    }

    std::string ladder_text() const
    {
        std::string s;
        for (auto &r : rungs)
            s += fmt::format("{}{} {}x{} {} kbit/s", s.empty() ? "" : ", ", r.rung.name,
                             r.rung.width, r.rung.height, r.rung.bitrate / 1000);
        return s;
    }

    int gop_frames() const
    {
        return std::max(12, int(std::ceil(opts.keyframe_interval * av_q2d(frame_rate))) * 2);
    }

    std::unique_ptr<EncoderSession> open_encoder(const Rung &r, const std::string &name, int gop,
                                                 bool b_frames)
    {
        EncoderConfig cfg;
        cfg.width = r.width;
        cfg.height = r.height;
        cfg.time_base = vtb;
        cfg.framerate = frame_rate;
        cfg.bitrate = r.bitrate;
        cfg.gop = gop;
        cfg.preset = opts.preset;
        cfg.b_frames = b_frames;
        std::string reason;
        auto enc = EncoderSession::open(name, cfg, reason);
        if (!enc)
            fail(Errc::UNSUPPORTED, "open",
                 fmt::format("rendition {} ({}x{}): {}", r.name, r.width, r.height, reason));
        return enc;
    }

    void open_audio(const StreamSpec &spec, int index)
    {
        audio_index = index;
        atb_in = spec.time_base;
        const AVCodecParameters *par = spec.par;
        apar.reset(avcodec_parameters_alloc());
        if (!apar)
            throw_error(Errc::NOMEM, "transcode", "open", "cannot allocate parameters");
        if (par->codec_id == AV_CODEC_ID_AAC) {
            audio_copy = true;
            avcodec_parameters_copy(apar.get(), par);
            apar->codec_tag = 0;
            atb_out = atb_in;
            log.debug("input '{}': audio is AAC already: copied into every rendition", input);
            return;
        }
        const AVCodec *dec = avcodec_find_decoder(par->codec_id);
        if (!dec) {
            log.warn("input '{}': audio codec '{}' cannot be decoded: renditions without audio", input,
                     avcodec_get_name(par->codec_id));
            audio_index = -1;
            return;
        }
        adec.reset(avcodec_alloc_context3(dec));
        if (!adec)
            throw_error(Errc::NOMEM, "transcode", "open", "cannot allocate a decoder");
        avcodec_parameters_to_context(adec.get(), par);
        adec->pkt_timebase = atb_in;
        int rc = avcodec_open2(adec.get(), dec, nullptr);
        if (rc < 0) {
            log.warn("input '{}': cannot open the {} audio decoder ({}): renditions without audio", input,
                     dec->name, av_error(rc));
            audio_index = -1;
            return;
        }

        const AVCodec *enc = avcodec_find_encoder(AV_CODEC_ID_AAC);
        if (!enc)
            fail(Errc::UNSUPPORTED, "open", "this FFmpeg has no AAC encoder");
        aenc.reset(avcodec_alloc_context3(enc));
        if (!aenc)
            throw_error(Errc::NOMEM, "transcode", "open", "cannot allocate an encoder");
        int in_rate = adec->sample_rate > 0 ? adec->sample_rate : 48000;
        int out_rate = 48000;
        for (auto p = enc->supported_samplerates; p && *p; ++p)
            if (*p == in_rate)
                out_rate = in_rate;
        int channels = adec->ch_layout.nb_channels >= 2 ? 2 : 1;
        av_channel_layout_default(&aenc->ch_layout, channels);
        aenc->sample_rate = out_rate;
        aenc->sample_fmt = AV_SAMPLE_FMT_FLTP;
        aenc->bit_rate = channels == 2 ? 128000 : 64000;
        aenc->time_base = AVRational{1, out_rate};
        rc = avcodec_open2(aenc.get(), enc, nullptr);
        if (rc < 0)
            fail(Errc::MEDIA, "open", "cannot open the AAC encoder: " + av_error(rc));
        atb_out = aenc->time_base;
        avcodec_parameters_from_context(apar.get(), aenc.get());

        AVChannelLayout in_layout{};
        if (adec->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC || adec->ch_layout.nb_channels == 0)
            av_channel_layout_default(&in_layout, std::max(1, adec->ch_layout.nb_channels));
        else
            av_channel_layout_copy(&in_layout, &adec->ch_layout);
        SwrContext *s = nullptr;
        rc = swr_alloc_set_opts2(&s, &aenc->ch_layout, AV_SAMPLE_FMT_FLTP, out_rate, &in_layout,
                                 adec->sample_fmt, in_rate, 0, nullptr);
        av_channel_layout_uninit(&in_layout);
        swr.reset(s);
        if (rc < 0 || (rc = swr_init(s)) < 0)
            fail(Errc::MEDIA, "open", "cannot set up audio resampling: " + av_error(rc));
        fifo.reset(av_audio_fifo_alloc(AV_SAMPLE_FMT_FLTP, channels, aenc->frame_size * 4));
        if (!fifo)
            throw_error(Errc::NOMEM, "transcode", "open", "cannot allocate an audio FIFO");
    }

    // ------------------------------------------------------------ timeline
    void note_origin(int64_t ts, AVRational tb)
    {
        if (have_origin || ts == AV_NOPTS_VALUE)
            return;
        have_origin = true;
        origin_us = av_rescale_q(ts, tb, kMicros);
    }

    int64_t out_us(int64_t ts, AVRational tb) const
    {
        return av_rescale_q(ts, tb, kMicros) - origin_us + offset_us;
    }

    // ------------------------------------------------------------ video
    void decode_video(const AVPacket *p)
    {
        int rc = avcodec_send_packet(vdec.get(), p);
        if (rc < 0 && rc != AVERROR_EOF) {
            if (rc == AVERROR(EAGAIN))
                fail(Errc::INTERNAL, "decode", "video decoder refused input");
            if (++corrupt <= 5 || corrupt % 100 == 0)
                log.warn("input '{}': corrupt video packet skipped ({}; {} so far)", input, av_error(rc),
                         corrupt);
            return;
        }
        while (true) {
            rc = avcodec_receive_frame(vdec.get(), frame.get());
            if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
                return;
            if (rc < 0) {
                if (++corrupt <= 5 || corrupt % 100 == 0)
                    log.warn("input '{}': video decoding error ({}; {} so far)", input, av_error(rc),
                             corrupt);
                return;
            }
            video_frame(frame.get());
            av_frame_unref(frame.get());
        }
    }

    void video_frame(AVFrame *f)
    {
        check_cancel();
        int64_t ts = timeline(f);
        if (ts == AV_NOPTS_VALUE)
            return;
        if (!started) {
            AVRational fr = vdec->framerate;
            bool rate_known = fr.num > 0 && fr.den > 0 && av_q2d(fr) >= 1 && av_q2d(fr) <= 240;
            if (!pending && !rate_known) {
                // Hold the first frame until the second tells the frame rate.
                pending = make_frame();
                if (av_frame_ref(pending.get(), f) < 0)
                    throw_error(Errc::NOMEM, "transcode", "decode", "cannot reference a frame");
                pending_pts = ts;
                return;
            }
            if (pending) {
                start(pending.get(), pending_pts, ts);
                process(pending.get(), pending_pts);
                pending.reset();
            } else {
                start(f, ts, AV_NOPTS_VALUE);
            }
        }
        process(f, ts);
    }

    // The frame's time on the output timeline (vtb), or AV_NOPTS_VALUE to
    // drop it.
    int64_t timeline(const AVFrame *f)
    {
        int64_t ts = f->best_effort_timestamp;
        if (ts == AV_NOPTS_VALUE)
            ts = f->pts;
        if (ts == AV_NOPTS_VALUE) {
            // No timestamps at all: count frames.
            ts = last_out_pts == AV_NOPTS_VALUE ? 0 : last_out_pts + frame_dur;
            note_origin(0, vtb);
        } else {
            note_origin(ts, vtb);
            ts = av_rescale_q(out_us(ts, vtb), kMicros, vtb);
        }
        if (last_out_pts != AV_NOPTS_VALUE && ts <= last_out_pts) {
            int64_t back_us = av_rescale_q(last_out_pts - ts, vtb, kMicros);
            if (back_us < 1000000) {
                log.debug("input '{}': video frame out of order dropped", input);
                return AV_NOPTS_VALUE;
            }
            // The input went back in time (a Source keeps its timeline
            // monotonic, so this is a safety net): the output goes on from
            // where it was.
            int64_t shift = last_out_pts + frame_dur - ts;
            offset_us += av_rescale_q(shift, vtb, kMicros);
            ts += shift;
            log.info("input '{}': input timestamps went back {:.3f} s: output timeline continues", input,
                     back_us / 1e6);
        }
        last_out_pts = ts;
        return ts;
    }

    void process(const AVFrame *f, int64_t ts)
    {
        // One decision for every rendition: keyframes stay aligned.
        int64_t t_us = av_rescale_q(ts, vtb, kMicros);
        int64_t half_frame_us = av_rescale_q(frame_dur, vtb, kMicros) / 2;
        int64_t interval_us = std::max<int64_t>(1, int64_t(opts.keyframe_interval * 1e6));
        bool key = frames == 0 || force_key || t_us + half_frame_us >= next_key_us;
        if (frames == 0 || force_key)
            key_anchor_us = t_us;
        if (key)
            next_key_us = key_anchor_us +
                          ((t_us + half_frame_us - key_anchor_us) / interval_us + 1) * interval_us;
        force_key = false;
        ++frames;

        for (size_t i = 0; i < rungs.size(); ++i)
            encode_rung(i, f, ts, key);
    }

    // A scaler for this source size/format, sliced over all cores as
    // FFmpeg's scale filter does (the encoders' threads are the rest).
    void open_scaler(RungState &r, const AVFrame *src)
    {
        r.sws.reset(sws_alloc_context());
        if (!r.sws)
            throw_error(Errc::NOMEM, "transcode", "scale", "cannot allocate a scaler");
        SwsContext *c = r.sws.get();
        av_opt_set_int(c, "srcw", src->width, 0);
        av_opt_set_int(c, "srch", src->height, 0);
        av_opt_set_int(c, "src_format", src->format, 0);
        av_opt_set_int(c, "dstw", r.rung.width, 0);
        av_opt_set_int(c, "dsth", r.rung.height, 0);
        av_opt_set_int(c, "dst_format", r.frame->format, 0);
        av_opt_set_int(c, "sws_flags", SWS_BICUBIC, 0);
        av_opt_set_int(c, "threads", 0, 0); // 0: one per core
        int rc = sws_init_context(c, nullptr, nullptr);
        if (rc < 0) {
            r.sws.reset();
            fail(Errc::UNSUPPORTED, "scale",
                 fmt::format("cannot scale {} {}x{} to {}x{}: {}",
                             av_get_pix_fmt_name(AVPixelFormat(src->format)), src->width,
                             src->height, r.rung.width, r.rung.height, av_error(rc)));
        }
        r.sws_w = src->width;
        r.sws_h = src->height;
        r.sws_fmt = src->format;
        r.sws_out = r.frame->format;
    }

    void encode_rung(size_t i, const AVFrame *src, int64_t pts, bool key)
    {
        RungState &r = rungs[i];
        ++r.frames_in;
        for (int attempt = 0;; ++attempt) {
            AVFrame *dst = scale(r, src);
            dst->pts = pts;
            // After a fallback the new encoder starts with a keyframe anyway.
            mark_key(dst, key || attempt > 0);
            int rc;
            if (r.fail_at >= 0 && r.frames_in > r.fail_at)
                rc = AVERROR_EXTERNAL; // test hook: what a broken hardware encoder returns
            else
                rc = r.enc->send(dst);
            if (rc >= 0)
                rc = drain(i);
            if (rc >= 0)
                return;
            if (attempt > 0)
                fail(Errc::MEDIA, "encode",
                     fmt::format("rendition {}: {} failed: {}", r.rung.name, r.enc->name(),
                                 av_error(rc)));
            replace_encoder(i, rc); // throws unless a hardware encoder can be replaced
        }
    }

    // The source frame scaled into the rung's reusable frame, in the
    // encoder's input format.
    AVFrame *scale(RungState &r, const AVFrame *src)
    {
        // Encoders copy or reference their input: make_writable allocates
        // anew only while a reference is still held.
        if (!r.frame || r.frame->format != r.enc->input_format()) {
            r.frame = make_frame();
            r.frame->format = r.enc->input_format();
            r.frame->width = r.rung.width;
            r.frame->height = r.rung.height;
            if (av_frame_get_buffer(r.frame.get(), 0) < 0)
                throw_error(Errc::NOMEM, "transcode", "scale", "cannot allocate a video frame");
        }
        if (av_frame_make_writable(r.frame.get()) < 0)
            throw_error(Errc::NOMEM, "transcode", "scale", "cannot allocate a video frame");
        AVFrame *dst = r.frame.get();
        if (!r.sws || r.sws_w != src->width || r.sws_h != src->height || r.sws_fmt != src->format ||
            r.sws_out != dst->format)
            open_scaler(r, src);
        int rc = sws_scale_frame(r.sws.get(), dst, src);
        if (rc < 0)
            fail(Errc::MEDIA, "scale", "scaling failed: " + av_error(rc));
        dst->pkt_dts = AV_NOPTS_VALUE;
        dst->sample_aspect_ratio = AVRational{1, 1};
        dst->color_range = src->color_range;
        dst->colorspace = src->colorspace;
        dst->color_primaries = src->color_primaries;
        dst->color_trc = src->color_trc;
        return dst;
    }

    // Moves every ready packet of rendition i to the sink; returns 0 or an
    // encoder error (EAGAIN / EOF are not errors).
    int drain(size_t i)
    {
        RungState &r = rungs[i];
        while (true) {
            int rc = avcodec_receive_packet(r.enc->ctx(), pkt.get());
            if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
                return 0;
            if (rc < 0)
                return rc;
            if (r.avc1.empty())
                r.avc1 = avc1_from_annexb(pkt->data, pkt->size);
            // A replacement encoder restarts its dts; the muxer needs them
            // strictly increasing.
            if (r.last_dts != AV_NOPTS_VALUE && pkt->dts != AV_NOPTS_VALUE &&
                pkt->dts <= r.last_dts) {
                pkt->dts = r.last_dts + 1;
                if (pkt->pts != AV_NOPTS_VALUE && pkt->pts < pkt->dts)
                    pkt->pts = pkt->dts;
            }
            if (pkt->dts != AV_NOPTS_VALUE)
                r.last_dts = pkt->dts;
            pkt->stream_index = 0;
            pkt->time_base = vtb;
            sink(i, 0, pkt.get());
            av_packet_unref(pkt.get());
        }
    }

    void replace_encoder(size_t i, int rc)
    {
        RungState &r = rungs[i];
        if (!r.replaceable)
            fail(Errc::MEDIA, "encode",
                 fmt::format("rendition {}: {} failed: {}", r.rung.name, r.enc->name(),
                             av_error(rc)));
        log.warn("input '{}': rendition {}: encoder {} failed mid-stream ({}): continuing with "
                 "libx264 from frame {}; the stream goes on with a keyframe",
                 input, r.rung.name, r.enc->name(), av_error(rc), r.frames_in);
        // Frames still inside the failed encoder are lost; no B-frames in
        // the replacement so its dts never go back behind what was sent.
        r.enc.reset();
        r.enc = open_encoder(r.rung, "libx264", gop_frames(), false);
        r.replaceable = false;
        r.fail_at = -1;
        ++fallbacks;
    }

    // ------------------------------------------------------------ audio
    void audio_packet(const AVPacket *p)
    {
        if (audio_copy) {
            if (av_packet_ref(tmp.get(), p) < 0)
                throw_error(Errc::NOMEM, "transcode", "audio", "cannot reference a packet");
            int64_t shift = av_rescale_q(offset_us - origin_us, kMicros, atb_in);
            if (tmp->pts != AV_NOPTS_VALUE)
                tmp->pts += shift;
            if (tmp->dts != AV_NOPTS_VALUE)
                tmp->dts += shift;
            if (tmp->dts == AV_NOPTS_VALUE)
                tmp->dts = tmp->pts;
            if (last_audio_dts != AV_NOPTS_VALUE && tmp->dts != AV_NOPTS_VALUE &&
                tmp->dts <= last_audio_dts) {
                // Keep audio continuous across a timeline reset.
                int64_t d = last_audio_dts + std::max<int64_t>(1, tmp->duration) - tmp->dts;
                tmp->dts += d;
                if (tmp->pts != AV_NOPTS_VALUE)
                    tmp->pts += d;
            }
            last_audio_dts = tmp->dts;
            tmp->stream_index = 1;
            tmp->time_base = atb_out;
            emit_audio(tmp.get());
            av_packet_unref(tmp.get());
            return;
        }
        int rc = avcodec_send_packet(adec.get(), p);
        if (rc < 0 && rc != AVERROR_EOF) {
            if (++corrupt <= 5 || corrupt % 100 == 0)
                log.warn("input '{}': corrupt audio packet skipped ({})", input, av_error(rc));
            return;
        }
        receive_audio_frames();
    }

    void receive_audio_frames()
    {
        while (true) {
            int rc = avcodec_receive_frame(adec.get(), aframe.get());
            if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
                return;
            if (rc < 0) {
                log.warn("input '{}': audio decoding error ({})", input, av_error(rc));
                return;
            }
            resample(aframe.get());
            av_frame_unref(aframe.get());
            encode_audio(false);
        }
    }

    void resample(const AVFrame *in)
    {
        int out_rate = aenc->sample_rate;
        if (in) {
            int64_t ts = in->best_effort_timestamp != AV_NOPTS_VALUE ? in->best_effort_timestamp
                                                                     : in->pts;
            if (ts != AV_NOPTS_VALUE) {
                note_origin(ts, atb_in);
                int64_t want = av_rescale_q(out_us(ts, atb_in), kMicros, atb_out);
                int64_t have = next_sample == AV_NOPTS_VALUE
                                   ? AV_NOPTS_VALUE
                                   : next_sample + av_audio_fifo_size(fifo.get());
                // Anchor at the first frame and after forward gaps longer
                // than half a second; otherwise count samples (continuous).
                if (have == AV_NOPTS_VALUE || want - have > out_rate / 2) {
                    if (have != AV_NOPTS_VALUE)
                        encode_audio(true); // what is buffered belongs before the gap
                    next_sample = want;
                }
            } else if (next_sample == AV_NOPTS_VALUE) {
                next_sample = 0;
            }
        }
        int max_out = int(swr_get_out_samples(swr.get(), in ? in->nb_samples : 0));
        if (max_out <= 0)
            return;
        av_frame_unref(rframe.get());
        rframe->format = AV_SAMPLE_FMT_FLTP;
        av_channel_layout_copy(&rframe->ch_layout, &aenc->ch_layout);
        rframe->nb_samples = max_out;
        if (av_frame_get_buffer(rframe.get(), 0) < 0)
            throw_error(Errc::NOMEM, "transcode", "audio", "cannot allocate an audio frame");
        int n = swr_convert(swr.get(), rframe->data, max_out,
                            in ? const_cast<const uint8_t **>(in->extended_data) : nullptr,
                            in ? in->nb_samples : 0);
        if (n < 0)
            fail(Errc::MEDIA, "audio", "resampling failed: " + av_error(n));
        if (n > 0 && av_audio_fifo_write(fifo.get(), reinterpret_cast<void **>(rframe->data), n) < n)
            throw_error(Errc::NOMEM, "transcode", "audio", "cannot grow the audio FIFO");
        // Samples before the output origin (audio starting before the
        // first video frame's time base zero) are cut.
        if (next_sample != AV_NOPTS_VALUE && next_sample < 0) {
            int drop = int(std::min<int64_t>(-next_sample, av_audio_fifo_size(fifo.get())));
            av_audio_fifo_drain(fifo.get(), drop);
            next_sample += drop;
        }
    }

    // Encodes whole encoder frames from the FIFO; with `all` the rest too,
    // padded with silence to a whole frame (the AAC encoder takes a short
    // frame only as the very last one, and a gap is not the end).
    void encode_audio(bool all)
    {
        int fs = aenc->frame_size > 0 ? aenc->frame_size : 1024;
        while (av_audio_fifo_size(fifo.get()) >= fs ||
               (all && av_audio_fifo_size(fifo.get()) > 0)) {
            int n = std::min(fs, av_audio_fifo_size(fifo.get()));
            FramePtr f = make_frame();
            f->format = AV_SAMPLE_FMT_FLTP;
            av_channel_layout_copy(&f->ch_layout, &aenc->ch_layout);
            f->sample_rate = aenc->sample_rate;
            f->nb_samples = fs;
            if (av_frame_get_buffer(f.get(), 0) < 0)
                throw_error(Errc::NOMEM, "transcode", "audio", "cannot allocate an audio frame");
            av_audio_fifo_read(fifo.get(), reinterpret_cast<void **>(f->data), n);
            if (n < fs)
                av_samples_set_silence(f->data, n, fs - n, f->ch_layout.nb_channels,
                                       AV_SAMPLE_FMT_FLTP);
            f->pts = next_sample;
            next_sample += fs;
            send_audio_frame(f.get());
        }
    }

    void send_audio_frame(const AVFrame *f)
    {
        int rc = avcodec_send_frame(aenc.get(), f);
        if (rc < 0 && rc != AVERROR_EOF)
            fail(Errc::MEDIA, "encode", "AAC encoding failed: " + av_error(rc));
        while (true) {
            rc = avcodec_receive_packet(aenc.get(), pkt.get());
            if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
                return;
            if (rc < 0)
                fail(Errc::MEDIA, "encode", "AAC encoding failed: " + av_error(rc));
            pkt->stream_index = 1;
            pkt->time_base = atb_out;
            emit_audio(pkt.get());
            av_packet_unref(pkt.get());
        }
    }

    void emit_audio(const AVPacket *p)
    {
        // Until the first video frame there is no rendition timeline to put
        // audio on; those packets are few (decoder delay) and dropped.
        if (frames == 0)
            return;
        for (size_t i = 0; i < rungs.size(); ++i) {
            PacketPtr copy = make_packet();
            if (av_packet_ref(copy.get(), p) < 0)
                throw_error(Errc::NOMEM, "transcode", "audio", "cannot reference a packet");
            sink(i, 1, copy.get());
        }
    }
};

Transcoder::Transcoder(std::string input, const std::vector<StreamSpec> &streams,
                       TranscoderOptions opts, core::Logger log, PacketSink sink)
    : impl_(std::make_unique<Impl>())
{
    auto &m = *impl_;
    m.input = std::move(input);
    m.opts = std::move(opts);
    m.log = std::move(log);
    m.sink = std::move(sink);
    if (m.opts.ladder.empty())
        throw_error(Errc::JOB, "job", "validate", "field 'ladder': needs at least one rung");
    if (!(m.opts.keyframe_interval > 0))
        m.opts.keyframe_interval = 1.0;
    int video = -1, audio = -1;
    for (size_t i = 0; i < streams.size(); ++i) {
        if (!streams[i].par)
            continue;
        if (video < 0 && streams[i].par->codec_type == AVMEDIA_TYPE_VIDEO)
            video = int(i);
        if (audio < 0 && streams[i].par->codec_type == AVMEDIA_TYPE_AUDIO)
            audio = int(i);
    }
    if (video < 0)
        m.fail(Errc::MEDIA, "open",
               "no video stream to transcode for the ladder (an audio-only or data input)");
    m.open_video(streams[size_t(video)], video);
    if (audio >= 0)
        m.open_audio(streams[size_t(audio)], audio);
}

Transcoder::~Transcoder() = default;

size_t Transcoder::renditions() const noexcept { return impl_->rungs.size(); }
const Rung &Transcoder::rung(size_t r) const { return impl_->rungs.at(r).rung; }

bool Transcoder::started() const noexcept { return impl_->started; }
void Transcoder::force_keyframe() noexcept { impl_->force_key = true; }

StreamSpec Transcoder::video_stream(size_t r) const
{
    return StreamSpec{impl_->rungs.at(r).par.get(), impl_->vtb};
}

bool Transcoder::has_audio() const noexcept { return impl_->audio_index >= 0; }

StreamSpec Transcoder::audio_stream() const
{
    return StreamSpec{impl_->audio_index >= 0 ? impl_->apar.get() : nullptr, impl_->atb_out};
}

void Transcoder::send(const AVPacket *pkt)
{
    if (!pkt)
        return;
    auto &m = *impl_;
    int64_t ts = pkt->dts != AV_NOPTS_VALUE ? pkt->dts : pkt->pts;
    if (pkt->stream_index == m.video_index) {
        m.note_origin(ts, m.vtb); // the first packet of either stream is time zero
        m.decode_video(pkt);
    } else if (pkt->stream_index == m.audio_index) {
        m.note_origin(ts, m.atb_in);
        m.audio_packet(pkt);
    }
}

void Transcoder::finish()
{
    auto &m = *impl_;
    m.decode_video(nullptr);
    if (!m.started && m.pending) {
        // A one-frame input.
        m.start(m.pending.get(), m.pending_pts, AV_NOPTS_VALUE);
        m.process(m.pending.get(), m.pending_pts);
        m.pending.reset();
    }
    if (m.audio_index >= 0 && !m.audio_copy) {
        avcodec_send_packet(m.adec.get(), nullptr);
        m.receive_audio_frames();
        m.resample(nullptr);
        m.encode_audio(true);
        m.send_audio_frame(nullptr);
    }
    for (size_t i = 0; i < m.rungs.size() && m.started; ++i) {
        int rc = m.rungs[i].enc->send(nullptr);
        if (rc >= 0)
            rc = m.drain(i);
        if (rc < 0)
            m.log.warn("input '{}': rendition {}: flushing {} failed: {}", m.input, m.rungs[i].rung.name,
                       m.rungs[i].enc->name(), av_error(rc));
    }
}

int64_t Transcoder::frames() const noexcept { return impl_->frames; }

double Transcoder::seconds_done() const noexcept
{
    if (impl_->last_out_pts == AV_NOPTS_VALUE)
        return 0;
    return double(impl_->last_out_pts + impl_->frame_dur) * av_q2d(impl_->vtb);
}

std::string Transcoder::codecs(size_t r) const
{
    auto &rs = impl_->rungs.at(r);
    std::string v = rs.avc1.empty() ? "avc1.640028" : rs.avc1;
    if (!has_audio())
        return v;
    return v + "," + mp4a_of(impl_->apar->profile);
}

std::string Transcoder::encoder(size_t r) const
{
    auto &rs = impl_->rungs.at(r);
    return rs.enc ? rs.enc->name() : impl_->opts.encoder;
}
int Transcoder::fallbacks() const noexcept { return impl_->fallbacks; }
double Transcoder::frame_rate() const noexcept { return av_q2d(impl_->frame_rate); }

} // namespace openace::media
