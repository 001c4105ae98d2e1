/* The switch after an accepted upgrade: a connection that closes between the app's accept and
 * the new protocol's start runs none of the new protocol's handlers (no close without open),
 * and releases the app's handle. */
#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <sys/socket.h>

#include "lua_int.h"
#include "proto.h"
#include "server.h"
#include "switchyard.h"
#include "test.h"

/* accept_then_close(handlers, websocket): what do_accept does for a raw or WebSocket token, up
 * to the switch being pending (sy_h1_accept inside app.upgrade), then a close of the connection
 * before the switch runs. The core reaches that window in one call chain, so no client can
 * hit it from outside; any close there must still follow the rule. */
static int accept_then_close(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int websocket = lua_toboolean(L, 2);
    sy_server *s = sy_lua_server(L);
    sy_conn *c = s->conns;
    lconn *h = sy_lua_new_conn_handle(L, c, websocket, 1);
    sy_lua_attach(L, -1, h, c); /* anchored, as an accept's handle is */
    void *state;
    if (websocket) {
        sy_ws_options o;
        sy_ws_default_options(&o);
        state = sy_ws_new(c, h, &o);
    } else {
        sy_raw_options o;
        sy_raw_default_options(&o);
        state = sy_raw_new(h, &o);
    }
    int rc =
        sy_h1_accept(c, SY_STR("x"), SY_STR(""), websocket ? &sy_proto_ws : &sy_proto_raw, state);
    lua_pushinteger(L, rc);
    lua_setglobal(L, "ACCEPT_RC");
    sy_conn_close(c);
    return 0;
}

static const char app_text[] =
    "EVENTS = ''\n"
    "local h = {\n"
    "  open = function() EVENTS = EVENTS .. 'open ' end,\n"
    "  close = function() EVENTS = EVENTS .. 'close ' end,\n"
    "}\n"
    "return { upgrade = function(req) accept_then_close(h, req.path == '/ws') end,\n"
    "         request = function(req, res) res:send(200, 'x') end }\n";

static void run_case(const char *path)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char dir[] = "/tmp/sy_test_switch_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char app[128];
    snprintf(app, sizeof app, "%s/app.lua", dir);
    FILE *f = fopen(app, "w");
    CHECK(f != NULL);
    fputs(app_text, f);
    fclose(f);

    sy_server *s = sy_server_new(loop);
    lua_State *L = sy_server_lua(s);
    lua_register(L, "accept_then_close", accept_then_close);
    CHECK(sy_server_load_app(s, app) == 0);
    int fds[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    CHECK(sy_server_adopt(s, fds[0]) == 0);
    char req[256];
    int n =
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n", path);
    CHECK(write(fds[1], req, (size_t)n) == n);
    for (int i = 0; i < 1000 && sy_server_connection_count(s) > 0; i++)
        ev_run(loop, EVRUN_NOWAIT);
    CHECK(sy_server_connection_count(s) == 0);

    lua_getglobal(L, "ACCEPT_RC");
    CHECK_MSG(lua_tointeger(L, -1) == 0, "accept: %d", (int)lua_tointeger(L, -1));
    lua_getglobal(L, "EVENTS");
    const char *ev = lua_tostring(L, -1);
    CHECK_MSG(ev && strcmp(ev, "") == 0, "%s: handlers ran: '%s'", path, ev ? ev : "(nil)");
    lua_pop(L, 2);
    /* The handle was released: nothing of it stays anchored in the registry. */
    lua_gc(L, LUA_GCCOLLECT);
    int anchored = 0;
    lua_pushnil(L);
    while (lua_next(L, LUA_REGISTRYINDEX)) {
        if (luaL_testudata(L, -1, SY_CONN_MT) || luaL_testudata(L, -1, SY_WS_STATE_MT))
            anchored++;
        lua_pop(L, 1);
    }
    CHECK_MSG(anchored == 0, "%s: %d handles still anchored", path, anchored);

    close(fds[1]);
    sy_server_free(s);
    ev_loop_destroy(loop);
    unlink(app);
    rmdir(dir);
}

int main(void)
{
    run_case("/raw");
    run_case("/ws");
    return t_summary("test_proto_switch");
}
