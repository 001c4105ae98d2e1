/* Hooks that wait: every hook, handler and timer callback runs as a task, a coroutine taken
 * from a per-server pool, and a waiting call (sy.sleep, a socket) suspends the task until C
 * wakes it. Internal to the Lua binding (lua_*.c).
 *
 * The life of a task:
 *   starter (lua_conn.c, lua_ws.c, lua_timer.c)       waiting call (sy.sleep, ...)
 *   t = sy_lua_task_get(s) ─ push fn, args on t->co
 *   sy_lua_task_run(t, nargs) ─► Lua runs ─────────► t = sy_lua_wait_begin(L, "sy.sleep")
 *                                                     start the C work (a timer, a socket)
 *        returns 1 (waiting) ◄─────────────────────── return sy_lua_wait(L, t, cancel, ud)
 *   ... the loop serves everyone else ...
 *                                    the C work ends: push results on sy_lua_wake_thread(t),
 *                                    sy_lua_wake(t, n): the waiting call returns them to Lua
 *   t->done(owner, status) when it ends ◄─ Lua runs to the end (or waits again)
 *
 * When the owner of a waiting task goes away (its client left), it calls sy_lua_task_cancel:
 * the waiting call's cancel callback runs first (free the C work; wake must not be called
 * after it), then the coroutine is closed as by coroutine.close (to-be-closed variables run;
 * nothing after the wait runs), then t->done(owner, SY_LUA_CANCELLED). A socket, say, keeps
 * its watcher and the task it woke in its own userdata; its cancel callback stops the watcher
 * and forgets the task, and its __close/__gc (the coroutine's stack let go of it) frees the
 * rest. A waiting call made while the task is being cancelled raises instead of waiting. */
#ifndef SY_LUA_TASK_H
#define SY_LUA_TASK_H

#include <ev.h>
#include <lua.h>

#include "server.h"

/* done's status for a task closed by sy_lua_task_cancel. */
#define SY_LUA_CANCELLED (-1000)

/* The waiting call's side: frees its C work (stops a timer, closes a socket). Runs once,
 * when the task is closed before sy_lua_wake was called; no Lua may run in it. */
typedef void (*sy_lua_wait_cancel_cb)(void *ud);

typedef struct sy_lua_task sy_lua_task;

/* The dispatch of one HTTP request (lua_conn.c), kept with its task so the hooks' Lua
 * continuations find it after a wait. */
typedef struct sy_lua_dispatch_rec {
    sy_conn *c;                     /* borrowed; the task is cancelled before it goes */
    const sy_http1_request *req;    /* borrowed until the task first waits; NULL after */
    sy_str body;                    /* same */
    const sy_upgrade_offer *offers; /* same */
    size_t n;
    int32_t stream;               /* HTTP/2 stream, or 0 for HTTP/1.1 */
    const char *stage;            /* what runs now, for the log line */
    void *res;                    /* the response handle (on the task's stack), or NULL */
    struct sy_stats_token *token; /* the counters of the first offer while app.upgrade runs */
} sy_lua_dispatch_rec;

struct sy_lua_task {
    lua_State *co;     /* the coroutine; anchored in the registry (ref) by the pool */
    sy_server *s;      /* borrowed */
    int ref;           /* registry anchor of co */
    int state;         /* TASK_* (lua_task.c) */
    int cancelled;     /* its owner went away while it ran: closed at its next wait */
    sy_lua_task *next; /* the pool's free list */

    /* Set by the starter before sy_lua_task_run; cleared when the task goes back. */
    const char *what;         /* log label ("websocket handler") */
    const char *name;         /* second label ("message"), or NULL */
    const char *const *stage; /* when not NULL, *stage replaces what (read at failure) */
    sy_conn *conn;            /* borrowed, or NULL: held by a ref while the task runs */
    void *owner;              /* the starter's */
    /* A task that waited and then ended (status 0 or SY_ELUA, logged already) or was
     * cancelled (SY_LUA_CANCELLED), with owner; t is back in the pool by then. Not called
     * for a task that ends inside sy_lua_task_run (its result says how). NULL: nothing. */
    void (*done)(void *owner, int status);
    /* The task failed (logged already): called before its coroutine is closed, while what
     * its stack holds is still alive. NULL: nothing. */
    void (*fail)(sy_lua_task *t);
    sy_lua_dispatch_rec dispatch; /* lua_conn.c's, for HTTP dispatch tasks */

    /* Set by the waiting call. */
    sy_lua_wait_cancel_cb cancel;
    void *cancel_ud;
    double used;    /* seconds of Lua running time in this run, before the current slice */
    double slice;   /* when the current slice started (monotonic) */
    ev_timer sleep; /* sy.sleep's timer */
};

