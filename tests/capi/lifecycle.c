/* A C embedder's whole lifecycle through the shared library: init with a
 * config, a bad config, a probe job read back from its final event, a bad
 * job, cancel of an ended job, stats, logs, wakeup fd, shutdown twice. */
#include <openace/openace.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            failures++;                                                      \
        }                                                                    \
    } while (0)

static const char *CONFIG =
    "[engine]\n"
    "http_address = \"127.0.0.1:0\"\n"
    "log_level = \"debug\"\n"
    "[logging]\n"
    "console = false\n";

int main(void)
{
    openace_engine *e = NULL;
    char *err = NULL;
    char *json = NULL;
    int64_t job, bad;
    int rc, saw_queued = 0, saw_running = 0, done = 0, fd;
    struct pollfd pfd;

    CHECK(openace_api_version() >> 16 == OPENACE_API_VERSION_MAJOR);
    CHECK(strcmp(openace_error_name(OPENACE_EJOB), "OPENACE_EJOB") == 0);
    CHECK(strcmp(openace_error_string(OPENACE_EJOB), "invalid job") == 0);

    /* A bad config fails with a message naming the key and line. */
    rc = openace_init2(&e, "[engine]\nlog_level = \"info\"\nbogus = 1\n", &err);
    CHECK(rc == OPENACE_ECONFIG);
    CHECK(e == NULL);
    CHECK(err != NULL && strstr(err, "engine.bogus") != NULL && strstr(err, ":3") != NULL);
    if (err)
        fprintf(stderr, "expected config error: %s\n", err);
    openace_free(err);

    rc = openace_init2(&e, CONFIG, &err);
    CHECK(rc == 0);
    if (rc != 0) {
        fprintf(stderr, "init failed: %s\n", err ? err : "?");
        return 1;
    }
    CHECK(err == NULL);

    fd = openace_get_wakeup_fd(e);
    CHECK(fd >= 0);

    /* A bad job is refused with the field named. */
    bad = openace_submit_job2(e, "{\"type\":\"probe\",\"priority\":\"high\"}", &err);
    CHECK(bad == OPENACE_EJOB);
    CHECK(err != NULL && strstr(err, "priority") != NULL);
    openace_free(err);
    CHECK(openace_submit_job(e, "{\"type\":\"nope\"}") == OPENACE_EJOB);
    CHECK(openace_submit_job(e, "not json") == OPENACE_EPARSE);

    job = openace_submit_job(e, "{\"type\":\"probe\"}");
    CHECK(job > 0);

    /* The wakeup fd becomes readable once events are pending. */
    pfd.fd = fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    CHECK(poll(&pfd, 1, 10000) == 1);

    while (!done) {
        const openace_event *ev = openace_wait_event(e, 30.0);
        if (ev->event_id == OPENACE_EVENT_NONE) {
            fprintf(stderr, "timed out waiting for the probe job\n");
            failures++;
            break;
        }
        if (ev->event_id != OPENACE_EVENT_JOB_STATE || ev->job_id != job)
            continue;
        if (strstr(ev->json, "\"state\":\"queued\""))
            saw_queued = 1;
        if (strstr(ev->json, "\"state\":\"running\""))
            saw_running = 1;
        if (ev->final) {
            CHECK(ev->error == 0);
            CHECK(strstr(ev->json, "\"state\":\"done\"") != NULL);
            CHECK(strstr(ev->json, "\"libavformat\"") != NULL);
            CHECK(strstr(ev->json, openace_version_string()) != NULL);
            done = 1;
        }
    }
    CHECK(saw_queued && saw_running);

    /* Cancelling an ended job says so; an unknown job is not found. */
    CHECK(openace_cancel_job(e, job) == OPENACE_ESTATE);
    CHECK(openace_cancel_job(e, 999999) == OPENACE_ENOTFOUND);

    CHECK(openace_get_stats(e, &json) == 0);
    CHECK(json != NULL && strstr(json, "\"streamer\"") != NULL && strstr(json, "\"rss_bytes\"") != NULL);
    openace_free(json);

    CHECK(openace_get_logs(e, "{\"component\":\"job\",\"job_id\":1}", &json) == 0);
    CHECK(json != NULL && strstr(json, "probe job done") != NULL);
    openace_free(json);
    CHECK(openace_get_logs(e, "{\"level\":\"loud\"}", &json) == OPENACE_EINVAL);
    CHECK(json == NULL);

    CHECK(openace_engine_control(e, "transport", "restart") == 0);
    CHECK(openace_engine_control(e, "nope", "start") == OPENACE_ENOTFOUND);
    CHECK(openace_engine_control(e, "main", "explode") == OPENACE_EINVAL);

    openace_shutdown(e);
    openace_shutdown(e); /* idempotent */
    openace_shutdown(NULL);
    CHECK(openace_submit_job(e, "{\"type\":\"probe\"}") == OPENACE_ESHUTDOWN);

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("capi lifecycle: all checks passed\n");
    return 0;
}
