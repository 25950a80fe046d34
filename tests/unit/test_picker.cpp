#include "transport/picker.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <initializer_list>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <tuple>
#include <vector>

using openace::Errc;
using openace::transport::Bitfield;
using openace::transport::Picker;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t kBlock = 16384;
const Picker::clock::time_point t0{std::chrono::seconds(1000)};

Bitfield bits(std::uint32_t n, std::initializer_list<std::uint32_t> set)
{
    Bitfield b(n);
    for (auto i : set)
        b.set(i);
    return b;
}

std::vector<std::uint32_t> pieces_of(const std::vector<Picker::Block> &blocks)
{
    std::vector<std::uint32_t> out;
    for (const auto &b : blocks)
        out.push_back(b.piece);
    return out;
}

bool contains(const std::vector<Picker::Block> &blocks, const Picker::Block &b)
{
    return std::find(blocks.begin(), blocks.end(), b) != blocks.end();
}

// Receives every block and marks the verified pieces had.
void deliver(Picker &pk, Picker::PeerKey peer, const std::vector<Picker::Block> &blocks)
{
    for (const auto &b : blocks) {
        bool fresh = false;
        pk.block_received(peer, b, &fresh);
        REQUIRE(fresh);
        if (pk.piece_blocks_complete(b.piece))
            pk.set_have(b.piece);
    }
}

bool invalid_arg(const std::function<void()> &f)
{
    try {
        f();
    } catch (const openace::Error &e) {
        return e.code() == Errc::INVAL && e.component() == "picker";
    }
    return false;
}

} // namespace

TEST_CASE("picker: rarest piece is requested before commoner ones")
{
    // One block per piece.  A is a seed; B, C, D hold subsets, so piece 1 is
    // on 1 peer, piece 2 on 2, piece 3 on 3 and piece 0 on 4.
    Picker pk(4, kBlock, 4 * kBlock);
    pk.add_peer_have_all(1);
    pk.add_peer(2, bits(4, {0, 2, 3}));
    pk.add_peer(3, bits(4, {0, 3}));
    pk.add_peer(4, bits(4, {0}));
    CHECK(pk.availability(0) == 4);
    CHECK(pk.availability(1) == 1);
    CHECK(pk.availability(2) == 2);
    CHECK(pk.availability(3) == 3);
    CHECK(pieces_of(pk.pick(1, 4, t0)) == std::vector<std::uint32_t>{1, 2, 3, 0});
    CHECK(pk.consistent());

    // Availability moves pieces between buckets incrementally: after D
    // leaves and C announces piece 1, piece 0 (3 peers) ranks after piece 1 (2).
    Picker pk2(4, kBlock, 4 * kBlock);
    pk2.add_peer(2, bits(4, {0, 1}));
    pk2.add_peer(3, bits(4, {0}));
    pk2.add_peer(4, bits(4, {0}));
    pk2.peer_have(3, 1);
    pk2.remove_peer(4);
    CHECK(pk2.availability(0) == 2);
    CHECK(pk2.availability(1) == 2);
    pk2.peer_have(4, 0); // unknown peer: added with this piece only
    CHECK(pk2.availability(0) == 3);
    CHECK(pieces_of(pk2.pick(2, 2, t0)) == std::vector<std::uint32_t>{1, 0});
    CHECK(pk2.consistent());
}

TEST_CASE("picker: equally rare pieces come in a fixed pseudo-random order per seed")
{
    auto sequence = [](std::uint64_t seed) {
        Picker pk(64, kBlock, 64 * kBlock, 16384, seed);
        pk.add_peer_have_all(1);
        std::vector<std::uint32_t> seq;
        for (int i = 0; i < 64; ++i)
            for (auto p : pieces_of(pk.pick(1, 1, t0)))
                seq.push_back(p);
        return seq;
    };
    const auto a = sequence(7);
    auto sorted = a;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::uint32_t> all(64);
    std::iota(all.begin(), all.end(), 0u);
    CHECK(sorted == all);           // every piece once
    CHECK(a != all);                // not index order
    CHECK(sequence(7) == a);        // deterministic
    CHECK(sequence(8) != a);        // differs between Pickers seeded differently
}

