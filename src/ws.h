/* WebSocket frame codec (RFC 6455 5.2), masking, incremental UTF-8 validation, close-code
 * rules and the permessage-deflate negotiation (RFC 7692): pure, no I/O, no allocation.
 * Messages are built above this, under their own limits; the zlib streams live in pmd.c. */
#ifndef SY_WS_H
#define SY_WS_H

#include "sy_base.h"

enum {
    SY_WS_CONT = 0x0,
    SY_WS_TEXT = 0x1,
    SY_WS_BINARY = 0x2,
    SY_WS_CLOSE = 0x8,
    SY_WS_PING = 0x9,
    SY_WS_PONG = 0xA,
};

#define SY_WS_MAX_HEADER 14

typedef struct sy_ws_header {
    uint8_t fin;       /* 1 on the final fragment */
    uint8_t rsv;       /* the three RSV bits as 0..7 (RSV1 = 4) */
    uint8_t opcode;    /* 0..15 as sent */
    uint8_t masked;    /* the MASK bit */
    uint8_t mask[4];   /* the masking key when masked */
    uint64_t len;      /* payload length */
    size_t header_len; /* 2..14 */
} sy_ws_header;

/* Decodes one frame header from buf[0..len). Returns header_len (> 0) and fills *h; SY_EAGAIN
 * when more bytes are needed; SY_EPROTO with *why for a 64-bit length with the most significant
 * bit set (RFC 6455 5.2), as soon as the byte holding that bit is there. Everything else
 * (reserved opcodes, RSV bits, control frame rules, masking requirements) is the caller's
 * policy, checked with sy_ws_check_header. Non-minimal length encodings are accepted. *h is
 * left alone unless the result is > 0; why may be NULL. */
ssize_t sy_ws_decode_header(const uint8_t *buf, size_t len, sy_ws_header *h, const char **why);

/* Checks a client frame header against RFC 6455 for a server: masked (5.1), known opcode (5.2),
 * RSV bits only those in allowed_rsv (negotiated extensions, e.g. 4 for permessage-deflate on
 * the first data frame), control frames final and at most 125 bytes (5.5). Returns 0 or
 * SY_EPROTO with *why; the close code for every failure is 1002. */
int sy_ws_check_header(const sy_ws_header *h, int allowed_rsv, const char **why);

/* Encodes an unmasked (server) frame header into out. Returns its length (2, 4 or 10). */
size_t sy_ws_encode_header(uint8_t out[SY_WS_MAX_HEADER], int fin, int rsv, int opcode,
                           uint64_t len);

/* Unmasks (or masks) n bytes in place; offset is the position of p[0] within the payload, so a
 * payload can be processed in pieces. Works a machine word at a time. */
void sy_ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);

/* Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, <= U+10FFFF); valid when
 * zeroed. A code point may be split across calls. */
typedef struct sy_utf8 {
    uint32_t state; /* 0: at a code point boundary; else the validator's pending state */
} sy_utf8;

/* Feeds n bytes. Returns 0 while valid so far, SY_EPROTO once a byte that can never be part of
 * valid UTF-8 was fed (fail fast: the call that feeds the first such byte fails, whatever
 * follows it; at most 15 bytes after it are read, never past p[n - 1]). A failure is sticky:
 * every later call fails too. */
int sy_utf8_feed(sy_utf8 *u, const uint8_t *p, size_t n);

/* 1 when the bytes fed so far end on a code point boundary (a complete text), else 0. */
int sy_utf8_complete(const sy_utf8 *u);

/* Validates a whole buffer: 1 if valid UTF-8, else 0. */
int sy_utf8_valid(const uint8_t *p, size_t n);

/* 1 if code may appear in a Close frame from a peer (RFC 6455 7.4: 1000-1003, 1007-1011,
 * 3000-4999, plus 1012-1014 that IANA registered later), else 0; 1004-1006 and 1015 are not. */
int sy_ws_close_code_valid(int code);

/* Validates a close payload: empty, or 2-byte code (valid per above) + UTF-8 reason, total <=
 * 125. Returns 0 and sets *code (1005 when empty) and *reason, which borrows from p (valid
 * until p changes; empty when there is none); else SY_EPROTO with *why (may be NULL), *reason
 * empty and *code set to the close code to answer with (1002 protocol error, 1007 bad UTF-8). */
int sy_ws_parse_close(const uint8_t *p, size_t n, int *code, sy_str *reason, const char **why);

/* ---- permessage-deflate negotiation (RFC 7692 5, 7.1) ------------------------------------- */

/* What the server asks for (a memory preset). */
typedef struct sy_pmd_config {
    int server_no_context_takeover; /* 1: always answer server_no_context_takeover */
    int client_no_context_takeover; /* 1: always answer client_no_context_takeover */
    int server_window_bits;         /* 9..15: the largest window our compressor uses */
    int client_window_bits;         /* 9..15: the window asked of the client; below 15, a client
                                     * that cannot be limited (no client_max_window_bits in its
                                     * offer) is asked for client_no_context_takeover instead */
} sy_pmd_config;

/* What was agreed for one connection. */
typedef struct sy_pmd_params {
    int server_no_context_takeover; /* our compressor resets after every message */
    int client_no_context_takeover; /* the client's compressor resets after every message */
    int server_window_bits;         /* 8..15: our compressor stays within it; zlib's raw deflate
                                     * has no 8-bit window, so at 8 we never compress */
    int client_window_bits;         /* 8..15: the client's window; inflate with at least 9 */
    int send_server_bits;           /* answer server_max_window_bits=server_window_bits */
    int send_client_bits;           /* answer client_max_window_bits=client_window_bits */
} sy_pmd_params;

/* The longest answer sy_ws_pmd_format writes, NUL included. */
#define SY_WS_PMD_ANSWER_MAX 160

/* Reads a Sec-WebSocket-Extensions value (several fields joined with ", " form one list, RFC
 * 6455 9.1) and picks the first acceptable permessage-deflate offer under cfg. An offer is
 * declined (and the next one considered) when it has an unknown parameter, a parameter twice,
 * a value where none belongs or a missing or invalid one (window bits are 8..15, written as in
 * RFC 7692 7.1.2 without leading zeros, as a token or a quoted string), or broken syntax; a
 * syntax error skips to the next comma outside a quoted string. Other extensions are ignored.
 * Returns 1 and fills *out, or 0 when no offer is acceptable (the handshake goes on without the
 * extension). Never reads past value.p[value.len - 1]. */
int sy_ws_pmd_negotiate(sy_str value, const sy_pmd_config *cfg, sy_pmd_params *out);

/* Writes the response extension ("permessage-deflate; ...") for p into out, NUL-terminated,
 * and returns its length (< SY_WS_PMD_ANSWER_MAX). */
size_t sy_ws_pmd_format(const sy_pmd_params *p, char out[SY_WS_PMD_ANSWER_MAX]);

#endif
