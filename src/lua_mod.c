/* The switchyard Lua module, the server's Lua state, app loading and the one C->Lua call helper. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <lualib.h>

#include "lua_int.h"

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

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The server of a state made by lua_app_open, from the state's extra space (no lookup). */
static sy_server *state_server(lua_State *L)
{
    return *(sy_server **)lua_getextraspace(L);
}

/* ---- the time budget (app.lua.max_time) -----------------------------------------------------
 *
 * A count hook stops a call that runs past its deadline, but while any count hook is set Lua
 * traps on every instruction (10-20% of the run time of Lua code). So the main thread runs
 * with no hook, and the hook is set only when a call is late: a timer on the thread's CPU
 * time sends BUDGET_SIGNAL to the thread every BUDGET_TICK of CPU it uses, and the handler
 * sets the hook (lua_sethook may be called from a signal handler) when the running call is
 * past its deadline. A loop burns CPU, so it is caught within a tick of its deadline; an idle
 * thread gets no signal. Coroutines keep a count hook from their first instruction (see
 * arm_coroutine): the handler cannot reach the coroutine that is running. Where the timer
 * cannot be made, or the signal has a handler of someone else's, every thread keeps the hook
 * as before ("hooked" mode). So does a process under valgrind: it restarts a system call that
 * a signal interrupted from the beginning, so a send that takes longer than a tick never ends. */
#define LUA_BUDGET_COUNT 10000
/* SIGVTALRM: a CPU-time alarm by name, and one that debuggers pass through without stopping. */
#define BUDGET_SIGNAL SIGVTALRM
#define BUDGET_TICK_NS 20000000L /* 20 ms of the thread's CPU time */

enum { BUDGET_UNSET, BUDGET_TIMED, BUDGET_HOOKED };

/* Per thread; initial-exec so the signal handler's access cannot allocate. */
static __thread struct {
    int mode;
    sy_server *running; /* the server whose call from the core is running on this thread */
    timer_t timer;
    int servers;        /* servers whose Lua state was made on this thread */
} bt __attribute__((tls_model("initial-exec")));

static pthread_once_t budget_once = PTHREAD_ONCE_INIT;
static pthread_key_t budget_key; /* its destructor deletes the thread's timer */
static int budget_signal_ok;     /* the handler is ours */

static void budget_hook(lua_State *L, lua_Debug *ar);

static void on_budget_signal(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    int saved = errno;
    sy_server *s = bt.running;
    if (s && s->L && s->lua_deadline > 0 && mono_now() > s->lua_deadline)
        lua_sethook(s->L, budget_hook, LUA_MASKCOUNT, 1);
    errno = saved;
}

static void budget_thread_exit(void *timer)
{
    (void)timer;
    if (bt.mode == BUDGET_TIMED)
        timer_delete(bt.timer);
    bt.mode = BUDGET_UNSET;
}

static void budget_after_fork(void)
{
    bt.mode = BUDGET_UNSET; /* timers are not inherited: the child makes its own */
}

static void budget_setup(void)
{
    /* SWITCHYARD_LUA_BUDGET=hook or =signal chooses; by default valgrind gets the hook (a
     * profile under callgrind of a server that sends nothing large may want the signal). */
    const char *choice = getenv("SWITCHYARD_LUA_BUDGET");
    const char *preload = getenv("LD_PRELOAD");
    if (choice && strcmp(choice, "hook") == 0)
        return;
    if (!(choice && strcmp(choice, "signal") == 0) && preload && strstr(preload, "vgpreload"))
        return;
    struct sigaction old;
    if (sigaction(BUDGET_SIGNAL, NULL, &old) != 0 ||
        (!(old.sa_flags & SA_SIGINFO) && old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN))
        return; /* taken by the host: hooked mode */
    if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction != on_budget_signal)
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_budget_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(BUDGET_SIGNAL, &sa, NULL) != 0)
        return;
    if (pthread_key_create(&budget_key, budget_thread_exit) != 0)
        return;
    pthread_atfork(NULL, NULL, budget_after_fork);
    budget_signal_ok = 1;
}

