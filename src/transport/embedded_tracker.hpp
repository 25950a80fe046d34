// The engine's own HTTP tracker (BEP 3 announces with BEP 23 compact and
// BEP 7 peers6 answers), served at GET /announce on the engine's HTTP
// server so that OpenAce peers on a LAN or behind one broadcaster find each
// other without an outside tracker.
//
// Threading: not thread-safe; use it on one thread (the loop thread when
// installed on an HttpServer).  install() captures `this`: the tracker
// must outlive the server's routes.
//
// Memory is bounded: at most max_torrents swarms of max_peers_per_torrent
// peers each; a peer that does not announce for 2 intervals is forgotten.
#pragma once

#include "core/log.hpp"
#include "net/http_server.hpp"
#include "net/url.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <unordered_map>

namespace openace::transport {

struct EmbeddedTrackerOptions {
    int interval_s = 1800;                    // told to clients; peers expire after 2 intervals
    std::size_t max_torrents = 10000;         // a new swarm beyond this is refused
    std::size_t max_peers_per_torrent = 2000; // a new peer beyond this gets peers but is not stored
};

class EmbeddedTracker {
public:
    using Options = EmbeddedTrackerOptions;
    using Clock = std::chrono::steady_clock;

    explicit EmbeddedTracker(core::Logger log, Options opt = {});

    // One announce.  `query` is the decoded query string as
    // net::parse_query / HttpRequest::query give it: info_hash and peer_id
    // are the raw 20 bytes (they may hold NUL).  Parameters: info_hash,
    // peer_id, port (required); uploaded, downloaded, left (non-negative
    // integers), event (started|completed|stopped|empty), numwant (capped
    // at 200, default 50), compact (0 gives the dictionary model).  The
    // address is remote_ip (an "ip" parameter is ignored: it would let
    // anyone announce somebody else).
    //
    // Returns the bencoded body.  Bad input gives a BEP 3 failure body
    // naming the parameter: d14:failure reason…e.  Never throws for bad
    // input.  "stopped" removes the peer; the asking peer is never in its
    // own answer.  `now` is for tests.
    std::string announce(const net::QueryParams &query, const std::string &remote_ip, Clock::time_point now = Clock::now());

    // Routes GET /announce on `server` (text/plain bencode, always 200 as
    // trackers do), with the connection's address as the peer's.
    void install(net::HttpServer &server);

    std::size_t torrents() const { return swarms_.size(); }
    std::size_t peers() const; // over all torrents

private:
    struct Peer {
        std::string ip;
        std::uint16_t port = 0;
        bool seed = false;
        Clock::time_point last_seen;
    };
    using Swarm = std::map<std::string, Peer>; // by peer id (20 bytes)

    void expire(Swarm &swarm, Clock::time_point now) const;
    void sweep(Clock::time_point now); // drops expired peers and empty swarms everywhere, now and then
    // Up to numwant random peers of the swarm other than the asker.
    std::string answer(const Swarm &swarm, const std::string &self_id, const Peer &self, int numwant, bool compact);

    core::Logger log_;
    Options opt_;
    std::unordered_map<std::string, Swarm> swarms_; // by info hash (20 bytes)
    Clock::time_point next_sweep_{};
    std::mt19937 rng_;
};

} // namespace openace::transport
