/* Outbound TCP (+ TLS) on libev: resolve, try each address, handshake, buffered reads, writes. */
#include "tcp_client.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#define READ_CHUNK 16384
#define DEFAULT_MAX_INPUT (16u * 1024 * 1024)
/* Least time for one address while others wait behind it. */
#define MIN_ATTEMPT 2.0

enum { ST_IDLE, ST_RESOLVING, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_FAILED };

struct sy_tcp_client {
    struct ev_loop *loop;  /* borrowed; outlives the client */
    sy_resolver *resolver; /* borrowed; outlives the client */
    sy_tcp_client_cbs cbs;
    void *ud;               /* the owner's; passed back */
    int state;              /* ST_* */
    int fd;                 /* owned; -1 when none */
    ev_io rio;              /* readable: during the handshake, and while reading is on */
    ev_io wio;              /* writable: the TCP connect, then while output waits */
    ev_timer connect_timer; /* the whole connect's timeout */
    ev_timer attempt_timer; /* one address's share of it while others wait behind */
    ev_timer user_timer;    /* sy_tcp_client_set_timer */
    sy_resolve_req *req;    /* owned while resolving; NULL otherwise */
    sy_addr *addrs;         /* owned; the resolver's answer while connecting */
    size_t naddrs, next_addr;
    int port;
    sy_tls *tls;           /* owned; NULL for plain TCP */
    sy_buf in;             /* plaintext read, not yet consumed by the owner */
    sy_buf out;            /* plaintext queued (encrypted as the socket takes it) */
    const char *read_err;  /* NULL, static, or read_why */
    const char *write_err; /* NULL, static, or write_why */
    char read_why[128];
    char write_why[128];
    int busy;                /* > 0 while a callback runs */
    unsigned reading : 1;    /* the owner wants input */
    unsigned drain_owed : 1; /* a write left bytes queued: `drained` is owed */
    unsigned freed : 1;      /* sy_tcp_client_free ran during a callback */
};

/* ---- helpers ------------------------------------------------------------------------------ */

static const char *errno_reason(int e, char *buf, size_t cap)
{
    switch (e) {
    case ECONNREFUSED: return "refused";
    case ETIMEDOUT: return "timeout";
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED: return "closed";
    case EHOSTUNREACH:
    case ENETUNREACH: return "unreachable";
    case ENOMEM:
    case ENOBUFS: return "out of memory";
    default: snprintf(buf, cap, "%s", strerror(e)); return buf;
    }
}

static const char *tls_reason(char *buf, size_t cap, const char *why)
{
    snprintf(buf, cap, "tls: %s", why ? why : "failure");
    return buf;
}

/* Stops every watcher and closes the socket and the TLS session (one best-effort close_notify
 * first when the session is up). */
