#include "transport/tracker.hpp"

#include "core/error.hpp"
#include "net/http_client.hpp"
#include "net/url.hpp"
#include "transport/bencode.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>

namespace openace::transport {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kMaxResponseBytes = 4u << 20;
constexpr std::size_t kMaxReasonChars = 512;
constexpr std::uint64_t kUdpProtocolId = 0x41727101980ULL;
constexpr auto kConnectionIdLifetime = std::chrono::seconds(60);
constexpr auto kBepRetry = milliseconds(15000);
constexpr int kMaxRetryExponent = 8;
constexpr std::size_t kUdpBufferBytes = 64 * 1024;
constexpr auto kStopBudget = milliseconds(2000);

enum UdpAction : std::uint32_t { kConnect = 0, kAnnounce = 1, kError = 3 };

// Tracker texts are shown to users and logged: printable and bounded.
std::string printable(std::string_view s)
{
    std::string out;
    for (char c : s.substr(0, kMaxReasonChars))
        out.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c);
    return out;
}

[[noreturn]] void parse_fail(const std::string &detail)
{
    throw Error(Errc::PROTO, "tracker", "parse", detail);
}

// An optional integer key; throws when present with another type or
// negative (when that is not allowed).  Clamped to int.
std::optional<int> int_key(const bencode::Value &dict, std::string_view key, bool allow_negative)
{
    const bencode::Value *v = dict.find(key);
    if (!v)
        return std::nullopt;
    if (!v->is_int())
        parse_fail("'" + std::string(key) + "' must be an integer");
    std::int64_t i = v->as_int();
    if (i < 0 && !allow_negative)
        parse_fail("'" + std::string(key) + "' must not be negative (" + std::to_string(i) + ")");
    return static_cast<int>(std::clamp<std::int64_t>(i, INT_MIN, INT_MAX));
}

std::vector<PeerAddress> compact_peers(const bencode::Value &v, std::string_view key, bool ipv6)
{
    const std::size_t step = ipv6 ? 18 : 6;
    const std::string &s = v.as_string();
    if (s.size() % step != 0)
        parse_fail("'" + std::string(key) + "' length " + std::to_string(s.size()) + " is not a multiple of " +
                   std::to_string(step));
    return parse_compact_peers(s, ipv6);
}

// BEP 3 dictionary model: [{ "ip": "1.2.3.4", "port": 6881, "peer id": … }].
std::vector<PeerAddress> dict_peers(const bencode::List &list)
{
    std::vector<PeerAddress> out;
    for (std::size_t i = 0; i < list.size(); ++i) {
        const std::string where = "'peers'[" + std::to_string(i) + "]";
        if (!list[i].is_dict())
            parse_fail(where + " is not a dictionary");
        const bencode::Value *ip = list[i].find("ip"), *port = list[i].find("port");
        if (!ip || !ip->is_string() || !port || !port->is_int())
            parse_fail(where + " needs a string 'ip' and an integer 'port'");
        if (port->as_int() < 1 || port->as_int() > 65535)
            parse_fail(where + ": port " + std::to_string(port->as_int()) + " outside 1-65535");
        unsigned char buf[16];
        const std::string &text = ip->as_string();
        if (inet_pton(AF_INET, text.c_str(), buf) != 1 && inet_pton(AF_INET6, text.c_str(), buf) != 1)
            continue; // a host name: resolving it is not worth a peer
        out.push_back({text, static_cast<std::uint16_t>(port->as_int())});
    }
    return out;
}

void put_be(std::string &out, std::uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; --i)
        out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint64_t get_be(const char *p, int bytes)
{
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i)
        v = v << 8 | static_cast<unsigned char>(p[i]);
    return v;
}

std::uint32_t random_u32()
{
    thread_local std::mt19937 rng{std::random_device{}()};
    return static_cast<std::uint32_t>(rng());
}

// ------------------------------------------------------------ UDP id cache

