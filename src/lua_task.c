/* Tasks: hooks, handlers and timer callbacks run in pooled coroutines, so they may wait
 * (sy.sleep, sockets) while the loop serves everyone else. The API is in lua_task.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "lua_int.h"
#include "lua_task.h"

/* Lua 5.4.6 renamed lua_resetthread (closes a coroutine: its to-be-closed variables run). */
#if LUA_VERSION_RELEASE_NUM >= 50406
#define close_thread(co, from) lua_closethread((co), (from))
#else
#define close_thread(co, from) ((void)(from), lua_resetthread(co))
#endif

enum {
    TASK_IDLE,    /* in the pool */
    TASK_RUNNING, /* in lua_resume */
    TASK_WAITING, /* suspended in sy_lua_wait */
    TASK_CLOSING, /* being closed (its to-be-closed variables run): may not wait */
};

/* Idle coroutines kept per server; more are made when more wait at once, and let go when
 * they come back past this. */
#define POOL_KEEP 64

/* Registry entries sy_lua_push_cached reads by integer ref (lua_ws's batch function and its
 * "message" key). */
#define CACHED_KEYS 2

typedef struct task_pool {
    sy_lua_task *free; /* idle tasks */
    int nfree;
    sy_lua_task *all;  /* every task made (linked through all_next), for sy_lua_tasks_free */
    ev_idle collect;   /* a collection once the loop is idle after upgrades */
    unsigned upgrades; /* connections upgraded since that last ran */
    /* sy_lua_push_cached: registry[cached_key[i]] is also at registry[cached_ref[i]] (an
     * array slot: no hash lookup) */
    const void *cached_key[CACHED_KEYS];
    int cached_ref[CACHED_KEYS];
    /* sy_lua_task_keep: one task, out of the free list, whose coroutine keeps the bottom
     * kept_top values of its stack for kept_owner between runs */
    sy_lua_task *kept;
    const void *kept_owner;
    int kept_top;
    const void *asked; /* the owner of the last sy_lua_task_kept (compared, never read) */
} task_pool;

/* The objects of an upgrade (request, decision, the app's options and header tables) are
 * garbage as soon as it is done, and an idle connection keeps nothing of them; left to the
 * collector's pacing they would stay until the heap has grown by its size. After this many
 * upgrades a young collection runs when the loop has nothing else to do. */
#define COLLECT_AFTER_UPGRADES 16

/* Every task ever made, for the final free: kept apart from the free list. */
typedef struct task_node {
    sy_lua_task t;
    struct task_node *all_next, **all_prev;
} task_node;

static void task_put(sy_lua_task *t);

static const char threads_key = 'k'; /* registry[&threads_key] = { [coroutine] = true } */

/* The task running on this thread (innermost), or NULL. */
static __thread sy_lua_task *current;

sy_lua_task *sy_lua_task_current(void)
{
    return current;
}

static task_pool *pool_of(sy_server *s)
{
    if (!s->lua_tasks)
        s->lua_tasks = sy_calloc(1, sizeof(task_pool));
    return s->lua_tasks;
}

/* [] -> [integer ref]: a new coroutine, anchored and marked as a task's. */
static int new_thread(lua_State *L)
{
    lua_State **out = lua_touserdata(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &threads_key); /* [ud, set] */
    lua_State *co = lua_newthread(L);                /* [ud, set, co] */
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    lua_rawset(L, -4);
    lua_pushinteger(L, luaL_ref(L, LUA_REGISTRYINDEX));
    *out = co;
    return 1;
}

