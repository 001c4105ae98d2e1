/* The server-wide budget for buffered input (app.http.max_buffered_total): the charge helper's
 * arithmetic, and every way a body or a partial message ends (answered, refused past the
 * budget, cut by the client, the server freed) gives its share back exactly once, for
 * HTTP/1.1, HTTP/2 and WebSocket connections driven through socketpairs. */
#include <ev.h>
#include <sys/socket.h>

#include "server.h"
#include "switchyard.h"
#include "test.h"

static const char *APP =
    "local sy = require 'switchyard'\n"
    "return {\n"
    "  upgrade = function(req)\n"
    "    return sy.accept('websocket', { message = function(ws, d, b) ws:send(d, b) end })\n"
    "  end,\n"
    "  request = function(req, res) res:send(200, tostring(#(req.body or ''))) end,\n"
    "}\n";

static struct ev_loop *loop;
static sy_server *srv;

/* Runs the loop a little: the server reads, answers and reaps. */
static void spin(int rounds)
{
    for (int i = 0; i < rounds; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(500);
    }
}

static int connect_client(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(sy_server_adopt(srv, sv[0]) == 0);
    return sv[1];
}

static void put(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0) {
            spin(1);
            continue;
        }
        c += w;
        n -= (size_t)w;
    }
}

/* Reads what the server sent within a few loop rounds (NUL-terminated, at most cap - 1). */
static size_t take(int fd, char *out, size_t cap)
{
    size_t len = 0;
    for (int i = 0; i < 200; i++) {
        spin(1);
        ssize_t n = recv(fd, out + len, cap - 1 - len, MSG_DONTWAIT);
        if (n > 0)
            len += (size_t)n;
        if (n == 0 || len == cap - 1)
            break;
    }
    out[len] = 0;
    return len;
}

static void test_arithmetic(void)
{
    size_t a = 0, b = 0;
    srv->env.cfg.max_buffered_total = 1000;
    CHECK(sy_env_hold_input(&srv->env, &a, 600) == 0 && a == 600 && srv->env.input_held == 600);
    CHECK(sy_env_hold_input(&srv->env, &b, 500) == SY_ELIMIT && b == 0);
    CHECK(sy_env_hold_input(&srv->env, &b, 400) == 0 && srv->env.input_held == 1000);
    CHECK(sy_env_hold_input(&srv->env, &a, 601) == SY_ELIMIT && a == 600);
    CHECK(sy_env_hold_input(&srv->env, &a, 100) == 0 && srv->env.input_held == 500);
    sy_env_release_input(&srv->env, &a);
    sy_env_release_input(&srv->env, &a); /* twice: harmless */
    CHECK(a == 0 && srv->env.input_held == 400);
    sy_env_release_input(&srv->env, &b);
    CHECK(srv->env.input_held == 0);
    srv->env.cfg.max_buffered_total = 0; /* no limit */
    CHECK(sy_env_hold_input(&srv->env, &a, (size_t)1 << 40) == 0);
    sy_env_release_input(&srv->env, &a);
    CHECK(srv->env.input_held == 0);
    CHECK(sy_server_set_max_buffered_total(srv, 1000) == SY_EINVAL);
    CHECK(sy_server_set_max_buffered_total(srv, 64 * 1024) == 0);
    CHECK(sy_server_set_body_timeout(srv, 0) == SY_EINVAL);
}

static void test_http1(void)
{
    char reply[4096], body[70000];
    memset(body, 'b', sizeof body);
    const char *head = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";

    /* Answered: held while the body arrives, given back with the response. */
    int fd = connect_client();
    put(fd, head, strlen(head));
    put(fd, body, 500);
    spin(20);
    CHECK_MSG(srv->env.input_held == 500, "%zu", srv->env.input_held);
    put(fd, body, 500);
    take(fd, reply, sizeof reply);
    CHECK_MSG(strstr(reply, "200 OK") && strstr(reply, "\r\n\r\n1000"), "%s", reply);
    CHECK(srv->env.input_held == 0);

    /* Cut by the client mid-body (on a connection that served one request already). */
    put(fd, head, strlen(head));
    put(fd, body, 300);
    spin(20);
    CHECK_MSG(srv->env.input_held == 300, "%zu", srv->env.input_held);
    close(fd);
    spin(20);
    CHECK(srv->env.input_held == 0);

    /* Past the budget: 503, and the share taken so far is given back at once. */
    int holder = connect_client();
    char big[128];
    snprintf(big, sizeof big, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
             (int)sizeof body + 1);
    put(holder, big, strlen(big));
    put(holder, body, 40000);
    spin(20);
    CHECK_MSG(srv->env.input_held == 40000, "%zu", srv->env.input_held);
    fd = connect_client();
    put(fd, big, strlen(big));
    put(fd, body, 30000);
    take(fd, reply, sizeof reply);
    CHECK_MSG(strncmp(reply, "HTTP/1.1 503 ", 13) == 0, "%s", reply);
    CHECK_MSG(srv->env.input_held == 40000, "%zu", srv->env.input_held);
    close(fd);
    close(holder);
    spin(20);
    CHECK(srv->env.input_held == 0);
}

