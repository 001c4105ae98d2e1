/* c-ares on libev: its sockets under ev_io, its retries under an ev_timer, answers on the loop. */
#include "resolver.h"

#include <arpa/inet.h>
#include <sys/time.h>

#include <ares.h>
#include <ev.h>

/* A socket c-ares asked us to watch. */
typedef struct watch {
    ev_io io;
    struct sy_resolver *r; /* borrowed; owns this watch */
    struct watch *next;
} watch;

enum { REQ_ARES, REQ_READY, REQ_RUNNING, REQ_CANCELLED };

struct sy_resolve_req {
    sy_resolver *r; /* borrowed; outlives the request */
    sy_resolve_cb cb;
    void *ud;
    int port;
    int state;      /* REQ_*: inside c-ares, answered (on r's ready list), callback running,
                       or cancelled while inside c-ares (freed when c-ares lets go) */
    sy_addr *addrs; /* owned; the answer, NULL on error */
    size_t n;
    const char *err;             /* static; NULL on success */
    sy_resolve_req *prev, *next; /* r's ready list while REQ_READY */
};

struct sy_resolver {
    struct ev_loop *loop;  /* borrowed; outlives the resolver */
    ares_channel ch;       /* owned */
    ev_timer timer;        /* c-ares' next timeout, while queries wait */
    ev_timer later;        /* zero delay: answers produced inside sy_resolve */
    watch *watches;        /* owned; the sockets c-ares uses now */
    sy_resolve_req *ready; /* owned; answered, callback owed (FIFO: head here, tail below) */
    sy_resolve_req *ready_tail;
    size_t pending; /* requests not cancelled whose callback has not run */
    int running;    /* > 0 while run_ready calls callbacks */
    int dead;       /* sy_resolver_free ran inside a callback: free after it */
};

/* ---- answers ------------------------------------------------------------------------------- */

static void req_free(sy_resolve_req *q)
{
    sy_free(q->addrs);
    sy_free(q);
}

static void ready_push(sy_resolve_req *q)
{
    sy_resolver *r = q->r;
    q->state = REQ_READY;
    q->next = NULL;
    q->prev = r->ready_tail;
    if (r->ready_tail)
        r->ready_tail->next = q;
    else
        r->ready = q;
    r->ready_tail = q;
}

static void ready_unlink(sy_resolve_req *q)
{
    sy_resolver *r = q->r;
    if (q->prev)
        q->prev->next = q->next;
    else
        r->ready = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        r->ready_tail = q->prev;
    q->prev = q->next = NULL;
}

/* Runs the callbacks owed, oldest first. A callback may cancel or start requests, or free the
 * resolver: the caller must not touch r after this returns. */
static void run_ready(sy_resolver *r)
{
    sy_resolve_req *q;
    r->running++;
    while (!r->dead && (q = r->ready) != NULL) {
        ready_unlink(q);
        q->state = REQ_RUNNING;
        r->pending--;
        q->cb(q->addrs, q->n, q->err, q->ud);
        req_free(q);
    }
    if (--r->running == 0 && r->dead)
        sy_free(r);
}

static void on_later(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    run_ready(sy_container_of(w, sy_resolver, later));
}

/* Queues the answer; from inside sy_resolve the zero timer delivers it on the next turn. */
static void answer(sy_resolve_req *q, const char *err)
{
    q->err = err;
    ready_push(q);
    if (!ev_is_active(&q->r->later))
        ev_timer_start(q->r->loop, &q->r->later);
}

static const char *ares_reason(int status)
{
    switch (status) {
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_ENONAME: return "not found";
    case ARES_ETIMEOUT: return "timeout";
    case ARES_EBADNAME: return "bad name";
    case ARES_ESERVFAIL: return "dns: server failure";
    case ARES_EREFUSED: return "dns: refused";
    case ARES_EBADRESP:
    case ARES_EFORMERR: return "dns: bad response";
    case ARES_ECONNREFUSED: return "dns: unreachable";
    case ARES_ENOMEM: return "out of memory";
    default: return "dns: failure";
    }
}

