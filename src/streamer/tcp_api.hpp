// The old Ace Stream engine API: line-based TCP on port 62062
// (shared/reference/acestream-api.md §3), for HTTPAceProxy / aceproxy,
// Plexus and the acestream-orchestrator, which still drive an engine that
// way.  Playback itself is the HTTP API's: START hands the client the same
// playback URL that /ace/getstream (or /ace/manifest.m3u8) would give.
//
// Conversation (lines end in "\r\n"; a bare "\n" is accepted):
//
//   client                                   engine
//   HELLOBG version=4                  ->    HELLOTS version=3.1.70 version_code=3017000 key=<10 hex> http_port=<p>
//   READY key=<prefix>-<40 hex>        ->    AUTH 1          (a malformed key: AUTH 0, then the connection closes)
//   LOADASYNC 7 INFOHASH <ih> 0 0 0    ->    LOADRESP 7 {"status":1,"infohash":"…","checksum":"…","files":[["a.mp4",0]]}
//   START INFOHASH <ih> 0 0 0 0 output_format=http
//                                      ->    START url=http://127.0.0.1:6878/ace/r/<ih>/<key> infohash=<ih> [stream=1] …
//                                            STATE 1
//                                            STATUS main:prebuf;…   (every second while the session runs)
//                                            STATE 2                (when the status changes state)
//                                            EVENT livepos last=… … (live only, every second)
//   STOP                               ->    STATE 0
//   SHUTDOWN                           ->    (the connection closes)
//
// Answers in detail (choices where the reference leaves room):
// - The READY key cannot be verified (it is derived from a product key we do
//   not have), so any well-formed key is accepted: "<prefix>-<40 hex>", the
//   prefix 1-64 of [A-Za-z0-9_], as every known client computes it.  A bare
//   READY is accepted too.  Before AUTH 1 every other command gets NOTREADY.
// - LOADRESP json: "files" names are URL-encoded (HTTPAceProxy splits the line
//   at spaces and URL-decodes it); "checksum" repeats the infohash; "status"
//   is 0, 1 or 2 for no, one or several files.  A failure is
//   {"status":100,"message":"<URL-encoded error>"}.  The synchronous LOAD
//   answers the same json as "##<json>".
// - START: values in the START line have ' ', '=' and '%' URL-encoded, so
//   that clients which split at spaces and '=' can read them.  stream=1 only
//   for live content (HTTPAceProxy tests the field for presence, so "0"
//   would read as live).  Also sent when known: file_index=, stat_url=,
//   command_url=, playback_session_id=.  A failed start answers
//   "INFO 0;<why>" then "STATE 6" (ERROR).  A second START stops the first
//   session before it starts the new one.
// - STATUS main:<s>, <s> one of prebuf;<progress>;<time>;<common>,
//   buf;<progress>;<time>;<common>, dl;<common>, check;<progress>,
//   wait;<time>;<common>, idle.  <time> is 2147483447, the value the Ace
//   engine sends for "unknown".  <common> is total_progress;progress;
//   speed_down;0;speed_up;peers;0;downloaded;0;uploaded (no HTTP sources).
//   STATE follows the status: prebuf 1, dl 2, buf 3, check 5.
// - A session the engine no longer knows (stat gives null) ends with
//   "STATE 0" then "STOP".
// - LIVESEEK <pos> seeks the running session, then repeats its START line
//   (HTTPAceProxy waits for a START after a LIVESEEK; the URL stays valid).
// - SHUTDOWN only stops this client's session and closes its connection: the
//   engine is embedded and belongs to its host, so no client may stop it.
// - Disconnecting stops the client's session.
// - Accepted and ignored: SETOPTIONS, USERDATA, EVENT, DUR, PLAYBACK.
//   Unknown commands (GETPID, GETCID, SAVE, …) are logged and ignored.
// - Malformed arguments get "INFO 0;<what was wrong>" and the connection
//   stays open.  A line over 1 MiB gets "INFO 0;line too long" and the
//   connection closes.  Beyond max_clients connections, new ones are closed
//   at once.  A client that does not read its answers (over 4 MiB queued) is
//   disconnected.
// Every engine line starts with a word HTTPAceProxy knows (it drops the
// connection on any other), except "##" for LOAD, which it never sends.
//
// Threading: everything — construction, listen(), close(), stats() and every
// hook call — runs on the loop thread.  Hooks may answer (Done) on the loop
// thread later, also after the client has gone or the TcpApi has closed:
// such answers are dropped, and a session started for a client that has gone
// (or for a START that a STOP or a newer START overtook) is stopped through
// the stop hook.  Once the TcpApi is destroyed its Done callbacks do nothing
// at all, so the engine must end its own sessions then.  Nothing throws out
// of a libuv callback or back into a hook.
#pragma once

