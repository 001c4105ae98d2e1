/* What a connection and its protocol see of the server that owns them: the loop, the limits,
 * the small-block pool, the Date clock, the TLS context, the shared input budget, the app, and
 * hooks for the server's bookkeeping and its access log. Nothing else of the server is reachable
 * from conn.c or proto_*.c. The server embeds one and fills it in; a test can fill one in by hand.
 */
#ifndef SY_ENV_H
#define SY_ENV_H

#include <ev.h>

#include "http1.h"
#include "log.h"
#include "pool.h"
#include "stats.h"
#include "tls.h"

typedef struct sy_conn sy_conn;
typedef struct sy_env sy_env;
struct sy_app;

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

enum {
    SY_ACCESS_REQUEST = 1, /* an HTTP request answered (HTTP/1.1 or an HTTP/2 stream) */
    SY_ACCESS_UPGRADE,     /* an HTTP/1.1 request that app.upgrade decided, answered or switched */
    SY_ACCESS_CLOSE,       /* a WebSocket or raw stream closed */
};

/* One event for the access log (sy_env.access). Every pointer is borrowed for the call. */
typedef struct sy_access {
    int event;             /* SY_ACCESS_* */
    const sy_conn *conn;   /* the remote address and the connection id */
    int32_t stream;        /* the HTTP/2 stream; 0 otherwise */
    const char *proto;     /* "HTTP/1.1", "HTTP/1.0", "HTTP/2"; "websocket" or "raw" at a close */
    sy_str method, target; /* p NULL: unknown (the head could not be read) or a close */
    sy_str upgrade;        /* the request's Upgrade field; p NULL: none */
    const char *decision;  /* upgrade: "accept", "ignore", "426", "reject" or "error" */
    sy_str protocol;       /* accept: the protocol switched to, as the 101 names it */
    int status;            /* request, upgrade: the status answered */
    uint64_t bytes_out;    /* request: response body bytes; close: payload bytes sent */
    uint64_t bytes_in;     /* close: payload bytes received */
    uint64_t msgs_in, msgs_out;     /* close of a WebSocket: data messages */
    int close_sent, close_received; /* close of a WebSocket: the codes (1005: an empty close
                                       frame); 0: no close frame */
    ev_tstamp started;              /* when the request's first byte or the stream's switch came */
} sy_access;

/* What a WebSocket or raw stream counts for its line at close (zeroed; started set at the
 * switch). */
typedef struct sy_access_counts {
    uint64_t msgs_in, msgs_out;     /* WebSocket data messages */
    uint64_t bytes_in, bytes_out;   /* payload bytes (WebSocket: of data messages, inflated) */
    int close_sent, close_received; /* WebSocket close codes (1005: an empty close); 0: none */
    ev_tstamp started;
} sy_access_counts;

static inline void sy_access_count_in(sy_access_counts *k, size_t bytes)
{
    k->msgs_in++;
    k->bytes_in += bytes;
}

static inline void sy_access_count_out(sy_access_counts *k, size_t bytes)
{
    k->msgs_out++;
    k->bytes_out += bytes;
}

struct sy_env {
    struct ev_loop *loop; /* borrowed; outlives the env */
    sy_config cfg;
    sy_pool pool;                     /* small blocks of Lua and nghttp2; disposed last */
    sy_tls_ctx *tls_ctx;              /* borrowed from the server; NULL without a certificate */
    struct sy_app *app;               /* borrowed (app.h): what protocols hand requests and
                                         messages to */
    struct sy_app *metrics_app;       /* borrowed: what connections with metrics_app set
                                         (the metrics listener's) hand their requests to */
    int stopping;                     /* the server is stopping gracefully */
    size_t input_held;                /* bytes charged against cfg.max_buffered_total */
    sy_http1_header *scratch_headers; /* owned by the server; cfg.max_headers entries */
    void *ws_pmd;                     /* owned by proto_ws (sy_ws_env_dispose): shared
                                         permessage-deflate streams, made on use */
    sy_conn *scheduled;               /* waiting for sy_conn_schedule's callback */
    char date[40];                    /* "Date: ...\r\n" cache */
    ev_tstamp date_at;
    sy_stats stats; /* the counters of the metrics page (stats.h) */
    /* The owner's bookkeeping, called by conn.c: a connection was made / closed (its memory
     * may be released once its refs drop, from the loop); work was queued on scheduled. */
    void (*conn_added)(sy_env *e, sy_conn *c);
    void (*conn_closed)(sy_env *e, sy_conn *c);
    void (*kick)(sy_env *e);
    /* The owner's access log: NULL when it has none, so a protocol builds no record. */
    void (*access)(sy_env *e, const sy_access *a);
};

/* The access log's line at the close of a WebSocket or raw stream of c (proto "websocket" or
 * "raw") that counted into k; nothing when the owner keeps no access log. */
void sy_env_access_close(sy_conn *c, const char *proto, const sy_access_counts *k);

/* "Date: <IMF-fixdate>\r\n", cached per second. Borrowed; valid until the next call. */
const char *sy_env_date(sy_env *e);

/* The server-wide budget for buffered input (cfg.max_buffered_total): HTTP/1.1 request
 * bodies, HTTP/2 stream bodies and partial WebSocket messages. Each holder keeps in *held the
 * bytes it has charged. sy_env_hold_input moves that charge to want bytes: a decrease always
 * succeeds, an increase only while the total stays within the budget. Returns 0, or SY_ELIMIT
 * with *held unchanged. sy_env_release_input gives the whole charge back and zeroes *held, so a
 * second call is harmless. */
int sy_env_hold_input(sy_env *e, size_t *held, size_t want);
static inline void sy_env_release_input(sy_env *e, size_t *held)
{
    if (*held)
        (void)sy_env_hold_input(e, held, 0);
}

#endif
