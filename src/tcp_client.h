/* An outbound TCP connection on the loop, optionally under TLS: resolve, connect with a timeout,
 * handshake, then a read buffer and a write queue, for the scripting layer's socket API. */
#ifndef SY_TCP_CLIENT_H
#define SY_TCP_CLIENT_H

#include "buf.h"
#include "resolver.h"
#include "tls.h"

struct ev_loop;

typedef struct sy_tcp_client sy_tcp_client;

/* What the client tells its owner. Every callback runs from the loop, never inside a
 * sy_tcp_client_* call, and may call any sy_tcp_client_* function, sy_tcp_client_free
 * included; after sy_tcp_client_free no callback runs. Error strings are static or held by the
 * client, valid until it is freed: "timeout", "refused", "closed" (EOF, reset, broken pipe),
 * "unreachable", "not found" and the resolver's other answers (resolver.h), "tls: REASON"
 * (a failed handshake or record, REASON from OpenSSL or the certificate check), "input too
 * large", "out of memory", or the system's text for a rarer socket error. */
typedef struct sy_tcp_client_cbs {
    /* The connect ended: err NULL when the connection (and the TLS handshake) is up; else why
     * it failed, and the client can only be freed. Exactly once per successful
     * sy_tcp_client_connect. */
    void (*connected)(sy_tcp_client *c, const char *err, void *ud);
    /* While reading is on (sy_tcp_client_read_start): new bytes were added to the input, or the
     * read side ended (sy_tcp_client_read_error is then set and reading is off). */
    void (*readable)(sy_tcp_client *c, void *ud);
    /* A write left bytes queued, and now the queue is empty (all handed to the kernel) or
     * writing failed (sy_tcp_client_write_error is then set and the queue dropped). */
    void (*drained)(sy_tcp_client *c, void *ud);
    /* The timer armed with sy_tcp_client_set_timer fired (once per arming). */
    void (*timeout)(sy_tcp_client *c, void *ud);
} sy_tcp_client_cbs;

/* How to connect; a zeroed struct means plain TCP, no timeout, any address family. */
typedef struct sy_tcp_client_opts {
    double timeout;          /* seconds for the whole connect: resolving, each address in turn, the
                                TLS handshake; <= 0: none (the system's own connect timeout per
                                address). An address with others behind it gets its share of the
                                time left, at least 2 s, before the next is tried */
    sy_tls_ctx *tls;         /* borrowed, read during sy_tcp_client_connect only (the session keeps
                                its own reference); NULL: plain TCP. Make it with
                                sy_tls_client_ctx_new (verify on or off, a CA file) */
    const char *server_name; /* borrowed (copied): SNI and the name the certificate must
                           match; NULL: host itself (a numeric host is verified as an address
                           and no SNI is sent) */
    int family;              /* AF_UNSPEC (0), AF_INET or AF_INET6 */
    size_t max_input;        /* bound on bytes read but not yet consumed; 0: 16 MiB */
} sy_tcp_client_opts;

/* A client that is not connected yet. loop and resolver are borrowed and must outlive it; cbs
 * is copied (every entry must be set); ud is passed back to each callback. Returns NULL when
 * out of memory. */
sy_tcp_client *sy_tcp_client_new(struct ev_loop *loop, sy_resolver *resolver,
                                 const sy_tcp_client_cbs *cbs, void *ud);

/* Starts connecting to host (a name or a numeric address) and port: resolve, then try each
 * address in the resolver's order until one accepts, then the TLS handshake when opts->tls is
 * set. Once per client. Returns 0 and `connected` follows exactly once (unless the client is
 * freed first); or, with no callback to come, SY_EINVAL (connect ran already, bad host or
 * port, no resolver) or SY_ENOMEM. host is borrowed (copied). */
int sy_tcp_client_connect(sy_tcp_client *c, const char *host, int port,
                          const sy_tcp_client_opts *opts);

/* Closes at any stage (resolving, connecting, mid-handshake, with output queued) and frees:
 * the resolve is cancelled, the socket closed (after one best-effort close_notify under
 * TLS), queued output dropped. No callback runs afterwards. Safe inside the client's own
 * callbacks (the memory goes once they return). NULL is accepted. */
void sy_tcp_client_free(sy_tcp_client *c);

/* Where the client is: "idle", "resolving", "connecting", "handshake", "open" or "failed"
 * (static; for logs and tests). */
const char *sy_tcp_client_stage(const sy_tcp_client *c);

/* ---- reading -----------------------------------------------------------------------------
 * Bytes read (plaintext under TLS) collect in the input buffer; the owner consumes what it uses
 * with sy_buf_consume. The socket is read only while reading is on, so nothing piles up while
 * no one waits. A receive works like this:
 *   loop: if the input holds what is asked (n bytes, a line, ...), take it and stop reading;
 *         else if sy_tcp_client_read_error(c) answers, fail with it (the input holds the
 *         partial data; "closed" ends a receive-all normally);
 *         else sy_tcp_client_read_start(c) and wait for `readable` (or `timeout`). */

/* The input buffer: borrowed, valid until sy_tcp_client_free; consume from its front. */
sy_buf *sy_tcp_client_input(sy_tcp_client *c);
/* Turns reading on (after `connected` reported success) or off. Off is the start state. */
void sy_tcp_client_read_start(sy_tcp_client *c);
void sy_tcp_client_read_stop(sy_tcp_client *c);
/* NULL while the read side is open; "closed" after the peer's EOF (or close_notify); else the
 * error that ended it ("input too large" when reading went on with max_input bytes unread). */
const char *sy_tcp_client_read_error(const sy_tcp_client *c);

/* ---- writing ----------------------------------------------------------------------------- */

/* Queues n bytes (copied) and sends what the socket takes now. Returns 0; SY_ECLOSED when not
 * connected or writing failed before (sy_tcp_client_write_error says why; a failure right here
 * is returned the same way); SY_ENOMEM. When bytes stay queued (sy_tcp_client_buffered > 0),
 * `drained` follows once they are all sent or writing fails. The queue has no bound of its
 * own: the owner applies backpressure by waiting for `drained`. */
int sy_tcp_client_write(sy_tcp_client *c, const void *p, size_t n);
/* Bytes queued and not yet taken by the kernel (ciphertext waiting included). */
size_t sy_tcp_client_buffered(const sy_tcp_client *c);
/* NULL while writing works; else why it failed ("closed", "tls: ...", ...). */
const char *sy_tcp_client_write_error(const sy_tcp_client *c);

/* ---- a timer for the owner's operations --------------------------------------------------- */

/* Arms the client's timer: `timeout` runs after seconds (0: on the loop's next turn); a
 * negative value disarms it. Re-arming replaces the previous deadline. Independent of the
 * connect timeout. */
void sy_tcp_client_set_timer(sy_tcp_client *c, double seconds);

#endif