#include "core/log.hpp"

#include <nlohmann/json_fwd.hpp>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace openace::streamer {

// What the TCP API asks of the engine.  All called on the loop thread; a hook
// left empty makes the commands that need it answer "INFO 0;…".
struct TcpApiHooks {
    using Params = std::map<std::string, std::string>;
    using Done = std::function<void(const nlohmann::json &result, const std::string &error)>;
    // Starts playback exactly as GET /ace/getstream (hls=false) or
    // /ace/manifest.m3u8 (hls=true) with these query parameters: one of
    // "content_id", "infohash", "url", "magnet", "data" (base64 transport
    // file), plus "_idx" (file index) and "pid".  result (error empty):
    // {"playback_url":"http://127.0.0.1:6878/ace/r/<ih>/<key>", "stat_url":…,
    // "command_url":…, "infohash":"<40hex>", "playback_session_id":"<key>",
    // "is_live":0|1, …}.  error non-empty: why it failed.  May call done
    // synchronously or later, exactly once; never both error and result.
    std::function<void(const Params &params, bool hls, Done done)> start;
    // The "response" object of /ace/stat/<ih>/<key> ({"status":"prebuf"|"dl"|
    // "check"|"buf", "progress", "peers", "speed_down", "speed_up",
    // "downloaded", "uploaded", "total_progress", "is_live", "livepos":{…}}),
    // or null when the session is unknown or ended.
    std::function<nlohmann::json(const std::string &infohash, const std::string &key)> stat;
    // Ends that player's session (as /ace/cmd/…?method=stop).
    std::function<void(const std::string &infohash, const std::string &key)> stop;
    // As /server/api?method=get_media_files: result {"infohash":"<40hex>",
    // "name":…, "type":"live"|"vod", "files":[{"index":0,"filename":"a.mp4",
    // "size":123},…]}.  Same calling rules as start.
    std::function<void(const Params &params, Done done)> media_files;
    // As /ace/cmd/…?method=liveseek&pos=<pos>; returns an error or "".
    std::function<std::string(const std::string &infohash, const std::string &key, const std::string &pos)> liveseek;
    std::uint16_t http_port = 0; // for HELLOTS http_port=
};

