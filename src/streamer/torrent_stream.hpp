// One HTTP response fed from a torrent while it downloads: a Torrent
// streaming reader over a byte range of the piece space, written to the
// client as pieces are verified, with back-pressure (no more than
// kHighWater bytes queued on the socket).  The torrent's picker keeps a
// deadline window ahead of the reader (streaming.buffer_size).
//
// Loop thread only.  The Torrent must outlive the stream or close() must be
// called first; destroying the stream closes its reader.
#pragma once

#include "net/http_server.hpp"

#include <cstdint>
#include <functional>
#include <memory>

namespace openace::transport {
class Torrent;
}

namespace openace::streamer {

class TorrentStream : public std::enable_shared_from_this<TorrentStream> {
public:
    // Serves [begin, end) of t's piece space through `res` (whose head the
    // caller has sent already: begin_sized).
    TorrentStream(transport::Torrent &t, std::shared_ptr<net::HttpResponse> res, std::int64_t begin,
                  std::int64_t end);
    ~TorrentStream();
    TorrentStream(const TorrentStream &) = delete;
    TorrentStream &operator=(const TorrentStream &) = delete;

    void start();
    // Ends the response if still open and gives the reader back.  Idempotent.
    void close();

    bool done() const noexcept { return closed_; }
    std::int64_t sent() const noexcept { return sent_; }
    // Verified bytes ready at the reader's position (0 once closed).
    std::int64_t buffered() const;

    static constexpr std::size_t kHighWater = 2u << 20;
    static constexpr std::size_t kReadSize = 256u << 10;

private:
    void pump();

    transport::Torrent *torrent_;
    std::shared_ptr<net::HttpResponse> res_;
    int reader_ = 0;
    std::int64_t remaining_;
    std::int64_t sent_ = 0;
    bool reading_ = false, closed_ = false;
};

} // namespace openace::streamer
