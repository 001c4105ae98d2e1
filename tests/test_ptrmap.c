/* Pointer map: every key put is found with its value until deleted, deletions in any order
 * keep every other key reachable (the backward shift), growing and shrinking keep the keys,
 * and a failed growth changes nothing. Checked against a plain array as the model. */
#include "ptrmap.h"
#include "switchyard.h"
#include "test.h"

#include <stdint.h>

#define N 5000

static int fail_malloc;

static void *test_malloc(size_t n)
{
    return fail_malloc ? NULL : malloc(n);
}

static void *test_realloc(void *p, size_t n)
{
    return fail_malloc ? NULL : realloc(p, n);
}

/* Keys as Lua's would be: distinct, aligned addresses inside one block. */
static char space[N * 16];

static const void *key(size_t i)
{
    return space + i * 16;
}

static void *value(size_t i)
{
    return (void *)(uintptr_t)(i * 2 + 1);
}

static size_t lcg(size_t *s)
{
    *s = *s * 6364136223846793005u + 1442695040888963407u;
    return (size_t)(*s >> 33);
}

static void test_put_get_del(void)
{
    sy_ptrmap m = {0};
    CHECK(sy_ptrmap_get(&m, key(0)) == NULL);
    CHECK(sy_ptrmap_del(&m, key(0)) == NULL);
    static unsigned char in[N];
    size_t s = 42;
    int ok = 1;
    for (int round = 0; round < 20; round++) {
        for (size_t k = 0; k < N; k++) {
            size_t i = lcg(&s) % N;
            if (lcg(&s) % 3) {
                ok &= sy_ptrmap_put(&m, key(i), value(i)) == 0;
                in[i] = 1;
            } else {
                void *v = sy_ptrmap_del(&m, key(i));
                ok &= v == (in[i] ? value(i) : NULL);
                in[i] = 0;
            }
        }
        size_t n = 0;
        for (size_t i = 0; i < N; i++) {
            ok &= sy_ptrmap_get(&m, key(i)) == (in[i] ? value(i) : NULL);
            n += in[i];
        }
        ok &= m.n == n;
    }
    CHECK(ok);
    /* Delete everything: the map shrinks back and stays valid. */
    for (size_t i = 0; i < N; i++)
        if (in[i])
            ok &= sy_ptrmap_del(&m, key(i)) == value(i);
    CHECK(ok);
    CHECK(m.n == 0);
    CHECK(m.cap <= 32);
    CHECK(sy_ptrmap_put(&m, key(7), value(7)) == 0);
    CHECK(sy_ptrmap_put(&m, key(7), value(9)) == 0); /* replaces */
    CHECK(m.n == 1);
    CHECK(sy_ptrmap_get(&m, key(7)) == value(9));
    sy_ptrmap_dispose(&m);
    CHECK(m.n == 0 && m.cap == 0 && sy_ptrmap_get(&m, key(7)) == NULL);
}

static void test_out_of_memory(void)
{
    sy_ptrmap m = {0};
    size_t i = 0;
    int ok = 1;
    for (; i < 100; i++) /* a few growths */
        ok &= sy_ptrmap_put(&m, key(i), value(i)) == 0;
    /* Fill to where the next put must grow: with no memory it fails and changes nothing. */
    for (; (m.n + 1) * 4 <= m.cap * 3; i++)
        ok &= sy_ptrmap_put(&m, key(i), value(i)) == 0;
    CHECK(ok);
    size_t cap = m.cap, n = m.n;
    fail_malloc = 1;
    CHECK(sy_ptrmap_put(&m, key(i), value(i)) == SY_ENOMEM);
    CHECK(sy_ptrmap_reserve(&m) == SY_ENOMEM);
    fail_malloc = 0;
    CHECK(m.cap == cap && m.n == n && sy_ptrmap_get(&m, key(i)) == NULL);
    for (size_t j = 0; j < i; j++)
        CHECK(sy_ptrmap_get(&m, key(j)) == value(j));
    /* Reserved room makes the next put infallible. */
    CHECK(sy_ptrmap_reserve(&m) == 0);
    fail_malloc = 1;
    CHECK(sy_ptrmap_put(&m, key(i), value(i)) == 0);
    fail_malloc = 0;
    sy_ptrmap_dispose(&m);
}

int main(void)
{
    sy_set_allocator(test_malloc, test_realloc, free);
    test_put_get_del();
    test_out_of_memory();
    return t_summary("test_ptrmap");
}