sy_lua_task *sy_lua_task_get(sy_server *s)
{
    task_pool *p = pool_of(s);
    if (!p)
        return NULL;
    sy_lua_task *t = p->free;
    if (t) {
        p->free = t->next;
        p->nfree--;
        t->next = NULL;
        return t;
    }
    if ((t = p->kept) && t->state == TASK_IDLE) {
        /* Before making a coroutine (which may fail for want of memory): the kept one. */
        p->kept = NULL;
        lua_settop(t->co, 0);
        return t;
    }
    task_node *n = sy_calloc(1, sizeof *n);
    if (!n)
        return NULL;
    lua_State *L = s->L, *co = NULL;
    int top = lua_gettop(L);
    lua_pushcfunction(L, new_thread);
    lua_pushlightuserdata(L, &co);
    if (!lua_checkstack(L, 4) || lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lua_settop(L, top);
        sy_free(n);
        return NULL;
    }
    t = &n->t;
    t->ref = (int)lua_tointeger(L, -1);
    lua_settop(L, top);
    t->co = co;
    t->s = s;
    t->state = TASK_IDLE;
    ev_init(&t->sleep, NULL);
    n->all_next = (task_node *)p->all;
    if (n->all_next)
        n->all_next->all_prev = &n->all_next;
    n->all_prev = (task_node **)&p->all;
    p->all = &n->t;
    return t;
}

sy_lua_task *sy_lua_task_kept(sy_server *s, const void *owner, int *again)
{
    task_pool *p = s->lua_tasks;
    if (!p) {
        *again = 0;
        return NULL;
    }
    *again = p->asked == owner;
    p->asked = owner;
    sy_lua_task *t = p->kept;
    return t && p->kept_owner == owner && t->state == TASK_IDLE ? t : NULL;
}

/* A kept task's coroutine holds its owner's values while idle, so coroutine.status reports it
 * "suspended" to an app that kept it from a handler (an idle pooled one, "dead"). That app may
 * not resume or close it (is_task_thread refuses task threads): emptying its stack under the
 * kept values would leave the next message's stack without them. */
void sy_lua_task_keep(sy_lua_task *t, const void *owner, int top)
{
    task_pool *p = t->s->lua_tasks;
    if (p->kept) {
        if (p->kept->state != TASK_IDLE)
            return; /* it runs or waits for its owner: that one stays kept */
        sy_lua_task *old = p->kept;
        p->kept = NULL;
        sy_lua_task_put(old);
    }
    p->kept = t;
    p->kept_owner = owner;
    p->kept_top = top;
}

void sy_lua_task_forget(sy_server *s, const void *owner)
{
    task_pool *p = s->lua_tasks;
    if (p && p->asked == owner)
        p->asked = NULL; /* its address may be reused */
    if (!p || !p->kept || p->kept_owner != owner)
        return;
    sy_lua_task *t = p->kept;
    p->kept = NULL;
    if (t->state == TASK_IDLE)
        sy_lua_task_put(t); /* else it goes back when it ends */
}

void sy_lua_task_put(sy_lua_task *t)
{
    lua_settop(t->co, 0);
    task_put(t);
}

/* Lets t and its coroutine go. */
static void task_free(sy_lua_task *t)
{
    lua_State *L = t->s->L;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &threads_key);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
    lua_pushnil(L);
    lua_rawset(L, -3); /* removing a key never allocates */
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
    task_node *n = (task_node *)t;
    *n->all_prev = n->all_next;
    if (n->all_next)
        n->all_next->all_prev = n->all_prev;
    sy_free(n);
}

/* What a run set on t is forgotten: t is idle. */
static void task_clear(sy_lua_task *t)
{
    t->state = TASK_IDLE;
    t->cancelled = 0;
    t->what = t->name = NULL;
    t->stage = NULL;
    t->conn = NULL;
    t->owner = NULL;
    t->done = NULL;
    t->fail = NULL;
    t->cancel = NULL;
    t->cancel_ud = NULL;
    t->used = 0;
}

/* Back to the pool (or let go past POOL_KEEP). The stack of t->co is empty. A coroutine that
 * died of an error is not reused: Lua leaves hooks off in a thread whose error was raised by
 * a hook (the time budget's) and not caught inside it. */