/* The first call on a thread picks its mode. Returns 1 when the main thread needs the hook. */
static int budget_hooked(void)
{
    if (bt.mode != BUDGET_UNSET)
        return bt.mode == BUDGET_HOOKED;
    bt.mode = BUDGET_HOOKED;
    pthread_once(&budget_once, budget_setup);
    if (!budget_signal_ok)
        return 1;
    /* The host may have taken the signal over since (after its last server went away). */
    struct sigaction cur;
    if (sigaction(BUDGET_SIGNAL, NULL, &cur) != 0 || !(cur.sa_flags & SA_SIGINFO) ||
        cur.sa_sigaction != on_budget_signal)
        return 1;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = BUDGET_SIGNAL;
    sev._sigev_un._tid = gettid();
    if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &bt.timer) != 0)
        return 1;
    struct itimerspec its = {{0, BUDGET_TICK_NS}, {0, BUDGET_TICK_NS}};
    if (timer_settime(bt.timer, 0, &its, NULL) != 0) {
        timer_delete(bt.timer);
        return 1;
    }
    pthread_setspecific(budget_key, &bt); /* non-NULL: the destructor runs at thread exit */
    bt.mode = BUDGET_TIMED;
    return 0;
}

/* The thread's last server is gone: so is its timer, and a host that goes on working gets no
 * more of our signals. The next server on this thread picks a mode again. */
static void budget_server_gone(void)
{
    if (bt.servers > 0 && --bt.servers > 0)
        return;
    if (bt.mode == BUDGET_TIMED)
        timer_delete(bt.timer);
    bt.mode = BUDGET_UNSET;
}

/* The running call may take max_time from now (0: no deadline). */
static void budget_arm(sy_server *s)
{
    s->lua_deadline = s->lua.max_time > 0 ? mono_now() + s->lua.max_time : 0;
}

/* The outermost call from the core into s's state starts on this thread: its deadline, and
 * the hook where this thread needs one. Returns the server whose call it interrupts (nested
 * calls into another server's state), for budget_leave. */
static sy_server *budget_enter(sy_server *s, lua_State *L)
{
    sy_server *prev = bt.running;
    bt.running = s;
    if (budget_hooked() && lua_gethook(L) != budget_hook)
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, LUA_BUDGET_COUNT);
    budget_arm(s);
    return prev;
}

static void budget_leave(sy_server *s, lua_State *L, sy_server *prev)
{
    s->lua_deadline = 0;
    bt.running = prev;
    if (bt.mode == BUDGET_TIMED) {
        if (lua_gethook(L) == budget_hook)
            lua_sethook(L, NULL, 0, 0); /* set by a late call (or a late signal): off again */
    } else if (lua_gethookcount(L) != LUA_BUDGET_COUNT) {
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, LUA_BUDGET_COUNT);
    }
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    sy_server *s = state_server(L);
    if (s && s->lua_deadline > 0 && mono_now() > s->lua_deadline) {
        /* From now on check at every instruction: an app that catches this error with pcall
         * gets it again at its next instruction, until the call unwinds to the core. */
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
        luaL_error(L, "the hook ran longer than its time budget (%f s)", s->lua.max_time);
    }
    int main_thread = lua_pushthread(L);
    lua_pop(L, 1);
    if (main_thread && bt.mode == BUDGET_TIMED)
        lua_sethook(L, NULL, 0, 0); /* a signal that came late: nothing to stop */
    else if (lua_gethookcount(L) != LUA_BUDGET_COUNT)
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, LUA_BUDGET_COUNT); /* back to normal */
}

/* Runs first in every coroutine (coroutine.create and wrap are wrapped): the count hook for
 * this thread, which the signal handler cannot reach. A thread the core makes itself with
 * lua_newthread must get the same hook before it runs. */
static int arm_coroutine(lua_State *L)
{
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, LUA_BUDGET_COUNT);
    return 0;
}

