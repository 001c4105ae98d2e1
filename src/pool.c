/* Small-block pool: see pool.h. */
#include "pool.h"

#include <stdint.h>
#include <stdlib.h>
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
#define SLAB_HEAD                                                                                  \
    16            /* the link to the next slab, then the bytes carved from it once it is           \
                    full; keeps blocks 16-byte aligned */
#define PREFIX 16 /* the size prefix of the malloc-style interface */

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
        if (p->bump) {
            /* The full slab remembers how far it was carved (sy_pool_release_empty). */
            char *old = p->bump_end - SLAB_BYTES;
            ((size_t *)(void *)old)[1] = (size_t)(p->bump - old);
        }
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

/* One slab while looking for empty ones. */
typedef struct slab_use {
    uintptr_t base;
    size_t carved; /* bytes of blocks carved from it */
    size_t free;   /* bytes of those on a free list */
} slab_use;

static int by_base(const void *a, const void *b)
{
    uintptr_t x = ((const slab_use *)a)->base, y = ((const slab_use *)b)->base;
    return x < y ? -1 : x > y;
}

static slab_use *slab_of(slab_use *v, size_t n, const void *block)
{
    uintptr_t b = (uintptr_t)block;
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].base <= b)
            lo = mid;
        else
            hi = mid;
    }
    return &v[lo];
}

/* The link word of a free block (poisoned under AddressSanitizer while on a list). */
static void *next_free(void *b)
{
    UNPOISON(b, sizeof(void *));
    void *next = *(void **)b;
    POISON(b, sizeof(void *));
    return next;
}

static void set_next_free(void *b, void *next)
{
    UNPOISON(b, sizeof(void *));
    *(void **)b = next;
    POISON(b, sizeof(void *));
}

size_t sy_pool_release_empty(sy_pool *p)
{
    size_t n = p->slab_bytes / SLAB_BYTES;
    if (n == 0)
        return 0;
    slab_use *v = sy_malloc(n * sizeof *v);
    if (!v)
        return 0;
    size_t i = 0;
    for (char *s = p->slabs; s; s = *(char **)(void *)s, i++) {
        v[i].base = (uintptr_t)s;
        v[i].carved = (p->bump && s == p->bump_end - SLAB_BYTES ? (size_t)(p->bump - s)
                                                                : ((size_t *)(void *)s)[1]) -
                      SLAB_HEAD;
        v[i].free = 0;
    }
    qsort(v, n, sizeof *v, by_base);
    for (size_t k = 0; k < SY_POOL_CLASSES; k++)
        for (void *b = p->free[k]; b; b = next_free(b))
            slab_of(v, n, b)->free += (k + 1) * 16;
    size_t empty = 0;
    for (i = 0; i < n; i++)
        empty += v[i].free == v[i].carved;
    if (empty == 0) {
        sy_free(v);
        return 0;
    }
    /* Unlink the blocks of empty slabs from the lists, keeping the others' order. */
    for (size_t k = 0; k < SY_POOL_CLASSES; k++) {
        void **link = &p->free[k];
        void *prev = NULL;
        for (void *b = p->free[k]; b;) {
            void *next = next_free(b);
            slab_use *u = slab_of(v, n, b);
            if (u->free != u->carved) {
                if (prev)
                    set_next_free(prev, b);
                else
                    *link = b;
                prev = b;
            }
            b = next;
        }
        if (prev)
            set_next_free(prev, NULL);
        else
            *link = NULL;
    }
    size_t released = 0;
    for (char **pp = (char **)&p->slabs; *pp;) {
        char *s = *pp;
        slab_use *u = slab_of(v, n, s);
        if (u->free != u->carved) {
            pp = (char **)(void *)s;
            continue;
        }
        *pp = *(char **)(void *)s;
        if (p->bump && s == p->bump_end - SLAB_BYTES)
            p->bump = p->bump_end = NULL; /* the next block starts a new slab */
        UNPOISON(s, SLAB_BYTES);
        sy_free(s);
        released += SLAB_BYTES;
    }
    p->slab_bytes -= released;
    sy_free(v);
    return released;
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