// The protocol's pure parts, without sockets (unit-tested and fuzzed on
// their own).  Functions that read client input throw openace::Error with a
// detail fit to send back as "INFO 0;<detail>".
namespace ace_tcp {

inline constexpr std::size_t kMaxLineBytes = 1 << 20; // longer: "line too long", connection closed
inline constexpr std::size_t kMaxTokens = 64;         // words in one line
inline constexpr const char *kUnknownTime = "2147483447"; // what Ace sends for an unknown time estimate

// One client line: the command word (upper-cased) and its arguments, split at
// runs of spaces and tabs.  A trailing "\r" is dropped.  An empty line gives
// an empty name.  Throws Error(PARSE) for more than kMaxLineBytes or
// kMaxTokens, or a control character other than tab.
struct Command {
    std::string name;
    std::vector<std::string> args;
};
Command parse_line(std::string_view line);

// The "k=v" words of args[from…], URL-decoded ("+" stays "+"); other words
// are skipped, a later key replaces an earlier one.
TcpApiHooks::Params parse_options(const std::vector<std::string> &args, std::size_t from);

// READY's key=: "<prefix>-<40 hex>" with a prefix of 1-64 [A-Za-z0-9_].
bool valid_ready_key(std::string_view key) noexcept;

// START PID|INFOHASH|TORRENT|URL|RAW <arg> [<idx>[,<idx>…]] … [output_format=http|hls] [k=v …]
// -> params for the start hook: content_id | infohash | url (magnet for a
// "magnet:" TORRENT) | data, and "_idx" (the first index) when given.
// Throws Error(INVAL, "tcp api", "START", …): unknown or missing type, no
// argument, an index that is not a number, an unknown output_format.
struct StartRequest {
    TcpApiHooks::Params params;
    bool hls = false;
    std::optional<std::uint32_t> index;
};
StartRequest parse_start(const Command &cmd);

// LOADASYNC <reqid> PID|INFOHASH|TORRENT|URL|RAW <arg> … and LOAD <type> <arg> …
// (no request id) -> params for the media_files hook, as parse_start.
// Throws Error(INVAL, "tcp api", "LOADASYNC"|"LOAD", …) for a missing request
// id, type or argument.
struct LoadRequest {
    std::string request_id; // empty for LOAD
    TcpApiHooks::Params params;
};
LoadRequest parse_load(const Command &cmd);

// The LOADRESP json for a media_files result, and for a failure.
std::string loadresp_json(const nlohmann::json &media_files);
std::string load_error_json(std::string_view message);

// "START url=… infohash=… …" for a start result; empty when the result has
// no string playback_url.
std::string start_line(const nlohmann::json &result, std::optional<std::uint32_t> index);

// "STATUS main:…" for a stat response object ("STATUS main:idle" for null).
std::string status_line(const nlohmann::json &stat);
// The STATE number the stat's status stands for, or `current` when it says
// nothing new (unknown status).
int state_of(const nlohmann::json &stat, int current) noexcept;
// "EVENT livepos …" for a live stat with a non-empty livepos; empty otherwise.
std::string livepos_line(const nlohmann::json &stat);

} // namespace ace_tcp

namespace detail {
struct TcpApiCore;
}

class TcpApi {
public:
    // max_clients: connections served at once; more are closed on accept.
    TcpApi(uv_loop_t *loop, core::Logger log, TcpApiHooks hooks, std::size_t max_clients = 64);
    // Must be closed first (close() called and its done run): otherwise logs
    // an error, drops the hooks (no stop calls), closes everything and frees
    // its state once libuv has closed the handles.
    ~TcpApi();
    TcpApi(const TcpApi &) = delete;
    TcpApi &operator=(const TcpApi &) = delete;

    // host: IPv4/IPv6 literal or "localhost"; port 0 picks a free port.
    // Throws Error(NET, "tcp api", "listen", "cannot listen on 127.0.0.1:62062: address already in use"),
    // Error(STATE) when already listening or closed.
    void listen(std::string_view host, std::uint16_t port);
    std::uint16_t port() const; // bound port; 0 before listen()

    // Stops listening and closes every client, stopping their sessions through
    // the stop hook (synchronously).  done runs once every libuv handle has
    // closed (a later loop iteration; synchronously when none was open).
    // Later calls add their done (run at once when already closed).
    void close(std::function<void()> done);

    struct Stats {
        std::uint64_t connections_total = 0; // accepted, rejected ones included
        std::uint64_t commands = 0;          // non-empty lines received
        std::uint64_t errors = 0;            // INFO 0 answers, AUTH 0, failed starts/loads, rejected connections
        std::size_t clients = 0;             // connections open and served now
    };
    Stats stats() const;

private:
    std::unique_ptr<detail::TcpApiCore> core_;
};

} // namespace openace::streamer
