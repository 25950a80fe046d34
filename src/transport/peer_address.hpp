// Peer addresses and ids shared by the wire, the trackers and PEX.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace openace::transport {

using PeerId = std::array<std::uint8_t, 20>;

// An IPv4 or IPv6 address in text form ("127.0.0.1", "::1") and a port.
struct PeerAddress {
    std::string ip;
    std::uint16_t port = 0;
    bool operator==(const PeerAddress &) const = default;
    auto operator<=>(const PeerAddress &) const = default;
    // "1.2.3.4:6881", "[::1]:6881".
    std::string to_string() const;
};

// "host:port" or "[v6]:port" with a numeric address; throws
// openace::Error(INVAL, "peer", "parse", "'x': ...") naming the input.
PeerAddress parse_peer_address(std::string_view text);

// Compact peer lists (BEP 23 "peers", BEP 7 "peers6", BEP 11 "added"):
// 6 bytes per IPv4 peer, 18 per IPv6 peer, address then port, network order.
// A trailing partial entry is ignored; port 0 entries are dropped.
std::vector<PeerAddress> parse_compact_peers(std::string_view data, bool ipv6);
// Peers of the given family only (the others are skipped).
std::string encode_compact_peers(const std::vector<PeerAddress> &peers, bool ipv6);

} // namespace openace::transport
