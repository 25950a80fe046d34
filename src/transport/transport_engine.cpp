#include "transport/transport_engine.hpp"

#include "core/error.hpp"
#include "engine/engine_manager.hpp"
#include "engine/job_fields.hpp"
#include "net/tls.hpp"
#include "net/uv_handle.hpp"
#include "transport/embedded_tracker.hpp"
#include "transport/play_job.hpp"
#include "transport/seed_job.hpp"
#include "transport/storage.hpp"
#include "transport/torrent.hpp"

#include <arpa/inet.h>

#include <cstring>
#include <filesystem>
#include <random>

namespace openace::transport {

namespace {

constexpr auto kLobbyTimeout = std::chrono::seconds(10);

PeerId random_peer_id()
{
    PeerId id{};
    const char prefix[] = "-OA0100-";
    std::memcpy(id.data(), prefix, 8);
    std::random_device rd;
    for (std::size_t i = 8; i < id.size(); ++i)
        id[i] = static_cast<std::uint8_t>(rd());
    return id;
}

} // namespace

TransportEngine::TransportEngine(engine::EngineContext &ctx) : SubEngine(ctx, "transport", {"main"})
{
    tctx_.loop = ctx.loop;
    tctx_.log = log_;
    tctx_.config = ctx.config;
}

TransportEngine::~TransportEngine()
{
    plays_.clear();
    seeds_.clear();
    torrents_.clear();
    stopping_.clear();
    for (PeerConnection *c : lobby_) {
        c->set_handler(nullptr);
        c->close("engine stopped");
    }
    if (listener_)
        net::close_and_delete(listener_);
    if (tick_)
        net::close_and_delete(tick_);
}

bool TransportEngine::owns_job(std::string_view type) const
{
    return type == "play" || type == "seed";
}

bool TransportEngine::owns_job(std::string_view type, const nlohmann::json &spec) const
{
    return owns_job(type) && !(type == "play" && engine::fields::is_live_play(spec));
}

void TransportEngine::validate_job(const nlohmann::json &spec) const
{
    const std::string type = spec.value("type", "");
    if (type == "play")
        PlayJob::validate(spec);
    else
        SeedJob::validate(spec);
}

void TransportEngine::run_job(const engine::JobPtr &job)
{
    if (!running())
        throw_error(Errc::STATE, "transport", job->type, "the transport engine is not running");
    if (job->type == "play") {
        auto p = std::make_shared<PlayJob>(*this, job);
        plays_[job->id] = p;
        try {
            p->start();
        } catch (...) {
            plays_.erase(job->id);
            throw;
        }
    } else {
        auto s = std::make_shared<SeedJob>(*this, job);
        seeds_[job->id] = s;
        try {
            s->start();
        } catch (...) {
            seeds_.erase(job->id);
            throw;
        }
    }
}

void TransportEngine::job_ended(std::int64_t job_id)
{
    // Destroyed on the next loop turn: the job may still be on the stack.
    std::shared_ptr<void> keep;
    if (auto it = plays_.find(job_id); it != plays_.end()) {
        keep = it->second;
        plays_.erase(it);
    } else if (auto it2 = seeds_.find(job_id); it2 != seeds_.end()) {
        keep = it2->second;
        seeds_.erase(it2);
    }
    if (keep)
        net::run_soon(tctx_.loop, [keep = std::move(keep)]() mutable { keep.reset(); });
}

engine::JobQueue &TransportEngine::manager_jobs()
{
    return ctx_.manager->jobs();
}

// ------------------------------------------------------------ lifecycle

void TransportEngine::on_start()
{
    const auto &cfg = *ctx_.config;
    tctx_.idle_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(cfg.transport.idle_timeout * 1000));
    tctx_.download.set_rate(cfg.transport.download_rate_limit * 1024);
    tctx_.upload.set_rate(cfg.transport.upload_rate_limit * 1024);

