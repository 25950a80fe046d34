#include "net/http_range.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>

using namespace openace::net;

namespace {

struct Parsed {
    RangeResult result;
    ByteRange range;
};

Parsed parse(std::string_view header, std::int64_t size)
{
    ByteRange r{-7, -7};
    const RangeResult res = parse_range(header, size, r);
    return {res, r};
}

// Ok with exactly [first, last].
bool ok(std::string_view header, std::int64_t size, std::int64_t first, std::int64_t last)
{
    const Parsed p = parse(header, size);
    return p.result == RangeResult::Ok && p.range.first == first && p.range.last == last;
}

RangeResult result(std::string_view header, std::int64_t size)
{
    return parse(header, size).result;
}

std::string mixed_case(std::string s, unsigned pattern)
{
    for (std::size_t i = 0; i < s.size(); ++i)
        if (pattern >> (i % 32) & 1u)
            s[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[i])));
    return s;
}

// Reference model for "bytes=" A "-" B with A, B empty or at most 18 digits
// (RFC 9110 §14.1.2, with last < first treated as malformed).
Parsed model(const std::string &a, const std::string &b, std::int64_t size)
{
    auto num = [](const std::string &s) { return static_cast<std::int64_t>(std::stoll(s)); };
    if (a.empty()) {
        if (b.empty())
            return {RangeResult::None, {}};
        const std::int64_t n = num(b);
        if (n == 0 || size == 0)
            return {RangeResult::Unsatisfiable, {}};
        return {RangeResult::Ok, {n >= size ? 0 : size - n, size - 1}};
    }
    const std::int64_t first = num(a);
    std::int64_t last = size - 1;
    if (!b.empty()) {
        if (num(b) < first)
            return {RangeResult::None, {}};
        last = std::min(num(b), size - 1);
    }
    if (first >= size)
        return {RangeResult::Unsatisfiable, {}};
    return {RangeResult::Ok, {first, last}};
}

} // namespace

TEST_CASE("http range: first-last, first- and suffix ranges")
{
    const std::int64_t size = 1000;
    CHECK(ok("bytes=0-499", size, 0, 499));
    CHECK(ok("bytes=500-999", size, 500, 999));
    CHECK(ok("bytes=0-0", size, 0, 0));
    CHECK(ok("bytes=999-999", size, 999, 999));
    CHECK(ok("bytes=100-", size, 100, size - 1));
    CHECK(ok("bytes=0-", size, 0, size - 1));
    CHECK(ok("bytes=-100", size, size - 100, size - 1));
    CHECK(ok("bytes=-1", size, size - 1, size - 1));
    CHECK(ok("bytes=-1000", size, 0, size - 1));
    ByteRange r;
    REQUIRE(parse_range("bytes=10-19", size, r) == RangeResult::Ok);
    CHECK(r.length() == 10);
    REQUIRE(parse_range("bytes=-250", size, r) == RangeResult::Ok);
    CHECK(r.length() == 250);
}

TEST_CASE("http range: ranges past the end are clamped")
{
    CHECK(ok("bytes=0-5000", 1000, 0, 999));
    CHECK(ok("bytes=999-1000", 1000, 999, 999));
    CHECK(ok("bytes=-5000", 1000, 0, 999));
    CHECK(ok("bytes=0-999999999999999999", 1000, 0, 999)); // 18 digits
    CHECK(ok("bytes=-999999999999999999", 1000, 0, 999));
    CHECK(ok("bytes=0-0", 1, 0, 0));
    CHECK(ok("bytes=-1", 1, 0, 0));
}

TEST_CASE("http range: the unit is case-insensitive and spaces around values are allowed")
{
    for (unsigned pattern : {0u, 1u, 0x3fu, 0x15u, 0x2au}) {
        const std::string h = mixed_case("bytes=2-5", pattern);
        INFO(h);
        CHECK(ok(h, 10, 2, 5));
    }
    CHECK(ok("  bytes=2-5\t", 10, 2, 5));
    CHECK(ok("bytes= 2 - 5 ", 10, 2, 5));
    CHECK(ok("bytes=\t-3", 10, 7, 9));
}

