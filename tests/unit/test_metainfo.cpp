#include "transport/metainfo.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace openace::transport;
namespace b = openace::transport::bencode;
using openace::Errc;

namespace {

std::string pattern(std::size_t n, unsigned seed)
{
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>((i * 31 + seed * 7 + (i >> 8)) & 0xff);
    return s;
}

std::string parse_detail(std::string_view t)
{
    try {
        parse_metainfo(t);
    } catch (const openace::Error &e) {
        if (e.code() != Errc::PARSE)
            return "wrong code";
        return e.detail();
    }
    return "no error";
}

// A torrent whose info dict is `info` (already-encoded fields changed by callers).
std::string torrent_with_info(b::Value info)
{
    b::Value top{b::Dict{}};
    top.set("announce", b::Value("http://t.example/announce"));
    top.set("info", std::move(info));
    return b::encode(top);
}

b::Value valid_single_info()
{
    std::string data = pattern(100000, 1);
    std::string t = build_metainfo("movie.ts", {{{}, data}}, 40000);
    return *b::decode(t).find("info");
}

} // namespace

TEST_CASE("metainfo: single-file torrent with a 40000-byte piece size round trips")
{
    std::string data = pattern(100001, 1);
    std::string t = build_metainfo("movie.ts", {{{}, data}}, 40000, {"http://t.example/announce"});
    Metainfo m = parse_metainfo(t);
    CHECK(m.name == "movie.ts");
    CHECK_FALSE(m.multi_file);
    CHECK(m.piece_length == 40000);
    CHECK(m.total_length == 100001);
    REQUIRE(m.piece_count() == 3);
    CHECK(m.piece_size(0) == 40000);
    CHECK(m.piece_size(2) == 20001);
    CHECK(m.piece_size(3) == 0);
    CHECK(m.piece_hash(1) == std::string_view(reinterpret_cast<const char *>(
                                                  sha1(std::string_view(data).substr(40000, 40000)).data()),
                                              20));
    CHECK(m.piece_hash(2).size() == 20);
    REQUIRE(m.files.size() == 1);
    CHECK(m.files[0].length == 100001);
    CHECK(m.announce == "http://t.example/announce");
    CHECK(m.trackers() == std::vector<std::string>{"http://t.example/announce"});
    CHECK(file_offsets(m) == std::vector<std::pair<std::int64_t, std::int64_t>>{{0, 100001}});
}

TEST_CASE("metainfo: multi-file torrent gives file offsets in piece space")
{
    std::string a = pattern(30000, 1), bb = pattern(0, 2), c = pattern(55555, 3);
    std::vector<BuildFile> files = {{{"a.ts"}, a}, {{"sub", "empty.txt"}, bb}, {{"sub", "c.ts"}, c}};
    std::string t = build_metainfo("show", files, 40000,
                                   {"http://t1.example/announce", "udp://t2.example:6969"});
    Metainfo m = parse_metainfo(t);
    CHECK(m.multi_file);
    CHECK(m.name == "show");
    CHECK(m.total_length == 85555);
    CHECK(m.piece_count() == 3);
    REQUIRE(m.files.size() == 3);
    CHECK(m.files[1].path == std::vector<std::string>{"sub", "empty.txt"});
    CHECK(file_offsets(m) ==
          std::vector<std::pair<std::int64_t, std::int64_t>>{{0, 30000}, {30000, 30000}, {30000, 85555}});
    CHECK(m.announce == "http://t1.example/announce");
    REQUIRE(m.announce_list.size() == 2);
    CHECK(m.trackers() ==
          std::vector<std::string>{"http://t1.example/announce", "udp://t2.example:6969"});
    // Piece 0 spans a and the start of c.
    std::string all = a + bb + c;
    InfoHash h0 = sha1(std::string_view(all).substr(0, 40000));
    CHECK(m.piece_hash(0) == std::string_view(reinterpret_cast<const char *>(h0.data()), 20));
    // Building again gives identical bytes (deterministic).
    CHECK(build_metainfo("show", files, 40000,
                         {"http://t1.example/announce", "udp://t2.example:6969"}) == t);
}

TEST_CASE("metainfo: infohash is the SHA-1 of the raw info dictionary bytes")
{
    std::string t = build_metainfo("x.bin", {{{}, pattern(5000, 9)}}, 1000);
    Metainfo m = parse_metainfo(t);
    std::string_view info = b::raw_span(t, "info");
    CHECK(m.infohash == sha1(info));
    CHECK(m.info_bytes == info);
    Metainfo bare = parse_info_dict(info);
    CHECK(bare.infohash == m.infohash);
    CHECK(bare.total_length == 5000);
    // Known vector: SHA-1("abc")
    CHECK(to_hex(sha1("abc")) == "a9993e364706816aba3e25717850c26c9cd0d89d");
}

