/* Applying an upgrade decision in C: see decision.h. */
#include "decision.h"

#include <stdio.h>
#include <string.h>

#include "app.h"

void sy_answered_or_close(sy_conn *c, int rc)
{
    if (rc != 0 && rc != SY_ECLOSED && !c->closing)
        sy_conn_close(c);
}

void sy_decision_error(sy_conn *c, const char *why)
{
    c->env->stats.decision_errors++;
    sy_log("error", "%s", why);
    sy_h1_note_decision(c, "error");
    static const char body[] = "internal server error\n";
    int rc = sy_http_respond(c, 0, NULL, 500, SY_STR("Content-Type: text/plain\r\n"),
                             sy_str_make(body, sizeof body - 1), 0);
    sy_answered_or_close(c, rc);
}

void sy_decision_init(sy_decision *d, int kind)
{
    memset(d, 0, sizeof *d);
    d->kind = kind;
    sy_ws_default_options(&d->ws);
    sy_raw_default_options(&d->raw);
}

/* Answers with the app's status; a failure to write it becomes a 500, and a failure of that a
 * close. */
static void app_answer(sy_conn *c, int status, sy_str headers, sy_str body, int flags)
{
    int rc = sy_http_respond(c, 0, NULL, status, headers, body, flags);
    if (rc != 0 && rc != SY_ECLOSED && !c->closing) {
        char why[128];
        snprintf(why, sizeof why, "the answer of app.upgrade (status %d) could not be sent: %s",
                 status, sy_strerror(rc));
        sy_decision_error(c, why);
    }
}

static int offered_subprotocol(sy_str list, sy_str want)
{
    size_t pos = 0;
    sy_str tok;
    while (sy_http1_next_token(list, &pos, &tok))
        if (tok.len == want.len && memcmp(tok.p, want.p, want.len) == 0)
            return 1;
    return 0;
}

/* The offer as the client wrote it, "name" or "name/version" (RFC 9110 7.8). */
static sy_str offer_value(const sy_upgrade_offer *o)
{
    return sy_str_make(o->name.p, o->version.p ? (size_t)(o->version.p + o->version.len - o->name.p)
                                               : o->name.len);
}

int sy_decision_check(sy_decision *d, sy_conn *c, const sy_http1_request *req,
                      const sy_upgrade_offer *offers, size_t n)
{
    if (!d->token.p) {
        sy_decision_error(c, "app.upgrade returned an accept decision without a token");
        return -1;
    }
    int i = sy_upgrade_match(offers, n, d->token);
    if (i < 0) {
        char why[256];
        snprintf(why, sizeof why, "app.upgrade accepted '%.*s', which the client did not offer",
                 (int)(d->token.len < 200 ? d->token.len : 200), d->token.p);
        sy_decision_error(c, why);
        return -1;
    }
    const sy_upgrade_offer *o = &offers[i];
    if (o->kind == SY_UP_WEBSOCKET) {
        /* Over HTTP/2 (a stream connection) there is no key to answer (RFC 8441 5). */
        const sy_http1_header *key = sy_http1_find(req, "sec-websocket-key");
        if (!sy_conn_is_stream(c) &&
            (!key || sy_upgrade_ws_accept(key->value, d->accept_key) != 0)) {
            sy_decision_error(c, "websocket accept key could not be computed");
            return -1;
        }
        if (d->subprotocol.p) {
            const sy_http1_header *offered = sy_http1_find(req, "sec-websocket-protocol");
            if (!offered || !offered_subprotocol(offered->value, d->subprotocol)) {
                char why[256];
                snprintf(why, sizeof why,
                         "app.upgrade chose subprotocol '%.*s', which the client did not offer",
                         (int)(d->subprotocol.len < 200 ? d->subprotocol.len : 200),
                         d->subprotocol.p);
                sy_decision_error(c, why);
                return -1;
            }
        }
    }
    d->offer = o;
    return 0;
}

int sy_decision_wants_handle(const sy_decision *d)
{
    return d->offer && d->offer->kind != SY_UP_TLS && d->offer->kind != SY_UP_H2C;
}

/* permessage-deflate (RFC 7692): with compression on, answers the request's offers (all
 * Sec-WebSocket-Extensions fields joined with ", ", one list: RFC 6455 9.1). Returns 0, or
 * SY_ENOMEM. */
