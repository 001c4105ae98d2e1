/* Accepting an upgrade under app.lua.max_memory: whatever allocation fails, the request is
 * answered (101 or 500) or its connection closed, and no connection handle stays anchored in
 * the registry once the connection is gone (a memory error in the middle of an accept must not
 * leave a reference, or a C pointer, behind). */
#include "lua_int.h"
#include "switchyard.h"
#include "test.h"
#include "test_handles.h"

#include <ev.h>
#include <sys/socket.h>

#include <lauxlib.h>

static const char APP[] = "local sy = require 'switchyard'\n"
                          "local h = { open = function(c) c.data.opened = true end }\n"
                          "return {\n"
                          "  upgrade = function(req)\n"
                          "    local t = req.upgrades[1].name\n"
                          "    return sy.accept(t, h, { data = { who = req.path } })\n"
                          "  end,\n"
                          "}\n";

/* One upgrade request on an adopted socket with max_memory set to what the state holds plus
 * slack. Returns 101, 500, 0 (closed without an answer) or -1 (no answer: it hangs). */
static int one_accept(struct ev_loop *loop, sy_server *s, const char *request, size_t slack)
{
    lua_State *L = sy_server_lua(s);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(sy_server_adopt(s, sv[0]) == 0);
    lua_gc(L, LUA_GCCOLLECT);
    s->lua.max_memory = s->lua_memory + slack;
    CHECK(write(sv[1], request, strlen(request)) == (ssize_t)strlen(request));
    char reply[2048] = "";
    size_t len = 0;
    int closed = 0;
    for (int i = 0; i < 2000 && !closed && !strstr(reply, "\r\n\r\n"); i++) {
        ev_run(loop, EVRUN_NOWAIT);
        ssize_t n = recv(sv[1], reply + len, sizeof reply - 1 - len, MSG_DONTWAIT);
        if (n > 0)
            len += (size_t)n;
        else if (n == 0)
            closed = 1;
        reply[len] = 0;
        if (!strstr(reply, "\r\n\r\n") && !closed)
            usleep(500);
    }
    s->lua.max_memory = 0;
    int status = strncmp(reply, "HTTP/1.1 101 ", 13) == 0   ? 101
                 : strncmp(reply, "HTTP/1.1 500 ", 13) == 0 ? 500
                 : closed                                   ? 0
                                                            : -1;
    close(sv[1]);
    for (int i = 0; i < 2000 && sy_server_connection_count(s) > 0; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(200);
    }
    CHECK(sy_server_connection_count(s) == 0);
    lua_gc(L, LUA_GCCOLLECT);
    return status;
}

static void sweep(const char *app_path, const char *request, const char *what)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = sy_server_new(loop);
    CHECK(sy_server_load_app(s, app_path) == 0);
    lua_State *L = sy_server_lua(s);
    int counts[3] = {0, 0, 0}; /* 101, 500, closed */
    /* Warm up: the first request interns names and grows tables for good. */
    CHECK(one_accept(loop, s, request, (size_t)1 << 30) == 101);
    for (size_t slack = 0; slack <= 8192; slack += 16) {
        int st = one_accept(loop, s, request, slack);
        CHECK_MSG(st != -1, "%s, slack %zu: no answer", what, slack);
        counts[st == 101 ? 0 : st == 500 ? 1 : 2]++;
        int left = t_anchored_handles(L, 1);
        CHECK_MSG(left == 0, "%s, slack %zu (answer %d): %d handle(s) left anchored", what, slack,
                  st, left);
    }
    /* The sweep went from "fails at once" to "succeeds": every step of the accept in between
     * met a memory error somewhere. */
    CHECK_MSG(counts[1] > 0 && counts[0] > 0, "%s: 101 x%d, 500 x%d, closed x%d", what, counts[0],
              counts[1], counts[2]);
    sy_server_free(s);
    ev_loop_destroy(loop);
}

int main(void)
{
    char dir[] = "/tmp/sy_test_accept_XXXXXX", path[128];
    if (t_app_write(dir, APP, path, sizeof path) != 0)
        return 2;
    sweep(path, "GET /raw HTTP/1.1\r\nHost: h\r\nUpgrade: echo/1\r\nConnection: Upgrade\r\n\r\n",
          "raw");
    sweep(path,
          "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
          "websocket");
    t_app_remove(dir, path);
    return t_summary("test_lua_accept");
}
