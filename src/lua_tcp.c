/* switchyard.Socket (sy.tcp()): an outbound TCP or TLS connection for hooks that wait, with
 * LuaSocket's methods. Each waiting method suspends the hook's task (lua_task.h) while the
 * client (tcp_client.h) works on the loop, and wakes it with LuaSocket-style results: the value,
 * or nil, err (and the partial data for receive). */
#include <string.h>

#include "lua_int.h"
#include "lua_task.h"
#include "tcp_client.h"

/* Seconds a connect, send or receive may wait when the app set no timeout (settimeout). */
#define DEFAULT_TIMEOUT 60.0

/* OP_CLOSING: closed from another coroutine while one waits; it wakes from the loop. */
enum { OP_NONE, OP_CONNECT, OP_RECEIVE, OP_SEND, OP_CLOSING };
enum { RECV_BYTES, RECV_LINE, RECV_ALL };

typedef struct ltcp {
    sy_tcp_client *cl;   /* owned; NULL before connect and after close */
    sy_server *s;        /* borrowed */
    double timeout;      /* seconds per operation; < 0: none */
    sy_lua_task *waiter; /* the task waiting on this socket, or NULL */
    int op;              /* OP_* while waiter is set */
    int recv_mode;       /* RECV_* */
    size_t recv_n;       /* RECV_BYTES: how many */
    size_t send_n;       /* OP_SEND: the byte count the wait returns */
    unsigned connected : 1;
    unsigned closed : 1; /* close() ran, or a connect failed: only close and settimeout work */
} ltcp;

static const char tcp_mt_key = 't'; /* registry[&tcp_mt_key] = the Socket metatable */
static const char net_key = 'n';    /* registry[&net_key] = the server's network state */

/* The server's resolver and client TLS contexts, made on first use; a full userdata made when
 * the module opens, so at lua_close it is finalized after every socket made later. */
typedef struct lnet {
    sy_resolver *resolver;
    sy_tls_ctx *verify;   /* the system's store */
    sy_tls_ctx *noverify; /* opts.verify = false */
} lnet;

static int net_gc(lua_State *L)
{
    lnet *n = lua_touserdata(L, 1);
    sy_resolver_free(n->resolver);
    sy_tls_ctx_free(n->verify);
    sy_tls_ctx_free(n->noverify);
    memset(n, 0, sizeof *n);
    return 0;
}

static lnet *net_of(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &net_key);
    lnet *n = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return n;
}

static ltcp *check_tcp(lua_State *L)
{
    return luaL_checkudata(L, 1, "switchyard.Socket");
}

/* ---- waking the task -------------------------------------------------------------------- */

static void finish_wait(ltcp *t)
{
    t->waiter = NULL;
    t->op = OP_NONE;
    if (t->cl) {
        sy_tcp_client_set_timer(t->cl, -1);
        sy_tcp_client_read_stop(t->cl);
    }
}

/* Wakes the waiting task with nil, err (and partial when not NULL). */
static void wake_error(ltcp *t, const char *err, const char *partial, size_t plen)
{
    sy_lua_task *task = t->waiter;
    finish_wait(t);
    lua_State *co = sy_lua_wake_thread(task);
    lua_checkstack(co, 3);
    lua_pushnil(co);
    lua_pushstring(co, err);
    if (partial)
        lua_pushlstring(co, partial, plen);
    sy_lua_wake(task, partial ? 3 : 2);
}

static void cancel_wait(void *ud)
{
    /* The hook's client left: the socket it waited on closes with it. */
    ltcp *t = ud;
    t->waiter = NULL;
    t->op = OP_NONE;
    sy_tcp_client_free(t->cl);
    t->cl = NULL;
    t->closed = 1;
}

/* ---- receive ---------------------------------------------------------------------------- */

/* Takes what the pattern asks from the input. Returns 1 with the data pushed on L, 0 when more
 * is needed. At the end of input (read_error set) RECV_ALL takes everything. */
static int take(ltcp *t, lua_State *L)
{
    sy_buf *in = sy_tcp_client_input(t->cl);
    const char *p = sy_buf_data(in);
    size_t len = sy_buf_len(in);
    if (t->recv_mode == RECV_BYTES) {
        if (len < t->recv_n)
            return 0;
        lua_pushlstring(L, p, t->recv_n);
        sy_buf_consume(in, t->recv_n);
        return 1;
    }
    if (t->recv_mode == RECV_LINE) {
        const char *nl = len ? memchr(p, '\n', len) : NULL;
        if (!nl)
            return 0;
        size_t n = (size_t)(nl - p);
        size_t keep = n > 0 && p[n - 1] == '\r' ? n - 1 : n;
        lua_pushlstring(L, p, keep);
        sy_buf_consume(in, n + 1);
        return 1;
    }
    const char *err = sy_tcp_client_read_error(t->cl);
    if (!err || strcmp(err, "closed") != 0)
        return 0;
    lua_pushlstring(L, p, len);
    sy_buf_consume(in, len);
    return 1;
}

