#include "media/source.hpp"

#include "core/error.hpp"
#include "media/compat_encoder.hpp"

extern "C" {
#include <libavdevice/avdevice.h>
#include <libavutil/dict.h>
}

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>

namespace openace::media {

namespace {

constexpr AVRational kMicros{1, 1000000};

void register_devices_once()
{
    static std::once_flag once;
    std::call_once(once, [] { avdevice_register_all(); });
}

bool starts_with(const std::string &s, std::string_view prefix)
{
    return s.compare(0, prefix.size(), prefix) == 0;
}

std::string scheme_of(const std::string &url)
{
    auto p = url.find("://");
    if (p == std::string::npos || p == 0)
        return {};
    std::string s = url.substr(0, p);
    for (char c : s)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.')
            return {};
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}

// Protocols that carry a live stream by nature: their end is a failure.
bool live_protocol(const std::string &scheme)
{
    for (const char *p : {"udp", "rtp", "srt", "rtmp", "rtmps", "rtmpt", "rtsp", "tcp", "rist", "mmsh", "mmst"})
        if (scheme == p)
            return true;
    return false;
}

int64_t ts_us(int64_t ts, AVRational tb)
{
    return av_rescale_q(ts, tb, kMicros);
}

// What a file that FFmpeg refused looks like: a format FFmpeg recognizes
// by its first bytes (then it is truncated or damaged) or nothing at all.
std::string probe_file_format(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    std::string head(4096 + AVPROBE_PADDING_SIZE, '\0');
    f.read(head.data(), 4096);
    auto n = f.gcount();
    if (n <= 0)
        return {};
    AVProbeData pd{};
    pd.filename = path.c_str();
    pd.buf = reinterpret_cast<unsigned char *>(head.data());
    pd.buf_size = int(n);
    int score = 0;
    const AVInputFormat *fmt = av_probe_input_format3(&pd, 1, &score);
    if (!fmt || score < AVPROBE_SCORE_EXTENSION + 1)
        return {};
    return fmt->long_name ? fmt->long_name : fmt->name;
}

} // namespace

// One opened input and which of its streams we keep.
struct Source::Input {
    InputFormatPtr fmt;
    std::vector<int> map; // input stream index -> output index, -1 dropped
    std::vector<int> kept; // output index -> input stream index
    uint64_t packets = 0;
};

struct Source::Stream {
    AVMediaType type = AVMEDIA_TYPE_UNKNOWN;
    AVCodecID in_codec = AV_CODEC_ID_NONE;
    AVCodecParameters *par = nullptr; // our copy: stays valid across reconnects
    AVRational in_tb{1, 90000};
    std::unique_ptr<CompatEncoder> enc;
    int64_t last_dts_us = INT64_MIN;
    ~Stream() { avcodec_parameters_free(&par); }
};

Source::Source(SourceOptions options)
    : opts_(std::move(options)), interrupter_(opts_.cancel), backoff_(opts_.reconnect),
      scratch_(make_packet())
{
    url_ = opts_.input;
    if (starts_with(url_, "lavfi:")) {
        url_ = url_.substr(6);
        opts_.format = "lavfi";
    }
    lavfi_ = opts_.format == "lavfi";
    std::string scheme = lavfi_ ? std::string() : scheme_of(url_);
    network_ = !scheme.empty() && scheme != "file";
    live_ = network_ && live_protocol(scheme); // refined once opened
}

Source::~Source() = default;

bool Source::has_video() const noexcept
{
    for (auto &s : streams_)
        if (s->type == AVMEDIA_TYPE_VIDEO)
            return true;
    return false;
}

double Source::position_s() const noexcept
{
    if (first_us_ == INT64_MIN || end_us_ == INT64_MIN)
        return 0;
    return double(end_us_ - first_us_) / 1e6;
}

void Source::throw_cancelled() const
{
    throw_errorf(Errc::CANCELLED, "segmenter", "read", "reading '{}' was cancelled", opts_.input);
}

std::unique_ptr<Source::Input> Source::open_input()
{
    register_devices_once();
    const std::string &name = opts_.input;
    if (!network_ && !lavfi_) {
        std::string path = starts_with(url_, "file:") ? url_.substr(5) : url_;
        if (starts_with(path, "//"))
            path = path.substr(2);
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0)
            throw_errorf(Errc::IO, "segmenter", "open", "input '{}' does not exist or cannot be read: {}",
                         name, std::strerror(errno));
        if (S_ISDIR(st.st_mode))
            throw_errorf(Errc::IO, "segmenter", "open", "input '{}' is a directory, not a media file", name);
        if (::access(path.c_str(), R_OK) != 0)
            throw_errorf(Errc::IO, "segmenter", "open", "input '{}' cannot be read: {}", name,
                         std::strerror(errno));
        if (S_ISREG(st.st_mode) && st.st_size == 0)
            throw_errorf(Errc::MEDIA, "segmenter", "open", "input '{}' is not a media file: it is empty", name);
    }

