/* libFuzzer target: permessage-deflate. The input is a Sec-WebSocket-Extensions value under
 * every preset, then a compressed payload inflated (split in two frames) under a limit, then a
 * message compressed and inflated back. */
#include <stdlib.h>

#include "pmd.h"

#define LIMIT 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_answer(const sy_pmd_params *p)
{
    char out[SY_WS_PMD_ANSWER_MAX];
    size_t n = sy_ws_pmd_format(p, out);
    if (n >= SY_WS_PMD_ANSWER_MAX || strlen(out) != n || strncmp(out, "permessage-deflate", 18))
        abort();
    if (p->server_window_bits < 8 || p->server_window_bits > 15 || p->client_window_bits < 8 ||
        p->client_window_bits > 15)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Negotiation: pure, bounded, and an answer only ever within range. */
    static const sy_pmd_config cfgs[] = {{1, 1, 15, 15}, {0, 0, 11, 11}, {0, 0, 15, 15}};
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        sy_pmd_params p;
        if (sy_ws_pmd_negotiate(sy_str_make((const char *)data, size), &cfgs[i], &p)) {
            check_answer(&p);
            if (cfgs[i].server_no_context_takeover && !p.server_no_context_takeover)
                abort();
            if (p.server_window_bits > cfgs[i].server_window_bits)
                abort();
        }
    }

    /* Inflating arbitrary bytes: never more than LIMIT out, and text that passes is UTF-8. */
    sy_inflater *f = sy_inflater_new(15);
    if (!f)
        return 0;
    sy_buf out;
    sy_buf_init(&out, LIMIT);
    sy_utf8 u = {0};
    size_t cut = size ? data[0] % (size + 1) : 0;
    int text = size && (data[0] & 1);
    int rc = sy_inflater_run(f, data, cut, 0, 1, &out, LIMIT, text ? &u : NULL, NULL);
    if (rc == 0)
        rc = sy_inflater_run(f, data + cut, size - cut, 1, 1, &out, LIMIT, text ? &u : NULL, NULL);
    if (sy_buf_len(&out) > LIMIT || out.cap > LIMIT)
        abort();
    if (rc == 0 && text && sy_utf8_complete(&u) &&
        !sy_utf8_valid((const uint8_t *)sy_buf_data(&out), sy_buf_len(&out)))
        abort();
    if (rc != 0 && rc != SY_ELIMIT && rc != SY_EPROTO && rc != SY_ENOMEM)
        abort();
    sy_buf_consume(&out, sy_buf_len(&out));

    /* Round trip through our compressor, kept context and all. */
    sy_deflater *d = sy_deflater_new(9 + (size ? data[size - 1] % 7 : 0), 8, -1);
    if (d) {
        size_t cap = sy_deflater_bound(d, size);
        uint8_t *z = malloc(cap);
        for (int round = 0; z && round < 2; round++) {
            ssize_t zl = sy_deflater_run(d, data, size, 0, z, cap);
            if (zl < 0)
                break;
            sy_buf_consume(&out, sy_buf_len(&out));
            rc = sy_inflater_run(f, z, (size_t)zl, 1, 0, &out, LIMIT, NULL, NULL);
            if (size <= LIMIT && (rc != 0 || sy_buf_len(&out) != size ||
                                  (size && memcmp(sy_buf_data(&out), data, size) != 0)))
                abort();
            if (size > LIMIT)
                break;
        }
        free(z);
        sy_deflater_free(d);
    }
    sy_buf_dispose(&out);
    sy_inflater_free(f);
    return 0;
}
