/* The Lua binding as the server's app: the server's Lua state, loading the app file, its
 * configuration (app.http, app.lua), and the table of callbacks (app.h) it installs. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "lua_crypto.h"
#include "lua_int.h"
#include "lua_names.h"
#include "lua_path.h"
#include "lua_task.h"
#include "topics.h"

static const char server_key = 's'; /* registry[&server_key] = lightuserdata(sy_server) */
static const char app_key = 'a';    /* registry[&app_key] = the app table */

const void *sy_lua_app_key(void)
{
    return &app_key;
}

sy_server *sy_lua_server(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &server_key);
    sy_server *s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return s;
}

/* Lua runs __gc finalizers with debug hooks off, so app.lua.max_time cannot stop one: a loop in
 * a finalizer would stall the server for good. Apps may not install finalizers: setmetatable
 * (and debug.setmetatable) refuse a metatable with a __gc field, and the metatables of
 * userdata (the core's handles, io files, C libraries' objects), whose objects C marks for
 * finalization, are handed to the app as read-only views, so no __gc can be put in one. A
 * WebSocket's face is a table with a metatable of the core's: getmetatable answers its
 * __metatable (a copy), and debug.setmetatable refuses to replace it.
 * Objects are marked when their metatable is set (Lua 5.4 manual 2.5.3): a __gc added to an
 * app's metatable later never runs, and a second setmetatable with it is refused. */
static const char GC_GUARD[] =
    "local setmetatable, getmetatable, rawget, type, error, next, debug = ...\n"
    "local msg = '__gc is not allowed in switchyard apps: Lua runs finalizers outside '\n"
    "  .. 'app.lua.max_time (release resources explicitly, or with a <close> variable)'\n"
    "local function check(mt)\n"
    "  if type(mt) == 'table' and rawget(mt, '__gc') ~= nil then error(msg, 3) end\n"
    "end\n"
    "local function readonly()\n"
    "  error('the metatable of a userdata or a WebSocket cannot be changed in switchyard apps (a "
    "__gc put '\n"
    "        .. 'there would run outside app.lua.max_time)', 2)\n"
    "end\n"
    "local views = setmetatable({}, { __mode = 'k' })\n"
    "local function face(v, mt)\n"
    "  return type(v) == 'table' and type(mt) == 'table' and rawget(mt, '__name') == "
    "'switchyard.WebSocket'\n"
    "end\n"
    "local function view(v, mt)\n"
    "  if face(v, mt) then return rawget(mt, '__metatable') or mt end\n"
    "  if type(v) ~= 'userdata' or type(mt) ~= 'table' then return mt end\n"
    "  local p = views[mt]\n"
    "  if not p then\n"
    "    p = setmetatable({}, { __index = mt, __newindex = readonly, __metatable = false,\n"
    "                           __pairs = function() return next, mt, nil end })\n"
    "    views[mt] = p\n"
    "  end\n"
    "  return p\n"
    "end\n"
    "_G.setmetatable = function(t, mt) check(mt) return setmetatable(t, mt) end\n"
    "_G.getmetatable = function(v) return view(v, getmetatable(v)) end\n"
    "local dset, dget = debug.setmetatable, debug.getmetatable\n"
    "debug.setmetatable = function(v, mt)\n"
    "  check(mt)\n"
    "  if type(v) == 'userdata' or face(v, dget(v)) then readonly() end\n"
    "  return dset(v, mt)\n"
    "end\n"
    "debug.getmetatable = function(v) return view(v, dget(v)) end\n";

static int panic(lua_State *L)
{
    sy_log("fatal", "unprotected Lua error: %s", lua_tostring(L, -1));
    return 0; /* abort() follows */
}

/* Lua's allocator: counts bytes in use and refuses growth past the cap (Lua then collects
 * garbage and retries before raising a memory error). Small blocks come from the server's pool
 * (Lua always says the size of the block it frees or resizes). */
static void *lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sy_server *s = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        sy_pool_put(&s->env.pool, ptr, old);
        s->lua_memory -= old;
        return NULL;
    }
    if (nsize > old && s->lua.max_memory && s->lua_memory - old + nsize > s->lua.max_memory)
        return NULL;
    void *p = sy_pool_resize(&s->env.pool, ptr, old, nsize);
    if (p)
        s->lua_memory = s->lua_memory - old + nsize;
    return p;
}

