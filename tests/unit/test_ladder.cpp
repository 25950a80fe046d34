// The "ladder" job option: rung names, explicit rungs, and errors that name
// the bad entry.
#include "media/ladder.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace openace;
using namespace openace::media;
using nlohmann::json;

namespace {

// The message of the Error(EJOB) that parsing `ladder` throws.
std::string ladder_error(const json &ladder)
{
    try {
        parse_ladder(ladder);
    } catch (const Error &e) {
        CHECK(e.code() == Errc::JOB);
        return e.what();
    }
    FAIL("no error for " << ladder.dump());
    return {};
}

} // namespace

TEST_CASE("ladder: rung names give the standard heights and default bitrates")
{
    auto l = parse_ladder(json::parse(R"(["1080p","720p","480p","360p","240p"])"));
    REQUIRE(l.size() == 5);
    CHECK(l[0].name == "1080p");
    CHECK(l[0].height == 1080);
    CHECK(l[0].bitrate == 5000000);
    CHECK(l[1].height == 720);
    CHECK(l[1].bitrate == 2800000);
    CHECK(l[2].bitrate == 1400000);
    CHECK(l[3].bitrate == 800000);
    CHECK(l[4].height == 240);
    for (auto &r : l)
        CHECK(r.width == 0); // derived from the source later
    CHECK(parse_ladder(json::parse(R"(["2160p","1440p"])"))[1].height == 1440);
    CHECK(parse_ladder(json::parse(R"(["720P"])"))[0].name == "720p");
}

TEST_CASE("ladder: explicit rungs take width, height, bitrate in bit/s or with k/M suffix")
{
    auto l = parse_ladder(json::parse(
        R"([{"width":1280,"height":720,"bitrate":"2500k"},
            {"width":640,"height":360,"bitrate":900000},
            {"height":270,"bitrate":"0.5M","name":"low"},
            {"width":256,"height":144}])"));
    REQUIRE(l.size() == 4);
    CHECK(l[0].width == 1280);
    CHECK(l[0].height == 720);
    CHECK(l[0].bitrate == 2500000);
    CHECK(l[0].name == "1280x720");
    CHECK(l[1].bitrate == 900000);
    CHECK(l[2].name == "low");
    CHECK(l[2].width == 0);
    CHECK(l[2].bitrate == 500000);
    CHECK(l[3].bitrate == 400000); // the 240p default: smallest named rung above 144
    CHECK(parse_bitrate(json("5M"), "b") == 5000000);
}

TEST_CASE("ladder: widths follow the source display aspect ratio and stay even")
{
    auto l = parse_ladder(json::parse(R"(["720p","480p","360p",{"height":240,"width":320}])"));
    core::Logger quiet;
    resolve_ladder(l, 1920, 1080, 1, 1, quiet);
    CHECK(l[0].width == 1280);
    CHECK(l[1].width == 854);  // 853.3 rounded to even
    CHECK(l[2].width == 640);
    CHECK(l[3].width == 320);  // explicit width kept
    auto anamorphic = parse_ladder(json::parse(R"(["480p"])"));
    resolve_ladder(anamorphic, 720, 576, 64, 45, quiet); // PAL 16:9
    CHECK(anamorphic[0].width == 854);
    auto upscale = parse_ladder(json::parse(R"(["1080p"])"));
    resolve_ladder(upscale, 640, 360, 0, 1, quiet); // above the source: allowed
    CHECK(upscale[0].width == 1920);
}

TEST_CASE("ladder: bad rungs are rejected with an error naming the entry")
{
    CHECK_THAT(ladder_error(json::parse(R"(["720p","480p","999p"])")),
               Catch::Contains("field 'ladder[2]': unknown rung '999p'"));
    CHECK_THAT(ladder_error(json::parse(R"(["720p",{"width":641,"height":360}])")),
               Catch::Contains("field 'ladder[1].width'") && Catch::Contains("odd"));
    CHECK_THAT(ladder_error(json::parse(R"([{"width":640}])")),
               Catch::Contains("field 'ladder[0].height': is required"));
    CHECK_THAT(ladder_error(json::parse(R"([{"height":360,"bitrate":"fast"}])")),
               Catch::Contains("field 'ladder[0].bitrate'") && Catch::Contains("'fast'"));
    CHECK_THAT(ladder_error(json::parse(R"([{"height":360,"bitrate":800}])")),
               Catch::Contains("field 'ladder[0].bitrate'") && Catch::Contains("\"800k\""));
    CHECK_THAT(ladder_error(json::parse(R"([{"height":360,"fps":30}])")),
               Catch::Contains("field 'ladder[0]': unknown key 'fps'"));
    CHECK_THAT(ladder_error(json::parse(R"([{"height":100000}])")),
               Catch::Contains("field 'ladder[0].height'") && Catch::Contains("out of range"));
    CHECK_THAT(ladder_error(json::parse(R"(["720p","720p"])")),
               Catch::Contains("field 'ladder[1]': duplicates ladder[0]"));
    CHECK_THAT(ladder_error(json::parse(R"([720])")),
               Catch::Contains("field 'ladder[0]': expected a rung name"));
    CHECK_THAT(ladder_error(json::parse(R"([{"height":360,"name":"../x"}])")),
               Catch::Contains("field 'ladder[0].name'"));
    CHECK_THAT(ladder_error(json::array()), Catch::Contains("field 'ladder': needs at least one"));
    CHECK_THAT(ladder_error(json::parse(R"(["2160p","1440p","1080p","720p","480p","360p","240p"])")),
               Catch::Contains("at most 6"));
    CHECK_THAT(ladder_error(json("720p")), Catch::Contains("field 'ladder': expected an array"));
}
