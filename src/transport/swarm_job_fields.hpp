// The fields every job that joins a swarm takes (play, broadcast, live
// play): "trackers" (announce URLs) and "peers" ("host:port" to dial), and
// the lists they make together with transport.trackers / transport.peers.
#pragma once

#include "core/config.hpp"
#include "engine/job_fields.hpp"
#include "transport/peer_address.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace openace::transport::fields {

// Checks "trackers" / "peers" and returns true; false for other keys.
// Errors: Error(JOB, "job", "validate", "field 'peers': ...").
inline bool check_swarm_field(const std::string &key, const nlohmann::json &value)
{
    if (key == "trackers") {
        engine::fields::check_string_array(key, value, "tracker URLs");
        return true;
    }
    if (key != "peers")
        return false;
    engine::fields::check_string_array(key, value, "\"host:port\" strings");
    for (const auto &p : value) {
        try {
            parse_peer_address(p.get<std::string>());
        } catch (const Error &e) {
            engine::fields::bad(key, e.detail());
        }
    }
    return true;
}

// transport.trackers, then the job's.
inline std::vector<std::string> swarm_trackers(const nlohmann::json &spec, const core::Config &cfg)
{
    std::vector<std::string> out = cfg.transport.trackers;
    if (auto it = spec.find("trackers"); it != spec.end())
        for (const auto &t : *it)
            out.push_back(t.get<std::string>());
    return out;
}

// transport.peers, then the job's (both checked before).
inline std::vector<PeerAddress> swarm_peers(const nlohmann::json &spec, const core::Config &cfg)
{
    std::vector<PeerAddress> out;
    for (const auto &p : cfg.transport.peers)
        out.push_back(parse_peer_address(p));
    if (auto it = spec.find("peers"); it != spec.end())
        for (const auto &p : *it)
            out.push_back(parse_peer_address(p.get<std::string>()));
    return out;
}

} // namespace openace::transport::fields
