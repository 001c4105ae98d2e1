/* Unit tests for the permessage-deflate streams (pmd.c): round trips in every framing, the
 * decompressed-size limit (zip bombs), UTF-8 on inflated text, corrupt data, final blocks,
 * context takeover, zlib as the reference peer, and out-of-memory at every allocation. */
#include <zlib.h>

#include "pmd.h"
#include "test.h"

/* A JSON-like chat line: repetitive keys, varying text. */
static size_t chat(char *out, size_t cap, int i)
{
    int n = snprintf(out, cap,
                     "{\"type\":\"message\",\"room\":\"lobby\",\"user\":\"user%d\",\"seq\":%d,"
                     "\"text\":\"hello number %d, how is the weather over there today?\"}",
                     i % 17, i, i * 7919);
    return (size_t)n;
}

/* Compresses with d and inflates with f (fin on the last of `parts` frames). */
static int round_trip(sy_deflater *d, sy_inflater *f, int dreset, int ireset, const void *msg,
                      size_t n, size_t parts, int text, size_t *wire)
{
    size_t cap = sy_deflater_bound(d, n);
    uint8_t *z = malloc(cap);
    ssize_t zl = sy_deflater_run(d, msg, n, dreset, z, cap);
    if (zl < 0) {
        free(z);
        return -1;
    }
    *wire = (size_t)zl;
    sy_buf out;
    sy_buf_init(&out, 0);
    sy_utf8 u = {0};
    int rc = 0;
    size_t step = parts ? ((size_t)zl + parts - 1) / parts : (size_t)zl;
    if (step == 0)
        step = 1;
    size_t at = 0;
    do {
        size_t k = (size_t)zl - at < step ? (size_t)zl - at : step;
        int fin = at + k >= (size_t)zl;
        const char *why = NULL;
        rc = sy_inflater_run(f, z + at, k, fin, ireset, &out, n, text ? &u : NULL, &why);
        at += k;
        if (rc != 0)
            break;
    } while (at < (size_t)zl);
    if (rc == 0 && (sy_buf_len(&out) != n || (n && memcmp(sy_buf_data(&out), msg, n) != 0)))
        rc = -2;
    if (rc == 0 && text && !sy_utf8_complete(&u))
        rc = -3;
    sy_buf_dispose(&out);
    free(z);
    return rc;
}

static void test_round_trips(void)
{
    static const size_t sizes[] = {0, 1, 2, 100, 1000, 65535, 65536, 300000};
    static const int windows[] = {9, 11, 15};
    for (size_t w = 0; w < SY_COUNTOF(windows); w++) {
        for (int takeover = 0; takeover < 2; takeover++) {
            sy_deflater *d = sy_deflater_new(windows[w], takeover ? 4 : 8, -1);
            sy_inflater *f = sy_inflater_new(windows[w]);
            CHECK(d && f);
            for (size_t s = 0; s < SY_COUNTOF(sizes); s++) {
                size_t n = sizes[s];
                char *msg = malloc(n + 200);
                size_t len = 0;
                for (int i = 0; len < n; i++)
                    len += chat(msg + len, n + 200 - len, i);
                for (size_t parts = 1; parts <= 7; parts += 3) {
                    size_t wire = 0;
                    int rc = round_trip(d, f, !takeover, !takeover, msg, n, parts, 1, &wire);
                    CHECK_MSG(rc == 0, "window %d takeover %d size %zu parts %zu: %d", windows[w],
                              takeover, n, parts, rc);
                    if (n >= 1000)
                        CHECK_MSG(wire < n / 3, "%zu bytes compress to %zu", n, wire);
                }
                free(msg);
            }
            sy_deflater_free(d);
            sy_inflater_free(f);
        }
    }
    /* Binary noise does not compress, and still round-trips. */
    sy_deflater *d = sy_deflater_new(15, 8, -1);
    sy_inflater *f = sy_inflater_new(15);
    uint8_t noise[5000];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof noise; i++) {
        x = x * 1103515245 + 12345;
        noise[i] = (uint8_t)(x >> 16);
    }
    size_t wire = 0;
    CHECK(round_trip(d, f, 0, 0, noise, sizeof noise, 3, 0, &wire) == 0);
    CHECK(wire >= sizeof noise);
    sy_deflater_free(d);
    sy_inflater_free(f);
}

