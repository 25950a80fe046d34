// Central log: levels, ring, stats, health, search, JSON and sinks (DESIGN §7).
#include "core/log.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

using namespace openace::core;
namespace fs = std::filesystem;

namespace {

std::atomic<int> g_formatted{0};

// Counts how often it is formatted, to prove disabled calls never format.
struct Counted {};

std::vector<std::string> read_lines(const fs::path &p)
{
    std::ifstream in(p);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    return lines;
}

std::string read_stream(FILE *f)
{
    std::fflush(f);
    std::rewind(f);
    std::string out;
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
        out.append(buf, n);
    return out;
}

struct TempDir {
    TempDir()
    {
        char tmpl[] = "/tmp/openace-log-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir()
    {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    fs::path path;
};

struct CountingSink : LogSink {
    explicit CountingSink(std::atomic<uint64_t> &n) : count(n) {}
    void write(const LogEntry &) override { ++count; }
    std::atomic<uint64_t> &count;
};

Log::Options options(size_t max_entries, size_t max_memory = 16u << 20, LogLevel level = LogLevel::Trace)
{
    Log::Options o;
    o.level = level;
    o.max_entries = max_entries;
    o.max_memory_bytes = max_memory;
    return o;
}

// n entries of which `errors` are errors and `warnings` warnings, rest info.
void fill(Log &log, int n, int errors, int warnings)
{
    for (int i = 0; i < n; ++i) {
        LogLevel l = i < errors ? LogLevel::Error : i < errors + warnings ? LogLevel::Warn : LogLevel::Info;
        log.write(l, "test", 0, "m");
    }
}

} // namespace

template <> struct fmt::formatter<Counted> {
    constexpr auto parse(format_parse_context &ctx) { return ctx.begin(); }
    template <class Ctx> auto format(const Counted &, Ctx &ctx) const
    {
        ++g_formatted;
        return fmt::format_to(ctx.out(), "counted");
    }
};

TEST_CASE("log: level names round-trip and 'warning' parses as warn")
{
    for (auto l : {LogLevel::Trace, LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error, LogLevel::Off})
        CHECK(parse_log_level(to_string(l)) == l);
    CHECK(parse_log_level("WARNING") == LogLevel::Warn);
    CHECK(parse_log_level("Warn") == LogLevel::Warn);
    CHECK(parse_log_level("INFO") == LogLevel::Info);
    CHECK_FALSE(parse_log_level("verbose").has_value());
    CHECK_FALSE(parse_log_level("").has_value());
    CHECK(std::string(to_string(Health::Healthy)) == "healthy");
    CHECK(std::string(to_string(Health::Warning)) == "warning");
    CHECK(std::string(to_string(Health::Critical)) == "critical");
}

TEST_CASE("log: a call below the level does no formatting")
{
    Log log(options(100, 16u << 20, LogLevel::Info));
    Logger lg(log, "test");
    g_formatted = 0;
    Counted c;
    lg.debug("{}", c);
    lg.trace("{}", c);
    CHECK(g_formatted == 0);
    CHECK(log.stats().total == 0);

    lg.info("{}", c);
    CHECK(g_formatted == 1);
    auto entries = log.search({});
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].message == "counted");

    log.set_level(LogLevel::Off);
    lg.error("{}", c);
    CHECK(g_formatted == 1);
    CHECK_FALSE(Logger().enabled(LogLevel::Error)); // a default Logger logs nowhere
}

