/* The app interface (app.h) without Lua: a server with no app answers 404; a C app installed
 * with sy_server_set_app answers requests, decides a WebSocket upgrade through
 * sy_decision_apply (accept key, subprotocol, 101) and echoes messages from C; its handle is
 * released once, on close. */
#include <ev.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "app.h"
#include "decision.h"
#include "proto.h"
#include "server.h"
#include "switchyard.h"
#include "test.h"

typedef struct capp {
    int requests, opens, messages, closes, discards;
} capp;

typedef struct chandle {
    sy_conn *c; /* borrowed; valid until ws_close */
    capp *app;
} chandle;

static void c_dispatch(void *ud, sy_conn *c, const sy_http1_request *req, sy_str body,
                       const sy_upgrade_offer *offers, size_t n)
{
    capp *a = ud;
    a->requests++;
    if (n > 0) {
        sy_decision d;
        sy_decision_init(&d, SY_DECIDE_ACCEPT);
        d.token = SY_STR("websocket");
        d.subprotocol = SY_STR("chat");
        if (sy_decision_check(&d, c, req, offers, n) != 0)
            return;
        chandle *h = calloc(1, sizeof *h);
        if (!h) {
            sy_decision_error(c, "out of memory");
            return;
        }
        h->c = c;
        h->app = a;
        d.handle = h;
        sy_decision_apply(&d, c, req, body, offers, n);
        return;
    }
    sy_h1_respond(c, NULL, 200, SY_STR("Content-Type: text/plain\r\n"), SY_STR("hello from C\n"),
                  0);
}

static void c_ws_open(void *ud, sy_conn *c, void *handle)
{
    (void)c, (void)handle;
    ((capp *)ud)->opens++;
}

static void c_ws_messages(void *ud, sy_conn *c, void *handle, const sy_ws_msg *m, size_t n)
{
    capp *a = ud;
    chandle *h = handle;
    (void)c;
    for (size_t i = 0; i < n; i++) {
        a->messages++;
        sy_ws_send(h->c, m[i].binary ? SY_WS_BINARY : SY_WS_TEXT, m[i].p, m[i].n);
    }
}

static void c_ws_close(void *ud, sy_conn *c, void *handle, int code, sy_str reason)
{
    (void)c, (void)code, (void)reason;
    ((capp *)ud)->closes++;
    free(handle);
}

static void c_discard(void *ud, void *handle)
{
    ((capp *)ud)->discards++;
    free(handle);
}

static const sy_app_ops c_ops = {
    .dispatch = c_dispatch,
    .ws_open = c_ws_open,
    .ws_messages = c_ws_messages,
    .ws_close = c_ws_close,
    .conn_discard = c_discard,
};

/* Runs the loop until what the peer at fd read contains want (or about 10 s pass); returns
 * the bytes read so far in buf (NUL-terminated). */
static size_t read_until(struct ev_loop *loop, int fd, char *buf, size_t cap, const char *want,
                         size_t want_len)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < 10000; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r > 0) {
            len += (size_t)r;
            buf[len] = '\0';
        }
        if (memmem(buf, len, want, want_len))
            break;
        if (r <= 0)
            usleep(1000);
    }
    return len;
}

static int pair(sy_server *s, int *peer)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
        return -1;
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    *peer = fds[1];
    return sy_server_adopt(s, fds[0]);
}

static void settle(struct ev_loop *loop, sy_server *s)
{
    for (int i = 0; i < 10000 && sy_server_connection_count(s) > 0; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(100);
    }
}

static void test_no_app(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = sy_server_create(loop);
    CHECK(s != NULL);
    int fd;
    CHECK(pair(s, &fd) == 0);
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1));
    char buf[2048];
    read_until(loop, fd, buf, sizeof buf, "not found\n", 10);
    CHECK_MSG(strncmp(buf, "HTTP/1.1 404 ", 13) == 0, "got '%s'", buf);
    close(fd);
    settle(loop, s);
    CHECK(sy_server_connection_count(s) == 0);
    sy_server_free(s);
    ev_loop_destroy(loop);
}

static void test_c_app(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = sy_server_create(loop);
    CHECK(s != NULL);
    capp a = {0};
    sy_server_set_app(s, &c_ops, &a);
    char buf[4096];

    int fd;
    CHECK(pair(s, &fd) == 0);
    static const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(write(fd, get, sizeof get - 1) == (ssize_t)(sizeof get - 1));
    read_until(loop, fd, buf, sizeof buf, "hello from C\n", 13);
    CHECK_MSG(strncmp(buf, "HTTP/1.1 200 ", 13) == 0 && strstr(buf, "hello from C\n"), "got '%s'",
              buf);
    close(fd);

    CHECK(pair(s, &fd) == 0);
    static const char up[] = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                             "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Protocol: x, chat\r\n\r\n";
    CHECK(write(fd, up, sizeof up - 1) == (ssize_t)(sizeof up - 1));
    size_t n = read_until(loop, fd, buf, sizeof buf, "\r\n\r\n", 4);
    CHECK_MSG(strncmp(buf, "HTTP/1.1 101 ", 13) == 0, "got '%s'", buf);
    /* RFC 6455 1.3's example key and its accept value. */
    CHECK(strstr(buf, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != NULL);
    CHECK(strstr(buf, "Sec-WebSocket-Protocol: chat\r\n") != NULL);
    CHECK(n == (size_t)(strstr(buf, "\r\n\r\n") - buf) + 4); /* nothing after the 101 yet */
    CHECK(a.opens == 1);

    /* A masked text frame "hi" comes back unmasked from the C handler. */
    const unsigned char mask[4] = {1, 2, 3, 4};
    unsigned char frame[8] = {
        0x81, 0x82, 1, 2, 3, 4, (unsigned char)('h' ^ mask[0]), (unsigned char)('i' ^ mask[1])};
    CHECK(write(fd, frame, sizeof frame) == (ssize_t)sizeof frame);
    static const char echo[] = {(char)0x81, 2, 'h', 'i'};
    n = read_until(loop, fd, buf, sizeof buf, echo, sizeof echo);
    CHECK_MSG(n == sizeof echo && memcmp(buf, echo, sizeof echo) == 0, "echo: %zu bytes", n);
    CHECK(a.messages == 1);

    close(fd);
    settle(loop, s);
    CHECK(sy_server_connection_count(s) == 0);
    CHECK_MSG(a.closes == 1 && a.discards == 0, "closes %d discards %d", a.closes, a.discards);
    CHECK(a.requests == 2);
    sy_server_free(s);
    ev_loop_destroy(loop);
}

int main(void)
{
    test_no_app();
    test_c_app();
    return t_summary("test_app_ops");
}
