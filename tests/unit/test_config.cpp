#include "core/config.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <unistd.h>

using openace::core::Config;
using openace::core::default_config;
using openace::core::load_config_file;
using openace::core::parse_config;
using openace::core::parse_host_port;
using openace::core::set_config_value;
using openace::core::to_json;
using openace::core::validate;

namespace {

// The detail of the Errc::CONFIG error `f` throws.
template <class F>
std::string config_error(F &&f, const char *operation = "parse")
{
    try {
        f();
    } catch (const openace::Error &e) {
        CHECK(e.code() == openace::Errc::CONFIG);
        CHECK(e.component() == "config");
        CHECK(e.operation() == operation);
        return e.detail();
    }
    FAIL("expected an openace::Error");
    return {};
}

std::string parse_error(std::string_view text, std::string_view source = "openace.toml")
{
    return config_error([&] { parse_config(text, source); });
}

// Sets or unsets an environment variable for one scope.
class EnvOverride {
public:
    EnvOverride(const char *name, const char *value) : name_(name)
    {
        if (const char *old = std::getenv(name))
            old_ = old;
        if (value)
            ::setenv(name, value, 1);
        else
            ::unsetenv(name);
    }
    ~EnvOverride()
    {
        if (old_)
            ::setenv(name_, old_->c_str(), 1);
        else
            ::unsetenv(name_);
    }
    EnvOverride(const EnvOverride &) = delete;
    EnvOverride &operator=(const EnvOverride &) = delete;

private:
    const char *name_;
    std::optional<std::string> old_;
};

const char *const kFullToml = R"(# every key, none at its default
[engine]
log_level = "debug"
http_address = "[::1]:7000"
max_peers = 20
state_dir = "/var/lib/openace"
allow_remote_access = true
api_token = "s3cret"
max_active_jobs = 3
event_queue_size = 500
http_max_connections = 64
http_idle_timeout = 12.5
http_max_header_bytes = 8192
http_max_body_bytes = 65536

[transport]
listen_port = 0
trackers = ["udp://tracker.example:6969", "http://t2.example/announce"]
download_rate_limit = 1000
upload_rate_limit = 200
cache_size_mb = 512
embedded_tracker = true
max_connections = 40

[streaming]
buffer_size = 5        # an integer where a number is expected
hardware_acceleration = true
piece_duration = 2.0
idle_timeout = 30.0

[live]
window_seconds = 60.0
join_delay = 0
chat = false

[security]
tls_enabled = false

[logging]
max_entries = 500
max_memory_mb = 4
console = false
format = "json"
file = "/tmp/openace.log"
file_max_mb = 2
file_count = 5
event_level = "warning"
)";

const char *const kFullJson = R"({
  "engine": {
    "log_level": "debug", "http_address": "[::1]:7000", "max_peers": 20,
    "state_dir": "/var/lib/openace", "allow_remote_access": true, "api_token": "s3cret",
    "max_active_jobs": 3, "event_queue_size": 500, "http_max_connections": 64,
    "http_idle_timeout": 12.5, "http_max_header_bytes": 8192, "http_max_body_bytes": 65536
  },
  "transport": {
    "listen_port": 0,
    "trackers": ["udp://tracker.example:6969", "http://t2.example/announce"],
    "download_rate_limit": 1000, "upload_rate_limit": 200, "cache_size_mb": 512,
    "embedded_tracker": true, "max_connections": 40
  },
  "streaming": {"buffer_size": 5, "hardware_acceleration": true, "piece_duration": 2.0,
                "idle_timeout": 30.0},
  "live": {"window_seconds": 60.0, "join_delay": 0, "chat": false},
  "security": {"tls_enabled": false},
  "logging": {"max_entries": 500, "max_memory_mb": 4, "console": false, "format": "json",
              "file": "/tmp/openace.log", "file_max_mb": 2, "file_count": 5,
              "event_level": "warning"}
})";

