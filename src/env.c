/* The connection's environment: the Date clock, the shared input budget and the access log's
 * close lines. */
#include "env.h"

#include "conn.h"

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

void sy_env_access_close(sy_conn *c, const char *proto, const sy_access_counts *k)
{
    if (!c->env->access)
        return;
    sy_access a;
    memset(&a, 0, sizeof a);
    a.event = SY_ACCESS_CLOSE;
    a.conn = c;
    a.proto = proto;
    a.msgs_in = k->msgs_in;
    a.msgs_out = k->msgs_out;
    a.bytes_in = k->bytes_in;
    a.bytes_out = k->bytes_out;
    a.close_sent = k->close_sent;
    a.close_received = k->close_received;
    a.started = k->started;
    c->env->access(c->env, &a);
}
