#include "streamer/torrent_stream.hpp"

#include "transport/torrent.hpp"

#include <algorithm>

namespace openace::streamer {

TorrentStream::TorrentStream(transport::Torrent &t, std::shared_ptr<net::HttpResponse> res, std::int64_t begin,
                             std::int64_t end)
    : torrent_(&t), res_(std::move(res)), remaining_(end - begin)
{
    reader_ = torrent_->open_reader(begin, end);
}

TorrentStream::~TorrentStream()
{
    close();
}

void TorrentStream::close()
{
    if (closed_)
        return;
    closed_ = true;
    if (res_ && !res_->finished())
        res_->end();
    if (torrent_ && reader_)
        torrent_->close_reader(reader_);
    torrent_ = nullptr;
    reader_ = 0;
    res_.reset();
}

std::int64_t TorrentStream::buffered() const
{
    return torrent_ && reader_ ? torrent_->reader_buffered(reader_) : 0;
}

void TorrentStream::start()
{
    std::weak_ptr<TorrentStream> weak = weak_from_this();
    res_->on_close([weak] {
        if (auto self = weak.lock())
            self->close();
    });
    pump();
}

void TorrentStream::pump()
{
    if (closed_ || reading_)
        return;
    if (remaining_ <= 0 || res_->closed()) {
        close();
        return;
    }
    if (res_->pending_bytes() > kHighWater) {
        std::weak_ptr<TorrentStream> weak = weak_from_this();
        res_->on_drain([weak] {
            if (auto self = weak.lock())
                self->pump();
        });
        return;
    }
    reading_ = true;
    const std::size_t want = static_cast<std::size_t>(std::min<std::int64_t>(remaining_, kReadSize));
    std::weak_ptr<TorrentStream> weak = weak_from_this();
    torrent_->read(reader_, want, [weak](std::string data, const std::string &error) {
        auto self = weak.lock();
        if (!self || self->closed_)
            return;
        self->reading_ = false;
        if (!error.empty() || data.empty()) {
            self->close(); // the client sees a short body: the download failed
            return;
        }
        self->remaining_ -= static_cast<std::int64_t>(data.size());
        self->sent_ += static_cast<std::int64_t>(data.size());
        if (!self->res_->write(data)) {
            self->close();
            return;
        }
        self->pump();
    });
}

} // namespace openace::streamer