void check_full(const Config &c)
{
    CHECK(c.engine.log_level == "debug");
    CHECK(c.engine.http_address == "[::1]:7000");
    CHECK(c.engine.max_peers == 20);
    CHECK(c.engine.state_dir == "/var/lib/openace");
    CHECK(c.engine.allow_remote_access);
    CHECK(c.engine.api_token == "s3cret");
    CHECK(c.engine.max_active_jobs == 3);
    CHECK(c.engine.event_queue_size == 500);
    CHECK(c.engine.http_max_connections == 64);
    CHECK(c.engine.http_idle_timeout == 12.5);
    CHECK(c.engine.http_max_header_bytes == 8192);
    CHECK(c.engine.http_max_body_bytes == 65536);
    CHECK(c.transport.listen_port == 0);
    CHECK(c.transport.trackers ==
          std::vector<std::string>{"udp://tracker.example:6969", "http://t2.example/announce"});
    CHECK(c.transport.download_rate_limit == 1000);
    CHECK(c.transport.upload_rate_limit == 200);
    CHECK(c.transport.cache_size_mb == 512);
    CHECK(c.transport.embedded_tracker);
    CHECK(c.transport.max_connections == 40);
    CHECK(c.streaming.buffer_size == 5.0);
    CHECK(c.streaming.hardware_acceleration);
    CHECK(c.streaming.piece_duration == 2.0);
    CHECK(c.streaming.idle_timeout == 30.0);
    CHECK(c.live.window_seconds == 60.0);
    CHECK(c.live.join_delay == 0.0);
    CHECK_FALSE(c.live.chat);
    CHECK_FALSE(c.security.tls_enabled);
    CHECK(c.logging.max_entries == 500);
    CHECK(c.logging.max_memory_mb == 4);
    CHECK_FALSE(c.logging.console);
    CHECK(c.logging.format == "json");
    CHECK(c.logging.file == "/tmp/openace.log");
    CHECK(c.logging.file_max_mb == 2);
    CHECK(c.logging.file_count == 5);
    CHECK(c.logging.event_level == "warning");
}

} // namespace

TEST_CASE("config: defaults match the documented schema")
{
    const Config c = default_config();
    CHECK(c.engine.log_level == "info");
    CHECK(c.engine.http_address == "127.0.0.1:6878");
    CHECK(c.engine.max_peers == 50);
    CHECK_FALSE(c.engine.allow_remote_access);
    CHECK(c.engine.api_token.empty());
    CHECK(c.engine.max_active_jobs == 8);
    CHECK(c.engine.event_queue_size == 1000);
    CHECK(c.engine.http_max_connections == 256);
    CHECK(c.engine.http_idle_timeout == 30.0);
    CHECK(c.engine.http_max_header_bytes == 16384);
    CHECK(c.engine.http_max_body_bytes == 1 << 20);
    CHECK(c.transport.listen_port == 8621);
    CHECK(c.transport.trackers.empty());
    CHECK(c.transport.download_rate_limit == 0);
    CHECK(c.transport.upload_rate_limit == 0);
    CHECK(c.transport.cache_size_mb == 2048);
    CHECK_FALSE(c.transport.embedded_tracker);
    CHECK(c.transport.max_connections == 200);
    CHECK(c.streaming.buffer_size == 10.0);
    CHECK_FALSE(c.streaming.hardware_acceleration);
    CHECK(c.streaming.piece_duration == 1.0);
    CHECK(c.streaming.idle_timeout == 60.0);
    CHECK(c.live.window_seconds == 120.0);
    CHECK(c.live.join_delay == 3.0);
    CHECK(c.live.chat);
    CHECK(c.security.tls_enabled);
    CHECK(c.logging.max_entries == 10000);
    CHECK(c.logging.max_memory_mb == 16);
    CHECK(c.logging.console);
    CHECK(c.logging.format == "text");
    CHECK(c.logging.file.empty());
    CHECK(c.logging.file_max_mb == 10);
    CHECK(c.logging.file_count == 3);
    CHECK(c.logging.event_level == "off");
    CHECK_NOTHROW(validate(c));
}

