/*
 * OpenAce — the embeddable P2P streaming engine.  Stable flat C ABI.
 *
 * This header is the manual.  Read the prose sections first.
 *
 * ## Lifecycle
 *
 *   openace_engine *e;
 *   if (openace_init(&e, config_text) < 0) ...;     // starts the loop thread
 *   int64_t job = openace_submit_job(e, "{\"type\":\"probe\"}");
 *   for (;;) {
 *       const openace_event *ev = openace_wait_event(e, -1);
 *       if (ev->event_id == OPENACE_EVENT_JOB_STATE && ev->job_id == job &&
 *           ev->final) break;                        // done, failed or cancelled
 *   }
 *   openace_shutdown(e);                             // blocks, frees e
 *
 * `openace_init` creates one engine: one loop thread running libuv, the five
 * internal engines (main, segmenter, live, transport, streamer) started in
 * dependency order, and the local HTTP API.  Several engines may live in one
 * process; they share nothing.
 *
 * ## Threading
 *
 * Every function may be called from any thread, except:
 *   - openace_wait_event: from one thread at a time per engine (the "event
 *     thread");
 *   - openace_shutdown: once, and not concurrently with any other call on the
 *     same engine (after it returns the handle is gone).
 * Calls never run engine work on the caller's thread: they post a closure to
 * the loop thread.  Functions documented as "blocking" wait for the loop to
 * answer (normally microseconds).  Nothing in this API calls back into the
 * caller except the wakeup callback (see openace_set_wakeup_callback).
 *
 * ## Events
 *
 * Events are pulled with openace_wait_event (as mpv_wait_event).  They are
 * kept in a bounded queue (`engine.event_queue_size`).  When it is full the
 * oldest progress/statistics events are dropped first and one
 * OPENACE_EVENT_OVERFLOW event is posted.  The final state event of a job
 * (done, failed or cancelled) is never dropped: its slot is reserved when the
 * job is submitted.  Clients must ignore event ids they do not know: new ids
 * may be added without an ABI change.
 *
 * ## Jobs
 *
 * Work is described by JSON objects, so new kinds never change this ABI:
 *   {"type":"probe"}                      -- version, build, FFmpeg, devices
 * with an optional integer "priority" (higher runs first, default 0).  Every
 * accepted job produces JOB_STATE events "queued", "running" and exactly one
 * final "done" | "failed" | "cancelled".  The exact fields of each kind are in
 * docs/api.md.
 *
 * ## Memory ownership
 *
 *   - Strings passed in are copied before the call returns.
 *   - const pointers returned (openace_error_string, openace_version_string,
 *     openace_error_name) are static.
 *   - The openace_event returned by openace_wait_event and its strings stay
 *     valid until the next openace_wait_event or openace_shutdown call on the
 *     same engine.
 *   - char ** outputs are allocated by the library: free them with
 *     openace_free, never with free().
 *
 * ## Errors
 *
 * Functions returning int return >= 0 on success and a negative OPENACE_E*
 * code on failure.  No C++ exception ever crosses this boundary.  Where a
 * function takes `char **err_out`, a human-readable message naming the bad
 * input (key, line, field) is stored there on failure.
 *
 * ## Compatibility
 *
 * OPENACE_API_VERSION_MAJOR changes only when this ABI breaks (it is the
 * shared library's SOVERSION).  Every change is recorded in
 * docs/api-changes.md.
 */
#ifndef OPENACE_OPENACE_H
#define OPENACE_OPENACE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(OPENACE_STATIC)
#  define OPENACE_EXPORT
#elif defined(_WIN32)
#  ifdef OPENACE_BUILDING
#    define OPENACE_EXPORT __declspec(dllexport)
#  else
#    define OPENACE_EXPORT __declspec(dllimport)
#  endif
#else
#  define OPENACE_EXPORT __attribute__((visibility("default")))
#endif

/* Library version.  CMake reads these three lines. */
#define OPENACE_VERSION_MAJOR 0
#define OPENACE_VERSION_MINOR 1
#define OPENACE_VERSION_PATCH 0

/* ABI version: major breaks, minor adds.  (major << 16) | minor. */
#define OPENACE_API_VERSION_MAJOR 0
#define OPENACE_API_VERSION_MINOR 1
#define OPENACE_MAKE_API_VERSION(major, minor) \
    (((unsigned long)(major) << 16) | (unsigned long)(minor))
#define OPENACE_API_VERSION \
    OPENACE_MAKE_API_VERSION(OPENACE_API_VERSION_MAJOR, OPENACE_API_VERSION_MINOR)

