/* Output queue of reference-counted chunks. */
#include "outq.h"

#include "buf.h"

#define MIN_CHUNK 4096
#define MAX_SPARE_RING 64

/* Memory kept for the next queue of the thread (reachable, freed never): a queue that empties
 * gives its ring and its last small chunk back here, and the next one takes them. */
static _Thread_local sy_outseg *spare_ring;
static _Thread_local size_t spare_ring_cap;
static _Thread_local sy_chunk *spare_chunk;

sy_chunk *sy_chunk_new(size_t cap)
{
    if (cap > SIZE_MAX - sizeof(sy_chunk))
        return NULL;
    sy_chunk *ch = sy_malloc(sizeof *ch + cap);
    if (!ch)
        return NULL;
    ch->refs = 1;
    ch->sealed = 0;
    ch->len = 0;
    ch->cap = cap;
    return ch;
}

void sy_chunk_release(sy_chunk *ch)
{
    if (ch && --ch->refs == 0) {
        if (ch->cap == MIN_CHUNK && !spare_chunk)
            spare_chunk = ch;
        else
            sy_free(ch);
    }
}

static sy_chunk *small_chunk(void)
{
    sy_chunk *ch = spare_chunk;
    if (!ch)
        return sy_chunk_new(MIN_CHUNK);
    spare_chunk = NULL;
    ch->refs = 1;
    ch->sealed = 0;
    ch->len = 0;
    return ch;
}

/* Lets go of an entry's bytes. */
static void drop(sy_outseg *s)
{
    if (s->chunk)
        sy_chunk_release(s->chunk);
    else if (s->ext && s->release)
        s->release(s->ud, s->ref);
}

void sy_outq_dispose(sy_outq *q)
{
    for (size_t i = 0; i < q->count; i++)
        drop(&q->segs[(q->head + i) & (q->cap - 1)]);
    if (q->segs && !spare_ring && q->cap <= MAX_SPARE_RING) {
        spare_ring = q->segs;
        spare_ring_cap = q->cap;
    } else {
        sy_free(q->segs);
    }
    q->segs = NULL;
    q->head = q->count = q->cap = q->bytes = 0;
}

static sy_outseg *tail(sy_outq *q)
{
    return q->count ? &q->segs[(q->head + q->count - 1) & (q->cap - 1)] : NULL;
}

/* A free entry at the tail (not counted yet), or NULL when out of memory. */
static sy_outseg *grow(sy_outq *q)
{
    if (q->cap == 0 && spare_ring) {
        q->segs = spare_ring;
        q->cap = (uint32_t)spare_ring_cap;
        q->head = 0;
        spare_ring = NULL;
    }
    if (q->count == q->cap) {
        if (q->cap > UINT32_MAX / 2)
            return NULL;
        uint32_t ncap = q->cap ? q->cap * 2 : 8;
        sy_outseg *s = sy_malloc(ncap * sizeof *s);
        if (!s)
            return NULL;
        for (size_t i = 0; i < q->count; i++)
            s[i] = q->segs[(q->head + i) & (q->cap - 1)];
        sy_free(q->segs);
        q->segs = s;
        q->head = 0;
        q->cap = ncap;
    }
    return &q->segs[(q->head + q->count) & (q->cap - 1)];
}

static int push(sy_outq *q, sy_chunk *ch, size_t off, size_t len)
{
    sy_outseg *s = grow(q);
    if (!s)
        return SY_ENOMEM;
    *s = (sy_outseg){.chunk = ch, .off = off, .len = len};
    q->count++;
    q->bytes += len;
    return 0;
}

int sy_outq_ref(sy_outq *q, const void *head, size_t hn, const void *p, size_t n,
                sy_outq_release_cb release, void *ud, int ref)
{
    sy_outseg *s = hn <= SY_OUTQ_SMALL && (hn || n) ? grow(q) : NULL;
    if (!s) {
        release(ud, ref);
        return hn > SY_OUTQ_SMALL ? SY_EINVAL : hn || n ? SY_ENOMEM : 0;
    }
    s->chunk = NULL;
    s->off = 0;
    s->len = hn + n;
    s->hn = (unsigned)hn;
    if (hn)
        memcpy(s->small, head, hn);
    if (n) {
        s->ext = p;
        s->release = release;
        s->ud = ud;
        s->ref = ref;
    } else {
        s->ext = NULL; /* the header alone, in small */
        release(ud, ref);
    }
    q->count++;
    q->bytes += hn + n;
    return 0;
}

