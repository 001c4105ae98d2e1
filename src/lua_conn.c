/* switchyard.Conn (raw protocols) and switchyard.WebSocket handles, their events, and the
 * dispatch of each request to app.upgrade / app.request. */
#include "lua_int.h"
#include "proto.h"
#include "decision.h"
#include "lua_task.h"

lconn *sy_lua_check_handle(lua_State *L, int idx)
{
    lconn *h = luaL_testudata(L, idx, SY_CONN_MT);
    if (!h && !(h = sy_lua_ws_state(L, idx))) /* a WebSocket's face: now its state */
        luaL_typeerror(L, idx, SY_WEBSOCKET_MT);
    return h;
}

void *sy_lua_new_conn_handle(lua_State *L, sy_conn *c, int websocket, int handlers_idx)
{
    handlers_idx = handlers_idx ? lua_absindex(L, handlers_idx) : 0;
    lconn *h = lua_newuserdatauv(L, sizeof *h, websocket ? UV_WS_COUNT : UV_COUNT);
    h->conn = NULL;
    /* The main state: L may be the coroutine of a hook, collected once it is done. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    h->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    h->ref = LUA_NOREF;
    h->websocket = websocket != 0;
    h->peer = c->peer;
    h->id = c->id;
    h->task = NULL;
    h->held_first = h->held_end = 0;
    h->held_bytes = 0;
    h->held_paused = 0;
    h->pumping = 0;
    luaL_setmetatable(L, websocket ? SY_WS_STATE_MT : SY_CONN_MT);
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

void sy_lua_handle_set_info(lua_State *L, int idx, int f, sy_str value)
{
    idx = lua_absindex(L, idx);
    lua_pushlstring(L, value.p, value.len);
    sy_lua_hf_set(L, idx, f);
}

int sy_lua_hf_get(lua_State *L, int idx, int f)
{
    int t = lua_getiuservalue(L, idx, UV_INFO);
    if (t == LUA_TTABLE) {
        t = lua_rawgeti(L, -1, f);
        lua_remove(L, -2);
        return t;
    }
    if (t == LUA_TSTRING && f == HF_PATH)
        return t; /* the path alone, no table yet */
    lua_pop(L, 1);
    lua_pushnil(L);
    return LUA_TNIL;
}

void sy_lua_hf_set(lua_State *L, int idx, int f)
{
    idx = lua_absindex(L, idx);
    int t = lua_getiuservalue(L, idx, UV_INFO); /* [value, info] */
    if (t != LUA_TTABLE) {
        if (f == HF_PATH && t != LUA_TSTRING) { /* the first field: kept alone */
            lua_pop(L, 1);
            lua_setiuservalue(L, idx, UV_INFO);
            return;
        }
        if (lua_isnil(L, -2)) { /* nothing to clear */
            lua_pop(L, 2);
            return;
        }
        lua_createtable(L, HF_COUNT, 0); /* [value, path or nil, info] */
        lua_insert(L, -2);
        lua_rawseti(L, -2, HF_PATH);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, idx, UV_INFO);
    }
    lua_insert(L, -2); /* [info, value] */
    lua_rawseti(L, -2, f);
    lua_pop(L, 1);
}

int sy_lua_handle_field(lua_State *L, lconn *h, const char *k)
{
    if (strcmp(k, "data") == 0) {
        if (sy_lua_hf_get(L, 1, HF_DATA) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            sy_lua_hf_set(L, 1, HF_DATA);
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
        sy_lua_hf_get(L, 1, HF_PATH);
        return 1;
    }
    if (strcmp(k, "subprotocol") == 0) {
        sy_lua_hf_get(L, 1, HF_SUBPROTOCOL);
        return 1;
    }
    /* The app's own field, or nil. */
    if (sy_lua_hf_get(L, 1, HF_EXTRA) != LUA_TTABLE)
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
    if (sy_lua_hf_get(L, 1, HF_EXTRA) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        sy_lua_hf_set(L, 1, HF_EXTRA);
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, -3);
    return 0;
}

/* Held events past this many payload bytes pause reading (TCP backpressure) until the
 * waiting handler ends; below it the connection goes on reading, so pings are answered and a
 * client that leaves is seen during the wait. */
#define HELD_MAX (64 * 1024)

static const char missing_key = 'g'; /* registry[&missing_key]: names of handler sets found
                                      * missing and logged since the app was loaded */

int sy_lua_push_handler_set(lua_State *L, int name_idx)
{
    name_idx = lua_absindex(L, name_idx);
    int t = lua_rawgetp(L, LUA_REGISTRYINDEX, sy_lua_app_key()); /* [app] */
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "handlers");
        t = lua_rawget(L, -2); /* [app, handlers] */
        if (t == LUA_TTABLE) {
            lua_pushvalue(L, name_idx);
            t = lua_rawget(L, -2); /* [app, handlers, set] */
            lua_replace(L, -3);
        }
        lua_pop(L, 1);
    }
    if (t != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_pushnil(L);
        return LUA_TNIL;
    }
    return LUA_TTABLE;
}

