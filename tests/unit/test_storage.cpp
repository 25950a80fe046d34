// Storage tests.  Each test runs its own libuv loop on the test thread with
// bounded iterations and wall time; pool work really runs on the libuv pool,
// data files live in a fresh temp directory.  Every test ends by draining the
// loop and checking that it closes clean (no handle or request left).
#include "transport/storage.hpp"

#include "core/log.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

using namespace openace;
using namespace openace::transport;
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kPiece = 16384;

std::string pattern(std::size_t n, unsigned seed)
{
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>((i * 29 + seed * 13 + (i >> 10)) & 0xff);
    return s;
}

struct TempDir {
    fs::path path;
    TempDir()
    {
        char tmpl[] = "/tmp/oa_storage_XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir()
    {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

void write_file(const fs::path &p, const std::string &data)
{
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
}

struct Loop {
    uv_loop_t loop{};
    bool closed = false;
    Loop() { uv_loop_init(&loop); }
    ~Loop()
    {
        if (!closed)
            close(); // a failed REQUIRE left it open
    }
    // Runs until pred() holds; bounded in iterations and time.
    template <class P> bool run_until(P pred)
    {
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 100000 && !pred(); ++i) {
            if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(10))
                return false;
            uv_run(&loop, UV_RUN_NOWAIT);
            if (!pred())
                uv_run(&loop, UV_RUN_ONCE);
        }
        return pred();
    }
    // Runs until nothing is left (pool work done, handles closed).
    bool drain()
    {
        return run_until([&] { return uv_run(&loop, UV_RUN_NOWAIT) == 0; });
    }
    int close()
    {
        if (!drain())
            return UV_EBUSY;
        int rc = uv_loop_close(&loop);
        closed = rc == 0;
        return rc;
    }
};

// A torrent in memory: `pieces` of kPiece bytes and a short last one.
struct Content {
    std::string data;
    Metainfo meta;
    Content(std::size_t full_pieces, unsigned seed, std::size_t tail = 1000)
        : data(pattern(full_pieces * kPiece + tail, seed)),
          meta(parse_metainfo(build_metainfo(fmt::format("t{}", seed), {{{}, data}}, kPiece)))
    {
    }
    std::string piece(std::uint32_t i) const { return data.substr(i * kPiece, meta.piece_size(i)); }
};

struct WriteResult {
    bool done = false, ok = false;
    std::string error;
};

// Writes and waits for the callback.
WriteResult write_sync(Loop &l, Storage &s, std::uint32_t piece, std::string data)
{
    WriteResult r;
    s.write_piece(piece, std::move(data), [&](bool ok, const std::string &err) {
        r = {true, ok, err};
    });
    CHECK_FALSE(r.done); // never from inside the call
    CHECK(l.run_until([&] { return r.done; }));
    return r;
}

struct ReadResult {
    bool done = false;
    std::string data, error;
};

ReadResult read_sync(Loop &l, Storage &s, std::uint32_t piece, std::uint32_t begin, std::uint32_t length)
{
    ReadResult r;
    s.read(piece, begin, length, [&](std::string d, const std::string &err) {
        r = {true, std::move(d), err};
    });
    CHECK_FALSE(r.done);
    CHECK(l.run_until([&] { return r.done; }));
    return r;
}

std::int64_t allocated_bytes(const fs::path &p)
{
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return static_cast<std::int64_t>(st.st_blocks) * 512;
}

fs::path data_file(const fs::path &dir, const Metainfo &m)
{
    return dir / (to_hex(m.infohash) + ".data");
}

core::Logger test_logger()
{
    static core::Log log;
    return core::Logger(log, "cache");
}

} // namespace