/* A task from s's pool with an empty stack (when the pool is empty, an idle kept task gives
 * way before a coroutine is made), or NULL when out of memory (nothing to free). Never
 * raises. */
sy_lua_task *sy_lua_task_get(sy_server *s);
/* Pushes registry[key] (a light userdata key) on L, a thread of s's state. Returns 1 when it
 * was read from the integer ref that sy_lua_cache made for that key (an array slot instead
 * of hashing the key), else 0. sy_lua_cache makes it (two keys per server; may raise: out of
 * memory, so only inside a protected call). */
int sy_lua_push_cached(sy_server *s, lua_State *L, const void *key);
void sy_lua_cache(sy_server *s, lua_State *L, const void *key);

/* One task per server may be kept for an owner (a connection whose messages come one per
 * read): between runs its coroutine keeps the bottom values of its stack for that owner (its
 * handle, handler set and face), so the next run need not look them up again, and it stays
 * out of the free list. sy_lua_task_keep keeps t (from sy_lua_task_get, its stack holding
 * top values for owner below the function about to run), unless another kept task is running
 * or waiting; it replaces an idle one, which goes back to the pool. sy_lua_task_kept returns
 * the idle task kept for owner, or NULL; *again is 1 when its previous call was for the same
 * owner (a task is worth keeping for it). sy_lua_task_forget: owner goes away; the task kept
 * for it lets its values go (now, or when it ends if it runs). A kept task that fails, is
 * cancelled or is given back is kept no more. */
void sy_lua_task_keep(sy_lua_task *t, const void *owner, int top);
sy_lua_task *sy_lua_task_kept(sy_server *s, const void *owner, int *again);
void sy_lua_task_forget(sy_server *s, const void *owner);
/* Gives back a task from sy_lua_task_get that was not run (its stack is dropped). */
void sy_lua_task_put(sy_lua_task *t);

/* Runs the task whose function and nargs arguments are pushed on t->co. Returns 1 when it
 * waits (t->done follows later), 0 when it ran to its end, SY_ELUA when it failed (logged as
 * "what 'name': message + traceback", to-be-closed variables closed), SY_LUA_CANCELLED when
 * it was cancelled while it ran and then waited. Unless it waits, the task is back in the
 * pool. Never raises. */
int sy_lua_task_run(sy_lua_task *t, int nargs);

/* The owner of t goes away: a waiting task is closed now (see above) and t->done runs with
 * SY_LUA_CANCELLED; a running one is closed when it next waits. */
void sy_lua_task_cancel(sy_lua_task *t);

/* 1 while t waits (sy_lua_wait) and has not been woken or cancelled. */
int sy_lua_task_waiting(const sy_lua_task *t);

/* The task running the hook on this thread, or NULL. */
sy_lua_task *sy_lua_task_current(void);

/* For a waiting call (a lua_CFunction): the task L runs in, when L may wait here. Otherwise
 * raises an error naming what and the cause: outside a hook (while the app loads, a host
 * call), in a coroutine of the app's own, across a C call that cannot yield. */
sy_lua_task *sy_lua_wait_begin(lua_State *L, const char *what);

/* Suspends t (from sy_lua_wait_begin; its C work started) as the last step of the waiting
 * call: `return sy_lua_wait(L, t, cancel, ud);`. The values given to sy_lua_wake become the
 * call's results. cancel may be NULL when there is nothing to free. */
int sy_lua_wait(lua_State *L, sy_lua_task *t, sy_lua_wait_cancel_cb cancel, void *ud);

/* Waking: push the results on sy_lua_wake_thread(t) (lua_checkstack first for many), then
 * sy_lua_wake(t, n), which runs the task on at once. Only for a waiting task. */
lua_State *sy_lua_wake_thread(sy_lua_task *t);
void sy_lua_wake(sy_lua_task *t, int nresults);

/* Frees s's pool; waiting tasks are dropped without running Lua (their C work is cancelled).
 * Before lua_close. */
void sy_lua_tasks_free(sy_server *s);
/* A connection was upgraded (handle made): after a number of them, a young collection runs
 * once the loop is idle, so their request and decision objects do not outlive them. */
void sy_lua_upgraded(sy_server *s);

/* sy.sleep(seconds) */
int sy_lua_sleep(lua_State *L);

/* Replaces coroutine.resume, wrap and close (the budget tracks the running thread; a hook's
 * coroutine cannot be resumed or closed by the app). Returns 0. */
int sy_lua_tasks_install(lua_State *L);

#endif