TEST_CASE("picker: pieces outside the wanted range are never picked")
{
    const std::int64_t pl = 2 * kBlock;
    const std::int64_t total = 10 * pl - 100;
    Picker pk(10, pl, total);
    pk.add_peer_have_all(1);
    pk.set_wanted(40000, 100000);
    const std::uint32_t first = 40000 / pl, end = (100000 + pl - 1) / pl; // pieces overlapping the range
    REQUIRE(first == 1);
    REQUIRE(end == 4);
    CHECK(!pk.complete());
    const auto got = pk.pick(1, 1000, t0);
    CHECK(got.size() == (end - first) * 2);
    for (const auto &b : got) {
        CHECK(b.piece >= first);
        CHECK(b.piece < end);
    }
    CHECK(pk.pick(1, 1000, t0).empty()); // no duplicates to the same peer, nothing else wanted
    deliver(pk, 1, got);
    CHECK(pk.complete());
    CHECK(pk.have().count() == end - first);
    CHECK(!pk.have().test(0));
    CHECK(!pk.have().test(4));

    pk.set_wanted(0, total);
    CHECK(!pk.complete());
    CHECK(pk.is_wanted(9));
    pk.set_wanted(5, 5);
    CHECK(pk.complete());
    CHECK(pk.pick(1, 10, t0).empty());
    CHECK(invalid_arg([&] { pk.set_wanted(-1, 5); }));
    CHECK(invalid_arg([&] { pk.set_wanted(6, 5); }));
    CHECK(invalid_arg([&] { pk.set_wanted(0, total + 1); }));
    CHECK(pk.consistent());
}

TEST_CASE("picker: time-critical pieces come first and in deadline order")
{
    const std::int64_t pl = kBlock; // one block per piece
    Picker pk(100, pl, 100 * pl);
    pk.add_peer_have_all(1);
    pk.add_peer(2, bits(100, {5})); // makes every other piece rarer than 5: irrelevant for critical ones
    // Reader 1: inside piece 20, 3 pieces of window at one piece per second:
    // pieces 20..23, deadlines 0, (pl-100)/pl, (2pl-100)/pl, (3pl-100)/pl s.
    pk.set_reader(1, 20 * pl + 100, 3 * pl, double(pl), t0);
    // Reader 2: at piece 50, 2 pieces at two pieces per second: 50 (0 s), 51 (0.5 s).
    pk.set_reader(2, 50 * pl, 2 * pl, 2.0 * pl, t0);
    for (std::uint32_t p : {20u, 21u, 22u, 23u, 50u, 51u})
        CHECK(pk.is_time_critical(p));
    CHECK(!pk.is_time_critical(19));
    CHECK(!pk.is_time_critical(24));
    CHECK(pk.deadline(20) == t0);
    CHECK(pk.deadline(51) == t0 + 500ms);
    CHECK(pk.deadline(21) > t0 + 990ms);
    CHECK(pk.deadline(21) < t0 + 1s);
    CHECK(pk.deadline(19) == Picker::clock::time_point::max());

    const auto got = pieces_of(pk.pick(1, 7, t0));
    REQUIRE(got.size() == 7);
    // Ties (20 and 50 both due now) go by piece index.
    CHECK(std::vector<std::uint32_t>(got.begin(), got.begin() + 6) ==
          std::vector<std::uint32_t>{20, 50, 51, 21, 22, 23});
    CHECK(!pk.is_time_critical(got[6]));
    for (std::size_t i = 1; i < 6; ++i)
        CHECK(pk.deadline(got[i - 1]) <= pk.deadline(got[i]));
    CHECK(pk.status()["time_critical"] == 6);
    CHECK(pk.status()["readers"].size() == 2);
    CHECK(pk.consistent());
}

