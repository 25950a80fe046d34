#include "media/ladder.hpp"

#include "core/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>

namespace openace::media {

namespace {

struct NamedRung {
    const char *name;
    int height;
    int64_t bitrate;
};

// Bitrates in the range the big ABR ladders use for H.264 at 25–30 fps.
constexpr NamedRung kNamed[] = {
    {"2160p", 2160, 14000000}, {"1440p", 1440, 8000000}, {"1080p", 1080, 5000000},
    {"720p", 720, 2800000},    {"480p", 480, 1400000},   {"360p", 360, 800000},
    {"240p", 240, 400000},
};

constexpr int kMinDimension = 16;
constexpr int kMaxDimension = 8192;
constexpr int64_t kMinBitrate = 16000;        // below this a number was surely kbit/s
constexpr int64_t kMaxBitrate = 200000000;

std::string known_names()
{
    std::string s;
    for (auto &n : kNamed) {
        if (!s.empty())
            s += ", ";
        s += n.name;
    }
    return s;
}

[[noreturn]] void bad(const std::string &field, const std::string &what)
{
    throw_errorf(Errc::JOB, "job", "validate", "field '{}': {}", field, what);
}

int dimension(const nlohmann::json &v, const std::string &field)
{
    if (!v.is_number_integer())
        bad(field, fmt::format("expected an integer, got {}", v.type_name()));
    auto d = v.get<int64_t>();
    if (d < kMinDimension || d > kMaxDimension)
        bad(field, fmt::format("{} is out of range ({}..{})", d, kMinDimension, kMaxDimension));
    if (d % 2 != 0)
        bad(field, fmt::format("{} is odd; H.264 4:2:0 needs even dimensions", d));
    return static_cast<int>(d);
}

} // namespace

int64_t default_bitrate_for_height(int height)
{
    // kNamed is sorted by descending height: the smallest named rung at or
    // above `height`, else the smallest one scaled by pixel count.
    const NamedRung *best = nullptr;
    for (auto &n : kNamed)
        if (n.height >= height)
            best = &n;
    if (best)
        return best->bitrate;
    auto &smallest = kNamed[std::size(kNamed) - 1];
    double scale = double(height) * height / (double(smallest.height) * smallest.height);
    return std::max<int64_t>(kMinBitrate * 4, int64_t(smallest.bitrate * scale));
}

int64_t parse_bitrate(const nlohmann::json &value, const std::string &field)
{
    int64_t bps = 0;
    if (value.is_number_integer()) {
        bps = value.get<int64_t>();
    } else if (value.is_number_float()) {
        bad(field, "expected an integer (bits per second) or a string like \"2500k\"");
    } else if (value.is_string()) {
        auto s = value.get<std::string>();
        size_t i = 0;
        double num = 0;
        try {
            num = std::stod(s, &i);
        } catch (const std::exception &) {
            bad(field, fmt::format("'{}' is not a bitrate (e.g. 2500000, \"2500k\", \"5M\")", s));
        }
        std::string unit = s.substr(i);
        double mul = 1;
        if (unit == "k" || unit == "K")
            mul = 1e3;
        else if (unit == "m" || unit == "M")
            mul = 1e6;
        else if (!unit.empty())
            bad(field, fmt::format("'{}' is not a bitrate (e.g. 2500000, \"2500k\", \"5M\")", s));
        if (!std::isfinite(num) || num <= 0)
            bad(field, fmt::format("'{}' is not a positive bitrate", s));
        bps = static_cast<int64_t>(std::llround(num * mul));
    } else {
        bad(field, fmt::format("expected an integer (bits per second) or a string like \"2500k\", "
                               "got {}",
                               value.type_name()));
    }
    if (bps < kMinBitrate)
        bad(field, fmt::format("{} bit/s is too low (at least {}; write \"{}k\" for kbit/s)", bps,
                               kMinBitrate, bps));
    if (bps > kMaxBitrate)
        bad(field, fmt::format("{} bit/s is too high (at most {})", bps, kMaxBitrate));
    return bps;
}

std::vector<Rung> parse_ladder(const nlohmann::json &ladder, const std::string &field)
{
    if (!ladder.is_array())
        bad(field, fmt::format("expected an array of rungs (e.g. [\"720p\",\"480p\"]), got {}",
                               ladder.type_name()));
    if (ladder.empty())
        bad(field, "needs at least one rung");
    if (ladder.size() > kMaxLadderRungs)
        bad(field, fmt::format("{} rungs; at most {}", ladder.size(), kMaxLadderRungs));

    std::vector<Rung> out;
    for (size_t i = 0; i < ladder.size(); ++i) {
        const auto &e = ladder[i];
        const std::string f = fmt::format("{}[{}]", field, i);
        Rung r;
        if (e.is_string()) {
            auto name = e.get<std::string>();
            std::string lower = name;
            std::transform(lower.begin(), lower.end(), lower.begin(),
                           [](unsigned char c) { return char(std::tolower(c)); });
            auto it = std::find_if(std::begin(kNamed), std::end(kNamed),
                                   [&](const NamedRung &n) { return lower == n.name; });
            if (it == std::end(kNamed))
                bad(f, fmt::format("unknown rung '{}' (known: {}; or an object "
                                   "{{\"width\":…,\"height\":…,\"bitrate\":…}})",
                                   name, known_names()));
            r.name = it->name;
            r.height = it->height;
            r.bitrate = it->bitrate;
        } else if (e.is_object()) {
            for (auto &[key, value] : e.items()) {
                if (key == "width")
                    r.width = dimension(value, f + ".width");
                else if (key == "height")
                    r.height = dimension(value, f + ".height");
                else if (key == "bitrate")
                    r.bitrate = parse_bitrate(value, f + ".bitrate");
                else if (key == "name") {
                    if (!value.is_string() || value.get<std::string>().empty())
                        bad(f + ".name", "expected a non-empty string");
                    r.name = value.get<std::string>();
                    // The name becomes a directory: keep it a plain file name.
                    if (r.name.find_first_of("/\\") != std::string::npos || r.name == "." ||
                        r.name == "..")
                        bad(f + ".name", fmt::format("'{}' must be a plain name (no '/')", r.name));
                } else
                    bad(f, fmt::format("unknown key '{}' (known: width, height, bitrate, name)",
                                       key));
            }
            if (r.height == 0)
                bad(f + ".height", "is required");
            if (r.bitrate == 0)
                r.bitrate = default_bitrate_for_height(r.height);
            if (r.name.empty())
                r.name = r.width ? fmt::format("{}x{}", r.width, r.height)
                                 : fmt::format("{}p", r.height);
        } else {
            bad(f, fmt::format("expected a rung name like \"720p\" or an object, got {}",
                               e.type_name()));
        }
        for (size_t j = 0; j < out.size(); ++j) {
            if (out[j].name == r.name)
                bad(f, fmt::format("duplicates {}[{}] ('{}'); give each rung its own name",
                                   field, j, r.name));
        }
        out.push_back(std::move(r));
    }
    return out;
}

void resolve_ladder(std::vector<Rung> &ladder, int source_width, int source_height, int sar_num,
                    int sar_den, const core::Logger &log)
{
    if (source_width <= 0 || source_height <= 0)
        return;
    double sar = (sar_num > 0 && sar_den > 0) ? double(sar_num) / sar_den : 1.0;
    double dar = double(source_width) * sar / source_height;
    for (auto &r : ladder) {
        if (r.width == 0) {
            int w = static_cast<int>(std::lround(r.height * dar / 2.0)) * 2;
            r.width = std::clamp(w, kMinDimension, kMaxDimension);
        }
        if (r.height > source_height)
            log.info("rung {} ({}x{}) is above the source height {}: upscaling as asked", r.name,
                     r.width, r.height, source_height);
    }
}

} // namespace openace::media
