#include "media/chunk_ring.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using openace::media::Chunk;
using openace::media::ChunkRing;

namespace {

// A fake chunk: one 188-byte "TS packet" per n, no FFmpeg needed.
Chunk make_chunk(uint64_t seq, bool keyframe, double duration_s = 1.0, size_t packets = 1)
{
    Chunk c;
    c.seq = seq;
    c.first_pts = static_cast<int64_t>(seq) * 90000;
    c.duration_s = duration_s;
    c.keyframe = keyframe;
    c.data = std::make_shared<const std::string>(packets * 188, static_cast<char>('A' + seq % 26));
    return c;
}

ChunkRing::Options big_window()
{
    ChunkRing::Options o;
    o.window_seconds = 1000;
    return o;
}

// Drains every chunk a reader has now; returns their seqs.
std::vector<uint64_t> drain(ChunkRing::Reader& r)
{
    std::vector<uint64_t> seqs;
    while (auto c = r.next()) seqs.push_back(c->seq);
    return seqs;
}

} // namespace

TEST_CASE("chunk ring: a reader joins at the newest keyframe chunk")
{
    ChunkRing ring(big_window());
    ring.push(make_chunk(0, true));
    ring.push(make_chunk(1, false));
    ring.push(make_chunk(2, true));
    ring.push(make_chunk(3, false));
    auto r = ring.attach();
    REQUIRE(r->position() == 2);
    auto c = r->next();
    REQUIRE(c);
    CHECK(c->seq == 2);
    CHECK(c->keyframe);
    CHECK_FALSE(c->discontinuity);
    CHECK(drain(*r) == std::vector<uint64_t>{3});
    CHECK_FALSE(r->next());
    CHECK_FALSE(r->ended());
    CHECK(r->skipped() == 0);
}

TEST_CASE("chunk ring: with no keyframe yet a reader waits for the first keyframe chunk")
{
    ChunkRing ring(big_window());
    auto early = ring.attach(); // empty ring
    ring.push(make_chunk(0, false));
    ring.push(make_chunk(1, false));
    auto late = ring.attach();  // only non-keyframe chunks
    CHECK_FALSE(early->next());
    CHECK_FALSE(late->next());
    CHECK(late->position() == 2);
    ring.push(make_chunk(2, false));
    CHECK_FALSE(early->next());
    ring.push(make_chunk(3, true));
    ring.push(make_chunk(4, false));
    CHECK(drain(*early) == std::vector<uint64_t>{3, 4});
    CHECK(drain(*late) == std::vector<uint64_t>{3, 4});
    CHECK(early->skipped() == 0);
    CHECK(late->skipped() == 0);
}

TEST_CASE("chunk ring: from_seq joins at the first keyframe chunk at or after it")
{
    ChunkRing ring(big_window());
    for (uint64_t s = 0; s < 8; ++s) ring.push(make_chunk(s, s % 3 == 0)); // keyframes 0, 3, 6
    CHECK(ring.attach(1)->position() == 3);
    CHECK(drain(*ring.attach(1)) == std::vector<uint64_t>{3, 4, 5, 6, 7});
    CHECK(drain(*ring.attach(3)) == std::vector<uint64_t>{3, 4, 5, 6, 7});
    CHECK(drain(*ring.attach(0)) == std::vector<uint64_t>{0, 1, 2, 3, 4, 5, 6, 7});

    // Past the newest keyframe: waits for the next one.
    auto r = ring.attach(7);
    CHECK_FALSE(r->next());
    ring.push(make_chunk(8, false));
    CHECK_FALSE(r->next());
    ring.push(make_chunk(9, true));
    CHECK(drain(*r) == std::vector<uint64_t>{9});

    // In the future: waits for a keyframe at or after it.
    auto f = ring.attach(12);
    ring.push(make_chunk(10, true));
    ring.push(make_chunk(11, false));
    CHECK_FALSE(f->next());
    ring.push(make_chunk(12, true));
    CHECK(drain(*f) == std::vector<uint64_t>{12});
}

