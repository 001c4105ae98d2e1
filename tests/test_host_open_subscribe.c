/* A host that subscribes a WebSocket from its on_open: the subscription makes the connection's
 * Lua handle (until then the connection holds a record shared with others accepted alike), so
 * the app's `open` that runs next must see that handle, not the record. Real WebSocket clients
 * over loopback TCP.
 * - one connection: the app's open runs (it sends "opened"), a collection between open and
 *   the first message changes nothing, and messages are echoed;
 * - two connections sharing a record across a reload that gives the named set an `open`: the
 *   idle one still echoes after a collection (the record was not let go of twice); leaving a
 *   topic from the host while it is idle answers 0;
 * - connections that fail inside the host's on_open, after it subscribed them (a send past
 *   max_backpressure closes with 1008 at once) and a collection: the app's open does not run
 *   on a record already let go of (AddressSanitizer saw a use after free), and the topic set
 *   does not keep the state of a connection the app never heard of. */
#include <lauxlib.h>
#include <lua.h>

#include "host_net.h"

static char dir[] = "/tmp/sy_test_host_open_subscribe_XXXXXX";

static const char APP_TABLE[] = "local sy = require 'switchyard'\n"
                                "return { gc = function() collectgarbage() collectgarbage() end,\n"
                                "  upgrade = function(req)\n"
                                "    return sy.accept('websocket', {\n"
                                "      open = function(ws) ws:send('opened') end,\n"
                                "      message = function(ws, m) ws:send('echo:' .. m) end,\n"
                                "    }) end }\n";

#define APP_NAMED(OPEN)                                                                            \
    "local sy = require 'switchyard'\n"                                                            \
    "local function msg(ws, m) ws:send('echo:' .. m) end\n"                                        \
    "return { gc = function() collectgarbage() collectgarbage() end,\n"                            \
    "  handlers = { s = { message = msg " OPEN " } },\n"                                           \
    "  upgrade = function(req) return sy.accept('websocket', 's') end }\n"

static const char APP_FAILING[] =
    "local sy = require 'switchyard'\n"
    "return { options = { max_backpressure = 1024 },\n"
    "  gc = function() collectgarbage() collectgarbage() end,\n"
    "  room = function()\n"
    "    for _ = 1, 4 do collectgarbage() end\n"
    "    local n = 0\n"
    "    for _, v in pairs(debug.getregistry()) do\n"
    "      if type(v) == 'table' and type(rawget(v, 'room')) == 'table' then\n"
    "        for _ in pairs(v.room) do n = n + 1 end\n"
    "      end\n"
    "    end\n"
    "    if n ~= 0 then error(('topic room still holds %d state(s)'):format(n)) end\n"
    "  end,\n"
    "  upgrade = function(req)\n"
    "    return sy.accept('websocket', { open = function(ws) ws:send('o') end,\n"
    "      message = function(ws, m) ws:send(m) end }) end }\n";

static int subscribe_on_open;
static int fail_on_open;
static char big[8 << 20];
static int subscribed_ok;
static sy_conn_id last_id;

static void on_open(sy_server *s, sy_conn_id id, void *ud)
{
    (void)ud;
    last_id = id;
    if (!subscribe_on_open)
        return;
    int rc = sy_server_subscribe(s, id, "room", 4);
    CHECK_MSG(rc >= 0, "sy_server_subscribe: %d %s", rc, sy_server_error(s));
    if (rc >= 0)
        subscribed_ok++;
    if (fail_on_open) {
        sy_server_send(s, id, big, sizeof big, 1);
        sy_server_send(s, id, big, sizeof big, 1); /* over the limit: 1008 now */
    }
    CHECK(sy_server_call_lua(s, "gc", NULL, 0) == 0);
}

/* A started server on 127.0.0.1 with app (written to dir/file) and on_open as the host's. */
static sy_server *start_server(struct ev_loop *loop, const char *file, const char *app)
{
    static const sy_ws_handler wh = {on_open, NULL, NULL};
    sy_server *s = sy_server_new(loop);
    CHECK(sy_server_listen(s, "127.0.0.1", 0, 0) == 0);
    CHECK(sy_server_load_app(s, net_write_file(dir, file, app)) == 0);
    CHECK(sy_server_start(s) == 0);
    sy_server_set_ws_handler(s, &wh, NULL);
    return s;
}

