// LiveEngine (DESIGN §2): live broadcasts and viewers (docs/protocol.md).
// Owns the job types "broadcast" (broadcast_job.cpp), "play" of a live
// stream — a content id, an acestream:// link or a descriptor file
// (live_play_job.cpp) — and "chat":
//
//   {"type":"chat", "content_id":"<40 hex>|acestream://...", "text":"..."}
//
// which sends one line, signed with the engine's identity key, into the
// swarm of a broadcast this engine plays or broadcasts now (Error(STATE)
// otherwise); it finishes at once with {"sent":true,"peers":n}.  Lines
// received show in the play/broadcast jobs' progress ("chat": [...]).  It shares one LiveSwarm per content id between the
// jobs that use it and registers each with the TransportEngine, whose
// listener hands it the incoming connections that name its content id.
// Loop thread only.
#pragma once

#include "engine/job_queue.hpp"
#include "engine/sub_engine.hpp"
#include "live/live_chat.hpp"
#include "live/live_descriptor.hpp"

#include <map>
#include <memory>
#include <set>

namespace openace::transport {
class TransportEngine;
}
namespace openace::media {
class SegmenterEngine;
}

namespace openace::live {

class LiveSwarm;
class LiveJob;

class LiveEngine : public engine::SubEngine {
public:
    explicit LiveEngine(engine::EngineContext &ctx);
    ~LiveEngine() override;

    bool owns_job(std::string_view type) const override;
    bool owns_job(std::string_view type, const nlohmann::json &spec) const override;
    void validate_job(const nlohmann::json &spec) const override;
    void run_job(const engine::JobPtr &job) override;

    // A shared session for `id`, created (and started) on first use.  Every
    // acquire is paired with a release; the last release stops it.
    LiveSwarm &acquire(const ContentId &id);
    void release(const ContentId &id);
    // The session of `id` if one exists now (a broadcast or a viewer here),
    // else null.  Not a reference: acquire() for that.
    const LiveSwarm *find(const ContentId &id) const
    {
        auto it = swarms_.find(id);
        return it == swarms_.end() ? nullptr : it->second.swarm.get();
    }
    // The content id of running job `job_id` (a broadcast or live play) once
    // its session exists; nullopt otherwise.
    std::optional<ContentId> job_content_id(std::int64_t job_id) const;

    transport::TransportEngine &transport() const;
    media::SegmenterEngine &segmenter() const;
    engine::JobQueue &jobs() const;
    const core::Config &config() const { return *ctx_.config; }
    uv_loop_t *loop() const { return ctx_.loop; }
    const core::Logger &logger() const { return log_; }
    // Called by the jobs when they end (loop thread).
    void job_ended(std::int64_t job_id);

    size_t memory_bytes() const override;

protected:
    void on_stop(std::function<void()> done) override;
    nlohmann::json details() const override;

private:
    void run_chat(const engine::JobPtr &job);

    struct Entry {
        std::unique_ptr<LiveSwarm> swarm;
        int refs = 0;
    };
    std::map<ContentId, Entry> swarms_;
    std::set<std::shared_ptr<LiveSwarm>> stopping_;
    std::function<void()> stop_done_; // on_stop waits for stopping_ to empty
    std::map<std::int64_t, std::shared_ptr<LiveJob>> jobs_; // broadcasts and plays
    std::unique_ptr<ChatSigner> chat_signer_; // the identity key, parsed on first use
};

} // namespace openace::live
