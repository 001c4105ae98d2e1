/* sy_server_send on raw connections: a real raw upgrade over a loopback socket, bytes from C
 * reach the client as they are (the binary flag ignored), interleaved with the Lua handler's
 * writes; the high-water mark and the send timeout apply; closed, unknown and HTTP ids are
 * refused with the documented codes. */
#include <lauxlib.h>
#include <lua.h>

#include "host_net.h"
#include "proto.h"
#include "server.h"

static char dir[] = "/tmp/sy_test_host_api_raw_XXXXXX";

/* Accepts the raw token "game": open and close tell the host the connection's id. Data is
 * echoed by Lua as "echo:<bytes>". Plain requests get 200. */
static const char APP[] = "local sy = require 'switchyard'\n"
                          "return {\n"
                          "  request = function(req, res) res:send(200, 'plain\\n') end,\n"
                          "  upgrade = function(req)\n"
                          "    if not req:offers('game') then return nil end\n"
                          "    return sy.accept('game', {\n"
                          "      open = function(conn) c_raw_open(conn.id) end,\n"
                          "      data = function(conn, b) conn:write('echo:' .. b) end,\n"
                          "      close = function(conn) c_raw_close(conn.id) end,\n"
                          "    })\n"
                          "  end,\n"
                          "}\n";

static sy_conn_id opened, closed_id;
static int nopen, nclose;

static int c_raw_open(lua_State *L)
{
    opened = (sy_conn_id)luaL_checkinteger(L, 1);
    nopen++;
    return 0;
}

static int c_raw_close(lua_State *L)
{
    closed_id = (sy_conn_id)luaL_checkinteger(L, 1);
    nclose++;
    return 0;
}

/* Opens a raw connection: the upgrade, the 101, the Lua open handler. Returns the client's fd
 * with what followed the 101's head in *in, and the id in *id. */
static int raw_client(struct ev_loop *loop, int port, int rcvbuf, net_in *in, sy_conn_id *id)
{
    int before = nopen;
    int fd = net_connect_rcvbuf(port, rcvbuf);
    CHECK(fd >= 0);
    static const char req[] =
        "GET /play HTTP/1.1\r\nHost: x\r\nUpgrade: game\r\nConnection: Upgrade\r\n\r\n";
    net_send(fd, req, sizeof req - 1);
    memset(in, 0, sizeof *in);
    CHECK(net_until(loop, fd, in, "\r\n\r\n", 4));
    CHECK_MSG(strncmp(in->buf, "HTTP/1.1 101", 12) == 0, "%s", in->buf);
    for (double end = net_now() + NET_CAP_SECONDS; nopen == before && net_now() < end;)
        net_turn(loop, fd, in);
    CHECK(nopen == before + 1);
    char *head_end = memmem(in->buf, in->len, "\r\n\r\n", 4);
    if (head_end) {
        size_t rest = in->len - (size_t)(head_end + 4 - in->buf);
        memmove(in->buf, head_end + 4, rest);
        in->len = rest;
        in->buf[rest] = 0;
    }
    *id = opened;
    return fd;
}

/* The id of the one connection of s that still speaks HTTP/1.1 (0 if none): a host learns
 * no such id through the API, so the test looks it up in the server's list. */
static sy_conn_id http_conn_id(sy_server *s)
{
    for (sy_conn *c = s->conns; c; c = c->next)
        if (c->proto == &sy_proto_http1)
            return c->id;
    return 0;
}