// BEP 15: a connection id may be used for one minute.  Shared by every
// loop of the process, hence the lock; bounded by pruning on insert.
class ConnectionIdCache {
public:
    static ConnectionIdCache &instance()
    {
        static ConnectionIdCache cache;
        return cache;
    }
    std::optional<std::uint64_t> get(const std::string &key, Clock::time_point now)
    {
        std::lock_guard lock(mu_);
        auto it = ids_.find(key);
        if (it == ids_.end() || now - it->second.second >= kConnectionIdLifetime)
            return std::nullopt;
        return it->second.first;
    }
    void put(const std::string &key, std::uint64_t id, Clock::time_point now)
    {
        std::lock_guard lock(mu_);
        std::erase_if(ids_, [&](const auto &kv) { return now - kv.second.second >= kConnectionIdLifetime; });
        ids_[key] = {id, now};
    }
    void drop(const std::string &key)
    {
        std::lock_guard lock(mu_);
        ids_.erase(key);
    }
    void clear()
    {
        std::lock_guard lock(mu_);
        ids_.clear();
    }

private:
    std::mutex mu_;
    std::map<std::string, std::pair<std::uint64_t, Clock::time_point>> ids_;
};

} // namespace

const char *to_string(TrackerEvent e) noexcept
{
    switch (e) {
    case TrackerEvent::Started: return "started";
    case TrackerEvent::Completed: return "completed";
    case TrackerEvent::Stopped: return "stopped";
    case TrackerEvent::None: break;
    }
    return "";
}

void clear_udp_connection_cache()
{
    ConnectionIdCache::instance().clear();
}

// ------------------------------------------------------------ HTTP helpers

std::string build_http_announce_url(const std::string &announce_url, const AnnounceRequest &req)
{
    std::string url = announce_url.substr(0, announce_url.find('#'));
    auto bytes = [](const auto &arr) {
        return net::percent_encode(std::string_view(reinterpret_cast<const char *>(arr.data()), arr.size()));
    };
    auto count = [](std::int64_t v) { return std::to_string(std::max<std::int64_t>(v, 0)); };
    char key[9];
    std::snprintf(key, sizeof key, "%08x", static_cast<unsigned>(req.key));
    url += url.find('?') == std::string::npos ? '?' : '&';
    url += "info_hash=" + bytes(req.info_hash) + "&peer_id=" + bytes(req.peer_id) +
           "&port=" + std::to_string(req.port) + "&uploaded=" + count(req.uploaded) +
           "&downloaded=" + count(req.downloaded) + "&left=" + count(req.left) +
           "&compact=1&numwant=" + std::to_string(std::max(req.numwant, 0)) + "&key=" + key;
    if (req.event != TrackerEvent::None)
        url += std::string("&event=") + to_string(req.event);
    return url;
}

AnnounceResult parse_http_announce_response(std::string_view body)
{
    if (body.size() > kMaxResponseBytes)
        parse_fail("response of " + std::to_string(body.size()) + " bytes is over the 4 MiB limit");
    bencode::Limits limits;
    limits.max_depth = 8;
    limits.max_size = kMaxResponseBytes;
    limits.max_items = 200000;
    limits.require_sorted_keys = false; // trackers in the wild do not all sort their keys
    bencode::Value root;
    try {
        root = bencode::decode(body, limits);
    } catch (const Error &e) {
        parse_fail("response is not bencode: " + e.detail());
    }
    if (!root.is_dict())
        parse_fail("response is not a dictionary");
    if (const bencode::Value *f = root.find("failure reason"))
        throw Error(Errc::PROTO, "tracker", "announce",
                    "failure reason: " + (f->is_string() ? printable(f->as_string()) : std::string("(not a string)")));
    AnnounceResult r;
    if (const bencode::Value *w = root.find("warning message"); w && w->is_string())
        r.warning = printable(w->as_string());
    r.interval = int_key(root, "interval", false).value_or(r.interval);
    r.min_interval = int_key(root, "min interval", false).value_or(0);
    r.complete = std::max(int_key(root, "complete", true).value_or(-1), -1);
    r.incomplete = std::max(int_key(root, "incomplete", true).value_or(-1), -1);

    std::vector<PeerAddress> all;
    if (const bencode::Value *p = root.find("peers")) {
        if (p->is_string())
            all = compact_peers(*p, "peers", false);
        else if (p->is_list())
            all = dict_peers(p->as_list());
        else
            parse_fail("'peers' must be a string or a list");
    }
    if (const bencode::Value *p6 = root.find("peers6")) {
        if (!p6->is_string())
            parse_fail("'peers6' must be a string");
        auto v6 = compact_peers(*p6, "peers6", true);
        all.insert(all.end(), v6.begin(), v6.end());
    }
    std::set<PeerAddress> seen;
    for (auto &peer : all)
        if (seen.insert(peer).second)
            r.peers.push_back(std::move(peer));
    return r;
}