TEST_CASE("config: empty text and empty sections give the defaults")
{
    CHECK(parse_config("") == default_config());
    CHECK(parse_config("  \n# only a comment\n") == default_config());
    CHECK(parse_config("[engine]\n[logging]\n") == default_config());
    CHECK(parse_config("{}") == default_config());
    CHECK(parse_config(" \n {\"engine\": {}}") == default_config());
}

TEST_CASE("config: absent keys keep their defaults")
{
    const Config c = parse_config("[engine]\nmax_peers = 7\n");
    Config expected = default_config();
    expected.engine.max_peers = 7;
    CHECK(c == expected);
}

TEST_CASE("config: a full TOML file sets every key")
{
    check_full(parse_config(kFullToml, "openace.toml"));
}

TEST_CASE("config: a full JSON document sets every key")
{
    check_full(parse_config(kFullJson));
    CHECK(parse_config(kFullJson) == parse_config(kFullToml));
}

TEST_CASE("config: unknown key names the key and its line (TOML)")
{
    CHECK(parse_error("[engine]\nmax_peers = 5\nfoo = 1\n") ==
          "openace.toml:3: unknown key 'engine.foo'");
    CHECK(parse_error("# c\n\n[nosuch]\nx = 1\n") == "openace.toml:3: unknown section 'nosuch'");
    CHECK(parse_error("top = 1\n") == "openace.toml:1: unknown key 'top'");
    CHECK(parse_error("[engine.sub]\nx = 1\n") == "openace.toml:1: unknown key 'engine.sub'");
    CHECK(parse_error("[logging]\nformat = \"text\"\n\n[engine]\nbogus = true\n") ==
          "openace.toml:5: unknown key 'engine.bogus'");
}

TEST_CASE("config: of several TOML errors the one nearest the top is reported")
{
    // toml++ iterates keys alphabetically; the report must follow the file.
    CHECK(parse_error("[engine]\nzzz = 1\naaa = 2\n") == "openace.toml:2: unknown key 'engine.zzz'");
    CHECK(parse_error("[transport]\nlisten_port = \"x\"\n[engine]\nmax_peers = \"y\"\n") ==
          "openace.toml:2: key 'transport.listen_port': expected an integer, got string");
}

TEST_CASE("config: unknown key names the key and its line (JSON)")
{
    CHECK(parse_error("{\n  \"engine\": {\n    \"max_peers\": 5,\n    \"foo\": 1\n  }\n}", "config") ==
          "config:4: unknown key 'engine.foo'");
    CHECK(parse_error("{\"engine\": {}, \"nosuch\": {}}", "config") ==
          "config:1: unknown section 'nosuch'");
    CHECK(parse_error("{\n\n\n\"live\": {\"chat\": true,\n\"window\": 3}}", "config") ==
          "config:5: unknown key 'live.window'");
    // A newline right after a number is consumed by the lexer's look-ahead.
    CHECK(parse_error("{\"engine\": {\"max_peers\": 5\n, \"bar\": 1}}", "config") ==
          "config:2: unknown key 'engine.bar'");
}

TEST_CASE("config: unknown keys are printed safely")
{
    CHECK(parse_error("{\"engine\": {\"a\\nb\": 1}}", "config") ==
          "config:1: unknown key 'engine.a\\x0ab'");
    const std::string detail = parse_error("[engine]\n" + std::string(300, 'k') + " = 1\n");
    CHECK(detail.size() < 120);
    CHECK_THAT(detail, Catch::EndsWith("...'"));
}

