// HTTP/1.1 server on one libuv loop (the Streamer's front door, DESIGN §2).
//
// Threading: everything here — construction, route(), listen(), close(),
// every HttpResponse member and every callback the server makes (handlers,
// filter, on_drain, on_close, close's done) — runs on the loop thread.  No
// locks; another thread must post to the loop first.
//
// Connections serve one request at a time: pipelined requests wait (raw, in
// a bounded buffer) until the current response has ended, so responses
// always go out in request order.  A response may outlive the handler call
// (asynchronous answers, long streams): the handler keeps the shared_ptr.
// A response that is dropped by everybody before it was answered gets a
// 500; one dropped in the middle of a stream closes the connection.  A
// client that sends EOF while its request is being answered counts as gone
// (the connection closes, on_close fires), as nginx treats it.
//
// Timeouts: idle_timeout_s closes a keep-alive connection with no request,
// a request body that stops arriving (408), and a response the client stops
// reading (no byte taken by the kernel for that long); header_timeout_s
// bounds the whole request head (408).  Connections that break a limit get
// their error response, then a FIN, and their remaining input is drained
// for up to 2 s so that the client can read the answer.
#pragma once

#include "core/log.hpp"

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace openace::net {

struct HttpLimits {
    size_t max_header_bytes = 16384;  // request line + header lines; more -> 431
    size_t max_headers = 100;         // header lines; more -> 431
    size_t max_body_bytes = 1 << 20;  // more -> 413
    size_t max_connections = 256;     // open at once; more -> 503 and close
    double idle_timeout_s = 30;       // keep-alive idle, body inactivity, stalled writes; <= 0: never
    double header_timeout_s = 10;     // whole request head must arrive within this (slowloris) -> 408; <= 0: never
    size_t max_pending_write_bytes = 8 << 20; // HttpResponse::write beyond this closes the connection;
                                              // pipelined requests wait while more is queued
};

struct HttpRequest {
    std::string method;  // "GET"
    std::string target;  // raw, as sent: "/ace/getstream?id=a%20b"
    std::string path;    // percent-decoded, without query ("/ace/getstream"); raw if it does not decode
    std::vector<std::pair<std::string, std::string>> query;   // decoded, in order
    std::vector<std::pair<std::string, std::string>> headers; // names lower-cased, in order, repeats kept
    std::string body;
    std::string peer_ip; // "127.0.0.1"
    uint16_t peer_port = 0;
    int http_minor = 1;     // HTTP/1.x
    bool keep_alive = true; // what the client asked for (HTTP/1.0 defaults to false)

    // First header with that name (compared case-insensitively), or nullptr.
    const std::string *header(std::string_view lname) const;
    // First query value with that name.
    std::optional<std::string> param(std::string_view name) const;
    // The client is on this machine (127.0.0.0/8, ::1, ::ffff:127.x).
    bool from_loopback() const;
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

namespace detail {
class HttpConnection;
struct HttpServerCore;
} // namespace detail

// One per request.  Created by the server, handed to the handler as a
// shared_ptr.  Exactly one of send() or begin_chunked() … end() answers it;
// further calls are ignored.  `extra` headers are added as given (lines with
// CR/LF are dropped); they replace the server's Server, Date,
// Access-Control-Allow-Origin and Content-Type defaults of the same name,
// "Connection: close" among them makes the connection close after this
// response, and Content-Length / Transfer-Encoding are always the server's.
class HttpResponse : public std::enable_shared_from_this<HttpResponse> {
public:
    ~HttpResponse();
    HttpResponse(const HttpResponse &) = delete;
    HttpResponse &operator=(const HttpResponse &) = delete;

    // Whole response with Content-Length.  A HEAD request gets the headers
    // only; 1xx/204/304 never carry a body.  The body size is not limited by
    // max_pending_write_bytes.
    void send(int status, std::string_view content_type, std::string body, const HttpHeaders &extra = {});

    // Starts a streamed body.  HTTP/1.1: Transfer-Encoding: chunked, and the
    // connection stays usable after end().  HTTP/1.0: no length, the
    // connection closes after end().
    void begin_chunked(int status, std::string_view content_type, const HttpHeaders &extra = {});
    // Queues one chunk (copied).  Empty data is a no-op.  Returns false when
    // the connection is gone or the response is not streaming.  When the
    // bytes queued would exceed max_pending_write_bytes (and something is
    // already queued) the connection is closed (on_close fires) and false is
    // returned: watch pending_bytes() and wait for on_drain instead.
    bool write(std::string_view data);
    // Starts a streamed body of exactly `length` bytes (Content-Length; no
    // chunk framing), for files and byte ranges: write() the bytes, then
    // end().  Writing more or fewer than `length` is the caller's bug (the
    // client sees a broken response).  HEAD gets the headers only.
    void begin_sized(int status, std::string_view content_type, size_t length, const HttpHeaders &extra = {});
    // Last chunk.  A keep-alive connection then serves its next request.
    void end();

    // Bytes handed to the socket whose write has not completed yet.
    size_t pending_bytes() const;
    // One-shot: called when pending_bytes() drops to 0 (after having been
    // above 0).  Register again to wait again.  Replaces an earlier callback.
    void on_drain(std::function<void()> cb);
    // Called once when the connection closes while this response is attached
    // to it: before end() (client went away, server closing, write error) or
    // after end() when the connection closes because of this response.  A
    // response ended on a keep-alive connection detaches at once, and its
    // callbacks are dropped without being called.  Registered after the
    // close already happened: called immediately.  Callbacks are released
    // when the response detaches, so they may capture the shared_ptr.
    void on_close(std::function<void()> cb);

    bool closed() const { return closed_; }    // the connection closed while attached
    bool started() const { return started_; }  // send() or begin_chunked() was called
    bool finished() const { return finished_; }// send() or end() was called
    const HttpRequest &request() const { return req_; }

private:
    friend class detail::HttpConnection;
    friend struct detail::HttpServerCore;
    HttpResponse(detail::HttpConnection *conn, HttpRequest req);
    // Cuts the link to the connection; `closed` fires on_close.
    void detach(bool closed);

    detail::HttpConnection *conn_;
    HttpRequest req_;
    std::function<void()> on_drain_;
    std::function<void()> on_close_;
    uint64_t start_ns_ = 0;
    bool started_ = false;
    bool finished_ = false;
    bool closed_ = false;
    bool chunked_ = false;   // chunk framing on writes
    bool bodyless_ = false;  // HEAD / 204 / 304: writes are swallowed
    bool keep_alive_ = true; // decided when the head was written
};

using HttpHandler = std::function<void(const HttpRequest &, std::shared_ptr<HttpResponse>)>;

class HttpServer {
public:
    HttpServer(uv_loop_t *loop, core::Logger log, HttpLimits limits = {});
    // Must be closed first (close() and its done called): otherwise logs an
    // error, closes everything and frees itself once the loop has finished
    // closing the handles.
    ~HttpServer();
    HttpServer(const HttpServer &) = delete;
    HttpServer &operator=(const HttpServer &) = delete;

    // Exact path match, or prefix match (longest prefix wins); exact routes
    // win over prefixes.  The same path again replaces the handler.
    // Unmatched -> 404 {"error":"not found: /path"}.  A handler that throws
    // gets a 500 (or, mid-stream, a closed connection).
    void route(std::string path, HttpHandler h, bool prefix = false);
    // Runs before routing.  Return false when the filter already answered
    // (e.g. 403) or will answer later through the response.
    void set_filter(std::function<bool(const HttpRequest &, HttpResponse &)> f);

    // host: IPv4/IPv6 literal ("::1" or "[::1]") or "localhost" (127.0.0.1);
    // port 0 picks a free port.  Throws openace::Error(Errc::NET, "http", "listen",
    // "cannot listen on 127.0.0.1:6878: address already in use"); Errc::STATE
    // when already listening or closed.
    void listen(std::string_view host, uint16_t port);
    uint16_t port() const;       // bound port; 0 before listen()
    std::string address() const; // "127.0.0.1:6878", "[::1]:6878"; empty before listen()

    // Stops accepting and closes every connection at once (pending writes
    // are dropped; on_close callbacks fire synchronously).  done() runs once
    // every libuv handle of the server has closed — synchronously when none
    // is open.  Idempotent: later calls add their done (called right away
    // when already closed).
    void close(std::function<void()> done);

    struct Stats {
        uint64_t requests = 0, responses_4xx = 0, responses_5xx = 0, connections_total = 0,
                 connections_rejected = 0, bytes_in = 0, bytes_out = 0;
        size_t connections_active = 0;
        double avg_response_ms = 0; // handler entry -> response finished (send / end)
    };
    Stats stats() const;
    size_t memory_bytes() const; // approximate buffers held (for engine statistics)

private:
    std::unique_ptr<detail::HttpServerCore> core_;
};

// "OK", "Not Found", …; "Unknown" for codes without a registered phrase.
std::string_view status_reason(int status);

} // namespace openace::net
