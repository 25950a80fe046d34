// Embedded tracker: announce() as a pure function of the query, the client
// address and the time (the HTTP route is exercised with real sockets in
// test_tracker.cpp).
#include "transport/embedded_tracker.hpp"

#include "transport/bencode.hpp"
#include "transport/peer_address.hpp"
#include "transport/tracker.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <string>

using namespace openace;
using namespace openace::transport;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

// 20 bytes with a NUL in the middle, as percent-decoding may produce.
std::string hash_bytes(char fill)
{
    std::string h(20, fill);
    h[7] = '\0';
    return h;
}

std::string id_of(int n)
{
    std::string id = "-OA0001-000000000000";
    auto s = std::to_string(n);
    id.replace(id.size() - s.size(), s.size(), s);
    return id;
}

net::QueryParams query(const std::string &hash, const std::string &peer_id, int port,
                       net::QueryParams extra = {})
{
    net::QueryParams q{{"info_hash", hash}, {"peer_id", peer_id}, {"port", std::to_string(port)},
                       {"uploaded", "0"},   {"downloaded", "0"},  {"left", "100"}};
    for (auto &[k, v] : extra) { // extra values replace the defaults
        auto it = std::find_if(q.begin(), q.end(), [&](const auto &kv) { return kv.first == k; });
        if (it != q.end())
            it->second = v;
        else
            q.emplace_back(k, v);
    }
    return q;
}

std::string failure_of(const std::string &body)
{
    auto v = bencode::decode(body);
    const auto *f = v.find("failure reason");
    return f ? f->as_string() : std::string();
}

std::set<PeerAddress> peers_of(const std::string &body)
{
    auto r = parse_http_announce_response(body);
    return {r.peers.begin(), r.peers.end()};
}

core::Logger quiet()
{
    static core::Log log;
    return core::Logger(log, "tracker");
}

} // namespace

TEST_CASE("embedded tracker: a second peer learns the first, not itself")
{
    EmbeddedTracker trk(quiet());
    auto now = Clock::now();
    std::string ih = hash_bytes('a');
    auto first = trk.announce(query(ih, id_of(1), 6001, {{"event", "started"}}), "10.0.0.1", now);
    CHECK(failure_of(first).empty());
    CHECK(peers_of(first).empty());
    auto second = trk.announce(query(ih, id_of(2), 6002), "10.0.0.2", now);
    CHECK(peers_of(second) == std::set<PeerAddress>{{"10.0.0.1", 6001}});
    // The first asks again: it sees the second only.
    auto again = trk.announce(query(ih, id_of(1), 6001), "10.0.0.1", now);
    CHECK(peers_of(again) == std::set<PeerAddress>{{"10.0.0.2", 6002}});
    auto r = parse_http_announce_response(again);
    CHECK(r.interval == 1800);
    CHECK(r.complete == 0);
    CHECK(r.incomplete == 2);
    CHECK(trk.torrents() == 1);
    CHECK(trk.peers() == 2);
    // Info hashes differing only after the NUL byte are different swarms.
    std::string other = ih;
    other[19] = 'z';
    CHECK(peers_of(trk.announce(query(other, id_of(3), 6003), "10.0.0.3", now)).empty());
    CHECK(trk.torrents() == 2);
}