/* The read side ended before the pattern was met: nil, err, partial (the partial data is
 * consumed). Returns the number of values pushed. */
static int push_read_failure(ltcp *t, lua_State *L)
{
    sy_buf *in = sy_tcp_client_input(t->cl);
    lua_pushnil(L);
    lua_pushstring(L, sy_tcp_client_read_error(t->cl));
    lua_pushlstring(L, sy_buf_data(in), sy_buf_len(in));
    sy_buf_consume(in, sy_buf_len(in));
    return 3;
}

static void on_readable(sy_tcp_client *cl, void *ud)
{
    (void)cl;
    ltcp *t = ud;
    if (!t->waiter || t->op != OP_RECEIVE)
        return;
    lua_State *co = sy_lua_wake_thread(t->waiter);
    lua_checkstack(co, 3);
    if (take(t, co)) {
        sy_lua_task *task = t->waiter;
        finish_wait(t);
        sy_lua_wake(task, 1);
        return;
    }
    if (sy_tcp_client_read_error(t->cl)) {
        sy_lua_task *task = t->waiter;
        int n = push_read_failure(t, co);
        finish_wait(t);
        sy_lua_wake(task, n);
    }
}

/* sock:receive(n | "*l" | "*a" | "l" | "a"): the data, or nil, err, partial. */
static int tcp_receive(lua_State *L)
{
    ltcp *t = check_tcp(L);
    int mode = RECV_BYTES;
    size_t want = 0;
    if (lua_isinteger(L, 2)) {
        lua_Integer n = lua_tointeger(L, 2);
        luaL_argcheck(L, n >= 0, 2, "byte count must be >= 0");
        want = (size_t)n;
    } else {
        const char *pat = luaL_optstring(L, 2, "*l");
        if (pat[0] == '*')
            pat++;
        if (pat[0] == 'l' && pat[1] == '\0')
            mode = RECV_LINE;
        else if (pat[0] == 'a' && pat[1] == '\0')
            mode = RECV_ALL;
        else
            return luaL_argerror(L, 2, "a byte count, \"*l\" or \"*a\"");
    }
    if (!t->cl || !t->connected) {
        lua_pushnil(L);
        lua_pushstring(L, "closed");
        return 2;
    }
    /* Only now: a call refused here must not change the pattern of the one that waits. */
    if (t->waiter)
        return luaL_error(L, "sock:receive: the socket is in use by another waiting call");
    t->recv_mode = mode;
    t->recv_n = want;
    if (take(t, L))
        return 1;
    if (sy_tcp_client_read_error(t->cl))
        return push_read_failure(t, L);
    sy_lua_task *task = sy_lua_wait_begin(L, "sock:receive");
    t->waiter = task;
    t->op = OP_RECEIVE;
    sy_tcp_client_read_start(t->cl);
    if (t->timeout >= 0)
        sy_tcp_client_set_timer(t->cl, t->timeout);
    return sy_lua_wait(L, task, cancel_wait, t);
}

/* ---- send ------------------------------------------------------------------------------- */

static void on_drained(sy_tcp_client *cl, void *ud)
{
    ltcp *t = ud;
    if (!t->waiter || t->op != OP_SEND)
        return;
    const char *err = sy_tcp_client_write_error(cl);
    if (err) {
        wake_error(t, err, NULL, 0);
        return;
    }
    sy_lua_task *task = t->waiter;
    lua_pushinteger(sy_lua_wake_thread(task), (lua_Integer)t->send_n);
    finish_wait(t);
    sy_lua_wake(task, 1);
}

/* sock:send(data): the number of bytes sent (all of them), or nil, err once they could not
 * be. Waits while the data is queued for the peer. */
