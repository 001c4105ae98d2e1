/* The core's side of the app interface: each call goes through the server's table (app.h). */
#include "app.h"

#include "proto.h"
#include "server.h"

void sy_server_set_app(sy_server *s, const sy_app_ops *ops, void *ud)
{
    s->app.ops = ops;
    s->app.ud = ud;
}

/* The app's entry op of c's server, or NULL. */
#define OP(s, name) ((s)->app.ops ? (s)->app.ops->name : NULL)
#define UD(s) ((s)->app.ud)

int sy_app_load(sy_server *s, const char *path)
{
    if (!OP(s, load))
        return sy_server_fail(s, SY_EINVAL, "no app implementation to load %s", path);
    return OP(s, load)(UD(s), path);
}

void sy_app_close(sy_server *s)
{
    if (OP(s, close))
        OP(s, close)(UD(s));
}

static void not_found(sy_conn *c, int32_t stream_id)
{
    int rc = sy_http_respond(c, stream_id, NULL, 404, SY_STR("Content-Type: text/plain\r\n"),
                             SY_STR("not found\n"), 0);
    if (rc != 0 && rc != SY_ECLOSED && !c->closing)
        sy_conn_close(c);
}

void sy_app_dispatch(sy_conn *c, const sy_http1_request *req, sy_str body,
                     const sy_upgrade_offer *offers, size_t n)
{
    sy_server *s = c->server;
    if (OP(s, dispatch))
        OP(s, dispatch)(UD(s), c, req, body, offers, n);
    else
        not_found(c, 0);
}

void sy_app_request(sy_conn *c, const sy_http1_request *req, sy_str body, int32_t stream_id)
{
    sy_server *s = c->server;
    if (OP(s, request))
        OP(s, request)(UD(s), c, req, body, stream_id);
    else
        not_found(c, stream_id);
}

void sy_app_response_dropped(sy_conn *c, void *res)
{
    if (OP(c->server, response_dropped))
        OP(c->server, response_dropped)(UD(c->server), res);
}

void sy_app_raw_open(sy_conn *c, void *handle)
{
    if (OP(c->server, raw_open))
        OP(c->server, raw_open)(UD(c->server), handle);
}

void sy_app_raw_data(sy_conn *c, void *handle, const char *p, size_t n)
{
    if (OP(c->server, raw_data))
        OP(c->server, raw_data)(UD(c->server), handle, p, n);
}

void sy_app_raw_drain(sy_conn *c, void *handle)
{
    if (OP(c->server, raw_drain))
        OP(c->server, raw_drain)(UD(c->server), handle);
}

int sy_app_raw_eof(sy_conn *c, void *handle)
{
    return OP(c->server, raw_eof) ? OP(c->server, raw_eof)(UD(c->server), handle) : 0;
}

int sy_app_raw_shutdown(sy_conn *c, void *handle)
{
    return OP(c->server, raw_shutdown) ? OP(c->server, raw_shutdown)(UD(c->server), handle) : 0;
}

void sy_app_raw_close(sy_conn *c, void *handle)
{
    if (OP(c->server, raw_close))
        OP(c->server, raw_close)(UD(c->server), handle);
}

void sy_app_conn_discard(sy_conn *c, void *handle)
{
    if (OP(c->server, conn_discard))
        OP(c->server, conn_discard)(UD(c->server), handle);
}

SY_API void sy_server_set_ws_handler(sy_server *s, const sy_ws_handler *h, void *ud)
{
    if (h) {
        s->host_ws = *h;
        s->host_ws_ud = ud;
        s->has_host_ws = 1;
    } else {
        memset(&s->host_ws, 0, sizeof s->host_ws);
        s->host_ws_ud = NULL;
        s->has_host_ws = 0;
    }
}

/* The host's callbacks run first: it hears of a WebSocket before any Lua code can name it. */
void sy_app_ws_open(sy_conn *c, void *handle)
{
    sy_server *s = c->server;
    if (s->has_host_ws && c->id) {
        c->host_open = 1;
        if (s->host_ws.on_open)
            s->host_ws.on_open(s, c->id, s->host_ws_ud);
        if (c->closing)
            return;
    }
    if (OP(c->server, ws_open))
        OP(c->server, ws_open)(UD(c->server), handle);
}

/* With a host message callback, each message goes to it first and, when it passes it on, to
 * the app on its own, so the order holds across the two. */
void sy_app_ws_messages(sy_conn *c, void *handle, const sy_ws_msg *m, size_t n)
{
    sy_server *s = c->server;
    if (c->host_open && s->host_ws.on_message) {
        sy_conn_ref(c);
        for (size_t i = 0; i < n && sy_ws_open(c); i++) {
            if (s->host_ws.on_message(s, c->id, m[i].p, m[i].n, m[i].binary, s->host_ws_ud))
                continue;
            if (sy_ws_open(c) && OP(s, ws_messages))
                OP(s, ws_messages)(UD(s), handle, &m[i], 1);
        }
        sy_conn_unref(c);
        return;
    }
    if (OP(c->server, ws_messages))
        OP(c->server, ws_messages)(UD(c->server), handle, m, n);
}

void sy_app_ws_message(sy_conn *c, void *handle, const char *p, size_t n, int binary)
{
    sy_ws_msg m = {p, n, binary};
    sy_app_ws_messages(c, handle, &m, 1);
}

void sy_app_ws_ping(sy_conn *c, void *handle, const char *p, size_t n, int pong)
{
    if (OP(c->server, ws_ping))
        OP(c->server, ws_ping)(UD(c->server), handle, p, n, pong);
}

void sy_app_ws_drain(sy_conn *c, void *handle)
{
    if (OP(c->server, ws_drain))
        OP(c->server, ws_drain)(UD(c->server), handle);
}

void sy_app_ws_close(sy_conn *c, void *handle, int code, sy_str reason)
{
    sy_server *s = c->server;
    if (c->host_open) {
        c->host_open = 0;
        if (s->host_ws.on_close)
            s->host_ws.on_close(s, c->id, code, reason.p ? reason.p : "", reason.len,
                                s->host_ws_ud);
    }
    if (OP(c->server, ws_close))
        OP(c->server, ws_close)(UD(c->server), handle, code, reason);
}
