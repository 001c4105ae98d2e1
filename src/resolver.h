/* Name resolution on the libev loop with c-ares: host name to socket addresses, never blocking. */
#ifndef SY_RESOLVER_H
#define SY_RESOLVER_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "buf.h" /* sy_base.h and the allocator */

struct ev_loop;

typedef struct sy_resolver sy_resolver;
typedef struct sy_resolve_req sy_resolve_req;

/* One address to connect to: an IPv4 or IPv6 socket address with its port set. */
typedef struct sy_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
    socklen_t len;
} sy_addr;

/* The answer to one sy_resolve. On success err is NULL and addrs holds n >= 1 addresses in the
 * order to try them (c-ares sorts them as RFC 6724 says); else addrs is NULL, n is 0 and err is
 * one of the static strings "not found" (no such name, or no address of the family asked for),
 * "timeout" (no name server answered in time), "bad name", "dns: server failure",
 * "dns: refused", "dns: bad response", "dns: unreachable" (no name server could be reached),
 * "out of memory" or "dns: failure".
 * addrs is borrowed, valid until the callback returns. */
typedef void (*sy_resolve_cb)(const sy_addr *addrs, size_t n, const char *err, void *ud);

/* Settings for sy_resolver_new; a zeroed struct (or NULL) means the system's. */
typedef struct sy_resolver_opts {
    /* Name servers as "ADDR[:PORT],..." ("[::1]:53" for IPv6); NULL: those of
     * /etc/resolv.conf. Borrowed, read during sy_resolver_new only. */
    const char *servers;
    int timeout_ms; /* first wait for an answer before c-ares tries again; 0: the system's */
    int tries;      /* attempts per server; 0: the system's */
} sy_resolver_opts;

/* Creates a resolver on loop: one c-ares channel whose sockets are watched with ev_io and whose
 * retries run on an ev_timer; it reads /etc/resolv.conf now and /etc/hosts at each lookup (a
 * small local file). Returns 0 and *out (caller frees with sy_resolver_free); SY_EINVAL when
 * c-ares refuses the settings (a bad servers string); SY_ENOMEM. loop is borrowed and must
 * outlive the resolver. */
int sy_resolver_new(struct ev_loop *loop, const sy_resolver_opts *opts, sy_resolver **out);

/* Frees the resolver and every request still pending, whose callbacks then never run: their
 * handles are invalid afterwards, so free their owners (or cancel them) first. May be called
 * from a sy_resolve_cb (the memory goes once it returns). NULL is accepted. */
void sy_resolver_free(sy_resolver *r);

/* Starts resolving host (a name, or a numeric IPv4 or IPv6 address, "[::1]" accepted too) to
 * addresses for TCP port port. family is AF_UNSPEC (both), AF_INET or AF_INET6. A numeric
 * address is answered without any DNS. The callback never runs inside sy_resolve: every answer,
 * a numeric or /etc/hosts one too, comes from the loop later, exactly once unless the request is
 * cancelled first. Returns the request handle (valid until its callback returns or
 * sy_resolve_cancel), or NULL with nothing started and *err set: SY_EINVAL (empty or overlong
 * host, port out of 0..65535, unknown family) or SY_ENOMEM. host is borrowed (copied). */
sy_resolve_req *sy_resolve(sy_resolver *r, const char *host, int port, int family, sy_resolve_cb cb,
                           void *ud, int *err);

/* Cancels a pending request: its callback never runs and req is invalid from here on. The
 * lookup itself may go on inside c-ares until it ends (its memory with it); its answer is
 * dropped. May be called from any callback, also from another request's. */
void sy_resolve_cancel(sy_resolve_req *req);

/* Requests whose callback has not run yet and that were not cancelled (for tests). */
size_t sy_resolver_pending(const sy_resolver *r);

/* 1 when host is a numeric IPv4 or IPv6 address (brackets allowed): no DNS is needed, and TLS
 * verifies such a peer by address and sends no SNI (RFC 6066 3). */
int sy_host_is_numeric(const char *host);

#endif
