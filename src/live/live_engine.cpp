#include "live/live_engine.hpp"

#include "core/error.hpp"
#include "engine/engine_manager.hpp"
#include "engine/job_fields.hpp"
#include "live/broadcast_job.hpp"
#include "live/live_play_job.hpp"
#include "live/live_swarm.hpp"
#include "media/segmenter_engine.hpp"
#include "net/uv_handle.hpp"
#include "transport/identity.hpp"
#include "transport/transport_engine.hpp"

namespace openace::live {

LiveEngine::LiveEngine(engine::EngineContext &ctx)
    : SubEngine(ctx, "live", {"segmenter", "transport"})
{
}

LiveEngine::~LiveEngine() = default;

bool LiveEngine::owns_job(std::string_view type) const
{
    return type == "broadcast" || type == "chat";
}

bool LiveEngine::owns_job(std::string_view type, const nlohmann::json &spec) const
{
    return owns_job(type) || (type == "play" && engine::fields::is_live_play(spec));
}

void LiveEngine::validate_job(const nlohmann::json &spec) const
{
    const std::string type = spec.value("type", "");
    if (type == "broadcast") {
        BroadcastJob::validate(spec);
    } else if (type == "chat") {
        for (auto it = spec.begin(); it != spec.end(); ++it) {
            const std::string &key = it.key();
            if (key == "type" || key == "priority")
                continue;
            if (key == "content_id") {
                try {
                    parse_content_id(it.value().is_string() ? it.value().get<std::string>() : std::string());
                } catch (const Error &e) {
                    engine::fields::bad(key, e.detail());
                }
            } else if (key == "text") {
                const auto &v = it.value();
                if (!v.is_string() || v.get_ref<const std::string &>().empty() ||
                    v.get_ref<const std::string &>().size() > transport::wire::kMaxChatText ||
                    !transport::wire::valid_utf8(v.get_ref<const std::string &>()))
                    engine::fields::bad(key, fmt::format("expected UTF-8 text of 1..{} bytes",
                                                         transport::wire::kMaxChatText));
            } else {
                engine::fields::bad(key, "unknown field for a chat job (known: type, content_id, text, priority)");
            }
        }
        for (const char *key : {"content_id", "text"})
            if (!spec.contains(key))
                engine::fields::bad(key, "missing");
    } else {
        LivePlayJob::validate(spec);
    }
}

void LiveEngine::run_chat(const engine::JobPtr &job)
{
    const ContentId id = parse_content_id(job->spec["content_id"].get<std::string>());
    auto it = swarms_.find(id);
    if (it == swarms_.end())
        throw_errorf(Errc::STATE, "live", "chat", "no live session for {}: play or broadcast it first", to_hex(id));
    if (!chat_signer_) {
        const transport::Identity *identity = transport().identity();
        if (!identity)
            throw_error(Errc::STATE, "live", "chat", "no identity key to sign with (set engine.state_dir)");
        chat_signer_ = std::make_unique<ChatSigner>(identity->key_pem);
    }
    it->second.swarm->send_chat(*chat_signer_, job->spec["text"].get<std::string>());
    jobs().finish(job, {{"sent", true}, {"peers", it->second.swarm->peer_count()}});
}

void LiveEngine::run_job(const engine::JobPtr &job)
{
    if (!running())
        throw_error(Errc::STATE, "live", job->type, "the live engine is not running");
    if (job->type == "chat") {
        run_chat(job);
        return;
    }
    std::shared_ptr<LiveJob> j;
    if (job->type == "broadcast")
        j = std::make_shared<BroadcastJob>(*this, job);
    else
        j = std::make_shared<LivePlayJob>(*this, job);
    jobs_[job->id] = j;
    try {
        j->start();
    } catch (...) {
        jobs_.erase(job->id);
        throw;
    }
}

void LiveEngine::job_ended(std::int64_t job_id)
{
    // Destroyed on the next loop turn: the job may still be on the stack.
    auto it = jobs_.find(job_id);
    if (it == jobs_.end())
        return;
    std::shared_ptr<LiveJob> keep = std::move(it->second);
    jobs_.erase(it);
    net::run_soon(ctx_.loop, [keep = std::move(keep)]() mutable { keep.reset(); });
}

transport::TransportEngine &LiveEngine::transport() const
{
    auto *t = dynamic_cast<transport::TransportEngine *>(ctx_.manager->find("transport"));
    if (!t || !t->running())
        throw_error(Errc::STATE, "live", "transport", "the transport engine is not running");
    return *t;
}

media::SegmenterEngine &LiveEngine::segmenter() const
{
    auto *s = dynamic_cast<media::SegmenterEngine *>(ctx_.manager->find("segmenter"));
    if (!s || !s->running())
        throw_error(Errc::STATE, "live", "segmenter", "the segmenter engine is not running");
    return *s;
}

engine::JobQueue &LiveEngine::jobs() const
{
    return ctx_.manager->jobs();
}

LiveSwarm &LiveEngine::acquire(const ContentId &id)
{
    auto it = swarms_.find(id);
    if (it == swarms_.end()) {
        transport::TransportEngine &t = transport();
        Entry e;
        e.swarm = std::make_unique<LiveSwarm>(t.context(), log_, id);
        LiveSwarm *raw = e.swarm.get();
        t.register_swarm(id, [raw](transport::PeerConnection *c) { raw->attach(c); });
        it = swarms_.emplace(id, std::move(e)).first;
    }
    ++it->second.refs;
    return *it->second.swarm;
}

std::optional<ContentId> LiveEngine::job_content_id(std::int64_t job_id) const
{
    auto it = jobs_.find(job_id);
    if (it == jobs_.end() || !it->second->swarm())
        return std::nullopt;
    return it->second->swarm()->content_id();
}

void LiveEngine::release(const ContentId &id)
{
    auto it = swarms_.find(id);
    if (it == swarms_.end() || --it->second.refs > 0)
        return;
    std::shared_ptr<LiveSwarm> s(std::move(it->second.swarm));
    swarms_.erase(it);
    if (auto *t = dynamic_cast<transport::TransportEngine *>(ctx_.manager->find("transport")))
        t->unregister_swarm(id);
    stopping_.insert(s);
    s->stop([this, raw = s.get()] {
        for (auto i = stopping_.begin(); i != stopping_.end(); ++i)
            if (i->get() == raw) {
                // Not from inside the session's own callback stack.
                std::shared_ptr<LiveSwarm> dying = *i;
                stopping_.erase(i);
                auto done = stopping_.empty() ? std::move(stop_done_) : nullptr;
                stop_done_ = nullptr;
                net::run_soon(ctx_.loop, [dying, done]() mutable {
                    dying.reset();
                    if (done)
                        done();
                });
                return;
            }
    });
}

void LiveEngine::on_stop(std::function<void()> done)
{
    for (auto &[id, j] : std::map(jobs_))
        j->cancel();
    // Every job released its session; wait for their goodbyes to trackers
    // (bounded: Announcer::stop ends within 2 s).
    if (stopping_.empty())
        done();
    else
        stop_done_ = std::move(done);
}

size_t LiveEngine::memory_bytes() const
{
    size_t n = 0;
    for (auto &[id, e] : swarms_)
        n += e.swarm->memory_bytes();
    return n;
}

nlohmann::json LiveEngine::details() const
{
    nlohmann::json sessions = nlohmann::json::array();
    for (auto &[id, e] : swarms_)
        sessions.push_back(e.swarm->status());
    return {{"window_seconds", ctx_.config->live.window_seconds},
            {"jobs", jobs_.size()},
            {"sessions", std::move(sessions)}};
}

} // namespace openace::live
