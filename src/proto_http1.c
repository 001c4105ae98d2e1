/* HTTP/1.1 on a connection: read heads and bodies, dispatch to the app, write responses in order,
 * and hand the connection over when an upgrade is accepted. */
#include <stdio.h>

#include "app.h"
#include "proto.h"

/* A chunked body's framing (size lines, extensions, CRLFs, trailers) may take this much plus
 * FRAMING_RATIO bytes per decoded byte: 1-byte chunks need 5, so valid bodies always pass,
 * while a client cannot make the server parse megabytes of extensions per byte of body. */
#define FRAMING_SLACK (64 * 1024)
#define FRAMING_RATIO 8

enum {
    H1_HEAD,   /* reading a request head (possibly none started yet) */
    H1_BODY,   /* reading the body of the request whose head is at the front of c->in */
    H1_APP,    /* the app owes a response for the request at the front of c->in */
    H1_SWITCH, /* an upgrade was accepted during the hook: switch once it returns */
    H1_TLS,    /* 101 sent for an in-place TLS upgrade: the request waits for the handshake */
    H1_DONE,   /* closing or switched: no more requests */
};

/* A slice of the request head at the front of c->in, by offset (the buffer may move). */
typedef struct h1_span {
    uint32_t off, len; /* len 0: unknown */
} h1_span;

typedef struct h1 {
    int phase;
    int in_app;             /* the app hook is running (responses then continue the loop) */
    size_t head_len;        /* head of the current request */
    size_t req_len;         /* head + raw body of the current request, once known */
    int64_t content_length; /* -1 when chunked or absent */
    int chunked;
    sy_http1_chunked ck;
    size_t body_raw;  /* chunked: offset of the next undecoded byte in c->in */
    size_t body_end;  /* chunked: end of the decoded body in c->in */
    uint64_t framing; /* chunked: framing bytes decoded and dropped so far */
    int keep_alive;
    int version;
    int head_method;
    int timer_armed;            /* the header timer runs for a partly read head */
    int has_body;               /* the request at the front of c->in has a body */
    size_t body_len;            /* its decoded length, right after the head */
    int seen_request;           /* a request was read: prior-knowledge HTTP/2 is over */
    size_t input_held;          /* input after the head charged to the server's budget */
    void *res;                  /* borrowed app handle of the pending response, or NULL */
    const sy_proto *next_proto; /* H1_SWITCH: the protocol to switch to */
    void *next_state;           /* H1_SWITCH: its state (owned until the switch) */
    /* For the access log: */
    ev_tstamp started;                           /* the current request's first byte; 0: none yet */
    h1_span log_method, log_target, log_upgrade; /* of the head read (len 0: none) */
    const char *decision; /* what app.upgrade decided (sy_h1_note_decision), or NULL */
} h1;

void *sy_h1_state_new(void)
{
    h1 *h = sy_calloc(1, sizeof *h);
    if (h)
        h->phase = H1_HEAD;
    return h;
}

void sy_h1_state_free(void *state)
{
    sy_free(state);
}