// ------------------------------------------------------------ announces

struct TrackerAnnounce::Impl {
    virtual ~Impl() = default;
};

namespace {

// Hands the callback its one answer; nothing may touch the announce after.
void deliver(TrackerAnnounce::Callback &cb, const AnnounceResult *result, const std::string &error)
{
    TrackerAnnounce::Callback fn = std::move(cb);
    cb = nullptr;
    if (!fn)
        return;
    std::string err = error;
    std::optional<AnnounceResult> copy;
    if (result)
        copy = *result;
    fn(copy ? &*copy : nullptr, err);
}

class HttpAnnounce : public TrackerAnnounce::Impl {
public:
    HttpAnnounce(uv_loop_t *loop, const std::string &url, const AnnounceRequest &req, TrackerAnnounce::Callback cb,
                 milliseconds timeout)
        : url_(url), cb_(std::move(cb))
    {
        net::HttpClientOptions opt;
        opt.timeout = timeout;
        opt.max_body = kMaxResponseBytes;
        get_ = std::make_unique<net::HttpGet>(
            loop, build_http_announce_url(url, req),
            [this](const net::HttpClientResponse *resp, const std::string &error) { on_done(resp, error); }, opt);
    }

private:
    void on_done(const net::HttpClientResponse *resp, const std::string &error)
    {
        if (!resp) {
            // The client names the URL it fetched, query and all; ours is shorter.
            std::string prefix = get_->url() + ": ";
            std::string cause = error.rfind(prefix, 0) == 0 ? error.substr(prefix.size()) : error;
            return deliver(cb_, nullptr, url_ + ": " + cause);
        }
        try {
            AnnounceResult r = parse_http_announce_response(resp->body);
            if (resp->status != 200)
                return deliver(cb_, nullptr, url_ + ": HTTP " + std::to_string(resp->status));
            deliver(cb_, &r, {});
        } catch (const Error &e) {
            bool reason = e.operation() == "announce"; // a tracker's own words beat the status code
            std::string cause = resp->status == 200 || reason ? e.detail() : "HTTP " + std::to_string(resp->status);
            deliver(cb_, nullptr, url_ + ": " + cause);
        } catch (const std::exception &e) {
            deliver(cb_, nullptr, url_ + ": " + e.what());
        }
    }

