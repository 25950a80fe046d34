#include "streamer/playback.hpp"

#include "core/error.hpp"
#include "streamer/ace_compat.hpp"
#include "core/hex.hpp"
#include "engine/engine_manager.hpp"
#include "engine/sub_engine.hpp"
#include "live/live_engine.hpp"
#include "net/http_range.hpp"
#include "net/url.hpp"
#include "streamer/torrent_stream.hpp"
#include "streamer/vod_hls.hpp"
#include "transport/swarm_job_fields.hpp"
#include "transport/torrent.hpp"
#include "transport/transport_engine.hpp"

#include <mbedtls/md5.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <random>

namespace openace::streamer {

namespace {

const char *kJson = "application/json";
const char *kM3u8 = "application/vnd.apple.mpegurl";
constexpr std::size_t kMaxPending = 8u << 20; // a live reader this far behind skips pieces
constexpr double kHlsWindow = 30.0;           // seconds of a live playlist
constexpr std::size_t kMinSegments = 3;       // a live playlist is served once it has these
constexpr std::int64_t kPrebufferBytes = 2 << 20; // a torrent player's stat says dl from here

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
void envelope(const Playback::Res &res, int status, nlohmann::json response, const std::string &error = {})
{
    res->send(status, kJson,
              json_text(nlohmann::json{{"response", std::move(response)},
                             {"error", error.empty() ? nlohmann::json(nullptr) : nlohmann::json(error)}})); // errors quote the input
}

// Path segments after `prefix`: "/ace/r/<id>/<key>[.ext]" → {id, key}.
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

std::optional<std::int64_t> to_int(std::string_view s)
{
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size())
        return std::nullopt;
    return v;
}

// What a remote client (allowed only with the API token) must add to the
// URLs it is given so that its player is let in too: "?token=…"; "" for
// local clients.
std::string token_query(const net::HttpRequest &req)
{
    auto t = req.param("token");
    return req.from_loopback() || !t ? std::string() : "?token=" + net::percent_encode(*t);
}

// "http://<Host header>" when the request names a plausible host, so that
// the URLs handed out work from where the client is; else "".
std::string host_base(const net::HttpRequest &req)
{
    const std::string *h = req.header("host");
    if (!h || h->empty() || h->size() > 255 ||
        h->find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") !=
            std::string::npos)
        return {};
    return "http://" + *h;
}

// Rebases the URLs of a start result on `base` (when set) and appends `auth`.
void fix_urls(nlohmann::json &r, const std::string &from, const std::string &base, const std::string &auth)
{
    for (const char *k : {"playback_url", "stat_url", "command_url", "event_url"}) {
        if (!r.contains(k))
            continue;
        std::string url = r[k].get<std::string>();
        if (!base.empty() && url.rfind(from, 0) == 0)
            url = base + url.substr(from.size());
        r[k] = url + auth;
    }
}

// Appends `auth` to the segment URIs of a playlist.
std::string with_token(const std::string &playlist, const std::string &auth)
{
    if (auth.empty())
        return playlist;
    std::string out;
    out.reserve(playlist.size() + 64 * auth.size());
    std::size_t pos = 0;
    while (pos < playlist.size()) {
        std::size_t eol = playlist.find('\n', pos);
        if (eol == std::string::npos)
            eol = playlist.size();
        out.append(playlist, pos, eol - pos);
        if (playlist.compare(pos, 7, "/ace/c/") == 0)
            out += auth;
        out += '\n';
        pos = eol + 1;
    }
    return out;
}

// The answer to a start: the envelope (format=json) or a 302 to the
// playback path (relative: the player keeps the host name it used).
void answer_start(const Playback::Res &res, bool json, nlohmann::json r, const std::string &from)
{
    fix_urls(r, from, host_base(res->request()), token_query(res->request()));
    if (json) {
        envelope(res, 200, std::move(r));
        return;
    }
    const std::string url = r["playback_url"].get<std::string>();
    res->send(302, "application/json", "", {{"Location", url.substr(url.find("/ace/"))}});
}

double seconds_since(std::chrono::steady_clock::time_point t)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

} // namespace

Playback::Playback(engine::EngineContext &ctx, core::Logger log) : ctx_(ctx), log_(std::move(log))
{
    tick_.init(this, uv_timer_init, ctx_.loop);
    uv_timer_start(tick_.get(), on_tick, 250, 250);
}

Playback::~Playback()
{
    close();
}

void Playback::close()
{
    fetches_.clear();
    polls_.clear(); // their callbacks never run
    while (!sessions_.empty())
        end_session(sessions_.begin()->first);
}

live::LiveEngine *Playback::live_engine() const
{
    return dynamic_cast<live::LiveEngine *>(ctx_.manager->find("live"));
}

ContentSource Playback::resolve(const Params &params) const
{
    auto *live = live_engine();
    return resolve_source(
        params, [live](const transport::InfoHash &ih) { return live && live->find(ih); },
        [this](const transport::InfoHash &ih) { return is_known_torrent(ih); });
}

