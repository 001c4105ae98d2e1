/* Connections: non-blocking socket I/O under one protocol (optionally over TLS), buffered output,
 * two-step close. */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "server.h"

#define READ_CHUNK 16384
#define FIRST_READ 2048
#define LINGER_SECONDS 2.0
/* Under TLS a write with nothing queued is encrypted at once up to this size; the rest waits
 * in the queue as plaintext, so ciphertext held per connection stays bounded. */
#define TLS_DIRECT_MAX (64 * 1024)
#define TLS_FIRST_ROOM 1024

static void on_readable(struct ev_loop *loop, ev_io *w, int revents);
static void on_writable(struct ev_loop *loop, ev_io *w, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void on_send_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void tls_readable(sy_conn *c);
static void tls_run(sy_conn *c, int force, int sock_eof);
static void tls_flush(sy_conn *c);
static int tls_write2(sy_conn *c, const char *p1, size_t n1, const char *p2, size_t n2);
static int tls_write_shared(sy_conn *c, sy_chunk *ch, size_t off, size_t len);

void sy_peer_format(const sy_peer *p, char out[INET6_ADDRSTRLEN])
{
    out[0] = 0;
    if (p->family == AF_INET || p->family == AF_INET6)
        inet_ntop(p->family, p->addr, out, INET6_ADDRSTRLEN);
}

sy_conn *sy_conn_new(struct sy_server *s, int fd, const struct sockaddr *peer,
                     const sy_proto *proto, void *proto_state)
{
    sy_conn *c = sy_calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->server = s;
    c->proto = proto;
    c->proto_state = proto_state;
    /* Input holds at most one head plus one body (and a little framing slack). */
    sy_buf_init(&c->in, s->cfg.max_head + s->cfg.max_body + 65536);
    if (peer && peer->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)peer;
        c->peer.family = AF_INET;
        memcpy(c->peer.addr, &a->sin_addr, 4);
        c->peer.port = ntohs(a->sin_port);
    } else if (peer && peer->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)peer;
        c->peer.family = AF_INET6;
        memcpy(c->peer.addr, &a->sin6_addr, 16);
        c->peer.port = ntohs(a->sin6_port);
    }
    ev_io_init(&c->rio, on_readable, fd, EV_READ);
    ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
    ev_init(&c->timer, on_timer);
    ev_init(&c->send_timer, on_send_timer);
    ev_io_start(s->loop, &c->rio);
    sy_server_conn_added(s, c);
    return c;
}

void sy_conn_switch(sy_conn *c, const sy_proto *proto, void *proto_state)
{
    c->proto = proto;
    c->proto_state = proto_state;
    if (!c->close_after_write) {
        ev_timer_stop(c->server->loop, &c->timer);
        c->deadline = 0;
    }
    if (proto->on_start && !c->closing)
        proto->on_start(c);
    if (sy_buf_len(&c->in) && !c->closing)
        sy_conn_schedule(c);
}

void sy_conn_pause(sy_conn *c)
{
    if (c->closing || c->read_paused)
        return;
    c->read_paused = 1;
    ev_io_stop(c->server->loop, &c->rio);
}

void sy_conn_resume(sy_conn *c)
{
    if (c->closing || !c->read_paused || c->close_after_write)
        return;
    c->read_paused = 0;
    if (!c->peer_eof)
        ev_io_start(c->server->loop, &c->rio);
    /* Plaintext may wait inside the TLS layer, which only the socket's readiness would flush. */
    if (c->tls && sy_tls_has_input(c->tls))
        sy_conn_schedule(c);
}