static void release(sy_tcp_client *c)
{
    if (c->req) {
        sy_resolve_cancel(c->req);
        c->req = NULL;
    }
    ev_io_stop(c->loop, &c->rio);
    ev_io_stop(c->loop, &c->wio);
    ev_timer_stop(c->loop, &c->connect_timer);
    ev_timer_stop(c->loop, &c->attempt_timer);
    ev_timer_stop(c->loop, &c->user_timer);
    if (c->tls) {
        if (c->fd >= 0 && c->state == ST_OPEN && !c->write_err && sy_tls_ready(c->tls)) {
            sy_buf *o = sy_tls_out(c->tls);
            if (sy_buf_len(o) == 0) {
                sy_tls_close_notify(c->tls);
                if (sy_buf_len(o))
                    (void)!send(c->fd, sy_buf_data(o), sy_buf_len(o), MSG_NOSIGNAL | MSG_DONTWAIT);
            }
        }
        sy_tls_free(c->tls);
        c->tls = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    sy_free(c->addrs);
    c->addrs = NULL;
    c->naddrs = c->next_addr = 0;
    sy_buf_dispose(&c->out);
}

static void destroy(sy_tcp_client *c)
{
    sy_buf_dispose(&c->in);
    sy_free(c);
}

/* Brackets a callback. Returns 0 when the client lives on, -1 when it was freed inside (the
 * caller must not touch it again). */
static void enter(sy_tcp_client *c)
{
    c->busy++;
}

static int leave(sy_tcp_client *c)
{
    c->busy--;
    if (!c->freed)
        return 0;
    if (c->busy == 0)
        destroy(c);
    return -1;
}

static int call_connected(sy_tcp_client *c, const char *err)
{
    enter(c);
    c->cbs.connected(c, err, c->ud);
    return leave(c);
}

static int call_readable(sy_tcp_client *c)
{
    enter(c);
    c->cbs.readable(c, c->ud);
    return leave(c);
}

static int call_drained(sy_tcp_client *c)
{
    c->drain_owed = 0;
    enter(c);
    c->cbs.drained(c, c->ud);
    return leave(c);
}

/* The connect failed: nothing stays open; err (static or in read_why) is also what reads and
 * writes answer from now on. */
static int connect_failed(sy_tcp_client *c, const char *err)
{
    release(c);
    c->state = ST_FAILED;
    c->read_err = c->write_err = err;
    return call_connected(c, err);
}

static void update_read_watch(sy_tcp_client *c)
{
    int want = c->fd >= 0 && !c->read_err &&
               (c->state == ST_HANDSHAKE || (c->state == ST_OPEN && c->reading));
    if (want && !ev_is_active(&c->rio))
        ev_io_start(c->loop, &c->rio);
    else if (!want && ev_is_active(&c->rio))
        ev_io_stop(c->loop, &c->rio);
}

static void update_write_watch(sy_tcp_client *c)
{
    int want = c->fd >= 0 && !c->write_err &&
               (sy_buf_len(&c->out) || (c->tls && sy_buf_len(sy_tls_out(c->tls))));
    if (want && !ev_is_active(&c->wio))
        ev_io_start(c->loop, &c->wio);
    else if (!want && ev_is_active(&c->wio))
        ev_io_stop(c->loop, &c->wio);
}

/* ---- writing ------------------------------------------------------------------------------ */

/* Writing failed: nothing queued will go out. */
static void drop_output(sy_tcp_client *c)
{
    sy_buf_dispose(&c->out);
    if (c->tls) {
        sy_buf *o = sy_tls_out(c->tls);
        sy_buf_consume(o, sy_buf_len(o));
    }
}

/* Sends what the socket takes: ciphertext first, encrypting the queue a few records at a time
 * once the handshake is done. Returns 0, or -1 with write_err set and the queue dropped. */
static int flush(sy_tcp_client *c)
{
    for (;;) {
        sy_buf *b = c->tls ? sy_tls_out(c->tls) : &c->out;
        while (sy_buf_len(b)) {
            ssize_t w = send(c->fd, sy_buf_data(b), sy_buf_len(b), MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return 0;
                c->write_err = errno_reason(errno, c->write_why, sizeof c->write_why);
                drop_output(c);
                return -1;
            }
            sy_buf_consume(b, (size_t)w);
        }
        if (!c->tls || !sy_tls_ready(c->tls) || sy_buf_len(&c->out) == 0)
            break;
        size_t n = sy_buf_len(&c->out);
        if (n > 4 * SY_TLS_RECORD)
            n = 4 * SY_TLS_RECORD;
        if (sy_tls_write(c->tls, sy_buf_data(&c->out), n) != 0) {
            c->write_err = "tls: write failed";
            drop_output(c);
            return -1;
        }
        sy_buf_consume(&c->out, n);
    }
    if (sy_buf_len(&c->out) == 0)
        sy_buf_trim(&c->out, 0);
    return 0;
}

int sy_tcp_client_write(sy_tcp_client *c, const void *p, size_t n)
{
    if (c->state != ST_OPEN || c->write_err)
        return SY_ECLOSED;
    if (n == 0)
        return 0;
    int rc = sy_buf_append(&c->out, p, n);
    if (rc != 0)
        return rc == SY_ELIMIT ? SY_ENOMEM : rc;
    if (!ev_is_active(&c->wio) && flush(c) != 0) {
        update_write_watch(c);
        return SY_ECLOSED;
    }
    update_write_watch(c);
    if (sy_tcp_client_buffered(c))
        c->drain_owed = 1;
    return 0;
}

size_t sy_tcp_client_buffered(const sy_tcp_client *c)
{
    return sy_buf_len(&c->out) + (c->tls ? sy_buf_len(sy_tls_out(c->tls)) : 0);
}

const char *sy_tcp_client_write_error(const sy_tcp_client *c)
{
    return c->write_err;
}

/* ---- reading ------------------------------------------------------------------------------ */

/* Room for about want more input bytes within max_input; 0 with *span and *room, or -1 when
 * the input is full. */
static int input_room(sy_tcp_client *c, size_t want, char **span, size_t *room)
{
    size_t left = c->in.limit - sy_buf_len(&c->in);
    if (left == 0)
        return -1;
    if (want > left)
        want = left;
    if (sy_buf_reserve(&c->in, want, span) != 0)
        return -1;
    *room = want;
    return 0;
}

/* Marks the read side ended. */
static void read_ended(sy_tcp_client *c, const char *err)
{
    if (!c->read_err)
        c->read_err = err;
    update_read_watch(c);
}

static int finish_handshake(sy_tcp_client *c)
{
    ev_timer_stop(c->loop, &c->connect_timer);
    c->state = ST_OPEN;
    update_read_watch(c);
    return call_connected(c, NULL);
}

/* Decrypts what the session holds into the input. Returns 1 when plaintext was added, 0 when
 * none, -1 when the client was freed or the connect failed (nothing more to do). */
static int tls_pump(sy_tcp_client *c)
{
    int added = 0;
    for (;;) {
        char *span;
        size_t room;
        if (input_room(c, READ_CHUNK, &span, &room) != 0) {
            if (c->state == ST_OPEN && c->reading && sy_tls_has_input(c->tls))
                read_ended(c, "input too large");
            break;
        }
        const char *why = NULL;
        int was_ready = sy_tls_ready(c->tls);
        ssize_t n = sy_tls_read(c->tls, span, room, &why);
        if (!was_ready && sy_tls_ready(c->tls) && c->state == ST_HANDSHAKE) {
            /* Handshake done. Send what it produced, then tell the owner; the plaintext that
             * may follow is read on the next round of this loop. */
            if (flush(c) != 0) {
                connect_failed(c, c->write_err);
                return -1;
            }
            update_write_watch(c);
            if (finish_handshake(c) != 0 || c->state != ST_OPEN)
                return -1;
            if (n > 0) {
                sy_buf_commit(&c->in, (size_t)n);
                added = 1;
            }
            if (n == SY_EAGAIN)
                break;
            continue;
        }
        if (n > 0) {
            sy_buf_commit(&c->in, (size_t)n);
            added = 1;
            continue;
        }
        if (n == SY_EAGAIN)
            break;
        if (n == 0) {
            read_ended(c, "closed");
            break;
        }
        /* SY_EPROTO: the alert OpenSSL queued still goes out. */
        const char *err = tls_reason(c->read_why, sizeof c->read_why, why);
        if (c->state == ST_HANDSHAKE) {
            (void)!send(c->fd, sy_buf_data(sy_tls_out(c->tls)), sy_buf_len(sy_tls_out(c->tls)),
                        MSG_NOSIGNAL | MSG_DONTWAIT);
            connect_failed(c, err);
            return -1;
        }
        read_ended(c, err);
        if (!c->write_err) {
            c->write_err = err;
            drop_output(c);
        }
        break;
    }
    return added;
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    sy_tcp_client *c = sy_container_of(w, sy_tcp_client, rio);
    int eof = 0, added = 0;
    char *span;
    size_t room;
    if (c->tls) {
        if (sy_tls_in_reserve(c->tls, READ_CHUNK, &span) == 0) {
            ssize_t n = read(c->fd, span, READ_CHUNK);
            if (n > 0)
                sy_tls_in_commit(c->tls, (size_t)n);
            else if (n == 0)
                eof = 1;
            else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                eof = -errno;
        }
        int rc = tls_pump(c);
        if (rc < 0)
            return;
        added = rc;
        if (c->state == ST_HANDSHAKE) {
            if (eof) {
                connect_failed(c, eof < 0 ? errno_reason(-eof, c->read_why, sizeof c->read_why)
                                          : "tls: connection closed during the handshake");
                return;
            }
            if (flush(c) != 0) {
                connect_failed(c, c->write_err);
                return;
            }
            update_write_watch(c);
            return;
        }
        /* Post-handshake messages (tickets, key updates) may need an answer. */
        if (!c->write_err)
            flush(c);
        update_write_watch(c);
        /* A failed session fails the writes that wait, too. */
        if (c->write_err && c->drain_owed && call_drained(c) != 0)
            return;
    } else {
        if (input_room(c, READ_CHUNK, &span, &room) != 0) {
            read_ended(c, "input too large");
        } else {
            ssize_t n = read(c->fd, span, room);
            if (n > 0) {
                sy_buf_commit(&c->in, (size_t)n);
                added = 1;
            } else if (n == 0) {
                eof = 1;
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                eof = -errno;
            }
        }
    }
    if (eof && !c->read_err)
        read_ended(c, eof < 0 ? errno_reason(-eof, c->read_why, sizeof c->read_why) : "closed");
    if ((added || c->read_err) && c->reading) {
        if (c->read_err)
            c->reading = 0;
        call_readable(c);
    }
}

void sy_tcp_client_read_start(sy_tcp_client *c)
{
    if (c->state != ST_OPEN || c->read_err || c->reading)
        return;
    c->reading = 1;
    update_read_watch(c);
    /* Plaintext or ciphertext may wait inside the session (read along with the handshake's
     * last flight, or left when the input was full): no socket event would announce it. */
    if (c->tls && sy_tls_has_input(c->tls))
        ev_feed_event(c->loop, &c->rio, EV_READ);
}

void sy_tcp_client_read_stop(sy_tcp_client *c)
{
    c->reading = 0;
    update_read_watch(c);
}

const char *sy_tcp_client_read_error(const sy_tcp_client *c)
{
    return c->read_err;
}

sy_buf *sy_tcp_client_input(sy_tcp_client *c)
{
    return &c->in;
}

/* ---- connecting --------------------------------------------------------------------------- */

/* The TCP connection is up: start TLS, or report success. */
static void tcp_up(sy_tcp_client *c)
{
    ev_io_stop(c->loop, &c->wio);
    ev_timer_stop(c->loop, &c->attempt_timer);
    sy_free(c->addrs);
    c->addrs = NULL;
    c->naddrs = c->next_addr = 0;
    ev_io_set(&c->rio, c->fd, EV_READ);
    ev_io_set(&c->wio, c->fd, EV_WRITE);
    if (!c->tls) {
        ev_timer_stop(c->loop, &c->connect_timer);
        c->state = ST_OPEN;
        call_connected(c, NULL);
        return;
    }
    c->state = ST_HANDSHAKE;
    /* The first read queues the ClientHello. */
    if (tls_pump(c) < 0)
        return;
    if (flush(c) != 0) {
        connect_failed(c, c->write_err);
        return;
    }
    update_write_watch(c);
    update_read_watch(c);
}

/* Tries the addresses from next_addr on until one connects or is in progress. */
static void try_next(sy_tcp_client *c, const char *err)
{
    while (c->next_addr < c->naddrs) {
        const sy_addr *a = &c->addrs[c->next_addr++];
        int fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno_reason(errno, c->read_why, sizeof c->read_why);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd = fd;
        if (connect(fd, &a->u.sa, a->len) == 0) {
            tcp_up(c);
            return;
        }
        if (errno == EINPROGRESS) {
            c->state = ST_CONNECTING;
            ev_io_set(&c->wio, fd, EV_WRITE);
            ev_io_start(c->loop, &c->wio);
            /* With addresses behind this one, it gets its share of the time left (at least
             * MIN_ATTEMPT), so one that never answers (a broken IPv6 route) leaves time for
             * the next. */
            size_t left = c->naddrs - c->next_addr + 1;
            if (left > 1 && ev_is_active(&c->connect_timer)) {
                double remaining = ev_timer_remaining(c->loop, &c->connect_timer);
                double share = remaining / (double)left;
                if (share < MIN_ATTEMPT)
                    share = MIN_ATTEMPT;
                if (share < remaining) {
                    ev_timer_set(&c->attempt_timer, share, 0.);
                    ev_timer_start(c->loop, &c->attempt_timer);
                }
            }
            return;
        }
        err = errno_reason(errno, c->read_why, sizeof c->read_why);
        close(fd);
        c->fd = -1;
    }
    connect_failed(c, err ? err : "not found");
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    sy_tcp_client *c = sy_container_of(w, sy_tcp_client, wio);
    if (c->state == ST_CONNECTING) {
        int e = 0;
        socklen_t len = sizeof e;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
            e = errno;
        if (e == 0) {
            tcp_up(c);
            return;
        }
        if (e == EINPROGRESS || e == EALREADY)
            return;
        ev_io_stop(c->loop, &c->wio);
        ev_timer_stop(c->loop, &c->attempt_timer);
        close(c->fd);
        c->fd = -1;
        try_next(c, errno_reason(e, c->read_why, sizeof c->read_why));
        return;
    }
    int rc = flush(c);
    update_write_watch(c);
    if (c->state == ST_HANDSHAKE) {
        if (rc != 0)
            connect_failed(c, c->write_err);
        return;
    }
    if (c->drain_owed && (rc != 0 || sy_tcp_client_buffered(c) == 0))
        call_drained(c);
}

static void on_resolved(const sy_addr *addrs, size_t n, const char *err, void *ud)
{
    sy_tcp_client *c = ud;
    c->req = NULL;
    if (err) {
        connect_failed(c, err);
        return;
    }
    c->addrs = sy_calloc(n, sizeof *addrs);
    if (!c->addrs) {
        connect_failed(c, "out of memory");
        return;
    }
    memcpy(c->addrs, addrs, n * sizeof *addrs);
    c->naddrs = n;
    c->next_addr = 0;
    c->state = ST_CONNECTING;
    try_next(c, NULL);
}

/* This address had its share of the time: on to the next. */
static void on_attempt_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    sy_tcp_client *c = sy_container_of(w, sy_tcp_client, attempt_timer);
    ev_io_stop(loop, &c->wio);
    close(c->fd);
    c->fd = -1;
    try_next(c, "timeout");
}

