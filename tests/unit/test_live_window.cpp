#include "live/live_window.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

using namespace openace::live;

namespace {

constexpr std::uint64_t kMax = UINT64_MAX;

std::shared_ptr<const LivePiece> piece(std::uint64_t seq, std::size_t size = 10)
{
    auto p = std::make_shared<LivePiece>();
    p->sequence = seq;
    p->timestamp_ms = 1700000000000 + static_cast<std::int64_t>(seq % 1000000);
    p->data.assign(size, static_cast<char>('a' + seq % 26));
    p->signature = "sig";
    return p;
}

// The disjoint inclusive ranges a set of numbers forms, ascending.
std::vector<SeqRange> ranges_of(const std::set<std::uint64_t> &s)
{
    std::vector<SeqRange> out;
    for (std::uint64_t v : s) {
        if (!out.empty() && out.back().second != kMax && out.back().second + 1 == v)
            out.back().second = v;
        else
            out.emplace_back(v, v);
    }
    return out;
}

// The contract of a bounded SeqRanges on a plain set: insert, then forget the
// oldest ranges while there are more than `max_ranges`.
void model_insert(std::set<std::uint64_t> &s, std::uint64_t first, std::uint64_t last, std::size_t max_ranges)
{
    for (std::uint64_t v = first;; ++v) {
        s.insert(v);
        if (v == last)
            break;
    }
    auto r = ranges_of(s);
    for (std::size_t i = 0; r.size() > max_ranges && i < r.size() - max_ranges; ++i)
        s.erase(s.begin(), s.upper_bound(r[i].second));
}

void check_same(const SeqRanges &sr, const std::set<std::uint64_t> &s)
{
    const auto expect = ranges_of(s);
    REQUIRE(sr.ranges() == expect);
    REQUIRE(sr.range_count() == expect.size());
    REQUIRE(sr.empty() == s.empty());
    if (s.empty())
        REQUIRE_FALSE(sr.newest());
    else
        REQUIRE(sr.newest() == *s.rbegin());
}

// Random operations on a small domain starting at `base`, so that inserts
// touch, overlap and bridge existing ranges; compared against std::set.
void random_compare(std::uint64_t base, std::uint64_t domain, std::size_t max_ranges, std::uint32_t seed)
{
    std::mt19937 rng(seed);
    SeqRanges sr(max_ranges);
    std::set<std::uint64_t> model;
    auto pick = [&] { return base + rng() % domain; };
    for (int op = 0; op < 5000; ++op) {
        const unsigned kind = rng() % 100;
        if (kind < 45) {
            const std::uint64_t v = pick();
            sr.insert(v);
            model_insert(model, v, v, max_ranges);
        } else if (kind < 85) {
            std::uint64_t a = pick(), b = a + rng() % 6;
            if (b < a || b >= base + domain)
                b = base + domain - 1;
            sr.insert(a, b);
            model_insert(model, a, b, max_ranges);
        } else if (kind < 88) {
            const std::uint64_t floor = pick();
            sr.erase_below(floor);
            model.erase(model.begin(), model.lower_bound(floor));
        } else if (kind < 89) {
            sr.clear();
            model.clear();
        } else {
            const std::uint64_t v = pick();
            REQUIRE(sr.contains(v) == (model.count(v) != 0));
        }
        check_same(sr, model);
        const std::size_t want = rng() % 4;
        auto tail = sr.ranges(want);
        const auto all = ranges_of(model);
        const std::size_t n = std::min(want, all.size());
        REQUIRE(tail == std::vector<SeqRange>(all.end() - static_cast<std::ptrdiff_t>(n), all.end()));
    }
    for (std::uint64_t i = 0; i < domain; ++i)
        REQUIRE(sr.contains(base + i) == (model.count(base + i) != 0));
}

} // namespace

