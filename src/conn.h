/* A connection: socket + one protocol at a time, buffers, refs, a timer and a deferred close. */
#ifndef SY_CONN_H
#define SY_CONN_H

#include <ev.h>
#include <netinet/in.h>

#include "buf.h"
#include "env.h"
#include "outq.h"
#include "tls.h"

/* A remote address in 20 bytes; sy_peer_format renders it. */
typedef struct sy_peer {
    uint8_t family; /* AF_INET, AF_INET6, or 0 when unknown */
    uint8_t addr[16];
    uint16_t port;
} sy_peer;

/* Writes the address ("127.0.0.1", "::1"; "" when unknown) into out. */
void sy_peer_format(const sy_peer *p, char out[INET6_ADDRSTRLEN]);

/* A protocol handler: what a connection speaks now. Every callback may close the conn. */
typedef struct sy_proto {
    const char *name;
    /* New bytes are in c->in (or bytes were left there by the previous protocol). */
    void (*on_bytes)(sy_conn *c);
    /* The peer shut down its side (EOF); bytes still in c->in were offered already. NULL:
     * close the connection. */
    void (*on_eof)(sy_conn *c);
    /* Queued output fell below the high-water mark (only after sy_conn_write reported it). */
    void (*on_drain)(sy_conn *c);
    /* The connection's timer fired. */
    void (*on_timeout)(sy_conn *c);
    /* The server is stopping gracefully. NULL: close once output drains. */
    void (*on_shutdown)(sy_conn *c);
    /* The connection is closing: release the protocol state. Must not close again. */
    void (*on_close)(sy_conn *c);
    /* The connection was just switched to this protocol (may be NULL). */
    void (*on_start)(sy_conn *c);
    /* 1: on_bytes keeps no pointer into c->in once it returns, so c->in may borrow a read
     * buffer shared by the loop for the length of the call (sy_buf_borrow). */
    int borrows_input;
} sy_proto;

/* Where a stream connection's bytes travel instead of a socket: a stream of an HTTP/2
 * connection carrying a WebSocket or a raw protocol (RFC 8441). The carrier takes output from
 * c->out (sy_conn_stream_take) and hands input in (sy_conn_stream_input); each callback gets the
 * carrier's ud, which is NULL once the carrier let go of c (sy_conn_stream_detach). */
typedef struct sy_conn_sink {
    /* Output waits in c->out, or the end of it was asked for (close_after_write, shut_wr). */
    void (*wake)(sy_conn *c, void *ud);
    /* Reading resumed: input credit held back may go to the peer. */
    void (*resume)(sy_conn *c, void *ud);
    /* c is closing: the carrier ends or resets the stream and forgets c. */
    void (*closed)(sy_conn *c, void *ud);
} sy_conn_sink;

/* Bytes inside every connection for the state of the protocol it switched to, so that state
 * needs no allocation of its own (an idle WebSocket: proto_ws.c, which checks that it fits). */
#define SY_CONN_AREA 64

