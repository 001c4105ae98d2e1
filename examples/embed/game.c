/* A game host embedding switchyard: a fixed 20 Hz tick on the host's own libev loop moves
 * players by their input; every tick a snapshot goes to every player from C.
 *
 * Players connect with a WebSocket to /game. The Lua app (app.lua) accepts them and turns text
 * input ("move DX DY") into calls of game.input, a C function registered here; binary input
 * (two signed bytes DX, DY) is handled in C by the WebSocket callbacks, without Lua. Players
 * join and leave through the same callbacks (on_open, on_close), keyed by connection id.
 *
 * The tick runs on an ev_timer of the server's loop; with --host-loop the host keeps its own
 * loop instead (a plain sleep to the next tick, as a host that does not use libev would) and
 * gives the server its turn with ev_run(loop, EVRUN_NOWAIT) every few milliseconds.
 *
 * Usage: game [--listen HOST:PORT] [--lua-max-time SECONDS] [--seconds N] [--host-loop] APP.lua
 * Prints "listening on http://HOST:PORT" once it serves. Snapshots are JSON text:
 *   {"tick":N,"t":SECONDS,"players":[{"id":ID,"x":X,"y":Y},...]}
 * with t the host's monotonic clock at the tick. */
#define _POSIX_C_SOURCE 200809L
#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "switchyard.h"

#define TICK 0.05 /* 20 Hz */
#define MAX_PLAYERS 64
#define WORLD 1000

typedef struct player {
    sy_conn_id id; /* 0: free slot */
    int x, y;      /* position, authoritative */
    int dx, dy;    /* last input: the step per tick, -5..5 each */
} player;

