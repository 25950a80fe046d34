// StreamerEngine (DESIGN §2): the HTTP/1.1 API on engine.http_address and
// the old Ace TCP API on engine.tcp_api_address (tcp_api.hpp).  The
// foundation serves the Ace Stream get_version call, /metrics, /api/stats and
// /api/logs; playback.hpp the Ace playback calls for live streams
// (/ace/getstream, /ace/r/, /ace/stat/, /ace/cmd/).
#pragma once

#include "engine/sub_engine.hpp"
#include "net/http_server.hpp"
#include "streamer/playback.hpp"

#include <memory>
#include <string>

namespace openace::streamer {

class TcpApi;

class StreamerEngine : public engine::SubEngine {
public:
    explicit StreamerEngine(engine::EngineContext &ctx);
    ~StreamerEngine() override;

    // "127.0.0.1:6878" while running, else empty.
    std::string address() const;
    // The TCP API's bound port (engine.tcp_api_address), 0 when off.
    std::uint16_t tcp_api_port() const;
    size_t memory_bytes() const override;
    nlohmann::json http_stats() const;

protected:
    void on_start() override;
    void on_stop(std::function<void()> done) override;
    nlohmann::json details() const override;

private:
    using Res = std::shared_ptr<net::HttpResponse>;
    bool allow(const net::HttpRequest &req, net::HttpResponse &res);
    void route(const std::string &path, std::function<void(const net::HttpRequest &, const Res &)> fn,
               bool prefix = false);
    void service_api(const net::HttpRequest &req, const Res &res);
    void start_tcp_api();
    void api_logs(const net::HttpRequest &req, const Res &res);

    std::unique_ptr<net::HttpServer> server_;
    std::unique_ptr<Playback> playback_;
    std::unique_ptr<TcpApi> tcp_api_;
    std::string token_;
    uint64_t denied_ = 0;
};

} // namespace openace::streamer