TEST_CASE("config: wrong type names the key, the line, expected and actual type")
{
    CHECK(parse_error("[engine]\nmax_peers = \"fifty\"\n") ==
          "openace.toml:2: key 'engine.max_peers': expected an integer, got string");
    CHECK(parse_error("[engine]\n\nmax_peers = 5.0\n") ==
          "openace.toml:3: key 'engine.max_peers': expected an integer, got float");
    CHECK(parse_error("[streaming]\nbuffer_size = true\n") ==
          "openace.toml:2: key 'streaming.buffer_size': expected a number, got boolean");
    CHECK(parse_error("[security]\ntls_enabled = 1\n") ==
          "openace.toml:2: key 'security.tls_enabled': expected a boolean, got integer");
    CHECK(parse_error("[engine]\nlog_level = 1979-05-27\n") ==
          "openace.toml:2: key 'engine.log_level': expected a string, got date");
    CHECK(parse_error("[transport]\ntrackers = \"udp://x\"\n") ==
          "openace.toml:2: key 'transport.trackers': expected an array of strings, got string");
    CHECK(parse_error("[transport]\ntrackers = [\n  \"udp://x\",\n  7,\n]\n") ==
          "openace.toml:4: key 'transport.trackers': element 2: expected a string, got integer");
    CHECK(parse_error("engine = 5\n") == "openace.toml:1: key 'engine': expected a table, got integer");
    CHECK(parse_error("[engine]\nmax_peers = [1]\n") ==
          "openace.toml:2: key 'engine.max_peers': expected an integer, got array");
    CHECK(parse_error("[engine]\nmax_peers = 99999999999\n") ==
          "openace.toml:2: key 'engine.max_peers': integer 99999999999 is out of range");
}

TEST_CASE("config: wrong JSON types name the key, the line, expected and actual type")
{
    CHECK(parse_error("{\"engine\":\n{\"max_peers\": \"fifty\"}}", "config") ==
          "config:2: key 'engine.max_peers': expected an integer, got string");
    CHECK(parse_error("{\"engine\": {\"max_peers\": 5.5}}", "config") ==
          "config:1: key 'engine.max_peers': expected an integer, got float");
    CHECK(parse_error("{\"engine\": {\"max_peers\": null}}", "config") ==
          "config:1: key 'engine.max_peers': expected an integer, got null");
    CHECK(parse_error("{\"engine\": {\"max_peers\": {}}}", "config") ==
          "config:1: key 'engine.max_peers': expected an integer, got object");
    CHECK(parse_error("{\"engine\": {\"max_peers\": [1]}}", "config") ==
          "config:1: key 'engine.max_peers': expected an integer, got array");
    CHECK(parse_error("{\"engine\": 3}", "config") ==
          "config:1: key 'engine': expected an object, got integer");
    CHECK(parse_error("{\"engine\": []}", "config") ==
          "config:1: key 'engine': expected an object, got array");
    CHECK(parse_error("{\"transport\": {\"trackers\": [\"a\",\n\"b\",\n3]}}", "config") ==
          "config:3: key 'transport.trackers': element 3: expected a string, got integer");
    CHECK(parse_error("{\"transport\": {\"trackers\": [[\"a\"]]}}", "config") ==
          "config:1: key 'transport.trackers': element 1: expected a string, got array");
    CHECK(parse_error("{\"transport\": {\"cache_size_mb\": 18446744073709551615}}", "config") ==
          "config:1: key 'transport.cache_size_mb': integer is out of range");
    // Integers are accepted where numbers are expected.
    CHECK(parse_config("{\"live\": {\"join_delay\": 2}}").live.join_delay == 2.0);
}

TEST_CASE("config: duplicate JSON keys are rejected")
{
    CHECK(parse_error("{\"engine\": {\"max_peers\": 1,\n\"max_peers\": 2}}", "config") ==
          "config:2: duplicate key 'engine.max_peers'");
    CHECK(parse_error("{\"live\": {},\n\"live\": {}}", "config") == "config:2: duplicate key 'live'");
}