/* Generational GC parameters (lua_gc LUA_GCGEN, in percent of the heap after the last major
 * collection): a minor collection after growing by 100 %, a major one after growing by 200 %. */
#define GC_MINOR_MUL 100
#define GC_MAJOR_MUL 200

static int lua_app_open(sy_server *s)
{
    lua_State *L = lua_newstate(lua_alloc, s);
    if (!L)
        return SY_ENOMEM;
    *(sy_server **)lua_getextraspace(L) = s;
    lua_atpanic(L, panic);
    /* Generational GC: a server makes many short-lived strings (messages, requests) and keeps
     * few long-lived objects; incremental cycles over large payloads cost ~10% per message. A
     * minor collection comes when the heap has grown by its own size since the last major one
     * (Lua's default, 20%, made a small app collect after every 16 KiB message), a major one
     * when it reached three times that size (GC_MINOR_MUL, GC_MAJOR_MUL). */
    lua_gc(L, LUA_GCGEN, GC_MINOR_MUL, GC_MAJOR_MUL);
    luaL_openlibs(L);
    lua_pushcfunction(L, sy_lua_print); /* print: an info line on stderr, not stdout */
    lua_setglobal(L, "print");
    if (sy_lua_tasks_install(L) != 0) {
        lua_close(L);
        return SY_ENOMEM;
    }
    if (luaL_loadstring(L, GC_GUARD) != LUA_OK) {
        lua_close(L);
        return SY_ENOMEM;
    }
    static const char *const guard_args[] = {"setmetatable", "getmetatable", "rawget", "type",
                                             "error",        "next",         "debug"};
    for (size_t i = 0; i < sizeof guard_args / sizeof guard_args[0]; i++)
        lua_getglobal(L, guard_args[i]);
    if (lua_pcall(L, 7, 0, 0) != LUA_OK) {
        lua_close(L);
        return SY_ENOMEM;
    }
    lua_pushlightuserdata(L, s);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &server_key);
    /* package.preload.switchyard, and lua/?.lua for switchyard.<name> helpers. */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_switchyard);
    lua_setfield(L, -2, "switchyard");
    lua_pushcfunction(L, luaopen_switchyard_crypto); /* C too: no .so to look for */
    lua_setfield(L, -2, "switchyard.crypto");
    lua_pop(L, 1);
    /* Open it now: the metatables of req/res must exist even if the app never requires it. */
    luaL_requiref(L, "switchyard", luaopen_switchyard, 0);
    lua_pop(L, 1);
    lua_pushcfunction(L, sy_lua_path_init);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        lua_close(L);
        s->lua_ws_send = NULL; /* was the closed state's */
        return SY_ENOMEM;
    }
    s->L = L;
    sy_lua_budget_server_added();
    return 0;
}

/* app.http = { max_head =, max_headers =, max_body =, header_timeout =, keepalive_timeout =,
 * high_water =, max_buffered_total =, body_timeout =, send_timeout = }: the server's HTTP
 * limits, set when the app loads (app table at the top). Each value is checked as a Lua number
 * (range, NaN, integral for sizes and counts) before it is converted: a double out of a
 * size_t's range has no defined conversion. */
static const struct http_limit {
    const char *key;
    double lo, hi; /* inclusive, except lo for times (> lo) */
    int integer;   /* a size or count: integral values only */
    int zero;      /* a time that may also be 0 (none) */
} http_limits[] = {
    {"max_head", 256, 1024 * 1024, 1, 0},
    {"max_headers", 1, 10000, 1, 0},
    {"max_body", 0, 1099511627776.0, 1, 0}, /* 1 TiB */
    {"header_timeout", 0, 3600, 0, 0},
    {"keepalive_timeout", 0, 86400, 0, 0},
    {"high_water", 1024, 1099511627776.0, 1, 0},
    {"max_buffered_total", 0, 1099511627776.0, 1, 0}, /* the setter: 0 or >= 64 KiB */
    {"body_timeout", 0, 86400, 0, 0},
    {"send_timeout", 0, 86400, 0, 1},
};

static const char *const http_names[] = {
    "max_head",   "max_headers",        "max_body",     "header_timeout", "keepalive_timeout",
    "high_water", "max_buffered_total", "body_timeout", "send_timeout",   NULL,
};