TEST_CASE("picker: a late time-critical block is re-requested from another peer")
{
    const std::int64_t pl = 2 * kBlock;
    Picker pk(10, pl, 10 * pl);
    for (Picker::PeerKey k : {1, 2, 3})
        pk.add_peer_have_all(k);
    pk.set_reader(0, 0, pl, double(pl), t0); // piece 0 only
    const Picker::Block b0{0, 0, kBlock}, b1{0, kBlock, kBlock};
    CHECK(pk.pick(1, 2, t0) == std::vector<Picker::Block>{b0, b1});

    // Not late yet (late means more than late_after): B gets other pieces.
    for (auto b : pk.pick(2, 2, t0 + 2000ms, 2000ms))
        CHECK(b.piece != 0);
    // Late: B gets a duplicate of b0 only (max 1).
    CHECK(pk.pick(2, 1, t0 + 2001ms, 2000ms) == std::vector<Picker::Block>{b0});
    CHECK(contains(pk.outstanding(1), b0));
    // C: b0 was asked again at +2001 ms, so it is not late; b1 still is.
    CHECK(pk.pick(3, 1, t0 + 2500ms, 2000ms) == std::vector<Picker::Block>{b1});
    // A is never asked twice for its own blocks.
    for (auto b : pk.pick(1, 20, t0 + 10s, 2000ms))
        CHECK(b.piece != 0);

    bool fresh = false;
    CHECK(pk.block_received(2, b0, &fresh) == std::vector<Picker::PeerKey>{1});
    CHECK(fresh);
    CHECK(!contains(pk.outstanding(1), b0));
    CHECK(pk.block_received(1, b0, &fresh).empty()); // A's answer to the cancelled request
    CHECK(!fresh);
    CHECK(pk.block_received(1, b1, &fresh) == std::vector<Picker::PeerKey>{3});
    CHECK(fresh);
    CHECK(pk.piece_blocks_complete(0));
    CHECK(pk.consistent());
}

TEST_CASE("picker: moving or removing a reader clears old deadlines")
{
    const std::int64_t pl = kBlock;
    Picker pk(100, pl, 100 * pl);
    pk.set_reader(1, 0, 4 * pl, double(pl), t0);
    for (std::uint32_t p = 0; p < 4; ++p)
        CHECK(pk.is_time_critical(p));
    CHECK(!pk.is_time_critical(4));

    pk.set_reader(1, 10 * pl, 4 * pl, double(pl), t0 + 10s); // advance
    for (std::uint32_t p = 0; p < 4; ++p) {
        CHECK(!pk.is_time_critical(p));
        CHECK(pk.deadline(p) == Picker::clock::time_point::max());
    }
    for (std::uint32_t p = 10; p < 14; ++p)
        CHECK(pk.is_time_critical(p));
    CHECK(pk.deadline(10) == t0 + 10s);

    pk.set_reader(2, 0, 2 * pl, double(pl), t0 + 10s);
    CHECK(pk.is_time_critical(0));
    pk.remove_reader(2);
    CHECK(!pk.is_time_critical(0));
    CHECK(pk.is_time_critical(10));
    pk.remove_reader(1);
    CHECK(pk.status()["time_critical"] == 0);
    for (std::uint32_t p = 0; p < 100; ++p)
        CHECK(!pk.is_time_critical(p));

    pk.set_reader(3, 100 * pl, 4 * pl, double(pl), t0); // at the end: empty window
    CHECK(pk.status()["time_critical"] == 0);
    pk.set_reader(3, 98 * pl, 40 * pl, double(pl), t0); // clipped at the end
    CHECK(pk.status()["time_critical"] == 2);
    CHECK(invalid_arg([&] { pk.set_reader(4, -1, pl, 1.0, t0); }));
    CHECK(invalid_arg([&] { pk.set_reader(4, 0, -1, 1.0, t0); }));
    CHECK(invalid_arg([&] { pk.set_reader(4, 0, pl, 0.0, t0); }));
    CHECK(invalid_arg([&] { pk.set_reader(4, 100 * pl + 1, pl, 1.0, t0); }));
    CHECK(pk.consistent());
}

