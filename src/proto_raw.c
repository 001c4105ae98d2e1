/* Raw byte-stream protocols (any upgrade token the core does not know): bytes to the app's
 * data handler, writes buffered with a high-water mark. */
#include "app.h"
#include "proto.h"
#include "server.h"

static void raw_on_bytes(sy_conn *c)
{
    while (!c->closing && sy_buf_len(&c->in)) {
        /* The handler may write, close, or pause: take the bytes out of the buffer first. */
        size_t n = sy_buf_len(&c->in);
        sy_app_raw_data(c->proto_state, sy_buf_data(&c->in), n);
        if (c->closing)
            return;
        sy_buf_consume(&c->in, n);
    }
    if (!c->closing)
        sy_buf_trim(&c->in, 65536);
}

static void raw_on_drain(sy_conn *c)
{
    sy_app_raw_drain(c->proto_state);
}

static void raw_on_eof(sy_conn *c)
{
    sy_conn_close_after_write(c);
}

static void raw_on_close(sy_conn *c)
{
    void *handle = c->proto_state;
    c->proto_state = NULL;
    if (handle)
        sy_app_raw_close(handle);
}

static void raw_on_start(sy_conn *c)
{
    sy_app_raw_open(c->proto_state);
}

const sy_proto sy_proto_raw = {
    .name = "raw",
    .on_bytes = raw_on_bytes,
    .on_eof = raw_on_eof,
    .on_drain = raw_on_drain,
    .on_timeout = NULL,
    .on_shutdown = NULL,
    .on_close = raw_on_close,
    .on_start = raw_on_start,
};
