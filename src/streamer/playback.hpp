// Playback sessions of the Ace Stream HTTP API (reference §2.2-2.6,
// docs/http-api.md), for live streams and for torrents.
//
//   GET /ace/getstream?<selector>      progressive: 302 to /ace/r/<id>/<key>
//   GET /ace/manifest.m3u8?<selector>  HLS: 302 to /ace/m/<id>/<key>.m3u8
//       (format=json: the {"response":…,"error":…} envelope instead)
//   /ace/r/<id>/<key>        live: chunked video/mp2t from the next piece
//                            (PAT/PMT + keyframe); torrent: the file, with
//                            Content-Length, HTTP Range and its media type
//   /ace/m/<id>/<key>.m3u8   live: sliding-window playlist (RFC 8216) of the
//                            session's pieces; torrent: the VOD playlist of
//                            the file cut into segments while it downloads
//   /ace/c/<id>/<n>.ts       a segment of either
//   /ace/stat/<id>/<key>     status; /ace/cmd/<id>/<key>?method=stop|liveseek
//   /hls/manifest.m3u8?manifest_url=URL   an HLS source taken into a swarm
//                            (a broadcast of it) and played as a live stream
//
// The selector is parsed by content_source.hpp.  <id> is the content id of
// a live stream, the infohash of a torrent.  One session per <id>, shared by
// every player (each with its own key: md5 of its pid/sid, else fresh).  A
// live player that cannot keep up skips whole pieces instead of growing a
// queue.  A session stops by itself when no player has read from it for
// streaming.idle_timeout seconds.
//
// Loop thread only.
#pragma once

#include "live/live_descriptor.hpp"
#include "live/live_swarm.hpp"
#include "media/hls.hpp"
#include "net/http_client.hpp"
#include "net/http_server.hpp"
#include "net/uv_handle.hpp"
#include "streamer/content_source.hpp"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace openace::engine {
struct EngineContext;
}
namespace openace::live {
class LiveEngine;
}
namespace openace::transport {
class Torrent;
class TransportEngine;
}

namespace openace::streamer {

class TorrentStream;
class VodHls;

class Playback {
public:
    using Res = std::shared_ptr<net::HttpResponse>;
    // result: the JSON "response" of getstream?format=json; error: why not.
    using Done = std::function<void(const nlohmann::json &result, const std::string &error)>;

    explicit Playback(engine::EngineContext &ctx, core::Logger log);
    ~Playback();
    Playback(const Playback &) = delete;
    Playback &operator=(const Playback &) = delete;

    // "http://127.0.0.1:6878": the base of the URLs handed out.
    void set_base(std::string base) { base_ = std::move(base); }

    // The API as calls (the HTTP routes and the TCP API use them).
    // start: opens or joins the session of the selector in `params` and
    // adds a player (key from pid/sid).  done may run synchronously (or
    // after an http:// transport file was fetched).
    void start(const Params &params, bool hls, Done done);
    // The stat "response" object, or null for an unknown session/key.
    nlohmann::json stat_of(const std::string &id, const std::string &key);
    // Ends that player (and the session with its last player).  False when unknown.
    bool stop(const std::string &id, const std::string &key);
    // Moves a live player's progressive stream to `pos`: a piece sequence
    // number in the live window (livepos values), or a Unix time in
    // seconds.  Returns "" or the error.
    std::string liveseek(const std::string &id, const std::string &key, const std::string &pos);
    // A torrent's content id given out (get_content_id): content_id=<it>
    // then plays that torrent.
    void remember_torrent(const std::string &hex);
    // get_media_files: {"infohash","name","type":"live"|"vod","files":[{index,filename,size}]}
    // (a torrent's metadata is awaited up to streaming start timeout).
    void media_files(const Params &params, Done done);

    // HTTP routes.
    void getstream(const net::HttpRequest &req, const Res &res, bool hls);
    void stream(const net::HttpRequest &req, const Res &res);   // /ace/r/
    void playlist(const net::HttpRequest &req, const Res &res); // /ace/m/
    void segment(const net::HttpRequest &req, const Res &res);  // /ace/c/
    void stat(const net::HttpRequest &req, const Res &res);     // /ace/stat/
    void cmd(const net::HttpRequest &req, const Res &res);      // /ace/cmd/
    void hls_source(const net::HttpRequest &req, const Res &res); // /hls/manifest.m3u8

    // Ends every stream and session (the engine stops).
    void close();
    nlohmann::json status() const;

