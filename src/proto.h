/* The protocol handlers a connection can speak, and what the app layer calls on them. */
#ifndef SY_PROTO_H
#define SY_PROTO_H

#include "conn.h"
#include "upgrade.h"
#include "ws.h"

/* The HTTP/2 client connection preface (RFC 9113 3.4). */
#define SY_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

extern const sy_proto sy_proto_http1;
extern const sy_proto sy_proto_raw;
extern const sy_proto sy_proto_ws;
extern const sy_proto sy_proto_h2;

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
/* Records the app's handle for the pending response of that request (stream 0: HTTP/1.1). */
void sy_http_set_response_handle(sy_conn *c, int32_t stream_id, void *res);

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

/* Raw protocol settings for one connection (accept options over app.options over defaults). */
typedef struct sy_raw_options {
    double idle_timeout; /* seconds without bytes from the peer: close (default 120; 0 none) */
} sy_raw_options;

void sy_raw_default_options(sy_raw_options *o);

/* Creates the raw protocol state for the app's handle (borrowed; the app releases it in
 * sy_app_raw_close, or in sy_app_conn_discard when the protocol never started). Returns NULL
 * when out of memory. */
void *sy_raw_new(void *handle, const sy_raw_options *o);
/* Frees a state that never started (the app is not told). */
void sy_raw_free(void *state);

/* WebSocket settings for one connection (accept options over app.options over defaults). */
typedef struct sy_ws_options {
    size_t max_message;      /* bytes; larger messages close with 1009 (default 1 MiB) */
    size_t max_fragments;    /* fragments per message; more close with 1009 (default 100000) */
    double idle_timeout;     /* seconds without any frame from the peer: close 1001 (120; 0 none) */
    double ping_interval;    /* seconds of silence before the server pings (30; 0 = never) */
    size_t max_backpressure; /* queued bytes past which the policy applies (default 16 MiB) */
    int drop_on_backpressure;/* 1: drop data messages past it; 0: close with 1008 (default) */
    double close_timeout;    /* seconds to wait for the peer's close frame (5) */
    int compression;         /* permessage-deflate preset, SY_PMD_* (default SY_PMD_OFF) */
    size_t compression_threshold; /* shorter data messages are sent uncompressed (64) */
    double max_inflate_ratio; /* a connection inflates at most SY_WS_INFLATE_FLOOR bytes plus
                               * this many times the compressed bytes it sent; past it: close
                               * 1008 (default 100; 0: no limit) */
    int pmd;                 /* 1 when permessage-deflate was agreed: pmd_params holds it */
    sy_pmd_params pmd_params;
} sy_ws_options;

/* permessage-deflate memory presets (the `compression` option). */
enum {
    SY_PMD_OFF = 0,
    SY_PMD_SHARED,  /* no context takeover either way: compressors shared by the server */
    SY_PMD_SMALL,   /* context takeover with 2 KiB windows (or none kept for the client's) */
    SY_PMD_DEFAULT, /* context takeover with zlib's default 32 KiB windows */
};

/* What every connection may inflate beyond max_inflate_ratio times what it sent. */
#define SY_WS_INFLATE_FLOOR (64 * 1024)

void sy_ws_default_options(sy_ws_options *o);

/* What a preset asks of the client (SY_PMD_SHARED .. SY_PMD_DEFAULT). */
void sy_ws_pmd_config(int preset, sy_pmd_config *cfg);

/* Creates the WebSocket protocol state for the app's handle (borrowed; the app releases it in
 * sy_app_ws_close). Returns NULL when out of memory. */
void *sy_ws_new(void *handle, const sy_ws_options *o);
/* Frees a state that never started (the app is not told). */
void sy_ws_free(void *state);

/* Sends one message (SY_WS_TEXT/BINARY) or a ping/pong. Returns 0, 1 when the queue is over the
 * high-water mark, 2 when the message was dropped by the backpressure policy, SY_ECLOSED after
 * a close was sent or the conn is gone, SY_EINVAL for a control payload over 125 bytes. */
int sy_ws_send(sy_conn *c, int opcode, const void *p, size_t n);

/* Frames a message once (unmasked server frame) into a new chunk with one ref. */
sy_chunk *sy_ws_frame(int opcode, const void *p, size_t n);

/* Sends a framed chunk by reference (publish). Same results as sy_ws_send. */
int sy_ws_send_frame(sy_conn *c, sy_chunk *frame, int is_data);

/* One published data message on its way to many connections: the plain frame, and the
 * compressed frames made once per window size for receivers without server context takeover
 * (a receiver with context takeover gets its own compression). */
typedef struct sy_ws_pub {
    int opcode;             /* SY_WS_TEXT or SY_WS_BINARY */
    const void *p;          /* borrowed: the message, valid until sy_ws_pub_dispose */
    size_t n;
    sy_chunk *frame;        /* borrowed: the plain frame (sy_ws_frame) */
    sy_chunk *deflated[16]; /* owned refs, by window bits; NULL until a receiver needs one */
    size_t deflated_off[16];/* where the frame starts in deflated[b] */
    unsigned tried;         /* bit b: compression with window b was tried */
} sy_ws_pub;

/* Sends pub to c, compressed when c agreed on permessage-deflate and the message is not below
 * its threshold. Same results as sy_ws_send_frame. */
int sy_ws_send_pub(sy_conn *c, sy_ws_pub *pub);
/* Releases the compressed frames. */
void sy_ws_pub_dispose(sy_ws_pub *pub);

/* Frees the server's shared permessage-deflate streams (sy_server_free). */
void sy_ws_server_dispose(sy_server *s);

/* Starts the closing handshake with code (0: none) and reason (<= 123 bytes). Returns 0, or
 * SY_ECLOSED when a close was already sent. */
int sy_ws_close(sy_conn *c, int code, sy_str reason);

/* 1 if c speaks WebSocket and can still send. */
int sy_ws_open(const sy_conn *c);

#endif
