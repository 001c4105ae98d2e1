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

typedef struct sy_outseg {
    sy_chunk *chunk; /* one ref held by the queue */
    size_t off, len; /* the unsent bytes of this entry */
} sy_outseg;

typedef struct sy_outq {
    sy_outseg *segs; /* owned ring */
    size_t head, count, cap;
    size_t bytes; /* total unsent bytes */
} sy_outq;

/* Valid when zeroed. */
void sy_outq_dispose(sy_outq *q);

/* Copies n bytes to the tail. Returns 0 or SY_ENOMEM (nothing queued then). */
int sy_outq_copy(sy_outq *q, const void *p, size_t n);
/* Copies p1[0..n1) then p2[0..n2) (a frame header and its payload): one tail check when both
 * fit. Returns 0 or SY_ENOMEM (then p1 may have been queued without p2). */
int sy_outq_copy2(sy_outq *q, const void *p1, size_t n1, const void *p2, size_t n2);

/* Queues chunk[off, off + len) by reference (takes a new ref; seals the chunk). */
int sy_outq_share(sy_outq *q, sy_chunk *ch, size_t off, size_t len);

/* Fills up to max iovecs with the front of the queue; returns how many. */
int sy_outq_iov(const sy_outq *q, struct iovec *iov, int max);

/* Drops n sent bytes from the front, releasing finished chunks. */
void sy_outq_consume(sy_outq *q, size_t n);

#endif