TEST_CASE("storage: cache stores a verified piece and serves reads of it")
{
    TempDir t;
    Loop l;
    Content c(8, 1);
    {
        DiskCache cache(&l.loop, test_logger(), (t.path / "cache").string(), 1 << 20);
        auto s = cache.open(c.meta);
        CHECK(fs::exists(data_file(t.path / "cache", c.meta)));
        auto w = write_sync(l, *s, 2, c.piece(2));
        CHECK(w.ok);
        CHECK(w.error.empty());
        CHECK(s->has_piece(2));
        CHECK_FALSE(s->has_piece(3));
        CHECK(cache.bytes_stored() == kPiece);

        auto r = read_sync(l, *s, 2, 100, 5000);
        CHECK(r.error.empty());
        CHECK(r.data == c.data.substr(2 * kPiece + 100, 5000));

        // The short last piece.
        CHECK(write_sync(l, *s, 8, c.piece(8)).ok);
        CHECK(read_sync(l, *s, 8, 0, 1000).data == c.data.substr(8 * kPiece));

        auto missing = read_sync(l, *s, 3, 0, 10);
        CHECK(missing.data.empty());
        CHECK(missing.error == "piece 3 not stored");
        auto outside = read_sync(l, *s, 2, kPiece - 10, 20);
        CHECK(outside.error.find("outside the piece") != std::string::npos);
        CHECK(cache.status()["bytes_stored"] == kPiece + 1000);
    }
    CHECK(l.close() == 0);
}

TEST_CASE("storage: cache reads pieces back from disk when memory holds none")
{
    TempDir t;
    Loop l;
    Content c(4, 2);
    {
        DiskCache cache(&l.loop, test_logger(), t.path.string(), 1 << 20, 0);
        auto s = cache.open(c.meta);
        for (std::uint32_t i = 0; i < 4; ++i)
            REQUIRE(write_sync(l, *s, i, c.piece(i)).ok);
        CHECK(cache.status()["memory_bytes"] == 0);
        // Several block reads at once, across the pieces.
        std::map<std::pair<int, int>, std::string> got;
        for (std::uint32_t i = 0; i < 4; ++i)
            for (std::uint32_t b = 0; b < kPiece; b += 4096)
                s->read(i, b, 4096, [&got, i, b](std::string d, const std::string &) { got[{i, b}] = std::move(d); });
        CHECK(l.run_until([&] { return got.size() == 16; }));
        for (auto &[k, d] : got)
            CHECK(d == c.data.substr(k.first * kPiece + k.second, 4096));
    }
    CHECK(l.close() == 0);
}

TEST_CASE("storage: cache stores nothing for a piece whose hash does not match")
{
    TempDir t;
    Loop l;
    Content c(4, 3);
    {
        DiskCache cache(&l.loop, test_logger(), t.path.string(), 1 << 20);
        auto s = cache.open(c.meta);
        std::string bad = c.piece(1);
        bad[777] ^= 1;
        auto w = write_sync(l, *s, 1, bad);
        CHECK_FALSE(w.ok);
        CHECK(w.error.empty());
        CHECK_FALSE(s->has_piece(1));
        CHECK(cache.bytes_stored() == 0);
        CHECK(allocated_bytes(data_file(t.path, c.meta)) == 0);

        auto wrong_size = write_sync(l, *s, 1, c.piece(1).substr(1));
        CHECK_FALSE(wrong_size.ok);
        CHECK(wrong_size.error.find("piece 1") != std::string::npos);
        auto out_of_range = write_sync(l, *s, 99, c.piece(1));
        CHECK_FALSE(out_of_range.ok);
        CHECK(out_of_range.error.find("out of range") != std::string::npos);
    }
    CHECK(l.close() == 0);
}

