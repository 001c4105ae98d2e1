/* switchyard.Conn (raw protocols) and switchyard.WebSocket handles, their events, and the
 * dispatch of each request to app.upgrade / app.request. */
#include "lua_int.h"
#include "proto.h"

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
        static const char *const fixed[] = {"data", "remote_addr", "path", "subprotocol", NULL};
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
    sy_lua_push_traceback(L);                   /* [tb] */
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);  /* [tb, handle] */
    lua_getiuservalue(L, -1, UV_HANDLERS);      /* [tb, handle, handlers] */
    if (lua_getfield(L, -1, name) != LUA_TFUNCTION) {
        lua_settop(L, base - 1);
        return 0;
    }
    lua_replace(L, -2);                         /* [tb, handle, fn] */
    lua_rotate(L, -2, 1);                       /* [tb, fn, handle] */
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

void sy_app_raw_open(void *handle)
{
    lconn *h = handle;
    if (h->conn && call0(h, "open") != 0)
        handler_failed(h);
}

void sy_app_raw_data(void *handle, const char *p, size_t n)
{
    lconn *h = handle;
    int base = sy_lua_handler_begin(h, "data");
    if (!base)
        return;
    lua_pushlstring(h->L, p, n);
    if (sy_lua_handler_end(h, "data", base, 1) != 0)
        handler_failed(h);
}

void sy_app_raw_drain(void *handle)
{
    lconn *h = handle;
    if (h->conn)
        sy_conn_resume(h->conn);
    if (call0(h, "drain") != 0)
        handler_failed(h);
}

int sy_app_raw_eof(void *handle)
{
    lconn *h = handle;
    int base = h->conn ? sy_lua_handler_begin(h, "eof") : 0;
    if (!base)
        return 0;
    if (sy_lua_handler_end(h, "eof", base, 0) != 0)
        handler_failed(h);
    return 1;
}

int sy_app_raw_shutdown(void *handle)
{
    lconn *h = handle;
    int base = h->conn ? sy_lua_handler_begin(h, "shutdown") : 0;
    if (!base)
        return 0;
    if (sy_lua_handler_end(h, "shutdown", base, 0) != 0)
        handler_failed(h);
    return 1;
}