TEST_CASE("log: entries carry seq, time, component and job id")
{
    Log log(options(100));
    Logger lg(log, "http");
    const auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
    lg.info("a {}", 1);
    lg.with_job(7).warn("b");
    lg.with_component("engine").error("c");
    auto e = log.search({});
    REQUIRE(e.size() == 3);
    CHECK(e[0].seq == 1);
    CHECK(e[1].seq == 2);
    CHECK(e[2].seq == 3);
    CHECK(e[0].message == "a 1");
    CHECK(e[0].time_ms >= before);
    CHECK(e[0].time_ms < before + 60'000);
    CHECK(e[1].job_id == 7);
    CHECK(e[1].component == "http");
    CHECK(e[2].component == "engine");
    CHECK(e[2].level == LogLevel::Error);
}

TEST_CASE("log: the ring evicts the oldest entries beyond max_entries")
{
    Log log(options(5));
    for (int i = 0; i < 12; ++i)
        log.write(LogLevel::Info, "test", 0, fmt::format("m{}", i));
    auto e = log.search({});
    REQUIRE(e.size() == 5);
    CHECK(e.front().message == "m7");
    CHECK(e.back().message == "m11");
    auto s = log.stats();
    CHECK(s.entries == 5);
    CHECK(s.evicted == 7);
    CHECK(s.total == 12);
}

TEST_CASE("log: the ring evicts the oldest entries beyond max_memory_bytes")
{
    const std::string msg(100, 'x');
    const size_t per_entry = sizeof(LogEntry) + std::string("test").size() + msg.size();
    Log log(options(1000, per_entry * 4 + per_entry / 2));
    for (int i = 0; i < 10; ++i)
        log.write(LogLevel::Info, "test", 0, msg);
    auto s = log.stats();
    CHECK(s.entries == 4);
    CHECK(s.memory_bytes == per_entry * 4);
    CHECK(s.evicted == 6);
    CHECK(log.search({}).front().seq == 7);
}

TEST_CASE("log: a message over 64 KiB is truncated with a marker")
{
    Log log(options(10));
    log.write(LogLevel::Info, "test", 0, std::string(100 * 1024, 'a'));
    log.write(LogLevel::Info, "test", 0, std::string(64 * 1024, 'b'));
    auto e = log.search({});
    REQUIRE(e.size() == 2);
    const std::string marker = "…[truncated]";
    CHECK(e[0].message.size() == 64 * 1024 + marker.size());
    CHECK(e[0].message.substr(64 * 1024) == marker);
    CHECK(e[1].message.size() == 64 * 1024); // exactly the limit is kept whole
    CHECK(log.stats().memory_bytes < 2 * (64 * 1024 + 200 + sizeof(LogEntry)));
}

TEST_CASE("log: truncation does not split a multi-byte character")
{
    Log log(options(10));
    std::string msg = std::string(64 * 1024 - 1, 'a') + "é" + std::string(10, 'b'); // é straddles the cut
    log.write(LogLevel::Info, "test", 0, msg);
    auto m = log.search({}).at(0).message;
    CHECK(m == std::string(64 * 1024 - 1, 'a') + "…[truncated]");
}

TEST_CASE("log: invalid UTF-8 is replaced so the entry always serialises")
{
    Log log(options(10));
    log.write(LogLevel::Info, "test", 0, std::string("bad \xff\xfe byte, ok é"));
    auto m = log.search({}).at(0).message;
    CHECK(m == "bad \xEF\xBF\xBD\xEF\xBF\xBD byte, ok é");
    CHECK_NOTHROW(to_json(log.search({}).at(0)).dump());
}

TEST_CASE("log: stats count by level and by component over all time")
{
    Log log(options(3));
    Logger http(log, "http"), job(log, "job");
    http.trace("t");
    http.debug("d");
    http.info("i");
    job.warn("w");
    job.error("e");
    job.error("e");
    auto s = log.stats();
    CHECK(s.total == 6);
    CHECK(s.by_level[static_cast<int>(LogLevel::Trace)] == 1);
    CHECK(s.by_level[static_cast<int>(LogLevel::Debug)] == 1);
    CHECK(s.by_level[static_cast<int>(LogLevel::Info)] == 1);
    CHECK(s.by_level[static_cast<int>(LogLevel::Warn)] == 1);
    CHECK(s.by_level[static_cast<int>(LogLevel::Error)] == 2);
    CHECK(s.by_component.at("http") == 3);
    CHECK(s.by_component.at("job") == 3);
    CHECK(s.entries == 3);
    CHECK(s.evicted == 3);
    CHECK(s.entries_per_second > 0);
}

TEST_CASE("log: an empty log is healthy")
{
    Log log;
    auto s = log.stats();
    CHECK(s.health == Health::Healthy);
    CHECK(s.error_ratio == 0);
    CHECK(s.warning_ratio == 0);
    CHECK(s.entries_per_second == 0);
}

TEST_CASE("log: health is healthy below 5 % errors and 20 % warnings")
{
    Log log(options(100));
    fill(log, 100, 4, 19);
    auto s = log.stats();
    CHECK(s.error_ratio == Approx(0.04));
    CHECK(s.warning_ratio == Approx(0.19));
    CHECK(s.health == Health::Healthy);
}

TEST_CASE("log: health is warning at 5-10 % errors or at least 20 % warnings")
{
    SECTION("5 % errors")
    {
        Log log(options(100));
        fill(log, 100, 5, 0);
        CHECK(log.stats().health == Health::Warning);
    }
    SECTION("10 % errors")
    {
        Log log(options(100));
        fill(log, 100, 10, 0);
        CHECK(log.stats().health == Health::Warning);
    }
    SECTION("exactly 20 % warnings is no longer healthy")
    {
        Log log(options(100));
        fill(log, 100, 0, 20);
        CHECK(log.stats().health == Health::Warning);
    }
    SECTION("21 % warnings, no errors")
    {
        Log log(options(100));
        fill(log, 100, 0, 21);
        CHECK(log.stats().health == Health::Warning);
    }
}

TEST_CASE("log: health is critical over 10 % errors")
{
    Log log(options(100));
    fill(log, 100, 11, 0);
    auto s = log.stats();
    CHECK(s.error_ratio == Approx(0.11));
    CHECK(s.health == Health::Critical);
}

TEST_CASE("log: health recovers once errors leave the ring")
{
    Log log(options(100));
    fill(log, 100, 50, 0);
    CHECK(log.stats().health == Health::Critical);
    fill(log, 100, 0, 0);
    auto s = log.stats();
    CHECK(s.health == Health::Healthy);
    CHECK(s.by_level[static_cast<int>(LogLevel::Error)] == 50); // all-time counts keep them
}

TEST_CASE("log: search filters by level, component, text and job id")
{
    Log log(options(100));
    log.write(LogLevel::Debug, "http", 0, "GET /status");
    log.write(LogLevel::Info, "http", 3, "GET /job/3");
    log.write(LogLevel::Warn, "job", 3, "Peer Timeout");
    log.write(LogLevel::Error, "job", 4, "tracker failed");

    auto messages = [&](const LogFilter &f) {
        std::vector<std::string> out;
        for (auto &e : log.search(f))
            out.push_back(e.message);
        return out;
    };
    using V = std::vector<std::string>;

    LogFilter f;
    f.min_level = LogLevel::Warn;
    CHECK(messages(f) == V{"Peer Timeout", "tracker failed"});

    f = {};
    f.component = "http";
    CHECK(messages(f) == V{"GET /status", "GET /job/3"});
    f.component = "htt"; // exact, not prefix
    CHECK(messages(f).empty());

    f = {};
    f.text = "peer timeOUT";
    CHECK(messages(f) == V{"Peer Timeout"});
    f.text = "get";
    CHECK(messages(f) == V{"GET /status", "GET /job/3"});

    f = {};
    f.job_id = 3;
    CHECK(messages(f) == V{"GET /job/3", "Peer Timeout"});

    f = {};
    f.job_id = 3;
    f.min_level = LogLevel::Warn;
    CHECK(messages(f) == V{"Peer Timeout"});
}

TEST_CASE("log: search filters by an inclusive time range")
{
    Log log(options(100));
    log.write(LogLevel::Info, "t", 0, "a");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    log.write(LogLevel::Info, "t", 0, "b");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    log.write(LogLevel::Info, "t", 0, "c");
    auto all = log.search({});
    REQUIRE(all.size() == 3);
    REQUIRE(all[0].time_ms < all[1].time_ms);
    REQUIRE(all[1].time_ms < all[2].time_ms);

    LogFilter f;
    f.since_ms = all[1].time_ms;
    f.until_ms = all[1].time_ms;
    auto r = log.search(f);
    REQUIRE(r.size() == 1);
    CHECK(r[0].message == "b");

    f = {};
    f.since_ms = all[1].time_ms;
    CHECK(log.search(f).size() == 2);
    f = {};
    f.until_ms = all[1].time_ms;
    CHECK(log.search(f).size() == 2);
    CHECK(log.search(f).back().message == "b");
}

TEST_CASE("log: search returns the newest limit matches oldest first")
{
    Log log(options(100));
    for (int i = 0; i < 10; ++i)
        log.write(LogLevel::Info, "t", 0, fmt::format("m{}", i));
    LogFilter f;
    f.limit = 3;
    auto r = log.search(f);
    REQUIRE(r.size() == 3);
    CHECK(r[0].message == "m7");
    CHECK(r[1].message == "m8");
    CHECK(r[2].message == "m9");
    f.limit = 0;
    CHECK(log.search(f).empty());
}

TEST_CASE("log: an entry serialises to JSON with an ISO-8601 UTC time")
{
    LogEntry e;
    e.seq = 42;
    e.time_ms = 1795618352123; // 2026-11-25T14:52:32.123Z
    e.level = LogLevel::Warn;
    e.component = "http";
    e.message = "slow \"peer\"";
    e.job_id = 3;
    auto j = to_json(e);
    CHECK(j == nlohmann::json::parse(R"({"seq":42,"time_ms":1795618352123,"time":"2026-11-25T14:52:32.123Z",
        "level":"warn","component":"http","message":"slow \"peer\"","job_id":3})"));
    CHECK(format_log_time(5) == "1970-01-01T00:00:00.005Z");
    CHECK(format_log_time(-1) == "1969-12-31T23:59:59.999Z");
}

TEST_CASE("log: stats serialise to JSON with every counter")
{
    Log log(options(100));
    log.write(LogLevel::Error, "job", 1, "x");
    log.write(LogLevel::Info, "http", 0, "y");
    auto j = to_json(log.stats());
    CHECK(j["total"] == 2);
    CHECK(j["by_level"] == nlohmann::json::parse(R"({"trace":0,"debug":0,"info":1,"warn":0,"error":1})"));
    CHECK(j["by_component"] == nlohmann::json::parse(R"({"job":1,"http":1})"));
    CHECK(j["evicted"] == 0);
    CHECK(j["entries"] == 2);
    CHECK(j["memory_bytes"].get<size_t>() > 0);
    CHECK(j["entries_per_second"].is_number());
    CHECK(j["error_ratio"] == 0.5);
    CHECK(j["warning_ratio"] == 0.0);
    CHECK(j["health"] == "critical");
}

TEST_CASE("log: console sink writes one text line per entry")
{
    FILE *f = std::tmpfile();
    REQUIRE(f);
    auto sink = make_console_sink(f, false);
    LogEntry e;
    e.time_ms = 1795618352123;
    e.level = LogLevel::Info;
    e.component = "http";
    e.message = "message";
    e.job_id = 3;
    sink->write(e);
    e.level = LogLevel::Error;
    e.job_id = 0;
    sink->write(e);
    sink->flush();
    CHECK(read_stream(f) == "2026-11-25T14:52:32.123Z INFO  [http] message (job 3)\n"
                            "2026-11-25T14:52:32.123Z ERROR [http] message\n");
    std::fclose(f);
}

TEST_CASE("log: console sink in JSON mode writes one object per line")
{
    FILE *f = std::tmpfile();
    REQUIRE(f);
    Log log(options(100));
    log.add_sink(make_console_sink(f, true));
    log.write(LogLevel::Info, "http", 3, "one");
    log.write(LogLevel::Warn, "job", 0, "two");
    log.flush();
    std::istringstream in(read_stream(f));
    std::vector<nlohmann::json> lines;
    for (std::string line; std::getline(in, line);)
        lines.push_back(nlohmann::json::parse(line));
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == to_json(log.search({})[0]));
    CHECK(lines[1]["message"] == "two");
    CHECK(lines[1]["level"] == "warn");
    std::fclose(f);
}

