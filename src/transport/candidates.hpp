// The addresses a swarm session may connect to, with reconnect backoff and
// the TLS-or-plain choice per address (DESIGN §5).  Used by every swarm
// session (Torrent, LiveSwarm).  Loop thread only.
#pragma once

#include "transport/peer_address.hpp"
#include "transport/transport_context.hpp"
#include "transport/wire.hpp"

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace openace::transport {

class PeerConnection;
class PeerHandler;

class Candidates {
public:
    using clock = std::chrono::steady_clock;
    static constexpr std::size_t kMaxCandidates = 2000;
    static constexpr int kMaxHalfOpen = 16;

    // Failed addresses are retried after 2 × `backoff`, then doubling up to
    // 64 × (at most 300 s).
    explicit Candidates(TransportContext &ctx, std::chrono::milliseconds backoff = std::chrono::seconds(5))
        : ctx_(ctx), backoff_(backoff)
    {
    }

    // Adds addresses (banned ones and our own listen address are skipped).
    // `explicit_peer`: given by the user, kept and retried for as long as
    // the session lives.
    void add(const std::vector<PeerAddress> &peers, bool explicit_peer);
    void erase(const PeerAddress &a) { map_.erase(a); }
    std::size_t size() const noexcept { return map_.size(); }

    // Opens outgoing connections to due candidates while the session has
    // fewer than `max_peers` (connected + connecting) and fewer than
    // kMaxHalfOpen are connecting.  Each new connection is added to
    // `connecting`.
    void connect_more(clock::time_point now, std::size_t connected, std::set<PeerConnection *> &connecting,
                      const InfoHash &ih, PeerHandler *handler);
    // An outgoing connection to `c.address()` closed: schedules the next
    // try (TLS failures fall back to plain, a plain connection to a peer
    // that takes TLS comes back at once, others back off).
    void closed(const PeerConnection &c, bool before_handshake);

private:
    struct Entry {
        bool explicit_peer = false;
        bool connected = false;
        bool use_tls = false;
        int failures = 0;
        clock::time_point next_try{};
    };
    TransportContext &ctx_;
    std::chrono::milliseconds backoff_;
    std::map<PeerAddress, Entry> map_;
};

// A session going away: closes its connections without calling it back
// (each loses its handler first) and gives their slots back to ctx.
void abandon_connections(TransportContext &ctx, const std::set<PeerConnection *> &conns, const std::string &why);

// The address a peer listens on: the connected address of an outgoing
// connection, or an incoming peer's address with the listen port from its
// extension handshake (what PEX shares and a ban names).
PeerAddress listen_address(const PeerConnection &c);

// The PEX message that moves `last` (what we told peers before) to
// `current`: at most 50 added and 50 dropped.  Updates `last`.
wire::PexMsg pex_update(std::set<PeerAddress> &last, const std::set<PeerAddress> &current);

} // namespace openace::transport
