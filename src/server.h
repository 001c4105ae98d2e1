/* The server: listeners, accept, connections list, deferred work, shutdown, configuration. */
#ifndef SY_SERVER_H
#define SY_SERVER_H

#include "app.h"
#include "conn.h"
#include "http1.h"
#include "pool.h"

typedef struct sy_listener {
    ev_io io;
    int fd; /* owned */
    char host[64];
    int port;                 /* the bound port (resolved when 0 was asked) */
    int tls;                  /* 1: TLS from the first byte (--tls-listen) */
    struct sy_server *server; /* borrowed */
} sy_listener;

typedef struct sy_lua_limits {
    double max_time;   /* seconds one call from the core may run (2 s; 0: no limit) */
    size_t max_memory; /* bytes the Lua state may hold (1 GiB; 0: no limit) */
    double load_time;  /* seconds loading the app file may run (10 s; 0: no limit) */
    int load_time_set; /* 1 after sy_server_set_load_timeout: SWITCHYARD_LOAD_TIMEOUT is not read */
    int max_time_set;  /* 1 after sy_server_set_lua_max_time: app.lua.max_time is not applied */
    int max_memory_set; /* same for sy_server_set_lua_max_memory and app.lua.max_memory */
} sy_lua_limits;

/* One entry of the connection id table: an id is (gen << 32) | (index + 1). 16 bytes: every
 * open connection holds one; the host's user data is in a table of its own (slot_ud). */
typedef struct sy_conn_slot {
    sy_conn *conn; /* NULL while free */
    uint32_t gen;  /* bumped when the slot is freed: old ids stop matching */
    uint32_t next_free;
} sy_conn_slot;

struct sy_server {
    sy_env env;              /* what its connections see (env.h): loop, limits, pool,
                                clock, TLS context (owned here), input budget, app */
    sy_app app;              /* the application's callbacks (app.h): installed by the Lua
                                binding when sy_server_new opens its state */
    struct lua_State *L;     /* owned */
    sy_lua_limits lua;       /* app.lua */
    size_t lua_memory;       /* bytes the Lua state holds now */
    double lua_deadline;     /* monotonic time the running call must end by; 0: none */
    double lua_deadline_hit; /* the last deadline that stopped a call (counted once) */
    int lua_depth;           /* nesting of calls from the core into Lua */
    void *lua_tasks;         /* owned by the Lua binding: its pool of coroutines */
    void *lua_ws_send;       /* the Lua binding's: ws:send's state, held by its Lua state */
    sy_listener *listeners;  /* owned array */
    int nlisteners;
    sy_conn *conns; /* live connections (doubly linked) */
    size_t nconns;
    sy_conn *dead;     /* closed, waiting for refs to drop and the chain to return */
    ev_prepare reaper; /* runs queued work before the loop blocks */
    ev_idle nudge;     /* keeps the loop from blocking while work is queued */
    int started;
    ev_timer stop_timer;       /* the grace period */
    int app_stopping;          /* the app's shutdown goes on: connections are told after it */
    ev_timer stop_done;        /* zero delay: calls stop_cb from the loop, after the close
                                  chain that ended the last connection has returned */
    ev_timer accept_pause;     /* accepting resumes when it fires (after EMFILE and the like) */
    ev_timer give_back;        /* while connections live: memory held after a spike goes back */
    int went_idle;             /* the last connection closed: give memory back once reaped */
    size_t pool_after_release; /* pool bytes after the last sy_pool_release_empty (or less) */
    size_t heap_free_low;      /* glibc's free heap bytes after the last trim (or less) */
    void (*stop_cb)(struct sy_server *, void *);
    void *stop_ud;
    const char *ws_validated; /* text message being handled by a ws handler (valid UTF-8) */
    size_t ws_validated_len;
    void *user;                 /* the host's (sy_server_set_user_data) */
    sy_conn_slot *slots;        /* owned: connection ids (sy_server_conn_find) */
    void **slot_ud;             /* owned: the host's user data by slot (nslots entries), made by
                                   the first sy_server_conn_set_user_data; NULL before */
    uint32_t nslots, free_slot; /* free_slot: index + 1 of the first free one; 0: none */
    sy_ws_handler host_ws;      /* the host's WebSocket callbacks (sy_server_set_ws_handler) */
    void *host_ws_ud;
    int has_host_ws;
    struct sy_topics *topics; /* owned (topics.c): links to other processes; NULL until used */
    struct sy_access_log *access_log; /* owned (access_log.c); NULL: no access log */
    struct sy_metrics *metrics;       /* owned (metrics.c): the app's counters; NULL until used */
    sy_listener metrics_listener;     /* fd -1 without sy_server_listen_metrics */
    sy_app metrics_app;               /* what its connections hand requests to (metrics.c) */
    double started_at;                /* seconds since the epoch (switchyard_start_time_seconds) */
    char err[1024];
};

/* A server with its defaults and no app (s->app empty); sy_server_new adds the Lua app.
 * NULL when out of memory. */
struct sy_server *sy_server_create(struct ev_loop *loop);

/* Formats the error message of s (printf-style) and returns code. */
int sy_server_fail(struct sy_server *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Installs the app of s (ops may be NULL for none). The previous one is not closed. */
void sy_server_set_app(struct sy_server *s, const sy_app_ops *ops, void *ud);

/* The open connection with that id, or NULL. */
sy_conn *sy_server_conn_find(const struct sy_server *s, sy_conn_id id);

/* The server that owns env (every env a connection sees is a server's). */
static inline struct sy_server *sy_server_of(const sy_env *env)
{
    return sy_container_of(env, struct sy_server, env);
}

#endif
