/* What the core asks of the application; implemented by the Lua binding (lua_*.c). No Lua types
 * here, so protocols and the server stay free of <lua.h>. */
#ifndef SY_APP_H
#define SY_APP_H

#include "conn.h"
#include "upgrade.h"

struct sy_server;

/* Creates the server's Lua state with the switchyard module preloaded. Returns 0 or SY_ENOMEM. */
int sy_app_open(struct sy_server *s);
/* Loads the app file; SY_ELUA with the message (file:line) in the server's error. */
int sy_app_load(struct sy_server *s, const char *path);
/* Closes the Lua state (runs finalizers; no app code). */
void sy_app_close(struct sy_server *s);

/* A complete request on an HTTP/1.1 connection; req's slices and body are valid during the call
 * only (body.p == NULL when there was none). With n >= 1 valid upgrade offers app.upgrade
 * decides first (answer, switch with sy_h1_accept, or fall through to app.request); otherwise
 * app.request answers through sy_h1_respond, now or later. */
void sy_app_dispatch(sy_conn *c, const sy_http1_request *req, sy_str body,
                     const sy_upgrade_offer *offers, size_t n);

/* A complete request on HTTP/2 stream stream_id of c (req->version 20): app.request answers
 * through sy_http_respond, now or later. Slices and body are valid during the call only. */
void sy_app_request(sy_conn *c, const sy_http1_request *req, sy_str body, int32_t stream_id);

/* The connection closed (or the HTTP/2 stream was reset) while a response was pending: the app's
 * res handle goes dead. */
void sy_app_response_dropped(void *res);

/* Raw protocol events for the app's handle (the proto_state of a raw conn). */
void sy_app_raw_open(void *handle);
void sy_app_raw_data(void *handle, const char *p, size_t n);
void sy_app_raw_drain(void *handle);
/* The peer shut its side (EOF): runs the app's eof handler and returns 1, or returns 0 when
 * the app has none (the connection then closes as before). */
int sy_app_raw_eof(void *handle);
/* The server is stopping: runs the app's shutdown handler and returns 1, or returns 0 when the
 * app has none. */
int sy_app_raw_shutdown(void *handle);
/* The connection closed: call the close handler, detach and release the handle. */
void sy_app_raw_close(void *handle);

/* The connection closed before its new protocol started (between the accept and the switch):
 * release the handle without running any handler; open never ran, so close does not either. */
void sy_app_conn_discard(void *handle);

/* WebSocket events for the app's handle. Any of them may close the connection. */
void sy_app_ws_open(void *handle);
void sy_app_ws_message(void *handle, const char *p, size_t n, int binary);
/* Whole messages found in one read, in order, handed to the app in one protected call. */
typedef struct sy_ws_msg {
    const char *p; /* borrowed, valid during the call */
    size_t n;
    int binary;
} sy_ws_msg;
void sy_app_ws_messages(void *handle, const sy_ws_msg *m, size_t n);
void sy_app_ws_ping(void *handle, const char *p, size_t n, int pong);
void sy_app_ws_drain(void *handle);
/* The connection is closing or closed (once): call the close handler, detach the handle. */
void sy_app_ws_close(void *handle, int code, sy_str reason);


#endif
