/* switchyard.Timer: sy.after / sy.every on the server's loop. */
#include "lua_int.h"

typedef struct ltimer {
    ev_timer w;
    sy_server *server; /* borrowed; NULL once the timer is done or cancelled */
    int ref;           /* registry anchor while active */
    int repeat;
} ltimer;

static ltimer *check_timer(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, SY_TIMER_MT);
}

static void stop(lua_State *L, ltimer *t)
{
    if (t->server) {
        ev_timer_stop(t->server->loop, &t->w);
        t->server = NULL;
    }
    if (t->ref != LUA_NOREF) {
        int ref = t->ref;
        t->ref = LUA_NOREF;
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
    }
}

static void on_fire(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ltimer *t = sy_container_of(w, ltimer, w);
    lua_State *L = t->server->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref); /* [timer] */
    if (!t->repeat)
        stop(L, t); /* a one-shot is done before its function runs (it may start a new one) */
    lua_getiuservalue(L, -1, 1); /* [timer, fn] */
    lua_insert(L, -2);           /* [fn, timer] */
    sy_lua_call(L, 1, 0, t->repeat ? "sy.every callback" : "sy.after callback");
    lua_settop(L, top);
}

static int start_timer(lua_State *L, int repeat)
{
    sy_server *s = sy_lua_server(L);
    lua_Number secs = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_argcheck(L, secs >= 0 && secs < 1e9, 1, "seconds must be >= 0");
    if (repeat)
        luaL_argcheck(L, secs >= 0.001, 1, "sy.every needs an interval of at least 1 ms");
    if (!s)
        return luaL_error(L, "switchyard timers need a running server");
    ltimer *t = lua_newuserdatauv(L, sizeof *t, 1);
    t->server = NULL;
    t->ref = LUA_NOREF;
    t->repeat = repeat;
    luaL_setmetatable(L, SY_TIMER_MT);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, -1);
    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->server = s;
    ev_timer_init(&t->w, on_fire, secs, repeat ? secs : 0.);
    ev_timer_start(s->loop, &t->w);
    return 1;
}

int sy_lua_after(lua_State *L)
{
    return start_timer(L, 0);
}

int sy_lua_every(lua_State *L)
{
    return start_timer(L, 1);
}

/* timer:cancel() -> true if it was active */
static int timer_cancel(lua_State *L)
{
    ltimer *t = check_timer(L, 1);
    int was = t->server != NULL;
    stop(L, t);
    lua_pushboolean(L, was);
    return 1;
}

static int timer_active(lua_State *L)
{
    ltimer *t = check_timer(L, 1);
    lua_pushboolean(L, t->server != NULL);
    return 1;
}

static int timer_gc(lua_State *L)
{
    ltimer *t = check_timer(L, 1);
    /* Only reached when no anchor is left; stop the watcher before its memory goes. */
    if (t->server) {
        ev_timer_stop(t->server->loop, &t->w);
        t->server = NULL;
    }
    return 0;
}

static int timer_tostring(lua_State *L)
{
    ltimer *t = check_timer(L, 1);
    lua_pushfstring(L, "switchyard.Timer(%s)", t->server ? "active" : "done");
    return 1;
}

static const luaL_Reg timer_methods[] = {
    {"cancel", timer_cancel},
    {"active", timer_active},
    {NULL, NULL},
};

void sy_lua_open_timer(lua_State *L)
{
    if (luaL_newmetatable(L, SY_TIMER_MT)) {
        luaL_newlib(L, timer_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, timer_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, timer_gc);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, timer_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
}
