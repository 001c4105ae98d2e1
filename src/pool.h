/* Small-block pool: free lists by 16-byte size class over slabs from sy_malloc, for the many
 * short-lived blocks each request makes in Lua and nghttp2 (a request's strings, tables, req/res
 * userdata; a stream's frames). glibc's free runs its slow path when a burst of frees (a GC step,
 * a closed stream) overflows its per-size caches; here a free is a push and a malloc a pop.
 *
 * One pool per server, used from the server's thread only. Freed blocks return to their class
 * list and are reused; a slab whose blocks are all free goes back to the system only when
 * sy_pool_release_empty runs (the server calls it once a spike is over). Blocks over
 * SY_POOL_MAX bytes go to sy_malloc/sy_realloc/sy_free directly. Under AddressSanitizer a
 * block on a free list is poisoned, so a use after free is still reported. */
#ifndef SY_POOL_H
#define SY_POOL_H

#include "sy_base.h"

#define SY_POOL_MAX 1024 /* largest pooled block */
#define SY_POOL_CLASSES (SY_POOL_MAX / 16)

typedef struct sy_pool {
    void *free[SY_POOL_CLASSES]; /* free blocks by class (16, 32, ... 1024 bytes) */
    char *bump, *bump_end;       /* the unused end of the newest slab */
    void *slabs;                 /* owned; singly linked through each slab's first word */
    size_t slab_bytes;           /* bytes held in slabs */
} sy_pool;

/* Valid when zeroed. Frees every slab: every block of the pool is gone afterwards. */
void sy_pool_dispose(sy_pool *p);

/* Frees every slab whose carved blocks are all on the free lists (their blocks leave the
 * lists). Walks every free block once: for idle moments, not per request. Returns the bytes
 * freed (0 also when the walk's small index cannot be allocated). */
size_t sy_pool_release_empty(sy_pool *p);

/* Sized interface (the caller remembers each block's size, as Lua does). */

/* A block of n > 0 bytes, or NULL when out of memory. */
void *sy_pool_get(sy_pool *p, size_t n);
/* Returns a block of n bytes got from this pool; NULL is accepted. */
void sy_pool_put(sy_pool *p, void *block, size_t n);
/* Resizes a block of old bytes (NULL with old 0: a new block) to n > 0 bytes, keeping
 * min(old, n) bytes. NULL when out of memory, and the old block is left as it was. */
void *sy_pool_resize(sy_pool *p, void *block, size_t old, size_t n);

/* malloc-style interface: each block carries its size in a 16-byte prefix (for nghttp2). */
void *sy_pool_malloc(sy_pool *p, size_t n);
void *sy_pool_calloc(sy_pool *p, size_t n, size_t size);
void *sy_pool_realloc(sy_pool *p, void *block, size_t n);
void sy_pool_free(sy_pool *p, void *block);

#endif
