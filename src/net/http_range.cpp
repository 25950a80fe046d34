#include "net/http_range.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace openace::net {

namespace {

// Digits only, at most 18 (fits int64); nullopt otherwise.
std::optional<std::int64_t> number(std::string_view s) noexcept
{
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string_view::npos)
        return std::nullopt; // from_chars alone would take a sign
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size())
        return std::nullopt;
    return v;
}

std::string_view trim(std::string_view s) noexcept
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

} // namespace

RangeResult parse_range(std::string_view header, std::int64_t size, ByteRange &out) noexcept
{
    header = trim(header);
    if (header.size() < 6 || header.size() > 200)
        return RangeResult::None;
    std::string unit(header.substr(0, 6));
    std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return std::tolower(c); });
    if (unit != "bytes=")
        return RangeResult::None;
    std::string_view spec = trim(header.substr(6));
    if (spec.find(',') != std::string_view::npos)
        return RangeResult::None; // several ranges: the whole resource instead
    const auto dash = spec.find('-');
    if (dash == std::string_view::npos)
        return RangeResult::None;
    const std::string_view a = trim(spec.substr(0, dash)), b = trim(spec.substr(dash + 1));
    if (a.empty()) { // suffix: the last n bytes
        auto n = number(b);
        if (!n)
            return RangeResult::None;
        if (*n == 0 || size == 0)
            return RangeResult::Unsatisfiable;
        out.first = std::max<std::int64_t>(0, size - *n);
        out.last = size - 1;
        return RangeResult::Ok;
    }
    auto first = number(a);
    if (!first)
        return RangeResult::None;
    std::int64_t last = size - 1;
    if (!b.empty()) {
        auto l = number(b);
        if (!l || *l < *first)
            return RangeResult::None;
        last = std::min(*l, size - 1);
    }
    if (*first >= size)
        return RangeResult::Unsatisfiable;
    out.first = *first;
    out.last = last;
    return RangeResult::Ok;
}

std::string_view media_type_for(std::string_view filename) noexcept
{
    static constexpr std::pair<std::string_view, std::string_view> kTypes[] = {
        {"mp4", "video/mp4"},         {"m4v", "video/mp4"},        {"mkv", "video/x-matroska"},
        {"webm", "video/webm"},       {"ts", "video/mp2t"},        {"m2ts", "video/mp2t"},
        {"mts", "video/mp2t"},        {"avi", "video/x-msvideo"},  {"mov", "video/quicktime"},
        {"flv", "video/x-flv"},       {"mpg", "video/mpeg"},       {"mpeg", "video/mpeg"},
        {"wmv", "video/x-ms-wmv"},    {"ogv", "video/ogg"},        {"mp3", "audio/mpeg"},
        {"m4a", "audio/mp4"},         {"aac", "audio/aac"},        {"flac", "audio/flac"},
        {"ogg", "audio/ogg"},         {"opus", "audio/ogg"},       {"wav", "audio/wav"},
        {"srt", "application/x-subrip"}, {"vtt", "text/vtt"},
    };
    const auto dot = filename.rfind('.');
    if (dot == std::string_view::npos || filename.size() - dot > 6)
        return "application/octet-stream";
    std::string ext(filename.substr(dot + 1));
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    for (const auto &[e, type] : kTypes)
        if (ext == e)
            return type;
    return "application/octet-stream";
}

} // namespace openace::net