TEST_CASE("config: syntax errors give line and column")
{
    const std::string toml = parse_error("[engine]\nmax_peers = 5\nlog_level = \n");
    CHECK_THAT(toml, Catch::StartsWith("openace.toml:3:"));
    CHECK_THAT(toml, Catch::Contains(": TOML syntax error: "));

    CHECK_THAT(parse_error("[engine\n"), Catch::StartsWith("openace.toml:1:"));

    const std::string json = parse_error("{\"engine\": x}", "config");
    CHECK_THAT(json, Catch::StartsWith("config:1:12: JSON syntax error: "));
    CHECK_THAT(json, Catch::Contains("invalid literal"));
    CHECK_THAT(json, !Catch::Contains("json.exception"));

    CHECK_THAT(parse_error("{\n\"engine\": {\n\"max_peers\": 5,\n}}", "config"),
               Catch::StartsWith("config:4:1: JSON syntax error: "));
    CHECK_THAT(parse_error("{\"engine\": {}} trailing", "config"),
               Catch::StartsWith("config:1:"));
    CHECK_THAT(parse_error("{\"engine\": {", "config"), Catch::Contains("JSON syntax error"));
}

TEST_CASE("config: bad values name the key, the line and the rule")
{
    CHECK(parse_error("[engine]\nmax_peers = 5\n\n\n[logging]\nformat = \"xml\"\n") ==
          "openace.toml:6: key 'logging.format': must be \"text\" or \"json\", got \"xml\"");
    CHECK(parse_error("[engine]\nlog_level = \"loud\"\n") ==
          "openace.toml:2: key 'engine.log_level': must be one of trace, debug, info, warn, "
          "warning, error, off; got \"loud\"");
    CHECK(parse_error("[transport]\nlisten_port = 70000\n") ==
          "openace.toml:2: key 'transport.listen_port': must be between 0 and 65535, got 70000");
    CHECK(parse_error("[transport]\nlisten_port = -1\n") ==
          "openace.toml:2: key 'transport.listen_port': must be between 0 and 65535, got -1");
    CHECK_THAT(parse_error("[streaming]\npiece_duration = 0\n"),
               Catch::StartsWith("openace.toml:2: key 'streaming.piece_duration': must be greater "
                                 "than 0 and at most 60, got 0"));
    CHECK_THAT(parse_error("[streaming]\npiece_duration = 60.5\n"),
               Catch::StartsWith("openace.toml:2: key 'streaming.piece_duration'"));
    CHECK_NOTHROW(parse_config("[streaming]\npiece_duration = 60\n"));
    CHECK_THAT(parse_error("[streaming]\nbuffer_size = nan\n"),
               Catch::StartsWith("openace.toml:2: key 'streaming.buffer_size'"));
    CHECK_THAT(parse_error("[engine]\nhttp_idle_timeout = inf\n"),
               Catch::StartsWith("openace.toml:2: key 'engine.http_idle_timeout'"));
    CHECK_THAT(parse_error("[transport]\nupload_rate_limit = -5\n"),
               Catch::StartsWith("openace.toml:2: key 'transport.upload_rate_limit': must be "
                                 "between 0 and"));
    CHECK_THAT(parse_error("[transport]\ncache_size_mb = 0\n"),
               Catch::StartsWith("openace.toml:2: key 'transport.cache_size_mb': must be between 1"));
    CHECK_THAT(parse_error("[engine]\nmax_peers = 0\n"),
               Catch::StartsWith("openace.toml:2: key 'engine.max_peers': must be between 1"));
    CHECK_THAT(parse_error("[engine]\nhttp_address = \"localhost\"\n"),
               Catch::StartsWith("openace.toml:2: key 'engine.http_address': missing port"));
    CHECK_THAT(parse_error("[transport]\ntrackers = [\"\"]\n"),
               Catch::StartsWith("openace.toml:2: key 'transport.trackers': element 1 is empty"));
    CHECK_THAT(parse_error("[engine]\napi_token = \"a b\"\n"),
               Catch::StartsWith("openace.toml:2: key 'engine.api_token'"));
    CHECK_THAT(parse_error("{\"logging\": {\n\"event_level\": \"loud\"}}", "config"),
               Catch::StartsWith("config:2: key 'logging.event_level'"));
    CHECK_NOTHROW(parse_config("[live]\njoin_delay = 0\n"));
    CHECK_NOTHROW(parse_config("[engine]\nlog_level = \"warning\"\n"));
}

