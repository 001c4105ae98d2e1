/* switchyard.Conn (raw protocols) and switchyard.WebSocket handles, their events, and the
 * dispatch of each request to app.upgrade / app.request. */
#include "lua_int.h"
#include "proto.h"
#include "decision.h"

lconn *sy_lua_check_handle(lua_State *L, int idx)
{
    lconn *h = luaL_testudata(L, idx, SY_CONN_MT);
    if (!h)
        h = luaL_checkudata(L, idx, SY_WEBSOCKET_MT);
    return h;
}

void *sy_lua_new_conn_handle(lua_State *L, sy_conn *c, int websocket, int handlers_idx)
{
    handlers_idx = handlers_idx ? lua_absindex(L, handlers_idx) : 0;
    lconn *h = lua_newuserdatauv(L, sizeof *h, UV_COUNT);
    h->conn = NULL;
    h->L = L;
    h->ref = LUA_NOREF;
    h->websocket = websocket;
    h->peer = c->peer;
    h->id = c->id;
    luaL_setmetatable(L, websocket ? SY_WEBSOCKET_MT : SY_CONN_MT);
    if (handlers_idx)
        lua_pushvalue(L, handlers_idx);
    else
        lua_newtable(L);
    lua_setiuservalue(L, -2, UV_HANDLERS);
    return h;
}

void sy_lua_attach(lua_State *L, int idx, lconn *h, sy_conn *c)
{
    lua_pushvalue(L, idx);
    h->ref = luaL_ref(L, LUA_REGISTRYINDEX); /* the one step here that may raise */
    h->conn = c;
    h->id = c->id;
}

void sy_lua_handle_set_info(lua_State *L, int idx, int uv, sy_str value)
{
    idx = lua_absindex(L, idx);
    lua_pushlstring(L, value.p, value.len);
    lua_setiuservalue(L, idx, uv);
}

int sy_lua_handle_field(lua_State *L, lconn *h, const char *k)
{
    if (strcmp(k, "data") == 0) {
        if (lua_getiuservalue(L, 1, UV_DATA) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setiuservalue(L, 1, UV_DATA);
        }
        return 1;
    }
    if (strcmp(k, "remote_addr") == 0) {
        char a[INET6_ADDRSTRLEN];
        sy_peer_format(&h->peer, a);
        lua_pushstring(L, a);
        return 1;
    }
    if (strcmp(k, "id") == 0) {
        lua_pushinteger(L, (lua_Integer)h->id);
        return 1;
    }
    if (strcmp(k, "path") == 0) {
        lua_getiuservalue(L, 1, UV_PATH);
        return 1;
    }
    if (strcmp(k, "subprotocol") == 0) {
        lua_getiuservalue(L, 1, UV_SUBPROTOCOL);
        return 1;
    }
    /* The app's own field, or nil. */
    if (lua_getiuservalue(L, 1, UV_EXTRA) != LUA_TTABLE)
        return 1;
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

int sy_lua_handle_newindex(lua_State *L)
{
    lconn *h = sy_lua_check_handle(L, 1);
    if (lua_type(L, 2) == LUA_TSTRING) {
        static const char *const fixed[] = {"data", "remote_addr", "id",
                                            "path", "subprotocol", NULL};
        const char *k = lua_tostring(L, 2);
        lua_pushvalue(L, 2);
        int builtin = lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL; /* a method */
        lua_pop(L, 1);
        for (int i = 0; !builtin && fixed[i]; i++)
            builtin = strcmp(k, fixed[i]) == 0;
        if (builtin) /* level 1, the app's line that assigned, leads the message */
            return luaL_error(L, "%s.%s is read-only", h->websocket ? "ws" : "conn", k);
    }
    if (lua_getiuservalue(L, 1, UV_EXTRA) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, UV_EXTRA);
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, -3);
    return 0;
}

