/* floor_echo: the cheapest WebSocket echo this machine can run, for bench/ws.sh's "floor" column.
 *
 * Not a server to use: one thread, epoll (libev in the contract modes), no limits, no close
 * handshake, no UTF-8 check, frames up to 64 KiB. It answers the opening handshake, then for
 * every read unmasks each complete client frame into one output buffer and sends that buffer
 * with one send(): the same system calls per batch as switchyard (one read, one send; a full
 * socket is waited out with poll, which stalls every other client). Its CPU time per message is
 * what the kernel and a minimal frame loop cost, with no Lua and no protocol checks: the part of
 * switchyard's figure that no user-space work can remove.
 *
 * With "lua" it is the floor for a server with Lua in the path: every message goes through the
 * least a Lua handler `function(ws, data, binary) ws:send(data, binary) end` needs, done the
 * way switchyard does it: the messages of one read in one lua_pcall, for each a handler lookup,
 * the payload pushed as a Lua string, lua_call, `ws:send` found through an __index function
 * (a handle with fields needs one) and a C send that only frames the bytes into the output
 * buffer. Still no checks, no limits, no queue, and Lua's own allocator.
 *
 * With "contract" it is the floor for a server on switchyard's ground instead: the loop is libev's
 * (one ev_io per connection, as the core has) and every handler runs in a coroutine (README:
 * "every hook, handler and timer callback runs in a coroutine"). A read with one message resumes
 * one kept coroutine (lua_resume, no new thread) straight on the handler, found once at start,
 * with the payload pushed onto the coroutine outside any protected call (a server cannot: a copy
 * that fails for lack of memory would abort it); a read with more runs them in one resume of a C
 * batch function. `ws:send` is found through a table __index (methods only: the cheapest lookup
 * there is). "contract-fn" is the same with the __index function of the "lua" mode, which is
 * what a userdata handle with fields (ws.path, ws.id, ...) needs.
 *
 * Build: cc -O2 -o floor_echo bench/floor_echo.c -lcrypto -llua5.4 -lev -I/usr/include/lua5.4
 * Run:   floor_echo PORT [lua|contract|contract-fn]  (127.0.0.1; prints "listening on
 * http://127.0.0.1:PORT")
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define BUF (256 * 1024)

typedef struct peer {
    ev_io io; /* contract mode */
    int fd;
    int open; /* handshake done */
    int ref;  /* Lua mode: registry reference of the ws handle */
    size_t n; /* bytes in in[] */
    size_t o; /* bytes in out[] */
    uint8_t in[BUF];
    uint8_t out[BUF + 1024];
} peer;

static volatile sig_atomic_t stop;
static lua_State *L;    /* Lua modes only */
static lua_State *co;   /* contract modes: the coroutine resumed for each read */
static int message_ref; /* contract modes: the message handler */

typedef struct msg {
    const char *p;
    size_t n;
    int binary;
} msg;

static size_t put_header(uint8_t *d, int opcode, size_t len)
{
    d[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        d[1] = (uint8_t)len;
        return 2;
    }
    d[1] = 126;
    d[2] = (uint8_t)(len >> 8);
    d[3] = (uint8_t)len;
    return 4;
}

/* ws:send(data, binary): frames data into the peer's output buffer. */
static int ws_send(lua_State *l)
{
    peer *p = *(peer **)lua_touserdata(l, 1);
    size_t n;
    const char *d = luaL_checklstring(l, 2, &n);
    p->o += put_header(p->out + p->o, lua_toboolean(l, 3) ? 2 : 1, n);
    memcpy(p->out + p->o, d, n);
    p->o += n;
    lua_pushboolean(l, 1);
    return 1;
}

/* __index: methods first (upvalue 1); a real handle would look up its fields after. */
static int ws_index(lua_State *l)
{
    lua_pushvalue(l, 2);
    lua_rawget(l, lua_upvalueindex(1));
    return 1;
}

/* [msgs, count, handle, handlers]: the handler for each message, under one lua_pcall. */
static int deliver(lua_State *l)
{
    const msg *m = lua_touserdata(l, 1);
    lua_Integer k = lua_tointeger(l, 2);
    for (lua_Integer i = 0; i < k; i++) {
        lua_getfield(l, 4, "message");
        lua_pushvalue(l, 3);
        lua_pushlstring(l, m[i].p, m[i].n);
        lua_pushboolean(l, m[i].binary);
        lua_call(l, 3, 0);
    }
    return 0;
}

