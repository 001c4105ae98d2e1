/* HTTP/1.1 request head parser, chunked body decoder, token lists and reason phrases (RFC 9112). */
#include "http1.h"

#include <limits.h>

/* The scanners below have three tiers; the build (or a test) can turn the first two off with
 * -DSY_HTTP1_NO_SSE2 and -DSY_HTTP1_NO_CTZ to exercise the portable paths. */
#if defined(__SSE2__) && !defined(SY_HTTP1_NO_SSE2)
#define USE_SSE2 1
#include <emmintrin.h>
#else
#define USE_SSE2 0
#endif

/* Character classes: 1 = tchar (RFC 9110 5.6.2), 2 = allowed in a Host value or an authority
 * (RFC 3986 unreserved / pct-encoded / sub-delims / ":" / "[" / "]"). */
enum { C_TCHAR = 1, C_HOST = 2 };

static const unsigned char char_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    0, 3, 0, 1, 3, 3, 3, 3, 2, 2, 3, 3, 2, 3, 3, 0, /* 0x20  !"#$%&'()*+,-./ */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 0, 2, 0, 0, /* 0x30 0123456789:;<=>? */
    0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* 0x40 @ABCDEFGHIJKLMNO */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 0, 2, 1, 3, /* 0x50 PQRSTUVWXYZ[\]^_ */
    1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* 0x60 `abcdefghijklmno */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 1, 0, 3, 0, /* 0x70 pqrstuvwxyz{|}~  */
    /* 0x80..0xff: none */
};

static inline int is_tchar(char c)
{
    return char_class[(unsigned char)c] & C_TCHAR;
}

static inline int is_host_char(char c)
{
    return char_class[(unsigned char)c] & C_HOST;
}

/* VCHAR: visible ASCII, 0x21..0x7e. */
static inline int is_vchar(char c)
{
    return (unsigned char)((unsigned char)c - 0x21) < 0x5e;
}

/* field-vchar / SP / HTAB / obs-text: everything but CTLs other than HTAB (RFC 9110 5.5). */
static inline int is_field_char(char c)
{
    unsigned char u = (unsigned char)c;
    return u >= 0x20 ? u != 0x7f : u == '\t';
}

static inline int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Case-insensitive comparison of p[0..n) with a lower-case literal of the same length n. */
static int ieq_n(const char *p, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)p[i]) != (unsigned char)lit[i])
            return 0;
    return 1;
}

#define IEQ(p, n, lit) ((n) == sizeof(lit) - 1 && ieq_n((p), (lit), sizeof(lit) - 1))

/* Scanning many bytes per step: 16 with SSE2 (baseline on x86-64), then 8 in a 64-bit word, then
 * one at a time. Every load stays inside [p, end): nothing is read past the caller's buffer.
 * The word tests set bit 7 of each byte that fails the class, with no carry between bytes, so
 * the lowest set bit (on little-endian) is the first failing byte. */
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) &&                                 \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && (defined(__GNUC__) || defined(__clang__)) &&      \
    !defined(SY_HTTP1_NO_CTZ)
#define WORD_POS 1 /* the first failing byte of a word can be located with ctz */
#else
#define WORD_POS 0
#endif

#define W_ONES ((uint64_t)0x0101010101010101u)
#define W_HIGH (W_ONES * 0x80)
#define W_LOW7 (W_ONES * 0x7f)

/* Bytes outside 0x21..0x7e. */
static inline uint64_t word_not_vchar(uint64_t w)
{
    uint64_t low7 = w & W_LOW7;
    uint64_t below = ~((low7 + W_ONES * (0x80 - 0x21)) | w); /* < 0x21 */
    uint64_t above = (low7 + W_ONES) | w;                    /* >= 0x7f */
    return (below | above) & W_HIGH;
}

/* Bytes below 0x20 (HTAB included: the caller steps over it) or equal to 0x7f. */
static inline uint64_t word_not_field(uint64_t w)
{
    uint64_t low7 = w & W_LOW7;
    uint64_t below = ~((low7 + W_ONES * (0x80 - 0x20)) | w); /* < 0x20 */
    uint64_t del = (low7 + W_ONES) & ~w;                     /* == 0x7f */
    return (below | del) & W_HIGH;
}

/* Returns the first byte in [p, end) that is not a VCHAR, or end. */
static const char *skip_vchar(const char *p, const char *end)
{
#if USE_SSE2
    const __m128i lo = _mm_set1_epi8(0x20), hi = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        /* Signed compares: bytes >= 0x80 are negative and fail "> 0x20". */
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i ok = _mm_and_si128(_mm_cmpgt_epi8(v, lo), _mm_cmplt_epi8(v, hi));
        unsigned bad = (unsigned)_mm_movemask_epi8(ok) ^ 0xffffu;
        if (bad)
            return p + __builtin_ctz(bad);
        p += 16;
    }
#endif
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        uint64_t bad = word_not_vchar(w);
        if (bad) {
#if WORD_POS
            return p + (__builtin_ctzll(bad) >> 3);
#else
            break;
#endif
        }
        p += 8;
    }
    while (p < end && is_vchar(*p))
        p++;
    return p;
}

/* Returns the first byte in [p, end) that is not a field character (see is_field_char), or end. */
static const char *skip_field_chars(const char *p, const char *end)
{
#if USE_SSE2
    const __m128i flip = _mm_set1_epi8((char)0x80), ctl = _mm_set1_epi8((char)(0x20 ^ 0x80));
    const __m128i tab = _mm_set1_epi8('\t'), del = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        /* Flipping bit 7 turns the unsigned "< 0x20" into a signed compare. */
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i below = _mm_cmplt_epi8(_mm_xor_si128(v, flip), ctl);
        __m128i bad =
            _mm_or_si128(_mm_andnot_si128(_mm_cmpeq_epi8(v, tab), below), _mm_cmpeq_epi8(v, del));
        unsigned m = (unsigned)_mm_movemask_epi8(bad);
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
#endif
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        uint64_t bad = word_not_field(w);
        if (bad) {
#if WORD_POS
            p += __builtin_ctzll(bad) >> 3;
            if (*p != '\t')
                return p;
            p++;
            continue;
#else
            break;
#endif
        }
        p += 8;
    }
    while (p < end && is_field_char(*p))
        p++;
    return p;
}

/* Returns the first byte in [p, end) that is not a tchar, or end. The SSE2 step accepts the
 * usual letters, digits and "-"; the other tchars are stepped over one by one. */
static const char *skip_tchar(const char *p, const char *end)
{
#if USE_SSE2
    const __m128i case_bit = _mm_set1_epi8(0x20), dash = _mm_set1_epi8('-');
    const __m128i a1 = _mm_set1_epi8('a' - 1), z1 = _mm_set1_epi8('z' + 1);
    const __m128i d1 = _mm_set1_epi8('0' - 1), d2 = _mm_set1_epi8('9' + 1);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i l = _mm_or_si128(v, case_bit);
        __m128i alpha = _mm_and_si128(_mm_cmpgt_epi8(l, a1), _mm_cmplt_epi8(l, z1));
        __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(v, d1), _mm_cmplt_epi8(v, d2));
        __m128i ok = _mm_or_si128(_mm_or_si128(alpha, digit), _mm_cmpeq_epi8(v, dash));
        unsigned bad = (unsigned)_mm_movemask_epi8(ok) ^ 0xffffu;
        if (bad) {
            p += __builtin_ctz(bad);
            if (!is_tchar(*p))
                return p;
            p++;
            continue;
        }
        p += 16;
    }
#endif
    while (p < end && is_tchar(*p))
        p++;
    return p;
}

/* Running state for the header fields whose meaning spans several lines. */
typedef struct head_state {
    int nhost;
    int te_seen;    /* a Transfer-Encoding field was present */
    int te_chunked; /* times "chunked" was listed */
} head_state;

/* RFC 9110 8.6: Content-Length = 1*DIGIT; a list of identical values ("42, 42") is accepted as
 * the single value, as are repeated fields with the same value. Returns 0 or sets *why. */
static int on_content_length(sy_http1_request *req, sy_str v, const char **why)
{
    size_t pos = 0;
    sy_str tok;
    int any = 0;
    while (sy_http1_next_token(v, &pos, &tok)) {
        int64_t n = 0;
        for (size_t i = 0; i < tok.len; i++) {
            unsigned d = (unsigned)((unsigned char)tok.p[i] - '0');
            if (d > 9) {
                *why = "invalid content-length";
                return -1;
            }
            if (n > (INT64_MAX - (int64_t)d) / 10) {
                *why = "content-length too large";
                return -1;
            }
            n = n * 10 + (int64_t)d;
        }
        if (req->content_length >= 0 && req->content_length != n) {
            *why = "conflicting content-length";
            return -1;
        }
        req->content_length = n;
        any = 1;
    }
    if (!any) {
        *why = "invalid content-length";
        return -1;
    }
    return 0;
}

/* RFC 9112 6.1: the codings are a list across all Transfer-Encoding fields, in order. Returns 0,
 * or a status (400, 501) with *why. */
static int on_transfer_encoding(head_state *st, sy_str v, const char **why)
{
    size_t pos = 0;
    sy_str tok;
    int any = 0;
    while (sy_http1_next_token(v, &pos, &tok)) {
        any = 1;
        if (IEQ(tok.p, tok.len, "chunked")) {
            /* RFC 9112 6.1: chunked must not be applied more than once. */
            if (st->te_chunked++) {
                *why = "chunked transfer coding repeated";
                return 400;
            }
        } else {
            /* The core decodes chunked only; a body under gzip etc. would reach the app still
             * encoded, so any other coding is refused (RFC 9112 6.1: 501). */
            *why = "unsupported transfer coding";
            return 501;
        }
    }
    if (!any) {
        *why = "invalid transfer-encoding";
        return 400;
    }
    st->te_seen = 1;
    return 0;
}

static void on_connection(sy_http1_request *req, sy_str v)
{
    size_t pos = 0;
    sy_str tok;
    while (sy_http1_next_token(v, &pos, &tok)) {
        if (IEQ(tok.p, tok.len, "close"))
            req->connection |= SY_CONN_CLOSE;
        else if (IEQ(tok.p, tok.len, "keep-alive"))
            req->connection |= SY_CONN_KEEP_ALIVE;
        else if (IEQ(tok.p, tok.len, "upgrade"))
            req->connection |= SY_CONN_UPGRADE;
        else if (IEQ(tok.p, tok.len, "http2-settings"))
            req->connection |= SY_CONN_HTTP2_SETTINGS;
    }
}

static int valid_host(sy_str v)
{
    for (size_t i = 0; i < v.len; i++)
        if (!is_host_char(v.p[i]))
            return 0;
    return 1;
}

/* Applies one complete field line to the derived semantics. Returns 0, or a status with *why. */
static int on_header(sy_http1_request *req, head_state *st, const sy_http1_header *h,
                     const char **why)
{
    const char *n = h->name.p;
    switch (h->name.len) {
    case 4:
        if (ieq_n(n, "host", 4)) {
            /* RFC 9112 3.2: more than one Host, or an invalid value, is a 400. */
            if (st->nhost++) {
                *why = "multiple host header fields";
                return 400;
            }
            if (!valid_host(h->value)) {
                *why = "invalid host header field";
                return 400;
            }
            req->host = h->value;
        }
        break;
    case 6:
        if (ieq_n(n, "expect", 6) && IEQ(h->value.p, h->value.len, "100-continue"))
            req->expect_continue = 1;
        break;
    case 7:
        if (ieq_n(n, "upgrade", 7))
            req->has_upgrade = 1;
        break;
    case 10:
        if (ieq_n(n, "connection", 10))
            on_connection(req, h->value);
        break;
    case 14:
        if (ieq_n(n, "content-length", 14) && on_content_length(req, h->value, why) < 0)
            return 400;
        break;
    case 17:
        if (ieq_n(n, "transfer-encoding", 17))
            return on_transfer_encoding(st, h->value, why);
        break;
    default: break;
    }
    return 0;
}

static int is_scheme_char(char c, int first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return !first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.');
}

static int is_method(sy_str m, const char *lit, size_t n)
{
    return m.len == n && memcmp(m.p, lit, n) == 0;
}

/* RFC 9112 3.2: classifies the request-target and fills path, query and authority.
 * The target is already known to be non-empty visible ASCII. Returns 0 or -1 with *why. */
static int parse_target(sy_http1_request *req, const char **why)
{
    const char *t = req->target.p;
    size_t n = req->target.len;
    int connect = is_method(req->method, "CONNECT", 7);

    if (connect) {
        /* RFC 9112 3.2.3: authority-form = uri-host ":" port, and only for CONNECT. */
        size_t colon = n;
        while (colon > 0 && t[colon - 1] != ':')
            colon--;
        if (colon < 2 || colon == n)
            goto bad;
        for (size_t i = colon; i < n; i++)
            if (t[i] < '0' || t[i] > '9')
                goto bad;
        for (size_t i = 0; i < colon - 1; i++)
            if (!is_host_char(t[i]))
                goto bad;
        req->target_form = SY_TARGET_AUTHORITY;
        req->path = req->target;
        return 0;
    }

    if (t[0] == '/') {
        const char *q = memchr(t, '?', n);
        req->target_form = SY_TARGET_ORIGIN;
        if (q) {
            req->path = sy_str_make(t, (size_t)(q - t));
            req->query = sy_str_make(q + 1, n - (size_t)(q - t) - 1);
        } else {
            req->path = req->target;
        }
        return 0;
    }

    if (n == 1 && t[0] == '*') {
        /* RFC 9112 3.2.4: asterisk-form is only for a server-wide OPTIONS. */
        if (!is_method(req->method, "OPTIONS", 7))
            goto bad;
        req->target_form = SY_TARGET_ASTERISK;
        req->path = req->target;
        return 0;
    }

    /* RFC 9112 3.2.2 absolute-form; scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ). */
    size_t i = 0;
    while (i < n && is_scheme_char(t[i], i == 0))
        i++;
    if (i == 0 || n - i < 3 || memcmp(t + i, "://", 3) != 0)
        goto bad;
    i += 3;
    size_t a = i;
    while (i < n && t[i] != '/' && t[i] != '?') {
        /* RFC 9110 4.2.4: userinfo is deprecated and treated as an error. */
        if (!is_host_char(t[i]))
            goto bad;
        i++;
    }
    if (i == a)
        goto bad;
    req->target_form = SY_TARGET_ABSOLUTE;
    req->authority = sy_str_make(t + a, i - a);
    if (i == n || t[i] == '?') {
        /* An empty path means "/": take the last "/" of "://" so every slice stays in buf. */
        req->path = sy_str_make(t + a - 1, 1);
    } else {
        const char *q = memchr(t + i, '?', n - i);
        size_t pe = q ? (size_t)(q - t) : n;
        req->path = sy_str_make(t + i, pe - i);
        i = pe;
    }
    if (i < n)
        req->query = sy_str_make(t + i + 1, n - i - 1);
    return 0;

bad:
    *why = "invalid request target";
    return -1;
}

/* The head did not end within max_head bytes (len >= max_head). 414 when the request line,
 * counted from its first byte through its LF, does not fit in max_head bytes; else 431. */
static int limit_status(const char *buf, size_t len, size_t max_head, const char *rl, int rl_done)
{
    if (!rl || rl_done)
        return 431;
    size_t start = (size_t)(rl - buf);
    if (len - start < max_head)
        return 431; /* leading empty lines used up the room; the line may still fit */
    /* Bytes [start, max_head) were scanned without an LF; look at the rest of the line's room. */
    if (memchr(buf + max_head, '\n', start))
        return 431;
    return 414;
}

ssize_t sy_http1_parse_head(const char *buf, size_t len, const sy_http1_limits *limits,
                            sy_http1_request *req, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;

    sy_http1_header *headers = req->headers;
    memset(req, 0, sizeof(*req));
    req->headers = headers;
    req->content_length = -1;

    if (len == 0)
        return SY_EAGAIN;

    size_t max_head = limits->max_head;
    const char *p = buf;
    const char *end = buf + (len < max_head ? len : max_head);
    const char *rl = NULL;
    int rl_done = 0;
    head_state st = {0, 0, 0};
    int status = 400;

    /* RFC 9112 2.2: ignore empty lines before the request-line. */
    for (;;) {
        if (p == end)
            goto incomplete;
        if (*p == '\n') {
            p++;
        } else if (*p == '\r') {
            if (p + 1 == end)
                goto incomplete;
            if (p[1] != '\n') {
                *why = "invalid line ending";
                goto fail;
            }
            p += 2;
        } else {
            break;
        }
    }

    /* request-line = method SP request-target SP HTTP-version (RFC 9112 3) */
    rl = p;
    p = skip_tchar(p, end);
    if (p == end)
        goto incomplete;
    if (*p != ' ' || p == rl) {
        *why = "invalid method";
        goto fail;
    }
    req->method = sy_str_make(rl, (size_t)(p - rl));
    p++;

    const char *t0 = p;
    p = skip_vchar(p, end);
    if (p == end)
        goto incomplete;
    if (*p != ' ' || p == t0) {
        *why = (*p == '\r' || *p == '\n' || *p == ' ') ? "invalid request line"
                                                       : "invalid request target";
        goto fail;
    }
    req->target = sy_str_make(t0, (size_t)(p - t0));
    p++;

    /* HTTP-version is case-sensitive; only 1.0 and 1.1 are served here. */
    size_t avail = (size_t)(end - p);
    if (avail < 8) {
        if (memcmp(p, "HTTP/1.", avail < 7 ? avail : 7) != 0) {
            *why = "unsupported HTTP version";
            goto fail;
        }
        goto incomplete;
    }
    if (memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1')) {
        *why = "unsupported HTTP version";
        goto fail;
    }
    req->version = p[7] == '1' ? 11 : 10;
    p += 8;
    if (p == end)
        goto incomplete;
    if (*p == '\r') {
        if (p + 1 == end)
            goto incomplete;
        if (p[1] != '\n') {
            *why = "invalid line ending";
            goto fail;
        }
        p += 2;
    } else if (*p == '\n') {
        p++;
    } else {
        *why = is_vchar(*p) ? "unsupported HTTP version" : "invalid request line";
        goto fail;
    }
    rl_done = 1;

    if (parse_target(req, why) < 0)
        goto fail;

    /* field-line = field-name ":" OWS field-value OWS (RFC 9112 5) */
    size_t max_headers = limits->max_headers;
    for (;;) {
        if (p == end)
            goto incomplete;
        char c = *p;
        if (c == '\r') {
            if (p + 1 == end)
                goto incomplete;
            if (p[1] != '\n') {
                *why = "invalid line ending";
                goto fail;
            }
            p += 2;
            break;
        }
        if (c == '\n') {
            p++;
            break;
        }
        if (is_ows(c)) {
            /* RFC 9112 5.2 (obs-fold) and 2.2 (whitespace after the start-line): reject. */
            *why = req->nheaders ? "obsolete line folding" : "whitespace after request line";
            goto fail;
        }
        if (req->nheaders == max_headers) {
            *why = "too many header fields";
            status = 431;
            goto fail_limit;
        }

        const char *n0 = p;
        p = skip_tchar(p, end);
        if (p == end)
            goto incomplete;
        if (*p != ':' || p == n0) {
            /* RFC 9112 5.1: no whitespace between the field name and the colon. */
            *why = is_ows(*p) && p != n0 ? "whitespace before colon" : "invalid header field name";
            goto fail;
        }
        const char *n1 = p++;

        while (p < end && is_ows(*p))
            p++;
        const char *v0 = p;
        p = skip_field_chars(p, end);
        if (p == end)
            goto incomplete;
        const char *v1 = p;
        if (*p == '\r') {
            if (p + 1 == end)
                goto incomplete;
            if (p[1] != '\n') {
                *why = "invalid header field value";
                goto fail;
            }
            p += 2;
        } else if (*p == '\n') {
            p++;
        } else {
            *why = "invalid header field value";
            goto fail;
        }
        while (v1 > v0 && is_ows(v1[-1]))
            v1--;

        sy_http1_header *h = &headers[req->nheaders++];
        h->name = sy_str_make(n0, (size_t)(n1 - n0));
        h->value = sy_str_make(v0, (size_t)(v1 - v0));
        int rc = on_header(req, &st, h, why);
        if (rc) {
            status = rc;
            goto fail;
        }
    }

    /* The whole head is here: checks that need every field. */
    if (st.te_seen) {
        /* RFC 9112 6.3: CL with TE is a smuggling vector; 6.1: TE in HTTP/1.0 is faulty. */
        if (req->content_length >= 0) {
            *why = "both content-length and transfer-encoding";
            goto fail;
        }
        if (req->version == 10) {
            *why = "transfer-encoding in HTTP/1.0";
            goto fail;
        }
        req->chunked = 1;
    }
    if (req->version == 11 && !st.nhost) {
        *why = "missing host header field";
        goto fail;
    }
    /* RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored. */
    if (req->version == 10)
        req->expect_continue = 0;
    /* RFC 9112 9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive". */
    if (req->connection & SY_CONN_CLOSE)
        req->keep_alive = 0;
    else
        req->keep_alive = req->version == 11 || (req->connection & SY_CONN_KEEP_ALIVE);

    req->head_len = (size_t)(p - buf);
    return (ssize_t)req->head_len;

incomplete:
    if (len < max_head)
        return SY_EAGAIN;
    status = limit_status(buf, len, max_head, rl, rl_done);
    *why = status == 414 ? "request line too long" : "request header section too large";
fail_limit:
    req->status = status;
    return SY_ELIMIT;

fail:
    req->status = status;
    return SY_EPROTO;
}

const sy_http1_header *sy_http1_find(const sy_http1_request *req, const char *lower_name)
{
    size_t n = strlen(lower_name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const sy_http1_header *h = &req->headers[i];
        if (h->name.len == n && ieq_n(h->name.p, lower_name, n))
            return h;
    }
    return NULL;
}

size_t sy_http1_count(const sy_http1_request *req, const char *lower_name)
{
    size_t n = strlen(lower_name), count = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const sy_http1_header *h = &req->headers[i];
        if (h->name.len == n && ieq_n(h->name.p, lower_name, n))
            count++;
    }
    return count;
}

int sy_http1_next_token(sy_str list, size_t *pos, sy_str *tok)
{
    size_t i = *pos;
    /* RFC 9110 5.6.1: empty elements and OWS around commas are skipped. */
    while (i < list.len && (list.p[i] == ',' || is_ows(list.p[i])))
        i++;
    if (i == list.len) {
        *pos = i;
        *tok = sy_str_make(NULL, 0);
        return 0;
    }
    size_t start = i;
    while (i < list.len && list.p[i] != ',')
        i++;
    size_t e = i;
    while (is_ows(list.p[e - 1]))
        e--; /* stops at start: list.p[start] is neither OWS nor a comma */
    *pos = i;
    *tok = sy_str_make(list.p + start, e - start);
    return 1;
}

/* Chunked decoder states; 0 is the start of a chunk-size line, so a zeroed struct is valid. */
enum {
    CH_SIZE_START = 0, /* first hex digit of chunk-size */
    CH_SIZE,           /* more hex digits */
    CH_SIZE_WS,        /* BWS after the size: only ";" may follow */
    CH_EXT,            /* chunk-ext, skipped up to CR */
    CH_SIZE_LF,        /* LF ending the size line */
    CH_DATA,           /* remaining bytes of chunk-data */
    CH_DATA_CR,        /* CRLF after chunk-data */
    CH_DATA_LF,
    CH_TR_START, /* start of a trailer line, or the final CRLF */
    CH_TR_NAME,
    CH_TR_VALUE,
    CH_TR_LF,
    CH_TR_END_LF,
    CH_DONE,
    CH_ERROR,
};

#define CH_MAX_LINE 4096
#define CH_MAX_TRAILER 16384

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

ssize_t sy_http1_chunked_parse(sy_http1_chunked *c, const char *in, size_t len, sy_str *data,
                               const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    data->p = in;
    data->len = 0;
    if (c->done)
        return 0;
    if (c->state == CH_ERROR) {
        *why = "invalid chunked body";
        return SY_EPROTO;
    }

    size_t i = 0;
    while (i < len) {
        if (c->state == CH_DATA) {
            size_t n = len - i;
            if (n > c->remaining)
                n = (size_t)c->remaining;
            data->p = in + i;
            data->len = n;
            c->remaining -= n;
            c->total += n;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            return (ssize_t)(i + n);
        }

        unsigned char ch = (unsigned char)in[i++];
        if (c->state >= CH_TR_START) {
            /* During the trailer section `remaining` counts its bytes. */
            if (++c->remaining > CH_MAX_TRAILER) {
                *why = "trailer section too large";
                goto fail;
            }
        }
        switch (c->state) {
        case CH_SIZE_START: {
            int v = hex_value(ch);
            if (v < 0) {
                *why = "invalid chunk size";
                goto fail;
            }
            c->remaining = (uint64_t)v;
            c->line_len = 1;
            c->state = CH_SIZE;
            break;
        }
        case CH_SIZE: {
            int v = hex_value(ch);
            if (v >= 0) {
                if (c->line_len == 16) {
                    *why = "chunk size too long";
                    goto fail;
                }
                c->remaining = c->remaining << 4 | (uint64_t)v;
                c->line_len++;
                break;
            }
            /* RFC 9112 7.1.1: BWS is allowed before the ";" of a chunk extension. */
            if (ch == ' ' || ch == '\t') {
                c->state = CH_SIZE_WS;
            } else if (ch == ';') {
                c->state = CH_EXT;
            } else if (ch == '\r') {
                c->state = CH_SIZE_LF;
                break;
            } else {
                *why = "invalid chunk size";
                goto fail;
            }
            c->line_len++;
            break;
        }
        case CH_SIZE_WS:
            if (ch == ';') {
                c->state = CH_EXT;
            } else if (ch != ' ' && ch != '\t') {
                *why = "invalid chunk size";
                goto fail;
            }
            if (++c->line_len > CH_MAX_LINE) {
                *why = "chunk size line too long";
                goto fail;
            }
            break;
        case CH_EXT:
            /* Extensions are ignored, but their bytes must be field characters. */
            if (ch == '\r') {
                c->state = CH_SIZE_LF;
                break;
            }
            if (!is_field_char((char)ch)) {
                *why = "invalid chunk extension";
                goto fail;
            }
            if (++c->line_len > CH_MAX_LINE) {
                *why = "chunk size line too long";
                goto fail;
            }
            break;
        case CH_SIZE_LF:
            if (ch != '\n') {
                *why = "invalid chunk size line";
                goto fail;
            }
            c->line_len = 0;
            /* last-chunk: the trailer section follows; `remaining` now counts its bytes. */
            c->state = c->remaining ? CH_DATA : CH_TR_START;
            break;
        case CH_DATA_CR:
            if (ch != '\r') {
                *why = "missing crlf after chunk data";
                goto fail;
            }
            c->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (ch != '\n') {
                *why = "missing crlf after chunk data";
                goto fail;
            }
            c->state = CH_SIZE_START;
            break;
        case CH_TR_START:
            if (ch == '\r') {
                c->state = CH_TR_END_LF;
            } else if (is_tchar((char)ch)) {
                c->line_len = 1;
                c->state = CH_TR_NAME;
            } else {
                *why = "invalid trailer field";
                goto fail;
            }
            break;
        case CH_TR_NAME:
            if (ch == ':') {
                c->state = CH_TR_VALUE;
            } else if (!is_tchar((char)ch)) {
                *why = "invalid trailer field";
                goto fail;
            }
            if (++c->line_len > CH_MAX_LINE) {
                *why = "trailer line too long";
                goto fail;
            }
            break;
        case CH_TR_VALUE:
            if (ch == '\r') {
                c->state = CH_TR_LF;
                break;
            }
            if (!is_field_char((char)ch)) {
                *why = "invalid trailer field";
                goto fail;
            }
            if (++c->line_len > CH_MAX_LINE) {
                *why = "trailer line too long";
                goto fail;
            }
            break;
        case CH_TR_LF:
            if (ch != '\n') {
                *why = "invalid trailer field";
                goto fail;
            }
            c->state = CH_TR_START;
            break;
        case CH_TR_END_LF:
            if (ch != '\n') {
                *why = "invalid trailer field";
                goto fail;
            }
            c->state = CH_DONE;
            c->remaining = 0;
            c->line_len = 0;
            c->done = 1;
            data->p = in + i;
            return (ssize_t)i;
        default: *why = "invalid chunked body"; goto fail;
        }
    }
    data->p = in + i;
    return (ssize_t)i;

fail:
    c->state = CH_ERROR;
    return SY_EPROTO;
}

const char *sy_http1_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 511: return "Network Authentication Required";
    default: return "Unknown";
    }
}
