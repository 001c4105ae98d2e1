/* Small-block pool: see pool.h. */
#include "pool.h"

#include <string.h>

#include "buf.h"

#if defined(__SANITIZE_ADDRESS__)
#define SY_POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SY_POOL_ASAN 1
#endif
#endif
#ifdef SY_POOL_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define SLAB_BYTES (64 * 1024)
#define SLAB_HEAD 16 /* the link to the next slab; keeps blocks 16-byte aligned */
#define PREFIX 16    /* the size prefix of the malloc-style interface */

/* Class k holds blocks of (k + 1) * 16 bytes; a 0-byte request is a 16-byte block. */
static size_t class_of(size_t n)
{
    return n ? (n - 1) / 16 : 0;
}

void sy_pool_dispose(sy_pool *p)
{
    void *s = p->slabs;
    while (s) {
        UNPOISON(s, SLAB_BYTES);
        void *next = *(void **)s;
        sy_free(s);
        s = next;
    }
    memset(p, 0, sizeof *p);
}

/* Carves a block of class k from the newest slab, starting a new slab when it is used up (the
 * old slab's tail, under SY_POOL_MAX bytes, stays unused). */
static void *carve(sy_pool *p, size_t k)
{
    size_t size = (k + 1) * 16;
    if ((size_t)(p->bump_end - p->bump) < size) {
        char *s = sy_malloc(SLAB_BYTES);
        if (!s)
            return NULL;
        *(void **)s = p->slabs;
        p->slabs = s;
        p->slab_bytes += SLAB_BYTES;
        p->bump = s + SLAB_HEAD;
        p->bump_end = s + SLAB_BYTES;
        POISON(p->bump, (size_t)(p->bump_end - p->bump));
    }
    void *b = p->bump;
    p->bump += size;
    UNPOISON(b, size);
    return b;
}

void *sy_pool_get(sy_pool *p, size_t n)
{
    if (n > SY_POOL_MAX)
        return sy_malloc(n);
    size_t k = class_of(n);
    void *b = p->free[k];
    if (!b)
        return carve(p, k);
    UNPOISON(b, (k + 1) * 16);
    p->free[k] = *(void **)b;
    return b;
}

void sy_pool_put(sy_pool *p, void *block, size_t n)
{
    if (!block)
        return;
    if (n > SY_POOL_MAX) {
        sy_free(block);
        return;
    }
    size_t k = class_of(n);
    *(void **)block = p->free[k];
    p->free[k] = block;
    POISON(block, (k + 1) * 16);
}

void *sy_pool_resize(sy_pool *p, void *block, size_t old, size_t n)
{
    if (!block)
        return sy_pool_get(p, n);
    if (old > SY_POOL_MAX && n > SY_POOL_MAX)
        return sy_realloc(block, n);
    if (old <= SY_POOL_MAX && n <= SY_POOL_MAX && class_of(old) == class_of(n))
        return block;
    void *nb = sy_pool_get(p, n);
    if (!nb)
        return NULL;
    memcpy(nb, block, old < n ? old : n);
    sy_pool_put(p, block, old);
    return nb;
}

void *sy_pool_malloc(sy_pool *p, size_t n)
{
    if (n > SIZE_MAX - PREFIX)
        return NULL;
    char *b = sy_pool_get(p, n + PREFIX);
    if (!b)
        return NULL;
    *(size_t *)(void *)b = n;
    return b + PREFIX;
}

void *sy_pool_calloc(sy_pool *p, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *b = sy_pool_malloc(p, n * size);
    if (b)
        memset(b, 0, n * size);
    return b;
}

void *sy_pool_realloc(sy_pool *p, void *block, size_t n)
{
    if (!block)
        return sy_pool_malloc(p, n);
    if (n > SIZE_MAX - PREFIX)
        return NULL;
    char *b = (char *)block - PREFIX;
    size_t old = *(size_t *)(void *)b;
    char *nb = sy_pool_resize(p, b, old + PREFIX, n + PREFIX);
    if (!nb)
        return NULL;
    *(size_t *)(void *)nb = n;
    return nb + PREFIX;
}

void sy_pool_free(sy_pool *p, void *block)
{
    if (!block)
        return;
    char *b = (char *)block - PREFIX;
    sy_pool_put(p, b, *(size_t *)(void *)b + PREFIX);
}
