#include "transport/candidates.hpp"

#include "transport/peer_connection.hpp"

#include <algorithm>

namespace openace::transport {

void Candidates::add(const std::vector<PeerAddress> &peers, bool explicit_peer)
{
    for (const auto &a : peers) {
        if (a.port == 0 || ctx_.is_banned(a))
            continue;
        if ((a.ip == "127.0.0.1" || a.ip == "::1") && a.port == ctx_.listen_port)
            continue; // ourselves
        auto it = map_.find(a);
        if (it == map_.end()) {
            if (map_.size() >= kMaxCandidates && !explicit_peer)
                continue;
            it = map_.emplace(a, Entry{}).first;
        }
        it->second.explicit_peer = it->second.explicit_peer || explicit_peer;
    }
}

void Candidates::connect_more(clock::time_point now, std::size_t connected, std::set<PeerConnection *> &connecting,
                              const InfoHash &ih, PeerHandler *handler)
{
    const int max_peers = ctx_.config->engine.max_peers;
    const int room = std::min(max_peers - static_cast<int>(connected + connecting.size()),
                              kMaxHalfOpen - static_cast<int>(connecting.size()));
    std::vector<PeerAddress> picked;
    for (auto &[addr, e] : map_) {
        if (static_cast<int>(picked.size()) >= room)
            break;
        if (!e.connected && e.next_try <= now && !ctx_.is_banned(addr))
            picked.push_back(addr);
    }
    // Connecting may report a failure at once, which may drop candidates:
    // look each one up again.
    for (const auto &addr : picked) {
        auto it = map_.find(addr);
        if (it == map_.end() || it->second.connected || ctx_.max_connections_reached())
            continue;
        Entry &e = it->second;
        const bool tls = ctx_.tls && ctx_.tls_capable.count(addr) && !ctx_.plain_only.count(addr);
        e.connected = true;
        e.use_tls = tls;
        ++ctx_.connections; // the session's on_closed gives it back, even when connect fails at once
        PeerConnection *c = PeerConnection::connect(ctx_.loop, addr, ih, ctx_.peer_id, tls ? ctx_.tls : nullptr, handler);
        if (!c->closing())
            connecting.insert(c);
    }
}

void Candidates::closed(const PeerConnection &c, bool before_handshake)
{
    auto it = map_.find(c.address());
    if (!c.outgoing() || it == map_.end())
        return;
    Entry &e = it->second;
    e.connected = false;
    if (before_handshake && e.use_tls) {
        // A plain peer (or an old one) at this address: plain from now on.
        ctx_.plain_only.insert(c.address());
        ctx_.tls_capable.erase(c.address());
        e.next_try = clock::now();
    } else if (!c.is_tls() && ctx_.tls_capable.count(c.address())) {
        e.next_try = clock::now(); // closed to come back in TLS
    } else {
        ++e.failures;
        auto delay = std::min<std::chrono::milliseconds>(std::chrono::seconds(300), backoff_ * (1 << std::min(e.failures, 6)));
        e.next_try = clock::now() + delay;
        if (!e.explicit_peer && e.failures > 8)
            map_.erase(it);
    }
}

void abandon_connections(TransportContext &ctx, const std::set<PeerConnection *> &conns, const std::string &why)
{
    for (PeerConnection *c : conns) {
        c->set_handler(nullptr);
        c->close(why);
        --ctx.connections;
    }
}

PeerAddress listen_address(const PeerConnection &c)
{
    if (!c.outgoing() && c.state.got_ext && c.state.ext.listen_port)
        return {c.address().ip, c.state.ext.listen_port};
    return c.address();
}

wire::PexMsg pex_update(std::set<PeerAddress> &last, const std::set<PeerAddress> &current)
{
    wire::PexMsg diff;
    for (const auto &a : current)
        if (!last.count(a) && diff.added.size() < 50)
            diff.added.push_back(a);
    for (const auto &a : last)
        if (!current.count(a) && diff.dropped.size() < 50)
            diff.dropped.push_back(a);
    diff.added_flags.assign(diff.added.size(), 0);
    last = current;
    return diff;
}

} // namespace openace::transport
