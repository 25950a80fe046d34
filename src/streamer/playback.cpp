#include "streamer/playback.hpp"

#include "core/error.hpp"
#include "core/hex.hpp"
#include "engine/engine_manager.hpp"
#include "engine/sub_engine.hpp"
#include "live/live_engine.hpp"
#include "net/uv_handle.hpp"
#include "transport/swarm_job_fields.hpp"

#include <mbedtls/md5.h>

#include <cmath>
#include <random>

namespace openace::streamer {

namespace {

const char *kJson = "application/json";
constexpr std::size_t kMaxPending = 8u << 20; // a reader this far behind skips pieces

std::string md5_hex(std::string_view s)
{
    unsigned char d[16];
    mbedtls_md5_ret(reinterpret_cast<const unsigned char *>(s.data()), s.size(), d);
    return core::to_hex(d, sizeof d);
}

std::string random_key()
{
    std::random_device rd;
    return fmt::format("{:08x}{:08x}{:08x}{:08x}", rd(), rd(), rd(), rd());
}

// {"response": ..., "error": ...}, Ace's envelope for playback calls.
void envelope(const Playback::Res &res, int status, nlohmann::json response, const char *error = nullptr)
{
    res->send(status, kJson,
              nlohmann::json{{"response", std::move(response)},
                             {"error", error ? nlohmann::json(error) : nlohmann::json(nullptr)}}
                  .dump());
}

// Path segments after `prefix`: "/ace/r/<id>/<key>" → {id, key}.
std::pair<std::string, std::string> id_and_key(std::string_view path, std::string_view prefix)
{
    path.remove_prefix(std::min(prefix.size(), path.size()));
    auto slash = path.find('/');
    if (slash == std::string_view::npos)
        return {std::string(path), {}};
    std::string_view key = path.substr(slash + 1);
    if (auto dot = key.find('.'); dot != std::string_view::npos)
        key = key.substr(0, dot);
    return {std::string(path.substr(0, slash)), std::string(key)};
}

} // namespace

Playback::Playback(engine::EngineContext &ctx, core::Logger log) : ctx_(ctx), log_(std::move(log))
{
    tick_.init(this, uv_timer_init, ctx_.loop);
    uv_timer_start(tick_.get(), on_tick, 1000, 1000);
}

Playback::~Playback()
{
    close();
}

void Playback::close()
{
    while (!sessions_.empty())
        end_session(sessions_.begin()->first);
}

Playback::Session &Playback::open(const live::ContentId &id)
{
    const std::string hex = live::to_hex(id);
    auto it = sessions_.find(hex);
    if (it != sessions_.end())
        return it->second;
    auto *live = dynamic_cast<live::LiveEngine *>(ctx_.manager->find("live"));
    if (!live || !live->running())
        throw_error(Errc::STATE, "streamer", "getstream", "the live engine is not running");
    live::LiveSwarm &swarm = live->acquire(id);
    Session &s = sessions_[hex];
    s.id = id;
    s.hex = hex;
    s.swarm = &swarm;
    const nlohmann::json none = nlohmann::json::object();
    swarm.add_trackers(transport::fields::swarm_trackers(none, *ctx_.config));
    swarm.add_peers(transport::fields::swarm_peers(none, *ctx_.config), true);
    s.subscription = swarm.subscribe([this, hex](const live::LiveSwarm::PieceRef &p, bool) {
        if (auto it = sessions_.find(hex); it != sessions_.end())
            on_piece(it->second, p);
    });
    swarm.start();
    log_.info("playback session {} started", hex);
    return s;
}

void Playback::end_session(const std::string &hex)
{
    auto it = sessions_.find(hex);
    if (it == sessions_.end())
        return;
    Session s = std::move(it->second);
    sessions_.erase(it);
    for (auto &[key, p] : s.players)
        if (p.out && !p.out->finished())
            p.out->end();
    s.swarm->unsubscribe(s.subscription);
    if (auto *live = dynamic_cast<live::LiveEngine *>(ctx_.manager->find("live")))
        live->release(s.id);
    log_.info("playback session {} ended", hex);
}

void Playback::on_piece(Session &s, const live::LiveSwarm::PieceRef &piece)
{
    if (!s.first_seq) {
        s.first_seq = piece->sequence;
        s.first_ts = piece->timestamp_ms;
    }
    s.last_seq = piece->sequence;
    s.last_ts = piece->timestamp_ms;
    for (auto &[key, p] : s.players) {
        if (!p.out || p.out->closed())
            continue;
        // A reader that cannot keep up skips whole pieces (each starts at a
        // keyframe with PAT/PMT), it never grows an unbounded queue.
        if (p.out->pending_bytes() > kMaxPending) {
            ++p.skipped;
            continue;
        }
        if (p.out->write(piece->data))
            ++p.pieces;
    }
}

void Playback::getstream(const net::HttpRequest &req, const Res &res, const std::string &base)
{
    std::optional<std::string> id = req.param("content_id");
    if (!id)
        id = req.param("id");
    if (!id)
        id = req.param("infohash"); // a live stream's swarm id is its content id
    if (!id) {
        const bool other = req.param("magnet") || req.param("url") || req.param("data");
        envelope(res, 400, nullptr,
                 other ? "only live streams (content_id, id, infohash) play over HTTP in this version"
                       : "missing parameter: one of content_id, id, infohash");
        return;
    }
    live::ContentId cid;
    try {
        cid = live::parse_content_id(*id);
    } catch (const Error &e) {
        envelope(res, 400, nullptr, e.detail().c_str());
        return;
    }
    Session &s = open(cid);
    // Each player its own key: md5 of its pid/sid when it names one, else new.
    std::optional<std::string> pid = req.param("pid");
    if (!pid)
        pid = req.param("sid");
    const std::string key = pid ? md5_hex(*pid) : random_key();
    Player &p = s.players[key];
    p.key = key;
    p.last_seen = clock::now();
    ++players_total_;
    const std::string path = s.hex + "/" + key;
    if (req.param("format").value_or("") == "json") {
        envelope(res, 200,
                 {{"playback_url", base + "/ace/r/" + path},
                  {"stat_url", base + "/ace/stat/" + path},
                  {"command_url", base + "/ace/cmd/" + path},
                  {"event_url", base + "/ace/event/" + path},
                  {"infohash", s.hex},
                  {"playback_session_id", key},
                  {"is_live", 1},
                  {"is_encrypted", 0},
                  {"client_session_id", -1}});
        return;
    }
    res->send(302, kJson, "", {{"Location", "/ace/r/" + path}});
}

std::pair<Playback::Session *, Playback::Player *> Playback::find(const net::HttpRequest &req,
                                                                   std::string_view prefix)
{
    auto [hex, key] = id_and_key(req.path, prefix);
    auto it = sessions_.find(hex);
    if (it == sessions_.end())
        return {nullptr, nullptr};
    auto p = it->second.players.find(key);
    return {&it->second, p == it->second.players.end() ? nullptr : &p->second};
}

void Playback::stream(const net::HttpRequest &req, const Res &res)
{
    auto [s, p] = find(req, "/ace/r/");
    if (!p) {
        envelope(res, 404, nullptr, "unknown playback session id");
        return;
    }
    if (p->out && !p->out->finished())
        p->out->end(); // the same key again: the newer request wins
    p->out = res;
    p->last_seen = clock::now();
    res->begin_chunked(200, "video/mp2t", {{"Cache-Control", "no-cache"}});
}

void Playback::stat(const net::HttpRequest &req, const Res &res)
{
    auto [s, p] = find(req, "/ace/stat/");
    if (!p) {
        envelope(res, 200, nullptr, "unknown playback session id");
        return;
    }
    p->last_seen = clock::now();
    const live::LiveSwarm &w = *s->swarm;
    auto str = [](auto v) { return std::to_string(v); };
    nlohmann::json livepos = nlohmann::json::object();
    if (s->first_seq) {
        const std::uint64_t buffered = static_cast<std::uint64_t>(std::llround(w.buffer_seconds()));
        livepos = {{"last", str(*s->last_seq)},
                   {"live_first", str(*s->first_seq)},
                   {"live_last", str(w.newest().value_or(*s->last_seq))},
                   {"pos", str(*s->last_seq)},
                   {"first_ts", str(s->first_ts / 1000)},
                   {"last_ts", str(s->last_ts / 1000)},
                   {"is_live", "1"},
                   {"buffer_pieces", str(buffered)}};
    }
    const bool playing = p->pieces > 0;
    envelope(res, 200,
             {{"status", playing ? "dl" : "prebuf"},
              {"progress", playing ? 100 : 0},
              {"peers", w.peer_count()},
              {"speed_down", static_cast<std::int64_t>(w.download_rate() / 1024)},
              {"speed_up", static_cast<std::int64_t>(w.upload_rate() / 1024)},
              {"downloaded", w.downloaded()},
              {"uploaded", w.uploaded()},
              {"total_progress", 0},
              {"infohash", s->hex},
              {"playback_session_id", p->key},
              {"client_session_id", -1},
              {"is_live", 1},
              {"is_encrypted", 0},
              {"livepos", livepos},
              {"pieces_skipped", p->skipped}});
}

void Playback::cmd(const net::HttpRequest &req, const Res &res)
{
    auto [s, p] = find(req, "/ace/cmd/");
    if (!p) {
        envelope(res, 200, nullptr, "unknown playback session id");
        return;
    }
    const std::string method = req.param("method").value_or("");
    if (method != "stop") {
        envelope(res, 400, nullptr, "unknown method (supported: stop)");
        return;
    }
    if (p->out && !p->out->finished())
        p->out->end();
    const std::string hex = s->hex;
    s->players.erase(p->key);
    if (s->players.empty())
        end_session(hex);
    res->send(200, kJson, R"({"response":"ok","error":null})");
}

void Playback::on_tick(uv_timer_t *t)
{
    static_cast<Playback *>(t->data)->tick();
}

void Playback::tick()
{
    const auto now = clock::now();
    const auto idle = std::chrono::duration_cast<clock::duration>(
        std::chrono::duration<double>(ctx_.config->streaming.idle_timeout));
    std::vector<std::string> idle_sessions;
    for (auto &[hex, s] : sessions_) {
        // Players that left (connection closed) are forgotten after the
        // idle timeout; a session with no reader that long stops.
        bool reading = false;
        for (auto it = s.players.begin(); it != s.players.end();) {
            Player &p = it->second;
            const bool open = p.out && !p.out->closed() && !p.out->finished();
            if (open)
                p.last_seen = now;
            reading = reading || open;
            it = !open && now - p.last_seen > idle ? s.players.erase(it) : std::next(it);
        }
        if (reading)
            s.idle_since = now;
        else if (now - s.idle_since > idle)
            idle_sessions.push_back(hex);
    }
    for (const auto &hex : idle_sessions) {
        log_.info("playback session {}: no player for {} s", hex, ctx_.config->streaming.idle_timeout);
        end_session(hex);
    }
}

nlohmann::json Playback::status() const
{
    nlohmann::json sessions = nlohmann::json::array();
    for (auto &[hex, s] : sessions_) {
        std::size_t reading = 0;
        for (auto &[k, p] : s.players)
            reading += p.out && !p.out->closed() && !p.out->finished();
        sessions.push_back({{"content_id", hex}, {"players", s.players.size()}, {"reading", reading}});
    }
    return {{"sessions", std::move(sessions)}, {"players_total", players_total_}};
}

} // namespace openace::streamer
