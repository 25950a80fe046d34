#include "streamer/tcp_api.hpp"

#include "core/error.hpp"
#include "core/hex.hpp"
#include "net/url.hpp"
#include "net/uv_handle.hpp"
#include "streamer/ace_compat.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <random>

namespace openace::streamer {

using nlohmann::json;

namespace {

const json &field(const json &obj, const char *key)
{
    static const json null_value;
    if (!obj.is_object())
        return null_value;
    auto it = obj.find(key);
    return it == obj.end() ? null_value : *it;
}

std::string str_of(const json &j)
{
    if (j.is_string())
        return j.get<std::string>();
    if (j.is_number_unsigned())
        return std::to_string(j.get<std::uint64_t>());
    if (j.is_number_integer())
        return std::to_string(j.get<std::int64_t>());
    if (j.is_number_float()) {
        double d = j.get<double>();
        if (std::isfinite(d) && std::fabs(d) < 9e18)
            return std::to_string(static_cast<std::int64_t>(d));
    }
    if (j.is_boolean())
        return j.get<bool>() ? "1" : "0";
    return {};
}

// A non-negative counter from a number, a numeric string or a bool; 0 otherwise.
std::uint64_t count_of(const json &j)
{
    if (j.is_number_unsigned())
        return j.get<std::uint64_t>();
    if (j.is_number_integer())
        return static_cast<std::uint64_t>(std::max<std::int64_t>(0, j.get<std::int64_t>()));
    if (j.is_number_float()) {
        double d = j.get<double>();
        return std::isfinite(d) && d > 0 ? static_cast<std::uint64_t>(std::min(d, 1e18)) : 0;
    }
    if (j.is_boolean())
        return j.get<bool>() ? 1 : 0;
    if (j.is_string()) {
        const auto &s = j.get_ref<const std::string &>();
        std::uint64_t v = 0;
        if (s.empty() || s.size() > 18)
            return 0;
        for (char c : s) {
            if (c < '0' || c > '9')
                return 0;
            v = v * 10 + std::uint64_t(c - '0');
        }
        return v;
    }
    return 0;
}

std::string str_at(const json &obj, const char *key)
{
    return str_of(field(obj, key));
}

std::uint64_t count_at(const json &obj, const char *key)
{
    return count_of(field(obj, key));
}

} // namespace

namespace ace_tcp {

namespace {

constexpr const char *kComponent = "tcp api";

bool is_blank(char c) noexcept
{
    return c == ' ' || c == '\t';
}

std::string upper(std::string_view s)
{
    std::string out(s);
    for (char &c : out)
        if (c >= 'a' && c <= 'z')
            c = char(c - 'a' + 'A');
    return out;
}

// Client input quoted back in an error, cut to a readable length.
std::string shorten(std::string_view s)
{
    constexpr std::size_t kMax = 64;
    return s.size() <= kMax ? std::string(s) : std::string(s.substr(0, kMax)) + "...";
}

// The hook parameter a content type fills; nullptr for an unknown type.
const char *param_for(std::string_view type, std::string_view arg) noexcept
{
    if (type == "PID")
        return "content_id";
    if (type == "INFOHASH")
        return "infohash";
    if (type == "TORRENT")
        return arg.substr(0, 7) == "magnet:" ? "magnet" : "url";
    if (type == "URL")
        return "url";
    if (type == "RAW")
        return "data";
    return nullptr;
}

// "3" or "3,4,7" -> 3 (the first index); nullopt for anything else.
std::optional<std::uint32_t> parse_index(std::string_view s) noexcept
{
    s = s.substr(0, s.find(','));
    if (s.empty() || s.size() > 9)
        return std::nullopt;
    std::uint32_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9')
            return std::nullopt;
        v = v * 10 + std::uint32_t(c - '0');
    }
    return v;
}

// Fills params[...] from "<TYPE> <arg>" at args[at], args[at + 1].
void content_param(const Command &cmd, std::size_t at, const char *op, TcpApiHooks::Params &params)
{
    if (cmd.args.size() <= at)
        throw_errorf(Errc::INVAL, kComponent, op, "{} needs a content type (PID, INFOHASH, TORRENT, URL or RAW)", op);
    std::string type = upper(cmd.args[at]);
    if (type == "EFILE")
        throw_errorf(Errc::UNSUPPORTED, kComponent, op, "{} EFILE: encrypted files are not supported", op);
    if (cmd.args.size() <= at + 1)
        throw_errorf(Errc::INVAL, kComponent, op, "{} {} needs an argument", op, shorten(type));
    const std::string &arg = cmd.args[at + 1];
    const char *key = param_for(type, arg);
    if (!key)
        throw_errorf(Errc::INVAL, kComponent, op, "{}: unknown content type '{}' (PID, INFOHASH, TORRENT, URL or RAW)",
                     op, shorten(type));
    params[key] = arg;
}

// A value inside a "k=v" word: clients split those at spaces and '='.
std::string word_value(std::string_view v)
{
    return net::percent_encode(v, ":/?#[]@!$&'()*+,;");
}

void append_kv(std::string &line, std::string_view key, const std::string &value)
{
    if (value.empty())
        return;
    line += ' ';
    line += key;
    line += '=';
    line += word_value(value);
}

} // namespace

Command parse_line(std::string_view line)
{
    if (!line.empty() && line.back() == '\r')
        line.remove_suffix(1);
    if (line.size() > kMaxLineBytes)
        throw_errorf(Errc::PARSE, kComponent, "parse", "line too long ({} bytes, limit {})", line.size(), kMaxLineBytes);
    for (char ch : line) {
        auto c = static_cast<unsigned char>(ch);
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            throw_errorf(Errc::PARSE, kComponent, "parse", "control character 0x{:02x} in line", c);
    }
    std::vector<std::string> words;
    std::size_t i = 0;
    while (i < line.size()) {
        if (is_blank(line[i])) {
            ++i;
            continue;
        }
        std::size_t j = i;
        while (j < line.size() && !is_blank(line[j]))
            ++j;
        if (words.size() == kMaxTokens)
            throw_errorf(Errc::PARSE, kComponent, "parse", "too many words in line (limit {})", kMaxTokens);
        words.emplace_back(line.substr(i, j - i));
        i = j;
    }
    Command cmd;
    if (words.empty())
        return cmd;
    cmd.name = upper(words.front());
    cmd.args.assign(std::make_move_iterator(words.begin() + 1), std::make_move_iterator(words.end()));
    return cmd;
}

TcpApiHooks::Params parse_options(const std::vector<std::string> &args, std::size_t from)
{
    TcpApiHooks::Params out;
    for (std::size_t i = from; i < args.size(); ++i) {
        const std::string &a = args[i];
        std::size_t eq = a.find('=');
        if (eq == std::string::npos || eq == 0)
            continue;
        std::string_view value = std::string_view(a).substr(eq + 1);
        out[a.substr(0, eq)] = net::percent_decode(value).value_or(std::string(value));
    }
    return out;
}

bool valid_ready_key(std::string_view key) noexcept
{
    std::size_t dash = key.find('-');
    if (dash == 0 || dash == std::string_view::npos || dash > 64)
        return false;
    for (char c : key.substr(0, dash))
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    return core::from_hex<20>(key.substr(dash + 1)).has_value();
}

StartRequest parse_start(const Command &cmd)
{
    StartRequest req;
    content_param(cmd, 0, "START", req.params);
    // The index is the word after the argument, unless that is already an option.
    if (cmd.args.size() > 2 && cmd.args[2].find('=') == std::string::npos) {
        req.index = parse_index(cmd.args[2]);
        if (!req.index)
            throw_errorf(Errc::INVAL, kComponent, "START", "START: bad file index '{}' (a number, or numbers joined by commas)",
                         shorten(cmd.args[2]));
        req.params["_idx"] = std::to_string(*req.index);
    }
    auto options = parse_options(cmd.args, 2);
    if (auto it = options.find("output_format"); it != options.end()) {
        if (it->second == "hls")
            req.hls = true;
        else if (it->second != "http")
            throw_errorf(Errc::INVAL, kComponent, "START", "START: unknown output_format '{}' (http or hls)",
                         shorten(it->second));
    }
    return req;
}

LoadRequest parse_load(const Command &cmd)
{
    LoadRequest req;
    if (cmd.name == "LOAD") {
        content_param(cmd, 0, "LOAD", req.params);
        return req;
    }
    if (cmd.args.empty() || param_for(upper(cmd.args.front()), "") || upper(cmd.args.front()) == "EFILE")
        throw_error(Errc::INVAL, kComponent, "LOADASYNC", "LOADASYNC needs a request id before the content type");
    if (cmd.args.front().size() > 64)
        throw_errorf(Errc::INVAL, kComponent, "LOADASYNC", "LOADASYNC: request id '{}' too long (limit 64)",
                     shorten(cmd.args.front()));
    req.request_id = cmd.args.front();
    content_param(cmd, 1, "LOADASYNC", req.params);
    return req;
}

std::string loadresp_json(const json &media_files)
{
    json files = json::array();
    const json &list = field(media_files, "files");
    if (list.is_array())
        for (const json &f : list) {
            const json &name = field(f, "filename");
            const json &index = field(f, "index");
            if (name.is_string() && index.is_number_integer())
                files.push_back(json::array({net::percent_encode(name.get<std::string>()), index}));
        }
    std::string ih = str_at(media_files, "infohash");
    json out = {{"status", std::min<std::size_t>(files.size(), 2)}, {"infohash", ih}, {"checksum", ih}, {"files", files}};
    return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string load_error_json(std::string_view message)
{
    json out = {{"status", 100}, {"message", net::percent_encode(message)}};
    return json_text(out);
}

std::string start_line(const json &result, std::optional<std::uint32_t> index)
{
    const json &url = field(result, "playback_url");
    if (!url.is_string() || url.get_ref<const std::string &>().empty())
        return {};
    std::string line = "START url=" + word_value(url.get<std::string>());
    append_kv(line, "infohash", str_at(result, "infohash"));
    if (index)
        append_kv(line, "file_index", std::to_string(*index));
    if (count_at(result, "is_live") != 0)
        line += " stream=1";
    append_kv(line, "stat_url", str_at(result, "stat_url"));
    append_kv(line, "command_url", str_at(result, "command_url"));
    append_kv(line, "playback_session_id", str_at(result, "playback_session_id"));
    return line;
}

std::string status_line(const json &stat)
{
    if (!stat.is_object())
        return "STATUS main:idle";
    auto n = [&](const char *key) { return count_at(stat, key); };
    std::string status = str_at(stat, "status");
    std::string common = fmt::format("{};{};{};0;{};{};0;{};0;{}", n("total_progress"), n("progress"), n("speed_down"),
                                     n("speed_up"), n("peers"), n("downloaded"), n("uploaded"));
    if (status == "prebuf" || status == "buf")
        return fmt::format("STATUS main:{};{};{};{}", status, n("progress"), kUnknownTime, common);
    if (status == "dl")
        return "STATUS main:dl;" + common;
    if (status == "check")
        return fmt::format("STATUS main:check;{}", n("progress"));
    if (status == "wait")
        return fmt::format("STATUS main:wait;{};{}", kUnknownTime, common);
    return "STATUS main:idle";
}

int state_of(const json &stat, int current) noexcept
{
    const json &s = field(stat, "status");
    if (!s.is_string())
        return current;
    const auto &v = s.get_ref<const std::string &>();
    if (v == "prebuf")
        return 1;
    if (v == "dl")
        return 2;
    if (v == "buf")
        return 3;
    if (v == "check")
        return 5;
    return current;
}

std::string livepos_line(const json &stat)
{
    const json &lp = field(stat, "livepos");
    if (count_at(stat, "is_live") == 0 || !lp.is_object() || lp.empty())
        return {};
    std::string line = "EVENT livepos";
    for (const char *key : {"last", "live_first", "pos", "first_ts", "last_ts"})
        append_kv(line, key, str_at(lp, key));
    line += " is_live=1";
    for (const char *key : {"live_last", "buffer_pieces"})
        append_kv(line, key, str_at(lp, key));
    return line;
}

} // namespace ace_tcp

// ====================================================================== server

namespace detail {

namespace {

constexpr const char *kComponent = "tcp api";
constexpr std::size_t kReadSlabBytes = 64 * 1024;
// A client that does not read our lines must not make us queue them forever.
constexpr std::size_t kMaxPendingBytes = 4u << 20;
// After our last line, how long we drain a closing client's input: closing
// with unread input sends RST, which can destroy the answer not read yet.
constexpr std::uint64_t kLingerMs = 2000;
constexpr std::uint64_t kTickMs = 1000;
constexpr unsigned kUnknownLogged = 3; // unknown commands logged per connection
constexpr int kListenBacklog = 128;

std::string endpoint(const sockaddr_storage &ss)
{
    char buf[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        const auto *sin = reinterpret_cast<const sockaddr_in *>(&ss);
        uv_ip4_name(sin, buf, sizeof buf);
        return fmt::format("{}:{}", buf, ntohs(sin->sin_port));
    }
    if (ss.ss_family == AF_INET6) {
        const auto *sin6 = reinterpret_cast<const sockaddr_in6 *>(&ss);
        uv_ip6_name(sin6, buf, sizeof buf);
        return fmt::format("[{}]:{}", buf, ntohs(sin6->sin6_port));
    }
    return "?";
}

std::uint16_t port_of(const sockaddr_storage &ss)
{
    if (ss.ss_family == AF_INET)
        return ntohs(reinterpret_cast<const sockaddr_in *>(&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6 *>(&ss)->sin6_port);
    return 0;
}

} // namespace

struct Session {
    std::string infohash, key;
    std::string start_line; // repeated after LIVESEEK
    bool live = false;
    int state = 1;
};

struct TcpConn {
    TcpConn(TcpApiCore &c, std::uint64_t i) : core(c), id(i) {}
    TcpApiCore &core;
    std::uint64_t id;
    net::UvHandle<uv_tcp_t> tcp;
    std::string inbuf;
    std::string key;  // HELLOTS key=, also the player id of this client's sessions
    std::string peer; // "127.0.0.1:40312"
    std::size_t pending = 0;
    std::uint64_t linger_until = 0; // uv_now() deadline while lingering
    std::uint64_t start_gen = 0;    // bumped by every START / STOP: stale start answers are dropped
    std::optional<Session> session;
    unsigned unknown_logged = 0;
    bool counted = false; // holds a max_clients slot
    bool authed = false;
    bool closed = false;
    bool lingering = false;
    bool shutdown_sent = false;
    bool shutdown_done = false;
    bool peer_eof = false;
    bool start_pending = false;
};

struct WriteReq {
    uv_write_t req{};
    TcpConn *conn = nullptr;
    std::string data;
};

struct TcpApiCore {
    TcpApiCore(uv_loop_t *l, core::Logger lg, TcpApiHooks h, std::size_t max)
        : loop(l), log(std::move(lg)), hooks(std::move(h)), max_clients(max), rng(std::random_device{}()),
          slab(new char[kReadSlabBytes])
    {
    }

