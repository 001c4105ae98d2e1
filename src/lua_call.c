/* The one entry from C into Lua: lua_pcall with a traceback handler, under the time
 * budget, and a log line that names what failed. */
#include <stdio.h>

#include "lua_int.h"

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* The one entry from C into Lua. *what (read after the call, so it may name a stage that
 * changed during it) and name label the log line. */
static int protected_call_at(lua_State *L, int base, int nargs, int nres, const char *const *what,
                             const char *name, char *err, size_t cap)
{
    sy_server *s = sy_lua_state_server(L), *prev = NULL;
    int outer = s && s->lua_depth++ == 0;
    if (outer)
        prev = sy_lua_budget_enter(s, L);
    lua_State *prev_thread = sy_lua_budget_thread(L);
    int rc = lua_pcall(L, nargs, nres, base);
    sy_lua_budget_thread(prev_thread);
    if (s && --s->lua_depth == 0)
        sy_lua_budget_leave(s, L, prev);
    if (rc != LUA_OK) {
        if (s) {
            s->env.stats.lua_errors++;
            s->env.stats.lua_memory_hits += rc == LUA_ERRMEM && s->lua.max_memory;
        }
        /* The label is only formatted here: the success path does no string work. */
        const char *msg = lua_tostring(L, -1);
        if (err && cap)
            snprintf(err, cap, "%s", msg ? msg : "(error object is not a string)");
        if (rc == LUA_ERRMEM && s && s->lua.max_memory)
            sy_log("error", "%s%s%s%s: Lua memory limit reached (%zu bytes in use, cap %zu)", *what,
                   name ? " '" : "", name ? name : "", name ? "'" : "", s->lua_memory,
                   s->lua.max_memory);
        else if (name)
            sy_log("error", "%s '%s': %s", *what, name, msg);
        else
            sy_log("error", "%s: %s", *what, msg);
        lua_pop(L, 2); /* message, traceback handler */
        return SY_ELUA;
    }
    lua_remove(L, base);
    return 0;
}

/* The one entry from C into Lua. *what (read after the call, so it may name a stage that
 * changed during it) and name label the log line. */
static int protected_call(lua_State *L, int nargs, int nres, const char *const *what,
                          const char *name, char *err, size_t cap)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    return protected_call_at(L, base, nargs, nres, what, name, err, cap);
}

void sy_lua_push_traceback(lua_State *L)
{
    lua_pushcfunction(L, traceback);
}

int sy_lua_call(lua_State *L, int nargs, int nres, const char *what)
{
    return protected_call(L, nargs, nres, &what, NULL, NULL, 0);
}

int sy_lua_call_err(lua_State *L, int nargs, int nres, const char *what, const char *name,
                    char *err, size_t cap)
{
    return protected_call(L, nargs, nres, &what, name, err, cap);
}

int sy_lua_push_hook(lua_State *L, const char *name)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, sy_lua_app_key());
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    /* Looked up at call time, so a reloaded app takes effect for live connections. */
    if (lua_getfield(L, -1, name) != LUA_TFUNCTION) {
        lua_pop(L, 2);
        return 0;
    }
    lua_remove(L, -2);
    return 1;
}
