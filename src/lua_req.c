/* switchyard.Request: a self-contained copy of one request's head, body and upgrade offers. */
#include "lua_int.h"

/* User values: 1 headers table (lazy), 2 body string, 3 fields the app set, 4 upgrades (lazy),
 * 5 the TLS server name (SNI) the client asked for. */
enum { RQ_HEADERS = 1, RQ_BODY, RQ_EXTRA, RQ_UPGRADES, RQ_SNI, RQ_COUNT = RQ_SNI };

typedef struct lreq {
    sy_str method, target, path, query; /* query.p == NULL: none */
    int version;
    int https;
    size_t nheaders;
    sy_http1_header *headers; /* into this block */
    size_t noffers;
    sy_upgrade_offer *offers; /* into this block */
    sy_peer peer;             /* formatted when req.remote_addr is read (inet_ntop is not free) */
    /* then: headers[nheaders], offers[noffers], the head bytes */
} lreq;

static const char req_mt_key = 'q'; /* registry[&req_mt_key] = the Request metatable */

static sy_str rebase(sy_str s, const char *from, char *to)
{
    if (!s.p)
        return s;
    return sy_str_make(to + (s.p - from), s.len);
}

void sy_lua_push_request(lua_State *L, sy_conn *c, const sy_http1_request *req, sy_str body,
                         const sy_upgrade_offer *offers, size_t n)
{
    /* Every slice points into one block (the HTTP/1.1 head, or an HTTP/2 stream's header
     * bytes in any order): copy the span from the lowest to the highest byte. */
    const char *head = req->method.p;
    const char *end = req->method.p + req->method.len;
#define SPAN(s)                                                                                    \
    do {                                                                                           \
        if ((s).p && (s).p < head)                                                                 \
            head = (s).p;                                                                          \
        if ((s).p && (s).p + (s).len > end)                                                        \
            end = (s).p + (s).len;                                                                 \
    } while (0)
    SPAN(req->target);
    SPAN(req->path);
    SPAN(req->query);
    for (size_t i = 0; i < req->nheaders; i++) {
        SPAN(req->headers[i].name);
        SPAN(req->headers[i].value);
    }
    for (size_t i = 0; i < n; i++) {
        SPAN(offers[i].name);
        SPAN(offers[i].version);
    }
#undef SPAN
    size_t head_len = (size_t)(end - head);
    size_t size = sizeof(lreq) + req->nheaders * sizeof(sy_http1_header) +
                  n * sizeof(sy_upgrade_offer) + head_len;
    lreq *r = lua_newuserdatauv(L, size, RQ_COUNT);
    sy_http1_header *hdrs = (sy_http1_header *)(void *)(r + 1);
    sy_upgrade_offer *offs = (sy_upgrade_offer *)(void *)(hdrs + req->nheaders);
    char *copy = (char *)(offs + n);
    memcpy(copy, head, head_len);
    r->method = rebase(req->method, head, copy);
    r->target = rebase(req->target, head, copy);
    r->path = rebase(req->path, head, copy);
    r->query = rebase(req->query, head, copy);
    r->version = req->version;
    r->https = sy_conn_is_tls(c) || c->stream_tls;
    r->nheaders = req->nheaders;
    r->headers = hdrs;
    for (size_t i = 0; i < req->nheaders; i++) {
        hdrs[i].name = rebase(req->headers[i].name, head, copy);
        hdrs[i].value = rebase(req->headers[i].value, head, copy);
    }
    r->noffers = n;
    r->offers = offs;
    for (size_t i = 0; i < n; i++) {
        offs[i].name = rebase(offers[i].name, head, copy);
        offs[i].version = rebase(offers[i].version, head, copy);
        offs[i].kind = offers[i].kind;
    }
    r->peer = c->peer;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &req_mt_key); /* no lookup by name per request */
    lua_setmetatable(L, -2);
    if (body.p) {
        lua_pushlstring(L, body.p, body.len);
        lua_setiuservalue(L, -2, RQ_BODY);
    }
    const char *sni = c->tls ? sy_tls_sni(c->tls) : NULL;
    if (sni) {
        lua_pushstring(L, sni);
        lua_setiuservalue(L, -2, RQ_SNI);
    }
}

static lreq *check_req(lua_State *L, int idx)
{
    lreq *r = lua_touserdata(L, idx);
    if (r && lua_getmetatable(L, idx)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &req_mt_key);
        int ok = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (ok)
            return r;
    }
    luaL_typeerror(L, idx, SY_REQUEST_MT);
    return NULL;
}

static void push_str(lua_State *L, sy_str s)
{
    if (s.p)
        lua_pushlstring(L, s.p, s.len);
    else
        lua_pushnil(L);
}

static void push_headers(lua_State *L, lreq *r)
{
    lua_createtable(L, 0, (int)r->nheaders);
    char name[256];
    for (size_t i = 0; i < r->nheaders; i++) {
        sy_str nm = r->headers[i].name;
        size_t len = nm.len < sizeof name ? nm.len : sizeof name;
        for (size_t k = 0; k < len; k++) {
            char ch = nm.p[k];
            name[k] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        }
        lua_pushlstring(L, name, len); /* [t, name] */
        lua_pushvalue(L, -1);          /* [t, name, name] */
        if (lua_rawget(L, -3) == LUA_TSTRING) {
            /* RFC 9110 5.3: repeated fields combine with ", " in order. */
            lua_pushliteral(L, ", ");
            push_str(L, r->headers[i].value);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            push_str(L, r->headers[i].value);
        }
        lua_rawset(L, -3);
    }
}