void sy_lua_handler_sets_reset(lua_State *L)
{
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &missing_key);
}

int sy_lua_push_handlers(lua_State *L, int handle_idx)
{
    handle_idx = lua_absindex(L, handle_idx);
    if (lua_getiuservalue(L, handle_idx, UV_HANDLERS) != LUA_TSTRING)
        return lua_type(L, -1);
    int t = sy_lua_push_handler_set(L, -1); /* [name, set] */
    if (t != LUA_TTABLE) {
        /* Gone from the app a reload brought: logged once per name and loaded app. */
        if (lua_rawgetp(L, LUA_REGISTRYINDEX, &missing_key) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_rawsetp(L, LUA_REGISTRYINDEX, &missing_key);
        }
        lua_pushvalue(L, -3);
        if (lua_rawget(L, -2) == LUA_TNIL) {
            sy_log("error",
                   "handler set '%s' (named by sy.accept) is not in app.handlers of the app "
                   "loaded now: connections accepted with it run no handler until a reload "
                   "brings it back",
                   lua_tostring(L, -4));
            lua_pushvalue(L, -4);
            lua_pushboolean(L, 1);
            lua_rawset(L, -4);
        }
        lua_pop(L, 2); /* [name, nil] */
    }
    lua_remove(L, -2);
    return t;
}

/* The event names handlers are looked up by, anchored in the registry (registry[&names_key])
 * so that pushing one finds the interned string and never allocates. */
static const char names_key = 'e';
static const char *const event_names[] = {"open", "message", "close", "drain",   "ping",
                                          "pong", "data",    "eof",   "shutdown"};

void sy_lua_handler_failed(lconn *h)
{
    if (!h->conn)
        return;
    if (h->websocket)
        sy_ws_close(h->conn, 1011, SY_STR("internal error"));
    else
        sy_conn_close_after_write(h->conn);
}

/* [set, name]: set[name] through its metamethods, which are the app's code. */
static int index_handler_set(lua_State *L)
{
    lua_gettable(L, 1);
    return 1;
}

/* [handle, set] -> [handle, set, value]: the set's field name. A plain field is read raw; one
 * the set's metatable provides (__index is the app's code) is read in a protected call under
 * the time budget, as the message path does. Returns 0, or SY_ELUA when that lookup raised
 * (logged; nothing pushed). */
static int push_handler(lua_State *co, lconn *h, const char *name)
{
    lua_pushstring(co, name); /* one of event_names: no allocation */
    if (lua_rawget(co, -2) != LUA_TNIL)
        return 0;
    if (!lua_getmetatable(co, -2))
        return 0; /* [handle, set, nil] */
    lua_pop(co, 2);
    lua_pushcfunction(co, index_handler_set);
    lua_pushvalue(co, -2);
    lua_pushstring(co, name);
    return sy_lua_call_err(co, 2, 1, h->websocket ? "websocket handler" : "raw handler", name, NULL,
                           0);
}

sy_lua_task *sy_lua_handler_begin(lconn *h, const char *name)
{
    if (h->ref == LUA_NOREF)
        return NULL; /* detached: nothing to call */
    sy_lua_task *t = sy_lua_task_get(sy_lua_state_server(h->L));
    if (!t)
        return NULL;
    lua_State *co = t->co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, h->ref); /* [state] */
    int failed = 0;
    if (sy_lua_push_handlers(co, -1) != LUA_TTABLE || (failed = push_handler(co, h, name)) != 0 ||
        lua_type(co, -1) != LUA_TFUNCTION) { /* [state, handlers, fn] */
        sy_lua_task_put(t);
        if (failed)
            sy_lua_handler_failed(h);
        return NULL;
    }
    /* [state, fn, handle]: the state stays below the function while the handler runs, so a
     * connection closed and detached during the handler (a send past max_backpressure) keeps
     * its lconn until the task ends, whatever the handler drops. */
    lua_replace(co, -2); /* [state, fn] */
    if (h->websocket)
        lua_getiuservalue(co, 1, UV_FACE); /* the handle the app sees */
    else
        lua_pushvalue(co, 1);
    return t;
}

