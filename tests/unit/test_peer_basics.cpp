// Small transport pieces: peer addresses and compact lists, bitfields,
// the choker's choices and the token bucket behind the rate limits.
#include "net/token_bucket.hpp"
#include "transport/bitfield.hpp"
#include "transport/choker.hpp"
#include "transport/peer_address.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>

using namespace openace;
using namespace openace::transport;

TEST_CASE("peer address: host:port and [v6]:port parse, bad input is named")
{
    CHECK(parse_peer_address("127.0.0.1:6881") == PeerAddress{"127.0.0.1", 6881});
    CHECK(parse_peer_address("[::1]:80") == PeerAddress{"::1", 80});
    CHECK(parse_peer_address("localhost:5") == PeerAddress{"127.0.0.1", 5});
    CHECK(parse_peer_address("[::1]:80").to_string() == "[::1]:80");
    for (const char *bad : {"1.2.3.4", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:x", "::1:80", "[::1]80", "host.example:80", ":80"}) {
        INFO(bad);
        try {
            parse_peer_address(bad);
            FAIL("accepted");
        } catch (const Error &e) {
            CHECK(std::string(e.what()).find(std::string("'") + bad + "'") != std::string::npos);
        }
    }
}

TEST_CASE("peer address: compact lists round-trip, skip port 0 and a trailing partial entry")
{
    std::vector<PeerAddress> v4 = {{"10.0.0.1", 6881}, {"192.168.1.2", 65535}};
    std::string c = encode_compact_peers(v4, false);
    REQUIRE(c.size() == 12);
    CHECK(static_cast<unsigned char>(c[4]) == 0x1a); // 6881 = 0x1ae1, network order
    CHECK(static_cast<unsigned char>(c[5]) == 0xe1);
    CHECK(parse_compact_peers(c, false) == v4);
    CHECK(parse_compact_peers(c + "abc", false) == v4);
    std::string zero_port = c.substr(0, 4) + std::string(2, '\0');
    CHECK(parse_compact_peers(zero_port, false).empty());
    std::vector<PeerAddress> v6 = {{"::1", 1}, {"2001:db8::7", 443}};
    CHECK(parse_compact_peers(encode_compact_peers(v6, true), true) == v6);
    // Families are kept apart.
    CHECK(encode_compact_peers(v6, false).empty());
}

TEST_CASE("bitfield: wire layout, counts, spare bits refused")
{
    Bitfield b(10);
    b.set(0);
    b.set(9);
    b.set(9);
    CHECK(b.count() == 2);
    CHECK(static_cast<unsigned char>(b.bytes()[0]) == 0x80);
    CHECK(static_cast<unsigned char>(b.bytes()[1]) == 0x40);
    Bitfield c;
    REQUIRE(c.assign_bytes(b.bytes(), 10));
    CHECK(c == b);
    CHECK_FALSE(c.assign_bytes(std::string("\x80\x20", 2), 10)); // bit 10 is a spare bit
    CHECK_FALSE(c.assign_bytes(std::string("\x80", 1), 10));     // too short
    CHECK(c == b);                                               // unchanged
    b.reset(0);
    CHECK_FALSE(b.test(0));
    CHECK_FALSE(b.test(100)); // out of range is simply absent
    b.resize(12, true);
    CHECK(b.count() == 3);
    b.set_all();
    CHECK(b.all());
    CHECK(static_cast<unsigned char>(b.bytes()[1]) == 0xf0);
}

TEST_CASE("choker: the fastest interested peers get the slots, plus the optimistic one")
{
    std::vector<ChokeCandidate> peers = {
        {1, true, 100, false}, {2, true, 500, false}, {3, false, 900, false}, // 3 is not interested
        {4, true, 300, false}, {5, true, 800, true},                          // 5 is snubbed
        {6, true, 50, false},
    };
    CHECK(choose_unchoked(peers, 2, 0) == std::vector<std::uint64_t>{2, 4});
    CHECK(choose_unchoked(peers, 2, 6) == std::vector<std::uint64_t>{2, 4, 6});
    CHECK(choose_unchoked(peers, 2, 3) == std::vector<std::uint64_t>{2, 4}); // not interested: no slot
    // The optimistic unchoke goes round the interested peers without a slot.
    auto regular = choose_unchoked(peers, 2, 0);
    std::uint64_t o1 = next_optimistic(peers, regular, 0);
    std::uint64_t o2 = next_optimistic(peers, regular, o1);
    std::uint64_t o3 = next_optimistic(peers, regular, o2);
    std::uint64_t o4 = next_optimistic(peers, regular, o3);
    CHECK(std::vector<std::uint64_t>{o1, o2, o3, o4} == std::vector<std::uint64_t>{1, 5, 6, 1});
    CHECK(next_optimistic({}, {}, 0) == 0);
}

TEST_CASE("token bucket: a rate and a burst, debt delays later consumers")
{
    using clock = net::TokenBucket::clock;
    const auto t0 = clock::time_point{} + std::chrono::hours(1);
    net::TokenBucket unlimited;
    CHECK(unlimited.consume(1 << 30, t0));
    net::TokenBucket b(100'000, 100'000); // 100 kB/s, burst 100 kB
    CHECK(b.consume(100'000, t0));
    CHECK_FALSE(b.consume(1, t0));
    CHECK(b.wait_for(50'000, t0) == std::chrono::milliseconds(501));
    CHECK(b.consume(50'000, t0 + std::chrono::milliseconds(500)));
    b.charge(100'000, t0 + std::chrono::milliseconds(500)); // bytes that already arrived
    CHECK(b.in_debt(t0 + std::chrono::milliseconds(500)));
    CHECK_FALSE(b.in_debt(t0 + std::chrono::milliseconds(1600)));
    // Never more than the burst, however long it rested.
    CHECK_FALSE(b.consume(100'001, t0 + std::chrono::hours(1)));
}