bool Playback::is_known_torrent(const transport::InfoHash &ih) const
{
    const std::string hex = core::to_hex(ih.data(), ih.size());
    auto it = sessions_.find(hex);
    return (it != sessions_.end() && !it->second.live) || known_torrents_.count(hex) != 0;
}

void Playback::remember_torrent(const std::string &hex)
{
    if (known_torrents_.size() >= 4096)
        known_torrents_.clear(); // bounded; a forgotten id plays by infohash= still
    known_torrents_.insert(hex);
}

transport::TransportEngine *Playback::transport() const
{
    return dynamic_cast<transport::TransportEngine *>(ctx_.manager->find("transport"));
}

// --- sessions -----------------------------------------------------------

Playback::Session &Playback::open(const ContentSource &src)
{
    const std::string hex = src.hex();
    auto it = sessions_.find(hex);
    if (it != sessions_.end())
        return it->second;
    const nlohmann::json none = nlohmann::json::object();
    auto trackers = transport::fields::swarm_trackers(none, *ctx_.config);
    auto peers = transport::fields::swarm_peers(none, *ctx_.config);
    if (src.live) {
        auto *live = live_engine();
        if (!live || !live->running())
            throw_error(Errc::STATE, "streamer", "getstream", "the live engine is not running");
        live::LiveSwarm &swarm = live->acquire(src.content_id);
        Session &s = sessions_[hex];
        s.hex = hex;
        s.live = true;
        s.id = src.content_id;
        s.swarm = &swarm;
        if (!src.descriptor.empty() && !swarm.has_descriptor())
            swarm.set_descriptor(src.descriptor);
        swarm.add_trackers(trackers);
        swarm.add_peers(peers, true);
        s.subscription = swarm.subscribe([this, hex](const live::LiveSwarm::PieceRef &p, bool discontinuity) {
            if (auto it = sessions_.find(hex); it != sessions_.end())
                on_piece(it->second, p, discontinuity);
        });
        swarm.start();
    } else {
        auto *t = transport();
        if (!t || !t->running())
            throw_error(Errc::STATE, "streamer", "getstream", "the transport engine is not running");
        t->cache(); // where the pieces go; throws naming the directory
        transport::Torrent &torrent = t->acquire(src.infohash, src.name);
        Session &s = sessions_[hex];
        s.hex = hex;
        s.ih = src.infohash;
        s.torrent = &torrent;
        torrent.add_trackers(src.trackers);
        torrent.add_trackers(trackers);
        if (src.meta && !torrent.has_metadata())
            torrent.set_metadata(*src.meta);
        torrent.add_peers(src.peers, true);
        torrent.add_peers(peers, true);
        torrent.start();
        remember_torrent(hex);
    }
    log_.info("playback session {} ({}) started", hex, src.live ? "live" : "torrent");
    return sessions_[hex];
}

void Playback::end_session(const std::string hex) // a copy: callers pass map keys
{
    auto it = sessions_.find(hex);
    if (it == sessions_.end())
        return;
    Session s = std::move(it->second);
    sessions_.erase(it);
    for (auto &w : s.waiting)
        envelope(w.res, 410, nullptr, "the playback session ended");
    s.vod.clear(); // cancels the segment jobs
    for (auto &[key, p] : s.players) {
        if (p.out && !p.out->finished())
            p.out->end();
        for (auto &ts : p.streams)
            ts->close();
    }
    if (s.live) {
        s.swarm->unsubscribe(s.subscription);
        if (auto *live = live_engine())
            live->release(s.id);
        if (s.broadcast_job) {
            for (auto h = hls_sources_.begin(); h != hls_sources_.end();)
                h = h->second == s.broadcast_job ? hls_sources_.erase(h) : std::next(h);
            try {
                ctx_.manager->jobs().cancel(s.broadcast_job);
            } catch (const Error &) {
                // it ended already
            }
        }
    } else if (auto *t = transport()) {
        t->release(s.ih);
    }
    log_.info("playback session {} ended", hex);
}

Playback::Player &Playback::add_player(Session &s, const Params &params, int file_index, bool hls)
{
    // Each player its own key: md5 of its pid/sid when it names one, else new.
    auto pid = params.find("pid");
    if (pid == params.end())
        pid = params.find("sid");
    const std::string key = pid != params.end() ? md5_hex(pid->second) : random_key();
    Player &p = s.players[key];
    p.key = key;
    p.file_index = file_index;
    p.hls = hls;
    p.last_seen = clock::now();
    ++players_total_;
    return p;
}

nlohmann::json Playback::started_json(const Session &s, const Player &p, bool hls) const
{
    const std::string path = s.hex + "/" + p.key;
    return {{"playback_url", base_ + (hls ? "/ace/m/" + path + ".m3u8" : "/ace/r/" + path)},
            {"stat_url", base_ + "/ace/stat/" + path},
            {"command_url", base_ + "/ace/cmd/" + path},
            {"event_url", base_ + "/ace/event/" + path},
            {"infohash", s.hex},
            {"playback_session_id", p.key},
            {"is_live", s.live ? 1 : 0},
            {"is_encrypted", 0},
            {"client_session_id", -1}};
}

