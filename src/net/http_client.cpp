#include "net/http_client.hpp"

#include "core/error.hpp"

#include <http_parser.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace openace::net {

namespace {

constexpr int kMaxRedirects = 3;
constexpr std::size_t kReadBufferBytes = 64 * 1024;

std::string lower(std::string_view s)
{
    std::string out(s);
    for (char &c : out)
        if (c >= 'A' && c <= 'Z')
            c = char(c - 'A' + 'a');
    return out;
}

bool is_redirect(int status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

} // namespace

std::string HttpUrl::host_header() const
{
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return port == 80 ? h : h + ":" + std::to_string(port);
}

HttpUrl parse_http_url(std::string_view url)
{
    auto fail = [&](const std::string &why) {
        return Error(Errc::INVAL, "http", "url", "'" + std::string(url) + "': " + why);
    };
    auto sep = url.find("://");
    if (sep == std::string_view::npos)
        throw fail("expected http://host[:port]/path");
    std::string scheme = lower(url.substr(0, sep));
    if (scheme == "https")
        throw fail("https is not supported");
    if (scheme != "http")
        throw fail("unsupported scheme '" + scheme + "'");
    for (char c : url)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
            throw fail("spaces and control characters must be percent-encoded");
    std::string_view rest = url.substr(sep + 3);
    rest = rest.substr(0, rest.find('#'));
    auto auth_end = rest.find_first_of("/?");
    std::string_view authority = rest.substr(0, auth_end);
    HttpUrl out;
    out.target = auth_end == std::string_view::npos ? "/" : std::string(rest.substr(auth_end));
    if (out.target.front() == '?')
        out.target.insert(0, "/");
    if (authority.find('@') != std::string_view::npos)
        throw fail("user info is not supported");
    std::string_view port;
    if (!authority.empty() && authority.front() == '[') {
        auto close = authority.find(']');
        if (close == std::string_view::npos)
            throw fail("unterminated [IPv6] host");
        out.host = std::string(authority.substr(1, close - 1));
        std::string_view after = authority.substr(close + 1);
        if (!after.empty() && after.front() != ':')
            throw fail("junk after [IPv6] host");
        port = after.empty() ? after : after.substr(1);
    } else {
        auto colon = authority.rfind(':');
        out.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos)
            port = authority.substr(colon + 1);
    }
    if (out.host.empty())
        throw fail("missing host");
    if (!port.empty()) {
        unsigned value = 0;
        auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
        if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
            throw fail("port must be 1-65535");
        out.port = static_cast<std::uint16_t>(value);
    }
    return out;
}

// ---------------------------------------------------------------- Resolver

struct Resolver::Req {
    Resolver *owner;
    Fn fn;
    uv_getaddrinfo_t gai{};
};

int Resolver::start(uv_loop_t *loop, const std::string &host, std::uint16_t port, int socktype, Fn fn)
{
    cancel();
    auto *req = new Req{this, std::move(fn)};
    req->gai.data = req;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    int rc = uv_getaddrinfo(loop, &req->gai, [](uv_getaddrinfo_t *g, int status, addrinfo *res) {
        auto *r = static_cast<Req *>(g->data);
        if (r->owner) {
            r->owner->req_ = nullptr;
            r->fn(status, res); // may destroy the owner; r is not the owner's
        }
        uv_freeaddrinfo(res);
        delete r;
    }, host.c_str(), std::to_string(port).c_str(), &hints);
    if (rc != 0) {
        delete req;
        return rc;
    }
    req_ = req;
    return 0;
}

void Resolver::cancel()
{
    if (!req_)
        return;
    req_->owner = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t *>(&req_->gai)); // too late is fine: the callback frees it
    req_ = nullptr;
}

// ---------------------------------------------------------------- requests

// Connect and write requests are called back (with UV_ECANCELED) when the
// socket closes, possibly after the HttpGet is gone, so they hold a back
// pointer that the owner clears when it lets go.
struct HttpGet::Pending {
    explicit Pending(HttpGet *o) : owner(o) {}

    HttpGet *owner;
    uv_connect_t connect{};
    uv_write_t write{};
    std::string data; // the bytes a write sends

    // The owner still waiting for this request (nullptr once cancelled);
    // the request itself is freed.
    static HttpGet *release(Pending *p)
    {
        HttpGet *owner = p->owner;
        if (owner)
            std::erase(owner->pending_, p);
        delete p;
        return owner;
    }
};

// ---------------------------------------------------------------- parser

struct HttpGet::Parser {
    http_parser p{};
    HttpClientResponse resp;
    std::string field, value;
    bool in_value = false;
    bool complete = false;
    std::size_t header_bytes = 0;
    std::size_t max_header = 0, max_body = 0;
    std::string error; // a limit we enforced