TEST_CASE("picker: a seek far ahead makes the far pieces critical")
{
    const std::int64_t pl = kBlock;
    Picker pk(100, pl, 100 * pl);
    pk.add_peer_have_all(1);
    pk.add_peer_have_all(2);
    pk.set_reader(1, 0, 2 * pl, double(pl), t0);
    CHECK(pieces_of(pk.pick(1, 2, t0)) == std::vector<std::uint32_t>{0, 1});
    pk.set_reader(1, 90 * pl, 3 * pl, double(pl), t0 + 1s);
    CHECK(pk.is_time_critical(90));
    CHECK(!pk.is_time_critical(0));
    CHECK(pieces_of(pk.pick(2, 3, t0 + 1s)) == std::vector<std::uint32_t>{90, 91, 92});
    CHECK(pk.consistent());
}

TEST_CASE("picker: dropped, choked and removed requests go back to the pool")
{
    const std::int64_t pl = 4 * kBlock;
    Picker pk(2, pl, 2 * pl);
    pk.add_peer(1, bits(2, {0}));
    pk.add_peer(2, bits(2, {0}));
    const auto a = pk.pick(1, 10, t0);
    REQUIRE(a.size() == 4);
    CHECK(pk.outstanding_count(1) == 4);
    CHECK(!pk.endgame()); // piece 1 is not requested (nobody has it)
    CHECK(pk.pick(2, 10, t0).empty());

    pk.request_dropped(1, a[1]);
    pk.request_dropped(1, a[1]);                   // twice: ignored
    pk.request_dropped(1, Picker::Block{0, 5, 1}); // malformed: ignored
    pk.request_dropped(9, a[0]);                   // unknown peer: ignored
    CHECK(pk.outstanding_count(1) == 3);
    CHECK(pk.pick(2, 10, t0) == std::vector<Picker::Block>{a[1]});
    // A's answer to the dropped request still arrives: taken, and B is cancelled.
    bool fresh = false;
    CHECK(pk.block_received(1, a[1], &fresh) == std::vector<Picker::PeerKey>{2});
    CHECK(fresh);
    CHECK(pk.outstanding_count(2) == 0);

    pk.peer_choked(1);
    CHECK(pk.outstanding(1).empty());
    const auto b = pk.pick(2, 10, t0);
    CHECK(b == std::vector<Picker::Block>{a[0], a[2], a[3]});

    pk.remove_peer(2);
    CHECK(pk.availability(0) == 1);
    CHECK(pk.outstanding_count(2) == 0);
    CHECK(pk.pick(1, 10, t0) == b);
    CHECK(pk.pick(2, 10, t0).empty()); // unknown peer
    CHECK(pk.consistent());
}

TEST_CASE("picker: a failed piece is requested again from scratch")
{
    Picker pk(1, 3 * kBlock, 3 * kBlock);
    pk.add_peer_have_all(1);
    const auto first = pk.pick(1, 10, t0);
    REQUIRE(first.size() == 3);
    for (const auto &b : first)
        pk.block_received(1, b);
    CHECK(pk.piece_blocks_complete(0));
    pk.piece_failed(0);
    CHECK(!pk.piece_blocks_complete(0));
    CHECK(!pk.have().test(0));
    CHECK(pk.pick(1, 10, t0) == first);
    bool fresh = false;
    for (const auto &b : first) {
        pk.block_received(1, b, &fresh);
        CHECK(fresh);
    }
    CHECK(pk.piece_blocks_complete(0));
    pk.set_have(0);
    CHECK(!pk.piece_blocks_complete(0));
    CHECK(pk.complete());
    CHECK(pk.consistent());
}

TEST_CASE("picker: block lengths of a short last piece are exact")
{
    const std::int64_t pl = 40000, total = 60000; // pieces of 40000 and 20000 bytes
    Picker pk(2, pl, total);
    CHECK(pk.blocks_in_piece(0) == 3);
    CHECK(pk.blocks_in_piece(1) == 2);
    CHECK(pk.piece_size(1) == total - pl);
    pk.add_peer_have_all(1);
    auto got = pk.pick(1, 100, t0);
    std::sort(got.begin(), got.end(),
              [](auto &x, auto &y) { return std::tie(x.piece, x.begin) < std::tie(y.piece, y.begin); });
    const std::vector<Picker::Block> expect{
        {0, 0, 16384}, {0, 16384, 16384}, {0, 32768, 40000 - 32768}, {1, 0, 16384}, {1, 16384, 20000 - 16384}};
    CHECK(got == expect);

    bool fresh = true;
    CHECK(pk.block_received(1, {1, 16384, 16384}, &fresh).empty()); // wrong length
    CHECK(!fresh);
    fresh = true;
    pk.block_received(1, {1, 100, 3616}, &fresh); // unaligned
    CHECK(!fresh);
    fresh = true;
    pk.block_received(1, {2, 0, 16384}, &fresh); // no such piece
    CHECK(!fresh);
    fresh = true;
    pk.block_received(1, {1, 32768, 16384}, &fresh); // past the end
    CHECK(!fresh);
    deliver(pk, 1, got);
    CHECK(pk.complete());
    CHECK(pk.consistent());
}