static size_t put_uint(char *p, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

#define PUT_LIT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) += sizeof(lit) - 1)

/* ---- access log ---------------------------------------------------------------------------- */

static h1_span span_of(const sy_conn *c, sy_str s)
{
    h1_span sp = {(uint32_t)(s.p - sy_buf_data(&c->in)), (uint32_t)s.len};
    return s.p ? sp : (h1_span){0, 0};
}

static sy_str span_str(const sy_conn *c, h1_span sp)
{
    if (!sp.len || (size_t)sp.off + sp.len > sy_buf_len(&c->in))
        return sy_str_make(NULL, 0);
    return sy_str_make(sy_buf_data(&c->in) + sp.off, sp.len);
}

/* The head just read (at the front of c->in), as its access log line will name it. */
static void note_head(sy_conn *c, h1 *h, const sy_http1_request *req)
{
    const sy_http1_header *up = sy_http1_find(req, "upgrade");
    h->log_method = span_of(c, req->method);
    h->log_target = span_of(c, req->target);
    h->log_upgrade = up ? span_of(c, up->value) : (h1_span){0, 0};
    h->decision = NULL;
}

/* The request at the front of c->in is over: its fields go with it. */
static void forget_head(h1 *h)
{
    h->log_method = h->log_target = h->log_upgrade = (h1_span){0, 0};
    h->decision = NULL;
    h->started = 0;
}

/* The access log's line for the current request: answered with status and bytes of body, or
 * switched to protocol (101). */
static void log_request(sy_conn *c, h1 *h, int status, uint64_t bytes, sy_str protocol)
{
    if (!c->env->access)
        return;
    sy_access a;
    memset(&a, 0, sizeof a);
    a.event = h->decision ? SY_ACCESS_UPGRADE : SY_ACCESS_REQUEST;
    a.conn = c;
    a.proto = h->version == 10 ? "HTTP/1.0" : "HTTP/1.1";
    a.method = span_str(c, h->log_method);
    a.target = span_str(c, h->log_target);
    a.upgrade = span_str(c, h->log_upgrade);
    a.decision = h->decision;
    a.protocol = protocol;
    a.status = status;
    a.bytes_out = bytes;
    a.started = h->started;
    c->env->access(c->env, &a);
}

static int status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

/* Writes status line, Date, Content-Length, Connection, extra headers, blank line, body. */
static int write_response(sy_conn *c, int status, int keep_alive, int version, int head_method,
                          sy_str headers, sy_str body, int flags)
{
    const char *reason = sy_http1_reason(status);
    size_t rlen = strlen(reason);
    sy_stats_response(&c->env->stats, 0, status);
    size_t need = 64 + rlen + 40 + 48 + 32 + headers.len;
    char stack[2048];
    char *buf = need <= sizeof stack ? stack : sy_malloc(need);
    if (!buf) {
        sy_conn_close(c);
        return SY_ENOMEM;
    }
    char *p = buf;
    PUT_LIT(p, "HTTP/1.1 ");
    p += put_uint(p, (uint64_t)status);
    *p++ = ' ';
    memcpy(p, reason, rlen);
    p += rlen;
    PUT_LIT(p, "\r\n");
    const char *date = sy_env_date(c->env);
    size_t dlen = strlen(date);
    memcpy(p, date, dlen);
    p += dlen;
    if (status_has_body(status)) {
        PUT_LIT(p, "Content-Length: ");
        p += put_uint(p, body.len);
        PUT_LIT(p, "\r\n");
    }
    if (flags & SY_H1_CONN_UPGRADE) {
        /* A 426 says exactly "Connection: Upgrade" (RFC 9110 15.5.22); when the connection
         * closes after it, the close itself tells the client. */
        if (version == 10 && keep_alive)
            PUT_LIT(p, "Connection: Upgrade, keep-alive\r\n");
        else
            PUT_LIT(p, "Connection: Upgrade\r\n");
    } else if (!keep_alive)
        PUT_LIT(p, "Connection: close\r\n");
    else if (version == 10)
        PUT_LIT(p, "Connection: keep-alive\r\n");
    if (headers.len) {
        memcpy(p, headers.p, headers.len);
        p += headers.len;
    }
    PUT_LIT(p, "\r\n");
    int send_body = status_has_body(status) && !head_method && body.len;
    int rc = sy_conn_write2(c, buf, (size_t)(p - buf), send_body ? body.p : NULL,
                            send_body ? body.len : 0);
    if (buf != stack)
        sy_free(buf);
    return rc < 0 ? rc : 0;
}

/* The core's own answer to a bad request: status, a one-line reason, then close. */
static void fail_request(sy_conn *c, h1 *h, int status, const char *why, const char *headers,
                         int flags)
{
    char body[256];
    int n = snprintf(body, sizeof body, "%s\n", why ? why : sy_http1_reason(status));
    if (n < 0 || (size_t)n >= sizeof body)
        n = (int)sizeof body - 1;
    if (c->closing)
        return;
    log_request(c, h, status, status_has_body(status) && !h->head_method ? (uint64_t)n : 0,
                sy_str_make(NULL, 0));
    /* The request is over: its budget goes back now, not when a peer that does not read lets
     * the connection go, and so does its input unless a hook still reads the request. */
    sy_env_release_input(c->env, &h->input_held);
    if (!h->in_app) {
        sy_buf_consume(&c->in, sy_buf_len(&c->in));
        sy_buf_trim(&c->in, 0);
    }
    char hdrs[512];
    int hn = snprintf(hdrs, sizeof hdrs, "Content-Type: text/plain\r\n%s", headers ? headers : "");
    if (hn < 0 || (size_t)hn >= sizeof hdrs)
        hn = 0;
    h->phase = H1_DONE;
    write_response(c, status, 0, 11, h->head_method, sy_str_make(hdrs, (size_t)hn),
                   sy_str_make(body, (size_t)n), flags);
    if (!c->closing)
        sy_conn_close_after_write(c);
}

static void arm_idle(sy_conn *c, h1 *h)
{
    h->timer_armed = 0;
    sy_conn_set_timeout(c, c->env->cfg.idle_timeout);
}

/* Parses the head at the front of c->in; on success fills req (scratch headers). */
static ssize_t parse_head(sy_conn *c, sy_http1_request *req, const char **why)
{
    sy_env *e = c->env;
    sy_http1_limits lim = {e->cfg.max_head, e->cfg.max_headers};
    memset(req, 0, sizeof *req);
    req->headers = e->scratch_headers;
    ssize_t n = sy_http1_parse_head(sy_buf_data(&c->in), sy_buf_len(&c->in), &lim, req, why);
    if (n > 0 && req->target_form == SY_TARGET_ABSOLUTE) {
        /* RFC 9112 3.2.2: with an absolute-form target the server ignores the Host field and
         * uses the target's authority, so the app sees that as the host. */
        req->host = req->authority;
        for (size_t i = 0; i < req->nheaders; i++)
            if (sy_str_ieq(req->headers[i].name, "host"))
                req->headers[i].value = req->authority;
    }
    return n;
}

/* The start of a connection against the HTTP/2 client preface: 1 it is there whole, 0 the bytes
 * so far are a prefix of it, -2 it starts as the preface's request line but goes wrong later,
 * -1 anything else (HTTP/1.1). */
static int prior_knowledge(sy_conn *c)
{
    size_t len = sy_buf_len(&c->in), want = sizeof SY_H2_PREFACE - 1;
    const char *p = sy_buf_data(&c->in);
    size_t k = len < want ? len : want;
    if (memcmp(p, SY_H2_PREFACE, k) == 0)
        return len >= want ? 1 : 0;
    return len >= 16 && memcmp(p, SY_H2_PREFACE, 16) == 0 ? -2 : -1;
}

/* Drops TLS offers on a connection that already runs TLS: RFC 2817 only upgrades cleartext.
 * h2c goes too: it names HTTP/2 over cleartext TCP, and over TLS HTTP/2 is ALPN "h2" (RFC 7540
 * 3.3). */
static size_t drop_tls_offers(sy_upgrade_offer *offers, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (offers[i].kind != SY_UP_TLS && offers[i].kind != SY_UP_H2C)
            offers[k++] = offers[i];
    return k;
}

/* Hands a complete request to the app; with_offers 0 skips app.upgrade (the request that an
 * in-place TLS upgrade answers over TLS). */
static void dispatch(sy_conn *c, h1 *h, const sy_http1_request *req, sy_str body, int with_offers)
{
    h->seen_request = 1;
    h->phase = H1_APP;
    h->res = NULL;
    h->has_body = body.p != NULL;
    h->body_len = body.len;
    sy_conn_set_timeout(c, 0);
    h->in_app = 1;
    sy_upgrade_offer offers[SY_UPGRADE_MAX_OFFERS];
    size_t n = 0;
    if (req->has_upgrade && with_offers) {
        sy_upgrade_answer ans = {0, NULL, NULL};
        int rc = sy_upgrade_offers(req, offers, &n, &ans);
        if (rc < 0 || ans.status) {
            char extra[256] = "";
            if (ans.status == 426)
                snprintf(extra, sizeof extra, "%sUpgrade: websocket\r\n",
                         ans.headers ? ans.headers : "");
            h->in_app = 0;
            sy_stats_refused(&c->env->stats, rc < 0, ans.status);
            fail_request(c, h, ans.status ? ans.status : 400, ans.why, extra,
                         ans.status == 426 ? SY_H1_CONN_UPGRADE : 0);
            return;
        }
        if (sy_conn_is_tls(c))
            n = drop_tls_offers(offers, n);
    }
    if (!sy_app_dispatch(c, req, body, offers, n))
        sy_http_not_found(c, 0);
    if (c->closing) {
        /* h1_on_close left the state to us while the hook ran. */
        sy_free(h);
        return;
    }
    h->in_app = 0;
    if (h->phase == H1_APP && c->peer_eof)
        sy_conn_close(c); /* the client left before this request: see h1_on_eof */
}

/* After a response: drop the request's bytes and get ready for the next one. */
static void finish_exchange(sy_conn *c, h1 *h)
{
    forget_head(h);
    sy_buf_consume(&c->in, h->req_len);
    h->req_len = 0;
    sy_env_release_input(c->env, &h->input_held);
    /* The app's handle is done whoever answered (a core 500 after a hook error included). */
    if (h->res)
        sy_app_response_dropped(c, h->res);
    h->res = NULL;
    if (!h->keep_alive || c->env->stopping) {
        h->phase = H1_DONE;
        sy_conn_close_after_write(c);
        return;
    }
    h->phase = H1_HEAD;
    if (sy_buf_len(&c->in) == 0) {
        if (c->peer_eof) {
            h->phase = H1_DONE;
            sy_conn_close_after_write(c);
            return;
        }
        sy_buf_trim(&c->in, 65536);
        arm_idle(c, h);
    }
    /* Answers waiting for the client hold further requests back (h1_on_drain resumes). */
    if (!c->over_high_water)
        sy_conn_resume(c);
}

static void do_switch(sy_conn *c, h1 *h)
{
    const sy_proto *proto = h->next_proto;
    void *state = h->next_state;
    sy_free(h);
    c->proto_state = NULL;
    sy_conn_switch(c, proto, state);
}

static void answer_upgraded(sy_conn *c, h1 *h);

static void h1_on_bytes(sy_conn *c)
{
    h1 *h = c->proto_state;
    sy_env *e = c->env;
    while (!c->closing) {
        if (h->phase == H1_SWITCH) {
            do_switch(c, h);
            return;
        }
        if (h->phase == H1_TLS) {
            if (!sy_conn_tls_ready(c))
                return;
            answer_upgraded(c, h);
            continue;
        }
        if (h->phase != H1_HEAD && h->phase != H1_BODY)
            return;
        sy_http1_request req;
        const char *why = NULL;
        if (h->phase == H1_HEAD) {
            if (c->over_high_water) {
                /* The client is not reading its answers: take no more requests (and read no
                 * more) until the queue drains below the mark (h1_on_drain). */
                sy_conn_pause(c);
                return;
            }
            if (!h->seen_request && sy_conn_tls_ready(c) &&
                strcmp(sy_tls_alpn(c->tls), "h2") == 0) {
                /* ALPN chose HTTP/2 (RFC 9113 3.2): the server preface goes out at once. */
                sy_h2_start_direct(c); /* releases the HTTP/1.1 state */
                return;
            }
            if (sy_buf_len(&c->in) == 0) {
                if (c->peer_eof) {
                    h->phase = H1_DONE;
                    sy_conn_close_after_write(c);
                }
                return;
            }
            if (!h->started)
                h->started = ev_now(e->loop);
            if (!h->seen_request) {
                int pk = prior_knowledge(c);
                if (pk > 0) {
                    /* The client speaks HTTP/2 from its first byte (RFC 9113 3.3). */
                    sy_h2_start_direct(c); /* releases the HTTP/1.1 state */
                    return;
                }
                if (pk == 0) {
                    if (!h->timer_armed) {
                        h->timer_armed = 1;
                        sy_conn_set_timeout(c, e->cfg.header_timeout);
                    }
                    if (c->peer_eof)
                        fail_request(c, h, 400, "incomplete request", NULL, 0);
                    return;
                }
                if (pk == -2) {
                    /* The HTTP/2 preface went wrong after "PRI * HTTP/2.0": the client speaks
                     * HTTP/2, which has no answer before a valid preface (RFC 9113 3.4). */
                    h->phase = H1_DONE;
                    sy_conn_close_after_write(c);
                    return;
                }
            }
            ssize_t n = parse_head(c, &req, &why);
            if (n == SY_EAGAIN) {
                if (!h->timer_armed) {
                    h->timer_armed = 1;
                    sy_conn_set_timeout(c, e->cfg.header_timeout);
                }
                if (c->peer_eof)
                    fail_request(c, h, 400, "incomplete request", NULL, 0);
                return;
            }
            if (n < 0) {
                fail_request(c, h, req.status ? req.status : 400, why, NULL, 0);
                return;
            }
            h->timer_armed = 0;
            note_head(c, h, &req);
            h->head_len = (size_t)n;
            h->keep_alive = req.keep_alive;
            h->version = req.version;
            h->head_method = sy_str_eq(req.method, "HEAD");
            h->chunked = req.chunked;
            h->content_length = req.chunked ? -1 : req.content_length;
            if (!h->chunked && h->content_length <= 0) {
                h->req_len = h->head_len;
                dispatch(c, h, &req, sy_str_make(NULL, 0), 1);
                continue;
            }
            if (h->content_length > 0 && (uint64_t)h->content_length > e->cfg.max_body) {
                fail_request(c, h, 413, "request body too large", NULL, 0);
                return;
            }
            h->phase = H1_BODY;
            memset(&h->ck, 0, sizeof h->ck);
            h->body_raw = h->body_end = h->head_len;
            h->framing = 0;
            if (req.expect_continue && req.version == 11 && sy_buf_len(&c->in) == h->head_len)
                sy_conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            sy_conn_set_timeout(c, e->cfg.body_timeout);
        }
        /* H1_BODY */
        size_t len = sy_buf_len(&c->in);
        if (sy_env_hold_input(e, &h->input_held, len - h->head_len) != 0) {
            fail_request(c, h, 503, "server busy: too much request data buffered", NULL, 0);
            return;
        }
        sy_str body;
        if (!h->chunked) {
            if (len - h->head_len < (uint64_t)h->content_length) {
                if (c->peer_eof)
                    fail_request(c, h, 400, "incomplete request body", NULL, 0);
                else
                    sy_conn_set_timeout(c, e->cfg.body_timeout);
                return;
            }
            h->req_len = h->head_len + (size_t)h->content_length;
            body = sy_str_make(NULL, (size_t)h->content_length);
        } else {
            char *base = sy_buf_data(&c->in);
            while (h->body_raw < len && !h->ck.done) {
                sy_str data = {NULL, 0};
                ssize_t r = sy_http1_chunked_parse(&h->ck, base + h->body_raw, len - h->body_raw,
                                                   &data, &why);
                if (r < 0) {
                    fail_request(c, h, 400, why, NULL, 0);
                    return;
                }
                if (data.len) {
                    /* Decode in place: decoded bytes never overtake raw ones. */
                    memmove(base + h->body_end, data.p, data.len);
                    h->body_end += data.len;
                    if (h->body_end - h->head_len > e->cfg.max_body) {
                        fail_request(c, h, 413, "request body too large", NULL, 0);
                        return;
                    }
                }
                h->body_raw += (size_t)r;
                if (r == 0)
                    break;
            }
            /* Drop the framing just decoded: c->in keeps the head, the decoded body and what
             * is not decoded yet, so the input limit bounds the body, not its framing. */
            size_t framing = h->body_raw - h->body_end;
            if (framing) {
                sy_buf_cut(&c->in, h->body_end, framing);
                h->body_raw = h->body_end;
                h->framing += framing;
                uint64_t decoded = h->body_end - h->head_len;
                if (h->framing > FRAMING_SLACK + FRAMING_RATIO * decoded) {
                    fail_request(c, h, 400, "chunked framing out of proportion to the body", NULL,
                                 0);
                    return;
                }
            }
            if (!h->ck.done) {
                if (c->peer_eof)
                    fail_request(c, h, 400, "incomplete request body", NULL, 0);
                else
                    sy_conn_set_timeout(c, e->cfg.body_timeout);
                return;
            }
            h->req_len = h->body_raw;
            body = sy_str_make(NULL, h->body_end - h->head_len);
        }
        /* The buffer may have moved while the body arrived: parse the head again in place. */
        ssize_t n = parse_head(c, &req, &why);
        if (n != (ssize_t)h->head_len) {
            fail_request(c, h, 400, "request head changed", NULL, 0);
            return;
        }
        body.p = sy_buf_data(&c->in) + h->head_len;
        dispatch(c, h, &req, body, 1);
    }
}

/* The handshake of an in-place upgrade completed: answer the upgraded request over TLS (RFC
 * 2817 3.3). It is still at the front of c->in; plaintext from the client follows it. */
static void answer_upgraded(sy_conn *c, h1 *h)
{
    sy_http1_request req;
    const char *why = NULL;
    ssize_t n = parse_head(c, &req, &why);
    if (n != (ssize_t)h->head_len) {
        fail_request(c, h, 400, "request head changed", NULL, 0);
        return;
    }
    sy_str body = h->has_body ? sy_str_make(sy_buf_data(&c->in) + h->head_len, h->body_len)
                              : sy_str_make(NULL, 0);
    dispatch(c, h, &req, body, 0);
}

int sy_h1_pending_request(sy_conn *c, sy_http1_request *req, sy_str *body, sy_upgrade_offer *offers,
                          size_t *n)
{
    if (c->closing || c->proto != &sy_proto_http1)
        return SY_ECLOSED;
    h1 *h = c->proto_state;
    if (h->phase != H1_APP)
        return SY_ECLOSED;
    const char *why = NULL;
    if (parse_head(c, req, &why) != (ssize_t)h->head_len)
        return SY_EPROTO;
    *body = h->has_body ? sy_str_make(sy_buf_data(&c->in) + h->head_len, h->body_len)
                        : sy_str_make(NULL, 0);
    *n = 0;
    if (req->has_upgrade) {
        sy_upgrade_answer ans = {0, NULL, NULL};
        if (sy_upgrade_offers(req, offers, n, &ans) < 0 || ans.status)
            return SY_EPROTO;
        if (sy_conn_is_tls(c))
            *n = drop_tls_offers(offers, *n);
    }
    return 0;
}

int sy_h1_respond(sy_conn *c, void *res, int status, sy_str headers, sy_str body, int flags)
{
    if (c->closing || c->proto != &sy_proto_http1)
        return SY_ECLOSED;
    h1 *h = c->proto_state;
    if (h->phase != H1_APP || (res && h->res && h->res != res))
        return SY_ECLOSED;
    if (status < 100 || status > 999 || status == 101)
        return SY_EINVAL;
    if (flags & SY_H1_CLOSE)
        h->keep_alive = 0;
    log_request(c, h, status, status_has_body(status) && !h->head_method ? body.len : 0,
                sy_str_make(NULL, 0));
    int rc = write_response(c, status, h->keep_alive && !c->env->stopping, h->version,
                            h->head_method, headers, body, flags);
    if (c->closing)
        return rc < 0 ? rc : SY_ECLOSED;
    finish_exchange(c, h);
    if (c->closing)
        return 0;
    if (!h->in_app && h->phase == H1_HEAD && sy_buf_len(&c->in))
        sy_conn_schedule(c);
    return 0;
}

void sy_h1_note_decision(sy_conn *c, const char *decision)
{
    if (c->sink) {
        sy_h2_tunnel_note_decision(c, decision); /* an extended CONNECT's stream */
        return;
    }
    if (c->closing || c->proto != &sy_proto_http1)
        return;
    h1 *h = c->proto_state;
    if (h && h->phase == H1_APP)
        h->decision = decision;
}

void sy_h1_set_response_handle(sy_conn *c, void *res)
{
    if (c->closing || c->proto != &sy_proto_http1)
        return;
    h1 *h = c->proto_state;
    if (h->phase == H1_APP)
        h->res = res;
}

int sy_h1_accept(sy_conn *c, sy_str upgrade_value, sy_str headers, const sy_proto *proto,
                 void *state)
{
    if (c->closing || c->proto != &sy_proto_http1)
        return SY_ECLOSED;
    h1 *h = c->proto_state;
    if (h->phase != H1_APP)
        return SY_ECLOSED;
    if (!h->decision)
        h->decision = "accept";
    log_request(c, h, 101, 0, upgrade_value);
    forget_head(h);
    size_t need = 160 + upgrade_value.len + headers.len;
    char *buf = sy_malloc(need);
    if (!buf) {
        sy_conn_close(c);
        return SY_ENOMEM;
    }
    char *p = buf;
    PUT_LIT(p, "HTTP/1.1 101 Switching Protocols\r\n");
    const char *date = sy_env_date(c->env);
    size_t dlen = strlen(date);
    memcpy(p, date, dlen);
    p += dlen;
    PUT_LIT(p, "Upgrade: ");
    memcpy(p, upgrade_value.p, upgrade_value.len);
    p += upgrade_value.len;
    PUT_LIT(p, "\r\nConnection: Upgrade\r\n");
    if (headers.len) {
        memcpy(p, headers.p, headers.len);
        p += headers.len;
    }
    PUT_LIT(p, "\r\n");
    int rc = sy_conn_write(c, buf, (size_t)(p - buf));
    sy_free(buf);
    if (c->closing)
        return SY_ECLOSED;
    (void)rc;
    /* Bytes behind the request belong to the new protocol. */
    sy_buf_consume(&c->in, h->req_len);
    h->req_len = 0;
    sy_env_release_input(c->env, &h->input_held);
    h->res = NULL;
    sy_conn_set_timeout(c, 0);
    sy_conn_resume(c);
    h->next_proto = proto;
    h->next_state = state;
    if (h->in_app) {
        h->phase = H1_SWITCH;
        return 0;
    }
    do_switch(c, h);
    return 0;
}

int sy_h1_start_tls(sy_conn *c, sy_str upgrade_value, int min_version)
{
    if (c->closing || c->proto != &sy_proto_http1)
        return SY_ECLOSED;
    h1 *h = c->proto_state;
    if (h->phase != H1_APP)
        return SY_ECLOSED;
    if (!c->env->tls_ctx || c->tls)
        return SY_EINVAL;
    /* Bytes behind the request were sent before the client could see a 101: they are neither
     * TLS nor HTTP to us (RFC 2817 3.3 leaves no room for them; the Opossum attack relies on
     * them). Those already read, or already waiting in the socket, refuse the switch. */
    if (sy_buf_len(&c->in) > h->req_len || sy_conn_input_waiting(c)) {
        fail_request(c, h, 400, "bytes after a TLS upgrade request", NULL, 0);
        return SY_EPROTO;
    }
    if (upgrade_value.len > 128)
        return SY_EINVAL;
    if (!h->decision)
        h->decision = "accept";
    log_request(c, h, 101, 0, upgrade_value);
    h->decision = NULL; /* the request answered over TLS has a line of its own */
    char head[400];
    char *p = head;
    PUT_LIT(p, "HTTP/1.1 101 Switching Protocols\r\n");
    const char *date = sy_env_date(c->env);
    size_t dlen = strlen(date);
    memcpy(p, date, dlen);
    p += dlen;
    PUT_LIT(p, "Upgrade: ");
    memcpy(p, upgrade_value.p, upgrade_value.len);
    p += upgrade_value.len;
    /* RFC 2817 3.3: the 101 names TLS first, then the protocol spoken over it. */
    PUT_LIT(p, ", HTTP/1.1\r\nConnection: Upgrade\r\n\r\n");
    sy_conn_write(c, head, (size_t)(p - head));
    if (c->closing)
        return SY_ECLOSED;
    h->phase = H1_TLS;
    h->res = NULL;
    if (sy_conn_start_tls(c, min_version) != 0)
        return SY_ECLOSED;
    sy_tls_refuse_h2(c->tls);
    /* The header timeout bounds the handshake too. */
    sy_conn_set_timeout(c, c->env->cfg.header_timeout);
    return 0;
}

static void h1_on_eof(sy_conn *c)
{
    h1 *h = c->proto_state;
    if (h->phase == H1_TLS && !sy_conn_tls_ready(c)) {
        sy_conn_close(c); /* the client left during the handshake */
        return;
    }
    if (h->phase == H1_APP && !h->in_app) {
        /* The client left while the app owes its answer: release the connection now, and the
         * app's kept res answers nil, "closed". A half-close (shutdown of the client's write
         * side) counts as leaving too, as nginx treats it: nothing distinguishes it from a
         * close until a write fails, and waiting would hold the descriptor for as long as the
         * app takes. */
        sy_conn_close(c);
        return;
    }
    if (h->phase == H1_APP || h->phase == H1_SWITCH)
        return; /* a hook is running: dispatch() checks peer_eof when it returns */
    h1_on_bytes(c);
}

static void h1_on_drain(sy_conn *c)
{
    h1 *h = c->proto_state;
    if (!h || h->phase != H1_HEAD)
        return;
    /* Answers drained below the mark: take the pipelined requests that wait. */
    sy_conn_resume(c);
    if (sy_buf_len(&c->in) || c->peer_eof)
        sy_conn_schedule(c);
}

static void h1_on_timeout(sy_conn *c)
{
    h1 *h = c->proto_state;
    if ((h->phase == H1_HEAD && sy_buf_len(&c->in)) || h->phase == H1_BODY)
        fail_request(c, h, 408, "request timeout", NULL, 0);
    else if (h->phase == H1_HEAD && sy_conn_sending(c) && c->env->cfg.send_timeout > 0)
        arm_idle(c, h); /* the last answer still goes out (the send timeout bounds it): the
                           keep-alive wait starts over */
    else
        sy_conn_close(c);
}

static void h1_on_shutdown(sy_conn *c)
{
    h1 *h = c->proto_state;
    /* Idle keep-alive connections go now; a request in progress is answered, then closed. */
    if ((h->phase == H1_HEAD && sy_buf_len(&c->in) == 0) || (c->tls && !sy_conn_tls_ready(c)))
        sy_conn_close(c);
}

static void h1_on_close(sy_conn *c)
{
    h1 *h = c->proto_state;
    if (!h)
        return;
    sy_env_release_input(c->env, &h->input_held);
    if (h->res)
        sy_app_response_dropped(c, h->res);
    if (h->phase == H1_SWITCH && h->next_proto && h->next_proto->on_close) {
        /* The new protocol never started: it releases its state and the app's handle without
         * running a handler (open never ran, so close does not either). */
        c->proto_state = h->next_state;
        h->next_proto->on_close(c);
        h->next_proto = NULL;
    }
    c->proto_state = NULL;
    /* While a hook runs, dispatch() still holds h: it frees it when the hook returns. */
    if (!h->in_app)
        sy_free(h);
}

const sy_proto sy_proto_http1 = {
    .name = "http1",
    .on_bytes = h1_on_bytes,
    .on_eof = h1_on_eof,
    .on_drain = h1_on_drain,
    .on_timeout = h1_on_timeout,
    .on_shutdown = h1_on_shutdown,
    .on_close = h1_on_close,
};
