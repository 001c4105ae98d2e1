/* The host's calls that reach the Lua state: topics (subscribe, unsubscribe, count,
 * publish), calling a function of the app (switchyard.h, "Host calls"). */
#include <limits.h>

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

enum { TOPIC_JOIN, TOPIC_LEAVE, TOPIC_COUNT };

typedef struct topic_args {
    int op;   /* TOPIC_* */
    lconn *h; /* borrowed: the WebSocket's handle (JOIN, LEAVE) */
    const char *topic;
    size_t len;
    lua_Integer result;
} topic_args;

/* [args]: the topic's string is made here, inside the protected call (it may raise). */
static int topic_in_lua(lua_State *L)
{
    topic_args *a = lua_touserdata(L, 1);
    lua_pushlstring(L, a->topic, a->len); /* [args, topic] */
    if (a->op == TOPIC_COUNT) {
        a->result = sy_lua_topic_count(L, 2);
        return 0;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->h->ref); /* [args, topic, state] */
    a->result = a->op == TOPIC_JOIN ? sy_lua_topic_join(L, 3, 2) : sy_lua_topic_leave(L, 3, 2);
    return 0;
}

static int topic_call(sy_server *s, topic_args *a)
{
    lua_State *L = s->L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, topic_in_lua);
    lua_pushlightuserdata(L, a);
    static const char *const names[] = {"subscribe", "unsubscribe", "subscribers"};
    int rc = sy_lua_call_err(L, 1, 0, "topic", names[a->op], s->err, sizeof s->err);
    lua_settop(L, top);
    if (rc != 0)
        return SY_ENOMEM; /* the only error these calls can raise */
    return a->result > INT_MAX ? INT_MAX : (int)a->result;
}

/* The WebSocket id's handle for a topic call, or a code: SY_ECLOSED when it is gone (or, to
 * join, closing), SY_ENOTSUP when it is not a WebSocket. */
static int topic_conn(sy_server *s, sy_conn_id id, const char *topic, int join, lconn **out)
{
    if (!topic)
        return sy_server_fail(s, SY_EINVAL, "no topic");
    sy_conn *c = sy_server_conn_find(s, id);
    if (!c)
        return SY_ECLOSED;
    if (c->proto != &sy_proto_ws)
        return sy_server_fail(s, SY_ENOTSUP,
                              "connection %llu is not a WebSocket: only "
                              "WebSockets join topics",
                              (unsigned long long)id);
    void *hv = sy_ws_handle(c);
    if (!hv || (join && !sy_ws_open(c)))
        return SY_ECLOSED;
    if (!join && sy_lua_is_lazy(hv)) {
        *out = NULL; /* no handle yet, so in no topic: nothing to leave */
        return 0;
    }
    lconn *h = sy_lua_ws_make(c, hv); /* made on first use */
    if (!h)
        return sy_server_fail(s, SY_ENOMEM, "out of memory");
    if (!h->conn || h->ref == LUA_NOREF)
        return SY_ECLOSED;
    *out = h;
    return 0;
}

SY_API int sy_server_subscribe(sy_server *s, sy_conn_id id, const char *topic, size_t len)
{
    topic_args a = {TOPIC_JOIN, NULL, topic, len, 0};
    int rc = topic_conn(s, id, topic, 1, &a.h);
    return rc != 0 ? rc : topic_call(s, &a);
}

SY_API int sy_server_unsubscribe(sy_server *s, sy_conn_id id, const char *topic, size_t len)
{
    topic_args a = {TOPIC_LEAVE, NULL, topic, len, 0};
    int rc = topic_conn(s, id, topic, 0, &a.h);
    return rc != 0 || !a.h ? rc : topic_call(s, &a);
}

SY_API int sy_server_subscribers(sy_server *s, const char *topic, size_t len)
{
    if (!topic)
        return sy_server_fail(s, SY_EINVAL, "no topic");
    topic_args a = {TOPIC_COUNT, NULL, topic, len, 0};
    return topic_call(s, &a);
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