void Playback::start(const Params &params, bool hls, Done done)
{
    ContentSource src;
    try {
        if (needs_fetch(params)) {
            const std::string url = pick_selector(params).second;
            net::HttpClientOptions opt;
            opt.max_body = kMaxTransportFile;
            auto fetch = std::make_unique<Fetch>();
            Fetch *f = fetch.get();
            fetch->get = std::make_unique<net::HttpGet>(
                ctx_.loop, url,
                [this, f, params, hls, done, url](const net::HttpClientResponse *r, const std::string &error) {
                    f->done = true; // forgotten by the next tick, never inside this call
                    ContentSource s;
                    std::string why = error;
                    if (why.empty() && r->status != 200)
                        why = fmt::format("HTTP {}", r->status);
                    if (why.empty()) {
                        try {
                            s = classify_transport_file(r->body, "url");
                            apply_file_index(s, params);
                        } catch (const Error &e) {
                            why = e.detail();
                        }
                    }
                    if (why.empty())
                        start_resolved(s, params, hls, done);
                    else
                        done(nullptr, fmt::format("failed to load content: parameter 'url': {}: {}", url, why));
                },
                opt);
            fetches_.push_back(std::move(fetch));
            return;
        }
        src = resolve(params);
    } catch (const Error &e) {
        done(nullptr, e.detail());
        return;
    }
    start_resolved(src, params, hls, done);
}

void Playback::start_resolved(const ContentSource &src, const Params &params, bool hls, const Done &done)
{
    try {
        Session &s = open(src);
        Player &p = add_player(s, params, src.file_index, hls);
        done(started_json(s, p, hls), {});
    } catch (const Error &e) {
        done(nullptr, fmt::format("failed to load content: {}", e.detail()));
    }
}

std::pair<Playback::Session *, Playback::Player *> Playback::find(const std::string &hex, const std::string &key)
{
    auto it = sessions_.find(hex);
    if (it == sessions_.end())
        return {nullptr, nullptr};
    auto p = it->second.players.find(key);
    return {&it->second, p == it->second.players.end() ? nullptr : &p->second};
}

std::pair<Playback::Session *, Playback::Player *> Playback::find(const net::HttpRequest &req,
                                                                   std::string_view prefix)
{
    auto [hex, key] = id_and_key(req.path, prefix);
    return find(hex, key);
}

bool Playback::stop(const std::string &hex, const std::string &key)
{
    auto [s, p] = find(hex, key);
    if (!p)
        return false;
    if (p->out && !p->out->finished())
        p->out->end();
    for (auto &ts : p->streams)
        ts->close();
    s->players.erase(key);
    if (s->players.empty())
        end_session(hex);
    return true;
}

// --- live ---------------------------------------------------------------

bool Playback::write_piece(Player &p, const live::LiveSwarm::PieceRef &piece)
{
    if (!p.out || p.out->closed() || p.out->finished())
        return false;
    // A reader that cannot keep up skips whole pieces (each starts at a
    // keyframe with PAT/PMT), it never grows an unbounded queue.
    if (p.out->pending_bytes() > kMaxPending) {
        ++p.skipped;
        return false;
    }
    if (!p.out->write(piece->data))
        return false;
    ++p.pieces;
    p.pos = piece->sequence;
    return true;
}

void Playback::on_piece(Session &s, const live::LiveSwarm::PieceRef &piece, bool discontinuity)
{
    if (!s.first_seq) {
        s.first_seq = piece->sequence;
        s.first_ts = piece->timestamp_ms;
    }
    s.last_seq = piece->sequence;
    s.last_ts = piece->timestamp_ms;
    for (auto &[key, p] : s.players)
        write_piece(p, piece);
    // HLS: a piece's EXTINF is the time to the next one (both stamped by the
    // broadcaster as it cut them); the newest waits for its successor.
    const double nominal = s.swarm->has_descriptor() ? s.swarm->descriptor().piece_duration : 1.0;
    if (s.held) {
        double d = static_cast<double>(piece->timestamp_ms - s.held->timestamp_ms) / 1000.0;
        if (discontinuity || !(d > 0.05 && d < 3 * nominal))
            d = nominal;
        add_to_playlist(s, s.held, d, s.held_discontinuity);
    }
    s.held = piece;
    s.held_discontinuity = discontinuity;
}