TEST_CASE("config: oversized input and deep nesting are rejected")
{
    const std::string big = "# " + std::string(openace::core::kMaxConfigBytes, 'x') + "\n";
    CHECK_THAT(parse_error(big), Catch::StartsWith("openace.toml: input is "));

    std::string deep_json = "{\"transport\": {\"trackers\": ";
    deep_json += std::string(100, '[') + std::string(100, ']') + "}}";
    CHECK_THAT(parse_error(deep_json, "config"), Catch::StartsWith("config:1: key 'transport.trackers'"));

    std::string deep_toml = "[engine]\nx = " + std::string(20, '[') + std::string(20, ']') + "\n";
    CHECK(parse_error(deep_toml) == "openace.toml:2: nesting deeper than 16 levels");
    std::string deep_table = "[a";
    for (int i = 0; i < 20; ++i)
        deep_table += ".b";
    CHECK(parse_error(deep_table + "]\n") == "openace.toml:1: nesting deeper than 16 levels");
}

TEST_CASE("config: set_config_value parses the key's type and validates")
{
    Config c = default_config();
    set_config_value(c, "engine.log_level", "debug");
    set_config_value(c, "engine.max_peers", "12");
    set_config_value(c, "transport.cache_size_mb", "4096");
    set_config_value(c, "streaming.buffer_size", "2.5");
    set_config_value(c, "live.join_delay", "1");
    set_config_value(c, "engine.allow_remote_access", "yes");
    set_config_value(c, "security.tls_enabled", "False");
    set_config_value(c, "transport.trackers", "udp://a:1, http://b/announce ,");
    CHECK(c.engine.log_level == "debug");
    CHECK(c.engine.max_peers == 12);
    CHECK(c.transport.cache_size_mb == 4096);
    CHECK(c.streaming.buffer_size == 2.5);
    CHECK(c.live.join_delay == 1.0);
    CHECK(c.engine.allow_remote_access);
    CHECK_FALSE(c.security.tls_enabled);
    CHECK(c.transport.trackers == std::vector<std::string>{"udp://a:1", "http://b/announce"});
    set_config_value(c, "transport.trackers", "");
    CHECK(c.transport.trackers.empty());
}

TEST_CASE("config: set_config_value errors name the key and leave the config unchanged")
{
    Config c = default_config();
    const Config before = c;
    const auto set_error = [&](std::string_view key, std::string_view value) {
        return config_error([&] { set_config_value(c, key, value); }, "set");
    };
    CHECK(set_error("engine.max_peers", "many") ==
          "command line: key 'engine.max_peers': expected an integer, got \"many\"");
    CHECK(set_error("engine.max_peers", "5.0") ==
          "command line: key 'engine.max_peers': expected an integer, got \"5.0\"");
    CHECK(set_error("engine.max_peers", "0") ==
          "command line: key 'engine.max_peers': must be between 1 and 100000, got 0");
    CHECK(set_error("engine.log_level", "loud") ==
          "command line: key 'engine.log_level': must be one of trace, debug, info, warn, "
          "warning, error, off; got \"loud\"");
    CHECK(set_error("security.tls_enabled", "maybe") ==
          "command line: key 'security.tls_enabled': expected a boolean, got \"maybe\"");
    CHECK(set_error("engine.foo", "1") == "command line: unknown key 'engine.foo'");
    CHECK(set_error("max_peers", "1") == "command line: unknown key 'max_peers'");
    CHECK(set_error("engine.state_dir", "\xff") ==
          "command line: key 'engine.state_dir': expected UTF-8 text, got \"\\xff\"");
    CHECK(c == before);
}

TEST_CASE("config: to_json gives the full effective config and masks the token")
{
    Config c = parse_config(kFullToml);
    const nlohmann::json j = to_json(c);
    CHECK(j.size() == 6);
    CHECK(j["engine"]["api_token"] == "***");
    CHECK(j["engine"]["max_peers"] == 20);
    CHECK(j["transport"]["trackers"].size() == 2);
    CHECK(j["streaming"]["buffer_size"] == 5.0);
    CHECK(j["logging"]["format"] == "json");
    CHECK(to_json(default_config())["engine"]["api_token"] == "");
}