TEST_CASE("seq ranges: inserting single numbers merges adjacent ones")
{
    SeqRanges s;
    CHECK(s.empty());
    CHECK_FALSE(s.newest());
    s.insert(5);
    s.insert(7);
    CHECK(s.ranges() == std::vector<SeqRange>{{5, 5}, {7, 7}});
    s.insert(6); // bridges the two
    CHECK(s.ranges() == std::vector<SeqRange>{{5, 7}});
    s.insert(4); // touches from below
    s.insert(8); // touches from above
    CHECK(s.ranges() == std::vector<SeqRange>{{4, 8}});
    s.insert(6); // inside: nothing changes
    CHECK(s.ranges() == std::vector<SeqRange>{{4, 8}});
    CHECK(s.newest() == 8u);
    CHECK_FALSE(s.empty());
}

TEST_CASE("seq ranges: a range overlapping or bridging several ranges merges them all")
{
    SeqRanges s;
    s.insert(10, 12);
    s.insert(20, 22);
    s.insert(30, 32);
    s.insert(40, 42);
    CHECK(s.range_count() == 4);
    s.insert(11, 31); // overlaps the first three
    CHECK(s.ranges() == std::vector<SeqRange>{{10, 32}, {40, 42}});
    s.insert(33, 39); // fills the gap exactly
    CHECK(s.ranges() == std::vector<SeqRange>{{10, 42}});
    s.insert(12, 20); // inside
    CHECK(s.ranges() == std::vector<SeqRange>{{10, 42}});
    s.insert(5, 50); // covers everything
    CHECK(s.ranges() == std::vector<SeqRange>{{5, 50}});
    s.insert(52, 60); // a gap of one stays a gap
    CHECK(s.ranges() == std::vector<SeqRange>{{5, 50}, {52, 60}});
    s.insert(9, 3); // first > last: ignored
    CHECK(s.ranges() == std::vector<SeqRange>{{5, 50}, {52, 60}});
}

TEST_CASE("seq ranges: 0 and UINT64_MAX are ordinary members")
{
    SeqRanges s;
    s.insert(0);
    s.insert(1, 3);
    CHECK(s.ranges() == std::vector<SeqRange>{{0, 3}});
    CHECK(s.contains(0));
    CHECK_FALSE(s.contains(4));

    s.insert(kMax);
    CHECK(s.contains(kMax));
    CHECK_FALSE(s.contains(kMax - 1));
    CHECK(s.newest() == kMax);
    s.insert(kMax - 3, kMax - 2);
    CHECK(s.ranges() == std::vector<SeqRange>{{0, 3}, {kMax - 3, kMax - 2}, {kMax, kMax}});
    s.insert(kMax - 1); // bridges up to the top
    CHECK(s.ranges() == std::vector<SeqRange>{{0, 3}, {kMax - 3, kMax}});
    s.insert(kMax - 10, kMax); // overlaps a range ending at the top
    CHECK(s.ranges() == std::vector<SeqRange>{{0, 3}, {kMax - 10, kMax}});
    s.insert(kMax - 5, kMax - 4); // inside a range ending at the top
    CHECK(s.ranges() == std::vector<SeqRange>{{0, 3}, {kMax - 10, kMax}});
    s.insert(2, kMax - 11); // touches both
    CHECK(s.ranges() == std::vector<SeqRange>{{0, kMax}});
    CHECK(s.contains(kMax / 2));
    s.erase_below(kMax);
    CHECK(s.ranges() == std::vector<SeqRange>{{kMax, kMax}});
}

TEST_CASE("seq ranges: contains answers at range edges and in gaps")
{
    SeqRanges s;
    CHECK_FALSE(s.contains(0));
    s.insert(10, 20);
    s.insert(30, 30);
    for (std::uint64_t v = 0; v < 40; ++v)
        CHECK(s.contains(v) == ((v >= 10 && v <= 20) || v == 30));
}