void Playback::add_to_playlist(Session &s, const live::LiveSwarm::PieceRef &piece, double duration,
                               bool discontinuity)
{
    if (!s.hls) {
        const double nominal = s.swarm->has_descriptor() ? s.swarm->descriptor().piece_duration : 1.0;
        media::LivePlaylist::Options o;
        o.segment_duration = nominal;
        o.max_segment_duration = 3 * nominal;
        o.window = kHlsWindow;
        o.uri_prefix = "/ace/c/" + s.hex + "/";
        s.hls = std::make_unique<media::LivePlaylist>(o);
    }
    media::Chunk c;
    c.seq = piece->sequence;
    c.duration_s = duration;
    c.wall_clock_ms = piece->timestamp_ms;
    c.keyframe = true;
    c.discontinuity = discontinuity;
    c.data = std::shared_ptr<const std::string>(piece, &piece->data); // shares the piece
    s.hls->add(std::move(c));
    serve_waiting(s, false);
}

std::string Playback::liveseek(const std::string &hex, const std::string &key, const std::string &pos)
{
    auto [s, p] = find(hex, key);
    if (!p)
        return "unknown playback session id";
    if (!s->live)
        return "liveseek: not a live stream";
    auto v = to_int(pos);
    if (!v || *v < 0)
        return fmt::format("liveseek: parameter 'pos': expected a piece number or a Unix time, got '{}'",
                           pos.substr(0, 32));
    auto oldest = s->swarm->oldest();
    auto newest = s->swarm->newest();
    if (!oldest || !newest)
        return "liveseek: nothing in the live window yet";
    std::uint64_t seq = static_cast<std::uint64_t>(*v);
    if (seq < *oldest || seq > *newest) { // a Unix time: the first piece at or after it
        std::optional<std::uint64_t> found;
        for (std::uint64_t q = *oldest; q <= *newest && !found; ++q)
            if (auto piece = s->swarm->piece(q); piece && piece->timestamp_ms / 1000 >= *v)
                found = q;
        if (!found)
            return fmt::format("liveseek: pos {} is outside the live window (pieces {}..{})", pos, *oldest, *newest);
        seq = *found;
    }
    // The player's stream continues from there: the window's pieces now,
    // then the live ones as they come.
    for (std::uint64_t q = seq; q <= *newest; ++q)
        if (auto piece = s->swarm->piece(q))
            write_piece(*p, piece);
    return {};
}

// --- torrents -----------------------------------------------------------

std::string Playback::pick_file(Session &s, Player &p, const transport::FileEntry *&file)
{
    const transport::Metainfo &m = s.torrent->metainfo();
    if (p.file_index < 0) { // the largest file
        p.file_index = 0;
        for (std::size_t i = 1; i < m.files.size(); ++i)
            if (m.files[i].length > m.files[static_cast<std::size_t>(p.file_index)].length)
                p.file_index = static_cast<int>(i);
    }
    if (static_cast<std::size_t>(p.file_index) >= m.files.size())
        return fmt::format("parameter '_idx': file index {} is out of range: the torrent has {} file(s)",
                           p.file_index, m.files.size());
    file = &m.files[static_cast<std::size_t>(p.file_index)];
    // Download only what players want: the span of their files.
    const std::int64_t b = s.wanted_begin < 0 ? file->offset : std::min(s.wanted_begin, file->offset);
    const std::int64_t e = std::max(s.wanted_end, file->offset + file->length);
    if (b != s.wanted_begin || e != s.wanted_end) {
        s.wanted_begin = b;
        s.wanted_end = e;
        s.torrent->set_wanted(b, e);
    }
    return {};
}

void Playback::serve_torrent(Session &s, Player &p, const Res &res)
{
    const transport::FileEntry *file = nullptr;
    if (std::string err = pick_file(s, p, file); !err.empty()) {
        envelope(res, 404, nullptr, err);
        return;
    }
    const transport::Metainfo &m = s.torrent->metainfo();
    std::string name = file->path.empty() ? m.name : file->path.back();
    net::HttpHeaders headers = {{"Accept-Ranges", "bytes"}};
    net::ByteRange range{0, file->length - 1};
    int status = 200;
    if (const std::string *h = res->request().header("range")) {
        switch (net::parse_range(*h, file->length, range)) {
        case net::RangeResult::Ok:
            status = 206;
            headers.emplace_back("Content-Range",
                                 fmt::format("bytes {}-{}/{}", range.first, range.last, file->length));
            break;
        case net::RangeResult::Unsatisfiable:
            res->send(416, kJson, R"({"response":null,"error":"range not satisfiable"})",
                      {{"Content-Range", fmt::format("bytes */{}", file->length)}});
            return;
        case net::RangeResult::None:
            break;
        }
    }
    const std::int64_t length = file->length == 0 ? 0 : range.length();
    res->begin_sized(status, net::media_type_for(name), static_cast<std::size_t>(length), headers);
    if (length == 0 || res->request().method == "HEAD") {
        res->end();
        return;
    }
    auto ts = std::make_shared<TorrentStream>(*s.torrent, res, file->offset + range.first,
                                              file->offset + range.first + length);
    std::erase_if(p.streams, [](const auto &x) { return x->done(); });
    p.streams.push_back(ts);
    ts->start();
}

// --- waiting requests ---------------------------------------------------

