// HLS playlists (RFC 8216) built from chunks: the live sliding window, its
// discontinuities, and the VOD writer.  Pure logic over synthetic chunks.
#include "media/hls.hpp"
#include "media/media_job.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace openace::media;

namespace {

constexpr int64_t kT0 = 1'760'000'000'000; // some Unix ms

struct Maker {
    uint64_t seq = 0;
    int64_t wall = kT0;
    Chunk next(double duration, bool discontinuity = false)
    {
        Chunk c;
        c.seq = seq++;
        c.duration_s = duration;
        c.wall_clock_ms = wall;
        c.keyframe = true;
        c.discontinuity = discontinuity;
        c.data = std::make_shared<const std::string>(188, char(0x47));
        wall += int64_t(duration * 1000);
        return c;
    }
};

// One parsed media playlist.
struct Parsed {
    int version = -1, target = -1;
    int64_t media_seq = -1, disc_seq = 0;
    bool endlist = false, vod = false;
    struct Seg {
        double duration = 0;
        std::string uri;
        bool discontinuity = false;
        std::string pdt;
    };
    std::vector<Seg> segs;
    double total() const
    {
        double t = 0;
        for (auto &s : segs)
            t += s.duration;
        return t;
    }
};

Parsed parse(const std::string &text)
{
    Parsed p;
    std::istringstream in(text);
    std::string line;
    std::getline(in, line);
    REQUIRE(line == "#EXTM3U");
    Parsed::Seg cur;
    bool have_inf = false;
    auto value = [](const std::string &l) { return l.substr(l.find(':') + 1); };
    while (std::getline(in, line)) {
        if (line.rfind("#EXT-X-VERSION:", 0) == 0)
            p.version = std::stoi(value(line));
        else if (line.rfind("#EXT-X-TARGETDURATION:", 0) == 0)
            p.target = std::stoi(value(line));
        else if (line.rfind("#EXT-X-MEDIA-SEQUENCE:", 0) == 0)
            p.media_seq = std::stoll(value(line));
        else if (line.rfind("#EXT-X-DISCONTINUITY-SEQUENCE:", 0) == 0)
            p.disc_seq = std::stoll(value(line));
        else if (line == "#EXT-X-DISCONTINUITY")
            cur.discontinuity = true;
        else if (line.rfind("#EXT-X-PROGRAM-DATE-TIME:", 0) == 0)
            cur.pdt = value(line);
        else if (line.rfind("#EXTINF:", 0) == 0) {
            cur.duration = std::stod(value(line));
            have_inf = true;
        } else if (line == "#EXT-X-ENDLIST")
            p.endlist = true;
        else if (line == "#EXT-X-PLAYLIST-TYPE:VOD")
            p.vod = true;
        else if (!line.empty() && line[0] != '#') {
            REQUIRE(have_inf); // every URI has its EXTINF
            cur.uri = line;
            p.segs.push_back(cur);
            cur = {};
            have_inf = false;
        }
    }
    return p;
}

// Checks one snapshot against the rules and against what earlier snapshots
// said about the same segments.
struct Checker {
    int target = -1;
    int64_t last_media_seq = -1;
    std::map<int64_t, std::string> uri_of;     // media sequence -> URI
    std::map<int64_t, int64_t> dseq_of;        // media sequence -> discontinuity sequence
    std::map<int64_t, std::string> pdt_of;
    int discontinuity_tags = 0;

    void check(const Parsed &p, double produced_s)
    {
        REQUIRE(p.version >= 3);
        if (target < 0)
            target = p.target;
        CHECK(p.target == target); // fixed for the playlist's life
        CHECK(p.media_seq >= last_media_seq);
        last_media_seq = p.media_seq;
        int64_t dseq = p.disc_seq;
        for (size_t i = 0; i < p.segs.size(); ++i) {
            auto &s = p.segs[i];
            int64_t seq = p.media_seq + int64_t(i);
            CHECK(std::lround(s.duration) <= p.target);
            CHECK(!s.pdt.empty()); // EXT-X-PROGRAM-DATE-TIME on every segment
            if (s.discontinuity) {
                CHECK(i > 0);
                ++dseq;
                ++discontinuity_tags;
            }
            auto [u, new_uri] = uri_of.emplace(seq, s.uri);
            CHECK(u->second == s.uri); // a segment keeps its number and URI
            auto [d, new_d] = dseq_of.emplace(seq, dseq);
            CHECK(d->second == dseq); // discontinuity numbering is stable
            auto [t, new_t] = pdt_of.emplace(seq, s.pdt);
            CHECK(t->second == s.pdt);
        }
        // Never less than three target durations once that much exists
        // (RFC 8216 6.2.2), allowing for the segment still being built.
        if (produced_s >= 3.0 * p.target + 2 * p.target)
            CHECK(p.total() >= 3.0 * p.target - 1e-6);
    }
};

std::string temp_dir(const char *tag)
{
    std::string t = "/tmp/openace-hls-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-XXXXXX";
    REQUIRE(::mkdtemp(t.data()));
    return t;
}

} // namespace

