#include "net/http_server.hpp"

#include "core/error.hpp"
#include "net/url.hpp"
#include "net/uv_handle.hpp"

#include <http_parser.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <list>
#include <map>

namespace openace::net {

namespace {

constexpr size_t kReadSlabBytes = 64 * 1024;
// Raw bytes kept from a client while its current request is being answered
// (pipelining); beyond this we stop reading until the response ends.
constexpr size_t kMaxBufferedBytes = 64 * 1024;
// After our last byte, how long we keep draining a client's input before
// closing: closing with unread input sends RST, which can destroy the error
// response the client has not read yet (Apache's "lingering close").
constexpr double kLingerSeconds = 2.0;
constexpr int kListenBacklog = 511;

bool iequals(std::string_view a, std::string_view b) noexcept
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               auto lx = (x >= 'A' && x <= 'Z') ? char(x - 'A' + 'a') : x;
               auto ly = (y >= 'A' && y <= 'Z') ? char(y - 'A' + 'a') : y;
               return lx == ly;
           });
}

void lowercase(std::string &s) noexcept
{
    for (char &c : s)
        if (c >= 'A' && c <= 'Z')
            c = char(c - 'A' + 'a');
}

std::string json_escape(std::string_view s)
{
    std::string out;
    out.reserve(s.size() + 2);
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20)
                out += fmt::format("\\u{:04x}", c);
            else
                out.push_back(ch);
        }
    }
    return out;
}

// Formatting a Date costs a gmtime per second at most.
const std::string &http_date()
{
    thread_local std::time_t cached_at = 0;
    thread_local std::string cached;
    std::time_t now = std::time(nullptr);
    if (now != cached_at || cached.empty()) {
        std::tm tm{};
        gmtime_r(&now, &tm);
        char buf[64];
        size_t n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached.assign(buf, n);
        cached_at = now;
    }
    return cached;
}