/* A waiting handler of the connection ended (or was closed with it). */
void sy_lua_handler_done(void *owner, int status)
{
    lconn *h = owner;
    h->task = NULL;
    if (status == SY_LUA_CANCELLED)
        return;
    if (status == SY_ELUA)
        sy_lua_handler_failed(h);
    sy_lua_held_run(h);
}

int sy_lua_handler_end(lconn *h, const char *name, sy_lua_task *t, int nargs)
{
    t->what = h->websocket ? "websocket handler" : "raw handler";
    t->name = name;
    t->conn = h->conn;
    t->owner = h;
    t->done = sy_lua_handler_done;
    h->task = t;
    int rc = sy_lua_task_run(t, nargs + 1);
    if (rc == 1)
        return 0; /* waits: events are held until it ends */
    h->task = NULL;
    if (h->held_first != h->held_end && !h->pumping)
        sy_lua_held_run(h);
    return rc == SY_ELUA ? SY_ELUA : 0;
}

/* Whether the handler set of the handle (or record) under registry reference ref has a
 * function called name. */
static int has_handler_protected(lua_State *L)
{
    lua_Integer ref = lua_tointeger(L, 1);
    const char *name = lua_touserdata(L, 2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    int yes =
        sy_lua_push_handlers(L, -1) == LUA_TTABLE && lua_getfield(L, -1, name) == LUA_TFUNCTION;
    lua_pushboolean(L, yes);
    return 1;
}

/* In a protected call under the time budget: resolving a named set the app no longer has
 * records the name (it is logged once), which allocates, and the set's __index is the app's
 * code; out of memory or an error there (logged) answers no. */
static int ref_has_handler(lua_State *L, int ref, const char *name)
{
    lua_pushcfunction(L, has_handler_protected);
    lua_pushinteger(L, ref);
    lua_pushlightuserdata(L, (void *)name);
    if (sy_lua_call_err(L, 2, 1, "handler lookup", name, NULL, 0) != 0)
        return 0;
    int yes = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return yes;
}

int sy_lua_has_handler(lconn *h, const char *name)
{
    return h->ref != LUA_NOREF && ref_has_handler(h->L, h->ref, name);
}

/* [handle-less args]: appends one held event to HF_HELD of the handle (argument 1, light
 * userdata of the lconn), in a protected call: copying the payload may fail. */
typedef struct hold_args {
    lconn *h;
    int kind;
    const char *p;
    size_t n;
    int binary;
} hold_args;

static int hold_protected(lua_State *L)
{
    hold_args *a = lua_touserdata(L, 1);
    lconn *h = a->h;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref); /* [a, state] */
    if (sy_lua_hf_get(L, -1, HF_HELD) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        sy_lua_hf_set(L, -3, HF_HELD);
    } /* [a, handle, held] */
    lua_Integer k = (lua_Integer)h->held_end * 3;
    lua_pushinteger(L, a->kind);
    lua_rawseti(L, -2, k + 1);
    if (a->p)
        lua_pushlstring(L, a->p, a->n);
    else
        lua_pushboolean(L, 0);
    lua_rawseti(L, -2, k + 2);
    lua_pushboolean(L, a->binary);
    lua_rawseti(L, -2, k + 3);
    return 0;
}

/* What one held event counts against HELD_MAX: its payload and 16 bytes, at most just past the
 * bound (one event alone pauses reading). */
static uint32_t held_cost(size_t n)
{
    return n < HELD_MAX ? (uint32_t)n + 16 : HELD_MAX + 16;
}

void sy_lua_hold(lconn *h, int kind, const char *p, size_t n, int binary)
{
    if (h->ref == LUA_NOREF)
        return;
    lua_State *L = h->L;
    hold_args a = {h, kind, p, n, binary};
    lua_pushcfunction(L, hold_protected);
    lua_pushlightuserdata(L, &a);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        sy_log("error", "%s: cannot hold an event while a handler waits: %s",
               h->websocket ? "websocket" : "raw", lua_tostring(L, -1));
        lua_pop(L, 1);
        if (h->conn)
            sy_conn_close(h->conn);
        return;
    }
    h->held_end++;
    uint32_t cost = held_cost(n);
    h->held_bytes = h->held_bytes > UINT32_MAX - cost ? UINT32_MAX : h->held_bytes + cost;
    if (h->held_bytes > HELD_MAX && h->conn && !h->held_paused) {
        h->held_paused = 1;
        sy_conn_pause(h->conn);
    }
}

/* Drops what is held (the connection ended, or everything ran). */
static void held_clear(lconn *h)
{
    if (h->held_end != h->held_first && h->ref != LUA_NOREF) {
        lua_State *L = h->L;
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
        lua_pushnil(L);
        sy_lua_hf_set(L, -2, HF_HELD);
        lua_pop(L, 1);
    }
    h->held_first = h->held_end = 0;
    h->held_bytes = 0;
}

