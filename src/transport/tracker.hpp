// Tracker clients: HTTP announces (BEP 3, compact peer lists BEP 23, peers6
// BEP 7) and UDP announces (BEP 15), plus the Announcer that keeps one
// torrent announced to all of its trackers.
//
// Threading: TrackerAnnounce and Announcer live on one libuv loop; they are
// created, used and destroyed on the loop thread, and every callback they
// make runs there.  No locks (the UDP connection-id cache, shared by all
// loops of the process, has its own).  The pure functions
// (build_http_announce_url, parse_http_announce_response) may be called
// from any thread.
//
// Cancellation: destroying a TrackerAnnounce or an Announcer cancels its
// work; no callback runs after the destructor started.  Callbacks may
// destroy the object that calls them.
#pragma once

#include "core/circuit_breaker.hpp"
#include "core/log.hpp"
#include "core/retry.hpp"
#include "net/uv_handle.hpp"
#include "transport/magnet.hpp"
#include "transport/peer_address.hpp"

#include <nlohmann/json.hpp>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace openace::transport {

enum class TrackerEvent { None, Started, Completed, Stopped };
const char *to_string(TrackerEvent e) noexcept; // "", "started", "completed", "stopped"

struct AnnounceRequest {
    InfoHash info_hash{};
    PeerId peer_id{};
    std::uint16_t port = 0;
    std::int64_t uploaded = 0, downloaded = 0, left = 0;
    TrackerEvent event = TrackerEvent::None;
    int numwant = 50;
    std::uint32_t key = 0;
};

struct AnnounceResult {
    std::vector<PeerAddress> peers;  // IPv4 and IPv6, in the tracker's order, duplicates removed
    int interval = 1800;             // seconds until the next regular announce
    int min_interval = 0;            // 0 when the tracker did not say
    int complete = -1, incomplete = -1; // seeders / leechers; -1 when unknown
    std::string warning;             // "warning message", if any
};

// Parses an HTTP tracker response body: a bencoded dictionary with
// "peers" (a compact string of 6-byte entries, or a list of dictionaries
// with "ip" and "port"), "peers6" (18-byte entries), "interval",
// "min interval", "complete", "incomplete", "warning message".  Dictionary
// entries whose "ip" is a host name, not an address, are skipped.  A body
// over 4 MiB, bad bencode, wrong types, negative intervals, compact strings
// whose length is not a multiple of the entry size and ports outside
// 1-65535 throw openace::Error(PROTO, "tracker", "parse", detail naming the
// key); a "failure reason" throws Error(PROTO, "tracker", "announce",
// "failure reason: <text>").
AnnounceResult parse_http_announce_response(std::string_view body);

// The announce URL with the BEP 3 query appended (after '&' when the URL
// already has a query): info_hash, peer_id (both percent-encoded bytes),
// port, uploaded, downloaded, left, compact=1, numwant, key (8 hex digits)
// and event unless None.
std::string build_http_announce_url(const std::string &announce_url, const AnnounceRequest &req);

// One announce to one tracker URL: "http://host[:port]/path" or
// "udp://host:port[/...]".
//
// UDP follows BEP 15: connect, then announce, with the connection id kept
// per tracker (host:port) for 60 s and shared by every announce of the
// process.  A lost packet is sent again after 15·2^n s, scaled down so
// that three tries fit in `timeout` (the first retry after
// min(15 s, timeout / 4)).  A cached connection id that meets silence or
// an error is dropped and a fresh connect is made once.
//
// The first address the name resolves to is used; over IPv6 the answer's
// peers are 18-byte entries (BEP 15).  A UDP error packet gives "tracker
// error: <text>"; an announce answer shorter than 20 bytes (opentracker's
// way of refusing a torrent it does not serve) gives "announce answer too
// short (8 bytes): the tracker refused it".
//
// The callback runs exactly once, on the loop thread and never from the
// constructor: with a result, or with an error text naming the URL and the
// cause ("udp://t:6969: timed out after 15000 ms waiting for the connect
// answer", "http://t/announce: failure reason: unregistered torrent",
// "http://t/announce: HTTP 503").  It does not run when the
// TrackerAnnounce is destroyed first.
class TrackerAnnounce {
public:
    // result is valid only during the call; exactly one of result / error is set.
    using Callback = std::function<void(const AnnounceResult *result, const std::string &error)>;

