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

typedef struct sy_config {
    size_t max_head;           /* 16 KiB */
    size_t max_headers;        /* 100 */
    size_t max_body;           /* 1 MiB */
    double header_timeout;     /* 10 s: from a request's first byte to its complete head */
    double idle_timeout;       /* 60 s: keep-alive idle */
    size_t high_water;         /* 1 MiB of queued output */
    size_t max_buffered_total; /* 256 MiB: request bodies and partial WebSocket messages held
                                  by the whole server at once (0: no limit) */
    double body_timeout;       /* 60 s: a request body that makes no progress for this long */
    double send_timeout;       /* 60 s: queued output that makes no progress closes; 0: none */
} sy_config;

/* One entry of the connection id table: an id is (gen << 32) | (index + 1). */
typedef struct sy_conn_slot {
    sy_conn *conn; /* NULL while free */
    void *ud;      /* the host's (sy_server_conn_set_user_data) */
    uint32_t gen;  /* bumped when the slot is freed: old ids stop matching */
    uint32_t next_free;
} sy_conn_slot;

struct sy_server {
    struct ev_loop *loop; /* borrowed; outlives the server */
    sy_app app;           /* the application's callbacks (app.h): installed by the Lua
                             binding when sy_server_new opens its state */
    struct lua_State *L;  /* owned */
    sy_lua_limits lua;    /* app.lua */
    size_t lua_memory;    /* bytes the Lua state holds now */
    sy_pool pool;         /* small blocks of Lua and nghttp2; disposed last */
    double lua_deadline;  /* monotonic time the running call must end by; 0: none */
    int lua_depth;        /* nesting of calls from the core into Lua */
    sy_config cfg;
    size_t input_held;      /* bytes charged against cfg.max_buffered_total */
    sy_tls_ctx *tls_ctx;    /* owned; NULL until sy_server_set_tls */
    sy_listener *listeners; /* owned array */
    int nlisteners;
    sy_conn *conns; /* live connections (doubly linked) */
    size_t nconns;
    sy_conn *dead;                    /* closed, waiting for refs to drop and the chain to return */
    sy_conn *scheduled;               /* waiting for sy_conn_schedule's callback */
    ev_prepare reaper;                /* runs queued work before the loop blocks */
    ev_idle nudge;                    /* keeps the loop from blocking while work is queued */
    sy_http1_header *scratch_headers; /* owned; cfg.max_headers entries for the parser */
    int started;
    int stopping;
    ev_timer stop_timer;       /* the grace period */
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
    void *ws_pmd;  /* owned; the shared permessage-deflate streams, made on use */
    char date[40]; /* "Date: ...\r\n" cache */
    ev_tstamp date_at;
    void *user;                 /* the host's (sy_server_set_user_data) */
    sy_conn_slot *slots;        /* owned: connection ids (sy_server_conn_find) */
    uint32_t nslots, free_slot; /* free_slot: index + 1 of the first free one; 0: none */
    sy_ws_handler host_ws;      /* the host's WebSocket callbacks (sy_server_set_ws_handler) */
    void *host_ws_ud;
    int has_host_ws;
    char err[1024];
};

/* A server with its defaults and no app (s->app empty); sy_server_new adds the Lua app.
 * NULL when out of memory. */
struct sy_server *sy_server_create(struct ev_loop *loop);

/* Logs one line through the host's sy_set_log function (default: "[level] message" on
 * stderr). level is "fatal", "error", "warn", "info" or "debug" (another name: "error"). */
void sy_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Formats the error message of s (printf-style) and returns code. */
int sy_server_fail(struct sy_server *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "Date: <IMF-fixdate>\r\n", cached per second. Borrowed; valid until the next call. */
const char *sy_server_date(struct sy_server *s);

/* The server-wide budget for buffered input (cfg.max_buffered_total): HTTP/1.1 request
 * bodies, HTTP/2 stream bodies and partial WebSocket messages. Each holder keeps in *held the
 * bytes it has charged. sy_server_hold_input moves that charge to want bytes: a decrease
 * always succeeds, an increase only while the server's total stays within the budget. Returns
 * 0, or SY_ELIMIT with *held unchanged. sy_server_release_input gives the whole charge back
 * and zeroes *held, so a second call is harmless. */
int sy_server_hold_input(struct sy_server *s, size_t *held, size_t want);
static inline void sy_server_release_input(struct sy_server *s, size_t *held)
{
    if (*held)
        (void)sy_server_hold_input(s, held, 0);
}

/* The open connection with that id, or NULL. */
sy_conn *sy_server_conn_find(const struct sy_server *s, sy_conn_id id);

/* Connection bookkeeping used by conn.c. */
void sy_server_conn_added(struct sy_server *s, sy_conn *c);
void sy_server_conn_closed(struct sy_server *s, sy_conn *c);
void sy_server_kick(struct sy_server *s);

#endif