static void run_raw_held(lconn *h, int kind, lua_State *L, int payload);

void sy_lua_held_run(lconn *h)
{
    if (h->pumping)
        return;
    h->pumping = 1;
    sy_conn *c = h->conn;
    if (c)
        sy_conn_ref(c);
    lua_State *L = h->L;
    while (!h->task && h->held_first != h->held_end && h->conn && h->ref != LUA_NOREF) {
        int top = lua_gettop(L);
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
        sy_lua_hf_get(L, -1, HF_HELD); /* [state, held] */
        lua_Integer k = (lua_Integer)h->held_first * 3;
        lua_rawgeti(L, -1, k + 1);
        int kind = (int)lua_tointeger(L, -1);
        lua_rawgeti(L, -2, k + 2); /* [handle, held, kind, payload] */
        lua_rawgeti(L, -3, k + 3);
        int binary = lua_toboolean(L, -1);
        lua_pop(L, 1);
        for (int i = 1; i <= 3; i++) { /* let go of the entry */
            lua_pushnil(L);
            lua_rawseti(L, -4, k + i);
        }
        h->held_first++;
        size_t n = lua_type(L, -1) == LUA_TSTRING ? lua_rawlen(L, -1) : 0;
        uint32_t cost = held_cost(n);
        h->held_bytes = h->held_bytes > cost ? h->held_bytes - cost : 0;
        int payload = lua_gettop(L);
        if (h->websocket)
            sy_lua_ws_held(h, kind, L, payload, binary);
        else
            run_raw_held(h, kind, L, payload);
        lua_settop(L, top);
    }
    if (!h->task) {
        if (h->held_first == h->held_end || !h->conn)
            held_clear(h);
        if (h->held_paused && h->conn) {
            h->held_paused = 0;
            if (!h->conn->over_high_water)
                sy_conn_resume(h->conn);
        }
    }
    if (c)
        sy_conn_unref(c);
    h->pumping = 0;
}

void sy_lua_handle_ended(lconn *h)
{
    struct sy_lua_task *t = h->task;
    h->task = NULL;
    held_clear(h);
    h->held_paused = 0;
    if (t)
        sy_lua_task_cancel(t); /* closed now if it waits, at its next wait if it runs */
}

/* A handler with no arguments. */
static int call0(lconn *h, const char *name)
{
    sy_lua_task *t = sy_lua_handler_begin(h, name);
    return t ? sy_lua_handler_end(h, name, t, 0) : 0;
}

static void run_raw_held(lconn *h, int kind, lua_State *L, int payload)
{
    static const char *const names[] = {[SY_HELD_DATA] = "data",
                                        [SY_HELD_DRAIN] = "drain",
                                        [SY_HELD_EOF] = "eof",
                                        [SY_HELD_SHUTDOWN] = "shutdown"};
    if (kind < SY_HELD_DRAIN || kind > SY_HELD_SHUTDOWN || !names[kind])
        return;
    sy_lua_task *t = sy_lua_handler_begin(h, names[kind]);
    if (!t) {
        if (kind == SY_HELD_EOF || kind == SY_HELD_SHUTDOWN)
            sy_conn_close(h->conn); /* the handler went meanwhile: as with none */
        return;
    }
    int nargs = 0;
    if (kind == SY_HELD_DATA) {
        lua_pushvalue(L, payload);
        lua_xmove(L, t->co, 1);
        nargs = 1;
    }
    if (sy_lua_handler_end(h, names[kind], t, nargs) != 0)
        sy_lua_handler_failed(h);
}

void sy_lua_raw_open(void *ud, void *handle)
{
    (void)ud;
    lconn *h = handle;
    if (h->conn && call0(h, "open") != 0)
        sy_lua_handler_failed(h);
}

void sy_lua_raw_data(void *ud, void *handle, const char *p, size_t n)
{
    (void)ud;
    lconn *h = handle;
    if (h->task) {
        sy_lua_hold(h, SY_HELD_DATA, p, n, 0);
        return;
    }
    sy_lua_task *t = sy_lua_handler_begin(h, "data");
    if (!t)
        return;
    lua_pushlstring(t->co, p, n);
    if (sy_lua_handler_end(h, "data", t, 1) != 0)
        sy_lua_handler_failed(h);
}

void sy_lua_raw_drain(void *ud, void *handle)
{
    (void)ud;
    lconn *h = handle;
    if (h->conn && !h->held_paused)
        sy_conn_resume(h->conn);
    if (h->task) {
        sy_lua_hold(h, SY_HELD_DRAIN, NULL, 0, 0);
        return;
    }
    if (call0(h, "drain") != 0)
        sy_lua_handler_failed(h);
}