static void task_put_after(sy_lua_task *t, int failed)
{
    task_pool *p = t->s->lua_tasks;
    if (p->kept == t)
        p->kept = NULL; /* its values went with its stack */
    task_clear(t);
    if (failed || p->nfree >= POOL_KEEP) {
        task_free(t);
        return;
    }
    t->next = p->free;
    p->free = t;
    p->nfree++;
}

static void task_put(sy_lua_task *t)
{
    task_put_after(t, 0);
}

static void on_collect(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    sy_server *s = w->data;
    task_pool *p = s->lua_tasks;
    ev_idle_stop(loop, w);
    p->upgrades = 0;
    if (s->L && s->lua_depth == 0) {
        sy_lua_ws_anchors_trim(s->L);
        lua_gc(s->L, LUA_GCSTEP, 0); /* generational mode: one young collection */
    }
}

void sy_lua_upgraded(sy_server *s)
{
    task_pool *p = pool_of(s);
    if (!p || ++p->upgrades < COLLECT_AFTER_UPGRADES || ev_is_active(&p->collect))
        return;
    ev_idle_init(&p->collect, on_collect);
    p->collect.data = s;
    ev_idle_start(s->env.loop, &p->collect);
}

int sy_lua_push_cached(sy_server *s, lua_State *L, const void *key)
{
    task_pool *p = s->lua_tasks;
    for (int i = 0; p && i < CACHED_KEYS; i++)
        if (p->cached_key[i] == key) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, p->cached_ref[i]);
            return 1;
        }
    lua_rawgetp(L, LUA_REGISTRYINDEX, key);
    return 0;
}

