#include "transport/bencode.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>

#include <random>
#include <string>

using namespace openace::transport::bencode;
using openace::Errc;

namespace {

bool parse_error(std::string_view in, const Limits &l = {})
{
    try {
        decode(in, l);
    } catch (const openace::Error &e) {
        return e.code() == Errc::PARSE && e.component() == "bencode";
    }
    return false;
}

std::string error_detail(std::string_view in)
{
    try {
        decode(in);
    } catch (const openace::Error &e) {
        return e.detail();
    }
    return {};
}

} // namespace

TEST_CASE("bencode: scalar values decode and re-encode identically")
{
    for (std::string_view s : {"i0e", "i42e", "i-42e", "i9223372036854775807e",
                               "i-9223372036854775808e", "0:", "4:spam", "le", "de"}) {
        INFO(s);
        CHECK(encode(decode(s)) == s);
    }
    CHECK(decode("i-9223372036854775808e").as_int() == INT64_MIN);
    CHECK(decode("4:spam").as_string() == "spam");
    CHECK(decode(std::string_view("3:\0a\xff", 5)).as_string() == std::string("\0a\xff", 3));
}

TEST_CASE("bencode: nested structures round trip and support lookup")
{
    std::string s = "d3:bar4:spam3:fooi42e4:listl1:ai1eld1:xleeeee";
    Value v = decode(s);
    CHECK(encode(v) == s);
    REQUIRE(v.find("foo"));
    CHECK(v.find("foo")->as_int() == 42);
    CHECK(v.find("bar")->as_string() == "spam");
    CHECK(v.find("nope") == nullptr);
    CHECK(v.find("list")->as_list().size() == 3);

    Value built{Dict{{"zz", Value(1)}, {"aa", Value("x")}, {"m", Value(List{Value(2), Value("y")})}}};
    CHECK(encode(built) == "d2:aa1:x1:mli2e1:ye2:zzi1ee");
    CHECK(decode(encode(built)) == built);
    built.set("b", Value(7));
    CHECK(encode(built) == "d2:aa1:x1:bi7e1:mli2e1:ye2:zzi1ee");
}

TEST_CASE("bencode: non-canonical integers are rejected")
{
    for (std::string_view s : {"i-0e", "i03e", "i-03e", "ie", "i-e", "i00e", "i+1e", "i1", "i 1e",
                               "i1.0e", "i--1e"}) {
        INFO(s);
        CHECK(parse_error(s));
    }
}

TEST_CASE("bencode: integer overflow is rejected")
{
    CHECK(parse_error("i9223372036854775808e"));
    CHECK(parse_error("i-9223372036854775809e"));
    CHECK(parse_error("i99999999999999999999999e"));
}

TEST_CASE("bencode: string lengths must be canonical and fit the input")
{
    CHECK(parse_error("04:spam"));
    CHECK(parse_error("00:"));
    CHECK(parse_error("5:spam"));
    CHECK(parse_error("4spam"));
    CHECK(parse_error("-1:a"));
    CHECK(parse_error("4:"));
}

TEST_CASE("bencode: a huge declared string length errors without allocating it")
{
    CHECK(parse_error("18446744073709551615:abc"));
    CHECK(parse_error("18446744073709551616:abc")); // overflows uint64
    CHECK(parse_error("9999999999:abc"));
    CHECK(error_detail("9999999999:abc").find("at byte 0") == 0);
}

TEST_CASE("bencode: dictionary keys must be sorted, unique strings")
{
    CHECK(parse_error("d1:bi1e1:ai2ee"));
    CHECK(parse_error("d1:ai1e1:ai2ee"));
    CHECK(parse_error("di1ei2ee"));
    CHECK(parse_error("d1:ae"));
    // raw byte order: 0xff sorts after 'a'; "a" before "aa"
    CHECK_NOTHROW(decode("d1:ai1e2:aai2e1:\xffi3ee"));
    CHECK(parse_error("d1:\xffi3e1:ai1ee"));
    CHECK(error_detail("d1:bi1e1:ai2ee") == "at byte 7: dictionary keys not sorted");
    CHECK(error_detail("d1:ai1e1:ai2ee") == "at byte 7: duplicate dictionary key");
}

TEST_CASE("bencode: trailing data, truncation and junk are rejected")
{
    CHECK(parse_error(""));
    CHECK(parse_error("i1ei2e"));
    CHECK(parse_error("4:spamx"));
    CHECK(parse_error("l"));
    CHECK(parse_error("li1e"));
    CHECK(parse_error("d"));
    CHECK(parse_error("d1:a"));
    CHECK(parse_error("x"));
    CHECK(parse_error("e"));
    CHECK(error_detail("i1ei2e") == "at byte 3: trailing data after the value");
}