/* eof and shutdown: 1 when the app has the handler (it runs, now or after a waiting one). */
static int raw_event(lconn *h, const char *name, int kind)
{
    if (!h->conn)
        return 0;
    if (h->task) {
        if (!sy_lua_has_handler(h, name))
            return 0;
        sy_lua_hold(h, kind, NULL, 0, 0);
        return 1;
    }
    sy_lua_task *t = sy_lua_handler_begin(h, name);
    if (!t)
        return 0;
    if (sy_lua_handler_end(h, name, t, 0) != 0)
        sy_lua_handler_failed(h);
    return 1;
}

int sy_lua_raw_eof(void *ud, void *handle)
{
    (void)ud;
    return raw_event(handle, "eof", SY_HELD_EOF);
}

int sy_lua_raw_shutdown(void *ud, void *handle)
{
    (void)ud;
    return raw_event(handle, "shutdown", SY_HELD_SHUTDOWN);
}

void sy_lua_conn_discard(void *ud, void *handle)
{
    (void)ud;
    lconn *h = handle;
    if (sy_lua_is_lazy(handle))
        sy_lua_lazy_release(handle);
    else if (h->websocket)
        sy_lua_ws_discard(h); /* the host may have subscribed it */
    else
        sy_lua_detach(h);
}

/* ---- WebSocket handles made on first use -------------------------------------------------- */

/* registry[&lazy_key]: { [path] = lazy record } for records in use (no weak table: the
 * collector would visit it at every young collection); a record leaves when its last
 * connection lets go of it. */
static const char lazy_key = 'z';

static sy_lua_lazy *lazy_of(void *handle)
{
    return (sy_lua_lazy *)((uintptr_t)handle & ~(uintptr_t)1);
}

/* User value uv of the record at rec equals the value at idx (0: nil)? Pops nothing. */
static int lazy_same(lua_State *L, int rec, int uv, int idx)
{
    lua_getiuservalue(L, rec, uv);
    int same = idx ? lua_rawequal(L, -1, idx) : lua_isnil(L, -1);
    lua_pop(L, 1);
    return same;
}

/* The lazy record of a connection accepted with the handlers at handlers (0: none), the path,
 * the subprotocol (p == NULL: none) and the data table at data (0: none): one made earlier
 * for the same values, or a new one; counted and anchored for the connection. May raise (out
 * of memory) before anything is counted. */
static sy_lua_lazy *lazy_get(lua_State *L, int handlers, sy_str path, sy_str sub, int data)
{
    int top = lua_gettop(L);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &lazy_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &lazy_key);
    }
    int cache = lua_gettop(L);
    lua_pushlstring(L, path.p ? path.p : "", path.len);
    int key = lua_gettop(L);
    int subidx = 0;
    if (sub.p) {
        lua_pushlstring(L, sub.p, sub.len);
        subidx = lua_gettop(L);
    }
    sy_lua_lazy *z = NULL;
    lua_pushvalue(L, key);
    if (lua_rawget(L, cache) == LUA_TUSERDATA) {
        int rec = lua_gettop(L);
        if (lazy_same(L, rec, LZ_HANDLERS, handlers) && lazy_same(L, rec, LZ_SUBPROTOCOL, subidx) &&
            lazy_same(L, rec, LZ_DATA, data))
            z = lua_touserdata(L, rec);
    }
    if (!z) {
        lua_pop(L, 1);
        z = lua_newuserdatauv(L, sizeof *z, LZ_COUNT);
        z->refs = 0;
        z->ref = LUA_NOREF;
        lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
        z->L = lua_tothread(L, -1);
        lua_pop(L, 1);
        int from[] = {
            [LZ_HANDLERS] = handlers, [LZ_PATH] = key, [LZ_SUBPROTOCOL] = subidx, [LZ_DATA] = data};
        for (int uv = 1; uv <= LZ_COUNT; uv++) {
            if (from[uv]) {
                lua_pushvalue(L, from[uv]);
                lua_setiuservalue(L, -2, uv);
            }
        }
        lua_pushvalue(L, key);
        lua_pushvalue(L, -2);
        lua_rawset(L, cache);
    }
    if (z->refs == 0) {
        lua_pushvalue(L, -1);
        z->ref = luaL_ref(L, LUA_REGISTRYINDEX); /* the last step that may raise */
    }
    z->refs++;
    lua_settop(L, top);
    return z;
}

