/* HTTP/1.1 after the accept: answers, the upgrade switch, TLS in place (proto_http1.c), and
 * answers for either HTTP version (proto_h2.c). */
#ifndef SY_PROTO_HTTP1_H
#define SY_PROTO_HTTP1_H

#include <stdint.h>

#include "conn.h"
#include "upgrade.h"

extern const sy_proto sy_proto_http1;

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

/* The pending request of c, parsed again where it waits at the front of c->in (for an app
 * that decides after its hook waited): req (scratch headers of the server, valid until the
 * next parse), its body (p == NULL: none) and its valid upgrade offers (at most
 * SY_UPGRADE_MAX_OFFERS). Returns 0, or SY_ECLOSED when no request is pending. */
int sy_h1_pending_request(sy_conn *c, sy_http1_request *req, sy_str *body, sy_upgrade_offer *offers,
                          size_t *n);

/* Records the app's handle for the pending response, so the conn can tell it when it dies. */
void sy_h1_set_response_handle(sy_conn *c, void *res);

/* Records what the app decided about the pending request's upgrade offers ("accept", "ignore",
 * "426", "reject" or "error"; a static string) for its access log line, which then reads
 * event=upgrade. The last call before the answer counts. On the stream connection of an HTTP/2
 * extended CONNECT it goes to that stream; otherwise nothing happens unless c speaks HTTP/1.1
 * with a request pending. */
void sy_h1_note_decision(sy_conn *c, const char *decision);

/* Switches the connection after the pending upgrade request: writes "101 Switching Protocols"
 * with "Upgrade: upgrade_value", "Connection: Upgrade" and extra header lines, then hands the
 * conn (and any bytes after the request) to proto with state (ownership passes to the conn).
 * Returns 0 or SY_ECLOSED. */
int sy_h1_accept(sy_conn *c, sy_str upgrade_value, sy_str headers, const sy_proto *proto,
                 void *state);

/* Switches the connection to TLS in place (RFC 2817 3.3) for the pending request, whose TLS
 * offer the app accepted: writes "101 Switching Protocols" with "Upgrade: <upgrade_value>,
 * HTTP/1.1" and "Connection: Upgrade", starts the handshake on the same socket (min_version 12
 * or 13), and once it completes hands that same request to app.request over TLS; the
 * connection then goes on as HTTP/1.1 over TLS. Bytes the client sent behind the request
 * refuse the switch with 400 and close. Returns 0, SY_EPROTO (refused and answered), SY_EINVAL
 * (no certificate, or already TLS: nothing written) or SY_ECLOSED. */
int sy_h1_start_tls(sy_conn *c, sy_str upgrade_value, int min_version);

/* Answers a request for the app: stream 0 is the pending request of an HTTP/1.1 connection
 * (sy_h1_respond), any other id an HTTP/2 stream of c (sy_h2_respond; flags do not apply).
 * Same results as sy_h1_respond. */
int sy_http_respond(sy_conn *c, int32_t stream_id, void *res, int status, sy_str headers,
                    sy_str body, int flags);
/* The request still waiting for the app's decision on c, parsed again (after a hook that
 * waited): an HTTP/1.1 connection's pending request (sy_h1_pending_request) or an HTTP/2
 * extended CONNECT on its stream connection. Same results as sy_h1_pending_request. */
int sy_http_pending_request(sy_conn *c, sy_http1_request *req, sy_str *body,
                            sy_upgrade_offer *offers, size_t *n);
/* The core's answer when the app has no handler for a request: 404 "not found". */
void sy_http_not_found(sy_conn *c, int32_t stream_id);
/* Records the app's handle for the pending response of that request (stream 0: HTTP/1.1). */
void sy_http_set_response_handle(sy_conn *c, int32_t stream_id, void *res);

#endif
