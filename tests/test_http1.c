/* Unit tests for http1: request heads, chunked bodies, token lists and reason phrases. */
#include "http1.h"
#include "test.h"

#define MAX_HEAD 8192
#define MAX_HEADERS 64

static sy_http1_header hdrs[MAX_HEADERS];

/* ---- request heads ---------------------------------------------------------------------- */

/* A valid head: parsed as a whole, with bytes after it, as every strict prefix (SY_EAGAIN),
 * always right before a guard page. `expect` lists "key=value" checks separated by '|'. */
typedef struct head_ok {
    const char *name;
    const char *in;
    const char *expect;
    size_t max_head;    /* 0: MAX_HEAD */
    size_t max_headers; /* 0: MAX_HEADERS */
} head_ok;

#define ZERO ((size_t)-1) /* a limit of 0 in the tables below, where 0 means the default */

#define OK(n, i, e)                                                                                \
    {                                                                                              \
        .name = (n), .in = (i), .expect = (e)                                                      \
    }
#define OK_LIM(n, i, e, mh, mhs)                                                                   \
    {                                                                                              \
        .name = (n), .in = (i), .expect = (e), .max_head = (mh), .max_headers = (mhs)              \
    }
#define BAD(n, i, r, st, w)                                                                        \
    {                                                                                              \
        .name = (n), .in = (i), .rc = (r), .status = (st), .why = (w)                              \
    }
#define BAD_BIN(n, i, r, st, w)                                                                    \
    {                                                                                              \
        .name = (n), .in = (i), .len = sizeof(i) - 1, .rc = (r), .status = (st), .why = (w)        \
    }
#define BAD_LIM(n, i, r, st, w, mh, mhs)                                                           \
    {                                                                                              \
        .name = (n), .in = (i), .rc = (r), .status = (st), .why = (w), .max_head = (mh),           \
        .max_headers = (mhs)                                                                       \
    }

/* A rejected head: whole input, right before a guard page. */
typedef struct head_bad {
    const char *name;
    const char *in;
    size_t len; /* 0: strlen(in) */
    ssize_t rc;
    int status;
    const char *why; /* expected reason */
    size_t max_head;
    size_t max_headers;
} head_bad;

#define H11 "GET / HTTP/1.1\r\nHost: h\r\n"

