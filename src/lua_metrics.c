/* switchyard.Metric: the app's own counters and gauges (sy.counter, sy.gauge), kept by the
 * server (metrics.c) so the metrics page renders them without calling Lua. */
#include <math.h>
#include <stdlib.h>

#include "lua_int.h"
#include "metrics.h"

#define SY_METRIC_MT "switchyard.Metric"

typedef struct lmetric {
    int id;   /* the server's metric id */
    int type; /* SY_METRIC_* */
} lmetric;

static sy_server *server_of(lua_State *L, const char *fn)
{
    sy_server *s = sy_lua_server(L);
    if (!s)
        luaL_error(L, "%s: metrics need the switchyard server", fn);
    return s;
}

static int declare(lua_State *L, int type)
{
    const char *fn = type == SY_METRIC_COUNTER ? "sy.counter" : "sy.gauge";
    const char *name = luaL_checkstring(L, 1);
    const char *help = luaL_optstring(L, 2, "");
    sy_server *s = server_of(L, fn);
    lmetric *m = lua_newuserdatauv(L, sizeof *m, 0);
    m->id = -1;
    m->type = type;
    luaL_setmetatable(L, SY_METRIC_MT);
    const char *why = "out of memory";
    int id = sy_metrics_declare(s, name, help, type, &why);
    if (id < 0)
        return luaL_error(L, "%s('%s'): %s", fn, name, why);
    m->id = id;
    return 1;
}

/* sy.counter(name, help?) */
int sy_lua_counter_fn(lua_State *L)
{
    return declare(L, SY_METRIC_COUNTER);
}

/* sy.gauge(name, help?) */
int sy_lua_gauge_fn(lua_State *L)
{
    return declare(L, SY_METRIC_GAUGE);
}

typedef struct label {
    const char *name, *value;
    size_t nlen, vlen;
} label;

static int by_name(const void *a, const void *b)
{
    const label *x = a, *y = b;
    return strcmp(x->name, y->name);
}

/* Pushes the labels table at idx (absolute; or nil: none) rendered as 'a="x",b="y"', names
 * sorted. */
static void labels_of(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) {
        lua_pushliteral(L, "");
        return;
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    label ls[SY_METRICS_MAX_LABELS];
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "metric labels: names must be strings");
        if (n == SY_METRICS_MAX_LABELS)
            luaL_error(L, "metric labels: at most %d", SY_METRICS_MAX_LABELS);
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "metric labels: values must be strings or numbers");
        label *l = &ls[n++];
        l->name = lua_tolstring(L, -2, &l->nlen);
        if (!sy_metrics_valid_name(l->name, l->nlen, 1))
            luaL_error(L, "metric labels: '%s' is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)",
                       l->name);
        /* A number becomes its string in place: the table keeps the original. */
        lua_pushvalue(L, -1);
        l->value = lua_tolstring(L, -1, &l->vlen);
        lua_replace(L, -2);
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -2);
        lua_rawset(L, lua_upvalueindex(1)); /* keeps the string alive during the call */
        lua_pop(L, 1);
    }
    qsort(ls, (size_t)n, sizeof *ls, by_name);
    /* Rendered on the stack: nothing to release if a Lua call below raises. */
    char out[SY_METRICS_LABELS_MAX];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (len + ls[i].nlen + 2 * ls[i].vlen + 4 > sizeof out)
            luaL_error(L, "metric labels: too long (at most %d bytes rendered)",
                       SY_METRICS_LABELS_MAX);
        if (i)
            out[len++] = ',';
        memcpy(out + len, ls[i].name, ls[i].nlen);
        len += ls[i].nlen;
        out[len++] = '=';
        out[len++] = '"';
        for (size_t k = 0; k < ls[i].vlen; k++) {
            char ch = ls[i].value[k];
            if (ch == '\\' || ch == '"' || ch == '\n') {
                out[len++] = '\\';
                ch = ch == '\n' ? 'n' : ch;
            }
            out[len++] = ch;
        }
        out[len++] = '"';
    }
    lua_pushlstring(L, out, len);
}

/* The change a method makes: set (1) or add, by v. [metric, n?, labels?] */
static int update(lua_State *L, int set, double sign, int has_value)
{
    lmetric *m = luaL_checkudata(L, 1, SY_METRIC_MT);
    double v = has_value ? luaL_checknumber(L, 2) : luaL_optnumber(L, 2, 1);
    if (!isfinite(v))
        return luaL_argerror(L, 2, "must be a finite number");
    sy_server *s = server_of(L, "metric");
    lua_settop(L, 3);
    labels_of(L, 3); /* [metric, n, labels, rendered] */
    size_t len;
    const char *l = lua_tolstring(L, 4, &len);
    const char *why = "out of memory";
    int rc = sy_metrics_update(s, m->id, l, len, set, v * sign, &why);
    if (rc != 0)
        return luaL_error(L, "metric: %s", why);
    return 0;
}

static int m_inc(lua_State *L)
{
    return update(L, 0, 1, 0);
}

static int m_dec(lua_State *L)
{
    lmetric *m = luaL_checkudata(L, 1, SY_METRIC_MT);
    if (m->type != SY_METRIC_GAUGE)
        return luaL_error(L, "metric: a counter only goes up (dec is for gauges)");
    return update(L, 0, -1, 0);
}

static int m_set(lua_State *L)
{
    lmetric *m = luaL_checkudata(L, 1, SY_METRIC_MT);
    if (m->type != SY_METRIC_GAUGE)
        return luaL_error(L, "metric: a counter only goes up (set is for gauges)");
    return update(L, 1, 1, 1);
}

/* m:value(labels?) -> number */
static int m_value(lua_State *L)
{
    lmetric *m = luaL_checkudata(L, 1, SY_METRIC_MT);
    sy_server *s = server_of(L, "metric");
    lua_settop(L, 2);
    labels_of(L, 2);
    size_t len;
    const char *l = lua_tolstring(L, 3, &len);
    lua_pushnumber(L, sy_metrics_value(s, m->id, l, len));
    return 1;
}

static int m_tostring(lua_State *L)
{
    lmetric *m = luaL_checkudata(L, 1, SY_METRIC_MT);
    lua_pushfstring(L, "switchyard.Metric (%s %d)",
                    m->type == SY_METRIC_COUNTER ? "counter" : "gauge", m->id);
    return 1;
}

void sy_lua_open_metric(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"inc", m_inc}, {"add", m_inc},     {"dec", m_dec},
        {"set", m_set}, {"value", m_value}, {NULL, NULL},
    };
    if (luaL_newmetatable(L, SY_METRIC_MT)) {
        /* Each method gets a scratch table as its upvalue: number label values turned into
         * strings are kept there while the call runs. */
        lua_newtable(L);
        for (const luaL_Reg *r = methods; r->name; r++) {
            lua_newtable(L);
            lua_pushcclosure(L, r->func, 1);
            lua_setfield(L, -2, r->name);
        }
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, m_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
}