void sy_lua_cache(sy_server *s, lua_State *L, const void *key)
{
    task_pool *p = pool_of(s);
    int i = 0;
    while (p && i < CACHED_KEYS && p->cached_key[i] && p->cached_key[i] != key)
        i++;
    if (!p || i == CACHED_KEYS || p->cached_key[i])
        return; /* no room, or cached already */
    lua_rawgetp(L, LUA_REGISTRYINDEX, key);
    p->cached_ref[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    if (p->cached_ref[i] > 0)
        p->cached_key[i] = key;
}

void sy_lua_tasks_free(sy_server *s)
{
    task_pool *p = s->lua_tasks;
    if (!p)
        return;
    ev_idle_stop(s->env.loop, &p->collect);
    task_node *n = (task_node *)p->all;
    while (n) {
        task_node *next = n->all_next;
        if (n->t.state == TASK_WAITING && n->t.cancel)
            n->t.cancel(n->t.cancel_ud);
        ev_timer_stop(s->env.loop, &n->t.sleep);
        sy_free(n);
        n = next;
    }
    sy_free(p);
    s->lua_tasks = NULL;
}

/* (co, msg) as light userdata: pushes msg with co's traceback. */
static int traceback_of(lua_State *L)
{
    luaL_traceback(L, lua_touserdata(L, 1), lua_touserdata(L, 2), 0);
    return 1;
}

/* The log line of a failed task: "what 'name': message" with the coroutine's traceback. The
 * error value is at the top of t->co. */
static void log_failure(sy_lua_task *t, int status)
{
    lua_State *co = t->co;
    sy_server *s = t->s;
    const char *what = t->stage ? *t->stage : t->what ? t->what : "task";
    const char *name = t->name;
    s->env.stats.lua_errors++;
    s->env.stats.lua_memory_hits += status == LUA_ERRMEM && s->lua.max_memory;
    if (status == LUA_ERRMEM && s->lua.max_memory) {
        sy_log("error", "%s%s%s%s: Lua memory limit reached (%zu bytes in use, cap %zu)", what,
               name ? " '" : "", name ? name : "", name ? "'" : "", s->lua_memory,
               s->lua.max_memory);
        return;
    }
    /* No __tostring here: it would run app code outside any protected call and budget. */
    const char *msg = lua_tostring(co, -1);
    if (!msg)
        msg = "(error object is not a string)";
    /* The coroutine's stack is still there after the error: its traceback is read now. */
    int top = lua_gettop(co);
    lua_State *L = s->L;
    int ltop = lua_gettop(L);
    /* Built under a protected call on the main state: the traceback allocates, and at the
     * memory cap that raises. */
    if (lua_checkstack(L, 4)) {
        lua_pushcfunction(L, traceback_of);
        lua_pushlightuserdata(L, co);
        lua_pushlightuserdata(L, (void *)msg);
        if (lua_pcall(L, 2, 1, 0) == LUA_OK)
            msg = lua_tostring(L, -1);
    }
    if (name)
        sy_log("error", "%s '%s': %s", what, name, msg);
    else
        sy_log("error", "%s: %s", what, msg);
    lua_settop(L, ltop);
    lua_settop(co, top);
}

/* Closes t's coroutine: its to-be-closed variables run under the time budget (an error among
 * them is logged). err: the error object that ended it (lua_topointer), or NULL; closing
 * reports that error again unless a to-be-closed variable raised another one. The stack is
 * empty after. */
static void close_coroutine(sy_lua_task *t, const void *err)
{
    sy_server *s = t->s;
    t->state = TASK_CLOSING;
    sy_lua_task *prev_task = current;
    current = t;
    int outer = s->lua_depth++ == 0;
    sy_server *prev = outer ? sy_lua_budget_enter(s, t->co) : NULL;
    lua_State *prev_thread = sy_lua_budget_thread(t->co);
    int st = close_thread(t->co, s->L);
    sy_lua_budget_thread(prev_thread);
    if (--s->lua_depth == 0)
        sy_lua_budget_leave(s, t->co, prev);
    current = prev_task;
    if (st != LUA_OK && st != LUA_YIELD && (!err || lua_topointer(t->co, -1) != err))
        log_failure(t, st);
    lua_settop(t->co, 0);
}

/* One slice of t: resumes it with nargs values. Returns 1 when it waits, else 0 (ended) or
 * SY_ELUA (failed, logged, closed); then t is back in the pool. */
static int resume(sy_lua_task *t, int nargs)
{
    sy_server *s = t->s;
    lua_State *co = t->co;
    sy_conn *c = t->conn;
    if (c)
        sy_conn_ref(c);
    sy_lua_task *prev_task = current;
    current = t;
    t->state = TASK_RUNNING;
    t->cancel = NULL;
    int outer = s->lua_depth++ == 0;
    sy_server *prev = NULL;
    if (outer) {
        prev = sy_lua_budget_enter_at(s, co, t->used, &t->slice);
    } else {
        sy_lua_budget_hook(co);
    }
    lua_State *prev_thread = sy_lua_budget_thread(co);
    int nres = 0;
    int st = lua_resume(co, s->L, nargs, &nres);
    sy_lua_budget_thread(prev_thread);
    if (outer && st == LUA_YIELD)
        t->used += sy_lua_mono_now() - t->slice;
    if (--s->lua_depth == 0)
        sy_lua_budget_leave(s, co, prev);
    current = prev_task;
    int rc;
    if (st == LUA_YIELD && t->state == TASK_WAITING && !t->cancelled) {
        lua_pop(co, nres);
        rc = 1;
    } else if (st == LUA_YIELD) {
        lua_pop(co, nres);
        if (t->state != TASK_WAITING) {
            /* coroutine.yield straight from the hook: nothing would ever resume it. */
            lua_pushliteral(co, "a hook cannot yield (coroutine.yield outside a coroutine of "
                                "the app's own); only waiting calls such as sy.sleep suspend it");
            log_failure(t, LUA_ERRRUN);
            lua_pop(co, 1);
            if (t->fail)
                t->fail(t);
            rc = SY_ELUA;
        } else {
            rc = SY_LUA_CANCELLED; /* its owner went away while it ran: nothing after its
                                      wait runs */
            if (t->cancel)
                t->cancel(t->cancel_ud);
            t->cancel = NULL;
        }
        close_coroutine(t, NULL);
        task_put(t);
    } else if (st == LUA_OK) {
        /* Its results, and what a caller kept below its function (sy_lua_ws_messages keeps a
         * message's handle and text there): the function and arguments are gone. A kept
         * task keeps its owner's values and stays out of the free list. */
        task_pool *p = s->lua_tasks;
        if (p->kept == t) {
            lua_settop(co, p->kept_top);
            task_clear(t);
        } else {
            lua_settop(co, 0);
            task_put(t);
        }
        rc = 0;
    } else {
        const void *err = lua_topointer(co, -1);
        log_failure(t, st);
        if (t->fail)
            t->fail(t);
        close_coroutine(t, err);
        task_put_after(t, 1);
        rc = SY_ELUA;
    }
    if (c)
        sy_conn_unref(c);
    return rc;
}

int sy_lua_task_run(sy_lua_task *t, int nargs)
{
    return resume(t, nargs);
}

int sy_lua_task_waiting(const sy_lua_task *t)
{
    return t->state == TASK_WAITING;
}

lua_State *sy_lua_wake_thread(sy_lua_task *t)
{
    return t->co;
}

void sy_lua_wake(sy_lua_task *t, int nresults)
{
    void (*done)(void *, int) = t->done; /* t goes back to the pool when it ends */
    void *owner = t->owner;
    int rc = resume(t, nresults);
    if (rc != 1 && done)
        done(owner, rc);
}

void sy_lua_task_cancel(sy_lua_task *t)
{
    if (t->state == TASK_RUNNING) {
        t->cancelled = 1;
        return;
    }
    if (t->state != TASK_WAITING)
        return;
    if (t->cancel)
        t->cancel(t->cancel_ud);
    t->cancel = NULL;
    void (*done)(void *, int) = t->done;
    void *owner = t->owner;
    close_coroutine(t, NULL);
    task_put(t);
    if (done)
        done(owner, SY_LUA_CANCELLED);
}

sy_lua_task *sy_lua_wait_begin(lua_State *L, const char *what)
{
    sy_lua_task *t = current;
    if (!t || sy_lua_state_server(L) != t->s)
        luaL_error(L,
                   "%s can only wait inside a hook, handler or timer callback (not while "
                   "the app loads, nor in a host call)",
                   what);
    if (t->co != L)
        luaL_error(L,
                   "%s cannot wait inside a coroutine of the app's own: call it from the "
                   "hook's own code (an app's coroutine may yield to the hook, which then "
                   "waits)",
                   what);
    if (t->state == TASK_CLOSING)
        luaL_error(L, "%s cannot wait while the hook is being closed (its client left)", what);
    if (!lua_isyieldable(L))
        luaL_error(L,
                   "%s cannot wait here: a C function that cannot be suspended (such as "
                   "table.sort or string.gsub with a function) is between the hook and "
                   "this call",
                   what);
    return t;
}

int sy_lua_wait(lua_State *L, sy_lua_task *t, sy_lua_wait_cancel_cb cancel, void *ud)
{
    t->cancel = cancel;
    t->cancel_ud = ud;
    t->state = TASK_WAITING;
    return lua_yield(L, 0);
}

/* ---- sy.sleep ------------------------------------------------------------------------------ */

static void on_sleep(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    sy_lua_task *t = sy_container_of(w, sy_lua_task, sleep);
    sy_lua_wake(t, 0);
}

static void sleep_cancel(void *ud)
{
    sy_lua_task *t = ud;
    ev_timer_stop(t->s->env.loop, &t->sleep);
}

/* sy.sleep(seconds): the hook waits that long (0: until the loop has served what is ready);
 * the loop serves everyone else meanwhile. */
int sy_lua_sleep(lua_State *L)
{
    lua_Number secs = luaL_checknumber(L, 1);
    luaL_argcheck(L, secs >= 0 && secs < 1e9, 1, "seconds must be >= 0");
    sy_lua_task *t = sy_lua_wait_begin(L, "sy.sleep");
    ev_timer_init(&t->sleep, on_sleep, secs, 0.);
    ev_timer_start(t->s->env.loop, &t->sleep);
    return sy_lua_wait(L, t, sleep_cancel, t);
}

/* ---- the app's own coroutines -------------------------------------------------------------
 *
 * coroutine.resume and coroutine.wrap are replaced so the time budget knows which Lua thread
 * runs (lua_budget.c), and so the coroutine of a waiting hook can be neither resumed nor
 * closed by the app: only the core wakes it. */

static int is_task_thread(lua_State *L, int idx)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &threads_key);
    lua_pushvalue(L, idx);
    int yes = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    return yes;
}

