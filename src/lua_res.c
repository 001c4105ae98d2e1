/* switchyard.Response: answers the pending request of one HTTP connection, now or later. */
#include "lua_int.h"
#include "proto.h"

typedef struct lres {
    sy_conn *conn; /* borrowed; NULL once sent or once the connection is gone */
    int ref;       /* registry anchor while the response is pending after its hook returned */
} lres;

static lres *check_res(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, SY_RESPONSE_MT);
}

static void release(lua_State *L, lres *r)
{
    r->conn = NULL;
    if (r->ref != LUA_NOREF) {
        int ref = r->ref;
        r->ref = LUA_NOREF;
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
    }
}

void sy_lua_push_response(lua_State *L, sy_conn *c)
{
    lres *r = lua_newuserdatauv(L, sizeof *r, 0);
    r->conn = NULL;
    r->ref = LUA_NOREF;
    luaL_setmetatable(L, SY_RESPONSE_MT);
    r->conn = c;
    sy_h1_set_response_handle(c, r);
}

/* Keeps a pending response alive after its hook returned (it may be sent from a timer). */
void sy_lua_anchor_response(lua_State *L, int idx)
{
    lres *r = lua_touserdata(L, idx);
    if (r && r->conn && r->ref == LUA_NOREF) {
        lua_pushvalue(L, idx);
        r->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
}

void sy_app_response_dropped(void *res)
{
    lres *r = res;
    if (!r->conn)
        return;
    lua_State *L = r->conn->server->L;
    release(L, r);
}

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int is_field_value(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return 0;
    }
    return 1;
}

enum { SKIP_NONE, SKIP_DROP, SKIP_CONNECTION };

/* Names the core writes itself (or that would break framing) are not taken from the app. */
static int classify(const char *name, size_t n)
{
    sy_str s = sy_str_make(name, n);
    if (sy_str_ieq(s, "content-length") || sy_str_ieq(s, "date") ||
        sy_str_ieq(s, "transfer-encoding"))
        return SKIP_DROP;
    if (sy_str_ieq(s, "connection"))
        return SKIP_CONNECTION;
    return SKIP_NONE;
}

/* One value (string or number) at the top of the stack: validate, count or copy. */
static size_t header_line(lua_State *L, int arg, const char *name, size_t nlen, char *out)
{
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_argerror(L, arg, lua_pushfstring(L, "header '%s': value must be a string or number",
                                              name));
    size_t vlen;
    lua_pushvalue(L, -1); /* convert a copy, never the table's own value */
    const char *v = lua_tolstring(L, -1, &vlen);
    if (!is_field_value(v, vlen))
        luaL_argerror(L, arg, lua_pushfstring(L, "header '%s': control character in value",
                                              name));
    /* RFC 9110 5.5: no leading or trailing whitespace in a field value. */
    while (vlen && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    if (out) {
        memcpy(out, name, nlen);
        memcpy(out + nlen, ": ", 2);
        memcpy(out + nlen + 2, v, vlen);
        memcpy(out + nlen + 2 + vlen, "\r\n", 2);
    }
    lua_pop(L, 1);
    return nlen + 4 + vlen;
}

static int has_close_token(const char *v, size_t n)
{
    size_t pos = 0;
    sy_str tok;
    while (sy_http1_next_token(sy_str_make(v, n), &pos, &tok))
        if (sy_str_ieq(tok, "close"))
            return 1;
    return 0;
}

/* Walks the headers table at idx; out == NULL only counts (and raises on bad input). */
static size_t walk_headers(lua_State *L, int idx, char *out, int *flags)
{
    size_t total = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        /* [..., key, value] */
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_argerror(L, idx, "header names must be strings");
        size_t nlen;
        const char *name = lua_tolstring(L, -2, &nlen);
        int ok = nlen > 0;
        for (size_t i = 0; i < nlen && ok; i++)
            ok = is_tchar((unsigned char)name[i]);
        if (!ok)
            luaL_argerror(L, idx, lua_pushfstring(L, "invalid header name '%s'", name));
        int kind = classify(name, nlen);
        if (kind == SKIP_CONNECTION) {
            if (lua_type(L, -1) == LUA_TSTRING) {
                size_t vl;
                const char *v = lua_tolstring(L, -1, &vl);
                if (has_close_token(v, vl))
                    *flags |= SY_H1_CLOSE;
            }
        } else if (kind == SKIP_NONE) {
            if (lua_type(L, -1) == LUA_TTABLE) {
                /* A list of values becomes repeated fields (set-cookie). */
                lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
                for (lua_Integer i = 1; i <= n; i++) {
                    lua_rawgeti(L, -1, i);
                    size_t len = header_line(L, idx, name, nlen, out ? out + total : NULL);
                    total += len;
                    lua_pop(L, 1);
                }
            } else {
                total += header_line(L, idx, name, nlen, out ? out + total : NULL);
            }
        }
        lua_pop(L, 1);
    }
    return total;
}

