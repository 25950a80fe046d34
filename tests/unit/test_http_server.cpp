// HTTP server tests.  Each test runs its own libuv loop on the test thread
// with a real listening socket on 127.0.0.1:<ephemeral>; the client is a
// blocking POSIX socket on a std::thread with receive timeouts, and a
// watchdog timer stops the loop, so nothing can hang.  Assertions happen on
// the test thread only, after the client thread has been joined (CHECKs
// inside loop callbacks are fine: the loop runs on the test thread too).
#include "net/http_server.hpp"
#include "net/uv_handle.hpp"

#include <openace/engine.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

using namespace openace;
using namespace openace::net;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ------------------------------------------------------------------ client

struct Reply {
    int status = 0;
    std::map<std::string, std::string> headers; // lower-case names
    std::string body;

    std::string header(const std::string &name) const
    {
        auto it = headers.find(name);
        return it == headers.end() ? std::string() : it->second;
    }
};

std::string lower(std::string s)
{
    for (char &c : s)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

class Client {
public:
    explicit Client(uint16_t port, int recv_timeout_ms = 3000)
    {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        timeval tv{recv_timeout_ms / 1000, (recv_timeout_ms % 1000) * 1000};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd_, reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }
    ~Client() { close(); }
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    bool ok() const { return fd_ >= 0; }
    int fd() const { return fd_; }
    void close()
    {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
    }

    bool send(std::string_view data)
    {
        while (!data.empty()) {
            ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
            if (n <= 0)
                return false;
            data.remove_prefix(static_cast<size_t>(n));
        }
        return true;
    }

    // One recv into the buffer; false on EOF, error or timeout.
    bool fill()
    {
        char tmp[65536];
        ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
        if (n <= 0) {
            eof_ = true;
            return false;
        }
        buf_.append(tmp, static_cast<size_t>(n));
        return true;
    }

    // Reads up to and including the blank line; returns the head.
    std::optional<std::string> read_head()
    {
        size_t end;
        while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
            if (!fill())
                return std::nullopt;
        std::string head = buf_.substr(0, end + 4);
        buf_.erase(0, end + 4);
        return head;
    }

    std::optional<std::string> read_exact(size_t n)
    {
        while (buf_.size() < n)
            if (!fill())
                return std::nullopt;
        std::string out = buf_.substr(0, n);
        buf_.erase(0, n);
        return out;
    }

    std::optional<std::string> read_line()
    {
        size_t end;
        while ((end = buf_.find("\r\n")) == std::string::npos)
            if (!fill())
                return std::nullopt;
        std::string line = buf_.substr(0, end);
        buf_.erase(0, end + 2);
        return line;
    }

    // One whole response, de-chunked.  head_request: no body follows.
    std::optional<Reply> read_reply(bool head_request = false)
    {
        auto head = read_head();
        if (!head)
            return std::nullopt;
        Reply r;
        if (head->compare(0, 7, "HTTP/1.") != 0 || head->size() < 12)
            return std::nullopt;
        r.status = std::stoi(head->substr(9, 3));
        size_t pos = head->find("\r\n") + 2;
        while (pos < head->size()) {
            size_t eol = head->find("\r\n", pos);
            if (eol == pos)
                break;
            std::string line = head->substr(pos, eol - pos);
            size_t colon = line.find(':');
            std::string value = line.substr(colon + 1);
            while (!value.empty() && value.front() == ' ')
                value.erase(0, 1);
            r.headers[lower(line.substr(0, colon))] = value;
            pos = eol + 2;
        }
        if (head_request || r.status < 200 || r.status == 204 || r.status == 304)
            return r;
        if (lower(r.header("transfer-encoding")) == "chunked") {
            for (;;) {
                auto size_line = read_line();
                if (!size_line)
                    return std::nullopt;
                size_t n = std::stoul(*size_line, nullptr, 16);
                if (n == 0) {
                    if (!read_line()) // the CRLF after the last chunk
                        return std::nullopt;
                    return r;
                }
                auto chunk = read_exact(n + 2);
                if (!chunk)
                    return std::nullopt;
                r.body += chunk->substr(0, n);
            }
        }
        if (!r.header("content-length").empty()) {
            auto body = read_exact(std::stoul(r.header("content-length")));
            if (!body)
                return std::nullopt;
            r.body = *body;
            return r;
        }
        r.body = read_all(); // close-delimited
        return r;
    }

    // Like read_exact, pausing after every receive: a slow reader.
    std::optional<std::string> read_exact_slowly(size_t n, std::chrono::milliseconds pause)
    {
        while (buf_.size() < n) {
            if (!fill())
                return std::nullopt;
            std::this_thread::sleep_for(pause);
        }
        std::string out = buf_.substr(0, n);
        buf_.erase(0, n);
        return out;
    }

    // Everything until the server closes (or the receive timeout).
    std::string read_all()
    {
        while (fill()) {
        }
        std::string out = std::move(buf_);
        buf_.clear();
        return out;
    }

    // True when the server closed the connection (EOF or reset) with no
    // further bytes, before the receive timeout.
    bool wait_closed()
    {
        if (!buf_.empty())
            return false;
        char c;
        ssize_t n = ::recv(fd_, &c, 1, 0);
        return n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE));
    }

    bool eof() const { return eof_; }

