// HTTP client tests: HttpGet against the project's HttpServer and against
// raw sockets on 127.0.0.1:<ephemeral>.  Each test runs its own libuv loop
// on the test thread, bounded by a deadline; raw helper servers run on a
// std::thread with poll timeouts, so nothing can hang.
#include "net/http_client.hpp"

#include "net/http_server.hpp"
#include "test_loop.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <thread>

using namespace openace;
using namespace openace::net;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

// Server on the test loop; closed (and drained) at the end of the test.
struct Server {
    core::Log log;
    HttpServer http;
    TestLoop &tl;
    explicit Server(TestLoop &l) : http(&l.loop, core::Logger(log, "http")), tl(l) { http.listen("127.0.0.1", 0); }
    ~Server()
    {
        bool closed = false;
        http.close([&] { closed = true; });
        tl.run_until([&] { return closed; }, 2000ms);
    }
    std::string url(const std::string &path) const { return "http://127.0.0.1:" + std::to_string(http.port()) + path; }
};

struct Outcome {
    bool done = false;
    int calls = 0;
    std::optional<HttpClientResponse> resp;
    std::string error;

    HttpGet::Callback callback()
    {
        return [this](const HttpClientResponse *r, const std::string &err) {
            ++calls;
            done = true;
            if (r)
                resp = *r;
            error = err;
        };
    }
};

Outcome fetch(TestLoop &tl, const std::string &url, HttpClientOptions opt = {})
{
    Outcome out;
    HttpGet get(&tl.loop, url, out.callback(), opt);
    tl.run_until([&] { return out.done; }, 5000ms);
    return out;
}

// A listening socket that never accepts: connects succeed (the kernel
// completes the handshake) but no byte ever comes back.
struct SilentListener {
    int fd = -1;
    uint16_t port = 0;
    SilentListener()
    {
        fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa);
        ::listen(fd, 8);
        socklen_t len = sizeof sa;
        ::getsockname(fd, reinterpret_cast<sockaddr *>(&sa), &len);
        port = ntohs(sa.sin_port);
    }
    ~SilentListener() { ::close(fd); }
};

// A port nobody listens on (bound once, then released).
uint16_t closed_port()
{
    SilentListener l;
    return l.port;
}

// One connection: reads the request head, writes `reply` raw, closes.
class CannedServer {
public:
    explicit CannedServer(std::string reply) : reply_(std::move(reply))
    {
        thread_ = std::thread([this] { serve(); });
    }
    ~CannedServer() { thread_.join(); }
    uint16_t port() const { return listener_.port; }
    std::string request() const { return request_; } // valid after destruction of the client side

private:
    void serve()
    {
        pollfd pfd{listener_.fd, POLLIN, 0};
        if (::poll(&pfd, 1, 5000) != 1)
            return;
        int c = ::accept(listener_.fd, nullptr, nullptr);
        timeval tv{3, 0};
        ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[4096];
        while (request_.find("\r\n\r\n") == std::string::npos) {
            ssize_t n = ::recv(c, buf, sizeof buf, 0);
            if (n <= 0)
                break;
            request_.append(buf, static_cast<size_t>(n));
        }
        ::send(c, reply_.data(), reply_.size(), MSG_NOSIGNAL);
        ::close(c);
    }

    SilentListener listener_;
    std::string reply_;
    std::string request_;
    std::thread thread_;
};

} // namespace

TEST_CASE("http client: parses http URLs and rejects what it cannot fetch")
{
    auto u = parse_http_url("http://Example.org:8080/announce?a=1#frag");
    CHECK(u.host == "Example.org");
    CHECK(u.port == 8080);
    CHECK(u.target == "/announce?a=1");
    CHECK(u.host_header() == "Example.org:8080");
    auto v6 = parse_http_url("http://[::1]/x");
    CHECK(v6.host == "::1");
    CHECK(v6.port == 80);
    CHECK(v6.host_header() == "[::1]");
    CHECK(parse_http_url("HTTP://h?q").target == "/?q");
    CHECK(parse_http_url("http://h").target == "/");
    for (const char *bad : {"https://h/", "ftp://h/", "h/x", "http:///x", "http://h:0/", "http://h:70000/",
                            "http://u@h/", "http://[::1/", "http://h/a b", "http://h/\r\nX: y"}) {
        INFO(bad);
        CHECK_THROWS_AS(parse_http_url(bad), Error);
    }
    try {
        parse_http_url("https://tracker.example/announce");
        FAIL("no throw");
    } catch (const Error &e) {
        CHECK(e.code() == Errc::INVAL);
        CHECK(e.detail() == "'https://tracker.example/announce': https is not supported");
    }
}