TEST_CASE("metainfo: infohash covers unknown info keys exactly as written")
{
    b::Value info = valid_single_info();
    info.set("private", b::Value(1));
    info.set("x-extra", b::Value("keep me"));
    std::string t = torrent_with_info(info);
    Metainfo m = parse_metainfo(t);
    CHECK(m.infohash == sha1(b::raw_span(t, "info")));
    CHECK(m.infohash != parse_metainfo(torrent_with_info(valid_single_info())).infohash);
}

TEST_CASE("metainfo: bad fields are named in the error")
{
    auto with = [](std::string_view key, b::Value v) {
        b::Value info = valid_single_info();
        info.set(key, std::move(v));
        return torrent_with_info(info);
    };
    auto without = [](std::string_view key) {
        b::Value info = valid_single_info();
        b::Dict d;
        for (const auto &e : info.as_dict())
            if (e.first != key)
                d.push_back(e);
        return torrent_with_info(b::Value(std::move(d)));
    };
    CHECK(parse_detail(with("piece length", b::Value(0))) == "field 'info.piece length': must be > 0");
    CHECK(parse_detail(with("piece length", b::Value(-5))) == "field 'info.piece length': must be > 0");
    CHECK(parse_detail(with("piece length", b::Value("big"))) ==
          "field 'info.piece length': expected an integer");
    CHECK(parse_detail(with("pieces", b::Value(std::string(19, 'a')))).find("'info.pieces'") !=
          std::string::npos);
    CHECK(parse_detail(with("pieces", b::Value(std::string(40, 'a')))).find("'info.pieces'") !=
          std::string::npos); // 2 hashes, 3 pieces needed
    CHECK(parse_detail(with("length", b::Value(-1))).find("'info.length'") != std::string::npos);
    CHECK(parse_detail(with("name", b::Value(".."))).find("'info.name'") != std::string::npos);
    CHECK(parse_detail(with("name", b::Value(""))).find("'info.name'") != std::string::npos);
    CHECK(parse_detail(without("name")) == "field 'info.name': missing");
    CHECK(parse_detail(without("pieces")) == "field 'info.pieces': missing");
    CHECK(parse_detail(without("length")).find("'info.length'") != std::string::npos);
    CHECK(parse_detail(with("files", b::Value(b::List{}))).find("'info.files'") != std::string::npos);
    CHECK(parse_detail("le").find("top level") != std::string::npos);
    CHECK(parse_detail("de") == "field 'info': missing");
    CHECK(parse_detail("d4:infoi1ee") == "field 'info': expected a dictionary");
    CHECK(parse_detail("d4:info") != "no error"); // bencode error passes through
}

TEST_CASE("metainfo: unsafe multi-file path components are rejected")
{
    auto multi = [](b::List path) {
        b::Value info = valid_single_info();
        b::Dict d;
        for (const auto &e : info.as_dict())
            if (e.first != "length")
                d.push_back(e);
        b::Value fe{b::Dict{}};
        fe.set("length", b::Value(100000));
        fe.set("path", b::Value(std::move(path)));
        b::Value i2{std::move(d)};
        i2.set("files", b::Value(b::List{fe}));
        return torrent_with_info(i2);
    };
    CHECK_NOTHROW(parse_metainfo(multi({b::Value("dir"), b::Value("f.ts")})));
    for (b::List bad : {b::List{}, b::List{b::Value("")}, b::List{b::Value(".")},
                        b::List{b::Value("a"), b::Value("..")}, b::List{b::Value("/etc")},
                        b::List{b::Value("a/b")}, b::List{b::Value("C:")}, b::List{b::Value(1)}}) {
        CHECK(parse_detail(multi(bad)).find("'info.files[0].path'") != std::string::npos);
    }
}

TEST_CASE("metainfo: build rejects bad input")
{
    CHECK_THROWS_AS(build_metainfo("x", {{{}, "abc"}}, 0), openace::Error);
    CHECK_THROWS_AS(build_metainfo("", {{{}, "abc"}}, 16384), openace::Error);
    CHECK_THROWS_AS(build_metainfo("x", {}, 16384), openace::Error);
    CHECK_THROWS_AS(build_metainfo("x", {{{}, ""}}, 16384), openace::Error);
    CHECK_THROWS_AS(build_metainfo("x", {{{"a"}, "abc"}, {{".."}, "d"}}, 16384), openace::Error);
}
