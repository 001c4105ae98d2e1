/* Connections: non-blocking socket I/O under one protocol, buffered output, two-step close. */
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

static void on_readable(struct ev_loop *loop, ev_io *w, int revents);
static void on_writable(struct ev_loop *loop, ev_io *w, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);

void sy_peer_format(const sy_peer *p, char out[INET6_ADDRSTRLEN])
{
    out[0] = 0;
    if (p->family == AF_INET || p->family == AF_INET6)
        inet_ntop(p->family, p->addr, out, INET6_ADDRSTRLEN);
}

sy_conn *sy_conn_new(struct sy_server *s, int fd, const struct sockaddr *peer, const sy_proto *proto,
                     void *proto_state)
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
    c->refs++;
    if (c->proto && c->proto->on_close)
        c->proto->on_close(c);
    c->refs--;
    c->proto = NULL;
    c->proto_state = NULL;
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
    c->close_after_write = 1;
    ev_io_stop(c->server->loop, &c->rio);
    c->read_paused = 1;
    ev_timer_stop(c->server->loop, &c->timer);
    if (c->out.bytes == 0)
        start_lingering(c);
    else {
        /* Bound the wait for a peer that never reads. */
        c->timer.repeat = c->server->cfg.idle_timeout;
        ev_timer_again(c->server->loop, &c->timer);
    }
}

static int write_failed(sy_conn *c)
{
    /* The peer is gone; nothing more can reach it. */
    sy_conn_close(c);
    return SY_ECLOSED;
}

static int after_queue(sy_conn *c)
{
    if (!c->corked && !ev_is_active(&c->wio))
        ev_io_start(c->server->loop, &c->wio);
    if (c->out.bytes > c->server->cfg.high_water) {
        c->over_high_water = 1;
        return 1;
    }
    return 0;
}

static int queue_rest(sy_conn *c, const char *p1, size_t n1, const char *p2, size_t n2)
{
    if (sy_outq_copy(&c->out, p1, n1) || sy_outq_copy(&c->out, p2, n2)) {
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
    }
    return w;
}

int sy_conn_write2(sy_conn *c, const void *v1, size_t n1, const void *v2, size_t n2)
{
    const char *p1 = v1, *p2 = v2;
    if (c->closing || c->lingering)
        return SY_ECLOSED;
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
    if (c->closing || c->lingering)
        return SY_ECLOSED;
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
    struct ev_loop *loop = c->server->loop;
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
        ev_io_stop(loop, &c->wio);
        sy_outq_dispose(&c->out); /* idle connections keep no output memory */
    } else if (!ev_is_active(&c->wio)) {
        ev_io_start(loop, &c->wio);
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
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    flush(sy_container_of(w, sy_conn, wio));
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
    char *span;
    /* A fresh or trimmed buffer starts small: most heads and frames fit, and a burst of new
     * or waking connections does not take 16 KiB each. */
    int rc = sy_buf_reserve(&c->in, c->in.cap ? READ_CHUNK : FIRST_READ, &span);
    if (rc == SY_ELIMIT) {
        /* The protocol lets input pile up past every limit: stop reading until it catches up. */
        size_t room = c->in.limit - sy_buf_len(&c->in);
        if (room == 0 || sy_buf_reserve(&c->in, room, &span) != 0) {
            sy_conn_pause(c);
            return;
        }
        rc = 0;
    }
    if (rc) {
        sy_conn_close(c);
        return;
    }
    size_t room = c->in.cap - c->in.start - c->in.len;
    if (c->in.limit && room > c->in.limit - c->in.len)
        room = c->in.limit - c->in.len;
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