void sy_app_conn_discard(void *handle)
{
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

void sy_app_raw_close(void *handle)
{
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
    {"write", conn_write},
    {"close", conn_close},
    {"shutdown", conn_shutdown},
    {"buffered", conn_buffered},
    {NULL, NULL},
};

void sy_lua_open_conn(lua_State *L)
{
    const char *names[] = {SY_CONN_MT};
    for (int i = 0; i < 1; i++) {
        if (luaL_newmetatable(L, names[i])) {
            luaL_newlib(L, conn_methods);  /* [mt, methods] */
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

/* The request must not be left unanswered: when an answer could not be written (rc other
 * than 0 or SY_ECLOSED, which means the connection or the request is gone already), the
 * connection closes. */
static void answered_or_close(sy_conn *c, int rc)
{
    if (rc != 0 && rc != SY_ECLOSED && !c->closing)
        sy_conn_close(c);
}

/* The core's answer when the app itself failed: 500 and a log line. */
static void app_error(sy_conn *c, const char *why)
{
    sy_log("error", "%s", why);
    static const char body[] = "internal server error\n";
    int rc = sy_h1_respond(c, NULL, 500, SY_STR("Content-Type: text/plain\r\n"),
                           sy_str_make(body, sizeof body - 1), 0);
    answered_or_close(c, rc);
}

/* Answers the upgrade request with the app's status; a failure to write it becomes a 500, and
 * a failure of that a close. */
static void app_answer(sy_conn *c, int status, sy_str headers, sy_str body, int flags)
{
    int rc = sy_h1_respond(c, NULL, status, headers, body, flags);
    if (rc != 0 && rc != SY_ECLOSED && !c->closing) {
        char why[128];
        snprintf(why, sizeof why, "the answer of app.upgrade (status %d) could not be sent: %s",
                 status, sy_strerror(rc));
        app_error(c, why);
    }
}

static int offered_subprotocol(sy_str list, const char *want, size_t wlen)
{
    size_t pos = 0;
    sy_str tok;
    while (sy_http1_next_token(list, &pos, &tok))
        if (tok.len == wlen && memcmp(tok.p, want, wlen) == 0)
            return 1;
    return 0;
}

/* Raw protocol options (idle_timeout) from app.options, then the accept options at idx (0:
 * none), over the defaults; raises on a bad value. */
static void raw_options(lua_State *L, int idx, sy_raw_options *o)
{
    sy_raw_default_options(o);
    int top = lua_gettop(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, sy_lua_app_key());
    int app_opts = lua_istable(L, -1) && lua_getfield(L, -1, "options") == LUA_TTABLE
                       ? lua_gettop(L) : 0;
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

/* Accept: the decision at dec, the request at req_idx. Every step that may raise (a Lua
 * allocation, the app's options) runs before the handle is anchored and before any C state is
 * made for the connection; from the anchor on, only calls that cannot raise. Returns 1. */
static int do_accept(lua_State *L, sy_conn *c, int req_idx, int dec, const sy_http1_request *req,
                     sy_str body, const sy_upgrade_offer *offers, size_t n)
{
    size_t tlen = 0;
    const char *tok = NULL;
    if (decision_get(L, dec, DV_TOKEN, LUA_TSTRING))
        tok = lua_tolstring(L, -1, &tlen);
    if (!tok) {
        app_error(c, "app.upgrade returned an accept decision without a token");
        return 1;
    }
    int i = sy_upgrade_match(offers, n, sy_str_make(tok, tlen));
    if (i < 0) {
        char why[256];
        snprintf(why, sizeof why, "app.upgrade accepted '%s', which the client did not offer",
                 tok);
        app_error(c, why);
        return 1;
    }
    const sy_upgrade_offer *o = &offers[i];
    int handlers = decision_get(L, dec, DV_HANDLERS, LUA_TTABLE);
    int options = decision_get(L, dec, DV_OPTIONS, LUA_TTABLE);
    sy_str headers = {"", 0};
    if (decision_get(L, dec, DV_HEADERS, LUA_TSTRING))
        headers.p = lua_tolstring(L, -1, &headers.len);

    if (o->kind == SY_UP_TLS) {
        /* RFC 2817: the token's version pins the lowest TLS version; TLS/1.0 and TLS/1.1 (and
         * no version) still mean TLS 1.2 at least, the oldest this server speaks. */
        int min_version = o->version.len == 3 && memcmp(o->version.p, "1.3", 3) == 0 ? 13 : 12;
        if (!c->server->tls_ctx) {
            char why[256];
            snprintf(why, sizeof why,
                     "app.upgrade accepted '%s', but the server has no certificate (--cert/--key)",
                     tok);
            app_error(c, why);
            return 1;
        }
        sy_str value = sy_str_make(o->name.p, o->version.p ? (size_t)(o->version.p + o->version.len - o->name.p)
                                                          : o->name.len);
        int rc = sy_h1_start_tls(c, value, min_version);
        if (rc == SY_EINVAL)
            app_error(c, "the TLS upgrade could not start");
        else if (rc != SY_EPROTO)
            answered_or_close(c, rc);
        return 1;
    }
    if (o->kind == SY_UP_H2C) {
        const sy_http1_header *hs = sy_http1_find(req, "http2-settings");
        void *state = hs ? sy_h2_new_upgrade(c, req, body, hs->value) : NULL;
        if (!state) {
            app_error(c, "out of memory");
            return 1;
        }
        /* RFC 7540 3.2: 101 with "Upgrade: h2c", then the server preface, then stream 1. */
        int rc = sy_h1_accept(c, SY_STR("h2c"), headers, &sy_proto_h2, state);
        if (rc != 0) {
            sy_h2_free(state);
            answered_or_close(c, rc);
        }
        return 1;
    }
    int websocket = o->kind == SY_UP_WEBSOCKET;
    const char *sp = NULL; /* the subprotocol chosen (a string on the stack), or NULL */
    size_t sl = 0;
    if (websocket && options) {
        lua_pushliteral(L, "subprotocol");
        if (lua_rawget(L, options) == LUA_TSTRING)
            sp = lua_tolstring(L, -1, &sl);
        else
            lua_pop(L, 1);
    }
    /* The 101's extra header lines, built as strings on the stack and joined at the end. */
    int first = lua_gettop(L) + 1;
    if (websocket) {
        sy_str key = sy_lua_request_header(L, req_idx, "sec-websocket-key");
        char accept[29];
        if (sy_upgrade_ws_accept(key, accept) != 0) {
            app_error(c, "websocket accept key could not be computed");
            return 1;
        }
        lua_pushfstring(L, "Sec-WebSocket-Accept: %s\r\n", accept);
        if (sp) {
            sy_str offered = sy_lua_request_header(L, req_idx, "sec-websocket-protocol");
            if (!offered.p || !offered_subprotocol(offered, sp, sl)) {
                char why[256];
                snprintf(why, sizeof why,
                         "app.upgrade chose subprotocol '%s', which the client did not offer",
                         sp);
                app_error(c, why);
                return 1;
            }
            lua_pushfstring(L, "Sec-WebSocket-Protocol: %s\r\n", sp);
        }
    }
    lua_pushlstring(L, headers.p, headers.len);
    lua_concat(L, lua_gettop(L) - first + 1);
    int extra_idx = lua_gettop(L);

    sy_ws_options wo;
    if (websocket) {
        sy_ws_default_options(&wo);
        lua_rawgetp(L, LUA_REGISTRYINDEX, sy_lua_app_key());
        if (lua_istable(L, -1) && lua_getfield(L, -1, "options") == LUA_TTABLE)
            sy_lua_ws_options(L, -1, &wo);
        if (options)
            sy_lua_ws_options(L, options, &wo);
        lua_settop(L, extra_idx);
        /* permessage-deflate (RFC 7692): its answer joins the 101's extra lines. */
        sy_lua_ws_negotiate(L, req_idx, &wo);
        if (lua_gettop(L) > extra_idx)
            lua_concat(L, 2);
    }
    sy_raw_options ro;
    if (!websocket)
        raw_options(L, options, &ro); /* may raise: before the handle exists */
    sy_str extra;
    extra.p = lua_tolstring(L, -1, &extra.len);

    lconn *h = sy_lua_new_conn_handle(L, c, websocket, handlers);
    int hidx = lua_gettop(L);
    sy_lua_handle_set_info(L, hidx, UV_PATH, sy_str_make(req->path.p, req->path.len));
    if (sp)
        sy_lua_handle_set_info(L, hidx, UV_SUBPROTOCOL, sy_str_make(sp, sl));
    if (options) {
        /* options.data becomes ws.data / conn.data. */
        lua_pushliteral(L, "data");
        if (lua_rawget(L, options) == LUA_TTABLE)
            lua_setiuservalue(L, hidx, UV_DATA);
        else
            lua_pop(L, 1);
    }
    /* The 101 names the protocol as the client offered it (RFC 9110 7.8). */
    size_t offer_len = o->version.p ? (size_t)(o->version.p + o->version.len - o->name.p)
                                    : o->name.len;
    sy_str value = websocket ? SY_STR("websocket") : sy_str_make(o->name.p, offer_len);
    sy_lua_attach(L, hidx, h, c); /* the last step that may raise */
    void *state = websocket ? sy_ws_new(h, &wo) : sy_raw_new(h, &ro);
    if (!state) {
        sy_lua_detach(h);
        app_error(c, "out of memory");
        return 1;
    }
    int rc = sy_h1_accept(c, value, extra, websocket ? &sy_proto_ws : &sy_proto_raw, state);
    if (rc != 0) {
        /* The connection went away before the switch: the state was not handed over. */
        if (websocket)
            sy_ws_free(state);
        else
            sy_raw_free(state);
        sy_lua_detach(h);
        answered_or_close(c, rc);
        return 1;
    }
    /* open runs from the protocol's start, once the connection speaks it. */
    return 1;
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
    app_error(c, why);
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
    lua_call(L, 1, 1); /* an error unwinds to sy_app_dispatch: 500 */
    if (c->closing)
        return 1;
    if (lua_isnil(L, -1))
        return 0;
    int dec = lua_gettop(L);
    sy_decision *d = sy_lua_test_decision(L, dec);
    if (!d) {
        bad_return(L, c, fn);
        return 1;
    }
    switch (d->kind) {
    case SY_DECIDE_IGNORE:
        return 0;
    case SY_DECIDE_ACCEPT:
        return do_accept(L, c, req_idx, dec, req, req_body, offers, n);
    case SY_DECIDE_UPGRADE_REQUIRED: {
        const char *protocols = "";
        if (decision_get(L, dec, DV_TOKEN, LUA_TSTRING))
            protocols = lua_tostring(L, -1);
        const char *hdrs = lua_pushfstring(L, "Upgrade: %s\r\n", protocols);
        sy_str body = SY_STR("Upgrade Required\n");
        if (decision_get(L, dec, DV_BODY, LUA_TSTRING))
            body.p = lua_tolstring(L, -1, &body.len);
        app_answer(c, 426, sy_str_make(hdrs, strlen(hdrs)), body, SY_H1_CONN_UPGRADE);
        return 1;
    }
    case SY_DECIDE_REJECT: {
        sy_str body = {"", 0}, hdrs = {"", 0};
        if (decision_get(L, dec, DV_BODY, LUA_TSTRING))
            body.p = lua_tolstring(L, -1, &body.len);
        if (decision_get(L, dec, DV_HEADERS, LUA_TSTRING))
            hdrs.p = lua_tolstring(L, -1, &hdrs.len);
        app_answer(c, d->status, hdrs, body, d->flags);
        return 1;
    }
    default:
        bad_return(L, c, fn);
        return 1;
    }
}

/* Protected part of dispatch: hooks run with lua_call inside this one protected call, so an
 * error anywhere (a hook, a bad decision) unwinds to sy_app_dispatch, which answers 500. */
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
    sy_lua_push_response(L, c, a->stream);  /* [ad, req, res] */
    if (!sy_lua_push_hook(L, "request")) {
        int rc = sy_http_respond(c, a->stream, NULL, 404, SY_STR("Content-Type: text/plain\r\n"),
                                 SY_STR("not found\n"), 0);
        answered_or_close(c, rc);
        return 0;
    }
    lua_pushvalue(L, req_idx);
    lua_pushvalue(L, req_idx + 1);          /* [ad, req, res, fn, req, res] */
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
        answered_or_close(c, rc);
    }
    sy_conn_unref(c);
    lua_settop(L, top);
}

void sy_app_dispatch(sy_conn *c, const sy_http1_request *req, sy_str body,
                     const sy_upgrade_offer *offers, size_t n)
{
    dispatch_request(c, req, body, offers, n, 0);
}

void sy_app_request(sy_conn *c, const sy_http1_request *req, sy_str body, int32_t stream_id)
{
    dispatch_request(c, req, body, NULL, 0, stream_id);
}
