/* sy_server_reload: the app file loaded again while WebSockets stay open; named handler sets
 * (sy.accept(token, "name")) follow the app loaded now, a handler table keeps its code; a new
 * file that fails keeps the old app, its module and its settings, and the log says why; an
 * unknown name at accept and a name a reload removed. Connections are socketpairs the server
 * adopts. */
#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <sys/socket.h>

#include "switchyard.h"
#include "test.h"

static char dir[] = "/tmp/sy_test_reload_XXXXXX";

static const char *write_file(const char *name, const char *text)
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

/* The app of version V (with its module ver.lua at version V too): "chat" answers
 * "V:MODV:text"; /table is accepted with the table itself, /typo names a set that is not
 * there, anything else names "chat". */
static const char *write_app(const char *v, const char *handlers_name)
{
    char mod[128], app[2048];
    snprintf(mod, sizeof mod, "return { version = '%s' }\n", v);
    write_file("ver.lua", mod);
    snprintf(app, sizeof app,
             "local sy = require 'switchyard'\n"
             "local mod = require 'ver'\n"
             "local app = { handlers = {}, http = { max_headers = 50 } }\n"
             "ticks_%s = 0\n"
             "sy.every(0.002, function() ticks_%s = ticks_%s + 1 end)\n"
             "app.handlers.%s = {\n"
             "  message = function(ws, m) ws:send('%s:' .. mod.version .. ':' .. m) end,\n"
             "}\n"
             "function app.upgrade(req)\n"
             "  if req.path == '/table' then return sy.accept('websocket', app.handlers.chat) end\n"
             "  if req.path == '/typo' then return sy.accept('websocket', 'chta') end\n"
             "  return sy.accept('websocket', 'chat')\n"
             "end\n"
             "function app.try_reload() c_note(c_reload()) end\n"
             "function app.shutdown() c_note(-1) end\n"
             "return app\n",
             v, v, v, handlers_name, v);
    return write_file("app.lua", app);
}

static sy_server *server;
static int noted = 1;

/* c_reload(): sy_server_reload from inside a call into the app. */
static int c_reload(lua_State *L)
{
    lua_pushinteger(L, sy_server_reload(server));
    return 1;
}

static int c_note(lua_State *L)
{
    noted = (int)luaL_checkinteger(L, 1);
    return 0;
}

static char logged[8192]; /* every line since the last reset, "level:message\n" */

static void capture_log(int level, const char *msg, void *ud)
{
    (void)ud;
    size_t n = strlen(logged);
    snprintf(logged + n, sizeof logged - n, "%s:%s\n", sy_log_level_name(level), msg);
}

/* Runs the loop a little and reads what came, until `until` shows up (or ~2 s pass). */
static size_t drain(struct ev_loop *loop, int fd, char *buf, size_t cap, const char *until)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < 2000; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        ssize_t n = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
        if (n > 0) {
            len += (size_t)n;
            buf[len] = 0;
        }
        if (until && memmem(buf, len, until, strlen(until)))
            break;
        if (!until && i >= 20)
            break;
        usleep(1000);
    }
    return len;
}

/* A WebSocket on path; returns the client's end, or -1. *status gets the answer's code. */
static int ws_client(struct ev_loop *loop, sy_server *s, const char *path, int *status)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || sy_server_adopt(s, sv[0]) != 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: "
                     "13\r\n\r\n",
                     path);
    if (write(sv[1], req, (size_t)n) != n)
        return -1;
    char reply[1024];
    drain(loop, sv[1], reply, sizeof reply, "\r\n\r\n");
    *status = strncmp(reply, "HTTP/1.1 ", 9) == 0 ? atoi(reply + 9) : 0;
    return sv[1];
}

/* Sends text (mask 0) and returns 1 when the answer contains want (NULL: nothing comes). */
static int echo(struct ev_loop *loop, int fd, const char *text, const char *want)
{
    size_t n = strlen(text);
    uint8_t f[128] = {0x81, (uint8_t)(0x80 | n), 0, 0, 0, 0};
    memcpy(f + 6, text, n);
    if (write(fd, f, 6 + n) != (ssize_t)(6 + n))
        return 0;
    char buf[1024];
    size_t got = drain(loop, fd, buf, sizeof buf, want);
    if (!want)
        return got == 0;
    return memmem(buf, got, want, strlen(want)) != NULL;
}