/*
 * Error codes: XX(NAME, value, message).  One list for C and C++: C gets
 * OPENACE_E<NAME> (OPENACE_EINVAL), C++ gets openace::Errc::<NAME>
 * (Errc::INVAL; errno's macros rule out EINVAL there), and both string
 * tables are generated from it.  0 (OPENACE_OK) is success.
 */
#define OPENACE_ERRNO_MAP(XX)                                                  \
    XX(INVAL, -1, "invalid argument")                                          \
    XX(NOMEM, -2, "out of memory")                                             \
    XX(CONFIG, -3, "invalid configuration")                                    \
    XX(JOB, -4, "invalid job")                                                 \
    XX(NOTFOUND, -5, "not found")                                              \
    XX(STATE, -6, "operation not allowed in the current state")                \
    XX(IO, -7, "input/output error")                                           \
    XX(NET, -8, "network error")                                               \
    XX(MEDIA, -9, "media error")                                               \
    XX(PROTO, -10, "protocol error")                                           \
    XX(TIMEOUT, -11, "timed out")                                              \
    XX(CANCELLED, -12, "cancelled")                                            \
    XX(UNSUPPORTED, -13, "not supported")                                      \
    XX(BUSY, -14, "resource limit reached")                                    \
    XX(PERM, -15, "permission denied")                                         \
    XX(PARSE, -16, "malformed input")                                          \
    XX(SHUTDOWN, -17, "engine is shut down")                                   \
    XX(INTERNAL, -18, "internal error")

typedef enum openace_error {
    OPENACE_OK = 0,
#define OPENACE__ERR_ENUM(name, value, msg) OPENACE_E##name = value,
    OPENACE_ERRNO_MAP(OPENACE__ERR_ENUM)
#undef OPENACE__ERR_ENUM
    OPENACE__ERR_LAST = -19
} openace_error;

/* Event ids.  Clients must ignore ids they do not know. */
typedef enum openace_event_id {
    /* Nothing happened before the timeout. */
    OPENACE_EVENT_NONE = 0,
    /* A job changed state; json: {"job_id","type","state",...}.  state is
     * "queued", "running", "done", "failed" or "cancelled"; the last three
     * are final (event.final == 1) and carry "result" (done) or "error"
     * {"code","name","message","component","operation"} (failed). */
    OPENACE_EVENT_JOB_STATE = 1,
    /* Progress of a running job; json depends on the job kind. */
    OPENACE_EVENT_JOB_PROGRESS = 2,
    /* An internal engine changed state; json: {"engine","state","reason"}. */
    OPENACE_EVENT_ENGINE_STATE = 3,
    /* Events were dropped because the queue was full; json: {"dropped":n}. */
    OPENACE_EVENT_OVERFLOW = 4,
    /* A log entry at or above logging.event_level (off by default). */
    OPENACE_EVENT_LOG = 5,
    /* The engine is shutting down; no further events follow. */
    OPENACE_EVENT_SHUTDOWN = 6
} openace_event_id;

typedef struct openace_event {
    int event_id;     /* openace_event_id */
    int error;        /* 0, or the negative OPENACE_E* code of a failure */
    int final;        /* 1 for the last event of a job, else 0 */
    int64_t job_id;   /* the job this event belongs to, 0 if none */
    const char *json; /* UTF-8 JSON object, never NULL ("{}" at least) */
} openace_event;

typedef struct openace_engine openace_engine; /* opaque */

/* Library version as "major.minor.patch".  Static string. */
OPENACE_EXPORT const char *openace_version_string(void);

/* OPENACE_API_VERSION of the library actually loaded.  Compare its major
 * with OPENACE_API_VERSION_MAJOR to detect a mismatched shared library. */
OPENACE_EXPORT unsigned long openace_api_version(void);

/* Message for an error code ("invalid job"); "unknown error" otherwise.
 * Static string. */
OPENACE_EXPORT const char *openace_error_string(int code);

/* Symbolic name of an error code ("OPENACE_EJOB"); "OPENACE_EUNKNOWN"
 * otherwise.  Static string. */
OPENACE_EXPORT const char *openace_error_name(int code);

/*
 * Create and start an engine.
 *   out:     receives the handle on success, NULL on failure.
 *   config:  TOML or JSON text (JSON when the first non-blank character is
 *            '{'), or NULL for the defaults.  See docs/api.md.
 *   err_out: optional; on failure receives a message naming the bad key and
 *            line (free with openace_free).  Set to NULL on success.
 * Returns 0, OPENACE_ECONFIG (bad config), OPENACE_ENET (cannot bind the HTTP
 * address) or another error.  Blocking: returns once every internal engine
 * has started.
 */
