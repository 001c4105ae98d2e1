/* Small-block pool, giving memory back: sy_pool_release_empty frees exactly the slabs whose
 * blocks are all free, keeps every live block's bytes, leaves the free lists usable (no block
 * of a freed slab is handed out again), and fails soft when its index cannot be allocated. */
#include "pool.h"
#include "switchyard.h"
#include "test.h"

#include <stdint.h>

static int fail_malloc;

static void *test_malloc(size_t n)
{
    return fail_malloc ? NULL : malloc(n);
}

static void *test_realloc(void *p, size_t n)
{
    return fail_malloc ? NULL : realloc(p, n);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed * 31u + i * 7u);
}

static int holds(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed * 31u + i * 7u))
            return 0;
    return 1;
}

enum { N = 30000 };
static unsigned char *blk[N];
static size_t len[N];

/* A spike: many blocks of mixed sizes over many slabs. */
static void spike(sy_pool *p, unsigned seed)
{
    unsigned x = seed;
    for (int i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        len[i] = 1 + (x >> 8) % SY_POOL_MAX;
        blk[i] = sy_pool_get(p, len[i]);
        if (blk[i])
            fill(blk[i], len[i], (unsigned)i);
    }
}

static void test_all_free(void)
{
    sy_pool p = {0};
    CHECK(sy_pool_release_empty(&p) == 0); /* nothing yet */
    spike(&p, 7);
    size_t peak = p.slab_bytes;
    CHECK(peak > 100 * 64 * 1024);
    for (int i = 0; i < N; i++)
        sy_pool_put(&p, blk[i], len[i]);
    size_t freed = sy_pool_release_empty(&p);
    CHECK_MSG(freed == peak && p.slab_bytes == 0, "freed %zu of %zu", freed, peak);
    CHECK(p.slabs == NULL);
    int lists_empty = 1;
    for (int k = 0; k < SY_POOL_CLASSES; k++)
        lists_empty &= p.free[k] == NULL;
    CHECK(lists_empty);
    /* The pool goes on as new. */
    void *a = sy_pool_get(&p, 100);
    CHECK(a != NULL && p.slab_bytes == 64 * 1024);
    sy_pool_put(&p, a, 100);
    sy_pool_dispose(&p);
}

static void test_some_live(void)
{
    sy_pool p = {0};
    spike(&p, 11);
    size_t peak = p.slab_bytes;
    /* Keep the first and last thousand blocks (the oldest and newest slabs); free the rest. */
    for (int i = 1000; i < N - 1000; i++) {
        sy_pool_put(&p, blk[i], len[i]);
        blk[i] = NULL;
    }
    size_t freed = sy_pool_release_empty(&p);
    CHECK_MSG(freed > 0 && freed < peak && p.slab_bytes == peak - freed, "freed %zu of %zu", freed,
              peak);
    int ok = 1;
    for (int i = 0; i < N; i++)
        if (blk[i])
            ok &= holds(blk[i], len[i], (unsigned)i);
    CHECK(ok);
    /* A second pass finds nothing more. */
    CHECK(sy_pool_release_empty(&p) == 0);
    /* Reuse: new blocks come from the remaining slabs' lists or new slabs, never overlap the
     * live ones, and every block keeps its bytes. */
    for (int i = 1000; i < N - 1000; i++) {
        len[i] = 1 + (size_t)(i * 37) % SY_POOL_MAX;
        blk[i] = sy_pool_get(&p, len[i]);
        if (blk[i])
            fill(blk[i], len[i], (unsigned)i);
    }
    ok = 1;
    for (int i = 0; i < N; i++)
        ok &= blk[i] != NULL && holds(blk[i], len[i], (unsigned)i);
    CHECK(ok);
    for (int i = 0; i < N; i++)
        sy_pool_put(&p, blk[i], len[i]);
    size_t held = p.slab_bytes;
    CHECK(sy_pool_release_empty(&p) == held && p.slab_bytes == 0);
    sy_pool_dispose(&p);
}

static void test_no_memory_for_index(void)
{
    sy_set_allocator(test_malloc, test_realloc, free);
    sy_pool p = {0};
    spike(&p, 3);
    for (int i = 0; i < N; i++)
        sy_pool_put(&p, blk[i], len[i]);
    size_t before = p.slab_bytes;
    fail_malloc = 1;
    CHECK(sy_pool_release_empty(&p) == 0);
    CHECK(p.slab_bytes == before);
    void *a = sy_pool_get(&p, 64); /* the lists are intact */
    CHECK(a != NULL);
    sy_pool_put(&p, a, 64);
    fail_malloc = 0;
    CHECK(sy_pool_release_empty(&p) == before);
    sy_pool_dispose(&p);
    sy_set_allocator(NULL, NULL, NULL);
}

int main(void)
{
    test_all_free();
    test_some_live();
    test_no_memory_for_index();
    return t_summary("test_pool_release");
}
