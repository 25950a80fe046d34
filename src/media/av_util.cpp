#include "media/av_util.hpp"

#include "core/error.hpp"

extern "C" {
#include <libavutil/error.h>
#include <libavutil/mem.h>
}

namespace openace::media {

std::string av_error(int errnum)
{
    char buf[AV_ERROR_MAX_STRING_SIZE] = {};
    if (av_strerror(errnum, buf, sizeof buf) < 0)
        return "FFmpeg error " + std::to_string(errnum);
    return buf;
}

void IoContextDeleter::operator()(AVIOContext *io) const noexcept
{
    if (!io)
        return;
    // FFmpeg may have replaced the buffer we gave it; free the current one.
    av_freep(&io->buffer);
    avio_context_free(&io);
}

PacketPtr make_packet()
{
    PacketPtr p(av_packet_alloc());
    if (!p)
        throw_error(Errc::NOMEM, "media", "alloc", "cannot allocate an AVPacket");
    return p;
}

FramePtr make_frame()
{
    FramePtr f(av_frame_alloc());
    if (!f)
        throw_error(Errc::NOMEM, "media", "alloc", "cannot allocate an AVFrame");
    return f;
}

IoContextPtr make_write_io(void *opaque, int (*write)(void *, uint8_t *, int), int buffer_size)
{
    auto *buf = static_cast<unsigned char *>(av_malloc(size_t(buffer_size)));
    if (!buf)
        throw_error(Errc::NOMEM, "media", "alloc", "cannot allocate an I/O buffer");
    AVIOContext *io = avio_alloc_context(buf, buffer_size, 1, opaque, nullptr, write, nullptr);
    if (!io) {
        av_free(buf);
        throw_error(Errc::NOMEM, "media", "alloc", "cannot allocate an AVIOContext");
    }
    return IoContextPtr(io);
}

int Interrupter::poll(void *opaque) noexcept
{
    auto *self = static_cast<Interrupter *>(opaque);
    if (self->cancelled())
        return 1;
    if (self->armed_ && std::chrono::steady_clock::now() >= self->deadline_) {
        self->expired_ = true;
        return 1;
    }
    return 0;
}

int64_t to_90k(int64_t ts, AVRational time_base) noexcept
{
    if (ts == AV_NOPTS_VALUE)
        return AV_NOPTS_VALUE;
    return av_rescale_q(ts, time_base, AVRational{1, 90000});
}

} // namespace openace::media
