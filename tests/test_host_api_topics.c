/* Topics from C: sy_server_subscribe / sy_server_unsubscribe put WebSockets (by id) into
 * topics that sy_server_publish, sy.publish and ws:publish share with ws:subscribe;
 * sy_server_subscribers and sy.subscribers count them. Real WebSocket clients over loopback
 * TCP; a closed connection leaves its topics. */
#include <lauxlib.h>
#include <lua.h>

#include "host_net.h"

static char dir[] = "/tmp/sy_test_host_api_topics_XXXXXX";

/* WebSockets on any path; their text commands: "lua-pub:T" publishes "from lua" to T,
 * "lua-sub:T" / "lua-unsub:T" (un)subscribe from Lua. The raw token "game" tells the host its
 * id. app.count(T) reports sy.subscribers(T) to the host. */
static const char APP[] =
    "local sy = require 'switchyard'\n"
    "return {\n"
    "  count = function(t) c_count(sy.subscribers(t)) end,\n"
    "  upgrade = function(req)\n"
    "    if req:offers('game') then\n"
    "      return sy.accept('game', { open = function(conn) c_raw(conn.id) end })\n"
    "    end\n"
    "    return sy.accept('websocket', {\n"
    "      message = function(ws, m)\n"
    "        local cmd, t = m:match('^(.-):(.*)$')\n"
    "        if cmd == 'lua-pub' then sy.publish(t, 'from lua')\n"
    "        elseif cmd == 'lua-sub' then ws:subscribe(t); ws:send('lua subscribed')\n"
    "        elseif cmd == 'lua-unsub' then ws:unsubscribe(t); ws:send('lua unsubscribed')\n"
    "        end\n"
    "      end,\n"
    "    })\n"
    "  end,\n"
    "}\n";

static long counted = -1;
static sy_conn_id raw_id;
static int raw_open;

static int c_count(lua_State *L)
{
    counted = (long)luaL_checkinteger(L, 1);
    return 0;
}

static int c_raw(lua_State *L)
{
    raw_id = (sy_conn_id)luaL_checkinteger(L, 1);
    raw_open = 1;
    return 0;
}

typedef struct host {
    sy_conn_id ids[8];
    int nopen, nclose;
    sy_conn_id last_closed;
} host;

static void on_open(sy_server *s, sy_conn_id id, void *ud)
{
    (void)s;
    host *h = ud;
    h->ids[h->nopen++] = id;
}

static void on_close(sy_server *s, sy_conn_id id, int code, const char *r, size_t rl, void *ud)
{
    (void)s, (void)code, (void)r, (void)rl;
    host *h = ud;
    h->nclose++;
    h->last_closed = id;
}

typedef struct client {
    int fd;
    sy_conn_id id;
    net_in in;
} client;

static void open_client(struct ev_loop *loop, int port, host *h, client *c)
{
    int before = h->nopen;
    c->fd = net_ws_connect(loop, port, "/room", &c->in);
    CHECK(c->fd >= 0);
    for (double end = net_now() + NET_CAP_SECONDS; h->nopen == before && net_now() < end;)
        ev_run(loop, EVRUN_NOWAIT);
    CHECK(h->nopen == before + 1);
    c->id = h->ids[before];
}

/* Sends a marker to c from C and reads up to it: whatever a publish sent c before the marker
 * is in c->in too (the server writes in order). Returns 1 when `text` came before it. */
static int got_before_marker(struct ev_loop *loop, sy_server *s, client *c, const char *text)
{
    static int n;
    char marker[32], frame[64], want[128];
    snprintf(marker, sizeof marker, "marker %d", ++n);
    CHECK(sy_server_send(s, c->id, marker, strlen(marker), 0) == 0);
    size_t fl = net_ws_text(frame, marker);
    CHECK(net_until(loop, c->fd, &c->in, frame, fl));
    size_t wl = net_ws_text(want, text);
    int found = memmem(c->in.buf, c->in.len, want, wl) != NULL;
    net_clear(&c->in);
    return found;
}

static long lua_count(sy_server *s, const char *topic)
{
    counted = -1;
    CHECK(sy_server_call_lua(s, "count", (sy_lua_arg[]){SY_LUA_STR(topic)}, 1) == 0);
    return counted;
}