    std::string url_;
    TrackerAnnounce::Callback cb_;
    std::unique_ptr<net::HttpGet> get_;
};

// BEP 15 over one connected UDP socket: resolve, connect, announce.
class UdpAnnounce : public TrackerAnnounce::Impl {
public:
    UdpAnnounce(uv_loop_t *loop, const std::string &url, const AnnounceRequest &req, TrackerAnnounce::Callback cb,
                milliseconds timeout)
        : loop_(loop), url_(url), req_(req), cb_(std::move(cb)), timeout_(std::max(timeout, milliseconds(1)))
    {
        retry_base_ = std::min(kBepRetry, std::max(timeout_ / 4, milliseconds(1)));
        int rc = deadline_.init(this, uv_timer_init, loop_);
        if (rc == 0)
            rc = resend_.init(this, uv_timer_init, loop_);
        if (rc != 0)
            throw Error(Errc::INTERNAL, "tracker", "announce", url_ + ": cannot create a timer: " + net::uv_error(rc));
        if (std::string why = parse_url(); !why.empty()) {
            defer(why);
            return;
        }
        arm(deadline_, timeout_, [](uv_timer_t *t) {
            auto *self = static_cast<UdpAnnounce *>(t->data);
            self->fail("timed out after " + std::to_string(self->timeout_.count()) + " ms waiting for the " +
                       (self->step_ == Step::Announce ? "announce" : self->step_ == Step::Connect ? "connect" : "name") +
                       " answer");
        });
        rc = resolver_.start(loop_, host_, port_, SOCK_DGRAM, [this](int status, const addrinfo *res) {
            on_resolved(status, res);
        });
        if (rc != 0)
            defer("cannot resolve " + host_ + ": " + net::uv_error(rc));
    }

private:
    enum class Step { Resolve, Connect, Announce };

    static void arm(net::UvHandle<uv_timer_t> &t, milliseconds ms, uv_timer_cb cb)
    {
        uv_timer_start(t.get(), cb, static_cast<std::uint64_t>(ms.count()), 0);
    }

    // "udp://host:port[/anything]"; returns why not, or "".
    std::string parse_url()
    {
        std::string_view rest = std::string_view(url_).substr(6);
        rest = rest.substr(0, rest.find_first_of("/?#"));
        std::string_view port;
        if (!rest.empty() && rest.front() == '[') {
            auto close = rest.find(']');
            if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':')
                return "expected udp://[v6]:port";
            host_ = std::string(rest.substr(1, close - 1));
            port = rest.substr(close + 2);
        } else {
            auto colon = rest.rfind(':');
            if (colon == std::string_view::npos)
                return "a UDP tracker URL needs a port (udp://host:port)";
            host_ = std::string(rest.substr(0, colon));
            port = rest.substr(colon + 1);
        }
        unsigned value = 0;
        auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
        if (host_.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
            return "expected udp://host:port with a port in 1-65535";
        port_ = static_cast<std::uint16_t>(value);
        cache_key_ = host_ + ":" + std::to_string(port_);
        return {};
    }

    void defer(std::string error)
    {
        deferred_ = std::move(error);
        arm(deadline_, milliseconds(0), [](uv_timer_t *t) {
            auto *self = static_cast<UdpAnnounce *>(t->data);
            self->fail(self->deferred_);
        });
    }

    void on_resolved(int status, const addrinfo *res)
    {
        if (status < 0)
            return fail("cannot resolve " + host_ + ": " + net::uv_error(status));
        while (res && res->ai_family != AF_INET && res->ai_family != AF_INET6)
            res = res->ai_next;
        if (!res)
            return fail("no address for " + host_);
        ipv6_ = res->ai_family == AF_INET6;
        if (int rc = udp_.init(this, uv_udp_init, loop_))
            return fail("cannot open a UDP socket: " + net::uv_error(rc));
        if (int rc = uv_udp_connect(udp_.get(), res->ai_addr))
            return fail("cannot connect the UDP socket: " + net::uv_error(rc));
        buf_.resize(kUdpBufferBytes);
        int rc = uv_udp_recv_start(
            udp_.get(),
            [](uv_handle_t *h, size_t, uv_buf_t *b) {
                auto *self = static_cast<UdpAnnounce *>(h->data);
                *b = uv_buf_init(self->buf_.data(), static_cast<unsigned>(self->buf_.size()));
            },
            [](uv_udp_t *h, ssize_t n, const uv_buf_t *b, const sockaddr *, unsigned) {
                static_cast<UdpAnnounce *>(h->data)->on_datagram(n, b);
            });
        if (rc != 0)
            return fail("cannot receive: " + net::uv_error(rc));
        if (auto id = ConnectionIdCache::instance().get(cache_key_, Clock::now())) {
            connection_id_ = *id;
            cached_id_ = true;
            return send_announce();
        }
        send_connect();
    }

