/* Upgrade offer parsing and validation (RFC 9110 7.8), WebSocket accept key, base64 codecs. */
#include "upgrade.h"

#include <limits.h>

#include <openssl/evp.h>

/* RFC 6455 1.3 */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
 * "_" / "`" / "|" / "~" / DIGIT / ALPHA */
static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_token(sy_str s)
{
    if (s.len == 0)
        return 0;
    for (size_t i = 0; i < s.len; i++)
        if (!is_tchar((unsigned char)s.p[i]))
            return 0;
    return 1;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static int str_ieq(sy_str a, sy_str b)
{
    if (a.len != b.len)
        return 0;
    for (size_t i = 0; i < a.len; i++)
        if (lower((unsigned char)a.p[i]) != lower((unsigned char)b.p[i]))
            return 0;
    return 1;
}

/* Sets *elem to the next list element of s from *pos (OWS trimmed, possibly empty) and returns
 * 1; 0 once the whole value is consumed. Empty elements are reported so the caller may skip them
 * (RFC 9110 5.6.1: recipients accept and ignore empty list elements). */
static int next_element(sy_str s, size_t *pos, sy_str *elem)
{
    if (*pos > s.len)
        return 0;
    size_t start = *pos, end = start;
    while (end < s.len && s.p[end] != ',')
        end++;
    *pos = end + 1; /* past the comma, or past the end when none is left */
    while (start < end && is_ows(s.p[start]))
        start++;
    while (end > start && is_ows(s.p[end - 1]))
        end--;
    elem->p = s.p + start;
    elem->len = end - start;
    return 1;
}

/* Splits protocol-name ["/" protocol-version] into *name and *version (p NULL when absent).
 * Returns 0, or -1 unless both parts are tokens. */
static int split_protocol(sy_str elem, sy_str *name, sy_str *version)
{
    const char *slash = memchr(elem.p, '/', elem.len);
    if (!slash) {
        *name = elem;
        *version = sy_str_make(NULL, 0);
        return is_token(elem) ? 0 : -1;
    }
    *name = sy_str_make(elem.p, (size_t)(slash - elem.p));
    *version = sy_str_make(slash + 1, elem.len - name->len - 1);
    return is_token(*name) && is_token(*version) ? 0 : -1;
}

/* Strict base64 decoder shared by both alphabets. url: RFC 4648 5 alphabet, no padding allowed;
 * otherwise RFC 4648 4 alphabet with mandatory padding to a multiple of 4. The unused bits of the
 * last character must be zero, so each byte string has exactly one accepted encoding. Writes at
 * most cap bytes to out; with out NULL it only validates and measures. Returns the decoded
 * length, SY_EPROTO for invalid input (checked first), or SY_ELIMIT when cap is too small. */
static ssize_t b64_decode(sy_str in, int url, uint8_t *out, size_t cap)
{
    size_t len = in.len;
    if (!url) {
        if (len % 4 != 0)
            return SY_EPROTO;
        /* Up to two '=' at the very end; '=' anywhere else is caught below as invalid. */
        if (len > 0 && in.p[len - 1] == '=')
            len--;
        if (len > 0 && in.p[len - 1] == '=')
            len--;
    }
    if (len % 4 == 1)
        return SY_EPROTO;

    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = sy_base64_value((unsigned char)in.p[i], url);
        if (v < 0)
            return SY_EPROTO;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (out && o < cap)
                out[o] = (uint8_t)(acc >> bits);
            o++;
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* non-zero leftover bits: not the canonical encoding */
        return SY_EPROTO;
    if (out && o > cap)
        return SY_ELIMIT;
    return (ssize_t)o;
}

ssize_t sy_upgrade_base64url_decode(sy_str in, uint8_t *out, size_t cap)
{
    return b64_decode(in, 1, out, cap);
}

/* RFC 7540 3.2.1: exactly one HTTP2-Settings field holding a SETTINGS payload (6 bytes per
 * setting) in base64url without padding. The Connection option HTTP2-Settings is not required. */
static int h2c_settings_ok(const sy_http1_request *req)
{
    if (sy_http1_count(req, "http2-settings") != 1)
        return 0;
    const sy_http1_header *h = sy_http1_find(req, "http2-settings");
    uint8_t p[1536];
    ssize_t n = b64_decode(h->value, 1, p, sizeof p);
    if (n < 0 || n % 6 != 0)
        return 0;
    /* RFC 9113 6.5.2: values a SETTINGS frame may not carry make the offer invalid too. */
    for (ssize_t i = 0; i < n; i += 6) {
        unsigned id = (unsigned)p[i] << 8 | p[i + 1];
        uint32_t v = (uint32_t)p[i + 2] << 24 | (uint32_t)p[i + 3] << 16 | (uint32_t)p[i + 4] << 8 |
                     p[i + 5];
        if ((id == 2 && v > 1) || (id == 4 && v > 0x7fffffffu) ||
            (id == 5 && (v < 16384 || v > 16777215)))
            return 0;
    }
    return 1;
}

/* RFC 6455 4.2.1. Returns 0 with *answer untouched for an acceptable handshake, else fills
 * *answer with the status the core gives when websocket is the only offer. Method and key (400)
 * are checked before the version (426). */
static int ws_check(const sy_http1_request *req, sy_upgrade_answer *answer)
{
    if (!sy_str_eq(req->method, "GET")) {
        answer->status = 400;
        answer->why = "websocket upgrade needs GET";
        return -1;
    }
    size_t keys = sy_http1_count(req, "sec-websocket-key");
    if (keys != 1) {
        answer->status = 400;
        answer->why = keys ? "more than one Sec-WebSocket-Key" : "missing Sec-WebSocket-Key";
        return -1;
    }
    uint8_t nonce[16];
    if (b64_decode(sy_http1_find(req, "sec-websocket-key")->value, 0, nonce, sizeof nonce) != 16) {
        answer->status = 400;
        answer->why = "invalid Sec-WebSocket-Key";
        return -1;
    }
    size_t versions = sy_http1_count(req, "sec-websocket-version");
    if (versions != 1 || !sy_str_eq(sy_http1_find(req, "sec-websocket-version")->value, "13")) {
        answer->status = 426;
        answer->why =
            versions ? "unsupported Sec-WebSocket-Version" : "missing Sec-WebSocket-Version";
        answer->headers = "Sec-WebSocket-Version: 13\r\n";
        return -1;
    }
    return 0;
}

int sy_upgrade_offers(const sy_http1_request *req, sy_upgrade_offer *offers, size_t *n,
                      sy_upgrade_answer *answer)
{
    answer->status = 0;
    answer->why = NULL;
    answer->headers = NULL;
    *n = 0;
    /* RFC 9110 7.8: a server must ignore Upgrade in HTTP/1.0 and, like any hop-by-hop field,
     * unless Connection lists it. */
    if (req->version != 11 || !(req->connection & SY_CONN_UPGRADE))
        return 0;

    size_t kept = 0, listed = 0;
    int ws_state = 0; /* 0: not checked yet, 1: valid, -1: invalid (reason in ws_answer) */
    int h2c_state = 0;
    int only_ws_failed = 0;
    sy_upgrade_answer ws_answer = {0, NULL, NULL};

    /* Several Upgrade fields form one list in field order (RFC 9110 5.3). */
    for (size_t h = 0; h < req->nheaders; h++) {
        if (!sy_str_ieq(req->headers[h].name, "upgrade"))
            continue;
        sy_str value = req->headers[h].value, elem;
        size_t pos = 0;
        while (next_element(value, &pos, &elem)) {
            if (elem.len == 0)
                continue;
            sy_upgrade_offer o;
            if (split_protocol(elem, &o.name, &o.version) < 0) {
                *n = 0;
                answer->status = 400;
                answer->why = "invalid Upgrade header";
                return SY_EPROTO;
            }
            listed++;
            if (sy_str_ieq(o.name, "websocket")) {
                o.kind = SY_UP_WEBSOCKET;
                if (ws_state == 0)
                    ws_state = ws_check(req, &ws_answer) < 0 ? -1 : 1;
                if (ws_state < 0) {
                    only_ws_failed = listed == 1;
                    continue;
                }
            } else if (sy_str_ieq(o.name, "h2c")) {
                o.kind = SY_UP_H2C;
                if (h2c_state == 0)
                    h2c_state = h2c_settings_ok(req) ? 1 : -1;
                if (h2c_state < 0)
                    continue;
            } else if (sy_str_ieq(o.name, "h2") && o.version.p == NULL) {
                continue; /* RFC 7540 3.2: "h2" names HTTP/2 over TLS; ignore it here */
            } else if (sy_str_ieq(o.name, "tls")) {
                o.kind = SY_UP_TLS;
            } else {
                o.kind = SY_UP_OTHER;
            }
            if (kept < SY_UPGRADE_MAX_OFFERS)
                offers[kept++] = o;
        }
    }

    /* A lone websocket offer that fails gets the core's own answer (RFC 6455 4.2.1, 4.4);
     * beside other offers it is merely dropped so the app can pick another one. */
    if (listed == 1 && only_ws_failed) {
        *answer = ws_answer;
        *n = 0;
        return 0;
    }
    *n = kept;
    return 0;
}

int sy_upgrade_match(const sy_upgrade_offer *offers, size_t n, sy_str token)
{
    sy_str name = token, version = {NULL, 0};
    const char *slash = token.len ? memchr(token.p, '/', token.len) : NULL;
    if (slash) {
        name.len = (size_t)(slash - token.p);
        version = sy_str_make(slash + 1, token.len - name.len - 1);
    }
    for (size_t i = 0; i < n && i <= (size_t)INT_MAX; i++) {
        if (!str_ieq(offers[i].name, name))
            continue;
        if (slash) {
            const sy_upgrade_offer *o = &offers[i];
            if (o->version.p == NULL || o->version.len != version.len ||
                memcmp(o->version.p, version.p, version.len) != 0)
                continue;
        }
        return (int)i;
    }
    return -1;
}

int sy_upgrade_ws_accept(sy_str key, char out[29])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
        EVP_DigestUpdate(ctx, key.p, key.len) == 1 &&
        EVP_DigestUpdate(ctx, WS_GUID, sizeof WS_GUID - 1) == 1 &&
        EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 20)
        ok = 1;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return SY_EINVAL;
    /* 20 bytes encode to 28 characters; EVP_EncodeBlock adds the NUL. */
    EVP_EncodeBlock((unsigned char *)out, md, 20);
    return 0;
}
