// The "play" job of a live stream (docs/protocol.md §4): resolves the
// descriptor (from a file or from peers), joins the swarm behind the live
// edge and writes one continuous MPEG-TS stream to a file or "-".
//
//   {"type":"play", "content_id":"<40 hex>" | "acestream://<40 hex>" |
//    "acestream:?content_id=<40 hex>"  or  "descriptor":"file.acelive",
//    "output":"path" | "-", "trackers":[url]?, "peers":["host:port"]?}
//
// Progress events (about 1 s apart) carry state (resolving → joining →
// playing), peers, rates, buffer_s, lag_s, position, newest, pieces
// written / skipped / late, bytes written / from the broadcaster / from
// peers, uploaded, startup_s, lag_p50_s, lag_p95_s and bans.  The job runs
// until cancelled, or fails when the output cannot be written.
// Loop thread only.
#pragma once

#include "live/live_job.hpp"
#include "live/live_swarm.hpp"
#include "net/file_writer.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>

namespace openace::live {

class LivePlayJob : public LiveJob {
public:
    // Throws Error(JOB, "job", "validate", "field 'x': ...") naming the field.
    static void validate(const nlohmann::json &spec);

    using LiveJob::LiveJob;
    ~LivePlayJob() override;

    void start() override;
    nlohmann::json status() const override;

private:
    void on_piece(const LiveSwarm::PieceRef &piece, bool discontinuity);
    void release() override; // leaves the session's in-order stream

    int subscription_ = 0;
    std::unique_ptr<net::FileWriter> out_;
    std::string output_path_;
    using clock = std::chrono::steady_clock;
    clock::time_point started_ = clock::now();
    std::optional<double> startup_s_;
    // The viewer's playout clock: piece p is due at play_origin_ + (its
    // timestamp - the first piece's) + stalls so far.
    clock::time_point play_origin_{};
    std::int64_t first_ts_ = 0;
    clock::duration stalled_{};
    std::uint64_t written_pieces_ = 0, late_pieces_ = 0;
    std::deque<double> lags_; // seconds, the last 10000 pieces
    double last_lag_ = 0;
};

} // namespace openace::live