static const head_ok head_ok_cases[] = {
    OK("origin form", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
       "method=GET|target=/|path=/|query=-|authority=-|form=origin|v=11|nh=1|cl=-1|chunked=0|"
       "conn=0|ka=1|expect=0|upgrade=0|host=example.com|h0=Host:example.com"),
    OK("origin form with query", "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\n\r\n",
       "target=/a/b?x=1&y=2|path=/a/b|query=x=1&y=2|form=origin"),
    OK("empty query", "GET /p? HTTP/1.1\r\nHost: h\r\n\r\n", "path=/p|query="),
    OK("query with second ?", "GET /p?a?b HTTP/1.1\r\nHost: h\r\n\r\n", "path=/p|query=a?b"),
    OK("double slash path", "GET //h/x HTTP/1.1\r\nHost: h\r\n\r\n", "form=origin|path=//h/x"),
    OK("every visible byte in target",
       "GET /!\"#$%&'()*+,-./09:;<=>@AZ[\\]^_`az{|}~?q HTTP/1.1\r\nHost: h\r\n\r\n",
       "\npath=/!\"#$%&'()*+,-./09:;<=>@AZ[\\]^_`az{|}~\nquery=q"),
    OK("absolute form", "GET http://example.com:8080/a?b HTTP/1.1\r\nHost: other\r\n\r\n",
       "form=absolute|authority=example.com:8080|path=/a|query=b|host=other"),
    OK("absolute form without path", "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
       "form=absolute|authority=example.com|path=/|query=-"),
    OK("absolute form query without path", "GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n",
       "form=absolute|authority=h|path=/|query=q=1"),
    OK("absolute form ipv6", "GET HTTPS://[::1]:443/x/ HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
       "form=absolute|authority=[::1]:443|path=/x/|query=-|host=[::1]:443"),
    OK("absolute form other scheme", "GET ws+x.1://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
       "form=absolute|authority=h|path=/"),
    OK("asterisk form", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
       "method=OPTIONS|form=asterisk|path=*|target=*|query=-|authority=-"),
    OK("authority form", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
       "method=CONNECT|form=authority|path=example.com:443|authority=-|query=-"),
    OK("authority form ipv6", "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n",
       "form=authority|path=[::1]:8443"),
    OK("extension methods", "M-SEARCH / HTTP/1.1\r\nHost: h\r\n\r\n", "method=M-SEARCH"),
    OK("lower-case method is a token", "get / HTTP/1.1\r\nHost: h\r\n\r\n", "method=get"),
    OK("every tchar in method", "!#$%&'*+-.^_`|~09AZaz / HTTP/1.1\r\nHost: h\r\n\r\n",
       "\nmethod=!#$%&'*+-.^_`|~09AZaz"),
    OK("HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", "v=10|ka=0|host=-|nh=0|conn=0"),
    OK("HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
       "v=10|ka=1|conn=keep-alive"),
    OK("HTTP/1.0 Keep-Alive mixed case", "GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n",
       "v=10|ka=1|conn=keep-alive"),
    OK("HTTP/1.0 keep-alive and close", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
       "v=10|ka=0|conn=close+keep-alive"),
    OK("HTTP/1.0 other token", "GET / HTTP/1.0\r\nConnection: foo\r\n\r\n", "v=10|ka=0|conn=0"),
    OK("HTTP/1.1 default persistent", H11 "\r\n", "v=11|ka=1|conn=0"),
    OK("HTTP/1.1 close", H11 "Connection: close\r\n\r\n", "ka=0|conn=close"),
    OK("HTTP/1.1 CLOSE", H11 "Connection: CLOSE\r\n\r\n", "ka=0|conn=close"),
    OK("keep-alive, Upgrade", H11 "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
       "ka=1|conn=keep-alive+upgrade|upgrade=1|nh=3|h2=Upgrade:websocket"),
    OK("h2c offer",
       "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
       "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
       "conn=upgrade+http2-settings|upgrade=1|ka=1|nh=4"),
    OK("Connection over two fields", H11 "Connection: close\r\nConnection: upgrade\r\n\r\n",
       "ka=0|conn=close+upgrade"),
    OK("Connection empty elements", H11 "Connection: , foo ,,\tKEEP-ALIVE\t,\r\n\r\n",
       "ka=1|conn=keep-alive"),
    OK("Upgrade without Connection", H11 "Upgrade: websocket\r\n\r\n", "upgrade=1|conn=0"),
    OK("browser websocket",
       "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
       "Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
       "Sec-WebSocket-Version: 13\r\n\r\n",
       "path=/chat|host=server.example.com|upgrade=1|conn=upgrade|nh=7|"
       "h3=Sec-WebSocket-Key:dGhlIHNhbXBsZSBub25jZQ==|h5=Sec-WebSocket-Protocol:chat, superchat"),
    OK("Content-Length", "POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n",
       "method=POST|cl=42|chunked=0"),
    OK("Content-Length zero", H11 "Content-Length: 0\r\n\r\n", "cl=0"),
    OK("Content-Length leading zeros", H11 "Content-Length: 007\r\n\r\n", "cl=7"),
    OK("Content-Length max", H11 "Content-Length: 9223372036854775807\r\n\r\n",
       "cl=9223372036854775807"),
    OK("duplicate equal Content-Length", H11 "Content-Length: 5\r\ncontent-length: 5\r\n\r\n",
       "cl=5|nh=3"),
    OK("Content-Length list of equal values", H11 "Content-Length: 5, 5,5\r\n\r\n", "cl=5"),
    OK("Content-Length OWS", H11 "Content-Length: \t 12 \t\r\n\r\n", "cl=12|h1=Content-Length:12"),
    OK("Transfer-Encoding chunked", H11 "Transfer-Encoding: chunked\r\n\r\n", "chunked=1|cl=-1"),
    OK("Transfer-Encoding Chunked", H11 "transfer-encoding: Chunked\r\n\r\n", "chunked=1"),
    OK("Transfer-Encoding empty elements", H11 "Transfer-Encoding: ,chunked,\r\n\r\n", "chunked=1"),
    OK("Expect 100-continue", H11 "Expect: 100-continue\r\nContent-Length: 3\r\n\r\n",
       "expect=1|cl=3"),
    OK("Expect 100-Continue", H11 "Expect: 100-Continue\r\n\r\n", "expect=1"),
    OK("Expect other", H11 "Expect: something\r\n\r\n", "expect=0"),
    OK("Expect ignored in HTTP/1.0", "GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", "expect=0"),
    OK("leading CRLFs", "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", "method=GET|path=/"),
    OK("leading bare LFs", "\n\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", "method=GET"),
    OK("bare LF line endings", "GET / HTTP/1.1\nHost: h\nX: y\n\n", "host=h|nh=2|h1=X:y|v=11"),
    OK("mixed line endings", "GET / HTTP/1.0\nHost: h\r\nX: y\n\r\n", "host=h|nh=2|v=10"),
    OK("OWS trimmed", "GET / HTTP/1.1\r\nHost: \t h \t\r\nX-A:a\r\nX-B: \t\r\nX-C:\r\n\r\n",
       "host=h|nh=4|h1=X-A:a|h2=X-B:|h3=X-C:"),
    OK("inner whitespace kept", H11 "X: a \t b\r\n\r\n", "h1=X:a \t b"),
    OK("obs-text and colons in values", H11 "X: \x80\xff:a:\r\n\r\n", "h1=X:\x80\xff:a:"),
    OK("every tchar in a field name", H11 "!#$%&'*+-.^_`|~09AZaz: v\r\n\r\n",
       "\nh1=!#$%&'*+-.^_`|~09AZaz:v"),
    OK("names keep their case", "GET / HTTP/1.1\r\nHOST: h\r\ncontent-LENGTH: 3\r\n\r\n",
       "host=h|cl=3|h0=HOST:h|h1=content-LENGTH:3"),
    OK("empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", "host="),
    OK("Host with sub-delims and pct", "GET / HTTP/1.1\r\nHost: a-b.c_d~e%41!$&'()*+,;=:80\r\n\r\n",
       "host=a-b.c_d~e%41!$&'()*+,;=:80"),
    OK_LIM("exactly max_headers", "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", "nh=3", 0,
           3),
    OK_LIM("no headers with max_headers 0", "GET / HTTP/1.0\r\n\r\n", "nh=0", 0, ZERO),
    OK("long values cross word boundaries",
       H11 "X-Long: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n\r\n",
       "h1=X-Long:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
};

static const head_bad head_bad_cases[] = {
    /* request line */
    BAD("empty method", " / HTTP/1.1\r\n\r\n", SY_EPROTO, 400, "invalid method"),
    BAD("method with separator", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid method"),
    BAD("method then CRLF", "GET\r\n\r\n", SY_EPROTO, 400, "invalid method"),
    BAD_BIN("NUL in method", "GE\0T / HTTP/1.1\r\n\r\n", SY_EPROTO, 400, "invalid method"),
    BAD("double space", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request line"),
    BAD("HTTP/0.9", "GET /\r\n\r\n", SY_EPROTO, 400, "invalid request line"),
    BAD("tab in target", "GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request target"),
    BAD_BIN("NUL in target", "GET /a\0 HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
            "invalid request target"),
    BAD("DEL in target", "GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request target"),
    BAD("non-ASCII in target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request target"),
    BAD("space in target", "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "unsupported HTTP version"),
    BAD("HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "unsupported HTTP version"),
    BAD("HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "unsupported HTTP version"),
    BAD("h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", SY_EPROTO, 400,
        "unsupported HTTP version"),
    BAD("HTTP/2 incomplete", "GET / HTTP/2", SY_EPROTO, 400, "unsupported HTTP version"),
    BAD("lower-case version", "GET / http/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "unsupported HTTP version"),
    BAD("HTTP/1.10", "GET / HTTP/1.10\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "unsupported HTTP version"),
    BAD("HTTP/11", "GET / HTTP/11\r\nHost: h\r\n\r\n", SY_EPROTO, 400, "unsupported HTTP version"),
    BAD("HTTPS/1.1", "GET / HTTPS/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "unsupported HTTP version"),
    BAD("space after version", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request line"),
    BAD("bare CR after version", "GET / HTTP/1.1\rHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid line ending"),
    BAD("bare CR before request line", "\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid line ending"),
    BAD("asterisk with GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request target"),
    BAD("CONNECT with origin form", "CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request target"),
    BAD("CONNECT without port", "CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request target"),
    BAD("CONNECT empty port", "CONNECT example.com: HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request target"),
    BAD("CONNECT empty host", "CONNECT :443 HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request target"),
    BAD("CONNECT bad port", "CONNECT h:44x HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request target"),
    BAD("CONNECT userinfo", "CONNECT u@h:443 HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request target"),
    BAD("authority form with GET", "GET example.com:80 HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request target"),
    BAD("absolute form empty authority", "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO,
        400, "invalid request target"),
    BAD("absolute form userinfo", "GET http://u:p@h/ HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request target"),
    BAD("scheme starting with a digit", "GET 1http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO,
        400, "invalid request target"),
    BAD("relative target", "GET index.html HTTP/1.1\r\nHost: h\r\n\r\n", SY_EPROTO, 400,
        "invalid request target"),
    /* field lines */
    BAD("missing Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", SY_EPROTO, 400,
        "missing host header field"),
    BAD("two Hosts", H11 "Host: h\r\n\r\n", SY_EPROTO, 400, "multiple host header fields"),
    BAD("two Hosts in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", SY_EPROTO, 400,
        "multiple host header fields"),
    BAD("Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", SY_EPROTO, 400,
        "invalid host header field"),
    BAD("Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", SY_EPROTO, 400,
        "invalid host header field"),
    BAD("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", SY_EPROTO, 400,
        "invalid host header field"),
    BAD("obs-fold", H11 "X: a\r\n b\r\n\r\n", SY_EPROTO, 400, "obsolete line folding"),
    BAD("obs-fold with tab", H11 "X: a\r\n\tb\r\n\r\n", SY_EPROTO, 400, "obsolete line folding"),
    BAD("whitespace after request line", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", SY_EPROTO, 400,
        "whitespace after request line"),
    BAD("space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", SY_EPROTO, 400,
        "whitespace before colon"),
    BAD("tab before colon", H11 "X\t: v\r\n\r\n", SY_EPROTO, 400, "whitespace before colon"),
    BAD("empty field name", H11 ": v\r\n\r\n", SY_EPROTO, 400, "invalid header field name"),
    BAD("field name without colon", H11 "X\r\n\r\n", SY_EPROTO, 400, "invalid header field name"),
    BAD("separator in field name", H11 "X(Y): v\r\n\r\n", SY_EPROTO, 400,
        "invalid header field name"),
    BAD("non-ASCII in field name", H11 "X\xc3\xa9: v\r\n\r\n", SY_EPROTO, 400,
        "invalid header field name"),
    BAD_BIN("NUL in field value", H11 "X: a\0b\r\n\r\n", SY_EPROTO, 400,
            "invalid header field value"),
    BAD("DEL in field value", H11 "X: a\x7f\r\n\r\n", SY_EPROTO, 400, "invalid header field value"),
    BAD("CTL in field value", H11 "X: a\x01\r\n\r\n", SY_EPROTO, 400, "invalid header field value"),
    BAD("bare CR in field value", H11 "X: a\rb\r\n\r\n", SY_EPROTO, 400,
        "invalid header field value"),
    BAD("CR CR LF", H11 "X: a\r\r\n\r\n", SY_EPROTO, 400, "invalid header field value"),
    BAD("bare CR ending the head", H11 "\rX", SY_EPROTO, 400, "invalid line ending"),
    /* framing */
    BAD("CL and TE", H11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", SY_EPROTO, 400,
        "both content-length and transfer-encoding"),
    BAD("TE and CL", H11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", SY_EPROTO, 400,
        "both content-length and transfer-encoding"),
    BAD("differing Content-Length", H11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", SY_EPROTO,
        400, "conflicting content-length"),
    BAD("differing Content-Length list", H11 "Content-Length: 5, 6\r\n\r\n", SY_EPROTO, 400,
        "conflicting content-length"),
    BAD("Content-Length with plus", H11 "Content-Length: +5\r\n\r\n", SY_EPROTO, 400,
        "invalid content-length"),
    BAD("Content-Length negative", H11 "Content-Length: -1\r\n\r\n", SY_EPROTO, 400,
        "invalid content-length"),
    BAD("Content-Length hex", H11 "Content-Length: 0x10\r\n\r\n", SY_EPROTO, 400,
        "invalid content-length"),
    BAD("Content-Length trailing letter", H11 "Content-Length: 5a\r\n\r\n", SY_EPROTO, 400,
        "invalid content-length"),
    BAD("Content-Length inner space", H11 "Content-Length: 1 2\r\n\r\n", SY_EPROTO, 400,
        "invalid content-length"),
    BAD("Content-Length empty", H11 "Content-Length: \r\n\r\n", SY_EPROTO, 400,
        "invalid content-length"),
    BAD("Content-Length only commas", H11 "Content-Length: ,\r\n\r\n", SY_EPROTO, 400,
        "invalid content-length"),
    BAD("Content-Length overflow", H11 "Content-Length: 9223372036854775808\r\n\r\n", SY_EPROTO,
        400, "content-length too large"),
    BAD("Content-Length huge", H11 "Content-Length: 123456789012345678901234567890\r\n\r\n",
        SY_EPROTO, 400, "content-length too large"),
    BAD("TE gzip", H11 "Transfer-Encoding: gzip\r\n\r\n", SY_EPROTO, 501,
        "unsupported transfer coding"),
    BAD("TE gzip, chunked", H11 "Transfer-Encoding: gzip, chunked\r\n\r\n", SY_EPROTO, 501,
        "unsupported transfer coding"),
    BAD("TE gzip then chunked over two fields",
        H11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", SY_EPROTO, 501,
        "unsupported transfer coding"),
    BAD("TE chunked, gzip", H11 "Transfer-Encoding: chunked, gzip\r\n\r\n", SY_EPROTO, 501,
        "unsupported transfer coding"),
    BAD("TE unknown coding", H11 "Transfer-Encoding: foo, chunked\r\n\r\n", SY_EPROTO, 501,
        "unsupported transfer coding"),
    BAD("TE chunked with parameter", H11 "Transfer-Encoding: chunked;a=b\r\n\r\n", SY_EPROTO, 501,
        "unsupported transfer coding"),
    BAD("TE identity", H11 "Transfer-Encoding: identity\r\n\r\n", SY_EPROTO, 501,
        "unsupported transfer coding"),
    BAD("TE chunked twice", H11 "Transfer-Encoding: chunked, chunked\r\n\r\n", SY_EPROTO, 400,
        "chunked transfer coding repeated"),
    BAD("TE chunked in two fields",
        H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", SY_EPROTO, 400,
        "chunked transfer coding repeated"),
    BAD("TE empty", H11 "Transfer-Encoding: \r\n\r\n", SY_EPROTO, 400, "invalid transfer-encoding"),
    BAD("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", SY_EPROTO, 400,
        "transfer-encoding in HTTP/1.0"),
    /* limits */
    BAD_LIM("one header over max_headers", "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n",
            SY_ELIMIT, 431, "too many header fields", 0, 2),
    BAD_LIM("header with max_headers 0", H11 "\r\n", SY_ELIMIT, 431, "too many header fields", 0,
            ZERO),
    BAD_LIM("head over max_head", "GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789\r\n\r\n", SY_ELIMIT,
            431, "request header section too large", 40, 0),
    BAD_LIM("request line over max_head",
            "GET /0123456789012345678901234567890123456789 HTTP/1.1\r\n", SY_ELIMIT, 414,
            "request line too long", 40, 0),
    BAD_LIM("incomplete request line at max_head", "GET /01234567890123456789012345678901234",
            SY_ELIMIT, 414, "request line too long", 40, 0),
    BAD_LIM("incomplete request line past max_head",
            "GET /0123456789012345678901234567890123456789012345678901234567890123456789",
            SY_ELIMIT, 414, "request line too long", 40, 0),
    BAD_LIM("incomplete field line past max_head",
            "GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789abcdef", SY_ELIMIT, 431,
            "request header section too large", 40, 0),
    BAD_LIM("leading empty lines over max_head",
            "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n",
            SY_ELIMIT, 431, "request header section too large", 40, 0),
    BAD_LIM("leading empty lines push the head over",
            "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", SY_ELIMIT, 431,
            "request header section too large", 40, 0),
    BAD_LIM("leading empty lines then a long request line",
            "\r\n\r\n\r\n\r\nGET /0123456789012345678901234567890123456789", SY_ELIMIT, 414,
            "request line too long", 40, 0),
    BAD_LIM("leading empty lines then a short incomplete request line",
            "\r\n\r\n\r\n\r\nGET /01234567890123456789012345678", SY_ELIMIT, 431,
            "request header section too large", 40, 0),
    BAD_LIM("leading empty lines then a request line that fits",
            "\r\n\r\n\r\n\r\nGET /0123456789012345678901 HTTP/1.1\r\nHost: h\r\n\r\n", SY_ELIMIT,
            431, "request header section too large", 40, 0),
    BAD_LIM("leading empty lines then a request line that does not",
            "\r\n\r\n\r\n\r\nGET /01234567890123456789012345678 HTTP/1.1", SY_ELIMIT, 414,
            "request line too long", 40, 0),
};

static int conn_flags(const char *v)
{
    int f = 0;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", v);
    for (char *save = NULL, *t = strtok_r(buf, "+", &save); t; t = strtok_r(NULL, "+", &save)) {
        if (!strcmp(t, "close"))
            f |= SY_CONN_CLOSE;
        else if (!strcmp(t, "keep-alive"))
            f |= SY_CONN_KEEP_ALIVE;
        else if (!strcmp(t, "upgrade"))
            f |= SY_CONN_UPGRADE;
        else if (!strcmp(t, "http2-settings"))
            f |= SY_CONN_HTTP2_SETTINGS;
    }
    return f;
}

static int slice_is(sy_str s, const char *v)
{
    if (!strcmp(v, "-"))
        return s.p == NULL && s.len == 0;
    return s.p != NULL && s.len == strlen(v) && memcmp(s.p, v, s.len) == 0;
}

static int within(sy_str s, const char *buf, size_t len)
{
    return s.p == NULL || (s.p >= buf && s.p + s.len <= buf + len);
}

/* Checks every "key=value" of expect against req. Items are separated by '|', or by '\n' when
 * expect starts with one (for values containing '|'). */
static void check_expect(const char *name, const sy_http1_request *req, const char *expect)
{
    static const char *forms[] = {"", "origin", "absolute", "asterisk", "authority"};
    char buf[1024];
    const char *sep = expect[0] == '\n' ? "\n" : "|";
    snprintf(buf, sizeof(buf), "%s", expect);
    for (char *save = NULL, *kv = strtok_r(buf, sep, &save); kv; kv = strtok_r(NULL, sep, &save)) {
        char *v = strchr(kv, '=');
        if (!v) {
            CHECK_MSG(0, "%s: bad expectation %s", name, kv);
            continue;
        }
        *v++ = '\0';
        int ok;
        if (!strcmp(kv, "method"))
            ok = slice_is(req->method, v);
        else if (!strcmp(kv, "target"))
            ok = slice_is(req->target, v);
        else if (!strcmp(kv, "path"))
            ok = slice_is(req->path, v);
        else if (!strcmp(kv, "query"))
            ok = slice_is(req->query, v);
        else if (!strcmp(kv, "authority"))
            ok = slice_is(req->authority, v);
        else if (!strcmp(kv, "host"))
            ok = slice_is(req->host, v);
        else if (!strcmp(kv, "form"))
            ok = req->target_form >= 1 && req->target_form <= 4 &&
                 !strcmp(forms[req->target_form], v);
        else if (!strcmp(kv, "v"))
            ok = req->version == atoi(v);
        else if (!strcmp(kv, "nh"))
            ok = req->nheaders == (size_t)atoi(v);
        else if (!strcmp(kv, "cl"))
            ok = req->content_length == strtoll(v, NULL, 10);
        else if (!strcmp(kv, "chunked"))
            ok = req->chunked == atoi(v);
        else if (!strcmp(kv, "ka"))
            ok = req->keep_alive == atoi(v);
        else if (!strcmp(kv, "expect"))
            ok = req->expect_continue == atoi(v);
        else if (!strcmp(kv, "upgrade"))
            ok = req->has_upgrade == atoi(v);
        else if (!strcmp(kv, "conn"))
            ok = req->connection == conn_flags(v);
        else if (kv[0] == 'h' && kv[1] >= '0' && kv[1] <= '9') {
            size_t i = (size_t)atoi(kv + 1);
            char *colon = strchr(v, ':');
            ok = colon && i < req->nheaders;
            if (ok) {
                *colon = '\0';
                ok =
                    slice_is(req->headers[i].name, v) && slice_is(req->headers[i].value, colon + 1);
            }
        } else {
            CHECK_MSG(0, "%s: unknown key %s", name, kv);
            continue;
        }
        CHECK_MSG(ok, "%s: %s != %s", name, kv, v);
    }
}

static size_t limit_of(size_t v, size_t def)
{
    return v == ZERO ? 0 : v ? v : def;
}

static sy_http1_limits limits_of(size_t max_head, size_t max_headers)
{
    sy_http1_limits l = {limit_of(max_head, MAX_HEAD), limit_of(max_headers, MAX_HEADERS)};
    return l;
}

/* Parses a guarded copy of in[0..len); returns rc and keeps status/why. */
static ssize_t parse_guarded(const char *in, size_t len, const sy_http1_limits *lim, int *status,
                             const char **why)
{
    void *map;
    size_t maplen;
    char *p = t_guard_copy(in, len, &map, &maplen);
    sy_http1_request req = {.headers = hdrs};
    *why = NULL;
    ssize_t rc = sy_http1_parse_head(p, len, lim, &req, why);
    *status = req.status;
    t_guard_free(map, maplen);
    return rc;
}

static void test_head_ok(void)
{
    static const char next[] = "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
    for (size_t c = 0; c < SY_COUNTOF(head_ok_cases); c++) {
        const head_ok *tc = &head_ok_cases[c];
        size_t n = strlen(tc->in);
        sy_http1_limits lim = limits_of(tc->max_head, tc->max_headers);

        /* Whole head, then the head followed by a pipelined request. */
        char buf[2048];
        memcpy(buf, tc->in, n);
        memcpy(buf + n, next, sizeof(next) - 1);
        for (int extra = 0; extra < 2; extra++) {
            size_t len = n + (extra ? sizeof(next) - 1 : 0);
            void *map;
            size_t maplen;
            char *p = t_guard_copy(buf, len, &map, &maplen);
            sy_http1_request req = {.headers = hdrs};
            const char *why = NULL;
            ssize_t rc = sy_http1_parse_head(p, len, &lim, &req, &why);
            CHECK_MSG(rc == (ssize_t)n, "%s (extra %d): rc %zd, want %zu (%s)", tc->name, extra, rc,
                      n, why ? why : "-");
            if (rc == (ssize_t)n) {
                CHECK_MSG(req.head_len == n && req.status == 0, "%s: head_len/status", tc->name);
                check_expect(tc->name, &req, tc->expect);
                int inside = within(req.method, p, n) && within(req.target, p, n) &&
                             within(req.path, p, n) && within(req.query, p, n) &&
                             within(req.authority, p, n) && within(req.host, p, n);
                for (size_t i = 0; i < req.nheaders; i++)
                    inside = inside && within(req.headers[i].name, p, n) &&
                             within(req.headers[i].value, p, n);
                CHECK_MSG(inside, "%s: a slice leaves the head", tc->name);
            }
            t_guard_free(map, maplen);
        }

        /* Every strict prefix needs more bytes. */
        int prefixes_ok = 1;
        for (size_t k = 0; k < n; k++) {
            int status;
            const char *why;
            ssize_t rc = parse_guarded(tc->in, k, &lim, &status, &why);
            if (rc != SY_EAGAIN || status != 0) {
                CHECK_MSG(0, "%s: prefix %zu gave %zd (%s)", tc->name, k, rc, why ? why : "-");
                prefixes_ok = 0;
                break;
            }
        }
        CHECK_MSG(prefixes_ok, "%s: prefixes", tc->name);
    }
}

static void test_head_bad(void)
{
    for (size_t c = 0; c < SY_COUNTOF(head_bad_cases); c++) {
        const head_bad *tc = &head_bad_cases[c];
        size_t n = tc->len ? tc->len : strlen(tc->in);
        sy_http1_limits lim = limits_of(tc->max_head, tc->max_headers);
        int status;
        const char *why;
        ssize_t rc = parse_guarded(tc->in, n, &lim, &status, &why);
        CHECK_MSG(rc == tc->rc && status == tc->status, "%s: rc %zd status %d, want %zd %d (%s)",
                  tc->name, rc, status, tc->rc, tc->status, why ? why : "-");
        CHECK_MSG(why && !strcmp(why, tc->why), "%s: why \"%s\", want \"%s\"", tc->name,
                  why ? why : "(null)", tc->why);
    }
}

/* Builds "GET /<pad> HTTP/1.1\r\nHost: h\r\n\r\n" and friends for the limit edges. */
static void test_head_limits(void)
{
    char buf[512];
    sy_http1_limits lim = {64, 8};
    int status;
    const char *why;

    /* A head of exactly max_head bytes is accepted; one more byte is 431. */
    int n = snprintf(buf, sizeof(buf), "GET /%037d HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    CHECK(n == 64);
    CHECK(parse_guarded(buf, 64, &lim, &status, &why) == 64);
    for (size_t k = 0; k < 64; k++)
        if (parse_guarded(buf, k, &lim, &status, &why) != SY_EAGAIN)
            CHECK_MSG(0, "exact head: prefix %zu", k);
    n = snprintf(buf, sizeof(buf), "GET /%038d HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    CHECK(parse_guarded(buf, (size_t)n, &lim, &status, &why) == SY_ELIMIT && status == 431);
    /* ... and as soon as max_head bytes are buffered without the end of the head. */
    CHECK(parse_guarded(buf, 63, &lim, &status, &why) == SY_EAGAIN);
    CHECK(parse_guarded(buf, 64, &lim, &status, &why) == SY_ELIMIT && status == 431);

    /* A request line of exactly max_head bytes (LF included) is not 414. */
    n = snprintf(buf, sizeof(buf), "GET /%049d HTTP/1.1\nHost: h\n\n", 0);
    CHECK(parse_guarded(buf, (size_t)n, &lim, &status, &why) == SY_ELIMIT && status == 431);
    CHECK(parse_guarded(buf, 64, &lim, &status, &why) == SY_ELIMIT && status == 431);
    n = snprintf(buf, sizeof(buf), "GET /%050d HTTP/1.1\nHost: h\n\n", 0);
    CHECK(parse_guarded(buf, (size_t)n, &lim, &status, &why) == SY_ELIMIT && status == 414);
    CHECK(parse_guarded(buf, 64, &lim, &status, &why) == SY_ELIMIT && status == 414);
    CHECK(parse_guarded(buf, 63, &lim, &status, &why) == SY_EAGAIN);

    /* Leading empty lines count in head_len and against max_head. */
    n = snprintf(buf, sizeof(buf),
                 "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(parse_guarded(buf, (size_t)n, &lim, &status, &why) == n && n == 47);

    /* A large head is refused after reading max_head bytes, not all of it. */
    static char big[100000];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nHost: h\r\nX: ", 28);
    sy_http1_limits lim8k = {8192, 8};
    CHECK(parse_guarded(big, sizeof(big), &lim8k, &status, &why) == SY_ELIMIT && status == 431);
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET /", 5);
    CHECK(parse_guarded(big, sizeof(big), &lim8k, &status, &why) == SY_ELIMIT && status == 414);
    CHECK(why && !strcmp(why, "request line too long"));
}

/* Each byte value at each position of a 20-byte method, target, field name, value and Host:
 * the scanners step 16 or 8 bytes at a time, then byte by byte near the end of the buffer. */
static void test_head_bytes(void)
{
    enum { C_TCHAR, C_VCHAR, C_FIELD, C_NAME, C_HOST };
    static const struct {
        const char *tmpl; /* '@' stands for the 20 bytes */
        int cls;
        size_t from, to; /* positions tried; leading and trailing OWS is trimmed in values */
    } fields[] = {
        {"@ / HTTP/1.1\r\nHost: h\r\n\r\n", C_TCHAR, 1, 20},
        {"GET /@ HTTP/1.1\r\nHost: h\r\n\r\n", C_VCHAR, 0, 20},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: @\r\n\r\n", C_FIELD, 0, 20},
        {"GET / HTTP/1.1\r\nHost: h\r\n@: v\r\n\r\n", C_NAME, 0, 20},
        {"GET / HTTP/1.1\r\nHost: @\r\n\r\n", C_HOST, 1, 19},
    };
    static const char run[] = "0123456789abcdefghij";
    static const char tchars[] = "!#$%&'*+-.^_`|~";
    static const char host_extra[] = "-._~%!$&'()*+,;=:[]";
    sy_http1_limits lim = limits_of(0, 0);
    for (size_t f = 0; f < SY_COUNTOF(fields); f++) {
        char buf[256];
        const char *at = strchr(fields[f].tmpl, '@');
        size_t off = (size_t)(at - fields[f].tmpl);
        int n = snprintf(buf, sizeof(buf), "%.*s%s%s", (int)off, fields[f].tmpl, run, at + 1);
        for (int b = 0; b < 256; b++) {
            int alnum = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z');
            int tchar = alnum || (b && strchr(tchars, b));
            int want[] = {
                [C_TCHAR] = tchar,
                [C_VCHAR] = b >= 0x21 && b <= 0x7e,
                [C_FIELD] = b == '\t' || (b >= 0x20 && b != 0x7f),
                [C_NAME] = tchar,
                [C_HOST] = alnum || (b && strchr(host_extra, b)),
            };
            int bad = 0;
            for (size_t pos = fields[f].from; pos < fields[f].to; pos++) {
                int status;
                const char *why;
                char save = buf[off + pos];
                buf[off + pos] = (char)b;
                ssize_t rc = parse_guarded(buf, (size_t)n, &lim, &status, &why);
                buf[off + pos] = save;
                /* A colon inside a name ends it early; the rest joins the value. */
                int ok = want[fields[f].cls] || (fields[f].cls == C_NAME && b == ':' && pos > 0);
                bad += (rc == (ssize_t)n) != ok;
            }
            CHECK_MSG(bad == 0, "%s: byte 0x%02x", fields[f].tmpl, b);
        }
    }
}

/* The server's loop: re-parse the grown buffer until a head is complete, then drop it. */
static void test_head_incremental(void)
{
    static const char in[] = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
                             "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
                             "\r\nGET /3 HTTP/1.0\r\n\r\n";
    static const char *paths[] = {"/1", "/2", "/3"};
    sy_http1_limits lim = limits_of(0, 0);
    size_t start = 0, have = 0;
    int got = 0;
    while (have < sizeof(in) - 1) {
        have++;
        sy_http1_request req = {.headers = hdrs};
        const char *why;
        ssize_t rc = sy_http1_parse_head(in + start, have - start, &lim, &req, &why);
        if (rc == SY_EAGAIN)
            continue;
        CHECK_MSG(rc > 0 && got < 3, "incremental: rc %zd", rc);
        if (rc <= 0 || got >= 3)
            break;
        CHECK(slice_is(req.path, paths[got]));
        CHECK((size_t)rc == have - start);
        got++;
        start += (size_t)rc;
    }
    CHECK(got == 3 && start == sizeof(in) - 1);
}

static void test_find_count(void)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nX-AB: 3\r\n\r\n";
    sy_http1_limits lim = limits_of(0, 0);
    sy_http1_request req = {.headers = hdrs};
    const char *why;
    CHECK(sy_http1_parse_head(in, sizeof(in) - 1, &lim, &req, &why) == (ssize_t)sizeof(in) - 1);
    const sy_http1_header *h = sy_http1_find(&req, "x-a");
    CHECK(h && slice_is(h->value, "1"));
    CHECK(sy_http1_count(&req, "x-a") == 2);
    CHECK(sy_http1_count(&req, "x-ab") == 1);
    CHECK(sy_http1_count(&req, "host") == 1);
    CHECK(sy_http1_find(&req, "x") == NULL);
    CHECK(sy_http1_count(&req, "x-abc") == 0);
}

/* ---- token lists ------------------------------------------------------------------------- */

static void test_tokens(void)
{
    static const struct {
        const char *in;
        const char *want; /* tokens joined by '|' */
    } cases[] = {
        {"", ""},
        {" ,\t, ,", ""},
        {"a", "a"},
        {"keep-alive, Upgrade", "keep-alive|Upgrade"},
        {"  a  ,b,,\tc\t, ", "a|b|c"},
        {"chat, superchat", "chat|superchat"},
        {"a b, c", "a b|c"},
        {"x=\"1\" ;q=2,y", "x=\"1\" ;q=2|y"},
    };
    for (size_t c = 0; c < SY_COUNTOF(cases); c++) {
        char got[128] = "";
        size_t pos = 0;
        sy_str tok;
        sy_str list = sy_str_make(cases[c].in, strlen(cases[c].in));
        int n = 0;
        while (sy_http1_next_token(list, &pos, &tok)) {
            size_t l = strlen(got);
            snprintf(got + l, sizeof(got) - l, "%s%.*s", n++ ? "|" : "", (int)tok.len, tok.p);
            if (n > 10)
                break;
        }
        CHECK_MSG(!strcmp(got, cases[c].want), "tokens \"%s\": got \"%s\"", cases[c].in, got);
        CHECK(sy_http1_next_token(list, &pos, &tok) == 0);
    }
}

/* ---- reason phrases ---------------------------------------------------------------------- */

static void test_reason(void)
{
    static const struct {
        int status;
        const char *reason;
    } cases[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {103, "Early Hints"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {203, "Non-Authoritative Information"},
        {204, "No Content"},
        {205, "Reset Content"},
        {206, "Partial Content"},
        {300, "Multiple Choices"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {305, "Use Proxy"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {402, "Payment Required"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {406, "Not Acceptable"},
        {407, "Proxy Authentication Required"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {410, "Gone"},
        {411, "Length Required"},
        {412, "Precondition Failed"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {416, "Range Not Satisfiable"},
        {417, "Expectation Failed"},
        {421, "Misdirected Request"},
        {422, "Unprocessable Content"},
        {425, "Too Early"},
        {426, "Upgrade Required"},
        {428, "Precondition Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {451, "Unavailable For Legal Reasons"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
        {511, "Network Authentication Required"},
        {0, "Unknown"},
        {-1, "Unknown"},
        {99, "Unknown"},
        {102, "Unknown"},
        {299, "Unknown"},
        {418, "Unknown"},
        {600, "Unknown"},
        {1000, "Unknown"},
    };
    for (size_t c = 0; c < SY_COUNTOF(cases); c++) {
        const char *r = sy_http1_reason(cases[c].status);
        CHECK_MSG(r && !strcmp(r, cases[c].reason), "reason %d: %s", cases[c].status,
                  r ? r : "(null)");
    }
}

/* ---- chunked bodies ---------------------------------------------------------------------- */

typedef struct chunk_case {
    const char *name;
    const char *in;
    const char *out; /* body bytes (before the error, for a bad case) */
    const char *why; /* NULL: valid, the whole input is one chunked body */
    size_t len;      /* 0: strlen(in) */
    size_t out_len;  /* 0: strlen(out) */
} chunk_case;

#define CH_OK(n, i, o)                                                                             \
    {                                                                                              \
        .name = (n), .in = (i), .out = (o)                                                         \
    }
#define CH_BAD(n, i, o, w)                                                                         \
    {                                                                                              \
        .name = (n), .in = (i), .out = (o), .why = (w)                                             \
    }

static const chunk_case chunk_cases[] = {
    CH_OK("empty body", "0\r\n\r\n", ""),
    CH_OK("one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello"),
    CH_OK("several chunks", "1\r\na\r\n2\r\nbc\r\n3\r\ndef\r\n0\r\n\r\n", "abcdef"),
    CH_OK("hex sizes", "a\r\n0123456789\r\nA\r\nabcdefghij\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n",
          "0123456789abcdefghij0123456789abcdef"),
    CH_OK("16 hex digits", "0000000000000003\r\nabc\r\n0000000000000000\r\n\r\n", "abc"),
    {.name = "binary data",
     .in = "4\r\n\r\n\0\xff\r\n0\r\n\r\n",
     .out = "\r\n\0\xff",
     .len = 14,
     .out_len = 4},
    CH_OK("extensions", "3;name=value\r\nabc\r\n2;a;b=\"x;y\"\r\nde\r\n0;last\r\n\r\n", "abcde"),
    CH_OK("extension after BWS", "3 ;a=b\r\nabc\r\n2\t; c\r\nde\r\n0 \t;x\r\n\r\n", "abcde"),
    CH_OK("extension with obs-text", "1;a=\x80\xff\r\nz\r\n0\r\n\r\n", "z"),
    CH_OK("trailers ignored", "2\r\nhi\r\n0\r\nExpires: never\r\nX-Sum:abc\r\nX-Empty:\r\n\r\n",
          "hi"),
    CH_OK("trailer with inner whitespace", "0\r\nX: a \t b\r\n\r\n", ""),
    CH_BAD("no hex digit", "\r\nabc\r\n0\r\n\r\n", "", "invalid chunk size"),
    CH_BAD("non-hex size", "x\r\nabc\r\n0\r\n\r\n", "", "invalid chunk size"),
    CH_BAD("0x prefix", "0x3\r\nabc\r\n0\r\n\r\n", "", "invalid chunk size"),
    CH_BAD("negative size", "-1\r\na\r\n0\r\n\r\n", "", "invalid chunk size"),
    CH_BAD("plus sign", "+1\r\na\r\n0\r\n\r\n", "", "invalid chunk size"),
    CH_BAD("leading space", " 1\r\na\r\n0\r\n\r\n", "", "invalid chunk size"),
    CH_BAD("whitespace without extension", "1 \r\na\r\n0\r\n\r\n", "", "invalid chunk size"),
    CH_BAD("garbage after size", "1x\r\na\r\n0\r\n\r\n", "", "invalid chunk size"),
    CH_BAD("17 hex digits", "00000000000000001\r\na\r\n0\r\n\r\n", "", "chunk size too long"),
    CH_BAD("size over 64 bits", "10000000000000000\r\n", "", "chunk size too long"),
    CH_BAD("bare LF after size", "1\na\r\n0\r\n\r\n", "", "invalid chunk size"),
    CH_BAD("bare CR after size", "1\rxa\r\n0\r\n\r\n", "", "invalid chunk size line"),
    CH_BAD("CTL in extension", "1;a=\x01\r\na\r\n0\r\n\r\n", "", "invalid chunk extension"),
    CH_BAD("bare LF in extension", "1;a\na\r\n0\r\n\r\n", "", "invalid chunk extension"),
    CH_BAD("data longer than size", "1\r\nab\r\n0\r\n\r\n", "a", "missing crlf after chunk data"),
    CH_BAD("bare LF after data", "1\r\na\n0\r\n\r\n", "a", "missing crlf after chunk data"),
    CH_BAD("CR without LF after data", "1\r\na\rx0\r\n\r\n", "a", "missing crlf after chunk data"),
    CH_BAD("second chunk bad", "2\r\nab\r\nzz\r\n", "ab", "invalid chunk size"),
    CH_BAD("trailer without colon", "0\r\nX\r\n\r\n", "", "invalid trailer field"),
    CH_BAD("trailer space before colon", "0\r\nX : v\r\n\r\n", "", "invalid trailer field"),
    CH_BAD("trailer obs-fold", "0\r\nX: a\r\n b\r\n\r\n", "", "invalid trailer field"),
    CH_BAD("trailer CTL", "0\r\nX: a\x7f\r\n\r\n", "", "invalid trailer field"),
    CH_BAD("trailer bare LF", "0\r\nX: a\n\r\n", "", "invalid trailer field"),
    CH_BAD("bare LF ending the trailers", "0\r\n\n", "", "invalid trailer field"),
    CH_BAD("CR without LF ending the trailers", "0\r\n\rx", "", "invalid trailer field"),
};

/* Feeds in[0..len) as pieces cut at cuts[0..ncuts) (ascending), each piece right before a
 * guard page, looping on each piece as the caller must. Appends body bytes to out. Returns the
 * total consumed or SY_EPROTO. */
static ssize_t decode_pieces(const char *in, size_t len, const size_t *cuts, size_t ncuts,
                             char *out, size_t *outlen, const char **why, sy_http1_chunked *c)
{
    size_t used = 0, from = 0;
    memset(c, 0, sizeof(*c));
    *outlen = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t to = k < ncuts ? cuts[k] : len;
        void *map;
        size_t maplen;
        char *p = t_guard_copy(in + from, to - from, &map, &maplen);
        size_t off = 0, plen = to - from;
        while (off < plen && !c->done) {
            sy_str data;
            ssize_t r = sy_http1_chunked_parse(c, p + off, plen - off, &data, why);
            if (r < 0) {
                t_guard_free(map, maplen);
                return r;
            }
            if (r == 0 || (size_t)r > plen - off || data.len > (size_t)r ||
                (data.len && (data.p < p + off || data.p + data.len > p + off + (size_t)r))) {
                CHECK_MSG(0, "decoder returned %zd with a bad slice", r);
                t_guard_free(map, maplen);
                return SY_EINVAL;
            }
            memcpy(out + *outlen, data.p, data.len);
            *outlen += data.len;
            off += (size_t)r;
        }
        used += off;
        t_guard_free(map, maplen);
        if (c->done)
            break;
        from = to;
    }
    return (ssize_t)used;
}

static int chunk_result_ok(const chunk_case *tc, size_t n, ssize_t rc, const char *out,
                           size_t outlen, const char *why, const sy_http1_chunked *c)
{
    size_t want_len = tc->out_len ? tc->out_len : strlen(tc->out);
    if (outlen != want_len || memcmp(out, tc->out, want_len) != 0)
        return 0;
    if (tc->why)
        return rc == SY_EPROTO && why && !strcmp(why, tc->why);
    return rc == (ssize_t)n && c->done && c->total == want_len;
}

static void test_chunked(void)
{
    static const char next[] = "GET /next HTTP/1.1\r\n";
    for (size_t t = 0; t < SY_COUNTOF(chunk_cases); t++) {
        const chunk_case *tc = &chunk_cases[t];
        size_t n = tc->len ? tc->len : strlen(tc->in);
        char in[512], out[512];
        size_t outlen, cuts[512];
        const char *why = NULL;
        sy_http1_chunked c;

        /* A valid body is followed by the next request, which must be left alone. */
        memcpy(in, tc->in, n);
        size_t len = n;
        if (!tc->why) {
            memcpy(in + n, next, sizeof(next) - 1);
            len += sizeof(next) - 1;
        }

        ssize_t rc = decode_pieces(in, len, NULL, 0, out, &outlen, &why, &c);
        CHECK_MSG(chunk_result_ok(tc, n, rc, out, outlen, why, &c), "%s: whole: rc %zd (%s)",
                  tc->name, rc, why ? why : "-");

        for (size_t i = 0; i < len; i++)
            cuts[i] = i + 1;
        rc = decode_pieces(in, len, cuts, len - 1, out, &outlen, &why, &c);
        CHECK_MSG(chunk_result_ok(tc, n, rc, out, outlen, why, &c), "%s: bytewise: rc %zd (%s)",
                  tc->name, rc, why ? why : "-");

        int splits_ok = 1;
        for (size_t k = 0; k <= len; k++) {
            rc = decode_pieces(in, len, &k, 1, out, &outlen, &why, &c);
            if (!chunk_result_ok(tc, n, rc, out, outlen, why, &c)) {
                CHECK_MSG(0, "%s: split at %zu: rc %zd (%s)", tc->name, k, rc, why ? why : "-");
                splits_ok = 0;
                break;
            }
        }
        CHECK(splits_ok);
    }
}

static void test_chunked_state(void)
{
    sy_http1_chunked c;
    sy_str data;
    const char *why;

    /* A size of 2^64 - 1 is valid: the data simply keeps coming. */
    memset(&c, 0, sizeof(c));
    static const char big[] = "FFFFFFFFFFFFFFFF;x\r\nabcdef";
    CHECK(sy_http1_chunked_parse(&c, big, 20, &data, &why) == 20 && data.len == 0);
    CHECK(sy_http1_chunked_parse(&c, big + 20, 6, &data, &why) == 6 && data.len == 6);
    CHECK(data.p == big + 20 && c.remaining == UINT64_MAX - 6 && c.total == 6 && !c.done);

    /* Each call stops after one data slice. */
    memset(&c, 0, sizeof(c));
    static const char two[] = "1\r\na\r\n1\r\nb\r\n0\r\n\r\n";
    ssize_t r = sy_http1_chunked_parse(&c, two, sizeof(two) - 1, &data, &why);
    CHECK(r == 4 && data.len == 1 && data.p[0] == 'a');
    r = sy_http1_chunked_parse(&c, two + 4, sizeof(two) - 5, &data, &why);
    CHECK(r == 6 && data.len == 1 && data.p[0] == 'b');
    r = sy_http1_chunked_parse(&c, two + 10, sizeof(two) - 11, &data, &why);
    CHECK(r == 7 && data.len == 0 && c.done);
    /* Done: nothing more is consumed. */
    CHECK(sy_http1_chunked_parse(&c, "1\r\n", 3, &data, &why) == 0 && data.len == 0);
    CHECK(sy_http1_chunked_parse(&c, two, 0, &data, &why) == 0);

    /* Errors stick. */
    memset(&c, 0, sizeof(c));
    CHECK(sy_http1_chunked_parse(&c, "z", 1, &data, &why) == SY_EPROTO);
    CHECK(sy_http1_chunked_parse(&c, "0\r\n\r\n", 5, &data, &why) == SY_EPROTO);

    /* Size lines and trailer lines are limited to 4096 bytes, the trailer section to 16 KiB. */
    static char line[20000];
    memset(&c, 0, sizeof(c));
    memset(line, 'a', sizeof(line));
    memcpy(line, "1;", 2);
    CHECK(sy_http1_chunked_parse(&c, line, 4096, &data, &why) == 4096);
    CHECK(sy_http1_chunked_parse(&c, line + 4096, 1, &data, &why) == SY_EPROTO);
    CHECK(why && !strcmp(why, "chunk size line too long"));
    memset(&c, 0, sizeof(c));
    memset(line, ' ', sizeof(line));
    line[0] = '1';
    CHECK(sy_http1_chunked_parse(&c, line, 4096, &data, &why) == 4096);
    CHECK(sy_http1_chunked_parse(&c, line + 4096, 1, &data, &why) == SY_EPROTO);
    CHECK(why && !strcmp(why, "chunk size line too long"));
    memset(&c, 0, sizeof(c));
    memset(line, 'a', sizeof(line));
    memcpy(line, "0\r\nX:", 5);
    CHECK(sy_http1_chunked_parse(&c, line, 4099, &data, &why) == 4099);
    CHECK(sy_http1_chunked_parse(&c, line + 4099, 1, &data, &why) == SY_EPROTO);
    CHECK(why && !strcmp(why, "trailer line too long"));
    memset(&c, 0, sizeof(c));
    size_t n = 3;
    memcpy(line, "0\r\n", 3);
    while (n + 1002 <= sizeof(line)) {
        memset(line + n, 'a', 1000);
        line[n] = 'X';
        line[n + 1] = ':';
        memcpy(line + n + 1000, "\r\n", 2);
        n += 1002;
    }
    r = sy_http1_chunked_parse(&c, line, n, &data, &why);
    CHECK(r == SY_EPROTO && why && !strcmp(why, "trailer section too large"));
}

int main(void)
{
    test_head_ok();
    test_head_bad();
    test_head_limits();
    test_head_bytes();
    test_head_incremental();
    test_find_count();
    test_tokens();
    test_reason();
    test_chunked();
    test_chunked_state();
    return t_summary("test_http1");
}
