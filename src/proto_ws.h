/* WebSocket message layer (proto_ws.c): options, sending, publishing, closing. */
#ifndef SY_PROTO_WS_H
#define SY_PROTO_WS_H

#include "conn.h"
#include "outq.h"
#include "ws.h"

extern const sy_proto sy_proto_ws;

/* WebSocket settings for one connection (accept options over app.options over defaults). */
typedef struct sy_ws_options {
    size_t max_message;      /* bytes; larger messages close with 1009 (default 1 MiB) */
    size_t max_fragments;    /* fragments per message; more close with 1009 (default 100000) */
    double idle_timeout;     /* seconds without any frame from the peer: close 1001 (120; 0 none) */
    double ping_interval;    /* seconds of silence before the server pings (30; 0 = never) */
    size_t max_backpressure; /* queued bytes past which the policy applies (default 16 MiB) */
    int drop_on_backpressure;     /* 1: drop data messages past it; 0: close with 1008 (default) */
    double close_timeout;         /* seconds to wait for the peer's close frame (5) */
    int compression;              /* permessage-deflate preset, SY_PMD_* (default SY_PMD_OFF) */
    size_t compression_threshold; /* shorter data messages are sent uncompressed (64) */
    double max_inflate_ratio;     /* a connection inflates at most SY_WS_INFLATE_FLOOR bytes plus
                                   * this many times the compressed bytes it sent; past it: close
                                   * 1008 (default 100; 0: no limit) */
    int pmd;                      /* 1 when permessage-deflate was agreed: pmd_params holds it */
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

/* Creates the WebSocket protocol state of c for the app's handle (borrowed; the app releases it
 * in sy_app_ws_close), inside c's area when that is free. Returns NULL when out of memory. */
void *sy_ws_new(sy_conn *c, void *handle, const sy_ws_options *o);
/* Frees a state that never started (the app is not told). */
void sy_ws_free(void *state);

/* Sends one message (SY_WS_TEXT/BINARY) or a ping/pong. Returns 0, 1 when the queue is over the
 * high-water mark, 2 when the message was dropped by the backpressure policy, SY_ECLOSED after
 * a close was sent or the conn is gone, SY_EINVAL for a control payload over 125 bytes. */
int sy_ws_send(sy_conn *c, int opcode, const void *p, size_t n);
/* Same, without copying p: what the socket does not take now is queued by reference, kept
 * through loan (sy_conn_write_ref); a message dropped, compressed or refused is not kept. */
int sy_ws_send_ref(sy_conn *c, int opcode, const void *p, size_t n, sy_outq_loan *loan);

/* Frames a message once (unmasked server frame) into a new chunk with one ref. */
sy_chunk *sy_ws_frame(int opcode, const void *p, size_t n);

/* Sends a framed chunk by reference (publish). Same results as sy_ws_send. */
int sy_ws_send_frame(sy_conn *c, sy_chunk *frame, int is_data);

/* One published data message on its way to many connections: the plain frame, and the
 * compressed frames made once per window size for receivers without server context takeover
 * (a receiver with context takeover gets its own compression). */
typedef struct sy_ws_pub {
    int opcode;    /* SY_WS_TEXT or SY_WS_BINARY */
    const void *p; /* borrowed: the message, valid until sy_ws_pub_dispose */
    size_t n;
    sy_chunk *frame;         /* borrowed: the plain frame (sy_ws_frame) */
    sy_chunk *deflated[16];  /* owned refs, by window bits; NULL until a receiver needs one */
    size_t deflated_off[16]; /* where the frame starts in deflated[b] */
    unsigned tried;          /* bit b: compression with window b was tried */
} sy_ws_pub;

/* Sends pub to c, compressed when c agreed on permessage-deflate and the message is not below
 * its threshold. Same results as sy_ws_send_frame. */
int sy_ws_send_pub(sy_conn *c, sy_ws_pub *pub);
/* Releases the compressed frames. */
void sy_ws_pub_dispose(sy_ws_pub *pub);

/* Frees the env's shared permessage-deflate streams (when its server is freed). */
void sy_ws_env_dispose(sy_env *e);

/* Starts the closing handshake with code (0: none) and reason (<= 123 bytes). Returns 0, or
 * SY_ECLOSED when a close was already sent. */
int sy_ws_close(sy_conn *c, int code, sy_str reason);

/* 1 if c speaks WebSocket and can still send. */
int sy_ws_open(const sy_conn *c);

/* The app's handle of the WebSocket c (borrowed), or NULL when c does not speak WebSocket or
 * the app was told of its close already. */
void *sy_ws_handle(const sy_conn *c);
/* The app swaps its handle of c: from old (the one it has now) to handle. Does nothing when
 * c's handle is not old any more (the app was told of the close). */
void sy_ws_set_handle(sy_conn *c, void *old, void *handle);

#endif