TEST_CASE("bencode: deep nesting errors instead of crashing")
{
    std::string deep(10000, 'l');
    deep += std::string(10000, 'e');
    CHECK(parse_error(deep));
    std::string deepd;
    for (int i = 0; i < 10000; ++i)
        deepd += "d1:a";
    CHECK(parse_error(deepd));

    std::string ok = std::string(64, 'l') + std::string(64, 'e');
    CHECK_NOTHROW(decode(ok));
    std::string too = std::string(65, 'l') + std::string(65, 'e');
    CHECK(parse_error(too));
    Limits l;
    l.max_depth = 3;
    CHECK_NOTHROW(decode("llleee", l));
    CHECK(parse_error("lllleeee", l));
}

TEST_CASE("bencode: size and item limits are enforced")
{
    Limits l;
    l.max_size = 10;
    CHECK(decode("8:abcdefgh", l) == Value("abcdefgh"));
    CHECK(parse_error("9:abcdefghi", l));
    Limits items;
    items.max_items = 4;
    CHECK_NOTHROW(decode("li1ei2ei3ee", items));
    CHECK(parse_error("li1ei2ei3ei4ee", items));
    CHECK(parse_error("d1:ai1e1:bi2ee", items)); // keys count as items
}

TEST_CASE("bencode: raw spans point at the exact input bytes")
{
    std::string s = "d8:announce3:url4:infod4:name1:x6:lengthi5eee";
    // unsorted keys inside "info" ("name" before "length") are rejected
    CHECK(parse_error(s));
    s = "d8:announce3:url4:infod6:lengthi5e4:name1:xe1:zi0ee";
    Value v = decode(s);
    const Value *info = v.find("info");
    REQUIRE(info);
    CHECK(raw(s, *info) == "d6:lengthi5e4:name1:xe");
    CHECK(raw_span(s, "info") == "d6:lengthi5e4:name1:xe");
    CHECK(raw_span(s, "z") == "i0e");
    CHECK(raw(s, v) == s);
    CHECK(parse_error("le") == false);
    CHECK_THROWS_AS(raw_span(s, "missing"), openace::Error);
    CHECK_THROWS_AS(raw_span("le", "info"), openace::Error);
}

TEST_CASE("bencode: wrong-type access throws openace::Error")
{
    Value v = decode("i1e");
    CHECK_THROWS_AS(v.as_string(), openace::Error);
    CHECK_THROWS_AS(v.as_list(), openace::Error);
    CHECK_THROWS_AS(v.as_dict(), openace::Error);
    CHECK(v.find("a") == nullptr);
}

TEST_CASE("bencode: mutated encodings either decode or throw openace::Error")
{
    const std::vector<std::string> seeds = {
        "d8:announce30:http://tracker.example/announce4:infod6:lengthi40000e4:name8:file.bin"
        "12:piece lengthi40000e6:pieces20:aaaaaaaaaaaaaaaaaaaaee",
        "li1ei-2e3:abcld1:xi0eeee",
        "d1:ad1:bd1:cl1:d1:eeeee",
        "i-1234567890e",
    };
    std::mt19937 rng(12345);
    const std::string alphabet = "0123456789ilde:-x\xff";
    int ok = 0, errors = 0;
    for (int iter = 0; iter < 20000; ++iter) {
        std::string s = seeds[rng() % seeds.size()];
        int muts = 1 + static_cast<int>(rng() % 4);
        for (int m = 0; m < muts; ++m) {
            std::size_t pos = s.empty() ? 0 : rng() % s.size();
            switch (rng() % 5) {
            case 0:
                if (!s.empty())
                    s[pos] = alphabet[rng() % alphabet.size()];
                break;
            case 1:
                if (!s.empty())
                    s.erase(pos, 1 + rng() % 3);
                break;
            case 2:
                s.insert(pos, 1, alphabet[rng() % alphabet.size()]);
                break;
            case 3:
                if (!s.empty())
                    s[pos] = static_cast<char>(rng() & 0xff);
                break;
            case 4:
                s.resize(pos);
                break;
            }
        }
        try {
            Value v = decode(s);
            // Anything that decodes is canonical: it re-encodes to the input.
            REQUIRE(encode(v) == s);
            ++ok;
        } catch (const openace::Error &e) {
            REQUIRE(e.code() == Errc::PARSE);
            ++errors;
        }
    }
    CHECK(ok + errors == 20000);
    CHECK(errors > 0);
    CHECK(ok > 0);
}