static int apply_http_limits(sy_server *s, lua_State *L, const char *path)
{
    int t = lua_getfield(L, -1, "http");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (t != LUA_TTABLE) {
        lua_pop(L, 1);
        return sy_server_fail(s, SY_ELUA, "%s: app.http must be a table (got %s)", path,
                              lua_typename(L, t));
    }
    const size_t nlimits = sizeof http_limits / sizeof http_limits[0];
    int rc = 0;
    lua_pushnil(L);
    while (rc == 0 && lua_next(L, -2)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        const struct http_limit *lim = NULL;
        for (size_t i = 0; k && i < nlimits; i++)
            if (strcmp(k, http_limits[i].key) == 0)
                lim = &http_limits[i];
        double v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : NAN;
        int pushed = 0; /* the value as a string, for a message */
        int ok =
            lim && v <= lim->hi &&
            (lim->integer ? v >= lim->lo && v == floor(v) : v > lim->lo || (lim->zero && v == 0));
        if (!lim) {
            lua_pop(L, 1);
            lua_createtable(L, 0, 1);
            lua_pushvalue(L, -2);
            lua_pushboolean(L, 1);
            lua_rawset(L, -3); /* [http, key, {key = true}] */
            sy_lua_unknown_key(L, -1, http_names, "app.http option", 0);
            rc = sy_server_fail(s, SY_ELUA, "%s: %s", path, lua_tostring(L, -1));
            lua_pop(L, 1); /* the message; the table stands in for the value */
        } else if (!ok && lim->integer) {
            pushed = 1;
            rc = sy_server_fail(s, SY_ELUA,
                                "%s: app.http.%s must be an integer in %.0f .. %.0f "
                                "(got %s)",
                                path, k, lim->lo, lim->hi, luaL_tolstring(L, -1, NULL));
        } else if (!ok) {
            pushed = 1;
            rc = sy_server_fail(s, SY_ELUA,
                                "%s: app.http.%s must be %sa number of seconds in "
                                "(%g, %g] (got %s)",
                                path, k, lim->zero ? "0 (none) or " : "", lim->lo, lim->hi,
                                luaL_tolstring(L, -1, NULL));
        } else {
            switch (lim - http_limits) {
            case 0: rc = sy_server_set_max_head(s, (size_t)v); break;
            case 1: rc = sy_server_set_max_headers(s, (size_t)v); break;
            case 2: rc = sy_server_set_max_body(s, (size_t)v); break;
            case 3: rc = sy_server_set_header_timeout(s, v); break;
            case 4: rc = sy_server_set_idle_timeout(s, v); break;
            case 5: rc = sy_server_set_high_water(s, (size_t)v); break;
            case 6: rc = sy_server_set_max_buffered_total(s, (size_t)v); break;
            case 7: rc = sy_server_set_body_timeout(s, v); break;
            default: rc = sy_server_set_send_timeout(s, v); break;
            }
            if (rc != 0) {
                char why[256];
                snprintf(why, sizeof why, "%s", sy_server_error(s));
                rc = sy_server_fail(s, SY_ELUA, "%s: app.http.%s: %s", path, k, why);
            }
        }
        lua_pop(L, 1 + pushed);
    }
    if (rc != 0)
        lua_pop(L, 1); /* the key lua_next left */
    lua_pop(L, 1);     /* the http table */
    return rc;
}

/* app.lua = { max_time = seconds per call from the core (0: none), max_memory = bytes (0:
 * none) }. */
