#include "streamer/server_api.hpp"

#include "engine/engine_manager.hpp"
#include "streamer/ace_compat.hpp"
#include "streamer/playback.hpp"
#include "transport/transport_engine.hpp"

namespace openace::streamer {

namespace {

using Res = std::shared_ptr<net::HttpResponse>;

void result(const Res &res, nlohmann::json r)
{
    res->send(200, "application/json", json_text(nlohmann::json{{"result", std::move(r)}, {"error", nullptr}}));
}

void failure(const Res &res, int status, const std::string &message)
{
    res->send(status, "application/json",
              json_text(nlohmann::json{{"result", nullptr}, {"error", {{"code", 0}, {"message", message}}}}));
}

} // namespace

void server_api(engine::EngineContext &ctx, Playback &playback, const std::string &token,
                const net::HttpRequest &req, const Res &res)
{
    const std::string method = req.param("method").value_or("");
    auto *transport = dynamic_cast<transport::TransportEngine *>(ctx.manager->find("transport"));
    if (method == "get_api_access_token") {
        if (!req.from_loopback()) {
            failure(res, 403, "access denied: get_api_access_token answers local clients only");
            return;
        }
        result(res, {{"token", token}});
    } else if (method == "get_status") {
        nlohmann::json pb = playback.status();
        std::int64_t peers = 0, down = 0, up = 0; // torrents' (live sessions report in their stat)
        if (transport && transport->running()) {
            auto t = transport->totals();
            peers = static_cast<std::int64_t>(t.peers);
            down = static_cast<std::int64_t>(t.download_rate / 1024);
            up = static_cast<std::int64_t>(t.upload_rate / 1024);
        }
        result(res, {{"playlist_loaded", true},
                     {"version", {{"code", kAceApiVersionCode}, {"platform", "linux"}, {"version", kAceApiVersion}}},
                     {"peers", peers},
                     {"speed_down", down},
                     {"speed_up", up},
                     {"sessions", pb["sessions"].size()}});
    } else if (method == "get_network_connection_status") {
        result(res, {{"connected", transport && transport->running() && transport->listen_port() != 0}});
    } else if (method == "get_media_files" || method == "get_content_id") {
        const bool content_id = method == "get_content_id";
        playback.media_files(params_of(req.query), [res, content_id, &playback](const nlohmann::json &r,
                                                                            const std::string &error) {
            if (!error.empty()) {
                failure(res, 400, error);
                return;
            }
            if (!content_id) {
                result(res, r);
                return;
            }
            // A live stream's content id is its swarm id; a torrent's is its
            // infohash, which content_id= then plays (remembered here).
            const std::string id = r["infohash"].get<std::string>();
            if (r["type"] == "vod")
                playback.remember_torrent(id);
            result(res, {{"content_id", id}});
        });
    } else {
        failure(res, method.empty() ? 400 : 404,
                method.empty() ? std::string("missing parameter 'method'")
                               : fmt::format("unknown method '{}' (supported: get_api_access_token, get_status, "
                                             "get_network_connection_status, get_media_files, get_content_id)",
                                             method.substr(0, 64)));
    }
}

} // namespace openace::streamer