/* Resumes co with the narg values at the top of L. Returns the number of results moved to L,
 * or -1 with the error value at the top of L. */
static int resume_own(lua_State *L, lua_State *co, int narg)
{
    if (!lua_checkstack(co, narg)) {
        lua_pushliteral(L, "too many arguments to resume");
        return -1;
    }
    lua_xmove(L, co, narg);
    lua_State *prev = sy_lua_budget_thread(co);
    int nres = 0;
    int st = lua_resume(co, L, narg, &nres);
    sy_lua_budget_thread(prev);
    if (st != LUA_OK && st != LUA_YIELD) {
        lua_xmove(co, L, 1);
        return -1;
    }
    if (!lua_checkstack(L, nres + 1)) {
        lua_pop(co, nres);
        lua_pushliteral(L, "too many results to resume");
        return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
}

static int co_resume(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    if (is_task_thread(L, 1)) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "cannot resume the coroutine of a hook: the core wakes it");
        return 2;
    }
    int n = resume_own(L, co, lua_gettop(L) - 1);
    if (n < 0) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_insert(L, -(n + 1));
    return n + 1;
}

static int co_wrapped(lua_State *L)
{
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    int n = resume_own(L, co, lua_gettop(L));
    if (n >= 0)
        return n;
    int st = lua_status(co);
    if (st != LUA_OK && st != LUA_YIELD) { /* an error in it: it is dead, close it */
        close_thread(co, L);
        lua_settop(co, 0);
    }
    if (lua_type(L, -1) == LUA_TSTRING) { /* where the wrapped function was called */
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
    }
    return lua_error(L);
}

static int co_wrap(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, co_wrapped, 1);
    return 1;
}

/* coroutine.close, refusing a hook's coroutine (upvalue 1: the original). */
static int co_close(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TTHREAD && is_task_thread(L, 1))
        return luaL_error(L, "cannot close the coroutine of a hook: it ends when the hook does");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

int sy_lua_tasks_install(lua_State *L)
{
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &threads_key);
    lua_getglobal(L, "coroutine");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushcfunction(L, co_resume);
    lua_setfield(L, -2, "resume");
    lua_pushcfunction(L, co_wrap);
    lua_setfield(L, -2, "wrap");
    lua_getfield(L, -1, "close");
    lua_pushcclosure(L, co_close, 1);
    lua_setfield(L, -2, "close");
    lua_pop(L, 1);
    return 0;
}

/* Within one call from the core that runs several handlers in turn (a batch of messages):
 * the next one gets a whole time budget of its own. */
void sy_lua_budget_restart(lua_State *L)
{
    sy_server *s = sy_lua_state_server(L);
    if (s && s->lua_depth == 1) {
        double now = sy_lua_budget_arm(s, 0);
        if (current) {
            current->used = 0;
            current->slice = now;
        }
    }
}
