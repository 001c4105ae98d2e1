/* HTTP/1.1 request head parser and chunked body decoder (RFC 9112): pure, no I/O, no allocation. */
#ifndef SY_HTTP1_H
#define SY_HTTP1_H

#include "sy_base.h"

typedef struct sy_http1_header {
    sy_str name;  /* as sent (case preserved); borrowed from the parsed buffer */
    sy_str value; /* OWS trimmed on both sides; borrowed from the parsed buffer */
} sy_http1_header;

enum sy_http1_target_form {
    SY_TARGET_ORIGIN = 1,   /* /path?query */
    SY_TARGET_ABSOLUTE = 2, /* http://host/path?query */
    SY_TARGET_ASTERISK = 3, /* * (OPTIONS only) */
    SY_TARGET_AUTHORITY = 4 /* host:port (CONNECT only) */
};

/* Connection option flags (Connection header parsed as a token list, case-insensitive). */
enum {
    SY_CONN_CLOSE = 1,
    SY_CONN_KEEP_ALIVE = 2,
    SY_CONN_UPGRADE = 4,
    SY_CONN_HTTP2_SETTINGS = 8,
};

typedef struct sy_http1_limits {
    size_t max_head;    /* whole head incl. request line and final CRLF; 431 past it (414 if the
                           request line alone is longer) */
    size_t max_headers; /* header field count; 431 past it; must be <= capacity of headers[] */
} sy_http1_limits;

typedef struct sy_http1_request {
    /* Caller sets before parsing: */
    sy_http1_header *headers; /* borrowed array with room for limits->max_headers entries */

    /* Filled by sy_http1_parse_head; slices borrow from the parsed buffer. */
    sy_str method;
    sy_str target;    /* raw request-target */
    sy_str path;      /* origin form: before '?'; absolute form: the path part ("/" if empty);
                         asterisk form: "*"; authority form: the authority */
    sy_str query;     /* after '?', without it; query.p == NULL when there is no '?' */
    sy_str authority; /* absolute form's host[:port]; p == NULL otherwise */
    int target_form;  /* enum sy_http1_target_form */
    int version;      /* 10 or 11 */
    size_t nheaders;
    size_t head_len; /* bytes of the head including the empty line */

    /* Semantics derived from the headers: */
    int64_t content_length; /* -1 when absent */
    int chunked;            /* Transfer-Encoding ends in chunked */
    int connection;         /* SY_CONN_* flags */
    int keep_alive;         /* persistent after this request (version + Connection) */
    int expect_continue;    /* Expect: 100-continue */
    int has_upgrade;        /* an Upgrade header field is present */
    sy_str host;            /* the Host field value */

    /* On SY_EPROTO / SY_ELIMIT: the status to answer (400, 414, 431, 501). */
    int status;
} sy_http1_request;

/* Parses one request head from buf[0..len). Never allocates, keeps no state across calls: the
 * caller calls again with more bytes (the same prefix plus new ones) after SY_EAGAIN.
 * Leading empty lines (RFC 9112 2.2) are skipped and counted in head_len.
 * Returns the bytes used by the head (> 0) and fills *req, whose slices borrow from buf until it
 * changes; SY_EAGAIN when the head is incomplete and still within limits; SY_ELIMIT (status
 * 431 or 414) past a limit; SY_EPROTO (status 400 or 501) for a malformed head, with a static
 * reason in *why (used for the log line and the response body).
 * Rejected as 400: bad request line, version other than HTTP/1.0 and 1.1 (505 is not used:
 * HTTP/2.0 prefaces are handled elsewhere; other versions get 400), obs-fold, whitespace before
 * the colon, invalid field name or value bytes (CTLs other than HTAB), both Content-Length and
 * Transfer-Encoding, invalid or conflicting Content-Length, missing Host in HTTP/1.1, more than
 * one Host. 501: a Transfer-Encoding whose final coding is not chunked, or any coding other
 * than chunked. Bare LF line endings are accepted; bare CR is rejected. */
ssize_t sy_http1_parse_head(const char *buf, size_t len, const sy_http1_limits *limits,
                            sy_http1_request *req, const char **why);

/* Returns the first header whose name equals lower_name case-insensitively, or NULL. */
const sy_http1_header *sy_http1_find(const sy_http1_request *req, const char *lower_name);

/* Counts headers with that name. */
size_t sy_http1_count(const sy_http1_request *req, const char *lower_name);

/* Chunked body decoder state; valid when zeroed. */
typedef struct sy_http1_chunked {
    int state;
    uint64_t remaining; /* bytes left in the current chunk */
    size_t line_len;    /* bytes seen on the current size/trailer line (limit 4096) */
    uint64_t total;     /* data bytes decoded so far */
    int done;           /* set once the last chunk and the trailer section are consumed */
} sy_http1_chunked;

/* Decodes a prefix of in[0..len). Returns bytes consumed (>= 0) and sets *data to the body bytes
 * found in that prefix (a slice of in, possibly empty). It stops after the first data slice, so
 * the caller loops until all input is consumed or c->done. 0 only when len == 0 or c->done.
 * Trailer fields are skipped. Returns SY_EPROTO with *why for a bad size line (non-hex, over 16
 * hex digits, line over 4096 bytes), missing CRLF after data, or a bad trailer line. Any split of
 * the input gives the same bytes. */
ssize_t sy_http1_chunked_parse(sy_http1_chunked *c, const char *in, size_t len, sy_str *data,
                               const char **why);

/* Walks a comma-separated token list (Connection, Sec-WebSocket-Protocol): on each call sets
 * *tok to the next non-empty element, OWS trimmed, and returns 1; 0 at the end. *pos starts at
 * 0. Elements that are not tokens are returned as they are (callers validate). */
int sy_http1_next_token(sy_str list, size_t *pos, sy_str *tok);

/* Standard reason phrase for a status code ("Unknown" for unknown codes). */
const char *sy_http1_reason(int status);

#endif
