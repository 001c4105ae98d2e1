/* wsload: WebSocket load generator for bench/ws.sh: echo throughput and round-trip latency,
 * upgrades per second, and N idle connections held open. Loopback only; plain epoll, libc only.
 *
 * Build: gcc -O2 -std=c11 -Wall -Wextra -o wsload bench/wsload.c
 *
 * Modes:
 *   echo     N connections, P messages in flight on each: every echoed message is checked byte
 *            for byte against what was sent (in order), then the next one leaves.
 *   upgrade  C slots, each looping: connect, handshake (the 101 and its Sec-WebSocket-Accept are
 *            checked), close handshake (our 1000, the server's close frame, the server's FIN),
 *            close the socket, repeat.
 *   idle     open N connections, print "idle: N open", then hold them (answering pings) until
 *            the hold time ends or SIGINT/SIGTERM arrives.
 *   fanout   N subscriber connections (path -u, default /sub) and one publisher (path
 *            --pub-path, default /pub, on --pub-port, default -p) that sends --rate messages
 *            a second of -s bytes (at least 16: the send time in hex, then filler). The server
 *            app publishes each to the subscribers' topic (bench/fanout_app.lua). Counts
 *            messages delivered to the subscribers per second and the delay from send to
 *            receipt (p50/p99); with -C, server CPU per delivered message.
 *
 * Client frames are masked with a fresh random key each (RFC 6455 5.3). The last line of output
 * is "RESULT key=value ...", for scripts. Exit status: 0, or 1 when anything failed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAYLOAD (64u * 1024 * 1024)
#define PATTERN_SHIFTS 251 /* message k carries pattern[k % 251 ..]: reorders and repeats show */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum mode { MODE_ECHO, MODE_UPGRADE, MODE_IDLE, MODE_FANOUT };

enum state {
    ST_FREE,       /* no socket */
    ST_CONNECTING, /* connect() in progress */
    ST_HANDSHAKE,  /* request sent, waiting for the 101 */
    ST_OPEN,       /* WebSocket open */
    ST_CLOSING,    /* our close frame sent, waiting for the server's */
    ST_WAIT_EOF,   /* close frames exchanged, waiting for the server's FIN (RFC 6455 7.1.1) */
};

enum err {
    E_CONNECT,   /* connect failed */
    E_HANDSHAKE, /* not a valid 101 */
    E_PROTOCOL,  /* a frame we cannot accept */
    E_VERIFY,    /* echoed bytes differ from the sent ones */
    E_CLOSED,    /* the server closed or reset the connection */
    E_TIMEOUT,   /* connect, handshake, close or echo stalled past --timeout */
    E_COUNT
};
static const char *const err_names[E_COUNT] = {"connect", "handshake", "protocol",
                                               "verify",  "closed",    "timeout"};

typedef struct client {
    int fd;
    enum state state;
    int epoll_out;       /* EPOLLOUT is registered */
    uint64_t t_begin;    /* ns: this connection's connect() began */
    uint64_t t_progress; /* ns: last read, write or connect progress (stall check) */
    char accept[32];     /* the Sec-WebSocket-Accept we expect, NUL-terminated */
    uint8_t *in;         /* owned; input not yet parsed, at most in_cap bytes */
    size_t in_len;
    uint8_t *out; /* owned; out[out_off..out_len) waits for the socket */
    size_t out_off, out_len, out_cap;
    int have_hdr;         /* the header of the frame being read is parsed */
    int fop, ffin;        /* its opcode and FIN bit */
    uint64_t flen, fdone; /* its payload length and bytes consumed so far */
    int msg_op;           /* opcode of the data message being read, 0 between messages */
    uint64_t msg_done;    /* bytes of that message checked so far */
    uint8_t ctrl[125];    /* control frame payload */
    uint64_t sent, recvd; /* echo: messages sent, messages echoed back */
    uint64_t *sent_at;    /* owned; echo: ring of `depth` send times (ns) */
    uint8_t stamp[16];    /* fanout: the send time (hex) at the front of the message */
} client;

/* Two 64-bit lanes (a GCC/Clang vector extension): masking 16 bytes per XOR. */
typedef uint64_t u64x2 __attribute__((vector_size(16)));

/* Latency histogram: 64 linear sub-buckets per power of two of nanoseconds (< 1.6 % error). */
#define HIST_SUB 64
#define HIST_BUCKETS (HIST_SUB * 60)
typedef struct hist {
    uint64_t n, sum, min, max;
    uint64_t b[HIST_BUCKETS];
} hist;

static struct cfg {
    const char *host, *path;
    int port;
    enum mode mode;
    int conns, depth, binary, ramp;
    size_t size;
    double duration, warmup, timeout;
    long cpu_pid;
    int verbose;
    int all_echoed; /* echo: every connection must get at least one echo back */
    double rate;    /* fanout: messages the publisher sends per second */
    int pub_port;   /* fanout: the publisher's port (0: --port) */
    const char *pub_path;
} cfg = {"127.0.0.1", NULL, 0, MODE_ECHO, -1, 1, 0, 200, 32, 10, 1, 5, 0, 0, 0, 100, 0, "/pub"};