static void one_connection(struct ev_loop *loop)
{
    sy_server *s = start_server(loop, "table.lua", APP_TABLE);
    subscribe_on_open = 1;
    subscribed_ok = 0;
    int port = sy_server_listener_port(s, 0);
    net_in in = {0};
    int fd = net_ws_connect(loop, port, "/room", &in);
    CHECK(fd >= 0);
    CHECK_MSG(net_until(loop, fd, &in, "opened", 6), "the app's open did not run");
    CHECK(subscribed_ok == 1);
    CHECK(sy_server_subscribers(s, "room", 4) == 1);
    net_clear(&in);
    net_ws_frame(fd, 1, "hi", 2);
    CHECK(net_until(loop, fd, &in, "echo:hi", 7));
    close(fd);
    for (int i = 0; i < 100; i++)
        ev_run(loop, EVRUN_NOWAIT);
    sy_server_free(s);
}

static void shared_record_across_reload(struct ev_loop *loop)
{
    sy_server *s = start_server(loop, "named.lua", APP_NAMED(""));
    subscribe_on_open = 0;
    int port = sy_server_listener_port(s, 0);
    net_in ia = {0}, ib = {0};
    int a = net_ws_connect(loop, port, "/x", &ia); /* idle: its handle is not made */
    CHECK(a >= 0);
    /* Leaving a topic it never joined: nothing to do, no handle needed. */
    CHECK(sy_server_unsubscribe(s, last_id, "room", 4) == 0);
    net_write_file(dir, "named.lua", APP_NAMED(", open = function(ws) ws:send('opened') end"));
    CHECK_MSG(sy_server_reload(s) == 0, "%s", sy_server_error(s));
    subscribe_on_open = 1;
    subscribed_ok = 0;
    int b = net_ws_connect(loop, port, "/x", &ib); /* same path and set as a */
    CHECK(b >= 0);
    CHECK_MSG(net_until(loop, b, &ib, "opened", 6), "the app's open did not run on b");
    CHECK(subscribed_ok == 1);
    CHECK(sy_server_call_lua(s, "gc", NULL, 0) == 0);
    net_clear(&ia);
    net_ws_frame(a, 1, "hi", 2);
    CHECK_MSG(net_until(loop, a, &ia, "echo:hi", 7), "the idle connection got no echo");
    net_clear(&ib);
    net_ws_frame(b, 1, "yo", 2);
    CHECK(net_until(loop, b, &ib, "echo:yo", 7));
    close(a);
    close(b);
    for (int i = 0; i < 100; i++)
        ev_run(loop, EVRUN_NOWAIT);
    sy_server_free(s);
}

static void failing_in_host_open(struct ev_loop *loop)
{
    sy_server *s = start_server(loop, "failing.lua", APP_FAILING);
    subscribe_on_open = 1;
    fail_on_open = 1;
    subscribed_ok = 0;
    int port = sy_server_listener_port(s, 0);
    for (int k = 0; k < 3; k++) {
        net_in in = {0};
        int fd = net_ws_connect(loop, port, "/room", &in);
        CHECK(fd >= 0);
        for (int i = 0; i < 200; i++)
            ev_run(loop, EVRUN_NOWAIT);
        close(fd);
        for (int i = 0; i < 200; i++)
            ev_run(loop, EVRUN_NOWAIT);
    }
    CHECK(subscribed_ok == 3);
    CHECK_MSG(sy_server_call_lua(s, "room", NULL, 0) == 0, "%s", sy_server_error(s));
    fail_on_open = 0;
    sy_server_free(s);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 2;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    one_connection(loop);
    shared_record_across_reload(loop);
    failing_in_host_open(loop);
    ev_loop_destroy(loop);
    unlink(net_write_file(dir, "table.lua", ""));
    unlink(net_write_file(dir, "named.lua", ""));
    unlink(net_write_file(dir, "failing.lua", ""));
    rmdir(dir);
    return t_summary("test_host_open_subscribe");
}
