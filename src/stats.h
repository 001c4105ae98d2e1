/* The core's counters: plain numbers that connections, protocols and the app layer bump through
 * their env (env->stats) and the metrics page (metrics.c) reads. No allocation, no clock, no
 * dependencies; valid when zeroed. Label sets chosen by clients (upgrade tokens, close codes)
 * are bounded: the known values plus the first SY_STATS_SEEN distinct others get their own
 * entry, the rest share "other". */
#ifndef SY_STATS_H
#define SY_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Protocols a connection speaks (label "protocol"); TLS counts beside the one above it. */
enum { SY_SP_HTTP1, SY_SP_H2, SY_SP_WS, SY_SP_RAW, SY_SP_TLS, SY_SP_COUNT };
/* Outcomes of an upgrade decision (label "outcome"). */
enum { SY_SO_ACCEPT, SY_SO_IGNORE, SY_SO_UPGRADE_REQUIRED, SY_SO_REJECT, SY_SO_ERROR, SY_SO_COUNT };

#define SY_STATS_SEEN 32      /* distinct client-chosen labels kept besides the known ones */
#define SY_STATS_TOKEN_MAX 32 /* bytes of a token kept as its label */
#define SY_STATS_TOKENS (3 + SY_STATS_SEEN + 1) /* websocket, h2c, tls, seen, other */
#define SY_STATS_CODES (16 + SY_STATS_SEEN + 1) /* 1000..1015, seen, other */

typedef struct sy_stats_token {
    char name[SY_STATS_TOKEN_MAX + 1]; /* lower case; "" while the slot is free */
    uint64_t n[SY_SO_COUNT];
} sy_stats_token;

typedef struct sy_stats_code {
    int code; /* -1: "other" */
    uint64_t sent, received;
} sy_stats_code;

typedef struct sy_stats {
    uint64_t conns_total[SY_SP_COUNT];
    int64_t conns_open[SY_SP_COUNT];
    uint64_t responses[2][5]; /* [http1, h2][1xx .. 5xx] */
    uint64_t h2_streams;
    uint64_t tls_handshakes, tls_failures;
    uint64_t ws_msgs_in, ws_msgs_out, ws_bytes_in, ws_bytes_out;
    uint64_t lua_errors, lua_time_hits, lua_memory_hits;
    uint64_t publishes;
    int64_t topics, subscriptions;
    uint64_t decision_errors; /* answers of sy_decision_error (how an accept that failed is
                                 told from one that switched) */
    sy_stats_token tokens[SY_STATS_TOKENS];
    int ntokens;
    sy_stats_code codes[SY_STATS_CODES];
    int ncodes;
} sy_stats;

/* The index of a protocol name ("http1", "h2", "websocket", "raw"); -1 for another. */
static inline int sy_stats_proto(const char *name)
{
    if (!name)
        return -1;
    switch (name[0]) {
    case 'h': return name[1] == '2' ? SY_SP_H2 : name[1] == 't' ? SY_SP_HTTP1 : -1;
    case 'w': return SY_SP_WS;
    case 'r': return SY_SP_RAW;
    default: return -1;
    }
}

static inline void sy_stats_conn_open(sy_stats *s, int proto)
{
    if (proto >= 0) {
        s->conns_total[proto]++;
        s->conns_open[proto]++;
    }
}

static inline void sy_stats_conn_gone(sy_stats *s, int proto)
{
    if (proto >= 0)
        s->conns_open[proto]--;
}

/* A response with status (100..599; others are not counted) on HTTP/1.1 (h2 0) or HTTP/2. */
static inline void sy_stats_response(sy_stats *s, int h2, int status)
{
    if (status >= 100 && status < 600)
        s->responses[h2 ? 1 : 0][status / 100 - 1]++;
}

/* The entry of an upgrade token (name as offered, n bytes; compared case-insensitively). */
sy_stats_token *sy_stats_token_of(sy_stats *s, const char *name, size_t n);

static inline void sy_stats_upgrade(sy_stats *s, const char *name, size_t n, int outcome)
{
    sy_stats_token *t = sy_stats_token_of(s, name, n);
    t->n[outcome]++;
}

/* The core's own 400 or 426 for an upgrade request: a bad Upgrade list (malformed 1, counted
 * under "other") or a lone websocket offer it refused. */
static inline void sy_stats_refused(sy_stats *s, int malformed, int status)
{
    sy_stats_upgrade(s, "websocket", malformed ? 0 : 9,
                     status == 426 ? SY_SO_UPGRADE_REQUIRED : SY_SO_REJECT);
}

/* A WebSocket close code sent (sent 1) or received; 0 or 1005 for a close frame without one
 * (both count as 1005, RFC 6455 7.1.5). */
void sy_stats_close_code(sy_stats *s, int code, int sent);

static inline void sy_stats_ws_out(sy_stats *s, size_t bytes)
{
    s->ws_msgs_out++;
    s->ws_bytes_out += bytes;
}

static inline void sy_stats_ws_in(sy_stats *s, size_t bytes)
{
    s->ws_msgs_in++;
    s->ws_bytes_in += bytes;
}

#endif