static int negotiate_pmd(const sy_http1_request *req, sy_ws_options *o)
{
    o->pmd = 0;
    if (o->compression == SY_PMD_OFF)
        return 0;
    size_t total = 0, count = 0;
    const sy_http1_header *one = NULL;
    for (size_t i = 0; i < req->nheaders; i++)
        if (sy_str_ieq(req->headers[i].name, "sec-websocket-extensions")) {
            total += req->headers[i].value.len + 2;
            count++;
            one = &req->headers[i];
        }
    if (count == 0)
        return 0;
    sy_pmd_config cfg;
    sy_ws_pmd_config(o->compression, &cfg);
    if (count == 1) {
        o->pmd = sy_ws_pmd_negotiate(one->value, &cfg, &o->pmd_params);
        return 0;
    }
    char *joined = sy_malloc(total);
    if (!joined)
        return SY_ENOMEM;
    size_t len = 0;
    for (size_t i = 0; i < req->nheaders; i++)
        if (sy_str_ieq(req->headers[i].name, "sec-websocket-extensions")) {
            if (len) {
                memcpy(joined + len, ", ", 2);
                len += 2;
            }
            if (req->headers[i].value.len)
                memcpy(joined + len, req->headers[i].value.p, req->headers[i].value.len);
            len += req->headers[i].value.len;
        }
    o->pmd = sy_ws_pmd_negotiate(sy_str_make(joined, len), &cfg, &o->pmd_params);
    sy_free(joined);
    return 0;
}

/* Appends s to the buffer at out (room checked by the caller). */
static size_t put(char *out, size_t at, sy_str s)
{
    if (s.len)
        memcpy(out + at, s.p, s.len);
    return at + s.len;
}

/* Releases the app's handle of a switch that did not happen: no handler runs. */
static void drop_handle(sy_decision *d, sy_conn *c)
{
    if (d->handle) {
        void *h = d->handle;
        d->handle = NULL;
        sy_app_conn_discard(c, h);
    }
}

static int apply_tls(sy_decision *d, sy_conn *c)
{
    const sy_upgrade_offer *o = d->offer;
    /* RFC 2817: the token's version pins the lowest TLS version; TLS/1.0 and TLS/1.1 (and no
     * version) still mean TLS 1.2 at least, the oldest this server speaks. */
    int min_version = o->version.len == 3 && memcmp(o->version.p, "1.3", 3) == 0 ? 13 : 12;
    if (!c->env->tls_ctx) {
        char why[256];
        snprintf(why, sizeof why,
                 "app.upgrade accepted '%.*s', but the server has no certificate (--cert/--key)",
                 (int)(d->token.len < 200 ? d->token.len : 200), d->token.p);
        sy_decision_error(c, why);
        return 1;
    }
    int rc = sy_h1_start_tls(c, offer_value(o), min_version);
    if (rc == SY_EINVAL)
        sy_decision_error(c, "the TLS upgrade could not start");
    else if (rc != SY_EPROTO)
        sy_answered_or_close(c, rc);
    return 1;
}

static int apply_h2c(sy_decision *d, sy_conn *c, const sy_http1_request *req, sy_str body)
{
    const sy_http1_header *hs = sy_http1_find(req, "http2-settings");
    void *state = hs ? sy_h2_new_upgrade(c, req, body, hs->value) : NULL;
    if (!state) {
        sy_decision_error(c, "out of memory");
        return 1;
    }
    /* RFC 7540 3.2: 101 with "Upgrade: h2c", then the server preface, then stream 1. */
    int rc = sy_h1_accept(c, SY_STR("h2c"), d->headers, &sy_proto_h2, state);
    if (rc != 0) {
        sy_h2_free(state);
        sy_answered_or_close(c, rc);
    }
    return 1;
}

/* WebSocket or raw: the 101's extra lines, the protocol state for the app's handle, the
 * switch. */
static int apply_switch(sy_decision *d, sy_conn *c, const sy_http1_request *req)
{
    int websocket = d->offer->kind == SY_UP_WEBSOCKET;
    if (websocket && negotiate_pmd(req, &d->ws) != 0) {
        drop_handle(d, c);
        sy_decision_error(c, "out of memory");
        return 1;
    }
    char ext[SY_WS_PMD_ANSWER_MAX];
    size_t ext_len = websocket && d->ws.pmd ? sy_ws_pmd_format(&d->ws.pmd_params, ext) : 0;
    size_t need = d->headers.len + 1;
    if (websocket)
        need += 64 + d->subprotocol.len + 64 + ext_len;
    char *lines = sy_malloc(need);
    void *state = NULL;
    if (lines)
        state = websocket ? sy_ws_new(c, d->handle, &d->ws) : sy_raw_new(d->handle, &d->raw);
    if (!state) {
        sy_free(lines);
        drop_handle(d, c);
        sy_decision_error(c, "out of memory");
        return 1;
    }
    size_t len = 0;
    int stream = sy_conn_is_stream(c);
    if (websocket) {
        if (!stream) {
            len = put(lines, len, SY_STR("Sec-WebSocket-Accept: "));
            len = put(lines, len, sy_str_make(d->accept_key, strlen(d->accept_key)));
            len = put(lines, len, SY_STR("\r\n"));
        }
        if (d->subprotocol.p) {
            len = put(lines, len, SY_STR("Sec-WebSocket-Protocol: "));
            len = put(lines, len, d->subprotocol);
            len = put(lines, len, SY_STR("\r\n"));
        }
    }
    len = put(lines, len, d->headers);
    if (ext_len) {
        len = put(lines, len, SY_STR("Sec-WebSocket-Extensions: "));
        len = put(lines, len, sy_str_make(ext, ext_len));
        len = put(lines, len, SY_STR("\r\n"));
    }
    /* The 101 names the protocol as the client offered it (RFC 9110 7.8). */
    sy_str value = websocket ? SY_STR("websocket") : offer_value(d->offer);
    const sy_proto *proto = websocket ? &sy_proto_ws : &sy_proto_raw;
    /* Over HTTP/2 the answer is a 200 on the extended CONNECT's stream (RFC 8441 5). */
    int rc = stream ? sy_h2_tunnel_accept(c, sy_str_make(lines, len), proto, state)
                    : sy_h1_accept(c, value, sy_str_make(lines, len), proto, state);
    sy_free(lines);
    if (rc != 0) {
        /* The connection went away before the switch: the state was not handed over. */
        if (websocket)
            sy_ws_free(state);
        else
            sy_raw_free(state);
        drop_handle(d, c);
        sy_answered_or_close(c, rc);
        return 1;
    }
    /* The handle belongs to the protocol now; open runs from its start. */
    d->handle = NULL;
    return 1;
}

