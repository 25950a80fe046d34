// Engine configuration (DESIGN §6): one schema, read from TOML or JSON text.
//
// Every error is an openace::Error with Errc::CONFIG and component "config";
// its detail names the input, the line and the full dotted key, e.g.
//   "openace.toml:3: unknown key 'engine.foo'"
//   "openace.toml:2: key 'engine.max_peers': expected an integer, got string"
// so that a user can fix the file without reading the source.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace openace::core {

struct EngineSection {
    std::string log_level = "info";
    std::string http_address = "127.0.0.1:6878";
    std::string tcp_api_address = "127.0.0.1:62062"; // the old TCP API; "" = off
    int max_peers = 50;
    // Default: $XDG_STATE_HOME/openace, else $HOME/.local/state/openace, else
    // the passwd home directory; empty only when no home directory exists.
    std::string state_dir;
    bool allow_remote_access = false;
    std::string api_token; // empty = generated at start
    int max_active_jobs = 8;
    int event_queue_size = 1000;
    int http_max_connections = 256;
    double http_idle_timeout = 30.0; // seconds
    int http_max_header_bytes = 16384;
    int http_max_body_bytes = 1 << 20;
    bool operator==(const EngineSection &) const = default;
};

struct TransportSection {
    int listen_port = 8621;
    std::vector<std::string> trackers;
    int64_t download_rate_limit = 0; // KiB/s, 0 = unlimited
    int64_t upload_rate_limit = 0;   // KiB/s, 0 = unlimited
    int64_t cache_size_mb = 2048;
    bool embedded_tracker = false;
    int max_connections = 200;
    // Peers ("host:port") every job connects to, besides what trackers and
    // PEX find (the CLI's --peer).
    std::vector<std::string> peers;
    double idle_timeout = 300.0; // seconds before an idle peer connection closes
    bool pex = true;             // exchange peers with peers (BEP 11)
    bool operator==(const TransportSection &) const = default;
};

struct StreamingSection {
    double buffer_size = 10.0; // seconds
    bool hardware_acceleration = false;
    double piece_duration = 1.0; // seconds
    double idle_timeout = 60.0;  // seconds
    bool operator==(const StreamingSection &) const = default;
};

struct LiveSection {
    double window_seconds = 120.0;
    double join_delay = 3.0;   // seconds behind the newest head a viewer starts
    double skip_after = 3.0;   // a missing piece is skipped when the play position is this far behind
    int source_copies = 1;     // peers the broadcaster offers each piece to (they relay it)
    bool chat = true;
    bool operator==(const LiveSection &) const = default;
};

struct SecuritySection {
    bool tls_enabled = true;
    bool operator==(const SecuritySection &) const = default;
};

struct LoggingSection {
    int64_t max_entries = 10000;
    int64_t max_memory_mb = 16;
    bool console = true;
    std::string format = "text"; // text|json
    std::string file;            // empty = no log file
    int64_t file_max_mb = 10;
    int64_t file_count = 3;
    std::string event_level = "off";
    bool operator==(const LoggingSection &) const = default;
};

struct Config {
    EngineSection engine;
    TransportSection transport;
    StreamingSection streaming;
    LiveSection live;
    SecuritySection security;
    LoggingSection logging;
    bool operator==(const Config &) const = default;
};

// Largest accepted input, and deepest accepted nesting of tables/arrays.
inline constexpr std::size_t kMaxConfigBytes = 1 << 20;
inline constexpr int kMaxConfigDepth = 16;

Config default_config();

// Parses TOML, or JSON when the first non-blank character is '{', over the
// defaults (absent keys keep their defaults), then validates.  `source` names
// the input in messages ("openace.toml", "config").  Throws Error(CONFIG,
// "config", "parse", ...).
Config parse_config(std::string_view text, std::string_view source = "config");

// Reads and parses a file; the path is the source in messages.  Unreadable
// files are Errc::CONFIG too: "cannot read 'x.toml': No such file or directory".
Config load_config_file(const std::string &path);

// Sets one dotted key ("engine.log_level") from its text form, as given by a
// command-line flag: integers, numbers, booleans (true/false, yes/no, on/off,
// 1/0), strings as is, and string lists as comma-separated items.  Validates
// the result; on error `c` is unchanged.  Errors use operation "set" and
// source "command line".
void set_config_value(Config &c, std::string_view dotted_key, std::string_view value);

// The full effective config, one object per section.  A non-empty api_token
// is masked as "***" unless mask_secrets is false (to hand a config on, as
// the CLI does to the engine).
nlohmann::json to_json(const Config &c, bool mask_secrets = true);

// Range checks; throws Error(CONFIG, "config", "validate", "key 'x': ...").
void validate(const Config &c);

struct HostPort {
    std::string host; // without brackets for IPv6
    uint16_t port = 0;
};

// "127.0.0.1:6878", "localhost:80", "[::1]:80"; port 0 is allowed.  Throws
// Error(CONFIG, "config", "parse", "key 'engine.http_address': ...").
HostPort parse_host_port(std::string_view s, std::string_view key);

} // namespace openace::core
