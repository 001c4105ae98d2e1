/* The host's calls that reach the Lua state: publish to a topic, call a function of the app
 * (switchyard.h, "Host calls"). */
#include "lua_int.h"
#include "ws.h"

typedef struct pub_args {
    const char *topic;
    const void *p;
    size_t n;
    int binary;
    int sent;
} pub_args;

/* [args]: the topic's string is made here, inside the protected call (it may raise). */
static int publish_in_lua(lua_State *L)
{
    pub_args *a = lua_touserdata(L, 1);
    lua_pushstring(L, a->topic);
    a->sent = sy_lua_publish(L, -1, a->p, a->n, a->binary, NULL);
    return 0;
}

SY_API int sy_server_publish(sy_server *s, const char *topic, const void *data, size_t len,
                             int binary)
{
    if (!topic || (!data && len))
        return sy_server_fail(s, SY_EINVAL, "publish needs a topic and data");
    if (!binary && !sy_utf8_valid((const uint8_t *)data, len))
        return sy_server_fail(s, SY_EINVAL, "text messages must be valid UTF-8");
    lua_State *L = s->L;
    pub_args a = {topic, data ? data : "", len, binary, 0};
    int top = lua_gettop(L);
    lua_pushcfunction(L, publish_in_lua);
    lua_pushlightuserdata(L, &a);
    int rc = sy_lua_call_err(L, 1, 0, "publish", topic, s->err, sizeof s->err);
    lua_settop(L, top);
    return rc != 0 ? SY_ENOMEM : a.sent;
}

typedef struct call_args {
    const char *name;
    const sy_lua_arg *args;
    size_t nargs;
    int found;
} call_args;

/* [args]: looks the function up (the app's table, then the globals), pushes the arguments and
 * calls it, all inside the one protected call under the time budget. */
static int call_in_lua(lua_State *L)
{
    call_args *a = lua_touserdata(L, 1);
    if (!sy_lua_push_hook(L, a->name)) {
        lua_pushglobaltable(L);
        if (lua_getfield(L, -1, a->name) != LUA_TFUNCTION)
            return 0;
        lua_remove(L, -2);
    }
    a->found = 1;
    luaL_checkstack(L, (int)a->nargs, "too many arguments");
    for (size_t i = 0; i < a->nargs; i++) {
        const sy_lua_arg *g = &a->args[i];
        if (g->type == SY_LUA_NUMBER)
            lua_pushnumber(L, g->n);
        else if (g->len == (size_t)-1)
            lua_pushstring(L, g->s);
        else
            lua_pushlstring(L, g->s, g->len);
    }
    lua_call(L, (int)a->nargs, 0);
    return 0;
}

SY_API int sy_server_call_lua(sy_server *s, const char *name, const sy_lua_arg *args, size_t nargs)
{
    if (!name || (nargs && !args) || nargs > 250)
        return sy_server_fail(s, SY_EINVAL, "call_lua needs a name and at most 250 arguments");
    for (size_t i = 0; i < nargs; i++) {
        int t = args[i].type;
        if (!(t == SY_LUA_NUMBER || (t == SY_LUA_STRING && (args[i].s || args[i].len == 0))))
            return sy_server_fail(s, SY_EINVAL, "call_lua: argument %zu is bad", i + 1);
    }
    lua_State *L = s->L;
    call_args a = {name, args, nargs, 0};
    int top = lua_gettop(L);
    lua_pushcfunction(L, call_in_lua);
    lua_pushlightuserdata(L, &a);
    int rc = sy_lua_call_err(L, 1, 0, "host call", name, s->err, sizeof s->err);
    lua_settop(L, top);
    if (rc != 0)
        return SY_ELUA;
    if (!a.found)
        return sy_server_fail(s, SY_EINVAL, "no Lua function '%s'", name);
    return 0;
}