TEST_CASE("picker: endgame duplicates the last blocks to other peers")
{
    Picker pk(1, 2 * kBlock, 2 * kBlock);
    pk.add_peer_have_all(1);
    pk.add_peer_have_all(2);
    CHECK(!pk.endgame());
    const auto a = pk.pick(1, 2, t0);
    REQUIRE(a.size() == 2);
    CHECK(pk.endgame());
    CHECK(pk.pick(1, 5, t0).empty()); // never twice to the same peer
    CHECK(pk.pick(2, 5, t0) == a);
    bool fresh = false;
    CHECK(pk.block_received(1, a[0], &fresh) == std::vector<Picker::PeerKey>{2});
    CHECK(fresh);
    CHECK(pk.outstanding(2) == std::vector<Picker::Block>{a[1]});
    CHECK(pk.block_received(2, a[1], &fresh) == std::vector<Picker::PeerKey>{1});
    CHECK(pk.outstanding_count(1) == 0);
    CHECK(pk.outstanding_count(2) == 0);
    CHECK(pk.status()["endgame"] == true); // all received, not yet verified
    pk.set_have(0);
    CHECK(!pk.endgame());
    CHECK(pk.consistent());
}

TEST_CASE("picker: had pieces are skipped until cleared and complete follows have")
{
    Picker pk(4, kBlock, 4 * kBlock);
    pk.add_peer_have_all(1);
    CHECK(!pk.complete());
    pk.set_have(2);
    CHECK(pk.have().test(2));
    CHECK(pk.have().count() == 1);
    CHECK(pk.availability(2) == 1);
    auto got = pieces_of(pk.pick(1, 10, t0));
    std::sort(got.begin(), got.end());
    CHECK(got == std::vector<std::uint32_t>{0, 1, 3});
    pk.peer_choked(1);
    for (std::uint32_t p : {0u, 1u, 3u})
        pk.set_have(p);
    CHECK(pk.complete());
    CHECK(pk.pick(1, 10, t0).empty());
    pk.clear_have(2); // evicted
    CHECK(!pk.complete());
    CHECK(pieces_of(pk.pick(1, 10, t0)) == std::vector<std::uint32_t>{2});
    CHECK(pk.status()["missing"] == 1);
    CHECK(pk.status()["have"] == 3);
    CHECK(pk.status()["requested_blocks"] == 1);
    CHECK(pk.consistent());
}

TEST_CASE("picker: by_queue_length orders shortest queue first and keeps ties stable")
{
    CHECK(Picker::by_queue_length({{1, 5}, {2, 1}, {3, 5}, {4, 0}, {5, 1}}) ==
          std::vector<Picker::PeerKey>{4, 2, 5, 1, 3});
    CHECK(Picker::by_queue_length({}).empty());
}

TEST_CASE("picker: bad sizes and piece indices throw INVAL")
{
    CHECK(invalid_arg([] { Picker(3, kBlock, 2 * kBlock); }));
    CHECK(invalid_arg([] { Picker(1, 0, 10); }));
    CHECK(invalid_arg([] { Picker(1, 10, 0); }));
    CHECK(invalid_arg([] { Picker(1, 10, 10, 0); }));
    Picker pk(4, kBlock, 4 * kBlock);
    CHECK(invalid_arg([&] { pk.peer_have(1, 4); }));
    CHECK(invalid_arg([&] { pk.add_peer(1, Bitfield(5)); }));
    CHECK(invalid_arg([&] { pk.set_have(4); }));
    CHECK(invalid_arg([&] { pk.availability(4); }));
    CHECK(invalid_arg([&] { pk.piece_blocks_complete(4); }));
    CHECK(pk.consistent());
}