TEST_CASE("hls: live playlist keeps a fixed target duration and at least three target durations while it slides")
{
    LivePlaylist pl({2.0, 0, 0, "seg/", ".ts", 0});
    CHECK(pl.target_duration() == 2);
    Maker m;
    Checker ck;
    double produced = 0;
    for (int i = 0; i < 60; ++i) {
        pl.add(m.next(1.0));
        produced += 1.0;
        ck.check(parse(pl.playlist()), produced);
    }
    auto p = parse(pl.playlist());
    CHECK(p.media_seq > 0); // it did slide
    CHECK(p.total() >= 6.0);
    CHECK(p.total() <= 6.0 + 2.0); // and does not grow without bound
    CHECK(p.segs.front().uri == "seg/" + std::to_string(p.media_seq) + ".ts");
    CHECK(!p.endlist);
    pl.end();
    CHECK(parse(pl.playlist()).endlist);
}

TEST_CASE("hls: a forced discontinuity gets EXT-X-DISCONTINUITY and is counted in the sequence once it leaves the window")
{
    LivePlaylist pl({2.0, 0, 0, "", ".ts", 0});
    Maker m;
    Checker ck;
    double produced = 0;
    for (int i = 0; i < 40; ++i) {
        // A source restart before chunk 13 and chunk 27; the one at 13 also
        // comes mid-segment (an odd chunk), which closes that segment early.
        bool disc = i == 13 || i == 27;
        if (disc)
            m.wall += 5000; // time went by during the reconnect
        pl.add(m.next(1.0, disc));
        produced += 1.0;
        auto p = parse(pl.playlist());
        ck.check(p, produced);
    }
    CHECK(ck.discontinuity_tags > 0);
    auto p = parse(pl.playlist());
    CHECK(p.disc_seq == 2); // both left the window or became its first segment
    CHECK(pl.discontinuity_sequence() == 2);
}

