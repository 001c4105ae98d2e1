/* Connections: non-blocking socket I/O under one protocol (optionally over TLS), buffered output,
 * two-step close. */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "conn_int.h"

#define FIRST_READ 2048
#define LINGER_SECONDS 2.0

/* The read buffer shared by the connections of a thread's loop: a read with nothing left over
 * from the last one lands here, so a frame up to this size comes in one read however long the
 * connection was idle; only bytes a protocol leaves unread are copied into c->in's own memory. */
#define SHARED_READ 65536

static _Thread_local struct {
    char *data; /* owned; allocated on first use, kept for the thread's life */
    int busy;   /* lent to a connection's c->in during its on_bytes */
} shared_in;

static void on_io(struct ev_loop *loop, ev_io *w, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);

void sy_peer_format(const sy_peer *p, char out[INET6_ADDRSTRLEN])
{
    out[0] = 0;
    if (p->family == AF_INET || p->family == AF_INET6)
        inet_ntop(p->family, p->addr, out, INET6_ADDRSTRLEN);
}

sy_conn *sy_conn_new(sy_env *env, int fd, const struct sockaddr *peer, const sy_proto *proto,
                     void *proto_state)
{
    sy_conn *c = sy_calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->env = env;
    c->proto = proto;
    c->proto_state = proto_state;
    /* Input holds at most one head plus one body (and a little framing slack). */
    sy_buf_init(&c->in, env->cfg.max_head + env->cfg.max_body + 65536);
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
    ev_io_init(&c->io, on_io, fd, 0);
    ev_init(&c->timer, on_timer);
    sy_conn_io_read(c, 1);
    sy_stats_conn_open(&env->stats, c->stat_proto = (signed char)sy_stats_proto(proto->name));
    env->conn_added(env, c);
    return c;
}

sy_conn *sy_conn_new_stream(sy_env *env, const sy_conn *carrier, const sy_proto *proto,
                            void *proto_state, const sy_conn_sink *sink, void *sink_ud)
{
    sy_conn *c = sy_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = -1;
    c->env = env;
    c->proto = proto;
    c->proto_state = proto_state;
    c->sink = sink;
    c->sink_ud = sink_ud;
    c->peer = carrier->peer;
    c->stream_tls = carrier->tls != NULL || carrier->stream_tls;
    sy_stats_conn_open(&env->stats, c->stat_proto = (signed char)sy_stats_proto(proto->name));
    sy_buf_init(&c->in, env->cfg.max_head + env->cfg.max_body + 65536);
    /* The io watcher never starts: there is no socket. */
    ev_io_init(&c->io, on_io, -1, 0);
    ev_init(&c->timer, on_timer);
    env->conn_added(env, c);
    return c;
}

void sy_conn_switch(sy_conn *c, const sy_proto *proto, void *proto_state)
{
    c->proto = proto;
    c->proto_state = proto_state;
    sy_stats_conn_gone(&c->env->stats, c->stat_proto);
    sy_stats_conn_open(&c->env->stats, c->stat_proto = (signed char)sy_stats_proto(proto->name));
    if (!c->close_after_write) {
        c->deadline = 0;
        if (!c->send_armed)
            ev_timer_stop(c->env->loop, &c->timer);
    }
    if (proto->on_start && !c->closing)
        proto->on_start(c);
    if (sy_buf_len(&c->in) && !c->closing)
        sy_conn_schedule(c);
}

/* Gives the watcher the events wanted now (io_read, io_write); stopped when none. */
static void io_update(sy_conn *c)
{
    int want = (c->io_read ? EV_READ : 0) | (c->io_write ? EV_WRITE : 0);
    int active = ev_is_active(&c->io);
    if (c->fd < 0 || (active && (c->io.events & (EV_READ | EV_WRITE)) == want) ||
        (!active && !want))
        return;
    struct ev_loop *loop = c->env->loop;
    if (active)
        ev_io_stop(loop, &c->io);
    ev_io_modify(&c->io, want);
    if (want)
        ev_io_start(loop, &c->io);
}