/* Laid out by size, without holes: every idle connection holds one. */
struct sy_conn {
    ev_io io;           /* the socket's one watcher: EV_READ while reading (io_read), EV_WRITE
                           while output waits (io_write); stopped when neither */
    ev_timer timer;     /* every timeout: fires no later than the earliest of the deadline and the
                           send timeout (while send_armed), maybe earlier, and re-arms itself (lazy:
                           no heap work per request or write) */
    ev_tstamp sent_at;  /* when the socket last took bytes (or output started waiting) */
    ev_tstamp deadline; /* when the protocol's timeout is due, or, once closing after output
                           or lingering, when the wait ends; 0: none */
    sy_env *env;        /* borrowed; outlives all of its connections */
    sy_buf in;          /* bytes read (plaintext under TLS) not yet used by the protocol */
    sy_outq out;        /* bytes queued for the peer (plaintext under TLS: encrypted as
                           the socket takes them) */
    sy_tls *tls;        /* owned; NULL until a TLS listener or an in-place TLS upgrade
                           adds it */
    const sy_proto *proto; /* borrowed static table */
    void *proto_state;     /* owned by the protocol; released in proto->on_close */
    uint64_t id;           /* the server's id for it (sy_conn_id); 0 without memory */
    union {
        sy_conn *prev;      /* the server's list of live connections (with next) */
        sy_conn *next_dead; /* once closed: the server's queue of conns awaiting release */
    };
    sy_conn *next;
    sy_conn *next_queued;     /* the server's scheduled queue */
    const sy_conn_sink *sink; /* borrowed static table; NULL for a socket connection */
    void *sink_ud;            /* the carrier's; NULL once it let go (sy_conn_stream_detach) */
    int fd;                   /* owned; -1 once closed */
    int refs;                 /* > 0 while C or Lua code runs on behalf of this conn */
    sy_peer peer;             /* the remote address, compact (formatted on demand) */
    signed char stat_proto;   /* the protocol it counts under in env->stats (-1: none) */
    unsigned closing : 1;     /* sy_conn_close ran: watchers stopped, fd closed */
    unsigned close_after_write : 1;
    unsigned lingering : 1;   /* output done and write side shut: discarding input */
    unsigned read_paused : 1; /* the protocol asked not to read */
    unsigned peer_eof : 1;
    unsigned over_high_water : 1;
    unsigned pending : 1;     /* queued for sy_conn_schedule */
    unsigned corked : 1;      /* writes queue until sy_conn_uncork (or sy_conn_uncork_one) */
    unsigned recork : 1;      /* sy_conn_uncork_one: corked again after the next write */
    unsigned tls_ready : 1;   /* the TLS handshake completed (proto heard of it) */
    unsigned shut_wr : 1;     /* sy_conn_shutdown_write ran: no more writes, FIN once drained */
    unsigned fin_sent : 1;    /* our write side is shut; reading goes on */
    unsigned host_open : 1;   /* the host's sy_ws_handler.on_open ran: on_close is owed */
    unsigned app_open : 1;    /* the app heard of the WebSocket (ws_open): ws_close is owed */
    unsigned ws_closed : 1;   /* the WebSocket's close was told (sy_app_ws_close): no open after */
    unsigned stream_tls : 1;  /* a stream connection whose carrier runs over TLS */
    unsigned stream_eof : 1;  /* a stream connection's peer ended its side (told at delivery) */
    unsigned send_armed : 1;  /* output waits: the send timeout counts from sent_at */
    unsigned area_busy : 1;   /* area holds the protocol's state */
    unsigned io_read : 1;     /* io watches for readability */
    unsigned io_write : 1;    /* io watches for writability: output waits for the socket */
    unsigned metrics_app : 1; /* hands its requests to env->metrics_app instead of env->app
                                 (the metrics listener's responder) */
    /* The protocol's state when it fits (proto_state then points here); see SY_CONN_AREA. */
    _Alignas(8) unsigned char area[SY_CONN_AREA];
};

/* Creates a connection for an accepted non-blocking fd (takes ownership of fd, also on
 * failure), speaking proto. Returns NULL when out of memory. */
sy_conn *sy_conn_new(sy_env *env, int fd, const struct sockaddr *peer, const sy_proto *proto,
                     void *proto_state);

/* Creates a stream connection: no socket, its bytes travel through sink (an HTTP/2 stream),
 * with the peer address and TLS flag of the carrier's connection. It is listed with the
 * server's connections (shutdown, ids) like any other. Returns NULL when out of memory. */
sy_conn *sy_conn_new_stream(sy_env *env, const sy_conn *carrier, const sy_proto *proto,
                            void *proto_state, const sy_conn_sink *sink, void *sink_ud);

/* 1 for a stream connection (sy_conn_new_stream). */
static inline int sy_conn_is_stream(const sy_conn *c)
{
    return c->sink != NULL;
}

/* For the carrier of a stream connection. take: moves up to max bytes of queued output to buf
 * and returns their count; *end is set when nothing more will come (close_after_write or
 * shutdown_write with the queue empty). Runs no callback. */
size_t sy_conn_stream_take(sy_conn *c, uint8_t *buf, size_t max, int *end);
/* After takes, outside the carrier's codec: on_drain once the queue fell below the mark. */
void sy_conn_stream_sent(sy_conn *c);
/* Appends peer bytes to c->in (past its limit if need be: the carrier's flow control bounds
 * them). Returns 0 or SY_ENOMEM. Runs no callback: sy_conn_stream_deliver does. */
int sy_conn_stream_input(sy_conn *c, const void *p, size_t n);
/* Runs on_bytes for the input waiting in c->in (unless reading is paused), then on_eof once
 * when eof is set and the peer's end was not told yet. */
void sy_conn_stream_deliver(sy_conn *c, int eof);
/* The carrier lets go of c (its stream is gone): no more sink callbacks. */
void sy_conn_stream_detach(sy_conn *c);

/* Replaces the protocol in one step: the old protocol must have released its state already.
 * Bytes in c->in stay for the new protocol, which gets on_bytes at once if any are there. */
void sy_conn_switch(sy_conn *c, const sy_proto *proto, void *proto_state);