static void on_connect_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    connect_failed(sy_container_of(w, sy_tcp_client, connect_timer), "timeout");
}

static void on_user_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sy_tcp_client *c = sy_container_of(w, sy_tcp_client, user_timer);
    enter(c);
    c->cbs.timeout(c, c->ud);
    leave(c);
}

void sy_tcp_client_set_timer(sy_tcp_client *c, double seconds)
{
    ev_timer_stop(c->loop, &c->user_timer);
    if (seconds < 0 || c->freed)
        return;
    ev_timer_set(&c->user_timer, seconds, 0.);
    ev_timer_start(c->loop, &c->user_timer);
}

const char *sy_tcp_client_stage(const sy_tcp_client *c)
{
    static const char *const names[] = {"idle",      "resolving", "connecting",
                                        "handshake", "open",      "failed"};
    return names[c->state];
}

/* ---- life --------------------------------------------------------------------------------- */

sy_tcp_client *sy_tcp_client_new(struct ev_loop *loop, sy_resolver *resolver,
                                 const sy_tcp_client_cbs *cbs, void *ud)
{
    sy_tcp_client *c = sy_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    c->resolver = resolver;
    c->cbs = *cbs;
    c->ud = ud;
    c->fd = -1;
    sy_buf_init(&c->in, DEFAULT_MAX_INPUT);
    sy_buf_init(&c->out, 0);
    ev_io_init(&c->rio, on_read, -1, EV_READ);
    ev_io_init(&c->wio, on_write, -1, EV_WRITE);
    ev_timer_init(&c->connect_timer, on_connect_timeout, 0., 0.);
    ev_timer_init(&c->attempt_timer, on_attempt_timeout, 0., 0.);
    ev_timer_init(&c->user_timer, on_user_timer, 0., 0.);
    return c;
}