TEST_CASE("log: sinks and the listener see every stored entry")
{
    Log log(options(2));
    std::atomic<uint64_t> sunk{0};
    log.add_sink(std::make_unique<CountingSink>(sunk));
    std::vector<uint64_t> seen;
    log.set_listener([&](const LogEntry &e) { seen.push_back(e.seq); });
    for (int i = 0; i < 5; ++i)
        log.write(LogLevel::Info, "t", 0, "m");
    CHECK(sunk == 5);
    CHECK(seen == std::vector<uint64_t>{1, 2, 3, 4, 5});
    log.set_listener(nullptr);
    log.write(LogLevel::Info, "t", 0, "m");
    CHECK(seen.size() == 5);
    CHECK(sunk == 6);
}

TEST_CASE("log: a throwing sink does not make logging throw")
{
    struct Throwing : LogSink {
        void write(const LogEntry &) override { throw std::runtime_error("disk full"); }
    };
    Log log(options(10));
    log.add_sink(std::make_unique<Throwing>());
    CHECK_NOTHROW(log.write(LogLevel::Info, "t", 0, "m"));
    CHECK(log.stats().entries == 1);
}

TEST_CASE("log: rotating file sink appends to an existing file")
{
    TempDir dir;
    const auto path = dir.path / "engine.log";
    std::ofstream(path) << "earlier line\n";
    {
        Log log(options(10));
        log.add_sink(make_rotating_file_sink(path.string(), 1 << 20, 3, false));
        log.write(LogLevel::Info, "engine", 0, "started");
    } // the sink closes (and flushes) its file with the Log
    auto lines = read_lines(path);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == "earlier line");
    CHECK(lines[1].find("INFO  [engine] started") != std::string::npos);
}

