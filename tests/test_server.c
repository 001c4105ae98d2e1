/* Embedding: two servers in one process on a host-owned loop, each with its own Lua state;
 * the byte buffer, including every allocation failing in turn. */
#include <arpa/inet.h>
#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "switchyard.h"
#include "test.h"

/* ---- buffer -------------------------------------------------------------------------------- */

static int fail_at = -1, alloc_calls;

static void *test_malloc(size_t n)
{
    return alloc_calls++ == fail_at ? NULL : malloc(n);
}

static void *test_realloc(void *p, size_t n)
{
    return alloc_calls++ == fail_at ? NULL : realloc(p, n);
}

static void test_buf(void)
{
    sy_buf b;
    sy_buf_init(&b, 100);
    CHECK(sy_buf_append(&b, "hello ", 6) == 0);
    CHECK(sy_buf_append(&b, "world", 5) == 0);
    CHECK(sy_buf_len(&b) == 11 && memcmp(sy_buf_data(&b), "hello world", 11) == 0);
    sy_buf_consume(&b, 6);
    CHECK(sy_buf_len(&b) == 5 && memcmp(sy_buf_data(&b), "world", 5) == 0);
    char big[100];
    memset(big, 'x', sizeof big);
    CHECK(sy_buf_append(&b, big, 96) == SY_ELIMIT);
    CHECK(sy_buf_len(&b) == 5);
    CHECK(sy_buf_append(&b, big, 95) == 0);
    CHECK(sy_buf_len(&b) == 100);
    char *span;
    CHECK(sy_buf_reserve(&b, 1, &span) == SY_ELIMIT);
    sy_buf_consume(&b, 1000);
    CHECK(sy_buf_len(&b) == 0);
    sy_buf_trim(&b, 0);
    CHECK(b.data == NULL);
    /* Nothing into nothing: an empty WebSocket fragment appends 0 bytes to an unallocated
     * message buffer; no allocation and no arithmetic on its NULL data (clang UBSan). */
    CHECK(sy_buf_append(&b, "", 0) == 0);
    CHECK(sy_buf_reserve(&b, 0, &span) == 0 && span == NULL);
    CHECK(sy_buf_len(&b) == 0 && b.data == NULL && sy_buf_data(&b) == NULL);
    sy_buf_dispose(&b);

    /* Every allocation of a growth scenario fails in turn: SY_ENOMEM, contents intact. */
    sy_set_allocator(test_malloc, test_realloc, free);
    for (fail_at = 0; fail_at < 8; fail_at++) {
        alloc_calls = 0;
        sy_buf_init(&b, 0);
        int rc = 0;
        size_t want = 0;
        for (int i = 0; i < 64 && rc == 0; i++) {
            rc = sy_buf_append(&b, big, sizeof big);
            if (rc == 0)
                want += sizeof big;
        }
        CHECK(rc == 0 || rc == SY_ENOMEM);
        CHECK(sy_buf_len(&b) == want);
        sy_buf_dispose(&b);
    }
    sy_set_allocator(NULL, NULL, NULL);
}

/* ---- two servers --------------------------------------------------------------------------- */

typedef struct client_job {
    int port;
    const char *request;
    char reply[4096];
    size_t len;
} client_job;

static void *client_thread(void *arg)
{
    client_job *j = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)j->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        send(fd, j->request, strlen(j->request), 0);
        ssize_t n;
        while (j->len < sizeof j->reply - 1 &&
               (n = recv(fd, j->reply + j->len, sizeof j->reply - 1 - j->len, 0)) > 0)
            j->len += (size_t)n;
    }
    j->reply[j->len] = 0;
    close(fd);
    return NULL;
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    int *done = w->data;
    if (*done)
        ev_break(loop, EVBREAK_ALL);
}

static void on_stopped(sy_server *s, void *ud)
{
    (void)s;
    (*(int *)ud)++;
}

