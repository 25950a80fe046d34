// Central log: every component of one engine logs through one Log (DESIGN §7).
//
// A Log is thread-safe (the loop thread, media threads and the thread pool all
// write to it).  Components hold a Logger: a cheap value naming the component
// (and optionally the job id used as correlation id).  A call below the active
// level returns before any formatting happens.
#pragma once

#include <fmt/format.h>
#include <nlohmann/json_fwd.hpp>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace openace::core {

enum class LogLevel : uint8_t { Trace = 0, Debug, Info, Warn, Error, Off };

const char *to_string(LogLevel level) noexcept;            // "trace" … "off"
std::optional<LogLevel> parse_log_level(std::string_view s) noexcept; // accepts "warning" too

enum class Health : uint8_t { Healthy = 0, Warning, Critical };
const char *to_string(Health h) noexcept;                   // "healthy" | "warning" | "critical"

struct LogEntry {
    uint64_t seq = 0;          // 1, 2, 3 … per Log
    int64_t time_ms = 0;       // Unix time in milliseconds
    LogLevel level = LogLevel::Info;
    std::string component;     // "http", "engine", "job", "config", …
    std::string message;
    int64_t job_id = 0;        // correlation id; 0 when none
};

nlohmann::json to_json(const LogEntry &e);
// ISO-8601 UTC with milliseconds: "2026-11-25T14:52:32.123Z".
std::string format_log_time(int64_t time_ms);

struct LogFilter {
    std::optional<LogLevel> min_level;
    std::string component;             // exact match; empty = any
    std::string text;                  // case-insensitive substring of message; empty = any
    int64_t job_id = 0;                // 0 = any
    std::optional<int64_t> since_ms;   // inclusive
    std::optional<int64_t> until_ms;   // inclusive
    size_t limit = 1000;               // newest `limit` matches, returned oldest first
};

struct LogStats {
    uint64_t total = 0;                          // entries ever written (at or above level)
    uint64_t by_level[5] = {};                   // indexed by LogLevel Trace..Error
    std::map<std::string, uint64_t> by_component;
    uint64_t evicted = 0;                        // dropped from the ring (count or memory cap)
    size_t entries = 0;                          // now in the ring
    size_t memory_bytes = 0;                     // approximate bytes held by the ring
    double entries_per_second = 0;               // over the last 60 s
    double error_ratio = 0;                      // over the entries in the ring
    double warning_ratio = 0;
    Health health = Health::Healthy;
};

nlohmann::json to_json(const LogStats &s);

// Where entries go besides the ring.  write() is called with the Log's sink
// mutex held, from whatever thread logged.
class LogSink {
public:
    virtual ~LogSink() = default;
    virtual void write(const LogEntry &e) = 0;
    virtual void flush() {}
};

// Text: "2026-11-25T14:52:32.123Z INFO  [http] message (job 3)"; JSON: one
// object per line (to_json(LogEntry)).
std::unique_ptr<LogSink> make_console_sink(FILE *out, bool json);
// Appends to `path`; when it exceeds max_bytes renames path -> path.1 -> … ->
// path.<keep> (oldest dropped) and starts a new file.  Throws openace::Error
// (EIO) naming the path when it cannot be opened.
std::unique_ptr<LogSink> make_rotating_file_sink(const std::string &path, size_t max_bytes,
                                                 unsigned keep, bool json);

class Log {
public:
    struct Options {
        LogLevel level = LogLevel::Info;
        size_t max_entries = 10000;
        size_t max_memory_bytes = 16u << 20;
    };

    Log();
    explicit Log(Options opts);
    ~Log();
    Log(const Log &) = delete;
    Log &operator=(const Log &) = delete;

    void set_level(LogLevel level) noexcept { level_.store(level, std::memory_order_relaxed); }
    LogLevel level() const noexcept { return level_.load(std::memory_order_relaxed); }
    bool enabled(LogLevel level) const noexcept
    {
        return level != LogLevel::Off && level >= level_.load(std::memory_order_relaxed);
    }

    void add_sink(std::unique_ptr<LogSink> sink);
    // Called after each entry is stored, outside the ring lock (used to turn
    // entries into OPENACE_EVENT_LOG events).  Must not log.
    void set_listener(std::function<void(const LogEntry &)> fn);

    // Store an entry (the caller already checked enabled()).
    void write(LogLevel level, std::string_view component, int64_t job_id, std::string message);

    std::vector<LogEntry> search(const LogFilter &f) const;
    LogStats stats() const;
    void flush();

private:
    struct Impl;
    std::atomic<LogLevel> level_{LogLevel::Info};
    std::unique_ptr<Impl> impl_;
};

class Logger {
public:
    Logger() = default;
    Logger(Log &log, std::string component, int64_t job_id = 0)
        : log_(&log), component_(std::move(component)), job_id_(job_id) {}

    Logger with_job(int64_t job_id) const { return Logger(*log_, component_, job_id); }
    Logger with_component(std::string component) const { return Logger(*log_, std::move(component), job_id_); }
    Log *log() const noexcept { return log_; }
    const std::string &component() const noexcept { return component_; }
    bool enabled(LogLevel l) const noexcept { return log_ && log_->enabled(l); }

    template <class... A> void log(LogLevel l, fmt::format_string<A...> f, A &&...a) const
    {
        if (!enabled(l))
            return; // below the level: no formatting at all
        log_->write(l, component_, job_id_, fmt::format(f, std::forward<A>(a)...));
    }
    template <class... A> void trace(fmt::format_string<A...> f, A &&...a) const { log(LogLevel::Trace, f, std::forward<A>(a)...); }
    template <class... A> void debug(fmt::format_string<A...> f, A &&...a) const { log(LogLevel::Debug, f, std::forward<A>(a)...); }
    template <class... A> void info(fmt::format_string<A...> f, A &&...a) const { log(LogLevel::Info, f, std::forward<A>(a)...); }
    template <class... A> void warn(fmt::format_string<A...> f, A &&...a) const { log(LogLevel::Warn, f, std::forward<A>(a)...); }
    template <class... A> void error(fmt::format_string<A...> f, A &&...a) const { log(LogLevel::Error, f, std::forward<A>(a)...); }

private:
    Log *log_ = nullptr;
    std::string component_;
    int64_t job_id_ = 0;
};

} // namespace openace::core