TEST_CASE("hls: program date time follows EXTINF inside a timeline and restarts from the wall clock after a discontinuity")
{
    LivePlaylist pl({2.0, 0, 60, "", ".ts", 0});
    Maker m;
    for (int i = 0; i < 6; ++i)
        pl.add(m.next(1.0));
    m.wall += 10'000;
    for (int i = 0; i < 4; ++i)
        pl.add(m.next(1.0, i == 0));
    auto *s0 = pl.segment(0);
    auto *s1 = pl.segment(1);
    auto *s3 = pl.segment(3);
    REQUIRE(s0);
    REQUIRE(s1);
    REQUIRE(s3);
    CHECK(s0->pdt_ms == kT0);
    CHECK(s1->pdt_ms == kT0 + 2000);
    CHECK(s3->discontinuity);
    CHECK(s3->pdt_ms == kT0 + 6000 + 10'000);
    CHECK(pl.playlist().find("#EXT-X-PROGRAM-DATE-TIME:2025-") != std::string::npos);
}

TEST_CASE("hls: chunks are grouped whole up to the segment duration and a long chunk stays one segment")
{
    LivePlaylist pl({2.0, 4.0, 0, "", ".ts", 0});
    CHECK(pl.target_duration() == 4);
    Maker m;
    for (int i = 0; i < 8; ++i)
        pl.add(m.next(0.5));
    pl.add(m.next(3.5)); // a late keyframe
    pl.add(m.next(0.5));
    pl.end();
    auto p = parse(pl.playlist());
    REQUIRE(p.segs.size() == 4);
    CHECK(p.segs[0].duration == Approx(2.0));
    CHECK(p.segs[1].duration == Approx(2.0));
    CHECK(p.segs[2].duration == Approx(3.5));
    CHECK(p.segs[3].duration == Approx(0.5));
    CHECK(pl.segment(0)->chunks.size() == 4);
    CHECK(LivePlaylist::segment_data(*pl.segment(0)).size() == 4 * 188);
    CHECK(pl.overlong() == 0);
}

TEST_CASE("hls: segments that left the window stay retrievable for a while, then go")
{
    LivePlaylist pl({1.0, 0, 0, "", ".ts", 0});
    Maker m;
    for (int i = 0; i < 30; ++i)
        pl.add(m.next(1.0));
    uint64_t first = pl.media_sequence();
    CHECK(first > 0);
    CHECK(pl.segment(first - 1) != nullptr); // just left: still served
    CHECK(pl.segment(0) == nullptr);         // long gone
    CHECK(pl.segment(first + pl.size()) == nullptr); // not made yet
}

TEST_CASE("hls: the VOD writer leaves segments, a VOD playlist with ENDLIST and no temporary files")
{
    auto dir = temp_dir("vod");
    {
        VodWriter w({dir + "/sub", "index.m3u8", "segment_", 2.0, false});
        Maker m;
        for (int i = 0; i < 7; ++i)
            w.add(m.next(1.0, i == 4));
        w.finish();
        CHECK(w.segments() == 4); // [0,1] [2,3] [4 (discontinuity),5] [6]
        CHECK(w.duration_s() == Approx(7.0));
        CHECK(w.bytes() == 7 * 188);
        CHECK(w.peak_bandwidth() > 0);
    }
    std::ifstream f(dir + "/sub/index.m3u8");
    std::stringstream ss;
    ss << f.rdbuf();
    auto p = parse(ss.str());
    CHECK(p.vod);
    CHECK(p.endlist);
    CHECK(p.media_seq == 0);
    REQUIRE(p.segs.size() == 4);
    CHECK(p.segs[0].uri == "segment_00000.ts");
    CHECK(p.segs[2].discontinuity);
    CHECK(p.target == 2);
    for (auto &e : std::filesystem::directory_iterator(dir + "/sub")) {
        CHECK(e.path().extension() != ".tmp");
        if (e.path().extension() == ".ts")
            CHECK(e.file_size() % 188 == 0);
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("hls: the VOD writer with background writes produces the same files and reports write failures")
{
    auto dir = temp_dir("vod-bg");
    {
        VodWriter w({dir, "index.m3u8", "seg", 1.0, false, true});
        Maker m;
        for (int i = 0; i < 20; ++i)
            w.add(m.next(1.0));
        w.finish();
        CHECK(w.segments() == 20);
    }
    size_t ts = 0;
    for (auto &e : std::filesystem::directory_iterator(dir)) {
        CHECK(e.path().extension() != ".tmp");
        ts += e.path().extension() == ".ts";
    }
    CHECK(ts == 20);
    std::ifstream f(dir + "/index.m3u8");
    std::stringstream ss;
    ss << f.rdbuf();
    CHECK(parse(ss.str()).segs.size() == 20);

    // A directory that vanishes under the writer: the error surfaces at the
    // next call, naming the file, and nothing crashes.
    VodWriter w({dir + "/gone", "index.m3u8", "seg", 1.0, false, true});
    std::filesystem::remove_all(dir + "/gone");
    Maker m;
    bool threw = false;
    try {
        for (int i = 0; i < 10; ++i)
            w.add(m.next(1.0));
        w.finish();
    } catch (const openace::Error &e) {
        threw = true;
        CHECK(e.code() == openace::Errc::IO);
        CHECK(std::string(e.what()).find(dir + "/gone/seg") != std::string::npos);
    }
    CHECK(threw);
    std::filesystem::remove_all(dir);
}

TEST_CASE("hls: a segment job spec with an unknown or bad field is rejected naming the field")
{
    using nlohmann::json;
    auto rejects = [](const json &spec, const std::string &field) {
        try {
            validate_segment_job(spec);
            FAIL("accepted " << spec.dump());
        } catch (const openace::Error &e) {
            CHECK(e.code() == openace::Errc::JOB);
            CHECK(std::string(e.what()).find("'" + field + "'") != std::string::npos);
        }
    };
    json ok = {{"type", "segment"}, {"input", "a.mp4"}, {"output_dir", "out"}};
    CHECK_NOTHROW(validate_segment_job(ok));
    auto with = [&](const char *k, json v) {
        json j = ok;
        j[k] = std::move(v);
        return j;
    };
    rejects(with("colour", 1), "colour");
    rejects(with("segment_duration", 0), "segment_duration");
    rejects(with("segment_duration", "6"), "segment_duration");
    rejects(with("realtime", 1), "realtime");
    rejects(with("input", ""), "input");
    json no_out = ok;
    no_out.erase("output_dir");
    rejects(no_out, "output_dir");
    CHECK_NOTHROW(validate_segment_job(with("segment_duration", 2.5)));
    CHECK_NOTHROW(validate_segment_job(with("format", "lavfi")));
}
