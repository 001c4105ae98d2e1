/* Unit tests for ws: frame headers, masking, UTF-8 validation, close codes and close payloads. */
#include "test.h"
#include "ws.h"

#define B(lit) (const uint8_t *)(lit), sizeof(lit) - 1

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

/* xorshift64*: a fixed sequence, so every failure reproduces. */
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1du;
}

static void hex(char *out, size_t cap, const uint8_t *p, size_t n)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && o + 4 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%02x ", p[i]);
}

/* ---- frame header decoding ---------------------------------------------------------------- */

typedef struct hdr_case {
    const char *name;
    const uint8_t *in;
    size_t len;
    ssize_t rc; /* header_len, or SY_EPROTO */
    int fin, rsv, opcode, masked;
    uint64_t plen;
    uint8_t mask[4];
} hdr_case;

#define HDR(n, in, rc, fin, rsv, op, m, plen, ...)                                                 \
    {                                                                                              \
        (n), B(in), (rc), (fin), (rsv), (op), (m), (plen), __VA_ARGS__                             \
    }
#define NOMASK                                                                                     \
    {                                                                                              \
        0, 0, 0, 0                                                                                 \
    }
#define Z6 "\x00\x00\x00\x00\x00\x00"

static const hdr_case hdr_cases[] = {
    /* 7-bit lengths */
    HDR("empty text", "\x81\x00", 2, 1, 0, 1, 0, 0, NOMASK),
    HDR("7-bit 1", "\x82\x01", 2, 1, 0, 2, 0, 1, NOMASK),
    HDR("7-bit 125", "\x82\x7d", 2, 1, 0, 2, 0, 125, NOMASK),
    HDR("7-bit masked (RFC 6455 5.7 Hello)", "\x81\x85\x37\xfa\x21\x3d", 6, 1, 0, 1, 1, 5,
        {0x37, 0xfa, 0x21, 0x3d}),
    HDR("7-bit masked empty close", "\x88\x80\x01\x02\x03\x04", 6, 1, 0, 8, 1, 0, {1, 2, 3, 4}),
    HDR("first fragment", "\x01\x03", 2, 0, 0, 1, 0, 3, NOMASK),
    HDR("continuation", "\x00\x03", 2, 0, 0, 0, 0, 3, NOMASK),
    HDR("final continuation", "\x80\x03", 2, 1, 0, 0, 0, 3, NOMASK),
    HDR("ping", "\x89\x00", 2, 1, 0, 9, 0, 0, NOMASK),
    HDR("pong masked", "\x8a\x84\xff\xff\xff\xff", 6, 1, 0, 10, 1, 4, {0xff, 0xff, 0xff, 0xff}),
    HDR("rsv1", "\xc1\x80\x00\x00\x00\x00", 6, 1, 4, 1, 1, 0, {0, 0, 0, 0}),
    HDR("rsv2", "\xa1\x00", 2, 1, 2, 1, 0, 0, NOMASK),
    HDR("rsv3", "\x91\x00", 2, 1, 1, 1, 0, 0, NOMASK),
    HDR("every bit of byte 0", "\xff\x00", 2, 1, 7, 15, 0, 0, NOMASK),
    HDR("no bit of byte 0", "\x00\x00", 2, 0, 0, 0, 0, 0, NOMASK),
    HDR("reserved opcode decodes", "\x83\x00", 2, 1, 0, 3, 0, 0, NOMASK),
    /* 16-bit lengths */
    HDR("16-bit 126", "\x82\x7e\x00\x7e", 4, 1, 0, 2, 0, 126, NOMASK),
    HDR("16-bit 256 (RFC 6455 5.7)", "\x82\x7e\x01\x00", 4, 1, 0, 2, 0, 256, NOMASK),
    HDR("16-bit 65535", "\x82\x7e\xff\xff", 4, 1, 0, 2, 0, 65535, NOMASK),
    HDR("16-bit masked", "\x82\xfe\x12\x34\xa1\xb2\xc3\xd4", 8, 1, 0, 2, 1, 0x1234,
        {0xa1, 0xb2, 0xc3, 0xd4}),
    HDR("16-bit non-minimal 0", "\x82\x7e\x00\x00", 4, 1, 0, 2, 0, 0, NOMASK),
    HDR("16-bit non-minimal 125", "\x82\x7e\x00\x7d", 4, 1, 0, 2, 0, 125, NOMASK),
    /* 64-bit lengths */
    HDR("64-bit 65536", "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10, 1, 0, 2, 0, 65536, NOMASK),
    HDR("64-bit non-minimal 256", "\x82\x7f" Z6 "\x01\x00", 10, 1, 0, 2, 0, 256, NOMASK),
    HDR("64-bit 2^32", "\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x00", 10, 1, 0, 2, 0,
        (uint64_t)1 << 32, NOMASK),
    HDR("64-bit every byte", "\x82\x7f\x01\x23\x45\x67\x89\xab\xcd\xef", 10, 1, 0, 2, 0,
        0x0123456789abcdefu, NOMASK),
    HDR("64-bit 2^63-1 masked", "\x02\xff\x7f\xff\xff\xff\xff\xff\xff\xff\xaa\xbb\xcc\xdd", 14, 0,
        0, 2, 1, 0x7fffffffffffffffu, {0xaa, 0xbb, 0xcc, 0xdd}),
    HDR("64-bit masked", "\x81\xff\x00\x00\x00\x00\x00\x01\x00\x00\x01\x02\x03\x04", 14, 1, 0, 1, 1,
        65536, {1, 2, 3, 4}),
    HDR("64-bit non-minimal 5", "\x82\x7f" Z6 "\x00\x05", 10, 1, 0, 2, 0, 5, NOMASK),
    HDR("64-bit non-minimal 0 masked", "\x82\xff" Z6 "\x00\x00\x09\x08\x07\x06", 14, 1, 0, 2, 1, 0,
        {9, 8, 7, 6}),
    /* RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0 */
    HDR("64-bit MSB set", "\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", SY_EPROTO, 0, 0, 0, 0, 0,
        NOMASK),
    HDR("64-bit all ones", "\x82\x7f\xff\xff\xff\xff\xff\xff\xff\xff", SY_EPROTO, 0, 0, 0, 0, 0,
        NOMASK),
    HDR("64-bit MSB set masked", "\x82\xff\x80" Z6 "\x01\x01\x02\x03\x04", SY_EPROTO, 0, 0, 0, 0, 0,
        NOMASK),
};

static const sy_ws_header poison = {.fin = 77,
                                    .rsv = 77,
                                    .opcode = 77,
                                    .masked = 77,
                                    .mask = {7, 7, 7, 7},
                                    .len = 77,
                                    .header_len = 77};

/* Field by field: struct copies need not copy padding. */
static int untouched(const sy_ws_header *h)
{
    return h->fin == poison.fin && h->rsv == poison.rsv && h->opcode == poison.opcode &&
           h->masked == poison.masked && memcmp(h->mask, poison.mask, 4) == 0 &&
           h->len == poison.len && h->header_len == poison.header_len;
}

static void check_decoded(const hdr_case *c, const sy_ws_header *h, const char *what)
{
    CHECK_MSG(h->fin == c->fin && h->rsv == c->rsv && h->opcode == c->opcode &&
                  h->masked == c->masked && h->len == c->plen && h->header_len == (size_t)c->rc &&
                  memcmp(h->mask, c->mask, 4) == 0,
              "%s (%s): fin %d rsv %d op %d masked %d len %llu hl %zu", c->name, what, h->fin,
              h->rsv, h->opcode, h->masked, (unsigned long long)h->len, h->header_len);
}

static void test_decode_cases(void)
{
    for (size_t k = 0; k < SY_COUNTOF(hdr_cases); k++) {
        const hdr_case *c = &hdr_cases[k];
        void *map;
        size_t maplen;

        /* The whole header, right before a guard page. */
        uint8_t *p = (uint8_t *)t_guard_copy(c->in, c->len, &map, &maplen);
        sy_ws_header h = poison;
        const char *why = NULL;
        ssize_t r = sy_ws_decode_header(p, c->len, &h, &why);
        CHECK_MSG(r == c->rc, "%s: rc %zd, want %zd", c->name, r, c->rc);
        if (c->rc > 0)
            check_decoded(c, &h, "whole");
        else
            CHECK_MSG(why != NULL && why[0] && untouched(&h), "%s: why or *h", c->name);
        r = sy_ws_decode_header(p, c->len, &h, NULL);
        CHECK_MSG(r == c->rc, "%s: rc %zd with why NULL", c->name, r);
        t_guard_free(map, maplen);

        /* Followed by payload bytes: the same answer. */
        uint8_t more[32];
        memcpy(more, c->in, c->len);
        memset(more + c->len, 0xa5, sizeof more - c->len);
        h = poison;
        r = sy_ws_decode_header(more, sizeof more, &h, &why);
        CHECK_MSG(r == c->rc, "%s: rc %zd with payload after it", c->name, r);
        if (c->rc > 0)
            check_decoded(c, &h, "payload after it");

        /* Every strict prefix: SY_EAGAIN and *h untouched; a bad 64-bit length fails as soon as
         * its first byte is there. */
        for (size_t n = 0; n < c->len; n++) {
            p = (uint8_t *)t_guard_copy(c->in, n, &map, &maplen);
            h = poison;
            r = sy_ws_decode_header(n ? p : NULL, n, &h, &why);
            ssize_t want = c->rc == SY_EPROTO && n >= 3 ? SY_EPROTO : SY_EAGAIN;
            CHECK_MSG(r == want && untouched(&h), "%s: prefix %zu: rc %zd, want %zd", c->name, n, r,
                      want);
            t_guard_free(map, maplen);
        }
    }
}

/* ---- frame header encoding ---------------------------------------------------------------- */

static void test_encode(void)
{
    static const struct {
        uint64_t len;
        size_t hl;
        const char *bytes; /* expected header for fin=1, rsv=0, opcode=2 */
    } forms[] = {
        {0, 2, "\x82\x00"},
        {125, 2, "\x82\x7d"},
        {126, 4, "\x82\x7e\x00\x7e"},
        {65535, 4, "\x82\x7e\xff\xff"},
        {65536, 10, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"},
        {0x0123456789abcdefu, 10, "\x82\x7f\x01\x23\x45\x67\x89\xab\xcd\xef"},
        {0x7fffffffffffffffu, 10, "\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff"},
    };
    for (size_t k = 0; k < SY_COUNTOF(forms); k++) {
        uint8_t out[SY_WS_MAX_HEADER];
        size_t n = sy_ws_encode_header(out, 1, 0, SY_WS_BINARY, forms[k].len);
        CHECK_MSG(n == forms[k].hl && memcmp(out, forms[k].bytes, n) == 0, "encode %llu: %zu bytes",
                  (unsigned long long)forms[k].len, n);
    }
    uint8_t out[SY_WS_MAX_HEADER];
    CHECK(sy_ws_encode_header(out, 0, 4, SY_WS_TEXT, 3) == 2 && out[0] == 0x41 && out[1] == 3);
    CHECK(sy_ws_encode_header(out, 1, 7, 15, 0) == 2 && out[0] == 0xff && out[1] == 0);
}

/* encode -> decode gives the fields back, as does the masked form built from it, and every
 * strict prefix needs more. */
static void test_round_trip(void)
{
    static const uint64_t lens[] = {0,
                                    1,
                                    124,
                                    125,
                                    126,
                                    127,
                                    65535,
                                    65536,
                                    0xffffffffu,
                                    (uint64_t)1 << 32,
                                    0x7fffffffffffffffu};
    int bad = 0, checked = 0;
    for (size_t k = 0; k < SY_COUNTOF(lens); k++)
        for (int fin = 0; fin <= 1; fin++)
            for (int rsv = 0; rsv < 8; rsv++)
                for (int op = 0; op < 16; op++)
                    for (int masked = 0; masked <= 1; masked++) {
                        uint8_t buf[SY_WS_MAX_HEADER + 4];
                        size_t n = sy_ws_encode_header(buf, fin, rsv, op, lens[k]);
                        size_t want = lens[k] < 126 ? 2 : lens[k] < 65536 ? 4 : 10;
                        uint8_t mask[4] = {(uint8_t)k, (uint8_t)rsv, (uint8_t)op, 0x5a};
                        if (masked) {
                            buf[1] |= 0x80;
                            memcpy(buf + n, mask, 4);
                            n += 4;
                            want += 4;
                        }
                        sy_ws_header h;
                        checked++;
                        if (n != want || sy_ws_decode_header(buf, n, &h, NULL) != (ssize_t)n ||
                            h.fin != fin || h.rsv != rsv || h.opcode != op || h.masked != masked ||
                            h.len != lens[k] || h.header_len != n ||
                            (masked && memcmp(h.mask, mask, 4) != 0)) {
                            if (!bad++)
                                fprintf(stderr, "round trip: len %llu fin %d rsv %d op %d\n",
                                        (unsigned long long)lens[k], fin, rsv, op);
                            continue;
                        }
                        for (size_t m = 0; m < n; m++)
                            if (sy_ws_decode_header(buf, m, &h, NULL) != SY_EAGAIN && !bad++)
                                fprintf(stderr, "round trip: prefix %zu of %zu\n", m, n);
                    }
    CHECK_MSG(bad == 0 && checked == 11 * 2 * 8 * 16 * 2, "%d of %d round trips failed", bad,
              checked);
}

/* ---- header checks ------------------------------------------------------------------------ */

typedef struct check_case {
    const char *name;
    int fin, rsv, opcode, masked;
    uint64_t len;
    int allowed_rsv;
    int rc;
    const char *why;
} check_case;

static const check_case check_cases[] = {
    {"masked text", 1, 0, SY_WS_TEXT, 1, 5, 0, 0, NULL},
    {"masked binary, huge", 1, 0, SY_WS_BINARY, 1, 0x7fffffffffffffffu, 0, 0, NULL},
    {"first fragment", 0, 0, SY_WS_TEXT, 1, 10, 0, 0, NULL},
    {"middle continuation", 0, 0, SY_WS_CONT, 1, 10, 0, 0, NULL},
    {"final continuation", 1, 0, SY_WS_CONT, 1, 10, 0, 0, NULL},
    {"close 125", 1, 0, SY_WS_CLOSE, 1, 125, 0, 0, NULL},
    {"ping 0", 1, 0, SY_WS_PING, 1, 0, 0, 0, NULL},
    {"pong 125", 1, 0, SY_WS_PONG, 1, 125, 0, 0, NULL},
    {"unmasked text", 1, 0, SY_WS_TEXT, 0, 5, 0, SY_EPROTO, "unmasked client frame"},
    {"unmasked close", 1, 0, SY_WS_CLOSE, 0, 2, 0, SY_EPROTO, "unmasked client frame"},
    {"rsv1 not negotiated", 1, 4, SY_WS_TEXT, 1, 5, 0, SY_EPROTO, "reserved bits set"},
    {"rsv1 negotiated", 1, 4, SY_WS_TEXT, 1, 5, 4, 0, NULL},
    {"rsv2 with rsv1 allowed", 1, 2, SY_WS_TEXT, 1, 5, 4, SY_EPROTO, "reserved bits set"},
    {"rsv3 with rsv1 allowed", 1, 1, SY_WS_BINARY, 1, 5, 4, SY_EPROTO, "reserved bits set"},
    {"rsv1+rsv2 with rsv1 allowed", 1, 6, SY_WS_TEXT, 1, 5, 4, SY_EPROTO, "reserved bits set"},
    {"all rsv, all allowed", 1, 7, SY_WS_TEXT, 1, 5, 7, 0, NULL},
    {"rsv2 only allowed", 1, 2, SY_WS_TEXT, 1, 5, 2, 0, NULL},
    {"close not final", 0, 0, SY_WS_CLOSE, 1, 2, 0, SY_EPROTO, "fragmented control frame"},
    {"ping not final", 0, 0, SY_WS_PING, 1, 0, 0, SY_EPROTO, "fragmented control frame"},
    {"pong not final", 0, 0, SY_WS_PONG, 1, 0, 0, SY_EPROTO, "fragmented control frame"},
    {"close 126", 1, 0, SY_WS_CLOSE, 1, 126, 0, SY_EPROTO, "control frame longer than 125 bytes"},
    {"ping 126", 1, 0, SY_WS_PING, 1, 126, 0, SY_EPROTO, "control frame longer than 125 bytes"},
    {"pong 65536", 1, 0, SY_WS_PONG, 1, 65536, 0, SY_EPROTO, "control frame longer than 125 bytes"},
};

static void test_check_header(void)
{
    for (size_t k = 0; k < SY_COUNTOF(check_cases); k++) {
        const check_case *c = &check_cases[k];
        sy_ws_header h = {
            .fin = c->fin, .rsv = c->rsv, .opcode = c->opcode, .masked = c->masked, .len = c->len};
        const char *why = NULL;
        int r = sy_ws_check_header(&h, c->allowed_rsv, &why);
        CHECK_MSG(r == c->rc && (c->why == NULL || (why && strcmp(why, c->why) == 0)),
                  "%s: rc %d why %s", c->name, r, why ? why : "(null)");
        CHECK_MSG(sy_ws_check_header(&h, c->allowed_rsv, NULL) == c->rc, "%s: why NULL", c->name);
    }
    /* RFC 6455 5.2: opcodes 3-7 and 0xB-0xF are reserved, whatever else the frame says. */
    for (int op = 0; op < 16; op++) {
        int known = op <= 2 || (op >= 8 && op <= 10);
        for (int fin = 0; fin <= 1; fin++) {
            sy_ws_header h = {.fin = fin, .opcode = op, .masked = 1, .len = 1};
            const char *why = NULL;
            int r = sy_ws_check_header(&h, 0, &why);
            int want = known && (fin || op < 8) ? 0 : SY_EPROTO;
            CHECK_MSG(r == want, "opcode %d fin %d: rc %d", op, fin, r);
            if (!known)
                CHECK_MSG(why && strcmp(why, "reserved opcode") == 0, "opcode %d: why %s", op,
                          why ? why : "(null)");
        }
    }
}

/* ---- masking ------------------------------------------------------------------------------ */

static void ref_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset)
{
    for (size_t i = 0; i < n; i++)
        p[i] ^= mask[(offset + i) % 4];
}

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

/* Every length 0..100 at every offset 0..7 (and far ones) from every alignment 0..7, against
 * the byte-by-byte reference; the bytes around the span stay as they were. */
static void test_unmask_equivalence(void)
{
    static const uint64_t far[] = {(uint64_t)1 << 32, ((uint64_t)1 << 32) + 3, UINT64_MAX - 2,
                                   UINT64_MAX};
    _Alignas(64) uint8_t a[160], b[160];
    int bad = 0, runs = 0;
    for (size_t n = 0; n <= 100; n++)
        for (size_t mis = 0; mis < 8; mis++)
            for (size_t o = 0; o < 8 + SY_COUNTOF(far); o++) {
                uint64_t off = o < 8 ? o : far[o - 8];
                uint8_t mask[4];
                fill_random(mask, 4);
                fill_random(a, sizeof a);
                memcpy(b, a, sizeof a);
                sy_ws_unmask(a + 16 + mis, n, mask, off);
                ref_unmask(b + 16 + mis, n, mask, off);
                runs++;
                if (memcmp(a, b, sizeof a) != 0 && !bad++)
                    fprintf(stderr, "unmask: n %zu misalign %zu offset %llu\n", n, mis,
                            (unsigned long long)off);
                /* Masking is its own inverse. */
                sy_ws_unmask(a + 16 + mis, n, mask, off);
                ref_unmask(b + 16 + mis, n, mask, off);
                if (memcmp(a, b, sizeof a) != 0 && !bad++)
                    fprintf(stderr, "unmask twice: n %zu misalign %zu\n", n, mis);
            }
    CHECK_MSG(bad == 0, "%d of %d unmask runs differ from the reference", bad, runs);
    /* n == 0 with a NULL pointer is a no-op. */
    sy_ws_unmask(NULL, 0, (const uint8_t[4]){1, 2, 3, 4}, 5);
    CHECK(1);
}

/* A payload unmasked in three pieces at every pair of split points equals the whole. */
static void test_unmask_pieces(void)
{
    static const size_t lens[] = {0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 130};
    int bad = 0, runs = 0;
    for (size_t k = 0; k < SY_COUNTOF(lens); k++) {
        size_t n = lens[k];
        uint8_t src[130], whole[130], parts[130];
        fill_random(src, n);
        for (uint64_t base = 0; base < 5; base++) {
            uint8_t mask[4];
            fill_random(mask, 4);
            memcpy(whole, src, n);
            sy_ws_unmask(whole, n, mask, base);
            for (size_t x = 0; x <= n; x++)
                for (size_t y = x; y <= n; y++) {
                    memcpy(parts, src, n);
                    sy_ws_unmask(parts, x, mask, base);
                    sy_ws_unmask(parts + x, y - x, mask, base + x);
                    sy_ws_unmask(parts + y, n - y, mask, base + y);
                    runs++;
                    if (memcmp(parts, whole, n) != 0 && !bad++)
                        fprintf(stderr, "unmask pieces: n %zu split %zu/%zu base %llu\n", n, x, y,
                                (unsigned long long)base);
                }
        }
    }
    /* Long payloads cut at random places, as reads from a socket would. */
    static uint8_t src[70000], whole[70000], parts[70000];
    for (int t = 0; t < 50; t++) {
        size_t n = (size_t)(rnd() % sizeof src);
        uint8_t mask[4];
        fill_random(mask, 4);
        fill_random(src, n);
        memcpy(whole, src, n);
        memcpy(parts, src, n);
        ref_unmask(whole, n, mask, 0);
        for (size_t at = 0; at < n;) {
            size_t step = (size_t)(rnd() % 3000) + 1;
            if (step > n - at)
                step = n - at;
            sy_ws_unmask(parts + at, step, mask, at);
            at += step;
        }
        runs++;
        if (memcmp(parts, whole, n) != 0 && !bad++)
            fprintf(stderr, "unmask random pieces: n %zu\n", n);
    }
    CHECK_MSG(bad == 0, "%d of %d piecewise unmask runs differ", bad, runs);
}

/* Right before a guard page, so that touching a byte past the span crashes. */
static void test_unmask_guard(void)
{
    int bad = 0;
    for (size_t n = 0; n <= 100; n++)
        for (uint64_t off = 0; off < 4; off++) {
            uint8_t src[100], want[100];
            uint8_t mask[4] = {0x11, 0x22, 0x44, 0x88};
            fill_random(src, n);
            memcpy(want, src, n);
            ref_unmask(want, n, mask, off);
            void *map;
            size_t maplen;
            uint8_t *p = (uint8_t *)t_guard_copy(src, n, &map, &maplen);
            sy_ws_unmask(p, n, mask, off);
            if (memcmp(p, want, n) != 0 && !bad++)
                fprintf(stderr, "unmask guard: n %zu offset %llu\n", n, (unsigned long long)off);
            t_guard_free(map, maplen);
        }
    CHECK_MSG(bad == 0, "%d guard-page unmask runs differ", bad);
}

/* ---- UTF-8 reference ---------------------------------------------------------------------- */

/* The reference knows UTF-8 only as "the encodings of the Unicode scalar values, concatenated"
 * (RFC 3629 3): it encodes every scalar value and remembers which byte strings are encodings
 * or proper prefixes of one. A string is a valid prefix when it is complete encodings followed
 * by a proper prefix of one. */
static size_t ref_encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

static int is_scalar(uint32_t cp)
{
    return cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff);
}