static const char COROUTINE_ARMING[] =
    "local arm, create, wrap = ...\n"
    "coroutine.create = function(f)\n"
    "  if type(f) ~= 'function' then return create(f) end\n"
    "  return create(function(...) arm() return f(...) end)\n"
    "end\n"
    "coroutine.wrap = function(f)\n"
    "  if type(f) ~= 'function' then return wrap(f) end\n"
    "  return wrap(function(...) arm() return f(...) end)\n"
    "end\n";

/* Lua runs __gc finalizers with debug hooks off, so app.lua.max_time cannot stop one: a loop in
 * a finalizer would stall the server for good. Apps may not install finalizers: setmetatable
 * (and debug.setmetatable) refuse a metatable with a __gc field, and the metatables of
 * userdata (the core's handles, io files, C libraries' objects), whose objects C marks for
 * finalization, are handed to the app as read-only views, so no __gc can be put in one.
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
    "  error('the metatable of a userdata cannot be changed in switchyard apps (a __gc put '\n"
    "        .. 'there would run outside app.lua.max_time)', 2)\n"
    "end\n"
    "local views = setmetatable({}, { __mode = 'k' })\n"
    "local function view(v, mt)\n"
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
    "  if type(v) == 'userdata' then readonly() end\n"
    "  return dset(v, mt)\n"
    "end\n"
    "debug.getmetatable = function(v) return view(v, dget(v)) end\n";

/* The one entry from C into Lua. *what (read after the call, so it may name a stage that
 * changed during it) and name label the log line. */
static int protected_call_at(lua_State *L, int base, int nargs, int nres,
                             const char *const *what, const char *name)
{
    sy_server *s = state_server(L), *prev = NULL;
    int outer = s && s->lua_depth++ == 0;
    if (outer)
        prev = budget_enter(s, L);
    int rc = lua_pcall(L, nargs, nres, base);
    if (s && --s->lua_depth == 0)
        budget_leave(s, L, prev);
    if (rc != LUA_OK) {
        /* The label is only formatted here: the success path does no string work. */
        const char *msg = lua_tostring(L, -1);
        if (rc == LUA_ERRMEM && s && s->lua.max_memory)
            sy_log("error", "%s%s%s%s: Lua memory limit reached (%zu bytes in use, cap %zu)",
                   *what, name ? " '" : "", name ? name : "", name ? "'" : "", s->lua_memory,
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
                          const char *name)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    return protected_call_at(L, base, nargs, nres, what, name);
}

int sy_lua_pcall_at(lua_State *L, int base, int nargs, const char *what, const char *name)
{
    return protected_call_at(L, base, nargs, 0, &what, name);
}

void sy_lua_budget_restart(lua_State *L)
{
    sy_server *s = state_server(L);
    if (s && s->lua_depth == 1)
        budget_arm(s);
}

void sy_lua_push_traceback(lua_State *L)
{
    lua_pushcfunction(L, traceback);
}

int sy_lua_call2(lua_State *L, int nargs, int nres, const char *what, const char *name)
{
    return protected_call(L, nargs, nres, &what, name);
}

int sy_lua_call(lua_State *L, int nargs, int nres, const char *what)
{
    return protected_call(L, nargs, nres, &what, NULL);
}

int sy_lua_call_stage(lua_State *L, int nargs, int nres, const char *const *stage)
{
    return protected_call(L, nargs, nres, stage, NULL);
}

int sy_lua_push_hook(lua_State *L, const char *name)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &app_key);
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

/* ---- decisions ---------------------------------------------------------------------------- */

static const char *const decision_kinds[] = {"", "accept", "ignore", "upgrade_required",
                                             "reject"};

sy_lua_decision *sy_lua_test_decision(lua_State *L, int idx)
{
    return luaL_testudata(L, idx, SY_DECISION_MT);
}