int sy_tcp_client_connect(sy_tcp_client *c, const char *host, int port,
                          const sy_tcp_client_opts *opts)
{
    static const sy_tcp_client_opts none;
    if (!opts)
        opts = &none;
    if (c->state != ST_IDLE || c->freed || !c->resolver || !host || port < 1 || port > 65535)
        return SY_EINVAL;
    if (opts->max_input)
        c->in.limit = opts->max_input;
    if (opts->tls) {
        c->tls = sy_tls_client_new(opts->tls, opts->server_name ? opts->server_name : host);
        if (!c->tls)
            return SY_ENOMEM;
    }
    int err = 0;
    c->req = sy_resolve(c->resolver, host, port, opts->family, on_resolved, c, &err);
    if (!c->req) {
        sy_tls_free(c->tls);
        c->tls = NULL;
        return err;
    }
    c->port = port;
    c->state = ST_RESOLVING;
    if (opts->timeout > 0) {
        ev_timer_set(&c->connect_timer, opts->timeout, 0.);
        ev_timer_start(c->loop, &c->connect_timer);
    }
    return 0;
}

void sy_tcp_client_free(sy_tcp_client *c)
{
    if (!c || c->freed)
        return;
    release(c);
    c->freed = 1;
    if (c->busy == 0)
        destroy(c);
}
