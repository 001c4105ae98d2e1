/* Raw byte-stream protocols (any upgrade token the core does not know): bytes to the app's
 * data handler, writes buffered with a high-water mark, an idle timeout, the peer's
 * half-close (eof) and ours (conn:shutdown), and the server's stop. */
#include "app.h"
#include "proto.h"

typedef struct rawp {
    void *handle;         /* the app's handle; NULL once the app was told of the close */
    double idle_timeout;  /* seconds; 0: none */
    ev_tstamp last_rx;    /* when bytes last came from the peer */
    sy_access_counts log; /* bytes both ways, for the access log */
    unsigned started : 1; /* on_start ran: the app heard open, so it hears close */
} rawp;

void sy_raw_default_options(sy_raw_options *o)
{
    o->idle_timeout = 120;
}

void *sy_raw_new(void *handle, const sy_raw_options *o)
{
    rawp *r = sy_calloc(1, sizeof *r);
    if (r) {
        r->handle = handle;
        r->idle_timeout = o->idle_timeout;
    }
    return r;
}

void sy_raw_free(void *state)
{
    sy_free(state);
}

static void raw_on_bytes(sy_conn *c)
{
    rawp *r = c->proto_state;
    r->last_rx = ev_now(c->env->loop);
    while (!c->closing && sy_buf_len(&c->in)) {
        /* The handler may write, close, or pause: take the bytes out of the buffer first. */
        size_t n = sy_buf_len(&c->in);
        r->log.bytes_in += n;
        sy_app_raw_data(c, r->handle, sy_buf_data(&c->in), n);
        if (c->closing)
            return;
        sy_buf_consume(&c->in, n);
    }
    if (!c->closing)
        sy_buf_trim(&c->in, 65536);
}

int sy_raw_write(sy_conn *c, const void *p, size_t n)
{
    rawp *r = c->proto == &sy_proto_raw ? c->proto_state : NULL;
    if (r)
        r->log.bytes_out += n;
    return sy_conn_write(c, p, n);
}

static void raw_on_drain(sy_conn *c)
{
    rawp *r = c->proto_state;
    sy_app_raw_drain(c, r->handle);
}

static void raw_on_eof(sy_conn *c)
{
    rawp *r = c->proto_state;
    /* Without an eof handler the peer's EOF ends the connection (after what is queued). */
    if (!sy_app_raw_eof(c, r->handle)) {
        sy_conn_close_after_write(c);
        return;
    }
    /* Our FIN went out already: nothing can flow either way. */
    if (!c->closing && c->fin_sent)
        sy_conn_close(c);
}

static void raw_on_timeout(sy_conn *c)
{
    rawp *r = c->proto_state;
    if (r->idle_timeout <= 0)
        return;
    ev_tstamp now = ev_now(c->env->loop);
    if (c->read_paused && !c->peer_eof && c->env->cfg.send_timeout > 0) {
        /* Reading waits for the peer to take our output: its bytes wait unread, so its silence
         * cannot be told. The send timeout bounds a peer that takes nothing. */
        r->last_rx = now;
        sy_conn_set_timeout(c, r->idle_timeout);
        return;
    }
    double quiet = now - r->last_rx;
    if (quiet >= r->idle_timeout) {
        sy_conn_close_after_write(c);
        return;
    }
    /* Bytes came meanwhile: wait for the rest of the limit from the last of them. */
    double left = r->idle_timeout - quiet;
    sy_conn_set_timeout(c, left > 0.05 ? left : 0.05);
}

static void raw_on_shutdown(sy_conn *c)
{
    rawp *r = c->proto_state;
    if (c->close_after_write)
        return; /* closing already: nothing for the app to finish */
    /* With a shutdown handler the app closes in its own time; the grace period bounds it. */
    if (!sy_app_raw_shutdown(c, r->handle))
        sy_conn_close_after_write(c);
}

static void raw_on_close(sy_conn *c)
{
    rawp *r = c->proto_state;
    c->proto_state = NULL;
    if (!r)
        return;
    void *handle = r->handle;
    int started = r->started;
    if (started)
        sy_env_access_close(c, "raw", &r->log);
    sy_free(r);
    if (!handle)
        return;
    if (started)
        sy_app_raw_close(c, handle);
    else
        sy_app_conn_discard(c, handle); /* open never ran: neither does close */
}

static void raw_on_start(sy_conn *c)
{
    rawp *r = c->proto_state;
    r->started = 1;
    r->last_rx = r->log.started = ev_now(c->env->loop);
    if (r->idle_timeout > 0)
        sy_conn_set_timeout(c, r->idle_timeout);
    sy_app_raw_open(c, r->handle);
}

const sy_proto sy_proto_raw = {
    .name = "raw",
    .on_bytes = raw_on_bytes,
    .on_eof = raw_on_eof,
    .on_drain = raw_on_drain,
    .on_timeout = raw_on_timeout,
    .on_shutdown = raw_on_shutdown,
    .on_close = raw_on_close,
    .on_start = raw_on_start,
};