static int tcp_send(lua_State *L)
{
    ltcp *t = check_tcp(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (!t->cl || !t->connected) {
        lua_pushnil(L);
        lua_pushstring(L, "closed");
        return 2;
    }
    if (t->waiter)
        return luaL_error(L, "sock:send: the socket is in use by another waiting call");
    /* Checked before anything is queued: a call that may not wait sends nothing. */
    sy_lua_task *task = sy_lua_wait_begin(L, "sock:send");
    int rc = sy_tcp_client_write(t->cl, p, n);
    if (rc != 0) {
        const char *err = sy_tcp_client_write_error(t->cl);
        lua_pushnil(L);
        lua_pushstring(L, rc == SY_ENOMEM ? "out of memory" : err ? err : "closed");
        return 2;
    }
    if (sy_tcp_client_buffered(t->cl) == 0) {
        lua_pushinteger(L, (lua_Integer)n);
        return 1;
    }
    t->waiter = task;
    t->op = OP_SEND;
    if (t->timeout >= 0)
        sy_tcp_client_set_timer(t->cl, t->timeout);
    t->send_n = n;
    return sy_lua_wait(L, task, cancel_wait, t);
}

/* ---- connect ---------------------------------------------------------------------------- */

static void on_connected(sy_tcp_client *cl, const char *err, void *ud)
{
    (void)cl;
    ltcp *t = ud;
    if (!t->waiter || t->op != OP_CONNECT)
        return;
    if (err) {
        sy_lua_task *task = t->waiter;
        lua_State *co = sy_lua_wake_thread(task);
        lua_pushnil(co);
        lua_pushstring(co, err);
        finish_wait(t);
        /* A failed client can only be freed; the error string lives in it, so it goes after
         * the string was copied. */
        sy_tcp_client_free(t->cl);
        t->cl = NULL;
        t->closed = 1;
        sy_lua_wake(task, 2);
        return;
    }
    t->connected = 1;
    sy_lua_task *task = t->waiter;
    lua_State *co = sy_lua_wake_thread(task);
    lua_pushinteger(co, 1);
    finish_wait(t);
    sy_lua_wake(task, 1);
}

static void on_timeout(sy_tcp_client *cl, void *ud)
{
    (void)cl;
    ltcp *t = ud;
    if (!t->waiter)
        return;
    if (t->op == OP_CLOSING) {
        sy_lua_task *task = t->waiter;
        finish_wait(t);
        sy_tcp_client_free(t->cl);
        t->cl = NULL;
        lua_State *co = sy_lua_wake_thread(task);
        lua_pushnil(co);
        lua_pushliteral(co, "closed");
        sy_lua_wake(task, 2);
        return;
    }
    if (t->op == OP_RECEIVE) {
        /* nil, "timeout", and what arrived so far (consumed, as LuaSocket does). */
        sy_buf *in = sy_tcp_client_input(t->cl);
        lua_State *co = sy_lua_wake_thread(t->waiter);
        lua_checkstack(co, 3);
        lua_pushnil(co);
        lua_pushliteral(co, "timeout");
        lua_pushlstring(co, sy_buf_data(in), sy_buf_len(in));
        sy_buf_consume(in, sy_buf_len(in));
        sy_lua_task *task = t->waiter;
        finish_wait(t);
        sy_lua_wake(task, 3);
        return;
    }
    wake_error(t, "timeout", NULL, 0);
}

static const sy_tcp_client_cbs client_cbs = {on_connected, on_readable, on_drained, on_timeout};

/* The client TLS context for opts: shared ones for verify on (system store) and off, a fresh
 * one for a CA file (the caller frees it once the client made its session). NULL with a
 * message in err on failure. */
static sy_tls_ctx *tls_ctx_for(lnet *net, const char *ca, int verify, int *fresh, char *err,
                               size_t cap)
{
    *fresh = 0;
    sy_tls_ctx **slot = verify ? &net->verify : &net->noverify;
    if (ca && verify) {
        sy_tls_ctx *ctx = NULL;
        if (sy_tls_client_ctx_new(ca, 1, &ctx, err, cap) != 0)
            return NULL;
        *fresh = 1;
        return ctx;
    }
    if (!*slot && sy_tls_client_ctx_new(NULL, verify, slot, err, cap) != 0)
        return NULL;
    return *slot;
}

/* sock:connect(host, port, opts?): 1, or nil, err. opts: timeout, tls, sni, verify, ca. */
static int tcp_connect(lua_State *L)
{
    ltcp *t = check_tcp(L);
    const char *host = luaL_checkstring(L, 2);
    lua_Integer port = luaL_checkinteger(L, 3);
    luaL_argcheck(L, port > 0 && port < 65536, 3, "port must be 1..65535");
    sy_tcp_client_opts o = {0};
    o.timeout = t->timeout;
    int tls = 0, verify = 1;
    const char *ca = NULL;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        if (lua_getfield(L, 4, "timeout") != LUA_TNIL) {
            lua_Number v = luaL_checknumber(L, -1);
            luaL_argcheck(L, v >= 0, 4, "opts.timeout must be >= 0");
            o.timeout = v;
        }
        lua_pop(L, 1);
        lua_getfield(L, 4, "tls");
        tls = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (lua_getfield(L, 4, "verify") != LUA_TNIL)
            verify = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (lua_getfield(L, 4, "sni") != LUA_TNIL)
            o.server_name = luaL_checkstring(L, -1); /* stays on the stack until the call */
        if (lua_getfield(L, 4, "ca") != LUA_TNIL)
            ca = luaL_checkstring(L, -1);
    }
    if (t->waiter)
        return luaL_error(L, "sock:connect: the socket is in use by another waiting call");
    if (t->cl || t->closed) {
        lua_pushnil(L);
        lua_pushstring(L, t->closed ? "closed" : "already connected");
        return 2;
    }
    sy_lua_task *task = sy_lua_wait_begin(L, "sock:connect");
    lnet *net = net_of(L);
    if (!net->resolver && sy_resolver_new(t->s->env.loop, NULL, &net->resolver) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "resolver unavailable");
        return 2;
    }
    int fresh = 0;
    char err[256] = "";
    if (tls) {
        o.tls = tls_ctx_for(net, ca, verify, &fresh, err, sizeof err);
        if (!o.tls) {
            lua_pushnil(L);
            lua_pushfstring(L, "tls: %s", err);
            return 2;
        }
    }
    t->cl = sy_tcp_client_new(t->s->env.loop, net->resolver, &client_cbs, t);
    int rc = t->cl ? sy_tcp_client_connect(t->cl, host, (int)port, &o) : SY_ENOMEM;
    if (fresh)
        sy_tls_ctx_free(o.tls); /* the session keeps its own reference */
    if (rc != 0) {
        sy_tcp_client_free(t->cl);
        t->cl = NULL;
        lua_pushnil(L);
        lua_pushstring(L, rc == SY_ENOMEM ? "out of memory" : "bad host or port");
        return 2;
    }
    t->waiter = task;
    t->op = OP_CONNECT;
    return sy_lua_wait(L, task, cancel_wait, t);
}

