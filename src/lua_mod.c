/* The switchyard Lua module (luaopen_switchyard): the decision constructors, sy.now, sy.log,
 * and the userdata types opened from their own files. */
#include <string.h>
#include <time.h>

#include "log.h"
#include "lua_int.h"
#include "lua_names.h"
#include "lua_task.h"

/* ---- decisions ---------------------------------------------------------------------------- */

static const char *const decision_kinds[] = {"", "accept", "ignore", "upgrade_required", "reject"};

sy_lua_decision *sy_lua_test_decision(lua_State *L, int idx)
{
    return luaL_testudata(L, idx, SY_DECISION_MT);
}

static const char made_key = 'm';   /* registry[&made_key]: thread -> "file:line" of its last
                                     * decision (weak keys) */
static const char warned_key = 'w'; /* registry[&warned_key]: "file:line" -> true, warned */

/* Pushes registry[key], made (weak-keyed when weak) on first use. */
static void registry_table(lua_State *L, const char *key, int weak)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    if (weak) {
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
    }
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* Records where the running thread made a decision (the Lua caller of sy.accept and the
 * like), for the check when its hook returns. */
static void note_decision(lua_State *L)
{
    lua_Debug ar;
    if (!lua_getstack(L, 1, &ar) || !lua_getinfo(L, "Sl", &ar) || ar.currentline < 0)
        return;
    registry_table(L, &made_key, 1);
    lua_pushthread(L);
    lua_pushfstring(L, "%s:%d", ar.short_src, ar.currentline);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

void sy_lua_decision_forget(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &made_key) == LUA_TTABLE) {
        lua_pushthread(L);
        lua_pushnil(L);
        lua_rawset(L, -3);
    }
    lua_pop(L, 1);
}

void sy_lua_decision_unreturned(lua_State *L, const char *hook)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &made_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    lua_pushthread(L);
    if (lua_rawget(L, -2) == LUA_TSTRING) {
        registry_table(L, &warned_key, 0); /* [made, site, warned] */
        lua_pushvalue(L, -2);
        if (lua_rawget(L, -2) == LUA_TNIL) {
            lua_pop(L, 1);
            lua_pushvalue(L, -2);
            lua_pushboolean(L, 1);
            lua_rawset(L, -3);
            sy_log("warn", "%s (%s): a decision was made but not returned (missing `return`?)",
                   hook, lua_tostring(L, -2));
        } else {
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    sy_lua_decision_forget(L);
}

/* Pushes a new decision of kind with every user value nil. */
static sy_lua_decision *new_decision(lua_State *L, int kind)
{
    if (kind != SY_DECIDE_IGNORE)
        note_decision(L);
    sy_lua_decision *d = lua_newuserdatauv(L, sizeof *d, DV_COUNT);
    d->kind = kind;
    d->status = 0;
    d->flags = 0;
    luaL_setmetatable(L, SY_DECISION_MT);
    return d;
}

/* Sets user value uv of the decision at the top to the value at idx. */
static void decision_set(lua_State *L, int uv, int idx)
{
    lua_pushvalue(L, idx);
    lua_setiuservalue(L, -2, uv);
}

static void check_header_value(lua_State *L, int arg, const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            luaL_argerror(L, arg, "control characters are not allowed in a header value");
    }
}

/* t[k] without metamethods; t at an absolute index. */
static int rawfield(lua_State *L, int t, const char *k)
{
    lua_pushstring(L, k);
    return lua_rawget(L, t);
}

/* Whether sy.accept's token takes handlers and options (WebSocket and raw protocols do;
 * HTTP/2 and TLS do not). */
static int takes_handlers(const char *tok, size_t n)
{
    return !sy_str_ieq(sy_str_make(tok, n), "h2c") &&
           !(n >= 3 && sy_str_ieq(sy_str_make(tok, 3), "tls") && (n == 3 || tok[3] == '/'));
}

/* Handler names and accept options of WebSocket and raw protocols together: one table may
 * serve either protocol, so a name of the other one is not a typo. */
static const char *const handler_names[] = {"open",  "message", "close", "ping",     "pong",
                                            "drain", "data",    "eof",   "shutdown", NULL};
static const char *const accept_names[] = {"subprotocol",       "data",
                                           "headers",           "max_message_size",
                                           "max_fragments",     "idle_timeout",
                                           "ping_interval",     "max_backpressure",
                                           "backpressure",      "close_timeout",
                                           "compression",       "compression_threshold",
                                           "max_inflate_ratio", NULL};

static const char checked_key = 'h'; /* registry[&checked_key]: handler tables checked, weak */

/* Raises naming the first unknown handler in the table at idx, once per table: a table
 * reused across connections is looked up in a weak-keyed set, not walked again. */
static void check_handlers(lua_State *L, int idx)
{
    registry_table(L, &checked_key, 1);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    int done = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!done) {
        if (sy_lua_unknown_key(L, idx, handler_names, "handler", SY_NAMES_OWN)) {
            luaL_where(L, 1);
            lua_insert(L, -2);
            lua_concat(L, 2);
            lua_error(L);
        }
        lua_pushvalue(L, idx);
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
    }
    lua_pop(L, 1);
}