typedef struct game {
    sy_server *server;
    struct ev_loop *loop;
    player players[MAX_PLAYERS];
    int nplayers;
    unsigned long tick;
    ev_timer tick_timer;
    ev_timer end_timer;
    ev_signal sigint, sigterm;
    int stopped;
} game;

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int clamp(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Input from either path: the connection's user data is its player. */
static void player_input(game *g, sy_conn_id id, int dx, int dy)
{
    player *p = sy_server_conn_user_data(g->server, id);
    if (!p)
        return;
    p->dx = clamp(dx, -5, 5);
    p->dy = clamp(dy, -5, 5);
}

/* ---- the WebSocket callbacks: join, binary input, leave ---------------------------------- */

static void on_open(sy_server *s, sy_conn_id id, void *ud)
{
    game *g = ud;
    for (int i = 0; i < MAX_PLAYERS; i++) {
        player *p = &g->players[i];
        if (p->id)
            continue;
        *p = (player){.id = id, .x = WORLD / 2, .y = WORLD / 2};
        sy_server_conn_set_user_data(s, id, p);
        g->nplayers++;
        printf("join %llu (%d players)\n", (unsigned long long)id, g->nplayers);
        fflush(stdout);
        return;
    }
    sy_server_close_conn(s, id, 4001, "game full");
}

static int on_message(sy_server *s, sy_conn_id id, const char *data, size_t len, int binary,
                      void *ud)
{
    (void)s;
    if (!binary)
        return 0; /* text input is the Lua app's */
    if (len == 2)
        player_input(ud, id, (signed char)data[0], (signed char)data[1]);
    return 1;
}

static void on_close(sy_server *s, sy_conn_id id, int code, const char *reason, size_t rlen,
                     void *ud)
{
    (void)reason, (void)rlen;
    game *g = ud;
    player *p = sy_server_conn_user_data(s, id);
    if (!p)
        return;
    p->id = 0;
    g->nplayers--;
    printf("leave %llu code %d (%d players)\n", (unsigned long long)id, code, g->nplayers);
    fflush(stdout);
}

/* game.input(id, dx, dy): called by app.lua's message handler. */
static int lua_game_input(lua_State *L)
{
    game *g = lua_touserdata(L, lua_upvalueindex(1));
    lua_Integer id = luaL_checkinteger(L, 1);
    player_input(g, (sy_conn_id)id, (int)luaL_checkinteger(L, 2), (int)luaL_checkinteger(L, 3));
    return 0;
}

/* ---- the tick ------------------------------------------------------------------------------ */

static void tick(game *g)
{
    g->tick++;
    char snap[128 + MAX_PLAYERS * 64];
    size_t n = (size_t)snprintf(snap, sizeof snap, "{\"tick\":%lu,\"t\":%.6f,\"players\":[",
                                g->tick, mono_now());
    int first = 1;
    for (int i = 0; i < MAX_PLAYERS; i++) {
        player *p = &g->players[i];
        if (!p->id)
            continue;
        p->x = clamp(p->x + p->dx, 0, WORLD);
        p->y = clamp(p->y + p->dy, 0, WORLD);
        n += (size_t)snprintf(snap + n, sizeof snap - n, "%s{\"id\":%llu,\"x\":%d,\"y\":%d}",
                              first ? "" : ",", (unsigned long long)p->id, p->x, p->y);
        first = 0;
    }
    n += (size_t)snprintf(snap + n, sizeof snap - n, "]}");
    sy_server_publish(g->server, "game", snap, n, 0);
    if (g->tick % 20 == 0) {
        sy_lua_arg args[] = {SY_LUA_NUM(g->tick), SY_LUA_NUM(g->nplayers)};
        if (sy_server_call_lua(g->server, "second", args, 2) != 0)
            fprintf(stderr, "game: app.second: %s\n", sy_server_error(g->server));
    }
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    tick(w->data);
}

/* The host's own loop: the tick by the host's clock, the server's turn in between. */
static void host_loop(game *g)
{
    double next = mono_now() + TICK;
    while (!g->stopped) {
        ev_run(g->loop, EVRUN_NOWAIT); /* accepts, reads, writes, timers: whatever is ready */
        double now = mono_now();
        if (now >= next) {
            tick(g);
            next += TICK;
            if (next < now) /* late (a long turn): skip the missed ticks rather than burst */
                next = now + TICK;
            continue;
        }
        double wait = next - now < 0.002 ? next - now : 0.002;
        struct timespec ts = {0, (long)(wait * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* ---- start and stop ------------------------------------------------------------------------ */

static void on_stopped(sy_server *s, void *ud)
{
    (void)s;
    game *g = ud;
    g->stopped = 1;
    ev_break(g->loop, EVBREAK_ALL);
}

static void stop(game *g)
{
    ev_timer_stop(g->loop, &g->tick_timer);
    ev_timer_stop(g->loop, &g->end_timer);
    ev_signal_stop(g->loop, &g->sigint);
    ev_signal_stop(g->loop, &g->sigterm);
    sy_server_shutdown(g->server, 2.0, on_stopped, g);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop, (void)revents;
    stop(w->data);
}

static void on_end(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    stop(w->data);
}

static void log_line(int level, const char *msg, void *ud)
{
    (void)ud;
    fprintf(stderr, "game [%s] %s\n", sy_log_level_name(level), msg);
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:8080", *app = NULL;
    double max_time = -1, seconds = 0;
    int own_loop = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
            listen = argv[++i];
        else if (strcmp(argv[i], "--lua-max-time") == 0 && i + 1 < argc)
            max_time = atof(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--host-loop") == 0)
            own_loop = 1;
        else if (argv[i][0] != '-' && !app)
            app = argv[i];
        else
            app = NULL, i = argc;
    }
    char host[64];
    int port;
    if (!app || sscanf(listen, "%63[^:]:%d", host, &port) != 2) {
        fprintf(stderr, "usage: game [--listen HOST:PORT] [--lua-max-time S] [--seconds N] "
                        "APP.lua\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sy_set_log(log_line, NULL);

    static game g;
    g.loop = ev_default_loop(0);
    g.server = sy_server_new(g.loop);
    if (!g.server)
        return 1;
    sy_server *s = g.server;
    sy_server_set_user_data(s, &g);
    if (max_time >= 0 && sy_server_set_lua_max_time(s, max_time) != 0) {
        fprintf(stderr, "game: %s\n", sy_server_error(s));
        return 2;
    }
    /* The Lua app reaches the game through this table (C functions with the game as upvalue). */
    lua_State *L = sy_server_lua(s);
    lua_newtable(L);
    lua_pushlightuserdata(L, &g);
    lua_pushcclosure(L, lua_game_input, 1);
    lua_setfield(L, -2, "input");
    lua_setglobal(L, "game");

    sy_ws_handler h = {on_open, on_message, on_close};
    sy_server_set_ws_handler(s, &h, &g);
    if (sy_server_load_app(s, app) != 0 || sy_server_listen(s, host, port, 0) != 0 ||
        sy_server_start(s) != 0) {
        fprintf(stderr, "game: %s\n", sy_server_error(s));
        sy_server_free(s);
        return 1;
    }
    char url[128];
    sy_server_listener_url(s, 0, url, sizeof url);
    printf("listening on %s (Lua max time %.3f s)\n", url, sy_server_lua_max_time(s));
    fflush(stdout);

    ev_timer_init(&g.tick_timer, on_tick, TICK, TICK);
    g.tick_timer.data = &g;
    if (!own_loop)
        ev_timer_start(g.loop, &g.tick_timer);
    ev_signal_init(&g.sigint, on_signal, SIGINT);
    ev_signal_init(&g.sigterm, on_signal, SIGTERM);
    g.sigint.data = g.sigterm.data = &g;
    ev_signal_start(g.loop, &g.sigint);
    ev_signal_start(g.loop, &g.sigterm);
    if (seconds > 0) {
        ev_timer_init(&g.end_timer, on_end, seconds, 0);
        g.end_timer.data = &g;
        ev_timer_start(g.loop, &g.end_timer);
    }
    if (own_loop)
        host_loop(&g);
    else
        ev_run(g.loop, 0);
    printf("stopped after %lu ticks\n", g.tick);
    sy_server_free(s);
    return 0;
}