private:
    int fd_ = -1;
    std::string buf_;
    bool eof_ = false;
};

std::optional<Reply> roundtrip(Client &c, const std::string &request, bool head_request = false)
{
    if (!c.send(request))
        return std::nullopt;
    return c.read_reply(head_request);
}

std::string get(const std::string &target, const std::string &extra = "")
{
    return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + "\r\n";
}

// ----------------------------------------------------------------- harness

class Harness {
public:
    explicit Harness(HttpLimits limits = {}) : log(core::Log::Options{core::LogLevel::Trace, 10000, 16u << 20})
    {
        REQUIRE(uv_loop_init(&loop) == 0);
        server = std::make_unique<HttpServer>(&loop, core::Logger(log, "http"), limits);
    }
    ~Harness()
    {
        if (!loop_closed_) {
            server.reset();
            uv_run(&loop, UV_RUN_DEFAULT);
            uv_loop_close(&loop);
        }
    }

    uint16_t listen()
    {
        server->listen("127.0.0.1", 0);
        return server->port();
    }

    // Runs fn on the loop thread; callable from the client thread.
    void post(std::function<void()> fn)
    {
        std::lock_guard lk(mu_);
        if (!async_open_)
            return;
        posted_.push_back(std::move(fn));
        uv_async_send(&async_);
    }

    // Runs fn on the loop after `seconds`.
    void after(double seconds, std::function<void()> fn)
    {
        every(seconds, [fn = std::move(fn)] {
            fn();
            return false;
        });
    }

    // Runs fn every `seconds` until it returns false or the harness stops.
    void every(double seconds, std::function<bool()> fn)
    {
        auto *job = new TimerJob{{}, std::move(fn), this};
        uv_timer_init(&loop, &job->timer);
        job->timer.data = job;
        auto ms = static_cast<uint64_t>(seconds * 1000);
        uv_timer_start(
            &job->timer,
            [](uv_timer_t *t) {
                auto *j = static_cast<TimerJob *>(t->data);
                if (!j->fn())
                    j->owner->cancel(j);
            },
            ms, ms == 0 ? 1 : ms);
        timers_.push_back(job);
    }

    // Runs the loop while `client` runs on its own thread.  When the client
    // returns (or the watchdog fires) the server is closed and the loop runs
    // until every handle has closed.
    void run(std::function<void()> client, double watchdog_s = 10)
    {
        uv_async_init(&loop, &async_, [](uv_async_t *a) { static_cast<Harness *>(a->data)->drain(); });
        async_.data = this;
        async_open_ = true;
        uv_timer_init(&loop, &watchdog_);
        watchdog_.data = this;
        uv_timer_start(
            &watchdog_,
            [](uv_timer_t *t) {
                auto *h = static_cast<Harness *>(t->data);
                h->timed_out = true;
                h->stop();
            },
            static_cast<uint64_t>(watchdog_s * 1000), 0);
        std::thread th([&] {
            client();
            post([this] { stop(); });
        });
        uv_run(&loop, UV_RUN_DEFAULT);
        th.join();
    }

    // Destroys the server and closes the loop; 0 when every handle was closed.
    int finish()
    {
        server.reset();
        uv_run(&loop, UV_RUN_DEFAULT);
        loop_closed_ = true;
        return uv_loop_close(&loop);
    }

    // Whether some entry at `level` or above contains `text`.
    bool logged(core::LogLevel level, const std::string &text) const
    {
        core::LogFilter f;
        f.min_level = level;
        f.text = text;
        return !log.search(f).empty();
    }

    core::Log log; // every level is recorded: log formatting runs in every test
    uv_loop_t loop{};
    std::unique_ptr<HttpServer> server;
    bool timed_out = false;
    bool server_closed = false;

private:
    struct TimerJob {
        uv_timer_t timer;
        std::function<bool()> fn;
        Harness *owner;
    };

    void cancel(TimerJob *j)
    {
        timers_.remove(j);
        uv_close(reinterpret_cast<uv_handle_t *>(&j->timer),
                 [](uv_handle_t *h) { delete static_cast<TimerJob *>(h->data); });
    }

    void drain()
    {
        std::vector<std::function<void()>> fns;
        {
            std::lock_guard lk(mu_);
            fns.swap(posted_);
        }
        for (auto &fn : fns)
            fn();
    }

    void stop()
    {
        if (stopped_)
            return;
        stopped_ = true;
        server->close([this] { server_closed = true; });
        while (!timers_.empty())
            cancel(timers_.front());
        {
            std::lock_guard lk(mu_);
            async_open_ = false;
        }
        uv_close(reinterpret_cast<uv_handle_t *>(&async_), nullptr);
        uv_close(reinterpret_cast<uv_handle_t *>(&watchdog_), nullptr);
    }

    uv_async_t async_{};
    uv_timer_t watchdog_{};
    std::mutex mu_;
    bool async_open_ = false;
    std::vector<std::function<void()>> posted_;
    std::list<TimerJob *> timers_;
    bool stopped_ = false;
    bool loop_closed_ = false;
};

void send_text(const std::shared_ptr<HttpResponse> &res, std::string body)
{
    res->send(200, "text/plain", std::move(body));
}

} // namespace

// ------------------------------------------------------------------- tests

