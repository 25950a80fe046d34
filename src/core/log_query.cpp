#include "core/log_query.hpp"

#include "core/error.hpp"

#include <charconv>

namespace openace::core {

static int64_t to_int(const nlohmann::json &v, const std::string &key, int64_t lo, int64_t hi)
{
    int64_t out = 0;
    if (v.is_number_integer()) {
        out = v.get<int64_t>();
    } else if (v.is_string()) {
        const auto &s = v.get_ref<const std::string &>();
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
        if (ec != std::errc() || p != s.data() + s.size() || s.empty())
            throw_errorf(Errc::INVAL, "log", "filter", "'{}': expected an integer, got \"{}\"", key, s);
    } else {
        throw_errorf(Errc::INVAL, "log", "filter", "'{}': expected an integer, got {}", key,
                     v.type_name());
    }
    if (out < lo || out > hi)
        throw_errorf(Errc::INVAL, "log", "filter", "'{}': {} is outside {}..{}", key, out, lo, hi);
    return out;
}

static std::string to_str(const nlohmann::json &v, const std::string &key)
{
    if (!v.is_string())
        throw_errorf(Errc::INVAL, "log", "filter", "'{}': expected a string, got {}", key,
                     v.type_name());
    return v.get<std::string>();
}

LogFilter parse_log_filter(const nlohmann::json &filter)
{
    LogFilter f;
    if (filter.is_null())
        return f;
    if (!filter.is_object())
        throw_errorf(Errc::INVAL, "log", "filter", "the filter must be a JSON object, got {}",
                     filter.type_name());
    for (auto &[key, v] : filter.items()) {
        if (key == "level") {
            auto s = to_str(v, key);
            auto lvl = parse_log_level(s);
            if (!lvl)
                throw_errorf(Errc::INVAL, "log", "filter",
                             "'level': unknown level \"{}\" (trace, debug, info, warn, error)", s);
            f.min_level = lvl;
        } else if (key == "component") {
            f.component = to_str(v, key);
        } else if (key == "text") {
            f.text = to_str(v, key);
        } else if (key == "job_id") {
            f.job_id = to_int(v, key, 0, INT64_MAX);
        } else if (key == "since_ms") {
            f.since_ms = to_int(v, key, 0, INT64_MAX);
        } else if (key == "until_ms") {
            f.until_ms = to_int(v, key, 0, INT64_MAX);
        } else if (key == "limit") {
            f.limit = size_t(to_int(v, key, 1, 100000));
        } else {
            throw_errorf(Errc::INVAL, "log", "filter",
                         "unknown filter '{}' (level, component, text, job_id, since_ms, "
                         "until_ms, limit)",
                         key);
        }
    }
    return f;
}

LogFilter parse_log_filter(const std::vector<std::pair<std::string, std::string>> &params)
{
    nlohmann::json j = nlohmann::json::object();
    for (auto &[k, v] : params)
        if (!j.contains(k))
            j[k] = v;
    return parse_log_filter(j);
}

nlohmann::json query_logs(const Log &log, const LogFilter &filter)
{
    nlohmann::json entries = nlohmann::json::array();
    for (auto &e : log.search(filter))
        entries.push_back(to_json(e));
    return {{"entries", std::move(entries)}, {"stats", to_json(log.stats())}};
}

} // namespace openace::core
