/* A connection's TLS layer: ciphertext on the socket, plaintext in c->in and c->out. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "conn_int.h"

/* A write with nothing queued is encrypted at once up to this size; the rest waits in the queue
 * as plaintext, so ciphertext held per connection stays bounded. */
#define TLS_DIRECT_MAX (64 * 1024)
#define TLS_FIRST_ROOM 1024

int sy_conn_start_tls(sy_conn *c, int min_version)
{
    if (c->closing)
        return SY_ECLOSED;
    if (!c->env->tls_ctx || c->tls)
        return SY_EINVAL;
    sy_tls *t = sy_tls_new(c->env->tls_ctx, min_version);
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
    sy_stats_conn_open(&c->env->stats, SY_SP_TLS);
    if (sy_buf_len(o) && !c->corked)
        sy_conn_tls_flush(c);
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
                return sy_conn_write_failed(c);
            }
            if (w > 0)
                c->sent_at = ev_now(c->env->loop);
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
            return sy_conn_write_failed(c);
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
        sy_conn_watch_output(c);
    } else {
        sy_conn_unwatch_output(c);
        if (c->out.bytes == 0)
            sy_outq_dispose(&c->out);
    }
}

void sy_conn_tls_flush(sy_conn *c)
{
    if (tls_send(c) != 0)
        return;
    tls_watch(c);
    if (sy_conn_drained(c))
        return;
    if (c->out.bytes == 0 && sy_buf_len(sy_tls_out(c->tls)) == 0) {
        if (c->close_after_write && !c->lingering)
            sy_conn_start_lingering(c);
        else if (c->shut_wr && !c->fin_sent && !c->close_after_write)
            sy_conn_send_fin(c); /* after close_notify (tls_send) */
    }
}

static int tls_after_queue(sy_conn *c)
{
    if (!c->corked) {
        if (tls_send(c) != 0)
            return SY_ECLOSED;
        tls_watch(c);
    }
    if (c->out.bytes > c->env->cfg.high_water) {
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

int sy_conn_tls_write2(sy_conn *c, const char *p1, size_t n1, const char *p2, size_t n2)
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
            return sy_conn_write_failed(c);
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

int sy_conn_tls_write_shared(sy_conn *c, sy_chunk *ch, size_t off, size_t len)
{
    if (tls_direct(c, len)) {
        if (sy_tls_write(c->tls, ch->data + off, len) != 0)
            return sy_conn_write_failed(c);
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
void sy_conn_tls_run(sy_conn *c, int force, int sock_eof)
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
        int rc = sy_conn_input_room(c, want, &span, &room);
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
    if (became_ready) {
        c->tls_ready = 1;
        c->env->stats.tls_handshakes++;
    }
    if (sy_buf_len(sy_tls_out(t)) || (became_ready && c->out.bytes)) {
        if (!c->corked) {
            if (tls_send(c) != 0)
                return;
            tls_watch(c);
        }
    }
    if (notify_eof || sock_eof) {
        c->peer_eof = 1;
        sy_conn_io_read(c, 0);
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

void sy_conn_tls_readable(sy_conn *c)
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
    ssize_t n = recv(c->fd, span, READ_CHUNK, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        sy_conn_close(c);
        return;
    }
    c->refs++;
    if (n > 0)
        sy_tls_in_commit(c->tls, (size_t)n);
    sy_conn_tls_run(c, 0, n == 0);
    c->refs--;
}
