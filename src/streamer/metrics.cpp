#include "streamer/metrics.hpp"

#include <fmt/format.h>

namespace openace::streamer {

namespace {

struct Writer {
    std::string out;
    void family(const char *name, const char *type, const char *help)
    {
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    }
    void sample(const char *name, const std::string &labels, double v)
    {
        if (labels.empty())
            out += fmt::format("{} {}\n", name, v);
        else
            out += fmt::format("{}{{{}}} {}\n", name, labels, v);
    }
};

// Label values are our own engine/level names, but escape anyway.
std::string label(const char *key, const std::string &value)
{
    std::string v;
    for (char c : value) {
        if (c == '\\' || c == '"')
            v += '\\';
        if (c == '\n') {
            v += "\\n";
            continue;
        }
        v += c;
    }
    return fmt::format("{}=\"{}\"", key, v);
}

double num(const nlohmann::json &j, const char *key)
{
    auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

int health_level(const std::string &h)
{
    return h == "healthy" ? 0 : h == "warning" ? 1 : 2;
}

} // namespace

std::string render_prometheus(const nlohmann::json &stats)
{
    Writer w;
    const auto &engines = stats.at("engines");

    w.family("openace_engine_up", "gauge", "1 when the internal engine is running");
    for (auto &[name, e] : engines.items())
        w.sample("openace_engine_up", label("engine", name), e.value("state", "") == "running" ? 1 : 0);
    w.family("openace_engine_health", "gauge", "0 healthy, 1 warning, 2 critical");
    for (auto &[name, e] : engines.items())
        w.sample("openace_engine_health", label("engine", name), health_level(e.value("health", "")));
    w.family("openace_engine_uptime_seconds", "gauge", "Seconds since the engine last started");
    for (auto &[name, e] : engines.items())
        w.sample("openace_engine_uptime_seconds", label("engine", name), num(e, "uptime_ms") / 1000.0);
    w.family("openace_engine_operations_total", "counter", "Operations handled, by result");
    for (auto &[name, e] : engines.items()) {
        const auto &ops = e.at("operations");
        w.sample("openace_engine_operations_total", label("engine", name) + "," + label("result", "success"),
                 num(ops, "successful"));
        w.sample("openace_engine_operations_total", label("engine", name) + "," + label("result", "failure"),
                 num(ops, "failed"));
    }
    w.family("openace_engine_response_seconds_avg", "gauge", "Average operation time");
    for (auto &[name, e] : engines.items())
        w.sample("openace_engine_response_seconds_avg", label("engine", name), num(e, "avg_response_ms") / 1000.0);
    w.family("openace_engine_memory_bytes", "gauge", "Bytes held by the engine's own buffers");
    for (auto &[name, e] : engines.items())
        w.sample("openace_engine_memory_bytes", label("engine", name), num(e, "memory_bytes"));

    const auto &jobs = stats.at("jobs");
    w.family("openace_jobs", "gauge", "Jobs now queued or running");
    for (const char *s : {"queued", "running"})
        w.sample("openace_jobs", label("state", s), num(jobs, s));
    w.family("openace_jobs_total", "counter", "Jobs ended, by final state");
    for (const char *s : {"done", "failed", "cancelled"})
        w.sample("openace_jobs_total", label("state", s), num(jobs, s));
    w.family("openace_jobs_rejected_total", "counter", "Jobs refused at submit");
    w.sample("openace_jobs_rejected_total", "", num(jobs, "rejected"));

    const auto &log = stats.at("log");
    w.family("openace_log_entries_total", "counter", "Log entries written, by level");
    for (auto &[lvl, n] : log.at("by_level").items())
        w.sample("openace_log_entries_total", label("level", lvl), n.get<double>());
    w.family("openace_log_health", "gauge", "0 healthy, 1 warning, 2 critical (DESIGN 7)");
    w.sample("openace_log_health", "", health_level(log.value("health", "")));

    const auto &ev = stats.at("events");
    w.family("openace_events_dropped_total", "counter", "Events dropped because the queue was full");
    w.sample("openace_events_dropped_total", "", num(ev, "dropped"));

    const auto &p = stats.at("process");
    w.family("openace_process_resident_memory_bytes", "gauge", "Resident set size");
    w.sample("openace_process_resident_memory_bytes", "", num(p, "rss_bytes"));
    w.family("openace_process_cpu_seconds_total", "counter", "User and system CPU time");
    w.sample("openace_process_cpu_seconds_total", "", num(p, "cpu_seconds"));

    if (auto http = stats.find("http"); http != stats.end() && http->is_object()) {
        w.family("openace_http_requests_total", "counter", "HTTP requests served");
        w.sample("openace_http_requests_total", "", num(*http, "requests"));
        w.family("openace_http_connections", "gauge", "Open HTTP connections");
        w.sample("openace_http_connections", "", num(*http, "connections_active"));
    }
    return std::move(w.out);
}

} // namespace openace::streamer
