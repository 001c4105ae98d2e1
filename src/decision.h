/* Applying the app's answer to an HTTP/1.1 request that offered upgrades: the token match, the
 * WebSocket accept key, the subprotocol check, the permessage-deflate answer, the h2c and TLS
 * switches, and the one place a 101 (or the app's 426 or other answer) is written. The app
 * layer (Lua or C) only fills a sy_decision; nothing here knows which app made it. */
#ifndef SY_DECISION_H
#define SY_DECISION_H

#include "conn.h"
#include "http1.h"
#include "proto.h"
#include "upgrade.h"

enum {
    SY_DECIDE_ACCEPT = 1,       /* switch to the offered protocol named by token */
    SY_DECIDE_IGNORE,           /* go on as HTTP/1.1: the request goes to app.request */
    SY_DECIDE_UPGRADE_REQUIRED, /* 426 with "Upgrade: <token>" */
    SY_DECIDE_REJECT,           /* status, headers and body as given */
};

typedef struct sy_decision {
    int kind;           /* SY_DECIDE_* */
    sy_str token;       /* accept: the offer chosen (p == NULL: missing, answered 500);
                           upgrade_required: the protocols for the Upgrade field (p == NULL: "") */
    int status;         /* reject: 200..599 */
    int flags;          /* reject: SY_H1_CLOSE when its headers ask for "connection: close" */
    sy_str body;        /* reject, upgrade_required: the body (p == NULL: the default) */
    sy_str headers;     /* reject, accept: extra header lines, validated ("Name: value\r\n") */
    sy_str subprotocol; /* accept (WebSocket): the subprotocol chosen, p == NULL for none; it
                           must be one the client offered in its first Sec-WebSocket-Protocol */
    sy_ws_options ws;   /* accept (WebSocket): the settings; pmd is answered here from the
                           request's offers when ws.compression is on */
    sy_raw_options raw; /* accept (other protocols): the settings */
    void *handle;       /* accept (WebSocket, raw): the app's handle for the connection, or
                           NULL. Ownership passes to sy_decision_apply: it goes to the new
                           protocol, or back to the app through sy_app_conn_discard */

    /* Filled by sy_decision_check: */
    const sy_upgrade_offer *offer; /* borrowed: the offer the token matched */
    char accept_key[29];           /* WebSocket: the Sec-WebSocket-Accept value */
} sy_decision;

/* Zeroes d with the given kind and default WebSocket and raw options. */
void sy_decision_init(sy_decision *d, int kind);

/* For an accept: matches the token with the offers and, for a WebSocket, computes the accept
 * key and checks the subprotocol. Returns 0 with d->offer set, or -1 after answering 500 and
 * logging why (the connection may be closed). Does not touch d->handle. Never calls the app. */
int sy_decision_check(sy_decision *d, sy_conn *c, const sy_http1_request *req,
                      const sy_upgrade_offer *offers, size_t n);

/* 1 when the offer d->offer (after sy_decision_check) speaks through an app handle (WebSocket
 * or a raw protocol), 0 for h2c and TLS, which the core serves itself. */
int sy_decision_wants_handle(const sy_decision *d);

/* Applies d to the pending request req (body: its body) of c. An accept runs
 * sy_decision_check first when d->offer is NULL. Returns 0 for an ignore (the caller goes on
 * to app.request), 1 when the request is answered, switched or its connection closed; a
 * failure is answered 500 with a log line. The slices of req and d are read during the call
 * only. */
int sy_decision_apply(sy_decision *d, sy_conn *c, const sy_http1_request *req, sy_str body,
                      const sy_upgrade_offer *offers, size_t n);

/* Counts an upgrade decision that failed before it was applied (app.upgrade raised or
 * returned something else than a decision), under the client's first offer (none: "other"). */
void sy_decision_count_error(sy_conn *c, const sy_upgrade_offer *offers, size_t n);

/* The core's answer when the app failed: logs why at "error" and answers 500 (or closes). */
void sy_decision_error(sy_conn *c, const char *why);

/* rc from an answer: anything other than 0 or SY_ECLOSED (gone or answered already) closes
 * the connection, so no request is left without an answer. */
void sy_answered_or_close(sy_conn *c, int rc);

#endif
