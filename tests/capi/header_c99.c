/* Compiled with -std=c99 -pedantic -Werror: the public header is valid C99. */
#include <openace/openace.h>

int openace_header_c99_check(void);
int openace_header_c99_check(void)
{
    openace_event ev = {OPENACE_EVENT_NONE, OPENACE_OK, 0, 0, "{}"};
    openace_wakeup_cb cb = 0;
    (void)cb;
    return ev.event_id + (int)(OPENACE_API_VERSION & 1u);
}