TEST_CASE("storage: cache evicts least recently used pieces beyond its cap")
{
    TempDir t;
    Loop l;
    Content c(24, 4, 0);
    const std::int64_t cap = 4 * kPiece;
    {
        DiskCache cache(&l.loop, test_logger(), t.path.string(), cap, 0);
        auto s = cache.open(c.meta);
        std::vector<std::uint32_t> evicted;
        s->on_evicted = [&](std::uint32_t p) { evicted.push_back(p); };
        for (std::uint32_t i = 0; i < 4; ++i)
            REQUIRE(write_sync(l, *s, i, c.piece(i)).ok);
        CHECK(evicted.empty());
        // A read makes piece 0 the most recently used: 1 goes first, then 2.
        CHECK(read_sync(l, *s, 0, 0, 10).error.empty());
        REQUIRE(write_sync(l, *s, 4, c.piece(4)).ok);
        CHECK(evicted == std::vector<std::uint32_t>{1});
        REQUIRE(write_sync(l, *s, 5, c.piece(5)).ok);
        CHECK(evicted == std::vector<std::uint32_t>{1, 2});
        CHECK_FALSE(s->has_piece(1));
        CHECK(s->has_piece(0));
        CHECK(read_sync(l, *s, 1, 0, 10).error == "piece 1 not stored");
        CHECK(read_sync(l, *s, 0, 0, kPiece).data == c.piece(0));

        // A long session: the stored bytes and the file's blocks stay bounded.
        for (std::uint32_t i = 6; i < 24; ++i) {
            REQUIRE(write_sync(l, *s, i, c.piece(i)).ok);
            CHECK(cache.bytes_stored() <= cap);
        }
        CHECK(l.drain()); // the last punches
        CHECK(cache.bytes_stored() == cap);
        CHECK(cache.evictions() == 20);
        CHECK(evicted.size() == 20);
        CHECK(allocated_bytes(data_file(t.path, c.meta)) <= cap + kPiece);
        for (std::uint32_t i = 20; i < 24; ++i)
            CHECK(read_sync(l, *s, i, 0, kPiece).data == c.piece(i));
    }
    CHECK(l.close() == 0);
}

TEST_CASE("storage: eviction picks the least recently used piece across torrents")
{
    TempDir t;
    Loop l;
    Content a(4, 5, 0), b(4, 6, 0);
    {
        DiskCache cache(&l.loop, test_logger(), t.path.string(), 2 * kPiece);
        auto sa = cache.open(a.meta);
        auto sb = cache.open(b.meta);
        std::vector<std::uint32_t> ea, eb;
        sa->on_evicted = [&](std::uint32_t p) { ea.push_back(p); };
        sb->on_evicted = [&](std::uint32_t p) { eb.push_back(p); };
        REQUIRE(write_sync(l, *sa, 0, a.piece(0)).ok);
        REQUIRE(write_sync(l, *sb, 0, b.piece(0)).ok);
        REQUIRE(write_sync(l, *sa, 1, a.piece(1)).ok);
        CHECK(ea == std::vector<std::uint32_t>{0});
        CHECK(eb.empty());
        REQUIRE(write_sync(l, *sa, 2, a.piece(2)).ok);
        CHECK(eb == std::vector<std::uint32_t>{0});
        CHECK(cache.status()["torrents"] == 2);
    }
    CHECK(l.close() == 0);
}

TEST_CASE("storage: pinned pieces survive eviction, the cap yields while everything is pinned")
{
    TempDir t;
    Loop l;
    Content c(8, 7, 0);
    {
        DiskCache cache(&l.loop, test_logger(), t.path.string(), 2 * kPiece);
        auto s = cache.open(c.meta);
        std::vector<std::uint32_t> evicted;
        s->on_evicted = [&](std::uint32_t p) { evicted.push_back(p); };
        s->pin({{0, 2}});
        for (std::uint32_t i = 0; i < 3; ++i)
            REQUIRE(write_sync(l, *s, i, c.piece(i)).ok);
        // 0 and 1 are pinned and 2 was just written: over the cap, nothing evicted.
        CHECK(evicted.empty());
        CHECK(cache.bytes_stored() == 3 * kPiece);
        CHECK(cache.status()["over_cap"] == true);

        REQUIRE(write_sync(l, *s, 3, c.piece(3)).ok);
        CHECK(evicted == std::vector<std::uint32_t>{2}); // the only unpinned one but the newest
        CHECK(s->has_piece(0));
        CHECK(s->has_piece(1));

        // Moving the window releases 0 and 1; the cap holds again (LRU: 0 goes).
        s->pin({{3, 4}});
        CHECK(evicted.size() == 1); // not from inside pin()
        CHECK(l.run_until([&] { return evicted.size() == 2; }));
        CHECK(evicted == std::vector<std::uint32_t>{2, 0});
        CHECK(cache.bytes_stored() == 2 * kPiece);
        CHECK(cache.status()["over_cap"] == false);
        CHECK(s->has_piece(1));
        CHECK(s->has_piece(3));
    }
    CHECK(l.close() == 0);
}