/* Raises for the handler set name at idx that app.handlers of the app loaded now lacks,
 * suggesting a close name among its keys. */
static void unknown_set(lua_State *L, int idx)
{
    const char *name = lua_tostring(L, idx);
    const char *known[33];
    int n = 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, sy_lua_app_key());
    if (lua_istable(L, -1) && lua_getfield(L, -1, "handlers") == LUA_TTABLE) {
        lua_pushnil(L);
        while (n < 32 && lua_next(L, -2)) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1))
                known[n++] = lua_tostring(L, -2); /* anchored by the table while used */
            lua_pop(L, 1);
        }
        if (n == 32)
            lua_pop(L, 1); /* the key lua_next left */
    }
    known[n] = NULL;
    const char *like = sy_name_suggest(name, known);
    luaL_error(L, "sy.accept: no handler set '%s' in app.handlers%s%s%s", name,
               like ? " (did you mean '" : "", like ? like : "", like ? "'?)" : "");
}

/* Raises naming the first unknown accept option in the table at idx. */
static void check_accept_options(lua_State *L, int idx)
{
    if (sy_lua_unknown_key(L, idx, accept_names, "accept option", 0)) {
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
        lua_error(L);
    }
}

/* sy.accept(token, handlers?, options?): everything is checked here, where the app's line is
 * in the traceback; options are copied, so a later change to the app's table cannot reach the
 * decision. */
static int l_accept(lua_State *L)
{
    lua_settop(L, 3); /* absent arguments read as nil, never as what is pushed below */
    size_t n;
    const char *tok = luaL_checklstring(L, 1, &n);
    luaL_argcheck(L, n > 0, 1, "empty token");
    if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TSTRING)
        luaL_argexpected(L, lua_istable(L, 2), 2, "table or handler set name");
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    int copy = 0, headers = 0;
    int checked = takes_handlers(tok, n);
    if (lua_type(L, 2) == LUA_TSTRING) {
        /* A named set: it must exist in the app loaded now; each event looks it up again. */
        if (sy_lua_push_handler_set(L, 2) != LUA_TTABLE)
            unknown_set(L, 2);
        if (checked)
            check_handlers(L, lua_gettop(L));
        lua_pop(L, 1);
    } else if (lua_istable(L, 2) && checked) {
        check_handlers(L, 2);
    }
    if (lua_istable(L, 3)) {
        if (checked)
            check_accept_options(L, 3);
        lua_newtable(L); /* [token, handlers, options, copy] */
        copy = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, copy);
        }
        int t = rawfield(L, copy, "subprotocol");
        luaL_argcheck(L, t == LUA_TNIL || t == LUA_TSTRING, 3, "subprotocol must be a string");
        lua_pop(L, 1);
        t = rawfield(L, copy, "data");
        luaL_argcheck(L, t == LUA_TNIL || t == LUA_TTABLE, 3, "data must be a table");
        lua_pop(L, 1);
        if (rawfield(L, copy, "headers") != LUA_TNIL) {
            luaL_argcheck(L, lua_istable(L, -1), 3, "headers must be a table");
            int flags = 0;
            sy_lua_push_headers(L, -1, &flags);
            headers = lua_gettop(L);
        } else {
            lua_pop(L, 1);
        }
        if (n == 9 && sy_str_ieq(sy_str_make(tok, n), "websocket")) {
            sy_ws_options wo;
            sy_ws_default_options(&wo);
            sy_lua_ws_options(L, copy, &wo); /* raises on a bad value */
        }
    }
    new_decision(L, SY_DECIDE_ACCEPT);
    decision_set(L, DV_TOKEN, 1);
    decision_set(L, DV_HANDLERS, 2);
    if (copy)
        decision_set(L, DV_OPTIONS, copy);
    if (headers)
        decision_set(L, DV_HEADERS, headers);
    return 1;
}

static int l_ignore(lua_State *L)
{
    new_decision(L, SY_DECIDE_IGNORE);
    return 1;
}

/* sy.upgrade_required(protocols, body?) */
static int l_upgrade_required(lua_State *L)
{
    lua_settop(L, 2);
    size_t n;
    const char *p = luaL_checklstring(L, 1, &n);
    luaL_argcheck(L, n > 0, 1, "empty protocol list");
    check_header_value(L, 1, p, n);
    luaL_optstring(L, 2, NULL);
    lua_tostring(L, 1); /* numbers become the strings C reads */
    if (!lua_isnil(L, 2))
        lua_tostring(L, 2);
    new_decision(L, SY_DECIDE_UPGRADE_REQUIRED);
    decision_set(L, DV_TOKEN, 1);
    decision_set(L, DV_BODY, 2);
    return 1;
}