bool bodyless_status(int status) noexcept
{
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

bool header_safe(std::string_view s) noexcept
{
    return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

bool has_header(const HttpHeaders &h, std::string_view name) noexcept
{
    for (const auto &kv : h)
        if (iequals(kv.first, name))
            return true;
    return false;
}

// content_length: nullopt for a streamed (chunked / close-delimited) or bodyless response.
std::string build_head(int status, std::string_view content_type, const HttpHeaders &extra,
                       std::optional<size_t> content_length, bool chunked, bool keep_alive)
{
    std::string out;
    out.reserve(256);
    out += fmt::format("HTTP/1.1 {} {}\r\n", status, status_reason(status));
    if (!has_header(extra, "server"))
        out += fmt::format("Server: OpenAce/{}\r\n", openace::version_string());
    if (!has_header(extra, "date"))
        out += "Date: " + http_date() + "\r\n";
    if (!has_header(extra, "access-control-allow-origin"))
        out += "Access-Control-Allow-Origin: *\r\n";
    if (!content_type.empty() && header_safe(content_type) && !has_header(extra, "content-type"))
        out += fmt::format("Content-Type: {}\r\n", content_type);
    if (content_length)
        out += fmt::format("Content-Length: {}\r\n", *content_length);
    if (chunked)
        out += "Transfer-Encoding: chunked\r\n";
    out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
    for (const auto &[name, value] : extra) {
        if (name.empty() || !header_safe(name) || !header_safe(value) || iequals(name, "content-length") ||
            iequals(name, "transfer-encoding") || iequals(name, "connection"))
            continue;
        out += name;
        out += ": ";
        out += value;
        out += "\r\n";
    }
    out += "\r\n";
    return out;
}

bool extra_asks_close(const HttpHeaders &extra) noexcept
{
    for (const auto &[name, value] : extra)
        if (iequals(name, "connection") && iequals(value, "close"))
            return true;
    return false;
}

uint64_t timeout_ms(double seconds) noexcept
{
    double ms = std::ceil(seconds * 1000.0);
    return ms < 1 ? 1 : static_cast<uint64_t>(ms);
}

std::string format_endpoint(std::string_view ip, uint16_t port)
{
    if (ip.find(':') != std::string_view::npos)
        return fmt::format("[{}]:{}", ip, port);
    return fmt::format("{}:{}", ip, port);
}

bool endpoint_of(const sockaddr_storage &ss, std::string &ip, uint16_t &port)
{
    char buf[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        const auto *sin = reinterpret_cast<const sockaddr_in *>(&ss);
        uv_ip4_name(sin, buf, sizeof buf);
        port = ntohs(sin->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const auto *sin6 = reinterpret_cast<const sockaddr_in6 *>(&ss);
        uv_ip6_name(sin6, buf, sizeof buf);
        port = ntohs(sin6->sin6_port);
    } else {
        return false;
    }
    ip = buf;
    return true;
}

} // namespace

std::string_view status_reason(int status)
{
    if (status < 0 || status > 999)
        return "Unknown";
    const char *s = http_status_str(static_cast<enum http_status>(status));
    if (!s || s[0] == '<')
        return "Unknown";
    return s;
}

const std::string *HttpRequest::header(std::string_view lname) const
{
    for (const auto &kv : headers)
        if (iequals(kv.first, lname))
            return &kv.second;
    return nullptr;
}

std::optional<std::string> HttpRequest::param(std::string_view name) const
{
    return query_value(query, name);
}

bool HttpRequest::from_loopback() const
{
    return peer_ip.rfind("127.", 0) == 0 || peer_ip == "::1" || peer_ip.rfind("::ffff:127.", 0) == 0;
}

namespace detail {

struct HttpServerCore {
    HttpServerCore(uv_loop_t *l, core::Logger lg, HttpLimits lim)
        : loop(l), log(std::move(lg)), limits(lim), slab(new char[kReadSlabBytes])
    {
    }

    void listen(std::string_view host, uint16_t port);
    void accept(int status);
    void close(std::function<void()> done);
    void release_handle();
    void handle(const std::shared_ptr<HttpResponse> &resp);
    void count_status(int status)
    {
        if (status >= 500)
            ++stats.responses_5xx;
        else if (status >= 400)
            ++stats.responses_4xx;
    }
    void record_response_time(uint64_t start_ns)
    {
        double ms = static_cast<double>(uv_hrtime() - start_ns) / 1e6;
        ++timed_responses;
        stats.avg_response_ms += (ms - stats.avg_response_ms) / static_cast<double>(timed_responses);
    }

    uv_loop_t *loop;
    core::Logger log;
    HttpLimits limits;
    UvHandle<uv_tcp_t> listener;
    std::string bound_ip;
    uint16_t bound_port = 0;

    std::map<std::string, HttpHandler, std::less<>> exact_routes;
    std::vector<std::pair<std::string, HttpHandler>> prefix_routes; // longest first
    std::function<bool(const HttpRequest &, HttpResponse &)> filter;

    std::list<std::unique_ptr<HttpConnection>> conns;
    size_t served_live = 0;   // open connections counted against max_connections
    size_t rejected_live = 0; // open connections that only get a 503
    size_t open_handles = 0;  // every libuv handle not yet through its close callback
    bool closing = false;
    bool closed = false;
    bool orphaned = false; // HttpServer destroyed first: free ourselves when the handles are gone
    std::vector<std::function<void()>> done_callbacks;

    HttpServer::Stats stats;
    uint64_t timed_responses = 0;
    std::unique_ptr<char[]> slab; // every read lands here first; one loop thread, so one slab
};

class HttpConnection {
public:
    explicit HttpConnection(HttpServerCore &srv) : srv_(srv)
    {
        http_parser_init(&parser_, HTTP_REQUEST);
        parser_.data = this;
    }
    HttpConnection(const HttpConnection &) = delete;
    HttpConnection &operator=(const HttpConnection &) = delete;

    void start(std::list<std::unique_ptr<HttpConnection>>::iterator self);
    void close_now(std::string_view why);
    size_t memory_bytes() const { return sizeof *this + inbuf_.capacity() + req_.body.capacity() + pending_; }

    // HttpResponse calls these; the response is current_.
    void respond(HttpResponse &r, int status, std::string_view ctype, std::string body, const HttpHeaders &extra);
    void begin_stream(HttpResponse &r, int status, std::string_view ctype, const HttpHeaders &extra,
                      std::optional<size_t> length);
    bool write_body(HttpResponse &r, std::string_view data);
    void end_stream(HttpResponse &r);
    void response_destroyed(HttpResponse &r);
    size_t pending() const { return pending_; }

    // http_parser callbacks
    int on_message_begin();
    int on_url(const char *at, size_t len);
    int on_header_field(const char *at, size_t len);
    int on_header_value(const char *at, size_t len);
    int on_headers_complete();
    int on_body(const char *at, size_t len);
    int on_message_complete();

private:
    enum class State { Idle, Head, Body, Serving };
    enum class Timer { None, Idle, Head, Body, Stall, Linger };
    struct WriteReq {
        uv_write_t req{};
        HttpConnection *conn = nullptr;
        std::string head;
        std::string body;
    };

    static void on_alloc(uv_handle_t *h, size_t, uv_buf_t *buf);
    static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
    static void on_write(uv_write_t *req, int status);
    static void on_timer(uv_timer_t *t);

    void read(ssize_t nread);
    void process();
    void dispatch();
    void fail(http_errno err);
    void send_error(int status, std::string_view message);
    bool write_raw(std::string head, std::string body = {});
    void write_done(size_t n, int status);
    void finish_exchange(bool keep_alive);
    void close_gracefully();
    void start_shutdown();
    void shutdown_done(int status);
    void update_reading();
    void arm(Timer kind, double seconds);
    void disarm();
    void timer_fired();
    void handle_closed();
    bool add_head_bytes(size_t n);
    bool commit_header();
    bool keep_alive_for(const HttpRequest &req, const HttpHeaders &extra) const;
    void fire_drain();
    std::string peer() const { return format_endpoint(peer_ip_, peer_port_); }
    // A client that pipelines requests without reading the answers must not
    // make us queue answers without bound: parse the next request only once
    // the queue is below the streaming limit.
    bool write_blocked() const { return pending_ > srv_.limits.max_pending_write_bytes; }
    // Bytes the kernel has taken from us so far: progress even while one
    // large write is still incomplete.
    uint64_t written_to_kernel() const { return submitted_ - uv_stream_get_write_queue_size(tcp_.stream()); }
    // Loop callbacks never throw: anything that escapes closes this connection.
    template <class F> void guard(F &&f) noexcept
    {
        try {
            f();
        } catch (...) {
            try {
                srv_.log.error("connection {}: internal error; closing", peer());
                close_now("internal error");
            } catch (...) {
            }
        }
    }

    HttpServerCore &srv_;
    std::list<std::unique_ptr<HttpConnection>>::iterator self_;
    UvHandle<uv_tcp_t> tcp_;
    UvHandle<uv_timer_t> timer_;
    int handles_open_ = 0;
    http_parser parser_{};

    std::string inbuf_; // received, not yet parsed
    HttpRequest req_;   // being parsed
    std::string field_, value_;
    bool in_value_ = false;
    size_t head_bytes_ = 0;
    int error_status_ = 0; // a limit a parser callback hit
    std::string error_message_;
    bool message_ready_ = false;

    State state_ = State::Idle;
    Timer timer_kind_ = Timer::None;
    HttpResponse *current_ = nullptr;
    size_t pending_ = 0;
    uint64_t submitted_ = 0;
    uint64_t progress_mark_ = 0; // written_to_kernel() when the timer was armed
    std::string peer_ip_;
    uint16_t peer_port_ = 0;
    enum class Counted { None, Served, Rejected } counted_ = Counted::None;
    bool reading_ = false;
    bool peer_eof_ = false;
    bool graceful_ = false;
    bool shutdown_sent_ = false;
    bool closed_ = false;
    bool in_process_ = false;
};

namespace {

HttpConnection *conn_of(http_parser *p)
{
    return static_cast<HttpConnection *>(p->data);
}

template <class F> int guarded(F &&f) noexcept
{
    try {
        return f();
    } catch (...) {
        return -1;
    }
}

const http_parser_settings &parser_settings()
{
    static const http_parser_settings s = [] {
        http_parser_settings st;
        http_parser_settings_init(&st);
        // http_parser is C: nothing may unwind through it, so a throwing
        // callback (only bad_alloc is possible) becomes a parse error.
        st.on_message_begin = [](http_parser *p) { return guarded([&] { return conn_of(p)->on_message_begin(); }); };
        st.on_url = [](http_parser *p, const char *at, size_t n) {
            return guarded([&] { return conn_of(p)->on_url(at, n); });
        };
        st.on_header_field = [](http_parser *p, const char *at, size_t n) {
            return guarded([&] { return conn_of(p)->on_header_field(at, n); });
        };
        st.on_header_value = [](http_parser *p, const char *at, size_t n) {
            return guarded([&] { return conn_of(p)->on_header_value(at, n); });
        };
        st.on_headers_complete = [](http_parser *p) {
            return guarded([&] { return conn_of(p)->on_headers_complete(); });
        };
        st.on_body = [](http_parser *p, const char *at, size_t n) {
            return guarded([&] { return conn_of(p)->on_body(at, n); });
        };
        st.on_message_complete = [](http_parser *p) {
            return guarded([&] { return conn_of(p)->on_message_complete(); });
        };
        return st;
    }();
    return s;
}

} // namespace

// ------------------------------------------------------------------ lifecycle

void HttpConnection::start(std::list<std::unique_ptr<HttpConnection>>::iterator self)
{
    self_ = self;
    ++srv_.stats.connections_total;
    int rc = tcp_.init(this, uv_tcp_init, srv_.loop);
    if (rc != 0) {
        srv_.log.warn("cannot accept a connection: {}", uv_error(rc));
        closed_ = true;
        srv_.conns.erase(self_); // nothing was opened, so nothing to wait for
        return;
    }
    ++handles_open_;
    ++srv_.open_handles;
    rc = timer_.init(this, uv_timer_init, srv_.loop);
    if (rc == 0) {
        ++handles_open_;
        ++srv_.open_handles;
        rc = uv_accept(srv_.listener.stream(), tcp_.stream());
    }
    if (rc != 0) {
        srv_.log.warn("cannot accept a connection: {}", uv_error(rc));
        close_now("accept failed");
        return;
    }
    sockaddr_storage ss{};
    int len = sizeof ss;
    if (uv_tcp_getpeername(tcp_.get(), reinterpret_cast<sockaddr *>(&ss), &len) == 0)
        endpoint_of(ss, peer_ip_, peer_port_);
    uv_tcp_nodelay(tcp_.get(), 1);

    if (srv_.served_live >= srv_.limits.max_connections) {
        ++srv_.stats.connections_rejected;
        // A flood of rejected clients must not grow without bound either.
        if (srv_.rejected_live >= std::max<size_t>(srv_.limits.max_connections, 16)) {
            close_now("too many connections");
            return;
        }
        counted_ = Counted::Rejected;
        ++srv_.rejected_live;
        srv_.log.warn("rejecting connection from {}: {} connections open (limit {})", peer(), srv_.served_live,
                      srv_.limits.max_connections);
        send_error(503, "too many connections");
        return;
    }
    counted_ = Counted::Served;
    ++srv_.served_live;
    srv_.log.debug("accepted connection from {} ({} open)", peer(), srv_.served_live);
    if (srv_.limits.idle_timeout_s > 0)
        arm(Timer::Idle, srv_.limits.idle_timeout_s);
    update_reading();
}

void HttpConnection::close_now(std::string_view why)
{
    if (closed_)
        return;
    closed_ = true;
    reading_ = false;
    timer_kind_ = Timer::None;
    if (counted_ == Counted::Served)
        --srv_.served_live;
    else if (counted_ == Counted::Rejected)
        --srv_.rejected_live;
    counted_ = Counted::None;
    if (!peer_ip_.empty())
        srv_.log.debug("closed connection from {} ({})", peer(), why);
    // Pending write and shutdown requests are cancelled by libuv before the
    // tcp close callback, and they point at us: we are freed only after both
    // handles are through their close callbacks.
    tcp_.close([this] { handle_closed(); });
    timer_.close([this] { handle_closed(); });
    if (HttpResponse *r = current_) {
        current_ = nullptr;
        r->detach(true); // may run user code that drops the last reference to r
    }
}

void HttpConnection::handle_closed()
{
    HttpServerCore &srv = srv_;
    if (--handles_open_ == 0)
        srv.conns.erase(self_); // deletes this
    srv.release_handle();
}

// ------------------------------------------------------------------- reading

void HttpConnection::on_alloc(uv_handle_t *h, size_t, uv_buf_t *buf)
{
    auto *c = static_cast<HttpConnection *>(h->data);
    *buf = uv_buf_init(c->srv_.slab.get(), kReadSlabBytes);
}

void HttpConnection::on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *)
{
    auto *c = static_cast<HttpConnection *>(s->data);
    c->guard([&] { c->read(nread); });
}

void HttpConnection::read(ssize_t nread)
{
    if (closed_)
        return;
    if (nread > 0) {
        srv_.stats.bytes_in += static_cast<uint64_t>(nread);
        if (graceful_ || counted_ == Counted::Rejected)
            return; // lingering: drain and discard
        if (state_ == State::Body && srv_.limits.idle_timeout_s > 0)
            arm(Timer::Body, srv_.limits.idle_timeout_s);
        inbuf_.append(srv_.slab.get(), static_cast<size_t>(nread));
        process();
        return;
    }
    if (nread == UV_EOF) {
        peer_eof_ = true;
        reading_ = false;
        if (graceful_) {
            // The client is done; once our bytes are out there is nothing to linger for.
            if (pending_ == 0)
                close_now("closed by client");
            return;
        }
        if (current_) {
            // The client hung up while we were answering: stop the stream.
            close_now("client went away");
            return;
        }
        process(); // serves complete pipelined requests, then closes
        return;
    }
    if (nread < 0)
        close_now(uv_error(static_cast<int>(nread)));
}

void HttpConnection::update_reading()
{
    if (closed_)
        return;
    bool want = !peer_eof_ && (graceful_ || counted_ == Counted::Rejected || inbuf_.size() < kMaxBufferedBytes);
    if (want && !reading_) {
        int rc = uv_read_start(tcp_.stream(), on_alloc, on_read);
        if (rc != 0) {
            close_now(uv_error(rc));
            return;
        }
        reading_ = true;
    } else if (!want && reading_) {
        uv_read_stop(tcp_.stream());
        reading_ = false;
    }
}

// Feeds buffered bytes to the parser while no response is in progress.
// Re-entered from a handler that answers synchronously: the outer call
// keeps going, so pipelined requests do not recurse.
void HttpConnection::process()
{
    if (in_process_)
        return;
    in_process_ = true;
    while (!closed_ && !graceful_ && !current_ && !inbuf_.empty() && !write_blocked()) {
        size_t n = http_parser_execute(&parser_, &parser_settings(), inbuf_.data(), inbuf_.size());
        if (closed_)
            break; // a parser callback's write failed
        auto err = HTTP_PARSER_ERRNO(&parser_);
        if (err == HPE_PAUSED && message_ready_) {
            inbuf_.erase(0, n);
            http_parser_pause(&parser_, 0);
            message_ready_ = false;
            dispatch();
            continue;
        }
        inbuf_.clear();
        if (err != HPE_OK)
            fail(err);
    }
    in_process_ = false;
    if (closed_ || graceful_)
        return;
    if (peer_eof_ && !current_ && !write_blocked()) {
        if (state_ == State::Idle && inbuf_.empty())
            close_gracefully();
        else
            close_now("client closed in the middle of a request");
        return;
    }
    update_reading();
}

// ------------------------------------------------------------------- parsing

bool HttpConnection::add_head_bytes(size_t n)
{
    head_bytes_ += n;
    if (head_bytes_ <= srv_.limits.max_header_bytes)
        return true;
    error_status_ = 431;
    error_message_ = fmt::format("request header fields too large (limit {} bytes)", srv_.limits.max_header_bytes);
    return false;
}

bool HttpConnection::commit_header()
{
    if (field_.empty() && !in_value_)
        return true;
    if (req_.headers.size() >= srv_.limits.max_headers) {
        error_status_ = 431;
        error_message_ = fmt::format("too many header fields (limit {})", srv_.limits.max_headers);
        return false;
    }
    lowercase(field_);
    while (!value_.empty() && (value_.back() == ' ' || value_.back() == '\t'))
        value_.pop_back();
    req_.headers.emplace_back(std::move(field_), std::move(value_));
    field_.clear();
    value_.clear();
    in_value_ = false;
    return add_head_bytes(4); // ": " and CRLF, which the parser does not hand us
}

int HttpConnection::on_message_begin()
{
    req_ = HttpRequest{};
    field_.clear();
    value_.clear();
    in_value_ = false;
    head_bytes_ = 0;
    state_ = State::Head;
    if (srv_.limits.header_timeout_s > 0)
        arm(Timer::Head, srv_.limits.header_timeout_s);
    else
        disarm();
    return 0;
}

int HttpConnection::on_url(const char *at, size_t len)
{
    if (!add_head_bytes(len))
        return -1;
    req_.target.append(at, len);
    return 0;
}

int HttpConnection::on_header_field(const char *at, size_t len)
{
    if (in_value_ && !commit_header())
        return -1;
    if (!add_head_bytes(len))
        return -1;
    field_.append(at, len);
    return 0;
}

int HttpConnection::on_header_value(const char *at, size_t len)
{
    in_value_ = true;
    if (!add_head_bytes(len))
        return -1;
    value_.append(at, len);
    return 0;
}

int HttpConnection::on_headers_complete()
{
    if (!commit_header())
        return -1;
    if (parser_.http_major != 1) {
        error_status_ = 505;
        error_message_ = fmt::format("HTTP/{}.{} is not supported", parser_.http_major, parser_.http_minor);
        return -1;
    }
    req_.method = http_method_str(static_cast<http_method>(parser_.method));
    req_.http_minor = parser_.http_minor;
    req_.keep_alive = http_should_keep_alive(&parser_) != 0;
    // After CONNECT or an Upgrade the bytes are no longer HTTP.
    if (parser_.upgrade || parser_.method == HTTP_CONNECT || (parser_.flags & F_UPGRADE))
        req_.keep_alive = false;
    bool has_length = (parser_.flags & F_CONTENTLENGTH) != 0;
    if (has_length && parser_.content_length > srv_.limits.max_body_bytes) {
        error_status_ = 413;
        error_message_ = fmt::format("request body too large ({} bytes, limit {})", parser_.content_length,
                                     srv_.limits.max_body_bytes);
        return -1;
    }
    bool expects_body = (parser_.flags & F_CHUNKED) || (has_length && parser_.content_length > 0);
    if (expects_body) {
        const std::string *expect = req_.header("expect");
        if (expect && iequals(*expect, "100-continue") && req_.http_minor >= 1)
            write_raw("HTTP/1.1 100 Continue\r\n\r\n");
        state_ = State::Body;
        if (srv_.limits.idle_timeout_s > 0)
            arm(Timer::Body, srv_.limits.idle_timeout_s);
        else
            disarm();
    }
    return 0;
}

int HttpConnection::on_body(const char *at, size_t len)
{
    if (req_.body.size() + len > srv_.limits.max_body_bytes) {
        error_status_ = 413;
        error_message_ = fmt::format("request body too large (limit {} bytes)", srv_.limits.max_body_bytes);
        return -1;
    }
    req_.body.append(at, len);
    return 0;
}

int HttpConnection::on_message_complete()
{
    disarm();
    message_ready_ = true;
    // One request at a time: the rest of the buffer waits for this response.
    http_parser_pause(&parser_, 1);
    return 0;
}

void HttpConnection::fail(http_errno err)
{
    if (error_status_ != 0) {
        srv_.log.warn("{} from {}: {}", error_status_, peer(), error_message_);
        send_error(error_status_, error_message_);
        return;
    }
    if (err == HPE_HEADER_OVERFLOW) {
        srv_.log.warn("431 from {}: request head too large", peer());
        send_error(431, "request header fields too large");
        return;
    }
    std::string msg = fmt::format("bad request: {}", http_errno_description(err));
    srv_.log.warn("400 from {}: {}", peer(), msg);
    send_error(400, msg);
}

// ------------------------------------------------------------------ serving

void HttpConnection::dispatch()
{
    state_ = State::Serving;
    disarm();
    HttpRequest req = std::move(req_);
    req_ = HttpRequest{};
    TargetParts parts = split_target(req.target);
    if (auto p = percent_decode(parts.path))
        req.path = std::move(*p);
    else
        req.path = std::string(parts.path);
    req.query = parse_query(parts.query);
    req.peer_ip = peer_ip_;
    req.peer_port = peer_port_;

    std::shared_ptr<HttpResponse> resp(new HttpResponse(this, std::move(req)));
    resp->start_ns_ = uv_hrtime();
    current_ = resp.get();
    ++srv_.stats.requests;
    srv_.handle(resp);
    // If nobody kept resp, it is destroyed here and response_destroyed() answers 500.
}

void HttpServerCore::handle(const std::shared_ptr<HttpResponse> &resp)
{
    const HttpRequest &req = resp->request();
    try {
        if (filter && !filter(req, *resp))
            return;
        const HttpHandler *found = nullptr;
        if (auto it = exact_routes.find(req.path); it != exact_routes.end()) {
            found = &it->second;
        } else {
            for (const auto &[prefix, h] : prefix_routes)
                if (req.path.compare(0, prefix.size(), prefix) == 0) {
                    found = &h;
                    break;
                }
        }
        if (!found) {
            resp->send(404, "application/json", fmt::format(R"({{"error":"not found: {}"}})", json_escape(req.path)));
            return;
        }
        HttpHandler h = *found; // the handler may change the routes while it runs
        h(req, resp);
    } catch (const std::exception &e) {
        log.warn("handler for {} {} failed: {}", req.method, req.path, e.what());
        try {
            if (!resp->started())
                resp->send(500, "application/json", R"({"error":"internal server error"})");
            else if (!resp->finished() && resp->conn_)
                resp->conn_->close_now("handler failed mid-stream");
        } catch (...) {
        }
    } catch (...) {
        log.warn("handler for {} {} failed with a non-standard exception", req.method, req.path);
        try {
            if (!resp->started())
                resp->send(500, "application/json", R"({"error":"internal server error"})");
            else if (!resp->finished() && resp->conn_)
                resp->conn_->close_now("handler failed mid-stream");
        } catch (...) {
        }
    }
}

bool HttpConnection::keep_alive_for(const HttpRequest &req, const HttpHeaders &extra) const
{
    // A client's EOF does not end keep-alive here: pipelined requests it sent
    // before hanging up are still served, and process() closes afterwards.
    return req.keep_alive && !srv_.closing && !extra_asks_close(extra);
}

void HttpConnection::respond(HttpResponse &r, int status, std::string_view ctype, std::string body,
                             const HttpHeaders &extra)
{
    bool keep = keep_alive_for(r.req_, extra);
    bool bodyless = bodyless_status(status);
    std::optional<size_t> length;
    if (!bodyless)
        length = body.size();
    std::string head = build_head(status, ctype, extra, length, false, keep);
    if (bodyless || r.req_.method == "HEAD")
        body.clear();
    srv_.count_status(status);
    r.keep_alive_ = keep;
    if (!write_raw(std::move(head), std::move(body)))
        return;
    srv_.record_response_time(r.start_ns_);
    finish_exchange(keep);
}

void HttpConnection::begin_stream(HttpResponse &r, int status, std::string_view ctype, const HttpHeaders &extra,
                                  std::optional<size_t> length)
{
    bool keep = keep_alive_for(r.req_, extra);
    bool bodyless = bodyless_status(status) || r.req_.method == "HEAD";
    bool chunked = false;
    if (!bodyless && !length) {
        if (r.req_.http_minor >= 1)
            chunked = true;
        else
            keep = false; // HTTP/1.0: the end of the body is the end of the connection
    }
    r.chunked_ = chunked;
    r.bodyless_ = bodyless;
    r.keep_alive_ = keep;
    srv_.count_status(status);
    write_raw(build_head(status, ctype, extra, bodyless_status(status) ? std::nullopt : length, chunked, keep));
}

bool HttpConnection::write_body(HttpResponse &r, std::string_view data)
{
    if (closed_ || graceful_)
        return false;
    size_t framed = data.size() + (r.chunked_ ? 32 : 0);
    if (pending_ > 0 && pending_ + framed > srv_.limits.max_pending_write_bytes) {
        srv_.log.warn("client {} is not reading ({} bytes queued, limit {}); closing", peer(), pending_,
                      srv_.limits.max_pending_write_bytes);
        close_now("slow reader");
        return false;
    }
    if (!r.chunked_)
        return write_raw(std::string(data));
    std::string chunk = fmt::format("{:x}\r\n", data.size());
    chunk.reserve(chunk.size() + data.size() + 2);
    chunk.append(data);
    chunk += "\r\n";
    return write_raw(std::move(chunk));
}

void HttpConnection::end_stream(HttpResponse &r)
{
    if (closed_)
        return;
    if (r.chunked_ && !write_raw("0\r\n\r\n"))
        return;
    srv_.record_response_time(r.start_ns_);
    finish_exchange(r.keep_alive_);
}

void HttpConnection::response_destroyed(HttpResponse &r)
{
    if (current_ == &r)
        current_ = nullptr;
    if (closed_ || r.finished_)
        return;
    if (r.started_) {
        srv_.log.warn("{} {}: response dropped in the middle of its body; closing", r.req_.method, r.req_.path);
        close_now("response abandoned");
        return;
    }
    srv_.log.warn("{} {}: handler dropped the response without answering", r.req_.method, r.req_.path);
    std::string body = R"({"error":"handler did not respond"})";
    bool keep = keep_alive_for(r.req_, {});
    std::string head = build_head(500, "application/json", {}, body.size(), false, keep);
    if (r.req_.method == "HEAD")
        body.clear();
    srv_.count_status(500);
    if (!write_raw(std::move(head), std::move(body)))
        return;
    srv_.record_response_time(r.start_ns_);
    finish_exchange(keep);
}

// The current response is complete on the wire (queued).
void HttpConnection::finish_exchange(bool keep_alive)
{
    if (closed_)
        return;
    if (!keep_alive) {
        close_gracefully(); // current_ stays attached until the close, for its on_close
        return;
    }
    if (HttpResponse *r = current_) {
        current_ = nullptr;
        r->detach(false);
    }
    state_ = State::Idle;
    if (srv_.limits.idle_timeout_s > 0)
        arm(Timer::Idle, srv_.limits.idle_timeout_s);
    else
        disarm();
    process();
}

void HttpConnection::send_error(int status, std::string_view message)
{
    if (closed_ || graceful_)
        return;
    std::string body = std::string(message) + "\n";
    std::string head = build_head(status, "text/plain; charset=utf-8", {}, body.size(), false, false);
    srv_.count_status(status);
    if (!write_raw(std::move(head), std::move(body)))
        return;
    close_gracefully();
}

// ------------------------------------------------------------------ writing

bool HttpConnection::write_raw(std::string head, std::string body)
{
    if (closed_)
        return false;
    auto *w = new WriteReq;
    w->conn = this;
    w->head = std::move(head);
    w->body = std::move(body);
    w->req.data = w;
    uv_buf_t bufs[2] = {uv_buf_init(w->head.data(), static_cast<unsigned>(w->head.size())),
                        uv_buf_init(w->body.data(), static_cast<unsigned>(w->body.size()))};
    unsigned nbufs = w->body.empty() ? 1 : 2;
    size_t n = w->head.size() + w->body.size();
    int rc = uv_write(&w->req, tcp_.stream(), bufs, nbufs, on_write);
    if (rc != 0) {
        delete w;
        close_now(uv_error(rc));
        return false;
    }
    pending_ += n;
    submitted_ += n;
    if ((state_ == State::Serving || graceful_) && srv_.limits.idle_timeout_s > 0 && timer_kind_ == Timer::None)
        arm(Timer::Stall, srv_.limits.idle_timeout_s);
    return true;
}

void HttpConnection::on_write(uv_write_t *req, int status)
{
    auto *w = static_cast<WriteReq *>(req->data);
    HttpConnection *c = w->conn;
    size_t n = w->head.size() + w->body.size();
    delete w;
    c->guard([&] { c->write_done(n, status); });
}

void HttpConnection::write_done(size_t n, int status)
{
    pending_ -= n;
    if (status == 0)
        srv_.stats.bytes_out += n;
    if (closed_)
        return; // cancelled by our own close
    if (status < 0) {
        srv_.log.debug("write to {} failed: {}", peer(), uv_error(status));
        close_now(uv_error(status));
        return;
    }
    if (!current_ && !graceful_ && state_ == State::Idle && !inbuf_.empty() && !write_blocked()) {
        process(); // pipelined requests held back by write_blocked()
        if (closed_)
            return;
    }
    if (pending_ > 0) {
        if (timer_kind_ == Timer::Stall || timer_kind_ == Timer::None)
            if ((state_ == State::Serving || graceful_) && srv_.limits.idle_timeout_s > 0)
                arm(Timer::Stall, srv_.limits.idle_timeout_s); // progress: restart the stall clock
        return;
    }
    if (timer_kind_ == Timer::Stall)
        disarm();
    else if (timer_kind_ == Timer::Idle)
        arm(Timer::Idle, srv_.limits.idle_timeout_s); // idle counts from the response's last byte
    if (graceful_) {
        if (peer_eof_)
            close_now("done");
        else if (!shutdown_sent_)
            start_shutdown();
        return;
    }
    fire_drain();
}

void HttpConnection::fire_drain()
{
    HttpResponse *r = current_;
    if (!r || !r->on_drain_)
        return;
    auto keep = r->weak_from_this().lock();
    auto cb = std::move(r->on_drain_);
    r->on_drain_ = nullptr;
    try {
        cb();
    } catch (const std::exception &e) {
        srv_.log.warn("on_drain callback failed: {}", e.what());
    } catch (...) {
        srv_.log.warn("on_drain callback failed");
    }
}

// ----------------------------------------------------------- closing, timers

void HttpConnection::close_gracefully()
{
    if (closed_ || graceful_)
        return;
    graceful_ = true;
    inbuf_.clear();
    disarm();
    if (pending_ == 0) {
        if (peer_eof_) {
            close_now("done");
            return;
        }
        start_shutdown();
    } else if (srv_.limits.idle_timeout_s > 0) {
        arm(Timer::Stall, srv_.limits.idle_timeout_s);
    }
    update_reading();
}

void HttpConnection::start_shutdown()
{
    shutdown_sent_ = true;
    auto *req = new uv_shutdown_t{};
    req->data = this;
    int rc = uv_shutdown(req, tcp_.stream(), [](uv_shutdown_t *r, int status) {
        auto *c = static_cast<HttpConnection *>(r->data);
        delete r;
        c->guard([&] { c->shutdown_done(status); });
    });
    if (rc != 0) {
        delete req;
        close_now(uv_error(rc));
        return;
    }
    double linger = kLingerSeconds;
    if (srv_.limits.idle_timeout_s > 0)
        linger = std::min(linger, srv_.limits.idle_timeout_s);
    arm(Timer::Linger, linger);
}

void HttpConnection::shutdown_done(int status)
{
    if (closed_)
        return;
    if (status < 0 || peer_eof_)
        close_now(status < 0 ? uv_error(status) : "done");
}

void HttpConnection::arm(Timer kind, double seconds)
{
    if (closed_ || !timer_)
        return;
    timer_kind_ = kind;
    progress_mark_ = written_to_kernel();
    // The loop's clock is cached per iteration; a slow handler earlier in
    // this iteration would otherwise eat into the timeout.
    uv_update_time(srv_.loop);
    uv_timer_start(timer_.get(), on_timer, timeout_ms(seconds), 0);
}

void HttpConnection::disarm()
{
    timer_kind_ = Timer::None;
    if (timer_)
        uv_timer_stop(timer_.get());
}

void HttpConnection::on_timer(uv_timer_t *t)
{
    auto *c = static_cast<HttpConnection *>(t->data);
    c->guard([&] { c->timer_fired(); });
}

void HttpConnection::timer_fired()
{
    Timer kind = timer_kind_;
    timer_kind_ = Timer::None;
    if ((kind == Timer::Idle || kind == Timer::Stall) && pending_ > 0 && written_to_kernel() > progress_mark_) {
        // A slow reader that keeps reading is not idle: one large response
        // may take longer than the timeout to go out.
        arm(kind, srv_.limits.idle_timeout_s);
        return;
    }
    switch (kind) {
    case Timer::None:
        break;
    case Timer::Idle:
        close_now("idle");
        break;
    case Timer::Head:
        srv_.log.debug("408 to {}: request head not complete after {} s", peer(), srv_.limits.header_timeout_s);
        send_error(408, fmt::format("request head not received within {} s", srv_.limits.header_timeout_s));
        break;
    case Timer::Body:
        srv_.log.debug("408 to {}: request body stalled", peer());
        send_error(408, "request body not received in time");
        break;
    case Timer::Stall:
        srv_.log.warn("client {} stopped reading ({} bytes queued); closing", peer(), pending_);
        close_now("write stalled");
        break;
    case Timer::Linger:
        close_now("linger timeout");
        break;
    }
}

} // namespace detail

// --------------------------------------------------------------- HttpResponse

HttpResponse::HttpResponse(detail::HttpConnection *conn, HttpRequest req) : conn_(conn), req_(std::move(req)) {}

HttpResponse::~HttpResponse()
{
    if (conn_) {
        try {
            conn_->response_destroyed(*this);
        } catch (...) {
            // destructor: nothing sensible left to do
        }
    }
}

void HttpResponse::detach(bool closed)
{
    conn_ = nullptr;
    auto drain = std::move(on_drain_);
    auto close_cb = std::move(on_close_);
    on_drain_ = nullptr;
    on_close_ = nullptr;
    if (closed) {
        closed_ = true;
        if (close_cb) {
            try {
                close_cb();
            } catch (...) {
                // never unwind into libuv
            }
        }
    }
    // drain and close_cb die here; they may hold the last reference to *this,
    // which is why nothing below touches a member.
}

void HttpResponse::send(int status, std::string_view content_type, std::string body, const HttpHeaders &extra)
{
    if (started_)
        return;
    started_ = finished_ = true;
    if (!conn_)
        return;
    auto self = weak_from_this().lock();
    conn_->respond(*this, status, content_type, std::move(body), extra);
}

void HttpResponse::begin_chunked(int status, std::string_view content_type, const HttpHeaders &extra)
{
    if (started_)
        return;
    started_ = true;
    if (!conn_)
        return;
    auto self = weak_from_this().lock();
    conn_->begin_stream(*this, status, content_type, extra, std::nullopt);
}

void HttpResponse::begin_sized(int status, std::string_view content_type, size_t length, const HttpHeaders &extra)
{
    if (started_)
        return;
    started_ = true;
    if (!conn_)
        return;
    auto self = weak_from_this().lock();
    conn_->begin_stream(*this, status, content_type, extra, length);
}

bool HttpResponse::write(std::string_view data)
{
    if (!started_ || finished_ || !conn_)
        return false;
    if (data.empty() || bodyless_)
        return true;
    auto self = weak_from_this().lock();
    return conn_->write_body(*this, data);
}

void HttpResponse::end()
{
    if (!started_ || finished_)
        return;
    finished_ = true;
    if (!conn_)
        return;
    auto self = weak_from_this().lock();
    conn_->end_stream(*this);
}

size_t HttpResponse::pending_bytes() const
{
    return conn_ ? conn_->pending() : 0;
}

void HttpResponse::on_drain(std::function<void()> cb)
{
    if (closed_ || !conn_)
        return;
    on_drain_ = std::move(cb);
}

void HttpResponse::on_close(std::function<void()> cb)
{
    if (closed_) {
        if (cb)
            cb();
        return;
    }
    if (!conn_)
        return; // detached after a keep-alive end: it will never close while attached
    on_close_ = std::move(cb);
}

// ----------------------------------------------------------------- HttpServer

namespace detail {

void HttpServerCore::listen(std::string_view host, uint16_t port)
{
    if (closing)
        throw_error(Errc::STATE, "http", "listen", "the server is closed");
    if (listener)
        throw_errorf(Errc::STATE, "http", "listen", "already listening on {}", format_endpoint(bound_ip, bound_port));
    std::string ip(host);
    if (ip == "localhost")
        ip = "127.0.0.1";
    if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']')
        ip = ip.substr(1, ip.size() - 2);
    sockaddr_storage ss{};
    if (uv_ip4_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in *>(&ss)) != 0 &&
        uv_ip6_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in6 *>(&ss)) != 0)
        throw_errorf(Errc::NET, "http", "listen", "cannot listen on '{}': not an IPv4 or IPv6 address", host);

    std::string where = format_endpoint(ip, port);
    int rc = listener.init(this, uv_tcp_init, loop);
    if (rc != 0)
        throw_errorf(Errc::NET, "http", "listen", "cannot listen on {}: {}", where, uv_error(rc));
    ++open_handles;
    rc = uv_tcp_bind(listener.get(), reinterpret_cast<const sockaddr *>(&ss), 0);
    if (rc == 0)
        rc = uv_listen(listener.stream(), kListenBacklog, [](uv_stream_t *s, int status) {
            auto *core = static_cast<HttpServerCore *>(s->data);
            try {
                core->accept(status);
            } catch (...) {
                // out of memory for one connection: drop it, keep listening
            }
        });
    sockaddr_storage bound{};
    int len = sizeof bound;
    if (rc == 0)
        rc = uv_tcp_getsockname(listener.get(), reinterpret_cast<sockaddr *>(&bound), &len);
    if (rc != 0) {
        listener.close([this] { release_handle(); });
        log.warn("cannot listen on {}: {}", where, uv_error(rc));
        throw_errorf(Errc::NET, "http", "listen", "cannot listen on {}: {}", where, uv_error(rc));
    }
    endpoint_of(bound, bound_ip, bound_port);
    log.info("listening on http://{}", format_endpoint(bound_ip, bound_port));
}