/* contract: 0 for "lua", 1 for "contract", 2 for "contract-fn". */
static void lua_setup(int contract)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_newmetatable(L, "ws");
    lua_newtable(L);
    lua_pushcfunction(L, ws_send);
    lua_setfield(L, -2, "send");
    if (contract == 1)
        lua_setfield(L, -2, "__index"); /* the method table itself */
    else
        lua_pushcclosure(L, ws_index, 1), lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    if (contract) {
        co = lua_newthread(L);
        luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (luaL_dostring(L, "return { message = function(ws, data, binary) "
                         "ws:send(data, binary) end }") != LUA_OK) {
        fprintf(stderr, "floor_echo: %s\n", lua_tostring(L, -1));
        exit(1);
    }
    lua_getfield(L, -1, "message");
    message_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_setfield(L, LUA_REGISTRYINDEX, "handlers");
}

static void lua_new_handle(peer *p)
{
    peer **u = lua_newuserdatauv(L, sizeof *u, 1);
    *u = p;
    luaL_setmetatable(L, "ws");
    p->ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Contract modes: the kept coroutine runs the handler (one message) or deliver (more), and ends
 * with each read. */
static int co_deliver(peer *p, const msg *m, size_t k)
{
    int nargs = 3;
    if (k == 1) {
        lua_rawgeti(co, LUA_REGISTRYINDEX, message_ref);
        lua_rawgeti(co, LUA_REGISTRYINDEX, p->ref);
        lua_pushlstring(co, m->p, m->n);
        lua_pushboolean(co, m->binary);
    } else {
        lua_pushcfunction(co, deliver);
        lua_pushlightuserdata(co, (void *)m);
        lua_pushinteger(co, (lua_Integer)k);
        lua_rawgeti(co, LUA_REGISTRYINDEX, p->ref);
        lua_getfield(co, LUA_REGISTRYINDEX, "handlers");
        nargs = 4;
    }
    int nres;
    if (lua_resume(co, L, nargs, &nres) != LUA_OK) {
        fprintf(stderr, "floor_echo: %s\n", lua_tostring(co, -1));
        lua_resetthread(co);
        return -1;
    }
    lua_pop(co, nres);
    return 0;
}

static int lua_deliver(peer *p, const msg *m, size_t k)
{
    if (co)
        return co_deliver(p, m, k);
    lua_pushcfunction(L, deliver);
    lua_pushlightuserdata(L, (void *)m);
    lua_pushinteger(L, (lua_Integer)k);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref);
    lua_getfield(L, LUA_REGISTRYINDEX, "handlers");
    if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
        fprintf(stderr, "floor_echo: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}
static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int handshake(peer *p)
{
    p->in[p->n < BUF ? p->n : BUF - 1] = 0;
    char *end = strstr((char *)p->in, "\r\n\r\n");
    if (!end)
        return 0;
    char *k = strcasestr((char *)p->in, "\nSec-WebSocket-Key:");
    if (!k)
        return -1;
    k += 19;
    while (*k == ' ')
        k++;
    char key[128];
    size_t kl = strcspn(k, "\r\n");
    if (kl > 60)
        return -1;
    memcpy(key, k, kl);
    memcpy(key + kl, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    uint8_t sha[20];
    SHA1((uint8_t *)key, kl + 36, sha);
    char acc[32];
    EVP_EncodeBlock((uint8_t *)acc, sha, 20);
    char res[256];
    int rl = snprintf(res, sizeof res,
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                      acc);
    if (send(p->fd, res, (size_t)rl, MSG_NOSIGNAL) != rl)
        return -1;
    size_t used = (size_t)(end + 4 - (char *)p->in);
    memmove(p->in, p->in + used, p->n - used);
    p->n -= used;
    p->open = 1;
    return 1;
}

/* Echoes every complete frame in p->in with one send. Returns -1 to drop the peer. */
static int echo(peer *p)
{
    size_t off = 0, o = 0, k = 0;
    static msg m[BUF / 6]; /* at most one message per 6 bytes read */
    while (p->n - off >= 6) {
        uint8_t *f = p->in + off;
        uint64_t len = f[1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (p->n - off < 8)
                break;
            len = ((uint64_t)f[2] << 8) | f[3];
            h = 4;
        } else if (len == 127) {
            return -1;
        }
        if ((f[0] & 0x0f) == 8)
            return -1; /* close: just drop */
        if (p->n - off < h + 4 + len)
            break;
        uint8_t *mask = f + h, *pl = f + h + 4;
        if (L) {
            for (uint64_t i = 0; i < len; i++)
                pl[i] ^= mask[i & 3];
            m[k].p = (const char *)pl;
            m[k].n = (size_t)len;
            m[k].binary = (f[0] & 0x0f) == 2;
            k++;
        } else {
            o += put_header(p->out + o, f[0] & 0x0f, (size_t)len);
            for (uint64_t i = 0; i < len; i++)
                p->out[o + i] = pl[i] ^ mask[i & 3];
            o += len;
        }
        off += h + 4 + len;
    }
    if (L) {
        p->o = 0;
        if (k && lua_deliver(p, m, k) != 0)
            return -1;
        o = p->o;
    }
    memmove(p->in, p->in + off, p->n - off);
    p->n -= off;
    /* A full socket is waited out in place (poll): simpler than a queue, and it costs no CPU. */
    for (size_t done = 0; done < o;) {
        ssize_t w = send(p->fd, p->out + done, o - done, MSG_NOSIGNAL);
        if (w > 0) {
            done += (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            struct pollfd pf = {.fd = p->fd, .events = POLLOUT};
            if (poll(&pf, 1, 5000) != 1)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* Accepts one pending connection, or returns NULL. */
static peer *accept_peer(int ls)
{
    int one = 1, fd;
    while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        peer *np = calloc(1, sizeof *np);
        if (np) {
            np->fd = fd;
            return np;
        }
        close(fd);
    }
    return NULL;
}

static void drop(peer *p)
{
    if (L && p->ref)
        luaL_unref(L, LUA_REGISTRYINDEX, p->ref);
    close(p->fd);
    free(p);
}

/* One read: the handshake, then echoes. Returns -1 to drop the peer. */
static int on_readable(peer *p)
{
    ssize_t r = read(p->fd, p->in + p->n, BUF - 1 - p->n);
    if (r <= 0)
        return r < 0 && errno == EAGAIN ? 0 : -1;
    p->n += (size_t)r;
    if (!p->open && handshake(p) < 0)
        return -1;
    if (p->open && L && p->ref == 0)
        lua_new_handle(p);
    if (p->open && echo(p) < 0)
        return -1;
    return 0;
}

/* Contract mode: the same on libev. */
static void on_peer(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    peer *p = (peer *)w;
    if (on_readable(p) < 0) {
        ev_io_stop(loop, w);
        drop(p);
    }
}

static void on_listen(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    peer *np;
    while ((np = accept_peer(w->fd))) {
        ev_io_init(&np->io, on_peer, np->fd, EV_READ);
        ev_io_start(loop, &np->io);
    }
}

static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
    static const char *const modes[] = {"lua", "contract", "contract-fn"};
    int mode = argc == 2 ? -1 : -2;
    for (int i = 0; argc == 3 && i < 3; i++)
        if (strcmp(argv[2], modes[i]) == 0)
            mode = i;
    if (argc < 2 || argc > 3 || mode == -2) {
        fprintf(stderr, "usage: floor_echo PORT [lua|contract|contract-fn]\n");
        return 2;
    }
    if (mode >= 0)
        lua_setup(mode);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024)) {
        perror("floor_echo: listen");
        return 1;
    }
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);
    printf("listening on http://127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    if (co) {
        struct ev_loop *loop = EV_DEFAULT;
        ev_io lw;
        ev_io_init(&lw, on_listen, ls, EV_READ);
        ev_io_start(loop, &lw);
        ev_signal sw[2];
        ev_signal_init(&sw[0], on_stop_signal, SIGTERM);
        ev_signal_init(&sw[1], on_stop_signal, SIGINT);
        ev_signal_start(loop, &sw[0]);
        ev_signal_start(loop, &sw[1]);
        ev_run(loop, 0);
        return 0;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[256];
    while (!stop) {
        int k = epoll_wait(ep, evs, 256, 200);
        for (int i = 0; i < k; i++) {
            peer *p = evs[i].data.ptr;
            if (!p) {
                peer *np;
                while ((np = accept_peer(ls))) {
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = np};
                    epoll_ctl(ep, EPOLL_CTL_ADD, np->fd, &e);
                }
                continue;
            }
            if (on_readable(p) < 0)
                drop(p);
        }
    }
    return 0;
}