TEST_CASE("embedded tracker: bad parameters get a failure reason naming them")
{
    EmbeddedTracker trk(quiet());
    std::string ih = hash_bytes('b'), id = id_of(1);
    struct Case {
        net::QueryParams q;
        std::string reason;
    };
    std::vector<Case> cases = {
        {{{"peer_id", id}, {"port", "1"}}, "missing info_hash"},
        {{{"info_hash", "short"}, {"peer_id", id}, {"port", "1"}}, "info_hash must be 20 bytes, got 5"},
        {{{"info_hash", ih}, {"port", "1"}}, "missing peer_id"},
        {{{"info_hash", ih}, {"peer_id", std::string(21, 'p')}, {"port", "1"}}, "peer_id must be 20 bytes, got 21"},
        {{{"info_hash", ih}, {"peer_id", id}}, "missing port"},
        {query(ih, id, 0), "invalid port '0'"},
        {{{"info_hash", ih}, {"peer_id", id}, {"port", "65536"}}, "invalid port '65536'"},
        {{{"info_hash", ih}, {"peer_id", id}, {"port", "12x"}}, "invalid port '12x'"},
        {{{"info_hash", ih}, {"peer_id", id}, {"port", "1"}, {"left", "-5"}}, "invalid left '-5'"},
        {{{"info_hash", ih}, {"peer_id", id}, {"port", "1"}, {"uploaded", ""}}, "invalid uploaded ''"},
        {query(ih, id, 1, {{"numwant", "many"}}), "invalid numwant 'many'"},
        {query(ih, id, 1, {{"event", "exploded\n"}}), "invalid event 'exploded?'"},
    };
    for (const auto &c : cases) {
        INFO(c.reason);
        CHECK(failure_of(trk.announce(c.q, "10.0.0.1")) == c.reason);
    }
    CHECK(failure_of(trk.announce(query(ih, id, 1), "")) == "unknown client address");
    CHECK(trk.torrents() == 0);
    CHECK(trk.peers() == 0);
}

TEST_CASE("embedded tracker: peers expire after two intervals")
{
    EmbeddedTracker::Options opt;
    opt.interval_s = 60;
    EmbeddedTracker trk(quiet(), opt);
    auto t0 = Clock::now();
    std::string ih = hash_bytes('c');
    trk.announce(query(ih, id_of(1), 7001), "10.0.0.1", t0);
    // Just inside two intervals: still there.
    auto inside = trk.announce(query(ih, id_of(2), 7002), "10.0.0.2", t0 + 120s);
    CHECK(peers_of(inside).count({"10.0.0.1", 7001}) == 1);
    // Just past two intervals of the first peer's last announce: gone.
    auto past = trk.announce(query(ih, id_of(3), 7003), "10.0.0.3", t0 + 121s);
    CHECK(peers_of(past) == std::set<PeerAddress>{{"10.0.0.2", 7002}});
    CHECK(trk.peers() == 2);
    // Much later a sweep empties the whole tracker on any announce.
    trk.announce(query(hash_bytes('d'), id_of(9), 7009), "10.0.0.9", t0 + 1000s);
    CHECK(trk.torrents() == 1);
    CHECK(trk.peers() == 1);
}

TEST_CASE("embedded tracker: stopped removes the peer")
{
    EmbeddedTracker trk(quiet());
    auto now = Clock::now();
    std::string ih = hash_bytes('e');
    trk.announce(query(ih, id_of(1), 8001), "10.0.0.1", now);
    trk.announce(query(ih, id_of(2), 8002), "10.0.0.2", now);
    auto stopped = trk.announce(query(ih, id_of(1), 8001, {{"event", "stopped"}}), "10.0.0.1", now);
    CHECK(failure_of(stopped).empty());
    CHECK(peers_of(stopped).empty());
    CHECK(peers_of(trk.announce(query(ih, id_of(3), 8003), "10.0.0.3", now)) ==
          std::set<PeerAddress>{{"10.0.0.2", 8002}});
    // The last peer of a swarm stopping drops the swarm.
    trk.announce(query(ih, id_of(2), 8002, {{"event", "stopped"}}), "10.0.0.2", now);
    trk.announce(query(ih, id_of(3), 8003, {{"event", "stopped"}}), "10.0.0.3", now);
    CHECK(trk.torrents() == 0);
}

