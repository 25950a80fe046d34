// What every Torrent of one TransportEngine shares: the loop, the
// configuration, our identity, TLS, the disk cache, rate limits, bans and
// connection counts.  Owned by the TransportEngine; loop thread only.
#pragma once

#include "core/config.hpp"
#include "core/log.hpp"
#include "net/token_bucket.hpp"
#include "transport/peer_address.hpp"

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <set>
#include <string>

namespace openace::net {
class TlsContext;
}

namespace openace::transport {

class DiskCache;

struct TransportContext {
    uv_loop_t *loop = nullptr;
    core::Logger log;
    const core::Config *config = nullptr;
    PeerId peer_id{};
    std::uint16_t listen_port = 0;     // the bound port (not the configured 0)
    net::TlsContext *tls = nullptr;    // null when security.tls_enabled = false
    DiskCache *cache = nullptr;
    net::TokenBucket download, upload; // engine-wide rate limits
    int connections = 0;               // open peer connections, all torrents
    std::chrono::milliseconds idle_timeout{300000};

    // Peers that sent bad data.  On loopback and behind NAT many peers share
    // an IP, so a ban names the address with its port, and the peer id.
    std::set<PeerAddress> banned_addresses;
    std::set<PeerId> banned_ids;
    // Addresses where TLS failed before its handshake: plain from then on.
    std::set<PeerAddress> plain_only;
    // Addresses of OpenAce peers that accept TLS (learned from their
    // extension handshake): later connections to them use TLS.
    std::set<PeerAddress> tls_capable;
    std::uint64_t bans = 0;

    bool is_banned(const PeerAddress &a) const { return banned_addresses.count(a) != 0; }
    bool max_connections_reached() const { return connections >= config->transport.max_connections; }
};

} // namespace openace::transport