TEST_CASE("http client: reads a Content-Length body and the headers")
{
    TestLoop tl;
    Server srv(tl);
    srv.http.route("/len", [](const HttpRequest &req, std::shared_ptr<HttpResponse> res) {
        res->send(200, "text/plain", "hello " + *req.header("user-agent"), {{"X-Test", "yes"}});
    });
    HttpClientOptions opt;
    opt.user_agent = "OpenAceTest/1";
    auto out = fetch(tl, srv.url("/len"), opt);
    REQUIRE(out.done);
    CHECK(out.calls == 1);
    CHECK(out.error.empty());
    REQUIRE(out.resp);
    CHECK(out.resp->status == 200);
    CHECK(out.resp->body == "hello OpenAceTest/1");
    CHECK(out.resp->headers["x-test"] == "yes");
    CHECK(out.resp->headers["content-length"] == "19");
}

TEST_CASE("http client: a 404 is a response, not an error")
{
    TestLoop tl;
    Server srv(tl);
    auto out = fetch(tl, srv.url("/nothing-here"));
    REQUIRE(out.resp);
    CHECK(out.error.empty());
    CHECK(out.resp->status == 404);
    CHECK(out.resp->body.find("/nothing-here") != std::string::npos);
}

TEST_CASE("http client: reads a chunked body")
{
    TestLoop tl;
    Server srv(tl);
    srv.http.route("/chunked", [](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->begin_chunked(200, "application/octet-stream");
        res->write("abc");
        res->write(std::string(70000, 'x')); // spans several reads
        res->write("defg");
        res->end();
    });
    auto out = fetch(tl, srv.url("/chunked"));
    REQUIRE(out.resp);
    CHECK(out.resp->headers["transfer-encoding"] == "chunked");
    CHECK(out.resp->body == "abc" + std::string(70000, 'x') + "defg");
}

TEST_CASE("http client: reads a body that ends with the connection")
{
    TestLoop tl;
    CannedServer canned("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
    std::string url = "http://127.0.0.1:" + std::to_string(canned.port()) + "/c?x=%20";
    auto out = fetch(tl, url);
    REQUIRE(out.resp);
    CHECK(out.resp->status == 200);
    CHECK(out.resp->body == "until the end");
    // The request line carries the target as given.
    CHECK(canned.request().rfind("GET /c?x=%20 HTTP/1.1\r\n", 0) == 0);
}

TEST_CASE("http client: a response cut short is an error")
{
    TestLoop tl;
    CannedServer canned("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
    std::string url = "http://127.0.0.1:" + std::to_string(canned.port()) + "/short";
    auto out = fetch(tl, url);
    CHECK_FALSE(out.resp);
    CHECK(out.error == url + ": connection closed before the response was complete");
}

TEST_CASE("http client: follows redirects, relative and absolute, at most 3")
{
    TestLoop tl;
    Server srv(tl);
    int loop_hits = 0;
    std::string final_url = srv.url("/final");
    srv.http.route("/final", [](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->send(200, "text/plain", "arrived");
    });
    srv.http.route("/dir/a", [](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->send(302, "text/plain", "", {{"Location", "b"}}); // -> /dir/b
    });
    srv.http.route("/dir/b", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->send(301, "text/plain", "", {{"Location", final_url}});
    });
    srv.http.route("/loop", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        ++loop_hits;
        res->send(307, "text/plain", "", {{"Location", "/loop"}});
    });
    auto ok = fetch(tl, srv.url("/dir/a"));
    REQUIRE(ok.resp);
    CHECK(ok.resp->body == "arrived");

    auto looped = fetch(tl, srv.url("/loop"));
    CHECK_FALSE(looped.resp);
    CHECK(looped.error == srv.url("/loop") + ": too many redirects (more than 3)");
    CHECK(loop_hits == 4); // the original request + 3 redirects
}