TEST_CASE("http range: a well-formed range outside the resource is unsatisfiable")
{
    CHECK(result("bytes=1000-", 1000) == RangeResult::Unsatisfiable);
    CHECK(result("bytes=1000-2000", 1000) == RangeResult::Unsatisfiable);
    CHECK(result("bytes=5000-5000", 1000) == RangeResult::Unsatisfiable);
    CHECK(result("bytes=999999999999999999-", 1000) == RangeResult::Unsatisfiable);
    CHECK(result("bytes=-0", 1000) == RangeResult::Unsatisfiable);
    // An empty resource satisfies no range.
    CHECK(result("bytes=0-", 0) == RangeResult::Unsatisfiable);
    CHECK(result("bytes=0-0", 0) == RangeResult::Unsatisfiable);
    CHECK(result("bytes=-5", 0) == RangeResult::Unsatisfiable);
}

TEST_CASE("http range: malformed headers, other units and several ranges are ignored")
{
    for (const char *h : {"", "bytes", "bytes=", "bytes=-", "bytes= - ", "bytes=abc", "bytes=5", "bytes=5-3",
                          "bytes=1-2-3", "bytes=0-1,2-3", "bytes=0-1, 5-", "bytes=-1,-2", "items=0-1", "byte=0-1",
                          "bytes 0-1", "bytes:0-1", "bytes=0x10-", "bytes=1e3-", "bytes=+5-", "bytes=5-+9",
                          "bytes=a-5", "bytes=5-b", "bytes=1 2-3", "bytes=--5", "bytes=--0", "bytes=0--0",
                          "bytes=5--3"}) {
        INFO(h);
        CHECK(result(h, 1000) == RangeResult::None);
    }
    CHECK(result("bytes=0-" + std::string(200, '0') + "1", 1000) == RangeResult::None); // over 200 chars
}

TEST_CASE("http range: numbers too long for int64 are ignored, never wrap")
{
    const std::string max = std::to_string(std::numeric_limits<std::int64_t>::max()); // 19 digits
    for (const std::string &h : {"bytes=0-" + max, "bytes=" + max + "-", "bytes=-" + max,
                                 std::string("bytes=0-99999999999999999999"), std::string("bytes=99999999999999999999-"),
                                 std::string("bytes=-99999999999999999999"), std::string("bytes=0-18446744073709551616"),
                                 std::string("bytes=0000000000000000000001-")}) {
        INFO(h);
        CHECK(result(h, 1000) == RangeResult::None);
    }
}

TEST_CASE("http range: resources near the int64 limit")
{
    const std::int64_t big = std::numeric_limits<std::int64_t>::max();
    CHECK(ok("bytes=0-", big, 0, big - 1));
    CHECK(ok("bytes=-1", big, big - 1, big - 1));
    CHECK(ok("bytes=-999999999999999999", big, big - 999999999999999999, big - 1));
    CHECK(ok("bytes=999999999999999998-999999999999999999", big, 999999999999999998, 999999999999999999));
}

TEST_CASE("http range: structured random headers agree with the RFC model")
{
    std::mt19937_64 rng(9110);
    auto digits = [&](std::size_t max_len) {
        std::string s(rng() % (max_len + 1), '0');
        for (char &c : s)
            c = static_cast<char>('0' + rng() % 10);
        return s;
    };
    int ok_count = 0;
    for (int iter = 0; iter < 4000; ++iter) {
        const std::int64_t size = rng() % 4 == 0 ? static_cast<std::int64_t>(rng() >> 1)
                                                 : static_cast<std::int64_t>(rng() % 2000);
        const std::string a = digits(rng() % 3 == 0 ? 18 : 4), b = digits(rng() % 3 == 0 ? 18 : 4);
        const std::string h = "bytes=" + a + "-" + b;
        INFO(h << " size " << size);
        const Parsed want = model(a, b, size);
        const Parsed got = parse(h, size);
        REQUIRE(got.result == want.result);
        if (want.result == RangeResult::Ok) {
            ++ok_count;
            REQUIRE(got.range.first == want.range.first);
            REQUIRE(got.range.last == want.range.last);
        }
    }
    CHECK(ok_count > 100);
}

