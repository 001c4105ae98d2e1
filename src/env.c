/* The connection's environment: the Date clock and the shared input budget. */
#include "env.h"

#include <time.h>

/* RFC 9110 5.6.7 IMF-fixdate, refreshed at most once a second. */
const char *sy_env_date(sy_env *e)
{
    ev_tstamp now = ev_now(e->loop);
    if (now - e->date_at >= 1.0 || now < e->date_at) {
        time_t t = (time_t)now;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(e->date, sizeof e->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        e->date_at = (ev_tstamp)t;
    }
    return e->date;
}

int sy_env_hold_input(sy_env *e, size_t *held, size_t want)
{
    if (want <= *held) {
        e->input_held -= *held - want;
        *held = want;
        return 0;
    }
    size_t more = want - *held;
    size_t max = e->cfg.max_buffered_total;
    if (max && (e->input_held > max || more > max - e->input_held))
        return SY_ELIMIT;
    e->input_held += more;
    *held = want;
    return 0;
}
