/* init/shutdown in a loop, with a probe job left running at shutdown every
 * other round.  Under ASan (LeakSanitizer) any leak fails the test. */
#include <openace/openace.h>

#include <stdio.h>

int main(void)
{
    int i;
    const char *config = "{\"engine\":{\"http_address\":\"127.0.0.1:0\"},"
                         "\"logging\":{\"console\":false}}";
    for (i = 0; i < 25; i++) {
        openace_engine *e = NULL;
        char *err = NULL;
        int rc = openace_init2(&e, config, &err);
        if (rc != 0) {
            fprintf(stderr, "round %d: init failed: %s (%s)\n", i, openace_error_name(rc),
                    err ? err : "?");
            openace_free(err);
            return 1;
        }
        if (i % 2 == 0 && openace_submit_job(e, "{\"type\":\"probe\",\"hardware\":false}") <= 0) {
            fprintf(stderr, "round %d: submit failed\n", i);
            return 1;
        }
        openace_shutdown(e);
    }
    printf("capi init_loop: 25 rounds\n");
    return 0;
}