TEST_CASE("http range: mutated headers yield only ranges inside the resource")
{
    static const char *pieces[] = {"bytes=", "BYTES=", "bytes", "=", "-", "-", "-", ",", " ", "\t", "+", "0",
                                   "1", "9", "42", "999", "999999999999999999", "9223372036854775807", "x", "e"};
    std::mt19937 rng(1234);
    int counts[3] = {0, 0, 0};
    for (int iter = 0; iter < 6000; ++iter) {
        std::string h;
        if (rng() % 2)
            h = "bytes=";
        const int n = static_cast<int>(rng() % 6);
        for (int i = 0; i < n; ++i) {
            if (rng() % 8 == 0)
                h += static_cast<char>(rng());
            else
                h += pieces[rng() % (sizeof pieces / sizeof *pieces)];
        }
        const std::int64_t size = rng() % 5 == 0 ? std::numeric_limits<std::int64_t>::max() - rng() % 3
                                                 : static_cast<std::int64_t>(rng() % 100);
        INFO("'" << h << "' size " << size);
        ByteRange r;
        const RangeResult res = parse_range(h, size, r);
        ++counts[static_cast<int>(res)];
        if (res == RangeResult::Ok) {
            REQUIRE(0 <= r.first);
            REQUIRE(r.first <= r.last);
            REQUIRE(r.last < size);
            REQUIRE(r.length() >= 1);
        }
    }
    // Every outcome is exercised.
    CHECK(counts[static_cast<int>(RangeResult::None)] > 20);
    CHECK(counts[static_cast<int>(RangeResult::Ok)] > 20);
    CHECK(counts[static_cast<int>(RangeResult::Unsatisfiable)] > 20);
}

TEST_CASE("http range: media type by extension, case-insensitive")
{
    const std::pair<const char *, const char *> known[] = {
        {"movie.mp4", "video/mp4"},       {"clip.m4v", "video/mp4"},       {"film.mkv", "video/x-matroska"},
        {"a.webm", "video/webm"},         {"live.ts", "video/mp2t"},       {"b.m2ts", "video/mp2t"},
        {"c.mts", "video/mp2t"},          {"d.avi", "video/x-msvideo"},    {"e.mov", "video/quicktime"},
        {"f.flv", "video/x-flv"},         {"g.mpg", "video/mpeg"},         {"h.mpeg", "video/mpeg"},
        {"i.wmv", "video/x-ms-wmv"},      {"j.ogv", "video/ogg"},          {"song.mp3", "audio/mpeg"},
        {"k.m4a", "audio/mp4"},           {"l.aac", "audio/aac"},          {"m.flac", "audio/flac"},
        {"n.ogg", "audio/ogg"},           {"o.opus", "audio/ogg"},         {"p.wav", "audio/wav"},
        {"subs.srt", "application/x-subrip"}, {"subs.vtt", "text/vtt"},
    };
    for (const auto &[name, type] : known) {
        INFO(name);
        CHECK(media_type_for(name) == type);
        for (unsigned pattern : {0xffffffffu, 0x55555555u, 0xaaaaaaaau})
            CHECK(media_type_for(mixed_case(name, pattern)) == type);
        CHECK(media_type_for(std::string("/dir.with.dots/Show.S01E01.") + name) == type);
    }
    CHECK(media_type_for("movie.MP4") == "video/mp4");
    CHECK(media_type_for(".ts") == "video/mp2t");
}

TEST_CASE("http range: unknown or missing extensions are application/octet-stream")
{
    for (const char *name : {"", "noext", "file.", "archive.tar.gz", "x.mp4.part", "dir.mp4/file", "a.txt",
                             "a.mp44", "a.m", "a.verylongextension", "mp4", "a.mp4 ", "a.\xff\xfe"}) {
        INFO(name);
        CHECK(media_type_for(name) == "application/octet-stream");
    }
}
