// The "play" job: streams one file of a torrent, in order, to a file or to
// standard output while the torrent downloads (DESIGN §4, §5).
//
//   {"type":"play", "infohash":"<40 hex>" | "magnet":"magnet:?..." | "torrent":"file.torrent",
//    "file_index":N (default: the largest file), "output":"path" | "-",
//    "peers":["host:port",...]?, "trackers":["url",...]?}
//
// Progress events carry "state" (resolving -> prebuffering -> playing ->
// done), peers, rates, bytes and the buffer.  Loop thread only.
#pragma once

#include "engine/job.hpp"
#include "transport/magnet.hpp"
#include "transport/peer_address.hpp"

#include <nlohmann/json.hpp>
#include <uv.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace openace::transport {

class TransportEngine;
class Torrent;

class PlayJob : public std::enable_shared_from_this<PlayJob> {
public:
    // Throws Error(JOB, "transport", "play", "field 'x': ...") naming the field.
    static void validate(const nlohmann::json &spec);

    PlayJob(TransportEngine &engine, engine::JobPtr job);
    ~PlayJob();
    PlayJob(const PlayJob &) = delete;
    PlayJob &operator=(const PlayJob &) = delete;

    void start();
    void cancel();
    nlohmann::json status() const;

private:
    struct Output;
    static void on_tick(uv_timer_t *t);
    void metadata_ready();
    void read_next();
    void write(std::string data);
    void written(std::size_t n, int status);
    void report();
    void set_state(const char *s);
    void end(const std::exception_ptr &error);
    // Closes the reader and gives the torrent back (once; the job has ended).
    void detach();

    TransportEngine &engine_;
    engine::JobPtr job_;
    InfoHash ih_{};
    Torrent *torrent_ = nullptr;
    int reader_ = 0;
    int file_index_ = -1;
    std::int64_t file_begin_ = 0, file_size_ = 0, written_ = 0;
    std::string output_path_;
    std::shared_ptr<Output> out_;
    bool writing_ = false, reading_ = false, ended_ = false, eof_ = false;
    const char *state_ = "resolving";
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    double first_byte_s_ = -1;
    uv_timer_t *tick_ = nullptr;
};

} // namespace openace::transport