static int apply_lua_limits(sy_server *s, lua_State *L, const char *path)
{
    int t = lua_getfield(L, -1, "lua");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    int rc = 0;
    if (t != LUA_TTABLE) {
        rc = sy_server_fail(s, SY_ELUA, "%s: app.lua must be a table (got %s)", path,
                            lua_typename(L, t));
    } else {
        lua_pushnil(L);
        while (rc == 0 && lua_next(L, -2)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : -1;
            /* The host's own setting (sy_server_set_lua_max_*) wins over the app's. */
            if (strcmp(k, "max_time") == 0 && v >= 0 && v <= 3600) {
                if (!s->lua.max_time_set)
                    s->lua.max_time = v;
            } else if (strcmp(k, "max_memory") == 0 &&
                       (v == 0 || (v >= 1024 * 1024 && v <= 1e15))) {
                if (!s->lua.max_memory_set)
                    s->lua.max_memory = (size_t)v;
            } else if (strcmp(k, "max_time") == 0 || strcmp(k, "max_memory") == 0)
                rc = sy_server_fail(s, SY_ELUA,
                                    "%s: app.lua.%s out of range (max_time 0..3600 s, max_memory "
                                    "0 or >= 1 MiB)",
                                    path, k);
            else {
                static const char *const lua_names[] = {"max_time", "max_memory", NULL};
                const char *like = sy_name_suggest(k, lua_names);
                rc = sy_server_fail(s, SY_ELUA, "%s: unknown app.lua option '%s'%s%s%s", path, k,
                                    like ? " (did you mean '" : "", like ? like : "",
                                    like ? "'?)" : "");
            }
            lua_pop(L, 1);
        }
        if (rc != 0)
            lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

/* The time budget of loading the app: the embedder's setting, else SWITCHYARD_LOAD_TIMEOUT,
 * else the default (10 s). Returns 0, or SY_EINVAL with the message for a bad variable. */
static int load_budget(sy_server *s, double *budget)
{
    *budget = s->lua.load_time;
    const char *env = s->lua.load_time_set ? NULL : getenv("SWITCHYARD_LOAD_TIMEOUT");
    if (!env || !*env)
        return 0;
    char *end;
    double v = strtod(env, &end);
    if (*end || !(v >= 0 && v <= 86400))
        return sy_server_fail(s, SY_EINVAL,
                              "SWITCHYARD_LOAD_TIMEOUT must be seconds in "
                              "0 .. 86400 (got '%s')",
                              env);
    *budget = v;
    return 0;
}

/* The names an app table may hold: its hooks and settings. Keys starting with '_' are the
 * app's own; so is a function under a name far from these (a host calls it with
 * sy_server_call_lua). */
static const char *const app_names[] = {
    "request", "upgrade", "handlers", "options", "http", "lua", "shutdown", NULL,
};

/* The keys app.options may set: the WebSocket options and the raw idle_timeout. */
static const char *const app_option_names[] = {
    "max_message_size",
    "max_fragments",
    "idle_timeout",
    "ping_interval",
    "max_backpressure",
    "backpressure",
    "close_timeout",
    "compression",
    "compression_threshold",
    "max_inflate_ratio",
    NULL,
};

static int check_app_options(lua_State *L)
{
    sy_ws_options o;
    sy_ws_default_options(&o);
    sy_lua_ws_options(L, 1, &o);
    return 0;
}

/* The app table at the top: every key is a known name, and app.options is a table of known
 * options with values the server takes (checked here, so --check reports them). */
static int check_app_names(sy_server *s, lua_State *L, const char *path)
{
    if (sy_lua_unknown_key(L, -1, app_names, "app key", SY_NAMES_OWN | SY_NAMES_FUNCTIONS)) {
        int rc = sy_server_fail(s, SY_ELUA, "%s: %s", path, lua_tostring(L, -1));
        lua_pop(L, 1);
        return rc;
    }
    int t = lua_getfield(L, -1, "options");
    int rc = 0;
    if (t != LUA_TNIL && t != LUA_TTABLE) {
        rc = sy_server_fail(s, SY_ELUA, "%s: app.options must be a table (got %s)", path,
                            lua_typename(L, t));
    } else if (t == LUA_TTABLE) {
        if (sy_lua_unknown_key(L, -1, app_option_names, "app.options option", 0)) {
            rc = sy_server_fail(s, SY_ELUA, "%s: %s", path, lua_tostring(L, -1));
            lua_pop(L, 1);
        } else {
            lua_pushcfunction(L, check_app_options);
            lua_pushvalue(L, -2);
            if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
                rc = sy_server_fail(s, SY_ELUA, "%s: app.options: %s", path, lua_tostring(L, -1));
                lua_pop(L, 1);
            }
        }
    }
    lua_pop(L, 1);
    return rc;
}

static const char path_key = 'p';  /* registry[&path_key] = the loaded app file's path */
static const char saved_key = 'm'; /* registry[&saved_key] = app modules a reload took out of
                                    * package.loaded, while it runs */

/* App modules across a reload, as Lua: ("unload", dir) moves the entries of package.loaded
 * that are the app's own (found as dir/?.lua; not switchyard.*, not preloaded) into a table
 * and returns it, so `require` loads them again; ("restore", dir, saved) drops what the failed
 * load required from dir and puts the saved entries back. */
static const char MODULES[] =
    "local op, dir, saved = ...\n"
    "local loaded, preload = package.loaded, package.preload\n"
    "local function own(name)\n"
    "  return type(name) == 'string' and name:sub(1, 10) ~= 'switchyard' and\n"
    "         preload[name] == nil and package.searchpath(name, dir .. '/?.lua') ~= nil\n"
    "end\n"
    "local out = {}\n"
    "for name, v in pairs(loaded) do if own(name) then out[name] = v end end\n"
    "for name in pairs(out) do loaded[name] = nil end\n"
    "if op == 'restore' then for name, v in pairs(saved) do loaded[name] = v end end\n"
    "return out\n";

/* Runs MODULES (op, dir[, registry[&saved_key]]); "unload" keeps its result in
 * registry[&saved_key], "restore" clears it. Returns 0, or SY_ELUA with the message in s. */
static int app_modules(sy_server *s, lua_State *L, const char *op, sy_str dir)
{
    if (luaL_loadbuffer(L, MODULES, sizeof MODULES - 1, "=switchyard.reload") != LUA_OK)
        return sy_server_fail(s, SY_ELUA, "reload: %s", lua_tostring(L, -1));
    lua_pushstring(L, op);
    lua_pushlstring(L, dir.p, dir.len);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &saved_key);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
        int rc = sy_server_fail(s, SY_ELUA, "reload: %s", lua_tostring(L, -1));
        lua_settop(L, 0);
        return rc;
    }
    if (strcmp(op, "unload") != 0) {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, &saved_key);
    return 0;
}