/* ---- the rest --------------------------------------------------------------------------- */

/* sock:settimeout(seconds | nil): the bound of each later connect, send and receive; nil or a
 * negative value: none. */
static int tcp_settimeout(lua_State *L)
{
    ltcp *t = check_tcp(L);
    if (lua_isnoneornil(L, 2)) {
        t->timeout = -1;
    } else {
        lua_Number v = luaL_checknumber(L, 2);
        t->timeout = v < 0 ? -1 : v;
    }
    lua_pushinteger(L, 1);
    return 1;
}

static void close_socket(ltcp *t)
{
    if (t->waiter) {
        /* Another coroutine waits on it (the app closed it from elsewhere): it wakes with
         * nil, "closed" from the loop, not inside this call, and the client goes then. */
        t->op = OP_CLOSING;
        t->closed = 1;
        t->connected = 0;
        sy_tcp_client_read_stop(t->cl);
        sy_tcp_client_set_timer(t->cl, 0);
        return;
    }
    sy_tcp_client_free(t->cl);
    t->cl = NULL;
    t->closed = 1;
    t->connected = 0;
}

/* sock:close(): 1. Also run by __close and __gc. */
static int tcp_close(lua_State *L)
{
    close_socket(check_tcp(L));
    lua_pushinteger(L, 1);
    return 1;
}

static int tcp_tostring(lua_State *L)
{
    ltcp *t = check_tcp(L);
    lua_pushfstring(L, "switchyard.Socket(%s)",
                    t->cl       ? sy_tcp_client_stage(t->cl)
                    : t->closed ? "closed"
                                : "new");
    return 1;
}

/* sy.tcp(): a new socket, not connected. Made anywhere; connecting waits, so it is for hooks. */
int sy_lua_tcp_new(lua_State *L)
{
    sy_server *s = sy_lua_server(L); /* by the registry: a host's own state has none */
    if (!s)
        return luaL_error(L, "sy.tcp: needs a running switchyard server");
    ltcp *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    t->s = s;
    t->timeout = DEFAULT_TIMEOUT;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &tcp_mt_key);
    lua_setmetatable(L, -2);
    return 1;
}

void sy_lua_open_tcp(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"connect", tcp_connect},       {"send", tcp_send},   {"receive", tcp_receive},
        {"settimeout", tcp_settimeout}, {"close", tcp_close}, {NULL, NULL},
    };
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &net_key) != LUA_TNIL) {
        lua_pop(L, 1); /* opened before in this state */
        return;
    }
    lua_pop(L, 1);
    lnet *net = lua_newuserdatauv(L, sizeof *net, 0);
    memset(net, 0, sizeof *net);
    lua_newtable(L);
    lua_pushcfunction(L, net_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &net_key);

    luaL_newmetatable(L, "switchyard.Socket");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, tcp_close); /* checks its argument: an app can call __gc by hand */
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, tcp_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, tcp_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &tcp_mt_key);
}
