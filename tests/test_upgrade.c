/* Unit tests for upgrade.c: offer listing, the core's own 400/426, matching, accept key, base64. */
#include "upgrade.h"

#include <openssl/evp.h>

#include "test.h"

#define MAX_HEADERS 64

/* Request fragments. */
#define GET "GET /chat HTTP/1.1\r\nHost: example.com\r\n"
#define POST "POST /chat HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n"
#define CONN "Connection: Upgrade\r\n"
#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VER "Sec-WebSocket-Version: 13\r\n"
#define WS KEY VER
#define SETTINGS "HTTP2-Settings: AAMAAABkAAQAAP__\r\n" /* 12 bytes: two settings */
#define END "\r\n"

#define WS_400 "websocket upgrade needs GET"
#define VER_HDR "Sec-WebSocket-Version: 13\r\n"

/* Renders offers as "name[/version]=K,..." with K one of W H T O, so a case is one string. */
static void render(const sy_upgrade_offer *o, size_t n, char *out, size_t cap)
{
    static const char kinds[] = "?WHTO";
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int k = o[i].kind >= 1 && o[i].kind <= 4 ? o[i].kind : 0;
        int w;
        if (o[i].version.p)
            w = snprintf(out + len, cap - len, "%s%.*s/%.*s=%c", i ? "," : "", (int)o[i].name.len,
                         o[i].name.p, (int)o[i].version.len, o[i].version.p, kinds[k]);
        else
            w = snprintf(out + len, cap - len, "%s%.*s=%c", i ? "," : "", (int)o[i].name.len,
                         o[i].name.p, kinds[k]);
        if (w < 0 || (size_t)w >= cap - len)
            return;
        len += (size_t)w;
    }
}

typedef struct outcome {
    int parsed; /* sy_http1_parse_head result */
    int rc;
    size_t n;
    char list[1024];
    sy_upgrade_answer answer;
} outcome;

/* Parses text as a request head from a guard-page copy (an over-read of any slice crashes),
 * lists its offers and renders them before the copy goes away. */
static void run(const char *text, outcome *out)
{
    void *map;
    size_t maplen, len = strlen(text);
    char *buf = t_guard_copy(text, len, &map, &maplen);
    sy_http1_header headers[MAX_HEADERS];
    sy_http1_limits limits = {16384, MAX_HEADERS};
    sy_http1_request req;
    memset(&req, 0, sizeof req);
    req.headers = headers;
    const char *why = NULL;
    sy_upgrade_offer offers[SY_UPGRADE_MAX_OFFERS];

    memset(out, 0, sizeof *out);
    out->parsed = (int)sy_http1_parse_head(buf, len, &limits, &req, &why);
    out->rc = -999;
    if (out->parsed > 0) {
        out->answer.status = -1; /* must be reset by the call */
        out->n = 12345;
        out->rc = sy_upgrade_offers(&req, offers, &out->n, &out->answer);
        if (out->n <= SY_UPGRADE_MAX_OFFERS)
            render(offers, out->n, out->list, sizeof out->list);
    }
    t_guard_free(map, maplen);
}

typedef struct offer_case {
    const char *text;
    int rc;
    const char *list;
    int status;
    const char *why;     /* NULL: not checked */
    const char *headers; /* compared exactly (NULL included) */
} offer_case;

