/* The server's lifecycle as a host sees it: a host may free the server in its shutdown
 * callback; a graceful stop reaches every WebSocket even when closing one closes another; and
 * the Lua time budget's CPU timer goes away with the thread's last server. */
#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "switchyard.h"
#include "test.h"

static char dir[] = "/tmp/sy_test_lifecycle_XXXXXX";

static const char *write_app(const char *name, const char *text)
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

/* Every WebSocket is accepted; the close handler of /a closes /b (its peer may be gone). */
static const char WS_APP[] =
    "local sy = require 'switchyard'\n"
    "local socks = {}\n"
    "return { upgrade = function(req)\n"
    "  return sy.accept('websocket', {\n"
    "    open = function(ws) socks[ws.path] = ws end,\n"
    "    close = function(ws)\n"
    "      socks[ws.path] = nil\n"
    "      if ws.path == '/a' and socks['/b'] then socks['/b']:close() end\n"
    "    end,\n"
    "  })\n"
    "end }\n";

/* Reads what is there now (after running the loop a little) into buf; returns the length. */
static size_t drain(struct ev_loop *loop, int fd, char *buf, size_t cap, const char *until)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < 2000; i++) {
        if (loop)
            ev_run(loop, EVRUN_NOWAIT);
        ssize_t n = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
        if (n > 0) {
            len += (size_t)n;
            buf[len] = 0;
        }
        if (until && memmem(buf, len, until, strlen(until)))
            break;
        if (!until && n <= 0)
            break;
        usleep(1000);
    }
    return len;
}

/* Adopts one end of a socketpair and upgrades it to a WebSocket on path; returns the client's
 * end, or -1. */
static int ws_client(struct ev_loop *loop, sy_server *s, const char *path)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || sy_server_adopt(s, sv[0]) != 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path);
    if (write(sv[1], req, (size_t)n) != n)
        return -1;
    char reply[1024];
    drain(loop, sv[1], reply, sizeof reply, "\r\n\r\n");
    if (strncmp(reply, "HTTP/1.1 101", 12) != 0) {
        fprintf(stderr, "no 101 on %s: %s\n", path, reply);
        close(sv[1]);
        return -1;
    }
    return sv[1];
}

/* A server close frame with code 1001 (unmasked: 0x88, length, 0x03 0xE9). */
static int is_close_1001(const char *p, size_t n)
{
    return n >= 4 && (uint8_t)p[0] == 0x88 && (uint8_t)p[2] == 0x03 && (uint8_t)p[3] == 0xE9;
}

/* ---- the host frees the server in done_cb ---------------------------------------------------- */

typedef struct stop_state {
    int called;
    int free_it;
} stop_state;

static void on_stopped(sy_server *s, void *ud)
{
    stop_state *st = ud;
    st->called++;
    if (st->free_it)
        sy_server_free(s); /* allowed: the header says so */
}

static void run_until(struct ev_loop *loop, const int *flag)
{
    for (int i = 0; i < 5000 && !*flag; i++)
        ev_run(loop, EVRUN_ONCE);
}

static void test_free_in_done_cb(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *app = write_app("ws.lua", WS_APP);

    /* No connection: the callback still runs from the loop, not inside sy_server_shutdown. */
    sy_server *s = sy_server_new(loop);
    CHECK(s && sy_server_load_app(s, app) == 0);
    stop_state st = {0, 1};
    sy_server_shutdown(s, 30, on_stopped, &st);
    CHECK_MSG(st.called == 0, "done_cb ran inside sy_server_shutdown");
    run_until(loop, &st.called);
    CHECK(st.called == 1);

    /* Idle keep-alive connections close inside the shutdown walk: the last close used to call
     * back (and the host free the server) while the walk still held the connection. */
    s = sy_server_new(loop);
    CHECK(s && sy_server_load_app(s, app) == 0);
    int peers[3];
    for (int i = 0; i < 3; i++) {
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        CHECK(sy_server_adopt(s, sv[0]) == 0);
        peers[i] = sv[1];
    }
    st = (stop_state){0, 1};
    sy_server_shutdown(s, 30, on_stopped, &st);
    CHECK_MSG(st.called == 0, "done_cb ran inside sy_server_shutdown");
    run_until(loop, &st.called);
    CHECK(st.called == 1);
    for (int i = 0; i < 3; i++)
        close(peers[i]);

    /* A WebSocket answers the 1001: the last connection closes inside its read callback. */
    s = sy_server_new(loop);
    CHECK(s && sy_server_load_app(s, app) == 0);
    int fd = ws_client(loop, s, "/x");
    CHECK(fd >= 0);
    st = (stop_state){0, 1};
    sy_server_shutdown(s, 30, on_stopped, &st);
    char buf[256];
    size_t n = drain(NULL, fd, buf, sizeof buf, NULL);
    CHECK_MSG(is_close_1001(buf, n), "no close 1001 (%zu bytes)", n);
    /* The client's close frame: masked, code 1000. */
    static const uint8_t reply[] = {0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2};
    CHECK(write(fd, reply, sizeof reply) == (ssize_t)sizeof reply);
    run_until(loop, &st.called);
    CHECK(st.called == 1);
    close(fd);

    /* Freed before the callback was due: it never runs. */
    st = (stop_state){0, 0};
    s = sy_server_new(loop);
    CHECK(s && sy_server_load_app(s, app) == 0);
    fd = ws_client(loop, s, "/z");
    CHECK(fd >= 0);
    sy_server_shutdown(s, 30, on_stopped, &st);
    close(fd);
    sy_server_free(s);
    for (int i = 0; i < 20; i++)
        ev_run(loop, EVRUN_NOWAIT);
    CHECK(st.called == 0);
    ev_loop_destroy(loop);
}