static struct run {
    int ep;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host_hdr[300];
    client *cl;
    int ncl;
    uint8_t *pattern; /* owned; size + PATTERN_SHIFTS bytes */
    uint64_t rng;
    int sending;           /* echo: new messages may leave */
    int opened;            /* connections that reached ST_OPEN (echo, idle: ramp progress) */
    int pending;           /* connections in ST_CONNECTING or ST_HANDSHAKE */
    int next_open;         /* echo, idle: index of the next connection to open */
    uint64_t wstart, wend; /* ns: the measured window, once scheduled */
    int scheduled;         /* wstart and wend are set */
    int measuring;         /* inside the window: completions count */
    uint64_t count;        /* messages (echo) or cycles (upgrade) completed in the window */
    uint64_t bytes;        /* echoed payload bytes in the window */
    uint64_t errors[E_COUNT];
    uint64_t errors_total;
    hist lat;   /* echo: message round trip; upgrade: connect to 101 */
    hist cycle; /* upgrade: connect to the server's FIN */
    long srv_ticks0, srv_ticks1;
    long long srv_io0[2], srv_io1[2]; /* the server's read and write system calls (syscr, syscw) */
    double self_cpu0, self_cpu1;
    client *pub;                      /* fanout: the publisher (the last of cl) */
    struct sockaddr_storage pub_addr; /* fanout: its server */
    uint64_t pub_start, pub_sent;     /* fanout: when sending began; messages sent */
    uint64_t published;               /* fanout: messages sent inside the window */
} R;

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("wsload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

/* xorshift64*: mask keys and handshake nonces; not for secrets, which a load tool has none of. */
static uint64_t rnd(void)
{
    R.rng ^= R.rng >> 12;
    R.rng ^= R.rng << 25;
    R.rng ^= R.rng >> 27;
    return R.rng * 0x2545F4914F6CDD1DULL;
}

/* ---- SHA-1 (FIPS 180-4) and base64 (RFC 4648), for the accept key ---------------------------- */

static uint32_t rol32(uint32_t x, int k)
{
    return (x << k) | (x >> (32 - k));
}

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

static void sha1(const void *msg, size_t len, uint8_t out[20])
{
    const uint8_t *m = msg;
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    uint8_t blk[64];
    size_t i = 0;
    for (; i + 64 <= len; i += 64)
        sha1_block(h, m + i);
    size_t r = len - i;
    memset(blk, 0, sizeof blk);
    memcpy(blk, m + i, r);
    blk[r] = 0x80;
    if (r >= 56) {
        sha1_block(h, blk);
        memset(blk, 0, sizeof blk);
    }
    uint64_t bits = (uint64_t)len * 8;
    for (int j = 0; j < 8; j++)
        blk[63 - j] = (uint8_t)(bits >> (8 * j));
    sha1_block(h, blk);
    for (int j = 0; j < 5; j++) {
        out[4 * j] = (uint8_t)(h[j] >> 24);
        out[4 * j + 1] = (uint8_t)(h[j] >> 16);
        out[4 * j + 2] = (uint8_t)(h[j] >> 8);
        out[4 * j + 3] = (uint8_t)h[j];
    }
}

/* Writes the base64 of p[0..n) and a NUL to out (4 * ceil(n / 3) + 1 bytes). */
static void base64(const uint8_t *p, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *out++ = tab[v >> 18];
        *out++ = tab[(v >> 12) & 63];
        *out++ = tab[(v >> 6) & 63];
        *out++ = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *out++ = tab[v >> 18];
        *out++ = tab[(v >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *out++ = tab[v >> 18];
        *out++ = tab[(v >> 12) & 63];
        *out++ = tab[(v >> 6) & 63];
        *out++ = '=';
    }
    *out = 0;
}

/* RFC 6455 4.2.2: base64(SHA-1(key + GUID)). */
static void accept_key(const char *key, char out[32])
{
    char buf[64];
    uint8_t d[20];
    int n = snprintf(buf, sizeof buf, "%s%s", key, WS_GUID);
    sha1(buf, (size_t)n, d);
    base64(d, sizeof d, out);
}

/* ---- histogram ------------------------------------------------------------------------------- */

static size_t hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (size_t)v;
    int e = 63 - __builtin_clzll(v); /* >= 6 */
    size_t i = (size_t)(e - 5) * HIST_SUB + (size_t)((v >> (e - 6)) & (HIST_SUB - 1));
    return i < HIST_BUCKETS ? i : HIST_BUCKETS - 1;
}

static uint64_t hist_value(size_t i) /* middle of bucket i */
{
    if (i < HIST_SUB)
        return i;
    int e = (int)(i / HIST_SUB) + 5;
    uint64_t lo = ((uint64_t)HIST_SUB + i % HIST_SUB) << (e - 6);
    return lo + ((1ull << (e - 6)) >> 1);
}

static void hist_add(hist *h, uint64_t v)
{
    if (h->n == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->n++;
    h->sum += v;
    h->b[hist_index(v)]++;
}

static double hist_pct_us(const hist *h, double pct)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(pct / 100.0 * (double)h->n + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank >= h->n)
        return (double)h->max / 1e3;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = hist_value(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return (double)v / 1e3;
        }
    }
    return (double)h->max / 1e3;
}

/* ---- CPU accounting -------------------------------------------------------------------------- */

/* utime+stime+cutime+cstime of a process, in clock ticks; -1 when unreadable. */
static long proc_ticks(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* comm may contain spaces and parentheses */
    if (!p)
        return -1;
    long v[15];
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime cutime cstime(17) */
    if (sscanf(p + 2, "%*c %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld", &v[0], &v[1],
               &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11], &v[12],
               &v[13]) != 14)
        return -1;
    return v[10] + v[11] + v[12] + v[13];
}

/* The read-type and write-type system calls pid has made (/proc/PID/io syscr, syscw): out[0],
 * out[1]; -1 each when unreadable. epoll_wait is in neither. */
static void proc_io(long pid, long long out[2])
{
    char path[64], line[128];
    out[0] = out[1] = -1;
    snprintf(path, sizeof path, "/proc/%ld/io", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "syscr: ", 7) == 0)
            out[0] = atoll(line + 7);
        else if (strncmp(line, "syscw: ", 7) == 0)
            out[1] = atoll(line + 7);
    }
    fclose(f);
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---- connections ----------------------------------------------------------------------------- */

static void watch(client *c, int want_out)
{
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(R.ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
    c->epoll_out = want_out;
}

static void drop(client *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also leaves the epoll set */
    if (c->state == ST_CONNECTING || c->state == ST_HANDSHAKE)
        R.pending--;
    c->fd = -1;
    c->state = ST_FREE;
    c->in_len = c->out_off = c->out_len = 0;
    c->have_hdr = c->msg_op = 0;
    c->epoll_out = 0;
}

/* Counts an error and closes the connection. Returns -1 for `return fail(...)`. */
static int fail(client *c, enum err e, const char *fmt, ...)
{
    R.errors[e]++;
    R.errors_total++;
    if (cfg.verbose || R.errors[e] <= 3) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "wsload: conn %td: %s error: ", c - R.cl, err_names[e]);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    drop(c);
    return -1;
}

static void out_reserve(client *c, size_t n)
{
    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + n <= c->out_cap)
        return;
    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + n <= c->out_cap)
            return;
    }
    size_t cap = c->out_cap ? c->out_cap : 256;
    while (cap < c->out_len + n)
        cap *= 2;
    c->out = realloc(c->out, cap);
    if (!c->out)
        die("out of memory");
    c->out_cap = cap;
}

