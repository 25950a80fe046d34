#include "streamer/content_source.hpp"

#include "core/hex.hpp"
#include "transport/identity.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>
#include <mbedtls/base64.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

using namespace openace;
using namespace openace::streamer;
namespace fs = std::filesystem;

namespace {

// A broadcaster key made the way the broadcast job makes it.
const transport::Identity &key()
{
    static const transport::Identity id = [] {
        char tmpl[] = "/tmp/oa-source-key-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        transport::Identity made = transport::load_or_create_identity(std::string(tmpl) + "/broadcast");
        fs::remove_all(tmpl);
        return made;
    }();
    return id;
}

live::LiveDescriptor descriptor()
{
    live::LiveDescriptor d;
    d.name = "Channel One";
    d.public_key_der = key().public_key_der;
    d.piece_duration = 2.0;
    d.created = 1'790'000'000;
    return d;
}

const std::string &file_data()
{
    static const std::string data = [] {
        std::string s(70'000, '\0');
        for (std::size_t i = 0; i < s.size(); ++i)
            s[i] = static_cast<char>(i * 31 + 7);
        return s;
    }();
    return data;
}

std::string single_torrent()
{
    return transport::build_metainfo("movie.mp4", {{{}, file_data()}}, 16384,
                                     {"http://tracker.example/announce", "udp://t2.example:80"});
}

std::string multi_torrent()
{
    std::string_view d = file_data();
    return transport::build_metainfo("Season", {{{"a.mkv"}, d.substr(0, 1000)}, {{"sub", "b.mkv"}, d}}, 16384);
}

std::string base64(std::string_view bytes, bool padded = true)
{
    std::size_t n = 0;
    std::string out(bytes.size() / 3 * 4 + 8, '\0');
    REQUIRE(mbedtls_base64_encode(reinterpret_cast<unsigned char *>(out.data()), out.size(), &n,
                                  reinterpret_cast<const unsigned char *>(bytes.data()), bytes.size()) == 0);
    out.resize(n);
    while (!padded && !out.empty() && out.back() == '=')
        out.pop_back();
    return out;
}

// RFC 4648 base32 of 20 bytes (32 characters), written independently of the
// module under test.
std::string base32(const transport::InfoHash &h, bool lower)
{
    const char *alphabet = lower ? "abcdefghijklmnopqrstuvwxyz234567" : "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    std::string out;
    for (std::size_t bit = 0; bit < 160; bit += 5) {
        unsigned v = 0;
        for (std::size_t k = 0; k < 5; ++k)
            v = v << 1 | ((h[(bit + k) / 8] >> (7 - (bit + k) % 8)) & 1u);
        out += alphabet[v];
    }
    return out;
}

std::string upper(std::string s)
{
    for (char &c : s)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
}

std::string hex(const transport::InfoHash &h)
{
    return core::to_hex(h.data(), h.size());
}

// The INVAL detail resolve_source throws, or "no error".
std::string inval_detail(const Params &p, const IdTest &is_live = {}, const IdTest &is_torrent = {})
{
    try {
        resolve_source(p, is_live, is_torrent);
    } catch (const Error &e) {
        if (e.code() != Errc::INVAL || e.component() != "streamer" || e.operation() != "source")
            return "wrong error: " + e.detail();
        return e.detail();
    }
    return "no error";
}

bool contains(const std::string &s, std::string_view part)
{
    return s.find(part) != std::string::npos;
}

struct TempDir {
    fs::path path;
    TempDir()
    {
        char tmpl[] = "/tmp/oa-source-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { fs::remove_all(path); }
    std::string write(const std::string &name, std::string_view bytes) const
    {
        const fs::path p = path / name;
        std::ofstream f(p, std::ios::binary | std::ios::trunc);
        f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        REQUIRE(f.good());
        return p.string();
    }
};

void check_torrent(const ContentSource &s, const std::string &torrent)
{
    const transport::Metainfo m = transport::parse_metainfo(torrent);
    CHECK_FALSE(s.live);
    CHECK(s.infohash == m.infohash);
    CHECK(s.hex() == hex(m.infohash));
    CHECK(s.name == m.name);
    CHECK(s.trackers == m.trackers());
    REQUIRE(s.meta.has_value());
    CHECK(s.meta->infohash == m.infohash);
    CHECK(s.meta->total_length == m.total_length);
    CHECK(s.descriptor.empty());
}

void check_live(const ContentSource &s, const live::LiveDescriptor &d)
{
    CHECK(s.live);
    CHECK(s.content_id == d.content_id());
    CHECK(s.hex() == live::to_hex(d.content_id()));
    CHECK(s.descriptor == d.encode());
    CHECK(s.name == d.name);
    CHECK_FALSE(s.meta.has_value());
}

} // namespace

TEST_CASE("content source: pick_selector takes the first present in Ace's order")
{
    const std::vector<std::string> order = {"content_id", "id", "infohash", "url", "magnet", "data"};
    Params p = {{"_idx", "2"}, {"other", "x"}};
    for (const auto &name : order)
        p[name] = "value of " + name;
    for (const auto &name : order) {
        INFO(name);
        const auto [picked, value] = pick_selector(p);
        CHECK(picked == name);
        CHECK(value == "value of " + name);
        p.erase(name);
    }
    try {
        pick_selector(p);
        FAIL("no selector accepted");
    } catch (const Error &e) {
        CHECK(e.code() == Errc::INVAL);
        CHECK(e.component() == "streamer");
        CHECK(contains(e.detail(), "missing parameter"));
        for (const auto &name : order)
            CHECK(contains(e.detail(), name));
    }
    CHECK(contains(inval_detail({}), "missing parameter"));
}

TEST_CASE("content source: content_id and id name a live stream in every accepted form")
{
    const live::LiveDescriptor d = descriptor();
    const live::ContentId id = d.content_id();
    const std::string h = live::to_hex(id);
    for (const std::string &name : {std::string("content_id"), std::string("id")}) {
        for (const std::string &value :
             {h, upper(h), "acestream://" + h, "acestream:?content_id=" + upper(h)}) {
            INFO(name << "=" << value);
            const ContentSource s = resolve_source({{name, value}}, {});
            CHECK(s.live);
            CHECK(s.content_id == id);
            CHECK(s.hex() == h);
            CHECK(s.descriptor.empty());
            CHECK(s.file_index == -1);
        }
    }
}

TEST_CASE("content source: a content_id this engine gave out for a torrent resolves to that torrent")
{
    const transport::Metainfo m = transport::parse_metainfo(single_torrent());
    std::vector<transport::InfoHash> asked;
    const IdTest is_torrent = [&](const transport::InfoHash &x) {
        asked.push_back(x);
        return x == m.infohash;
    };
    const IdTest never_live = [](const transport::InfoHash &) { return false; };

    const ContentSource s = resolve_source({{"content_id", hex(m.infohash)}}, never_live, is_torrent);
    CHECK_FALSE(s.live);
    CHECK(s.infohash == m.infohash);
    CHECK(s.hex() == hex(m.infohash));
    REQUIRE(asked.size() == 1);
    CHECK(asked[0] == m.infohash);

    // Another id is still a live stream.
    const live::ContentId other = descriptor().content_id();
    CHECK(resolve_source({{"id", live::to_hex(other)}}, never_live, is_torrent).live);
}

TEST_CASE("content source: a bad content_id or id is an INVAL error naming the parameter")
{
    const std::string h = live::to_hex(descriptor().content_id());
    for (const std::string &bad : {std::string(), h.substr(1), h + "0", "g" + h.substr(1), "acestream:/" + h,
                                   "magnet:?xt=urn:btih:" + h}) {
        INFO(bad);
        CHECK(contains(inval_detail({{"content_id", bad}}), "parameter 'content_id'"));
        CHECK(contains(inval_detail({{"id", bad}}), "parameter 'id'"));
    }
}

TEST_CASE("content source: infohash accepts 40 hex or 32 base32 and asks is_live")
{
    const transport::Metainfo m = transport::parse_metainfo(single_torrent());
    const transport::InfoHash ih = m.infohash;
    for (const std::string &value : {hex(ih), upper(hex(ih)), base32(ih, false), base32(ih, true)}) {
        INFO(value);
        // Cross-check the test's own base32 against the magnet parser's.
        CHECK(transport::parse_magnet("magnet:?xt=urn:btih:" + value).infohash == ih);

        std::vector<transport::InfoHash> asked;
        const IdTest not_live = [&](const transport::InfoHash &x) {
            asked.push_back(x);
            return false;
        };
        const ContentSource t = resolve_source({{"infohash", value}}, not_live);
        CHECK_FALSE(t.live);
        CHECK(t.infohash == ih);
        CHECK(t.hex() == hex(ih));
        CHECK_FALSE(t.meta.has_value());
        REQUIRE(asked.size() == 1);
        CHECK(asked[0] == ih);

        const IdTest live_here = [&](const transport::InfoHash &x) { return x == ih; };
        const ContentSource l = resolve_source({{"infohash", value}}, live_here);
        CHECK(l.live);
        CHECK(l.content_id == ih);
        CHECK(l.hex() == hex(ih));

        // No is_live callback: a torrent.
        CHECK_FALSE(resolve_source({{"infohash", value}}, {}).live);
    }
}

TEST_CASE("content source: a malformed infohash is an INVAL error saying what is expected")
{
    const transport::InfoHash ih = transport::parse_metainfo(single_torrent()).infohash;
    const std::string h = hex(ih), b = base32(ih, false);
    for (const std::string &bad : {std::string(), h.substr(1), h + "a", "x" + h.substr(1), h.substr(0, 39) + " ",
                                   b.substr(1), b + "a", "1" + b.substr(1), "8" + b.substr(1), "=" + b.substr(1),
                                   "acestream://" + h, std::string(5000, 'f')}) {
        INFO(bad.substr(0, 80));
        const std::string detail = inval_detail({{"infohash", bad}});
        CHECK(contains(detail, "parameter 'infohash'"));
        CHECK(contains(detail, "40 hexadecimal"));
        CHECK(detail.size() < 300); // the bad value is quoted bounded
    }
}

TEST_CASE("content source: magnet gives infohash, name, trackers and numeric peers")
{
    const transport::Metainfo m = transport::parse_metainfo(single_torrent());
    const std::vector<std::string> trackers = {"http://t.example/announce?a=1&b=2", "udp://u.example:6969"};
    const std::string uri =
        transport::to_magnet(m.infohash, "My Movie", trackers) + "&x.pe=10.0.0.7:6881&x.pe=peer.example:51413";
    const ContentSource s = resolve_source({{"magnet", uri}}, [](const transport::InfoHash &) { return true; });
    CHECK_FALSE(s.live);
    CHECK(s.infohash == m.infohash);
    CHECK(s.name == "My Movie");
    CHECK(s.trackers == trackers);
    REQUIRE(s.peers.size() == 1); // a host name peer is skipped
    CHECK(s.peers[0] == transport::parse_peer_address("10.0.0.7:6881"));
    CHECK_FALSE(s.meta.has_value());

    for (const std::string &bad : {std::string("magnet:?dn=x"), std::string("http://x/?xt=urn:btih:") + hex(m.infohash),
                                   std::string("magnet:?xt=urn:btih:1234")}) {
        INFO(bad);
        CHECK(contains(inval_detail({{"magnet", bad}}), "parameter 'magnet'"));
    }
}

TEST_CASE("content source: data carries a .torrent or a live descriptor in base64, padded or not")
{
    const std::string single = single_torrent(), multi = multi_torrent();
    const live::LiveDescriptor d = descriptor();
    for (bool padded : {true, false}) {
        INFO("padded " << padded);
        check_torrent(resolve_source({{"data", base64(single, padded)}}, {}), single);
        check_torrent(resolve_source({{"data", base64(multi, padded)}}, {}), multi);
        check_live(resolve_source({{"data", base64(d.encode(), padded)}}, {}), d);
    }
    const ContentSource m = resolve_source({{"data", base64(multi)}}, {});
    REQUIRE(m.meta.has_value());
    CHECK(m.meta->files.size() == 2);
    CHECK(m.meta->multi_file);
}

TEST_CASE("content source: data that is not base64 or not a transport file is an INVAL error")
{
    CHECK(contains(inval_detail({{"data", "!!!!"}}), "parameter 'data': not base64"));
    CHECK(contains(inval_detail({{"data", "QUJD="}}), "not base64"));
    const std::string junk = inval_detail({{"data", base64("hello, not a torrent")}});
    CHECK(contains(junk, "parameter 'data'"));
    CHECK(contains(junk, "as a .torrent"));
    CHECK(contains(junk, "as a live descriptor"));
    CHECK(contains(inval_detail({{"data", ""}}), "not a transport file"));
}

TEST_CASE("content source: url reads file:// and local paths")
{
    TempDir dir;
    const std::string torrent = single_torrent();
    const live::LiveDescriptor d = descriptor();
    const std::string tpath = dir.write("movie.torrent", torrent);
    const std::string lpath = dir.write("channel.acelive", d.encode());

    check_torrent(resolve_source({{"url", tpath}}, {}), torrent);
    check_torrent(resolve_source({{"url", "file://" + tpath}}, {}), torrent);
    check_live(resolve_source({{"url", lpath}}, {}), d);
    check_live(resolve_source({{"url", "file://" + lpath}}, {}), d);
    CHECK_FALSE(needs_fetch({{"url", "file://" + tpath}}));
    CHECK_FALSE(needs_fetch({{"url", tpath}}));

    // The extension does not decide: content does.
    check_live(resolve_source({{"url", dir.write("odd.torrent", d.encode())}}, {}), d);
}

TEST_CASE("content source: url errors name the parameter and the reason")
{
    TempDir dir;
    const std::string missing = (dir.path / "missing.torrent").string();
    CHECK(contains(inval_detail({{"url", missing}}), "parameter 'url': cannot read"));
    CHECK(contains(inval_detail({{"url", "file://" + missing}}), missing));
    CHECK(contains(inval_detail({{"url", "file://"}}), "empty path"));
    CHECK(contains(inval_detail({{"url", ""}}), "empty path"));
    CHECK(contains(inval_detail({{"url", "ftp://host/x.torrent"}}), "unsupported scheme"));
    CHECK(contains(inval_detail({{"url", "https://host/x.torrent"}}), "unsupported scheme"));

    const std::string junk = inval_detail({{"url", dir.write("junk.torrent", "d4:junki1ee")}});
    CHECK(contains(junk, "parameter 'url'"));
    CHECK(contains(junk, "as a .torrent"));
    CHECK(contains(junk, "as a live descriptor"));

    // A directory reads as nothing: an error, not a crash.
    CHECK(contains(inval_detail({{"url", dir.path.string()}}), "parameter 'url'"));

    std::string big(kMaxTransportFile + 1, 'x');
    CHECK(contains(inval_detail({{"url", dir.write("big.torrent", big)}}), "larger than"));
}

TEST_CASE("content source: an http url is left to the caller")
{
    const Params p = {{"url", "http://host.example/x.acelive"}, {"_idx", "1"}};
    CHECK(needs_fetch(p));
    CHECK(contains(inval_detail(p), "parameter 'url'"));
    CHECK(contains(inval_detail(p), "needs_fetch"));
    CHECK_FALSE(needs_fetch({{"url", "https://host.example/x.acelive"}}));
    CHECK_FALSE(needs_fetch({{"url", "/tmp/http://x"}}));
    CHECK_FALSE(needs_fetch({{"magnet", "http://x"}}));
    // A selector earlier in the order wins over the url.
    const std::string h = live::to_hex(descriptor().content_id());
    const Params both = {{"url", "http://host.example/x.acelive"}, {"content_id", h}};
    CHECK_FALSE(needs_fetch(both));
    CHECK(resolve_source(both, {}).hex() == h);
    CHECK_THROWS_AS(needs_fetch({}), Error);
}

TEST_CASE("content source: classify_transport_file tells .torrent from live descriptor from neither")
{
    const std::string torrent = multi_torrent();
    check_torrent(classify_transport_file(torrent, "parameter 'x'"), torrent);
    const live::LiveDescriptor d = descriptor();
    check_live(classify_transport_file(d.encode(), "parameter 'x'"), d);

    live::LiveDescriptor no_key = d;
    no_key.public_key_der = "not a key";
    for (const std::string &bad : {std::string(), std::string("garbage"), no_key.encode(),
                                   torrent.substr(0, torrent.size() - 1)}) {
        INFO(bad.substr(0, 40));
        try {
            classify_transport_file(bad, "origin-name");
            FAIL("accepted");
        } catch (const Error &e) {
            CHECK(e.code() == Errc::INVAL);
            CHECK(contains(e.detail(), "parameter 'origin-name'"));
            CHECK(contains(e.detail(), "not a transport file"));
            CHECK(contains(e.detail(), "as a .torrent: "));
            CHECK(contains(e.detail(), "as a live descriptor: "));
        }
    }
}

TEST_CASE("content source: _idx sets the file index within bounds")
{
    ContentSource s;
    apply_file_index(s, {});
    CHECK(s.file_index == -1);
    apply_file_index(s, {{"_idx", ""}});
    CHECK(s.file_index == -1);
    for (const std::string v : {"0", "1", "007", "123456789"}) {
        INFO(v);
        apply_file_index(s, {{"_idx", v}});
        CHECK(s.file_index == std::stoi(v));
    }
    for (const std::string v : {"-1", "+1", "1.5", "abc", " 1", "1 ", "0x10", "1234567890", "99999999999999999999"}) {
        INFO(v);
        ContentSource t;
        try {
            apply_file_index(t, {{"_idx", v}});
            FAIL("accepted");
        } catch (const Error &e) {
            CHECK(e.code() == Errc::INVAL);
            CHECK(contains(e.detail(), "parameter '_idx'"));
        }
        CHECK(t.file_index == -1);
    }
    const std::string torrent = multi_torrent();
    CHECK(resolve_source({{"data", base64(torrent)}, {"_idx", "1"}}, {}).file_index == 1);
    CHECK(contains(inval_detail({{"data", base64(torrent)}, {"_idx", "x"}}), "parameter '_idx'"));
}

TEST_CASE("content source: base64_decode round trips every length, padding optional")
{
    std::mt19937 rng(7);
    for (std::size_t len = 0; len <= 64; ++len) {
        std::string bytes(len, '\0');
        for (char &c : bytes)
            c = static_cast<char>(rng());
        INFO("length " << len);
        CHECK(base64_decode(base64(bytes, true)) == bytes);
        CHECK(base64_decode(base64(bytes, false)) == bytes);
    }
}

TEST_CASE("content source: base64_decode refuses malformed text")
{
    const std::string good = base64("ABCDEF");
    REQUIRE(base64_decode(good) == std::string("ABCDEF"));
    for (const std::string &bad : {std::string("Q"), std::string("QUJDR"), std::string("Q==="), std::string("QQ=A"),
                                   std::string("QQ==QQ=="), std::string("@@@@"), std::string("QUJ\xc3\xa9"),
                                   std::string("QU\0D", 4), std::string("-_-_")}) {
        INFO(bad);
        CHECK_FALSE(base64_decode(bad).has_value());
    }
    CHECK_FALSE(base64_decode(std::string(2 * kMaxTransportFile + 4, 'A')).has_value());
}

TEST_CASE("content source: base64_decode refuses whitespace")
{
    // The header promises "whitespace refused"; a value that differs only by
    // a space or line break must not decode (nor decode to other bytes).
    for (const std::string &bad : {std::string(" QUJD"), std::string("QUJD "), std::string("QUJD REVG"),
                                   std::string("QUJD\tREVG"), std::string("QUJD\nREVG"), std::string("QUJD\r\nREVG"),
                                   std::string("QUJDRA\n"), std::string("QUJD\nQ")}) {
        INFO(bad);
        CHECK_FALSE(base64_decode(bad).has_value());
    }
}

TEST_CASE("content source: mutated selector values resolve or throw openace::Error only")
{
    TempDir dir;
    const std::string torrent = multi_torrent();
    const live::LiveDescriptor d = descriptor();
    const std::string tfile = dir.write("seed.torrent", torrent);
    const transport::InfoHash ih = transport::parse_metainfo(torrent).infohash;
    const std::vector<std::pair<std::string, std::string>> seeds = {
        {"content_id", "acestream://" + live::to_hex(d.content_id())},
        {"id", live::to_hex(d.content_id())},
        {"infohash", hex(ih)},
        {"infohash", base32(ih, false)},
        {"url", "file://" + tfile},
        {"magnet", transport::to_magnet(ih, "n", {"http://t/a"}) + "&x.pe=1.2.3.4:5"},
        {"data", base64(torrent)},
        {"data", base64(d.encode())},
    };
    const IdTest coin = [](const transport::InfoHash &x) { return (x[0] & 1) != 0; };
    std::mt19937 rng(20240601);
    int resolved = 0, refused = 0;
    for (int iter = 0; iter < 4000; ++iter) {
        const auto &[name, seed] = seeds[static_cast<std::size_t>(iter) % seeds.size()];
        std::string v = seed;
        if (rng() % 8 == 0) { // entirely random bytes
            v.assign(rng() % 64, '\0');
            for (char &c : v)
                c = static_cast<char>(rng());
        } else {
            const int edits = 1 + static_cast<int>(rng() % 4);
            for (int e = 0; e < edits && !v.empty(); ++e) {
                const std::size_t at = rng() % v.size();
                switch (rng() % 4) {
                case 0: v[at] = static_cast<char>(rng()); break;
                case 1: v.erase(at, 1); break;
                case 2: v.insert(at, 1, static_cast<char>(rng())); break;
                default: v.resize(at); break;
                }
            }
        }
        // Mutated url paths stay inside the temp dir or miss entirely; keep
        // them away from devices and special files.
        if (name == "url" && (v.find("/dev") != std::string::npos || v.find("/proc") != std::string::npos))
            continue;
        Params p = {{name, v}};
        if (rng() % 4 == 0)
            p["_idx"] = std::to_string(static_cast<int>(rng() % 20) - 5);
        try {
            const ContentSource s = resolve_source(p, coin, coin);
            const std::string h = s.hex();
            REQUIRE(h.size() == 40);
            REQUIRE(h.find_first_not_of("0123456789abcdef") == std::string::npos);
            REQUIRE(s.file_index >= -1);
            ++resolved;
        } catch (const Error &e) {
            REQUIRE(e.code() == Errc::INVAL);
            ++refused;
        } catch (const std::exception &e) {
            FAIL("non-openace exception for " << name << ": " << e.what());
        }
    }
    CHECK(resolved > 0);
    CHECK(refused > 0);
}