static const char *write_app(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_two_servers(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char dir[] = "/tmp/sy_test_server_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char pa[128], pb[128];
    snprintf(pa, sizeof pa, "%s/a.lua", dir);
    snprintf(pb, sizeof pb, "%s/b.lua", dir);
    /* Each app keeps a counter in its own Lua state: no state is shared between servers. */
    write_app(pa, "local n = 0\nreturn { request = function(req, res) n = n + 1\n"
                  "res:send(200, 'A' .. n .. ' ' .. req.path) end }\n");
    write_app(pb, "COUNT = (COUNT or 0) + 1\nreturn { request = function(req, res)\n"
                  "res:send(201, 'B' .. COUNT .. ' ' .. req.method) end }\n");

    sy_server *a = sy_server_new(loop), *b = sy_server_new(loop);
    CHECK(a && b);
    CHECK(sy_server_lua(a) != sy_server_lua(b));
    CHECK(sy_server_listen(a, "127.0.0.1", 0, 0) == 0);
    CHECK(sy_server_listen(b, "127.0.0.1", 0, 0) == 0);
    CHECK(sy_server_load_app(a, pa) == 0);
    CHECK(sy_server_load_app(b, pb) == 0);
    CHECK(sy_server_load_app(b, "/nonexistent/app.lua") == SY_ELUA);
    CHECK(strstr(sy_server_error(b), "/nonexistent/app.lua") != NULL);
    CHECK(sy_server_start(a) == 0 && sy_server_start(b) == 0);
    int port_a = sy_server_listener_port(a, 0), port_b = sy_server_listener_port(b, 0);
    CHECK(port_a > 0 && port_b > 0 && port_a != port_b);
    char url[64];
    CHECK(sy_server_listener_url(a, 0, url, sizeof url) > 0);
    CHECK(strncmp(url, "http://127.0.0.1:", 17) == 0);

    /* The host's Lua access: the state is usable from C. */
    lua_State *L = sy_server_lua(a);
    CHECK(luaL_dostring(L, "return require('switchyard').version") == LUA_OK);
    CHECK(lua_isstring(L, -1));
    lua_pop(L, 1);

    client_job ja = {port_a, "GET /one HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", {0}, 0};
    client_job jb = {port_b,
                     "POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n",
                     {0},
                     0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, client_thread, &ja);
    pthread_create(&tb, NULL, client_thread, &jb);
    /* Drive the loop until both clients are answered (bounded by their 5 s timeouts). */
    int done = 0;
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.01, 0.01);
    tick.data = &done;
    ev_timer_start(loop, &tick);
    for (int i = 0; i < 1000 && !done; i++) {
        ev_run(loop, EVRUN_ONCE);
        done = ja.len > 0 && jb.len > 0 && strstr(ja.reply, "A1") && strstr(jb.reply, "B1");
    }
    ev_timer_stop(loop, &tick);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK_MSG(strncmp(ja.reply, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", ja.reply);
    CHECK_MSG(strstr(ja.reply, "\r\n\r\nA1 /one") != NULL, "%s", ja.reply);
    CHECK_MSG(strncmp(jb.reply, "HTTP/1.1 201 Created\r\n", 22) == 0, "%s", jb.reply);
    CHECK_MSG(strstr(jb.reply, "\r\n\r\nB1 POST") != NULL, "%s", jb.reply);

    /* Graceful stop: the callback runs from the loop once the (lingering) connections are
     * gone; freeing is clean under ASan. */
    int stopped = 0;
    sy_server_shutdown(a, 1.0, on_stopped, &stopped);
    for (int i = 0; i < 300 && !stopped; i++)
        ev_run(loop, EVRUN_ONCE);
    CHECK(stopped == 1);
    CHECK(sy_server_connection_count(a) == 0);
    sy_server_free(a);
    sy_server_free(b);
    sy_server_free(NULL);
    ev_loop_destroy(loop);
    unlink(pa);
    unlink(pb);
    rmdir(dir);
}

/* A host hands over a connected socket: served like an accepted one. */
static void test_adopt(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char dir[] = "/tmp/sy_test_adopt_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char pa[128];
    snprintf(pa, sizeof pa, "%s/a.lua", dir);
    write_app(pa, "return { request = function(req, res) res:send(200, 'adopted ' .. req.path .."
                  " ' [' .. req.remote_addr .. ']') end }\n");
    sy_server *s = sy_server_new(loop);
    CHECK(sy_server_load_app(s, pa) == 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(sy_server_adopt(s, sv[0]) == 0);
    CHECK(sy_server_connection_count(s) == 1);
    const char *req = "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    CHECK(write(sv[1], req, strlen(req)) == (ssize_t)strlen(req));
    char reply[1024];
    size_t len = 0;
    for (int i = 0; i < 200 && !strstr(reply, "]"); i++) {
        ev_run(loop, EVRUN_NOWAIT);
        ssize_t n = recv(sv[1], reply + len, sizeof reply - 1 - len, MSG_DONTWAIT);
        if (n > 0)
            len += (size_t)n;
        reply[len] = 0;
        usleep(1000);
    }
    CHECK_MSG(strstr(reply, "HTTP/1.1 200 OK\r\n") == reply, "%s", reply);
    CHECK_MSG(strstr(reply, "\r\n\r\nadopted /x []") != NULL, "%s", reply);
    CHECK(sy_server_adopt(s, -1) == SY_EINVAL);
    close(sv[1]);
    sy_server_free(s);
    ev_loop_destroy(loop);
    unlink(pa);
    rmdir(dir);
}

static void test_strerror(void)
{
    CHECK(strcmp(sy_strerror(SY_OK), "success") == 0);
    CHECK(strcmp(sy_strerror(SY_ENOMEM), "out of memory") == 0);
    CHECK(sy_strerror(-12345) != NULL);
}

int main(void)
{
    test_buf();
    test_two_servers();
    test_adopt();
    test_strerror();
    return t_summary("test_server");
}