sy_str sy_lua_push_headers(lua_State *L, int idx, int *flags)
{
    idx = lua_absindex(L, idx);
    size_t total = walk_headers(L, idx, NULL, flags);
    char *box = lua_newuserdatauv(L, total ? total : 1, 0);
    walk_headers(L, idx, box, flags);
    lua_pushlstring(L, box, total);
    lua_remove(L, -2);
    sy_str out;
    out.p = lua_tolstring(L, -1, &out.len);
    return out;
}

/* Formats the headers table at idx into a new string on the stack (validated). */
static sy_str push_header_block(lua_State *L, int idx, int *flags)
{
    if (lua_isnoneornil(L, idx)) {
        lua_pushliteral(L, "");
        return sy_str_make("", 0);
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    idx = lua_absindex(L, idx);
    size_t total = walk_headers(L, idx, NULL, flags);
    char *box = lua_newuserdatauv(L, total ? total : 1, 0);
    walk_headers(L, idx, box, flags);
    return sy_str_make(box, total);
}

/* res:send(status, body?, headers?) -> true | nil, "closed" */
static int res_send(lua_State *L)
{
    lres *r = check_res(L, 1);
    lua_Integer status = luaL_checkinteger(L, 2);
    luaL_argcheck(L, status >= 100 && status <= 999 && status != 101, 2,
                  "status must be 100..999 (101 comes from sy.accept)");
    size_t blen = 0;
    const char *body = luaL_optlstring(L, 3, NULL, &blen);
    int flags = 0;
    sy_str hdrs = push_header_block(L, 4, &flags);
    if (!r->conn) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    sy_conn *c = r->conn;
    int rc = sy_h1_respond(c, r, (int)status, hdrs, sy_str_make(body ? body : "", blen), flags);
    release(L, r);
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, rc == SY_ECLOSED ? "closed" : sy_strerror(rc));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* res:upgrade_required(protocols, body?): 426 + Upgrade + Connection: Upgrade (RFC 2817 4.2). */
static int res_upgrade_required(lua_State *L)
{
    lres *r = check_res(L, 1);
    size_t plen;
    const char *protocols = luaL_checklstring(L, 2, &plen);
    luaL_argcheck(L, plen > 0 && is_field_value(protocols, plen), 2, "invalid protocol list");
    size_t blen;
    const char *body = luaL_optlstring(L, 3, "Upgrade Required\n", &blen);
    const char *hdrs = lua_pushfstring(L, "Upgrade: %s\r\n", protocols);
    if (!r->conn) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    int rc = sy_h1_respond(r->conn, r, 426, sy_str_make(hdrs, strlen(hdrs)),
                           sy_str_make(body, blen), SY_H1_CONN_UPGRADE);
    release(L, r);
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int res_tostring(lua_State *L)
{
    lres *r = check_res(L, 1);
    lua_pushstring(L, r->conn ? "switchyard.Response(pending)" : "switchyard.Response(done)");
    return 1;
}

static int res_gc(lua_State *L)
{
    (void)L;
    return 0;
}

static const luaL_Reg res_methods[] = {
    {"send", res_send},
    {"upgrade_required", res_upgrade_required},
    {NULL, NULL},
};

void sy_lua_open_response(lua_State *L)
{
    if (luaL_newmetatable(L, SY_RESPONSE_MT)) {
        luaL_newlib(L, res_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, res_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, res_gc);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
}
