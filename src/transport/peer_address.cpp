#include "transport/peer_address.hpp"

#include "core/error.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace openace::transport {

std::string PeerAddress::to_string() const
{
    if (ip.find(':') != std::string::npos)
        return "[" + ip + "]:" + std::to_string(port);
    return ip + ":" + std::to_string(port);
}

PeerAddress parse_peer_address(std::string_view text)
{
    auto fail = [&](const char *why) {
        return Error(Errc::INVAL, "peer", "parse", "'" + std::string(text) + "': " + why);
    };
    std::string_view host, port;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            throw fail("expected [IPv6]:port");
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos)
            throw fail("expected HOST:PORT");
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos)
            throw fail("IPv6 addresses go in brackets: [::1]:6881");
    }
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
        throw fail("port must be 1-65535");
    std::string h(host);
    if (h == "localhost")
        h = "127.0.0.1";
    unsigned char buf[16];
    if (inet_pton(AF_INET, h.c_str(), buf) != 1 && inet_pton(AF_INET6, h.c_str(), buf) != 1)
        throw fail("host must be a numeric IPv4 or IPv6 address");
    return {h, static_cast<std::uint16_t>(value)};
}

std::vector<PeerAddress> parse_compact_peers(std::string_view data, bool ipv6)
{
    const std::size_t alen = ipv6 ? 16 : 4, step = alen + 2;
    std::vector<PeerAddress> out;
    out.reserve(data.size() / step);
    for (std::size_t i = 0; i + step <= data.size(); i += step) {
        char text[INET6_ADDRSTRLEN] = {};
        inet_ntop(ipv6 ? AF_INET6 : AF_INET, data.data() + i, text, sizeof text);
        auto hi = static_cast<unsigned char>(data[i + alen]), lo = static_cast<unsigned char>(data[i + alen + 1]);
        std::uint16_t port = static_cast<std::uint16_t>(hi << 8 | lo);
        if (port != 0)
            out.push_back({text, port});
    }
    return out;
}

std::string encode_compact_peers(const std::vector<PeerAddress> &peers, bool ipv6)
{
    std::string out;
    for (const auto &p : peers) {
        unsigned char buf[16];
        if (inet_pton(ipv6 ? AF_INET6 : AF_INET, p.ip.c_str(), buf) != 1)
            continue;
        out.append(reinterpret_cast<const char *>(buf), ipv6 ? 16 : 4);
        out.push_back(static_cast<char>(p.port >> 8));
        out.push_back(static_cast<char>(p.port & 0xff));
    }
    return out;
}

} // namespace openace::transport
