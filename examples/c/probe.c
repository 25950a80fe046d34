/* Embedding OpenAce from C: start an engine, run a probe job, print the
 * FFmpeg version from its result, shut down.  Build:
 *   cc probe.c $(pkg-config --cflags --libs openace) -o probe */
#include <openace/openace.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    openace_engine *engine = NULL;
    char *err = NULL;
    int64_t job;
    int rc = openace_init2(&engine,
                           "[engine]\nhttp_address = \"127.0.0.1:0\"\n"
                           "[logging]\nconsole = false\n",
                           &err);
    if (rc < 0) {
        fprintf(stderr, "openace_init: %s: %s\n", openace_error_name(rc), err ? err : "");
        openace_free(err);
        return 1;
    }
    job = openace_submit_job(engine, "{\"type\":\"probe\",\"hardware\":false}");
    if (job < 0) {
        fprintf(stderr, "submit: %s\n", openace_error_string((int)job));
        openace_shutdown(engine);
        return 1;
    }
    for (;;) {
        const openace_event *ev = openace_wait_event(engine, -1);
        if (ev->event_id == OPENACE_EVENT_JOB_STATE && ev->job_id == job && ev->final) {
            /* ev->json: {"job_id":1,"type":"probe","state":"done","result":{...}} */
            printf("%s\n", ev->json);
            rc = ev->error;
            break;
        }
    }
    openace_shutdown(engine);
    return rc == 0 ? 0 : 1;
}
