// HLS of one torrent file while it downloads (the VOD playlist of
// /ace/m/<infohash>/<key>.m3u8): a segment job of the SegmenterEngine reads
// the file through the engine's own progressive URL (/ace/r/..., as any
// player would, so the torrent's reader deadlines drive the download) and
// writes MPEG-TS segments and a growing playlist to
// <state_dir>/hls/<name>/; the playlist gets EXT-X-ENDLIST when the file is
// done.  Segments are served from there under `uri_prefix`.
//
// Loop thread only.  Destroying it cancels the job and removes the folder.
#pragma once

#include "core/log.hpp"
#include "net/http_server.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace openace::engine {
struct EngineContext;
}

namespace openace::streamer {

class VodHls {
public:
    // Submits the segment job (Error from the job queue when it refuses).
    VodHls(engine::EngineContext &ctx, core::Logger log, std::string source_url, std::string uri_prefix,
           const std::string &name);
    ~VodHls();
    VodHls(const VodHls &) = delete;
    VodHls &operator=(const VodHls &) = delete;

    // The playlist with segment URIs rewritten to uri_prefix + "<n>.ts" +
    // `suffix` (a remote player's "?token=…"); 503 with Retry-After while
    // no segment exists yet.
    void serve_playlist(const std::shared_ptr<net::HttpResponse> &res, const std::string &suffix = {});
    // "<n>.ts": that segment's bytes, or 404.
    void serve_segment(const std::string &name, const std::shared_ptr<net::HttpResponse> &res);
    // Whether the playlist names a segment yet.
    bool ready() const;
    // Segments named by the playlist so far.
    std::size_t segments() const noexcept { return segments_; }

private:
    engine::EngineContext &ctx_;
    core::Logger log_;
    std::string dir_, uri_prefix_;
    std::int64_t job_ = 0;
    std::size_t segments_ = 0;
};

} // namespace openace::streamer
