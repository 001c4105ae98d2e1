/* Byte buffer with a hard limit: reserve a span, commit what was written, consume the front. */
#ifndef SY_BUF_H
#define SY_BUF_H

#include "sy_base.h"

typedef struct sy_buf {
    char *data;   /* owned; NULL until the first reserve. Borrowed while cap is 0 and data is
                     not NULL (sy_buf_borrow): valid until sy_buf_own or any growth */
    size_t start; /* offset of the first unread byte */
    size_t len;   /* bytes readable from data + start */
    size_t cap;   /* allocated bytes */
    size_t limit; /* len never grows past this; 0 means no limit */
} sy_buf;

/* Prepares an empty buffer (no allocation). */
void sy_buf_init(sy_buf *b, size_t limit);

/* Frees the memory; b is empty and usable again afterwards. */
void sy_buf_dispose(sy_buf *b);

/* Makes room for at least n more bytes and sets *span to them. Returns 0, SY_ELIMIT when
 * len + n would pass the limit, or SY_ENOMEM. Pointers into the buffer may change. */
int sy_buf_reserve(sy_buf *b, size_t n, char **span);

/* Same, but the allocation never grows past max_cap bytes (SY_ELIMIT when len + n would):
 * for output whose size an attacker chooses, such as an inflated message. */
int sy_buf_reserve_within(sy_buf *b, size_t n, size_t max_cap, char **span);

/* Publishes n bytes written into the last reserved span. */
void sy_buf_commit(sy_buf *b, size_t n);

/* Drops n bytes from the front (n <= len). */
void sy_buf_consume(sy_buf *b, size_t n);

/* Drops the n bytes at offset off (clamped to the readable bytes); what follows them moves
 * down. */
void sy_buf_cut(sy_buf *b, size_t off, size_t n);

/* Appends n bytes: reserve + copy + commit. Returns 0, SY_ELIMIT or SY_ENOMEM. */
int sy_buf_append(sy_buf *b, const void *p, size_t n);

/* Lends p[0..n) to an empty buffer that holds no memory: the bytes are read in place, consumed
 * and cut as usual, never freed; a reserve copies them into memory of the buffer's own first.
 * Used for a read into memory shared by the loop. */
void sy_buf_borrow(sy_buf *b, char *p, size_t n);

/* 1 while the buffer reads borrowed bytes. */
static inline int sy_buf_borrowed(const sy_buf *b)
{
    return b->data && !b->cap;
}

/* Ends a borrow: what is left unread is copied into memory of the buffer's own (none when
 * nothing is left). Returns 0 or SY_ENOMEM (then the buffer is empty). A buffer that does not
 * borrow is left alone. */
int sy_buf_own(sy_buf *b);

/* Frees the memory if the buffer is empty and larger than keep bytes (idle connections). */
void sy_buf_trim(sy_buf *b, size_t keep);

static inline char *sy_buf_data(const sy_buf *b)
{
    return b->data ? b->data + b->start : NULL;
}

static inline size_t sy_buf_len(const sy_buf *b)
{
    return b->len;
}

/* Internal allocation entry points (sy_set_allocator replaces them). */
void *sy_malloc(size_t n);
void *sy_realloc(void *p, size_t n);
void sy_free(void *p);
void *sy_calloc(size_t n, size_t size);

#endif