/* Where n more bytes go in place: after the tail's bytes when the tail is our own, unshared
 * chunk with room; else NULL. On success the bytes are counted as queued. */
static char *append_in_place(sy_outq *q, size_t n)
{
    sy_outseg *t = tail(q);
    if (!t || !t->chunk || t->chunk->sealed || t->off + t->len != t->chunk->len ||
        t->chunk->cap - t->chunk->len < n)
        return NULL;
    char *d = t->chunk->data + t->chunk->len;
    t->chunk->len += n;
    t->len += n;
    q->bytes += n;
    return d;
}

int sy_outq_copy(sy_outq *q, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    char *d = append_in_place(q, n);
    if (d) {
        memcpy(d, p, n);
        return 0;
    }
    sy_chunk *ch = n > MIN_CHUNK ? sy_chunk_new(n) : small_chunk();
    if (!ch)
        return SY_ENOMEM;
    memcpy(ch->data, p, n);
    ch->len = n;
    if (push(q, ch, 0, n) != 0) {
        sy_chunk_release(ch);
        return SY_ENOMEM;
    }
    return 0;
}

int sy_outq_copy2(sy_outq *q, const void *p1, size_t n1, const void *p2, size_t n2)
{
    char *d = n1 && n2 ? append_in_place(q, n1 + n2) : NULL;
    if (d) {
        memcpy(d, p1, n1);
        memcpy(d + n1, p2, n2);
        return 0;
    }
    return sy_outq_copy(q, p1, n1) || sy_outq_copy(q, p2, n2) ? SY_ENOMEM : 0;
}

int sy_outq_share(sy_outq *q, sy_chunk *ch, size_t off, size_t len)
{
    if (len == 0)
        return 0;
    ch->sealed = 1;
    ch->refs++;
    if (push(q, ch, off, len) != 0) {
        ch->refs--;
        return SY_ENOMEM;
    }
    return 0;
}

int sy_outq_iov(const sy_outq *q, struct iovec *iov, int max)
{
    int n = 0;
    size_t mask = q->cap - 1;
    for (size_t i = 0; i < q->count && n < max; i++) {
        const sy_outseg *s = &q->segs[(q->head + i) & mask];
        if (s->chunk) {
            iov[n].iov_base = s->chunk->data + s->off;
            iov[n].iov_len = s->len;
        } else if (!s->ext) {
            iov[n].iov_base = (char *)s->small + s->off;
            iov[n].iov_len = s->len;
        } else if (s->off >= s->hn) {
            iov[n].iov_base = (char *)s->ext + (s->off - s->hn);
            iov[n].iov_len = s->len;
        } else {
            size_t h = s->hn - s->off; /* header bytes left */
            iov[n].iov_base = (char *)s->small + s->off;
            iov[n].iov_len = h;
            if (s->len > h && n + 1 < max) {
                n++;
                iov[n].iov_base = (char *)s->ext;
                iov[n].iov_len = s->len - h;
            }
        }
        n++;
    }
    return n;
}

void sy_outq_consume(sy_outq *q, size_t n)
{
    while (n && q->count) {
        sy_outseg *s = &q->segs[q->head];
        if (n < s->len) {
            s->off += n;
            s->len -= n;
            q->bytes -= n;
            return;
        }
        n -= s->len;
        q->bytes -= s->len;
        sy_chunk *ch = s->chunk;
        sy_outq_release_cb release = s->ext ? s->release : NULL;
        void *ud = s->ud;
        int ref = s->ref;
        q->head = (q->head + 1) & (q->cap - 1);
        q->count--;
        if (ch)
            sy_chunk_release(ch);
        else if (release)
            release(ud, ref); /* last: a release may look at the queue */
    }
    if (q->count == 0)
        q->head = 0;
}
