#include "engine/engine_manager.hpp"

#include "core/error.hpp"

#include <algorithm>

namespace openace::engine {

EngineManager::EngineManager(EngineContext &ctx, EventQueue &events)
    : ctx_(ctx), events_(events),
      jobs_(ctx, events, size_t(std::max(1, ctx.config->engine.max_active_jobs)))
{
    dispatch_idle_ = new uv_idle_t;
    uv_idle_init(ctx_.loop, dispatch_idle_);
    dispatch_idle_->data = this;
}

EngineManager::~EngineManager()
{
    // stop_all() closes the idle handle; if it never ran (init failed before
    // the loop started) the handle is closed here while the loop is alive.
    if (dispatch_idle_)
        uv_close(reinterpret_cast<uv_handle_t *>(dispatch_idle_),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_idle_t *>(h); });
}

void EngineManager::add(std::unique_ptr<SubEngine> engine)
{
    for (auto &dep : engine->dependencies())
        if (!find(dep))
            throw_errorf(Errc::INTERNAL, "engine", "add",
                         "engine '{}' depends on '{}', which was not added before it",
                         engine->name(), dep);
    engines_.push_back(std::move(engine));
}

SubEngine *EngineManager::find(std::string_view name) const
{
    for (auto &e : engines_)
        if (e->name() == name)
            return e.get();
    return nullptr;
}

SubEngine *EngineManager::owner_of(std::string_view type) const
{
    for (auto &e : engines_)
        if (e->owns_job(type))
            return e.get();
    return nullptr;
}

SubEngine *EngineManager::owner_of(std::string_view type, const nlohmann::json &spec) const
{
    for (auto &e : engines_)
        if (e->owns_job(type, spec))
            return e.get();
    return nullptr;
}

std::vector<std::string> EngineManager::job_types() const
{
    std::vector<std::string> out;
    for (const char *t : {"probe", "segment", "transcode", "play", "seed", "broadcast", "chat"})
        if (owner_of(t))
            out.emplace_back(t);
    return out;
}

void EngineManager::post_dispatch()
{
    if (dispatch_pending_ || !dispatch_idle_)
        return;
    dispatch_pending_ = true;
    uv_idle_start(dispatch_idle_, [](uv_idle_t *h) {
        auto *self = static_cast<EngineManager *>(h->data);
        uv_idle_stop(h);
        self->dispatch_pending_ = false;
        self->jobs_.dispatch();
    });
}

void EngineManager::engine_state_changed(SubEngine &engine)
{
    Event ev;
    ev.id = OPENACE_EVENT_ENGINE_STATE;
    ev.json = nlohmann::json{{"engine", engine.name()},
                             {"state", to_string(engine.state())},
                             {"reason", engine.reason()}}
                  .dump();
    events_.push(std::move(ev), EventClass::Normal);
    if (engine.state() == EngineState::Stopping)
        jobs_.engine_stopping(engine);
    if (engine.state() == EngineState::Running)
        post_dispatch();
}

void EngineManager::start_all()
{
    for (auto &e : engines_)
        e->start();
}

std::vector<SubEngine *> EngineManager::dependents_of(const SubEngine &engine) const
{
    // Transitive dependents, in reverse start order (stop order).
    std::vector<const SubEngine *> closure{&engine};
    std::vector<SubEngine *> out;
    for (auto &e : engines_) {
        for (auto *c : closure) {
            auto &deps = e->dependencies();
            if (std::find(deps.begin(), deps.end(), c->name()) != deps.end()) {
                closure.push_back(e.get());
                out.push_back(e.get());
                break;
            }
        }
    }
    std::reverse(out.begin(), out.end());
    return out;
}

void EngineManager::stop_sequence(std::vector<SubEngine *> order, size_t i, std::function<void()> done)
{
    if (i >= order.size()) {
        done();
        return;
    }
    SubEngine *e = order[i];
    e->stop([this, order = std::move(order), i, done = std::move(done)]() mutable {
        stop_sequence(std::move(order), i + 1, std::move(done));
    });
}

void EngineManager::stop_all(std::function<void()> done)
{
    jobs_.cancel_all();
    std::vector<SubEngine *> order;
    for (auto it = engines_.rbegin(); it != engines_.rend(); ++it)
        order.push_back(it->get());
    stop_sequence(std::move(order), 0, [this, done = std::move(done)] {
        if (dispatch_idle_) {
            uv_close(reinterpret_cast<uv_handle_t *>(dispatch_idle_),
                     [](uv_handle_t *h) { delete reinterpret_cast<uv_idle_t *>(h); });
            dispatch_idle_ = nullptr;
        }
        done();
    });
}

void EngineManager::control(std::string_view name, std::string_view action, Done done)
{
    SubEngine *engine = find(name);
    try {
        if (!engine) {
            std::string known;
            for (auto &e : engines_)
                known += (known.empty() ? "" : ", ") + e->name();
            throw_errorf(Errc::NOTFOUND, "engine", "control", "no engine named '{}' (known: {})",
                         name, known);
        }
        if (action == "start") {
            for (auto &dep : engine->dependencies())
                if (!find(dep)->running())
                    control(dep, "start", [](std::exception_ptr) {});
            for (auto &dep : engine->dependencies())
                if (!find(dep)->running())
                    throw_errorf(Errc::STATE, engine->name(), "start",
                                 "dependency '{}' of '{}' is {}", dep, engine->name(),
                                 to_string(find(dep)->state()));
            engine->start();
        } else if (action == "pause") {
            engine->pause();
        } else if (action == "resume") {
            engine->resume();
        } else if (action == "stop") {
            auto order = dependents_of(*engine);
            order.push_back(engine);
            stop_sequence(std::move(order), 0, [done] { done(nullptr); });
            return;
        } else if (action == "restart") {
            engine->stop([this, engine, done] {
                try {
                    engine->start();
                    done(nullptr);
                } catch (...) {
                    done(std::current_exception());
                }
            });
            return;
        } else {
            throw_errorf(Errc::INVAL, "engine", "control",
                         "unknown action '{}' (start, stop, pause, resume, restart)", action);
        }
    } catch (...) {
        done(std::current_exception());
        return;
    }
    done(nullptr);
}

nlohmann::json EngineManager::stats_json() const
{
    nlohmann::json j = nlohmann::json::object();
    for (auto &e : engines_)
        j[e->name()] = e->stats_json();
    return j;
}

} // namespace openace::engine