TEST_CASE("picker: random swarm downloads everything with consistent bookkeeping")
{
    int cancels = 0, failures = 0, late_or_endgame = 0;
    for (std::uint32_t round = 0; round < 12; ++round) {
        std::mt19937 rng(1234 + round);
        auto rnd = [&](std::uint32_t n) { return static_cast<std::uint32_t>(rng() % n); };
        const std::uint32_t bs = 1024;
        const std::int64_t pl = bs * (1 + rnd(5));
        const std::int64_t total = pl * (1 + rnd(40)) - rnd(static_cast<std::uint32_t>(pl));
        const auto n = static_cast<std::uint32_t>((total + pl - 1) / pl);
        Picker pk(n, pl, total, bs, round);
        INFO("round " << round << " pieces " << n << " piece_length " << pl << " total " << total);
        if (round % 3 == 1) {
            const auto span = static_cast<std::uint32_t>(total);
            const std::int64_t a = rnd(span), b = rnd(span);
            pk.set_wanted(std::min(a, b), std::max(a, b) + 1);
        }
        auto random_bits = [&] {
            Bitfield b(n);
            for (std::uint32_t i = 0; i < n; ++i)
                if (rnd(3) == 0)
                    b.set(i);
            return b;
        };
        pk.add_peer_have_all(0); // never leaves, so the download can finish
        Picker::PeerKey next_key = 1;
        std::vector<Picker::PeerKey> live{0};
        for (int i = 0; i < 6; ++i) {
            pk.add_peer(next_key, random_bits());
            live.push_back(next_key++);
        }
        std::map<std::tuple<std::uint32_t, std::uint32_t>, int> new_count; // (piece, begin) -> times new
        auto reset_piece = [&](std::uint32_t p) {
            for (auto it = new_count.begin(); it != new_count.end();)
                it = std::get<0>(it->first) == p ? new_count.erase(it) : std::next(it);
        };
        auto now = t0;
        int steps = 0;
        for (; !pk.complete() && steps < 20000; ++steps) {
            now += std::chrono::milliseconds(rnd(300));
            const Picker::PeerKey peer = live[rnd(static_cast<std::uint32_t>(live.size()))];
            const std::uint32_t op = rnd(100);
            if (op < 40) {
                const auto before = pk.outstanding(peer);
                for (const auto &b : pk.pick(peer, 1 + static_cast<int>(rnd(8)), now, 500ms)) {
                    CHECK(!pk.have().test(b.piece));
                    CHECK(pk.is_wanted(b.piece));
                    CHECK(new_count[{b.piece, b.begin}] == 0);
                    CHECK(!contains(before, b));
                    const auto askers = std::count_if(live.begin(), live.end(), [&](auto k) {
                                        return contains(pk.outstanding(k), b);
                                    });
                    late_or_endgame += askers > 1; // a duplicate (late or endgame) request
                }
            } else if (op < 80) {
                const auto out = pk.outstanding(peer);
                if (out.empty())
                    continue;
                const auto b = out[rnd(static_cast<std::uint32_t>(out.size()))];
                bool fresh = false;
                const auto cancel = pk.block_received(peer, b, &fresh);
                CHECK(fresh); // an outstanding request is always still needed
                CHECK(++new_count[{b.piece, b.begin}] == 1);
                cancels += static_cast<int>(cancel.size());
                for (auto other : cancel)
                    CHECK(!contains(pk.outstanding(other), b));
                if (pk.piece_blocks_complete(b.piece)) {
                    if (rnd(10) == 0) {
                        pk.piece_failed(b.piece);
                        reset_piece(b.piece);
                        ++failures;
                    } else {
                        pk.set_have(b.piece);
                    }
                }
            } else if (op < 85) {
                const auto out = pk.outstanding(peer);
                if (!out.empty())
                    pk.request_dropped(peer, out[rnd(static_cast<std::uint32_t>(out.size()))]);
            } else if (op < 88) {
                pk.peer_choked(peer);
            } else if (op < 91 && peer != 0) {
                pk.remove_peer(peer);
                live.erase(std::find(live.begin(), live.end(), peer));
                pk.add_peer(next_key, random_bits());
                live.push_back(next_key++);
            } else if (op < 95) {
                pk.peer_have(peer, rnd(n));
            } else if (op < 98) {
                pk.set_reader(static_cast<int>(rnd(2)), rnd(static_cast<std::uint32_t>(total)), 3 * pl,
                              double(pl), now);
            } else {
                const std::uint32_t p = rnd(n);
                if (pk.have().test(p)) {
                    pk.clear_have(p); // evicted
                    reset_piece(p);
                }
            }
            REQUIRE(pk.consistent());
        }
        CHECK(pk.complete());
        for (std::uint32_t p = 0; p < n; ++p)
            CHECK(pk.have().test(p) == pk.is_wanted(p));
        // Every block of every had piece arrived new exactly once.
        for (std::uint32_t p = 0; p < n; ++p)
            for (std::uint32_t i = 0; pk.have().test(p) && i < pk.blocks_in_piece(p); ++i)
                CHECK(new_count[{p, i * bs}] == 1);
    }
    // The run went through duplicate requests, cancels and hash failures.
    CHECK(late_or_endgame > 0);
    CHECK(cancels > 0);
    CHECK(failures > 0);
    WARN("picker random swarm: " << late_or_endgame << " duplicate requests, " << cancels << " cancels, "
                                 << failures << " failed pieces");
}