    const AVInputFormat *ifmt = nullptr;
    if (!opts_.format.empty()) {
        ifmt = av_find_input_format(opts_.format.c_str());
        if (!ifmt)
            throw_errorf(Errc::MEDIA, "segmenter", "open", "input format '{}' (for '{}') is not known to this FFmpeg build",
                         opts_.format, name);
    }

    auto in = std::make_unique<Input>();
    AVFormatContext *ctx = avformat_alloc_context();
    if (!ctx)
        throw_error(Errc::NOMEM, "segmenter", "open", "cannot allocate a format context");
    ctx->interrupt_callback = interrupter_.callback();
    AVDictionary *opts = nullptr;
    if (network_) {
        // Our own reconnect logic handles failures; keep protocol timeouts
        // in line with it.
        av_dict_set_int(&opts, "rw_timeout", int64_t(opts_.read_timeout.count()) * 1000, 0);
    }
    interrupter_.arm(opts_.open_timeout);
    int rc = avformat_open_input(&ctx, url_.c_str(), ifmt, &opts);
    av_dict_free(&opts);
    if (rc < 0) {
        // avformat_open_input frees ctx on failure.
        interrupter_.disarm();
        if (interrupter_.cancelled())
            throw_cancelled();
        if (interrupter_.expired())
            throw_errorf(Errc::TIMEOUT, "segmenter", "open", "input '{}' did not open within {} ms", name,
                         opts_.open_timeout.count());
        if (network_)
            throw_errorf(Errc::NET, "segmenter", "open", "cannot open input '{}': {}", name, av_error(rc));
        if (lavfi_)
            throw_errorf(Errc::MEDIA, "segmenter", "open", "input '{}' is not a valid lavfi graph: {}", name,
                         av_error(rc));
        if (rc == AVERROR(ENOENT))
            throw_errorf(Errc::IO, "segmenter", "open", "input '{}' does not exist", name);
        if (rc == AVERROR_INVALIDDATA || rc == AVERROR_EOF) {
            std::string fmt = probe_file_format(url_);
            if (!fmt.empty())
                throw_errorf(Errc::MEDIA, "segmenter", "open",
                             "input '{}' looks like a {} file but cannot be read: it is truncated or corrupt ({})",
                             name, fmt, av_error(rc));
            throw_errorf(Errc::MEDIA, "segmenter", "open", "input '{}' is not a media file FFmpeg can read ({})",
                         name, av_error(rc));
        }
        throw_errorf(Errc::IO, "segmenter", "open", "cannot open input '{}': {}", name, av_error(rc));
    }
    in->fmt.reset(ctx);
    rc = avformat_find_stream_info(ctx, nullptr);
    interrupter_.disarm();
    if (interrupter_.cancelled())
        throw_cancelled();
    if (rc < 0)
        throw_errorf(network_ ? Errc::NET : Errc::MEDIA, "segmenter", "open",
                     "cannot read the streams of input '{}': {}", name, av_error(rc));