/* Queues one masked frame (RFC 6455 5.2, 5.3): FIN, opcode, a fresh random masking key. */
static void queue_frame(client *c, int opcode, const uint8_t *p, size_t n)
{
    out_reserve(c, 14 + n);
    uint8_t *h = c->out + c->out_len;
    size_t hl = 2;
    h[0] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        h[1] = (uint8_t)(0x80 | n);
    } else if (n <= 0xFFFF) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    uint32_t key = (uint32_t)rnd();
    memcpy(h + hl, &key, 4);
    uint8_t *dst = h + hl + 4;
    uint64_t k8 = (uint64_t)key << 32 | key; /* the key's bytes twice, in memory order */
    u64x2 k16 = {k8, k8};
    size_t i = 0;
    for (; i + 64 <= n; i += 64) { /* 16-byte vectors (SSE2 on x86-64): big payloads */
        u64x2 v[4];
        memcpy(v, p + i, 64);
        for (int j = 0; j < 4; j++)
            v[j] ^= k16;
        memcpy(dst + i, v, 64);
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= k8;
        memcpy(dst + i, &v, 8);
    }
    const uint8_t *kb = h + hl;
    for (; i < n; i++)
        dst[i] = p[i] ^ kb[i & 3];
    c->out_len += hl + 4 + n;
}

/* Writes what is queued; registers EPOLLOUT while some of it waits. */
static int flush(client *c, uint64_t now)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            c->t_progress = now;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->epoll_out)
                watch(c, 1);
            return 0;
        }
        return fail(c, E_CLOSED, "send: %s", n < 0 ? strerror(errno) : "wrote nothing");
    }
    c->out_off = c->out_len = 0;
    if (c->epoll_out)
        watch(c, 0);
    return 0;
}

static void queue_message(client *c, uint64_t now)
{
    queue_frame(c, cfg.binary ? 2 : 1, R.pattern + c->sent % PATTERN_SHIFTS, cfg.size);
    c->sent_at[c->sent % (uint64_t)cfg.depth] = now;
    c->sent++;
}

static void start_echo(client *c, uint64_t now)
{
    for (int i = 0; i < cfg.depth; i++)
        queue_message(c, now);
    c->t_progress = now;
    flush(c, now);
}

/* Starts connect() and queues the upgrade request behind it. */
static int open_conn(client *c, uint64_t now)
{
    int fd = socket(R.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE)
            die("socket: %s (raise ulimit -n)", strerror(errno));
        R.errors[E_CONNECT]++;
        R.errors_total++;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = ST_CONNECTING;
    c->t_begin = c->t_progress = now;
    c->in_len = c->out_off = c->out_len = 0;
    c->have_hdr = c->msg_op = 0;
    c->sent = c->recvd = 0;
    R.pending++;

    uint8_t nonce[16];
    uint64_t a = rnd(), b = rnd();
    memcpy(nonce, &a, 8);
    memcpy(nonce + 8, &b, 8);
    char key[32];
    base64(nonce, sizeof nonce, key);
    accept_key(key, c->accept);
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     c == R.pub ? cfg.pub_path : cfg.path, R.host_hdr, key);
    out_reserve(c, (size_t)n);
    memcpy(c->out + c->out_len, req, (size_t)n);
    c->out_len += (size_t)n;

    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(R.ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
    c->epoll_out = 1;
    if (connect(fd, (struct sockaddr *)(c == R.pub ? &R.pub_addr : &R.addr), R.addrlen) != 0 &&
        errno != EINPROGRESS)
        return fail(c, E_CONNECT, "connect: %s", strerror(errno));
    return 0;
}

static int header_is(const char *line, size_t len, const char *name, const char **val, size_t *vlen)
{
    size_t nl = strlen(name);
    if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
        return 0;
    const char *v = line + nl + 1, *e = line + len;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *val = v;
    *vlen = (size_t)(e - v);
    return 1;
}

/* Checks the 101 (RFC 6455 4.1, client requirements 1-4). Returns the head's length, 0 when it
 * is not complete yet, -1 after fail(). */
static long check_handshake(client *c)
{
    uint8_t *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end)
        return c->in_len >= 8192 ? fail(c, E_HANDSHAKE, "response head over 8 KiB") : 0;
    size_t hlen = (size_t)(end - c->in) + 4;
    const char *p = (const char *)c->in, *lim = (const char *)end;
    if (hlen < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0) {
        const char *eol = memchr(p, '\r', (size_t)(lim - p));
        return fail(c, E_HANDSHAKE, "status line '%.*s'", (int)(eol - p), p);
    }
    int got_upgrade = 0, got_conn = 0, got_accept = 0;
    const char *line = memchr(p, '\n', (size_t)(lim - p));
    while (line && line < lim) {
        line++;
        const char *eol = memchr(line, '\r', (size_t)(lim - line));
        if (!eol)
            eol = lim;
        size_t len = (size_t)(eol - line), vl;
        const char *v;
        if (header_is(line, len, "upgrade", &v, &vl))
            got_upgrade = vl == 9 && strncasecmp(v, "websocket", 9) == 0;
        else if (header_is(line, len, "connection", &v, &vl))
            got_conn = memmem(v, vl, "pgrade", 6) != NULL; /* "Upgrade", any case of U */
        else if (header_is(line, len, "sec-websocket-accept", &v, &vl))
            got_accept = vl == strlen(c->accept) && memcmp(v, c->accept, vl) == 0;
        line = memchr(eol, '\n', (size_t)(lim - eol) + 1);
    }
    if (!got_upgrade || !got_conn || !got_accept)
        return fail(c, E_HANDSHAKE, "101 without %s",
                    !got_upgrade ? "Upgrade: websocket"
                    : !got_conn  ? "Connection: Upgrade"
                                 : "the right Sec-WebSocket-Accept");
    return (long)hlen;
}

/* Fanout: the publisher's next message, stamped with its send time. */
static void publish_one(uint64_t now)
{
    uint8_t *m = xmalloc(cfg.size);
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, now);
    memcpy(m, hex, 16);
    memcpy(m + 16, R.pattern, cfg.size - 16);
    queue_frame(R.pub, cfg.binary ? 2 : 1, m, cfg.size);
    free(m);
    R.pub_sent++;
    if (R.measuring)
        R.published++;
}

