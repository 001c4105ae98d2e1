/* What the core asks of the application: a table of callbacks plus a user pointer, held by the
 * server (s->app, reached by connections through their env) and called only through the
 * sy_app_* functions below. The Lua binding
 * (lua_*.c) is one implementation and installs itself when the server opens its Lua state; a
 * C host may install its own. No Lua types here, so protocols and the server stay free of
 * <lua.h> and link to no binding symbol. */
#ifndef SY_APP_H
#define SY_APP_H

#include "conn.h"
#include "http1.h"
#include "upgrade.h"

/* Whole messages found in one read, in order, handed to the app in one call. */
typedef struct sy_ws_msg {
    const char *p; /* borrowed, valid during the call */
    size_t n;
    int binary;
} sy_ws_msg;

/* Every callback gets the ud given with the table. A NULL entry means: the core's default
 * (written next to each). "handle" is the app's own pointer for one connection, handed to the
 * core with an accept decision (decision.h); the core never looks inside it. */
typedef struct sy_app_ops {
    /* Loads the app file; SY_ELUA (or another SY_E*) with the message in the server's error.
     * NULL: SY_EINVAL. */
    int (*load)(void *ud, const char *path);
    /* The server is being freed: release everything (no app code runs). NULL: nothing. */
    void (*close)(void *ud);
    /* The server began a graceful stop: its listeners are closed, its connections not told
     * yet (they are once this ends). Returns 0 when the app is done, or 1 when it goes on (it
     * waits): done(arg) is then called once when it ends, from the loop, unless the app is
     * closed first. NULL: 0. */
    int (*shutdown)(void *ud, void (*done)(void *arg), void *arg);

    /* A complete request on an HTTP/1.1 connection; req's slices and body are valid during the
     * call only (body.p == NULL when there was none). With n >= 1 valid upgrade offers the app
     * may decide the upgrade (sy_decision_apply); otherwise it answers through sy_h1_respond /
     * sy_http_respond, now or later. NULL: 404. */
    void (*dispatch)(void *ud, sy_conn *c, const sy_http1_request *req, sy_str body,
                     const sy_upgrade_offer *offers, size_t n);
    /* 1 when the app decides upgrades (an HTTP/2 connection then offers extended CONNECT,
     * whose streams reach dispatch as stream connections). NULL: 1 when dispatch is set. */
    int (*has_upgrade)(void *ud);
    /* A complete request on HTTP/2 stream stream_id of c (req->version 20): answered through
     * sy_http_respond, now or later. Slices and body are valid during the call only. NULL:
     * 404. */
    void (*request)(void *ud, sy_conn *c, const sy_http1_request *req, sy_str body,
                    int32_t stream_id);
    /* The connection closed (or the HTTP/2 stream was reset) while a response was pending, or
     * it was answered: the app's res handle (sy_http_set_response_handle) goes dead. */
    void (*response_dropped)(void *ud, void *res);

    /* Raw protocol events. eof and shutdown return 1 when the app handled them, 0 when it
     * has no handler (the connection then closes as before). close: the connection closed;
     * release the handle. */
    void (*raw_open)(void *ud, void *handle);
    void (*raw_data)(void *ud, void *handle, const char *p, size_t n);
    void (*raw_drain)(void *ud, void *handle);
    int (*raw_eof)(void *ud, void *handle);
    int (*raw_shutdown)(void *ud, void *handle);
    void (*raw_close)(void *ud, void *handle);

    /* The connection closed before its new protocol started (between the accept and the
     * switch): release the handle without running any handler. */
    void (*conn_discard)(void *ud, void *handle);

    /* WebSocket events of connection c; any of them may close the connection. close runs
     * once, when the connection is closing or closed: release the handle. The app may swap
     * the handle it gave for another (sy_ws_set_handle), e.g. one it makes on first use. */
    void (*ws_open)(void *ud, sy_conn *c, void *handle);
    void (*ws_messages)(void *ud, sy_conn *c, void *handle, const sy_ws_msg *m, size_t n);
    void (*ws_ping)(void *ud, sy_conn *c, void *handle, const char *p, size_t n, int pong);
    void (*ws_drain)(void *ud, sy_conn *c, void *handle);
    void (*ws_close)(void *ud, sy_conn *c, void *handle, int code, sy_str reason);
} sy_app_ops;

typedef struct sy_app {
    const sy_app_ops *ops; /* borrowed; outlives the server; NULL: every default */
    void *ud;              /* the implementation's, passed to every callback */
    /* The host's WebSocket callbacks (sy_server_set_ws_handler), which run before the app's;
     * server is what they are handed. */
    sy_ws_handler host_ws;
    void *host_ws_ud;
    int has_host_ws;
    sy_server *server; /* borrowed; the server that holds this app */
} sy_app;

/* Loads the app file through ops->load. Returns its result, or SY_EINVAL when the app has no
 * load (the caller words the error). */
int sy_app_load(sy_app *a, const char *path);
/* Releases the app (ops->close), once, when the server is freed. */
void sy_app_close(sy_app *a);
/* The app's part of a graceful stop (ops->shutdown): 0 done, 1 goes on until done(arg). */
int sy_app_shutdown(sy_app *a, void (*done)(void *arg), void *arg);

/* The calls of the protocols, each through the app of the connection's env. dispatch and
 * request return 1 when the app took the request, 0 when it has no such callback (the protocol
 * answers 404). */
int sy_app_dispatch(sy_conn *c, const sy_http1_request *req, sy_str body,
                    const sy_upgrade_offer *offers, size_t n);
int sy_app_has_upgrade(const sy_conn *c);
int sy_app_request(sy_conn *c, const sy_http1_request *req, sy_str body, int32_t stream_id);
void sy_app_response_dropped(sy_conn *c, void *res);
void sy_app_raw_open(sy_conn *c, void *handle);
void sy_app_raw_data(sy_conn *c, void *handle, const char *p, size_t n);
void sy_app_raw_drain(sy_conn *c, void *handle);
int sy_app_raw_eof(sy_conn *c, void *handle);
int sy_app_raw_shutdown(sy_conn *c, void *handle);
void sy_app_raw_close(sy_conn *c, void *handle);
void sy_app_conn_discard(sy_conn *c, void *handle);
void sy_app_ws_open(sy_conn *c, void *handle);
/* With the host's message callback (sy_server_set_ws_handler), each message goes to the host
 * first, one at a time: host_listens says whether it listens on c; host_message returns 1 when
 * the host took the message, 0 when the app is to have it. */
int sy_app_ws_host_listens(const sy_conn *c);
int sy_app_ws_host_message(sy_conn *c, const sy_ws_msg *m);
void sy_app_ws_messages(sy_conn *c, void *handle, const sy_ws_msg *m, size_t n);
void sy_app_ws_ping(sy_conn *c, void *handle, const char *p, size_t n, int pong);
void sy_app_ws_drain(sy_conn *c, void *handle);
void sy_app_ws_close(sy_conn *c, void *handle, int code, sy_str reason);

#endif
