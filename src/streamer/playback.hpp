// Playback sessions of the Ace Stream HTTP API (reference §2.2-2.6) for
// live streams: GET /ace/getstream starts (or joins) the session of a
// content id and gives the player its own key; /ace/r/<id>/<key> is the
// progressive MPEG-TS stream, /ace/stat/<id>/<key> its status and
// /ace/cmd/<id>/<key>?method=stop ends it.
//
// One session per stream, shared by every player (each with its own key
// and its own position: a player joins at the next piece, which starts
// with PAT/PMT and a keyframe).  A player whose connection cannot keep up
// skips whole pieces instead of growing a queue.  A session stops by itself
// when no player has been connected for streaming.idle_timeout seconds.
//
// Loop thread only.
#pragma once

#include "live/live_descriptor.hpp"
#include "live/live_swarm.hpp"
#include "net/http_server.hpp"
#include "net/uv_handle.hpp"

#include <chrono>
#include <map>
#include <memory>
#include <string>

namespace openace::engine {
struct EngineContext;
}

namespace openace::streamer {

class Playback {
public:
    using Res = std::shared_ptr<net::HttpResponse>;
    explicit Playback(engine::EngineContext &ctx, core::Logger log);
    ~Playback();
    Playback(const Playback &) = delete;
    Playback &operator=(const Playback &) = delete;

    // `base`: "http://127.0.0.1:6878", for the URLs getstream hands out.
    void getstream(const net::HttpRequest &req, const Res &res, const std::string &base);
    void stream(const net::HttpRequest &req, const Res &res); // /ace/r/<id>/<key>
    void stat(const net::HttpRequest &req, const Res &res);   // /ace/stat/<id>/<key>
    void cmd(const net::HttpRequest &req, const Res &res);    // /ace/cmd/<id>/<key>
    // Ends every stream and session (the engine stops).
    void close();
    nlohmann::json status() const;

private:
    using clock = std::chrono::steady_clock;
    struct Player {
        std::string key;
        Res out; // the /ace/r/ response while a player reads
        std::uint64_t pieces = 0, skipped = 0;
        clock::time_point last_seen = clock::now();
    };
    struct Session {
        live::ContentId id{};
        std::string hex;
        live::LiveSwarm *swarm = nullptr;
        int subscription = 0;
        std::map<std::string, Player> players;
        std::optional<std::uint64_t> first_seq, last_seq;
        std::int64_t first_ts = 0, last_ts = 0;
        clock::time_point idle_since = clock::now();
    };

    static void on_tick(uv_timer_t *t);
    void tick();
    Session &open(const live::ContentId &id);
    void end_session(const std::string &hex);
    void on_piece(Session &s, const live::LiveSwarm::PieceRef &piece);
    // The session and player of /ace/<kind>/<id>/<key>, or null.
    std::pair<Session *, Player *> find(const net::HttpRequest &req, std::string_view prefix);

    engine::EngineContext &ctx_;
    core::Logger log_;
    std::map<std::string, Session> sessions_; // by hex id
    std::uint64_t players_total_ = 0;
    net::UvHandle<uv_timer_t> tick_;
};

} // namespace openace::streamer