void sy_conn_set_timeout(sy_conn *c, double seconds)
{
    /* Once closing after output, the flush/linger deadline owns the timer. */
    if (c->closing || c->close_after_write)
        return;
    struct ev_loop *loop = c->server->loop;
    if (seconds <= 0) {
        c->deadline = 0; /* a running timer finds nothing due and stops */
        return;
    }
    c->deadline = ev_now(loop) + seconds;
    /* Only touch the timer heap when it would fire too late (or not at all). */
    if (!ev_is_active(&c->timer) || ev_timer_remaining(loop, &c->timer) > seconds + 0.001) {
        c->timer.repeat = seconds;
        ev_timer_again(loop, &c->timer);
    }
}

void sy_conn_schedule(sy_conn *c)
{
    if (c->pending || c->closing)
        return;
    c->pending = 1;
    c->refs++;
    c->next_queued = c->server->scheduled;
    c->server->scheduled = c;
    sy_server_kick(c->server);
}

static void finish_close(sy_conn *c)
{
    c->closing = 1;
    struct ev_loop *loop = c->server->loop;
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    ev_timer_stop(loop, &c->timer);
    ev_timer_stop(loop, &c->send_timer);
    c->refs++;
    if (c->proto && c->proto->on_close)
        c->proto->on_close(c);
    c->refs--;
    c->proto = NULL;
    c->proto_state = NULL;
    if (c->tls) {
        /* close_notify (or the alert of a failed handshake), best effort: one send, no wait. */
        if (c->fd >= 0 && !c->lingering) {
            sy_tls_close_notify(c->tls);
            sy_buf *o = sy_tls_out(c->tls);
            if (sy_buf_len(o))
                (void)!send(c->fd, sy_buf_data(o), sy_buf_len(o), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        sy_tls_free(c->tls);
        c->tls = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    sy_buf_dispose(&c->in);
    sy_outq_dispose(&c->out);
    sy_server_conn_closed(c->server, c);
}

void sy_conn_close(sy_conn *c)
{
    if (c->closing)
        return;
    finish_close(c);
}

/* Output is done: shut the write side and discard input for a moment, so a peer still sending
 * (a body we refused) reads our answer instead of a reset. */
static void start_lingering(sy_conn *c)
{
    struct ev_loop *loop = c->server->loop;
    c->lingering = 1;
    shutdown(c->fd, SHUT_WR);
    if (c->peer_eof) {
        sy_conn_close(c);
        return;
    }
    c->read_paused = 0;
    ev_io_start(loop, &c->rio);
    c->timer.repeat = LINGER_SECONDS;
    ev_timer_again(loop, &c->timer);
}

void sy_conn_close_after_write(sy_conn *c)
{
    if (c->closing || c->close_after_write)
        return;
    if (c->tls && !c->tls_ready) {
        /* Nothing can reach a peer that has not finished its handshake. */
        sy_conn_close(c);
        return;
    }
    c->close_after_write = 1;
    ev_io_stop(c->server->loop, &c->rio);
    c->read_paused = 1;
    ev_timer_stop(c->server->loop, &c->timer);
    /* A peer that never reads meets the send timeout (output that waits for the socket
     * without progress); one that reads slowly gets all of it. Without a send timeout the
     * keep-alive timeout bounds the wait instead. */
    if (c->server->cfg.send_timeout <= 0 && (c->tls || c->out.bytes)) {
        c->timer.repeat = c->server->cfg.idle_timeout;
        ev_timer_again(c->server->loop, &c->timer);
    }
    if (c->tls)
        tls_flush(c); /* the queue, then close_notify, then the lingering close */
    else if (c->out.bytes == 0)
        start_lingering(c);
}

/* Our side is done writing: FIN, and a close when the peer's side is done too. */
static void send_fin(sy_conn *c)
{
    c->fin_sent = 1;
    shutdown(c->fd, SHUT_WR);
    if (c->peer_eof)
        sy_conn_close(c);
}

int sy_conn_shutdown_write(sy_conn *c)
{
    if (c->closing || c->close_after_write || c->shut_wr)
        return SY_ECLOSED;
    c->shut_wr = 1;
    if (c->tls)
        tls_flush(c);
    else if (c->out.bytes == 0)
        send_fin(c);
    return 0;
}

/* Output waits for the socket: watch for writability, and start the send timeout unless it
 * runs already. Progress only moves sent_at; the timer reads it when it fires, so a client
 * that reads steadily costs no timer work per write. */
static void watch_output(sy_conn *c)
{
    struct ev_loop *loop = c->server->loop;
    if (!ev_is_active(&c->wio))
        ev_io_start(loop, &c->wio);
    double t = c->server->cfg.send_timeout;
    if (t > 0 && !ev_is_active(&c->send_timer)) {
        c->sent_at = ev_now(loop);
        c->send_timer.repeat = t;
        ev_timer_again(loop, &c->send_timer);
    }
}

/* Nothing waits for the socket any more. */
static void unwatch_output(sy_conn *c)
{
    struct ev_loop *loop = c->server->loop;
    ev_io_stop(loop, &c->wio);
    ev_timer_stop(loop, &c->send_timer);
}

/* The send timeout: output has waited send_timeout seconds since the socket last took a byte
 * (the peer stopped reading, or its window never opens). Every protocol gets it here. */
static void on_send_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    sy_conn *c = sy_container_of(w, sy_conn, send_timer);
    ev_timer_stop(loop, w);
    if (c->closing || !ev_is_active(&c->wio))
        return;
    ev_tstamp left = c->sent_at + c->server->cfg.send_timeout - ev_now(loop);
    if (left > 0.0005) {
        w->repeat = left;
        ev_timer_again(loop, w);
        return;
    }
    sy_conn_close(c);
}

static int write_failed(sy_conn *c)
{
    /* The peer is gone; nothing more can reach it. */
    sy_conn_close(c);
    return SY_ECLOSED;
}

static int after_queue(sy_conn *c)
{
    if (!c->corked)
        watch_output(c);
    if (c->out.bytes > c->server->cfg.high_water) {
        c->over_high_water = 1;
        return 1;
    }
    return 0;
}

static int queue_rest(sy_conn *c, const char *p1, size_t n1, const char *p2, size_t n2)
{
    if (sy_outq_copy2(&c->out, p1, n1, p2, n2) != 0) {
        sy_conn_close(c);
        return SY_ENOMEM;
    }
    return after_queue(c);
}

/* Sends what the socket takes now; returns bytes sent or SY_ECLOSED (conn closed). */
static ssize_t send_iov(sy_conn *c, struct iovec *iov, int n)
{
    ssize_t w;
    do {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return write_failed(c);
        w = 0;
    } else if (w > 0) {
        c->sent_at = ev_now(c->server->loop); /* progress: the send timeout starts over */
    }
    return w;
}

int sy_conn_write2(sy_conn *c, const void *v1, size_t n1, const void *v2, size_t n2)
{
    const char *p1 = v1, *p2 = v2;
    if (c->closing || c->lingering || c->shut_wr)
        return SY_ECLOSED;
    if (c->tls)
        return tls_write2(c, p1, n1, p2, n2);
    if (c->out.bytes == 0 && !c->corked) {
        struct iovec iov[2] = {{(void *)p1, n1}, {(void *)p2, n2}};
        ssize_t w = send_iov(c, iov, n2 ? 2 : 1);
        if (w < 0)
            return (int)w;
        size_t done = (size_t)w;
        if (done >= n1 + n2)
            return 0;
        if (done >= n1) {
            p2 += done - n1;
            n2 -= done - n1;
            n1 = 0;
        } else {
            p1 += done;
            n1 -= done;
        }
    }
    return queue_rest(c, p1, n1, p2, n2);
}

int sy_conn_write(sy_conn *c, const void *p, size_t n)
{
    return sy_conn_write2(c, p, n, NULL, 0);
}

int sy_conn_write_shared(sy_conn *c, sy_chunk *ch, size_t off, size_t len)
{
    if (c->closing || c->lingering || c->shut_wr)
        return SY_ECLOSED;
    if (c->tls)
        return tls_write_shared(c, ch, off, len);
    if (c->out.bytes == 0 && !c->corked) {
        struct iovec iov = {ch->data + off, len};
        ssize_t w = send_iov(c, &iov, 1);
        if (w < 0)
            return (int)w;
        if ((size_t)w == len)
            return 0;
        off += (size_t)w;
        len -= (size_t)w;
    }
    if (sy_outq_share(&c->out, ch, off, len) != 0) {
        sy_conn_close(c);
        return SY_ENOMEM;
    }
    return after_queue(c);
}

void sy_conn_cork(sy_conn *c)
{
    c->corked = 1;
}

static void flush(sy_conn *c);

void sy_conn_uncork(sy_conn *c)
{
    if (!c->corked)
        return;
    c->corked = 0;
    if (!c->closing && c->out.bytes)
        flush(c);
}

/* Sends the queue in batches of iovecs until the socket is full or the queue empty. */
static void flush(sy_conn *c)
{
    if (c->tls) {
        tls_flush(c);
        return;
    }
    while (c->out.bytes) {
        struct iovec iov[64];
        int n = sy_outq_iov(&c->out, iov, 64);
        ssize_t w = send_iov(c, iov, n);
        if (w < 0)
            return; /* closed */
        if (w == 0)
            break;
        sy_outq_consume(&c->out, (size_t)w);
    }
    if (c->out.bytes == 0) {
        unwatch_output(c);
        sy_outq_dispose(&c->out); /* idle connections keep no output memory */
    } else {
        watch_output(c);
    }
    if (c->over_high_water && c->out.bytes <= c->server->cfg.high_water / 2) {
        c->over_high_water = 0;
        if (c->proto && c->proto->on_drain && !c->close_after_write) {
            c->refs++;
            c->proto->on_drain(c);
            c->refs--;
            if (c->closing)
                return;
        }
    }
    if (c->close_after_write && c->out.bytes == 0 && !c->lingering)
        start_lingering(c);
    else if (c->shut_wr && !c->fin_sent && c->out.bytes == 0 && !c->close_after_write)
        send_fin(c);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    flush(sy_container_of(w, sy_conn, wio));
}

/* Room in c->in for the next read: about want bytes, less when the protocol's input limit is
 * near. Returns 0 with *span and *room set; 1 when the protocol let input pile up to its limit
 * (reading is paused until it catches up); -1 when out of memory (the conn is closed). */
static int input_room(sy_conn *c, size_t want, char **span, size_t *room)
{
    int rc = sy_buf_reserve(&c->in, want, span);
    if (rc == SY_ELIMIT) {
        size_t left = c->in.limit - sy_buf_len(&c->in);
        if (left == 0 || sy_buf_reserve(&c->in, left, span) != 0) {
            sy_conn_pause(c);
            return 1;
        }
        rc = 0;
    }
    if (rc) {
        sy_conn_close(c);
        return -1;
    }
    *room = c->in.cap - c->in.start - c->in.len;
    if (c->in.limit && *room > c->in.limit - c->in.len)
        *room = c->in.limit - c->in.len;
    return 0;
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    sy_conn *c = sy_container_of(w, sy_conn, rio);
    if (c->lingering) {
        char sink[4096];
        ssize_t n = read(c->fd, sink, sizeof sink);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            sy_conn_close(c);
        return;
    }
    if (c->tls) {
        tls_readable(c);
        return;
    }
    /* A fresh or trimmed buffer starts small: most heads and frames fit, and a burst of new
     * or waking connections does not take 16 KiB each. */
    char *span;
    size_t room;
    if (input_room(c, c->in.cap ? READ_CHUNK : FIRST_READ, &span, &room) != 0)
        return;
    ssize_t n = read(c->fd, span, room);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        sy_conn_close(c);
        return;
    }
    c->refs++;
    if (n == 0) {
        c->peer_eof = 1;
        ev_io_stop(c->server->loop, &c->rio);
        if (c->proto && c->proto->on_eof)
            c->proto->on_eof(c);
        else
            sy_conn_close(c);
    } else {
        sy_buf_commit(&c->in, (size_t)n);
        if (c->proto && c->proto->on_bytes)
            c->proto->on_bytes(c);
    }
    c->refs--;
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sy_conn *c = sy_container_of(w, sy_conn, timer);
    ev_timer_stop(loop, w);
    if (!c->lingering && !c->close_after_write) {
        if (c->deadline == 0)
            return;
        ev_tstamp left = c->deadline - ev_now(loop);
        if (left > 0.0005) {
            c->timer.repeat = left;
            ev_timer_again(loop, w);
            return;
        }
        c->deadline = 0;
    }
    if (c->lingering || c->close_after_write || !c->proto || !c->proto->on_timeout) {
        sy_conn_close(c);
        return;
    }
    c->refs++;
    c->proto->on_timeout(c);
    c->refs--;
}

int sy_conn_input_waiting(const sy_conn *c)
{
    char b;
    if (c->fd < 0)
        return 0;
    return recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

void sy_conn_run_scheduled(sy_conn *c)
{
    if (c->closing || !c->proto)
        return;
    if (c->tls) {
        c->refs++;
        tls_run(c, 1, 0);
        c->refs--;
        return;
    }
    if (c->proto->on_bytes)
        c->proto->on_bytes(c);
}

/* ---- TLS: ciphertext on the socket, plaintext in c->in and c->out ------------------------- */

int sy_conn_start_tls(sy_conn *c, int min_version)
{
    if (c->closing)
        return SY_ECLOSED;
    if (!c->server->tls_ctx || c->tls)
        return SY_EINVAL;
    sy_tls *t = sy_tls_new(c->server->tls_ctx, min_version);
    if (!t) {
        sy_conn_close(c);
        return SY_ENOMEM;
    }
    /* What is queued was written before the switch (a 101): it leaves first, as it is. */
    sy_buf *o = sy_tls_out(t);
    while (c->out.bytes) {
        struct iovec iov[16];
        int n = sy_outq_iov(&c->out, iov, 16);
        size_t sum = 0;
        for (int i = 0; i < n; i++) {
            if (sy_buf_append(o, iov[i].iov_base, iov[i].iov_len) != 0) {
                sy_tls_free(t);
                sy_conn_close(c);
                return SY_ENOMEM;
            }
            sum += iov[i].iov_len;
        }
        sy_outq_consume(&c->out, sum);
    }
    sy_outq_dispose(&c->out);
    c->tls = t;
    c->tls_ready = 0;
    if (sy_buf_len(o) && !c->corked)
        tls_flush(c);
    return c->closing ? SY_ECLOSED : 0;
}

/* Sends ciphertext, encrypting queued plaintext one batch at a time while the socket takes it.
 * Returns 0, or SY_ECLOSED when the connection closed. */
static int tls_send(sy_conn *c)
{
    sy_tls *t = c->tls;
    sy_buf *o = sy_tls_out(t);
    char stage[SY_TLS_RECORD];
    for (;;) {
        while (sy_buf_len(o)) {
            ssize_t w = send(c->fd, sy_buf_data(o), sy_buf_len(o), MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return 0;
                return write_failed(c);
            }
            if (w > 0)
                c->sent_at = ev_now(c->server->loop);
            sy_buf_consume(o, (size_t)w);
        }
        if (!c->tls_ready)
            return 0;
        if (c->out.bytes == 0) {
            if (!c->close_after_write && !c->shut_wr)
                break;
            sy_tls_close_notify(t); /* once; nothing more after it */
            if (sy_buf_len(o))
                continue;
            break;
        }
        /* One record from many small pieces (pipelined responses, corked frames), or up to four
         * records straight from one large piece. */
        struct iovec iov[16];
        int n = sy_outq_iov(&c->out, iov, 16);
        const void *p = iov[0].iov_base;
        size_t len = iov[0].iov_len;
        if (n > 1 && len < SY_TLS_RECORD) {
            len = 0;
            for (int i = 0; i < n && len < sizeof stage; i++) {
                size_t k = iov[i].iov_len;
                if (k > sizeof stage - len)
                    k = sizeof stage - len;
                memcpy(stage + len, iov[i].iov_base, k);
                len += k;
            }
            p = stage;
        } else if (len > 4 * SY_TLS_RECORD) {
            len = 4 * SY_TLS_RECORD;
        }
        if (sy_tls_write(t, p, len) != 0)
            return write_failed(c);
        sy_outq_consume(&c->out, len);
    }
    /* Idle connections keep no ciphertext memory. A busy one allocates this buffer again per
     * response: one malloc of at most 64 KiB beside the encryption itself, kept on purpose
     * (an idle HTTPS connection holds about 15 KiB instead of 31). */
    sy_buf_trim(o, 0);
    return 0;
}

/* Watches for writability while ciphertext waits, or plaintext waits for a finished handshake. */
static void tls_watch(sy_conn *c)
{
    if (sy_buf_len(sy_tls_out(c->tls)) || (c->tls_ready && c->out.bytes && !c->corked)) {
        watch_output(c);
    } else {
        unwatch_output(c);
        if (c->out.bytes == 0)
            sy_outq_dispose(&c->out);
    }
}

static void tls_flush(sy_conn *c)
{
    if (tls_send(c) != 0)
        return;
    tls_watch(c);
    if (c->over_high_water && c->out.bytes <= c->server->cfg.high_water / 2) {
        c->over_high_water = 0;
        if (c->proto && c->proto->on_drain && !c->close_after_write) {
            c->refs++;
            c->proto->on_drain(c);
            c->refs--;
            if (c->closing)
                return;
        }
    }
    if (c->out.bytes == 0 && sy_buf_len(sy_tls_out(c->tls)) == 0) {
        if (c->close_after_write && !c->lingering)
            start_lingering(c);
        else if (c->shut_wr && !c->fin_sent && !c->close_after_write)
            send_fin(c); /* after close_notify (tls_send) */
    }
}

static int tls_after_queue(sy_conn *c)
{
    if (!c->corked) {
        if (tls_send(c) != 0)
            return SY_ECLOSED;
        tls_watch(c);
    }
    if (c->out.bytes > c->server->cfg.high_water) {
        c->over_high_water = 1;
        return 1;
    }
    return 0;
}

/* Nothing queued in either form and the handshake done: encrypt straight from the caller. */
static int tls_direct(const sy_conn *c, size_t n)
{
    return c->out.bytes == 0 && !c->corked && c->tls_ready && n <= TLS_DIRECT_MAX &&
           sy_buf_len(sy_tls_out(c->tls)) == 0;
}

static int tls_write2(sy_conn *c, const char *p1, size_t n1, const char *p2, size_t n2)
{
    if (tls_direct(c, n1 + n2)) {
        int rc;
        if (n2 && n1 + n2 <= SY_TLS_RECORD) {
            /* Head and body in one record. */
            char stage[SY_TLS_RECORD];
            memcpy(stage, p1, n1);
            memcpy(stage + n1, p2, n2);
            rc = sy_tls_write(c->tls, stage, n1 + n2);
        } else {
            rc = sy_tls_write(c->tls, p1, n1);
            if (rc == 0 && n2)
                rc = sy_tls_write(c->tls, p2, n2);
        }
        if (rc != 0)
            return write_failed(c);
        if (tls_send(c) != 0)
            return SY_ECLOSED;
        tls_watch(c);
        return 0;
    }
    if (sy_outq_copy2(&c->out, p1, n1, p2, n2) != 0) {
        sy_conn_close(c);
        return SY_ENOMEM;
    }
    return tls_after_queue(c);
}

static int tls_write_shared(sy_conn *c, sy_chunk *ch, size_t off, size_t len)
{
    if (tls_direct(c, len)) {
        if (sy_tls_write(c->tls, ch->data + off, len) != 0)
            return write_failed(c);
        if (tls_send(c) != 0)
            return SY_ECLOSED;
        tls_watch(c);
        return 0;
    }
    if (sy_outq_share(&c->out, ch, off, len) != 0) {
        sy_conn_close(c);
        return SY_ENOMEM;
    }
    return tls_after_queue(c);
}

/* Decrypts what the TLS layer holds into c->in, sends what the handshake produced, and tells the
 * protocol: on_bytes for new plaintext, for a handshake that just completed, or when forced (a
 * scheduled run); then on_eof when the peer is done (sock_eof or close_notify). */
static void tls_run(sy_conn *c, int force, int sock_eof)
{
    sy_tls *t = c->tls;
    size_t before = sy_buf_len(&c->in);
    int notify_eof = 0;
    /* Ask for a little room first: most plaintext (a request head, a frame) fits, and an idle
     * connection keeps a small buffer. A read that fills its room asks for a record's worth. */
    size_t want = TLS_FIRST_ROOM;
    for (;;) {
        char *span;
        size_t room;
        int rc = input_room(c, want, &span, &room);
        if (rc < 0)
            return;
        if (rc > 0)
            break; /* the rest stays encrypted until the protocol catches up */
        const char *why = NULL;
        ssize_t r = sy_tls_read(t, span, room, &why);
        if (r > 0) {
            sy_buf_commit(&c->in, (size_t)r);
            if ((size_t)r == room)
                want = READ_CHUNK;
            continue;
        }
        if (r == SY_EAGAIN)
            break;
        if (r == 0) {
            notify_eof = 1; /* close_notify: nothing more will come */
            break;
        }
        if (!c->tls_ready) {
            char a[INET6_ADDRSTRLEN];
            sy_peer_format(&c->peer, a);
            sy_log("info", "tls: handshake with %s failed: %s", a[0] ? a : "peer", why);
        }
        sy_conn_close(c); /* sends the alert OpenSSL queued, if any */
        return;
    }
    sy_tls_in_trim(t);
    int became_ready = !c->tls_ready && sy_tls_ready(t);
    if (became_ready)
        c->tls_ready = 1;
    if (sy_buf_len(sy_tls_out(t)) || (became_ready && c->out.bytes)) {
        if (!c->corked) {
            if (tls_send(c) != 0)
                return;
            tls_watch(c);
        }
    }
    if (notify_eof || sock_eof) {
        c->peer_eof = 1;
        ev_io_stop(c->server->loop, &c->rio);
    }
    if ((sy_buf_len(&c->in) > before || became_ready || force) && c->proto && c->proto->on_bytes)
        c->proto->on_bytes(c);
    if ((notify_eof || sock_eof) && !c->closing) {
        if (c->proto && c->proto->on_eof)
            c->proto->on_eof(c);
        else
            sy_conn_close(c);
    }
}

static void tls_readable(sy_conn *c)
{
    char *span;
    int rc = sy_tls_in_reserve(c->tls, READ_CHUNK, &span);
    if (rc == SY_ELIMIT) {
        /* Ciphertext waits because the plaintext side is full: read again once it drains. */
        sy_conn_pause(c);
        return;
    }
    if (rc) {
        sy_conn_close(c);
        return;
    }
    ssize_t n = read(c->fd, span, READ_CHUNK);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        sy_conn_close(c);
        return;
    }
    c->refs++;
    if (n > 0)
        sy_tls_in_commit(c->tls, (size_t)n);
    tls_run(c, 0, n == 0);
    c->refs--;
}