TEST_CASE("seq ranges: erase_below drops whole ranges and cuts the one the floor falls in")
{
    SeqRanges s;
    s.insert(1, 5);
    s.insert(10, 20);
    s.insert(30, 40);
    s.erase_below(0);
    CHECK(s.range_count() == 3);
    s.erase_below(1); // the floor at a range's start: nothing goes
    CHECK(s.ranges() == std::vector<SeqRange>{{1, 5}, {10, 20}, {30, 40}});
    s.erase_below(15); // first gone, second cut
    CHECK(s.ranges() == std::vector<SeqRange>{{15, 20}, {30, 40}});
    CHECK_FALSE(s.contains(14));
    CHECK(s.contains(15));
    s.erase_below(25); // the floor in a gap
    CHECK(s.ranges() == std::vector<SeqRange>{{30, 40}});
    s.erase_below(40); // only the last number stays
    CHECK(s.ranges() == std::vector<SeqRange>{{40, 40}});
    s.erase_below(41);
    CHECK(s.empty());
    CHECK_FALSE(s.newest());
}

TEST_CASE("seq ranges: ranges(max) returns the newest ranges ascending")
{
    SeqRanges s;
    for (std::uint64_t i = 0; i < 6; ++i)
        s.insert(i * 10, i * 10 + 2);
    CHECK(s.ranges().size() == 6);
    CHECK(s.ranges(0).empty());
    CHECK(s.ranges(1) == std::vector<SeqRange>{{50, 52}});
    CHECK(s.ranges(3) == std::vector<SeqRange>{{30, 32}, {40, 42}, {50, 52}});
    CHECK(s.ranges(6) == s.ranges());
    CHECK(s.ranges(100) == s.ranges());
}

TEST_CASE("seq ranges: beyond max_ranges the oldest ranges are dropped")
{
    SeqRanges s(3);
    for (std::uint64_t i = 0; i < 5; ++i)
        s.insert(i * 10);
    CHECK(s.ranges() == std::vector<SeqRange>{{20, 20}, {30, 30}, {40, 40}});
    CHECK_FALSE(s.contains(0));
    CHECK_FALSE(s.contains(10));
    s.insert(21); // a merge does not add a range: nothing dropped
    CHECK(s.ranges() == std::vector<SeqRange>{{20, 21}, {30, 30}, {40, 40}});
    s.insert(5); // an insert below everything is itself the oldest
    CHECK(s.ranges() == std::vector<SeqRange>{{20, 21}, {30, 30}, {40, 40}});
    s.insert(22, 29); // merging frees a slot
    s.insert(50);
    CHECK(s.ranges() == std::vector<SeqRange>{{20, 30}, {40, 40}, {50, 50}});
    CHECK(s.range_count() == 3);
}

TEST_CASE("seq ranges: random inserts and erases match a std::set")
{
    SECTION("unbounded, near 0") { random_compare(0, 120, SIZE_MAX, 12345); }
    SECTION("unbounded, near UINT64_MAX") { random_compare(kMax - 119, 120, SIZE_MAX, 777); }
    SECTION("bounded to 4 ranges") { random_compare(0, 120, 4, 4242); }
    SECTION("bounded to 1 range, near UINT64_MAX") { random_compare(kMax - 59, 60, 1, 99); }
}

TEST_CASE("live window: add, get and has")
{
    LiveWindow w(10, 1 << 20);
    CHECK(w.size() == 0);
    CHECK(w.bytes() == 0);
    CHECK_FALSE(w.newest());
    CHECK_FALSE(w.oldest());
    CHECK(w.floor() == 0);
    CHECK(w.max_pieces() == 10);

    auto p = piece(3, 100);
    CHECK(w.add(p));
    CHECK(w.has(3));
    CHECK_FALSE(w.has(2));
    CHECK(w.get(3) == p);
    CHECK(w.get(4) == nullptr);
    CHECK(w.add(piece(5, 50)));
    CHECK(w.size() == 2);
    CHECK(w.bytes() == 150);
    CHECK(w.newest() == 5u);
    CHECK(w.oldest() == 3u);
    CHECK(w.held().ranges() == std::vector<SeqRange>{{3, 3}, {5, 5}});
    CHECK_FALSE(w.add(nullptr));
    CHECK(w.size() == 2);
}