void sy_lua_lazy_release(void *handle)
{
    sy_lua_lazy *z = lazy_of(handle);
    if (z->refs > 0 && --z->refs == 0) {
        lua_State *L = z->L;
        int top = lua_gettop(L);
        /* Out of the cache when it is the one there (no allocation: nothing raises). */
        if (lua_rawgetp(L, LUA_REGISTRYINDEX, &lazy_key) == LUA_TTABLE) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, z->ref); /* [cache, rec] */
            lua_getiuservalue(L, -1, LZ_PATH);         /* [cache, rec, path] */
            lua_pushvalue(L, -1);
            if (lua_rawget(L, -4) == LUA_TUSERDATA && lua_touserdata(L, -1) == z) {
                lua_pop(L, 1);
                lua_pushnil(L);
                lua_rawset(L, -4);
            }
        }
        lua_settop(L, top);
        int ref = z->ref;
        z->ref = LUA_NOREF;
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
    }
}

int sy_lua_lazy_has(void *handle, const char *name)
{
    sy_lua_lazy *z = lazy_of(handle);
    return ref_has_handler(z->L, z->ref, name);
}

typedef struct make_args {
    sy_conn *c;
    void *lazy; /* the core's tagged pointer */
    lconn *h;
    int released; /* the record was let go of already */
} make_args;

/* [args]: the handle, made as do_accept made it before: handlers, then path, subprotocol and
 * data in that order. */
static int make_protected(lua_State *L)
{
    make_args *a = lua_touserdata(L, 1);
    sy_lua_lazy *z = lazy_of(a->lazy);
    lua_rawgeti(L, LUA_REGISTRYINDEX, z->ref); /* [args, rec] */
    int handlers = lua_getiuservalue(L, 2, LZ_HANDLERS) != LUA_TNIL ? 3 : 0;
    lconn *h = sy_lua_new_conn_handle(L, a->c, 1, handlers); /* [args, rec, handlers, handle] */
    a->h = h; /* for the undo, should a later step raise */
    lua_getiuservalue(L, 2, LZ_PATH);
    sy_lua_hf_set(L, 4, HF_PATH);
    if (lua_getiuservalue(L, 2, LZ_SUBPROTOCOL) == LUA_TSTRING)
        sy_lua_hf_set(L, 4, HF_SUBPROTOCOL);
    else
        lua_pop(L, 1);
    if (lua_getiuservalue(L, 2, LZ_DATA) == LUA_TTABLE)
        sy_lua_hf_set(L, 4, HF_DATA);
    else
        lua_pop(L, 1);
    sy_lua_ws_face(L, 4); /* before the record may be let go of: this can raise */
    if (z->refs == 1) {
        /* Its last connection: the handle takes the record's registry slot (freed, then
         * reused by luaL_ref without an allocation, so nothing can fail between), as the
         * handle made at the accept had it. */
        sy_lua_lazy_release(a->lazy);
        a->released = 1;
    }
    sy_lua_attach(L, 4, h, a->c);
    sy_lua_ws_bind(L, 4, h);
    return 0;
}

lconn *sy_lua_ws_make(sy_conn *c, void *handle)
{
    if (!sy_lua_is_lazy(handle))
        return handle;
    void *now = sy_ws_handle(c);
    if (now && now != handle && !sy_lua_is_lazy(now))
        return now; /* made meanwhile (by the host, from a callback that ran first) */
    sy_lua_lazy *z = lazy_of(handle);
    lua_State *L = z->L;
    make_args a = {c, handle, NULL, 0};
    int top = lua_gettop(L);
    lua_pushcfunction(L, make_protected);
    lua_pushlightuserdata(L, &a);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        sy_log("error", "websocket: cannot make the handle of connection %llu: %s",
               (unsigned long long)c->id, lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_settop(L, top);
        return NULL;
    }
    lua_settop(L, top);
    sy_ws_set_handle(c, handle, a.h);
    if (!a.released)
        sy_lua_lazy_release(handle);
    return a.h;
}

void sy_lua_detach(lconn *h)
{
    h->conn = NULL;
    if (h->websocket) /* a task kept for its messages lets go of its state and face */
        sy_lua_task_forget(sy_lua_state_server(h->L), h);
    if (h->ref == LUA_NOREF)
        return; /* never attached, or detached already */
    if (h->websocket && sy_lua_ws_unbind(h) != 0)
        return;       /* the state (and its face) stays in the registry while the server lives */
    int ref = h->ref; /* a WebSocket's state: its face keeps it from now on */
    h->ref = LUA_NOREF;
    luaL_unref(h->L, LUA_REGISTRYINDEX, ref);
}

