/* libFuzzer target: parse a request head, list its upgrade offers, match and decode them. */
#include <stdlib.h>

#include "upgrade.h"

#define MAX_HEADERS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checks that a slice lies inside [base, base + len) and reads every byte of it. */
static void check_slice(sy_str s, const char *base, size_t len)
{
    if (s.p == NULL)
        return;
    if (s.p < base || s.len > len || (size_t)(s.p - base) > len - s.len)
        abort();
    volatile unsigned sum = 0;
    for (size_t i = 0; i < s.len; i++)
        sum += (unsigned char)s.p[i];
    (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    uint8_t dec[256];

    /* The whole input as base64url, too: never writes past cap. */
    ssize_t d = sy_upgrade_base64url_decode(sy_str_make(buf, size), dec, sizeof dec);
    if (d != SY_EPROTO && d != SY_ELIMIT && (d < 0 || (size_t)d > sizeof dec))
        abort();

    sy_http1_header headers[MAX_HEADERS];
    sy_http1_limits limits = {65536, MAX_HEADERS};
    sy_http1_request req;
    memset(&req, 0, sizeof req);
    req.headers = headers;
    const char *why = NULL;
    if (sy_http1_parse_head(buf, size, &limits, &req, &why) <= 0)
        return 0;

    sy_upgrade_offer offers[SY_UPGRADE_MAX_OFFERS];
    size_t n = 0;
    sy_upgrade_answer answer;
    int rc = sy_upgrade_offers(&req, offers, &n, &answer);
    if (rc != 0 && !(rc == SY_EPROTO && answer.status == 400))
        abort();
    if (n > SY_UPGRADE_MAX_OFFERS || (answer.status != 0 && n != 0))
        abort();
    if (answer.status != 0 && answer.status != 400 && answer.status != 426)
        abort();
    if ((answer.status != 0) != (answer.why != NULL))
        abort();

    for (size_t i = 0; i < n; i++) {
        const sy_upgrade_offer *o = &offers[i];
        check_slice(o->name, buf, size);
        check_slice(o->version, buf, size);
        if (o->name.len == 0 || (o->version.p && o->version.len == 0))
            abort();
        if (o->kind < SY_UP_WEBSOCKET || o->kind > SY_UP_OTHER)
            abort();
        /* Its own name matches this offer or an earlier one. */
        int m = sy_upgrade_match(offers, n, o->name);
        if (m < 0 || (size_t)m > i)
            abort();
        if (o->kind == SY_UP_WEBSOCKET) {
            const sy_http1_header *key = sy_http1_find(&req, "sec-websocket-key");
            char accept[29];
            if (!key || sy_upgrade_ws_accept(key->value, accept) != 0 || accept[28] != '\0')
                abort();
        }
        if (o->kind == SY_UP_H2C) {
            const sy_http1_header *s = sy_http1_find(&req, "http2-settings");
            if (!s)
                abort();
            ssize_t len = sy_upgrade_base64url_decode(s->value, NULL, 0);
            if (len < 0 || len % 6 != 0)
                abort();
        }
    }
    return 0;
}
