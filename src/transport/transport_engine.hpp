// TransportEngine (DESIGN §2, §5): the BitTorrent layer.  It listens on
// transport.listen_port (plain BitTorrent and TLS on the same port), keeps
// the engine's identity (key, certificate, peer id) and disk cache, shares
// one Torrent per infohash between the jobs that use it, and owns the job
// types "play" (play_job.cpp) and "seed" (seed_job.cpp).  Loop thread only.
#pragma once

#include "engine/job_queue.hpp"
#include "engine/sub_engine.hpp"
#include "transport/identity.hpp"
#include "transport/peer_connection.hpp"
#include "transport/transport_context.hpp"

#include <map>
#include <memory>
#include <set>

namespace openace::net {
class TlsContext;
class HttpServer;
} // namespace openace::net

namespace openace::transport {

class Torrent;
class DiskCache;
class EmbeddedTracker;
class PlayJob;
class SeedJob;

class TransportEngine : public engine::SubEngine, private PeerHandler {
public:
    explicit TransportEngine(engine::EngineContext &ctx);
    ~TransportEngine() override;

    bool owns_job(std::string_view type) const override;
    // "play" of a live stream (content_id or descriptor) is the LiveEngine's.
    bool owns_job(std::string_view type, const nlohmann::json &spec) const override;
    void validate_job(const nlohmann::json &spec) const override;
    void run_job(const engine::JobPtr &job) override;

    // The bound P2P port (0 while stopped).
    std::uint16_t listen_port() const noexcept { return tctx_.listen_port; }
    const PeerId &peer_id() const noexcept { return tctx_.peer_id; }
    // The embedded tracker when transport.embedded_tracker = true (the
    // StreamerEngine serves it as /announce), else null.
    EmbeddedTracker *embedded_tracker() const noexcept { return tracker_.get(); }
    // The announce URL of the embedded tracker ("" when off or unknown);
    // the StreamerEngine sets it once its HTTP server listens.
    const std::string &embedded_tracker_url() const noexcept { return tracker_url_; }
    void set_embedded_tracker_url(std::string url) { tracker_url_ = std::move(url); }

    // A shared session for `ih`, created (and started) on first use.
    // Every acquire is paired with a release; the last release stops it.
    Torrent &acquire(const InfoHash &ih, const std::string &name_hint);
    void release(const InfoHash &ih);
    // Peers and rates (bytes/s) of every torrent session together.
    struct Totals {
        std::size_t peers = 0;
        double download_rate = 0, upload_rate = 0;
    };
    Totals totals() const;
    // The disk cache, opened on first use; throws Error(IO) naming the dir.
    DiskCache &cache();
    TransportContext &context() noexcept { return tctx_; }
    // Our identity (key, certificate, peer id); null while stopped.
    const Identity *identity() const noexcept { return identity_.get(); }

    // Other swarms on our listen port (the LiveEngine's live swarms):
    // incoming connections whose handshake names `id` go to `attach`.
    void register_swarm(const InfoHash &id, std::function<void(PeerConnection *)> attach);
    void unregister_swarm(const InfoHash &id);
    // Called by play/seed jobs when they end (loop thread).
    void job_ended(std::int64_t job_id);
    engine::JobQueue &manager_jobs();

    size_t memory_bytes() const override;

protected:
    void on_start() override;
    void on_stop(std::function<void()> done) override;
    nlohmann::json details() const override;

private:
    struct Entry {
        std::unique_ptr<Torrent> torrent;
        int refs = 0;
    };
    static void on_connection(uv_stream_t *server, int status);
    static void on_tick(uv_timer_t *t);
    void listen();

    // PeerHandler for incoming connections until their handshake names a torrent.
    void on_handshake(PeerConnection &c) override;
    void on_message(PeerConnection &, const wire::Message &) override {}
    void on_closed(PeerConnection &c, const std::string &reason, bool before_handshake) override;

    TransportContext tctx_;
    std::unique_ptr<Identity> identity_;
    std::unique_ptr<net::TlsContext> tls_;
    std::unique_ptr<DiskCache> cache_;
    std::unique_ptr<EmbeddedTracker> tracker_;
    uv_tcp_t *listener_ = nullptr;
    uv_timer_t *tick_ = nullptr;
    std::set<PeerConnection *> lobby_;
    std::map<InfoHash, Entry> torrents_;
    std::map<InfoHash, std::function<void(PeerConnection *)>> swarms_;
    std::set<std::unique_ptr<Torrent>> stopping_;
    std::map<std::int64_t, std::shared_ptr<PlayJob>> plays_;
    std::map<std::int64_t, std::shared_ptr<SeedJob>> seeds_;
    std::string tracker_url_;
    std::uint64_t incoming_ = 0, refused_ = 0;
};

} // namespace openace::transport