    Parser(std::size_t mh, std::size_t mb) : max_header(mh), max_body(mb)
    {
        http_parser_init(&p, HTTP_RESPONSE);
        p.data = this;
    }

    void commit_header()
    {
        if (!field.empty())
            resp.headers[lower(field)] = value;
        field.clear();
        value.clear();
        in_value = false;
    }

    int count_head(std::size_t n)
    {
        header_bytes += n;
        if (header_bytes <= max_header)
            return 0;
        error = "response head larger than " + std::to_string(max_header) + " bytes";
        return 1;
    }

    static Parser *of(http_parser *p) { return static_cast<Parser *>(p->data); }

    static const http_parser_settings &settings()
    {
        static const http_parser_settings s = [] {
            http_parser_settings st;
            http_parser_settings_init(&st);
            st.on_status = [](http_parser *p, const char *, size_t n) { return of(p)->count_head(n); };
            st.on_header_field = [](http_parser *p, const char *at, size_t n) {
                Parser *me = of(p);
                if (me->in_value)
                    me->commit_header();
                me->field.append(at, n);
                return me->count_head(n);
            };
            st.on_header_value = [](http_parser *p, const char *at, size_t n) {
                Parser *me = of(p);
                me->in_value = true;
                me->value.append(at, n);
                return me->count_head(n);
            };
            st.on_headers_complete = [](http_parser *p) {
                Parser *me = of(p);
                me->commit_header();
                me->resp.status = static_cast<int>(p->status_code);
                return 0;
            };
            st.on_body = [](http_parser *p, const char *at, size_t n) {
                Parser *me = of(p);
                if (me->resp.body.size() + n > me->max_body) {
                    me->error = "body larger than " + std::to_string(me->max_body) + " bytes";
                    return 1;
                }
                me->resp.body.append(at, n);
                return 0;
            };
            st.on_message_complete = [](http_parser *p) {
                of(p)->complete = true;
                http_parser_pause(p, 1); // whatever follows is not ours
                return 0;
            };
            return st;
        }();
        return s;
    }

    // Feeds bytes (n == 0: end of input).  Returns an error text or "".
    std::string feed(const char *data, std::size_t n)
    {
        http_parser_execute(&p, &settings(), data, n);
        auto err = HTTP_PARSER_ERRNO(&p);
        if (err == HPE_OK || err == HPE_PAUSED)
            return {};
        if (!error.empty())
            return error;
        return std::string("malformed response: ") + http_errno_description(err);
    }
};

// ---------------------------------------------------------------- HttpGet

HttpGet::HttpGet(uv_loop_t *loop, std::string url, Callback cb, HttpClientOptions opt)
    : loop_(loop), url_(std::move(url)), cb_(std::move(cb)), opt_(std::move(opt))
{
    if (int rc = timer_.init(this, uv_timer_init, loop_)) {
        // Without a timer nothing can be reported asynchronously; this only
        // happens when the loop is unusable.
        throw Error(Errc::INTERNAL, "http", "get", url_ + ": cannot create a timer: " + uv_error(rc));
    }
    try {
        parts_ = parse_http_url(url_);
    } catch (const Error &e) {
        defer_error(e.detail());
        return;
    }
    arm_timer(static_cast<uint64_t>(std::max<std::chrono::milliseconds::rep>(opt_.timeout.count(), 0)));
    begin();
}

void HttpGet::arm_timer(uint64_t ms)
{
    uv_timer_start(timer_.get(), [](uv_timer_t *t) {
        auto *self = static_cast<HttpGet *>(t->data);
        if (!self->deferred_error_.empty())
            self->finish(nullptr, self->deferred_error_);
        else
            self->fail("timed out after " + std::to_string(self->opt_.timeout.count()) + " ms");
    }, ms, 0);
}

void HttpGet::defer_error(std::string error)
{
    deferred_error_ = std::move(error);
    arm_timer(0);
}

HttpGet::~HttpGet()
{
    cb_ = nullptr;
    reset_connection();
}

void HttpGet::begin()
{
    int rc = resolver_.start(loop_, parts_.host, parts_.port, SOCK_STREAM,
                             [this](int status, const addrinfo *res) { on_resolved(status, res); });
    if (rc != 0)
        defer_error(url_ + ": cannot resolve " + parts_.host + ": " + uv_error(rc));
}

void HttpGet::on_resolved(int status, const addrinfo *res)
{
    if (status < 0)
        return fail("cannot resolve " + parts_.host + ": " + uv_error(status));
    addrs_.clear();
    for (const addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        auto *bytes = reinterpret_cast<const char *>(ai->ai_addr);
        addrs_.emplace_back(bytes, bytes + ai->ai_addrlen);
    }
    next_addr_ = 0;
    last_connect_error_ = "no address for " + parts_.host;
    connect_next();
}

