#include "transport/embedded_tracker.hpp"

#include "transport/bencode.hpp"
#include "transport/peer_address.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <optional>
#include <vector>

namespace openace::transport {

namespace {

constexpr std::int64_t kMaxNumwant = 200;
constexpr std::int64_t kDefaultNumwant = 50;
constexpr std::size_t kIdBytes = 20;

std::string failure(const std::string &why)
{
    return bencode::encode(bencode::Value(bencode::Dict{{"failure reason", why}}));
}

// Shown inside a failure text: printable and short.
std::string quoted(std::string_view v)
{
    std::string out = "'";
    for (char c : v.substr(0, 64))
        out.push_back(static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f ? '?' : c);
    return out + (v.size() > 64 ? "...'" : "'");
}

// A non-negative decimal parameter no larger than max.  std::nullopt with
// `bad` set when present but malformed.
std::optional<std::int64_t> number(const net::QueryParams &q, std::string_view name, std::int64_t max,
                                   std::string &bad)
{
    auto v = net::query_value(q, name);
    if (!v)
        return std::nullopt;
    std::int64_t out = 0;
    auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
    if (v->empty() || ec != std::errc() || end != v->data() + v->size() || out < 0 || out > max) {
        if (bad.empty())
            bad = "invalid " + std::string(name) + " " + quoted(*v);
        return std::nullopt;
    }
    return out;
}

// "::ffff:1.2.3.4" (an IPv4 client on a dual-stack socket) -> "1.2.3.4".
std::string plain_ip(const std::string &ip)
{
    constexpr std::string_view mapped = "::ffff:";
    if (ip.size() > mapped.size() && ip.compare(0, mapped.size(), mapped) == 0 &&
        ip.find('.') != std::string::npos)
        return ip.substr(mapped.size());
    return ip;
}

} // namespace

EmbeddedTracker::EmbeddedTracker(core::Logger log, Options opt)
    : log_(std::move(log)), opt_(opt), rng_(std::random_device{}())
{
    opt_.interval_s = std::max(opt_.interval_s, 1);
}

std::size_t EmbeddedTracker::peers() const
{
    std::size_t n = 0;
    for (const auto &[hash, swarm] : swarms_)
        n += swarm.size();
    return n;
}

std::string EmbeddedTracker::announce(const net::QueryParams &query, const std::string &remote_ip,
                                      Clock::time_point now)
{
    auto info_hash = net::query_value(query, "info_hash");
    auto peer_id = net::query_value(query, "peer_id");
    if (!info_hash)
        return failure("missing info_hash");
    if (info_hash->size() != kIdBytes)
        return failure("info_hash must be 20 bytes, got " + std::to_string(info_hash->size()));
    if (!peer_id)
        return failure("missing peer_id");
    if (peer_id->size() != kIdBytes)
        return failure("peer_id must be 20 bytes, got " + std::to_string(peer_id->size()));
    std::string bad;
    auto port = number(query, "port", 65535, bad);
    if (!bad.empty() || !port || *port == 0)
        return failure(bad.empty() ? (port ? "invalid port '0'" : "missing port") : bad);
    auto left = number(query, "left", INT64_MAX, bad);
    number(query, "uploaded", INT64_MAX, bad);
    number(query, "downloaded", INT64_MAX, bad);
    auto numwant = number(query, "numwant", INT64_MAX, bad);
    if (!bad.empty())
        return failure(bad);
    std::string event = net::query_value(query, "event").value_or("");
    if (event != "" && event != "started" && event != "completed" && event != "stopped" && event != "paused")
        return failure("invalid event " + quoted(event));
    std::string ip = plain_ip(remote_ip);
    if (ip.empty())
        return failure("unknown client address");
    bool compact = net::query_value(query, "compact").value_or("1") != "0";

    sweep(now);
    auto it = swarms_.find(*info_hash);
    if (event == "stopped") {
        if (it != swarms_.end() && it->second.erase(*peer_id) && it->second.empty())
            swarms_.erase(it);
        return answer({}, {}, {}, 0, compact);
    }
    if (it == swarms_.end()) {
        if (swarms_.size() >= opt_.max_torrents) {
            log_.warn("embedded tracker full: {} torrents", swarms_.size());
            return failure("tracker full: too many torrents");
        }
        it = swarms_.emplace(*info_hash, Swarm{}).first;
    }
    Swarm &swarm = it->second;
    expire(swarm, now);
    Peer self{ip, static_cast<std::uint16_t>(*port), (left && *left == 0) || event == "completed", now};
    if (auto p = swarm.find(*peer_id); p != swarm.end())
        p->second = self;
    else if (swarm.size() < opt_.max_peers_per_torrent)
        swarm.emplace(*peer_id, self);
    return answer(swarm, *peer_id, self, static_cast<int>(std::min(numwant.value_or(kDefaultNumwant), kMaxNumwant)),
                  compact);
}

std::string EmbeddedTracker::answer(const Swarm &swarm, const std::string &self_id, const Peer &self, int numwant,
                                    bool compact)
{
    std::vector<const Peer *> others;
    std::int64_t seeds = 0;
    for (const auto &[id, peer] : swarm) {
        seeds += peer.seed ? 1 : 0;
        if (id != self_id && !(peer.ip == self.ip && peer.port == self.port))
            others.push_back(&peer);
    }
    // A random sample, so that every peer gets known by somebody.
    auto want = std::min(others.size(), static_cast<std::size_t>(numwant));
    for (std::size_t i = 0; i < want; ++i)
        std::swap(others[i], others[std::uniform_int_distribution<std::size_t>(i, others.size() - 1)(rng_)]);
    others.resize(want);

    bencode::Dict d{{"complete", seeds},
                    {"incomplete", static_cast<std::int64_t>(swarm.size()) - seeds},
                    {"interval", opt_.interval_s}};
    std::vector<PeerAddress> list;
    for (const Peer *p : others)
        list.push_back({p->ip, p->port});
    if (compact) {
        d.emplace_back("peers", encode_compact_peers(list, false));
        std::string v6 = encode_compact_peers(list, true);
        if (!v6.empty())
            d.emplace_back("peers6", std::move(v6));
    } else {
        bencode::List peers;
        for (const auto &[id, peer] : swarm)
            if (std::find(others.begin(), others.end(), &peer) != others.end())
                peers.push_back(bencode::Dict{{"ip", peer.ip}, {"peer id", id}, {"port", peer.port}});
        d.emplace_back("peers", std::move(peers));
    }
    return bencode::encode(bencode::Value(std::move(d)));
}

void EmbeddedTracker::expire(Swarm &swarm, Clock::time_point now) const
{
    const auto ttl = std::chrono::seconds(2 * static_cast<std::int64_t>(opt_.interval_s));
    std::erase_if(swarm, [&](const auto &kv) { return now - kv.second.last_seen > ttl; });
}

void EmbeddedTracker::sweep(Clock::time_point now)
{
    if (now < next_sweep_)
        return;
    next_sweep_ = now + std::chrono::seconds(opt_.interval_s);
    for (auto it = swarms_.begin(); it != swarms_.end();) {
        expire(it->second, now);
        it = it->second.empty() ? swarms_.erase(it) : std::next(it);
    }
}

void EmbeddedTracker::install(net::HttpServer &server)
{
    server.route("/announce", [this](const net::HttpRequest &req, std::shared_ptr<net::HttpResponse> res) {
        res->send(200, "text/plain", announce(req.query, req.peer_ip));
    });
}

} // namespace openace::transport