void sy_lua_raw_close(void *ud, void *handle)
{
    (void)ud;
    lconn *h = handle;
    h->conn = NULL; /* the handler sees a closed conn: writes answer nil, "closed" */
    sy_lua_handle_ended(h);
    sy_lua_task *t = sy_lua_handler_begin(h, "close");
    if (t) {
        /* The last event: it may wait, holding nothing back. */
        t->what = "raw handler";
        t->name = "close";
        sy_lua_task_run(t, 1);
    }
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
    int rc = sy_raw_write(h->conn, p, n);
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
    lua_createtable(L, (int)SY_COUNTOF(event_names), 0);
    for (size_t i = 0; i < SY_COUNTOF(event_names); i++) {
        lua_pushstring(L, event_names[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, &names_key);
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
    if (!handlers)
        handlers = decision_get(L, dec, DV_HANDLERS, LUA_TSTRING); /* a named set */
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
        if (websocket) {
            /* The handle is made on first use: the connection holds a shared record. */
            int data = 0;
            if (options) {
                lua_pushliteral(L, "data");
                if (lua_rawget(L, options) == LUA_TTABLE)
                    data = lua_gettop(L);
            }
            sy_lua_lazy *z = lazy_get(L, handlers, sy_str_make(req->path.p, req->path.len),
                                      d->subprotocol, data); /* the last step that may raise */
            d->handle = (void *)((uintptr_t)z | 1u);
            sy_lua_upgraded(sy_server_of(c->env));
            sy_decision_apply(d, c, req, body, offers, n);
            return;
        }
        lconn *h = sy_lua_new_conn_handle(L, c, 0, handlers); /* a raw stream's */
        int hidx = lua_gettop(L);
        sy_lua_handle_set_info(L, hidx, HF_PATH, sy_str_make(req->path.p, req->path.len));
        if (options) {
            /* options.data becomes conn.data. */
            lua_pushliteral(L, "data");
            if (lua_rawget(L, options) == LUA_TTABLE)
                sy_lua_hf_set(L, hidx, HF_DATA);
            else
                lua_pop(L, 1);
        }
        sy_lua_attach(L, hidx, h, c); /* the last step that may raise */
        d->handle = h;                /* from here on the core owns it */
        sy_lua_upgraded(sy_server_of(c->env));
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

/* Applies the value app.upgrade returned (at dec; the hook at fn). Returns 1 when it decided
 * (the request is answered, switched or its connection closed), 0 to fall through to
 * app.request. */
static int run_decision(lua_State *L, sy_conn *c, int fn, int dec, const sy_http1_request *req,
                        sy_str req_body, const sy_upgrade_offer *offers, size_t n)
{
    if (lua_isnil(L, dec))
        return 0;
    sy_lua_decision *ld = sy_lua_test_decision(L, dec);
    if (!ld || ld->kind < SY_DECIDE_ACCEPT || ld->kind > SY_DECIDE_REJECT) {
        sy_decision_count_error(c, offers, n);
        lua_pushvalue(L, dec);
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

/* The dispatch of one request runs as a task; its stack is [task, req, res]. Each hook is called
 * with a continuation, so it may wait: the part after it runs when the task is woken (from the
 * continuation), and the request, whose slices were borrowed from the connection's buffer, is
 * parsed again where it waits. */
static int request_part(lua_State *L, sy_lua_task *t);

static int request_done(lua_State *L, int status, lua_KContext ctx)
{
    (void)status, (void)ctx;
    sy_lua_response_task(L, 3, NULL);
    /* Not answered yet: keep the handle alive for a later res:send. */
    sy_lua_anchor_response(L, 3);
    return 0;
}

static int request_part(lua_State *L, sy_lua_task *t)
{
    sy_lua_dispatch_rec *a = &t->dispatch;
    sy_conn *c = a->c;
    lua_settop(L, 3);
    if (c->closing)
        return 0;
    a->stage = "app.request";
    if (a->n)
        sy_h1_note_decision(c, "ignore"); /* no upgrade hook, nil, or sy.ignore() */
    if (!sy_lua_push_hook(L, "request")) {
        int rc = sy_http_respond(c, a->stream, NULL, 404, SY_STR("Content-Type: text/plain\r\n"),
                                 SY_STR("not found\n"), 0);
        sy_answered_or_close(c, rc);
        return 0;
    }
    sy_lua_response_task(L, 3, t); /* the client leaving closes the hook while it waits */
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3); /* [task, req, res, fn, req, res] */
    lua_callk(L, 2, 0, (lua_KContext)t, request_done);
    return request_done(L, LUA_OK, (lua_KContext)t);
}

/* [task, req, res, fn, decision]: app.upgrade returned. */
static int upgrade_done(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    sy_lua_task *t = (sy_lua_task *)ctx;
    sy_lua_dispatch_rec *a = &t->dispatch;
    sy_conn *c = a->c;
    sy_lua_response_task(L, 3, NULL);
    if (lua_isnil(L, 5))
        sy_lua_decision_unreturned(L, "app.upgrade");
    else
        sy_lua_decision_forget(L);
    if (c->closing)
        return 0;
    if (lua_isnil(L, 5)) {
        a->token->n[SY_SO_IGNORE]++; /* nil: same as sy.ignore() */
        a->token = NULL;
        return request_part(L, t);
    }
    sy_http1_request req;
    sy_str body = a->body;
    sy_upgrade_offer offers[SY_UPGRADE_MAX_OFFERS];
    const sy_http1_request *rq = a->req;
    const sy_upgrade_offer *offs = a->offers;
    size_t n = a->n;
    if (!rq) {
        /* The hook waited: the request waits at the front of the connection's buffer. */
        if (sy_http_pending_request(c, &req, &body, offers, &n) != 0)
            return 0;
        rq = &req;
        offs = offers;
    }
    a->token = NULL; /* counted by the decision from here on */
    if (run_decision(L, c, 4, 5, rq, body, offs, n)) {
        sy_lua_response_forget(L, 3); /* answered or switched: a kept res says "closed" */
        return 0;
    }
    return request_part(L, t);
}

/* The task failed (a hook, or a decision it returned; logged with the stage that failed,
 * the traceback has the app's file:line): a response still owed is answered 500. */
static void dispatch_failed(sy_lua_task *t)
{
    if (t->dispatch.res && strcmp(t->dispatch.stage, "app.upgrade") == 0 &&
        sy_lua_response_conn(t->dispatch.res))
        sy_h1_note_decision(sy_lua_response_conn(t->dispatch.res), "error");
    if (t->dispatch.token)
        t->dispatch.token->n[SY_SO_ERROR]++; /* app.upgrade raised */
    if (t->dispatch.res)
        sy_lua_response_fail(t->co, t->dispatch.res);
}

/* [task]: the task's function. */
static int dispatch_task(lua_State *L)
{
    sy_lua_task *t = lua_touserdata(L, 1);
    sy_lua_dispatch_rec *a = &t->dispatch;
    sy_lua_push_request(L, a->c, a->req, a->body, a->offers, a->n); /* [task, req] */
    sy_lua_push_response(L, a->c, a->stream);                       /* [task, req, res] */
    a->res = lua_touserdata(L, 3);
    if (a->n > 0 && sy_lua_push_hook(L, "upgrade")) {
        a->stage = "app.upgrade";
        a->token = sy_stats_token_of(&a->c->env->stats, a->offers[0].name.p, a->offers[0].name.len);
        sy_lua_decision_forget(L);
        sy_lua_response_task(L, 3, t);
        lua_pushvalue(L, 4);
        lua_pushvalue(L, 2); /* [task, req, res, fn, fn, req] */
        lua_callk(L, 1, 1, (lua_KContext)t, upgrade_done);
        return upgrade_done(L, LUA_OK, (lua_KContext)t);
    }
    return request_part(L, t);
}

static void dispatch_request(sy_conn *c, const sy_http1_request *req, sy_str body,
                             const sy_upgrade_offer *offers, size_t n, int32_t stream)
{
    sy_lua_task *t = sy_lua_task_get(sy_server_of(c->env));
    if (!t) {
        sy_log("error", "request dispatch: out of memory");
        int rc = sy_http_respond(c, stream, NULL, 500, SY_STR("Content-Type: text/plain\r\n"),
                                 SY_STR("internal server error\n"), 0);
        sy_answered_or_close(c, rc);
        return;
    }
    sy_lua_dispatch_rec *a = &t->dispatch;
    *a = (sy_lua_dispatch_rec){c, req, body, offers, n, stream, "request dispatch", NULL, NULL};
    t->stage = &a->stage;
    t->fail = dispatch_failed;
    t->conn = c;
    t->owner = t;
    lua_pushcfunction(t->co, dispatch_task);
    lua_pushlightuserdata(t->co, t);
    sy_conn_ref(c);
    int rc = sy_lua_task_run(t, 1);
    if (rc == 1) {
        /* It waits: what was borrowed from the connection is not kept. */
        a->req = NULL;
        a->offers = NULL;
        a->body = sy_str_make(NULL, 0);
    } else if (rc == SY_ELUA && !c->closing) {
        /* Failed outside the hooks (out of memory making req or res). */
        int r = sy_http_respond(c, stream, NULL, 500, SY_STR("Content-Type: text/plain\r\n"),
                                SY_STR("internal server error\n"), 0);
        sy_answered_or_close(c, r);
    }
    sy_conn_unref(c);
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