/* Runs the app file and checks what it returned; on success the app table is
 * registry[&app_key] (the previous one, if any, is replaced). */
static int run_app_file(sy_server *s, lua_State *L, const char *path)
{
    sy_lua_push_traceback(L);
    if (luaL_loadfile(L, path) != LUA_OK) {
        int rc = sy_server_fail(s, SY_ELUA, "%s", lua_tostring(L, -1));
        lua_settop(L, 0);
        return rc;
    }
    /* The load has a budget of its own: app.lua.max_time is only known once it has run. */
    double budget = 0;
    if (load_budget(s, &budget) != 0) {
        lua_settop(L, 0);
        return SY_EINVAL;
    }
    double max_time = s->lua.max_time, t0 = sy_lua_mono_now();
    s->lua.max_time = budget;
    s->lua_depth++;
    sy_server *prev = sy_lua_budget_enter(s, L);
    lua_State *prev_thread = sy_lua_budget_thread(L);
    int lrc = lua_pcall(L, 0, 1, 1);
    sy_lua_budget_thread(prev_thread);
    sy_lua_budget_leave(s, L, prev);
    s->lua_depth--;
    s->lua.max_time = max_time;
    if (lrc != LUA_OK) {
        int rc;
        if (budget > 0 && sy_lua_mono_now() - t0 >= budget)
            rc = sy_server_fail(s, SY_ELUA,
                                "%s: loading the app ran past its time budget for "
                                "loading (%g s; SWITCHYARD_LOAD_TIMEOUT sets it): %s",
                                path, budget, lua_tostring(L, -1));
        else
            rc = sy_server_fail(s, SY_ELUA, "%s", lua_tostring(L, -1));
        lua_settop(L, 0);
        return rc;
    }
    if (lua_type(L, -1) != LUA_TTABLE) {
        int rc = sy_server_fail(s, SY_ELUA, "%s: the app must return a table of hooks (got %s)",
                                path, luaL_typename(L, -1));
        lua_settop(L, 0);
        return rc;
    }
    static const char *const hooks[] = {"request", "upgrade", "shutdown", NULL};
    for (int i = 0; hooks[i]; i++) {
        int t = lua_getfield(L, -1, hooks[i]);
        lua_pop(L, 1);
        if (t != LUA_TNIL && t != LUA_TFUNCTION) {
            int rc = sy_server_fail(s, SY_ELUA, "%s: app.%s must be a function (got %s)", path,
                                    hooks[i], lua_typename(L, t));
            lua_settop(L, 0);
            return rc;
        }
    }
    int t = lua_getfield(L, -1, "handlers");
    lua_pop(L, 1);
    if (t != LUA_TNIL && t != LUA_TTABLE) {
        int rc = sy_server_fail(s, SY_ELUA, "%s: app.handlers must be a table (got %s)", path,
                                lua_typename(L, t));
        lua_settop(L, 0);
        return rc;
    }
    int rc = check_app_names(s, L, path);
    if (rc == 0)
        rc = apply_http_limits(s, L, path);
    if (rc == 0)
        rc = apply_lua_limits(s, L, path);
    if (rc != 0) {
        lua_settop(L, 0);
        return rc;
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, &app_key);
    lua_settop(L, 0);
    return 0;
}