    // Seconds a player waits for a torrent's metadata or a live playlist's
    // first segments before it gets an error.
    static constexpr double kStartTimeout = 30.0;

private:
    using clock = std::chrono::steady_clock;
    struct Player {
        // Holder: keeps a session open while get_media_files waits for
        // metadata; Segmenter: the VOD HLS segment job's own reader.
        enum class Role { Player, Holder, Segmenter } role = Role::Player;
        std::string key;
        Res out;                                 // live: the /ace/r/ response while it reads
        std::vector<std::shared_ptr<TorrentStream>> streams; // torrent: open /ace/r/ responses
        std::uint64_t pieces = 0, skipped = 0;
        std::optional<std::uint64_t> pos;        // live: last piece sent to it
        int file_index = -1;
        bool hls = false;
        clock::time_point last_seen = clock::now();
    };
    struct Waiting { // a request parked until metadata / segments exist
        Res res;
        std::string key;
        bool playlist = false;
        clock::time_point since = clock::now();
    };
    struct Session {
        std::string hex;
        bool live = false;
        // live
        live::ContentId id{};
        live::LiveSwarm *swarm = nullptr;
        int subscription = 0;
        std::optional<std::uint64_t> first_seq, last_seq;
        std::int64_t first_ts = 0, last_ts = 0;
        std::unique_ptr<media::LivePlaylist> hls; // from the first piece on
        live::LiveSwarm::PieceRef held;           // newest piece: its EXTINF needs the next one
        bool held_discontinuity = false;
        std::int64_t broadcast_job = 0;            // /hls/manifest: the broadcast we started
        // torrent
        transport::InfoHash ih{};
        transport::Torrent *torrent = nullptr;
        std::map<int, std::unique_ptr<VodHls>> vod; // by file index
        std::int64_t wanted_begin = -1, wanted_end = -1;
        std::map<std::string, Player> players;
        std::vector<Waiting> waiting;
        clock::time_point idle_since = clock::now();
    };

    static void on_tick(uv_timer_t *t);
    void tick();
    Session &open(const ContentSource &src);
    void end_session(const std::string hex);
    Player &add_player(Session &s, const Params &params, int file_index, bool hls);
    nlohmann::json started_json(const Session &s, const Player &p, bool hls) const;
    void start_resolved(const ContentSource &src, const Params &params, bool hls, const Done &done);
    void on_piece(Session &s, const live::LiveSwarm::PieceRef &piece, bool discontinuity);
    void add_to_playlist(Session &s, const live::LiveSwarm::PieceRef &piece, double duration, bool discontinuity);
    bool write_piece(Player &p, const live::LiveSwarm::PieceRef &piece);
    void serve_waiting(Session &s, bool give_up_old);
    void serve_torrent(Session &s, Player &p, const Res &res);
    void serve_playlist(Session &s, Player &p, const Res &res);
    // A torrent player's VOD HLS (made on first use), or null with `error`.
    VodHls *vod_for(Session &s, Player &p, std::string &error);
    // Whether a playlist request can be answered now (else it waits).
    bool playlist_ready(Session &s, Player &p);
    // The file a torrent player plays (after metadata), or an error message.
    std::string pick_file(Session &s, Player &p, const transport::FileEntry *&file);
    nlohmann::json torrent_stat(const Session &s, const Player &p) const;
    nlohmann::json live_stat(const Session &s, const Player &p) const;
    transport::TransportEngine *transport() const;
    live::LiveEngine *live_engine() const;
    // resolve_source with this engine's live sessions and known torrents.
    ContentSource resolve(const Params &params) const;
    bool is_known_torrent(const transport::InfoHash &ih) const;
    // The session and player of /ace/<kind>/<id>/<key>, or nulls.
    std::pair<Session *, Player *> find(const std::string &hex, const std::string &key);
    std::pair<Session *, Player *> find(const net::HttpRequest &req, std::string_view prefix);

    engine::EngineContext &ctx_;
    core::Logger log_;
    std::string base_ = "http://127.0.0.1:6878";
    std::map<std::string, Session> sessions_; // by hex id
    std::set<std::string> known_torrents_; // content ids given out for torrents
    std::map<std::string, std::int64_t> hls_sources_; // manifest_url -> broadcast job
    struct Fetch { // an http:// transport file on its way
        std::unique_ptr<net::HttpGet> get;
        bool done = false;
    };
    std::vector<std::unique_ptr<Fetch>> fetches_;
    struct Poll { // a bounded wait: step() every few ms until it says done
        net::UvHandle<uv_timer_t> timer;
        std::function<bool()> step;
        bool done = false;
    };
    // Calls step every `every_ms` until it returns true.  Owned here, so
    // no step runs after the Playback is gone.
    void repeat(std::uint64_t every_ms, std::function<bool()> step);
    std::vector<std::unique_ptr<Poll>> polls_;
    std::uint64_t players_total_ = 0;
    net::UvHandle<uv_timer_t> tick_;
    unsigned ticks_ = 0;
};

} // namespace openace::streamer
