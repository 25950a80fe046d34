// Torrent builder tests: trees written to a fresh temp directory, compared
// with build_metainfo over the same names and contents held in memory.
#include "transport/torrent_builder.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace openace::transport;
using openace::Errc;
namespace fs = std::filesystem;

namespace {

std::string pattern(std::size_t n, unsigned seed)
{
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>((i * 131 + seed * 17 + (i >> 9)) & 0xff);
    return s;
}

struct TempDir {
    fs::path path;
    TempDir()
    {
        char tmpl[] = "/tmp/oa_builder_XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir()
    {
        std::error_code ec;
        fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
        fs::remove_all(path, ec);
    }
};

void write_file(const fs::path &p, const std::string &data)
{
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
}

// The error a call throws (code, detail), or code OK when none.
template <class F> std::pair<Errc, std::string> error_of(F &&f)
{
    try {
        f();
    } catch (const openace::Error &e) {
        return {e.code(), e.detail()};
    }
    return {Errc::OK, {}};
}

bool is_power_of_two(std::int64_t v)
{
    return v > 0 && (v & (v - 1)) == 0;
}

} // namespace

TEST_CASE("torrent builder: a directory tree gives exactly build_metainfo's bytes")
{
    TempDir t;
    fs::path top = t.path / "show";
    // Odd sizes so that file boundaries fall inside pieces; one empty file.
    std::string a = pattern(40001, 1), empty, c = pattern(70000, 3), d = pattern(33333, 4), z = pattern(123, 5);
    write_file(top / "z", z);
    write_file(top / "sub" / "c.ts", c);
    write_file(top / "a.ts", a);
    write_file(top / "sub" / "deeper" / "d", d);
    write_file(top / "sub" / "b.bin", empty);
    fs::create_directories(top / "nothing" / "here"); // empty dirs are ignored
    fs::create_symlink(top / "a.ts", top / "link.ts");
    REQUIRE(::mkfifo((top / "pipe").c_str(), 0600) == 0);

    // Sorted by path components.
    std::vector<BuildFile> mem = {{{"a.ts"}, a},
                                  {{"sub", "b.bin"}, empty},
                                  {{"sub", "c.ts"}, c},
                                  {{"sub", "deeper", "d"}, d},
                                  {{"z"}, z}};
    std::vector<std::string> trackers = {"http://t1.example/announce", "udp://t2.example:6969"};

    std::vector<std::pair<std::string, std::string>> skipped;
    BuiltTorrent bt = build_torrent_from_path(top.string(), trackers, 32768, {},
                                              [&](const std::string &p, const std::string &why) {
                                                  skipped.emplace_back(p, why);
                                              });
    std::string expected = build_metainfo("show", mem, 32768, trackers);
    CHECK(bt.torrent == expected);
    CHECK(bt.metainfo.infohash == parse_metainfo(expected).infohash);
    CHECK(bt.metainfo.multi_file);
    CHECK(bt.metainfo.name == "show");
    CHECK(bt.metainfo.total_length == 40001 + 70000 + 33333 + 123);
    CHECK(fs::equivalent(bt.root, t.path));
    std::sort(skipped.begin(), skipped.end());
    REQUIRE(skipped.size() == 2);
    CHECK(skipped[0].first == (top / "link.ts").string());
    CHECK(skipped[0].second == "symbolic link");
    CHECK(skipped[1].first == (top / "pipe").string());
    CHECK(skipped[1].second == "not a regular file");

    SECTION("piece length 0 picks choose_piece_length of the total")
    {
        BuiltTorrent chosen = build_torrent_from_path(top.string() + "/", trackers);
        std::int64_t plen = choose_piece_length(bt.metainfo.total_length);
        CHECK(chosen.metainfo.piece_length == plen);
        CHECK(chosen.torrent == build_metainfo("show", mem, plen, trackers));
    }
}

TEST_CASE("torrent builder: a single file gives exactly build_metainfo's bytes")
{
    TempDir t;
    std::string data = pattern(100001, 9);
    write_file(t.path / "movie.ts", data);
    for (std::int64_t plen : {16384, 40000, 1 << 20}) {
        BuiltTorrent bt = build_torrent_from_path((t.path / "movie.ts").string(), {"http://t.example/a"}, plen);
        std::string expected = build_metainfo("movie.ts", {{{}, data}}, plen, {"http://t.example/a"});
        CHECK(bt.torrent == expected);
        CHECK(bt.metainfo.infohash == parse_metainfo(expected).infohash);
        CHECK_FALSE(bt.metainfo.multi_file);
        CHECK(bt.root == (t.path / "movie.ts").string());
    }
}

TEST_CASE("torrent builder: file names a torrent cannot carry are skipped")
{
    TempDir t;
    std::string ok = pattern(5000, 1);
    write_file(t.path / "d" / "ok.bin", ok);
    write_file(t.path / "d" / "back\\slash", "x");
    write_file(t.path / "d" / "c:drive", "y");
    std::vector<std::string> reasons;
    BuiltTorrent bt = build_torrent_from_path((t.path / "d").string(), {}, 16384, {},
                                              [&](const std::string &, const std::string &why) {
                                                  reasons.push_back(why);
                                              });
    CHECK(bt.torrent == build_metainfo("d", {{{"ok.bin"}, ok}}, 16384));
    CHECK(reasons.size() == 2);
}

TEST_CASE("torrent builder: piece length is a power of two for 1000-2000 pieces within 16 KiB-16 MiB")
{
    CHECK(choose_piece_length(0) == 16384);
    CHECK(choose_piece_length(1) == 16384);
    CHECK(choose_piece_length(2000LL * 16384) == 16384);
    CHECK(choose_piece_length(2000LL * 16384 + 1) == 32768);
    CHECK(choose_piece_length(1LL << 30) == 1 << 20);         // 1024 pieces
    CHECK(choose_piece_length(4000LL << 20) == 2 << 20);      // 2000 pieces of 2 MiB
    CHECK(choose_piece_length((4000LL << 20) + 1) == 4 << 20); // 1001 pieces of 4 MiB
    CHECK(choose_piece_length(100LL << 40) == 16 << 20);      // clamped
    for (std::int64_t total = 1; total < (1LL << 42); total = total * 3 + 7) {
        std::int64_t p = choose_piece_length(total);
        std::int64_t pieces = (total + p - 1) / p;
        INFO("total " << total << " piece " << p);
        CHECK(is_power_of_two(p));
        CHECK(p >= 16384);
        CHECK(p <= 16 << 20);
        if (p < 16 << 20)
            CHECK(pieces <= 2000);
        if (p > 16384)
            CHECK(pieces > 1000);
    }
}

TEST_CASE("torrent builder: progress runs after each piece and false cancels")
{
    TempDir t;
    write_file(t.path / "f.bin", pattern(5 * 16384 + 10, 2));
    std::vector<std::pair<std::int64_t, std::int64_t>> calls;
    build_torrent_from_path((t.path / "f.bin").string(), {}, 16384, [&](std::int64_t done, std::int64_t total) {
        calls.emplace_back(done, total);
        return true;
    });
    REQUIRE(calls.size() == 6);
    for (std::size_t i = 0; i < 5; ++i)
        CHECK(calls[i] == std::make_pair(static_cast<std::int64_t>(i + 1) * 16384, std::int64_t{5 * 16384 + 10}));
    CHECK(calls.back().first == 5 * 16384 + 10);

    int seen = 0;
    auto [code, detail] = error_of([&] {
        build_torrent_from_path((t.path / "f.bin").string(), {}, 16384, [&](std::int64_t, std::int64_t) {
            return ++seen < 2;
        });
    });
    CHECK(code == Errc::CANCELLED);
    CHECK(detail.find("f.bin") != std::string::npos);
    CHECK(seen == 2);
}

TEST_CASE("torrent builder: missing, unreadable and empty paths are errors naming the path")
{
    TempDir t;
    std::string missing = (t.path / "nope").string();
    auto [code, detail] = error_of([&] { build_torrent_from_path(missing, {}); });
    CHECK(code == Errc::IO);
    CHECK(detail.find(missing) != std::string::npos);

    fs::create_directories(t.path / "hollow" / "sub");
    write_file(t.path / "hollow" / "sub" / "zero", "");
    std::string hollow = (t.path / "hollow").string();
    auto e2 = error_of([&] { build_torrent_from_path(hollow, {}); });
    CHECK(e2.first == Errc::INVAL);
    CHECK(e2.second.find(hollow + ": no files to seed") != std::string::npos);

    fs::create_directories(t.path / "links");
    fs::create_symlink("/etc/hostname", t.path / "links" / "l");
    auto e3 = error_of([&] { build_torrent_from_path((t.path / "links").string(), {}); });
    CHECK(e3.first == Errc::INVAL);

    write_file(t.path / "ok.bin", "data");
    auto e4 = error_of([&] { build_torrent_from_path((t.path / "ok.bin").string(), {}, -5); });
    CHECK(e4.first == Errc::INVAL);

    if (::geteuid() != 0) { // root reads anything: permissions prove nothing there
        write_file(t.path / "locked" / "secret.bin", "hidden");
        std::string secret = (t.path / "locked" / "secret.bin").string();
        fs::permissions(secret, fs::perms::none);
        auto e5 = error_of([&] { build_torrent_from_path((t.path / "locked").string(), {}); });
        CHECK(e5.first == Errc::IO);
        CHECK(e5.second.find(secret) != std::string::npos);
        fs::permissions(t.path / "locked", fs::perms::none);
        auto e6 = error_of([&] { build_torrent_from_path((t.path / "locked").string(), {}); });
        CHECK(e6.first == Errc::IO);
        CHECK(e6.second.find((t.path / "locked").string()) != std::string::npos);
    }
}