void HttpServerCore::accept(int status)
{
    if (status < 0) {
        log.warn("accept failed: {}", uv_error(status));
        return;
    }
    if (closing)
        return;
    conns.push_back(std::make_unique<HttpConnection>(*this));
    HttpConnection *c = conns.back().get();
    c->start(std::prev(conns.end()));
}

void HttpServerCore::close(std::function<void()> done)
{
    if (closed) {
        if (done)
            done();
        return;
    }
    if (done)
        done_callbacks.push_back(std::move(done));
    if (closing)
        return;
    closing = true;
    if (listener)
        listener.close([this] { release_handle(); });
    // close_now only unlinks from `conns` in a later close callback, so
    // walking the list here is safe even when user on_close code runs.
    for (auto &c : conns)
        c->close_now("server closing");
    ++open_handles; // hold: a synchronous release below must not finish twice
    release_handle();
}

void HttpServerCore::release_handle()
{
    --open_handles;
    if (!closing || closed || open_handles != 0)
        return;
    closed = true;
    auto callbacks = std::move(done_callbacks);
    done_callbacks.clear();
    if (orphaned) {
        delete this;
        return;
    }
    for (auto &cb : callbacks) {
        try {
            cb();
        } catch (const std::exception &e) {
            log.warn("close callback failed: {}", e.what());
        } catch (...) {
        }
    }
}

} // namespace detail

