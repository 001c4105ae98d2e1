/* The host's calls of switchyard.h: user data, connection ids, WebSocket callbacks in C, send,
 * close and publish from C, calling the app's Lua under its budget, the Lua bounds, and the
 * log function. Connections are socketpairs the server adopts. */
#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <sys/socket.h>

#include "switchyard.h"
#include "test.h"

static char dir[] = "/tmp/sy_test_host_api_XXXXXX";

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

/* Every WebSocket joins topic "t" and is told its id; text not handled in C is echoed by Lua
 * as "lua:<text>". app.record and the global stamp call back into C (c_record). */
static const char APP[] =
    "local sy = require 'switchyard'\n"
    "function stamp(s, n) c_record('global:' .. s, n) end\n"
    "return {\n"
    "  lua = { max_time = 5 },\n"
    "  record = function(s, n) c_record(s, n) end,\n"
    "  fail = function() error('boom from the app') end,\n"
    "  spin = function() while true do end end,\n"
    "  hog = function() local t = {} for i = 1, 1e4 do t[i] = ('x'):rep(1 << 20) .. i end end,\n"
    "  upgrade = function(req)\n"
    "    return sy.accept('websocket', {\n"
    "      open = function(ws) ws:subscribe('t'); ws:send('id:' .. ws.id) end,\n"
    "      message = function(ws, m) ws:send('lua:' .. m) end,\n"
    "    })\n"
    "  end,\n"
    "}\n";

static char recorded[256];
static double recorded_n;

static int c_record(lua_State *L)
{
    snprintf(recorded, sizeof recorded, "%s", luaL_checkstring(L, 1));
    recorded_n = luaL_checknumber(L, 2);
    return 0;
}

/* Runs the loop a little and reads what came, until `until` shows up (or ~2 s pass). */
static size_t drain(struct ev_loop *loop, int fd, char *buf, size_t cap, const char *until,
                    size_t until_len)
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
        if (until && memmem(buf, len, until, until_len))
            break;
        if (!until && i >= 20)
            break;
        usleep(1000);
    }
    return len;
}

static char greeting[1024]; /* what the last ws_client read: the 101 and "id:N" */

static int ws_client(struct ev_loop *loop, sy_server *s)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || sy_server_adopt(s, sv[0]) != 0)
        return -1;
    static const char req[] =
        "GET /game HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (write(sv[1], req, sizeof req - 1) != (ssize_t)(sizeof req - 1))
        return -1;
    char *reply = greeting;
    drain(loop, sv[1], reply, sizeof greeting, "id:", 3);
    size_t got = strlen(reply); /* the frame's digits may come in a later read */
    drain(loop, sv[1], reply + got, sizeof greeting - got, NULL, 0);
    if (strncmp(reply, "HTTP/1.1 101", 12) != 0) {
        close(sv[1]);
        return -1;
    }
    return sv[1];
}

/* Sends a masked client frame (mask 0: the payload goes as it is). */
static void send_frame(int fd, int opcode, const char *p, size_t n)
{
    uint8_t f[200] = {(uint8_t)(0x80 | opcode), (uint8_t)(0x80 | n), 0, 0, 0, 0};
    memcpy(f + 6, p, n);
    CHECK(write(fd, f, 6 + n) == (ssize_t)(6 + n));
}

/* ---- the host's WebSocket callbacks ------------------------------------------------------- */

typedef struct host {
    sy_conn_id ids[4];
    int nopen, nclose, nmsg;
    int close_code;
    void *ud_at_close;
    int alive_at_close;
    int send_at_close;
} host;

static int user_tag[4];

static void on_open(sy_server *s, sy_conn_id id, void *ud)
{
    host *h = ud;
    CHECK(sy_server_user_data(s) == h);
    CHECK(id != 0);
    CHECK(sy_server_conn_alive(s, id) == 1);
    CHECK(sy_server_conn_user_data(s, id) == NULL);
    CHECK(sy_server_conn_set_user_data(s, id, &user_tag[h->nopen]) == 0);
    h->ids[h->nopen++] = id;
}

/* "c:<text>" is the host's: answered from C; anything else goes on to Lua. */
static int on_message(sy_server *s, sy_conn_id id, const char *p, size_t n, int binary, void *ud)
{
    host *h = ud;
    h->nmsg++;
    if (binary || n < 2 || memcmp(p, "c:", 2) != 0)
        return 0;
    char out[128];
    int len = snprintf(out, sizeof out, "C got %.*s", (int)(n - 2), p + 2);
    CHECK(sy_server_send(s, id, out, (size_t)len, 0) == 0);
    return 1;
}