    void send_connect()
    {
        step_ = Step::Connect;
        tid_ = random_u32();
        packet_.clear();
        put_be(packet_, kUdpProtocolId, 8);
        put_be(packet_, kConnect, 4);
        put_be(packet_, tid_, 4);
        send_packet();
    }

    void send_announce()
    {
        static constexpr std::uint32_t kEventCode[] = {0, 2, 1, 3}; // None, Started, Completed, Stopped
        step_ = Step::Announce;
        tid_ = random_u32();
        packet_.clear();
        put_be(packet_, connection_id_, 8);
        put_be(packet_, kAnnounce, 4);
        put_be(packet_, tid_, 4);
        packet_.append(reinterpret_cast<const char *>(req_.info_hash.data()), req_.info_hash.size());
        packet_.append(reinterpret_cast<const char *>(req_.peer_id.data()), req_.peer_id.size());
        put_be(packet_, static_cast<std::uint64_t>(std::max<std::int64_t>(req_.downloaded, 0)), 8);
        put_be(packet_, static_cast<std::uint64_t>(std::max<std::int64_t>(req_.left, 0)), 8);
        put_be(packet_, static_cast<std::uint64_t>(std::max<std::int64_t>(req_.uploaded, 0)), 8);
        put_be(packet_, kEventCode[static_cast<int>(req_.event)], 4);
        put_be(packet_, 0, 4); // ip: the sender's
        put_be(packet_, req_.key, 4);
        put_be(packet_, static_cast<std::uint32_t>(std::max(req_.numwant, 0)), 4);
        put_be(packet_, req_.port, 2);
        send_packet();
    }

    // Sends packet_ (again) and arms the retransmission: 15·2^n s, scaled.
    void send_packet()
    {
        uv_buf_t b = uv_buf_init(packet_.data(), static_cast<unsigned>(packet_.size()));
        uv_udp_try_send(udp_.get(), &b, 1, nullptr); // a lost send is a lost packet: the retry covers both
        milliseconds delay = retry_base_ * (1 << std::min(tries_, kMaxRetryExponent));
        ++tries_;
        arm(resend_, delay, [](uv_timer_t *t) { static_cast<UdpAnnounce *>(t->data)->on_resend(); });
    }

    void on_resend()
    {
        if (step_ == Step::Announce && drop_cached_id())
            return send_connect();
        send_packet();
    }

    // A cached id that fails may simply have expired on the tracker's side.
    bool drop_cached_id()
    {
        if (!cached_id_)
            return false;
        cached_id_ = false;
        ConnectionIdCache::instance().drop(cache_key_);
        return true;
    }

    void on_datagram(ssize_t n, const uv_buf_t *b)
    {
        if (n < 0)
            return fail("receive failed: " + net::uv_error(static_cast<int>(n)));
        if (n < 8)
            return; // also the empty reads libuv reports
        const char *p = b->base;
        auto size = static_cast<std::size_t>(n);
        auto action = static_cast<std::uint32_t>(get_be(p, 4));
        if (get_be(p + 4, 4) != tid_)
            return; // a late answer to an earlier try
        if (action == kError) {
            if (step_ == Step::Announce && drop_cached_id())
                return send_connect();
            ConnectionIdCache::instance().drop(cache_key_);
            return fail("tracker error: " + printable(std::string_view(p + 8, size - 8)));
        }
        if (step_ == Step::Connect && action == kConnect && size >= 16) {
            connection_id_ = get_be(p + 8, 8);
            ConnectionIdCache::instance().put(cache_key_, connection_id_, Clock::now());
            tries_ = 0;
            return send_announce();
        }
        if (step_ == Step::Announce && action == kAnnounce) {
            if (size >= 20)
                return on_announce_answer(p, size);
            // opentracker's way of refusing a torrent it does not serve
            return fail("announce answer too short (" + std::to_string(size) + " bytes): the tracker refused it");
        }
        fail("malformed answer (" + std::to_string(size) + " bytes, action " + std::to_string(action) + ")");
    }