void HttpGet::connect_next()
{
    while (next_addr_ < addrs_.size()) {
        const auto &addr = addrs_[next_addr_++];
        if (int rc = tcp_.init(this, uv_tcp_init, loop_)) {
            last_connect_error_ = uv_error(rc);
            continue;
        }
        auto *p = new Pending(this);
        p->connect.data = p;
        int rc = uv_tcp_connect(&p->connect, tcp_.get(), reinterpret_cast<const sockaddr *>(addr.data()),
                                [](uv_connect_t *req, int status) {
                                    if (HttpGet *owner = Pending::release(static_cast<Pending *>(req->data)))
                                        owner->on_connected(status);
                                });
        if (rc == 0) {
            pending_.push_back(p);
            return;
        }
        delete p;
        last_connect_error_ = uv_error(rc);
        tcp_.close();
    }
    fail(last_connect_error_);
}

void HttpGet::on_connected(int status)
{
    if (status < 0) {
        last_connect_error_ = uv_error(status);
        tcp_.close();
        return connect_next();
    }
    parser_ = std::make_unique<Parser>(opt_.max_header, opt_.max_body);
    auto *p = new Pending(this);
    p->data = "GET " + parts_.target + " HTTP/1.1\r\nHost: " + parts_.host_header() +
              "\r\nUser-Agent: " + opt_.user_agent +
              "\r\nAccept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n";
    p->write.data = p;
    uv_buf_t buf = uv_buf_init(p->data.data(), static_cast<unsigned>(p->data.size()));
    int rc = uv_write(&p->write, tcp_.stream(), &buf, 1, [](uv_write_t *req, int status) {
        HttpGet *owner = Pending::release(static_cast<Pending *>(req->data));
        if (owner && status < 0)
            owner->fail("cannot send the request: " + uv_error(status));
    });
    if (rc != 0) {
        delete p;
        return fail("cannot send the request: " + uv_error(rc));
    }
    pending_.push_back(p);
    readbuf_.resize(kReadBufferBytes);
    rc = uv_read_start(
        tcp_.stream(),
        [](uv_handle_t *h, size_t, uv_buf_t *buf) {
            auto *self = static_cast<HttpGet *>(h->data);
            *buf = uv_buf_init(self->readbuf_.data(), static_cast<unsigned>(self->readbuf_.size()));
        },
        [](uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) { static_cast<HttpGet *>(s->data)->on_read(nread, buf); });
    if (rc != 0)
        fail("cannot read: " + uv_error(rc));
}

void HttpGet::on_read(ssize_t nread, const uv_buf_t *buf)
{
    if (nread == 0)
        return;
    if (nread < 0 && nread != UV_EOF)
        return fail("receive failed: " + uv_error(static_cast<int>(nread)));
    bool eof = nread == UV_EOF;
    std::string err = parser_->feed(eof ? nullptr : buf->base, eof ? 0 : static_cast<std::size_t>(nread));
    if (parser_->complete)
        return on_message_complete();
    if (eof)
        return fail("connection closed before the response was complete");
    if (!err.empty())
        fail(err);
}

void HttpGet::on_message_complete()
{
    HttpClientResponse &resp = parser_->resp;
    auto loc = resp.headers.find("location");
    if (!is_redirect(resp.status) || loc == resp.headers.end() || loc->second.empty()) {
        HttpClientResponse out = std::move(resp);
        return finish(&out, {});
    }
    if (redirects_ >= kMaxRedirects)
        return fail("too many redirects (more than " + std::to_string(kMaxRedirects) + ")");
    std::string next = loc->second;
    if (next.rfind("//", 0) == 0)
        next = "http:" + next;
    else if (next.front() == '/')
        next = "http://" + parts_.host_header() + next;
    else if (next.find("://") == std::string::npos) {
        std::string path = parts_.target.substr(0, parts_.target.find('?'));
        next = "http://" + parts_.host_header() + path.substr(0, path.rfind('/') + 1) + next;
    }
    try {
        parts_ = parse_http_url(next);
    } catch (const Error &e) {
        return fail("bad redirect: " + e.detail());
    }
    ++redirects_;
    reset_connection();
    url_ = std::move(next);
    begin();
}

void HttpGet::reset_connection()
{
    resolver_.cancel();
    for (Pending *p : pending_)
        p->owner = nullptr; // the socket's close calls it back with UV_ECANCELED
    pending_.clear();
    tcp_.close();
}

void HttpGet::fail(const std::string &cause)
{
    finish(nullptr, url_ + ": " + cause);
}

void HttpGet::finish(const HttpClientResponse *resp, const std::string &error)
{
    Callback cb = std::move(cb_);
    cb_ = nullptr;
    reset_connection();
    timer_.close();
    if (!cb)
        return;
    // The callback may destroy us: nothing touches a member after it.
    std::string err = error;
    cb(resp, err);
}

} // namespace openace::net
