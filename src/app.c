/* The core's side of the app interface: each call goes through the table of the app that the
 * connection's env names (app.h), after the host's WebSocket callbacks where there are any. */
#include "app.h"

/* The app's entry op, or NULL. */
#define OP(a, name) ((a)->ops ? (a)->ops->name : NULL)
#define UD(a) ((a)->ud)
/* The app a connection hands its events to. */
#define APP(c) ((c)->metrics_app ? (c)->env->metrics_app : (c)->env->app)

int sy_app_load(sy_app *a, const char *path)
{
    return OP(a, load) ? OP(a, load)(UD(a), path) : SY_EINVAL;
}

void sy_app_close(sy_app *a)
{
    if (OP(a, close))
        OP(a, close)(UD(a));
}

int sy_app_shutdown(sy_app *a, void (*done)(void *arg), void *arg)
{
    return OP(a, shutdown) ? OP(a, shutdown)(UD(a), done, arg) : 0;
}

int sy_app_dispatch(sy_conn *c, const sy_http1_request *req, sy_str body,
                    const sy_upgrade_offer *offers, size_t n)
{
    sy_app *a = APP(c);
    if (!OP(a, dispatch))
        return 0;
    OP(a, dispatch)(UD(a), c, req, body, offers, n);
    return 1;
}

int sy_app_has_upgrade(const sy_conn *c)
{
    sy_app *a = APP(c);
    if (OP(a, has_upgrade))
        return OP(a, has_upgrade)(UD(a));
    return OP(a, dispatch) != NULL;
}

int sy_app_request(sy_conn *c, const sy_http1_request *req, sy_str body, int32_t stream_id)
{
    sy_app *a = APP(c);
    if (!OP(a, request))
        return 0;
    OP(a, request)(UD(a), c, req, body, stream_id);
    return 1;
}

void sy_app_response_dropped(sy_conn *c, void *res)
{
    if (OP(APP(c), response_dropped))
        OP(APP(c), response_dropped)(UD(APP(c)), res);
}

void sy_app_raw_open(sy_conn *c, void *handle)
{
    if (OP(APP(c), raw_open))
        OP(APP(c), raw_open)(UD(APP(c)), handle);
}

void sy_app_raw_data(sy_conn *c, void *handle, const char *p, size_t n)
{
    if (OP(APP(c), raw_data))
        OP(APP(c), raw_data)(UD(APP(c)), handle, p, n);
}

void sy_app_raw_drain(sy_conn *c, void *handle)
{
    if (OP(APP(c), raw_drain))
        OP(APP(c), raw_drain)(UD(APP(c)), handle);
}

int sy_app_raw_eof(sy_conn *c, void *handle)
{
    return OP(APP(c), raw_eof) ? OP(APP(c), raw_eof)(UD(APP(c)), handle) : 0;
}

int sy_app_raw_shutdown(sy_conn *c, void *handle)
{
    return OP(APP(c), raw_shutdown) ? OP(APP(c), raw_shutdown)(UD(APP(c)), handle) : 0;
}

void sy_app_raw_close(sy_conn *c, void *handle)
{
    if (OP(APP(c), raw_close))
        OP(APP(c), raw_close)(UD(APP(c)), handle);
}

void sy_app_conn_discard(sy_conn *c, void *handle)
{
    if (OP(APP(c), conn_discard))
        OP(APP(c), conn_discard)(UD(APP(c)), handle);
}

/* The host's callbacks run first: it hears of a WebSocket before any Lua code can name it. */
void sy_app_ws_open(sy_conn *c, void *handle)
{
    sy_app *a = APP(c);
    if (a->has_host_ws && c->id) {
        c->host_open = 1;
        if (a->host_ws.on_open)
            a->host_ws.on_open(a->server, c->id, a->host_ws_ud);
        if (c->closing || c->ws_closed)
            return; /* the host closed it, or it failed meanwhile (a send past
                       max_backpressure): the app never hears of it (sy_app_ws_close) */
    }
    c->app_open = 1;
    if (OP(APP(c), ws_open))
        OP(APP(c), ws_open)(UD(APP(c)), c, handle);
}

int sy_app_ws_host_listens(const sy_conn *c)
{
    return c->host_open && APP(c)->host_ws.on_message;
}

int sy_app_ws_host_message(sy_conn *c, const sy_ws_msg *m)
{
    sy_app *a = APP(c);
    sy_stats *st = &c->env->stats;
    int took = a->host_ws.on_message(a->server, c->id, m->p, m->n, m->binary, a->host_ws_ud) != 0;
    if (took)
        sy_stats_ws_in(st, m->n); /* else the app's message count takes it */
    return took;
}

void sy_app_ws_messages(sy_conn *c, void *handle, const sy_ws_msg *m, size_t n)
{
    sy_app *a = APP(c);
    for (size_t i = 0; i < n; i++)
        sy_stats_ws_in(&c->env->stats, m[i].n);
    if (OP(a, ws_messages))
        OP(a, ws_messages)(UD(a), c, handle, m, n);
}

void sy_app_ws_ping(sy_conn *c, void *handle, const char *p, size_t n, int pong)
{
    if (OP(APP(c), ws_ping))
        OP(APP(c), ws_ping)(UD(APP(c)), c, handle, p, n, pong);
}

void sy_app_ws_drain(sy_conn *c, void *handle)
{
    if (OP(APP(c), ws_drain))
        OP(APP(c), ws_drain)(UD(APP(c)), c, handle);
}

void sy_app_ws_close(sy_conn *c, void *handle, int code, sy_str reason)
{
    sy_app *a = APP(c);
    c->ws_closed = 1;
    if (c->host_open) {
        c->host_open = 0;
        if (a->host_ws.on_close)
            a->host_ws.on_close(a->server, c->id, code, reason.p ? reason.p : "", reason.len,
                                a->host_ws_ud);
    }
    if (!c->app_open) {
        sy_app_conn_discard(c, handle); /* no close without open */
        return;
    }
    c->app_open = 0;
    if (OP(APP(c), ws_close))
        OP(APP(c), ws_close)(UD(APP(c)), c, handle, code, reason);
}