/* With context takeover, a message like the last one costs a few bytes; without, it does not. */
static void test_context_takeover(void)
{
    char msg[400];
    size_t n = chat(msg, sizeof msg, 1);
    for (int takeover = 0; takeover < 2; takeover++) {
        sy_deflater *d = sy_deflater_new(15, 8, -1);
        sy_inflater *f = sy_inflater_new(15);
        size_t first, second;
        CHECK(round_trip(d, f, !takeover, !takeover, msg, n, 1, 1, &first) == 0);
        CHECK(round_trip(d, f, !takeover, !takeover, msg, n, 1, 1, &second) == 0);
        if (takeover)
            CHECK_MSG(second < first / 4, "takeover: %zu then %zu", first, second);
        else
            CHECK(second == first);
        sy_deflater_free(d);
        sy_inflater_free(f);
    }
}

/* zlib's own raw deflate (the way other implementations produce messages). */
static size_t zlib_deflate(const void *p, size_t n, int bits, int flush, uint8_t *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, 9, Z_DEFLATED, -bits, 9, Z_DEFAULT_STRATEGY);
    z.next_in = (Bytef *)(uintptr_t)p;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    deflate(&z, flush);
    size_t len = cap - z.avail_out;
    deflateEnd(&z);
    return len;
}

static void test_zlib_peer(void)
{
    char msg[2000];
    size_t n = 0;
    for (int i = 0; n < 1500; i++)
        n += chat(msg + n, sizeof msg - n, i);
    uint8_t z[4000];
    /* A sync-flushed message whose tail is removed, as RFC 7692 7.2.1 says. */
    size_t zl = zlib_deflate(msg, n, 15, Z_SYNC_FLUSH, z, sizeof z);
    CHECK(zl > 4 && memcmp(z + zl - 4, "\x00\x00\xff\xff", 4) == 0);
    sy_inflater *f = sy_inflater_new(15);
    sy_buf out;
    sy_buf_init(&out, 0);
    CHECK(sy_inflater_run(f, z, zl - 4, 1, 0, &out, n, NULL, NULL) == 0);
    CHECK(sy_buf_len(&out) == n && memcmp(sy_buf_data(&out), msg, n) == 0);
    sy_buf_consume(&out, sy_buf_len(&out));
    /* A message that ends with a final block (BFINAL): the appended tail is ignored and the
     * next message starts a fresh stream. */
    zl = zlib_deflate(msg, n, 15, Z_FINISH, z, sizeof z);
    CHECK(sy_inflater_run(f, z, zl, 1, 0, &out, n, NULL, NULL) == 0);
    CHECK(sy_buf_len(&out) == n && memcmp(sy_buf_data(&out), msg, n) == 0);
    sy_buf_consume(&out, sy_buf_len(&out));
    zl = zlib_deflate(msg, 100, 15, Z_SYNC_FLUSH, z, sizeof z);
    CHECK(sy_inflater_run(f, z, zl - 4, 1, 0, &out, n, NULL, NULL) == 0);
    CHECK(sy_buf_len(&out) == 100 && memcmp(sy_buf_data(&out), msg, 100) == 0);
    sy_buf_consume(&out, sy_buf_len(&out));
    /* The empty message: one empty stored block, or nothing at all (the tail alone). */
    CHECK(sy_inflater_run(f, (const uint8_t *)"\x00", 1, 1, 0, &out, 10, NULL, NULL) == 0);
    CHECK(sy_inflater_run(f, NULL, 0, 1, 0, &out, 10, NULL, NULL) == 0);
    CHECK(sy_inflater_run(f, NULL, 0, 0, 0, &out, 10, NULL, NULL) == 0);
    CHECK(sy_inflater_run(f, NULL, 0, 1, 0, &out, 10, NULL, NULL) == 0);
    CHECK(sy_buf_len(&out) == 0);
    /* ... and the context goes on in step after them. */
    zl = zlib_deflate(msg, 100, 15, Z_SYNC_FLUSH, z, sizeof z);
    CHECK(sy_inflater_run(f, z, zl - 4, 1, 0, &out, n, NULL, NULL) == 0);
    CHECK(sy_buf_len(&out) == 100 && memcmp(sy_buf_data(&out), msg, 100) == 0);
    sy_buf_consume(&out, sy_buf_len(&out));
    sy_inflater_free(f);

    /* Ours, inflated by zlib after putting the tail back. */
    sy_deflater *d = sy_deflater_new(10, 3, 6);
    uint8_t mine[4000];
    ssize_t ml = sy_deflater_run(d, msg, n, 0, mine, sizeof mine - 4);
    CHECK(ml > 0 && (size_t)ml < n);
    memcpy(mine + ml, "\x00\x00\xff\xff", 4);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    inflateInit2(&zs, -10);
    char back[2000];
    zs.next_in = mine;
    zs.avail_in = (uInt)ml + 4;
    zs.next_out = (Bytef *)back;
    zs.avail_out = sizeof back;
    int zr = inflate(&zs, Z_SYNC_FLUSH);
    CHECK(zr == Z_OK && sizeof back - zs.avail_out == n && memcmp(back, msg, n) == 0);
    inflateEnd(&zs);
    sy_deflater_free(d);

    /* zlib has no raw 8-bit window: the caller must not compress then. */
    CHECK(sy_deflater_new(8, 8, -1) == NULL);
    CHECK(sy_deflater_new(16, 8, -1) == NULL);
    CHECK(sy_inflater_new(8) == NULL);
    /* A peer held to 8 bits is inflated with 9: a larger window reads any smaller one. */
    zl = zlib_deflate(msg, n, 9, Z_SYNC_FLUSH, z, sizeof z);
    f = sy_inflater_new(9);
    CHECK(sy_inflater_run(f, z, zl - 4, 1, 1, &out, n, NULL, NULL) == 0);
    CHECK(sy_buf_len(&out) == n);
    sy_inflater_free(f);
    sy_buf_dispose(&out);
}

