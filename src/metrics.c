/* The metrics page in the Prometheus text format 0.0.4: see metrics.h. */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "decision.h"
#include "proto.h"
#include "server.h"
#include "topics.h"

/* ---- text ------------------------------------------------------------------------------- */

static int text_reserve(sy_text *t, size_t n)
{
    if (t->failed)
        return -1;
    if (t->len + n + 1 <= t->cap)
        return 0;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + n + 1)
        cap *= 2;
    char *p = sy_realloc(t->p, cap);
    if (!p) {
        t->failed = 1;
        return -1;
    }
    t->p = p;
    t->cap = cap;
    return 0;
}

void sy_text_add(sy_text *t, const char *p, size_t n)
{
    if (text_reserve(t, n) != 0)
        return;
    if (n)
        memcpy(t->p + t->len, p, n);
    t->len += n;
    t->p[t->len] = 0;
}

void sy_text_printf(sy_text *t, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        sy_text_add(t, small, (size_t)n);
        return;
    }
    if (text_reserve(t, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(t->p + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

void sy_text_dispose(sy_text *t)
{
    sy_free(t->p);
    memset(t, 0, sizeof *t);
}

int sy_metrics_valid_name(const char *name, size_t n, int label)
{
    if (n == 0 || n > SY_METRICS_NAME_MAX)
        return 0;
    if (label && n >= 2 && name[0] == '_' && name[1] == '_')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
                 (!label && ch == ':') || (i > 0 && ch >= '0' && ch <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

void sy_metrics_escape(sy_text *t, const char *v, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const char *esc = v[i] == '\\'   ? "\\\\"
                          : v[i] == '"'  ? "\\\""
                          : v[i] == '\n' ? "\\n"
                                         : NULL;
        if (!esc)
            continue;
        sy_text_add(t, v + run, i - run);
        sy_text_add(t, esc, 2);
        run = i + 1;
    }
    sy_text_add(t, v + run, n - run);
}

/* Help texts are escaped too (backslash and newline only, 0.0.4). */
static void help_line(sy_text *t, const char *name, const char *help, const char *type)
{
    sy_text_printf(t, "# HELP %s ", name);
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            sy_text_add(t, "\\\\", 2);
        else if (*p == '\n')
            sy_text_add(t, "\\n", 2);
        else
            sy_text_add(t, p, 1);
    }
    sy_text_printf(t, "\n# TYPE %s %s\n", name, type);
}

static void number(sy_text *t, double v)
{
    if (isnan(v))
        sy_text_add(t, "NaN", 3);
    else if (isinf(v))
        sy_text_add(t, v > 0 ? "+Inf" : "-Inf", 4);
    else if (v == floor(v) && fabs(v) < 1e15)
        sy_text_printf(t, "%.0f", v);
    else
        sy_text_printf(t, "%.17g", v);
}

/* ---- app metrics ------------------------------------------------------------------------ */

typedef struct series {
    char *labels; /* owned; rendered, NUL-terminated ("" for none) */
    double value;
} series;

typedef struct metric {
    char name[SY_METRICS_NAME_MAX + 1];
    char *help; /* owned */
    int type;
    series *s; /* owned array */
    int n;
} metric;

struct sy_metrics {
    metric *m; /* owned array of SY_METRICS_MAX, made on first use */
    int n;
};

static struct sy_metrics *registry(sy_server *s)
{
    if (!s->metrics) {
        struct sy_metrics *r = sy_calloc(1, sizeof *r);
        if (!r)
            return NULL;
        r->m = sy_calloc(SY_METRICS_MAX, sizeof *r->m);
        if (!r->m) {
            sy_free(r);
            return NULL;
        }
        s->metrics = r;
    }
    return s->metrics;
}

static char *copy_str(const char *p, size_t n)
{
    char *c = sy_malloc(n + 1);
    if (c) {
        memcpy(c, p, n);
        c[n] = 0;
    }
    return c;
}

int sy_metrics_declare(sy_server *s, const char *name, const char *help, int type, const char **why)
{
    size_t nl = strlen(name), hl = strlen(help);
    if (!sy_metrics_valid_name(name, nl, 0)) {
        *why = "a metric name must match [a-zA-Z_:][a-zA-Z0-9_:]* (at most 128 bytes)";
        return SY_EINVAL;
    }
    if (strncmp(name, "switchyard_", 11) == 0) {
        *why = "metric names starting with switchyard_ are the server's own";
        return SY_EINVAL;
    }
    if (hl > SY_METRICS_HELP_MAX) {
        *why = "a metric's help text is at most 1024 bytes";
        return SY_EINVAL;
    }
    struct sy_metrics *r = registry(s);
    if (!r)
        return SY_ENOMEM;
    char *h = copy_str(help, hl);
    if (!h)
        return SY_ENOMEM;
    for (int i = 0; i < r->n; i++) {
        if (strcmp(r->m[i].name, name) != 0)
            continue;
        if (r->m[i].type != type) {
            sy_free(h);
            *why = "a metric of that name exists with another type";
            return SY_EINVAL;
        }
        sy_free(r->m[i].help);
        r->m[i].help = h;
        return i;
    }
    if (r->n == SY_METRICS_MAX) {
        sy_free(h);
        *why = "too many metrics (at most 256)";
        return SY_EINVAL;
    }
    metric *m = &r->m[r->n];
    memcpy(m->name, name, nl + 1);
    m->help = h;
    m->type = type;
    return r->n++;
}

static series *find_series(metric *m, const char *labels, size_t len)
{
    for (int i = 0; i < m->n; i++)
        if (strlen(m->s[i].labels) == len && memcmp(m->s[i].labels, labels, len) == 0)
            return &m->s[i];
    return NULL;
}

int sy_metrics_update(sy_server *s, int id, const char *labels, size_t len, int set, double v,
                      const char **why)
{
    struct sy_metrics *r = s->metrics;
    if (!r || id < 0 || id >= r->n)
        return SY_EINVAL;
    metric *m = &r->m[id];
    if (m->type == SY_METRIC_COUNTER && (set || !(v >= 0))) {
        *why = "a counter only goes up (inc with n >= 0)";
        return SY_EINVAL;
    }
    series *e = find_series(m, labels, len);
    if (!e) {
        if (m->n == SY_METRICS_MAX_SERIES) {
            *why = "too many label sets for this metric (at most 100)";
            return SY_EINVAL;
        }
        if (!m->s && !(m->s = sy_calloc(SY_METRICS_MAX_SERIES, sizeof *m->s)))
            return SY_ENOMEM;
        char *l = copy_str(labels, len);
        if (!l)
            return SY_ENOMEM;
        e = &m->s[m->n++];
        e->labels = l;
        e->value = 0;
    }
    e->value = set ? v : e->value + v;
    return 0;
}

double sy_metrics_value(sy_server *s, int id, const char *labels, size_t len)
{
    struct sy_metrics *r = s->metrics;
    if (!r || id < 0 || id >= r->n)
        return 0;
    series *e = find_series(&r->m[id], labels, len);
    return e ? e->value : 0;
}

void sy_metrics_dispose(sy_server *s)
{
    struct sy_metrics *r = s->metrics;
    if (!r)
        return;
    for (int i = 0; i < r->n; i++) {
        for (int k = 0; k < r->m[i].n; k++)
            sy_free(r->m[i].s[k].labels);
        sy_free(r->m[i].s);
        sy_free(r->m[i].help);
    }
    sy_free(r->m);
    sy_free(r);
    s->metrics = NULL;
}

/* ---- the page ---------------------------------------------------------------------------- */

static const char *const proto_names[SY_SP_COUNT] = {"http1", "h2", "websocket", "raw", "tls"};
static const char *const outcome_names[SY_SO_COUNT] = {"accept", "ignore", "upgrade_required",
                                                       "reject", "error"};

static void family(sy_text *t, const char *name, const char *type, const char *help)
{
    char full[160];
    snprintf(full, sizeof full, "switchyard_%s", name);
    help_line(t, full, help, type);
}

static void sample_u(sy_text *t, const char *name, const char *labels, uint64_t v)
{
    sy_text_printf(t, "switchyard_%s%s%s%s %llu\n", name, labels ? "{" : "", labels ? labels : "",
                   labels ? "}" : "", (unsigned long long)v);
}

static void sample_i(sy_text *t, const char *name, const char *labels, int64_t v)
{
    sy_text_printf(t, "switchyard_%s%s%s%s %lld\n", name, labels ? "{" : "", labels ? labels : "",
                   labels ? "}" : "", (long long)v);
}

static void render_core(sy_server *s, sy_text *t)
{
    const sy_stats *st = &s->env.stats;
    char l[128];
    family(t, "build_info", "gauge", "The version of the server (always 1).");
    sy_text_printf(t, "switchyard_build_info{version=\"%s\"} 1\n", sy_version());
    family(t, "start_time_seconds", "gauge",
           "When this server (worker) started, in seconds since the Unix epoch.");
    sy_text_printf(t, "switchyard_start_time_seconds %.3f\n", s->started_at);

    family(t, "connections_open", "gauge",
           "Open connections by the protocol they speak now (tls: those under TLS).");
    for (int i = 0; i < SY_SP_COUNT; i++) {
        snprintf(l, sizeof l, "protocol=\"%s\"", proto_names[i]);
        sample_i(t, "connections_open", l, st->conns_open[i]);
    }
    family(t, "connections_total", "counter",
           "Connections by protocol; a connection counts once for each protocol it spoke.");
    for (int i = 0; i < SY_SP_COUNT; i++) {
        snprintf(l, sizeof l, "protocol=\"%s\"", proto_names[i]);
        sample_u(t, "connections_total", l, st->conns_total[i]);
    }

    family(t, "upgrades_total", "counter",
           "Upgrade decisions by token (the one accepted, else the client's first offer; "
           "bounded, see README) and outcome.");
    for (int i = 0; i < SY_STATS_TOKENS; i++) {
        const sy_stats_token *k = &st->tokens[i];
        uint64_t any = 0;
        for (int o = 0; o < SY_SO_COUNT; o++)
            any |= k->n[o];
        if (!any)
            continue;
        for (int o = 0; o < SY_SO_COUNT; o++) {
            sy_text_add(t, "switchyard_upgrades_total{token=\"", 33);
            sy_metrics_escape(t, k->name, strlen(k->name));
            sy_text_printf(t, "\",outcome=\"%s\"} %llu\n", outcome_names[o],
                           (unsigned long long)k->n[o]);
        }
    }

    family(t, "http_responses_total", "counter", "HTTP responses by protocol and status class.");
    for (int p = 0; p < 2; p++)
        for (int c = 0; c < 5; c++) {
            snprintf(l, sizeof l, "protocol=\"%s\",class=\"%dxx\"", p ? "h2" : "http1", c + 1);
            sample_u(t, "http_responses_total", l, st->responses[p][c]);
        }
    family(t, "http2_streams_total", "counter", "HTTP/2 request streams opened by clients.");
    sample_u(t, "http2_streams_total", NULL, st->h2_streams);

    family(t, "websocket_messages_total", "counter",
           "WebSocket data messages received (in) and sent (out).");
    sample_u(t, "websocket_messages_total", "direction=\"in\"", st->ws_msgs_in);
    sample_u(t, "websocket_messages_total", "direction=\"out\"", st->ws_msgs_out);
    family(t, "websocket_bytes_total", "counter",
           "Payload bytes of WebSocket data messages (uncompressed), in and out.");
    sample_u(t, "websocket_bytes_total", "direction=\"in\"", st->ws_bytes_in);
    sample_u(t, "websocket_bytes_total", "direction=\"out\"", st->ws_bytes_out);
    family(t, "websocket_closes_total", "counter",
           "WebSocket close frames by code (1005: none; bounded, see README), in and out.");
    for (int i = 0; i < SY_STATS_CODES; i++) {
        const sy_stats_code *e = &st->codes[i];
        if (!e->sent && !e->received)
            continue;
        char code[16];
        if (e->code < 0)
            snprintf(code, sizeof code, "other");
        else
            snprintf(code, sizeof code, "%d", e->code);
        snprintf(l, sizeof l, "code=\"%s\",direction=\"in\"", code);
        sample_u(t, "websocket_closes_total", l, e->received);
        snprintf(l, sizeof l, "code=\"%s\",direction=\"out\"", code);
        sample_u(t, "websocket_closes_total", l, e->sent);
    }

    family(t, "tls_handshakes_total", "counter", "TLS handshakes completed.");
    sample_u(t, "tls_handshakes_total", NULL, st->tls_handshakes);
    family(t, "tls_handshake_failures_total", "counter",
           "TLS connections that closed before their handshake completed.");
    sample_u(t, "tls_handshake_failures_total", NULL, st->tls_failures);

    family(t, "lua_errors_total", "counter",
           "Errors raised by Lua hooks, handlers and callbacks (each logged).");
    sample_u(t, "lua_errors_total", NULL, st->lua_errors);
    family(t, "lua_budget_hits_total", "counter",
           "Lua calls stopped by app.lua.max_time (time) or max_memory (memory).");
    sample_u(t, "lua_budget_hits_total", "kind=\"time\"", st->lua_time_hits);
    sample_u(t, "lua_budget_hits_total", "kind=\"memory\"", st->lua_memory_hits);
    family(t, "lua_memory_bytes", "gauge", "Bytes the Lua state holds.");
    sample_u(t, "lua_memory_bytes", NULL, s->lua_memory);

    size_t queued = 0;
    for (sy_conn *c = s->conns; c; c = c->next)
        queued += sy_conn_buffered(c);
    family(t, "output_queued_bytes", "gauge", "Bytes queued for the peers of all connections.");
    sample_u(t, "output_queued_bytes", NULL, queued);

    family(t, "topics", "gauge", "Topics with at least one subscriber in this process.");
    sample_i(t, "topics", NULL, st->topics);
    family(t, "topic_subscriptions", "gauge", "WebSocket subscriptions to topics.");
    sample_i(t, "topic_subscriptions", NULL, st->subscriptions);
    family(t, "publishes_total", "counter",
           "Publishes made in this process (sy.publish, "
           "ws:publish, sy_server_publish).");
    sample_u(t, "publishes_total", NULL, st->publishes);

    int redis = -1, relay = -1;
    sy_topics_links(s, &redis, &relay);
    if (redis >= 0) {
        family(t, "redis_up", "gauge", "1 while the link to Redis (--redis) is up.");
        sample_u(t, "redis_up", NULL, (uint64_t)redis);
    }
    if (relay >= 0) {
        family(t, "worker_relay_up", "gauge",
               "1 while this worker's link to the supervisor (topics, scrapes) is up.");
        sample_u(t, "worker_relay_up", NULL, (uint64_t)relay);
    }
}

static void render_app(sy_server *s, sy_text *t)
{
    struct sy_metrics *r = s->metrics;
    if (!r)
        return;
    for (int i = 0; i < r->n; i++) {
        metric *m = &r->m[i];
        help_line(t, m->name, m->help, m->type == SY_METRIC_COUNTER ? "counter" : "gauge");
        for (int k = 0; k < m->n; k++) {
            sy_text_add(t, m->name, strlen(m->name));
            if (m->s[k].labels[0])
                sy_text_printf(t, "{%s}", m->s[k].labels);
            sy_text_add(t, " ", 1);
            number(t, m->s[k].value);
            sy_text_add(t, "\n", 1);
        }
    }
}

void sy_metrics_render(sy_server *s, sy_text *t)
{
    render_core(s, t);
    render_app(s, t);
}

/* ---- merging workers' pages ------------------------------------------------------------------ */

typedef struct fam {
    sy_str name;      /* borrowed from a page */
    sy_str help_type; /* the "# HELP" and "# TYPE" lines, borrowed */
    sy_text samples;
} fam;

/* The family a "# HELP name ..." line names. */
static sy_str line_family(sy_str line)
{
    const char *p = line.p + 7, *end = line.p + line.len;
    const char *q = p;
    while (q < end && *q != ' ')
        q++;
    return sy_str_make(p, (size_t)(q - p));
}

void sy_metrics_merge(const sy_str *pages, int n, sy_text *out)
{
    fam *f = NULL;
    int nf = 0, capf = 0;
    for (int w = 0; w < n; w++) {
        if (!pages[w].p)
            continue;
        const char *p = pages[w].p, *end = p + pages[w].len;
        fam *cur = NULL;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *le = nl ? nl : end;
            sy_str line = sy_str_make(p, (size_t)(le - p));
            p = nl ? nl + 1 : end;
            if (line.len > 7 && memcmp(line.p, "# HELP ", 7) == 0) {
                sy_str name = line_family(line);
                cur = NULL;
                for (int i = 0; i < nf && !cur; i++)
                    if (f[i].name.len == name.len && memcmp(f[i].name.p, name.p, name.len) == 0)
                        cur = &f[i];
                if (!cur) {
                    if (nf == capf) {
                        int nc = capf ? capf * 2 : 64;
                        fam *g = sy_realloc(f, (size_t)nc * sizeof *g);
                        if (!g) {
                            out->failed = 1;
                            goto done;
                        }
                        f = g;
                        capf = nc;
                    }
                    cur = &f[nf++];
                    memset(cur, 0, sizeof *cur);
                    cur->name = name;
                    /* The TYPE line follows the HELP line. */
                    const char *tnl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
                    const char *tend = tnl ? tnl + 1 : end;
                    cur->help_type = sy_str_make(line.p, (size_t)(tend - line.p));
                }
                continue;
            }
            if (line.len == 0 || line.p[0] == '#' || !cur)
                continue;
            /* A sample: name, optional {labels}, value. worker="w" goes first in the labels. */
            const char *brace = memchr(line.p, '{', line.len);
            const char *sp = memchr(line.p, ' ', line.len);
            if (!sp)
                continue;
            if (brace && brace < sp) {
                sy_text_add(&cur->samples, line.p, (size_t)(brace - line.p));
                sy_text_printf(&cur->samples, "{worker=\"%d\",", w);
                sy_text_add(&cur->samples, brace + 1, line.len - (size_t)(brace + 1 - line.p));
            } else {
                sy_text_add(&cur->samples, line.p, (size_t)(sp - line.p));
                sy_text_printf(&cur->samples, "{worker=\"%d\"}", w);
                sy_text_add(&cur->samples, sp, line.len - (size_t)(sp - line.p));
            }
            sy_text_add(&cur->samples, "\n", 1);
        }
    }
    for (int i = 0; i < nf; i++) {
        sy_text_add(out, f[i].help_type.p, f[i].help_type.len);
        if (f[i].samples.failed)
            out->failed = 1;
        if (f[i].samples.len)
            sy_text_add(out, f[i].samples.p, f[i].samples.len);
    }
done:
    for (int i = 0; i < nf; i++)
        sy_text_dispose(&f[i].samples);
    sy_free(f);
}

/* ---- the metrics listener's responder ---------------------------------------------------- */

static void answer(sy_conn *c, int32_t stream, const sy_http1_request *req)
{
    int status = 200;
    if (!sy_str_eq(req->path, "/metrics"))
        status = 404;
    else if (!sy_str_eq(req->method, "GET") && !sy_str_eq(req->method, "HEAD"))
        status = 405;
    if (status != 200) {
        sy_str body = status == 404 ? SY_STR("not found\n") : SY_STR("method not allowed\n");
        sy_str hdrs = status == 404 ? SY_STR("Content-Type: text/plain\r\n")
                                    : SY_STR("Content-Type: text/plain\r\nAllow: GET, HEAD\r\n");
        sy_answered_or_close(c, sy_http_respond(c, stream, NULL, status, hdrs, body, 0));
        return;
    }
    sy_text t = {0};
    sy_metrics_render(sy_server_of(c->env), &t);
    int rc;
    if (t.failed)
        rc = sy_http_respond(c, stream, NULL, 503, SY_STR("Content-Type: text/plain\r\n"),
                             SY_STR("out of memory\n"), 0);
    else
        rc = sy_http_respond(c, stream, NULL, 200,
                             SY_STR("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
                             sy_str_make(t.p, t.len), 0);
    sy_text_dispose(&t);
    sy_answered_or_close(c, rc);
}

static void on_dispatch(void *ud, sy_conn *c, const sy_http1_request *req, sy_str body,
                        const sy_upgrade_offer *offers, size_t n)
{
    (void)ud, (void)body, (void)offers, (void)n;
    answer(c, 0, req);
}

static void on_request(void *ud, sy_conn *c, const sy_http1_request *req, sy_str body,
                       int32_t stream_id)
{
    (void)ud, (void)body;
    answer(c, stream_id, req);
}

/* Connections of the metrics listener hand their requests here, never to the app: upgrade
 * offers are ignored (no decision is made), and a page is answered at once. */
const sy_app_ops sy_metrics_ops = {.dispatch = on_dispatch, .request = on_request};