/* Fanout: a published message reached a subscriber. */
static int on_delivered(client *c, uint64_t now)
{
    if (c->msg_done != cfg.size)
        return fail(c, E_VERIFY, "message of %" PRIu64 " bytes, sent %zu", c->msg_done, cfg.size);
    char hex[17];
    memcpy(hex, c->stamp, 16);
    hex[16] = 0;
    uint64_t t = strtoull(hex, NULL, 16);
    c->recvd++;
    c->t_progress = now;
    if (R.measuring) {
        R.count++;
        R.bytes += cfg.size;
        hist_add(&R.lat, now > t ? now - t : 0);
    }
    return 0;
}

/* An echoed message is complete: check it, time it, send the next. */
static int on_message(client *c, uint64_t now)
{
    if (cfg.mode == MODE_FANOUT)
        return on_delivered(c, now);
    if (c->msg_done != cfg.size)
        return fail(c, E_VERIFY, "message %" PRIu64 ": %" PRIu64 " bytes, sent %zu", c->recvd,
                    c->msg_done, cfg.size);
    if (c->msg_op != (cfg.binary ? 2 : 1))
        return fail(c, E_VERIFY, "message %" PRIu64 ": opcode %d", c->recvd, c->msg_op);
    uint64_t t = c->sent_at[c->recvd % (uint64_t)cfg.depth];
    c->recvd++;
    c->t_progress = now;
    if (R.measuring) {
        R.count++;
        R.bytes += cfg.size;
        hist_add(&R.lat, now - t);
    }
    if (R.sending)
        queue_message(c, now);
    return 0;
}

static int on_control(client *c, uint64_t now)
{
    switch (c->fop) {
    case 9: /* ping: RFC 6455 5.5.3, the pong carries the same payload */
        if (c->state == ST_OPEN)
            queue_frame(c, 10, c->ctrl, (size_t)c->flen);
        return 0;
    case 10: return 0;
    case 8: {
        int code = c->flen >= 2 ? c->ctrl[0] << 8 | c->ctrl[1] : 1005;
        if (c->state == ST_CLOSING) {
            c->state = ST_WAIT_EOF;
            c->t_progress = now;
            return 0;
        }
        return fail(c, E_CLOSED, "server sent close %d '%.*s'", code,
                    c->flen > 2 ? (int)c->flen - 2 : 0, (const char *)c->ctrl + 2);
    }
    default: return fail(c, E_PROTOCOL, "control opcode %d", c->fop);
    }
}

/* Parses server frames in c->in. Payload is checked as it streams by and never buffered, so
 * only a partial frame header (< 14 bytes) is left in c->in afterwards. */
static int on_frames(client *c, uint64_t now)
{
    size_t pos = 0;
    for (;;) {
        if (!c->have_hdr) {
            size_t avail = c->in_len - pos;
            if (avail < 2)
                break;
            const uint8_t *p = c->in + pos;
            uint64_t len = p[1] & 0x7f;
            size_t hl = len == 126 ? 4 : len == 127 ? 10 : 2;
            if (avail < hl)
                break;
            if (p[1] & 0x80)
                return fail(c, E_PROTOCOL, "masked frame from the server");
            if (p[0] & 0x70)
                return fail(c, E_PROTOCOL, "RSV bits set without an extension");
            if (len == 126) {
                len = (uint64_t)p[2] << 8 | p[3];
            } else if (len == 127) {
                len = 0;
                for (int i = 0; i < 8; i++)
                    len = len << 8 | p[2 + i];
            }
            c->fop = p[0] & 0x0f;
            c->ffin = p[0] >> 7;
            c->flen = len;
            c->fdone = 0;
            c->have_hdr = 1;
            pos += hl;
            if (c->fop >= 8) {
                if (!c->ffin || len > 125)
                    return fail(c, E_PROTOCOL, "fragmented or long control frame");
            } else if (c->fop == 0) {
                if (!c->msg_op)
                    return fail(c, E_PROTOCOL, "continuation without a message");
            } else if (c->fop <= 2) {
                if (c->msg_op)
                    return fail(c, E_PROTOCOL, "new message inside a fragmented one");
                if ((cfg.mode != MODE_ECHO && cfg.mode != MODE_FANOUT) || c->state != ST_OPEN ||
                    c == R.pub)
                    return fail(c, E_PROTOCOL, "unexpected data message");
                if (cfg.mode == MODE_ECHO && c->recvd >= c->sent)
                    return fail(c, E_VERIFY, "more messages than were sent");
                c->msg_op = c->fop;
                c->msg_done = 0;
            } else {
                return fail(c, E_PROTOCOL, "reserved opcode %d", c->fop);
            }
        }
        size_t avail = c->in_len - pos;
        uint64_t want = c->flen - c->fdone;
        size_t n = avail < want ? avail : (size_t)want;
        const uint8_t *p = c->in + pos;
        if (c->fop >= 8) {
            memcpy(c->ctrl + c->fdone, p, n);
        } else if (n && cfg.mode == MODE_FANOUT) {
            if (c->msg_done < 16)
                memcpy(c->stamp + c->msg_done, p, c->msg_done + n > 16 ? 16 - c->msg_done : n);
            c->msg_done += n;
        } else if (n) {
            if (c->msg_done + n > cfg.size)
                return fail(c, E_VERIFY, "message %" PRIu64 " longer than the %zu bytes sent",
                            c->recvd, cfg.size);
            const uint8_t *exp = R.pattern + c->recvd % PATTERN_SHIFTS + c->msg_done;
            if (memcmp(p, exp, n) != 0) {
                size_t i = 0;
                while (p[i] == exp[i])
                    i++;
                return fail(c, E_VERIFY, "message %" PRIu64 " differs at byte %" PRIu64, c->recvd,
                            c->msg_done + i);
            }
            c->msg_done += n;
        }
        c->fdone += n;
        pos += n;
        if (c->fdone < c->flen)
            break; /* the rest of the payload is still on its way */
        c->have_hdr = 0;
        if (c->fop >= 8) {
            if (on_control(c, now) != 0)
                return -1;
        } else if (c->ffin) {
            if (on_message(c, now) != 0)
                return -1;
            c->msg_op = 0;
        }
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    return 0;
}

static void start_cycle(client *c, uint64_t now);

/* Upgrade mode: one cycle ended with the server's FIN. */
static void end_cycle(client *c, uint64_t now)
{
    if (R.measuring) {
        R.count++;
        hist_add(&R.cycle, now - c->t_begin);
    }
    drop(c);
    if (R.sending)
        start_cycle(c, now);
}

static void start_cycle(client *c, uint64_t now)
{
    /* A connect error (say, no ephemeral port left) is counted; the next loop turn retries. */
    open_conn(c, now);
}

static void on_open(client *c, uint64_t now)
{
    c->state = ST_OPEN;
    R.pending--;
    switch (cfg.mode) {
    case MODE_ECHO:
        R.opened++; /* its messages leave once every connection is open */
        break;
    case MODE_IDLE:
    case MODE_FANOUT: R.opened++; break;
    case MODE_UPGRADE: {
        if (R.measuring)
            hist_add(&R.lat, now - c->t_begin);
        uint8_t code[2] = {1000 >> 8, 1000 & 0xff};
        queue_frame(c, 8, code, 2);
        c->state = ST_CLOSING;
        break;
    }
    }
}

static void on_readable(client *c, uint64_t now)
{
    size_t cap = cfg.mode == MODE_ECHO || cfg.mode == MODE_FANOUT ? 65536 : 8192;
    ssize_t n = recv(c->fd, c->in + c->in_len, cap - c->in_len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        fail(c, c->state == ST_HANDSHAKE ? E_HANDSHAKE : E_CLOSED, "recv: %s", strerror(errno));
        return;
    }
    if (n == 0) {
        if (c->state == ST_WAIT_EOF)
            end_cycle(c, now);
        else
            fail(c, c->state == ST_HANDSHAKE ? E_HANDSHAKE : E_CLOSED,
                 "the server closed the connection (%s)",
                 c->state == ST_HANDSHAKE ? "during the handshake"
                 : c->state == ST_CLOSING ? "without a close frame"
                                          : "while open");
        return;
    }
    c->in_len += (size_t)n;
    c->t_progress = now;
    if (c->state == ST_HANDSHAKE) {
        long hl = check_handshake(c);
        if (hl <= 0)
            return;
        memmove(c->in, c->in + hl, c->in_len - (size_t)hl);
        c->in_len -= (size_t)hl;
        on_open(c, now);
    }
    if (c->state == ST_WAIT_EOF && c->in_len > 0) {
        fail(c, E_PROTOCOL, "bytes after the close frame");
        return;
    }
    if (on_frames(c, now) != 0)
        return;
    flush(c, now);
}

static void on_writable(client *c, uint64_t now)
{
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail(c, E_CONNECT, "connect: %s", strerror(err));
            return;
        }
        c->state = ST_HANDSHAKE;
        c->t_progress = now;
    }
    flush(c, now);
}