TEST_CASE("chunk ring: many readers each get every chunk in order from their start")
{
    ChunkRing ring(big_window());
    std::vector<std::shared_ptr<ChunkRing::Reader>> readers;
    std::vector<uint64_t> starts;
    std::vector<std::vector<uint64_t>> got(5);
    uint64_t seq = 0;
    for (int i = 0; i < 5; ++i) {
        ring.push(make_chunk(seq++, true));
        ring.push(make_chunk(seq++, false));
        readers.push_back(ring.attach());
        starts.push_back(seq - 2);
        // Readers read at different paces.
        for (int j = 0; j <= i; ++j)
            if (j % 2 == 0)
                for (auto& v : drain(*readers[static_cast<size_t>(j)])) got[static_cast<size_t>(j)].push_back(v);
    }
    for (int k = 0; k < 7; ++k) ring.push(make_chunk(seq++, k % 3 == 0));
    ring.close();
    REQUIRE(ring.readers() == 5);
    for (size_t i = 0; i < 5; ++i) {
        for (auto& v : drain(*readers[i])) got[i].push_back(v);
        std::vector<uint64_t> want;
        for (uint64_t s = starts[i]; s < seq; ++s) want.push_back(s);
        CHECK(got[i] == want);
        CHECK(readers[i]->ended());
        CHECK(readers[i]->skipped() == 0);
    }
}

TEST_CASE("chunk ring: a slow reader falls out of the window and skips to a keyframe with discontinuity")
{
    ChunkRing::Options o;
    o.window_seconds = 5; // 1-second chunks: 5 held
    ChunkRing ring(o);
    ring.push(make_chunk(0, true));
    auto slow = ring.attach();
    auto fast = ring.attach();
    REQUIRE(slow->next()->seq == 0);
    REQUIRE(fast->next()->seq == 0);
    // Keyframes every 4 chunks: 0, 4, 8, 12.
    for (uint64_t s = 1; s < 14; ++s) {
        ring.push(make_chunk(s, s % 4 == 0));
        REQUIRE(fast->next()->seq == s); // the ring never waits for the slow one
    }
    REQUIRE(ring.size() == 5);
    REQUIRE(ring.first_seq() == 9);
    REQUIRE(ring.last_seq() == 13);
    CHECK(slow->position() == 1);

    auto c = slow->next();
    REQUIRE(c);
    CHECK(c->seq == 12);          // oldest keyframe still held
    CHECK(c->keyframe);
    CHECK(c->discontinuity);
    CHECK(slow->skipped() == 11); // seqs 1..11 lost
    auto d = slow->next();
    REQUIRE(d);
    CHECK(d->seq == 13);
    CHECK_FALSE(d->discontinuity);
    CHECK_FALSE(slow->next());
    CHECK(fast->skipped() == 0);
}

TEST_CASE("chunk ring: a reader out of the window with no keyframe held waits and counts what it passes")
{
    ChunkRing::Options o;
    o.window_seconds = 2;
    ChunkRing ring(o);
    ring.push(make_chunk(0, true));
    auto r = ring.attach();
    for (uint64_t s = 1; s < 6; ++s) ring.push(make_chunk(s, false));
    REQUIRE(ring.first_seq() == 4);
    CHECK_FALSE(r->next());
    CHECK(r->skipped() == 6); // 0..5: none of them reached it
    ring.push(make_chunk(6, false));
    ring.push(make_chunk(7, true));
    auto c = r->next();
    REQUIRE(c);
    CHECK(c->seq == 7);
    CHECK(c->discontinuity);
    CHECK(r->skipped() == 7);
}

