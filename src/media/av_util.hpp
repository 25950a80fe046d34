// Small RAII layer over FFmpeg's C objects, shared by the segmenter (remux)
// and the transcoder.  Every owner is a std::unique_ptr with a deleter that
// calls the matching FFmpeg free function, so an exception anywhere in a
// media thread leaks nothing.  Nothing here is tied to a thread.
#pragma once

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/frame.h>
}

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

namespace openace::media {

// "No such file or directory" for AVERROR(ENOENT): av_strerror's text.
std::string av_error(int errnum);

struct InputFormatDeleter {
    void operator()(AVFormatContext *ctx) const noexcept { avformat_close_input(&ctx); }
};
// An output context; closes nothing but the context itself (pb belongs to
// whoever opened it: an IoContextPtr or avio_closep).
struct OutputFormatDeleter {
    void operator()(AVFormatContext *ctx) const noexcept { avformat_free_context(ctx); }
};
struct CodecContextDeleter {
    void operator()(AVCodecContext *ctx) const noexcept { avcodec_free_context(&ctx); }
};
struct PacketDeleter {
    void operator()(AVPacket *pkt) const noexcept { av_packet_free(&pkt); }
};
struct FrameDeleter {
    void operator()(AVFrame *f) const noexcept { av_frame_free(&f); }
};
// A custom AVIOContext from avio_alloc_context: frees its (possibly
// reallocated) buffer and the context.
struct IoContextDeleter {
    void operator()(AVIOContext *io) const noexcept;
};

using InputFormatPtr = std::unique_ptr<AVFormatContext, InputFormatDeleter>;
using OutputFormatPtr = std::unique_ptr<AVFormatContext, OutputFormatDeleter>;
using CodecContextPtr = std::unique_ptr<AVCodecContext, CodecContextDeleter>;
using PacketPtr = std::unique_ptr<AVPacket, PacketDeleter>;
using FramePtr = std::unique_ptr<AVFrame, FrameDeleter>;
using IoContextPtr = std::unique_ptr<AVIOContext, IoContextDeleter>;

// Allocators that throw Error(Errc::NOMEM) instead of returning NULL.
PacketPtr make_packet();
FramePtr make_frame();

// Write-only AVIOContext calling write(opaque, buf, size) for every flushed
// buffer; buffer_size bytes of av_malloc'ed buffer.  Throws NOMEM.
IoContextPtr make_write_io(void *opaque, int (*write)(void *, uint8_t *, int),
                           int buffer_size = 64 * 1024);

// Lets a blocking FFmpeg call (open, read, write on a network protocol)
// give up: FFmpeg polls callback() and aborts with AVERROR_EXIT when it
// returns 1.  Stops when *cancel becomes true or the deadline (if armed)
// passes.  Must outlive the AVFormatContext it is installed in.
class Interrupter {
public:
    explicit Interrupter(const std::atomic<bool> *cancel = nullptr) : cancel_(cancel) {}

    // Arms a deadline `timeout` from now (for opens and single reads);
    // disarm() removes it.
    void arm(std::chrono::milliseconds timeout)
    {
        deadline_ = std::chrono::steady_clock::now() + timeout;
        armed_ = true;
        expired_ = false;
    }
    void disarm() noexcept { armed_ = false; }

    bool cancelled() const noexcept { return cancel_ && cancel_->load(std::memory_order_relaxed); }
    // True once an armed deadline made FFmpeg give up.
    bool expired() const noexcept { return expired_; }

    AVIOInterruptCB callback() noexcept { return AVIOInterruptCB{&Interrupter::poll, this}; }

private:
    static int poll(void *opaque) noexcept;

    const std::atomic<bool> *cancel_;
    std::chrono::steady_clock::time_point deadline_{};
    bool armed_ = false;
    bool expired_ = false;
};

// One elementary stream as a muxer sees it: its parameters (owned by
// whoever produced them: a demuxer's AVStream or an encoder) and the time
// base of its packets' timestamps.
struct StreamSpec {
    const AVCodecParameters *par = nullptr;
    AVRational time_base{1, 90000};
};

// 90 kHz ticks (MPEG-TS clock) of ts in time_base; AV_NOPTS_VALUE stays.
int64_t to_90k(int64_t ts, AVRational time_base) noexcept;

} // namespace openace::media