/* Connections stuck longer than --timeout fail. */
static void check_stalls(uint64_t now)
{
    uint64_t limit = (uint64_t)(cfg.timeout * 1e9);
    for (int i = 0; i < R.ncl; i++) {
        client *c = &R.cl[i];
        if (c->state == ST_FREE || now - c->t_progress < limit)
            continue;
        if (c->state == ST_OPEN && (cfg.mode != MODE_ECHO || !R.sending || c->recvd == c->sent))
            continue;
        static const char *const what[] = {"", "connect", "101", "echo", "close frame", "FIN"};
        fail(c, E_TIMEOUT, "no %s within %.1f s", what[c->state], cfg.timeout);
        if (cfg.mode == MODE_UPGRADE && R.sending)
            start_cycle(c, now);
    }
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: wsload -p PORT [options]\n"
            "  -H, --host HOST       server address, loopback only (default 127.0.0.1)\n"
            "  -p, --port PORT       server port\n"
            "  -u, --path PATH       request path (default /)\n"
            "  -m, --mode MODE       echo | upgrade | idle | fanout (default echo)\n"
            "  -c, --conns N         echo: connections (100); upgrade: concurrent cycles (50);\n"
            "                        idle: connections to hold (10000)\n"
            "  -P, --depth P         echo: messages in flight per connection (default 1)\n"
            "  -s, --size S          echo: payload bytes (default 32)\n"
            "  -b, --binary          echo: binary messages (default text)\n"
            "  -d, --duration SECS   measured seconds; idle: hold time (default 10)\n"
            "  -w, --warmup SECS     unmeasured seconds before the window (default 1)\n"
            "  -C, --cpu-pid PID     report that process's CPU time (utime+stime, children too)\n"
            "                        over the window, and per message or upgrade\n"
            "  -r, --ramp N          connections opened at once while ramping up (default 200)\n"
            "  -T, --timeout SECS    connect, handshake, close and echo stall limit (default 5)\n"
            "  -A, --all-echoed      echo: fail unless every connection got at least one echo\n"
            "                        back (warmup included; RESULT echoed= counts them); the\n"
            "                        window runs on until each got one or failed (-T)\n"
            "  -v, --verbose         print every error, not only the first 3 of each kind\n"
            "  -R, --rate M          fanout: messages the publisher sends per second (100)\n"
            "      --pub-port PORT   fanout: the publisher's server port (default --port)\n"
            "      --pub-path PATH   fanout: the publisher's path (default /pub; -u: /sub)\n");
}

static double parse_num(const char *s, const char *name, double lo, double hi)
{
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (errno || e == s || *e || !(v >= lo && v <= hi))
        die("%s must be a number in [%g, %g] (got '%s')", name, lo, hi, s);
    return v;
}

static void resolve(void)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg.port);
    int rc = getaddrinfo(cfg.host, port, &hints, &res);
    if (rc != 0)
        die("%s: %s", cfg.host, gai_strerror(rc));
    memcpy(&R.addr, res->ai_addr, res->ai_addrlen);
    R.addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    int loopback = 0;
    if (R.addr.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&R.addr;
        loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else if (R.addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&R.addr;
        loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    }
    if (!loopback)
        die("%s is not a loopback address: wsload only loads servers on this machine", cfg.host);
    memcpy(&R.pub_addr, &R.addr, sizeof R.addr);
    int pp = cfg.pub_port ? cfg.pub_port : cfg.port;
    if (R.pub_addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&R.pub_addr)->sin_port = htons((uint16_t)pp);
    else
        ((struct sockaddr_in6 *)&R.pub_addr)->sin6_port = htons((uint16_t)pp);
    if (strchr(cfg.host, ':'))
        snprintf(R.host_hdr, sizeof R.host_hdr, "[%s]:%d", cfg.host, cfg.port);
    else
        snprintf(R.host_hdr, sizeof R.host_hdr, "%s:%d", cfg.host, cfg.port);
}