TEST_CASE("embedded tracker: numwant is honoured and capped at 200")
{
    EmbeddedTracker trk(quiet());
    auto now = Clock::now();
    std::string ih = hash_bytes('f');
    for (int i = 0; i < 260; ++i)
        trk.announce(query(ih, id_of(i), 10000 + i), "10.0.1.1", now);
    CHECK(trk.peers() == 260);
    auto count = [&](net::QueryParams extra) {
        return parse_http_announce_response(trk.announce(query(ih, id_of(999), 9999, std::move(extra)), "10.0.2.2", now))
            .peers.size();
    };
    CHECK(count({}) == 50); // the default
    CHECK(count({{"numwant", "7"}}) == 7);
    CHECK(count({{"numwant", "0"}}) == 0);
    CHECK(count({{"numwant", "1000"}}) == 200);
    // 261 peers now; the asker is never among its own answer.
    auto all = parse_http_announce_response(trk.announce(query(ih, id_of(0), 10000, {{"numwant", "200"}}), "10.0.1.1", now));
    CHECK(std::find(all.peers.begin(), all.peers.end(), PeerAddress{"10.0.1.1", 10000}) == all.peers.end());
}

TEST_CASE("embedded tracker: compact=0 gets the dictionary model, IPv6 goes to peers6")
{
    EmbeddedTracker trk(quiet());
    auto now = Clock::now();
    std::string ih = hash_bytes('g');
    trk.announce(query(ih, id_of(1), 6881), "::ffff:10.0.0.1", now); // a v4 client on a dual-stack socket
    trk.announce(query(ih, id_of(2), 6882), "2001:db8::2", now);
    auto dict = bencode::decode(trk.announce(query(ih, id_of(3), 6883, {{"compact", "0"}}), "10.0.0.3", now));
    REQUIRE(dict.find("peers"));
    REQUIRE(dict.find("peers")->is_list());
    std::set<std::string> seen;
    for (const auto &p : dict.find("peers")->as_list()) {
        seen.insert(p.find("ip")->as_string() + "/" + std::to_string(p.find("port")->as_int()) + "/" +
                    p.find("peer id")->as_string());
    }
    CHECK(seen == std::set<std::string>{"10.0.0.1/6881/" + id_of(1), "2001:db8::2/6882/" + id_of(2)});

    auto compact = bencode::decode(trk.announce(query(ih, id_of(4), 6884), "10.0.0.4", now));
    CHECK(compact.find("peers")->as_string().size() % 6 == 0);
    REQUIRE(compact.find("peers6"));
    CHECK(parse_compact_peers(compact.find("peers6")->as_string(), true) ==
          std::vector<PeerAddress>{{"2001:db8::2", 6882}});
}

TEST_CASE("embedded tracker: limits on torrents and peers hold")
{
    EmbeddedTracker::Options opt;
    opt.max_torrents = 3;
    opt.max_peers_per_torrent = 4;
    EmbeddedTracker trk(quiet(), opt);
    auto now = Clock::now();
    for (char c = 'a'; c < 'd'; ++c)
        CHECK(failure_of(trk.announce(query(hash_bytes(c), id_of(1), 1), "10.0.0.1", now)).empty());
    CHECK(failure_of(trk.announce(query(hash_bytes('z'), id_of(1), 1), "10.0.0.1", now)) ==
          "tracker full: too many torrents");
    for (int i = 2; i < 10; ++i) // peers beyond the limit still get an answer
        CHECK(failure_of(trk.announce(query(hash_bytes('a'), id_of(i), 1000 + i), "10.0.0.1", now)).empty());
    CHECK(trk.peers() == 3 + 3); // 4 in swarm 'a', 1 in 'b' and 'c'
    CHECK(trk.torrents() == 3);
}

TEST_CASE("embedded tracker: a seed counts as complete")
{
    EmbeddedTracker trk(quiet());
    auto now = Clock::now();
    std::string ih = hash_bytes('h');
    trk.announce(query(ih, id_of(1), 1, {{"left", "0"}}), "10.0.0.1", now);
    trk.announce(query(ih, id_of(2), 2, {{"event", "completed"}}), "10.0.0.2", now);
    auto r = parse_http_announce_response(trk.announce(query(ih, id_of(3), 3), "10.0.0.3", now));
    CHECK(r.complete == 2);
    CHECK(r.incomplete == 1);
}