TEST_CASE("log: rotating file sink rotates at max_bytes and keeps N files")
{
    TempDir dir;
    const auto path = dir.path / "engine.log";
    const size_t max_bytes = 300;
    {
        Log log(options(1000));
        log.add_sink(make_rotating_file_sink(path.string(), max_bytes, 2, true));
        for (int i = 0; i < 40; ++i)
            log.write(LogLevel::Info, "engine", 0, fmt::format("line {:02}", i));
        log.flush();

        CHECK(fs::exists(path));
        CHECK(fs::exists(dir.path / "engine.log.1"));
        CHECK(fs::exists(dir.path / "engine.log.2"));
        CHECK_FALSE(fs::exists(dir.path / "engine.log.3"));
        for (auto p : {path, dir.path / "engine.log.1", dir.path / "engine.log.2"})
            CHECK(fs::file_size(p) <= max_bytes);
    }

    // Oldest in .2, newest in the live file, contiguous across files, ending at line 39.
    std::vector<int> numbers;
    for (auto p : {dir.path / "engine.log.2", dir.path / "engine.log.1", path})
        for (auto &line : read_lines(p)) {
            auto j = nlohmann::json::parse(line);
            numbers.push_back(std::stoi(j["message"].get<std::string>().substr(5)));
        }
    REQUIRE_FALSE(numbers.empty());
    CHECK(numbers.back() == 39);
    for (size_t i = 1; i < numbers.size(); ++i)
        CHECK(numbers[i] == numbers[i - 1] + 1);
    CHECK(numbers.size() < 40); // older files were dropped
}

