/* Stream connections (conn.h): a conn without a socket whose output a carrier takes
 * (sy_conn_stream_take) and whose input it hands in (sy_conn_stream_input/deliver), as an HTTP/2
 * stream does for a WebSocket or raw protocol. A recording protocol and sink check the
 * contract: writes queue and wake the carrier, the high-water mark and drain, corking, the end
 * after close_after_write and shutdown_write, pause holding input back, the peer's end, and the
 * closed callback once (never after a detach). */
#include <ev.h>

#include "conn.h"
#include "server.h"
#include "switchyard.h"
#include "test.h"

static int wakes, resumes, closes, bytes_calls, eofs, drains, proto_closes;
static size_t seen;

static void on_wake(sy_conn *c, void *ud)
{
    (void)c, (void)ud;
    wakes++;
}
static void on_resume(sy_conn *c, void *ud)
{
    (void)c, (void)ud;
    resumes++;
}
static void on_closed(sy_conn *c, void *ud)
{
    (void)c;
    CHECK(ud == &wakes);
    closes++;
}
static const sy_conn_sink sink = {on_wake, on_resume, on_closed};

static void p_bytes(sy_conn *c)
{
    bytes_calls++;
    seen += sy_buf_len(&c->in);
    sy_buf_consume(&c->in, sy_buf_len(&c->in));
}
static void p_eof(sy_conn *c)
{
    (void)c;
    eofs++;
}
static void p_drain(sy_conn *c)
{
    (void)c;
    drains++;
}
static void p_close(sy_conn *c)
{
    (void)c;
    proto_closes++;
}
static const sy_proto proto = {
    .name = "test", .on_bytes = p_bytes, .on_eof = p_eof, .on_drain = p_drain, .on_close = p_close};

static void reset(void)
{
    wakes = resumes = closes = bytes_calls = eofs = drains = proto_closes = 0;
    seen = 0;
}

int main(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = sy_server_new(loop);
    CHECK(s != NULL);
    CHECK(sy_server_set_high_water(s, 1024) == 0);
    sy_env *env = &s->env;
    sy_conn carrier;
    memset(&carrier, 0, sizeof carrier);
    carrier.peer.family = 2;

    /* Output: queued, the carrier woken, taken in order. */
    reset();
    sy_conn *c = sy_conn_new_stream(env, &carrier, &proto, NULL, &sink, &wakes);
    CHECK(c != NULL && sy_conn_is_stream(c) && c->fd == -1 && c->peer.family == 2);
    CHECK(sy_server_connection_count(s) == 1);
    CHECK(sy_conn_write(c, "hello ", 6) == 0 && wakes == 1);
    CHECK(sy_conn_write2(c, "wor", 3, "ld", 2) == 0 && wakes == 2);
    uint8_t buf[4096];
    int end = -1;
    CHECK(sy_conn_stream_take(c, buf, 4, &end) == 4 && end == 0 && memcmp(buf, "hell", 4) == 0);
    CHECK(sy_conn_stream_take(c, buf, sizeof buf, &end) == 7 && end == 0);
    CHECK(memcmp(buf, "o world", 7) == 0 && sy_conn_buffered(c) == 0);

    /* Corked writes wake once, at the uncork. */
    sy_conn_cork(c);
    sy_conn_write(c, "a", 1);
    sy_conn_write(c, "b", 1);
    CHECK(wakes == 2);
    sy_conn_uncork(c);
    CHECK(wakes == 3);
    CHECK(sy_conn_stream_take(c, buf, sizeof buf, &end) == 2);

    /* Over the high-water mark: 1, then drain once taken below half of it. */
    char big[1500];
    memset(big, 'x', sizeof big);
    CHECK(sy_conn_write(c, big, sizeof big) == 1 && c->over_high_water);
    CHECK(sy_conn_stream_take(c, buf, 800, &end) == 800);
    sy_conn_stream_sent(c);
    CHECK(drains == 0); /* 700 left: above half of 1024 */
    CHECK(sy_conn_stream_take(c, buf, 300, &end) == 300);
    sy_conn_stream_sent(c);
    CHECK(drains == 1 && !c->over_high_water);
    CHECK(sy_conn_stream_take(c, buf, sizeof buf, &end) == 400 && end == 0);

    /* Input: delivered unless paused; resume tells the carrier and schedules the rest. */
    CHECK(sy_conn_stream_input(c, "abc", 3) == 0);
    sy_conn_stream_deliver(c, 0);
    CHECK(bytes_calls == 1 && seen == 3);
    sy_conn_pause(c);
    CHECK(sy_conn_stream_input(c, "defg", 4) == 0);
    sy_conn_stream_deliver(c, 1);
    CHECK(bytes_calls == 1 && eofs == 0); /* held: neither bytes nor the end */
    sy_conn_resume(c);
    CHECK(resumes == 1);
    for (int i = 0; i < 10; i++)
        ev_run(loop, EVRUN_NOWAIT);
    CHECK(bytes_calls == 2 && seen == 7 && eofs == 1 && c->peer_eof);

    /* Input past the buffer's limit is kept (the carrier's window bounds it). */
    c->in.limit = 2;
    CHECK(sy_conn_stream_input(c, "xyz", 3) == 0 && sy_buf_len(&c->in) == 3);
    sy_buf_consume(&c->in, 3);

    /* close_after_write: the end once the queue is empty; the carrier closes it then. */
    sy_conn_write(c, "bye", 3);
    sy_conn_close_after_write(c);
    CHECK(sy_conn_stream_take(c, buf, 2, &end) == 2 && end == 0);
    CHECK(sy_conn_stream_take(c, buf, sizeof buf, &end) == 1 && end == 1);
    CHECK(sy_conn_write(c, "late", 4) < 0 || c->close_after_write);
    sy_conn_close(c);
    CHECK(closes == 1 && proto_closes == 1);
    sy_conn_close(c);
    CHECK(closes == 1);
    for (int i = 0; i < 10; i++)
        ev_run(loop, EVRUN_NOWAIT);
    CHECK(sy_server_connection_count(s) == 0);

    /* shutdown_write: the end (FIN) after the queue; reading goes on; the peer's end closes. */
    reset();
    c = sy_conn_new_stream(env, &carrier, &proto, NULL, &sink, &wakes);
    sy_conn_write(c, "last", 4);
    CHECK(sy_conn_shutdown_write(c) == 0 && sy_conn_write(c, "x", 1) == SY_ECLOSED);
    CHECK(sy_conn_stream_take(c, buf, sizeof buf, &end) == 4 && end == 1 && c->fin_sent);
    sy_conn_stream_sent(c);
    CHECK(!c->closing);
    sy_conn_stream_input(c, "in", 2);
    sy_conn_stream_deliver(c, 1);
    CHECK(seen == 2 && eofs == 1);
    sy_conn_stream_sent(c); /* both sides done */
    CHECK(c->closing && closes == 1);

    /* Detached: the carrier is gone; writes fail, no callback on close. */
    reset();
    c = sy_conn_new_stream(env, &carrier, &proto, NULL, &sink, &wakes);
    sy_conn_stream_detach(c);
    CHECK(sy_conn_write(c, "x", 1) == SY_ECLOSED && wakes == 0);
    sy_conn_close_after_write(c); /* nothing can go out: closes at once */
    CHECK(c->closing && closes == 0 && proto_closes == 1);
    for (int i = 0; i < 10; i++)
        ev_run(loop, EVRUN_NOWAIT);
    CHECK(sy_server_connection_count(s) == 0);

    sy_server_free(s);
    ev_loop_destroy(loop);
    return t_summary("test_conn_stream");
}
