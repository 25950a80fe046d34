#include "media/ts_chunker.hpp"

#include "core/error.hpp"

extern "C" {
#include <libavutil/opt.h>
}

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>

namespace openace::media {

namespace {

constexpr AVRational k90k{1, 90000};
constexpr size_t kTsPacket = 188;
// The muxer's I/O buffer: a whole number of TS packets.
constexpr int kIoBuffer = int(kTsPacket) * 348;

int64_t now_ms()
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

unsigned ts_pid(const char *p)
{
    return (unsigned(uint8_t(p[1]) & 0x1f) << 8) | uint8_t(p[2]);
}

// The muxer writes its SDT before PAT and PMT when it resends tables; a
// chunk must begin with PAT then PMT.  Reorders the leading run of table
// packets (PAT, then PMTs, then SDT) without touching anything else:
// continuity counters are per PID, so their order across PIDs is free.
void put_pat_first(std::string &data, unsigned pmt_pid_first, unsigned pmt_pid_last)
{
    auto rank = [&](unsigned pid) -> int {
        if (pid == 0)
            return 0;
        if (pid >= pmt_pid_first && pid <= pmt_pid_last)
            return 1;
        if (pid == 0x11)
            return 2;
        return -1;
    };
    size_t n = 0;
    while ((n + 1) * kTsPacket <= data.size() && n < 16 && data[n * kTsPacket] == 0x47 &&
           rank(ts_pid(&data[n * kTsPacket])) >= 0)
        ++n;
    if (n < 2 || rank(ts_pid(&data[0])) == 0)
        return;
    std::string head = data.substr(0, n * kTsPacket);
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i)
        order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return rank(ts_pid(&head[a * kTsPacket])) < rank(ts_pid(&head[b * kTsPacket]));
    });
    for (size_t i = 0; i < n; ++i)
        std::memcpy(&data[i * kTsPacket], &head[order[i] * kTsPacket], kTsPacket);
}

} // namespace

struct TsChunker::BufferPool {
    static constexpr size_t kMax = 4;
    std::mutex mu;
    std::vector<std::string> free;

    std::string take()
    {
        std::lock_guard lock(mu);
        if (free.empty())
            return {};
        std::string s = std::move(free.back());
        free.pop_back();
        return s;
    }
    void give(std::string &&s)
    {
        s.clear(); // keeps the capacity
        std::lock_guard lock(mu);
        if (free.size() < kMax)
            free.push_back(std::move(s));
    }
};

namespace {

// Deleter of Chunk::data: hands the buffer back to its chunker's pool (on
// whatever thread dropped the last reference), or frees it when the
// chunker is gone.
template <class Pool> struct Recycle {
    std::weak_ptr<Pool> pool;
    void operator()(const std::string *s) const
    {
        std::unique_ptr<std::string> own(const_cast<std::string *>(s));
        if (auto p = pool.lock())
            p->give(std::move(*own));
    }
};

} // namespace