TEST_CASE("log: rotating file sink with keep 0 keeps only the live file")
{
    TempDir dir;
    const auto path = dir.path / "engine.log";
    auto sink = make_rotating_file_sink(path.string(), 100, 0, false);
    LogEntry e;
    e.message = std::string(60, 'x');
    for (int i = 0; i < 5; ++i)
        sink->write(e);
    sink->flush();
    CHECK(read_lines(path).size() == 1);
    CHECK_FALSE(fs::exists(dir.path / "engine.log.1"));
}

TEST_CASE("log: rotating file sink reports an unopenable path as EIO naming it")
{
    TempDir dir;
    const std::string bad = (dir.path / "missing-dir" / "engine.log").string();
    try {
        make_rotating_file_sink(bad, 1000, 3, false);
        FAIL("expected openace::Error");
    } catch (const openace::Error &e) {
        CHECK(e.code() == static_cast<openace::Errc>(OPENACE_EIO)); // Errc::IO collides with <cerrno>
        CHECK(e.component() == "log");
        CHECK(e.operation() == "open");
        CHECK(e.detail() == "cannot open log file '" + bad + "': No such file or directory");
    }
    // A directory is not a file either.
    CHECK_THROWS_AS(make_rotating_file_sink(dir.path.string(), 1000, 3, false), openace::Error);
}

TEST_CASE("log: concurrent writers from 4 threads are all counted")
{
    constexpr int kThreads = 4, kPerThread = 10'000;
    Log log(options(1000));
    std::atomic<uint64_t> sunk{0}, listened{0};
    log.add_sink(std::make_unique<CountingSink>(sunk));
    log.set_listener([&](const LogEntry &) { ++listened; });

    std::atomic<bool> done{false};
    std::thread reader([&] {
        while (!done) {
            LogFilter f;
            f.text = "m";
            f.limit = 50;
            (void)log.search(f);
            (void)log.stats();
        }
    });
    std::vector<std::thread> writers;
    for (int t = 0; t < kThreads; ++t)
        writers.emplace_back([&, t] {
            Logger lg(log, fmt::format("c{}", t), t + 1);
            for (int i = 0; i < kPerThread; ++i)
                i % 10 == 0 ? lg.warn("m{}", i) : lg.info("m{}", i);
        });
    for (auto &w : writers)
        w.join();
    done = true;
    reader.join();

    auto s = log.stats();
    CHECK(s.total == kThreads * kPerThread);
    CHECK(s.by_level[static_cast<int>(LogLevel::Warn)] == kThreads * kPerThread / 10);
    CHECK(s.by_level[static_cast<int>(LogLevel::Info)] == kThreads * kPerThread * 9 / 10);
    for (int t = 0; t < kThreads; ++t)
        CHECK(s.by_component.at(fmt::format("c{}", t)) == kPerThread);
    CHECK(s.entries == 1000);
    CHECK(s.evicted == kThreads * kPerThread - 1000);
    CHECK(sunk == kThreads * kPerThread);
    CHECK(listened == kThreads * kPerThread);

    LogFilter all;
    all.limit = 10'000;
    auto entries = log.search(all);
    REQUIRE(entries.size() == 1000);
    CHECK(entries.back().seq == kThreads * kPerThread);
    for (size_t i = 1; i < entries.size(); ++i)
        CHECK(entries[i].seq == entries[i - 1].seq + 1);
}