TEST_CASE("live window: a duplicate is refused and the first piece kept")
{
    LiveWindow w(10, 1 << 20);
    auto first = piece(7, 40);
    REQUIRE(w.add(first));
    CHECK_FALSE(w.add(piece(7, 90)));
    CHECK(w.get(7) == first);
    CHECK(w.size() == 1);
    CHECK(w.bytes() == 40);
}

TEST_CASE("live window: the window slides as the newest advances and older pieces are refused")
{
    LiveWindow w(4, 1 << 20);
    for (std::uint64_t s = 0; s < 4; ++s)
        REQUIRE(w.add(piece(s)));
    CHECK(w.floor() == 0);
    CHECK(w.size() == 4);
    REQUIRE(w.add(piece(4)));
    CHECK(w.floor() == 1); // newest - max_pieces + 1
    CHECK_FALSE(w.has(0));
    CHECK(w.oldest() == 1u);
    CHECK_FALSE(w.add(piece(0))); // below the floor
    CHECK_FALSE(w.has(0));

    REQUIRE(w.add(piece(100))); // a jump: everything before 97 goes
    CHECK(w.floor() == 97);
    CHECK(w.size() == 1);
    CHECK(w.bytes() == 10);
    CHECK(w.held().ranges() == std::vector<SeqRange>{{100, 100}});
    CHECK_FALSE(w.add(piece(96)));
    CHECK(w.add(piece(97))); // the floor itself is inside
    CHECK(w.add(piece(99)));
    CHECK(w.held().ranges() == std::vector<SeqRange>{{97, 97}, {99, 100}});
    CHECK(w.add(piece(101)));
    CHECK(w.floor() == 98);
    CHECK_FALSE(w.has(97));
    CHECK(w.held().ranges() == std::vector<SeqRange>{{99, 101}});
    CHECK(w.bytes() == 30);
}

TEST_CASE("live window: max_pieces 0 keeps one piece")
{
    LiveWindow w(0, 1 << 20);
    CHECK(w.max_pieces() == 1);
    REQUIRE(w.add(piece(5)));
    REQUIRE(w.add(piece(6)));
    CHECK(w.size() == 1);
    CHECK(w.floor() == 6);
    CHECK_FALSE(w.add(piece(5)));
}

TEST_CASE("live window: the byte cap drops the oldest but never the newest")
{
    LiveWindow w(100, 1000);
    REQUIRE(w.add(piece(1, 400)));
    REQUIRE(w.add(piece(2, 400)));
    CHECK(w.bytes() == 800);
    REQUIRE(w.add(piece(3, 400))); // 1200 > 1000: piece 1 goes
    CHECK_FALSE(w.has(1));
    CHECK(w.size() == 2);
    CHECK(w.bytes() == 800);
    CHECK(w.floor() == 2);
    CHECK_FALSE(w.add(piece(1, 10))); // dropped pieces do not come back

    REQUIRE(w.add(piece(4, 5000))); // alone over the cap: kept, all older go
    CHECK(w.size() == 1);
    CHECK(w.has(4));
    CHECK(w.bytes() == 5000);
    CHECK(w.held().ranges() == std::vector<SeqRange>{{4, 4}});

    REQUIRE(w.add(piece(6, 100))); // the big one goes, the newest stays
    CHECK(w.size() == 1);
    CHECK(w.has(6));
    CHECK(w.bytes() == 100);
    // An older piece that would push over the cap is the oldest: it does not stay.
    REQUIRE(w.add(piece(7, 850)));
    CHECK_FALSE(w.add(piece(5, 100)));
    CHECK_FALSE(w.has(5));
    CHECK(w.has(6));
    CHECK(w.has(7));
    CHECK(w.bytes() == 950);
    CHECK(w.held().ranges() == std::vector<SeqRange>{{6, 7}});
}

