// GET /server/api?api_version=3&method=... (reference §2.8): the public
// methods players and add-ons call.
//
//   get_api_access_token           {"token": the API token} (loopback only)
//   get_status                     {"playlist_loaded", "version", "peers",
//                                   "speed_down", "speed_up", "sessions"}
//   get_network_connection_status  {"connected": the P2P port is bound}
//   get_media_files                content_id|infohash|url|magnet|data ->
//                                  {"infohash","name","type","transport_type","files":[…]}
//   get_content_id                 infohash|url|magnet|data -> {"content_id"}
//
// Answers {"result": …, "error": null} or {"result": null, "error":
// {"code": 0, "message": "…"}} (the form Ace's server/api errors take).
// Loop thread only.
#pragma once

#include "net/http_server.hpp"

#include <memory>
#include <string>

namespace openace::engine {
struct EngineContext;
}

namespace openace::streamer {

class Playback;

void server_api(engine::EngineContext &ctx, Playback &playback, const std::string &token,
                const net::HttpRequest &req, const std::shared_ptr<net::HttpResponse> &res);

} // namespace openace::streamer
