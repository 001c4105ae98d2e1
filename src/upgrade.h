/* Upgrade offer parsing and validation, 101/426 header values, WebSocket accept key (pure). */
#ifndef SY_UPGRADE_H
#define SY_UPGRADE_H

#include "http1.h"

enum sy_upgrade_kind {
    SY_UP_WEBSOCKET = 1, /* "websocket" */
    SY_UP_H2C = 2,       /* "h2c" */
    SY_UP_TLS = 3,       /* "TLS" with or without version */
    SY_UP_OTHER = 4,     /* any other token: a raw byte stream */
};

#define SY_UPGRADE_MAX_OFFERS 16

typedef struct sy_upgrade_offer {
    sy_str name;    /* as sent; borrowed from the request buffer */
    sy_str version; /* p == NULL when absent */
    int kind;       /* enum sy_upgrade_kind */
} sy_upgrade_offer;

/* The core's own answer when it refuses on its own (status 0: none). */
typedef struct sy_upgrade_answer {
    int status;          /* 0, 400 or 426 */
    const char *why;     /* static reason, for the log and the body */
    const char *headers; /* static extra header lines ("Name: value\r\n"...), or NULL */
} sy_upgrade_answer;

/* Lists the valid offers of a parsed request in client order, dropping the invalid ones:
 * nothing at all for HTTP/1.0 or when Connection lacks "upgrade"; "h2" (cleartext); "h2c"
 * without exactly one valid base64url HTTP2-Settings (RFC 7540 3.2.1); "websocket" failing RFC
 * 6455 4.2.1. A websocket offer that is the only offer fills *answer instead: 400 (method not
 * GET, missing/duplicate/invalid Sec-WebSocket-Key) or 426 with "Sec-WebSocket-Version: 13"
 * (missing or other version). At most SY_UPGRADE_MAX_OFFERS are kept. Returns 0 with *n set
 * (possibly 0), or SY_EPROTO with answer->status 400 for an Upgrade field that is not a
 * comma-separated list of name[/version] tokens. Slices borrow from the request's buffer.
 * Details: several Upgrade fields form one list in field order; empty elements are skipped.
 * "The only offer" means the list holds exactly one element as sent (before any dropping). When
 * *answer is filled for a lone websocket offer the return is 0 with *n == 0, so the caller
 * checks answer->status before *n. Checks run as: syntax of the whole list (400) first, then
 * method, then Sec-WebSocket-Key (400), then Sec-WebSocket-Version (426). Offer names compare
 * case-insensitively ("WebSocket", "H2C", "tls/1.2"); "h2" is dropped only without a version.
 * h2c does not require the HTTP2-Settings Connection option; its SETTINGS payload holds at most
 * 256 settings, each with a value a SETTINGS frame may carry (ENABLE_PUSH 0/1,
 * INITIAL_WINDOW_SIZE <= 2^31-1, MAX_FRAME_SIZE 16384..2^24-1; RFC 9113 6.5.2). Past
 * SY_UPGRADE_MAX_OFFERS valid offers, the later ones are dropped but still syntax-checked. */
int sy_upgrade_offers(const sy_http1_request *req, sy_upgrade_offer *offers, size_t *n,
                      sy_upgrade_answer *answer);

/* Finds an offer matching a token as in req:offers(): "TLS/1.3" matches name and version,
 * "TLS" any version, names case-insensitively (versions exactly). Returns the index or -1. */
int sy_upgrade_match(const sy_upgrade_offer *offers, size_t n, sy_str token);

/* Computes Sec-WebSocket-Accept for key (RFC 6455 4.2.2): base64(SHA-1(key + GUID)).
 * out receives 28 characters and a NUL. Returns 0, or SY_EINVAL if the digest fails. */
int sy_upgrade_ws_accept(sy_str key, char out[29]);

/* Decodes base64url without padding (HTTP2-Settings) into out (cap bytes). Returns the decoded
 * length, or SY_EPROTO for any invalid character, padding, or length, or SY_ELIMIT when cap is
 * too small. Strict: a length of 4k+1 or non-zero unused bits in the last character is SY_EPROTO,
 * and SY_EPROTO wins over SY_ELIMIT. With out NULL it only validates and returns the length. */
ssize_t sy_upgrade_base64url_decode(sy_str in, uint8_t *out, size_t cap);

#endif