static void push_upgrades(lua_State *L, lreq *r)
{
    lua_createtable(L, (int)r->noffers, 0);
    for (size_t i = 0; i < r->noffers; i++) {
        lua_createtable(L, 0, 2);
        push_str(L, r->offers[i].name);
        lua_setfield(L, -2, "name");
        if (r->offers[i].version.p) {
            push_str(L, r->offers[i].version);
            lua_setfield(L, -2, "version");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* Pushes a cached lazy user value, building it on first use. */
static void push_lazy(lua_State *L, int idx, lreq *r, int uv, void (*build)(lua_State *, lreq *))
{
    if (lua_getiuservalue(L, idx, uv) != LUA_TNIL)
        return;
    lua_pop(L, 1);
    build(L, r);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, uv);
}

/* req:offers(token): "TLS/1.3" matches name and version, "TLS" any version. */
static int req_offers(lua_State *L)
{
    lreq *r = check_req(L, 1);
    size_t n;
    const char *tok = luaL_checklstring(L, 2, &n);
    int i = sy_upgrade_match(r->offers, r->noffers, sy_str_make(tok, n));
    if (i < 0) {
        lua_pushnil(L);
        return 1;
    }
    push_lazy(L, 1, r, RQ_UPGRADES, push_upgrades);
    lua_rawgeti(L, -1, i + 1);
    return 1;
}

static int req_index(lua_State *L)
{
    lreq *r = check_req(L, 1);
    size_t klen;
    const char *k = lua_tolstring(L, 2, &klen);
    if (!k) {
        lua_pushnil(L);
        return 1;
    }
    switch (k[0]) {
    case 'b':
        if (strcmp(k, "body") == 0) {
            lua_getiuservalue(L, 1, RQ_BODY);
            return 1;
        }
        break;
    case 'h':
        if (strcmp(k, "headers") == 0) {
            push_lazy(L, 1, r, RQ_HEADERS, push_headers);
            return 1;
        }
        break;
    case 'm':
        if (strcmp(k, "method") == 0) {
            push_str(L, r->method);
            return 1;
        }
        break;
    case 'o':
        if (strcmp(k, "offers") == 0) {
            lua_pushcfunction(L, req_offers);
            return 1;
        }
        break;
    case 'p':
        if (strcmp(k, "path") == 0) {
            push_str(L, r->path);
            return 1;
        }
        break;
    case 'q':
        if (strcmp(k, "query") == 0) {
            push_str(L, r->query);
            return 1;
        }
        break;
    case 'r':
        if (strcmp(k, "remote_addr") == 0) {
            char addr[INET6_ADDRSTRLEN];
            sy_peer_format(&r->peer, addr);
            lua_pushstring(L, addr);
            return 1;
        }
        break;
    case 's':
        if (strcmp(k, "scheme") == 0) {
            lua_pushstring(L, r->https ? "https" : "http");
            return 1;
        }
        if (strcmp(k, "sni") == 0) {
            lua_getiuservalue(L, 1, RQ_SNI);
            return 1;
        }
        break;
    case 't':
        if (strcmp(k, "target") == 0) {
            push_str(L, r->target);
            return 1;
        }
        break;
    case 'u':
        if (strcmp(k, "upgrades") == 0) {
            if (r->noffers == 0) {
                lua_pushnil(L);
                return 1;
            }
            push_lazy(L, 1, r, RQ_UPGRADES, push_upgrades);
            return 1;
        }
        break;
    case 'v':
        if (strcmp(k, "version") == 0) {
            lua_pushstring(L, r->version == 10 ? "1.0" : r->version == 20 ? "2" : "1.1");
            return 1;
        }
        break;
    default: break;
    }
    if (lua_getiuservalue(L, 1, RQ_EXTRA) != LUA_TTABLE)
        return 1; /* nil */
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

/* The app may keep its own fields on a request (req.user = ...); built-in names are read-only. */
static int req_newindex(lua_State *L)
{
    check_req(L, 1);
    luaL_checkany(L, 3);
    if (lua_type(L, 2) == LUA_TSTRING) {
        static const char *const fixed[] = {"method",   "target", "path",    "query", "version",
                                            "scheme",   "sni",    "headers", "body",  "remote_addr",
                                            "upgrades", "offers", NULL};
        const char *k = lua_tostring(L, 2);
        for (int i = 0; fixed[i]; i++)
            if (strcmp(k, fixed[i]) == 0)
                return luaL_error(L, "req.%s is read-only", k);
    }
    if (lua_getiuservalue(L, 1, RQ_EXTRA) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, RQ_EXTRA);
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, -3);
    return 0;
}

static int req_tostring(lua_State *L)
{
    lreq *r = check_req(L, 1);
    lua_pushfstring(L, "switchyard.Request(%s %s)", lua_pushlstring(L, r->method.p, r->method.len),
                    lua_pushlstring(L, r->target.p, r->target.len));
    return 1;
}

void sy_lua_open_request(lua_State *L)
{
    if (luaL_newmetatable(L, SY_REQUEST_MT)) {
        lua_pushcfunction(L, req_index);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, req_newindex);
        lua_setfield(L, -2, "__newindex");
        lua_pushcfunction(L, req_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, &req_mt_key);
}