TEST_CASE("chunk ring: on_ready fires on push and on close, one-shot")
{
    ChunkRing ring(big_window());
    auto r = ring.attach();
    int fired = 0;
    r->on_ready([&] { ++fired; });
    ring.push(make_chunk(0, false)); // not a keyframe: nothing for the reader yet
    CHECK(fired == 0);
    ring.push(make_chunk(1, true));
    CHECK(fired == 1);
    ring.push(make_chunk(2, false)); // not re-armed
    CHECK(fired == 1);
    CHECK(drain(*r) == std::vector<uint64_t>{1, 2});

    // Re-arming from inside the callback works.
    r->on_ready([&] {
        ++fired;
        r->on_ready([&] { fired += 10; });
    });
    ring.push(make_chunk(3, false));
    CHECK(fired == 2);
    ring.push(make_chunk(4, false));
    CHECK(fired == 12);
    CHECK(drain(*r) == std::vector<uint64_t>{3, 4});

    bool closed_fired = false;
    r->on_ready([&] { closed_fired = true; });
    ring.close();
    CHECK(closed_fired);
    CHECK(r->ended());
}

TEST_CASE("chunk ring: a reader ends after close once everything is read")
{
    ChunkRing ring(big_window());
    ring.push(make_chunk(0, true));
    ring.push(make_chunk(1, false));
    auto r = ring.attach();
    ring.close();
    CHECK(ring.closed());
    CHECK_FALSE(r->ended()); // two chunks still to read
    CHECK(r->next()->seq == 0);
    CHECK_FALSE(r->ended());
    CHECK(r->next()->seq == 1);
    CHECK(r->ended());
    CHECK_FALSE(r->next());
    ring.push(make_chunk(2, true)); // ignored after close
    CHECK(ring.last_seq() == 1);
    CHECK(r->ended());

    // A reader attached after close with nothing to join ends at once.
    ChunkRing empty(big_window());
    empty.close();
    CHECK(empty.attach()->ended());
}

TEST_CASE("chunk ring: a reader outliving its ring ends after what it can still read")
{
    std::shared_ptr<ChunkRing::Reader> r;
    bool fired = false;
    {
        ChunkRing ring(big_window());
        ring.push(make_chunk(0, true));
        r = ring.attach();
        r->on_ready([&] { fired = true; });
    }
    CHECK(fired);
    CHECK(r->next()->seq == 0);
    CHECK(r->ended());
}

TEST_CASE("chunk ring: chunks older than the window are evicted oldest first")
{
    ChunkRing::Options o;
    o.window_seconds = 3;
    ChunkRing ring(o);
    for (uint64_t s = 0; s < 10; ++s) ring.push(make_chunk(s, true, 1.0));
    CHECK(ring.size() == 3);
    CHECK(ring.first_seq() == 7);
    CHECK(ring.last_seq() == 9);
    CHECK(ring.bytes() == 3 * 188);
    // A long chunk pushes out several short ones.
    ring.push(make_chunk(10, true, 2.5));
    CHECK(ring.first_seq() == 9);
    CHECK(ring.size() == 2);
    CHECK(ring.bytes() == 2 * 188);
}

TEST_CASE("chunk ring: chunks over max_bytes are evicted oldest first, keeping the newest")
{
    ChunkRing::Options o;
    o.window_seconds = 1000;
    o.max_bytes = 10 * 188;
    ChunkRing ring(o);
    for (uint64_t s = 0; s < 6; ++s) ring.push(make_chunk(s, true, 1.0, 3)); // 564 bytes each
    CHECK(ring.size() == 3);
    CHECK(ring.bytes() == 9 * 188);
    CHECK(ring.first_seq() == 3);
    ring.push(make_chunk(6, true, 1.0, 20)); // larger than max_bytes alone
    CHECK(ring.size() == 1);
    CHECK(ring.first_seq() == 6);
    CHECK(ring.bytes() == 20 * 188);
}

TEST_CASE("chunk ring: dropping a reader handle lowers readers()")
{
    ChunkRing ring(big_window());
    CHECK(ring.readers() == 0);
    auto a = ring.attach();
    auto b = ring.attach();
    {
        auto c = ring.attach();
        CHECK(ring.readers() == 3);
    }
    CHECK(ring.readers() == 2);
    a.reset();
    CHECK(ring.readers() == 1);
    ring.push(make_chunk(0, true)); // a dropped reader is skipped when notifying
    CHECK(b->next()->seq == 0);
    b.reset();
    CHECK(ring.readers() == 0);
}
