/* Closing a WebSocket whose handle the app keeps, short of memory. At the close the core has
 * the face keep its state (an entry in the table of states): under app.lua.max_memory that
 * step is not held to the cap, so nothing stays anchored once the app lets go; when the
 * allocator itself fails there, the handle's state stays anchored (logged) and the handle
 * still answers as a closed WebSocket. Either way a kept handle never loses its state. */
#include "lua_int.h"
#include "switchyard.h"
#include "test.h"
#include "test_handles.h"

#include <ev.h>
#include <sys/socket.h>

#include <lauxlib.h>

static const char APP[] = "local sy = require 'switchyard'\n"
                          "kept = {}\n"
                          "local h = { open = function(ws) kept[#kept + 1] = ws end }\n"
                          "return {\n"
                          "  upgrade = function(req) return sy.accept('websocket', h) end,\n"
                          "}\n";

/* Every kept handle answers as a closed WebSocket; then the app lets go of them. */
static const char CHECK_KEPT[] = "local n = 0\n"
                                 "for _, ws in ipairs(kept) do\n"
                                 "  local ok, err = ws:send('late')\n"
                                 "  assert(ok == nil and err == 'closed', tostring(err))\n"
                                 "  assert(tostring(ws):find('closed', 1, true))\n"
                                 "  n = n + 1\n"
                                 "end\n"
                                 "assert(n == 1, 'kept ' .. n)\n"
                                 "kept = {}\n";

/* A WebSocket upgrade on an adopted socket: returns the client's end once the 101 is in. */
static int upgrade(struct ev_loop *loop, sy_server *s)
{
    static const char req[] =
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(sy_server_adopt(s, sv[0]) == 0);
    CHECK(write(sv[1], req, sizeof req - 1) == (ssize_t)(sizeof req - 1));
    char reply[1024] = "";
    size_t len = 0;
    for (int i = 0; i < 60000 && !strstr(reply, "\r\n\r\n"); i++) { /* 30 s at most */
        ev_run(loop, EVRUN_NOWAIT);
        ssize_t n = recv(sv[1], reply + len, sizeof reply - 1 - len, MSG_DONTWAIT);
        if (n > 0)
            len += (size_t)n;
        reply[len] = 0;
        if (!strstr(reply, "\r\n\r\n"))
            usleep(500);
    }
    CHECK_MSG(strncmp(reply, "HTTP/1.1 101 ", 13) == 0, "upgrade answered: %.40s", reply);
    return sv[1];
}

/* The client leaves; the server closes the connection. */
static void leave(struct ev_loop *loop, sy_server *s, int fd)
{
    close(fd);
    for (int i = 0; i < 150000 && sy_server_connection_count(s) > 0; i++) { /* 30 s */
        ev_run(loop, EVRUN_NOWAIT);
        usleep(200);
    }
    CHECK(sy_server_connection_count(s) == 0);
}

static void run_lua(lua_State *L, const char *code, const char *what)
{
    int rc = luaL_dostring(L, code);
    CHECK_MSG(rc == LUA_OK, "%s: %s", what, rc == LUA_OK ? "" : lua_tostring(L, -1));
    lua_settop(L, 0);
}

/* An allocator that refuses to grow anything (frees and shrinks go through). */
typedef struct failing {
    lua_Alloc f;
    void *ud;
} failing;

static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    failing *fa = ud;
    if (nsize > (ptr ? osize : 0))
        return NULL;
    return fa->f(fa->ud, ptr, osize, nsize);
}

int main(void)
{
    char dir[] = "/tmp/sy_test_ws_close_XXXXXX", path[128];
    if (t_app_write(dir, APP, path, sizeof path) != 0)
        return 2;

    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = sy_server_new(loop);
    CHECK(sy_server_load_app(s, path) == 0);
    lua_State *L = sy_server_lua(s);

    /* The allocator fails during the first close (the table of states is still empty, so
     * the entry needs memory): the handle stays anchored and still answers. */
    int first = upgrade(loop, s);
    failing fa;
    fa.f = lua_getallocf(L, &fa.ud);
    lua_setallocf(L, failing_alloc, &fa);
    leave(loop, s, first);
    lua_setallocf(L, fa.f, fa.ud);
    run_lua(L, CHECK_KEPT, "kept handle after a close that failed for memory");
    lua_gc(L, LUA_GCCOLLECT);
    int leaked = t_anchored_handles(L, 0);
    CHECK_MSG(leaked == 1, "%d face(s) or state(s) anchored (the state, which holds its face)",
              leaked);

    /* Under the cap: the close never fails, whatever room is left. */
    for (size_t slack = 0; slack <= 4096; slack += 128) {
        int fd = upgrade(loop, s);
        lua_gc(L, LUA_GCCOLLECT);
        s->lua.max_memory = s->lua_memory + slack;
        leave(loop, s, fd);
        s->lua.max_memory = 0;
        run_lua(L, CHECK_KEPT, "kept handle after a close under the cap");
        lua_gc(L, LUA_GCCOLLECT);
        int left = t_anchored_handles(L, 0) - leaked;
        CHECK_MSG(left == 0, "slack %zu: %d face(s) or state(s) left anchored", slack, left);
    }

    sy_server_free(s);
    ev_loop_destroy(loop);
    t_app_remove(dir, path);
    return t_summary("test_ws_close_memory");
}