TEST_CASE("picker: timing of pick with 100k pieces and 50 peers")
{
    const std::uint32_t n = 100000;
    const std::int64_t pl = 16 * kBlock;
    using us = std::chrono::microseconds;
    const auto setup_start = std::chrono::steady_clock::now();
    Picker pk(n, pl, n * pl, 16384, 42);
    std::mt19937 rng(99);
    for (Picker::PeerKey k = 0; k < 50; ++k) {
        Bitfield b(n);
        for (std::uint32_t i = 0; i < n; ++i)
            if (rng() % 2)
                b.set(i);
        pk.add_peer(k, b);
    }
    pk.set_reader(0, 5000 * pl, 20 * pl, double(pl), t0);
    const auto setup = std::chrono::duration_cast<us>(std::chrono::steady_clock::now() - setup_start).count();

    // Each peer keeps up to 64 requests in flight; when over, its 16 oldest
    // arrive.  About 3200 blocks (200 pieces) are in flight at any time.
    auto arrive = [&](Picker::PeerKey k, std::size_t count) {
        const auto out = pk.outstanding(k);
        for (std::size_t i = 0; i < std::min(count, out.size()); ++i) {
            pk.block_received(k, out[i]);
            if (pk.piece_blocks_complete(out[i].piece))
                pk.set_have(out[i].piece);
        }
    };
    std::chrono::steady_clock::duration in_pick{};
    std::size_t picked = 0;
    auto now = t0;
    for (int call = 0; call < 10000; ++call) {
        now += 1ms;
        const auto k = static_cast<Picker::PeerKey>(call % 50);
        const auto s = std::chrono::steady_clock::now();
        picked += pk.pick(k, 16, now).size();
        in_pick += std::chrono::steady_clock::now() - s;
        if (pk.outstanding_count(k) > 64)
            arrive(k, 16);
    }
    CHECK(picked == 160000); // every call found 16 blocks
    CHECK(pk.have().count() >= 9000);
    for (std::uint32_t p = 5000; p < 5020; ++p)
        CHECK(pk.have().test(p)); // the window was served
    CHECK(pk.consistent());
    const auto total = std::chrono::duration_cast<us>(in_pick).count();
    WARN("picker timing: 100k pieces x 50 peers (50% each), 20-piece window, 64 requests in flight per peer: "
         "setup " << setup << " us, 10k pick(16) calls " << total << " us total, " << total / 10000.0
                  << " us per call");
}