static void test_reload(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = server = sy_server_new(loop);
    sy_set_log(capture_log, NULL);
    lua_register(sy_server_lua(s), "c_reload", c_reload);
    lua_register(sy_server_lua(s), "c_note", c_note);

    /* Nothing loaded: nothing to reload. */
    CHECK(sy_server_reload(s) == SY_EINVAL);
    CHECK(strstr(sy_server_error(s), "no app file") != NULL);

    CHECK_MSG(sy_server_load_app(s, write_app("v1", "chat")) == 0, "%s", sy_server_error(s));
    int st = 0;
    int named = ws_client(loop, s, "/", &st);
    CHECK(named >= 0 && st == 101);
    int table = ws_client(loop, s, "/table", &st);
    CHECK(table >= 0 && st == 101);
    CHECK(echo(loop, named, "a", "v1:v1:a"));
    CHECK(echo(loop, table, "a", "v1:v1:a"));

    /* A good reload: the named set runs the new code (and the new module), the table keeps
     * its own; the server's settings follow the new app. */
    logged[0] = 0;
    write_app("v2", "chat");
    CHECK_MSG(sy_server_reload(s) == 0, "%s", sy_server_error(s));
    CHECK(strstr(logged, "info:reloaded the app from ") != NULL);
    CHECK(echo(loop, named, "b", "v2:v2:b"));
    CHECK(echo(loop, table, "b", "v1:v1:b"));
    CHECK(sy_server_connection_count(s) == 2);
    /* The old app's timer keeps running (its own function), beside the new one's. */
    lua_State *L = sy_server_lua(s);
    lua_getglobal(L, "ticks_v1");
    lua_Integer before = lua_tointeger(L, -1);
    lua_pop(L, 1);
    for (int i = 0; i < 2000; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        lua_getglobal(L, "ticks_v1");
        lua_getglobal(L, "ticks_v2");
        int both = lua_tointeger(L, -2) > before && lua_tointeger(L, -1) > 0;
        lua_pop(L, 2);
        if (both)
            break;
        usleep(1000);
    }
    lua_getglobal(L, "ticks_v1");
    lua_getglobal(L, "ticks_v2");
    CHECK(lua_tointeger(L, -2) > before && lua_tointeger(L, -1) > 0);
    lua_pop(L, 2);

    /* A new file that fails while loading: the old app stays with its module (the failed one
     * required ver.lua at "v3" before failing), the error is logged and returned. */
    static const char *const broken[][2] = {
        {"local mod = require 'ver'\nerror('boom ' .. mod.version)\n", "boom v3"},
        {"return {\n", "expected"},
        {"return { upgrade = function() end, handler = {} }\n", "did you mean 'handlers'"},
        {"return { http = { max_headers = 0 } }\n", "max_headers"},
        {"return 42\n", "must return a table"},
    };
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        logged[0] = 0;
        write_file("ver.lua", "return { version = 'v3' }\n");
        const char *path = write_file("app.lua", broken[i][0]);
        CHECK(sy_server_reload(s) == SY_ELUA);
        CHECK_MSG(strstr(sy_server_error(s), broken[i][1]) != NULL, "%s", sy_server_error(s));
        CHECK_MSG(strstr(logged, "error:cannot reload the app from ") && strstr(logged, path) &&
                      strstr(logged, broken[i][1]),
                  "%s", logged);
        CHECK(echo(loop, named, "c", "v2:v2:c"));
        int fresh = ws_client(loop, s, "/", &st);
        CHECK(st == 101 && echo(loop, fresh, "d", "v2:v2:d"));
        close(fresh);
    }

    /* A name that is not in app.handlers: an error naming it, with a suggestion. */
    logged[0] = 0;
    int typo = ws_client(loop, s, "/typo", &st);
    CHECK(st == 500);
    CHECK_MSG(strstr(logged, "no handler set 'chta' in app.handlers (did you mean 'chat'?)"), "%s",
              logged);
    close(typo);

    /* A reload that removes the set: connections that name it run nothing and the name is
     * logged once; a later reload that brings it back serves them again. */
    logged[0] = 0;
    write_app("v4", "other");
    CHECK_MSG(sy_server_reload(s) == 0, "%s", sy_server_error(s));
    CHECK(echo(loop, named, "e", NULL));
    CHECK(echo(loop, named, "f", NULL));
    const char *first = strstr(logged, "handler set 'chat'");
    CHECK_MSG(first && !strstr(first + 1, "handler set 'chat'"), "%s", logged);
    CHECK(echo(loop, table, "g", "v1:v1:g"));
    write_app("v5", "chat");
    CHECK_MSG(sy_server_reload(s) == 0, "%s", sy_server_error(s));
    CHECK(echo(loop, named, "h", "v5:v5:h"));

    /* Not from inside a call into the app. */
    CHECK(sy_server_call_lua(s, "try_reload", NULL, 0) == 0);
    CHECK(noted == SY_EINVAL);
    CHECK(echo(loop, named, "i", "v5:v5:i"));

    /* Stopping: app.shutdown runs; no reload any more. */
    sy_server_shutdown(s, 1, NULL, NULL);
    CHECK(noted == -1);
    CHECK(sy_server_reload(s) == SY_ECLOSED);
    close(named);
    close(table);
    sy_server_free(s);
    ev_loop_destroy(loop);
    sy_set_log(NULL, NULL);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 2;
    test_reload();
    unlink(write_file("app.lua", ""));
    unlink(write_file("ver.lua", ""));
    rmdir(dir);
    return t_summary("test_reload");
}