TEST_CASE("http: GET answers 200 with body, Server and CORS headers")
{
    Harness h;
    HttpRequest seen;
    h.server->route("/hello", [&](const HttpRequest &req, std::shared_ptr<HttpResponse> res) {
        seen = req;
        res->send(200, "text/plain; charset=utf-8", "hi there", {{"X-Test", "1"}});
    });
    uint16_t port = h.listen();
    CHECK(h.server->address() == "127.0.0.1:" + std::to_string(port));
    std::optional<Reply> r;
    h.run([&] {
        Client c(port);
        r = roundtrip(c, "GET /hello HTTP/1.1\r\nHost: localhost\r\nUser-Agent: TestAgent  \r\n\r\n");
    });
    CHECK_FALSE(h.timed_out);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "hi there");
    CHECK(r->header("content-length") == "8");
    CHECK(r->header("content-type") == "text/plain; charset=utf-8");
    CHECK(r->header("server") == std::string("OpenAce/") + openace::version_string());
    CHECK(r->header("access-control-allow-origin") == "*");
    CHECK(r->header("x-test") == "1");
    CHECK(seen.method == "GET");
    CHECK(seen.target == "/hello");
    CHECK(seen.path == "/hello");
    REQUIRE(seen.header("user-agent"));
    CHECK(*seen.header("user-agent") == "TestAgent");
    CHECK(seen.header("User-Agent"));
    CHECK_FALSE(seen.header("x-missing"));
    CHECK(seen.peer_ip == "127.0.0.1");
    CHECK(seen.peer_port != 0);
    CHECK(seen.http_minor == 1);
    CHECK(seen.keep_alive);
    auto st = h.server->stats();
    CHECK(st.requests == 1);
    CHECK(st.connections_total == 1);
    CHECK(st.bytes_in > 40);
    CHECK(st.bytes_out > 100);
    CHECK(st.responses_4xx == 0);
    CHECK(st.connections_active == 0);
    CHECK(h.server->memory_bytes() > 0);
    CHECK(h.server_closed);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: path and query string are percent-decoded")
{
    Harness h;
    HttpRequest seen;
    h.server->route("/ace/get stream", [&](const HttpRequest &req, std::shared_ptr<HttpResponse> res) {
        seen = req;
        send_text(res, "ok");
    });
    uint16_t port = h.listen();
    std::optional<Reply> r;
    h.run([&] {
        Client c(port);
        r = roundtrip(c, get("/ace/get%20stream?id=abc&x=%20y&flag&name=a+b&bad=%zz&id=second"));
    });
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(seen.target == "/ace/get%20stream?id=abc&x=%20y&flag&name=a+b&bad=%zz&id=second");
    CHECK(seen.path == "/ace/get stream");
    REQUIRE(seen.query.size() == 6);
    CHECK(seen.query[0] == std::pair<std::string, std::string>("id", "abc"));
    CHECK(seen.query[2] == std::pair<std::string, std::string>("flag", ""));
    CHECK(seen.param("x") == std::optional<std::string>(" y"));
    CHECK(seen.param("name") == std::optional<std::string>("a b"));
    CHECK(seen.param("bad") == std::optional<std::string>("%zz"));
    CHECK(seen.param("id") == std::optional<std::string>("abc"));
    CHECK_FALSE(seen.param("nope"));
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: unknown path answers 404 JSON naming the path")
{
    Harness h;
    uint16_t port = h.listen();
    std::optional<Reply> r, quoted;
    h.run([&] {
        Client c(port);
        r = roundtrip(c, get("/nope?x=1"));
        quoted = roundtrip(c, get("/a%22b"));
    });
    REQUIRE(r);
    CHECK(r->status == 404);
    CHECK(r->header("content-type") == "application/json");
    CHECK(r->body == R"({"error":"not found: /nope"})");
    REQUIRE(quoted);
    CHECK(quoted->body == R"({"error":"not found: /a\"b"})");
    CHECK(h.server->stats().responses_4xx == 2);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: keep-alive serves two requests on one connection")
{
    Harness h;
    int calls = 0;
    h.server->route("/n", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        send_text(res, std::to_string(++calls));
    });
    uint16_t port = h.listen();
    std::optional<Reply> a, b;
    h.run([&] {
        Client c(port);
        a = roundtrip(c, get("/n"));
        b = roundtrip(c, get("/n"));
    });
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->body == "1");
    CHECK(b->body == "2");
    CHECK(a->header("connection") == "keep-alive");
    auto st = h.server->stats();
    CHECK(st.connections_total == 1);
    CHECK(st.requests == 2);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: pipelined requests are answered in order, one at a time")
{
    Harness h;
    std::vector<std::string> entered;
    bool slow_pending = false;
    bool overlap = false;
    h.server->route("/slow", [&](const HttpRequest &req, std::shared_ptr<HttpResponse> res) {
        entered.push_back(req.target);
        slow_pending = true;
        // Answer later, after the handler has returned.
        h.after(0.1, [&, res] {
            slow_pending = false;
            send_text(res, res->request().target);
        });
    });
    h.server->route("/fast", [&](const HttpRequest &req, std::shared_ptr<HttpResponse> res) {
        entered.push_back(req.target);
        if (slow_pending)
            overlap = true;
        send_text(res, req.target);
    });
    uint16_t port = h.listen();
    std::vector<std::string> bodies;
    h.run([&] {
        Client c(port);
        c.send(get("/slow?1") + get("/fast?2") + get("/slow?3") + get("/fast?4"));
        for (int i = 0; i < 4; ++i)
            if (auto r = c.read_reply())
                bodies.push_back(r->body);
    });
    CHECK(bodies == std::vector<std::string>{"/slow?1", "/fast?2", "/slow?3", "/fast?4"});
    CHECK(entered == std::vector<std::string>{"/slow?1", "/fast?2", "/slow?3", "/fast?4"});
    CHECK_FALSE(overlap);
    auto st = h.server->stats();
    CHECK(st.requests == 4);
    CHECK(st.avg_response_ms > 20); // two of the four took 100 ms
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: HTTP/1.0 and Connection: close end the connection after the response")
{
    Harness h;
    HttpRequest seen;
    h.server->route("/hello", [&](const HttpRequest &req, std::shared_ptr<HttpResponse> res) {
        seen = req;
        send_text(res, "hi");
    });
    uint16_t port = h.listen();
    std::optional<Reply> r10, r11, ka_a, ka_b;
    bool closed10 = false, closed11 = false;
    h.run([&] {
        {
            Client c(port);
            r10 = roundtrip(c, "GET /hello HTTP/1.0\r\n\r\n");
            closed10 = c.wait_closed();
        }
        {
            Client c(port);
            r11 = roundtrip(c, get("/hello", "Connection: close\r\n"));
            closed11 = c.wait_closed();
        }
        {
            Client c(port);
            ka_a = roundtrip(c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            ka_b = roundtrip(c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        }
    });
    REQUIRE(r10);
    CHECK(r10->status == 200);
    CHECK(r10->body == "hi");
    CHECK(r10->header("connection") == "close");
    CHECK(closed10);
    REQUIRE(r11);
    CHECK(r11->header("connection") == "close");
    CHECK(closed11);
    REQUIRE(ka_a);
    REQUIRE(ka_b);
    CHECK(ka_a->header("connection") == "keep-alive");
    CHECK(ka_b->body == "hi");
    CHECK(seen.http_minor == 0);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: chunked streaming response is decoded by the client and keeps the connection")
{
    Harness h;
    h.server->route("/stream", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->begin_chunked(200, "video/mp2t");
        auto n = std::make_shared<int>(0);
        h.every(0.01, [res, n] {
            ++*n;
            if (*n <= 3) {
                CHECK(res->write("part" + std::to_string(*n) + ";"));
                CHECK(res->write("")); // empty writes must not end the stream
                return true;
            }
            res->end();
            CHECK_FALSE(res->write("late"));
            return false;
        });
    });
    h.server->route("/after", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) { send_text(res, "after"); });
    uint16_t port = h.listen();
    std::optional<Reply> s, after;
    std::string body10;
    bool closed10 = false;
    h.run([&] {
        {
            Client c(port);
            s = roundtrip(c, get("/stream"));
            after = roundtrip(c, get("/after"));
        }
        {
            Client c(port);
            auto r = roundtrip(c, "GET /stream HTTP/1.0\r\n\r\n");
            if (r)
                body10 = r->body; // close-delimited
            closed10 = c.eof();
        }
    });
    REQUIRE(s);
    CHECK(s->status == 200);
    CHECK(s->header("transfer-encoding") == "chunked");
    CHECK(s->header("content-length").empty());
    CHECK(s->header("content-type") == "video/mp2t");
    CHECK(s->body == "part1;part2;part3;");
    REQUIRE(after);
    CHECK(after->body == "after");
    CHECK(body10 == "part1;part2;part3;");
    CHECK(closed10);
    CHECK(h.server->stats().connections_total == 2);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: HEAD gets the headers of GET without a body")
{
    Harness h;
    h.server->route("/hello", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) { send_text(res, "hi there"); });
    h.server->route("/live", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->begin_chunked(200, "video/mp2t");
        CHECK(res->write("ignored for HEAD"));
        res->end();
    });
    uint16_t port = h.listen();
    std::optional<Reply> head, live, next;
    h.run([&] {
        Client c(port);
        head = roundtrip(c, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n", true);
        live = roundtrip(c, "HEAD /live HTTP/1.1\r\nHost: x\r\n\r\n", true);
        // A body byte sent by mistake would corrupt this reply.
        next = roundtrip(c, get("/hello"));
    });
    REQUIRE(head);
    CHECK(head->status == 200);
    CHECK(head->header("content-length") == "8");
    REQUIRE(live);
    CHECK(live->status == 200);
    REQUIRE(next);
    CHECK(next->status == 200);
    CHECK(next->body == "hi there");
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: oversized request head answers 431 and closes")
{
    HttpLimits lim;
    lim.max_header_bytes = 1024;
    lim.max_headers = 5;
    Harness h(lim);
    bool called = false;
    h.server->route("/hello", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        called = true;
        send_text(res, "hi");
    });
    uint16_t port = h.listen();
    std::optional<Reply> big, many, fine;
    bool closed_big = false, closed_many = false;
    h.run([&] {
        {
            Client c(port);
            big = roundtrip(c, get("/hello", "X-Big: " + std::string(4000, 'a') + "\r\n"));
            closed_big = c.wait_closed();
        }
        {
            Client c(port);
            std::string hs;
            for (int i = 0; i < 10; ++i)
                hs += "X-H" + std::to_string(i) + ": v\r\n";
            many = roundtrip(c, get("/hello", hs));
            closed_many = c.wait_closed();
        }
        {
            Client c(port);
            fine = roundtrip(c, get("/hello", "X-Small: " + std::string(500, 'a') + "\r\n"));
        }
    });
    REQUIRE(big);
    CHECK(big->status == 431);
    CHECK(big->header("connection") == "close");
    CHECK(big->body.find("too large") != std::string::npos);
    CHECK(closed_big);
    REQUIRE(many);
    CHECK(many->status == 431);
    CHECK(many->body.find("too many header") != std::string::npos);
    CHECK(closed_many);
    REQUIRE(fine);
    CHECK(fine->status == 200);
    CHECK(called);
    CHECK(h.server->stats().responses_4xx == 2);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: request body is delivered, oversized body answers 413 and closes")
{
    HttpLimits lim;
    lim.max_body_bytes = 1000;
    Harness h(lim);
    std::vector<std::string> bodies;
    h.server->route("/echo", [&](const HttpRequest &req, std::shared_ptr<HttpResponse> res) {
        bodies.push_back(req.body);
        send_text(res, req.body);
    });
    uint16_t port = h.listen();
    std::optional<Reply> ok, cont, echoed, big, big_chunked;
    bool closed_big = false, closed_chunked = false;
    h.run([&] {
        {
            Client c(port);
            ok = roundtrip(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
            // Expect: 100-continue gets the interim answer before the body is sent.
            c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
            cont = c.read_reply();
            echoed = roundtrip(c, "abc");
        }
        {
            Client c(port);
            big = roundtrip(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'b'));
            closed_big = c.wait_closed();
        }
        {
            Client c(port);
            std::string req = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
            for (int i = 0; i < 5; ++i)
                req += "190\r\n" + std::string(400, 'c') + "\r\n";
            req += "0\r\n\r\n";
            big_chunked = roundtrip(c, req);
            closed_chunked = c.wait_closed();
        }
    });
    REQUIRE(ok);
    CHECK(ok->status == 200);
    CHECK(ok->body == "hello");
    REQUIRE(cont);
    CHECK(cont->status == 100);
    REQUIRE(echoed);
    CHECK(echoed->body == "abc");
    REQUIRE(big);
    CHECK(big->status == 413);
    CHECK(closed_big);
    REQUIRE(big_chunked);
    CHECK(big_chunked->status == 413);
    CHECK(closed_chunked);
    CHECK(bodies == std::vector<std::string>{"hello", "abc"});
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: garbage answers 400 naming the problem and closes")
{
    Harness h;
    uint16_t port = h.listen();
    std::optional<Reply> r, bad_version;
    bool closed = false;
    h.run([&] {
        {
            Client c(port);
            r = roundtrip(c, "HELLO\x01 WORLD\r\n\r\n");
            closed = c.wait_closed();
        }
        {
            Client c(port);
            bad_version = roundtrip(c, "GET / HTTP/9.9\r\n\r\n");
        }
    });
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(r->header("content-type").find("text/plain") == 0);
    CHECK(r->body.find("bad request: invalid HTTP method") != std::string::npos);
    CHECK(closed);
    CHECK(h.logged(core::LogLevel::Warn, "invalid HTTP method"));
    REQUIRE(bad_version);
    CHECK(bad_version->status >= 400);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: slowloris head gets 408 within header_timeout")
{
    HttpLimits lim;
    lim.header_timeout_s = 0.3;
    Harness h(lim);
    uint16_t port = h.listen();
    std::optional<Reply> r;
    double elapsed = 0;
    bool closed = false;
    h.run([&] {
        Client c(port);
        auto t0 = Clock::now();
        c.send("GET / HTTP/1.1\r\nHost: x\r\n");
        // Keep trickling header bytes; the deadline is for the whole head.
        while (seconds_since(t0) < 3) {
            pollfd p{c.fd(), POLLIN, 0};
            if (::poll(&p, 1, 50) > 0)
                break;
            c.send("X: y\r\n");
        }
        r = c.read_reply();
        elapsed = seconds_since(t0);
        closed = c.wait_closed();
    });
    REQUIRE(r);
    CHECK(r->status == 408);
    CHECK(elapsed >= 0.25);
    CHECK(elapsed < 1.5);
    CHECK(closed);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: idle keep-alive connection is closed after idle_timeout")
{
    HttpLimits lim;
    lim.idle_timeout_s = 0.2;
    Harness h(lim);
    h.server->route("/hello", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) { send_text(res, "hi"); });
    uint16_t port = h.listen();
    std::optional<Reply> r;
    bool closed = false;
    double elapsed = 0;
    h.run([&] {
        Client c(port);
        r = roundtrip(c, get("/hello"));
        auto t0 = Clock::now();
        closed = c.wait_closed();
        elapsed = seconds_since(t0);
    });
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(closed);
    CHECK(elapsed < 1.5);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: connections beyond max_connections get 503 and are closed")
{
    HttpLimits lim;
    lim.max_connections = 2;
    Harness h(lim);
    h.server->route("/hello", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) { send_text(res, "hi"); });
    uint16_t port = h.listen();
    std::optional<Reply> a, b, c3, later;
    bool closed3 = false;
    int tries = 0;
    h.run([&] {
        Client ca(port), cb(port);
        a = roundtrip(ca, get("/hello"));
        b = roundtrip(cb, get("/hello"));
        {
            Client cc(port);
            c3 = roundtrip(cc, get("/hello"));
            closed3 = cc.wait_closed();
        }
        // A slot frees up once a client leaves.
        ca.close();
        for (tries = 1; tries <= 100; ++tries) {
            Client cd(port);
            later = roundtrip(cd, get("/hello"));
            if (later && later->status == 200)
                break;
            std::this_thread::sleep_for(10ms);
        }
    });
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->status == 200);
    CHECK(b->status == 200);
    REQUIRE(c3);
    CHECK(c3->status == 503);
    CHECK(c3->header("connection") == "close");
    CHECK(closed3);
    REQUIRE(later);
    CHECK(later->status == 200);
    auto st = h.server->stats();
    CHECK(st.connections_rejected >= 1);
    CHECK(st.responses_5xx == st.connections_rejected);
    CHECK(st.connections_active == 0);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: handler exception answers 500 and the server keeps serving")
{
    Harness h;
    h.server->route("/boom", [&](const HttpRequest &, std::shared_ptr<HttpResponse>) {
        throw std::runtime_error("kaboom");
    });
    h.server->route("/boom-mid-stream", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->begin_chunked(200, "text/plain");
        res->write("partial");
        throw std::runtime_error("kaboom");
    });
    h.server->route("/silent", [&](const HttpRequest &, std::shared_ptr<HttpResponse>) {
        // drops the response without answering
    });
    h.server->route("/hello", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) { send_text(res, "hi"); });
    uint16_t port = h.listen();
    std::optional<Reply> boom, after, silent, after_silent, mid;
    bool mid_closed = false;
    h.run([&] {
        {
            Client c(port);
            boom = roundtrip(c, get("/boom"));
            after = roundtrip(c, get("/hello"));
            silent = roundtrip(c, get("/silent"));
            after_silent = roundtrip(c, get("/hello"));
        }
        {
            Client c(port);
            mid = roundtrip(c, get("/boom-mid-stream"));
            mid_closed = c.eof();
        }
    });
    REQUIRE(boom);
    CHECK(boom->status == 500);
    CHECK(boom->body.find("kaboom") == std::string::npos); // internals stay in the log
    REQUIRE(after);
    CHECK(after->status == 200);
    REQUIRE(silent);
    CHECK(silent->status == 500);
    REQUIRE(after_silent);
    CHECK(after_silent->body == "hi");
    CHECK_FALSE(mid); // the chunked body never ends: the client sees a truncated stream
    CHECK(mid_closed);
    CHECK(h.server->stats().responses_5xx == 2);
    CHECK(h.logged(core::LogLevel::Warn, "kaboom"));
    CHECK(h.logged(core::LogLevel::Warn, "without answering"));
    CHECK(h.logged(core::LogLevel::Debug, "accepted connection from 127.0.0.1:"));
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: prefix routes pick the longest prefix, exact routes win, filter runs first")
{
    Harness h;
    auto answer = [](std::string name) {
        return [name](const HttpRequest &, std::shared_ptr<HttpResponse> res) { send_text(res, name); };
    };
    h.server->route("/ace/", answer("ace-prefix"), true);
    h.server->route("/ace/r/", answer("r-prefix"), true);
    h.server->route("/ace/getstream", answer("exact"));
    h.server->route("/ace/getstream", answer("exact-replaced"));
    h.server->set_filter([](const HttpRequest &req, HttpResponse &res) {
        if (req.path.rfind("/admin", 0) == 0) {
            res.send(403, "application/json", R"({"error":"forbidden"})");
            return false;
        }
        return true;
    });
    uint16_t port = h.listen();
    std::vector<std::string> bodies;
    int forbidden = 0, missing = 0;
    h.run([&] {
        Client c(port);
        for (auto target : {"/ace/getstream?id=1", "/ace/r/abc", "/ace/other", "/ace/"})
            if (auto r = roundtrip(c, get(target)))
                bodies.push_back(r->body);
        if (auto r = roundtrip(c, get("/admin/x")))
            forbidden = r->status;
        if (auto r = roundtrip(c, get("/acex")))
            missing = r->status;
    });
    CHECK(bodies == std::vector<std::string>{"exact-replaced", "r-prefix", "ace-prefix", "ace-prefix"});
    CHECK(forbidden == 403);
    CHECK(missing == 404);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: close() with open connections calls on_close and done")
{
    Harness h;
    std::vector<std::shared_ptr<HttpResponse>> streams;
    int on_close_calls = 0;
    bool done = false;
    bool write_after_close = true;
    h.server->route("/stream", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->begin_chunked(200, "video/mp2t");
        res->write("first");
        res->on_close([&, res] { // capturing res must not leak it
            ++on_close_calls;
            write_after_close = res->write("x");
        });
        streams.push_back(res);
    });
    h.server->route("/idle", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) { send_text(res, "idle"); });
    uint16_t port = h.listen();
    bool head_seen = false, stream_closed = false, idle_closed = false;
    std::atomic<bool> close_posted{false};
    h.run([&] {
        Client idle(port);
        (void)roundtrip(idle, get("/idle"));
        Client c(port);
        c.send(get("/stream"));
        head_seen = c.read_head().has_value();
        h.post([&] {
            h.server->close([&] { done = true; });
            close_posted = true;
        });
        c.read_all();
        stream_closed = c.eof();
        idle_closed = idle.wait_closed();
    });
    CHECK_FALSE(h.timed_out);
    CHECK(close_posted);
    CHECK(head_seen);
    CHECK(stream_closed);
    CHECK(idle_closed);
    CHECK(done);
    CHECK(on_close_calls == 1);
    CHECK_FALSE(write_after_close);
    REQUIRE(streams.size() == 1);
    CHECK(streams[0]->closed());
    CHECK_FALSE(streams[0]->write("more"));
    int late = 0;
    streams[0]->on_close([&] { ++late; }); // already closed: called at once
    CHECK(late == 1);
    CHECK(h.server->stats().connections_active == 0);
    bool done_again = false;
    h.server->close([&] { done_again = true; }); // idempotent
    CHECK(done_again);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: client going away mid-stream fires on_close")
{
    Harness h;
    std::atomic<bool> closed{false};
    bool write_failed = false;
    h.server->route("/stream", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->begin_chunked(200, "video/mp2t");
        res->on_close([&] { closed = true; });
        h.every(0.01, [&, res] {
            if (!res->write(std::string(1000, 'x'))) {
                write_failed = true;
                return false;
            }
            return true;
        });
    });
    uint16_t port = h.listen();
    h.run([&] {
        {
            Client c(port);
            c.send(get("/stream"));
            c.read_head();
        }
        for (int i = 0; i < 200 && !closed; ++i)
            std::this_thread::sleep_for(10ms);
        std::this_thread::sleep_for(50ms); // let the stream timer try once more
    });
    CHECK(closed);
    CHECK(write_failed);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: large streaming write reports pending bytes and calls on_drain once")
{
    HttpLimits lim;
    lim.max_pending_write_bytes = 64 << 20;
    Harness h(lim);
    const size_t big = 32 << 20;
    size_t pending_after_write = 0, pending_while_stalled = 0, pending_at_drain = 1;
    int drains = 0;
    bool second_write_ok = false;
    h.server->route("/big", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->begin_chunked(200, "application/octet-stream");
        CHECK(res->write(std::string(big, 'z')));
        pending_after_write = res->pending_bytes();
        res->on_drain([&, res] {
            ++drains;
            pending_at_drain = res->pending_bytes();
            second_write_ok = res->write("tail");
            res->end();
        });
        h.after(0.2, [&, res] { pending_while_stalled = res->pending_bytes(); });
    });
    uint16_t port = h.listen();
    std::optional<Reply> r;
    h.run([&] {
        Client c(port);
        c.send(get("/big"));
        std::this_thread::sleep_for(400ms); // not reading: the server has to queue
        r = c.read_reply();
    });
    REQUIRE(r);
    CHECK(r->body.size() == big + 4);
    CHECK(pending_after_write > big);
    CHECK(pending_while_stalled > 0);
    CHECK(drains == 1);
    CHECK(pending_at_drain == 0);
    CHECK(second_write_ok);
    CHECK(h.server->stats().bytes_out > big);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: a client that stops reading is closed when pending bytes exceed the limit")
{
    HttpLimits lim;
    lim.max_pending_write_bytes = 1 << 20;
    Harness h(lim);
    std::atomic<bool> closed{false};
    bool write_refused = false;
    size_t max_pending = 0;
    h.server->route("/flood", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->begin_chunked(200, "video/mp2t");
        res->on_close([&] { closed = true; });
        h.every(0.001, [&, res] {
            max_pending = std::max(max_pending, res->pending_bytes());
            if (!res->write(std::string(256 << 10, 'f'))) {
                write_refused = true;
                return false;
            }
            return true;
        });
    });
    uint16_t port = h.listen();
    h.run([&] {
        Client c(port);
        c.send(get("/flood"));
        for (int i = 0; i < 500 && !closed; ++i)
            std::this_thread::sleep_for(10ms);
    });
    CHECK(closed);
    CHECK(write_refused);
    CHECK(max_pending <= lim.max_pending_write_bytes);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: a slow but steady reader gets a large response whole despite idle_timeout")
{
    HttpLimits lim;
    lim.idle_timeout_s = 1.0;
    Harness h(lim);
    const size_t big = 32 << 20; // well beyond what loopback socket buffers hold
    h.server->route("/big", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->send(200, "application/octet-stream", std::string(big, 'q'));
    });
    uint16_t port = h.listen();
    std::optional<std::string> head, body;
    double elapsed = 0;
    h.run([&] {
        Client c(port);
        auto t0 = Clock::now();
        c.send(get("/big"));
        head = c.read_head();
        body = c.read_exact_slowly(big, 5ms); // about 12 MB/s: the transfer takes > 2 s
        elapsed = seconds_since(t0);
    });
    REQUIRE(head);
    CHECK(head->find("Content-Length: " + std::to_string(big)) != std::string::npos);
    REQUIRE(body);
    CHECK(body->size() == big);
    CHECK(body->find_first_not_of('q') == std::string::npos);
    CHECK(elapsed > 1.0); // the transfer did outlast the idle timeout
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: pipelining without reading answers stops queueing at the write limit")
{
    HttpLimits lim;
    lim.max_pending_write_bytes = 1 << 20;
    Harness h(lim);
    const size_t each = 256 << 10;
    const int count = 100;
    h.server->route("/chunk", [&](const HttpRequest &, std::shared_ptr<HttpResponse> res) {
        res->send(200, "application/octet-stream", std::string(each, 'p'));
    });
    uint16_t port = h.listen();
    std::atomic<bool> sampled{false};
    uint64_t requests_mid = 0;
    size_t memory_mid = 0;
    int complete = 0;
    h.run([&] {
        Client c(port);
        std::string reqs;
        for (int i = 0; i < count; ++i)
            reqs += get("/chunk");
        c.send(reqs);
        std::this_thread::sleep_for(300ms);
        h.post([&] {
            requests_mid = h.server->stats().requests;
            memory_mid = h.server->memory_bytes();
            sampled = true;
        });
        while (!sampled)
            std::this_thread::sleep_for(5ms);
        for (int i = 0; i < count; ++i) {
            auto r = c.read_reply();
            if (!r || r->body.size() != each)
                break;
            ++complete;
        }
    });
    CHECK(sampled);
    CHECK(requests_mid < static_cast<uint64_t>(count));
    CHECK(memory_mid < (4u << 20));
    CHECK(complete == count);
    CHECK(h.server->stats().requests == static_cast<uint64_t>(count));
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: destroying an unclosed server closes it and frees it once the loop runs")
{
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    auto server = std::make_unique<HttpServer>(&loop, core::Logger{});
    server->route("/hello", [](const HttpRequest &, std::shared_ptr<HttpResponse> res) { send_text(res, "hi"); });
    server->listen("127.0.0.1", 0);
    uint16_t port = server->port();
    std::optional<Reply> r;
    bool closed = false;
    std::atomic<bool> answered{false};
    std::thread client([&] {
        Client c(port);
        r = roundtrip(c, get("/hello"));
        answered = true;
        closed = c.wait_closed();
    });
    // Poll from a timer until the client has its answer, then drop the server
    // with its listener and the keep-alive connection still open.
    uv_timer_t poll_timer;
    uv_timer_init(&loop, &poll_timer);
    struct Ctx {
        std::unique_ptr<HttpServer> *server;
        std::atomic<bool> *answered;
        int ticks = 0;
    } ctx{&server, &answered};
    poll_timer.data = &ctx;
    uv_timer_start(
        &poll_timer,
        [](uv_timer_t *t) {
            auto *c = static_cast<Ctx *>(t->data);
            if (!*c->answered && ++c->ticks < 500)
                return;
            c->server->reset();
            uv_close(reinterpret_cast<uv_handle_t *>(t), nullptr);
        },
        5, 5);
    uv_run(&loop, UV_RUN_DEFAULT);
    client.join();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(closed);
    CHECK_FALSE(server);
    REQUIRE(uv_loop_close(&loop) == 0);
}

TEST_CASE("http: listen reports a busy port and bad addresses as errors")
{
    Harness h;
    uint16_t port = h.listen();
    HttpServer other(&h.loop, core::Logger{});
    try {
        other.listen("127.0.0.1", port);
        FAIL("listen on a busy port succeeded");
    } catch (const openace::Error &e) {
        CHECK(e.code() == Errc::NET);
        CHECK(std::string(e.what()) ==
              "http: listen: cannot listen on 127.0.0.1:" + std::to_string(port) + ": address already in use");
    }
    CHECK_THROWS_AS(other.listen("not-an-address", 0), openace::Error);
    try {
        h.server->listen("127.0.0.1", 0);
        FAIL("second listen succeeded");
    } catch (const openace::Error &e) {
        CHECK(e.code() == Errc::STATE);
    }
    // The failed server can still listen elsewhere, then close cleanly.
    other.listen("localhost", 0);
    CHECK(other.port() != 0);
    CHECK(other.port() != port);
    bool other_done = false;
    other.close([&] { other_done = true; });
    h.run([] {});
    CHECK(other_done);
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: listens on IPv6 loopback when available")
{
    Harness h;
    try {
        h.server->listen("::1", 0);
    } catch (const openace::Error &) {
        SUCCEED("no IPv6 loopback on this machine");
        h.run([] {});
        REQUIRE(h.finish() == 0);
        return;
    }
    CHECK(h.server->address() == "[::1]:" + std::to_string(h.server->port()));
    h.run([] {});
    REQUIRE(h.finish() == 0);
}

TEST_CASE("http: status_reason knows the common phrases")
{
    CHECK(status_reason(200) == "OK");
    CHECK(status_reason(404) == "Not Found");
    CHECK(status_reason(431) == "Request Header Fields Too Large");
    CHECK(status_reason(503) == "Service Unavailable");
    CHECK(status_reason(799) == "Unknown");
    CHECK(status_reason(-1) == "Unknown");
}
