#include "net/url.hpp"

#include <catch2/catch.hpp>

using namespace openace::net;

TEST_CASE("url: percent_decode turns escapes into bytes")
{
    CHECK(percent_decode("%41b%20c") == std::optional<std::string>("Ab c"));
    CHECK(percent_decode("a%2fb%2Fc") == std::optional<std::string>("a/b/c"));
    CHECK(percent_decode("%00x").value() == std::string("\0x", 2));
    CHECK(percent_decode("") == std::optional<std::string>(""));
    CHECK(percent_decode("%E2%9C%93") == std::optional<std::string>("\xE2\x9C\x93"));
}

TEST_CASE("url: percent_decode keeps '+' unless asked and rejects bad escapes")
{
    CHECK(percent_decode("a+b") == std::optional<std::string>("a+b"));
    CHECK(percent_decode("a+b", true) == std::optional<std::string>("a b"));
    CHECK_FALSE(percent_decode("%"));
    CHECK_FALSE(percent_decode("%4"));
    CHECK_FALSE(percent_decode("abc%"));
    CHECK_FALSE(percent_decode("%zz"));
    CHECK_FALSE(percent_decode("%4g"));
}

TEST_CASE("url: percent_encode escapes everything but unreserved and safe characters")
{
    CHECK(percent_encode("AZaz09-._~") == "AZaz09-._~");
    CHECK(percent_encode("a b/c") == "a%20b%2Fc");
    CHECK(percent_encode("a b/c", "/") == "a%20b/c");
    CHECK(percent_encode("100%", "%") == "100%25"); // '%' is never left raw
    CHECK(percent_encode(std::string("\0\xff", 2)) == "%00%FF");
    std::string all;
    for (int i = 0; i < 256; ++i)
        all.push_back(static_cast<char>(i));
    CHECK(percent_decode(percent_encode(all)) == std::optional<std::string>(all));
}

TEST_CASE("url: parse_query gives ordered decoded pairs")
{
    auto q = parse_query("a=1&b=%20x&c");
    REQUIRE(q.size() == 3);
    CHECK(q[0] == std::pair<std::string, std::string>("a", "1"));
    CHECK(q[1] == std::pair<std::string, std::string>("b", " x"));
    CHECK(q[2] == std::pair<std::string, std::string>("c", ""));

    auto p = parse_query("?name=a+b&&x=1&x=2&=v&k=");
    REQUIRE(p.size() == 5);
    CHECK(p[0].second == "a b");
    CHECK(p[1] == std::pair<std::string, std::string>("x", "1"));
    CHECK(p[2] == std::pair<std::string, std::string>("x", "2"));
    CHECK(p[3] == std::pair<std::string, std::string>("", "v"));
    CHECK(p[4] == std::pair<std::string, std::string>("k", ""));
    CHECK(query_value(p, "x") == std::optional<std::string>("1"));
    CHECK_FALSE(query_value(p, "missing"));
    CHECK(parse_query("").empty());
    CHECK(parse_query("&&&").empty());
    CHECK(parse_query("a=b=c")[0].second == "b=c");
}

TEST_CASE("url: parse_query keeps components with bad escapes raw and is bounded")
{
    auto q = parse_query("id=%zz&ok=%41&tail=%");
    REQUIRE(q.size() == 3);
    CHECK(q[0].second == "%zz");
    CHECK(q[1].second == "A");
    CHECK(q[2].second == "%");

    std::string many;
    for (int i = 0; i < 1000; ++i)
        many += "k=v&";
    CHECK(parse_query(many).size() == 256);
    CHECK(parse_query(many, 10).size() == 10);
}

TEST_CASE("url: build_query round-trips through parse_query")
{
    QueryParams in = {{"id", "a b&c"}, {"x", "=/?"}, {"empty", ""}, {"ü", "+"}};
    std::string s = build_query(in);
    CHECK(s.find(' ') == std::string::npos);
    CHECK(parse_query(s) == in);
}

TEST_CASE("url: split_target separates path, query and fragment")
{
    auto a = split_target("/ace/getstream?id=abc&x=1");
    CHECK(a.path == "/ace/getstream");
    CHECK(a.query == "id=abc&x=1");
    auto b = split_target("/plain");
    CHECK(b.path == "/plain");
    CHECK(b.query.empty());
    auto c = split_target("/p?q#frag");
    CHECK(c.path == "/p");
    CHECK(c.query == "q");
    auto d = split_target("http://127.0.0.1:6878/ace/r/x?y=1");
    CHECK(d.path == "/ace/r/x");
    CHECK(d.query == "y=1");
    auto e = split_target("http://example.com");
    CHECK(e.path == "/");
    auto f = split_target("http://example.com?z");
    CHECK(f.path == "/");
    CHECK(f.query == "z");
    CHECK(split_target("*").path == "*");
    CHECK(split_target("/a?").query.empty());
}