/* The counters of a decision: the token accepted, else the client's first offer. Looked up
 * before the decision runs, while the offers' slices are still valid. */
static sy_stats_token *token_of(sy_conn *c, const sy_upgrade_offer *o,
                                const sy_upgrade_offer *offers, size_t n)
{
    if (!o && n)
        o = &offers[0];
    return sy_stats_token_of(&c->env->stats, o ? o->name.p : "", o ? o->name.len : 0);
}

static int apply(sy_decision *d, sy_conn *c, const sy_http1_request *req, sy_str body,
                 const sy_upgrade_offer *offers, size_t n);

int sy_decision_apply(sy_decision *d, sy_conn *c, const sy_http1_request *req, sy_str body,
                      const sy_upgrade_offer *offers, size_t n)
{
    static const char *const names[] = {"error", "accept", "ignore", "426", "reject"};
    sy_h1_note_decision(c, names[d->kind >= 1 && d->kind <= 4 ? d->kind : 0]);
    static const int outcome[] = {
        [SY_DECIDE_IGNORE] = SY_SO_IGNORE,
        [SY_DECIDE_UPGRADE_REQUIRED] = SY_SO_UPGRADE_REQUIRED,
        [SY_DECIDE_REJECT] = SY_SO_REJECT,
        [SY_DECIDE_ACCEPT] = SY_SO_ACCEPT,
    };
    sy_stats *st = &c->env->stats;
    int known = d->kind >= SY_DECIDE_ACCEPT && d->kind <= SY_DECIDE_REJECT;
    int i = d->kind == SY_DECIDE_ACCEPT && d->token.p ? sy_upgrade_match(offers, n, d->token) : -1;
    sy_stats_token *t = token_of(c, i >= 0 ? &offers[i] : NULL, offers, n);
    uint64_t errors = st->decision_errors;
    int rc = apply(d, c, req, body, offers, n);
    t->n[st->decision_errors != errors || !known ? SY_SO_ERROR : outcome[d->kind]]++;
    return rc;
}

void sy_decision_count_error(sy_conn *c, const sy_upgrade_offer *offers, size_t n)
{
    token_of(c, NULL, offers, n)->n[SY_SO_ERROR]++;
}

static int apply(sy_decision *d, sy_conn *c, const sy_http1_request *req, sy_str body,
                 const sy_upgrade_offer *offers, size_t n)
{
    switch (d->kind) {
    case SY_DECIDE_IGNORE: return 0;
    case SY_DECIDE_UPGRADE_REQUIRED: {
        sy_str protocols = d->token.p ? d->token : SY_STR("");
        sy_str answer = d->body.p ? d->body : SY_STR("Upgrade Required\n");
        char *hdrs = sy_malloc(protocols.len + 16);
        if (!hdrs) {
            sy_decision_error(c, "out of memory");
            return 1;
        }
        size_t len = put(hdrs, 0, SY_STR("Upgrade: "));
        len = put(hdrs, len, protocols);
        len = put(hdrs, len, SY_STR("\r\n"));
        app_answer(c, 426, sy_str_make(hdrs, len), answer, SY_H1_CONN_UPGRADE);
        sy_free(hdrs);
        return 1;
    }
    case SY_DECIDE_REJECT:
        app_answer(c, d->status, d->headers.p ? d->headers : SY_STR(""),
                   d->body.p ? d->body : SY_STR(""), d->flags);
        return 1;
    case SY_DECIDE_ACCEPT: break;
    default:
        drop_handle(d, c);
        sy_decision_error(c, "app.upgrade returned an unknown decision");
        return 1;
    }
    if (!d->offer && sy_decision_check(d, c, req, offers, n) != 0) {
        drop_handle(d, c);
        return 1;
    }
    if (!d->headers.p)
        d->headers = SY_STR("");
    switch (d->offer->kind) {
    case SY_UP_TLS: drop_handle(d, c); return apply_tls(d, c);
    case SY_UP_H2C: drop_handle(d, c); return apply_h2c(d, c, req, body);
    default: return apply_switch(d, c, req);
    }
}