    void on_announce_answer(const char *p, std::size_t size)
    {
        AnnounceResult r;
        auto field = [&](std::size_t at) {
            return static_cast<int>(std::min<std::uint64_t>(get_be(p + at, 4), INT_MAX));
        };
        r.interval = field(8);
        r.incomplete = field(12);
        r.complete = field(16);
        std::set<PeerAddress> seen;
        for (auto &peer : parse_compact_peers(std::string_view(p + 20, size - 20), ipv6_))
            if (seen.insert(peer).second)
                r.peers.push_back(std::move(peer));
        finish(&r, {});
    }

    void fail(const std::string &cause) { finish(nullptr, url_ + ": " + cause); }

    void finish(const AnnounceResult *r, const std::string &error)
    {
        resolver_.cancel();
        udp_.close();
        resend_.close();
        deadline_.close();
        deliver(cb_, r, error);
    }

    uv_loop_t *loop_;
    std::string url_;
    AnnounceRequest req_;
    TrackerAnnounce::Callback cb_;
    milliseconds timeout_, retry_base_{};
    std::string host_, cache_key_, deferred_;
    std::uint16_t port_ = 0;
    net::Resolver resolver_;
    net::UvHandle<uv_udp_t> udp_;
    net::UvHandle<uv_timer_t> deadline_, resend_;
    Step step_ = Step::Resolve;
    bool ipv6_ = false, cached_id_ = false;
    int tries_ = 0;
    std::uint32_t tid_ = 0;
    std::uint64_t connection_id_ = 0;
    std::string packet_;
    std::vector<char> buf_;
};

} // namespace

TrackerAnnounce::TrackerAnnounce(uv_loop_t *loop, const std::string &url, const AnnounceRequest &req, Callback cb,
                                 std::chrono::milliseconds timeout)
{
    if (url.size() >= 6 && std::equal(url.begin(), url.begin() + 6, "udp://", [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) == b;
        }))
        impl_ = std::make_unique<UdpAnnounce>(loop, url, req, std::move(cb), timeout);
    else // http://, and anything else gets the HTTP client's "unsupported scheme"
        impl_ = std::make_unique<HttpAnnounce>(loop, url, req, std::move(cb), timeout);
}

TrackerAnnounce::~TrackerAnnounce() = default;

// ------------------------------------------------------------ Announcer

struct Announcer::Tracker {
    enum class State { Idle, Announcing, Ok, Error };

    Tracker(Announcer *a, std::string u, const Options &opt)
        : owner(a), url(std::move(u)), backoff(opt.backoff), breaker(opt.breaker) {}

    // "started" until a tracker took it, then "completed" once it is due.
    TrackerEvent next_event() const
    {
        return !started_ok ? TrackerEvent::Started : completed_due ? TrackerEvent::Completed : TrackerEvent::None;
    }

    Announcer *owner;
    std::string url;
    core::Backoff backoff;
    core::CircuitBreaker breaker;
    std::unique_ptr<TrackerAnnounce> inflight;
    net::UvHandle<uv_timer_t> timer;
    TrackerEvent sent = TrackerEvent::None; // by the announce in flight
    State state = State::Idle;
    std::string last_error;
    std::size_t peers = 0;
    int failures = 0;
    std::uint64_t announces = 0;
    bool started_ok = false;    // "started" was accepted: "stopped" means something
    bool completed_due = false; // "completed" still to be accepted
    std::optional<Clock::time_point> last_attempt, next_at;
};