void Playback::serve_waiting(Session &s, bool give_up_old)
{
    if (s.waiting.empty())
        return;
    std::vector<Waiting> waiting;
    waiting.swap(s.waiting);
    for (auto &w : waiting) {
        if (w.res->closed())
            continue;
        Player *p = nullptr;
        if (auto it = s.players.find(w.key); it != s.players.end())
            p = &it->second;
        const bool ready = p && (w.playlist ? playlist_ready(s, *p) : s.torrent->has_metadata());
        if (p && ready) {
            if (w.playlist)
                serve_playlist(s, *p, w.res);
            else
                serve_torrent(s, *p, w.res);
        } else if (!p) {
            envelope(w.res, 404, nullptr, "unknown playback session id");
        } else if (give_up_old && seconds_since(w.since) > kStartTimeout) {
            envelope(w.res, 504, nullptr,
                     fmt::format("failed to load content: {} after {} s",
                                 s.live ? "no live segments" : w.playlist ? "no HLS segments" : "no metadata",
                                 kStartTimeout));
        } else {
            s.waiting.push_back(std::move(w));
        }
    }
}

// --- HTTP routes --------------------------------------------------------

void Playback::getstream(const net::HttpRequest &req, const Res &res, bool hls)
{
    const bool json = req.param("format").value_or("") == "json";
    start(params_of(req.query), hls, [this, res, json](const nlohmann::json &r, const std::string &error) {
        if (!error.empty())
            envelope(res, error.rfind("failed to load content", 0) == 0 ? 500 : 400, nullptr, error);
        else
            answer_start(res, json, r, base_);
    });
}

void Playback::stream(const net::HttpRequest &req, const Res &res)
{
    auto [s, p] = find(req, "/ace/r/");
    if (!p) {
        envelope(res, 404, nullptr, "unknown playback session id");
        return;
    }
    p->last_seen = clock::now();
    if (!s->live) {
        if (s->torrent->has_metadata())
            serve_torrent(*s, *p, res);
        else
            s->waiting.push_back({res, p->key, false});
        return;
    }
    if (p->out && !p->out->finished())
        p->out->end(); // the same key again: the newer request wins
    p->out = res;
    res->begin_chunked(200, "video/mp2t", {{"Cache-Control", "no-cache"}});
}

VodHls *Playback::vod_for(Session &s, Player &p, std::string &error)
{
    const transport::FileEntry *file = nullptr;
    if (error = pick_file(s, p, file); !error.empty())
        return nullptr;
    auto &vod = s.vod[p.file_index];
    if (!vod) {
        // The segmenter reads the file through our own progressive URL, as a
        // player would, under a key of its own that keeps the session alive.
        const std::string key = "vod" + std::to_string(p.file_index);
        Player &reader = s.players[key];
        reader.key = key;
        reader.file_index = p.file_index;
        reader.role = Player::Role::Segmenter;
        try {
            vod = std::make_unique<VodHls>(ctx_, log_, base_ + "/ace/r/" + s.hex + "/" + key,
                                           "/ace/c/" + s.hex + "/" + std::to_string(p.file_index) + "/",
                                           s.hex + "-" + std::to_string(p.file_index));
        } catch (const Error &e) {
            s.vod.erase(p.file_index);
            error = fmt::format("failed to load content: {}", e.detail());
            return nullptr;
        }
    }
    return vod.get();
}

bool Playback::playlist_ready(Session &s, Player &p)
{
    if (s.live)
        return s.hls && s.hls->size() >= kMinSegments;
    if (!s.torrent->has_metadata())
        return false;
    std::string error;
    VodHls *vod = vod_for(s, p, error);
    return !vod || vod->ready(); // an error is answered at once
}

void Playback::serve_playlist(Session &s, Player &p, const Res &res)
{
    if (s.live) {
        res->send(200, kM3u8, with_token(s.hls->playlist(), token_query(res->request())),
                  {{"Cache-Control", "no-cache"}});
        return;
    }
    std::string error;
    if (VodHls *vod = vod_for(s, p, error))
        vod->serve_playlist(res, token_query(res->request()));
    else
        envelope(res, 404, nullptr, error);
}

void Playback::playlist(const net::HttpRequest &req, const Res &res)
{
    auto [s, p] = find(req, "/ace/m/");
    if (!p) {
        envelope(res, 404, nullptr, "unknown playback session id");
        return;
    }
    p->last_seen = clock::now();
    if (playlist_ready(*s, *p))
        serve_playlist(*s, *p, res);
    else
        s->waiting.push_back({res, p->key, true});
}

