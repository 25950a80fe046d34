#include "streamer/streamer_engine.hpp"

#include "core/error.hpp"
#include "core/log_query.hpp"
#include "engine/engine_manager.hpp"
#include "transport/embedded_tracker.hpp"
#include "transport/transport_engine.hpp"
#include "streamer/ace_compat.hpp"
#include "streamer/metrics.hpp"
#include "streamer/server_api.hpp"
#include "streamer/tcp_api.hpp"

#include <chrono>
#include <random>
#include <regex>

namespace openace::streamer {

namespace {

const char *kJson = "application/json";

std::string random_token()
{
    std::random_device rd;
    std::string s;
    for (int i = 0; i < 4; ++i)
        s += fmt::format("{:016x}", (uint64_t(rd()) << 32) | rd());
    return s;
}

} // namespace

StreamerEngine::StreamerEngine(engine::EngineContext &ctx)
    : SubEngine(ctx, "streamer", {"live", "transport"})
{
}

StreamerEngine::~StreamerEngine() = default;

std::string StreamerEngine::address() const
{
    return server_ && running() ? server_->address() : std::string();
}

size_t StreamerEngine::memory_bytes() const
{
    return server_ ? server_->memory_bytes() : 0;
}

nlohmann::json StreamerEngine::http_stats() const
{
    if (!server_)
        return nullptr;
    auto s = server_->stats();
    return {{"address", server_->address()},
            {"requests", s.requests},
            {"responses_4xx", s.responses_4xx},
            {"responses_5xx", s.responses_5xx},
            {"connections_total", s.connections_total},
            {"connections_active", s.connections_active},
            {"connections_rejected", s.connections_rejected},
            {"bytes_in", s.bytes_in},
            {"bytes_out", s.bytes_out},
            {"avg_response_ms", s.avg_response_ms},
            {"denied", denied_}};
}

nlohmann::json StreamerEngine::details() const
{
    auto h = http_stats();
    nlohmann::json j = h.is_null() ? nlohmann::json::object() : nlohmann::json{{"http", h}};
    if (playback_)
        j["playback"] = playback_->status();
    return j;
}

void StreamerEngine::on_start()
{
    const auto &ec = ctx_.config->engine;
    auto hp = core::parse_host_port(ec.http_address, "engine.http_address");
    token_ = ec.api_token.empty() ? random_token() : ec.api_token;
    net::HttpLimits limits;
    limits.max_connections = size_t(ec.http_max_connections);
    limits.idle_timeout_s = ec.http_idle_timeout;
    limits.max_header_bytes = size_t(ec.http_max_header_bytes);
    limits.max_body_bytes = size_t(ec.http_max_body_bytes);
    auto server = std::make_unique<net::HttpServer>(ctx_.loop, core::Logger(*ctx_.log, "http"), limits);
    server->set_filter([this](const net::HttpRequest &req, net::HttpResponse &res) { return allow(req, res); });
    server_ = std::move(server);

    route("/webui/api/service", [this](auto &req, auto &res) { service_api(req, res); });
    route("/api/stats", [this](auto &, auto &res) { res->send(200, kJson, ctx_.stats().dump(2)); });
    route("/metrics", [this](auto &, auto &res) {
        res->send(200, "text/plain; version=0.0.4; charset=utf-8", render_prometheus(ctx_.stats()));
    });
    route("/api/logs", [this](auto &req, auto &res) { api_logs(req, res); });
    playback_ = std::make_unique<Playback>(ctx_, log_);
    route("/ace/getstream", [this](auto &req, auto &res) { playback_->getstream(req, res, false); });
    route("/ace/manifest.m3u8", [this](auto &req, auto &res) { playback_->getstream(req, res, true); });
    route("/ace/r/", [this](auto &req, auto &res) { playback_->stream(req, res); }, true);
    route("/ace/m/", [this](auto &req, auto &res) { playback_->playlist(req, res); }, true);
    route("/ace/c/", [this](auto &req, auto &res) { playback_->segment(req, res); }, true);
    route("/ace/stat/", [this](auto &req, auto &res) { playback_->stat(req, res); }, true);
    route("/ace/cmd/", [this](auto &req, auto &res) { playback_->cmd(req, res); }, true);
    route("/hls/manifest.m3u8", [this](auto &req, auto &res) { playback_->hls_source(req, res); });
    route("/server/api", [this](auto &req, auto &res) { server_api(ctx_, *playback_, token_, req, res); });
    auto *transport = dynamic_cast<transport::TransportEngine *>(ctx_.manager->find("transport"));
    if (transport && transport->embedded_tracker())
        transport->embedded_tracker()->install(*server_);

    try {
        server_->listen(hp.host, hp.port);
    } catch (...) {
        // The listener failed: close the server's handles before reporting.
        playback_.reset();
        auto *s = server_.release();
        s->close([s] { delete s; });
        throw;
    }
    log_.info("HTTP API listening on http://{}", server_->address());
    playback_->set_base("http://" + server_->address());
    start_tcp_api();
    if (transport && transport->embedded_tracker())
        transport->set_embedded_tracker_url("http://" + server_->address() + "/announce");
}

void StreamerEngine::start_tcp_api()
{
    const std::string &addr = ctx_.config->engine.tcp_api_address;
    if (addr.empty())
        return;
    auto hp = core::parse_host_port(addr, "engine.tcp_api_address");
    TcpApiHooks hooks;
    hooks.start = [this](const TcpApiHooks::Params &p, bool hls, TcpApiHooks::Done done) {
        if (playback_)
            playback_->start(p, hls, std::move(done));
        else
            done(nullptr, "the engine is stopping");
    };
    // The hooks outlive nothing: the TCP API closes before the playback,
    // but a client's last stop may come from its close callback.
    hooks.stat = [this](const std::string &id, const std::string &key) {
        return playback_ ? playback_->stat_of(id, key) : nlohmann::json(nullptr);
    };
    hooks.stop = [this](const std::string &id, const std::string &key) {
        if (playback_)
            playback_->stop(id, key);
    };
    hooks.media_files = [this](const TcpApiHooks::Params &p, TcpApiHooks::Done done) {
        if (playback_)
            playback_->media_files(p, std::move(done));
        else
            done(nullptr, "the engine is stopping");
    };
    hooks.liveseek = [this](const std::string &id, const std::string &key, const std::string &pos) {
        return playback_ ? playback_->liveseek(id, key, pos) : std::string("the engine is stopping");
    };
    hooks.http_port = server_->port();
    auto api = std::make_unique<TcpApi>(ctx_.loop, core::Logger(*ctx_.log, "tcp api"), std::move(hooks));
    try {
        api->listen(hp.host, hp.port);
    } catch (const Error &e) {
        // Port 62062 is often taken (an Ace Stream engine, a second OpenAce):
        // the HTTP API is the main one, the engine runs on without this.
        log_.warn("TCP API off: {}", e.what());
        auto *raw = api.release();
        raw->close([raw] { delete raw; });
        return;
    }
    tcp_api_ = std::move(api);
}

std::uint16_t StreamerEngine::tcp_api_port() const
{
    return tcp_api_ && running() ? tcp_api_->port() : 0;
}

void StreamerEngine::on_stop(std::function<void()> done)
{
    if (tcp_api_) { // its clients' sessions end with the playback below
        auto *raw = tcp_api_.release();
        raw->close([raw] { delete raw; });
    }
    playback_.reset(); // ends every stream and gives the sessions back
    if (!server_) {
        done();
        return;
    }
    auto *s = server_.release();
    s->close([s, done = std::move(done)] {
        delete s;
        done();
    });
}

void StreamerEngine::route(const std::string &path,
                           std::function<void(const net::HttpRequest &, const Res &)> fn, bool prefix)
{
    server_->route(path, [this, fn = std::move(fn)](const net::HttpRequest &req, Res res) {
        auto t0 = std::chrono::steady_clock::now();
        bool ok = true;
        try {
            fn(req, res);
        } catch (const Error &e) {
            ok = false;
            res->send(e.code() == Errc::INVAL ? 400 : 500, kJson,
                      json_text(nlohmann::json{{"error", e.what()}}));
        }
        record_operation(ok, std::chrono::duration<double, std::milli>(
                                 std::chrono::steady_clock::now() - t0)
                                 .count());
    }, prefix);
}

bool StreamerEngine::allow(const net::HttpRequest &req, net::HttpResponse &res)
{
    if (state() == engine::EngineState::Paused) {
        res.send(503, kJson, R"({"error":"the streamer engine is paused"})", {{"Retry-After", "5"}});
        return false;
    }
    if (req.from_loopback())
        return true;
    // The embedded tracker is for peers anywhere (transport.embedded_tracker).
    if (req.path == "/announce" && ctx_.config->transport.embedded_tracker)
        return true;
    std::string presented;
    if (auto t = req.param("token"))
        presented = *t;
    else if (auto *h = req.header("authorization"); h && h->rfind("Bearer ", 0) == 0)
        presented = h->substr(7);
    if (ctx_.config->engine.allow_remote_access && !presented.empty() && presented == token_)
        return true;
    ++denied_;
    log_.warn("deny access from {} to {}", req.peer_ip, req.path);
    res.send(403, kJson,
             json_text(nlohmann::json{{"error", fmt::format("access denied for {}: remote clients need "
                                                  "engine.allow_remote_access = true and the API "
                                                  "token",
                                                  req.peer_ip)}}));
    return false;
}

void StreamerEngine::service_api(const net::HttpRequest &req, const Res &res)
{
    // Ace format: {"result":…,"error":…}; JSONP with format=jsonp&callback=.
    auto method = req.param("method").value_or("");
    nlohmann::json body;
    int status = 200;
    if (method == "get_version") {
        body = {{"result",
                 {{"code", kAceApiVersionCode},
                  {"platform", "linux"},
                  {"version", kAceApiVersion},
                  {"openace_version", version_string()}}},
                {"error", nullptr}};
    } else {
        status = method.empty() ? 400 : 404;
        body = {{"result", nullptr},
                {"error", method.empty() ? std::string("missing parameter 'method'")
                                         : fmt::format("unknown method '{}'", method)}};
    }
    auto format = req.param("format").value_or("json");
    if (format == "jsonp") {
        auto cb = req.param("callback").value_or("");
        static const std::regex ident(R"([A-Za-z_$][A-Za-z0-9_$.]{0,127})");
        if (!std::regex_match(cb, ident)) {
            res->send(400, kJson,
                      R"({"result":null,"error":"parameter 'callback' must be a JavaScript identifier"})");
            return;
        }
        res->send(status, "application/javascript", cb + "(" + json_text(body) + ");");
        return;
    }
    res->send(status, kJson, json_text(body));
}

void StreamerEngine::api_logs(const net::HttpRequest &req, const Res &res)
{
    core::LogFilter filter;
    try {
        filter = core::parse_log_filter(req.query);
    } catch (const Error &e) {
        res->send(400, kJson, json_text(nlohmann::json{{"error", e.detail()}}));
        return;
    }
    res->send(200, kJson, core::query_logs(*ctx_.log, filter).dump(2));
}

} // namespace openace::streamer
