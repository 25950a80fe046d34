// OpenAce C++ facade.  The same engine as the C ABI in openace.h, with RAII,
// exceptions and std types.  Threading and ownership rules are those of
// openace.h: every member may be called from any thread, except wait_event
// (one event thread) and the destructor (not concurrently with other calls).
#pragma once

#include <openace/openace.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace openace {

// Error codes generated from OPENACE_ERRNO_MAP: Errc::JOB is OPENACE_EJOB.
enum class Errc : int {
    OK = 0,
#define OPENACE__ERRC(name, value, msg) name = value,
    OPENACE_ERRNO_MAP(OPENACE__ERRC)
#undef OPENACE__ERRC
};

OPENACE_EXPORT const char *error_name(Errc code) noexcept;
OPENACE_EXPORT const char *error_message(Errc code) noexcept;

// An error with the component ("config", "http", "job") and operation
// ("parse", "bind", "submit") it happened in.  what() is a full sentence
// naming the bad input.
class OPENACE_EXPORT Error : public std::runtime_error {
public:
    Error(Errc code, std::string component, std::string operation,
          const std::string &detail);
    Errc code() const noexcept { return code_; }
    const std::string &component() const noexcept { return component_; }
    const std::string &operation() const noexcept { return operation_; }
    const std::string &detail() const noexcept { return detail_; }

private:
    Errc code_;
    std::string component_;
    std::string operation_;
    std::string detail_;
};

struct Event {
    openace_event_id id = OPENACE_EVENT_NONE;
    int error = 0;
    bool final = false;
    int64_t job_id = 0;
    std::string json = "{}";
};

class OPENACE_EXPORT Engine {
public:
    // Starts the loop thread and every internal engine.  config: TOML or
    // JSON text, empty for defaults.  Throws Error (ECONFIG names key and
    // line; ENET when the HTTP address cannot be bound).  Blocking.
    explicit Engine(std::string_view config = {});
    // Shuts down (blocking) if shutdown() was not called.
    ~Engine();
    Engine(const Engine &) = delete;
    Engine &operator=(const Engine &) = delete;

    // Validates and queues a job; returns its id.  Throws Error (EJOB /
    // EPARSE naming the field, EBUSY, ESHUTDOWN).
    int64_t submit_job(std::string_view job_json);
    // Cancels a job in any state.  Throws ENOTFOUND / ESTATE.
    void cancel_job(int64_t job_id);
    // timeout_s: 0 polls, < 0 waits forever.  std::nullopt on timeout.
    std::optional<Event> wait_event(double timeout_s);
    // Notify-only callback, called from an engine thread when events become
    // pending.  Must not call into the engine.  Empty function removes it.
    void set_wakeup_callback(std::function<void()> cb);
    // Readable while events are pending.  Owned by the engine.
    int wakeup_fd() const;

    // Blocking getters (short hop to the loop thread).
    std::string stats_json() const;
    std::string logs_json(std::string_view filter_json = "{}") const;
    // "127.0.0.1:6878" — the address the HTTP API actually listens on (the
    // port is real even when the config asked for port 0).  Empty when the
    // streamer engine is not running.
    std::string http_address() const;
    // engine: main|segmenter|live|transport|streamer; action:
    // start|stop|pause|resume|restart.  Throws Error.  Blocking.
    void control(std::string_view engine, std::string_view action);

    // Stops jobs and engines and joins the loop thread.  Blocking,
    // idempotent; other members throw ESHUTDOWN afterwards.
    void shutdown();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

// Library version, "0.1.0".
OPENACE_EXPORT const char *version_string() noexcept;

} // namespace openace