void Playback::segment(const net::HttpRequest &req, const Res &res)
{
    // /ace/c/<id>/<n>.ts (live) or /ace/c/<id>/<file index>/<n>.ts (torrent)
    auto [hex, rest] = id_and_key(req.path, "/ace/c/");
    auto it = sessions_.find(hex);
    if (it == sessions_.end()) {
        envelope(res, 404, nullptr, "unknown playback session id");
        return;
    }
    Session &s = it->second;
    if (s.live) {
        auto n = to_int(rest);
        const media::HlsSegment *seg = n && s.hls ? s.hls->segment(static_cast<std::uint64_t>(*n)) : nullptr;
        if (!seg) {
            envelope(res, 404, nullptr, fmt::format("segment '{}' is not in the live window", rest.substr(0, 32)));
            return;
        }
        for (auto &[k, p] : s.players)
            if (p.hls)
                p.last_seen = clock::now();
        res->send(200, "video/mp2t", media::LivePlaylist::segment_data(*seg));
        return;
    }
    std::string_view path(req.path);
    path.remove_prefix(std::min(path.size(), 7 + hex.size() + 1));
    const auto slash = path.find('/');
    auto idx = to_int(path.substr(0, slash == std::string_view::npos ? 0 : slash));
    auto vod = idx ? s.vod.find(static_cast<int>(*idx)) : s.vod.end();
    if (vod == s.vod.end()) {
        envelope(res, 404, nullptr, "no HLS of that file: ask for its playlist first");
        return;
    }
    for (auto &[k, p] : s.players)
        if (p.hls)
            p.last_seen = clock::now();
    vod->second->serve_segment(std::string(path.substr(slash + 1)), res);
}

nlohmann::json Playback::live_stat(const Session &s, const Player &p) const
{
    const live::LiveSwarm &w = *s.swarm;
    auto str = [](auto v) { return std::to_string(v); };
    nlohmann::json livepos = nlohmann::json::object();
    if (s.first_seq) {
        const auto oldest = w.oldest().value_or(*s.first_seq);
        const std::uint64_t buffered = static_cast<std::uint64_t>(std::llround(w.buffer_seconds()));
        livepos = {{"last", str(*s.last_seq)},
                   {"live_first", str(std::max(oldest, *s.first_seq))},
                   {"live_last", str(w.newest().value_or(*s.last_seq))},
                   {"pos", str(p.pos.value_or(*s.last_seq))},
                   {"first_ts", str(s.first_ts / 1000)},
                   {"last_ts", str(s.last_ts / 1000)},
                   {"is_live", "1"},
                   {"buffer_pieces", str(buffered)}};
    }
    // dl once the session holds pieces: players (python-acestream, Horus)
    // wait for it before they start reading.
    const bool playing = p.pieces > 0 || s.first_seq.has_value();
    return {{"status", playing ? "dl" : "prebuf"},
            {"progress", playing ? 100 : 0},
            {"peers", w.peer_count()},
            {"speed_down", static_cast<std::int64_t>(w.download_rate() / 1024)},
            {"speed_up", static_cast<std::int64_t>(w.upload_rate() / 1024)},
            {"downloaded", w.downloaded()},
            {"uploaded", w.uploaded()},
            {"total_progress", 0},
            {"is_live", 1},
            {"livepos", livepos},
            {"pieces_skipped", p.skipped}};
}

