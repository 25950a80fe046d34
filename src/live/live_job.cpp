#include "live/live_job.hpp"

#include "live/live_chat.hpp"
#include "live/live_engine.hpp"
#include "live/live_swarm.hpp"
#include "net/uv_handle.hpp"

namespace openace::live {

LiveJob::LiveJob(LiveEngine &engine, engine::JobPtr job) : engine_(engine), job_(std::move(job)) {}

LiveJob::~LiveJob()
{
    detach();
}

LiveSwarm &LiveJob::hold(const ContentId &id)
{
    LiveSwarm &s = engine_.acquire(id);
    id_ = id;
    swarm_ = &s;
    std::weak_ptr<LiveJob> weak = weak_from_this();
    chat_listener_ = s.listen_chat([weak](const transport::wire::LiveChat &c) {
        if (auto self = weak.lock())
            self->chat_.push_back(chat_line_json(c));
    });
    return s;
}

void LiveJob::start_reporting()
{
    tick_.init(this, uv_timer_init, engine_.loop());
    uv_timer_start(tick_.get(), on_tick, 1000, 1000);
    std::weak_ptr<LiveJob> weak = weak_from_this();
    job_->on_cancel = [weak] {
        if (auto self = weak.lock())
            self->cancel();
    };
    report();
}

void LiveJob::on_tick(uv_timer_t *t)
{
    static_cast<LiveJob *>(t->data)->report();
}

void LiveJob::report()
{
    if (ended_)
        return;
    nlohmann::json p = status();
    if (!chat_.empty()) {
        p["chat"] = std::move(chat_);
        chat_ = nlohmann::json::array();
    }
    engine_.jobs().progress(job_, std::move(p));
}

void LiveJob::detach()
{
    tick_.close();
    release();
    if (swarm_) {
        swarm_->unlisten_chat(chat_listener_);
        swarm_ = nullptr;
        engine_.release(id_);
    }
}

void LiveJob::cancel()
{
    end(std::make_exception_ptr(Error(Errc::CANCELLED, "live", job_->type, "cancelled")));
}

void LiveJob::end(const std::exception_ptr &error, nlohmann::json result)
{
    if (ended_)
        return;
    ended_ = true;
    auto self = shared_from_this();
    auto &jobs = engine_.jobs();
    if (!error) {
        jobs.finish(job_, std::move(result));
    } else {
        try {
            std::rethrow_exception(error);
        } catch (const Error &e) {
            if (e.code() == Errc::CANCELLED)
                jobs.cancelled(job_);
            else
                jobs.fail(job_, e);
        } catch (const std::exception &e) {
            jobs.fail(job_, Error(Errc::INTERNAL, "live", job_->type, e.what()));
        }
    }
    detach();
    engine_.job_ended(job_->id);
}

} // namespace openace::live
