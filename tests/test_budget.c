/* The Lua time budget (app.lua.max_time): an endless loop is stopped in the main thread, in a
 * coroutine and under pcall; normal calls run with no debug hook (the budget's timer and
 * signal set one only for a late call); a server on another thread gets a timer of its own,
 * deleted when the thread ends or its last server is freed; and a host that handles the
 * budget's signal itself keeps its handler while loops are still stopped (the hook stays on
 * instead), as with SWITCHYARD_LUA_BUDGET=hook. */
#include "lua_int.h"
#include "switchyard.h"
#include "test.h"

#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include <lauxlib.h>

static const char *app_path;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs chunk as a call from the core; returns its result code and sets *took. */
static int run(lua_State *L, const char *chunk, double *took)
{
    if (luaL_loadstring(L, chunk) != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        exit(2);
    }
    double t0 = now();
    int rc = sy_lua_call(L, 0, 1, "test");
    *took = now() - t0;
    return rc;
}

/* POSIX timers of this process (/proc/self/timers), or -1 where the kernel does not list them. */
static int timer_count(void)
{
    FILE *f = fopen("/proc/self/timers", "r");
    if (!f)
        return -1;
    int n = 0;
    char line[256];
    while (fgets(line, sizeof line, f))
        n += strncmp(line, "ID:", 3) == 0;
    fclose(f);
    return n;
}

/* Loops stopped within a bound of max_time (0.2 s); hooked: whether a normal call runs with
 * the count hook on. */
static void check_server(int hooked)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = sy_server_new(loop);
    CHECK(s != NULL);
    CHECK_MSG(sy_server_load_app(s, app_path) == 0, "%s", sy_server_error(s));
    lua_State *L = sy_server_lua(s);
    double took;

    CHECK(run(L, "return debug.gethook() ~= nil", &took) == 0);
    CHECK_MSG(lua_toboolean(L, -1) == hooked, "hook during a normal call: %d, want %d",
              lua_toboolean(L, -1), hooked);
    lua_pop(L, 1);

    static const char *const loops[] = {
        "while true do end",
        "coroutine.wrap(function() while true do end end)()",
        "local co = coroutine.create(function() while true do end end) "
        "local ok, e = coroutine.resume(co) error(e, 0)",
        "while true do pcall(function() while true do end end) end",
    };
    for (size_t i = 0; i < sizeof loops / sizeof *loops; i++) {
        CHECK_MSG(run(L, loops[i], &took) == SY_ELUA, "loop %zu not stopped", i);
        CHECK_MSG(took >= 0.19 && took < 1.5, "loop %zu stopped after %.3f s", i, took);
        /* The next call is not hit by the hook that stopped the loop. */
        if (run(L, "local x = 0 for i = 1, 1e4 do x = x + i end return x", &took) == 0) {
            CHECK(lua_tointeger(L, -1) == 50005000);
            lua_pop(L, 1);
        } else {
            CHECK_MSG(0, "the call after loop %zu failed", i);
        }
    }
    CHECK(run(L, "return debug.gethook() ~= nil", &took) == 0);
    CHECK(lua_toboolean(L, -1) == hooked);
    lua_pop(L, 1);
    /* A coroutine made by the wrapped create still works as one. */
    CHECK(run(L,
              "local co = coroutine.create(function(a, b) local c = coroutine.yield(a + b) "
              "return c * 2 end) local _, x = coroutine.resume(co, 1, 2) "
              "local _, y = coroutine.resume(co, 10) return x * 100 + y",
              &took) == 0);
    CHECK(lua_tointeger(L, -1) == 320);
    lua_pop(L, 1);
    CHECK(run(L, "return select(2, pcall(coroutine.create, 42))", &took) == 0);
    CHECK(strstr(lua_tostring(L, -1), "function expected") != NULL); /* still a clear error */
    lua_pop(L, 1);
    sy_server_free(s);
    ev_loop_destroy(loop);
}

static void *server_thread(void *arg)
{
    check_server(*(int *)arg);
    return NULL;
}

static void host_handler(int sig)
{
    (void)sig;
}

int main(void)
{
    char path[] = "/tmp/sy_budget_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, "return { lua = { max_time = 0.2 } }\n", 36) != 36)
        return 2;
    close(fd);
    app_path = path;

    /* A host that handles the signal first, and SWITCHYARD_LUA_BUDGET=hook: each in a fresh
     * process, so the choice is made anew. */
    for (int child = 0; child < 2; child++) {
        pid_t pid = fork();
        if (pid == 0) {
            if (child == 0)
                signal(SIGVTALRM, host_handler);
            else
                setenv("SWITCHYARD_LUA_BUDGET", "hook", 1);
            check_server(1);
            struct sigaction sa;
            sigaction(SIGVTALRM, NULL, &sa);
            CHECK(child == 1 || sa.sa_handler == host_handler);
            int rc = t_summary(child == 0 ? "test_budget (host owns the signal)"
                                          : "test_budget (SWITCHYARD_LUA_BUDGET=hook)");
            fflush(stdout);
            _exit(rc);
        }
        int status = 0;
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0);
    }

    /* Under valgrind the budget keeps its hook (see lua_mod.c). */
    const char *preload = getenv("LD_PRELOAD"), *choice = getenv("SWITCHYARD_LUA_BUDGET");
    int vg = preload && strstr(preload, "vgpreload") && !(choice && !strcmp(choice, "signal"));
    int before = timer_count();
    check_server(vg);
    int main_timers = timer_count();
    CHECK(before < 0 || main_timers == before); /* freed with the thread's last server */

    pthread_t t;
    CHECK(pthread_create(&t, NULL, server_thread, &vg) == 0);
    pthread_join(t, NULL);
    CHECK(main_timers < 0 || timer_count() == main_timers); /* the thread's went with it */

    unlink(path);
    return t_summary("test_budget");
}
