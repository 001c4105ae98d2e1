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
    sy_str path;      /* origin form: before '?'; absolute form: the path part ("/" if empty,
                         then the last "/" of "://"); asterisk form: "*"; authority form: the
                         authority. Like every slice here, it points into the parsed buffer */
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
    int expect_continue;    /* Expect: 100-continue (case-insensitive), HTTP/1.1 only (RFC 9110
                               10.1.1: ignored in HTTP/1.0) */
    int has_upgrade;        /* an Upgrade header field is present */
    sy_str host;            /* the Host field value (may be empty); p == NULL when absent. For
                               absolute form RFC 9112 3.2.2 says to use `authority` instead */

    /* On SY_EPROTO / SY_ELIMIT: the status to answer (400, 414, 431, 501); 0 otherwise. */
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
 * one Host. 501: a Transfer-Encoding whose final coding is not chunked, or a coding not known
 * here (see below). Bare LF line endings are accepted; bare CR is rejected.
 * Details the server can rely on:
 * - Limits: SY_ELIMIT is returned as soon as len >= max_head and the head has not ended within
 *   the first max_head bytes, so a head of exactly max_head bytes is accepted. The status is
 *   414 when the request line, from its first byte through its LF, does not fit in max_head
 *   bytes (decided even before the line ends), else 431. More than max_headers field lines:
 *   431 at the first line past the limit. Errors met inside the first max_head bytes win.
 * - Request line: exactly one SP between the parts. Method: a token. Target: visible ASCII
 *   only; CONNECT requires authority form (host ":" 1*DIGIT), "*" is accepted only with
 *   OPTIONS, absolute form needs "scheme://" and a non-empty authority without userinfo, any
 *   other target must start with "/". "PRI * HTTP/2.0" gets 400 "unsupported HTTP version".
 * - Host: at most one (any version); its value may be empty, otherwise only RFC 3986 reg-name,
 *   IP-literal and port characters.
 * - Content-Length: 1*DIGIT up to INT64_MAX; repeated fields or a list ("5, 5") are accepted
 *   when all values are equal.
 * - Transfer-Encoding (all fields form one list): the codings gzip, x-gzip, deflate, compress
 *   and x-compress are accepted before a final chunked (chunked = 1; the decoded body still
 *   carries those codings, the caller may refuse it); any other coding, or a parameter, is 501;
 *   chunked listed twice, an empty value, or Transfer-Encoding in HTTP/1.0 is 400.
 * - On SY_EAGAIN and errors the other fields of *req are partly filled and meaningless;
 *   req->headers is preserved. why may be NULL. */
ssize_t sy_http1_parse_head(const char *buf, size_t len, const sy_http1_limits *limits,
                            sy_http1_request *req, const char **why);

/* Returns the first header whose name equals lower_name case-insensitively, or NULL. */
const sy_http1_header *sy_http1_find(const sy_http1_request *req, const char *lower_name);

/* Counts headers with that name. */
size_t sy_http1_count(const sy_http1_request *req, const char *lower_name);

/* Chunked body decoder state; valid when zeroed. */
typedef struct sy_http1_chunked {
    int state;
    uint64_t remaining; /* bytes left in the current chunk; in the trailer section, the bytes
                           of the trailer section so far (limit 16384) */
    size_t line_len;    /* bytes seen on the current size/trailer line (limit 4096) */
    uint64_t total;     /* data bytes decoded so far */
    int done;           /* set once the last chunk and the trailer section are consumed */
} sy_http1_chunked;

/* Decodes a prefix of in[0..len). Returns bytes consumed (>= 0) and sets *data to the body bytes
 * found in that prefix (a slice of in, possibly empty). It stops after the first data slice, so
 * the caller loops until all input is consumed or c->done. 0 only when len == 0 or c->done.
 * Trailer fields are skipped. Returns SY_EPROTO with *why for a bad size line (non-hex, over 16
 * hex digits, line over 4096 bytes), missing CRLF after data, or a bad trailer line. Any split of
 * the input gives the same bytes.
 * Framing is strict: every line of the chunked coding ends in CRLF (a bare LF is an error),
 * BWS is allowed only before a chunk extension's ";", extensions are skipped but may hold
 * only field characters, and trailer fields must be name ":" value lines (no obs-fold) within
 * a 16384-byte trailer section. After an error every call returns SY_EPROTO. The decoder does
 * not limit the body size: the caller checks c->total (or the data lengths) itself. */
ssize_t sy_http1_chunked_parse(sy_http1_chunked *c, const char *in, size_t len, sy_str *data,
                               const char **why);

/* Walks a comma-separated token list (Connection, Sec-WebSocket-Protocol): on each call sets
 * *tok to the next non-empty element, OWS trimmed, and returns 1; 0 at the end. *pos starts at
 * 0. Elements that are not tokens are returned as they are (callers validate). */
int sy_http1_next_token(sy_str list, size_t *pos, sy_str *tok);

/* Standard reason phrase for a status code ("Unknown" for unknown codes). */
const char *sy_http1_reason(int status);

#endif
