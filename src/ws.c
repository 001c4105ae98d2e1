/* WebSocket frame headers (RFC 6455 5.2), masking, UTF-8 validation and close-frame rules. */
#include "ws.h"

/* ---- frame headers ---------------------------------------------------------------------- */

static int fail(const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return SY_EPROTO;
}

ssize_t sy_ws_decode_header(const uint8_t *buf, size_t len, sy_ws_header *h, const char **why)
{
    if (len < 2)
        return SY_EAGAIN;
    unsigned len7 = buf[1] & 0x7f;
    size_t need = (size_t)2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (buf[1] & 0x80 ? 4 : 0);

    /* RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0. Failing as soon as
     * that byte is here keeps a peer from making us wait for the rest of a doomed header. */
    if (len7 == 127 && len >= 3 && (buf[2] & 0x80))
        return fail(why, "64-bit frame length with the most significant bit set");
    if (len < need)
        return SY_EAGAIN;

    /* Non-minimal length encodings are accepted: 5.2 binds the sender, and refusing them buys
     * nothing but interoperability trouble. */
    const uint8_t *q = buf + 2;
    uint64_t n = len7;
    if (len7 == 126) {
        n = (uint64_t)q[0] << 8 | q[1];
        q += 2;
    } else if (len7 == 127) {
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | q[i];
        q += 8;
    }
    h->fin = buf[0] >> 7;
    h->rsv = (buf[0] >> 4) & 7;
    h->opcode = buf[0] & 0x0f;
    h->masked = buf[1] >> 7;
    if (h->masked)
        memcpy(h->mask, q, 4);
    else
        memset(h->mask, 0, 4);
    h->len = n;
    h->header_len = need;
    return (ssize_t)need;
}

int sy_ws_check_header(const sy_ws_header *h, int allowed_rsv, const char **why)
{
    /* RFC 6455 5.1: a server MUST close the connection on an unmasked client frame. */
    if (!h->masked)
        return fail(why, "unmasked client frame");
    /* 5.2: RSV bits MUST be 0 unless a negotiated extension defines them. */
    if (h->rsv & ~allowed_rsv)
        return fail(why, "reserved bits set");
    switch (h->opcode) {
    case SY_WS_CONT:
    case SY_WS_TEXT:
    case SY_WS_BINARY: return 0;
    case SY_WS_CLOSE:
    case SY_WS_PING:
    case SY_WS_PONG:
        /* 5.5: control frames are never fragmented and carry at most 125 bytes. */
        if (!h->fin)
            return fail(why, "fragmented control frame");
        if (h->len > 125)
            return fail(why, "control frame longer than 125 bytes");
        return 0;
    default: return fail(why, "reserved opcode");
    }
}

size_t sy_ws_encode_header(uint8_t out[SY_WS_MAX_HEADER], int fin, int rsv, int opcode,
                           uint64_t len)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv & 7) << 4 | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

/* ---- masking ---------------------------------------------------------------------------- */

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

static inline void store64(uint8_t *p, uint64_t w)
{
    memcpy(p, &w, sizeof w);
}

