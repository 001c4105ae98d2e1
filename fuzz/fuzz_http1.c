/* libFuzzer target for http1: the head parser and the chunked decoder, with split invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

#define MAX_HEADERS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static int inside(sy_str s, const char *buf, size_t len)
{
    return s.p == NULL || (s.p >= buf && s.p + s.len <= buf + len);
}

static void fuzz_head(const char *buf, size_t len)
{
    sy_http1_header h1[MAX_HEADERS], h2[MAX_HEADERS];
    sy_http1_limits lim = {2048, MAX_HEADERS};
    sy_http1_request req = {.headers = h1}, again = {.headers = h2};
    const char *why = NULL;
    ssize_t r = sy_http1_parse_head(buf, len, &lim, &req, &why);

    if (r == SY_EAGAIN) {
        check(len < lim.max_head && req.status == 0);
        return;
    }
    if (r < 0) {
        check(why != NULL && why[0] != '\0');
        check((r == SY_EPROTO && (req.status == 400 || req.status == 501)) ||
              (r == SY_ELIMIT && (req.status == 414 || req.status == 431)));
        return;
    }
    size_t n = (size_t)r;
    check(n <= len && n <= lim.max_head && req.head_len == n && req.status == 0);
    check(req.version == 10 || req.version == 11);
    check(req.target_form >= SY_TARGET_ORIGIN && req.target_form <= SY_TARGET_AUTHORITY);
    check(req.nheaders <= MAX_HEADERS && !(req.chunked && req.content_length >= 0));
    check(inside(req.method, buf, n) && inside(req.target, buf, n) && inside(req.path, buf, n) &&
          inside(req.query, buf, n) && inside(req.authority, buf, n) && inside(req.host, buf, n));
    for (size_t i = 0; i < req.nheaders; i++)
        check(inside(req.headers[i].name, buf, n) && inside(req.headers[i].value, buf, n));
    (void)sy_http1_find(&req, "host");
    (void)sy_http1_count(&req, "connection");

    /* The answer does not depend on the bytes after the head, and any prefix needs more. */
    check(sy_http1_parse_head(buf, n, &lim, &again, &why) == r);
    check(again.content_length == req.content_length && again.chunked == req.chunked &&
          again.keep_alive == req.keep_alive && again.connection == req.connection &&
          again.nheaders == req.nheaders && again.expect_continue == req.expect_continue);
    check(sy_http1_parse_head(buf, n - 1, &lim, &again, &why) == SY_EAGAIN);
    check(sy_http1_parse_head(buf, n / 2, &lim, &again, &why) == SY_EAGAIN);
}

/* Decodes in[0..len) fed in pieces of at most step bytes (0: all at once), each piece in its
 * own allocation so that an over-read is caught. Returns the body length written to out. */
static size_t decode(const char *in, size_t len, size_t step, char *out, int *err, size_t *used,
                     sy_http1_chunked *c)
{
    size_t outlen = 0;
    memset(c, 0, sizeof(*c));
    *err = 0;
    *used = 0;
    while (*used < len && !c->done) {
        size_t n = len - *used;
        if (step && n > step)
            n = step;
        char *piece = malloc(n);
        check(piece != NULL);
        memcpy(piece, in + *used, n);
        size_t off = 0;
        while (off < n && !c->done) {
            sy_str d;
            const char *why = NULL;
            ssize_t r = sy_http1_chunked_parse(c, piece + off, n - off, &d, &why);
            if (r < 0) {
                check(r == SY_EPROTO && why != NULL);
                *err = 1;
                free(piece);
                return outlen;
            }
            check(r > 0 && (size_t)r <= n - off && d.len <= (size_t)r);
            check(d.len == 0 || (d.p >= piece + off && d.p + d.len <= piece + off + (size_t)r));
            if (d.len)
                memcpy(out + outlen, d.p, d.len);
            outlen += d.len;
            off += (size_t)r;
        }
        *used += off;
        free(piece);
    }
    check(c->total == outlen);
    return outlen;
}

static void fuzz_chunked(const char *in, size_t len)
{
    char *out[3];
    size_t outlen[3], used[3];
    int err[3];
    sy_http1_chunked c[3];
    static const size_t steps[3] = {0, 1, 7};
    for (int i = 0; i < 3; i++) {
        out[i] = malloc(len + 1);
        check(out[i] != NULL);
        outlen[i] = decode(in, len, steps[i], out[i], &err[i], &used[i], &c[i]);
    }
    for (int i = 1; i < 3; i++) {
        check(err[i] == err[0] && outlen[i] == outlen[0] && c[i].done == c[0].done);
        check(memcmp(out[i], out[0], outlen[0]) == 0);
        check(err[0] || used[i] == used[0]);
    }
    for (int i = 0; i < 3; i++)
        free(out[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    fuzz_head(buf, size);
    fuzz_chunked(buf, size);

    /* A request head followed by its chunked body, as the server sees it. */
    sy_http1_header h[MAX_HEADERS];
    sy_http1_limits lim = {2048, MAX_HEADERS};
    sy_http1_request req = {.headers = h};
    ssize_t r = sy_http1_parse_head(buf, size, &lim, &req, NULL);
    if (r > 0 && req.chunked)
        fuzz_chunked(buf + r, size - (size_t)r);

    size_t pos = 0, n = 0;
    sy_str tok;
    while (sy_http1_next_token(sy_str_make(buf, size), &pos, &tok)) {
        check(tok.len > 0 && inside(tok, buf, size) && pos <= size);
        check(++n <= size);
    }
    (void)sy_http1_reason((int)size);
    return 0;
}