TEST_CASE("config: to_json output parses back to the same config")
{
    Config c = parse_config(kFullToml);
    c.engine.api_token.clear(); // masked tokens cannot round-trip
    CHECK(parse_config(to_json(c).dump(2)) == c);
    CHECK(parse_config(to_json(c).dump()) == c);
    CHECK(parse_config(to_json(default_config()).dump()) == default_config());
}

TEST_CASE("config: state_dir defaults to XDG_STATE_HOME, then HOME")
{
    {
        EnvOverride xdg("XDG_STATE_HOME", "/xdg/state");
        EnvOverride home("HOME", "/home/u");
        CHECK(default_config().engine.state_dir == "/xdg/state/openace");
        CHECK(parse_config("").engine.state_dir == "/xdg/state/openace");
    }
    {
        EnvOverride xdg("XDG_STATE_HOME", nullptr);
        EnvOverride home("HOME", "/home/u/");
        CHECK(default_config().engine.state_dir == "/home/u/.local/state/openace");
    }
    {
        // The XDG spec says to ignore relative paths.
        EnvOverride xdg("XDG_STATE_HOME", "relative");
        EnvOverride home("HOME", "/home/u");
        CHECK(default_config().engine.state_dir == "/home/u/.local/state/openace");
    }
    {
        EnvOverride xdg("XDG_STATE_HOME", "/xdg");
        CHECK(parse_config("[engine]\nstate_dir = \"/x\"\n").engine.state_dir == "/x");
    }
}

TEST_CASE("config: load_config_file names the path in its errors")
{
    CHECK(config_error([] { load_config_file("/nonexistent/openace.toml"); }, "load") ==
          "cannot read '/nonexistent/openace.toml': No such file or directory");
    CHECK_THAT(config_error([] { load_config_file("/"); }, "load"),
               Catch::StartsWith("cannot read '/': "));

    char path[] = "/tmp/openace-test-config-XXXXXX";
    const int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::close(fd);
    {
        std::ofstream(path) << "[engine]\nmax_peers = 9\n";
        CHECK(load_config_file(path).engine.max_peers == 9);
    }
    {
        std::ofstream(path) << "[engine]\nmax_peers = 9\nnope = 1\n";
        CHECK(config_error([&] { load_config_file(path); }) ==
              std::string(path) + ":3: unknown key 'engine.nope'");
    }
    std::remove(path);
}

TEST_CASE("config: validate rejects out-of-range values without a source")
{
    Config c = default_config();
    c.streaming.piece_duration = 61;
    CHECK_THAT(config_error([&] { validate(c); }, "validate"),
               Catch::StartsWith("key 'streaming.piece_duration': must be"));
}

TEST_CASE("config: parse_host_port accepts IPv4, names and bracketed IPv6")
{
    auto hp = parse_host_port("127.0.0.1:6878", "engine.http_address");
    CHECK(hp.host == "127.0.0.1");
    CHECK(hp.port == 6878);
    hp = parse_host_port("[::1]:80", "k");
    CHECK(hp.host == "::1");
    CHECK(hp.port == 80);
    hp = parse_host_port("localhost:0", "k");
    CHECK(hp.host == "localhost");
    CHECK(hp.port == 0);
    CHECK(parse_host_port("0.0.0.0:65535", "k").port == 65535);
}

TEST_CASE("config: parse_host_port rejects malformed addresses naming the key")
{
    for (const char *bad : {"127.0.0.1", "127.0.0.1:", ":80", "::1:80", "[::1]", "[::1]80",
                            "[]:80", "host:65536", "host:-1", "host:8a", "ho st:80",
                            "[::1:80", "h:123456"}) {
        INFO(bad);
        CHECK_THAT(config_error([&] { parse_host_port(bad, "engine.http_address"); }),
                   Catch::StartsWith("key 'engine.http_address': "));
    }
}