int sy_lua_handler_begin(lconn *h, const char *name)
{
    lua_State *L = h->L;
    if (h->ref == LUA_NOREF)
        return 0; /* detached: nothing to call */
    int base = lua_gettop(L) + 1;
    sy_lua_push_traceback(L);                  /* [tb] */
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref); /* [tb, handle] */
    lua_getiuservalue(L, -1, UV_HANDLERS);     /* [tb, handle, handlers] */
    if (lua_getfield(L, -1, name) != LUA_TFUNCTION) {
        lua_settop(L, base - 1);
        return 0;
    }
    lua_replace(L, -2);   /* [tb, handle, fn] */
    lua_rotate(L, -2, 1); /* [tb, fn, handle] */
    return base;
}

int sy_lua_handler_end(lconn *h, const char *name, int base, int nargs)
{
    sy_conn *c = h->conn;
    if (c)
        sy_conn_ref(c);
    int rc = sy_lua_pcall_at(h->L, base, nargs + 1,
                             h->websocket ? "websocket handler" : "raw handler", name);
    if (c)
        sy_conn_unref(c);
    return rc;
}

/* A handler with no arguments. */
static int call0(lconn *h, const char *name)
{
    int base = sy_lua_handler_begin(h, name);
    return base ? sy_lua_handler_end(h, name, base, 0) : 0;
}

static void handler_failed(lconn *h)
{
    /* A raw protocol has no error channel: the connection goes (after what was queued). */
    if (h->conn)
        sy_conn_close_after_write(h->conn);
}

void sy_lua_raw_open(void *ud, void *handle)
{
    (void)ud;
    lconn *h = handle;
    if (h->conn && call0(h, "open") != 0)
        handler_failed(h);
}

void sy_lua_raw_data(void *ud, void *handle, const char *p, size_t n)
{
    (void)ud;
    lconn *h = handle;
    int base = sy_lua_handler_begin(h, "data");
    if (!base)
        return;
    lua_pushlstring(h->L, p, n);
    if (sy_lua_handler_end(h, "data", base, 1) != 0)
        handler_failed(h);
}

void sy_lua_raw_drain(void *ud, void *handle)
{
    (void)ud;
    lconn *h = handle;
    if (h->conn)
        sy_conn_resume(h->conn);
    if (call0(h, "drain") != 0)
        handler_failed(h);
}

int sy_lua_raw_eof(void *ud, void *handle)
{
    (void)ud;
    lconn *h = handle;
    int base = h->conn ? sy_lua_handler_begin(h, "eof") : 0;
    if (!base)
        return 0;
    if (sy_lua_handler_end(h, "eof", base, 0) != 0)
        handler_failed(h);
    return 1;
}

int sy_lua_raw_shutdown(void *ud, void *handle)
{
    (void)ud;
    lconn *h = handle;
    int base = h->conn ? sy_lua_handler_begin(h, "shutdown") : 0;
    if (!base)
        return 0;
    if (sy_lua_handler_end(h, "shutdown", base, 0) != 0)
        handler_failed(h);
    return 1;
}

void sy_lua_conn_discard(void *ud, void *handle)
{
    (void)ud;
    sy_lua_detach(handle);
}

void sy_lua_detach(lconn *h)
{
    h->conn = NULL;
    if (h->ref != LUA_NOREF) {
        int ref = h->ref;
        h->ref = LUA_NOREF;
        luaL_unref(h->L, LUA_REGISTRYINDEX, ref);
    }
}

void sy_lua_raw_close(void *ud, void *handle)
{
    (void)ud;
    lconn *h = handle;
    h->conn = NULL; /* the handler sees a closed conn: writes answer nil, "closed" */
    call0(h, "close");
    sy_lua_detach(h);
}

/* conn:write(bytes) -> true (below the high-water mark) | false (queued above it; reading
 * pauses until drain) | nil, "closed" */
static int conn_write(lua_State *L)
{
    lconn *h = sy_lua_check_handle(L, 1);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (!h->conn || h->conn->closing || h->conn->close_after_write) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    int rc = sy_conn_write(h->conn, p, n);
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    if (rc == 1)
        sy_conn_pause(h->conn);
    lua_pushboolean(L, rc == 0);
    return 1;
}

/* conn:close(): flushes what is queued, then closes; the close handler follows. */
static int conn_close(lua_State *L)
{
    lconn *h = sy_lua_check_handle(L, 1);
    if (h->conn)
        sy_conn_close_after_write(h->conn);
    return 0;
}