TsChunker::TsChunker(const std::vector<StreamSpec> &streams, TsChunkerOptions options, Sink sink)
    : opts_(std::move(options)), sink_(std::move(sink)),
      target_90k_(int64_t(std::llround(std::max(0.001, opts_.target_duration) * 90000))),
      seq_(opts_.first_seq)
{
    if (streams.empty())
        throw_error(Errc::MEDIA, "segmenter", "mux", "no stream to put in MPEG-TS");
    AVFormatContext *ctx = nullptr;
    int rc = avformat_alloc_output_context2(&ctx, nullptr, "mpegts", nullptr);
    if (rc < 0 || !ctx)
        throw_errorf(Errc::MEDIA, "segmenter", "mux", "cannot create the MPEG-TS muxer: {}", av_error(rc));
    ctx_.reset(ctx);
    io_ = make_write_io(this, &TsChunker::on_write, kIoBuffer);
    ctx->pb = io_.get();
    ctx->flags |= AVFMT_FLAG_CUSTOM_IO;
    // We flush at chunk boundaries ourselves; no flush per packet.
    ctx->flush_packets = 0;
    // Timestamps go out as they come (chunks of one stream must agree);
    // priming packets before the start are dropped in add().
    ctx->avoid_negative_ts = AVFMT_AVOID_NEG_TS_DISABLED;

    int ref_audio = -1;
    for (size_t i = 0; i < streams.size(); ++i) {
        const StreamSpec &s = streams[i];
        AVStream *st = avformat_new_stream(ctx, nullptr);
        if (!st || avcodec_parameters_copy(st->codecpar, s.par) < 0)
            throw_error(Errc::NOMEM, "segmenter", "mux", "cannot add a stream to the MPEG-TS muxer");
        st->codecpar->codec_tag = 0;
        st->time_base = s.time_base;
        Track t;
        t.type = s.par->codec_type;
        t.in_tb = s.time_base;
        t.st = st;
        tracks_.push_back(t);
        if (t.type == AVMEDIA_TYPE_VIDEO && !has_video_) {
            has_video_ = true;
            ref_ = int(i);
        }
        if (t.type == AVMEDIA_TYPE_AUDIO && ref_audio < 0)
            ref_audio = int(i);
    }
    if (!has_video_)
        ref_ = ref_audio >= 0 ? ref_audio : 0;
    AVDictionary *mux_opts = nullptr;
    if (!has_video_) {
        // PCR on the audio PID every 40 ms; the muxer cannot derive a
        // period from an AAC stream's parameters (and says so).
        av_dict_set(&mux_opts, "pcr_period", "40", 0);
    }
    rc = avformat_write_header(ctx, &mux_opts);
    av_dict_free(&mux_opts);
    if (rc < 0)
        throw_errorf(Errc::MEDIA, "segmenter", "mux", "the MPEG-TS muxer refused the streams: {}", av_error(rc));
    // First guess of a chunk's size from the streams' bit rates (plus MPEG-TS
    // overhead), so the first chunks do not grow by doubling; later chunks
    // go by the largest seen.
    int64_t bps = 0;
    for (auto &s : streams)
        bps += std::max<int64_t>(0, s.par->bit_rate);
    if (bps > 0)
        reserve_ = std::clamp<size_t>(size_t(double(bps) / 8 * opts_.target_duration * 1.25), 64 << 10, 64 << 20);
    pool_ = std::make_shared<BufferPool>();
    buf_.reserve(reserve_);
}

TsChunker::~TsChunker()
{
    // io_ goes after ctx_ (declared later, destroyed first): detach it.
    if (ctx_)
        ctx_->pb = nullptr;
}

int TsChunker::on_write(void *opaque, uint8_t *buf, int size)
{
    auto *self = static_cast<TsChunker *>(opaque);
    self->buf_.append(reinterpret_cast<const char *>(buf), size_t(size));
    return size;
}

void TsChunker::request_tables()
{
    // Consumed by the muxer at the next PES it writes: PAT/PMT go first.
    av_opt_set(ctx_->priv_data, "mpegts_flags", "+resend_headers", 0);
}

void TsChunker::cut(int64_t next_start_90k, bool closing)
{
    // Write out what the muxer holds (buffered audio PES), then the I/O
    // buffer: everything up to here belongs to the chunk being closed.
    int rc = av_write_frame(ctx_.get(), nullptr);
    if (rc < 0)
        throw_errorf(Errc::MEDIA, "segmenter", "mux", "MPEG-TS flush failed: {}", av_error(rc));
    if (closing) {
        rc = av_write_trailer(ctx_.get());
        if (rc < 0)
            throw_errorf(Errc::MEDIA, "segmenter", "mux", "MPEG-TS trailer failed: {}", av_error(rc));
    }
    avio_flush(ctx_->pb);
    int64_t end = next_start_90k;
    if (closing || discontinuity_pending_ || end == AV_NOPTS_VALUE || end < cur_start_)
        end = cur_end_ != AV_NOPTS_VALUE ? cur_end_ : (end != AV_NOPTS_VALUE ? end : cur_start_);
    cur_.duration_s = double(std::max<int64_t>(0, end - cur_start_)) / 90000.0;
    put_pat_first(buf_, 0x1000, 0x1000 + 0xff);
    size_t size = buf_.size();
    if (size > 0) {
        cur_.data = std::shared_ptr<const std::string>(new std::string(std::move(buf_)),
                                                       Recycle<BufferPool>{pool_});
        ++chunks_;
        bytes_ += size;
        duration_s_ += cur_.duration_s;
        ++seq_;
        Chunk out = std::move(cur_);
        cur_ = Chunk{};
        sink_(std::move(out));
    }
    buf_ = pool_->take();
    buf_.clear();
    reserve_ = std::max(reserve_, size + size / 4);
    buf_.reserve(reserve_);
    started_ = false;
}