/* Writes bytes: directly when nothing is queued, the rest copied to c->out. Returns 1 when the
 * queue is now over the high-water mark (on_drain follows once it falls below), 0 otherwise,
 * SY_ECLOSED on a closed conn, SY_ENOMEM (the conn is closed). */
int sy_conn_write(sy_conn *c, const void *p, size_t n);
/* Same for two pieces in one system call (head and body). */
int sy_conn_write2(sy_conn *c, const void *p1, size_t n1, const void *p2, size_t n2);
/* Writes head[0..hn) (at most SY_OUTQ_SMALL bytes: a frame header) then p[0..n) without copying
 * p: what the socket does not take now is queued by reference, kept through loan (its keep runs
 * then, its release once the queue is done with p). Same results as sy_conn_write. */
int sy_conn_write_ref(sy_conn *c, const void *head, size_t hn, const void *p, size_t n,
                      sy_outq_loan *loan);
/* Writes chunk[off, off + len) without copying it (a frame shared by many connections): what
 * cannot be sent now is queued by reference. Same results as sy_conn_write. */
int sy_conn_write_shared(sy_conn *c, sy_chunk *ch, size_t off, size_t len);
/* Batching: while corked, writes only queue; uncork sends the queue in one writev. */
void sy_conn_cork(sy_conn *c);
void sy_conn_uncork(sy_conn *c);
/* On a corked plain TCP connection with nothing queued: the next write goes straight to the
 * socket, and c is corked again after it (a lone reply needs no queue; more replies are still
 * batched). A no-op otherwise. sy_conn_cork and sy_conn_uncork end it. */
void sy_conn_uncork_one(sy_conn *c);

/* Stops or resumes reading from the socket. */
void sy_conn_pause(sy_conn *c);
void sy_conn_resume(sy_conn *c);

/* (Re)arms the timer to fire after seconds; 0 stops it. */
void sy_conn_set_timeout(sy_conn *c, double seconds);

/* Closes at once: stops watchers, calls proto->on_close, closes the fd, queues the memory for
 * release after the current callback chain. Idempotent. */
void sy_conn_close(sy_conn *c);

/* Closes once the queued output is written; reading stops (input is discarded after a
 * shutdown of the write side so the peer sees the answer rather than a reset). */
void sy_conn_close_after_write(sy_conn *c);

/* Half-closes: no more writes; once the queued output is sent (and close_notify under TLS)
 * the write side is shut (FIN) while reading goes on. When the peer's EOF came already, or
 * comes later, nothing can flow either way and the protocol closes the connection. Returns 0
 * or SY_ECLOSED (closed, closing, or shut already). */
int sy_conn_shutdown_write(sy_conn *c);

/* Pushes a TLS layer under the current protocol: from now on bytes from the socket are
 * ciphertext and c->in receives the plaintext; output already queued (a 101) still goes out as
 * it is, ahead of the handshake. min_version is 12 or 13. The protocol gets on_bytes once the
 * handshake completes (sy_conn_tls_ready() then answers 1), even without plaintext yet. A failed
 * handshake closes the connection. Returns 0, SY_EINVAL when the server has no certificate, or
 * SY_ENOMEM (the connection is closed then). */
int sy_conn_start_tls(sy_conn *c, int min_version);

/* 1 when the connection runs under TLS (a handshake may still be in progress). */
static inline int sy_conn_is_tls(const sy_conn *c)
{
    return c->tls != NULL;
}
/* 1 once the TLS handshake completed. */
static inline int sy_conn_tls_ready(const sy_conn *c)
{
    return c->tls_ready;
}

/* 1 when the socket already holds unread bytes (peeked, nothing consumed). */
int sy_conn_input_waiting(const sy_conn *c);

/* Called by the server's deferred work: runs proto->on_bytes (after decrypting what the TLS
 * layer still holds). */
void sy_conn_run_scheduled(sy_conn *c);

/* Asks the server to call proto->on_bytes again from the loop (after a deferred response
 * unblocked pipelined input). */
void sy_conn_schedule(sy_conn *c);

/* 1 while output (plaintext or, under TLS, ciphertext) waits for the socket to take it. */
static inline int sy_conn_sending(const sy_conn *c)
{
    return c->io_write;
}

/* Bytes queued for output. */
static inline size_t sy_conn_buffered(const sy_conn *c)
{
    return c->out.bytes;
}

static inline void sy_conn_ref(sy_conn *c)
{
    c->refs++;
}
/* Drops a ref; frees nothing itself (the server's reaper does). */
static inline void sy_conn_unref(sy_conn *c)
{
    c->refs--;
}

#endif
