#include "transport/magnet.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>

using namespace openace::transport;
using openace::Errc;

namespace {

const char *kHex = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
const char *kB32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK";

std::string inval_detail(std::string_view uri)
{
    try {
        parse_magnet(uri);
    } catch (const openace::Error &e) {
        if (e.code() == Errc::INVAL && e.component() == "magnet")
            return e.detail();
        return "wrong error";
    }
    return "no error";
}

} // namespace

TEST_CASE("magnet: hex and base32 btih give the same infohash in any case")
{
    Magnet a = parse_magnet(std::string("magnet:?xt=urn:btih:") + kHex);
    CHECK(to_hex(a.infohash) == kHex);
    Magnet b = parse_magnet(std::string("magnet:?xt=urn:btih:") + kB32);
    CHECK(b.infohash == a.infohash);
    std::string upper_hex = kHex;
    for (auto &c : upper_hex)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK(parse_magnet("MAGNET:?xt=URN:BTIH:" + upper_hex).infohash == a.infohash);
    std::string lower_b32 = kB32;
    for (auto &c : lower_b32)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    CHECK(parse_magnet("magnet:?xt=urn:btih:" + lower_b32).infohash == a.infohash);
    CHECK(a.infohash[0] == 0xc1);
    CHECK(a.infohash[19] == 0x8a);
}

TEST_CASE("magnet: dn and tr are percent-decoded, tr and x.pe repeat")
{
    Magnet m = parse_magnet(std::string("magnet:?xt=urn:btih:") + kHex +
                            "&dn=My+Movie%20%282024%29.mkv"
                            "&tr=http%3A%2F%2Ft1.example%2Fannounce"
                            "&tr=udp://t2.example:6969&x.pe=10.0.0.1:6881&x.pe=%5B::1%5D:6881"
                            "&foo=bar&ws=http://x");
    CHECK(m.name == "My Movie (2024).mkv");
    REQUIRE(m.trackers.size() == 2);
    CHECK(m.trackers[0] == "http://t1.example/announce");
    CHECK(m.trackers[1] == "udp://t2.example:6969");
    REQUIRE(m.peers.size() == 2);
    CHECK(m.peers[0] == "10.0.0.1:6881");
    CHECK(m.peers[1] == "[::1]:6881");
}

TEST_CASE("magnet: unknown parameters and v2 xt are ignored")
{
    Magnet m = parse_magnet(std::string("magnet:?xt=urn:btmh:1220abcd&xl=123&xt=urn:btih:") + kHex +
                            "&&kt=a+b");
    CHECK(to_hex(m.infohash) == kHex);
    CHECK(m.name.empty());
    CHECK(m.trackers.empty());
}

TEST_CASE("magnet: missing or invalid xt is an INVAL error naming xt")
{
    CHECK(inval_detail("magnet:?dn=x").find("'xt'") != std::string::npos);
    CHECK(inval_detail("magnet:?xt=urn:btih:1234").find("'xt'") != std::string::npos);
    CHECK(inval_detail("magnet:?xt=urn:btih:zz2fe1c06bba254a9dc9f519b335aa7c1367a88a")
              .find("'xt'") != std::string::npos);
    CHECK(inval_detail("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKE1").find("'xt'") !=
          std::string::npos);
    CHECK(inval_detail("magnet:?xt=urn:btmh:1220abcd").find("'xt'") != std::string::npos);
    CHECK(inval_detail("http://example.com/?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a") !=
          "no error");
    CHECK(inval_detail("magnet:") != "no error");
    CHECK(inval_detail("").find("magnet") != std::string::npos);
}

TEST_CASE("magnet: malformed percent escapes are rejected naming the parameter")
{
    std::string base = std::string("magnet:?xt=urn:btih:") + kHex;
    CHECK(inval_detail(base + "&dn=a%2").find("'dn'") != std::string::npos);
    CHECK(inval_detail(base + "&tr=%zz").find("'tr'") != std::string::npos);
    CHECK(inval_detail(base + "&dn=%").find("'dn'") != std::string::npos);
}

TEST_CASE("magnet: to_magnet round trips through parse_magnet")
{
    Magnet m = parse_magnet(std::string("magnet:?xt=urn:btih:") + kHex);
    std::string uri = to_magnet(m.infohash, "a b&c=d/é", {"http://t/a?x=1&y=2", "udp://u:1"});
    CHECK(uri.rfind(std::string("magnet:?xt=urn:btih:") + kHex, 0) == 0);
    Magnet r = parse_magnet(uri);
    CHECK(r.infohash == m.infohash);
    CHECK(r.name == "a b&c=d/é");
    REQUIRE(r.trackers.size() == 2);
    CHECK(r.trackers[0] == "http://t/a?x=1&y=2");
    CHECK(r.trackers[1] == "udp://u:1");
    CHECK(to_magnet(m.infohash) == std::string("magnet:?xt=urn:btih:") + kHex);
}