TEST_CASE("storage: destroying a storage with work in flight drops its callbacks")
{
    TempDir t;
    Loop l;
    Content c(16, 8, 0);
    {
        DiskCache cache(&l.loop, test_logger(), t.path.string(), 1 << 20, 0);
        int calls = 0;
        {
            auto s = cache.open(c.meta);
            REQUIRE(write_sync(l, *s, 0, c.piece(0)).ok);
            for (std::uint32_t i = 1; i < 16; ++i)
                s->write_piece(i, c.piece(i), [&](bool, const std::string &) { ++calls; });
            for (int k = 0; k < 4; ++k)
                s->read(0, 0, 100, [&](std::string, const std::string &) { ++calls; });
            s->read(9, 0, 100, [&](std::string, const std::string &) { ++calls; });   // error, deferred
            s->write_piece(0, "short", [&](bool, const std::string &) { ++calls; }); // error, deferred
        }
        CHECK(cache.bytes_stored() == 0);
        CHECK_FALSE(fs::exists(data_file(t.path, c.meta)));
        CHECK(l.drain());
        CHECK(calls == 0);
        // The infohash can be opened again right away.
        auto again = cache.open(c.meta);
        CHECK(write_sync(l, *again, 3, c.piece(3)).ok);
    }
    CHECK(l.close() == 0);
}

TEST_CASE("storage: a storage may close itself from its own callbacks")
{
    TempDir t;
    Loop l;
    Content c(4, 9, 0);
    {
        DiskCache cache(&l.loop, test_logger(), t.path.string(), kPiece);
        auto s = cache.open(c.meta);
        REQUIRE(write_sync(l, *s, 0, c.piece(0)).ok);
        int evictions = 0;
        s->on_evicted = [&](std::uint32_t) {
            ++evictions;
            s.reset();
        };
        bool written = false;
        s->write_piece(1, c.piece(1), [&](bool ok, const std::string &) { written = ok; });
        CHECK(l.run_until([&] { return !s; }));
        CHECK(written);
        CHECK(evictions == 1);
        CHECK(cache.bytes_stored() == 0);
    }
    CHECK(l.close() == 0);
}

TEST_CASE("storage: the cache deletes stale files at start and a data file when its storage closes")
{
    TempDir t;
    Loop l;
    Content c(2, 10);
    std::string stale = std::string(40, 'a') + ".data";
    write_file(t.path / stale, "old bytes");
    write_file(t.path / "notes.txt", "not ours");
    {
        DiskCache cache(&l.loop, test_logger(), t.path.string(), 1 << 20);
        CHECK_FALSE(fs::exists(t.path / stale));
        CHECK(fs::exists(t.path / "notes.txt"));
        auto s = cache.open(c.meta);
        CHECK(fs::exists(data_file(t.path, c.meta)));
        try {
            cache.open(c.meta);
            FAIL("a second open of the same infohash must fail");
        } catch (const Error &e) {
            CHECK(e.code() == Errc::STATE);
        }
        s.reset();
        CHECK_FALSE(fs::exists(data_file(t.path, c.meta)));
    }
    write_file(t.path / "file", "x");
    try {
        DiskCache bad(&l.loop, test_logger(), (t.path / "file" / "cache").string(), 1 << 20);
        FAIL("a cache under a regular file must fail");
    } catch (const Error &e) {
        CHECK(e.code() == Errc::IO);
        CHECK(e.detail().find((t.path / "file" / "cache").string()) != std::string::npos);
    }
    CHECK(l.close() == 0);
}