static void test_raw_send(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = sy_server_new(loop);
    CHECK(sy_server_set_high_water(s, 1000) == SY_EINVAL);
    CHECK(sy_server_set_high_water(s, 64 * 1024) == 0);
    lua_register(sy_server_lua(s), "c_raw_open", c_raw_open);
    lua_register(sy_server_lua(s), "c_raw_close", c_raw_close);
    CHECK(sy_server_listen(s, "127.0.0.1", 0, 0) == 0);
    CHECK_MSG(sy_server_load_app(s, net_write_file(dir, "app.lua", APP)) == 0, "%s",
              sy_server_error(s));
    CHECK(sy_server_start(s) == 0);
    int port = sy_server_listener_port(s, 0);
    CHECK(port > 0);

    net_in *in = calloc(1, sizeof *in);
    sy_conn_id id = 0;
    int fd = raw_client(loop, port, 0, in, &id);
    CHECK(id != 0 && sy_server_conn_alive(s, id) == 1);

    /* Bytes as they are: not framed, the binary flag ignored (0 with bytes that are not UTF-8
     * is no error here). */
    static const char bytes[] = "\xff\x00\x01raw";
    CHECK_MSG(sy_server_send(s, id, bytes, 6, 0) == 0, "%s", sy_server_error(s));
    CHECK(sy_server_send(s, id, "|1", 2, 1) == 0);
    CHECK(sy_server_send(s, id, NULL, 0, 0) == 0);
    CHECK(sy_server_send(s, id, NULL, 3, 0) == SY_EINVAL);
    CHECK(net_until(loop, fd, in, "|1", 2));
    CHECK(in->len == 8 && memcmp(in->buf, "\xff\x00\x01raw|1", 8) == 0);

    /* The Lua handler's writes and the host's share the one stream, in order. */
    net_clear(in);
    net_send(fd, "hi", 2);
    CHECK(net_until(loop, fd, in, "echo:hi", 7));
    CHECK(sy_server_send(s, id, "|2", 2, 0) == 0);
    CHECK(net_until(loop, fd, in, "|2", 2));
    CHECK(strcmp(in->buf, "echo:hi|2") == 0);

    /* Past the high-water mark: 1, the bytes are kept, all of them arrive. */
    net_clear(in);
    static char big[32 * 1024];
    int rc = 0, sends = 0;
    for (; rc == 0 && sends < 1024; sends++) {
        memset(big, 'a' + sends % 26, sizeof big);
        rc = sy_server_send(s, id, big, sizeof big, 1);
    }
    CHECK_MSG(rc == 1, "rc %d after %d sends", rc, sends);
    size_t want = (size_t)sends * sizeof big, got = 0;
    int in_order = 1;
    for (double end = net_now() + NET_CAP_SECONDS; got < want && net_now() < end;) {
        net_turn(loop, fd, in);
        for (size_t i = 0; i < in->len; i++, got++)
            in_order &= in->buf[i] == (char)('a' + (got / sizeof big) % 26);
        net_clear(in);
    }
    CHECK_MSG(got == want && in_order, "got %zu of %zu", got, want);

    /* A connection still speaking HTTP/1.1 takes no sends: SY_ENOTSUP. */
    int hfd = net_connect(port);
    net_in *hin = calloc(1, sizeof *hin);
    net_send(hfd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    CHECK(net_until(loop, hfd, hin, "plain\n", 6));
    sy_conn_id hid = http_conn_id(s);
    CHECK(hid != 0 && hid != id);
    CHECK(sy_server_conn_alive(s, hid) == 1);
    CHECK(sy_server_send(s, hid, "x", 1, 1) == SY_ENOTSUP);
    CHECK(strstr(sy_server_error(s), "HTTP") != NULL);
    CHECK(strcmp(sy_strerror(SY_ENOTSUP), "not supported by the connection's protocol") == 0);
    close(hfd);
    free(hin);

    /* Closing from C: queued bytes still go out, then EOF; sends answer SY_ECLOSED at once. */
    CHECK(sy_server_send(s, id, "last", 4, 0) == 0);
    CHECK(sy_server_close_conn(s, id, 0, NULL) == 0);
    CHECK(sy_server_send(s, id, "late", 4, 0) == SY_ECLOSED);
    CHECK(sy_server_close_conn(s, id, 0, NULL) == SY_ECLOSED);
    CHECK(net_until(loop, fd, in, NULL, 0));
    CHECK(in->len == 4 && memcmp(in->buf, "last", 4) == 0);
    CHECK(net_wait_flag(loop, &nclose) && closed_id == id);
    CHECK(sy_server_conn_alive(s, id) == 0);
    CHECK(sy_server_send(s, id, "gone", 4, 0) == SY_ECLOSED);
    CHECK(sy_server_send(s, 0, "x", 1, 0) == SY_ECLOSED);
    CHECK(sy_server_send(s, id + ((uint64_t)5 << 32), "x", 1, 0) == SY_ECLOSED);
    close(fd);

    /* The send timeout: a client that reads nothing loses its connection, and the host its
     * sends. */
    CHECK(sy_server_set_send_timeout(s, -1) == SY_EINVAL);
    CHECK(sy_server_set_send_timeout(s, 0.3) == 0);
    fd = raw_client(loop, port, 4096, in, &id);
    memset(big, 'z', sizeof big);
    int before = nclose;
    /* 8 MiB: more than the kernel's socket buffers take, so output waits. */
    for (int i = 0; i < 256 && sy_server_send(s, id, big, sizeof big, 1) >= 0; i++)
        ev_run(loop, EVRUN_NOWAIT);
    for (double end = net_now() + NET_CAP_SECONDS; nclose == before && net_now() < end;) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(1000);
    }
    CHECK(nclose == before + 1 && closed_id == id);
    CHECK(sy_server_send(s, id, "x", 1, 0) == SY_ECLOSED);
    close(fd);

    free(in);
    sy_server_free(s);
    ev_loop_destroy(loop);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 2;
    test_raw_send();
    unlink(net_write_file(dir, "app.lua", ""));
    rmdir(dir);
    return t_summary("test_host_api_raw");
}