HttpServer::HttpServer(uv_loop_t *loop, core::Logger log, HttpLimits limits)
    : core_(std::make_unique<detail::HttpServerCore>(loop, std::move(log), limits))
{
}

HttpServer::~HttpServer()
{
    if (!core_ || core_->open_handles == 0)
        return;
    core_->log.error("HttpServer destroyed with {} libuv handles open; call close() and wait for done first",
                     core_->open_handles);
    core_->log = core::Logger{}; // the Log may die with our owner
    core_->orphaned = true;
    detail::HttpServerCore *core = core_.release();
    core->close({});
}

void HttpServer::route(std::string path, HttpHandler h, bool prefix)
{
    if (!prefix) {
        core_->exact_routes[std::move(path)] = std::move(h);
        return;
    }
    auto &routes = core_->prefix_routes;
    for (auto &r : routes)
        if (r.first == path) {
            r.second = std::move(h);
            return;
        }
    routes.emplace_back(std::move(path), std::move(h));
    std::stable_sort(routes.begin(), routes.end(),
                     [](const auto &a, const auto &b) { return a.first.size() > b.first.size(); });
}

void HttpServer::set_filter(std::function<bool(const HttpRequest &, HttpResponse &)> f)
{
    core_->filter = std::move(f);
}

void HttpServer::listen(std::string_view host, uint16_t port)
{
    core_->listen(host, port);
}

uint16_t HttpServer::port() const
{
    return core_->bound_port;
}

std::string HttpServer::address() const
{
    if (core_->bound_ip.empty())
        return {};
    return format_endpoint(core_->bound_ip, core_->bound_port);
}

void HttpServer::close(std::function<void()> done)
{
    core_->close(std::move(done));
}

HttpServer::Stats HttpServer::stats() const
{
    Stats s = core_->stats;
    s.connections_active = core_->served_live + core_->rejected_live;
    return s;
}

size_t HttpServer::memory_bytes() const
{
    size_t n = sizeof(detail::HttpServerCore) + kReadSlabBytes;
    for (const auto &c : core_->conns)
        n += c->memory_bytes();
    return n;
}

} // namespace openace::net