static void self_test(void)
{
    char a[32];
    accept_key("dGhlIHNhbXBsZSBub25jZQ==", a); /* RFC 6455 1.3 */
    if (strcmp(a, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != 0)
        die("self-test: accept key %s", a);
}

static void open_more(uint64_t now)
{
    while (R.next_open < R.ncl && R.pending < cfg.ramp && !stop_signal)
        open_conn(&R.cl[R.next_open++], now);
}

/* Echo: connections that got at least one message back (warmup included). */
static int echoed_conns(void)
{
    int n = 0;
    for (int i = 0; i < R.ncl; i++)
        n += R.cl[i].recvd > 0;
    return n;
}

/* -A: every connection got an echo back or failed (a stall fails it after -T), so the run can
 * end: on a slow machine the window alone may be too short for the last ones to be served. */
static int all_heard(void)
{
    for (int i = 0; i < R.ncl; i++)
        if (R.cl[i].recvd == 0 && R.cl[i].state == ST_OPEN)
            return 0;
    return 1;
}

static void report(uint64_t wall_ns)
{
    const char *mname[] = {"echo", "upgrade", "idle", "fanout"};
    double secs = (double)wall_ns / 1e9;
    double rate = secs > 0 ? (double)R.count / secs : 0;
    double mbs = secs > 0 ? (double)R.bytes / secs / 1e6 : 0;
    long hz = sysconf(_SC_CLK_TCK);
    double srv_s = -1, srv_pct = -1, srv_us = -1;
    if (cfg.cpu_pid && R.srv_ticks0 >= 0 && R.srv_ticks1 >= 0) {
        srv_s = (double)(R.srv_ticks1 - R.srv_ticks0) / (double)hz;
        srv_pct = secs > 0 ? 100 * srv_s / secs : 0;
        srv_us = R.count ? srv_s * 1e6 / (double)R.count : 0;
    }
    double load_pct = secs > 0 ? 100 * (R.self_cpu1 - R.self_cpu0) / secs : 0;
    /* Messages (or upgrades) per server read and per server write: how well batched the
     * server's system calls were. -1: unknown; the kernel counts read/readv and write/writev
     * only, not recv or send/sendmsg. */
    double per_read = -1, per_write = -1;
    if (cfg.cpu_pid && R.srv_io0[0] >= 0 && R.srv_io1[0] >= 0) {
        long long r = R.srv_io1[0] - R.srv_io0[0], w = R.srv_io1[1] - R.srv_io0[1];
        per_read = r > 0 ? (double)R.count / (double)r : -1;
        per_write = w > 0 ? (double)R.count / (double)w : -1;
    }
    const hist *h = &R.lat;

    if (cfg.mode == MODE_ECHO) {
        printf("wsload: echo ws://%s%s  %d conns x depth %d, %zu B %s, %.2f s measured\n",
               R.host_hdr, cfg.path, cfg.conns, cfg.depth, cfg.size, cfg.binary ? "binary" : "text",
               secs);
        printf("  messages     %" PRIu64 "  (%.0f msg/s, %.2f MB/s payload each way)\n", R.count,
               rate, mbs);
        printf("  round trip   p50 %.1f us  p90 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us\n",
               hist_pct_us(h, 50), hist_pct_us(h, 90), hist_pct_us(h, 99), hist_pct_us(h, 99.9),
               (double)h->max / 1e3);
    } else if (cfg.mode == MODE_UPGRADE) {
        printf("wsload: upgrade ws://%s%s  %d concurrent, %.2f s measured\n", R.host_hdr, cfg.path,
               cfg.conns, secs);
        printf("  cycles       %" PRIu64 "  (%.0f upgrades/s: connect, 101, close, FIN)\n", R.count,
               rate);
        printf("  to 101       p50 %.1f us  p99 %.1f us\n", hist_pct_us(h, 50), hist_pct_us(h, 99));
        printf("  whole cycle  p50 %.1f us  p99 %.1f us\n", hist_pct_us(&R.cycle, 50),
               hist_pct_us(&R.cycle, 99));
    } else if (cfg.mode == MODE_FANOUT) {
        printf("wsload: fanout ws://%s%s  %d subscribers, %.0f msg/s of %zu B published, %.2f s "
               "measured\n",
               R.host_hdr, cfg.path, cfg.conns, cfg.rate, cfg.size, secs);
        printf("  delivered    %" PRIu64 " of %" PRIu64 " x %d (%.0f msg/s to subscribers)\n",
               R.count, R.published, cfg.conns, rate);
        printf("  delay        p50 %.1f us  p90 %.1f us  p99 %.1f us  max %.1f us\n",
               hist_pct_us(h, 50), hist_pct_us(h, 90), hist_pct_us(h, 99), (double)h->max / 1e3);
    } else {
        printf("wsload: idle ws://%s%s  %d of %d open, held %.2f s\n", R.host_hdr, cfg.path,
               R.opened, cfg.conns, secs);
    }
    if (srv_s >= 0)
        printf("  server cpu   %.2f s (%.1f %%), %.2f us per %s\n", srv_s, srv_pct, srv_us,
               cfg.mode == MODE_UPGRADE ? "upgrade" : "message");
    if (per_read >= 0 || per_write >= 0)
        printf("  server i/o   %.2f %s per read, %.2f per write (system calls; -1: not counted)\n",
               per_read, cfg.mode == MODE_UPGRADE ? "upgrades" : "messages", per_write);
    if (cfg.mode == MODE_ECHO)
        printf("  echoed       %d of %d connections got at least one echo\n", echoed_conns(),
               cfg.conns);
    printf("  wsload cpu   %.1f %%\n", load_pct);
    printf("  errors       %" PRIu64, R.errors_total);
    for (int e = 0; e < E_COUNT; e++)
        if (R.errors[e])
            printf("  %s=%" PRIu64, err_names[e], R.errors[e]);
    printf("\n");

    printf("RESULT mode=%s conns=%d depth=%d size=%zu type=%s secs=%.3f count=%" PRIu64
           " rate=%.1f mb_s=%.3f p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f"
           " cycle_p50_us=%.1f cycle_p99_us=%.1f opened=%d srv_cpu_s=%.2f srv_cpu_pct=%.1f"
           " srv_cpu_us=%.3f load_cpu_pct=%.1f echoed=%d errors=%" PRIu64
           " srv_per_read=%.2f srv_per_write=%.2f\n",
           mname[cfg.mode], cfg.conns, cfg.depth, cfg.size, cfg.binary ? "binary" : "text", secs,
           R.count, rate, mbs, hist_pct_us(h, 50), hist_pct_us(h, 90), hist_pct_us(h, 99),
           hist_pct_us(h, 99.9), (double)h->max / 1e3, hist_pct_us(&R.cycle, 50),
           hist_pct_us(&R.cycle, 99), R.opened, srv_s, srv_pct, srv_us, load_pct,
           cfg.mode == MODE_ECHO ? echoed_conns() : 0, R.errors_total, per_read, per_write);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", required_argument, 0, 'H'},     {"port", required_argument, 0, 'p'},
        {"path", required_argument, 0, 'u'},     {"mode", required_argument, 0, 'm'},
        {"conns", required_argument, 0, 'c'},    {"depth", required_argument, 0, 'P'},
        {"size", required_argument, 0, 's'},     {"binary", no_argument, 0, 'b'},
        {"duration", required_argument, 0, 'd'}, {"warmup", required_argument, 0, 'w'},
        {"cpu-pid", required_argument, 0, 'C'},  {"ramp", required_argument, 0, 'r'},
        {"timeout", required_argument, 0, 'T'},  {"verbose", no_argument, 0, 'v'},
        {"all-echoed", no_argument, 0, 'A'},     {"help", no_argument, 0, 'h'},
        {"rate", required_argument, 0, 'R'},     {"pub-port", required_argument, 0, 1},
        {"pub-path", required_argument, 0, 2},   {0, 0, 0, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "H:p:u:m:c:P:s:bd:w:C:r:T:vAhR:", longopts, NULL)) !=
           -1) {
        switch (opt) {
        case 'H': cfg.host = optarg; break;
        case 'p': cfg.port = (int)parse_num(optarg, "--port", 1, 65535); break;
        case 'u':
            if (optarg[0] != '/' || strpbrk(optarg, " \r\n") || strlen(optarg) > 512)
                die("--path must start with / and hold no spaces or line breaks");
            cfg.path = optarg;
            break;
        case 'm':
            if (strcmp(optarg, "echo") == 0)
                cfg.mode = MODE_ECHO;
            else if (strcmp(optarg, "upgrade") == 0)
                cfg.mode = MODE_UPGRADE;
            else if (strcmp(optarg, "idle") == 0)
                cfg.mode = MODE_IDLE;
            else if (strcmp(optarg, "fanout") == 0)
                cfg.mode = MODE_FANOUT;
            else
                die("--mode must be echo, upgrade, idle or fanout");
            break;
        case 'c': cfg.conns = (int)parse_num(optarg, "--conns", 1, 1000000); break;
        case 'P': cfg.depth = (int)parse_num(optarg, "--depth", 1, 1 << 20); break;
        case 's': cfg.size = (size_t)parse_num(optarg, "--size", 0, MAX_PAYLOAD); break;
        case 'b': cfg.binary = 1; break;
        case 'd': cfg.duration = parse_num(optarg, "--duration", 0.1, 86400); break;
        case 'w': cfg.warmup = parse_num(optarg, "--warmup", 0, 3600); break;
        case 'C': cfg.cpu_pid = (long)parse_num(optarg, "--cpu-pid", 1, 1e9); break;
        case 'r': cfg.ramp = (int)parse_num(optarg, "--ramp", 1, 100000); break;
        case 'T': cfg.timeout = parse_num(optarg, "--timeout", 0.1, 3600); break;
        case 'v': cfg.verbose = 1; break;
        case 'A': cfg.all_echoed = 1; break;
        case 'h': usage(stdout); return 0;
        case 'R': cfg.rate = parse_num(optarg, "--rate", 0.1, 1e7); break;
        case 1: cfg.pub_port = (int)parse_num(optarg, "--pub-port", 1, 65535); break;
        case 2:
            if (optarg[0] != '/' || strpbrk(optarg, " \r\n") || strlen(optarg) > 512)
                die("--pub-path must start with / and hold no spaces or line breaks");
            cfg.pub_path = optarg;
            break;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || !cfg.port) {
        usage(stderr);
        return 2;
    }
    if (cfg.conns < 0)
        cfg.conns = cfg.mode == MODE_ECHO ? 100 : cfg.mode == MODE_UPGRADE ? 50 : 10000;
    if (!cfg.path)
        cfg.path = cfg.mode == MODE_FANOUT ? "/sub" : "/";
    if (cfg.mode == MODE_FANOUT && cfg.size < 16)
        die("fanout: --size must be at least 16 (the send time)");
    self_test();
    resolve();
    if (getrandom(&R.rng, sizeof R.rng, 0) != sizeof R.rng || R.rng == 0)
        R.rng = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;

    /* Text payload: printable ASCII, valid UTF-8. Binary: every byte value. */
    size_t plen = cfg.size + PATTERN_SHIFTS;
    R.pattern = xmalloc(plen);
    for (size_t i = 0; i < plen; i++)
        R.pattern[i] = cfg.binary ? (uint8_t)rnd() : (uint8_t)(' ' + rnd() % 95);

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    R.ep = epoll_create1(EPOLL_CLOEXEC);
    if (R.ep < 0)
        die("epoll_create1: %s", strerror(errno));
    R.ncl = cfg.conns + (cfg.mode == MODE_FANOUT);
    R.cl = calloc((size_t)R.ncl, sizeof *R.cl);
    if (!R.cl)
        die("out of memory");
    if (cfg.mode == MODE_FANOUT)
        R.pub = &R.cl[cfg.conns];
    size_t in_cap = cfg.mode == MODE_ECHO || cfg.mode == MODE_FANOUT ? 65536 : 8192;
    for (int i = 0; i < R.ncl; i++) {
        R.cl[i].fd = -1;
        R.cl[i].in = xmalloc(in_cap);
        if (cfg.mode == MODE_ECHO)
            R.cl[i].sent_at = xmalloc(sizeof(uint64_t) * (size_t)cfg.depth);
    }

    uint64_t now = now_ns(), last_scan = now;
    uint64_t ramp_deadline = now + (uint64_t)((cfg.timeout + 0.002 * R.ncl + 5) * 1e9);
    R.srv_ticks0 = R.srv_ticks1 = -1;
    R.srv_io0[0] = R.srv_io0[1] = R.srv_io1[0] = R.srv_io1[1] = -1;
    int ramping = cfg.mode != MODE_UPGRADE;
    if (ramping) {
        open_more(now);
    } else {
        R.sending = 1;
        R.scheduled = 1;
        R.wstart = now + (uint64_t)(cfg.warmup * 1e9);
        R.wend = R.wstart + (uint64_t)(cfg.duration * 1e9);
        for (int i = 0; i < R.ncl; i++)
            start_cycle(&R.cl[i], now);
    }

    int rc = 0;
    struct epoll_event evs[512];
    for (;;) {
        int tmo = 50;
        if (R.scheduled) {
            uint64_t next = R.measuring ? R.wend : R.wstart;
            uint64_t left = next > now ? next - now : 0;
            tmo = (int)(left / 1000000u) + 1;
            if (tmo > 50)
                tmo = 50;
        }
        if (cfg.mode == MODE_FANOUT && R.sending)
            tmo = 1;
        int n = epoll_wait(R.ep, evs, 512, tmo);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            client *c = evs[i].data.ptr;
            uint64_t t = now_ns();
            if (c->state == ST_FREE)
                continue; /* closed by an earlier event of this batch */
            if (evs[i].events & (EPOLLOUT | EPOLLERR)) {
                if (c->state == ST_CONNECTING || c->epoll_out)
                    on_writable(c, t);
                if (c->state == ST_FREE)
                    continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                if (c->state != ST_CONNECTING)
                    on_readable(c, t);
        }
        now = now_ns();

        if (ramping) {
            open_more(now);
            int done = R.opened + (int)R.errors_total >= R.ncl && R.pending == 0;
            if (done || stop_signal || now > ramp_deadline) {
                ramping = 0;
                if ((cfg.mode == MODE_ECHO || cfg.mode == MODE_FANOUT) &&
                    (R.opened < R.ncl || stop_signal)) {
                    fprintf(stderr, "wsload: only %d of %d connections opened\n", R.opened, R.ncl);
                    rc = 1;
                    break;
                }
                R.scheduled = 1;
                R.wstart = now + (uint64_t)((cfg.mode == MODE_ECHO ? cfg.warmup : 0) * 1e9);
                R.wend = R.wstart + (uint64_t)(cfg.duration * 1e9);
                if (cfg.mode == MODE_FANOUT) {
                    R.wstart = now + (uint64_t)(cfg.warmup * 1e9);
                    R.wend = R.wstart + (uint64_t)(cfg.duration * 1e9);
                    R.sending = 1;
                    R.pub_start = now;
                } else if (cfg.mode == MODE_ECHO) {
                    R.sending = 1;
                    for (int i = 0; i < R.ncl; i++)
                        if (R.cl[i].state == ST_OPEN)
                            start_echo(&R.cl[i], now);
                } else {
                    printf("idle: %d open, %" PRIu64 " failed\n", R.opened, R.errors_total);
                    fflush(stdout);
                }
            }
        }
        if (cfg.mode == MODE_FANOUT && R.sending && R.pub->state == ST_OPEN) {
            uint64_t due = (uint64_t)((double)(now - R.pub_start) / 1e9 * cfg.rate) + 1;
            int queued = 0;
            while (R.pub_sent < due) {
                publish_one(now);
                queued = 1;
            }
            if (queued)
                flush(R.pub, now);
        }
        if (R.scheduled && !R.measuring && now >= R.wstart) {
            R.measuring = 1;
            R.wstart = now;
            if (cfg.cpu_pid) {
                R.srv_ticks0 = proc_ticks(cfg.cpu_pid);
                proc_io(cfg.cpu_pid, R.srv_io0);
            }
            R.self_cpu0 = self_cpu();
        }
        if (R.measuring && (now >= R.wend || stop_signal) &&
            (stop_signal || !cfg.all_echoed || cfg.mode != MODE_ECHO || all_heard()))
            break;
        if (stop_signal && !R.measuring) {
            rc = 1;
            break;
        }
        if (now - last_scan > 250000000u) {
            last_scan = now;
            check_stalls(now);
            if (cfg.mode == MODE_UPGRADE && R.sending)
                for (int i = 0; i < R.ncl; i++)
                    if (R.cl[i].state == ST_FREE)
                        start_cycle(&R.cl[i], now); /* retry after a connect error */
        }
        if (cfg.mode == MODE_ECHO && R.sending && R.pending == 0) {
            int live = 0;
            for (int i = 0; i < R.ncl && !live; i++)
                live = R.cl[i].state == ST_OPEN;
            if (!live) {
                fprintf(stderr, "wsload: every connection failed\n");
                rc = 1;
                break;
            }
        }
    }
    R.sending = 0;
    if (R.measuring) { /* the window ends here, on time or early */
        R.wend = now_ns();
        if (cfg.cpu_pid) {
            R.srv_ticks1 = proc_ticks(cfg.cpu_pid);
            proc_io(cfg.cpu_pid, R.srv_io1);
        }
        R.self_cpu1 = self_cpu();
    }
    int measured = R.measuring;
    R.measuring = 0;
    if (stop_signal && cfg.mode != MODE_IDLE)
        rc = 1;
    report(measured ? R.wend - R.wstart : 0);
    if (R.errors_total)
        rc = 1;
    if (cfg.mode == MODE_ECHO && R.count == 0)
        rc = 1;
    if (cfg.mode == MODE_ECHO && cfg.all_echoed && echoed_conns() < R.ncl) {
        fprintf(stderr, "wsload: only %d of %d connections got an echo back\n", echoed_conns(),
                R.ncl);
        rc = 1;
    }
    if (cfg.mode == MODE_IDLE && R.opened < R.ncl)
        rc = 1;
    for (int i = 0; i < R.ncl; i++)
        if (R.cl[i].fd >= 0)
            close(R.cl[i].fd);
    return rc;
}