void TsChunker::write(AVPacket *pkt)
{
    if (finished_)
        throw_error(Errc::INTERNAL, "segmenter", "mux", "write after finish");
    if (pkt->stream_index < 0 || size_t(pkt->stream_index) >= tracks_.size()) {
        ++dropped_;
        return;
    }
    Track &t = tracks_[pkt->stream_index];
    if (pkt->dts == AV_NOPTS_VALUE && pkt->pts == AV_NOPTS_VALUE) {
        ++dropped_;
        return;
    }
    int64_t dts = pkt->dts != AV_NOPTS_VALUE ? pkt->dts : pkt->pts;
    if (t.last_dts != AV_NOPTS_VALUE && dts < t.last_dts) {
        ++dropped_;
        return; // the muxer would refuse it; a corrupt source
    }
    bool is_ref = pkt->stream_index == ref_;
    bool key = (pkt->flags & AV_PKT_FLAG_KEY) != 0;
    bool starts = is_ref && (has_video_ ? key : true);
    int64_t pts90 = to_90k(pkt->pts != AV_NOPTS_VALUE ? pkt->pts : dts, t.in_tb);

    if (started_ && !is_ref && pts90 < 0 && cur_start_ >= 0) {
        // Encoder priming (AAC begins at -1024 samples): before the stream's
        // start, and MPEG-TS would wrap it to 2^33 (players then see a
        // timestamp reset).
        ++dropped_;
        return;
    }
    if (!started_) {
        if (has_video_ && !(is_ref && key)) {
            ++dropped_; // nothing decodable before the first keyframe
            return;
        }
        if (!has_video_ && !is_ref) {
            // Audio-only with several tracks: start on the reference one.
            ++dropped_;
            return;
        }
    } else if (discontinuity_pending_ && has_video_ && !(is_ref && key)) {
        // A new timeline: what comes before its first keyframe cannot be
        // decoded, in this chunk or the next.
        ++dropped_;
        return;
    } else if (is_ref) {
        int64_t elapsed = pts90 - cur_start_;
        bool due = starts && (discontinuity_pending_ || elapsed >= target_90k_ - 90 /* 1 ms */);
        bool overlong = elapsed >= int64_t(opts_.max_duration * 90000);
        if (due || overlong) {
            if (overlong && !due)
                opts_.log.warn("no keyframe for {:.1f} s: cutting a chunk that does not start with one",
                               double(elapsed) / 90000);
            cut(pts90, false);
        }
    }
    if (!started_) {
        started_ = true;
        cur_ = Chunk{};
        cur_.seq = seq_;
        cur_.first_pts = pts90;
        cur_.wall_clock_ms = now_ms();
        cur_.keyframe = has_video_ && is_ref && key;
        cur_.discontinuity = discontinuity_pending_;
        cur_.rendition = opts_.rendition;
        discontinuity_pending_ = false;
        cur_start_ = pts90;
        cur_end_ = AV_NOPTS_VALUE;
        request_tables();
    }
    if (is_ref) {
        if (last_ref_pts_ != AV_NOPTS_VALUE && pts90 > last_ref_pts_)
            ref_step_ = pts90 - last_ref_pts_;
        last_ref_pts_ = pts90;
        int64_t dur = pkt->duration > 0 ? to_90k(pkt->duration, t.in_tb) : ref_step_;
        int64_t end = pts90 + dur;
        if (cur_end_ == AV_NOPTS_VALUE || end > cur_end_)
            cur_end_ = end;
    }
    t.last_dts = dts;
    mux(pkt);
}

void TsChunker::mux(AVPacket *pkt)
{
    Track &t = tracks_[pkt->stream_index];
    // The muxer runs on 90 kHz: rescale in place and restore afterwards
    // (av_write_frame takes its own reference and leaves ours alone).
    int64_t pts = pkt->pts, dts = pkt->dts, duration = pkt->duration;
    bool rescale = av_cmp_q(t.in_tb, t.st->time_base) != 0;
    if (rescale)
        av_packet_rescale_ts(pkt, t.in_tb, t.st->time_base);
    int rc = av_write_frame(ctx_.get(), pkt);
    if (rescale) {
        pkt->pts = pts;
        pkt->dts = dts;
        pkt->duration = duration;
    }
    if (rc == AVERROR_INVALIDDATA) {
        // A damaged packet (a bitstream filter refused it): lose it, not
        // the stream.
        ++dropped_;
        opts_.log.debug("dropped a damaged packet of stream {}", pkt->stream_index);
        return;
    }
    if (rc < 0)
        throw_errorf(Errc::MEDIA, "segmenter", "mux", "MPEG-TS muxing failed: {}", av_error(rc));
}

void TsChunker::finish()
{
    if (finished_)
        return;
    finished_ = true;
    if (started_) {
        cut(AV_NOPTS_VALUE, true);
    } else {
        av_write_trailer(ctx_.get());
        buf_.clear();
    }
}

} // namespace openace::media