/* Pushes a new decision of kind with every user value nil. */
static sy_lua_decision *new_decision(lua_State *L, int kind)
{
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

/* sy.accept(token, handlers?, options?): everything is checked here, where the app's line is
 * in the traceback; options are copied, so a later change to the app's table cannot reach the
 * decision. */
static int l_accept(lua_State *L)
{
    lua_settop(L, 3); /* absent arguments read as nil, never as what is pushed below */
    size_t n;
    const char *tok = luaL_checklstring(L, 1, &n);
    luaL_argcheck(L, n > 0, 1, "empty token");
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    int copy = 0, headers = 0;
    if (lua_istable(L, 3)) {
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
    return luaL_error(L, "a decision cannot be changed (field '%s'): make a new one with "
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
        lua_pushfstring(L, SY_DECISION_MT "(%s %s)", decision_kinds[d->kind],
                        lua_tostring(L, -1));
    } else {
        lua_pushfstring(L, SY_DECISION_MT "(%s)", decision_kinds[d->kind]);
    }
    return 1;
}

static int l_now(lua_State *L)
{
    sy_server *s = sy_lua_server(L);
    if (s) {
        lua_pushnumber(L, ev_now(s->loop));
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

static const luaL_Reg module_fns[] = {
    {"accept", l_accept},
    {"ignore", l_ignore},
    {"upgrade_required", l_upgrade_required},
    {"reject", l_reject},
    {"after", sy_lua_after},
    {"publish", sy_lua_publish_fn},
    {"every", sy_lua_every},
    {"now", l_now},
    {"log", l_log},
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
    sy_lua_open_timer(L);
    lua_pushstring(L, "0.1.0");
    lua_setfield(L, -2, "version");
    return 1;
}

/* ---- the server's state ------------------------------------------------------------------- */

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
        sy_pool_put(&s->pool, ptr, old);
        s->lua_memory -= old;
        return NULL;
    }
    if (nsize > old && s->lua.max_memory && s->lua_memory - old + nsize > s->lua.max_memory)
        return NULL;
    void *p = sy_pool_resize(&s->pool, ptr, old, nsize);
    if (p)
        s->lua_memory = s->lua_memory - old + nsize;
    return p;
}

static int lua_app_open(sy_server *s)
{
    lua_State *L = lua_newstate(lua_alloc, s);
    if (!L)
        return SY_ENOMEM;
    *(sy_server **)lua_getextraspace(L) = s;
    lua_atpanic(L, panic);
    /* Generational GC: a server makes many short-lived strings (messages, requests) and keeps
     * few long-lived objects; incremental cycles over large payloads cost ~10% per message. */
    lua_gc(L, LUA_GCGEN, 0, 0);
    luaL_openlibs(L);
    if (luaL_loadstring(L, COROUTINE_ARMING) != LUA_OK) {
        lua_close(L);
        return SY_ENOMEM;
    }
    lua_pushcfunction(L, arm_coroutine);
    lua_getglobal(L, "coroutine");
    lua_getfield(L, -1, "create");
    lua_getfield(L, -2, "wrap");
    lua_remove(L, -3);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
        lua_close(L);
        return SY_ENOMEM;
    }
    if (luaL_loadstring(L, GC_GUARD) != LUA_OK) {
        lua_close(L);
        return SY_ENOMEM;
    }
    static const char *const guard_args[] = {"setmetatable", "getmetatable", "rawget", "type",
                                             "error", "next", "debug"};
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
    lua_pop(L, 1);
    /* Open it now: the metatables of req/res must exist even if the app never requires it. */
    luaL_requiref(L, "switchyard", luaopen_switchyard, 0);
    lua_pop(L, 1);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", SY_LUA_DIR, SY_LUA_DIR, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
    s->L = L;
    bt.servers++;
    return 0;
}

/* app.http = { max_head =, max_headers =, max_body =, header_timeout =, keepalive_timeout =,
 * high_water =, max_buffered_total =, body_timeout =, send_timeout = }: the server's HTTP
 * limits, set when the app loads (app table at the top). Each value is checked as a Lua number
 * (range, NaN, integral for sizes and counts) before it is converted: a double out of a
 * size_t's range has no defined conversion. */
static const struct http_limit {
    const char *key;
    double lo, hi;  /* inclusive, except lo for times (> lo) */
    int integer;    /* a size or count: integral values only */
    int zero;       /* a time that may also be 0 (none) */
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
        int ok = lim && v <= lim->hi &&
                 (lim->integer ? v >= lim->lo && v == floor(v)
                               : v > lim->lo || (lim->zero && v == 0));
        if (!lim) {
            rc = sy_server_fail(s, SY_ELUA, "%s: unknown app.http option '%s'", path,
                                k ? k : "?");
        } else if (!ok && lim->integer) {
            pushed = 1;
            rc = sy_server_fail(s, SY_ELUA, "%s: app.http.%s must be an integer in %.0f .. %.0f "
                                "(got %s)", path, k, lim->lo, lim->hi, luaL_tolstring(L, -1, NULL));
        } else if (!ok) {
            pushed = 1;
            rc = sy_server_fail(s, SY_ELUA, "%s: app.http.%s must be %sa number of seconds in "
                                "(%g, %g] (got %s)", path, k, lim->zero ? "0 (none) or " : "",
                                lim->lo, lim->hi, luaL_tolstring(L, -1, NULL));
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
            if (strcmp(k, "max_time") == 0 && v >= 0 && v <= 3600)
                s->lua.max_time = v;
            else if (strcmp(k, "max_memory") == 0 && (v == 0 || (v >= 1024 * 1024 && v <= 1e15)))
                s->lua.max_memory = (size_t)v;
            else if (strcmp(k, "max_time") == 0 || strcmp(k, "max_memory") == 0)
                rc = sy_server_fail(s, SY_ELUA,
                                    "%s: app.lua.%s out of range (max_time 0..3600 s, max_memory "
                                    "0 or >= 1 MiB)", path, k);
            else
                rc = sy_server_fail(s, SY_ELUA, "%s: unknown app.lua option '%s'", path, k);
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
        return sy_server_fail(s, SY_EINVAL, "SWITCHYARD_LOAD_TIMEOUT must be seconds in "
                              "0 .. 86400 (got '%s')", env);
    *budget = v;
    return 0;
}

static int lua_app_load(void *ud, const char *path)
{
    sy_server *s = ud;
    lua_State *L = s->L;
    FILE *f = fopen(path, "r");
    if (!f)
        return sy_server_fail(s, SY_ELUA, "cannot open app %s: %s", path, strerror(errno));
    fclose(f);
    /* The app's own directory comes first on package.path, so it can require its modules. */
    const char *slash = strrchr(path, '/');
    lua_getglobal(L, "package"); /* [package] */
    if (slash)
        lua_pushlstring(L, path, (size_t)(slash - path));
    else
        lua_pushliteral(L, ".");
    lua_getfield(L, -2, "path"); /* [package, dir, oldpath] */
    lua_pushfstring(L, "%s/?.lua;%s", lua_tostring(L, -2), lua_tostring(L, -1));
    lua_setfield(L, -4, "path");
    lua_settop(L, 0);

    lua_pushcfunction(L, traceback);
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
    double max_time = s->lua.max_time, t0 = mono_now();
    s->lua.max_time = budget;
    s->lua_depth++;
    sy_server *prev = budget_enter(s, L);
    int lrc = lua_pcall(L, 0, 1, 1);
    budget_leave(s, L, prev);
    s->lua_depth--;
    s->lua.max_time = max_time;
    if (lrc != LUA_OK) {
        int rc;
        if (budget > 0 && mono_now() - t0 >= budget)
            rc = sy_server_fail(s, SY_ELUA, "%s: loading the app ran past its time budget for "
                                "loading (%g s; SWITCHYARD_LOAD_TIMEOUT sets it): %s", path,
                                budget, lua_tostring(L, -1));
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
    static const char *const hooks[] = {"request", "upgrade", NULL};
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
    int rc = apply_http_limits(s, L, path);
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

static void lua_app_close(void *ud)
{
    sy_server *s = ud;
    if (s->L) {
        lua_close(s->L);
        s->L = NULL;
        budget_server_gone();
    }
}

/* The Lua binding as the server's app (app.h); ud is the server. */
static const sy_app_ops lua_app_ops = {
    .load = lua_app_load,
    .close = lua_app_close,
    .dispatch = sy_lua_dispatch,
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
    return s;
}
