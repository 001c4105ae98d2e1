/* Topics shared by the workers of one supervisor over Unix sockets: the worker's link (libev)
 * and the supervisor's hub (poll). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "topic_relay.h"

#define HEAD 9 /* u32 length, u8 flags, u32 topic length */
#define MAX_FRAME (SY_RELAY_QUEUE_MAX / 2)

/* A byte queue: data[head..len) waits to be written (or parsed). */
typedef struct bytes {
    char *data; /* owned */
    size_t head, len, cap;
} bytes;

static int bytes_reserve(bytes *b, size_t n)
{
    if (b->head && b->head == b->len)
        b->head = b->len = 0;
    if (b->len + n <= b->cap)
        return 0;
    if (b->head) {
        memmove(b->data, b->data + b->head, b->len - b->head);
        b->len -= b->head;
        b->head = 0;
        if (b->len + n <= b->cap)
            return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
        cap *= 2;
    char *p = sy_realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

static size_t bytes_pending(const bytes *b)
{
    return b->len - b->head;
}

static void bytes_dispose(bytes *b)
{
    sy_free(b->data);
    memset(b, 0, sizeof *b);
}

static void put32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static uint32_t get32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

/* Appends one frame; -1 when it would pass the cap (or memory is short): dropped. */
static int frame_put(bytes *q, const char *topic, size_t tlen, const char *p, size_t n, int flags)
{
    size_t total = HEAD + tlen + n;
    if (tlen > MAX_FRAME || n > MAX_FRAME || total > MAX_FRAME ||
        bytes_pending(q) + total > SY_RELAY_QUEUE_MAX || bytes_reserve(q, total) != 0)
        return -1;
    char *w = q->data + q->len;
    put32(w, (uint32_t)(total - 4));
    w[4] = (char)flags;
    put32(w + 5, (uint32_t)tlen);
    memcpy(w + HEAD, topic, tlen);
    memcpy(w + HEAD + tlen, p, n);
    q->len += total;
    return 0;
}

/* Appends a whole frame as it arrived (the hub relays without re-encoding). */
static int frame_copy(bytes *q, const char *f, size_t total)
{
    if (bytes_pending(q) + total > SY_RELAY_QUEUE_MAX || bytes_reserve(q, total) != 0)
        return -1;
    memcpy(q->data + q->len, f, total);
    q->len += total;
    return 0;
}

/* The length of the complete frame at the front of b: > 0; 0 when more is needed; -1 for a
 * malformed one. */
static ssize_t frame_next(const bytes *b)
{
    size_t have = bytes_pending(b);
    if (have < HEAD)
        return 0;
    const char *f = b->data + b->head;
    uint32_t len = get32(f);
    if (len < HEAD - 4 || len > MAX_FRAME || get32(f + 5) > len - (HEAD - 4))
        return -1;
    return have >= (size_t)len + 4 ? (ssize_t)len + 4 : 0;
}

/* Reads one chunk of what fd has into b: the caller parses it before the next readiness
 * event reads more (the watchers are level-triggered), so a peer that keeps writing cannot
 * grow b past a frame and a chunk. Returns 1 while open, 0 at EOF, -1 on error or a full
 * buffer. */
static int fill(bytes *b, int fd)
{
    for (;;) {
        if (bytes_reserve(b, 65536) != 0)
            return -1;
        ssize_t r = read(fd, b->data + b->len, b->cap - b->len);
        if (r > 0) {
            b->len += (size_t)r;
            return bytes_pending(b) > SY_RELAY_QUEUE_MAX + 65536 ? -1 : 1;
        }
        if (r == 0)
            return 0;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -1;
    }
}

/* Writes what b holds. Returns 0 (all or some written; more when writable), -1 on error. */
static int flush(bytes *b, int fd)
{
    while (bytes_pending(b)) {
        ssize_t w = write(fd, b->data + b->head, bytes_pending(b));
        if (w > 0) {
            b->head += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        return w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
    b->head = b->len = 0;
    return 0;
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ---- worker side ------------------------------------------------------------------------- */

struct sy_topic_relay {
    struct ev_loop *loop; /* borrowed */
    ev_io rio, wio;
    int fd; /* owned; -1 once the supervisor went away */
    bytes in, out;
    sy_topic_deliver_cb deliver;
    void *ud;
    sy_relay_scrape_cb scrape; /* renders this worker's metrics page; NULL: none */
    void *scrape_ud;
    unsigned long dropped; /* publishes not queued since the last warning */
};

static void relay_send(sy_topic_relay *r);

/* The supervisor asks for this worker's metrics page: the answer echoes the request's id (its
 * topic field). */
static void answer_scrape(sy_topic_relay *r, const char *id, size_t idlen)
{
    sy_text t = {0};
    if (r->scrape)
        r->scrape(&t, r->scrape_ud);
    if (!t.failed &&
        frame_put(&r->out, id, idlen, t.p ? t.p : "", t.len, SY_RELAY_SCRAPE_REPLY) == 0)
        relay_send(r);
    sy_text_dispose(&t);
}

void sy_topic_relay_set_scrape(sy_topic_relay *r, sy_relay_scrape_cb cb, void *ud)
{
    r->scrape = cb;
    r->scrape_ud = ud;
}

static void relay_down(sy_topic_relay *r, const char *why)
{
    if (r->fd < 0)
        return;
    sy_log("warn", "topics: the link to the supervisor %s; publishes stay in this worker", why);
    ev_ref(r->loop);
    ev_io_stop(r->loop, &r->rio);
    ev_io_stop(r->loop, &r->wio);
    close(r->fd);
    r->fd = -1;
    bytes_dispose(&r->in);
    bytes_dispose(&r->out);
}

static void on_relay_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    sy_topic_relay *r = w->data;
    int st = fill(&r->in, r->fd);
    ssize_t len;
    while ((len = frame_next(&r->in)) > 0) {
        const char *f = r->in.data + r->in.head;
        uint32_t tlen = get32(f + 5);
        if (f[4] & SY_RELAY_SCRAPE)
            answer_scrape(r, f + HEAD, tlen);
        else
            r->deliver(f + HEAD, tlen, f + HEAD + tlen, (size_t)len - HEAD - tlen, f[4] & 1, r->ud);
        if (r->fd < 0)
            return;
        r->in.head += (size_t)len;
    }
    if (len < 0)
        relay_down(r, "sent a malformed frame");
    else if (st <= 0)
        relay_down(r, st == 0 ? "closed" : "failed");
}

static void on_relay_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    sy_topic_relay *r = w->data;
    if (flush(&r->out, r->fd) != 0)
        relay_down(r, "failed");
    else if (!bytes_pending(&r->out))
        ev_io_stop(loop, &r->wio);
}

sy_topic_relay *sy_topic_relay_new(struct ev_loop *loop, int fd, sy_topic_deliver_cb deliver,
                                   void *ud)
{
    sy_topic_relay *r = sy_malloc(sizeof *r);
    if (!r) {
        close(fd);
        return NULL;
    }
    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->fd = fd;
    r->deliver = deliver;
    r->ud = ud;
    set_nonblock(fd);
    ev_io_init(&r->rio, on_relay_read, fd, EV_READ);
    ev_io_init(&r->wio, on_relay_write, fd, EV_WRITE);
    r->rio.data = r->wio.data = r;
    ev_io_start(loop, &r->rio);
    /* The link alone does not keep the loop running: a stopped server ends its loop. */
    ev_unref(loop);
    return r;
}

void sy_topic_relay_publish(sy_topic_relay *r, const char *topic, size_t tlen, const char *p,
                            size_t n, int binary)
{
    if (r->fd < 0)
        return;
    if (frame_put(&r->out, topic, tlen, p, n, binary ? 1 : 0) != 0) {
        if (r->dropped++ % 10000 == 0)
            sy_log("warn",
                   "topics: the supervisor is not reading; dropped %lu publishes for the "
                   "other workers (queue past %u bytes)",
                   r->dropped, SY_RELAY_QUEUE_MAX);
        return;
    }
    relay_send(r);
}

/* Writes what is queued now, or leaves it to the writable watcher. */
static void relay_send(sy_topic_relay *r)
{
    if (r->fd < 0 || ev_is_active(&r->wio))
        return;
    if (flush(&r->out, r->fd) != 0)
        relay_down(r, "failed");
    else if (bytes_pending(&r->out))
        ev_io_start(r->loop, &r->wio);
}

int sy_topic_relay_up(const sy_topic_relay *r)
{
    return r->fd >= 0;
}

void sy_topic_relay_free(sy_topic_relay *r)
{
    if (!r)
        return;
    if (r->fd >= 0) {
        ev_ref(r->loop);
        ev_io_stop(r->loop, &r->rio);
        ev_io_stop(r->loop, &r->wio);
        close(r->fd);
    }
    bytes_dispose(&r->in);
    bytes_dispose(&r->out);
    sy_free(r);
}

/* ---- supervisor side --------------------------------------------------------------------- */

typedef struct hub_link {
    int fd; /* owned; -1 while detached */
    bytes in, out;
    unsigned long dropped; /* frames not queued for this worker since the last warning */
} hub_link;

struct sy_relay_hub {
    int n;
    hub_link *links; /* owned; n entries */
    sy_relay_reply_cb reply;
    void *reply_ud;
};

void sy_relay_hub_set_reply(sy_relay_hub *h, sy_relay_reply_cb cb, void *ud)
{
    h->reply = cb;
    h->reply_ud = ud;
}

int sy_relay_hub_scrape(sy_relay_hub *h, int i, const char *id, size_t idlen)
{
    hub_link *l = &h->links[i];
    if (l->fd < 0 || frame_put(&l->out, id, idlen, "", 0, SY_RELAY_SCRAPE) != 0)
        return -1;
    if (flush(&l->out, l->fd) != 0)
        l->out.head = l->out.len = 0; /* the read side sees the failure and detaches */
    return 0;
}

sy_relay_hub *sy_relay_hub_new(int n)
{
    sy_relay_hub *h = sy_malloc(sizeof *h);
    if (!h)
        return NULL;
    h->n = n;
    h->links = sy_malloc(sizeof *h->links * (size_t)n);
    if (!h->links) {
        sy_free(h);
        return NULL;
    }
    memset(h->links, 0, sizeof *h->links * (size_t)n);
    for (int i = 0; i < n; i++)
        h->links[i].fd = -1;
    return h;
}

void sy_relay_hub_attach(sy_relay_hub *h, int i, int fd)
{
    sy_relay_hub_detach(h, i);
    set_nonblock(fd);
    h->links[i].fd = fd;
}

void sy_relay_hub_detach(sy_relay_hub *h, int i)
{
    hub_link *l = &h->links[i];
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    bytes_dispose(&l->in);
    bytes_dispose(&l->out);
    l->dropped = 0;
}

int sy_relay_hub_fd(const sy_relay_hub *h, int i)
{
    return h->links[i].fd;
}

short sy_relay_hub_events(const sy_relay_hub *h, int i)
{
    const hub_link *l = &h->links[i];
    if (l->fd < 0)
        return 0;
    return (short)(POLLIN | (bytes_pending(&l->out) ? POLLOUT : 0));
}

/* Worker `from` published frame f: queue it for every other worker. */
static void relay(sy_relay_hub *h, int from, const char *f, size_t total)
{
    for (int j = 0; j < h->n; j++) {
        hub_link *l = &h->links[j];
        if (j == from || l->fd < 0)
            continue;
        if (frame_copy(&l->out, f, total) != 0) {
            if (l->dropped++ % 10000 == 0)
                sy_log("warn",
                       "topics: worker link %d is not reading; dropped %lu messages for it "
                       "(queue past %u bytes)",
                       j, l->dropped, SY_RELAY_QUEUE_MAX);
            continue;
        }
        if (flush(&l->out, l->fd) != 0)
            l->out.head = l->out.len = 0; /* the read side sees the failure and detaches */
    }
}

void sy_relay_hub_ready(sy_relay_hub *h, int i, short revents)
{
    hub_link *l = &h->links[i];
    if (l->fd < 0)
        return;
    if (revents & POLLOUT && flush(&l->out, l->fd) != 0) {
        sy_relay_hub_detach(h, i);
        return;
    }
    if (!(revents & (POLLIN | POLLHUP | POLLERR)))
        return;
    int st = fill(&l->in, l->fd);
    ssize_t len;
    while ((len = frame_next(&l->in)) > 0) {
        const char *f = l->in.data + l->in.head;
        if (f[4] & SY_RELAY_SCRAPE_REPLY) {
            uint32_t tlen = get32(f + 5);
            if (h->reply)
                h->reply(i, f + HEAD, tlen, f + HEAD + tlen, (size_t)len - HEAD - tlen,
                         h->reply_ud);
        } else {
            relay(h, i, f, (size_t)len);
        }
        l->in.head += (size_t)len;
    }
    if (len < 0 || st <= 0)
        sy_relay_hub_detach(h, i);
}

void sy_relay_hub_free(sy_relay_hub *h)
{
    if (!h)
        return;
    for (int i = 0; i < h->n; i++)
        sy_relay_hub_detach(h, i);
    sy_free(h->links);
    sy_free(h);
}
