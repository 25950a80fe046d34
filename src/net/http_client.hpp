// A small HTTP/1.1 GET client on one libuv loop (tracker announces, web
// seeds, metadata fetches).  Plain http:// only: TLS lives elsewhere.
//
// Threading: construction, destruction and the callback all happen on the
// loop thread.  No locks; another thread must post to the loop first.
//
// One HttpGet is one request: it resolves the host (uv_getaddrinfo; every
// address is tried in order), connects, sends "GET … HTTP/1.1" with
// "Connection: close", and reads the response with http_parser.  Bodies
// framed by Content-Length, chunked encoding or the end of the connection
// are all understood.  301/302/303/307/308 with a Location are followed up
// to 3 times (relative locations resolve against the current URL).
//
// The callback runs exactly once, on the loop thread and never from inside
// the constructor, unless the HttpGet is destroyed first: destroying it
// cancels everything and the callback is never called afterwards.  The
// callback may destroy the HttpGet.  Any status counts as a response
// (404 is a response, not an error); errors are texts that start with the
// URL being fetched: "http://x/announce: connection refused".
#pragma once

#include "net/uv_handle.hpp"

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace openace::net {

struct HttpClientOptions {
    std::chrono::milliseconds timeout{15000}; // whole fetch, redirects included
    std::size_t max_body = 4 << 20;           // larger bodies are an error
    std::size_t max_header = 16384;           // status line + headers
    std::string user_agent = "OpenAce";
};

struct HttpClientResponse {
    int status = 0;
    std::string body;
    std::map<std::string, std::string> headers; // lower-case names; a repeated header keeps the last value
};

// The parts of an http:// URL.  Throws openace::Error(INVAL, "http",
// "url", "'https://x': https is not supported") for other schemes, a
// missing host, a bad port or user info.
struct HttpUrl {
    std::string host;   // "example.org", "127.0.0.1", "::1" (no brackets)
    std::uint16_t port = 80;
    std::string target; // "/announce?x=1" (never empty)
    std::string host_header() const; // "example.org", "[::1]:8080"
};
HttpUrl parse_http_url(std::string_view url);

// uv_getaddrinfo for an owner that may go away first: destroying the
// Resolver (or cancel()) means fn is never called; libuv's request lives on
// until the thread pool is done with it and frees itself.  Loop thread only.
class Resolver {
public:
    // res is valid only during the call (freed afterwards).  fn may destroy the Resolver.
    using Fn = std::function<void(int status, const addrinfo *res)>;

    Resolver() = default;
    ~Resolver() { cancel(); }
    Resolver(const Resolver &) = delete;
    Resolver &operator=(const Resolver &) = delete;

    // Resolves host:port (AF_UNSPEC, the given socktype); cancels a lookup
    // still running.  Returns the libuv status: on failure fn is never called.
    int start(uv_loop_t *loop, const std::string &host, std::uint16_t port, int socktype, Fn fn);
    void cancel();

private:
    struct Req;
    Req *req_ = nullptr;
};

class HttpGet {
public:
    // resp is valid only during the call; exactly one of resp / error is set.
    using Callback = std::function<void(const HttpClientResponse *resp, const std::string &error)>;

    HttpGet(uv_loop_t *loop, std::string url, Callback cb, HttpClientOptions opt = {});
    ~HttpGet(); // cancels: the callback is not called after destruction
    HttpGet(const HttpGet &) = delete;
    HttpGet &operator=(const HttpGet &) = delete;

    const std::string &url() const noexcept { return url_; } // current one (after redirects)

private:
    struct Parser;
    struct Pending; // a connect or write request that may complete after we are gone

    void arm_timer(uint64_t ms);
    void defer_error(std::string error); // reported from the timer (never from the constructor)
    void begin();                // resolve url_
    void on_resolved(int status, const addrinfo *res);
    void connect_next();         // next address of addrs_
    void on_connected(int status);
    void on_read(ssize_t nread, const uv_buf_t *buf);
    void on_message_complete();
    void fail(const std::string &cause); // "url: cause"
    void finish(const HttpClientResponse *resp, const std::string &error);
    void reset_connection();     // drops the socket and its requests

    uv_loop_t *loop_;
    std::string url_;
    Callback cb_;
    HttpClientOptions opt_;
    HttpUrl parts_;
    Resolver resolver_;
    int redirects_ = 0;
    std::vector<std::vector<char>> addrs_; // sockaddr bytes, in resolver order
    std::size_t next_addr_ = 0;
    std::string last_connect_error_;
    UvHandle<uv_tcp_t> tcp_;
    UvHandle<uv_timer_t> timer_;
    std::string deferred_error_;
    std::vector<Pending *> pending_;
    std::unique_ptr<Parser> parser_;
    std::vector<char> readbuf_;
};

} // namespace openace::net