void sy_conn_io_read(sy_conn *c, int on)
{
    c->io_read = on != 0;
    io_update(c);
}

void sy_conn_pause(sy_conn *c)
{
    if (c->closing || c->read_paused)
        return;
    c->read_paused = 1;
    sy_conn_io_read(c, 0);
}

void sy_conn_resume(sy_conn *c)
{
    if (c->closing || !c->read_paused || c->close_after_write)
        return;
    c->read_paused = 0;
    if (c->sink) {
        if (c->sink_ud)
            c->sink->resume(c, c->sink_ud);
        if (sy_buf_len(&c->in) || (c->stream_eof && !c->peer_eof))
            sy_conn_schedule(c);
        return;
    }
    if (!c->peer_eof)
        sy_conn_io_read(c, 1);
    /* Plaintext may wait inside the TLS layer, which only the socket's readiness would flush. */
    if (c->tls && sy_tls_has_input(c->tls))
        sy_conn_schedule(c);
}

/* Makes the timer fire no later than the earliest thing due: the deadline, and the send
 * timeout while output waits. Only touches the timer heap when it would fire too late (or not
 * at all); with nothing due a running timer finds nothing when it fires and stops. */
static void arm_timer(sy_conn *c)
{
    ev_tstamp due = c->deadline;
    if (c->send_armed) {
        ev_tstamp send_due = c->sent_at + c->env->cfg.send_timeout;
        if (due == 0 || send_due < due)
            due = send_due;
    }
    if (due == 0)
        return;
    struct ev_loop *loop = c->env->loop;
    ev_tstamp in = due - ev_now(loop);
    if (in < 0.001)
        in = 0.001;
    if (!ev_is_active(&c->timer) || ev_timer_remaining(loop, &c->timer) > in + 0.001) {
        c->timer.repeat = in;
        ev_timer_again(loop, &c->timer);
    }
}

/* Sets the deadline seconds from now (0: none) and arms the timer for it. */
static void set_deadline(sy_conn *c, double seconds)
{
    c->deadline = seconds > 0 ? ev_now(c->env->loop) + seconds : 0;
    arm_timer(c);
}

void sy_conn_set_timeout(sy_conn *c, double seconds)
{
    /* Once closing after output, the flush/linger deadline owns the timer. */
    if (c->closing || c->close_after_write)
        return;
    set_deadline(c, seconds);
}

void sy_conn_schedule(sy_conn *c)
{
    if (c->pending || c->closing)
        return;
    c->pending = 1;
    c->refs++;
    c->next_queued = c->env->scheduled;
    c->env->scheduled = c;
    c->env->kick(c->env);
}