    TrackerAnnounce(uv_loop_t *loop, const std::string &url, const AnnounceRequest &req, Callback cb,
                    std::chrono::milliseconds timeout = std::chrono::seconds(15));
    ~TrackerAnnounce();
    TrackerAnnounce(const TrackerAnnounce &) = delete;
    TrackerAnnounce &operator=(const TrackerAnnounce &) = delete;

    struct Impl; // one per protocol

private:
    std::unique_ptr<Impl> impl_;
};

// Forgets every cached UDP connection id (tests; a network change).
void clear_udp_connection_cache();

struct AnnouncerOptions {
    std::chrono::milliseconds timeout{15000}; // per announce
    core::Backoff::Options backoff{};         // between failed announces of one tracker
    core::CircuitBreaker::Options breaker{};  // per tracker
    int min_interval_s = 30;                  // floor for every interval and for announce_now()
};

// Announces one torrent to all of its trackers, periodically, for the
// torrent's lifetime.
//
// Each tracker has its own schedule, backoff and circuit breaker: a
// successful announce schedules the next one after the tracker's interval
// (never sooner than min interval or min_interval_s); a failed one is
// retried after the next backoff delay, and once the breaker opens the
// tracker is left alone until it turns half-open.  "started" is repeated
// until a tracker accepted it, "completed" likewise.
//
// Loop thread only.  make_request must be set before start(); on_peers is
// optional.  Both are called on the loop thread; neither may destroy the
// Announcer.
class Announcer {
public:
    using Options = AnnouncerOptions;

    Announcer(uv_loop_t *loop, core::Logger log, std::vector<std::string> urls, Options opt = {});
    ~Announcer(); // no callback after this (a pending stop()'s done included)
    Announcer(const Announcer &) = delete;
    Announcer &operator=(const Announcer &) = delete;

    std::function<AnnounceRequest()> make_request;                  // current stats; the event is set by the Announcer
    std::function<void(const std::vector<PeerAddress> &)> on_peers; // peers from any tracker (non-empty lists)

    // event=started to every tracker now; then every tracker's interval.
    void start();
    // When peers run low: announces to each tracker not announced within
    // min_interval_s (and not busy, and whose breaker allows it).
    void announce_now();
    // event=completed to every tracker, once.
    void completed();
    // event=stopped to every tracker that accepted "started", best
    // effort; nothing is scheduled any more.  done runs once within 2 s
    // whatever happens (on the loop thread, never from inside stop()); a
    // second stop() adds its done to the first.  Final: the Announcer
    // stays idle afterwards.
    void stop(std::function<void()> done);

    // [{ "url", "state": "ok"|"error"|"announcing"|"idle", "last_error",
    //    "peers" (from the last answer), "next_announce_s" (null when none
    //    is scheduled), "breaker": "closed"|"open"|"half-open",
    //    "failures" (since the last success), "announces" (attempts in all) }]
    nlohmann::json status() const;

private:
    struct Tracker;
    void announce(Tracker &t);
    void on_answer(Tracker &t, const AnnounceResult *result, const std::string &error);
    void schedule(Tracker &t, std::chrono::milliseconds delay);
    void finish_stop();

    uv_loop_t *loop_;
    core::Logger log_;
    Options opt_;
    std::vector<std::unique_ptr<Tracker>> trackers_;
    bool started_ = false, completed_ = false, stopping_ = false;
    std::function<void()> stop_done_;
    net::UvHandle<uv_timer_t> stop_timer_;
    std::size_t stops_pending_ = 0;
};

} // namespace openace::transport