/* ---- the shutdown walk reaches every connection ---------------------------------------------- */

/* The allocator of this test: malloc, but the next call fails when fail_next is set. */
static int fail_next;

static void *test_malloc(size_t n)
{
    if (fail_next) {
        fail_next = 0;
        return NULL;
    }
    return malloc(n);
}

static void *test_realloc(void *p, size_t n)
{
    if (fail_next) {
        fail_next = 0;
        return NULL;
    }
    return realloc(p, n);
}

/* fail_copy: the walk's copy of the list cannot be allocated (it walks the list itself). */
static void test_shutdown_reaches_everyone(int fail_copy)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *app = write_app("ws.lua", WS_APP);
    sy_server *s = sy_server_new(loop);
    CHECK(s && sy_server_load_app(s, app) == 0);
    /* Newest first in the server's list: /a, then /b, then the healthy ones. */
    int healthy[4];
    for (int i = 0; i < 4; i++) {
        healthy[i] = ws_client(loop, s, "/h");
        CHECK(healthy[i] >= 0);
    }
    int b = ws_client(loop, s, "/b"), a = ws_client(loop, s, "/a");
    CHECK(a >= 0 && b >= 0);
    CHECK(sy_server_connection_count(s) == 6);
    /* Both peers leave without a word; the loop does not see it before the stop: sending 1001
     * to /a fails, /a closes, and its close handler closes /b, whose send fails too. */
    close(a);
    close(b);
    stop_state st = {0, 0};
    fail_next = fail_copy; /* the first allocation of sy_server_shutdown is the copy */
    sy_server_shutdown(s, 30, on_stopped, &st);
    CHECK(fail_next == 0);
    for (int i = 0; i < 4; i++) {
        char buf[256];
        size_t n = drain(NULL, healthy[i], buf, sizeof buf, NULL);
        CHECK_MSG(is_close_1001(buf, n), "healthy WebSocket %d got no 1001 (%zu bytes%s)", i, n,
                  fail_copy ? ", no memory for the copy" : "");
        close(healthy[i]);
    }
    run_until(loop, &st.called);
    CHECK(st.called == 1);
    CHECK(sy_server_connection_count(s) == 0);
    sy_server_free(s);
    ev_loop_destroy(loop);
}

/* ---- the budget's CPU timer ends with the thread's last server ------------------------------ */

static volatile sig_atomic_t ticks;

static void count_tick(int sig)
{
    (void)sig;
    ticks++;
}

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Burns seconds of this thread's CPU time (not wall time: a busy machine only stretches it). */
static void burn(double seconds)
{
    volatile unsigned long x = 0;
    double t0 = thread_cpu();
    while (thread_cpu() - t0 < seconds)
        for (int i = 0; i < 100000; i++)
            x += (unsigned long)i;
}

static void test_budget_timer_freed(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *app = write_app("hello.lua", "local n = 0\nfor i = 1, 1000 do n = n + i end\n"
                                             "return { request = function(req, res) end }\n");
    /* Two servers: the timer stays while one is left. */
    sy_server *s1 = sy_server_new(loop), *s2 = sy_server_new(loop);
    CHECK(s1 && s2 && sy_server_load_app(s1, app) == 0 && sy_server_load_app(s2, app) == 0);
    sy_server_free(s1);
    sy_server_free(s2);

    /* The host takes the signal over after its last server is gone and keeps working. */
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = count_tick;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGVTALRM, &sa, &old) == 0);
    ticks = 0;
    burn(0.3);
    CHECK_MSG(ticks == 0, "%d SIGVTALRM after the last server was freed", (int)ticks);
    CHECK(sigaction(SIGVTALRM, &old, NULL) == 0);

    /* A new server afterwards still has its budget: a loop in the app's load is stopped. */
    const char *loop_app = write_app("loop.lua", "while true do end\n");
    sy_server *s3 = sy_server_new(loop);
    CHECK(s3 != NULL);
    CHECK(sy_server_load_app(s3, loop_app) == SY_ELUA);
    CHECK_MSG(strstr(sy_server_error(s3), "time budget") != NULL, "%s", sy_server_error(s3));
    sy_server_free(s3);
    ticks = 0;
    CHECK(sigaction(SIGVTALRM, &sa, &old) == 0);
    burn(0.3);
    CHECK_MSG(ticks == 0, "%d SIGVTALRM after the server was freed again", (int)ticks);
    CHECK(sigaction(SIGVTALRM, &old, NULL) == 0);
    ev_loop_destroy(loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    sy_set_allocator(test_malloc, test_realloc, free);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    test_free_in_done_cb();
    test_shutdown_reaches_everyone(0);
    test_shutdown_reaches_everyone(1);
    test_budget_timer_freed();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    (void)!system(cmd);
    return t_summary("test_lifecycle");
}
