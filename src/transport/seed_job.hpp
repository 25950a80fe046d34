// The "seed" job: builds a torrent from a file or directory (piece size
// chosen from the total, hashing on the libuv thread pool with progress) and
// seeds it until cancelled (DESIGN §4, §5).
//
//   {"type":"seed", "path":"file-or-dir", "trackers":["url",...]?,
//    "piece_length":N?, "save_torrent":"out.torrent"?}
//
// Once hashed, a progress event with "state":"seeding", "infohash" and
// "magnet"; later ones carry peers, rates and bytes uploaded.
#pragma once

#include "core/error.hpp"
#include "engine/job.hpp"
#include "transport/magnet.hpp"

#include <nlohmann/json.hpp>
#include <uv.h>

#include <memory>
#include <string>

namespace openace::transport {

class TransportEngine;
class Torrent;

class SeedJob : public std::enable_shared_from_this<SeedJob> {
public:
    // Throws Error(JOB, "job", "validate", "field 'x': ...").
    static void validate(const nlohmann::json &spec);

    SeedJob(TransportEngine &engine, engine::JobPtr job);
    ~SeedJob();
    SeedJob(const SeedJob &) = delete;
    SeedJob &operator=(const SeedJob &) = delete;

    void start();
    void cancel();

private:
    struct Build;
    static void on_tick(uv_timer_t *t);
    void built(Build &b);
    void report();
    void fail(const Error &e);
    // Stops hashing and gives the torrent back (once; the job has ended).
    void detach();

    TransportEngine &engine_;
    engine::JobPtr job_;
    std::shared_ptr<Build> build_;
    InfoHash ih_{};
    Torrent *torrent_ = nullptr;
    std::string magnet_;
    bool ended_ = false;
    uv_timer_t *tick_ = nullptr;
};

} // namespace openace::transport
