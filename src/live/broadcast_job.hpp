// The "broadcast" job (docs/protocol.md §1-2): a source → chunks (the
// SegmenterEngine's media thread) → signed live pieces → the swarm.
//
//   {"type":"broadcast", "source":"file|URL|lavfi:<graph>", "name":str?,
//    "piece_duration":s?, "ladder":[one rung]?, "trackers":[url]?,
//    "peers":["host:port"]?, "realtime":bool? (true), "loop":bool? (false),
//    "key":"key.pem"?, "save":"file.acelive"?}
//
// The descriptor's creation time is kept in state_dir/live/ per name, key
// and piece duration, so a restarted broadcast keeps its content id.
// Progress events (about 1 s apart, the first at once) carry state
// (starting → live), content_id, link, descriptor, pieces, newest, peers,
// uploaded, upload_rate and stream_rate.  The job runs until cancelled or
// until the source ends (finished) or fails for good (failed with the
// source's error).  Loop thread only.
#pragma once

#include "live/live_job.hpp"
#include "live/live_piece.hpp"
#include "media/chunk.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace openace::live {

class BroadcastJob : public LiveJob {
public:
    // Throws Error(JOB, "job", "validate", "field 'x': ...") naming the field.
    static void validate(const nlohmann::json &spec);

    using LiveJob::LiveJob;
    ~BroadcastJob() override;

    void start() override;
    nlohmann::json status() const override;

private:
    void on_chunk(media::Chunk c);
    void on_feed_end(nlohmann::json result, std::exception_ptr error);
    void release() override; // stops the feed

    std::string descriptor_path_;
    double piece_duration_ = 1.0;
    std::uint16_t listen_port_ = 0;
    std::optional<LiveSigner> signer_;
    bool feeding_ = false;
    std::uint64_t first_seq_ = 0, pieces_ = 0, bytes_ = 0;
    std::optional<std::uint64_t> newest_;
    std::chrono::steady_clock::time_point first_piece_{};
};

} // namespace openace::live