    void listen(std::string_view host, std::uint16_t port);
    void accept(int status);
    void close(std::function<void()> done);
    void release_handle();
    void tick();

    void read(TcpConn &c, ssize_t nread);
    void process(TcpConn &c);
    void handle_line(TcpConn &c, std::string_view line);
    void dispatch(TcpConn &c, const ace_tcp::Command &cmd);
    void ready(TcpConn &c, const ace_tcp::Command &cmd);
    void start(TcpConn &c, const ace_tcp::Command &cmd);
    void started(std::uint64_t id, std::uint64_t gen, std::optional<std::uint32_t> index, const json &result,
                 const std::string &error);
    void load(TcpConn &c, const ace_tcp::Command &cmd);
    void loaded(std::uint64_t id, const std::string &reqid, bool sync, const json &result, const std::string &error);
    void liveseek(TcpConn &c, const ace_tcp::Command &cmd);
    void poll(TcpConn &c);
    void end_session(TcpConn &c);
    void stop_result(const json &result);

    bool send(TcpConn &c, std::string line);
    void reply_error(TcpConn &c, std::string_view why);
    void close_now(TcpConn &c, std::string_view why);
    void release_slot(TcpConn &c)
    {
        if (c.counted) {
            c.counted = false;
            --served;
        }
    }
    void linger_close(TcpConn &c, std::string_view why);
    TcpConn *find_live(std::uint64_t id);
    std::string random_key();

