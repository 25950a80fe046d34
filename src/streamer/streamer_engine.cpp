#include "streamer/streamer_engine.hpp"

#include "core/error.hpp"
#include "core/log_query.hpp"
#include "engine/engine_manager.hpp"
#include "transport/embedded_tracker.hpp"
#include "transport/transport_engine.hpp"
#include "streamer/ace_compat.hpp"
#include "streamer/metrics.hpp"

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

bool is_loopback(const std::string &ip)
{
    return ip.rfind("127.", 0) == 0 || ip == "::1" || ip.rfind("::ffff:127.", 0) == 0;
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
    route("/ace/getstream", [this](auto &req, auto &res) { playback_->getstream(req, res, "http://" + address()); });
    route("/ace/r/", [this](auto &req, auto &res) { playback_->stream(req, res); }, true);
    route("/ace/stat/", [this](auto &req, auto &res) { playback_->stat(req, res); }, true);
    route("/ace/cmd/", [this](auto &req, auto &res) { playback_->cmd(req, res); }, true);
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
    if (transport && transport->embedded_tracker())
        transport->set_embedded_tracker_url("http://" + server_->address() + "/announce");
}

void StreamerEngine::on_stop(std::function<void()> done)
{
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
                      nlohmann::json{{"error", e.what()}}.dump());
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
    if (is_loopback(req.peer_ip))
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
             nlohmann::json{{"error", fmt::format("access denied for {}: remote clients need "
                                                  "engine.allow_remote_access = true and the API "
                                                  "token",
                                                  req.peer_ip)}}
                 .dump());
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
        res->send(status, "application/javascript", cb + "(" + body.dump() + ");");
        return;
    }
    res->send(status, kJson, body.dump());
}

void StreamerEngine::api_logs(const net::HttpRequest &req, const Res &res)
{
    core::LogFilter filter;
    try {
        filter = core::parse_log_filter(req.query);
    } catch (const Error &e) {
        res->send(400, kJson, nlohmann::json{{"error", e.detail()}}.dump());
        return;
    }
    res->send(200, kJson, core::query_logs(*ctx_.log, filter).dump(2));
}

} // namespace openace::streamer
