/* HTTP/2 (proto_h2.c): prior knowledge, ALPN "h2" and the h2c upgrade, on nghttp2. */
#ifndef SY_PROTO_H2_H
#define SY_PROTO_H2_H

#include <stdint.h>

#include "conn.h"
#include "http1.h"

/* The HTTP/2 client connection preface (RFC 9113 3.4). */
#define SY_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

extern const sy_proto sy_proto_h2;

/* Switches a fresh connection to HTTP/2 expecting the client connection preface (prior
 * knowledge on a cleartext listener, or ALPN "h2"). A fresh HTTP/1.1 state of c is released
 * here; any other protocol must have released its state. Bytes already in c->in are the
 * start of the HTTP/2 stream. Returns 0, or SY_ENOMEM / SY_ECLOSED with the conn closed. */
int sy_h2_start_direct(sy_conn *c);

/* The HTTP/2 state for an h2c upgrade (RFC 7540 3.2) of req, to pass to sy_h1_accept: copies the
 * request (head and its whole body) to be served as stream 1, and the decoded HTTP2-Settings
 * value (base64url, validated by sy_upgrade_offers). Returns NULL when out of memory. */
void *sy_h2_new_upgrade(sy_conn *c, const sy_http1_request *req, sy_str body, sy_str settings);
/* Frees a state from sy_h2_new_upgrade that never started. */
void sy_h2_free(void *state);

/* Submits the response of an HTTP/2 stream: status 200..999 (SY_EINVAL otherwise), header lines
 * ("Name: value\r\n", names lower-cased here, connection-specific ones dropped), body (copied).
 * Returns 0, SY_ECLOSED when the stream or connection is gone or already answered, SY_ENOMEM. */
int sy_h2_respond(sy_conn *c, int32_t stream_id, void *res, int status, sy_str headers,
                  sy_str body);

/* Accepts the extended CONNECT (RFC 8441) of the stream connection vc: answers 200 with the
 * header lines (as for sy_h2_respond) and switches vc to proto with state (taken over on
 * success), whose output then travels as the stream's DATA. Returns 0, SY_ECLOSED (the stream
 * is gone or answered), SY_ENOMEM. */
int sy_h2_tunnel_accept(sy_conn *vc, sy_str headers, const sy_proto *proto, void *state);

/* Records what app.upgrade decided about the extended CONNECT of vc (as sy_h1_note_decision),
 * for the access log's upgrade line. Nothing happens once the stream is answered. */
void sy_h2_tunnel_note_decision(sy_conn *vc, const char *decision);

#endif