/* Bit tables over byte strings of 1..3 bytes: is it a proper prefix of an encoding, is it a
 * whole encoding. Four-byte encodings are recognised by decoding and re-encoding. */
static uint8_t *ref_tab; /* bit (1 << k) of entry key: see ref_key */

static size_t ref_key(const uint8_t *p, size_t k)
{
    size_t key = 0;
    for (size_t i = 0; i < k; i++)
        key = key << 8 | p[i];
    return key;
}

enum { REF_PREFIX = 1, REF_WHOLE = 2 };

static uint8_t *ref_bits(size_t k)
{
    /* 1-, 2- and 3-byte strings get their own areas in one table. */
    return ref_tab + (k == 1 ? 0 : k == 2 ? 256 : 256 + 65536);
}

static void ref_init(void)
{
    ref_tab = calloc(256 + 65536 + ((size_t)1 << 24), 1);
    if (!ref_tab) {
        perror("calloc");
        exit(2);
    }
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        if (!is_scalar(cp))
            continue;
        uint8_t e[4];
        size_t len = ref_encode(cp, e);
        for (size_t k = 1; k < len; k++)
            ref_bits(k)[ref_key(e, k)] |= REF_PREFIX;
        if (len < 4)
            ref_bits(len)[ref_key(e, len)] |= REF_WHOLE;
    }
}

