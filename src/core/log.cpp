// Central log (DESIGN §7): ring buffer, counters, rate, health and search.
#include "core/log.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <ctime>
#include <deque>
#include <mutex>

namespace openace::core {

namespace {

constexpr size_t kMaxMessageBytes = 64 * 1024;
constexpr std::string_view kTruncatedMarker = "…[truncated]";
constexpr int kRateWindowSeconds = 60;

char ascii_lower(char c) noexcept
{
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) noexcept
{
    if (a.size() != b.size())
        return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    return true;
}

// `needle` must already be lower case (it is lowered once per search, not per entry).
bool icontains(std::string_view haystack, std::string_view needle) noexcept
{
    if (needle.empty())
        return true;
    if (needle.size() > haystack.size())
        return false;
    for (size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
        size_t j = 0;
        while (j < needle.size() && ascii_lower(haystack[i + j]) == needle[j])
            ++j;
        if (j == needle.size())
            return true;
    }
    return false;
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is invalid
// (overlong forms, surrogates and code points above U+10FFFF included).
size_t utf8_sequence_length(std::string_view s, size_t i) noexcept
{
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; // allowed range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        if (b0 == 0xE0)
            lo = 0xA0;
        else if (b0 == 0xED)
            hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        if (b0 == 0xF0)
            lo = 0x90;
        else if (b0 == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (i + len > s.size())
        return 0;
    const auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b1 < lo || b1 > hi)
        return 0;
    for (size_t k = 2; k < len; ++k)
        if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80)
            return 0;
    return len;
}

// Messages carry text from peers, URLs and file names; an invalid byte would
// make every later JSON dump of the entry (API, JSON sinks) throw, so invalid
// sequences are replaced with U+FFFD once, here.
void sanitize_utf8(std::string &s)
{
    size_t i = 0;
    while (i < s.size()) {
        const size_t n = utf8_sequence_length(s, i);
        if (n == 0)
            break;
        i += n;
    }
    if (i == s.size())
        return; // the common case: no copy
    std::string out;
    out.reserve(s.size() + 16);
    out.append(s, 0, i);
    while (i < s.size()) {
        const size_t n = utf8_sequence_length(s, i);
        if (n == 0) {
            out += "\xEF\xBF\xBD";
            ++i;
        } else {
            out.append(s, i, n);
            i += n;
        }
    }
    s = std::move(out);
}

void truncate_message(std::string &s)
{
    if (s.size() <= kMaxMessageBytes)
        return;
    size_t cut = kMaxMessageBytes;
    // Cut on a character boundary so the result stays valid UTF-8.
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80)
        --cut;
    s.resize(cut);
    s += kTruncatedMarker;
    s.shrink_to_fit(); // the ring's memory cap counts size(), so release the rest
}

size_t entry_bytes(const LogEntry &e) noexcept
{
    return sizeof(LogEntry) + e.component.size() + e.message.size();
}

int64_t unix_now_ms()
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace

std::string format_log_time(int64_t time_ms)
{
    // Floor division so times before 1970 still get a 0..999 millisecond part.
    int64_t secs = time_ms / 1000;
    int64_t ms = time_ms % 1000;
    if (ms < 0) {
        ms += 1000;
        --secs;
    }
    const auto t = static_cast<std::time_t>(secs);
    std::tm tm{};
    if (!gmtime_r(&t, &tm))
        return fmt::format("{}", time_ms);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

const char *to_string(LogLevel level) noexcept
{
    switch (level) {
    case LogLevel::Trace: return "trace";
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warn";
    case LogLevel::Error: return "error";
    case LogLevel::Off: return "off";
    }
    return "unknown";
}

std::optional<LogLevel> parse_log_level(std::string_view s) noexcept
{
    static constexpr std::pair<std::string_view, LogLevel> names[] = {
        {"trace", LogLevel::Trace}, {"debug", LogLevel::Debug}, {"info", LogLevel::Info},
        {"warn", LogLevel::Warn},   {"warning", LogLevel::Warn}, {"error", LogLevel::Error},
        {"off", LogLevel::Off},
    };
    for (const auto &[name, level] : names)
        if (iequals(s, name))
            return level;
    return std::nullopt;
}

const char *to_string(Health h) noexcept
{
    switch (h) {
    case Health::Healthy: return "healthy";
    case Health::Warning: return "warning";
    case Health::Critical: return "critical";
    }
    return "unknown";
}

nlohmann::json to_json(const LogEntry &e)
{
    return nlohmann::json{
        {"seq", e.seq},
        {"time_ms", e.time_ms},
        {"time", format_log_time(e.time_ms)},
        {"level", to_string(e.level)},
        {"component", e.component},
        {"message", e.message},
        {"job_id", e.job_id},
    };
}

nlohmann::json to_json(const LogStats &s)
{
    nlohmann::json by_level = nlohmann::json::object();
    for (int i = 0; i <= static_cast<int>(LogLevel::Error); ++i)
        by_level[to_string(static_cast<LogLevel>(i))] = s.by_level[i];
    nlohmann::json by_component = nlohmann::json::object();
    for (const auto &[name, count] : s.by_component)
        by_component[name] = count;
    return nlohmann::json{
        {"total", s.total},
        {"by_level", std::move(by_level)},
        {"by_component", std::move(by_component)},
        {"evicted", s.evicted},
        {"entries", s.entries},
        {"memory_bytes", s.memory_bytes},
        {"entries_per_second", s.entries_per_second},
        {"error_ratio", s.error_ratio},
        {"warning_ratio", s.warning_ratio},
        {"health", to_string(s.health)},
    };
}

struct Log::Impl {
    using SteadyClock = std::chrono::steady_clock;

    struct RateBucket {
        int64_t second = -1; // steady seconds since `started`; -1 = unused
        uint64_t count = 0;
    };

    explicit Impl(const Options &o) : opts(o) {}

    int64_t steady_second(SteadyClock::time_point now) const
    {
        return std::chrono::duration_cast<std::chrono::seconds>(now - started).count();
    }

    // Drops the oldest entries until both caps hold; ring_mutex held.
    void evict_over_caps()
    {
        while (!ring.empty() && (ring.size() > opts.max_entries || memory_bytes > opts.max_memory_bytes)) {
            const LogEntry &old = ring.front();
            memory_bytes -= entry_bytes(old);
            --in_ring_by_level[static_cast<size_t>(old.level)];
            ring.pop_front();
            ++evicted;
        }
    }

    const Options opts;
    const SteadyClock::time_point started = SteadyClock::now();

    mutable std::mutex ring_mutex; // guards everything down to `buckets`
    std::deque<LogEntry> ring;
    size_t memory_bytes = 0;
    uint64_t next_seq = 1;
    uint64_t total = 0;
    uint64_t by_level[5] = {};
    std::map<std::string, uint64_t, std::less<>> by_component;
    uint64_t evicted = 0;
    size_t in_ring_by_level[5] = {}; // for health, which is over the ring only
    std::array<RateBucket, kRateWindowSeconds> buckets{};

    // Separate from ring_mutex so a slow sink (disk, console) never holds up
    // search() or stats().
    std::mutex sink_mutex;
    std::vector<std::unique_ptr<LogSink>> sinks;

    // Copied out under the mutex and called without it, so a listener may take
    // its own time without serialising every writer behind one lock.
    std::mutex listener_mutex;
    std::shared_ptr<const std::function<void(const LogEntry &)>> listener;
};

Log::Log() : Log(Options{}) {}

Log::Log(Options opts) : level_(opts.level), impl_(std::make_unique<Impl>(opts)) {}

Log::~Log() = default;

void Log::add_sink(std::unique_ptr<LogSink> sink)
{
    if (!sink)
        return;
    std::lock_guard lock(impl_->sink_mutex);
    impl_->sinks.push_back(std::move(sink));
}

void Log::set_listener(std::function<void(const LogEntry &)> fn)
{
    auto p = fn ? std::make_shared<const std::function<void(const LogEntry &)>>(std::move(fn))
                : nullptr;
    std::lock_guard lock(impl_->listener_mutex);
    impl_->listener = std::move(p);
}

void Log::write(LogLevel level, std::string_view component, int64_t job_id, std::string message)
{
    if (level >= LogLevel::Off)
        return; // not a level an entry can have; by_level has no slot for it
    Impl &d = *impl_;

    sanitize_utf8(message);
    truncate_message(message);

    LogEntry e;
    e.time_ms = unix_now_ms();
    e.level = level;
    e.component = std::string(component);
    e.message = std::move(message);
    e.job_id = job_id;

    const auto now = Impl::SteadyClock::now();
    {
        std::lock_guard lock(d.ring_mutex);
        e.seq = d.next_seq++;
        ++d.total;
        ++d.by_level[static_cast<size_t>(level)];
        if (auto it = d.by_component.find(component); it != d.by_component.end())
            ++it->second;
        else
            d.by_component.emplace(e.component, 1);

        const int64_t sec = d.steady_second(now);
        auto &bucket = d.buckets[static_cast<size_t>(sec % kRateWindowSeconds)];
        if (bucket.second != sec) {
            bucket.second = sec;
            bucket.count = 0;
        }
        ++bucket.count;

        d.memory_bytes += entry_bytes(e);
        ++d.in_ring_by_level[static_cast<size_t>(level)];
        d.ring.push_back(e); // copy: sinks and the listener still need `e`
        d.evict_over_caps();
    }

    {
        std::lock_guard lock(d.sink_mutex);
        for (auto &sink : d.sinks) {
            // Logging must never throw into the caller (a full disk must not
            // fail a request); the entry is still in the ring.
            try {
                sink->write(e);
            } catch (...) {
            }
        }
    }

    std::shared_ptr<const std::function<void(const LogEntry &)>> listener;
    {
        std::lock_guard lock(d.listener_mutex);
        listener = d.listener;
    }
    if (listener) {
        try {
            (*listener)(e);
        } catch (...) {
        }
    }
}

std::vector<LogEntry> Log::search(const LogFilter &f) const
{
    std::string needle;
    needle.reserve(f.text.size());
    for (char c : f.text)
        needle += ascii_lower(c);

    std::vector<LogEntry> out;
    if (f.limit == 0)
        return out;
    {
        std::lock_guard lock(impl_->ring_mutex);
        // Newest first so we can stop as soon as `limit` matches are found.
        for (auto it = impl_->ring.rbegin(); it != impl_->ring.rend(); ++it) {
            const LogEntry &e = *it;
            if (f.min_level && e.level < *f.min_level)
                continue;
            if (!f.component.empty() && e.component != f.component)
                continue;
            if (f.job_id != 0 && e.job_id != f.job_id)
                continue;
            if (f.since_ms && e.time_ms < *f.since_ms)
                continue;
            if (f.until_ms && e.time_ms > *f.until_ms)
                continue;
            if (!icontains(e.message, needle))
                continue;
            out.push_back(e);
            if (out.size() >= f.limit)
                break;
        }
    }
    std::reverse(out.begin(), out.end());
    return out;
}

LogStats Log::stats() const
{
    const Impl &d = *impl_;
    const auto now = Impl::SteadyClock::now();
    LogStats s;
    uint64_t recent = 0;
    {
        std::lock_guard lock(d.ring_mutex);
        s.total = d.total;
        std::copy(std::begin(d.by_level), std::end(d.by_level), std::begin(s.by_level));
        s.by_component.insert(d.by_component.begin(), d.by_component.end());
        s.evicted = d.evicted;
        s.entries = d.ring.size();
        s.memory_bytes = d.memory_bytes;
        if (!d.ring.empty()) {
            const auto n = static_cast<double>(d.ring.size());
            s.error_ratio = static_cast<double>(d.in_ring_by_level[static_cast<size_t>(LogLevel::Error)]) / n;
            s.warning_ratio = static_cast<double>(d.in_ring_by_level[static_cast<size_t>(LogLevel::Warn)]) / n;
        }
        const int64_t sec = d.steady_second(now);
        for (const auto &b : d.buckets)
            if (b.second >= 0 && b.second > sec - kRateWindowSeconds && b.second <= sec)
                recent += b.count;
    }

    // A young log has not seen a full window yet; dividing by 60 would report
    // a startup burst as a fraction of its real rate.
    const double elapsed = std::chrono::duration<double>(now - d.started).count();
    const double window = std::clamp(elapsed, 1.0, static_cast<double>(kRateWindowSeconds));
    s.entries_per_second = static_cast<double>(recent) / window;

    if (s.error_ratio > 0.10)
        s.health = Health::Critical;
    else if (s.error_ratio >= 0.05 || s.warning_ratio >= 0.20)
        s.health = Health::Warning;
    else
        s.health = Health::Healthy;
    return s;
}

void Log::flush()
{
    std::lock_guard lock(impl_->sink_mutex);
    for (auto &sink : impl_->sinks) {
        try {
            sink->flush();
        } catch (...) {
        }
    }
}

} // namespace openace::core