TEST_CASE("http client: times out against a server that never answers")
{
    TestLoop tl;
    SilentListener silent;
    HttpClientOptions opt;
    opt.timeout = 300ms;
    std::string url = "http://127.0.0.1:" + std::to_string(silent.port) + "/announce";
    auto t0 = Clock::now();
    auto out = fetch(tl, url, opt);
    double took = std::chrono::duration<double>(Clock::now() - t0).count();
    REQUIRE(out.done);
    CHECK(out.error == url + ": timed out after 300 ms");
    CHECK(took >= 0.29);
    CHECK(took < 2.0);
}

TEST_CASE("http client: a body over max_body is an error")
{
    TestLoop tl;
    Server srv(tl);
    srv.http.route("/big", [](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->send(200, "text/plain", std::string(5000, 'b'));
    });
    srv.http.route("/big-chunked", [](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->begin_chunked(200, "text/plain");
        for (int i = 0; i < 10; ++i)
            res->write(std::string(500, 'c'));
        res->end();
    });
    HttpClientOptions opt;
    opt.max_body = 1000;
    for (const char *path : {"/big", "/big-chunked"}) {
        auto out = fetch(tl, srv.url(path), opt);
        CHECK_FALSE(out.resp);
        CHECK(out.error == srv.url(path) + ": body larger than 1000 bytes");
    }
    opt.max_header = 20;
    auto head = fetch(tl, srv.url("/big"), opt);
    CHECK(head.error == srv.url("/big") + ": response head larger than 20 bytes");
}

TEST_CASE("http client: connection refused names the URL")
{
    TestLoop tl;
    std::string url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/announce";
    auto out = fetch(tl, url);
    REQUIRE(out.done);
    CHECK_FALSE(out.resp);
    CHECK(out.error == url + ": connection refused");
}

TEST_CASE("http client: URL errors arrive through the callback, never synchronously")
{
    TestLoop tl;
    Outcome out;
    HttpGet get(&tl.loop, "https://tracker.example/announce", out.callback());
    CHECK_FALSE(out.done); // not from inside the constructor
    REQUIRE(tl.run_until([&] { return out.done; }, 2000ms));
    CHECK(out.calls == 1);
    CHECK(out.error == "'https://tracker.example/announce': https is not supported");
}

TEST_CASE("http client: destroying a request cancels its callback")
{
    TestLoop tl;
    SilentListener silent;
    std::string url = "http://127.0.0.1:" + std::to_string(silent.port) + "/x";
    Outcome out;
    HttpClientOptions opt;
    opt.timeout = 100ms;
    auto get = std::make_unique<HttpGet>(&tl.loop, url, out.callback(), opt);
    tl.run_until([] { return false; }, 30ms); // connected and waiting
    get.reset();
    tl.run_until([] { return false; }, 200ms); // past the timeout
    CHECK(out.calls == 0);

    // Destroyed while the name is still being resolved.
    auto early = std::make_unique<HttpGet>(&tl.loop, "http://localhost:1/x", out.callback());
    early.reset();
    tl.run_until([] { return false; }, 50ms);
    CHECK(out.calls == 0);
}

TEST_CASE("http client: the callback may destroy its request")
{
    TestLoop tl;
    Server srv(tl);
    srv.http.route("/x", [](const HttpRequest &, std::shared_ptr<HttpResponse> res) { res->send(200, "text/plain", "x"); });
    std::unique_ptr<HttpGet> get;
    std::string body;
    get = std::make_unique<HttpGet>(&tl.loop, srv.url("/x"), [&](const HttpClientResponse *r, const std::string &) {
        get.reset();
        body = r ? r->body : "error";
    });
    REQUIRE(tl.run_until([&] { return !get; }, 3000ms));
    CHECK(body == "x");
}

TEST_CASE("http client: resolves localhost")
{
    TestLoop tl;
    Server srv(tl);
    srv.http.route("/x", [](const HttpRequest &req, std::shared_ptr<HttpResponse> res) {
        res->send(200, "text/plain", *req.header("host"));
    });
    // localhost may resolve to ::1 first: the client moves on to 127.0.0.1.
    std::string url = "http://localhost:" + std::to_string(srv.http.port()) + "/x";
    auto out = fetch(tl, url);
    REQUIRE(out.resp);
    CHECK(out.resp->body == "localhost:" + std::to_string(srv.http.port()));
}