Announcer::Announcer(uv_loop_t *loop, core::Logger log, std::vector<std::string> urls, Options opt)
    : loop_(loop), log_(std::move(log)), opt_(std::move(opt))
{
    for (auto &url : urls) {
        auto t = std::make_unique<Tracker>(this, std::move(url), opt_);
        if (int rc = t->timer.init(t.get(), uv_timer_init, loop_))
            throw Error(Errc::INTERNAL, "tracker", "announcer", "cannot create a timer: " + net::uv_error(rc));
        trackers_.push_back(std::move(t));
    }
    if (int rc = stop_timer_.init(this, uv_timer_init, loop_))
        throw Error(Errc::INTERNAL, "tracker", "announcer", "cannot create a timer: " + net::uv_error(rc));
}

Announcer::~Announcer() = default; // trackers cancel their announces and close their timers

void Announcer::start()
{
    if (started_ || stopping_)
        return;
    started_ = true;
    for (auto &t : trackers_)
        announce(*t);
}

void Announcer::announce_now()
{
    if (!started_ || stopping_)
        return;
    auto now = Clock::now();
    for (auto &t : trackers_)
        if (!t->inflight && (!t->last_attempt || now - *t->last_attempt >= std::chrono::seconds(opt_.min_interval_s)))
            announce(*t);
}

void Announcer::completed()
{
    if (completed_ || stopping_)
        return;
    completed_ = true;
    for (auto &t : trackers_) {
        t->completed_due = true; // one in flight: sent after its answer
        if (started_)
            announce(*t);
    }
}

void Announcer::announce(Tracker &t)
{
    auto now = Clock::now();
    if (t.inflight || stopping_)
        return;
    if (!t.breaker.allow(now)) {
        if (!t.next_at)
            schedule(t, opt_.breaker.open_duration);
        return;
    }
    AnnounceRequest req;
    try {
        req = make_request();
    } catch (const std::exception &e) {
        log_.error("cannot build an announce for {}: {}", t.url, e.what());
        schedule(t, std::chrono::seconds(std::max(opt_.min_interval_s, 1)));
        return;
    }
    req.event = t.sent = t.next_event();
    uv_timer_stop(t.timer.get());
    t.next_at.reset();
    t.state = Tracker::State::Announcing;
    t.last_attempt = now;
    ++t.announces;
    try {
        t.inflight = std::make_unique<TrackerAnnounce>(
            loop_, t.url, req, [this, &t](const AnnounceResult *r, const std::string &e) { on_answer(t, r, e); },
            opt_.timeout);
    } catch (const std::exception &e) { // no timer or socket left on this loop: a failure like any other
        on_answer(t, nullptr, t.url + ": " + e.what());
    }
}

void Announcer::on_answer(Tracker &t, const AnnounceResult *result, const std::string &error)
{
    auto done = std::move(t.inflight); // freed when we return, as TrackerAnnounce allows
    auto now = Clock::now();
    if (!result) {
        t.breaker.record_failure(now);
        ++t.failures;
        t.state = Tracker::State::Error;
        t.last_error = error;
        auto delay = t.backoff.next_delay();
        if (!delay) { // max_attempts spent: back to the regular pace
            t.backoff.reset();
            delay = std::chrono::seconds(std::max(opt_.min_interval_s, 1));
        }
        bool open = t.breaker.state(now) == core::CircuitBreaker::State::Open;
        if (open)
            delay = std::max(*delay, opt_.breaker.open_duration);
        if (t.failures == 1 || open)
            log_.warn("announce failed: {} (retry in {} ms, breaker {})", error, delay->count(),
                      t.breaker.state_name(now));
        else
            log_.debug("announce failed again: {} (retry in {} ms)", error, delay->count());
        schedule(t, *delay);
        return;
    }
    t.breaker.record_success(now);
    t.backoff.reset();
    t.failures = 0;
    t.state = Tracker::State::Ok;
    t.last_error.clear();
    t.peers = result->peers.size();
    if (t.sent == TrackerEvent::Started)
        t.started_ok = true;
    if (t.sent == TrackerEvent::Completed)
        t.completed_due = false;
    if (!result->warning.empty())
        log_.warn("tracker {} warns: {}", t.url, result->warning);
    int interval = std::max({result->interval, result->min_interval, opt_.min_interval_s});
    log_.debug("announce to {}: {} peers, next in {} s", t.url, t.peers, interval);
    schedule(t, t.completed_due ? milliseconds(0) : milliseconds(std::chrono::seconds(interval)));
    if (on_peers && !result->peers.empty())
        on_peers(result->peers);
}

