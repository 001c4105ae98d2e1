/* Small-block pool: reuse by class, alignment, resizes across every boundary keep the bytes,
 * blocks never overlap, a failing slab allocation is a NULL and nothing else, and under
 * AddressSanitizer a freed block is poisoned. */
#include "pool.h"
#include "switchyard.h"
#include "test.h"

#include <stdint.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define T_ASAN 1
#endif

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

static void test_classes(void)
{
    sy_pool p = {0};
    void *a = sy_pool_get(&p, 40);
    CHECK(a != NULL && ((uintptr_t)a & 15) == 0);
    CHECK(p.slab_bytes > 0);
    sy_pool_put(&p, a, 40);
    CHECK(sy_pool_get(&p, 33) == a); /* 33..48 bytes: one class, last freed first reused */
    sy_pool_put(&p, a, 33);
    void *b = sy_pool_get(&p, 49);
    CHECK(b != NULL && b != a);
    CHECK(sy_pool_get(&p, 48) == a);
    void *z = sy_pool_get(&p, 0); /* a zero-byte request is a 16-byte block */
    CHECK(z != NULL && z != a && z != b);
    sy_pool_put(&p, z, 0);
    sy_pool_put(&p, NULL, 16); /* accepted */
    void *big = sy_pool_get(&p, SY_POOL_MAX + 1);
    CHECK(big != NULL);
    size_t slabs = p.slab_bytes;
    sy_pool_put(&p, big, SY_POOL_MAX + 1); /* to sy_free, not a list */
    void *top = sy_pool_get(&p, SY_POOL_MAX);
    CHECK(top != NULL && ((uintptr_t)top & 15) == 0);
    sy_pool_put(&p, top, SY_POOL_MAX);
    CHECK(p.slab_bytes == slabs);
    sy_pool_dispose(&p);
    CHECK(p.slabs == NULL && p.slab_bytes == 0 && p.free[0] == NULL);
}

static void test_resize(void)
{
    sy_pool p = {0};
    /* Sizes on both sides of every kind of boundary: same class, next class, pooled to large,
     * large to large, large back to pooled. */
    static const size_t sizes[] = {
        1,    16,    17,   31,  200, 256, 257, SY_POOL_MAX - 1, SY_POOL_MAX, SY_POOL_MAX + 1,
        5000, 70000, 3000, 100, 8};
    unsigned char *blk = sy_pool_resize(&p, NULL, 0, sizes[0]);
    CHECK(blk != NULL);
    fill(blk, sizes[0], 1);
    for (size_t i = 1; i < SY_COUNTOF(sizes); i++) {
        size_t old = sizes[i - 1], n = sizes[i];
        unsigned char *nb = sy_pool_resize(&p, blk, old, n);
        CHECK_MSG(nb != NULL, "%zu -> %zu", old, n);
        if (!nb)
            break;
        size_t kept = old < n ? old : n;
        CHECK_MSG(holds(nb, kept, (unsigned)i), "bytes lost %zu -> %zu", old, n);
        if (old <= SY_POOL_MAX && n <= SY_POOL_MAX && (old - 1) / 16 == (n - 1) / 16)
            CHECK(nb == blk); /* same class: no move */
        fill(nb, n, (unsigned)i + 1);
        blk = nb;
    }
    sy_pool_put(&p, blk, sizes[SY_COUNTOF(sizes) - 1]);
    sy_pool_dispose(&p);
}

static void test_malloc_style(void)
{
    sy_pool p = {0};
    unsigned char *a = sy_pool_malloc(&p, 0);
    CHECK(a != NULL && ((uintptr_t)a & 15) == 0);
    sy_pool_free(&p, a);
    unsigned char *c = sy_pool_calloc(&p, 10, 30);
    CHECK(c != NULL);
    int zero = 1;
    for (int i = 0; c && i < 300; i++)
        zero &= c[i] == 0;
    CHECK(zero);
    CHECK(sy_pool_calloc(&p, SIZE_MAX / 2, 3) == NULL); /* n * size overflows */
    CHECK(sy_pool_malloc(&p, SIZE_MAX - 8) == NULL);
    fill(c, 300, 9);
    unsigned char *r = sy_pool_realloc(&p, c, 2000); /* to a large block */
    CHECK(r != NULL && holds(r, 300, 9));
    r = sy_pool_realloc(&p, r, 20); /* back to a small one */
    CHECK(r != NULL && holds(r, 20, 9));
    unsigned char *n = sy_pool_realloc(&p, NULL, 64); /* NULL: a new block */
    CHECK(n != NULL && n != r);
    sy_pool_free(&p, n);
    sy_pool_free(&p, r);
    sy_pool_free(&p, NULL);
    sy_pool_dispose(&p);
}

