/* WebSocket after the 101: the connection belongs to this handler from the switch on. */
#include "app.h"
#include "proto.h"
#include "server.h"

static void ws_on_bytes(sy_conn *c)
{
    /* Frames are decoded by the WebSocket frame layer; until a message layer consumes them,
     * input stays queued and reading stops at the buffer's limit. */
    (void)c;
}

static void ws_on_eof(sy_conn *c)
{
    /* RFC 6455 7.1.5: no close frame arrived, so the close code is 1006 (in on_close). */
    sy_conn_close(c);
}

static void ws_on_shutdown(sy_conn *c)
{
    /* RFC 6455 7.4.1: 1001 going away. */
    static const char close_frame[] = {(char)0x88, 2, 0x03, (char)0xE9};
    sy_conn_write(c, close_frame, sizeof close_frame);
    if (!c->closing)
        sy_conn_close_after_write(c);
}

static void ws_on_close(sy_conn *c)
{
    void *handle = c->proto_state;
    c->proto_state = NULL;
    if (handle)
        sy_app_ws_close(handle, 1006, sy_str_make("", 0));
}

const sy_proto sy_proto_ws = {
    .name = "websocket",
    .on_bytes = ws_on_bytes,
    .on_eof = ws_on_eof,
    .on_drain = NULL,
    .on_timeout = NULL,
    .on_shutdown = ws_on_shutdown,
    .on_close = ws_on_close,
};