    const std::string &state = cfg.engine.state_dir;
    if (!state.empty()) {
        identity_ = std::make_unique<Identity>(load_or_create_identity(state + "/identity"));
        tctx_.peer_id = identity_->peer_id;
    } else {
        tctx_.peer_id = random_peer_id();
        log_.warn("no state directory: a temporary peer id, no TLS identity and no disk cache");
    }
    if (cfg.security.tls_enabled && identity_) {
        tls_ = std::make_unique<net::TlsContext>(identity_->cert_pem, identity_->key_pem);
        tctx_.tls = tls_.get();
    }
    // Created once: the HTTP server's /announce route keeps pointing at it
    // across restarts of this engine.
    if (cfg.transport.embedded_tracker && !tracker_)
        tracker_ = std::make_unique<EmbeddedTracker>(log_);
    listen();
    tick_ = new uv_timer_t{};
    uv_timer_init(tctx_.loop, tick_);
    tick_->data = this;
    uv_timer_start(tick_, on_tick, 1000, 1000);
    log_.info("P2P port {} (plain BitTorrent{}), peer id {}", tctx_.listen_port, tls_ ? " and TLS" : "",
              std::string(reinterpret_cast<const char *>(tctx_.peer_id.data()), 8));
}

void TransportEngine::listen()
{
    auto bind_port = [this](int port) -> int {
        listener_ = new uv_tcp_t{};
        uv_tcp_init(tctx_.loop, listener_);
        listener_->data = this;
        sockaddr_in addr{};
        uv_ip4_addr("0.0.0.0", port, &addr);
        int rc = uv_tcp_bind(listener_, reinterpret_cast<const sockaddr *>(&addr), 0);
        if (rc == 0)
            rc = uv_listen(reinterpret_cast<uv_stream_t *>(listener_), 128, on_connection);
        if (rc != 0) {
            net::close_and_delete(listener_);
            listener_ = nullptr;
        }
        return rc;
    };
    const int wanted = ctx_.config->transport.listen_port;
    int rc = bind_port(wanted);
    if (rc == UV_EADDRINUSE && wanted != 0) {
        log_.warn("P2P port {} is in use; listening on a free port instead", wanted);
        rc = bind_port(0);
    }
    if (rc != 0)
        throw_errorf(Errc::NET, "transport", "listen", "cannot listen on P2P port {}: {}", wanted, uv_strerror(rc));
    sockaddr_storage ss{};
    int len = sizeof ss;
    uv_tcp_getsockname(listener_, reinterpret_cast<sockaddr *>(&ss), &len);
    tctx_.listen_port = ntohs(reinterpret_cast<sockaddr_in *>(&ss)->sin_port);
}

void TransportEngine::on_stop(std::function<void()> done)
{
    for (auto &[id, p] : std::map(plays_))
        p->cancel();
    for (auto &[id, s] : std::map(seeds_))
        s->cancel();
    if (tick_) {
        net::close_and_delete(tick_);
        tick_ = nullptr;
    }
    if (listener_) {
        net::close_and_delete(listener_);
        listener_ = nullptr;
    }
    for (PeerConnection *c : std::set(lobby_))
        c->close("engine stopping");
    // Say goodbye to the trackers (bounded: Announcer::stop ends within 2 s).
    auto pending = std::make_shared<int>(1);
    auto finish = [this, pending, done] {
        if (--*pending == 0) {
            torrents_.clear();
            stopping_.clear();
            tctx_.listen_port = 0;
            done();
        }
    };
    for (auto &[ih, e] : torrents_) {
        ++*pending;
        e.torrent->stop(finish);
    }
    finish();
}

void TransportEngine::on_connection(uv_stream_t *server, int status)
{
    auto *self = static_cast<TransportEngine *>(server->data);
    if (status < 0)
        return;
    auto *client = new uv_tcp_t{};
    uv_tcp_init(self->tctx_.loop, client);
    if (uv_accept(server, reinterpret_cast<uv_stream_t *>(client)) != 0) {
        net::close_and_delete(client);
        return;
    }
    if (self->tctx_.max_connections_reached() || !self->running()) {
        ++self->refused_;
        net::close_and_delete(client);
        return;
    }
    ++self->incoming_;
    ++self->tctx_.connections;
    PeerConnection *c = PeerConnection::accept(self->tctx_.loop, client, self->tctx_.tls, self);
    if (!c->closing())
        self->lobby_.insert(c);
}

void TransportEngine::on_handshake(PeerConnection &c)
{
    lobby_.erase(&c);
    --tctx_.connections;
    auto it = torrents_.find(c.info_hash());
    auto live = swarms_.find(c.info_hash());
    const bool known = it != torrents_.end() || live != swarms_.end();
    if (!known || tctx_.banned_ids.count(c.peer_id())) {
        ++refused_;
        c.set_handler(nullptr);
        c.close(!known ? "unknown torrent" : "banned peer");
        return;
    }
    if (it != torrents_.end())
        it->second.torrent->attach(&c);
    else
        live->second(&c);
}