static void on_ares(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    (void)timeouts;
    sy_resolve_req *q = arg;
    if (q->state == REQ_CANCELLED || status == ARES_EDESTRUCTION) {
        /* Cancelled, or the channel is going away (sy_resolver_free): nobody is owed. */
        ares_freeaddrinfo(ai);
        req_free(q);
        return;
    }
    size_t n = 0;
    if (status == ARES_SUCCESS && ai) {
        for (struct ares_addrinfo_node *a = ai->nodes; a; a = a->ai_next)
            if (a->ai_family == AF_INET || a->ai_family == AF_INET6)
                n++;
    }
    if (n == 0) {
        ares_freeaddrinfo(ai);
        answer(q, status == ARES_SUCCESS ? "not found" : ares_reason(status));
        return;
    }
    q->addrs = sy_calloc(n, sizeof *q->addrs);
    if (!q->addrs) {
        ares_freeaddrinfo(ai);
        answer(q, "out of memory");
        return;
    }
    for (struct ares_addrinfo_node *a = ai->nodes; a; a = a->ai_next) {
        sy_addr *d = &q->addrs[q->n];
        if (a->ai_family == AF_INET && a->ai_addrlen >= sizeof d->u.in) {
            memcpy(&d->u.in, a->ai_addr, sizeof d->u.in);
            d->u.in.sin_port = htons((uint16_t)q->port);
            d->len = sizeof d->u.in;
        } else if (a->ai_family == AF_INET6 && a->ai_addrlen >= sizeof d->u.in6) {
            memcpy(&d->u.in6, a->ai_addr, sizeof d->u.in6);
            d->u.in6.sin6_port = htons((uint16_t)q->port);
            d->len = sizeof d->u.in6;
        } else {
            continue;
        }
        q->n++;
    }
    ares_freeaddrinfo(ai);
    answer(q, q->n ? NULL : "not found");
}

/* ---- c-ares' sockets and timeouts on the loop ----------------------------------------------- */

static void arm_timer(sy_resolver *r)
{
    struct timeval tv;
    struct timeval *t = ares_timeout(r->ch, NULL, &tv);
    ev_timer_stop(r->loop, &r->timer);
    if (!t)
        return;
    double after = (double)t->tv_sec + (double)t->tv_usec / 1e6;
    ev_timer_set(&r->timer, after > 0.001 ? after : 0.001, 0.);
    ev_timer_start(r->loop, &r->timer);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    watch *x = sy_container_of(w, watch, io);
    sy_resolver *r = x->r;
    int fd = w->fd;
    /* c-ares may close the socket in here, which frees x (sock_state). */
    ares_process_fd(r->ch, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    arm_timer(r);
    run_ready(r);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sy_resolver *r = sy_container_of(w, sy_resolver, timer);
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_timer(r);
    run_ready(r);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    sy_resolver *r = data;
    watch **pp = &r->watches;
    while (*pp && (*pp)->io.fd != fd)
        pp = &(*pp)->next;
    watch *x = *pp;
    if (!readable && !writable) {
        if (x) {
            ev_io_stop(r->loop, &x->io);
            *pp = x->next;
            sy_free(x);
        }
        return;
    }
    if (!x) {
        /* Without memory the socket goes unwatched: its query ends by c-ares' timeout. */
        x = sy_calloc(1, sizeof *x);
        if (!x)
            return;
        x->r = r;
        x->next = r->watches;
        r->watches = x;
        ev_io_init(&x->io, on_io, fd, 0);
    }
    ev_io_stop(r->loop, &x->io);
    ev_io_set(&x->io, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    ev_io_start(r->loop, &x->io);
}

/* ---- the API ------------------------------------------------------------------------------ */

int sy_resolver_new(struct ev_loop *loop, const sy_resolver_opts *opts, sy_resolver **out)
{
    *out = NULL;
    sy_resolver *r = sy_calloc(1, sizeof *r);
    if (!r)
        return SY_ENOMEM;
    r->loop = loop;
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
        goto fail_r;
    struct ares_options o;
    memset(&o, 0, sizeof o);
    int mask = ARES_OPT_SOCK_STATE_CB;
    o.sock_state_cb = sock_state;
    o.sock_state_cb_data = r;
    if (opts && opts->timeout_ms > 0) {
        o.timeout = opts->timeout_ms;
        mask |= ARES_OPT_TIMEOUTMS;
    }
    if (opts && opts->tries > 0) {
        o.tries = opts->tries;
        mask |= ARES_OPT_TRIES;
    }
    int rc = ares_init_options(&r->ch, &o, mask);
    if (rc != ARES_SUCCESS)
        goto fail_lib;
    if (opts && opts->servers && ares_set_servers_ports_csv(r->ch, opts->servers) != ARES_SUCCESS) {
        ares_destroy(r->ch);
        ares_library_cleanup();
        sy_free(r);
        return SY_EINVAL;
    }
    ev_timer_init(&r->timer, on_timer, 0., 0.);
    ev_timer_init(&r->later, on_later, 0., 0.);
    *out = r;
    return 0;

fail_lib:
    ares_library_cleanup();
fail_r:
    sy_free(r);
    return SY_ENOMEM;
}

void sy_resolver_free(sy_resolver *r)
{
    if (!r || r->dead)
        return;
    sy_resolve_req *q;
    while ((q = r->ready) != NULL) {
        ready_unlink(q);
        req_free(q);
    }
    /* Every query still inside c-ares ends here with ARES_EDESTRUCTION (on_ares frees it); its
     * sockets close through sock_state. */
    ares_destroy(r->ch);
    ares_library_cleanup();
    while (r->watches) {
        watch *x = r->watches;
        r->watches = x->next;
        ev_io_stop(r->loop, &x->io);
        sy_free(x);
    }
    ev_timer_stop(r->loop, &r->timer);
    ev_timer_stop(r->loop, &r->later);
    r->pending = 0;
    if (r->running)
        r->dead = 1; /* inside a callback: run_ready frees the memory once it returns */
    else
        sy_free(r);
}

/* Parses a numeric IPv4 or IPv6 address (IPv6 maybe in brackets) into a. Returns 1 or 0. */
static int parse_numeric(const char *host, sy_addr *a)
{
    char tmp[INET6_ADDRSTRLEN + 2];
    size_t len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        if (len - 2 >= sizeof tmp)
            return 0;
        memcpy(tmp, host + 1, len - 2);
        tmp[len - 2] = '\0';
        memset(a, 0, sizeof *a);
        if (inet_pton(AF_INET6, tmp, &a->u.in6.sin6_addr) != 1)
            return 0;
        a->u.in6.sin6_family = AF_INET6;
        a->len = sizeof a->u.in6;
        return 1;
    }
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, host, &a->u.in.sin_addr) == 1) {
        a->u.in.sin_family = AF_INET;
        a->len = sizeof a->u.in;
        return 1;
    }
    if (inet_pton(AF_INET6, host, &a->u.in6.sin6_addr) == 1) {
        a->u.in6.sin6_family = AF_INET6;
        a->len = sizeof a->u.in6;
        return 1;
    }
    return 0;
}

