#include "engine/job_queue.hpp"

#include "core/error.hpp"
#include "engine/engine_manager.hpp"

#include <algorithm>
#include <chrono>

namespace openace::engine {

namespace {

constexpr size_t kMaxJobJsonBytes = 1u << 20;
constexpr size_t kFinishedMemory = 4096;

int64_t now_ms()
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

const char *json_type_name(const nlohmann::json &v)
{
    return v.type_name();
}

} // namespace

const char *to_string(JobState s) noexcept
{
    switch (s) {
    case JobState::Queued: return "queued";
    case JobState::Running: return "running";
    case JobState::Done: return "done";
    case JobState::Failed: return "failed";
    case JobState::Cancelled: return "cancelled";
    }
    return "unknown";
}

JobQueue::JobQueue(EngineContext &ctx, EventQueue &events, size_t max_active)
    : ctx_(ctx), events_(events), max_active_(max_active ? max_active : 1), log_(*ctx.log, "job")
{
}

int64_t JobQueue::submit(std::string_view text)
{
    auto reject = [&](Errc code, const std::string &detail) -> int64_t {
        ++rejected_;
        log_.warn("rejected job: {}", detail);
        throw Error(code, "job", "submit", detail);
    };
    if (text.size() > kMaxJobJsonBytes)
        return reject(Errc::JOB, fmt::format("job JSON is {} bytes, the limit is {}", text.size(),
                                              kMaxJobJsonBytes));
    nlohmann::json spec;
    try {
        spec = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error &e) {
        // e.byte is the position the parser stopped at.
        return reject(Errc::PARSE, fmt::format("job is not valid JSON (at byte {}): {}", e.byte,
                                                e.what()));
    }
    if (!spec.is_object())
        return reject(Errc::JOB, fmt::format("job must be a JSON object, got {}", json_type_name(spec)));
    auto type_it = spec.find("type");
    if (type_it == spec.end())
        return reject(Errc::JOB, "field 'type' is missing");
    if (!type_it->is_string())
        return reject(Errc::JOB, fmt::format("field 'type': expected a string, got {}",
                                              json_type_name(*type_it)));
    std::string type = type_it->get<std::string>();
    int priority = 0;
    if (auto p = spec.find("priority"); p != spec.end()) {
        if (!p->is_number_integer())
            return reject(Errc::JOB, fmt::format("field 'priority': expected an integer, got {}",
                                                  json_type_name(*p)));
        auto v = p->get<int64_t>();
        if (v < -1000 || v > 1000)
            return reject(Errc::JOB, fmt::format("field 'priority': {} is outside -1000..1000", v));
        priority = int(v);
    }
    SubEngine *owner = ctx_.manager->owner_of(type, spec);
    if (!owner) {
        std::string known;
        for (auto &t : ctx_.manager->job_types())
            known += (known.empty() ? "" : ", ") + t;
        return reject(Errc::JOB, fmt::format("field 'type': unknown job type '{}' (known: {})",
                                              type, known));
    }
    try {
        owner->validate_job(spec);
    } catch (const Error &e) {
        return reject(e.code(), e.detail());
    }
    if (!events_.reserve())
        return reject(Errc::BUSY, "the event queue is full of undelivered final events; "
                                   "read events with wait_event before submitting more jobs");

    auto job = std::make_shared<Job>();
    job->id = next_id_++;
    job->type = std::move(type);
    job->priority = priority;
    job->order = next_order_++;
    job->spec = std::move(spec);
    job->owner = owner;
    job->submitted_ms = now_ms();
    ++submitted_;
    queued_.push_back(job);
    log_.with_job(job->id).debug("queued {} job (priority {})", job->type, job->priority);
    emit_state(job, {{"priority", job->priority}});
    // Dispatch after the caller learns the id: a job never starts inside submit.
    ctx_.manager->post_dispatch();
    return job->id;
}

void JobQueue::emit_state(const JobPtr &job, nlohmann::json extra)
{
    nlohmann::json j = {{"job_id", job->id}, {"type", job->type}, {"state", to_string(job->state)}};
    j.update(extra);
    Event ev;
    ev.id = OPENACE_EVENT_JOB_STATE;
    ev.job_id = job->id;
    ev.final = is_final(job->state);
    if (job->state == JobState::Failed && j.contains("error"))
        ev.error = j["error"].value("code", int(Errc::INTERNAL));
    if (job->state == JobState::Cancelled)
        ev.error = int(Errc::CANCELLED);
    ev.json = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    events_.push(std::move(ev), ev.final ? EventClass::Final : EventClass::Normal);
}

void JobQueue::dispatch()
{
    while (running_.size() < max_active_) {
        auto best = queued_.end();
        for (auto it = queued_.begin(); it != queued_.end(); ++it) {
            if (!(*it)->owner->running())
                continue;
            if (best == queued_.end() || (*it)->priority > (*best)->priority ||
                ((*it)->priority == (*best)->priority && (*it)->order < (*best)->order))
                best = it;
        }
        if (best == queued_.end())
            return;
        JobPtr job = *best;
        queued_.erase(best);
        job->state = JobState::Running;
        job->started_ms = now_ms();
        running_[job->id] = job;
        log_.with_job(job->id).info("running {} job on engine '{}'", job->type, job->owner->name());
        emit_state(job, {{"engine", job->owner->name()}});
        try {
            job->owner->run_job(job);
        } catch (const Error &e) {
            fail(job, e);
        } catch (const std::exception &e) {
            fail(job, Error(Errc::INTERNAL, job->owner->name(), job->type, e.what()));
        }
    }
}

void JobQueue::progress(const JobPtr &job, nlohmann::json data)
{
    if (job->state != JobState::Running)
        return;
    Event ev;
    ev.id = OPENACE_EVENT_JOB_PROGRESS;
    ev.job_id = job->id;
    ev.json = nlohmann::json{{"job_id", job->id}, {"type", job->type}, {"progress", std::move(data)}}
                  .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    events_.push(std::move(ev), EventClass::Droppable);
}

void JobQueue::end(const JobPtr &job, JobState state, nlohmann::json extra)
{
    bool was_running = job->state == JobState::Running;
    job->state = state;
    job->finished_ms = now_ms();
    running_.erase(job->id);
    std::erase(queued_, job);
    if (was_running && job->owner)
        job->owner->record_operation(state == JobState::Done,
                                     double(job->finished_ms - job->started_ms));
    extra["elapsed_ms"] = job->finished_ms - job->submitted_ms;
    emit_state(job, std::move(extra));
    remember_finished(job);
    job->on_cancel = nullptr; // break cycles the engine's closure may hold
    ctx_.manager->post_dispatch();
}

// An engine may report an end twice (cancel racing completion): the first wins.
void JobQueue::finish(const JobPtr &job, nlohmann::json result)
{
    if (is_final(job->state))
        return;
    ++done_;
    log_.with_job(job->id).info("{} job done", job->type);
    end(job, JobState::Done, {{"result", std::move(result)}});
}

void JobQueue::fail(const JobPtr &job, const Error &err)
{
    if (is_final(job->state))
        return;
    ++failed_;
    log_.with_job(job->id).error("{} job failed: {}", job->type, err.what());
    end(job, JobState::Failed,
        {{"error",
          {{"code", int(err.code())},
           {"name", error_name(err.code())},
           {"message", err.what()},
           {"component", err.component()},
           {"operation", err.operation()}}}});
}

void JobQueue::cancelled(const JobPtr &job)
{
    if (is_final(job->state))
        return;
    ++cancelled_;
    log_.with_job(job->id).info("{} job cancelled", job->type);
    end(job, JobState::Cancelled, nlohmann::json::object());
}

void JobQueue::cancel(int64_t id)
{
    if (auto f = finished_.find(id); f != finished_.end())
        throw_errorf(Errc::STATE, "job", "cancel", "job {} has already ended ({})", id,
                     to_string(f->second));
    if (auto r = running_.find(id); r != running_.end()) {
        JobPtr job = r->second;
        if (job->cancel_requested)
            return;
        job->cancel_requested = true;
        if (job->on_cancel)
            job->on_cancel(); // the engine ends the job (now or when its work unwinds)
        else
            cancelled(job);
        return;
    }
    for (auto &job : queued_) {
        if (job->id == id) {
            JobPtr keep = job;
            cancelled(keep);
            return;
        }
    }
    throw_errorf(Errc::NOTFOUND, "job", "cancel", "no job with id {}", id);
}

void JobQueue::engine_stopping(SubEngine &engine)
{
    std::vector<JobPtr> victims;
    for (auto &[id, job] : running_)
        if (job->owner == &engine)
            victims.push_back(job);
    for (auto &job : victims) {
        job->cancel_requested = true;
        if (job->on_cancel)
            job->on_cancel();
        fail(job, Error(Errc::STATE, engine.name(), "stop",
                        fmt::format("engine '{}' stopped while the job was running", engine.name())));
    }
}

void JobQueue::cancel_all()
{
    std::vector<JobPtr> all(queued_.begin(), queued_.end());
    for (auto &[id, job] : running_)
        all.push_back(job);
    for (auto &job : all) {
        job->cancel_requested = true;
        if (job->state == JobState::Running && job->on_cancel)
            job->on_cancel();
        cancelled(job);
    }
}

void JobQueue::remember_finished(const JobPtr &job)
{
    finished_[job->id] = job->state;
    finished_order_.push_back(job->id);
    while (finished_order_.size() > kFinishedMemory) {
        finished_.erase(finished_order_.front());
        finished_order_.pop_front();
    }
}

nlohmann::json JobQueue::stats_json() const
{
    return {{"submitted", submitted_}, {"queued", queued_.size()}, {"running", running_.size()},
            {"done", done_},           {"failed", failed_},        {"cancelled", cancelled_},
            {"rejected", rejected_},   {"max_active", max_active_}};
}

} // namespace openace::engine
