/* bench/pmd_bench.c: permessage-deflate compression ratio and speed per preset, on JSON-like
 * chat messages (one line each, like examples/chat) and on 64 KiB JSON batches. Built and run
 * by bench/deflate.sh; links src/pmd.c, src/ws.c and src/buf.c directly (no server).
 *
 * For each preset it compresses the same message stream the way the server does (window,
 * memLevel, context kept or reset per message), inflates it back the way a client does, checks
 * the round trip, and prints bytes in, bytes out, the ratio, and MB/s of input for each side.
 * Timing is CPU time of this process (clock_gettime CLOCK_PROCESS_CPUTIME_ID). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "pmd.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *names[] = {"alice", "bob", "carol", "dave", "erin", "frank", "grace"};
static const char *words[] = {"hello",     "anyone", "around", "the",    "build", "is",
                              "green",     "again",  "lunch",  "at",     "noon",  "?",
                              "deploying", "now",    "ok",     "thanks", "see",   "you",
                              "tomorrow",  "👍",      "grüße"};

/* One chat event like examples/chat/server.lua publishes. */
static size_t chat_event(char *out, size_t cap, unsigned *seed, int i)
{
    char text[256];
    size_t t = 0;
    int nw = 3 + (int)(*seed % 12);
    for (int k = 0; k < nw && t < 200; k++) {
        *seed = *seed * 1103515245u + 12345u;
        t += (size_t)snprintf(text + t, sizeof text - t, "%s%s", k ? " " : "",
                              words[(*seed >> 16) % (sizeof words / sizeof *words)]);
    }
    return (size_t)snprintf(out, cap,
                            "{\"type\":\"message\",\"name\":\"%s\",\"text\":\"%s\","
                            "\"members\":%d,\"time\":%d.%03d}",
                            names[(unsigned)i % 7], text, 20 + i % 5, 1764160000 + i / 10,
                            (i * 37) % 1000);
}

typedef struct preset {
    const char *name;
    int bits, mem_level, reset;
} preset;

static void run(const preset *p, char **msgs, size_t *lens, int count, int rounds, const char *what)
{
    sy_deflater *d = sy_deflater_new(p->bits, p->mem_level, -1);
    sy_inflater *f = sy_inflater_new(p->bits);
    size_t maxlen = 0;
    for (int i = 0; i < count; i++)
        if (lens[i] > maxlen)
            maxlen = lens[i];
    size_t cap = sy_deflater_bound(d, maxlen);
    uint8_t **z = malloc(sizeof *z * (size_t)count);
    size_t *zl = malloc(sizeof *zl * (size_t)count);
    for (int i = 0; i < count; i++)
        z[i] = malloc(cap);
    double in = 0, out = 0, tc = 0, ti = 0;
    sy_buf b;
    sy_buf_init(&b, 0);
    for (int r = 0; r < rounds; r++) {
        double t0 = cpu_now();
        for (int i = 0; i < count; i++) {
            ssize_t n = sy_deflater_run(d, msgs[i], lens[i], p->reset, z[i], cap);
            if (n < 0) {
                fprintf(stderr, "deflate failed\n");
                exit(1);
            }
            zl[i] = (size_t)n;
        }
        double t1 = cpu_now();
        for (int i = 0; i < count; i++) {
            sy_buf_consume(&b, sy_buf_len(&b));
            if (sy_inflater_run(f, z[i], zl[i], 1, p->reset, &b, 1 << 24, NULL, NULL) != 0 ||
                sy_buf_len(&b) != lens[i] || memcmp(sy_buf_data(&b), msgs[i], lens[i]) != 0) {
                fprintf(stderr, "round trip failed\n");
                exit(1);
            }
        }
        double t2 = cpu_now();
        tc += t1 - t0;
        ti += t2 - t1;
        for (int i = 0; i < count; i++) {
            in += (double)lens[i];
            out += (double)zl[i];
        }
    }
    printf("%-8s %-22s %10.0f %10.0f %6.1f%% %9.1f %9.1f\n", p->name, what, in / rounds,
           out / rounds, 100.0 * out / in, in / tc / 1e6, in / ti / 1e6);
    for (int i = 0; i < count; i++)
        free(z[i]);
    free(z);
    free(zl);
    sy_buf_dispose(&b);
    sy_deflater_free(d);
    sy_inflater_free(f);
}

int main(int argc, char **argv)
{
    int count = argc > 1 ? atoi(argv[1]) : 20000;
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    static const preset presets[] = {
        {"shared", 15, 8, 1},
        {"small", 11, 4, 0},
        {"default", 15, 8, 0},
    };
    /* Single chat events. */
    char **msgs = malloc(sizeof *msgs * (size_t)count);
    size_t *lens = malloc(sizeof *lens * (size_t)count);
    unsigned seed = 42;
    for (int i = 0; i < count; i++) {
        msgs[i] = malloc(512);
        lens[i] = chat_event(msgs[i], 512, &seed, i);
    }
    /* 64 KiB batches: a JSON array of events (a history replay). */
    int nb = count / 400 > 0 ? count / 400 : 1;
    char **batch = malloc(sizeof *batch * (size_t)nb);
    size_t *blen = malloc(sizeof *blen * (size_t)nb);
    for (int i = 0; i < nb; i++) {
        batch[i] = malloc(65536 + 512);
        size_t n = 0;
        batch[i][n++] = '[';
        for (int k = 0; n < 65536 - 300; k++) {
            n += chat_event(batch[i] + n, 65536 + 512 - n, &seed, k);
            batch[i][n++] = ',';
        }
        batch[i][n - 1] = ']';
        blen[i] = n;
    }
    double avg = 0;
    for (int i = 0; i < count; i++)
        avg += (double)lens[i];
    printf("messages: %d chat events (average %.0f bytes), %d batches of ~64 KiB; %d rounds\n",
           count, avg / count, nb, rounds);
    printf("%-8s %-22s %10s %10s %7s %9s %9s\n", "preset", "payload", "bytes in", "bytes out",
           "ratio", "defl MB/s", "infl MB/s");
    for (size_t p = 0; p < sizeof presets / sizeof *presets; p++)
        run(&presets[p], msgs, lens, count, rounds, "chat event");
    for (size_t p = 0; p < sizeof presets / sizeof *presets; p++)
        run(&presets[p], batch, blen, nb, rounds, "64 KiB batch");
    return 0;
}