/* Loads the app file, the first time or again (a reload: the app loaded before stays when
 * this one fails, with its modules and settings). */
static int lua_app_load(void *ud, const char *path)
{
    sy_server *s = ud;
    lua_State *L = s->L;
    FILE *f = fopen(path, "r");
    if (!f)
        return sy_server_fail(s, SY_ELUA, "cannot open app %s: %s", path, strerror(errno));
    fclose(f);
    lua_settop(L, 0);
    int reload = lua_rawgetp(L, LUA_REGISTRYINDEX, &app_key) == LUA_TTABLE;
    lua_pop(L, 1);
    /* The app's own directory comes first on package.path, so it can require its modules. */
    const char *slash = strrchr(path, '/');
    sy_str dir = slash ? sy_str_make(path, (size_t)(slash - path)) : SY_STR(".");
    lua_getglobal(L, "package"); /* [package] */
    lua_pushfstring(L, "%s/?.lua;", lua_pushlstring(L, dir.p, dir.len));
    lua_getfield(L, 1, "path"); /* [package, dir, prefix, oldpath] */
    const char *old = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (!old) {
        lua_pop(L, 1);
        lua_setfield(L, 1, "path");
    } else if (strncmp(old, lua_tostring(L, 3), lua_rawlen(L, 3)) != 0) {
        lua_concat(L, 2); /* not again at a reload */
        lua_setfield(L, 1, "path");
    }
    lua_settop(L, 0);
    if (reload && app_modules(s, L, "unload", dir) != 0)
        return SY_ELUA;
    sy_config cfg = s->env.cfg;
    sy_lua_limits lim = s->lua;
    int rc = run_app_file(s, L, path);
    if (rc != 0 && reload) {
        /* The old app stays: its settings and its modules come back. */
        size_t max_headers = cfg.max_headers;
        cfg.max_headers = s->env.cfg.max_headers; /* with the array it sizes */
        s->env.cfg = cfg;
        (void)sy_server_set_max_headers(s, max_headers);
        s->lua = lim;
        char why[sizeof s->err];
        snprintf(why, sizeof why, "%s", s->err);
        if (app_modules(s, L, "restore", dir) != 0)
            sy_log("error", "%s", s->err);
        sy_server_fail(s, rc, "%s", why);
        lua_settop(L, 0);
        return rc;
    }
    if (rc != 0)
        return rc;
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &saved_key); /* the old app's modules go */
    sy_lua_handler_sets_reset(L);
    lua_pushstring(L, path);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &path_key);
    return 0;
}

static const char stop_key = 'x'; /* registry[&stop_key] = the stop_wait of a waiting
                                   * app.shutdown */

typedef struct stop_wait {
    void (*done)(void *arg);
    void *arg;
} stop_wait;

/* app.shutdown waited and has now ended (logged if it failed): the server goes on. */
static void shutdown_done(void *owner, int status)
{
    (void)status;
    lua_State *L = ((sy_server *)owner)->L;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &stop_key);
    stop_wait w = *(stop_wait *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &stop_key);
    w.done(w.arg);
}

/* app.shutdown() as a task: it may publish, and wait within the grace period. An error in it
 * is logged and the stop goes on. */