void Announcer::schedule(Tracker &t, milliseconds delay)
{
    delay = std::max(delay, milliseconds(0));
    t.next_at = Clock::now() + delay;
    uv_timer_start(t.timer.get(), [](uv_timer_t *h) {
        auto *tr = static_cast<Tracker *>(h->data);
        tr->next_at.reset();
        tr->owner->announce(*tr);
    }, static_cast<std::uint64_t>(delay.count()), 0);
}

void Announcer::stop(std::function<void()> done)
{
    if (stopping_) { // already stopping: this done runs when that stop ends
        auto first = std::move(stop_done_);
        stop_done_ = [first = std::move(first), done = std::move(done)] {
            if (first)
                first();
            if (done)
                done();
        };
        if (!uv_is_active(stop_timer_.handle())) // that stop already ended: run it soon
            uv_timer_start(stop_timer_.get(), [](uv_timer_t *h) { static_cast<Announcer *>(h->data)->finish_stop(); },
                           0, 0);
        return;
    }
    stopping_ = true;
    stop_done_ = std::move(done);
    auto now = Clock::now();
    for (auto &tp : trackers_) {
        Tracker &t = *tp;
        uv_timer_stop(t.timer.get());
        t.next_at.reset();
        t.inflight.reset();
        t.state = Tracker::State::Idle;
        if (!t.started_ok || !make_request || !t.breaker.allow(now))
            continue;
        AnnounceRequest req;
        try {
            req = make_request();
        } catch (const std::exception &) {
            continue; // best effort
        }
        req.event = TrackerEvent::Stopped;
        ++stops_pending_;
        t.inflight = std::make_unique<TrackerAnnounce>(
            loop_, t.url, req,
            [this, &t](const AnnounceResult *, const std::string &error) {
                auto done_announce = std::move(t.inflight);
                if (!error.empty())
                    log_.debug("stopped announce failed: {}", error);
                if (--stops_pending_ == 0)
                    finish_stop();
            },
            std::min(opt_.timeout, kStopBudget));
    }
    // Never from inside stop(): a zero timer when nothing is in flight.
    uv_timer_start(stop_timer_.get(), [](uv_timer_t *h) { static_cast<Announcer *>(h->data)->finish_stop(); },
                   stops_pending_ == 0 ? 0 : static_cast<std::uint64_t>(kStopBudget.count()), 0);
}

void Announcer::finish_stop()
{
    uv_timer_stop(stop_timer_.get());
    for (auto &t : trackers_)
        t->inflight.reset(); // the stops that did not make it in time
    stops_pending_ = 0;
    auto done = std::move(stop_done_);
    stop_done_ = nullptr;
    if (done)
        done();
}

nlohmann::json Announcer::status() const
{
    static constexpr const char *kState[] = {"idle", "announcing", "ok", "error"};
    auto now = Clock::now();
    nlohmann::json out = nlohmann::json::array();
    for (const auto &t : trackers_) {
        nlohmann::json next = nullptr;
        if (t->next_at)
            next = std::max(0.0, std::chrono::duration<double>(*t->next_at - now).count());
        out.push_back({{"url", t->url},
                       {"state", kState[static_cast<int>(t->state)]},
                       {"last_error", t->last_error},
                       {"peers", t->peers},
                       {"next_announce_s", next},
                       {"breaker", t->breaker.state_name(now)},
                       {"failures", t->failures},
                       {"announces", t->announces}});
    }
    return out;
}

} // namespace openace::transport