TEST_CASE("live window: the window slides up to sequence UINT64_MAX")
{
    LiveWindow w(4, 1 << 20);
    REQUIRE(w.add(piece(kMax - 10)));
    CHECK(w.floor() == kMax - 13);
    REQUIRE(w.add(piece(kMax - 1)));
    CHECK(w.floor() == kMax - 4);
    CHECK_FALSE(w.has(kMax - 10));
    REQUIRE(w.add(piece(kMax)));
    CHECK(w.newest() == kMax);
    CHECK(w.floor() == kMax - 3); // newest - max_pieces + 1
    CHECK(w.size() == 2);
    CHECK_FALSE(w.add(piece(kMax - 4)));
    CHECK(w.held().ranges() == std::vector<SeqRange>{{kMax - 1, kMax}});
}

TEST_CASE("live window: random adds keep held, has, bytes and the bounds consistent")
{
    std::mt19937 rng(2024);
    const std::uint64_t max_pieces = 16;
    const std::size_t max_bytes = 3000;
    LiveWindow w(max_pieces, max_bytes);
    std::uint64_t top = 0;
    std::optional<std::uint64_t> newest_accepted;
    int accepted = 0, refused = 0, dropped_for_bytes = 0;
    for (int op = 0; op < 4000; ++op) {
        // Mostly near the front, sometimes a jump ahead or a stale one.
        const unsigned k = rng() % 100;
        std::uint64_t seq;
        if (k < 5)
            top += 10 + rng() % 30;
        else if (k < 60)
            top += rng() % 2;
        seq = k < 90 ? top - std::min<std::uint64_t>(top, rng() % 8) : top - std::min<std::uint64_t>(top, rng() % 40);
        const std::size_t size = 1 + rng() % 600;
        const bool had = w.has(seq);
        const std::uint64_t floor_before = w.floor();
        const std::size_t bytes_before = w.bytes();
        const bool ok = w.add(piece(seq, size));
        if (had || seq < floor_before) {
            REQUIRE_FALSE(ok);
            REQUIRE(w.bytes() == bytes_before);
            REQUIRE(w.floor() == floor_before);
            ++refused;
        } else if (ok) {
            ++accepted;
            REQUIRE(w.has(seq));
            REQUIRE(w.get(seq)->data.size() == size);
            if (!newest_accepted || seq > *newest_accepted)
                newest_accepted = seq;
        } else {
            ++dropped_for_bytes; // an old piece over the byte cap
            REQUIRE_FALSE(w.has(seq));
        }
        REQUIRE(w.newest() == newest_accepted); // the newest is never dropped
        REQUIRE(w.floor() + max_pieces >= *newest_accepted + 1);
        REQUIRE(w.floor() >= floor_before);
        REQUIRE(w.size() <= max_pieces);
        REQUIRE((w.bytes() <= max_bytes || w.size() == 1));
        std::size_t sum = 0, count = 0;
        const std::uint64_t lo = w.floor() > 50 ? w.floor() - 50 : 0;
        for (std::uint64_t s = lo; s <= *newest_accepted + 2; ++s) {
            REQUIRE(w.held().contains(s) == w.has(s));
            if (w.has(s)) {
                REQUIRE(s >= w.floor());
                REQUIRE(w.get(s)->sequence == s);
                sum += w.get(s)->data.size();
                ++count;
            }
        }
        REQUIRE(count == w.size());
        REQUIRE(sum == w.bytes());
        if (w.size())
            REQUIRE(w.oldest() == w.held().ranges().front().first);
    }
    // The mix exercised every branch.
    CHECK(accepted > 500);
    CHECK(refused > 100);
    CHECK(dropped_for_bytes > 0);
}
