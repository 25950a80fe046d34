// The flat C ABI (include/openace/openace.h) over openace::Engine.  Every
// entry point catches everything: no exception crosses into C.
#include <openace/engine.hpp>
#include <openace/openace.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_set>

struct openace_engine {
    std::unique_ptr<openace::Engine> engine;
    openace::Event last;     // keeps the strings of the last returned event alive
    openace_event c_event{}; // what openace_wait_event hands out
};

namespace {

// Live handles.  Lets openace_shutdown be idempotent and turns most uses of a
// stale handle into OPENACE_ESHUTDOWN instead of a crash (as libtorrent's
// weak handles do).
std::mutex g_handles_mu;
std::unordered_set<openace_engine *> g_handles;

bool alive(openace_engine *e)
{
    if (!e)
        return false;
    std::lock_guard lk(g_handles_mu);
    return g_handles.count(e) != 0;
}

char *dup_string(const std::string &s)
{
    char *p = static_cast<char *>(std::malloc(s.size() + 1));
    if (p)
        std::memcpy(p, s.c_str(), s.size() + 1);
    return p;
}

void set_err(char **err_out, const std::string &msg)
{
    if (err_out)
        *err_out = dup_string(msg);
}

// Runs fn, mapping exceptions to error codes (and messages into err_out).
template <class F> int64_t guard(char **err_out, F &&fn) noexcept
{
    if (err_out)
        *err_out = nullptr;
    try {
        return fn();
    } catch (const openace::Error &e) {
        set_err(err_out, e.what());
        return int(e.code());
    } catch (const std::bad_alloc &) {
        set_err(err_out, "out of memory");
        return OPENACE_ENOMEM;
    } catch (const std::exception &e) {
        set_err(err_out, e.what());
        return OPENACE_EINTERNAL;
    } catch (...) {
        set_err(err_out, "unknown internal error");
        return OPENACE_EINTERNAL;
    }
}

} // namespace

extern "C" {

const char *openace_version_string(void)
{
    return openace::version_string();
}

unsigned long openace_api_version(void)
{
    return OPENACE_API_VERSION;
}

const char *openace_error_string(int code)
{
    return openace::error_message(static_cast<openace::Errc>(code));
}

const char *openace_error_name(int code)
{
    return openace::error_name(static_cast<openace::Errc>(code));
}

int openace_init2(openace_engine **out, const char *config, char **err_out)
{
    if (!out) {
        set_err(err_out, "openace_init: 'out' is NULL");
        return OPENACE_EINVAL;
    }
    *out = nullptr;
    return int(guard(err_out, [&]() -> int64_t {
        auto h = std::make_unique<openace_engine>();
        h->engine = std::make_unique<openace::Engine>(config ? std::string_view(config) : std::string_view());
        h->c_event.json = "{}";
        std::lock_guard lk(g_handles_mu);
        g_handles.insert(h.get());
        *out = h.release();
        return 0;
    }));
}

int openace_init(openace_engine **out, const char *config)
{
    return openace_init2(out, config, nullptr);
}

int64_t openace_submit_job2(openace_engine *e, const char *job_json, char **err_out)
{
    if (!alive(e)) {
        set_err(err_out, "invalid or shut down engine handle");
        return OPENACE_ESHUTDOWN;
    }
    if (!job_json) {
        set_err(err_out, "job_json is NULL");
        return OPENACE_EINVAL;
    }
    return guard(err_out, [&] { return e->engine->submit_job(job_json); });
}

int64_t openace_submit_job(openace_engine *e, const char *job_json)
{
    return openace_submit_job2(e, job_json, nullptr);
}

int openace_cancel_job(openace_engine *e, int64_t job_id)
{
    if (!alive(e))
        return OPENACE_ESHUTDOWN;
    return int(guard(nullptr, [&]() -> int64_t {
        e->engine->cancel_job(job_id);
        return 0;
    }));
}

const openace_event *openace_wait_event(openace_engine *e, double timeout_s)
{
    static const openace_event none_shutdown = {OPENACE_EVENT_NONE, OPENACE_ESHUTDOWN, 0, 0, "{}"};
    if (!alive(e))
        return &none_shutdown;
    try {
        auto ev = e->engine->wait_event(timeout_s);
        e->last = ev ? std::move(*ev) : openace::Event{};
    } catch (...) {
        e->last = openace::Event{};
        e->last.error = OPENACE_EINTERNAL;
    }
    e->c_event.event_id = e->last.id;
    e->c_event.error = e->last.error;
    e->c_event.final = e->last.final ? 1 : 0;
    e->c_event.job_id = e->last.job_id;
    e->c_event.json = e->last.json.c_str();
    return &e->c_event;
}

void openace_set_wakeup_callback(openace_engine *e, openace_wakeup_cb cb, void *userdata)
{
    if (!alive(e))
        return;
    guard(nullptr, [&]() -> int64_t {
        if (cb)
            e->engine->set_wakeup_callback([cb, userdata] { cb(userdata); });
        else
            e->engine->set_wakeup_callback(nullptr);
        return 0;
    });
}

int openace_get_wakeup_fd(openace_engine *e)
{
    if (!alive(e))
        return OPENACE_ESHUTDOWN;
    int fd = e->engine->wakeup_fd();
    return fd >= 0 ? fd : OPENACE_EUNSUPPORTED;
}

int openace_get_stats(openace_engine *e, char **out_json)
{
    if (!out_json)
        return OPENACE_EINVAL;
    *out_json = nullptr;
    if (!alive(e))
        return OPENACE_ESHUTDOWN;
    return int(guard(nullptr, [&]() -> int64_t {
        *out_json = dup_string(e->engine->stats_json());
        return *out_json ? 0 : OPENACE_ENOMEM;
    }));
}

int openace_get_logs(openace_engine *e, const char *filter_json, char **out_json)
{
    if (!out_json)
        return OPENACE_EINVAL;
    *out_json = nullptr;
    if (!alive(e))
        return OPENACE_ESHUTDOWN;
    return int(guard(nullptr, [&]() -> int64_t {
        *out_json = dup_string(e->engine->logs_json(filter_json ? filter_json : "{}"));
        return *out_json ? 0 : OPENACE_ENOMEM;
    }));
}

int openace_engine_control(openace_engine *e, const char *engine, const char *action)
{
    if (!alive(e))
        return OPENACE_ESHUTDOWN;
    if (!engine || !action)
        return OPENACE_EINVAL;
    return int(guard(nullptr, [&]() -> int64_t {
        e->engine->control(engine, action);
        return 0;
    }));
}

void openace_shutdown(openace_engine *e)
{
    {
        std::lock_guard lk(g_handles_mu);
        if (!e || g_handles.erase(e) == 0)
            return; // NULL, or already shut down
    }
    try {
        e->engine->shutdown();
    } catch (...) {
    }
    delete e;
}

void openace_free(void *ptr)
{
    std::free(ptr);
}

} // extern "C"