/* Many live blocks of mixed sizes, freed and reused in a shuffled order: every block keeps its
 * own bytes, so no two overlap. */
static void test_no_overlap(void)
{
    enum { N = 20000 };
    static unsigned char *blk[N];
    static size_t len[N];
    sy_pool p = {0};
    unsigned x = 12345;
    int ok = 1;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            if (blk[i])
                continue;
            x = x * 1103515245u + 12345u;
            len[i] = 1 + (x >> 8) % (SY_POOL_MAX + 200);
            blk[i] = sy_pool_get(&p, len[i]);
            if (!blk[i]) {
                ok = 0;
                break;
            }
            fill(blk[i], len[i], (unsigned)i);
        }
        for (int i = 0; i < N; i++)
            ok &= holds(blk[i], len[i], (unsigned)i);
        for (int i = round % 2; i < N; i += 2) {
            sy_pool_put(&p, blk[i], len[i]);
            blk[i] = NULL;
        }
    }
    CHECK(ok);
    for (int i = 0; i < N; i++)
        sy_pool_put(&p, blk[i], len[i]);
    sy_pool_dispose(&p);
}

static void test_out_of_memory(void)
{
    sy_set_allocator(test_malloc, test_realloc, free);
    sy_pool p = {0};
    fail_malloc = 1;
    CHECK(sy_pool_get(&p, 64) == NULL); /* no slab yet */
    CHECK(sy_pool_get(&p, SY_POOL_MAX + 1) == NULL);
    CHECK(sy_pool_malloc(&p, 64) == NULL);
    CHECK(p.slabs == NULL);
    fail_malloc = 0;
    unsigned char *a = sy_pool_get(&p, 64);
    CHECK(a != NULL);
    fill(a, 64, 3);
    /* Use up the slab, then fail: a resize to another class answers NULL, the block stays. */
    size_t got = 0;
    while ((size_t)(p.bump_end - p.bump) >= 32) {
        sy_pool_get(&p, 32);
        got++;
    }
    CHECK(got > 0);
    fail_malloc = 1;
    CHECK(sy_pool_resize(&p, a, 64, 20) == NULL);
    CHECK(holds(a, 64, 3));
    /* A free block of the class is still handed out without a slab. */
    sy_pool_put(&p, a, 64);
    CHECK(sy_pool_get(&p, 64) == a);
    fail_malloc = 0;
    sy_pool_dispose(&p); /* the used-up blocks go with their slab */
    sy_set_allocator(NULL, NULL, NULL);
}

static void test_poison(void)
{
#ifdef T_ASAN
    sy_pool p = {0};
    char *a = sy_pool_get(&p, 100);
    CHECK(!__asan_address_is_poisoned(a + 99));
    sy_pool_put(&p, a, 100);
    CHECK(__asan_address_is_poisoned(a + 8)); /* past the free-list link */
    CHECK(__asan_address_is_poisoned(a + 99));
    char *b = sy_pool_get(&p, 100);
    CHECK(b == a && !__asan_address_is_poisoned(b + 99));
    CHECK(__asan_address_is_poisoned(p.bump)); /* the slab's unused end */
    sy_pool_put(&p, b, 100);
    sy_pool_dispose(&p);
#endif
}

int main(void)
{
    test_classes();
    test_resize();
    test_malloc_style();
    test_no_overlap();
    test_out_of_memory();
    test_poison();
    return t_summary("test_pool");
}