static void test_topics(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = sy_server_new(loop);
    host h = {0};
    lua_register(sy_server_lua(s), "c_count", c_count);
    lua_register(sy_server_lua(s), "c_raw", c_raw);
    CHECK(sy_server_listen(s, "127.0.0.1", 0, 0) == 0);
    CHECK_MSG(sy_server_load_app(s, net_write_file(dir, "app.lua", APP)) == 0, "%s",
              sy_server_error(s));
    CHECK(sy_server_start(s) == 0);
    sy_ws_handler wh = {on_open, NULL, on_close};
    sy_server_set_ws_handler(s, &wh, &h);
    int port = sy_server_listener_port(s, 0);

    client *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b), *c = calloc(1, sizeof *c);
    open_client(loop, port, &h, a);
    open_client(loop, port, &h, b);
    open_client(loop, port, &h, c);

    /* Joining: 1 the first time, 0 when subscribed already. */
    CHECK(sy_server_subscribers(s, "room", 4) == 0);
    CHECK(sy_server_subscribe(s, a->id, "room", 4) == 1);
    CHECK(sy_server_subscribe(s, b->id, "room", 4) == 1);
    CHECK(sy_server_subscribe(s, a->id, "room", 4) == 0);
    CHECK(sy_server_subscribe(s, c->id, "other", 5) == 1);
    CHECK(sy_server_subscribers(s, "room", 4) == 2);
    CHECK(sy_server_subscribers(s, "other", 5) == 1);
    CHECK(sy_server_subscribers(s, "roo", 3) == 0);
    CHECK(lua_count(s, "room") == 2);

    /* A publish from C reaches the subscribers only. */
    CHECK(sy_server_publish(s, "room", "hello room", 10, 0) == 2);
    CHECK(got_before_marker(loop, s, a, "hello room"));
    CHECK(got_before_marker(loop, s, b, "hello room"));
    CHECK(!got_before_marker(loop, s, c, "hello room"));

    /* The topics are Lua's: sy.publish reaches C's subscribers, ws:subscribe counts in C. */
    net_ws_frame(c->fd, 1, "lua-pub:room", 12);
    CHECK(net_until(loop, a->fd, &a->in, "from lua", 8));
    CHECK(net_until(loop, b->fd, &b->in, "from lua", 8));
    CHECK(!got_before_marker(loop, s, c, "from lua"));
    net_clear(&a->in), net_clear(&b->in);
    net_ws_frame(c->fd, 1, "lua-sub:room", 12);
    CHECK(net_until(loop, c->fd, &c->in, "lua subscribed", 14));
    net_clear(&c->in);
    CHECK(sy_server_subscribers(s, "room", 4) == 3);
    CHECK(sy_server_unsubscribe(s, c->id, "room", 4) == 1); /* C leaves what Lua joined */
    CHECK(sy_server_subscribers(s, "room", 4) == 2);
    net_ws_frame(c->fd, 1, "lua-unsub:room", 14);
    CHECK(net_until(loop, c->fd, &c->in, "lua unsubscribed", 16));
    net_clear(&c->in);

    /* Leaving: 1 when it was subscribed, 0 when not; delivery stops. */
    CHECK(sy_server_unsubscribe(s, b->id, "room", 4) == 1);
    CHECK(sy_server_unsubscribe(s, b->id, "room", 4) == 0);
    CHECK(sy_server_unsubscribe(s, b->id, "never", 5) == 0);
    CHECK(sy_server_subscribers(s, "room", 4) == 1);
    CHECK(sy_server_publish(s, "room", "second", 6, 0) == 1);
    CHECK(got_before_marker(loop, s, a, "second"));
    CHECK(!got_before_marker(loop, s, b, "second"));
    CHECK(lua_count(s, "room") == 1);

    /* Topics are bytes: an embedded NUL makes another topic. */
    CHECK(sy_server_subscribe(s, b->id, "r\0x", 3) == 1);
    CHECK(sy_server_subscribers(s, "r\0x", 3) == 1);
    CHECK(sy_server_subscribers(s, "r", 1) == 0);
    CHECK(sy_server_subscribe(s, b->id, "", 0) == 1);
    CHECK(sy_server_subscribers(s, "", 0) == 1);

    /* Bad arguments and other kinds of connections. */
    CHECK(sy_server_subscribe(s, a->id, NULL, 1) == SY_EINVAL);
    CHECK(sy_server_unsubscribe(s, a->id, NULL, 1) == SY_EINVAL);
    CHECK(sy_server_subscribers(s, NULL, 1) == SY_EINVAL);
    CHECK(sy_server_subscribe(s, 0, "room", 4) == SY_ECLOSED);
    CHECK(sy_server_subscribe(s, a->id + ((uint64_t)3 << 32), "room", 4) == SY_ECLOSED);
    int rfd = net_connect(port);
    net_in *rin = calloc(1, sizeof *rin);
    static const char raw_req[] =
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: game\r\nConnection: Upgrade\r\n\r\n";
    net_send(rfd, raw_req, sizeof raw_req - 1);
    CHECK(net_until(loop, rfd, rin, "\r\n\r\n", 4) && net_wait_flag(loop, &raw_open));
    CHECK(sy_server_subscribe(s, raw_id, "room", 4) == SY_ENOTSUP);
    CHECK(sy_server_unsubscribe(s, raw_id, "room", 4) == SY_ENOTSUP);
    close(rfd);
    free(rin);

    /* A WebSocket in its closing handshake joins nothing and counts no more. */
    CHECK(sy_server_subscribe(s, c->id, "room", 4) == 1);
    CHECK(sy_server_subscribers(s, "room", 4) == 2);
    CHECK(sy_server_close_conn(s, c->id, 1000, NULL) == 0);
    CHECK(sy_server_subscribers(s, "room", 4) == 1);
    CHECK(sy_server_subscribe(s, c->id, "late", 4) == SY_ECLOSED);
    CHECK(sy_server_unsubscribe(s, c->id, "room", 4) == 1);

    /* A connection that closes leaves its topics. */
    int closed_before = h.nclose;
    close(a->fd);
    for (double end = net_now() + NET_CAP_SECONDS; h.nclose == closed_before && net_now() < end;)
        ev_run(loop, EVRUN_NOWAIT);
    CHECK(h.nclose == closed_before + 1 && h.last_closed == a->id);
    CHECK(sy_server_subscribers(s, "room", 4) == 0);
    CHECK(lua_count(s, "room") == 0);
    CHECK(sy_server_publish(s, "room", "nobody", 6, 0) == 0);
    CHECK(sy_server_subscribe(s, a->id, "room", 4) == SY_ECLOSED);
    CHECK(sy_server_unsubscribe(s, a->id, "room", 4) == SY_ECLOSED);

    /* Freeing the server with subscribers left is clean (ASan checks). */
    sy_server_free(s);
    close(b->fd);
    close(c->fd);
    free(a), free(b), free(c);
    ev_loop_destroy(loop);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 2;
    test_topics();
    unlink(net_write_file(dir, "app.lua", ""));
    rmdir(dir);
    return t_summary("test_host_api_topics");
}