void TransportEngine::on_closed(PeerConnection &c, const std::string &reason, bool)
{
    if (lobby_.erase(&c))
        --tctx_.connections;
    log_.debug("incoming peer {} closed before choosing a torrent: {}", c.address().to_string(), reason);
}

void TransportEngine::on_tick(uv_timer_t *t)
{
    auto *self = static_cast<TransportEngine *>(t->data);
    const auto now = PeerConnection::clock::now();
    std::vector<PeerConnection *> stale;
    for (PeerConnection *c : self->lobby_)
        if (now - c->created() > kLobbyTimeout)
            stale.push_back(c);
    for (PeerConnection *c : stale)
        c->close("no handshake within 10 s");
}

// ------------------------------------------------------------ torrents

void TransportEngine::register_swarm(const InfoHash &id, std::function<void(PeerConnection *)> attach)
{
    swarms_[id] = std::move(attach);
}

void TransportEngine::unregister_swarm(const InfoHash &id)
{
    swarms_.erase(id);
}

Torrent &TransportEngine::acquire(const InfoHash &ih, const std::string &name_hint)
{
    auto it = torrents_.find(ih);
    if (it == torrents_.end()) {
        Entry e;
        e.torrent = std::make_unique<Torrent>(tctx_, ih, name_hint);
        it = torrents_.emplace(ih, std::move(e)).first;
    }
    ++it->second.refs;
    return *it->second.torrent;
}

void TransportEngine::release(const InfoHash &ih)
{
    auto it = torrents_.find(ih);
    if (it == torrents_.end() || --it->second.refs > 0)
        return;
    std::unique_ptr<Torrent> t = std::move(it->second.torrent);
    torrents_.erase(it);
    Torrent *raw = t.get();
    stopping_.insert(std::move(t));
    raw->stop([this, raw] {
        for (auto i = stopping_.begin(); i != stopping_.end(); ++i)
            if (i->get() == raw) {
                // Not from inside the torrent's own callback stack.
                std::shared_ptr<Torrent> dying(std::move(stopping_.extract(i).value()));
                net::run_soon(tctx_.loop, [dying]() mutable { dying.reset(); });
                return;
            }
    });
}

DiskCache &TransportEngine::cache()
{
    if (!cache_) {
        const std::string &state = ctx_.config->engine.state_dir;
        if (state.empty())
            throw_error(Errc::IO, "transport", "cache",
                        "no state directory (engine.state_dir) for the disk cache: set one in the config");
        cache_ = std::make_unique<DiskCache>(tctx_.loop, log_, state + "/cache",
                                             ctx_.config->transport.cache_size_mb << 20);
        tctx_.cache = cache_.get();
    }
    return *cache_;
}

// ------------------------------------------------------------ stats

size_t TransportEngine::memory_bytes() const
{
    size_t n = sizeof(*this);
    for (auto &[ih, e] : torrents_)
        n += e.torrent->memory_bytes();
    for (PeerConnection *c : lobby_)
        n += c->memory_bytes();
    return n;
}

TransportEngine::Totals TransportEngine::totals() const
{
    Totals t;
    for (auto &[ih, e] : torrents_) {
        t.peers += e.torrent->peer_count();
        t.download_rate += e.torrent->download_rate();
        t.upload_rate += e.torrent->upload_rate();
    }
    return t;
}

nlohmann::json TransportEngine::details() const
{
    nlohmann::json torrents = nlohmann::json::array();
    std::size_t peers = 0;
    for (auto &[ih, e] : torrents_) {
        peers += e.torrent->peer_count();
        auto s = e.torrent->status();
        s.erase("picker");
        torrents.push_back(std::move(s));
    }
    nlohmann::json j = {{"listen_port", tctx_.listen_port},
                        {"tls_enabled", tctx_.tls != nullptr},
                        {"peer_id_prefix", std::string(reinterpret_cast<const char *>(tctx_.peer_id.data()), 8)},
                        {"connections", tctx_.connections},
                        {"peers", peers},
                        {"incoming", incoming_},
                        {"refused", refused_},
                        {"bans", tctx_.bans},
                        {"torrents", torrents.size()},
                        {"sessions", torrents},
                        {"play_jobs", plays_.size()},
                        {"seed_jobs", seeds_.size()}};
    if (cache_)
        j["cache"] = cache_->status();
    if (tracker_)
        j["embedded_tracker"] = {{"torrents", tracker_->torrents()}, {"peers", tracker_->peers()}};
    return j;
}

} // namespace openace::transport
