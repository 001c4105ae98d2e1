/* The server: listeners, accept, connections list, deferred work, shutdown, configuration. */
#ifndef SY_SERVER_H
#define SY_SERVER_H

#include "conn.h"
#include "http1.h"
#include "pool.h"

typedef struct sy_listener {
    ev_io io;
    int fd;                  /* owned */
    char host[64];
    int port;                /* the bound port (resolved when 0 was asked) */
    int tls;                 /* 1: TLS from the first byte (--tls-listen) */
    struct sy_server *server; /* borrowed */
} sy_listener;

typedef struct sy_lua_limits {
    double max_time;   /* seconds one call from the core may run (2 s; 0: no limit) */
    size_t max_memory; /* bytes the Lua state may hold (1 GiB; 0: no limit) */
    double load_time;  /* seconds loading the app file may run (10 s; 0: no limit) */
    int load_time_set; /* 1 after sy_server_set_load_timeout: SWITCHYARD_LOAD_TIMEOUT is not read */
} sy_lua_limits;

typedef struct sy_config {
    size_t max_head;       /* 16 KiB */
    size_t max_headers;    /* 100 */
    size_t max_body;       /* 1 MiB */
    double header_timeout; /* 10 s: from a request's first byte to its complete head */
    double idle_timeout;   /* 60 s: keep-alive idle, and body progress */
    size_t high_water;     /* 1 MiB of queued output */
} sy_config;

struct sy_server {
    struct ev_loop *loop;       /* borrowed; outlives the server */
    struct lua_State *L;        /* owned */
    sy_lua_limits lua;          /* app.lua */
    size_t lua_memory;          /* bytes the Lua state holds now */
    sy_pool pool;               /* small blocks of Lua and nghttp2; disposed last */
    double lua_deadline;        /* monotonic time the running call must end by; 0: none */
    int lua_depth;              /* nesting of calls from the core into Lua */
    sy_config cfg;
    sy_tls_ctx *tls_ctx;        /* owned; NULL until sy_server_set_tls */
    sy_listener *listeners;     /* owned array */
    int nlisteners;
    sy_conn *conns;             /* live connections (doubly linked) */
    size_t nconns;
    sy_conn *dead;              /* closed, waiting for refs to drop and the chain to return */
    sy_conn *scheduled;         /* waiting for sy_conn_schedule's callback */
    ev_prepare reaper;          /* runs queued work before the loop blocks */
    ev_idle nudge;              /* keeps the loop from blocking while work is queued */
    sy_http1_header *scratch_headers; /* owned; cfg.max_headers entries for the parser */
    int started;
    int stopping;
    ev_timer stop_timer;
    ev_timer accept_pause;      /* accepting resumes when it fires (after EMFILE and the like) */
    void (*stop_cb)(struct sy_server *, void *);
    void *stop_ud;
    const char *ws_validated;   /* text message being handled by a ws handler (valid UTF-8) */
    size_t ws_validated_len;
    void *ws_pmd;               /* owned; the shared permessage-deflate streams, made on use */
    char date[40];              /* "Date: ...\r\n" cache */
    ev_tstamp date_at;
    char err[1024];
};

/* Logs one line on stderr: "[level] message". */
void sy_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Formats the error message of s (printf-style) and returns code. */
int sy_server_fail(struct sy_server *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "Date: <IMF-fixdate>\r\n", cached per second. Borrowed; valid until the next call. */
const char *sy_server_date(struct sy_server *s);

/* Connection bookkeeping used by conn.c. */
void sy_server_conn_added(struct sy_server *s, sy_conn *c);
void sy_server_conn_closed(struct sy_server *s, sy_conn *c);
void sy_server_kick(struct sy_server *s);

#endif