TEST_CASE("storage: file storage reads across file boundaries and verifies pieces")
{
    TempDir t;
    Loop l;
    // piece 0: a + c's start; piece 1 inside c; piece 2: c's end + d + e.
    std::string a = pattern(10000, 1), empty, c = pattern(30000, 2), d = pattern(5, 3), e = pattern(4000, 4);
    write_file(t.path / "show" / "a", a);
    write_file(t.path / "show" / "b", empty);
    write_file(t.path / "show" / "sub" / "c", c);
    write_file(t.path / "show" / "sub" / "d", d);
    write_file(t.path / "show" / "e", e);
    std::vector<BuildFile> files = {{{"a"}, a}, {{"b"}, empty}, {{"sub", "c"}, c}, {{"sub", "d"}, d}, {{"e"}, e}};
    Metainfo m = parse_metainfo(build_metainfo("show", files, kPiece));
    std::string all = a + empty + c + d + e;
    REQUIRE(m.piece_count() == 3);
    {
        auto s = make_file_storage(&l.loop, m, t.path.string());
        for (std::uint32_t p = 0; p < 3; ++p) {
            CHECK(s->has_piece(p));
            auto whole = read_sync(l, *s, p, 0, static_cast<std::uint32_t>(m.piece_size(p)));
            CHECK(whole.error.empty());
            CHECK(whole.data == all.substr(p * kPiece, m.piece_size(p)));
        }
        CHECK_FALSE(s->has_piece(3));
        // Block reads that straddle a boundary.
        CHECK(read_sync(l, *s, 0, 9000, 2000).data == all.substr(9000, 2000));
        CHECK(read_sync(l, *s, 2, 7000, 1000).data == all.substr(2 * kPiece + 7000, 1000));
        auto w = write_sync(l, *s, 0, all.substr(0, kPiece));
        CHECK_FALSE(w.ok);
        CHECK(w.error.find("read-only") != std::string::npos);
        CHECK(read_sync(l, *s, 3, 0, 1).error == "piece 3 not stored");
    }
    {
        // Without memory each read goes to the files (range reads once verified).
        auto s = make_file_storage(&l.loop, m, t.path.string(), 0);
        CHECK(read_sync(l, *s, 1, 100, 16000).data == all.substr(kPiece + 100, 16000));
        CHECK(read_sync(l, *s, 2, 0, 100).data == all.substr(2 * kPiece, 100));
        // A file edited after the torrent was built is not served.
        std::string changed = e;
        changed[10] ^= 1;
        write_file(t.path / "show" / "e", changed);
        CHECK(read_sync(l, *s, 0, 0, 100).data == all.substr(0, 100)); // piece 0 untouched
        fs::remove(t.path / "show" / "sub" / "c");
        auto gone = read_sync(l, *s, 1, 0, 10);
        CHECK(gone.error.find((t.path / "show" / "sub" / "c").string()) != std::string::npos);
    }
    write_file(t.path / "show" / "sub" / "c", c);
    {
        auto s = make_file_storage(&l.loop, m, t.path.string());
        CHECK(read_sync(l, *s, 1, 0, 10).data == all.substr(kPiece, 10));
        auto bad = read_sync(l, *s, 2, 0, 10);
        CHECK(bad.data.empty());
        CHECK(bad.error.find("does not match") != std::string::npos);
    }
    CHECK(l.close() == 0);
}

TEST_CASE("storage: file storage of a single-file torrent")
{
    TempDir t;
    Loop l;
    std::string data = pattern(3 * kPiece + 77, 5);
    write_file(t.path / "movie.ts", data);
    Metainfo m = parse_metainfo(build_metainfo("movie.ts", {{{}, data}}, kPiece));
    {
        auto s = make_file_storage(&l.loop, m, (t.path / "movie.ts").string());
        std::map<std::uint32_t, std::string> got;
        for (std::uint32_t p = 0; p < 4; ++p)
            s->read(p, 0, static_cast<std::uint32_t>(m.piece_size(p)),
                    [&got, p](std::string d, const std::string &) { got[p] = std::move(d); });
        CHECK(l.run_until([&] { return got.size() == 4; }));
        for (auto &[p, d] : got)
            CHECK(d == data.substr(p * kPiece, m.piece_size(p)));
    }
    CHECK(l.close() == 0);
}