static void on_close(sy_server *s, sy_conn_id id, int code, const char *reason, size_t rlen,
                     void *ud)
{
    (void)reason, (void)rlen;
    host *h = ud;
    h->nclose++;
    h->close_code = code;
    h->ud_at_close = sy_server_conn_user_data(s, id);
    h->alive_at_close = sy_server_conn_alive(s, id);
    h->send_at_close = sy_server_send(s, id, "x", 1, 0);
}

static int logged_level = -1;
static char logged[512];

static void capture_log(int level, const char *msg, void *ud)
{
    CHECK(ud == &logged_level);
    logged_level = level;
    snprintf(logged, sizeof logged, "%s", msg);
}

static void test_host_calls(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = sy_server_new(loop);
    host h = {0};
    CHECK(sy_server_user_data(s) == NULL);
    sy_server_set_user_data(s, &h);
    CHECK(sy_server_user_data(s) == &h);

    /* The host's bounds win over app.lua; bad values are refused. */
    CHECK(sy_server_set_lua_max_time(s, -1) == SY_EINVAL);
    CHECK(sy_server_set_lua_max_time(s, 4000) == SY_EINVAL);
    CHECK(sy_server_set_lua_max_memory(s, 1000) == SY_EINVAL);
    CHECK(sy_server_set_lua_max_time(s, 0.2) == 0);
    CHECK(sy_server_set_lua_max_memory(s, (size_t)64 << 20) == 0);
    lua_register(sy_server_lua(s), "c_record", c_record);
    CHECK_MSG(sy_server_load_app(s, write_app("app.lua", APP)) == 0, "%s", sy_server_error(s));
    CHECK(sy_server_lua_max_time(s) == 0.2);

    sy_ws_handler wh = {on_open, on_message, on_close};
    sy_server_set_ws_handler(s, &wh, &h);
    int a = ws_client(loop, s), b = ws_client(loop, s);
    CHECK(a >= 0 && b >= 0);
    CHECK(h.nopen == 2 && h.ids[0] != h.ids[1]);
    CHECK(sy_server_conn_user_data(s, h.ids[1]) == &user_tag[1]);

    /* Lua's ws.id is the host's id. */
    char buf[4096], want[64];
    int wl = snprintf(want, sizeof want, "id:%llu", (unsigned long long)h.ids[1]);
    CHECK_MSG(memmem(greeting, strlen(greeting), want, (size_t)wl) != NULL, "want %s", want);

    /* Messages: "c:" ones are answered in C, the others by Lua, in order. */
    send_frame(a, 1, "c:one", 5);
    send_frame(a, 1, "two", 3);
    send_frame(a, 1, "c:three", 7);
    size_t n = drain(loop, a, buf, sizeof buf, "C got three", 11);
    char *p1 = memmem(buf, n, "C got one", 9), *p2 = memmem(buf, n, "lua:two", 7),
         *p3 = memmem(buf, n, "C got three", 11);
    CHECK(p1 && p2 && p3 && p1 < p2 && p2 < p3);
    CHECK(h.nmsg == 3);

    /* Publish from C: both subscribers get the one frame. */
    CHECK(sy_server_publish(s, "t", "tick 1", 6, 0) == 2);
    CHECK(sy_server_publish(s, "nobody", "x", 1, 0) == 0);
    CHECK(sy_server_publish(s, "t", "\xff", 1, 0) == SY_EINVAL);
    CHECK(sy_server_publish(s, "t", "\x01\x02", 2, 1) == 2);
    n = drain(loop, a, buf, sizeof buf, "tick 1", 6);
    CHECK(memmem(buf, n, "tick 1", 6) != NULL);
    n = drain(loop, b, buf, sizeof buf, "tick 1", 6);
    CHECK(memmem(buf, n, "tick 1", 6) != NULL);

    /* Send to one. */
    CHECK(sy_server_send(s, h.ids[1], "just b", 6, 0) == 0);
    CHECK(sy_server_send(s, h.ids[1], "\xc3", 1, 0) == SY_EINVAL);
    CHECK(sy_server_send(s, 0, "x", 1, 0) == SY_ECLOSED);
    CHECK(sy_server_send(s, h.ids[1] + ((uint64_t)7 << 32), "x", 1, 0) == SY_ECLOSED);
    n = drain(loop, b, buf, sizeof buf, "just b", 6);
    CHECK(memmem(buf, n, "just b", 6) != NULL);

    /* Close one from C: the close frame goes out; on_close runs once the peer answers. */
    CHECK(sy_server_close_conn(s, h.ids[0], 999, NULL) == SY_EINVAL);
    CHECK(sy_server_close_conn(s, h.ids[0], 4000, "bye") == 0);
    n = drain(loop, a, buf, sizeof buf,
              "\x88\x05\x0f\xa0"
              "bye",
              7);
    CHECK(memmem(buf, n,
                 "\x88\x05\x0f\xa0"
                 "bye",
                 7) != NULL);
    CHECK(sy_server_send(s, h.ids[0], "late", 4, 0) == SY_ECLOSED);
    send_frame(a, 8, "\x0f\xa0", 2);
    for (int i = 0; i < 2000 && h.nclose == 0; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(1000);
    }
    CHECK(h.nclose == 1 && h.close_code == 4000);
    CHECK(h.ud_at_close == &user_tag[0]);
    CHECK(h.alive_at_close == 0 && h.send_at_close == SY_ECLOSED);
    close(a); /* the connection goes: its id and user data with it */
    for (int i = 0; i < 2000 && sy_server_conn_user_data(s, h.ids[0]); i++) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(1000);
    }
    CHECK(sy_server_conn_alive(s, h.ids[0]) == 0);
    CHECK(sy_server_conn_user_data(s, h.ids[0]) == NULL);
    CHECK(sy_server_conn_set_user_data(s, h.ids[0], &h) == SY_ECLOSED);
    CHECK(sy_server_close_conn(s, h.ids[0], 1000, NULL) == SY_ECLOSED);
    CHECK(sy_server_publish(s, "t", "after", 5, 0) == 1);

    /* Calling the app's Lua: the app's table, then the globals; errors and the budget. */
    CHECK(sy_server_call_lua(s, "record", (sy_lua_arg[]){SY_LUA_STR("hi"), SY_LUA_NUM(42)}, 2) ==
          0);
    CHECK(strcmp(recorded, "hi") == 0 && recorded_n == 42);
    sy_lua_arg bin = {SY_LUA_STRING, "a\0b", 3, 0};
    CHECK(sy_server_call_lua(s, "stamp", (sy_lua_arg[]){bin, SY_LUA_NUM(-1.5)}, 2) == 0);
    CHECK(memcmp(recorded, "global:a", 9) == 0 && recorded_n == -1.5);
    CHECK(sy_server_call_lua(s, "no_such", NULL, 0) == SY_EINVAL);
    CHECK(sy_server_call_lua(s, NULL, NULL, 0) == SY_EINVAL);
    CHECK(sy_server_call_lua(s, "record", (sy_lua_arg[]){{7, NULL, 0, 0}}, 1) == SY_EINVAL);

    sy_set_log(capture_log, &logged_level);
    CHECK(sy_server_call_lua(s, "fail", NULL, 0) == SY_ELUA);
    CHECK_MSG(strstr(sy_server_error(s), "boom from the app") != NULL, "%s", sy_server_error(s));
    CHECK(logged_level == SY_LOG_ERROR && strstr(logged, "boom from the app") != NULL);
    CHECK(strstr(logged, "'fail'") != NULL);
    CHECK(sy_server_set_lua_max_time(s, 30) == 0);
    CHECK(sy_server_call_lua(s, "hog", NULL, 0) == SY_ELUA); /* ends at its 64 MiB bound */
    CHECK(sy_server_set_lua_max_time(s, 0.2) == 0);
    CHECK_MSG(strstr(logged, "memory limit") != NULL, "%s / %s", logged, sy_server_error(s));
    CHECK(sy_server_call_lua(s, "spin", NULL, 0) == SY_ELUA); /* ends at its 0.2 s budget */
    CHECK_MSG(strstr(sy_server_error(s), "time budget") != NULL, "%s", sy_server_error(s));
    sy_set_log(NULL, NULL);
    CHECK(strcmp(sy_log_level_name(SY_LOG_WARN), "warn") == 0);
    CHECK(strcmp(sy_log_level_name(99), "?") == 0);
    sy_set_log(capture_log, &logged_level);
    luaL_dostring(sy_server_lua(s), "require('switchyard').log('debug', 'from', 'lua')");
    CHECK(logged_level == SY_LOG_DEBUG && strcmp(logged, "from lua") == 0);
    sy_set_log(NULL, NULL);
    /* Still usable after each failure. */
    CHECK(sy_server_call_lua(s, "record", (sy_lua_arg[]){SY_LUA_STR("again"), SY_LUA_NUM(1)},
                             1 + 1) == 0);
    CHECK(strcmp(recorded, "again") == 0);

    /* Freeing the server closes b: the host hears of it. */
    sy_server_free(s);
    CHECK(h.nclose == 2);
    close(b);
    ev_loop_destroy(loop);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 2;
    test_host_calls();
    unlink(write_app("app.lua", ""));
    rmdir(dir);
    return t_summary("test_host_api");
}
