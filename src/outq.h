/* Output queue of reference-counted chunks: private writes are copied into the tail chunk, shared
 * chunks (one published frame for many subscribers) are queued by reference, never copied. */
#ifndef SY_OUTQ_H
#define SY_OUTQ_H

#include <sys/uio.h>

#include "sy_base.h"

typedef struct sy_chunk {
    uint32_t refs;   /* one per queue entry and per other holder */
    uint32_t sealed; /* 1: shared, nobody appends to it */
    size_t len;      /* bytes used */
    size_t cap;      /* bytes allocated in data */
    char data[];
} sy_chunk;

/* Allocates a chunk with room for cap bytes and one ref (caller's). NULL when out of memory. */
sy_chunk *sy_chunk_new(size_t cap);
/* Drops one ref; frees at zero. NULL is accepted. */
void sy_chunk_release(sy_chunk *ch);

/* Lets go of bytes queued by reference (sy_outq_ref): called once per queued span, when it is
 * written or dropped. ud and ref are the caller's (e.g. a Lua state and a registry anchor). */
typedef void (*sy_outq_release_cb)(void *ud, int ref);

/* Bytes lent to a writer that queues them by reference only if it must (sy_conn_write_ref):
 * keep(loan) runs when some of them are queued, must not fail, and returns the ref that
 * release(ud, ref) then gets, once, when the queue is done with them. Neither runs when the
 * bytes are written at once, copied or refused. A caller embeds the loan first in a struct of
 * its own to find its context from keep. */
typedef struct sy_outq_loan sy_outq_loan;
struct sy_outq_loan {
    int (*keep)(sy_outq_loan *loan);
    sy_outq_release_cb release;
    void *ud;
};

#define SY_OUTQ_SMALL 16 /* bytes an entry holds in place: a frame header */

typedef struct sy_outseg {
    sy_chunk *chunk;            /* one ref held by the queue; NULL for the two kinds below */
    const char *ext;            /* chunk NULL: borrowed bytes, valid until release runs, after
                                   the hn bytes in small (a frame header); NULL: the bytes are
                                   in small */
    size_t off, len;            /* the unsent bytes of this entry (ext: counted from small's
                                   first byte) */
    sy_outq_release_cb release; /* ext: runs once when the entry is sent or dropped */
    void *ud;
    int ref;
    unsigned hn; /* ext: bytes of small sent before ext */
    char small[SY_OUTQ_SMALL];
} sy_outseg;

typedef struct sy_outq {
    sy_outseg *segs;           /* owned ring; cap is a power of two */
    size_t bytes;              /* total unsent bytes */
    uint32_t head, count, cap; /* ring positions: 32 bits, as every idle connection holds one */
} sy_outq;

/* Valid when zeroed. Dispose drops what is queued (releasing chunks and references) and the
 * ring; one ring and one small chunk per thread are kept for the next queue, so a connection
 * that queues a reply per message allocates nothing in steady state. */
void sy_outq_dispose(sy_outq *q);

/* Copies n bytes to the tail. Returns 0 or SY_ENOMEM (nothing queued then). */
int sy_outq_copy(sy_outq *q, const void *p, size_t n);
/* Copies p1[0..n1) then p2[0..n2) (a frame header and its payload): one tail check when both
 * fit. Returns 0 or SY_ENOMEM (then p1 may have been queued without p2). */
int sy_outq_copy2(sy_outq *q, const void *p1, size_t n1, const void *p2, size_t n2);

/* Queues chunk[off, off + len) by reference (takes a new ref; seals the chunk). */
int sy_outq_share(sy_outq *q, sy_chunk *ch, size_t off, size_t len);

/* Queues head[0..hn) (hn <= SY_OUTQ_SMALL, copied into the entry) then p[0..n) by reference:
 * p stays the caller's, and must stay valid until release(ud, ref) runs, once, when those bytes
 * are written or dropped (sy_outq_consume, sy_outq_dispose). Takes the anchor in every case:
 * when n is 0, and on failure (SY_ENOMEM, nothing queued), release runs before it returns. */
int sy_outq_ref(sy_outq *q, const void *head, size_t hn, const void *p, size_t n,
                sy_outq_release_cb release, void *ud, int ref);

/* Fills up to max iovecs with the front of the queue; returns how many (an entry by reference
 * with a header takes two). */
int sy_outq_iov(const sy_outq *q, struct iovec *iov, int max);

/* Drops n sent bytes from the front, releasing finished chunks. */
void sy_outq_consume(sy_outq *q, size_t n);

#endif