/* A zip bomb: megabytes of zeros in a few kilobytes never take more than the limit. */
static void test_limit(void)
{
    size_t big = 8 * 1024 * 1024;
    char *zeros = calloc(1, big);
    sy_deflater *d = sy_deflater_new(15, 9, 9);
    size_t cap = sy_deflater_bound(d, big);
    uint8_t *z = malloc(cap);
    ssize_t zl = sy_deflater_run(d, zeros, big, 1, z, cap);
    CHECK(zl > 0 && zl < 20000);
    sy_inflater *f = sy_inflater_new(15);
    for (size_t limit = 0; limit <= 1024 * 1024; limit = limit ? limit * 16 : 1) {
        sy_buf out;
        sy_buf_init(&out, limit);
        const char *why = NULL;
        int rc = sy_inflater_run(f, z, (size_t)zl, 1, 1, &out, limit, NULL, &why);
        CHECK_MSG(rc == SY_ELIMIT, "limit %zu: %d", limit, rc);
        CHECK(why && strcmp(why, "message too big") == 0);
        CHECK(sy_buf_len(&out) <= limit && out.cap <= (limit ? limit : 1));
        sy_buf_dispose(&out);
    }
    /* Exactly at the limit is fine; one byte less is not. The stream recovers after a failure. */
    char msg[3000];
    memset(msg, 'a', sizeof msg);
    zl = sy_deflater_run(d, msg, sizeof msg, 1, z, cap);
    for (int delta = 0; delta < 2; delta++) {
        sy_buf out;
        sy_buf_init(&out, 0);
        int rc =
            sy_inflater_run(f, z, (size_t)zl, 1, 1, &out, sizeof msg - (size_t)delta, NULL, NULL);
        CHECK(rc == (delta ? SY_ELIMIT : 0));
        sy_buf_dispose(&out);
    }
    /* Over several frames, the total counts. */
    sy_buf out;
    sy_buf_init(&out, 0);
    int rc = sy_inflater_run(f, z, (size_t)zl / 2, 0, 1, &out, 2000, NULL, NULL);
    if (rc == 0)
        rc = sy_inflater_run(f, z + zl / 2, (size_t)zl - (size_t)zl / 2, 1, 1, &out, 2000, NULL,
                             NULL);
    CHECK(rc == SY_ELIMIT && sy_buf_len(&out) <= 2000);
    sy_buf_dispose(&out);
    sy_inflater_free(f);
    sy_deflater_free(d);
    free(z);
    free(zeros);
}

