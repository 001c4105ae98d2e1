/* The protocol handlers a connection can speak, and what the app layer calls on them. */
#ifndef SY_PROTO_H
#define SY_PROTO_H

#include "conn.h"
#include "upgrade.h"

extern const sy_proto sy_proto_http1;
extern const sy_proto sy_proto_raw;
extern const sy_proto sy_proto_ws;

/* Starts HTTP/1.1 on a fresh connection: returns the protocol state or NULL (no memory). */
void *sy_h1_state_new(void);
void sy_h1_state_free(void *state);

/* Answers the connection's pending request: status, extra header lines (already validated,
 * each "Name: value\r\n"), body. Returns 0, SY_ECLOSED when the connection is gone or the
 * response was sent already, or SY_EINVAL for a status out of range. keep_alive 0 forces
 * "Connection: close". The next pipelined request is processed from the loop, not from here. */
enum {
    SY_H1_CONN_UPGRADE = 1, /* add "Upgrade" to the Connection field (426, RFC 9110 15.5.22) */
    SY_H1_CLOSE = 2,        /* close the connection after this response */
};
int sy_h1_respond(sy_conn *c, void *res, int status, sy_str headers, sy_str body, int flags);

/* Records the app's handle for the pending response, so the conn can tell it when it dies. */
void sy_h1_set_response_handle(sy_conn *c, void *res);

/* Switches the connection after the pending upgrade request: writes "101 Switching Protocols"
 * with "Upgrade: upgrade_value", "Connection: Upgrade" and extra header lines, then hands the
 * conn (and any bytes after the request) to proto with state (ownership passes to the conn).
 * Returns 0 or SY_ECLOSED. */
int sy_h1_accept(sy_conn *c, sy_str upgrade_value, sy_str headers, const sy_proto *proto,
                 void *state);


#endif