static void finish_close(sy_conn *c)
{
    c->closing = 1;
    struct ev_loop *loop = c->env->loop;
    ev_io_stop(loop, &c->io);
    c->io_read = c->io_write = 0;
    ev_timer_stop(loop, &c->timer);
    c->send_armed = 0;
    c->refs++;
    if (c->proto && c->proto->on_close)
        c->proto->on_close(c);
    c->refs--;
    c->proto = NULL;
    c->proto_state = NULL;
    sy_stats_conn_gone(&c->env->stats, c->stat_proto);
    c->stat_proto = -1;
    if (c->sink && c->sink_ud) {
        void *ud = c->sink_ud;
        c->sink_ud = NULL;
        c->sink->closed(c, ud);
    }
    if (c->tls) {
        sy_stats_conn_gone(&c->env->stats, SY_SP_TLS);
        c->env->stats.tls_failures += !c->tls_ready;
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
    c->env->conn_closed(c->env, c);
}

void sy_conn_close(sy_conn *c)
{
    if (c->closing)
        return;
    finish_close(c);
}

/* Output is done: shut the write side and discard input for a moment, so a peer still sending
 * (a body we refused) reads our answer instead of a reset. */
void sy_conn_start_lingering(sy_conn *c)
{
    c->lingering = 1;
    shutdown(c->fd, SHUT_WR);
    if (c->peer_eof) {
        sy_conn_close(c);
        return;
    }
    c->read_paused = 0;
    sy_conn_io_read(c, 1);
    set_deadline(c, LINGER_SECONDS);
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
    sy_conn_io_read(c, 0);
    c->read_paused = 1;
    /* The protocol's deadline no longer counts: the wait for the output does. */
    c->deadline = 0;
    if (!c->send_armed)
        ev_timer_stop(c->env->loop, &c->timer);
    if (c->sink) {
        /* The carrier ends the stream once the queue is taken; a peer that never opens its
         * window meets the send timeout (else the keep-alive one), then a reset. */
        double t =
            c->env->cfg.send_timeout > 0 ? c->env->cfg.send_timeout : c->env->cfg.idle_timeout;
        set_deadline(c, t);
        if (c->sink_ud)
            c->sink->wake(c, c->sink_ud);
        else
            sy_conn_close(c);
        return;
    }
    /* A peer that never reads meets the send timeout (output that waits for the socket
     * without progress); one that reads slowly gets all of it. Without a send timeout the
     * keep-alive timeout bounds the wait instead. */
    if (c->env->cfg.send_timeout <= 0 && (c->tls || c->out.bytes))
        set_deadline(c, c->env->cfg.idle_timeout);
    if (c->tls)
        sy_conn_tls_flush(c); /* the queue, then close_notify, then the lingering close */
    else if (c->out.bytes == 0)
        sy_conn_start_lingering(c);
}

/* Our side is done writing: FIN, and a close when the peer's side is done too. */
void sy_conn_send_fin(sy_conn *c)
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
    if (c->sink) {
        if (c->sink_ud)
            c->sink->wake(c, c->sink_ud);
        return 0;
    }
    if (c->tls)
        sy_conn_tls_flush(c);
    else if (c->out.bytes == 0)
        sy_conn_send_fin(c);
    return 0;
}

/* The send timeout starts counting, unless it does already. Progress only moves sent_at; the
 * timer reads it when it fires, so a client that reads steadily costs no timer work per
 * write. */
static void arm_send_timeout(sy_conn *c)
{
    if (c->env->cfg.send_timeout > 0 && !c->send_armed) {
        c->send_armed = 1;
        c->sent_at = ev_now(c->env->loop);
        arm_timer(c);
    }
}

/* Nothing waits to be sent any more: the send timeout stops counting. */
static void disarm_send_timeout(sy_conn *c)
{
    c->send_armed = 0;
    if (c->deadline == 0)
        ev_timer_stop(c->env->loop, &c->timer);
}

/* Output waits for the socket: watch for writability, and start the send timeout. */
void sy_conn_watch_output(sy_conn *c)
{
    if (!c->io_write) {
        c->io_write = 1;
        io_update(c);
    }
    arm_send_timeout(c);
}

/* Nothing waits for the socket any more. */
void sy_conn_unwatch_output(sy_conn *c)
{
    if (c->io_write) {
        c->io_write = 0;
        io_update(c);
    }
    disarm_send_timeout(c);
}

int sy_conn_write_failed(sy_conn *c)
{
    /* The peer is gone; nothing more can reach it. */
    sy_conn_close(c);
    return SY_ECLOSED;
}

