/* libFuzzer target for ws: frame headers, unmasking in pieces, UTF-8 feeds, close payloads. */
#include <stdlib.h>

#include "ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

/* Frames back to back, as a connection reads them: header, then as much payload as there is. */
static void fuzz_headers(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    while (pos < size) {
        const uint8_t *p = data + pos;
        size_t left = size - pos;
        sy_ws_header h, again;
        const char *why = NULL;
        ssize_t r = sy_ws_decode_header(p, left, &h, &why);
        if (r == SY_EAGAIN) {
            check(left < SY_WS_MAX_HEADER);
            return;
        }
        if (r < 0) {
            /* RFC 6455 5.2: the only decode error is a 64-bit length with its MSB set. */
            check(r == SY_EPROTO && why && left >= 3 && (p[1] & 0x7f) == 127 && (p[2] & 0x80));
            return;
        }
        size_t hl = (size_t)r;
        check(hl >= 2 && hl <= SY_WS_MAX_HEADER && hl <= left && h.header_len == hl);
        check(h.len >> 63 == 0 && h.fin == p[0] >> 7 && h.opcode == (p[0] & 15));
        check(sy_ws_decode_header(p, hl - 1, &again, NULL) == SY_EAGAIN);

        /* Our encoding of the same header is the minimal one: equal, or shorter. */
        uint8_t enc[SY_WS_MAX_HEADER];
        size_t el = sy_ws_encode_header(enc, h.fin, h.rsv, h.opcode, h.len);
        size_t in_len = hl - (h.masked ? 4 : 0);
        check(el <= in_len && (el < in_len || (enc[0] == p[0] && enc[1] == (p[1] & 0x7f) &&
                                               memcmp(enc + 2, p + 2, el - 2) == 0)));
        check(sy_ws_decode_header(enc, el, &again, NULL) == (ssize_t)el && again.len == h.len);

        int allowed = p[hl - 1] & 7;
        int ok = h.masked && !(h.rsv & ~allowed) &&
                 (h.opcode < 8 ? h.opcode < 3 : h.opcode < 11 && h.fin && h.len <= 125);
        int rc = sy_ws_check_header(&h, allowed, &why);
        check(ok ? rc == 0 : rc == SY_EPROTO && why);
        pos += hl + (h.len < left - hl ? (size_t)h.len : left - hl);
    }
}

/* Unmasking whole, in pieces cut by the input itself, and one byte off alignment, against the
 * byte-by-byte definition; exact-size copies so that ASan sees any stray access. */
static void fuzz_unmask(const uint8_t *data, size_t size)
{
    uint8_t mask[4] = {0x5a, 0xa5, 0x0f, 0xf0};
    uint64_t off = 0;
    if (size >= 4)
        memcpy(mask, data, 4);
    if (size >= 12)
        memcpy(&off, data + 4, 8);
    size_t cap = size ? size : 1;
    uint8_t *want = malloc(cap), *whole = malloc(cap), *parts = malloc(cap);
    uint8_t *shifted = malloc(size + 1);
    check(want && whole && parts && shifted);
    memcpy(want, data, size);
    for (size_t i = 0; i < size; i++)
        want[i] ^= mask[(off + i) & 3];
    memcpy(whole, data, size);
    sy_ws_unmask(whole, size, mask, off);
    check(memcmp(whole, want, size) == 0);
    memcpy(parts, data, size);
    for (size_t at = 0, k = 0; at < size; k++) {
        size_t step = (size_t)data[k % size] % 41 + 1;
        if (step > size - at)
            step = size - at;
        sy_ws_unmask(parts + at, step, mask, off + at);
        at += step;
    }
    check(memcmp(parts, want, size) == 0);
    memcpy(shifted + 1, data, size);
    sy_ws_unmask(shifted + 1, size, mask, off);
    check(memcmp(shifted + 1, want, size) == 0);
    free(shifted);
    free(want);
    free(whole);
    free(parts);
}

/* Unicode Table 3-7 written out: the index of the first byte that makes p[0..n) ill-formed,
 * or n; *open is 1 when the input ends inside a code point. */
static size_t ref_utf8(const uint8_t *p, size_t n, int *open)
{
    *open = 0;
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i], lo = 0x80, hi = 0xbf;
        size_t need;
        if (c < 0x80)
            need = 0;
        else if (c >= 0xc2 && c <= 0xdf)
            need = 1;
        else if (c >= 0xe0 && c <= 0xef)
            need = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        else if (c >= 0xf0 && c <= 0xf4)
            need = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        else
            return i;
        for (size_t k = 1; k <= need; k++, lo = 0x80, hi = 0xbf) {
            if (i + k == n) {
                *open = 1;
                return n;
            }
            if (p[i + k] < lo || p[i + k] > hi)
                return i + k;
        }
        i += need + 1;
    }
    return n;
}

static void fuzz_utf8(const uint8_t *data, size_t size)
{
    int open;
    size_t bad = ref_utf8(data, size, &open);
    int valid = bad == size && !open;
    check(sy_utf8_valid(data, size) == valid);

    sy_utf8 u = {0};
    int r = sy_utf8_feed(&u, data, size);
    check(r == (bad < size ? SY_EPROTO : 0) && sy_utf8_complete(&u) == valid);

    /* Byte by byte, the feed fails exactly at the first impossible byte. */
    sy_utf8 b = {0};
    size_t i = 0;
    while (i < size && sy_utf8_feed(&b, data + i, 1) == 0)
        i++;
    check(i == bad);

    /* In pieces cut by the input itself: the same verdict. */
    sy_utf8 s = {0};
    r = 0;
    for (size_t at = 0, k = 0; at < size && r == 0; k++) {
        size_t step = (size_t)data[(k * 7) % size] % 23 + 1;
        if (step > size - at)
            step = size - at;
        r = sy_utf8_feed(&s, data + at, step);
        at += step;
    }
    check(r == (bad < size ? SY_EPROTO : 0) && sy_utf8_complete(&s) == valid);
}

static void fuzz_close(const uint8_t *data, size_t size)
{
    int code = -1;
    sy_str reason;
    const char *why = NULL;
    int r = sy_ws_parse_close(data, size, &code, &reason, &why);
    int c = size >= 2 ? data[0] << 8 | data[1] : -1;
    if (r == 0) {
        check(size == 0 ? code == 1005 && reason.len == 0
                        : size >= 2 && size <= 125 && code == c && sy_ws_close_code_valid(c) &&
                              reason.p == (const char *)data + 2 && reason.len == size - 2 &&
                              sy_utf8_valid(data + 2, size - 2));
        return;
    }
    check(r == SY_EPROTO && why && reason.len == 0);
    int utf8_only = size >= 2 && size <= 125 && sy_ws_close_code_valid(c);
    check(code == (utf8_only ? 1007 : 1002));
    check(!utf8_only || !sy_utf8_valid(data + 2, size - 2));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_headers(data, size);
    fuzz_unmask(data, size);
    fuzz_utf8(data, size);
    fuzz_close(data, size);
    /* The payload after a first header, as the close and text paths see it. */
    sy_ws_header h;
    ssize_t r = sy_ws_decode_header(data, size, &h, NULL);
    if (r > 0) {
        fuzz_utf8(data + r, size - (size_t)r);
        fuzz_close(data + r, size - (size_t)r);
    }
    return 0;
}