    // Loop callbacks never throw: anything that escapes closes that client.
    template <class F> void guard(TcpConn &c, F &&f) noexcept
    {
        try {
            f();
        } catch (...) {
            try {
                log.error("client {}: internal error; closing", c.peer);
                close_now(c, "internal error");
            } catch (...) {
            }
        }
    }
    // Wraps a hook's Done: answers after we are gone are dropped, and nothing
    // the answer does throws back into the engine.
    template <class F> TcpApiHooks::Done make_done(F &&f)
    {
        return [alive = std::weak_ptr<char>(alive_token), this, f = std::forward<F>(f)](const json &result,
                                                                                      const std::string &error) {
            if (alive.expired())
                return;
            try {
                f(result, error);
            } catch (const std::exception &e) {
                log.warn("engine answer failed: {}", e.what());
            } catch (...) {
            }
        };
    }

    uv_loop_t *loop;
    core::Logger log;
    TcpApiHooks hooks;
    std::size_t max_clients;
    net::UvHandle<uv_tcp_t> listener;
    net::UvHandle<uv_timer_t> ticker;
    std::uint16_t bound_port = 0;
    std::map<std::uint64_t, std::unique_ptr<TcpConn>> conns; // freed in their close callback
    std::uint64_t next_id = 1;
    std::size_t served = 0;       // connections holding a max_clients slot
    std::size_t open_handles = 0; // libuv handles not yet through their close callback
    bool closing = false;
    bool closed = false;
    bool orphaned = false; // TcpApi destroyed first: free ourselves when the handles are gone
    std::vector<std::function<void()>> done_callbacks;
    TcpApi::Stats stats;
    std::mt19937_64 rng;
    std::unique_ptr<char[]> slab;
    std::shared_ptr<char> alive_token = std::make_shared<char>('\0');
};

// ----------------------------------------------------------------- lifecycle

void TcpApiCore::listen(std::string_view host, std::uint16_t port)
{
    if (closing)
        throw_error(Errc::STATE, kComponent, "listen", "the TCP API is closed");
    if (listener)
        throw_errorf(Errc::STATE, kComponent, "listen", "already listening on port {}", bound_port);
    std::string ip(host == "localhost" ? std::string_view("127.0.0.1") : host);
    if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']')
        ip = ip.substr(1, ip.size() - 2);
    sockaddr_storage ss{};
    if (uv_ip4_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in *>(&ss)) != 0 &&
        uv_ip6_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in6 *>(&ss)) != 0)
        throw_errorf(Errc::NET, kComponent, "listen", "cannot listen on '{}': not an IPv4 or IPv6 address", host);
    std::string where = endpoint(ss);
    int rc = listener.init(this, uv_tcp_init, loop);
    if (rc != 0)
        throw_errorf(Errc::NET, kComponent, "listen", "cannot listen on {}: {}", where, net::uv_error(rc));
    ++open_handles;
    rc = uv_tcp_bind(listener.get(), reinterpret_cast<const sockaddr *>(&ss), 0);
    if (rc == 0)
        rc = uv_listen(listener.stream(), kListenBacklog, [](uv_stream_t *s, int status) {
            auto *core = static_cast<TcpApiCore *>(s->data);
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
    if (rc == 0 && (rc = ticker.init(this, uv_timer_init, loop)) == 0)
        ++open_handles;
    if (rc != 0) {
        listener.close([this] { release_handle(); });
        throw_errorf(Errc::NET, kComponent, "listen", "cannot listen on {}: {}", where, net::uv_error(rc));
    }
    bound_port = port_of(bound);
    uv_timer_start(ticker.get(), [](uv_timer_t *t) {
        auto *core = static_cast<TcpApiCore *>(t->data);
        try {
            core->tick();
        } catch (...) {
            // one failed round; the next tick tries again
        }
    }, kTickMs, kTickMs);
    uv_unref(ticker.handle()); // clients keep the loop alive, the tick alone must not
    log.info("Ace TCP API listening on {}", endpoint(bound));
}

void TcpApiCore::accept(int status)
{
    if (status < 0) {
        log.warn("accept failed: {}", net::uv_error(status));
        return;
    }
    if (closing)
        return;
    std::uint64_t id = next_id++;
    TcpConn &c = *conns.emplace(id, std::make_unique<TcpConn>(*this, id)).first->second;
    if (int rc = c.tcp.init(&c, uv_tcp_init, loop); rc != 0) {
        log.warn("cannot accept a client: {}", net::uv_error(rc));
        conns.erase(id);
        return;
    }
    ++open_handles;
    ++stats.connections_total;
    if (int rc = uv_accept(listener.stream(), c.tcp.stream()); rc != 0) {
        log.warn("cannot accept a client: {}", net::uv_error(rc));
        close_now(c, "accept failed");
        return;
    }
    sockaddr_storage ss{};
    int len = sizeof ss;
    c.peer = uv_tcp_getpeername(c.tcp.get(), reinterpret_cast<sockaddr *>(&ss), &len) == 0 ? endpoint(ss) : "?";
    if (served >= max_clients) {
        ++stats.errors;
        log.warn("refusing client {}: {} clients connected (limit {})", c.peer, served, max_clients);
        close_now(c, "too many clients");
        return;
    }
    c.counted = true;
    ++served;
    c.key = random_key();
    uv_tcp_nodelay(c.tcp.get(), 1);
    int rc = uv_read_start(
        c.tcp.stream(),
        [](uv_handle_t *h, std::size_t, uv_buf_t *buf) {
            auto *conn = static_cast<TcpConn *>(h->data);
            *buf = uv_buf_init(conn->core.slab.get(), kReadSlabBytes);
        },
        [](uv_stream_t *s, ssize_t nread, const uv_buf_t *) {
            auto *conn = static_cast<TcpConn *>(s->data);
            conn->core.guard(*conn, [&] { conn->core.read(*conn, nread); });
        });
    if (rc != 0) {
        close_now(c, net::uv_error(rc));
        return;
    }
    log.debug("client {} connected ({} now)", c.peer, served);
}

void TcpApiCore::close(std::function<void()> done)
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
    listener.close([this] { release_handle(); });
    ticker.close([this] { release_handle(); });
    // close_now only unlinks a client in its close callback, so this walk is
    // safe while the stop hooks run.
    for (auto &entry : conns)
        close_now(*entry.second, "server closing");
    ++open_handles; // hold: a synchronous release below must not finish twice
    release_handle();
}

void TcpApiCore::release_handle()
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

void TcpApiCore::close_now(TcpConn &c, std::string_view why)
{
    if (c.closed)
        return;
    c.closed = true;
    release_slot(c);
    log.debug("client {} closed ({})", c.peer, why);
    // Pending writes and the shutdown are cancelled before the close
    // callback, and they point at c: it is freed only there.
    c.tcp.close([this, id = c.id] {
        conns.erase(id);
        release_handle();
    });
    end_session(c); // user code last: c is already out of every path that writes
}

void TcpApiCore::linger_close(TcpConn &c, std::string_view why)
{
    if (c.closed || c.lingering)
        return;
    c.lingering = true;
    c.inbuf.clear();
    release_slot(c); // no longer served; lingering is bounded by kLingerMs
    log.debug("client {}: closing ({})", c.peer, why);
    end_session(c);
    if (c.closed)
        return;
    if (c.peer_eof) {
        close_now(c, why);
        return;
    }
    auto *req = new uv_shutdown_t{};
    req->data = &c;
    int rc = uv_shutdown(req, c.tcp.stream(), [](uv_shutdown_t *r, int status) {
        auto *conn = static_cast<TcpConn *>(r->data);
        delete r;
        conn->core.guard(*conn, [&] {
            conn->shutdown_done = true;
            if (status < 0 || conn->peer_eof)
                conn->core.close_now(*conn, status < 0 ? net::uv_error(status) : "done");
        });
    });
    if (rc != 0) {
        delete req;
        close_now(c, net::uv_error(rc));
        return;
    }
    c.shutdown_sent = true;
    uv_update_time(loop);
    c.linger_until = uv_now(loop) + kLingerMs;
}

TcpConn *TcpApiCore::find_live(std::uint64_t id)
{
    auto it = conns.find(id);
    if (it == conns.end() || it->second->closed || it->second->lingering)
        return nullptr;
    return it->second.get();
}

std::string TcpApiCore::random_key()
{
    return fmt::format("{:010x}", rng() & ((std::uint64_t(1) << 40) - 1));
}

// Polls every running session once a second and ends overdue lingering.
void TcpApiCore::tick()
{
    std::uint64_t now = uv_now(loop);
    for (auto &entry : conns) {
        TcpConn &c = *entry.second;
        if (c.closed)
            continue;
        if (c.lingering) {
            if (now >= c.linger_until)
                close_now(c, "linger timeout");
            continue;
        }
        if (c.session)
            guard(c, [&] { poll(c); });
    }
}

// --------------------------------------------------------------------- input

void TcpApiCore::read(TcpConn &c, ssize_t nread)
{
    if (c.closed)
        return;
    if (nread > 0) {
        if (!c.lingering) {
            c.inbuf.append(slab.get(), static_cast<std::size_t>(nread));
            process(c);
        }
        return;
    }
    if (nread == UV_EOF) {
        c.peer_eof = true;
        // Lingering: our last lines go out before the close.
        if (!c.lingering || c.shutdown_done)
            close_now(c, "closed by client");
        return;
    }
    if (nread < 0)
        close_now(c, net::uv_error(static_cast<int>(nread)));
}

void TcpApiCore::process(TcpConn &c)
{
    std::size_t begin = 0;
    while (!c.closed && !c.lingering) {
        std::size_t nl = c.inbuf.find('\n', begin);
        if (nl == std::string::npos)
            break;
        std::string_view line(c.inbuf.data() + begin, nl - begin);
        begin = nl + 1;
        handle_line(c, line);
    }
    if (c.closed || c.lingering)
        return;
    c.inbuf.erase(0, begin);
    if (c.inbuf.size() > ace_tcp::kMaxLineBytes) {
        ++stats.errors;
        log.warn("client {}: line longer than {} bytes; closing", c.peer, ace_tcp::kMaxLineBytes);
        send(c, "INFO 0;line too long");
        linger_close(c, "line too long");
    }
}

void TcpApiCore::handle_line(TcpConn &c, std::string_view line)
{
    ace_tcp::Command cmd;
    try {
        cmd = ace_tcp::parse_line(line);
    } catch (const Error &e) {
        log.warn("client {}: {}", c.peer, e.detail());
        bool too_long = line.size() > ace_tcp::kMaxLineBytes;
        reply_error(c, too_long ? "line too long" : e.detail());
        if (too_long)
            linger_close(c, "line too long");
        return;
    }
    if (cmd.name.empty())
        return;
    ++stats.commands;
    log.debug("client {} > {}", c.peer, line.substr(0, 200));
    try {
        dispatch(c, cmd);
    } catch (const Error &e) {
        log.info("client {}: {}", c.peer, e.detail());
        reply_error(c, e.detail());
    } catch (const std::exception &e) {
        log.warn("client {}: {} failed: {}", c.peer, cmd.name, e.what());
        reply_error(c, "internal error");
    }
}

void TcpApiCore::dispatch(TcpConn &c, const ace_tcp::Command &cmd)
{
    const std::string &name = cmd.name;
    if (name == "HELLOBG") {
        send(c, fmt::format("HELLOTS version={} version_code={} key={} http_port={}", kAceApiVersion,
                            kAceApiVersionCode, c.key, hooks.http_port));
        return;
    }
    if (name == "READY")
        return ready(c, cmd);
    if (!c.authed) {
        send(c, "NOTREADY");
        return;
    }
    if (name == "START")
        return start(c, cmd);
    if (name == "LOADASYNC" || name == "LOAD")
        return load(c, cmd);
    if (name == "LIVESEEK")
        return liveseek(c, cmd);
    if (name == "STOP") {
        end_session(c);
        send(c, "STATE 0");
        return;
    }
    if (name == "SHUTDOWN")
        return linger_close(c, "SHUTDOWN");
    if (name == "STATUS") {
        if (c.session)
            poll(c);
        if (!c.session)
            send(c, "STATUS main:idle");
        return;
    }
    if (name == "SETOPTIONS" || name == "USERDATA" || name == "EVENT" || name == "DUR" || name == "PLAYBACK")
        return; // player notices we have no use for (logged above)
    if (c.unknown_logged < kUnknownLogged) {
        ++c.unknown_logged;
        log.info("client {}: ignoring unknown command {}", c.peer, name.substr(0, 32));
    }
}

void TcpApiCore::ready(TcpConn &c, const ace_tcp::Command &cmd)
{
    auto options = ace_tcp::parse_options(cmd.args, 0);
    auto key = options.find("key");
    if (key == options.end() || ace_tcp::valid_ready_key(key->second)) {
        c.authed = true;
        send(c, "AUTH 1");
        return;
    }
    ++stats.errors;
    log.info("client {}: malformed READY key; closing", c.peer);
    send(c, "AUTH 0");
    linger_close(c, "bad key");
}

// ------------------------------------------------------------------ playback

void TcpApiCore::start(TcpConn &c, const ace_tcp::Command &cmd)
{
    if (!hooks.start)
        throw_error(Errc::STATE, kComponent, "START", "playback is not available");
    ace_tcp::StartRequest req = ace_tcp::parse_start(cmd);
    end_session(c);
    req.params["pid"] = "tcp-" + c.key;
    std::uint64_t gen = c.start_gen;
    c.start_pending = true;
    auto done = make_done([this, id = c.id, gen, index = req.index](const json &result, const std::string &error) {
        started(id, gen, index, result, error);
    });
    try {
        hooks.start(req.params, req.hls, std::move(done));
    } catch (...) {
        if (c.start_gen == gen)
            c.start_pending = false;
        throw;
    }
}

void TcpApiCore::started(std::uint64_t id, std::uint64_t gen, std::optional<std::uint32_t> index, const json &result,
                         const std::string &error)
{
    TcpConn *c = find_live(id);
    if (!c || c->start_gen != gen || !c->start_pending) {
        if (error.empty())
            stop_result(result); // nobody wants this session any more
        return;
    }
    c->start_pending = false;
    Session s;
    s.infohash = str_at(result, "infohash");
    s.key = str_at(result, "playback_session_id");
    s.start_line = ace_tcp::start_line(result, index);
    std::string why = error;
    if (why.empty() && (s.infohash.empty() || s.key.empty() || s.start_line.empty())) {
        stop_result(result);
        why = "the engine gave no playback session";
    }
    if (!why.empty()) {
        log.info("client {}: START failed: {}", c->peer, why);
        reply_error(*c, why);
        send(*c, "STATE 6");
        return;
    }
    s.live = count_at(result, "is_live") != 0;
    send(*c, s.start_line);
    send(*c, "STATE 1");
    c->session = std::move(s);
}

void TcpApiCore::stop_result(const json &result)
{
    std::string ih = str_at(result, "infohash"), key = str_at(result, "playback_session_id");
    if (ih.empty() || key.empty() || !hooks.stop)
        return;
    try {
        hooks.stop(ih, key);
    } catch (const std::exception &e) {
        log.warn("stopping session {}/{} failed: {}", ih, key, e.what());
    }
}

// Forgets the client's session (stopping it in the engine) and any START
// still waiting for the engine.
void TcpApiCore::end_session(TcpConn &c)
{
    ++c.start_gen;
    c.start_pending = false;
    if (!c.session)
        return;
    Session s = std::move(*c.session);
    c.session.reset();
    if (!hooks.stop)
        return;
    try {
        hooks.stop(s.infohash, s.key);
    } catch (const std::exception &e) {
        log.warn("stopping session {}/{} failed: {}", s.infohash, s.key, e.what());
    }
}

void TcpApiCore::poll(TcpConn &c)
{
    if (!hooks.stat)
        return;
    json stat;
    try {
        stat = hooks.stat(c.session->infohash, c.session->key);
    } catch (const std::exception &e) {
        log.warn("stat of session {}/{} failed: {}", c.session->infohash, c.session->key, e.what());
        return;
    }
    if (c.closed || c.lingering || !c.session)
        return;
    Session &s = *c.session;
    if (stat.is_null()) {
        log.info("client {}: session {}/{} ended", c.peer, s.infohash, s.key);
        c.session.reset();
        send(c, "STATE 0");
        send(c, "STOP");
        return;
    }
    send(c, ace_tcp::status_line(stat));
    int state = ace_tcp::state_of(stat, s.state);
    if (state != s.state) {
        s.state = state;
        send(c, fmt::format("STATE {}", state));
    }
    if (std::string lp = ace_tcp::livepos_line(stat); !lp.empty())
        send(c, std::move(lp));
}

void TcpApiCore::liveseek(TcpConn &c, const ace_tcp::Command &cmd)
{
    if (cmd.args.empty())
        throw_error(Errc::INVAL, kComponent, "LIVESEEK", "LIVESEEK needs a position");
    if (!c.session)
        throw_error(Errc::STATE, kComponent, "LIVESEEK", "LIVESEEK: nothing is playing");
    if (!hooks.liveseek)
        throw_error(Errc::STATE, kComponent, "LIVESEEK", "LIVESEEK is not available");
    std::string error = hooks.liveseek(c.session->infohash, c.session->key, cmd.args.front());
    if (!error.empty()) {
        reply_error(c, error);
        return;
    }
    if (c.session)
        send(c, c.session->start_line);
}

void TcpApiCore::load(TcpConn &c, const ace_tcp::Command &cmd)
{
    if (!hooks.media_files)
        throw_errorf(Errc::STATE, kComponent, cmd.name, "{} is not available", cmd.name);
    ace_tcp::LoadRequest req = ace_tcp::parse_load(cmd);
    bool sync = cmd.name == "LOAD";
    hooks.media_files(req.params, make_done([this, id = c.id, reqid = req.request_id, sync](const json &result,
                                                                                          const std::string &error) {
        loaded(id, reqid, sync, result, error);
    }));
}

void TcpApiCore::loaded(std::uint64_t id, const std::string &reqid, bool sync, const json &result,
                        const std::string &error)
{
    TcpConn *c = find_live(id);
    if (!c)
        return;
    std::string body;
    if (error.empty()) {
        body = ace_tcp::loadresp_json(result);
    } else {
        ++stats.errors;
        log.info("client {}: load failed: {}", c->peer, error);
        body = ace_tcp::load_error_json(error);
    }
    send(*c, sync ? "##" + body : "LOADRESP " + reqid + " " + body);
}

// -------------------------------------------------------------------- output

bool TcpApiCore::send(TcpConn &c, std::string line)
{
    if (c.closed || c.shutdown_sent)
        return false;
    log.trace("client {} < {}", c.peer, std::string_view(line).substr(0, 200));
    line += "\r\n";
    if (c.pending + line.size() > kMaxPendingBytes) {
        log.warn("client {} is not reading ({} bytes queued); closing", c.peer, c.pending);
        close_now(c, "not reading");
        return false;
    }
    auto *w = new WriteReq;
    w->conn = &c;
    w->data = std::move(line);
    w->req.data = w;
    uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    int rc = uv_write(&w->req, c.tcp.stream(), &buf, 1, [](uv_write_t *req, int status) {
        auto *wr = static_cast<WriteReq *>(req->data);
        TcpConn *conn = wr->conn;
        conn->pending -= wr->data.size();
        delete wr;
        if (status < 0 && status != UV_ECANCELED)
            conn->core.guard(*conn, [&] { conn->core.close_now(*conn, net::uv_error(status)); });
    });
    if (rc != 0) {
        delete w;
        close_now(c, net::uv_error(rc));
        return false;
    }
    c.pending += w->data.size();
    return true;
}

void TcpApiCore::reply_error(TcpConn &c, std::string_view why)
{
    ++stats.errors;
    std::string text(why);
    std::replace_if(text.begin(), text.end(), [](char ch) { return ch == '\r' || ch == '\n'; }, ' ');
    send(c, "INFO 0;" + text);
}

} // namespace detail

// -------------------------------------------------------------------- TcpApi

TcpApi::TcpApi(uv_loop_t *loop, core::Logger log, TcpApiHooks hooks, std::size_t max_clients)
    : core_(std::make_unique<detail::TcpApiCore>(loop, std::move(log), std::move(hooks), max_clients))
{
}

TcpApi::~TcpApi()
{
    if (!core_ || core_->open_handles == 0)
        return;
    core_->log.error("TcpApi destroyed with {} libuv handles open; call close() and wait for done first",
                     core_->open_handles);
    core_->log = core::Logger{}; // the Log may die with our owner
    core_->hooks = TcpApiHooks{}; // and so may the engine behind the hooks
    core_->orphaned = true;
    detail::TcpApiCore *core = core_.release();
    core->close({});
}

void TcpApi::listen(std::string_view host, std::uint16_t port)
{
    core_->listen(host, port);
}

std::uint16_t TcpApi::port() const
{
    return core_->bound_port;
}

void TcpApi::close(std::function<void()> done)
{
    core_->close(std::move(done));
}

TcpApi::Stats TcpApi::stats() const
{
    Stats s = core_->stats;
    s.clients = core_->served;
    return s;
}

} // namespace openace::streamer
