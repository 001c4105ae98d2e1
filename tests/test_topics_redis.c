/* The Redis setters of switchyard.h: URL checks, the prefix before the URL, and a link to a
 * port where nothing listens, which retries from the loop and frees cleanly. (Delivery through
 * a real redis-server: tests/integration/test_topics_redis.py.) */
#include <ev.h>

#include "switchyard.h"
#include "test.h"

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

int main(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = sy_server_new(loop);
    CHECK(s != NULL);
    CHECK(sy_server_set_redis(s, NULL) == SY_EINVAL);
    CHECK(sy_server_set_redis(s, "http://127.0.0.1:6379") == SY_EINVAL);
    CHECK(sy_server_set_redis(s, "redis://") == SY_EINVAL);
    CHECK(sy_server_set_redis(s, "redis://127.0.0.1:0/0") == SY_EINVAL);
    CHECK(sy_server_set_redis(s, "redis://127.0.0.1:6379/x") == SY_EINVAL);
    CHECK(sy_server_set_redis_prefix(s, NULL) == SY_EINVAL);
    CHECK(sy_server_set_redis_prefix(s, "app1:") == 0);
    /* Port 1 on loopback: refused; the link retries with backoff until freed. */
    CHECK(sy_server_set_redis(s, "redis://:secret@127.0.0.1:1/3") == 0);
    CHECK(sy_server_set_redis_prefix(s, "late:") == SY_EINVAL);
    CHECK(sy_server_publish(s, "room", "hi", 2, 0) == 0); /* no subscribers; not sent */
    ev_timer t;
    ev_timer_init(&t, on_tick, 0.35, 0);
    ev_timer_start(loop, &t);
    ev_run(loop, 0);
    sy_server_free(s);
    ev_loop_destroy(loop);
    return t_summary("test_topics_redis");
}
