/* The time budget of calls from the core into Lua (app.lua.max_time). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua_int.h"

double sy_lua_mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the time budget (app.lua.max_time) -----------------------------------------------------
 *
 * A count hook stops a call that runs past its deadline, but while any count hook is set Lua
 * traps on every instruction (10-20% of the run time of Lua code). So the main thread runs
 * with no hook, and the hook is set only when a call is late: a timer on the thread's CPU
 * time sends BUDGET_SIGNAL to the thread every BUDGET_TICK of CPU it uses, and the handler
 * sets the hook (lua_sethook may be called from a signal handler) on the Lua thread that runs
 * now when the running call is past its deadline. A loop burns CPU, so it is caught within a
 * tick of its deadline; an idle thread gets no signal. Every switch of Lua thread (a hook's
 * task resumed, an app's coroutine resumed through coroutine.resume or wrap, which are
 * replaced here) updates which thread that is, so coroutines run without a hook. Where the timer
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
    lua_State *thread;  /* the Lua thread running now (a coroutine or a main thread), or NULL */
    volatile sig_atomic_t hooked; /* timed mode: a hook may have been set since the last leave */
    timer_t timer;
    int servers; /* servers whose Lua state was made on this thread */
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
    lua_State *L = bt.thread;
    if (s && L && s->lua_deadline > 0 && sy_lua_mono_now() > s->lua_deadline) {
        bt.hooked = 1;
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    }
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
void sy_lua_budget_server_gone(void)
{
    if (bt.servers > 0 && --bt.servers > 0)
        return;
    if (bt.mode == BUDGET_TIMED)
        timer_delete(bt.timer);
    bt.mode = BUDGET_UNSET;
}

/* The running call may take max_time from now, less what it used before (0: no deadline).
 * Returns now. */
double sy_lua_budget_arm(sy_server *s, double used)
{
    double now = sy_lua_mono_now();
    s->lua_deadline = s->lua.max_time > 0 ? now + s->lua.max_time - used : 0;
    return now;
}

lua_State *sy_lua_budget_thread(lua_State *L)
{
    lua_State *prev = bt.thread;
    bt.thread = L;
    return prev;
}

/* The outermost call from the core into s's state starts on this thread: its deadline, and
 * the hook where this thread needs one. Returns the server whose call it interrupts (nested
 * calls into another server's state), for sy_lua_budget_leave. */
sy_server *sy_lua_budget_enter(sy_server *s, lua_State *L)
{
    double now;
    return sy_lua_budget_enter_at(s, L, 0, &now);
}

sy_server *sy_lua_budget_enter_at(sy_server *s, lua_State *L, double used, double *now)
{
    sy_server *prev = bt.running;
    bt.running = s;
    if (bt.mode != BUDGET_TIMED) /* timed: no hook until the signal finds the call late */
        sy_lua_budget_hook(L);
    *now = sy_lua_budget_arm(s, used);
    return prev;
}

void sy_lua_budget_hook(lua_State *L)
{
    if (budget_hooked() && lua_gethook(L) != budget_hook)
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, LUA_BUDGET_COUNT);
}

void sy_lua_budget_leave(sy_server *s, lua_State *L, sy_server *prev)
{
    s->lua_deadline = 0;
    bt.running = prev;
    /* The signal handler sees the deadline gone from here on; it set bt.hooked before any hook
     * it set (the fence keeps the compiler from moving the stores above past the read). */
    atomic_signal_fence(memory_order_seq_cst);
    if (bt.mode == BUDGET_TIMED) {
        if (bt.hooked) {
            if (!prev) /* no call runs on this thread now: no signal sets a hook until the next */
                bt.hooked = 0;
            if (lua_gethook(L) == budget_hook)
                lua_sethook(L, NULL, 0, 0); /* set by a late call (or a late signal): off again */
        }
    } else if (lua_gethookcount(L) != LUA_BUDGET_COUNT) {
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, LUA_BUDGET_COUNT);
    }
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    sy_server *s = sy_lua_state_server(L);
    if (s && s->lua_deadline > 0 && sy_lua_mono_now() > s->lua_deadline) {
        /* From now on check at every instruction: an app that catches this error with pcall
         * gets it again at its next instruction, until the call unwinds to the core. */
        if (s->lua_deadline_hit != s->lua_deadline) {
            s->lua_deadline_hit = s->lua_deadline; /* counted once per call, not per re-raise */
            s->env.stats.lua_time_hits++;
        }
        bt.hooked = 1;
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
        luaL_error(L, "the hook ran longer than its time budget (%f s)", s->lua.max_time);
    }
    if (bt.mode == BUDGET_TIMED)
        lua_sethook(L, NULL, 0, 0); /* a signal that came late: nothing to stop */
    else if (lua_gethookcount(L) != LUA_BUDGET_COUNT)
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, LUA_BUDGET_COUNT); /* back to normal */
}

void sy_lua_budget_server_added(void)
{
    bt.servers++;
}
