/* Loopback clients for the host API tests (tests/test_host_api_*.c): a TCP connection to a
 * listener of the server under test, driven from the test's own thread by turns of the
 * server's loop. Every wait is bounded by a generous wall-clock cap that a working server
 * never reaches, so a busy machine slows the tests down but does not fail them. */
#ifndef SY_TEST_HOST_NET_H
#define SY_TEST_HOST_NET_H

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "switchyard.h"
#include "test.h"

#define NET_CAP_SECONDS 30.0

static inline double net_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes text to dir/name and returns the path (static buffer). Exits on failure. */
static const char *net_write_file(const char *dir, const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

/* A non-blocking TCP connection to 127.0.0.1:port (the connect completes in the kernel's
 * backlog; the server accepts it on a later turn of its loop), with a receive buffer of
 * rcvbuf bytes (0: the kernel's default). -1 on failure. */
static inline int net_connect_rcvbuf(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static inline int net_connect(int port)
{
    return net_connect_rcvbuf(port, 0);
}

static inline void net_send(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
            usleep(1000);
            continue;
        }
        if (w <= 0) {
            CHECK(!"send to the server failed");
            return;
        }
        c += w;
        n -= (size_t)w;
    }
}

/* What one client read so far. */
typedef struct net_in {
    char buf[1 << 16];
    size_t len;
    int eof; /* the server closed (EOF or a reset) */
} net_in;

/* One turn: runs the loop without blocking and reads what came. */
static inline void net_turn(struct ev_loop *loop, int fd, net_in *in)
{
    ev_run(loop, EVRUN_NOWAIT);
    if (!in || in->eof)
        return;
    while (in->len < sizeof in->buf - 1) {
        ssize_t n = recv(fd, in->buf + in->len, sizeof in->buf - 1 - in->len, MSG_DONTWAIT);
        if (n > 0) {
            in->len += (size_t)n;
            in->buf[in->len] = 0;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            in->eof = 1;
        break;
    }
}

/* Turns the loop until `want` shows up in what fd read (want NULL: until EOF), or the cap.
 * Returns 1 when it did. */
static inline int net_until(struct ev_loop *loop, int fd, net_in *in, const void *want,
                            size_t want_len)
{
    double end = net_now() + NET_CAP_SECONDS;
    for (;;) {
        net_turn(loop, fd, in);
        if (want ? memmem(in->buf, in->len, want, want_len) != NULL : in->eof)
            return 1;
        if ((want && in->eof) || net_now() > end)
            return 0;
        usleep(500);
    }
}

/* Turns the loop until *flag is nonzero, or the cap. Returns 1 when it is. */
static inline int net_wait_flag(struct ev_loop *loop, const volatile int *flag)
{
    double end = net_now() + NET_CAP_SECONDS;
    while (!*flag && net_now() < end) {
        ev_run(loop, EVRUN_NOWAIT);
        if (!*flag)
            usleep(500);
    }
    return *flag != 0;
}

/* Drops what was read so far. */
static inline void net_clear(net_in *in)
{
    in->len = 0;
    in->buf[0] = 0;
}

/* A WebSocket client: the upgrade request for path, then waits for the 101. Returns the fd
 * (what came after the 101's head is left in *in), or -1. */
static inline int net_ws_connect(struct ev_loop *loop, int port, const char *path, net_in *in)
{
    int fd = net_connect(port);
    if (fd < 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path);
    net_send(fd, req, (size_t)n);
    memset(in, 0, sizeof *in);
    if (!net_until(loop, fd, in, "\r\n\r\n", 4) || strncmp(in->buf, "HTTP/1.1 101", 12) != 0) {
        close(fd);
        return -1;
    }
    char *end = memmem(in->buf, in->len, "\r\n\r\n", 4) + 4;
    size_t rest = in->len - (size_t)(end - in->buf);
    memmove(in->buf, end, rest);
    in->len = rest;
    in->buf[rest] = 0;
    return fd;
}

/* Sends one masked client frame (FIN set) with a fixed mask. */
static inline void net_ws_frame(int fd, int opcode, const void *p, size_t n)
{
    uint8_t f[14 + 4096];
    static const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    size_t h = 0;
    if (n > 4096) {
        CHECK(!"frame too large for the test client");
        return;
    }
    f[h++] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        f[h++] = (uint8_t)(0x80 | n);
    } else {
        f[h++] = 0x80 | 126;
        f[h++] = (uint8_t)(n >> 8);
        f[h++] = (uint8_t)n;
    }
    memcpy(f + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        f[h + i] = (uint8_t)(((const uint8_t *)p)[i] ^ mask[i % 4]);
    net_send(fd, f, h + n);
}

/* The unmasked server frame for a short text message: what a client receives. */
static inline size_t net_ws_text(char *out, const char *text)
{
    size_t n = strlen(text);
    out[0] = (char)0x81;
    out[1] = (char)n;
    memcpy(out + 2, text, n);
    return n + 2;
}

#endif