static int ref_whole4(const uint8_t *p)
{
    if ((p[0] & 0xf8) != 0xf0)
        return 0;
    uint32_t cp = (uint32_t)(p[0] & 7) << 18 | (uint32_t)(p[1] & 0x3f) << 12 |
                  (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
    uint8_t e[4];
    return is_scalar(cp) && ref_encode(cp, e) == 4 && memcmp(e, p, 4) == 0;
}

/* Scans p[0..n): returns n if it is a valid prefix, else the index of the first byte that
 * makes it invalid; *boundary tells whether the valid prefix ends between code points. */
static size_t ref_scan(const uint8_t *p, size_t n, int *boundary)
{
    size_t i = 0;
    *boundary = 1;
    while (i < n) {
        /* Take the longest piece starting at i that is an encoding or a prefix of one. */
        size_t k = 1;
        int whole = 0;
        for (; k <= 4 && i + k <= n; k++) {
            if (k == 4) {
                whole = ref_whole4(p + i);
                break;
            }
            uint8_t bits = ref_bits(k)[ref_key(p + i, k)];
            if (bits & REF_WHOLE) {
                whole = 1;
                break;
            }
            if (!(bits & REF_PREFIX))
                break;
        }
        if (whole) {
            i += k;
            continue;
        }
        if (i + k > n) { /* ran out while still a prefix */
            *boundary = 0;
            return n;
        }
        *boundary = 0;
        return i + k - 1;
    }
    return n;
}

static int ref_valid(const uint8_t *p, size_t n)
{
    int boundary;
    return ref_scan(p, n, &boundary) == n && boundary;
}

/* ---- UTF-8 -------------------------------------------------------------------------------- */

typedef struct utf8_case {
    const char *name;
    const uint8_t *in;
    size_t len;
    long fail_at; /* index of the first impossible byte, or -1 */
    int complete; /* when fail_at < 0: ends on a code point boundary */
} utf8_case;

#define VALID(n, s)                                                                                \
    {                                                                                              \
        (n), B(s), -1, 1                                                                           \
    }
#define TRUNC(n, s)                                                                                \
    {                                                                                              \
        (n), B(s), -1, 0                                                                           \
    }
#define BAD(n, s, at)                                                                              \
    {                                                                                              \
        (n), B(s), (at), 0                                                                         \
    }

static const utf8_case utf8_cases[] = {
    VALID("empty", ""),
    VALID("ASCII", "Hello, world"),
    VALID("every ASCII byte",
          "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15"
          "\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKL"
          "MNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\x7f"),
    {"NUL", (const uint8_t *)"a\0b", 3, -1, 1},
    VALID("2-byte U+0080", "\xc2\x80"),
    VALID("2-byte U+07FF", "\xdf\xbf"),
    VALID("3-byte U+0800", "\xe0\xa0\x80"),
    VALID("3-byte U+D7FF", "\xed\x9f\xbf"),
    VALID("3-byte U+E000", "\xee\x80\x80"),
    VALID("3-byte U+FFFD", "\xef\xbf\xbd"),
    VALID("3-byte U+FFFF (noncharacter)", "\xef\xbf\xbf"),
    VALID("4-byte U+10000", "\xf0\x90\x80\x80"),
    VALID("4-byte U+10FFFF", "\xf4\x8f\xbf\xbf"),
    VALID("4-byte U+1F600", "\xf0\x9f\x98\x80"),
    VALID("kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
    VALID("Hello-mu", "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"),
    VALID("mixed lengths", "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x8e\x89z"),
    VALID("ASCII run then emoji",
          "0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEF\xf0\x9f\x98\x80"),
    VALID("CJK", "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c\xe4\xbd\xa0\xe5\xa5\xbd"),
    TRUNC("truncated 2-byte", "\xc3"),
    TRUNC("truncated 3-byte after 1", "\xe2"),
    TRUNC("truncated 3-byte after 2", "\xe2\x82"),
    TRUNC("truncated 4-byte after 1", "\xf0"),
    TRUNC("truncated 4-byte after 2", "\xf0\x9f"),
    TRUNC("truncated 4-byte after 3", "\xf0\x9f\x98"),
    TRUNC("truncated U+10FFFF", "\xf4\x8f\xbf"),
    TRUNC("text then truncated", "abc\xce\xba\xce"),
    TRUNC("long ASCII then truncated", "0123456789abcdefghijklmnopqrstuvwxyz\xe1\xbd"),
    BAD("overlong C0 80", "\xc0\x80", 0),
    BAD("overlong C1 BF", "\xc1\xbf", 0),
    BAD("overlong E0 80 80", "\xe0\x80\x80", 1),
    BAD("overlong E0 9F BF", "\xe0\x9f\xbf", 1),
    BAD("overlong F0 80 80 80", "\xf0\x80\x80\x80", 1),
    BAD("overlong F0 8F BF BF", "\xf0\x8f\xbf\xbf", 1),
    BAD("surrogate ED A0 80", "\xed\xa0\x80", 1),
    BAD("surrogate ED BF BF", "\xed\xbf\xbf", 1),
    BAD("surrogate pair", "\xed\xa0\x80\xed\xb0\x80", 1),
    BAD("above U+10FFFF F4 90 80 80", "\xf4\x90\x80\x80", 1),
    BAD("F5", "\xf5\x80\x80\x80", 0),
    BAD("F8 5-byte form", "\xf8\x88\x80\x80\x80", 0),
    BAD("FC 6-byte form", "\xfc\x84\x80\x80\x80\x80", 0),
    BAD("FE", "\xfe", 0),
    BAD("FF", "\xff", 0),
    BAD("stray continuation 80", "\x80", 0),
    BAD("stray continuation BF after ASCII", "ab\xbf", 2),
    BAD("continuation after complete", "\xc3\xa9\x80", 2),
    BAD("missing continuation",
        "\xc3"
        "a",
        1),
    BAD("lead after lead", "\xe2\xe2\x82\xac", 1),
    BAD("3-byte cut by ASCII",
        "\xe2\x82"
        "a",
        2),
    BAD("4-byte cut by lead", "\xf0\x9f\x98\xc3\xa9", 3),
    BAD("kosme then surrogate (Autobahn 6.3)",
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", 12),
    BAD("long ASCII then bad",
        "0123456789abcdefghijklmnopqrstuvwxyz0123456789\xff"
        "abc",
        46),
    BAD("bad after 16 good", "\xce\xba\xce\xba\xce\xba\xce\xba\xce\xba\xce\xba\xce\xba\xce\xba\xc0",
        16),
};

/* Feeds c byte by byte: every call before fail_at returns 0 with sy_utf8_complete as the
 * reference says, the one at fail_at fails, and so does every later one. */
static void check_bytewise(const char *name, const uint8_t *in, size_t len, long fail_at)
{
    sy_utf8 u = {0};
    for (size_t i = 0; i < len; i++) {
        int r = sy_utf8_feed(&u, in + i, 1);
        int want = fail_at >= 0 && (long)i >= fail_at ? SY_EPROTO : 0;
        if (r != want) {
            CHECK_MSG(r == want, "%s: byte %zu: rc %d, want %d", name, i, r, want);
            return;
        }
        if (r == 0) {
            int boundary;
            ref_scan(in, i + 1, &boundary);
            if (sy_utf8_complete(&u) != boundary) {
                CHECK_MSG(0, "%s: byte %zu: complete %d", name, i, sy_utf8_complete(&u));
                return;
            }
        } else if (sy_utf8_complete(&u)) {
            CHECK_MSG(0, "%s: complete after failure", name);
            return;
        }
    }
    CHECK(1);
}

static void test_utf8_cases(void)
{
    for (size_t k = 0; k < SY_COUNTOF(utf8_cases); k++) {
        const utf8_case *c = &utf8_cases[k];
        int boundary;
        size_t ref_at = ref_scan(c->in, c->len, &boundary);

        /* The table agrees with the reference. */
        CHECK_MSG(c->fail_at < 0 ? ref_at == c->len && boundary == c->complete
                                 : (long)ref_at == c->fail_at,
                  "%s: reference says %zu/%d", c->name, ref_at, boundary);

        void *map;
        size_t maplen;
        uint8_t *p = (uint8_t *)t_guard_copy(c->in, c->len, &map, &maplen);
        sy_utf8 u = {0};
        int r = sy_utf8_feed(&u, p, c->len);
        int valid = c->fail_at < 0 && c->complete;
        CHECK_MSG(r == (c->fail_at < 0 ? 0 : SY_EPROTO), "%s: feed %d", c->name, r);
        CHECK_MSG(sy_utf8_complete(&u) == valid, "%s: complete", c->name);
        CHECK_MSG(sy_utf8_valid(p, c->len) == valid, "%s: valid", c->name);
        if (r != 0) {
            /* Sticky: nothing more, not even nothing, makes it valid again. */
            CHECK_MSG(sy_utf8_feed(&u, (const uint8_t *)"a", 1) == SY_EPROTO &&
                          sy_utf8_feed(&u, NULL, 0) == SY_EPROTO && !sy_utf8_complete(&u),
                      "%s: failure is sticky", c->name);
        }
        t_guard_free(map, maplen);
        check_bytewise(c->name, c->in, c->len, c->fail_at);
    }
}

/* Each case split into two pieces at every offset and into three at every pair (each piece at
 * a guard page): the piece holding the first impossible byte fails, earlier pieces do not, and
 * sy_utf8_complete between pieces matches the reference. */
static int feed_piece(sy_utf8 *u, const uint8_t *in, size_t from, size_t to)
{
    void *map;
    size_t maplen;
    uint8_t *p = (uint8_t *)t_guard_copy(in + from, to - from, &map, &maplen);
    int r = sy_utf8_feed(u, p, to - from);
    t_guard_free(map, maplen);
    return r;
}

static void test_utf8_splits(void)
{
    int bad = 0, runs = 0;
    for (size_t k = 0; k < SY_COUNTOF(utf8_cases); k++) {
        const utf8_case *c = &utf8_cases[k];
        size_t n = c->len;
        long at = c->fail_at;
        for (size_t x = 0; x <= n; x++)
            for (size_t y = x; y <= n; y++) {
                if (n > 40 && y != n) /* pairs only for short inputs */
                    continue;
                sy_utf8 u = {0};
                size_t cut[3] = {x, y, n};
                size_t from = 0;
                runs++;
                for (int piece = 0; piece < 3; piece++) {
                    int r = feed_piece(&u, c->in, from, cut[piece]);
                    int want = at >= 0 && (long)cut[piece] > at ? SY_EPROTO : 0;
                    int boundary;
                    ref_scan(c->in, cut[piece], &boundary);
                    if ((r != want || (r == 0 && sy_utf8_complete(&u) != boundary)) && !bad++)
                        fprintf(stderr, "%s: split %zu/%zu piece %d: rc %d\n", c->name, x, y, piece,
                                r);
                    from = cut[piece];
                }
            }
    }
    CHECK_MSG(bad == 0, "%d of %d split feeds wrong", bad, runs);
}

/* The cases behind ASCII runs of every length 0..70 and before more ASCII, so that the word
 * fast path meets them at every position and alignment. */
static void test_utf8_ascii_runs(void)
{
    int bad = 0, runs = 0;
    uint8_t buf[256];
    for (size_t k = 0; k < SY_COUNTOF(utf8_cases); k++) {
        const utf8_case *c = &utf8_cases[k];
        for (size_t pre = 0; pre <= 70; pre++)
            for (size_t post = 0; post <= 40; post += 13) {
                size_t n = pre + c->len + post;
                memset(buf, 'x', pre);
                memcpy(buf + pre, c->in, c->len);
                memset(buf + pre + c->len, 'y', post);
                void *map;
                size_t maplen;
                uint8_t *p = (uint8_t *)t_guard_copy(buf, n, &map, &maplen);
                int want_valid = ref_valid(buf, n);
                int boundary;
                size_t ref_at = ref_scan(buf, n, &boundary);
                sy_utf8 u = {0};
                int r = sy_utf8_feed(&u, p, n);
                runs++;
                if ((sy_utf8_valid(p, n) != want_valid || r != (ref_at < n ? SY_EPROTO : 0) ||
                     (r == 0 && sy_utf8_complete(&u) != boundary)) &&
                    !bad++)
                    fprintf(stderr, "%s: after %zu ASCII bytes, before %zu\n", c->name, pre, post);
                t_guard_free(map, maplen);
            }
    }
    /* Pure ASCII at the guard page, every length. */
    for (size_t n = 0; n <= 200; n++) {
        memset(buf, 'a', n);
        void *map;
        size_t maplen;
        uint8_t *p = (uint8_t *)t_guard_copy(buf, n, &map, &maplen);
        runs++;
        if (!sy_utf8_valid(p, n) && !bad++)
            fprintf(stderr, "ASCII length %zu\n", n);
        t_guard_free(map, maplen);
    }
    CHECK_MSG(bad == 0, "%d of %d ASCII-run feeds wrong", bad, runs);
}

/* ASCII of every length up to 80 with one impossible byte (0xff), or one 2-byte character,
 * at every position: the short-text tests of sy_utf8_valid (words that overlap) must see it
 * wherever it is. */
static void test_utf8_one_char(void)
{
    int bad = 0, runs = 0;
    uint8_t buf[80];
    for (size_t n = 1; n <= sizeof buf; n++)
        for (size_t at = 0; at < n; at++)
            for (int two = 0; two < 2 && (!two || at + 1 < n); two++) {
                memset(buf, 'a', n);
                if (two)
                    memcpy(buf + at, "\xc3\xa9", 2); /* U+00E9 */
                else
                    buf[at] = 0xff;
                void *map;
                size_t maplen;
                uint8_t *p = (uint8_t *)t_guard_copy(buf, n, &map, &maplen);
                runs++;
                if (sy_utf8_valid(p, n) != two && !bad++)
                    fprintf(stderr, "%s at %zu of %zu\n", two ? "U+00E9" : "0xff", at, n);
                t_guard_free(map, maplen);
            }
    CHECK_MSG(bad == 0, "%d of %d one-character texts wrong", bad, runs);
}

/* Every 1-, 2- and 3-byte string, and every 4-byte string over a set of telling bytes, against
 * the reference: the verdict of one feed, sy_utf8_complete and sy_utf8_valid. */
static void test_utf8_exhaustive(void)
{
    static const uint8_t telling[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
                                      0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee,
                                      0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xf7, 0xf8, 0xff};
    long bad = 0, runs = 0;
    uint8_t s[4];
    for (size_t len = 1; len <= 4; len++) {
        size_t total = len < 4 ? (size_t)1 << (8 * len) : 0;
        size_t nt = SY_COUNTOF(telling);
        if (len == 4)
            total = nt * nt * nt * nt;
        for (size_t v = 0; v < total; v++) {
            if (len < 4) {
                for (size_t i = 0; i < len && i < 3; i++)
                    s[i] = (uint8_t)(v >> (8 * (len - 1 - i)));
            } else {
                size_t w = v;
                for (size_t i = 0; i < 4; i++, w /= nt)
                    s[i] = telling[w % nt];
            }
            int boundary;
            size_t at = ref_scan(s, len, &boundary);
            sy_utf8 u = {0};
            int r = sy_utf8_feed(&u, s, len);
            runs++;
            if ((r != (at < len ? SY_EPROTO : 0) || (r == 0 && sy_utf8_complete(&u) != boundary) ||
                 sy_utf8_valid(s, len) != (at == len && boundary)) &&
                !bad++) {
                char h[32];
                hex(h, sizeof h, s, len);
                fprintf(stderr, "exhaustive: %s: rc %d\n", h, r);
            }
        }
    }
    CHECK_MSG(bad == 0, "%ld of %ld short strings judged wrongly", bad, runs);
}

/* Every scalar value, alone and all of them concatenated, fed whole and in random pieces; every
 * surrogate in the generic 3-byte form fails. */
static void test_utf8_all_code_points(void)
{
    size_t cap = 4 * 0x110000;
    uint8_t *all = malloc(cap);
    if (!all) {
        perror("malloc");
        exit(2);
    }
    size_t n = 0;
    long bad = 0;
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        uint8_t e[4];
        if (!is_scalar(cp)) {
            e[0] = (uint8_t)(0xe0 | cp >> 12);
            e[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
            e[2] = (uint8_t)(0x80 | (cp & 0x3f));
            if (sy_utf8_valid(e, 3) && !bad++)
                fprintf(stderr, "surrogate U+%04X accepted\n", (unsigned)cp);
            continue;
        }
        size_t len = ref_encode(cp, e);
        if (!sy_utf8_valid(e, len) && !bad++)
            fprintf(stderr, "U+%04X rejected\n", (unsigned)cp);
        memcpy(all + n, e, len);
        n += len;
    }
    CHECK_MSG(bad == 0, "%ld single code points judged wrongly", bad);
    CHECK(sy_utf8_valid(all, n));
    for (int t = 0; t < 20; t++) {
        sy_utf8 u = {0};
        int r = 0;
        for (size_t at = 0; at < n && r == 0;) {
            size_t step = (size_t)(rnd() % 1000) + 1;
            if (step > n - at)
                step = n - at;
            r = sy_utf8_feed(&u, all + at, step);
            at += step;
        }
        CHECK_MSG(r == 0 && sy_utf8_complete(&u), "all code points in pieces, try %d", t);
    }
    /* A wrong byte anywhere in the big text is found, whatever the split. */
    for (int t = 0; t < 20; t++) {
        size_t pos = (size_t)(rnd() % n);
        uint8_t keep = all[pos];
        all[pos] = 0xff;
        sy_utf8 u = {0};
        int r = 0;
        size_t at = 0;
        while (at < n && r == 0) {
            size_t step = (size_t)(rnd() % 5000) + 1;
            if (step > n - at)
                step = n - at;
            r = sy_utf8_feed(&u, all + at, step);
            at += step;
        }
        CHECK_MSG(r == SY_EPROTO && at > pos && at - pos <= 5000, "0xff at %zu: rc %d at %zu", pos,
                  r, at);
        all[pos] = keep;
    }
    free(all);
}

/* Random strings over a telling alphabet against the reference: the verdict, the byte at which
 * a byte-by-byte feed fails, and a random split. */
static void test_utf8_random(void)
{
    static const uint8_t alphabet[] = {'a',  ' ',  0x7f, 0x80, 0x8f, 0x90, 0x9f,
                                       0xa0, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xe1,
                                       0xed, 0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xff};
    long bad = 0;
    uint8_t s[80];
    for (int t = 0; t < 30000; t++) {
        size_t n = (size_t)(rnd() % sizeof s);
        for (size_t i = 0; i < n;) {
            /* Mostly valid code points, sometimes a random byte or an ASCII run. */
            uint64_t x = rnd();
            if (x % 8 == 0) {
                s[i++] = alphabet[(x >> 8) % sizeof alphabet];
            } else if (x % 8 == 1) {
                for (size_t k = (x >> 8) % 20; k && i < n; k--)
                    s[i++] = 'A';
            } else {
                uint8_t e[4];
                uint32_t cp = (uint32_t)((x >> 8) % 0x110000);
                if (!is_scalar(cp))
                    cp = 0xfffd;
                size_t len = ref_encode(cp, e);
                for (size_t k = 0; k < len && i < n; k++)
                    s[i++] = e[k];
            }
        }
        int boundary;
        size_t at = ref_scan(s, n, &boundary);
        sy_utf8 u = {0};
        size_t i = 0;
        int r = 0;
        for (; i < n; i++)
            if ((r = sy_utf8_feed(&u, s + i, 1)) != 0)
                break;
        size_t cut = n ? (size_t)(rnd() % (n + 1)) : 0;
        sy_utf8 v = {0};
        int r1 = sy_utf8_feed(&v, s, cut);
        int r2 = r1 ? r1 : sy_utf8_feed(&v, s + cut, n - cut);
        if ((i != at || sy_utf8_valid(s, n) != (at == n && boundary) ||
             r2 != (at < n ? SY_EPROTO : 0) || r1 != (at < cut ? SY_EPROTO : 0) ||
             (r2 == 0 && sy_utf8_complete(&v) != boundary)) &&
            !bad++) {
            char h[300];
            hex(h, sizeof h, s, n);
            fprintf(stderr, "random: %s: fails at %zu, reference %zu\n", h, i, at);
        }
    }
    CHECK_MSG(bad == 0, "%ld random strings judged wrongly", bad);
}

/* ---- close codes and payloads ------------------------------------------------------------- */

static void test_close_codes(void)
{
    static const struct {
        int code, valid;
    } table[] = {
        {-1, 0},   {0, 0},    {999, 0},  {1000, 1}, {1001, 1},  {1002, 1},  {1003, 1}, {1004, 0},
        {1005, 0}, {1006, 0}, {1007, 1}, {1008, 1}, {1009, 1},  {1010, 1},  {1011, 1}, {1012, 1},
        {1013, 1}, {1014, 1}, {1015, 0}, {1016, 0}, {1100, 0},  {2000, 0},  {2999, 0}, {3000, 1},
        {3999, 1}, {4000, 1}, {4999, 1}, {5000, 0}, {65535, 0}, {65536, 0},
    };
    for (size_t k = 0; k < SY_COUNTOF(table); k++)
        CHECK_MSG(sy_ws_close_code_valid(table[k].code) == table[k].valid, "close code %d",
                  table[k].code);
    /* Every 16-bit code against the rule in words. */
    int bad = 0;
    for (int code = 0; code <= 65535; code++) {
        int want = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                   (code >= 3000 && code <= 4999);
        if (sy_ws_close_code_valid(code) != want && !bad++)
            fprintf(stderr, "close code %d\n", code);
    }
    CHECK_MSG(bad == 0, "%d close codes judged wrongly", bad);
}

typedef struct close_case {
    const char *name;
    const uint8_t *in;
    size_t len;
    int rc;
    int code;
    const char *reason; /* when rc == 0 */
} close_case;

#define CLOSE_OK(n, s, c, r)                                                                       \
    {                                                                                              \
        (n), B(s), 0, (c), (r)                                                                     \
    }
#define CLOSE_BAD(n, s, c)                                                                         \
    {                                                                                              \
        (n), B(s), SY_EPROTO, (c), ""                                                              \
    }

#define R61 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz012345678"
static const close_case close_cases[] = {
    CLOSE_OK("empty", "", 1005, ""),
    CLOSE_OK("1000 no reason", "\x03\xe8", 1000, ""),
    CLOSE_OK("1000 with reason",
             "\x03\xe8"
             "bye",
             1000, "bye"),
    CLOSE_OK("1001", "\x03\xe9", 1001, ""),
    CLOSE_OK("1011", "\x03\xf3", 1011, ""),
    CLOSE_OK("1012", "\x03\xf4", 1012, ""),
    CLOSE_OK("1014", "\x03\xf6", 1014, ""),
    CLOSE_OK("3000", "\x0b\xb8", 3000, ""),
    CLOSE_OK("4999 with UTF-8 reason", "\x13\x87\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 4999,
             "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
    CLOSE_OK("125 bytes", "\x03\xe8" R61 R61 "9", 1000, R61 R61 "9"),
    CLOSE_BAD("1 byte", "\x03", 1002),
    CLOSE_BAD("126 bytes", "\x03\xe8" R61 R61 "9!", 1002),
    CLOSE_BAD("code 0", "\x00\x00", 1002),
    CLOSE_BAD("code 999", "\x03\xe7", 1002),
    CLOSE_BAD("code 1004", "\x03\xec", 1002),
    CLOSE_BAD("code 1005", "\x03\xed", 1002),
    CLOSE_BAD("code 1006", "\x03\xee", 1002),
    CLOSE_BAD("code 1015", "\x03\xf7", 1002),
    CLOSE_BAD("code 2999", "\x0b\xb7", 1002),
    CLOSE_BAD("code 5000", "\x13\x88", 1002),
    CLOSE_BAD("code 65535", "\xff\xff", 1002),
    CLOSE_BAD("bad code before bad UTF-8", "\x03\xed\xff", 1002),
    CLOSE_BAD("reason not UTF-8", "\x03\xe8\xff", 1007),
    CLOSE_BAD("reason truncated",
              "\x03\xe8"
              "ok\xce",
              1007),
    CLOSE_BAD("reason with surrogate", "\x03\xe8\xed\xa0\x80", 1007),
    CLOSE_BAD("reason overlong", "\x03\xe8\xc0\xaf", 1007),
};

static void test_close_parse(void)
{
    for (size_t k = 0; k < SY_COUNTOF(close_cases); k++) {
        const close_case *c = &close_cases[k];
        void *map;
        size_t maplen;
        uint8_t *p = (uint8_t *)t_guard_copy(c->in, c->len, &map, &maplen);
        int code = -1;
        sy_str reason = {NULL, 99};
        const char *why = NULL;
        int r = sy_ws_parse_close(c->len ? p : NULL, c->len, &code, &reason, &why);
        CHECK_MSG(r == c->rc && code == c->code, "%s: rc %d code %d", c->name, r, code);
        CHECK_MSG(reason.p != NULL && reason.len == strlen(c->reason) &&
                      memcmp(reason.p, c->reason, reason.len) == 0,
                  "%s: reason", c->name);
        if (r == 0 && c->len > 2)
            CHECK_MSG(reason.p == (const char *)p + 2, "%s: reason borrows from p", c->name);
        if (r != 0)
            CHECK_MSG(why != NULL && why[0] != '\0', "%s: why", c->name);
        code = -1;
        CHECK_MSG(sy_ws_parse_close(c->len ? p : NULL, c->len, &code, &reason, NULL) == c->rc &&
                      code == c->code,
                  "%s: why NULL", c->name);
        t_guard_free(map, maplen);
    }
}

/* ---- permessage-deflate negotiation --------------------------------------------------- */

/* Negotiates from a guard-page copy (a read past the value crashes); returns the answer
 * ("" when declined) in a static buffer. */
static const char *negotiate(const char *value, int preset_snct, int preset_cnct, int sbits,
                             int cbits, sy_pmd_params *out)
{
    static char answer[SY_WS_PMD_ANSWER_MAX];
    sy_pmd_config cfg = {preset_snct, preset_cnct, sbits, cbits};
    void *map;
    size_t maplen, len = strlen(value);
    char *p = t_guard_copy(value, len, &map, &maplen);
    sy_pmd_params tmp;
    if (!out)
        out = &tmp;
    memset(out, 0x55, sizeof *out);
    int ok = sy_ws_pmd_negotiate(sy_str_make(p, len), &cfg, out);
    t_guard_free(map, maplen);
    answer[0] = '\0';
    if (ok)
        sy_ws_pmd_format(out, answer);
    return answer;
}

static void test_pmd_negotiate(void)
{
    static const struct {
        const char *offer;
        const char *plain;  /* answer with a preset asking nothing (15/15, takeover on) */
        const char *shared; /* answer with no context takeover both ways */
        const char *small;  /* answer with 11-bit windows */
    } cases[] = {
        /* accepted */
        {"permessage-deflate", "permessage-deflate",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
         "permessage-deflate; client_no_context_takeover; server_max_window_bits=11"},
        {"permessage-deflate; client_max_window_bits", "permessage-deflate",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
         "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11"},
        {"permessage-deflate; client_max_window_bits=9", "permessage-deflate",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
         "permessage-deflate; server_max_window_bits=11; client_max_window_bits=9"},
        {"permessage-deflate; server_max_window_bits=10",
         "permessage-deflate; server_max_window_bits=10",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=10",
         "permessage-deflate; client_no_context_takeover; server_max_window_bits=10"},
        {"permessage-deflate; server_max_window_bits=13",
         "permessage-deflate; server_max_window_bits=13",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=13",
         "permessage-deflate; client_no_context_takeover; server_max_window_bits=11"},
        {"permessage-deflate; server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=11"},
        {"permessage-deflate; client_no_context_takeover", "permessage-deflate",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
         "permessage-deflate; client_no_context_takeover; server_max_window_bits=11"},
        /* quoted values, OWS, case, the second of several offers, other extensions */
        {"permessage-deflate; server_max_window_bits=\"12\"",
         "permessage-deflate; server_max_window_bits=12", NULL, NULL},
        {"permessage-deflate ;server_max_window_bits = \"1\\2\" ; client_max_window_bits",
         "permessage-deflate; server_max_window_bits=12", NULL, NULL},
        {"Permessage-Deflate; Server_Max_Window_Bits=9",
         "permessage-deflate; server_max_window_bits=9", NULL, NULL},
        {"x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=9",
         "permessage-deflate; server_max_window_bits=9", NULL, NULL},
        {"permessage-deflate; foo, permessage-deflate; server_max_window_bits=9",
         "permessage-deflate; server_max_window_bits=9", NULL, NULL},
        {"permessage-deflate; server_max_window_bits=8, permessage-deflate",
         "permessage-deflate; server_max_window_bits=8", NULL, NULL},
        {" , ,permessage-deflate,", "permessage-deflate", NULL, NULL},
        {"foo; a=\"x, permessage-deflate; client_max_window_bits=\\\"\", permessage-deflate; "
         "client_max_window_bits=10",
         "permessage-deflate", NULL,
         "permessage-deflate; server_max_window_bits=11; client_max_window_bits=10"},
        /* declined: unknown, duplicate, missing or bad values, values where none belong */
        {"", "", "", ""},
        {"foo, bar; baz=1", "", "", ""},
        {"permessage-deflate; foo", "", "", ""},
        {"permessage-deflate; server_no_context_takeover; server_no_context_takeover", "", "", ""},
        {"permessage-deflate; client_no_context_takeover; client_no_context_takeover", "", "", ""},
        {"permessage-deflate; server_no_context_takeover=1", "", "", ""},
        {"permessage-deflate; client_no_context_takeover=\"\"", "", "", ""},
        {"permessage-deflate; server_max_window_bits", "", "", ""},
        {"permessage-deflate; server_max_window_bits=7", "", "", ""},
        {"permessage-deflate; server_max_window_bits=16", "", "", ""},
        {"permessage-deflate; server_max_window_bits=010", "", "", ""},
        {"permessage-deflate; server_max_window_bits=+9", "", "", ""},
        {"permessage-deflate; server_max_window_bits=\"\"", "", "", ""},
        {"permessage-deflate; server_max_window_bits=\"1 0\"", "", "", ""},
        {"permessage-deflate; server_max_window_bits=10; server_max_window_bits=10", "", "", ""},
        {"permessage-deflate; client_max_window_bits=1", "", "", ""},
        {"permessage-deflate; client_max_window_bits; client_max_window_bits", "", "", ""},
        /* syntax errors decline that offer only */
        {"permessage-deflate;", "", "", ""},
        {"permessage-deflate; =9", "", "", ""},
        {"permessage-deflate; server_max_window_bits=", "", "", ""},
        {"permessage-deflate; server_max_window_bits=\"9", "", "", ""},
        {"permessage-deflate server_no_context_takeover", "", "", ""},
        {"permessage-deflate; a b, permessage-deflate; server_max_window_bits=9",
         "permessage-deflate; server_max_window_bits=9", NULL, NULL},
        {"\"permessage-deflate\"", "", "", ""},
        {"permessage-deflate; server_max_window_bits=\"9\"x, permessage-deflate",
         "permessage-deflate", NULL, NULL},
    };
    for (size_t i = 0; i < SY_COUNTOF(cases); i++) {
        const char *got = negotiate(cases[i].offer, 0, 0, 15, 15, NULL);
        CHECK_MSG(strcmp(got, cases[i].plain) == 0, "offer '%s': got '%s', want '%s'",
                  cases[i].offer, got, cases[i].plain);
        if (cases[i].shared) {
            got = negotiate(cases[i].offer, 1, 1, 15, 15, NULL);
            CHECK_MSG(strcmp(got, cases[i].shared) == 0, "shared, offer '%s': got '%s', want '%s'",
                      cases[i].offer, got, cases[i].shared);
        }
        if (cases[i].small) {
            got = negotiate(cases[i].offer, 0, 0, 11, 11, NULL);
            CHECK_MSG(strcmp(got, cases[i].small) == 0, "small, offer '%s': got '%s', want '%s'",
                      cases[i].offer, got, cases[i].small);
        }
    }

    /* The agreed values behind the answers. */
    sy_pmd_params p;
    negotiate("permessage-deflate; server_max_window_bits=8; client_max_window_bits=8", 0, 0, 15,
              11, &p);
    CHECK(p.server_window_bits == 8 && p.send_server_bits); /* never compress then */
    CHECK(p.client_window_bits == 8 && p.send_client_bits);
    CHECK(!p.server_no_context_takeover && !p.client_no_context_takeover);
    negotiate("permessage-deflate", 0, 0, 15, 15, &p);
    CHECK(p.server_window_bits == 15 && p.client_window_bits == 15);
    CHECK(!p.send_server_bits && !p.send_client_bits);

    /* Every prefix of a valid offer parses without reading past it; the answer is stable. */
    const char *full = "permessage-deflate; server_max_window_bits=\"10\"; client_max_window_bits";
    for (size_t n = 0; n <= strlen(full); n++) {
        char tmp[128];
        memcpy(tmp, full, n);
        tmp[n] = '\0';
        negotiate(tmp, 0, 0, 15, 15, NULL);
    }
    CHECK(strcmp(negotiate(full, 0, 0, 15, 15, NULL),
                 "permessage-deflate; server_max_window_bits=10") == 0);

    /* The longest answer fits. */
    sy_pmd_params big = {1, 1, 15, 15, 1, 1};
    char out[SY_WS_PMD_ANSWER_MAX];
    size_t n = sy_ws_pmd_format(&big, out);
    CHECK(n < SY_WS_PMD_ANSWER_MAX && strlen(out) == n);
    CHECK(strcmp(out, "permessage-deflate; server_no_context_takeover; "
                      "client_no_context_takeover; server_max_window_bits=15; "
                      "client_max_window_bits=15") == 0);
}

int main(void)
{
    ref_init();
    test_decode_cases();
    test_encode();
    test_round_trip();
    test_check_header();
    test_unmask_equivalence();
    test_unmask_pieces();
    test_unmask_guard();
    test_utf8_cases();
    test_utf8_splits();
    test_utf8_ascii_runs();
    test_utf8_one_char();
    test_utf8_exhaustive();
    test_utf8_all_code_points();
    test_utf8_random();
    test_close_codes();
    test_close_parse();
    test_pmd_negotiate();
    free(ref_tab);
    return t_summary("test_ws");
}