/* sy.reject(status, body?, headers?) */
static int l_reject(lua_State *L)
{
    lua_settop(L, 3);
    lua_Integer status = luaL_checkinteger(L, 1);
    luaL_argcheck(L, status >= 200 && status <= 599, 1, "status must be 200..599");
    luaL_optstring(L, 2, NULL);
    if (!lua_isnil(L, 2))
        lua_tostring(L, 2);
    int flags = 0, headers = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        sy_lua_push_headers(L, 3, &flags); /* raises on a bad name or value */
        headers = lua_gettop(L);
    }
    sy_lua_decision *d = new_decision(L, SY_DECIDE_REJECT);
    d->status = (int)status;
    d->flags = flags;
    decision_set(L, DV_BODY, 2);
    if (headers)
        decision_set(L, DV_HEADERS, headers);
    return 1;
}

/* Decisions read like the calls that made them (d.kind, d.token, d.status, d.body,
 * d.protocols, d.handlers); they cannot be changed. */
static int decision_index(lua_State *L)
{
    sy_lua_decision *d = luaL_checkudata(L, 1, SY_DECISION_MT);
    const char *k = lua_tostring(L, 2);
    if (!k)
        return 0;
    if (strcmp(k, "kind") == 0) {
        lua_pushstring(L, decision_kinds[d->kind]);
    } else if (strcmp(k, "status") == 0 && d->kind == SY_DECIDE_REJECT) {
        lua_pushinteger(L, d->status);
    } else if ((strcmp(k, "token") == 0 && d->kind == SY_DECIDE_ACCEPT) ||
               (strcmp(k, "protocols") == 0 && d->kind == SY_DECIDE_UPGRADE_REQUIRED)) {
        lua_getiuservalue(L, 1, DV_TOKEN);
    } else if (strcmp(k, "handlers") == 0) {
        lua_getiuservalue(L, 1, DV_HANDLERS);
    } else if (strcmp(k, "body") == 0) {
        lua_getiuservalue(L, 1, DV_BODY);
    } else {
        return 0;
    }
    return 1;
}

static int decision_newindex(lua_State *L)
{
    return luaL_error(L,
                      "a decision cannot be changed (field '%s'): make a new one with "
                      "sy.accept, sy.ignore, sy.upgrade_required or sy.reject",
                      luaL_tolstring(L, 2, NULL));
}

static int decision_tostring(lua_State *L)
{
    sy_lua_decision *d = luaL_checkudata(L, 1, SY_DECISION_MT);
    if (d->kind == SY_DECIDE_REJECT) {
        lua_pushfstring(L, SY_DECISION_MT "(reject %d)", d->status);
    } else if (d->kind == SY_DECIDE_ACCEPT || d->kind == SY_DECIDE_UPGRADE_REQUIRED) {
        lua_getiuservalue(L, 1, DV_TOKEN);
        lua_pushfstring(L, SY_DECISION_MT "(%s %s)", decision_kinds[d->kind], lua_tostring(L, -1));
    } else {
        lua_pushfstring(L, SY_DECISION_MT "(%s)", decision_kinds[d->kind]);
    }
    return 1;
}

static int l_now(lua_State *L)
{
    sy_server *s = sy_lua_server(L);
    if (s) {
        lua_pushnumber(L, ev_now(s->env.loop));
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    }
    return 1;
}

/* sy.log(level, ...): level is one of debug, info, warn, error. */
static int l_log(lua_State *L)
{
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    int lv = luaL_checkoption(L, 1, NULL, levels);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 2; i <= n; i++) {
        if (i > 2)
            luaL_addchar(&b, ' ');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    sy_log(levels[lv], "%s", lua_tostring(L, -1));
    return 0;
}

int sy_lua_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    sy_log("info", "%s", lua_tostring(L, -1));
    return 0;
}

static const luaL_Reg module_fns[] = {
    {"accept", l_accept},
    {"ignore", l_ignore},
    {"upgrade_required", l_upgrade_required},
    {"reject", l_reject},
    {"after", sy_lua_after},
    {"publish", sy_lua_publish_fn},
    {"subscribers", sy_lua_subscribers_fn},
    {"every", sy_lua_every},
    {"now", l_now},
    {"sleep", sy_lua_sleep},
    {"tcp", sy_lua_tcp_new},
    {"log", l_log},
    {"counter", sy_lua_counter_fn},
    {"gauge", sy_lua_gauge_fn},
    {NULL, NULL},
};

SY_API int luaopen_switchyard(lua_State *L)
{
    luaL_newlib(L, module_fns);
    /* [..., module] */
    if (luaL_newmetatable(L, SY_DECISION_MT)) {
        lua_pushcfunction(L, decision_index);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, decision_newindex);
        lua_setfield(L, -2, "__newindex");
        lua_pushcfunction(L, decision_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    sy_lua_open_request(L);
    sy_lua_open_response(L);
    sy_lua_open_conn(L);
    sy_lua_open_ws(L);
    sy_lua_open_tcp(L);
    sy_lua_open_timer(L);
    sy_lua_open_metric(L);
    lua_pushstring(L, "0.1.0");
    lua_setfield(L, -2, "version");
    return 1;
}