static void test_bad_input(void)
{
    sy_inflater *f = sy_inflater_new(15);
    sy_buf out;
    sy_buf_init(&out, 0);
    const char *why = NULL;
    /* BTYPE 11 is reserved (RFC 1951 3.2.3). */
    CHECK(sy_inflater_run(f, (const uint8_t *)"\xff\xff\xff", 3, 1, 0, &out, 100, NULL, &why) ==
          SY_EPROTO);
    CHECK(why && strcmp(why, "invalid compressed data") == 0);
    /* A distance back past anything sent. */
    uint8_t far[] = {0x63, 0x00, 0x02, 0x00, 0x00}; /* fixed block: literal, then a far copy */
    int rc = sy_inflater_run(f, far, sizeof far, 1, 0, &out, 100, NULL, &why);
    CHECK(rc == SY_EPROTO || rc == 0); /* zlib decides; it must not crash or overrun */
    sy_buf_consume(&out, sy_buf_len(&out));

    /* Invalid UTF-8 once inflated, found while inflating; valid text split anywhere passes. */
    sy_deflater *d = sy_deflater_new(15, 8, -1);
    uint8_t z[200];
    const char bad[] = "hello \xc3\x28 world";
    ssize_t zl = sy_deflater_run(d, bad, sizeof bad - 1, 1, z, sizeof z);
    sy_utf8 u = {0};
    why = NULL;
    CHECK(sy_inflater_run(f, z, (size_t)zl, 1, 1, &out, 100, &u, &why) == SY_EPROTO);
    CHECK(why && strcmp(why, "invalid UTF-8 in a text message") == 0);
    sy_buf_consume(&out, sy_buf_len(&out));
    const char good[] = "gr\xc3\xbc\xc3\x9f \xf0\x9f\x98\x80 ok";
    zl = sy_deflater_run(d, good, sizeof good - 1, 1, z, sizeof z);
    for (ssize_t cut = 0; cut <= zl; cut++) {
        sy_utf8 v = {0};
        sy_buf_consume(&out, sy_buf_len(&out));
        rc = sy_inflater_run(f, z, (size_t)cut, 0, 1, &out, 100, &v, NULL);
        if (rc == 0)
            rc = sy_inflater_run(f, z + cut, (size_t)(zl - cut), 1, 1, &out, 100, &v, NULL);
        CHECK(rc == 0 && sy_utf8_complete(&v) && sy_buf_len(&out) == sizeof good - 1);
    }
    /* A text cut inside a code point is incomplete at the end, for the caller to refuse. */
    zl = sy_deflater_run(d, good, 3, 1, z, sizeof z);
    sy_utf8 w = {0};
    CHECK(sy_inflater_run(f, z, (size_t)zl, 1, 1, &out, 100, &w, NULL) == 0);
    CHECK(!sy_utf8_complete(&w));
    sy_deflater_free(d);
    sy_inflater_free(f);
    sy_buf_dispose(&out);
}

/* ---- out of memory ------------------------------------------------------------------------- */

static int fail_at = -1, allocs;

static void *t_malloc(size_t n)
{
    if (allocs++ == fail_at)
        return NULL;
    return malloc(n);
}

static void *t_realloc(void *p, size_t n)
{
    if (allocs++ == fail_at)
        return NULL;
    return realloc(p, n);
}

static int oom_scenario(void)
{
    char msg[5000];
    size_t n = 0;
    for (int i = 0; n < 4000; i++)
        n += chat(msg + n, sizeof msg - n, i);
    sy_deflater *d = sy_deflater_new(12, 5, -1);
    if (!d)
        return SY_ENOMEM;
    sy_inflater *f = sy_inflater_new(12);
    if (!f) {
        sy_deflater_free(d);
        return SY_ENOMEM;
    }
    uint8_t z[6000];
    ssize_t zl = sy_deflater_run(d, msg, n, 0, z, sizeof z);
    int rc = zl < 0 ? (int)zl : 0;
    sy_buf out;
    sy_buf_init(&out, 0);
    if (rc == 0)
        rc = sy_inflater_run(f, z, (size_t)zl, 1, 0, &out, n, NULL, NULL);
    if (rc == 0 && (sy_buf_len(&out) != n || memcmp(sy_buf_data(&out), msg, n) != 0))
        rc = -99;
    sy_buf_dispose(&out);
    sy_deflater_free(d);
    sy_inflater_free(f);
    return rc;
}

static void test_oom(void)
{
    sy_set_allocator(t_malloc, t_realloc, free);
    fail_at = -1;
    allocs = 0;
    CHECK(oom_scenario() == 0);
    int total = allocs;
    CHECK(total >= 4);
    for (int i = 0; i < total; i++) {
        fail_at = i;
        allocs = 0;
        int rc = oom_scenario();
        CHECK_MSG(rc == SY_ENOMEM, "allocation %d failing: %d", i, rc);
    }
    fail_at = -1;
    sy_set_allocator(malloc, realloc, free);
}

int main(void)
{
    test_round_trips();
    test_context_takeover();
    test_zlib_peer();
    test_limit();
    test_bad_input();
    test_oom();
    return t_summary("test_pmd");
}