    // Keep the main video stream and every audio stream.
    in->map.assign(ctx->nb_streams, -1);
    int video = av_find_best_stream(ctx, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
    if (video >= 0 && (ctx->streams[video]->disposition & AV_DISPOSITION_ATTACHED_PIC))
        video = -1;
    for (unsigned i = 0; i < ctx->nb_streams; ++i) {
        AVStream *st = ctx->streams[i];
        auto *par = st->codecpar;
        bool keep = (int(i) == video) ||
                    (par->codec_type == AVMEDIA_TYPE_AUDIO && par->codec_id != AV_CODEC_ID_NONE &&
                     in->kept.size() < 8);
        if (!keep)
            continue;
        in->map[i] = int(in->kept.size());
        in->kept.push_back(int(i));
    }
    if (in->kept.empty())
        throw_errorf(Errc::MEDIA, "segmenter", "open", "input '{}' has no video and no audio stream", name);

    if (network_ && ctx->duration == AV_NOPTS_VALUE)
        live_ = true;
    duration_s_ = (!live_ && !lavfi_ && ctx->duration != AV_NOPTS_VALUE && ctx->duration > 0)
                      ? double(ctx->duration) / AV_TIME_BASE
                      : -1;
    return in;
}

void Source::adopt(std::unique_ptr<Input> in, bool first)
{
    AVFormatContext *ctx = in->fmt.get();
    bool same = !first && in->kept.size() == streams_.size();
    if (same) {
        for (size_t o = 0; o < streams_.size(); ++o) {
            auto *par = ctx->streams[in->kept[o]]->codecpar;
            if (par->codec_type != streams_[o]->type || par->codec_id != streams_[o]->in_codec)
                same = false;
        }
    }
    if (same) {
        for (size_t o = 0; o < streams_.size(); ++o) {
            AVStream *st = ctx->streams[in->kept[o]];
            auto &s = *streams_[o];
            s.in_tb = st->time_base;
            if (s.enc)
                s.enc->reset_input(st->codecpar, st->time_base);
        }
        in_ = std::move(in);
        return;
    }
    if (!first) {
        opts_.log.warn("input '{}' came back with different streams: starting a new stream layout", opts_.input);
        ++layout_version_;
    }
    std::vector<std::unique_ptr<Stream>> streams;
    std::vector<StreamSpec> specs;
    for (int idx : in->kept) {
        AVStream *st = ctx->streams[idx];
        auto s = std::make_unique<Stream>();
        s->type = st->codecpar->codec_type;
        s->in_codec = st->codecpar->codec_id;
        s->in_tb = st->time_base;
        s->par = avcodec_parameters_alloc();
        if (!s->par || avcodec_parameters_copy(s->par, st->codecpar) < 0)
            throw_error(Errc::NOMEM, "segmenter", "open", "cannot copy codec parameters");
        s->par->codec_tag = 0; // the TS muxer picks its own
        StreamSpec spec{s->par, st->time_base};
        if (opts_.compat_encode && CompatEncoder::needed(st->codecpar)) {
            AVRational rate = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
            s->enc = std::make_unique<CompatEncoder>(st->codecpar, st->time_base, rate, opts_.keyframe_interval,
                                                     opts_.log);
            spec = StreamSpec{s->enc->out_par(), s->enc->out_time_base()};
        }
        specs.push_back(spec);
        streams.push_back(std::move(s));
    }
    streams_ = std::move(streams);
    specs_ = std::move(specs);
    in_ = std::move(in);
}

void Source::open()
{
    for (;;) {
        try {
            adopt(open_input(), true);
            if (network_ || lavfi_)
                opts_.log.info("opened {} input '{}' ({} stream{})", live_ ? "live" : "finite", opts_.input,
                               streams_.size(), streams_.size() == 1 ? "" : "s");
            else
                opts_.log.info("opened '{}' ({}, {:.3f} s, {} stream{})", opts_.input, in_->fmt->iformat->name,
                               duration_s_, streams_.size(), streams_.size() == 1 ? "" : "s");
            return;
        } catch (const Error &e) {
            // Only a network source may be unreachable for a while.
            if (!network_ || e.code() == Errc::CANCELLED || e.code() == Errc::MEDIA)
                throw;
            auto delay = backoff_.next_delay();
            if (!delay)
                throw_errorf(e.code(), "segmenter", "open", "input '{}' is unreachable after {} attempts: {}",
                             opts_.input, backoff_.attempts() + 1, e.detail());
            opts_.log.warn("{}; retrying in {} ms", e.detail(), delay->count());
            auto until = std::chrono::steady_clock::now() + *delay;
            while (std::chrono::steady_clock::now() < until) {
                if (interrupter_.cancelled())
                    throw_cancelled();
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
        }
    }
}

void Source::restart(const char *why, bool failure)
{
    in_.reset();
    ++reconnects_;
    for (;;) {
        if (failure) {
            auto delay = backoff_.next_delay();
            if (!delay)
                throw_errorf(network_ ? Errc::NET : Errc::MEDIA, "segmenter", "read",
                             "input '{}' failed {} times in a row, giving up: {}", opts_.input,
                             backoff_.attempts() + 1, why);
            opts_.log.warn("input '{}': {}; reconnecting in {} ms", opts_.input, why, delay->count());
            auto until = std::chrono::steady_clock::now() + *delay;
            while (std::chrono::steady_clock::now() < until) {
                if (interrupter_.cancelled())
                    throw_cancelled();
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
        } else {
            opts_.log.debug("input '{}': {}; restarting", opts_.input, why);
        }
        try {
            adopt(open_input(), false);
            break;
        } catch (const Error &e) {
            if (e.code() == Errc::CANCELLED || !(network_ || opts_.loop))
                throw;
            failure = true;
            why = "cannot reopen";
            opts_.log.warn("{}", e.detail());
        }
    }
    need_offset_ = true;
    for (auto &s : streams_)
        s->last_dts_us = INT64_MIN;
    if (failure || std::string_view(why) == "forced") {
        pending_discontinuity_ = true;
        media_anchor_us_ = INT64_MIN; // time went by while we were away
    }
}

void Source::pace(int64_t t_us)
{
    auto now = std::chrono::steady_clock::now();
    if (media_anchor_us_ == INT64_MIN) {
        media_anchor_us_ = t_us;
        wall_anchor_ = now;
        return;
    }
    auto target = wall_anchor_ + std::chrono::microseconds(t_us - media_anchor_us_);
    while (now < target) {
        if (interrupter_.cancelled())
            throw_cancelled();
        if (force_reconnect_.load(std::memory_order_relaxed))
            return;
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(target - now,
                                                                                  std::chrono::milliseconds(50)));
        now = std::chrono::steady_clock::now();
    }
}

bool Source::read(AVPacket *pkt)
{
    if (!in_ && !ended_)
        open();
    for (;;) {
        if (queue_pos_ < queue_.size()) {
            av_packet_unref(pkt);
            av_packet_move_ref(pkt, queue_[queue_pos_++].get());
            if (queue_pos_ == queue_.size()) {
                queue_.clear();
                queue_pos_ = 0;
            }
            discontinuity_ = pending_discontinuity_;
            pending_discontinuity_ = false;
            return true;
        }
        if (ended_)
            return false;
        if (demux(pkt)) {
            discontinuity_ = pending_discontinuity_;
            pending_discontinuity_ = false;
            return true;
        }
    }
}

// Reads one input packet: true with a stream-copy packet in pkt, false when
// it went to an encoder or was dropped (or the source ended: ended_).
bool Source::demux(AVPacket *pkt)
{
    if (interrupter_.cancelled())
        throw_cancelled();
    if (force_reconnect_.exchange(false)) {
        restart("forced", false);
        return false;
    }
    AVFormatContext *ctx = in_->fmt.get();
    AVPacket *p = scratch_.get();
    if (live_)
        interrupter_.arm(opts_.read_timeout);
    int rc = av_read_frame(ctx, p);
    interrupter_.disarm();
    if (rc < 0) {
        if (interrupter_.cancelled())
            throw_cancelled();
        bool eof = rc == AVERROR_EOF || (ctx->pb && avio_feof(ctx->pb) && rc != AVERROR_EXIT);
        if (live_) {
            restart(interrupter_.expired() ? "no data within the read timeout"
                    : eof                  ? "the stream ended"
                                           : "read error",
                    true);
            if (!eof && !interrupter_.expired())
                opts_.log.debug("read error was: {}", av_error(rc));
            return false;
        }
        if (!eof) {
            if (opts_.loop) {
                restart("read error", true);
                return false;
            }
            throw_errorf(Errc::MEDIA, "segmenter", "read",
                         "input '{}' is truncated or corrupt: reading failed at {:.3f} s: {}", opts_.input,
                         position_s(), av_error(rc));
        }
        if (opts_.loop) {
            // A file that gave nothing would loop forever: that is a failure.
            restart("end of file", in_->packets == 0);
            return false;
        }
        double pos = position_s();
        if (!network_ && !lavfi_ && duration_s_ > 0 && pos < duration_s_ - std::max(1.0, 0.1 * duration_s_))
            throw_errorf(Errc::MEDIA, "segmenter", "read",
                         "input '{}' is truncated: its data ends at {:.3f} s of {:.3f} s", opts_.input, pos,
                         duration_s_);
        for (size_t o = 0; o < streams_.size(); ++o) {
            if (!streams_[o]->enc)
                continue;
            size_t before = queue_.size();
            streams_[o]->enc->encode(nullptr, queue_);
            for (size_t i = before; i < queue_.size(); ++i)
                queue_[i]->stream_index = int(o);
        }
        ended_ = true;
        return false;
    }
    struct Unref {
        AVPacket *p;
        ~Unref() { av_packet_unref(p); }
    } unref{p};

    int out = (p->stream_index >= 0 && size_t(p->stream_index) < in_->map.size()) ? in_->map[p->stream_index] : -1;
    if (out < 0)
        return false;
    Stream &s = *streams_[out];
    int64_t raw = p->dts != AV_NOPTS_VALUE ? p->dts : p->pts;
    if (raw == AV_NOPTS_VALUE)
        return false; // nothing to place it on the timeline with
    ++in_->packets;
    backoff_.reset();
    int64_t raw_us = ts_us(raw, s.in_tb);
    if (need_offset_) {
        int64_t start = raw_us;
        if (ctx->start_time != AV_NOPTS_VALUE)
            start = std::min(start, ctx->start_time);
        offset_us_ = end_us_ == INT64_MIN ? 0 : end_us_ - start;
        need_offset_ = false;
    }
    int64_t t = raw_us + offset_us_;
    // A jump inside the stream (encoder restart, wrap the demuxer missed):
    // glue the timeline and call it a discontinuity.
    if (!lavfi_ && s.last_dts_us != INT64_MIN &&
        (t < s.last_dts_us - 1'000'000 || t > s.last_dts_us + 10'000'000)) {
        opts_.log.warn("input '{}': timestamps jumped by {:.3f} s; continuing with a discontinuity", opts_.input,
                       double(t - s.last_dts_us) / 1e6);
        offset_us_ += end_us_ - t;
        t = end_us_;
        pending_discontinuity_ = true;
        for (auto &o : streams_)
            o->last_dts_us = INT64_MIN;
    }
    s.last_dts_us = t;
    int64_t off = av_rescale_q(offset_us_, kMicros, s.in_tb);
    if (p->pts != AV_NOPTS_VALUE)
        p->pts += off;
    if (p->dts != AV_NOPTS_VALUE)
        p->dts += off;
    int64_t dur_us = p->duration > 0 ? ts_us(p->duration, s.in_tb) : 0;
    if (first_us_ == INT64_MIN)
        first_us_ = t;
    end_us_ = std::max(end_us_ == INT64_MIN ? t : end_us_, t + dur_us);
    if (opts_.realtime && !network_)
        pace(t);
    if (s.enc) {
        // The stream's own time base goes to the decoder; it was reset to the
        // current input's in adopt().
        size_t before = queue_.size();
        s.enc->encode(p, queue_);
        for (size_t i = before; i < queue_.size(); ++i)
            queue_[i]->stream_index = out;
        return false;
    }
    // Copy: timestamps in the input stream's time base, which is what
    // streams() announces for the first layout; a reconnected input may use
    // another one.
    AVRational spec_tb = specs_[out].time_base;
    if (av_cmp_q(spec_tb, s.in_tb) != 0)
        av_packet_rescale_ts(p, s.in_tb, spec_tb);
    p->stream_index = out;
    p->pos = -1;
    av_packet_unref(pkt);
    av_packet_move_ref(pkt, p);
    return true;
}

} // namespace openace::media
