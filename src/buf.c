/* Byte buffer with a hard limit, and the core's allocator hooks. */
#include "buf.h"

#include <stdlib.h>

/* Process-wide allocator: set once by the host before any server exists (sy_set_allocator). */
static void *(*alloc_malloc)(size_t) = malloc;
static void *(*alloc_realloc)(void *, size_t) = realloc;
static void (*alloc_free)(void *) = free;

SY_API void sy_set_allocator(void *(*malloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                             void (*free_fn)(void *))
{
    alloc_malloc = malloc_fn ? malloc_fn : malloc;
    alloc_realloc = realloc_fn ? realloc_fn : realloc;
    alloc_free = free_fn ? free_fn : free;
}

void *sy_malloc(size_t n)
{
    return alloc_malloc(n ? n : 1);
}

void *sy_realloc(void *p, size_t n)
{
    return alloc_realloc(p, n ? n : 1);
}

void sy_free(void *p)
{
    if (p)
        alloc_free(p);
}

void *sy_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = sy_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

SY_API const char *sy_strerror(int code)
{
    switch (code) {
    case SY_OK: return "success";
    case SY_ENOMEM: return "out of memory";
    case SY_EINVAL: return "invalid argument";
    case SY_ESYS: return "system call failed";
    case SY_ELUA: return "Lua error";
    case SY_ECLOSED: return "closed";
    case SY_ENOTSUP: return "not supported by the connection's protocol";
    case SY_EAGAIN: return "need more input";
    case SY_ELIMIT: return "limit exceeded";
    case SY_EPROTO: return "protocol error";
    default: return "unknown error";
    }
}

void sy_buf_init(sy_buf *b, size_t limit)
{
    b->data = NULL;
    b->start = b->len = b->cap = 0;
    b->limit = limit;
}

void sy_buf_dispose(sy_buf *b)
{
    if (b->cap)
        sy_free(b->data);
    b->data = NULL;
    b->start = b->len = b->cap = 0;
}

/* Copies borrowed bytes into a new allocation of cap bytes (>= b->len). */
static int own(sy_buf *b, size_t cap)
{
    char *p = sy_malloc(cap);
    if (!p)
        return SY_ENOMEM;
    if (b->len)
        memcpy(p, b->data + b->start, b->len);
    b->data = p;
    b->start = 0;
    b->cap = cap;
    return 0;
}

static int reserve(sy_buf *b, size_t n, size_t max_cap, char **span)
{
    if (b->limit && (n > b->limit || b->len > b->limit - n))
        return SY_ELIMIT;
    if (sy_buf_borrowed(b)) {
        size_t need = b->len + n, cap = 1024;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        if (cap > max_cap)
            cap = max_cap;
        if (own(b, cap) != 0)
            return SY_ENOMEM;
        *span = b->data + b->len;
        return 0;
    }
    if (b->start + b->len + n <= b->cap) {
        /* With nothing allocated only n == 0 fits: an empty span, and no offset added to NULL
         * (undefined in C even when it is 0). */
        *span = b->data ? b->data + b->start + b->len : NULL;
        return 0;
    }
    /* Compact first when that alone makes room and the move is cheap relative to the gain. */
    if (b->len + n <= b->cap && b->start >= b->len) {
        memmove(b->data, b->data + b->start, b->len);
        b->start = 0;
        *span = b->data + b->len;
        return 0;
    }
    size_t need = b->len + n, cap = b->cap ? b->cap : 1024;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > max_cap)
        cap = max_cap; /* >= need, checked by the caller */
    if (b->start) {
        memmove(b->data, b->data + b->start, b->len);
        b->start = 0;
    }
    if (cap > b->cap) {
        char *p = sy_realloc(b->data, cap);
        if (!p)
            return SY_ENOMEM;
        b->data = p;
        b->cap = cap;
    }
    *span = b->data + b->len;
    return 0;
}

int sy_buf_reserve(sy_buf *b, size_t n, char **span)
{
    return reserve(b, n, SIZE_MAX, span);
}

int sy_buf_reserve_within(sy_buf *b, size_t n, size_t max_cap, char **span)
{
    if (n > max_cap || b->len > max_cap - n)
        return SY_ELIMIT;
    return reserve(b, n, max_cap, span);
}

void sy_buf_commit(sy_buf *b, size_t n)
{
    b->len += n;
}

void sy_buf_consume(sy_buf *b, size_t n)
{
    if (n >= b->len) {
        b->start = b->len = 0;
        return;
    }
    b->start += n;
    b->len -= n;
}

void sy_buf_cut(sy_buf *b, size_t off, size_t n)
{
    if (off >= b->len || n == 0)
        return;
    if (n > b->len - off)
        n = b->len - off;
    char *p = b->data + b->start + off;
    memmove(p, p + n, b->len - off - n);
    b->len -= n;
}

int sy_buf_append(sy_buf *b, const void *p, size_t n)
{
    char *span;
    int rc = sy_buf_reserve(b, n, &span);
    if (rc)
        return rc;
    if (n)
        memcpy(span, p, n);
    b->len += n;
    return 0;
}

void sy_buf_borrow(sy_buf *b, char *p, size_t n)
{
    b->data = p;
    b->start = 0;
    b->len = n;
    b->cap = 0;
}

int sy_buf_own(sy_buf *b)
{
    if (!sy_buf_borrowed(b))
        return 0;
    if (b->len == 0) {
        b->data = NULL;
        b->start = 0;
        return 0;
    }
    if (own(b, b->len) != 0) {
        b->data = NULL;
        b->start = b->len = 0;
        return SY_ENOMEM;
    }
    return 0;
}

void sy_buf_trim(sy_buf *b, size_t keep)
{
    if (sy_buf_borrowed(b)) {
        if (b->len == 0) {
            b->data = NULL;
            b->start = 0;
        }
        return;
    }
    if (b->len == 0 && b->cap > keep) {
        sy_free(b->data);
        b->data = NULL;
        b->start = b->cap = 0;
    }
}