/* conn:shutdown(): no more writes; our FIN follows what is queued, and reading goes on (eof
 * and close follow the peer's side). true | nil, "closed" */
static int conn_shutdown(lua_State *L)
{
    lconn *h = sy_lua_check_handle(L, 1);
    if (!h->conn || sy_conn_shutdown_write(h->conn) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int conn_buffered(lua_State *L)
{
    lconn *h = sy_lua_check_handle(L, 1);
    lua_pushinteger(L, h->conn ? (lua_Integer)sy_conn_buffered(h->conn) : 0);
    return 1;
}

static int conn_index(lua_State *L)
{
    lconn *h = sy_lua_check_handle(L, 1);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) /* methods first */
        return 1;
    lua_pop(L, 1);
    return sy_lua_handle_field(L, h, lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "");
}

static int conn_tostring(lua_State *L)
{
    lconn *h = sy_lua_check_handle(L, 1);
    char a[INET6_ADDRSTRLEN];
    sy_peer_format(&h->peer, a);
    lua_pushfstring(L, "%s(%s%s)", h->websocket ? SY_WEBSOCKET_MT : SY_CONN_MT, a,
                    h->conn ? "" : ", closed");
    return 1;
}

static const luaL_Reg conn_methods[] = {
    {"write", conn_write},       {"close", conn_close}, {"shutdown", conn_shutdown},
    {"buffered", conn_buffered}, {NULL, NULL},
};

void sy_lua_open_conn(lua_State *L)
{
    const char *names[] = {SY_CONN_MT};
    for (int i = 0; i < 1; i++) {
        if (luaL_newmetatable(L, names[i])) {
            luaL_newlib(L, conn_methods); /* [mt, methods] */
            lua_pushvalue(L, -1);
            lua_pushcclosure(L, sy_lua_handle_newindex, 1);
            lua_setfield(L, -3, "__newindex");
            lua_pushcclosure(L, conn_index, 1);
            lua_setfield(L, -2, "__index");
            lua_pushcfunction(L, conn_tostring);
            lua_setfield(L, -2, "__tostring");
        }
        lua_pop(L, 1);
    }
}

/* ---- dispatch ----------------------------------------------------------------------------- */

/* Raw protocol options (idle_timeout) from app.options, then the accept options at idx (0:
 * none), over *o; raises on a bad value. */
static void raw_options(lua_State *L, int idx, sy_raw_options *o)
{
    int top = lua_gettop(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, sy_lua_app_key());
    int app_opts =
        lua_istable(L, -1) && lua_getfield(L, -1, "options") == LUA_TTABLE ? lua_gettop(L) : 0;
    int from[2] = {app_opts, idx};
    for (int i = 0; i < 2; i++) {
        if (!from[i] || lua_getfield(L, from[i], "idle_timeout") == LUA_TNIL)
            continue;
        int isnum;
        double v = lua_tonumberx(L, -1, &isnum);
        if (!isnum || !(v >= 0 && v <= 1e7))
            luaL_error(L, "option idle_timeout must be a number of seconds in [0, 1e7] (0: none)");
        o->idle_timeout = v;
        lua_pop(L, 1);
    }
    lua_settop(L, top);
}

/* Pushes user value uv of the decision at dec and returns its index when it has type want;
 * else pushes nothing and returns 0. */
static int decision_get(lua_State *L, int dec, int uv, int want)
{
    if (lua_getiuservalue(L, dec, uv) == want)
        return lua_gettop(L);
    lua_pop(L, 1);
    return 0;
}

/* The string user value uv of the decision at dec, pushed (kept on the stack while d is
 * used), or p == NULL. */
static sy_str decision_str(lua_State *L, int dec, int uv)
{
    sy_str s = {NULL, 0};
    if (decision_get(L, dec, uv, LUA_TSTRING))
        s.p = lua_tolstring(L, -1, &s.len);
    return s;
}

/* Accept: turns the decision at dec into d and hands it to the core, which checks and
 * applies it (decision.c). Every step that may raise (a Lua allocation, the app's options)
 * runs before the handle is anchored; from the anchor on, only calls that cannot raise. */
static void do_accept(lua_State *L, sy_conn *c, int dec, sy_decision *d,
                      const sy_http1_request *req, sy_str body, const sy_upgrade_offer *offers,
                      size_t n)
{
    d->token = decision_str(L, dec, DV_TOKEN);
    int handlers = decision_get(L, dec, DV_HANDLERS, LUA_TTABLE);
    int options = decision_get(L, dec, DV_OPTIONS, LUA_TTABLE);
    d->headers = decision_str(L, dec, DV_HEADERS);
    if (options) {
        lua_pushliteral(L, "subprotocol");
        if (lua_rawget(L, options) == LUA_TSTRING)
            d->subprotocol.p = lua_tolstring(L, -1, &d->subprotocol.len);
        else
            lua_pop(L, 1);
    }
    if (sy_decision_check(d, c, req, offers, n) != 0)
        return;
    if (sy_decision_wants_handle(d)) {
        int websocket = d->offer->kind == SY_UP_WEBSOCKET;
        if (websocket) {
            int top = lua_gettop(L);
            lua_rawgetp(L, LUA_REGISTRYINDEX, sy_lua_app_key());
            if (lua_istable(L, -1) && lua_getfield(L, -1, "options") == LUA_TTABLE)
                sy_lua_ws_options(L, -1, &d->ws);
            if (options)
                sy_lua_ws_options(L, options, &d->ws);
            lua_settop(L, top);
        } else {
            raw_options(L, options, &d->raw); /* may raise: before the handle exists */
        }
        lconn *h = sy_lua_new_conn_handle(L, c, websocket, handlers);
        int hidx = lua_gettop(L);
        sy_lua_handle_set_info(L, hidx, UV_PATH, sy_str_make(req->path.p, req->path.len));
        if (websocket && d->subprotocol.p)
            sy_lua_handle_set_info(L, hidx, UV_SUBPROTOCOL, d->subprotocol);
        if (options) {
            /* options.data becomes ws.data / conn.data. */
            lua_pushliteral(L, "data");
            if (lua_rawget(L, options) == LUA_TTABLE)
                lua_setiuservalue(L, hidx, UV_DATA);
            else
                lua_pop(L, 1);
        }
        sy_lua_attach(L, hidx, h, c); /* the last step that may raise */
        d->handle = h;                /* from here on the core owns it */
    }
    sy_decision_apply(d, c, req, body, offers, n);
}

/* The log line for a wrong return value of app.upgrade names what it returned and where the
 * hook is defined. fn: the hook's index; the value is at the top. */
static void bad_return(lua_State *L, sy_conn *c, int fn)
{
    const char *type = luaL_typename(L, -1);
    if (luaL_getmetafield(L, -1, "__name") == LUA_TSTRING)
        type = lua_tostring(L, -1); /* kept on the stack while used */
    lua_Debug ar;
    lua_pushvalue(L, fn);
    lua_getinfo(L, ">S", &ar);
    char why[512];
    snprintf(why, sizeof why,
             "app.upgrade (%s:%d) returned a %s; it must return sy.accept(), sy.ignore(), "
             "sy.upgrade_required(), sy.reject() or nil",
             ar.short_src, ar.linedefined, type);
    sy_decision_error(c, why);
}

/* Returns 1 when the upgrade hook decided (and the request is answered, switched or its
 * connection closed), 0 to fall through to app.request. */
static int run_upgrade(lua_State *L, sy_conn *c, int req_idx, const sy_http1_request *req,
                       sy_str req_body, const sy_upgrade_offer *offers, size_t n)
{
    if (!sy_lua_push_hook(L, "upgrade"))
        return 0;
    int fn = lua_gettop(L);
    lua_pushvalue(L, fn);
    lua_pushvalue(L, req_idx);
    lua_call(L, 1, 1); /* an error unwinds to sy_lua_dispatch: 500 */
    if (c->closing)
        return 1;
    if (lua_isnil(L, -1))
        return 0;
    int dec = lua_gettop(L);
    sy_lua_decision *ld = sy_lua_test_decision(L, dec);
    if (!ld || ld->kind < SY_DECIDE_ACCEPT || ld->kind > SY_DECIDE_REJECT) {
        bad_return(L, c, fn);
        return 1;
    }
    sy_decision d;
    sy_decision_init(&d, ld->kind);
    if (ld->kind == SY_DECIDE_ACCEPT) {
        do_accept(L, c, dec, &d, req, req_body, offers, n);
        return 1;
    }
    d.status = ld->status;
    d.flags = ld->flags;
    d.token = decision_str(L, dec, DV_TOKEN);
    d.body = decision_str(L, dec, DV_BODY);
    if (ld->kind == SY_DECIDE_REJECT)
        d.headers = decision_str(L, dec, DV_HEADERS);
    return sy_decision_apply(&d, c, req, req_body, offers, n);
}

/* Protected part of dispatch: hooks run with lua_call inside this one protected call, so an
 * error anywhere (a hook, a bad decision) unwinds to sy_lua_dispatch, which answers 500. */
typedef struct dispatch_args {
    sy_conn *c;
    const sy_http1_request *req;
    sy_str body;
    const sy_upgrade_offer *offers;
    size_t n;
    int32_t stream;    /* HTTP/2 stream, or 0 for HTTP/1.1 */
    const char *stage; /* what runs now, for the log line */
} dispatch_args;

static int dispatch_protected(lua_State *L)
{
    dispatch_args *a = lua_touserdata(L, 1);
    sy_conn *c = a->c;
    sy_lua_push_request(L, c, a->req, a->body, a->offers, a->n);
    int req_idx = lua_gettop(L);
    if (a->n > 0) {
        a->stage = "app.upgrade";
        if (run_upgrade(L, c, req_idx, a->req, a->body, a->offers, a->n))
            return 0;
        lua_settop(L, req_idx);
        if (c->closing)
            return 0;
    }
    a->stage = "app.request";
    sy_lua_push_response(L, c, a->stream); /* [ad, req, res] */
    if (!sy_lua_push_hook(L, "request")) {
        int rc = sy_http_respond(c, a->stream, NULL, 404, SY_STR("Content-Type: text/plain\r\n"),
                                 SY_STR("not found\n"), 0);
        sy_answered_or_close(c, rc);
        return 0;
    }
    lua_pushvalue(L, req_idx);
    lua_pushvalue(L, req_idx + 1); /* [ad, req, res, fn, req, res] */
    lua_call(L, 2, 0);
    /* Not answered yet: keep the handle alive for a later res:send. */
    sy_lua_anchor_response(L, req_idx + 1);
    return 0;
}

static void dispatch_request(sy_conn *c, const sy_http1_request *req, sy_str body,
                             const sy_upgrade_offer *offers, size_t n, int32_t stream)
{
    lua_State *L = c->server->L;
    dispatch_args a = {c, req, body, offers, n, stream, "request dispatch"};
    int top = lua_gettop(L);
    sy_conn_ref(c);
    lua_pushcfunction(L, dispatch_protected);
    lua_pushlightuserdata(L, &a);
    if (sy_lua_call_stage(L, 1, 0, &a.stage) != 0 && !c->closing) {
        /* The log line names the stage that failed (the traceback has the app's file:line).
         * SY_ECLOSED: answered already (the hook sent its response, then raised). */
        int rc = sy_http_respond(c, stream, NULL, 500, SY_STR("Content-Type: text/plain\r\n"),
                                 SY_STR("internal server error\n"), 0);
        sy_answered_or_close(c, rc);
    }
    sy_conn_unref(c);
    lua_settop(L, top);
}

void sy_lua_dispatch(void *ud, sy_conn *c, const sy_http1_request *req, sy_str body,
                     const sy_upgrade_offer *offers, size_t n)
{
    (void)ud;
    dispatch_request(c, req, body, offers, n, 0);
}

void sy_lua_request(void *ud, sy_conn *c, const sy_http1_request *req, sy_str body,
                    int32_t stream_id)
{
    (void)ud;
    dispatch_request(c, req, body, NULL, 0, stream_id);
}