static const offer_case offer_cases[] = {
    /* Not an upgrade request at all. */
    {GET END, 0, "", 0, NULL, NULL},
    {GET CONN END, 0, "", 0, NULL, NULL},
    /* RFC 9110 7.8: Upgrade in HTTP/1.0 is ignored, even when malformed. */
    {"GET / HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" WS END, 0, "", 0,
     NULL, NULL},
    {"GET / HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: not a token\r\n" END, 0, "", 0, NULL, NULL},
    /* Without "upgrade" in Connection the field is ignored, even when malformed. */
    {GET "Upgrade: websocket\r\n" WS END, 0, "", 0, NULL, NULL},
    {GET "Connection: keep-alive\r\nUpgrade: websocket\r\n" WS END, 0, "", 0, NULL, NULL},
    {GET "Connection: keep-alive\r\nUpgrade: web socket\r\n" END, 0, "", 0, NULL, NULL},
    {GET "Connection: upgraded\r\nUpgrade: h2c\r\n" SETTINGS END, 0, "", 0, NULL, NULL},
    /* Connection as a list, any case, possibly split over fields. */
    {GET "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n" WS END, 0, "websocket=W", 0,
     NULL, NULL},
    {GET "Connection: close,upgrade\r\nUpgrade: websocket\r\n" WS END, 0, "websocket=W", 0, NULL,
     NULL},
    {GET "Connection: keep-alive\r\nConnection: UPGRADE\r\nUpgrade: websocket\r\n" WS END, 0,
     "websocket=W", 0, NULL, NULL},
    {GET "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" SETTINGS END, 0, "h2c=H", 0,
     NULL, NULL},
    /* Several offers keep the client's order; names and versions as sent. */
    {GET CONN "Upgrade: foo/2, TLS/1.3, websocket, h2c\r\n" WS SETTINGS END, 0,
     "foo/2=O,TLS/1.3=T,websocket=W,h2c=H", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c, websocket/13, IRC/6.9\r\n" WS SETTINGS END, 0,
     "h2c=H,websocket/13=W,IRC/6.9=O", 0, NULL, NULL},
    /* Several Upgrade fields form one list in field order. */
    {GET CONN "Upgrade: a\r\nX-Other: b\r\nupgrade: b/1, c\r\nUPGRADE: d\r\n" END, 0,
     "a=O,b/1=O,c=O,d=O", 0, NULL, NULL},
    /* Empty elements and OWS are skipped; an empty list is no offer. */
    {GET CONN "Upgrade: , ,a,,  b ,\t,c\t\r\n" END, 0, "a=O,b=O,c=O", 0, NULL, NULL},
    {GET CONN "Upgrade: ,,,\r\n" END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade:\r\n" END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: a\r\nUpgrade:\r\nUpgrade: b\r\n" END, 0, "a=O,b=O", 0, NULL, NULL},
    /* Kinds: names case-insensitive, versions kept exactly. */
    {GET CONN "Upgrade: TLS/1.0, tls/1.3, TLS, Tls/1.2\r\n" END, 0,
     "TLS/1.0=T,tls/1.3=T,TLS=T,Tls/1.2=T", 0, NULL, NULL},
    {GET CONN "Upgrade: WebSocket\r\n" WS END, 0, "WebSocket=W", 0, NULL, NULL},
    {GET CONN "Upgrade: WEBSOCKET/13\r\n" WS END, 0, "WEBSOCKET/13=W", 0, NULL, NULL},
    {GET CONN "Upgrade: H2C\r\n" SETTINGS END, 0, "H2C=H", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c/1\r\n" SETTINGS END, 0, "h2c/1=H", 0, NULL, NULL},
    {GET CONN "Upgrade: websockets, h2cc, TLSv1, raw-tcp\r\n" END, 0,
     "websockets=O,h2cc=O,TLSv1=O,raw-tcp=O", 0, NULL, NULL},
    {GET CONN "Upgrade: !#$%&'*+-.^_`|~09azAZ/!#$%&'*+-.^_`|~09azAZ\r\n" END, 0,
     "!#$%&'*+-.^_`|~09azAZ/!#$%&'*+-.^_`|~09azAZ=O", 0, NULL, NULL},
    /* RFC 7540 3.2: "h2" (without version) is dropped over cleartext. */
    {GET CONN "Upgrade: h2, h2c\r\n" SETTINGS END, 0, "h2c=H", 0, NULL, NULL},
    {GET CONN "Upgrade: H2\r\n" END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: h2/1\r\n" END, 0, "h2/1=O", 0, NULL, NULL},
    /* h2c: exactly one valid HTTP2-Settings, else dropped silently (never an answer). */
    {GET CONN "Upgrade: h2c\r\n" END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c\r\n" SETTINGS SETTINGS END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c\r\nHTTP2-Settings:\r\n" END, 0, "h2c=H", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c\r\nhttp2-settings: AAAAAAAA\r\n" END, 0, "h2c=H", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c\r\nHTTP2-Settings: AAAA\r\n" END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP==\r\n" END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP//\r\n" END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__A\r\n" END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c\r\nHTTP2-Settings: AAMAAA BkAAQAAP__\r\n" END, 0, "", 0, NULL, NULL},
    /* RFC 9113 6.5.2: values a SETTINGS frame may not carry drop the offer too. */
    {GET CONN "Upgrade: h2c\r\nHTTP2-Settings: AAIAAAAC\r\n" END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c\r\nHTTP2-Settings: AAIAAAAB\r\n" END, 0, "h2c=H", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c\r\nHTTP2-Settings: AASAAAAA\r\n" END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c\r\nHTTP2-Settings: AAUAAD__\r\n" END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c\r\nHTTP2-Settings: AAUAAEAA\r\n" END, 0, "h2c=H", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c\r\nHTTP2-Settings: AAUBAAAA\r\n" END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c, websocket\r\n" WS END, 0, "websocket=W", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c, foo, h2c\r\n" END, 0, "foo=O", 0, NULL, NULL},
    {POST CONN "Upgrade: h2c\r\n" SETTINGS END, 0, "h2c=H", 0, NULL, NULL},
    /* websocket, the only offer: the core answers 400 (method, key) before 426 (version). */
    {GET CONN "Upgrade: websocket\r\n" WS END, 0, "websocket=W", 0, NULL, NULL},
    {GET CONN "Upgrade: websocket\r\nsec-websocket-key:  dGhlIHNhbXBsZSBub25jZQ== \r\n"
              "sec-websocket-version: 13\r\n" END,
     0, "websocket=W", 0, NULL, NULL},
    {POST CONN "Upgrade: websocket\r\n" WS END, 0, "", 400, WS_400, NULL},
    {"get /chat HTTP/1.1\r\nHost: a\r\n" CONN "Upgrade: websocket\r\n" WS END, 0, "", 400, WS_400,
     NULL},
    {POST CONN "Upgrade: websocket\r\n" END, 0, "", 400, WS_400, NULL},
    {GET CONN "Upgrade: websocket\r\n" VER END, 0, "", 400, "missing Sec-WebSocket-Key", NULL},
    {GET CONN "Upgrade: websocket\r\n" KEY KEY VER END, 0, "", 400,
     "more than one Sec-WebSocket-Key", NULL},
    {GET CONN "Upgrade: websocket\r\nSec-WebSocket-Key:\r\n" VER END, 0, "", 400,
     "invalid Sec-WebSocket-Key", NULL},
    /* 15 and 17 bytes; no padding; bad trailing bits; url alphabet; padding in the middle. */
    {GET CONN "Upgrade: websocket\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n" VER END, 0, "",
     400, "invalid Sec-WebSocket-Key", NULL},
    {GET CONN "Upgrade: websocket\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n" VER END, 0,
     "", 400, "invalid Sec-WebSocket-Key", NULL},
    {GET CONN "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n" VER END, 0, "",
     400, "invalid Sec-WebSocket-Key", NULL},
    {GET CONN "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n" VER END, 0,
     "", 400, "invalid Sec-WebSocket-Key", NULL},
    {GET CONN "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25j-_==\r\n" VER END, 0,
     "", 400, "invalid Sec-WebSocket-Key", NULL},
    {GET CONN "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub2==jZQ\r\n" VER END, 0, "",
     400, "invalid Sec-WebSocket-Key", NULL},
    {GET CONN "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBs ZSBub25jZQ=\r\n" VER END, 0,
     "", 400, "invalid Sec-WebSocket-Key", NULL},
    {GET CONN "Upgrade: websocket\r\nSec-WebSocket-Key: ++++++++++++++++++++++//\r\n" VER END, 0,
     "", 400, "invalid Sec-WebSocket-Key", NULL},
    {GET CONN "Upgrade: websocket\r\nSec-WebSocket-Key: +++++++++++++++++++++w==\r\n" VER END, 0,
     "websocket=W", 0, NULL, NULL},
    /* Method and key come before the version. */
    {POST CONN "Upgrade: websocket\r\nSec-WebSocket-Version: 8\r\n" END, 0, "", 400, WS_400, NULL},
    {GET CONN "Upgrade: websocket\r\nSec-WebSocket-Version: 8\r\n" END, 0, "", 400,
     "missing Sec-WebSocket-Key", NULL},
    /* Version missing or not exactly one "13": 426 with the version header. */
    {GET CONN "Upgrade: websocket\r\n" KEY END, 0, "", 426, "missing Sec-WebSocket-Version",
     VER_HDR},
    {GET CONN "Upgrade: websocket\r\n" KEY "Sec-WebSocket-Version: 8\r\n" END, 0, "", 426,
     "unsupported Sec-WebSocket-Version", VER_HDR},
    {GET CONN "Upgrade: websocket\r\n" KEY "Sec-WebSocket-Version: 13, 8\r\n" END, 0, "", 426, NULL,
     VER_HDR},
    {GET CONN "Upgrade: websocket\r\n" KEY "Sec-WebSocket-Version: 013\r\n" END, 0, "", 426, NULL,
     VER_HDR},
    {GET CONN "Upgrade: websocket\r\n" KEY "Sec-WebSocket-Version:\r\n" END, 0, "", 426, NULL,
     VER_HDR},
    {GET CONN "Upgrade: websocket\r\n" KEY VER VER END, 0, "", 426, NULL, VER_HDR},
    /* "The only offer" counts elements as sent; the version on the token does not matter. */
    {GET CONN "Upgrade: websocket/13\r\n" KEY END, 0, "", 426, NULL, VER_HDR},
    {GET CONN "Upgrade: , websocket ,\r\n" KEY END, 0, "", 426, NULL, VER_HDR},
    {GET CONN "Upgrade:\r\nUpgrade: websocket\r\n" END, 0, "", 400, NULL, NULL},
    /* Beside other offers a failing websocket offer is dropped, no answer. */
    {POST CONN "Upgrade: websocket, h2c\r\n" WS SETTINGS END, 0, "h2c=H", 0, NULL, NULL},
    {GET CONN "Upgrade: foo, websocket\r\n" VER END, 0, "foo=O", 0, NULL, NULL},
    {GET CONN "Upgrade: websocket, TLS/1.3\r\n" KEY END, 0, "TLS/1.3=T", 0, NULL, NULL},
    {GET CONN "Upgrade: websocket\r\nUpgrade: TLS/1.3\r\n" KEY END, 0, "TLS/1.3=T", 0, NULL, NULL},
    {GET CONN "Upgrade: h2, websocket\r\n" KEY END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: h2c, websocket\r\n" END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: websocket, WebSocket/13\r\n" KEY END, 0, "", 0, NULL, NULL},
    {GET CONN "Upgrade: websocket, WebSocket/13\r\n" WS END, 0, "websocket=W,WebSocket/13=W", 0,
     NULL, NULL},
    /* Not a list of tokens: 400 from anywhere in any Upgrade field, before websocket checks. */
    {GET CONN "Upgrade: web socket\r\n" END, SY_EPROTO, "", 400, "invalid Upgrade header", NULL},
    {GET CONN "Upgrade: TLS/\r\n" END, SY_EPROTO, "", 400, "invalid Upgrade header", NULL},
    {GET CONN "Upgrade: /1.3\r\n" END, SY_EPROTO, "", 400, "invalid Upgrade header", NULL},
    {GET CONN "Upgrade: /\r\n" END, SY_EPROTO, "", 400, "invalid Upgrade header", NULL},
    {GET CONN "Upgrade: TLS/1.3/x\r\n" END, SY_EPROTO, "", 400, "invalid Upgrade header", NULL},
    {GET CONN "Upgrade: TLS /1.3\r\n" END, SY_EPROTO, "", 400, "invalid Upgrade header", NULL},
    {GET CONN "Upgrade: TLS/ 1.3\r\n" END, SY_EPROTO, "", 400, "invalid Upgrade header", NULL},
    {GET CONN "Upgrade: websocket;q=1\r\n" END, SY_EPROTO, "", 400, "invalid Upgrade header", NULL},
    {GET CONN "Upgrade: \"websocket\"\r\n" END, SY_EPROTO, "", 400, "invalid Upgrade header", NULL},
    {GET CONN "Upgrade: a, b c\r\n" END, SY_EPROTO, "", 400, "invalid Upgrade header", NULL},
    {GET CONN "Upgrade: a(b)\r\n" END, SY_EPROTO, "", 400, "invalid Upgrade header", NULL},
    {GET CONN "Upgrade: a:b\r\n" END, SY_EPROTO, "", 400, "invalid Upgrade header", NULL},
    {GET CONN "Upgrade: websocket\r\nUpgrade: a b\r\n" WS END, SY_EPROTO, "", 400,
     "invalid Upgrade header", NULL},
    {POST CONN "Upgrade: websocket, {x}\r\n" END, SY_EPROTO, "", 400, "invalid Upgrade header",
     NULL},
    /* At most SY_UPGRADE_MAX_OFFERS kept, the first ones; the rest still syntax-checked. */
    {GET CONN "Upgrade: a0,a1,a2,a3,a4,a5,a6,a7,a8,a9,b0,b1,b2,b3,b4,b5,b6,b7,b8,b9\r\n" END, 0,
     "a0=O,a1=O,a2=O,a3=O,a4=O,a5=O,a6=O,a7=O,a8=O,a9=O,b0=O,b1=O,b2=O,b3=O,b4=O,b5=O", 0, NULL,
     NULL},
    {GET CONN "Upgrade: h2,a0,a1,a2,a3,a4,a5,a6,a7,a8,a9,b0,b1,b2,b3,b4,h2c,b5,b6\r\n" END, 0,
     "a0=O,a1=O,a2=O,a3=O,a4=O,a5=O,a6=O,a7=O,a8=O,a9=O,b0=O,b1=O,b2=O,b3=O,b4=O,b5=O", 0, NULL,
     NULL},
    {GET CONN "Upgrade: a0,a1,a2,a3,a4,a5,a6,a7,a8,a9,b0,b1,b2,b3,b4,b5,b6,b7,b8,b 9\r\n" END,
     SY_EPROTO, "", 400, "invalid Upgrade header", NULL},
};

static void test_offer_cases(void)
{
    for (size_t i = 0; i < SY_COUNTOF(offer_cases); i++) {
        const offer_case *c = &offer_cases[i];
        outcome o;
        run(c->text, &o);
        CHECK_MSG(o.parsed > 0, "case %zu: head did not parse (%d)", i, o.parsed);
        if (o.parsed <= 0)
            continue;
        CHECK_MSG(o.rc == c->rc, "case %zu: rc %d, want %d", i, o.rc, c->rc);
        CHECK_MSG(strcmp(o.list, c->list) == 0, "case %zu: offers \"%s\", want \"%s\"", i, o.list,
                  c->list);
        CHECK_MSG(o.answer.status == c->status, "case %zu: status %d, want %d", i, o.answer.status,
                  c->status);
        if (c->why)
            CHECK_MSG(o.answer.why && strcmp(o.answer.why, c->why) == 0,
                      "case %zu: why \"%s\", want \"%s\"", i,
                      o.answer.why ? o.answer.why : "(null)", c->why);
        if (c->status)
            CHECK_MSG(o.answer.why != NULL, "case %zu: answer without reason", i);
        else
            CHECK_MSG(o.answer.why == NULL, "case %zu: reason without answer", i);
        CHECK_MSG(c->headers ? (o.answer.headers && strcmp(o.answer.headers, c->headers) == 0)
                             : o.answer.headers == NULL,
                  "case %zu: answer headers", i);
        /* An answer or an error never comes with offers. */
        if (c->status)
            CHECK_MSG(o.n == 0, "case %zu: %zu offers next to an answer", i, o.n);
    }
}

/* Offers point into the request buffer; versions are NULL when absent, never empty. */
static void test_offer_slices(void)
{
    static const char text[] = GET CONN "Upgrade: TLS/1.3 , h2c\r\n" SETTINGS END;
    sy_http1_header headers[MAX_HEADERS];
    sy_http1_limits limits = {16384, MAX_HEADERS};
    sy_http1_request req;
    memset(&req, 0, sizeof req);
    req.headers = headers;
    const char *why = NULL;
    CHECK(sy_http1_parse_head(text, sizeof text - 1, &limits, &req, &why) > 0);
    sy_upgrade_offer offers[SY_UPGRADE_MAX_OFFERS];
    size_t n = 0;
    sy_upgrade_answer ans;
    CHECK(sy_upgrade_offers(&req, offers, &n, &ans) == 0);
    CHECK(n == 2);
    if (n != 2)
        return;
    CHECK(offers[0].name.p == strstr(text, "TLS/1.3") && offers[0].name.len == 3);
    CHECK(offers[0].version.p == strstr(text, "1.3 ,") && offers[0].version.len == 3);
    CHECK(offers[1].name.p == strstr(text, "h2c\r") && offers[1].version.p == NULL);
    CHECK(offers[1].version.len == 0);
}

/* A hand-built request whose only Upgrade value is each prefix of a list, in a guard-page copy:
 * no prefix may read past its end, and the answer is always one of the two documented shapes. */
static void test_upgrade_value_prefixes(void)
{
    static const char value[] = "websocket/13, h2c,TLS/1.3 ,\t x-y.z/~!,, h2";
    for (size_t len = 0; len <= sizeof value - 1; len++) {
        void *map;
        size_t maplen;
        char *p = t_guard_copy(value, len, &map, &maplen);
        sy_http1_header h[1] = {{SY_STR("Upgrade"), sy_str_make(p, len)}};
        sy_http1_request req;
        memset(&req, 0, sizeof req);
        req.headers = h;
        req.nheaders = 1;
        req.version = 11;
        req.connection = SY_CONN_UPGRADE;
        req.method = SY_STR("GET");
        sy_upgrade_offer offers[SY_UPGRADE_MAX_OFFERS];
        size_t n = 99;
        sy_upgrade_answer ans;
        int rc = sy_upgrade_offers(&req, offers, &n, &ans);
        /* Only a prefix ending in "/" is malformed: a cut token is still a token. */
        int want_bad = len > 0 && value[len - 1] == '/';
        CHECK_MSG(want_bad ? rc == SY_EPROTO && ans.status == 400 && n == 0 : rc == 0,
                  "prefix %zu: rc %d", len, rc);
        /* websocket here has no key: while it is the only element ("websocket" up to
         * "websocket/13, ") the answer is 400. */
        int lone_ws = rc == 0 && len >= 9 && len <= 14;
        CHECK_MSG(rc != 0 || ans.status == (lone_ws ? 400 : 0), "prefix %zu: status %d", len,
                  ans.status);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            CHECK(offers[i].name.p >= p && offers[i].name.p + offers[i].name.len <= p + len);
            CHECK(offers[i].name.len > 0);
            CHECK(!offers[i].version.p || (offers[i].version.len > 0 &&
                                           offers[i].version.p + offers[i].version.len <= p + len));
        }
        t_guard_free(map, maplen);
    }
}

static sy_upgrade_offer mk(const char *name, const char *version, int kind)
{
    sy_upgrade_offer o;
    o.name = sy_str_make(name, strlen(name));
    o.version = version ? sy_str_make(version, strlen(version)) : sy_str_make(NULL, 0);
    o.kind = kind;
    return o;
}

/* The token comes from a guard-page copy so a read past its length crashes. */
static int match(const sy_upgrade_offer *offers, size_t n, const char *token)
{
    void *map;
    size_t maplen, len = strlen(token);
    char *p = t_guard_copy(token, len, &map, &maplen);
    int r = sy_upgrade_match(offers, n, sy_str_make(p, len));
    t_guard_free(map, maplen);
    return r;
}

static void test_match(void)
{
    const sy_upgrade_offer offers[] = {
        mk("foo", NULL, SY_UP_OTHER), mk("TLS", "1.2", SY_UP_TLS),
        mk("tls", "1.3", SY_UP_TLS),  mk("WebSocket", "13", SY_UP_WEBSOCKET),
        mk("h2c", NULL, SY_UP_H2C),   mk("TLS", NULL, SY_UP_TLS),
        mk("x", "A", SY_UP_OTHER),    mk("foo", "2", SY_UP_OTHER),
    };
    size_t n = SY_COUNTOF(offers);
    CHECK(match(offers, n, "TLS/1.3") == 2);
    CHECK(match(offers, n, "tls/1.3") == 2);
    CHECK(match(offers, n, "TLS/1.2") == 1);
    CHECK(match(offers, n, "TLS") == 1); /* any version, first in order */
    CHECK(match(offers, n, "tLs") == 1);
    CHECK(match(offers, n, "TLS/1.30") == -1);
    CHECK(match(offers, n, "TLS/1") == -1);
    CHECK(match(offers, n, "TLS/1.0") == -1);
    CHECK(match(offers, n, "TLS/") == -1); /* an empty version matches nothing */
    CHECK(match(offers, 1, "TLS") == -1);
    CHECK(match(offers + 5, 1, "TLS/1.3") == -1); /* an offer without version */
    CHECK(match(offers + 5, 1, "TLS") == 0);
    CHECK(match(offers, n, "websocket") == 3);
    CHECK(match(offers, n, "WEBSOCKET/13") == 3);
    CHECK(match(offers, n, "websocket/8") == -1);
    CHECK(match(offers, n, "H2C") == 4);
    CHECK(match(offers, n, "h2c/1") == -1);
    CHECK(match(offers, n, "foo") == 0);
    CHECK(match(offers, n, "foo/2") == 7);
    CHECK(match(offers, n, "x/A") == 6);
    CHECK(match(offers, n, "x/a") == -1); /* versions compare exactly */
    CHECK(match(offers, n, "X") == 6);
    CHECK(match(offers, n, "") == -1);
    CHECK(match(offers, n, "/") == -1);
    CHECK(match(offers, n, "fo") == -1);
    CHECK(match(offers, n, "fooo") == -1);
    CHECK(match(offers, 0, "foo") == -1);
    CHECK(match(NULL, 0, "foo") == -1);
    CHECK(sy_upgrade_match(offers, n, sy_str_make(NULL, 0)) == -1);
}

static void test_ws_accept(void)
{
    static const struct {
        const char *key, *accept;
    } v[] = {
        {"dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, /* RFC 6455 1.3 */
        {"AAAAAAAAAAAAAAAAAAAAAA==", "ICX+Yqv66kxgM0FcWaLWlFLwTAI="},
        {"", "Kfh9QIsMVZcl6xEPYxPHzW8SZ8w="},
    };
    for (size_t i = 0; i < SY_COUNTOF(v); i++) {
        char out[29];
        memset(out, 'x', sizeof out);
        void *map;
        size_t maplen, len = strlen(v[i].key);
        char *p = t_guard_copy(v[i].key, len, &map, &maplen);
        CHECK(sy_upgrade_ws_accept(sy_str_make(p, len), out) == 0);
        CHECK_MSG(out[28] == '\0' && strcmp(out, v[i].accept) == 0, "accept %zu: %.29s", i, out);
        t_guard_free(map, maplen);
    }
    /* Only the slice counts, not what follows it. */
    char out[29];
    CHECK(sy_upgrade_ws_accept(sy_str_make("dGhlIHNhbXBsZSBub25jZQ==XYZ", 24), out) == 0);
    CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
}

/* Decodes from a guard-page copy. */
static ssize_t b64url(const char *in, size_t len, uint8_t *out, size_t cap)
{
    void *map;
    size_t maplen;
    char *p = t_guard_copy(in, len, &map, &maplen);
    ssize_t r = sy_upgrade_base64url_decode(sy_str_make(p, len), out, cap);
    t_guard_free(map, maplen);
    return r;
}

static ssize_t b64url_s(const char *in, uint8_t *out, size_t cap)
{
    return b64url(in, strlen(in), out, cap);
}

/* Encodes with OpenSSL's standard base64, then maps it to base64url without padding. */
static size_t ref_encode(const uint8_t *in, size_t len, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    out[n] = '\0';
    return (size_t)n;
}

static void test_base64url(void)
{
    uint8_t out[64];
    memset(out, 0xAA, sizeof out);
    CHECK(b64url_s("", out, 0) == 0);
    CHECK(b64url_s("", NULL, 0) == 0);
    CHECK(b64url_s("AA", out, 1) == 1 && out[0] == 0x00);
    CHECK(b64url_s("AQ", out, 1) == 1 && out[0] == 0x01);
    CHECK(b64url_s("_w", out, 1) == 1 && out[0] == 0xff);
    CHECK(b64url_s("-_8", out, 2) == 2 && out[0] == 0xfb && out[1] == 0xff);
    CHECK(b64url_s("AAMAAABkAAQAAP__", out, sizeof out) == 12 && out[5] == 0x64 &&
          out[10] == 0xff && out[11] == 0xff);
    /* Length 4k+1 can never be valid. */
    CHECK(b64url_s("A", out, sizeof out) == SY_EPROTO);
    CHECK(b64url_s("AAAAA", out, sizeof out) == SY_EPROTO);
    /* Non-zero unused bits: strict, one encoding per byte string. */
    CHECK(b64url_s("AB", out, sizeof out) == SY_EPROTO);
    CHECK(b64url_s("_8", out, sizeof out) == SY_EPROTO);
    CHECK(b64url_s("AAB", out, sizeof out) == SY_EPROTO);
    CHECK(b64url_s("AAF", out, sizeof out) == SY_EPROTO);
    CHECK(b64url_s("AAE", out, sizeof out) == 2);
    CHECK(b64url_s("AAQ", out, sizeof out) == 2);
    /* Padding and the standard alphabet's extra characters are invalid. */
    CHECK(b64url_s("AA==", out, sizeof out) == SY_EPROTO);
    CHECK(b64url_s("AAA=", out, sizeof out) == SY_EPROTO);
    CHECK(b64url_s("AA=", out, sizeof out) == SY_EPROTO);
    CHECK(b64url_s("=", out, sizeof out) == SY_EPROTO);
    CHECK(b64url_s("AAAA+AAA", out, sizeof out) == SY_EPROTO);
    CHECK(b64url_s("AAAA/AAA", out, sizeof out) == SY_EPROTO);
    CHECK(b64url_s(" AAA", out, sizeof out) == SY_EPROTO);
    CHECK(b64url_s("AAA ", out, sizeof out) == SY_EPROTO);
    CHECK(b64url_s("AA\nAA", out, sizeof out) == SY_EPROTO);
    CHECK(b64url("AA\0A", 4, out, sizeof out) == SY_EPROTO);
    /* Capacity: SY_ELIMIT when too small, but invalid input is SY_EPROTO first. */
    CHECK(b64url_s("AAAA", out, 2) == SY_ELIMIT);
    CHECK(b64url_s("AAAA", out, 3) == 3);
    CHECK(b64url_s("AA", out, 0) == SY_ELIMIT);
    CHECK(b64url_s("AAAA=", out, 0) == SY_EPROTO);
    CHECK(b64url_s("AAA*", out, 1) == SY_EPROTO);
    CHECK(b64url_s("AAAAAB", out, 1) == SY_EPROTO);
    /* out NULL: validate and measure only. */
    CHECK(b64url_s("AAMAAABkAAQAAP__", NULL, 0) == 12);
    CHECK(b64url_s("AAMAAABkAAQAAP_", NULL, 0) == SY_EPROTO);
    /* Writes never pass cap. */
    memset(out, 0xAA, sizeof out);
    CHECK(b64url_s("AAAAAAAA", out, 4) == SY_ELIMIT);
    CHECK(out[4] == 0xAA);

    /* Each character: only the url alphabet decodes. */
    for (int c = 0; c < 256; c++) {
        char in[2] = {(char)c, 'A'};
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_';
        ssize_t r = b64url(in, 2, out, sizeof out);
        CHECK_MSG(ok ? r == 1 : r == SY_EPROTO, "char %d: %zd", c, r);
    }

    /* Round trip against OpenSSL for every length up to 48 with varied bytes. */
    for (size_t len = 0; len <= 48; len++) {
        uint8_t src[48];
        char enc[80];
        for (size_t i = 0; i < len; i++)
            src[i] = (uint8_t)(i * 37 + len * 11 + 0xf7);
        size_t elen = ref_encode(src, len, enc);
        memset(out, 0, sizeof out);
        ssize_t r = b64url(enc, elen, out, len);
        CHECK_MSG(r == (ssize_t)len && memcmp(out, src, len) == 0, "round trip %zu: %zd", len, r);
        if (len > 0)
            CHECK_MSG(b64url(enc, elen, out, len - 1) == SY_ELIMIT, "cap %zu", len);
    }

    /* Every prefix of a valid encoding: either invalid (4k+1 or stray bits) or the prefix of the
     * decoded bytes. */
    const char *full = "_-8AAQIDBAX_-8AAQIDBAX_-8AAQIDBAX_-8";
    uint8_t whole[64];
    ssize_t wn = b64url_s(full, whole, sizeof whole);
    CHECK(wn == 27);
    for (size_t len = 0; len <= strlen(full); len++) {
        ssize_t r = b64url(full, len, out, sizeof out);
        size_t bytes = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
        if (len % 4 == 1) {
            CHECK_MSG(r == SY_EPROTO, "prefix %zu", len);
        } else if (r == SY_EPROTO) {
            /* only when the last character leaves non-zero bits */
            CHECK_MSG(len % 4 != 0, "prefix %zu rejected", len);
        } else {
            CHECK_MSG(r == (ssize_t)bytes && memcmp(out, whole, bytes) == 0, "prefix %zu: %zd", len,
                      r);
        }
    }
}

int main(void)
{
    test_offer_cases();
    test_offer_slices();
    test_upgrade_value_prefixes();
    test_match();
    test_ws_accept();
    test_base64url();
    return t_summary("test_upgrade");
}