OPENACE_EXPORT int openace_init2(openace_engine **out, const char *config,
                                 char **err_out);

/* openace_init2 without the error message. */
OPENACE_EXPORT int openace_init(openace_engine **out, const char *config);

/*
 * Submit a job (JSON object, copied).  Returns the job id (> 0), or a
 * negative error: OPENACE_EJOB / OPENACE_EPARSE for a bad job (the message,
 * naming the field, is stored in *err_out when err_out is not NULL),
 * OPENACE_EBUSY when the event queue cannot reserve the job's final event,
 * OPENACE_ESHUTDOWN after shutdown began.  Non-blocking apart from a short
 * hop to the loop thread to validate the job.
 */
OPENACE_EXPORT int64_t openace_submit_job2(openace_engine *e,
                                           const char *job_json,
                                           char **err_out);
OPENACE_EXPORT int64_t openace_submit_job(openace_engine *e,
                                          const char *job_json);

/*
 * Cancel a job in any state.  A queued job ends at once; a running job is
 * asked to stop and ends with a "cancelled" final event shortly after.
 * Returns 0, OPENACE_ENOTFOUND (no such job) or OPENACE_ESTATE (the job has
 * already ended).  Blocking (short hop to the loop).
 */
OPENACE_EXPORT int openace_cancel_job(openace_engine *e, int64_t job_id);

/*
 * Wait for the next event.  timeout_s == 0 polls, < 0 waits forever, > 0
 * waits at most that long.  Never returns NULL: on timeout the event id is
 * OPENACE_EVENT_NONE.  The result is valid until the next call of this
 * function or openace_shutdown on the same engine.  One event thread only.
 */
OPENACE_EXPORT const openace_event *openace_wait_event(openace_engine *e,
                                                       double timeout_s);

/*
 * Wakeup callback: called (from an engine thread, possibly with internal
 * locks held) whenever the event queue goes from empty to non-empty.  It must
 * only notify — signal a condition, write to a pipe — and never call into
 * this API.  NULL removes it.  Thread-safe.
 */
typedef void (*openace_wakeup_cb)(void *userdata);
OPENACE_EXPORT void openace_set_wakeup_callback(openace_engine *e,
                                                openace_wakeup_cb cb,
                                                void *userdata);

/*
 * A file descriptor that is readable while events are pending, for poll(),
 * select() or asyncio.  Owned by the engine: do not read from or close it;
 * openace_wait_event resets it.  Returns the fd (>= 0) or a negative error.
 */
OPENACE_EXPORT int openace_get_wakeup_fd(openace_engine *e);

/*
 * Statistics as a JSON object: per-engine state and counters, process CPU
 * and RSS, log statistics and health, job counts.  *out_json is allocated by
 * the library (free with openace_free).  Blocking (short hop to the loop).
 */
OPENACE_EXPORT int openace_get_stats(openace_engine *e, char **out_json);

/*
 * Log entries as a JSON object {"entries":[...],"stats":{...}} filtered by
 * filter_json (NULL or "{}" for all): {"level":"warn" (minimum),
 * "component":"http", "text":"substring", "job_id":N, "since_ms":unix_ms,
 * "until_ms":unix_ms, "limit":N}.  Free *out_json with openace_free.
 * Returns OPENACE_EPARSE / OPENACE_EINVAL for a bad filter.
 */
OPENACE_EXPORT int openace_get_logs(openace_engine *e, const char *filter_json,
                                    char **out_json);

/*
 * Internal engine lifecycle: engine is "main", "segmenter", "live",
 * "transport" or "streamer"; action is "start", "stop", "pause", "resume"
 * or "restart".  "stop" also stops the engines that depend on it (dependents
 * first); "start" also starts its stopped dependencies; "restart" touches
 * only the named engine.  Returns 0, OPENACE_ENOTFOUND (no such engine),
 * OPENACE_EINVAL (bad action) or OPENACE_ESTATE (not allowed now, e.g.
 * pausing a stopped engine).  Blocking.
 */
OPENACE_EXPORT int openace_engine_control(openace_engine *e,
                                          const char *engine,
                                          const char *action);

/*
 * Stop every job and engine, join the loop thread and free the handle.
 * Blocking.  Idempotent for NULL.  The handle must not be used afterwards.
 */
OPENACE_EXPORT void openace_shutdown(openace_engine *e);

/* Free memory returned by this library.  NULL is allowed. */
OPENACE_EXPORT void openace_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif /* OPENACE_OPENACE_H */