nlohmann::json Playback::torrent_stat(const Session &s, const Player &p) const
{
    const transport::Torrent &t = *s.torrent;
    nlohmann::json st = t.status();
    int total = 0;
    if (st.contains("pieces") && st["pieces"].get<std::int64_t>() > 0)
        total = static_cast<int>(100 * st["pieces_have"].get<std::int64_t>() / st["pieces"].get<std::int64_t>());
    // prebuf until this player got its first bytes (or its HLS segments
    // started), progress = the buffer ahead of its reader against the
    // streaming buffer (10 s at 4 Mbit/s as a bitrate guess).
    std::int64_t sent = 0, buffered = 0;
    for (const auto &ts : p.streams) {
        sent += ts->sent();
        buffered = std::max(buffered, ts->buffered());
    }
    // dl once this player got bytes, or once the start of its file is
    // here (players wait for dl before they read).
    bool playing = sent > 0 || t.complete() || buffered >= kPrebufferBytes;
    if (!playing && t.has_metadata() && p.file_index >= 0 &&
        static_cast<std::size_t>(p.file_index) < t.metainfo().files.size()) {
        const auto &f = t.metainfo().files[static_cast<std::size_t>(p.file_index)];
        playing = f.length == 0 || t.downloaded() >= static_cast<std::uint64_t>(std::min(f.length, kPrebufferBytes));
    }
    if (p.hls)
        if (auto it = s.vod.find(p.file_index); it != s.vod.end())
            playing = playing || it->second->segments() > 0;
    const double want = std::max(1.0, ctx_.config->streaming.buffer_size * 500'000.0);
    const int progress = playing ? 100 : static_cast<int>(std::min(99.0, 100.0 * double(buffered) / want));
    return {{"status", playing ? "dl" : "prebuf"},
            {"progress", progress},
            {"peers", t.peer_count()},
            {"speed_down", static_cast<std::int64_t>(t.download_rate() / 1024)},
            {"speed_up", static_cast<std::int64_t>(t.upload_rate() / 1024)},
            {"downloaded", t.downloaded()},
            {"uploaded", t.uploaded()},
            {"total_progress", total},
            {"is_live", 0},
            {"selected_file_index", p.file_index},
            {"livepos", nlohmann::json::object()}};
}

nlohmann::json Playback::stat_of(const std::string &hex, const std::string &key)
{
    auto [s, p] = find(hex, key);
    if (!p)
        return nullptr;
    p->last_seen = clock::now();
    nlohmann::json j = s->live ? live_stat(*s, *p) : torrent_stat(*s, *p);
    j["infohash"] = s->hex;
    j["playback_session_id"] = p->key;
    j["client_session_id"] = -1;
    j["is_encrypted"] = 0;
    return j;
}

void Playback::stat(const net::HttpRequest &req, const Res &res)
{
    auto [hex, key] = id_and_key(req.path, "/ace/stat/");
    nlohmann::json j = stat_of(hex, key);
    if (j.is_null())
        envelope(res, 200, nullptr, "unknown playback session id");
    else
        envelope(res, 200, std::move(j));
}

void Playback::cmd(const net::HttpRequest &req, const Res &res)
{
    auto [hex, key] = id_and_key(req.path, "/ace/cmd/");
    if (!find(hex, key).second) {
        envelope(res, 200, nullptr, "unknown playback session id");
        return;
    }
    const std::string method = req.param("method").value_or("");
    if (method == "stop") {
        stop(hex, key);
    } else if (method == "liveseek") {
        if (std::string err = liveseek(hex, key, req.param("pos").value_or("")); !err.empty()) {
            envelope(res, 400, nullptr, err);
            return;
        }
    } else {
        envelope(res, 400, nullptr,
                 fmt::format("unknown method '{}' (supported: stop, liveseek)", method.substr(0, 64)));
        return;
    }
    res->send(200, kJson, R"({"response":"ok","error":null})");
}

void Playback::hls_source(const net::HttpRequest &req, const Res &res)
{
    auto url = req.param("manifest_url");
    if (!url || url->empty()) {
        envelope(res, 400, nullptr, "missing parameter 'manifest_url' (the URL of an HLS playlist)");
        return;
    }
    if (url->size() > 2048 || (url->rfind("http://", 0) != 0 && url->rfind("https://", 0) != 0)) {
        envelope(res, 400, nullptr, "parameter 'manifest_url': expected an http:// or https:// URL (at most 2048 bytes)");
        return;
    }
    auto *live = live_engine();
    if (!live || !live->running()) {
        envelope(res, 503, nullptr, "the live engine is not running");
        return;
    }
    std::int64_t job = 0;
    if (auto it = hls_sources_.find(*url); it != hls_sources_.end()) {
        job = it->second;
    } else {
        // The HLS source becomes a broadcast of this engine: its segments
        // are cut into signed pieces for the swarm like any other source.
        nlohmann::json spec = {{"type", "broadcast"}, {"source", *url}, {"name", url->substr(0, 200)}};
        try {
            job = ctx_.manager->jobs().submit(json_text(spec));
        } catch (const Error &e) {
            envelope(res, 500, nullptr, fmt::format("failed to load content: {}", e.detail()));
            return;
        }
        hls_sources_[*url] = job;
        log_.info("HLS source {} is broadcast by job {}", *url, job);
    }
    Params params = params_of(req.query);
    params.erase("manifest_url");
    const bool json = req.param("format").value_or("") == "json";
    // The broadcast's content id exists once the job started (next loop
    // iterations): poll briefly, bounded (10 s).
    auto left = std::make_shared<int>(100);
    repeat(100, [this, left, job, params, json, res, live]() mutable {
        auto id = live->job_content_id(job);
        if (!id && --*left > 0 && !res->closed())
            return false; // again in 100 ms
        if (!id) {
            std::erase_if(hls_sources_, [job](auto &e) { return e.second == job; });
            envelope(res, 500, nullptr, "failed to load content: the HLS source did not start a broadcast");
            return true;
        }
        params["content_id"] = live::to_hex(*id);
        start(params, true, [this, res, json, job, hex = live::to_hex(*id)](const nlohmann::json &r,
                                                                          const std::string &error) {
            if (!error.empty()) {
                envelope(res, 500, nullptr, error);
                return;
            }
            if (auto it = sessions_.find(hex); it != sessions_.end())
                it->second.broadcast_job = job;
            answer_start(res, json, r, base_);
        });
        return true;
    });
}

void Playback::media_files(const Params &params, Done done)
{
    // Resolve as a start would, without a player, then describe the files.
    ContentSource src;
    try {
        if (needs_fetch(params)) {
            done(nullptr, "get_media_files: parameter 'url': http:// transport files are not fetched here; "
                          "pass the file with data= or a file:// url");
            return;
        }
        src = resolve(params);
    } catch (const Error &e) {
        done(nullptr, e.detail());
        return;
    }
    if (src.live) {
        std::string name = src.name;
        const live::LiveSwarm *w = live_engine() ? live_engine()->find(src.content_id) : nullptr;
        if (name.empty() && w && w->has_descriptor())
            name = w->descriptor().name;
        done({{"infohash", src.hex()},
              {"name", name},
              {"type", "live"},
              {"transport_type", "bt"},
              {"files", nlohmann::json::array({{{"index", 0}, {"filename", name}, {"size", 0}}})}},
             {});
        return;
    }
    auto describe = [](const transport::Metainfo &m, const std::string &hex) {
        nlohmann::json files = nlohmann::json::array();
        for (std::size_t i = 0; i < m.files.size(); ++i) {
            std::string name = m.name;
            for (const auto &c : m.files[i].path)
                name += "/" + c;
            files.push_back({{"index", i}, {"filename", name}, {"size", m.files[i].length}});
        }
        return nlohmann::json{{"infohash", hex}, {"name", m.name}, {"type", "vod"}, {"transport_type", "bt"},
                              {"files", files}};
    };
    if (src.meta) {
        done(describe(*src.meta, src.hex()), {});
        return;
    }
    // Metadata from peers: a session (kept while we wait) and a bounded poll.
    Session *s = nullptr;
    try {
        s = &open(src);
    } catch (const Error &e) {
        done(nullptr, e.detail());
        return;
    }
    Player &holder = s->players["media_files"];
    holder.key = "media_files";
    holder.role = Player::Role::Holder; // keeps the session open while waiting
    auto left = std::make_shared<int>(static_cast<int>(kStartTimeout * 5));
    const std::string hex = src.hex();
    repeat(200, [this, left, hex, done, describe]() {
        auto it = sessions_.find(hex);
        const bool have = it != sessions_.end() && it->second.torrent->has_metadata();
        if (!have && it != sessions_.end() && --*left > 0)
            return false;
        if (have)
            done(describe(it->second.torrent->metainfo(), hex), {});
        else
            done(nullptr, fmt::format("get_media_files: no metadata for {} after {} s", hex, kStartTimeout));
        if (it != sessions_.end()) {
            it->second.players.erase("media_files");
            if (it->second.players.empty())
                end_session(hex);
        }
        return true;
    });
}

void Playback::repeat(std::uint64_t every_ms, std::function<bool()> step)
{
    auto poll = std::make_unique<Poll>();
    poll->step = std::move(step);
    poll->timer.init(poll.get(), uv_timer_init, ctx_.loop);
    uv_timer_start(poll->timer.get(), [](uv_timer_t *t) {
        auto *p = static_cast<Poll *>(t->data);
        if (!p->done && p->step()) {
            p->done = true; // freed by the next tick, not inside its own callback
            p->timer.close();
        }
    }, every_ms, every_ms);
    polls_.push_back(std::move(poll));
}

// --- idle sessions ------------------------------------------------------

void Playback::on_tick(uv_timer_t *t)
{
    static_cast<Playback *>(t->data)->tick();
}

void Playback::tick()
{
    // Finished fetches go (never from inside their own callback).
    std::erase_if(fetches_, [](const auto &f) { return f->done; });
    std::erase_if(polls_, [](const auto &p) { return p->done; });
    for (auto &[hex, s] : sessions_)
        serve_waiting(s, true);
    if (++ticks_ % 4 != 0)
        return;
    const auto now = clock::now();
    const auto idle = std::chrono::duration_cast<clock::duration>(
        std::chrono::duration<double>(ctx_.config->streaming.idle_timeout));
    std::vector<std::string> idle_sessions;
    for (auto &[hex, s] : sessions_) {
        // A player reads while its progressive response is open or while it
        // fetches HLS playlists/segments; one that left is forgotten after
        // the idle timeout, and a session with no reader that long stops.
        bool reading = !s.waiting.empty();
        for (auto it = s.players.begin(); it != s.players.end();) {
            Player &p = it->second;
            std::erase_if(p.streams, [](const auto &x) { return x->done(); });
            const bool open = (p.out && !p.out->closed() && !p.out->finished()) || !p.streams.empty() ||
                              p.role == Player::Role::Holder;
            if (open)
                p.last_seen = now;
            // The VOD segmenter reads as long as the session lives: it is no
            // player, and never forgotten.
            const bool segmenter = p.role == Player::Role::Segmenter;
            reading = reading || (open && !segmenter) || (p.hls && now - p.last_seen < idle);
            it = !open && !segmenter && now - p.last_seen > idle ? s.players.erase(it) : std::next(it);
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
            reading += (p.out && !p.out->closed() && !p.out->finished()) || !p.streams.empty();
        nlohmann::json j = {{"id", hex},
                            {"type", s.live ? "live" : "torrent"},
                            {"players", s.players.size()},
                            {"reading", reading}};
        if (s.live)
            j["content_id"] = hex;
        if (s.hls)
            j["hls_segments"] = s.hls->size();
        sessions.push_back(std::move(j));
    }
    return {{"sessions", std::move(sessions)}, {"players_total", players_total_}};
}

} // namespace openace::streamer