static int after_queue(sy_conn *c)
{
    if (!c->corked)
        sy_conn_watch_output(c);
    if (c->out.bytes > c->env->cfg.high_water) {
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

/* After done bytes of the spans p1[0..n1) then p2[0..n2) were sent (fewer than all): what is
 * left of them. */
static void advance2(const char **p1, size_t *n1, const char **p2, size_t *n2, size_t done)
{
    if (done >= *n1) {
        *p2 += done - *n1;
        *n2 -= done - *n1;
        *n1 = 0;
    } else {
        *p1 += done;
        *n1 -= done;
    }
}

int sy_conn_drained(sy_conn *c)
{
    if (!c->over_high_water || c->out.bytes > c->env->cfg.high_water / 2)
        return 0;
    c->over_high_water = 0;
    if (!c->proto || !c->proto->on_drain || c->close_after_write)
        return 0;
    c->refs++;
    c->proto->on_drain(c);
    c->refs--;
    return c->closing;
}

/* Sends what the socket takes now; returns bytes sent or SY_ECLOSED (conn closed). */
static ssize_t send_iov(sy_conn *c, struct iovec *iov, int n)
{
    ssize_t w;
    do {
        if (n == 1) {
            w = send(c->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
        } else {
            struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
            w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        }
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return sy_conn_write_failed(c);
        w = 0;
    } else if (w > 0) {
        c->sent_at = ev_now(c->env->loop); /* progress: the send timeout starts over */
    }
    return w;
}

/* ---- stream connections ---------------------------------------------------------------- */

/* Output was queued on a stream connection: the carrier hears of it (unless corked), the send
 * timeout runs while it waits. Same results as sy_conn_write. */
static int stream_queued(sy_conn *c)
{
    arm_send_timeout(c);
    if (!c->corked && c->sink_ud)
        c->sink->wake(c, c->sink_ud);
    if (c->out.bytes > c->env->cfg.high_water) {
        c->over_high_water = 1;
        return 1;
    }
    return 0;
}

static int stream_write2(sy_conn *c, const char *p1, size_t n1, const char *p2, size_t n2)
{
    if (!c->sink_ud)
        return SY_ECLOSED;
    if (sy_outq_copy2(&c->out, p1, n1, p2, n2) != 0) {
        sy_conn_close(c);
        return SY_ENOMEM;
    }
    return stream_queued(c);
}

size_t sy_conn_stream_take(sy_conn *c, uint8_t *buf, size_t max, int *end)
{
    size_t done = 0;
    while (done < max && c->out.bytes) {
        struct iovec iov[8];
        int n = sy_outq_iov(&c->out, iov, 8);
        size_t got = 0;
        for (int i = 0; i < n && done < max; i++) {
            size_t k = iov[i].iov_len < max - done ? iov[i].iov_len : max - done;
            memcpy(buf + done, iov[i].iov_base, k);
            done += k;
            got += k;
        }
        sy_outq_consume(&c->out, got);
    }
    if (done)
        c->sent_at = ev_now(c->env->loop);
    *end = c->out.bytes == 0 && (c->close_after_write || c->shut_wr);
    if (*end && c->shut_wr && !c->close_after_write)
        c->fin_sent = 1;
    return done;
}

void sy_conn_stream_sent(sy_conn *c)
{
    if (c->closing)
        return;
    if (c->out.bytes == 0) {
        disarm_send_timeout(c);
        sy_outq_dispose(&c->out); /* idle streams keep no output memory */
    }
    if (sy_conn_drained(c))
        return;
    if (c->fin_sent && c->peer_eof && !c->close_after_write)
        sy_conn_close(c);
}

int sy_conn_stream_input(sy_conn *c, const void *p, size_t n)
{
    int rc = sy_buf_append(&c->in, p, n);
    if (rc == SY_ELIMIT) {
        /* Bounded by the stream window that the carrier opens only while reading goes on. */
        c->in.limit = sy_buf_len(&c->in) + n;
        rc = sy_buf_append(&c->in, p, n);
    }
    return rc;
}

void sy_conn_stream_deliver(sy_conn *c, int eof)
{
    if (eof)
        c->stream_eof = 1;
    if (c->closing || c->read_paused || !c->proto)
        return;
    c->refs++;
    if (sy_buf_len(&c->in) && c->proto->on_bytes)
        c->proto->on_bytes(c);
    if (c->stream_eof && !c->peer_eof && !c->closing && !c->read_paused && !sy_buf_len(&c->in)) {
        c->peer_eof = 1;
        if (c->fin_sent && !c->proto->on_eof)
            sy_conn_close(c);
        else if (c->proto->on_eof)
            c->proto->on_eof(c);
        else
            sy_conn_close(c);
    }
    c->refs--;
}

void sy_conn_stream_detach(sy_conn *c)
{
    c->sink_ud = NULL;
}

/* 1 when a write may go straight to the socket: nothing queued, not corked. A connection let
 * out for one write (sy_conn_uncork_one) is corked again by it. */
static int write_direct(sy_conn *c)
{
    if (c->out.bytes || c->corked)
        return 0;
    c->corked = c->recork;
    c->recork = 0;
    return 1;
}

int sy_conn_write2(sy_conn *c, const void *v1, size_t n1, const void *v2, size_t n2)
{
    const char *p1 = v1, *p2 = v2;
    if (c->closing || c->lingering || c->shut_wr)
        return SY_ECLOSED;
    if (c->tls)
        return sy_conn_tls_write2(c, p1, n1, p2, n2);
    if (c->sink)
        return stream_write2(c, p1, n1, p2, n2);
    if (write_direct(c)) {
        struct iovec iov[2] = {{(void *)p1, n1}, {(void *)p2, n2}};
        ssize_t w = send_iov(c, iov, n2 ? 2 : 1);
        if (w < 0)
            return (int)w;
        size_t done = (size_t)w;
        if (done >= n1 + n2)
            return 0;
        advance2(&p1, &n1, &p2, &n2, done);
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
        return sy_conn_tls_write_shared(c, ch, off, len);
    if (c->sink) {
        if (!c->sink_ud)
            return SY_ECLOSED;
        if (sy_outq_share(&c->out, ch, off, len) != 0) {
            sy_conn_close(c);
            return SY_ENOMEM;
        }
        return stream_queued(c);
    }
    if (write_direct(c)) {
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

int sy_conn_write_ref(sy_conn *c, const void *head, size_t hn, const void *p, size_t n,
                      sy_outq_loan *loan)
{
    if (c->closing || c->lingering || c->shut_wr || (c->sink && !c->sink_ud))
        return SY_ECLOSED;
    if (c->tls) /* the TLS layer copies the plaintext as it encrypts */
        return sy_conn_tls_write2(c, head, hn, p, n);
    const char *h = head, *b = p;
    if (!c->sink && write_direct(c)) {
        struct iovec iov[2] = {{(void *)h, hn}, {(void *)b, n}};
        ssize_t w = send_iov(c, hn ? iov : iov + 1, hn && n ? 2 : 1);
        if (w < 0)
            return (int)w;
        size_t done = (size_t)w;
        if (done >= hn + n)
            return 0;
        advance2(&h, &hn, &b, &n, done);
    }
    if (sy_outq_ref(&c->out, h, hn, b, n, loan->release, loan->ud, loan->keep(loan)) != 0) {
        sy_conn_close(c);
        return SY_ENOMEM;
    }
    return c->sink ? stream_queued(c) : after_queue(c);
}

void sy_conn_cork(sy_conn *c)
{
    c->corked = 1;
    c->recork = 0;
}

void sy_conn_uncork_one(sy_conn *c)
{
    if (!c->corked || c->out.bytes || c->tls || c->sink)
        return;
    c->corked = 0;
    c->recork = 1;
}

static void flush(sy_conn *c);

void sy_conn_uncork(sy_conn *c)
{
    c->recork = 0;
    if (!c->corked)
        return;
    c->corked = 0;
    if (!c->closing && c->out.bytes)
        flush(c);
}

/* Sends the queue in batches of iovecs until the socket is full or the queue empty. */
static void flush(sy_conn *c)
{
    if (c->sink) {
        if (c->sink_ud)
            c->sink->wake(c, c->sink_ud);
        return;
    }
    if (c->tls) {
        sy_conn_tls_flush(c);
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
        sy_conn_unwatch_output(c);
        sy_outq_dispose(&c->out); /* idle connections keep no output memory */
    } else {
        sy_conn_watch_output(c);
    }
    if (sy_conn_drained(c))
        return;
    if (c->close_after_write && c->out.bytes == 0 && !c->lingering)
        sy_conn_start_lingering(c);
    else if (c->shut_wr && !c->fin_sent && c->out.bytes == 0 && !c->close_after_write)
        sy_conn_send_fin(c);
}

/* Room in c->in for the next read: about want bytes, less when the protocol's input limit is
 * near. Returns 0 with *span and *room set; 1 when the protocol let input pile up to its limit
 * (reading is paused until it catches up); -1 when out of memory (the conn is closed). */
int sy_conn_input_room(sy_conn *c, size_t want, char **span, size_t *room)
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

static void on_readable(sy_conn *c)
{
    if (c->lingering) {
        char sink[4096];
        ssize_t n = read(c->fd, sink, sizeof sink);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            sy_conn_close(c);
        return;
    }
    if (c->tls) {
        sy_conn_tls_readable(c);
        return;
    }
    /* With nothing left over, a protocol that keeps no pointer into c->in reads from the loop's
     * shared buffer; a fresh or trimmed buffer of its own starts small: most heads fit, and a
     * burst of new or waking connections does not take 16 KiB each. */
    char *span;
    size_t room;
    int borrow = c->proto && c->proto->borrows_input && !c->in.data && !shared_in.busy;
    if (borrow && !shared_in.data && !(shared_in.data = sy_malloc(SHARED_READ)))
        borrow = 0;
    if (borrow) {
        span = shared_in.data;
        room = c->in.limit && c->in.limit < SHARED_READ ? c->in.limit : SHARED_READ;
    } else if (sy_conn_input_room(c, c->in.cap ? READ_CHUNK : FIRST_READ, &span, &room) != 0) {
        return;
    }
    ssize_t n = recv(c->fd, span, room, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        sy_conn_close(c);
        return;
    }
    c->refs++;
    if (n == 0) {
        c->peer_eof = 1;
        sy_conn_io_read(c, 0);
        if (c->proto && c->proto->on_eof)
            c->proto->on_eof(c);
        else
            sy_conn_close(c);
    } else if (borrow) {
        sy_buf_borrow(&c->in, span, (size_t)n);
        shared_in.busy = 1;
        if (c->proto->on_bytes)
            c->proto->on_bytes(c);
        shared_in.busy = 0;
        /* What is left (part of a frame) moves to memory of the connection's own. */
        if (sy_buf_own(&c->in) != 0)
            sy_conn_close(c);
    } else {
        sy_buf_commit(&c->in, (size_t)n);
        if (c->proto && c->proto->on_bytes)
            c->proto->on_bytes(c);
    }
    c->refs--;
}

/* 1 while output waits to be sent (for the socket, or for a stream's carrier). */
static int output_waits(const sy_conn *c)
{
    return c->sink ? c->out.bytes != 0 : c->io_write;
}

/* The socket's watcher: output first (it may end a lingering close or free room), then input
 * while it is still wanted. */
static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    sy_conn *c = sy_container_of(w, sy_conn, io);
    if ((revents & EV_WRITE) && c->io_write)
        flush(c);
    if ((revents & EV_READ) && c->io_read && !c->closing)
        on_readable(c);
}

/* The one timer: the send timeout (output has waited send_timeout seconds since the socket
 * last took a byte: the peer stopped reading, or its window never opens; every protocol gets
 * it here), then the deadline: the protocol's timeout, or the end of the wait once closing
 * after output or lingering. */
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    sy_conn *c = sy_container_of(w, sy_conn, timer);
    ev_timer_stop(loop, w);
    if (c->closing)
        return;
    ev_tstamp now = ev_now(loop);
    if (c->send_armed && !output_waits(c))
        c->send_armed = 0;
    if (c->send_armed && c->sent_at + c->env->cfg.send_timeout - now <= 0.0005) {
        sy_conn_close(c);
        return;
    }
    if (c->deadline != 0 && c->deadline - now <= 0.0005) {
        c->deadline = 0;
        if (c->lingering || c->close_after_write || !c->proto || !c->proto->on_timeout) {
            sy_conn_close(c);
            return;
        }
        c->refs++;
        c->proto->on_timeout(c);
        c->refs--;
        if (c->closing)
            return;
    }
    arm_timer(c);
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
        sy_conn_tls_run(c, 1, 0);
        c->refs--;
        return;
    }
    if (c->sink) {
        sy_conn_stream_deliver(c, 0);
        return;
    }
    if (c->proto->on_bytes)
        c->proto->on_bytes(c);
}