static void test_websocket(void)
{
    char reply[4096];
    int fd = connect_client();
    const char *hs = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n";
    put(fd, hs, strlen(hs));
    take(fd, reply, sizeof reply);
    CHECK_MSG(strstr(reply, "101 Switching") != NULL, "%s", reply);
    /* A fragment of 1000 bytes (mask 0), then 600 bytes of a 1000-byte continuation. */
    uint8_t frag[4 + 4 + 1000];
    frag[0] = 0x02; /* BINARY, no FIN */
    frag[1] = 0x80 | 126;
    frag[2] = 1000 >> 8;
    frag[3] = 1000 & 255;
    memset(frag + 4, 0, 4 + 1000);
    put(fd, frag, sizeof frag);
    spin(20);
    CHECK_MSG(srv->env.input_held == 1000, "%zu", srv->env.input_held);
    frag[0] = 0x80; /* CONT, FIN */
    put(fd, frag, 8 + 600);
    spin(20);
    CHECK_MSG(srv->env.input_held == 1600, "%zu", srv->env.input_held);
    put(fd, frag + 8, 400);
    size_t n = take(fd, reply, sizeof reply);
    CHECK_MSG(n == 4 + 2000 && (uint8_t)reply[0] == 0x82, "%zu", n);
    CHECK_MSG(srv->env.input_held == 0, "%zu", srv->env.input_held);
    /* Cut by the client with a fragment in. */
    frag[0] = 0x02;
    put(fd, frag, sizeof frag);
    spin(20);
    CHECK_MSG(srv->env.input_held == 1000, "%zu", srv->env.input_held);
    close(fd);
    spin(20);
    CHECK(srv->env.input_held == 0);
}

static void h2_frame(int fd, int type, int flags, int stream, const void *p, size_t n)
{
    uint8_t h[9] = {(uint8_t)(n >> 16),      (uint8_t)(n >> 8),      (uint8_t)n,
                    (uint8_t)type,           (uint8_t)flags,         (uint8_t)(stream >> 24),
                    (uint8_t)(stream >> 16), (uint8_t)(stream >> 8), (uint8_t)stream};
    put(fd, h, 9);
    if (n)
        put(fd, p, n);
}

static void test_http2(void)
{
    int fd = connect_client();
    const char *preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    put(fd, preface, strlen(preface));
    h2_frame(fd, 4, 0, 0, NULL, 0); /* SETTINGS */
    /* HPACK: :method POST (3), :scheme http (6), :path / (4), :authority "x" (literal). */
    const uint8_t block[] = {0x83, 0x86, 0x84, 0x41, 0x01, 'x'};
    char data[800];
    memset(data, 'd', sizeof data);
    for (int id = 1; id <= 3; id += 2) {
        h2_frame(fd, 1, 4, id, block, sizeof block); /* HEADERS, END_HEADERS */
        h2_frame(fd, 0, 0, id, data, sizeof data);   /* DATA, no END_STREAM */
    }
    spin(30);
    CHECK_MSG(srv->env.input_held == 1600, "%zu", srv->env.input_held);
    /* Stream 1 ends and is served: its share goes back; stream 3's stays. */
    h2_frame(fd, 0, 1, 1, data, 10);
    spin(30);
    CHECK_MSG(srv->env.input_held == 800, "%zu", srv->env.input_held);
    /* Stream 3 is reset by the client. */
    const uint8_t cancel[4] = {0, 0, 0, 8};
    h2_frame(fd, 3, 0, 3, cancel, 4);
    spin(30);
    CHECK_MSG(srv->env.input_held == 0, "%zu", srv->env.input_held);
    /* Stream 5 is left open and the connection cut. */
    h2_frame(fd, 1, 4, 5, block, sizeof block);
    h2_frame(fd, 0, 0, 5, data, sizeof data);
    spin(30);
    CHECK_MSG(srv->env.input_held == 800, "%zu", srv->env.input_held);
    close(fd);
    spin(30);
    CHECK(srv->env.input_held == 0);
}

int main(void)
{
    char dir[] = "/tmp/sy_test_input_XXXXXX", path[128];
    if (t_app_write(dir, APP, path, sizeof path) != 0)
        return 2;
    loop = ev_loop_new(EVFLAG_AUTO);
    srv = sy_server_new(loop);
    CHECK(srv && sy_server_load_app(srv, path) == 0);
    test_arithmetic();
    CHECK(sy_server_set_max_buffered_total(srv, 64 * 1024) == 0);
    test_http1();
    test_websocket();
    test_http2();
    CHECK(sy_server_connection_count(srv) == 0);
    sy_server_free(srv);
    ev_loop_destroy(loop);
    t_app_remove(dir, path);
    return t_summary("test_input_budget");
}