static int lua_app_shutdown(void *ud, void (*done)(void *arg), void *arg)
{
    sy_server *s = ud;
    lua_State *L = s->L;
    sy_lua_task *t = sy_lua_task_get(s);
    if (!t) {
        sy_log("error", "app.shutdown: out of memory");
        return 0;
    }
    if (!sy_lua_push_hook(t->co, "shutdown")) {
        sy_lua_task_put(t);
        return 0;
    }
    stop_wait *w = lua_newuserdatauv(L, sizeof *w, 0);
    w->done = done;
    w->arg = arg;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &stop_key);
    t->what = "app.shutdown";
    t->owner = s;
    t->done = shutdown_done;
    return sy_lua_task_run(t, 0) == 1 ? 1 : 0;
}

static void lua_app_close(void *ud)
{
    sy_server *s = ud;
    if (s->L) {
        sy_lua_tasks_free(s);
        lua_close(s->L);
        s->L = NULL;
        s->lua_ws_send = NULL; /* was the closed state's */
        sy_lua_budget_server_gone();
    }
}

/* 1 when the app table has an upgrade hook (a raw lookup, protected: a memory error is a no). */
static int has_upgrade_hook(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, sy_lua_app_key());
    int yes = 0;
    if (lua_istable(L, -1)) {
        lua_pushliteral(L, "upgrade");
        yes = lua_rawget(L, -2) == LUA_TFUNCTION;
    }
    lua_pushboolean(L, yes);
    return 1;
}

static int lua_app_has_upgrade(void *ud)
{
    sy_server *s = ud;
    lua_State *L = s->L;
    if (!L)
        return 0;
    int top = lua_gettop(L);
    lua_pushcfunction(L, has_upgrade_hook);
    int yes = lua_pcall(L, 0, 1, 0) == LUA_OK && lua_toboolean(L, -1);
    lua_settop(L, top);
    return yes;
}

/* The Lua binding as the server's app (app.h); ud is the server. */
static const sy_app_ops lua_app_ops = {
    .load = lua_app_load,
    .close = lua_app_close,
    .shutdown = lua_app_shutdown,
    .dispatch = sy_lua_dispatch,
    .has_upgrade = lua_app_has_upgrade,
    .request = sy_lua_request,
    .response_dropped = sy_lua_response_dropped,
    .raw_open = sy_lua_raw_open,
    .raw_data = sy_lua_raw_data,
    .raw_drain = sy_lua_raw_drain,
    .raw_eof = sy_lua_raw_eof,
    .raw_shutdown = sy_lua_raw_shutdown,
    .raw_close = sy_lua_raw_close,
    .conn_discard = sy_lua_conn_discard,
    .ws_open = sy_lua_ws_open,
    .ws_messages = sy_lua_ws_messages,
    .ws_ping = sy_lua_ws_ping,
    .ws_drain = sy_lua_ws_drain,
    .ws_close = sy_lua_ws_close,
};

SY_API sy_server *sy_server_new(struct ev_loop *loop)
{
    sy_server *s = sy_server_create(loop);
    if (!s)
        return NULL;
    if (lua_app_open(s) != 0) {
        sy_server_free(s);
        return NULL;
    }
    sy_server_set_app(s, &lua_app_ops, s);
    sy_topics_set_deliver(s, sy_lua_topic_deliver, s->L);
    return s;
}

SY_API int sy_server_reload(sy_server *s)
{
    lua_State *L = s->L;
    if (!L || s->app.ops != &lua_app_ops)
        return sy_server_fail(s, SY_EINVAL, "no Lua app: nothing to reload");
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &path_key) != LUA_TSTRING) {
        lua_pop(L, 1);
        return sy_server_fail(s, SY_EINVAL, "no app file was loaded: nothing to reload");
    }
    char path[4096];
    snprintf(path, sizeof path, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    if (s->lua_depth > 0)
        return sy_server_fail(s, SY_EINVAL, "cannot reload %s from inside a call into the app",
                              path);
    if (s->env.stopping)
        return sy_server_fail(s, SY_ECLOSED, "cannot reload %s: the server is stopping", path);
    int rc = sy_app_load(&s->app, path);
    if (rc != 0) {
        sy_log("error", "cannot reload the app from %s (the app loaded before stays): %s", path,
               s->err);
        return rc;
    }
    sy_log("info", "reloaded the app from %s", path);
    return 0;
}