int sy_host_is_numeric(const char *host)
{
    sy_addr a;
    return host && parse_numeric(host, &a);
}

sy_resolve_req *sy_resolve(sy_resolver *r, const char *host, int port, int family, sy_resolve_cb cb,
                           void *ud, int *err)
{
    size_t len = host ? strlen(host) : 0;
    /* A DNS name has at most 253 characters (RFC 1035 3.1, without the final dot). */
    if (len == 0 || len > 255 || port < 0 || port > 65535 || !cb ||
        (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)) {
        *err = SY_EINVAL;
        return NULL;
    }
    sy_resolve_req *q = sy_calloc(1, sizeof *q);
    if (!q) {
        *err = SY_ENOMEM;
        return NULL;
    }
    q->r = r;
    q->cb = cb;
    q->ud = ud;
    q->port = port;
    r->pending++;

    sy_addr a;
    if (parse_numeric(host, &a)) {
        if (family != AF_UNSPEC && family != a.u.sa.sa_family) {
            answer(q, "not found");
            return q;
        }
        q->addrs = sy_malloc(sizeof *q->addrs);
        if (!q->addrs) {
            r->pending--;
            sy_free(q);
            *err = SY_ENOMEM;
            return NULL;
        }
        if (a.u.sa.sa_family == AF_INET)
            a.u.in.sin_port = htons((uint16_t)port);
        else
            a.u.in6.sin6_port = htons((uint16_t)port);
        q->addrs[0] = a;
        q->n = 1;
        answer(q, NULL);
        return q;
    }

    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    q->state = REQ_ARES;
    /* c-ares may answer at once (/etc/hosts, a bad name): on_ares then queues the answer and
     * the zero timer runs the callback after this function returned. */
    ares_getaddrinfo(r->ch, host, NULL, &hints, on_ares, q);
    arm_timer(r);
    return q;
}

void sy_resolve_cancel(sy_resolve_req *q)
{
    if (!q)
        return;
    switch (q->state) {
    case REQ_ARES:
        q->state = REQ_CANCELLED; /* on_ares frees it when c-ares lets go */
        q->r->pending--;
        break;
    case REQ_READY:
        ready_unlink(q);
        q->r->pending--;
        req_free(q);
        break;
    default: break; /* its callback runs now (freed after it) or it was cancelled already */
    }
}

size_t sy_resolver_pending(const sy_resolver *r)
{
    return r->pending;
}