void sy_ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset)
{
    /* RFC 6455 5.3: payload byte j is XORed with mask[j % 4]; p[i] is payload byte offset + i,
     * so m[] is the key rotated to make m[i & 3] apply to p[i]. The word w holds m twice in
     * memory order, so it is right on either endianness. Words are loaded and stored through
     * memcpy, which compiles to plain unaligned moves where the machine has them: frames sit at
     * any offset in the input buffer, and aligning first cost more than it saved on the short
     * messages that dominate. The key three times over, read from offset % 4, is m[0..7]. */
    uint8_t keys[12];
    memcpy(keys, mask, 4);
    memcpy(keys + 4, mask, 4);
    memcpy(keys + 8, mask, 4);
    const uint8_t *m = keys + (offset & 3);
    uint64_t w = load64(m);

    size_t i = 0;
    for (; n - i >= 32; i += 32) {
        store64(p + i, load64(p + i) ^ w);
        store64(p + i + 8, load64(p + i + 8) ^ w);
        store64(p + i + 16, load64(p + i + 16) ^ w);
        store64(p + i + 24, load64(p + i + 24) ^ w);
    }
    for (; n - i >= 8; i += 8)
        store64(p + i, load64(p + i) ^ w);
    /* i moved by multiples of 8, so m[i & 3] still lines up. */
    for (; i < n; i++)
        p[i] ^= m[i & 3];
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */

/* A shift-based DFA for RFC 3629 (the well-formed sequences of Unicode Table 3-7). Each state
 * is a bit offset into a 64-bit row, and the row of a byte holds, at each state's offset, the
 * 6-bit offset of the next state: next = row[byte] >> state. One load and one shift per byte;
 * x86 shifts use the count modulo 64 in hardware, so the "& 63" below costs nothing. Every
 * state but REJECT can still be completed to valid UTF-8, so the DFA fails at the first byte
 * that makes the input invalid, and REJECT is sticky. */
enum {
    U_ACCEPT = 0,    /* at a code point boundary; must stay 0 so a zeroed sy_utf8 is valid */
    U_REJECT = 6,    /* invalid; sticky */
    U_CONT1 = 12,    /* one continuation byte (80..BF) missing */
    U_CONT2 = 18,    /* two missing */
    U_CONT3 = 24,    /* three missing */
    U_AFTER_E0 = 30, /* next must be A0..BF (no overlong 3-byte form), then one more */
    U_AFTER_ED = 36, /* next must be 80..9F (no surrogates), then one more */
    U_AFTER_F0 = 42, /* next must be 90..BF (no overlong 4-byte form), then two more */
    U_AFTER_F4 = 48, /* next must be 80..8F (nothing above U+10FFFF), then two more */
};

/* The transition "from state s to state t" as bits of a row; states not named go to REJECT. */
#define T(s, t) ((uint64_t)(t) << (s))
#define R_REJECT                                                                                   \
    (T(U_ACCEPT, U_REJECT) | T(U_REJECT, U_REJECT) | T(U_CONT1, U_REJECT) | T(U_CONT2, U_REJECT) | \
     T(U_CONT3, U_REJECT) | T(U_AFTER_E0, U_REJECT) | T(U_AFTER_ED, U_REJECT) |                    \
     T(U_AFTER_F0, U_REJECT) | T(U_AFTER_F4, U_REJECT))
/* Clears state s's slot in a row (all other slots REJECT), so that T() can fill it. */
#define FROM(s, t) ((R_REJECT & ~T(s, 63)) | T(s, t))
/* A row of continuation bytes: every pending state advances, except where noted. */
#define R_CONT(e0, ed, f0, f4)                                                                     \
    ((R_REJECT & ~(T(U_CONT1, 63) | T(U_CONT2, 63) | T(U_CONT3, 63) | T(U_AFTER_E0, 63) |          \
                   T(U_AFTER_ED, 63) | T(U_AFTER_F0, 63) | T(U_AFTER_F4, 63))) |                   \
     T(U_CONT1, U_ACCEPT) | T(U_CONT2, U_CONT1) | T(U_CONT3, U_CONT2) | T(U_AFTER_E0, e0) |        \
     T(U_AFTER_ED, ed) | T(U_AFTER_F0, f0) | T(U_AFTER_F4, f4))

#define R_ASCII FROM(U_ACCEPT, U_ACCEPT)
#define R_80_8F R_CONT(U_REJECT, U_CONT1, U_REJECT, U_CONT2)
#define R_90_9F R_CONT(U_REJECT, U_CONT1, U_CONT2, U_REJECT)
#define R_A0_BF R_CONT(U_CONT1, U_REJECT, U_CONT2, U_REJECT)
#define R_LEAD2 FROM(U_ACCEPT, U_CONT1) /* C2..DF */
#define R_E0 FROM(U_ACCEPT, U_AFTER_E0)
#define R_LEAD3 FROM(U_ACCEPT, U_CONT2) /* E1..EC, EE, EF */
#define R_ED FROM(U_ACCEPT, U_AFTER_ED)
#define R_F0 FROM(U_ACCEPT, U_AFTER_F0)
#define R_LEAD4 FROM(U_ACCEPT, U_CONT3) /* F1..F3 */
#define R_F4 FROM(U_ACCEPT, U_AFTER_F4)
/* C0, C1 (overlong 2-byte forms) and F5..FF (above U+10FFFF or not UTF-8) are R_REJECT. */

#define X2(r) r, r
#define X4(r) X2(r), X2(r)
#define X8(r) X4(r), X4(r)
#define X16(r) X8(r), X8(r)

static const uint64_t utf8_rows[256] = {
    X16(R_ASCII), X16(R_ASCII), X16(R_ASCII), X16(R_ASCII),              /* 00..3F */
    X16(R_ASCII), X16(R_ASCII), X16(R_ASCII), X16(R_ASCII),              /* 40..7F */
    X16(R_80_8F),                                                        /* 80..8F */
    X16(R_90_9F),                                                        /* 90..9F */
    X16(R_A0_BF), X16(R_A0_BF),                                          /* A0..BF */
    X2(R_REJECT), X2(R_LEAD2),  X4(R_LEAD2),  X8(R_LEAD2),               /* C0..CF */
    X16(R_LEAD2),                                                        /* D0..DF */
    R_E0,         X8(R_LEAD3),  X4(R_LEAD3),  R_ED,         X2(R_LEAD3), /* E0..EF */
    R_F0,         X2(R_LEAD4),  R_LEAD4,      R_F4,         X8(R_REJECT),
    X2(R_REJECT), R_REJECT, /* F0..FF */
};

#define HIGH_BITS 0x8080808080808080u

/* The number of ASCII bytes before the first non-ASCII one in word w (which has one). */
static inline size_t ascii_prefix(uint64_t w)
{
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (size_t)__builtin_ctzll(w & HIGH_BITS) / 8;
#else
    (void)w;
    return 0;
#endif
}

int sy_utf8_feed(sy_utf8 *u, const uint8_t *p, size_t n)
{
    uint64_t s = u->state;
    size_t i = 0;
    if (!s && n >= 8) {
        /* Short ASCII text, the most common message: 16 bytes per test, then the rest (under
         * 16 bytes) as the last two words, which may overlap bytes already found ASCII. */
        while (n - i >= 16 && !((load64(p + i) | load64(p + i + 8)) & HIGH_BITS))
            i += 16;
        if (n - i < 16 && !((load64(p + (n - i >= 8 ? i : n - 8)) | load64(p + n - 8)) & HIGH_BITS))
            return 0; /* all ASCII: the state stays at a character boundary */
    }
    while (n - i >= 16) {
        /* At a boundary in front of an ASCII word (one test, no branch on the state alone):
         * skip the whole ASCII run, 32 bytes per test, then 8, then up to its first high bit. */
        if (!((load64(p + i) & HIGH_BITS) | s)) {
            i += 8;
            while (n - i >= 32 &&
                   !((load64(p + i) | load64(p + i + 8) | load64(p + i + 16) | load64(p + i + 24)) &
                     HIGH_BITS))
                i += 32;
            while (n - i >= 8) {
                uint64_t w = load64(p + i);
                if (w & HIGH_BITS) {
                    i += ascii_prefix(w);
                    break;
                }
                i += 8;
            }
            continue;
        }
        /* 16 bytes through the DFA. REJECT is sticky, so one test per block finds a failure;
         * the bytes after it in the block change nothing. */
        for (size_t k = 0; k < 16; k++)
            s = utf8_rows[p[i + k]] >> (s & 63);
        i += 16;
        s &= 63;
        if (s == U_REJECT) {
            u->state = U_REJECT;
            return SY_EPROTO;
        }
    }
    for (; i < n; i++)
        s = utf8_rows[p[i]] >> (s & 63);
    s &= 63;
    u->state = (uint32_t)s;
    return s == U_REJECT ? SY_EPROTO : 0;
}

int sy_utf8_complete(const sy_utf8 *u)
{
    return u->state == U_ACCEPT;
}

int sy_utf8_valid(const uint8_t *p, size_t n)
{
    /* A short ASCII text (chat lines, small JSON) in at most four tests of 8 bytes, which may
     * overlap: [0, 16) and [n - 16, n) cover it all. */
    if (n >= 16 && n <= 32 &&
        !((load64(p) | load64(p + 8) | load64(p + n - 16) | load64(p + n - 8)) & HIGH_BITS))
        return 1;
    sy_utf8 u = {0};
    return sy_utf8_feed(&u, p, n) == 0 && sy_utf8_complete(&u);
}

/* ---- close frames ----------------------------------------------------------------------- */

int sy_ws_close_code_valid(int code)
{
    /* RFC 6455 7.4.2: 3000-4999 belong to libraries and applications. */
    if (code >= 3000 && code <= 4999)
        return 1;
    /* 7.4.1 defines 1000-1003 and 1007-1011; IANA's registry (7.4.2) added 1012 Service
     * Restart, 1013 Try Again Later and 1014 Bad Gateway, which browsers and common servers
     * send. 1004 is reserved; 1005, 1006 and 1015 are reserved for local reporting and MUST
     * NOT appear in a Close frame. Everything else below 3000 is unassigned. */
    if (code < 1000 || code > 1014)
        return 0;
    return code != 1004 && code != 1005 && code != 1006;
}

int sy_ws_parse_close(const uint8_t *p, size_t n, int *code, sy_str *reason, const char **why)
{
    *reason = sy_str_make("", 0);
    if (n == 0) {
        /* RFC 6455 7.1.5: a Close frame without a code reports 1005. */
        *code = 1005;
        return 0;
    }
    *code = 1002;
    /* 5.5.1: a body starts with a 2-byte code; 5.5: control payloads are at most 125 bytes. */
    if (n == 1)
        return fail(why, "close payload of 1 byte");
    if (n > 125)
        return fail(why, "close payload longer than 125 bytes");
    int c = p[0] << 8 | p[1];
    if (!sy_ws_close_code_valid(c))
        return fail(why, "invalid close code");
    /* 8.1: invalid UTF-8 in text, the close reason included, fails with 1007. */
    if (!sy_utf8_valid(p + 2, n - 2)) {
        *code = 1007;
        return fail(why, "close reason is not valid UTF-8");
    }
    *code = c;
    *reason = sy_str_make((const char *)p + 2, n - 2);
    return 0;
}

/* ---- permessage-deflate negotiation ----------------------------------------------------- */

/* RFC 9110 5.6.2 tchar, as in upgrade.c (a codec keeps its own copy: no shared internals). */
static int ext_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

typedef struct ext_scan {
    const char *p;
    size_t len, i;
} ext_scan;

static void ext_ows(ext_scan *s)
{
    while (s->i < s->len && (s->p[s->i] == ' ' || s->p[s->i] == '\t'))
        s->i++;
}

static int ext_at(const ext_scan *s, char c)
{
    return s->i < s->len && s->p[s->i] == c;
}

/* A token into *t; 0 when there is none. */
static int ext_token(ext_scan *s, sy_str *t)
{
    size_t start = s->i;
    while (s->i < s->len && ext_tchar((unsigned char)s->p[s->i]))
        s->i++;
    *t = sy_str_make(s->p + start, s->i - start);
    return s->i > start;
}

/* A quoted-string (RFC 9110 5.6.4), unescaped into out (cap bytes); *n is its length, which
 * may exceed cap (then only cap bytes are kept). 0 on a syntax error. */
static int ext_quoted(ext_scan *s, char *out, size_t cap, size_t *n)
{
    *n = 0;
    s->i++; /* the opening quote */
    while (s->i < s->len) {
        unsigned char c = (unsigned char)s->p[s->i++];
        if (c == '"')
            return 1;
        if (c == '\\') {
            if (s->i >= s->len)
                return 0;
            c = (unsigned char)s->p[s->i++];
            if (c != '\t' && (c < 0x20 || c == 0x7f))
                return 0;
        } else if (c != '\t' && (c < 0x20 || c == 0x7f)) {
            return 0; /* qdtext: HTAB, SP, visible and obs-text bytes */
        }
        if (*n < cap)
            out[*n] = (char)c;
        (*n)++;
    }
    return 0; /* no closing quote */
}

/* Skips to the next comma outside a quoted string (or the end). */
static void ext_skip_element(ext_scan *s)
{
    int quoted = 0;
    while (s->i < s->len) {
        char c = s->p[s->i];
        if (quoted) {
            if (c == '\\')
                s->i++;
            else if (c == '"')
                quoted = 0;
        } else if (c == '"') {
            quoted = 1;
        } else if (c == ',') {
            return;
        }
        s->i++;
    }
    if (s->i > s->len)
        s->i = s->len;
}

/* RFC 7692 7.1.2: 1*DIGIT in 8..15, no leading zero ("%x38-39 / %x31 %x30-35"). 0 if not. */
static int window_bits(const char *v, size_t n)
{
    if (n == 1 && (v[0] == '8' || v[0] == '9'))
        return v[0] - '0';
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + v[1] - '0';
    return 0;
}

typedef struct pmd_offer {
    int snct, cnct; /* seen counts */
    int smwb;       /* 0 absent, else the value */
    int cmwb;       /* 0 absent, -1 without a value, else the value */
    int smwb_seen, cmwb_seen;
    int bad;
} pmd_offer;

/* One parameter of a permessage-deflate offer. value is NULL when there was no "=". */
static void pmd_param(pmd_offer *o, sy_str name, const char *value, size_t vlen)
{
    if (sy_str_ieq(name, "server_no_context_takeover")) {
        if (value || o->snct++)
            o->bad = 1;
    } else if (sy_str_ieq(name, "client_no_context_takeover")) {
        if (value || o->cnct++)
            o->bad = 1;
    } else if (sy_str_ieq(name, "server_max_window_bits")) {
        /* 7.1.2.1: the value is required. */
        if (o->smwb_seen++ || !value || !(o->smwb = window_bits(value, vlen)))
            o->bad = 1;
    } else if (sy_str_ieq(name, "client_max_window_bits")) {
        /* 7.1.2.2: the value is optional in an offer. */
        if (o->cmwb_seen++)
            o->bad = 1;
        else if (!value)
            o->cmwb = -1;
        else if (!(o->cmwb = window_bits(value, vlen)))
            o->bad = 1;
    } else {
        o->bad = 1; /* 7.1: an unknown parameter declines the offer */
    }
}

static void pmd_accept(const pmd_offer *o, const sy_pmd_config *cfg, sy_pmd_params *p)
{
    memset(p, 0, sizeof *p);
    /* 7.1.1.1: a server may always answer server_no_context_takeover, and must when asked. */
    p->server_no_context_takeover = cfg->server_no_context_takeover || o->snct;
    /* 7.1.2.1: the answer carries a value no larger than the offer's; the server may also
     * name a smaller window of its own when the offer has none. */
    p->server_window_bits = cfg->server_window_bits;
    p->send_server_bits = cfg->server_window_bits < 15;
    if (o->smwb) {
        if (o->smwb < p->server_window_bits)
            p->server_window_bits = o->smwb;
        p->send_server_bits = 1;
    }
    /* 7.1.1.2: client_no_context_takeover may always be answered. */
    p->client_no_context_takeover = cfg->client_no_context_takeover;
    p->client_window_bits = 15;
    if (o->cmwb && cfg->client_window_bits < 15) {
        /* 7.1.2.2: only when offered, and no larger than an offered value. */
        int bits = cfg->client_window_bits;
        if (o->cmwb > 0 && o->cmwb < bits)
            bits = o->cmwb;
        p->client_window_bits = bits;
        p->send_client_bits = 1;
    } else if (!o->cmwb && cfg->client_window_bits < 15) {
        /* The client's window cannot be limited: keep no context of it between messages. */
        p->client_no_context_takeover = 1;
    }
}

int sy_ws_pmd_negotiate(sy_str value, const sy_pmd_config *cfg, sy_pmd_params *out)
{
    ext_scan s = {value.p, value.p ? value.len : 0, 0};
    while (s.i < s.len) {
        ext_ows(&s);
        if (ext_at(&s, ',')) { /* RFC 9110 5.6.1: empty list elements are ignored */
            s.i++;
            continue;
        }
        if (s.i >= s.len)
            break;
        sy_str name;
        pmd_offer o;
        memset(&o, 0, sizeof o);
        int syntax_ok = ext_token(&s, &name);
        int pmd = syntax_ok && sy_str_ieq(name, "permessage-deflate");
        while (syntax_ok) {
            ext_ows(&s);
            if (s.i >= s.len || ext_at(&s, ','))
                break;
            if (!ext_at(&s, ';')) {
                syntax_ok = 0;
                break;
            }
            s.i++;
            ext_ows(&s);
            sy_str pname;
            if (!ext_token(&s, &pname)) {
                syntax_ok = 0;
                break;
            }
            ext_ows(&s);
            char vbuf[16];
            const char *v = NULL;
            size_t vlen = 0;
            if (ext_at(&s, '=')) {
                s.i++;
                ext_ows(&s);
                if (ext_at(&s, '"')) {
                    /* RFC 6455 9.1: a quoted value must be a token once unquoted. */
                    if (!ext_quoted(&s, vbuf, sizeof vbuf, &vlen)) {
                        syntax_ok = 0;
                        break;
                    }
                    size_t k = 0;
                    while (k < vlen && k < sizeof vbuf && ext_tchar((unsigned char)vbuf[k]))
                        k++;
                    if (vlen == 0 || k < vlen || vlen > sizeof vbuf)
                        o.bad = 1;
                    v = vbuf;
                    if (vlen > sizeof vbuf)
                        vlen = sizeof vbuf;
                } else {
                    sy_str tv;
                    if (!ext_token(&s, &tv)) {
                        syntax_ok = 0;
                        break;
                    }
                    v = tv.p;
                    vlen = tv.len;
                }
            }
            if (pmd)
                pmd_param(&o, pname, v, vlen);
        }
        if (!syntax_ok) {
            ext_skip_element(&s);
            continue;
        }
        if (pmd && !o.bad) {
            pmd_accept(&o, cfg, out);
            return 1;
        }
        if (ext_at(&s, ','))
            s.i++;
    }
    return 0;
}

size_t sy_ws_pmd_format(const sy_pmd_params *p, char out[SY_WS_PMD_ANSWER_MAX])
{
    size_t n = 0;
#define PUT(lit) (memcpy(out + n, lit, sizeof(lit) - 1), n += sizeof(lit) - 1)
    PUT("permessage-deflate");
    if (p->server_no_context_takeover)
        PUT("; server_no_context_takeover");
    if (p->client_no_context_takeover)
        PUT("; client_no_context_takeover");
    if (p->send_server_bits) {
        PUT("; server_max_window_bits=");
        if (p->server_window_bits >= 10)
            out[n++] = '1';
        out[n++] = (char)('0' + p->server_window_bits % 10);
    }
    if (p->send_client_bits) {
        PUT("; client_max_window_bits=");
        if (p->client_window_bits >= 10)
            out[n++] = '1';
        out[n++] = (char)('0' + p->client_window_bits % 10);
    }
#undef PUT
    out[n] = '\0';
    return n;
}
