/* switchyard.Response: answers the pending request of one HTTP connection, now or later. */
#include "lua_int.h"
#include "proto.h"
#include "decision.h"
#include "lua_task.h"

typedef struct lres {
    sy_conn *conn;     /* borrowed; NULL once sent or once the connection (or stream) is gone */
    int32_t stream;    /* the HTTP/2 stream answered, or 0 for HTTP/1.1 */
    int ref;           /* registry anchor while the response is pending after its hook returned */
    sy_lua_task *task; /* borrowed: the hook's task while it may wait before answering, else
                          NULL; cancelled when the response is dropped (its client left) */
} lres;

static const char res_mt_key = 'r'; /* registry[&res_mt_key] = the Response metatable */

static lres *check_res(lua_State *L, int idx)
{
    lres *r = lua_touserdata(L, idx);
    if (r && lua_getmetatable(L, idx)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &res_mt_key);
        int ok = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (ok)
            return r;
    }
    luaL_typeerror(L, idx, SY_RESPONSE_MT);
    return NULL;
}

/* The hook's task no longer answers for this response: it owes its connection nothing, and
 * its connection may go without it (nor is a ref taken on it when the task runs on). */
static void unlink_task(lres *r)
{
    if (r->task) {
        r->task->conn = NULL;
        r->task = NULL;
    }
}

static void release(lua_State *L, lres *r)
{
    r->conn = NULL;
    unlink_task(r);
    if (r->ref != LUA_NOREF) {
        int ref = r->ref;
        r->ref = LUA_NOREF;
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
    }
}

void sy_lua_push_response(lua_State *L, sy_conn *c, int32_t stream)
{
    lres *r = lua_newuserdatauv(L, sizeof *r, 0);
    r->conn = NULL;
    r->stream = stream;
    r->ref = LUA_NOREF;
    r->task = NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &res_mt_key);
    lua_setmetatable(L, -2);
    r->conn = c;
    sy_http_set_response_handle(c, stream, r);
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

void sy_lua_response_task(lua_State *L, int idx, sy_lua_task *t)
{
    lres *r = lua_touserdata(L, idx);
    if (!r)
        return;
    unlink_task(r);
    if (t && r->conn) {
        r->task = t;
        t->conn = r->conn;
    }
}

void sy_lua_response_forget(lua_State *L, int idx)
{
    lres *r = lua_touserdata(L, idx);
    if (r)
        release(L, r);
}

void sy_lua_response_fail(lua_State *L, void *res)
{
    lres *r = res;
    if (!r->conn)
        return;
    sy_conn *c = r->conn;
    unlink_task(r);
    int rc = sy_http_respond(c, r->stream, r, 500, SY_STR("Content-Type: text/plain\r\n"),
                             SY_STR("internal server error\n"), 0);
    release(L, r);
    sy_answered_or_close(c, rc);
}

sy_conn *sy_lua_response_conn(void *res)
{
    return ((lres *)res)->conn;
}

void sy_lua_response_dropped(void *ud, void *res)
{
    (void)ud;
    lres *r = res;
    if (!r->conn)
        return;
    lua_State *L = sy_server_of(r->conn->env)->L;
    sy_lua_task *t = r->task;
    r->task = NULL;
    release(L, r);
    /* The client left while the hook waits to answer: its coroutine is closed. */
    if (t)
        sy_lua_task_cancel(t);
}

/* RFC 9110 5.6.2 tchar as a table: header names are checked on every response. */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1,  ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1,  ['n'] = 1, ['o'] = 1,
    ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,  ['v'] = 1, ['w'] = 1,
    ['x'] = 1, ['y'] = 1, ['z'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1,  ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,  ['L'] = 1, ['M'] = 1,
    ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1,  ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
};

static int is_tchar(unsigned char c)
{
    return tchar[c];
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
    if (n != 4 && n != 10 && n != 14 && n != 17)
        return SKIP_NONE; /* none of the names below: the common case costs one compare */
    sy_str s = sy_str_make(name, n);
    if (sy_str_ieq(s, "content-length") || sy_str_ieq(s, "date") ||
        sy_str_ieq(s, "transfer-encoding"))
        return SKIP_DROP;
    if (sy_str_ieq(s, "connection"))
        return SKIP_CONNECTION;
    return SKIP_NONE;
}

/* One value (string or number) at the top of the stack: validate, and copy when it fits in
 * out[0..cap). Returns the line's length either way. */
static size_t header_line(lua_State *L, int arg, const char *name, size_t nlen, char *out,
                          size_t cap)
{
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_argerror(L, arg,
                      lua_pushfstring(L, "header '%s': value must be a string or number", name));
    size_t vlen;
    if (t == LUA_TNUMBER)
        lua_pushvalue(L, -1); /* convert a copy, never the table's own value */
    const char *v = lua_tolstring(L, -1, &vlen);
    if (!is_field_value(v, vlen))
        luaL_argerror(L, arg, lua_pushfstring(L, "header '%s': control character in value", name));
    /* RFC 9110 5.5: no leading or trailing whitespace in a field value. */
    while (vlen && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    size_t len = nlen + 4 + vlen;
    if (len <= cap) {
        memcpy(out, name, nlen);
        memcpy(out + nlen, ": ", 2);
        memcpy(out + nlen + 2, v, vlen);
        memcpy(out + nlen + 2 + vlen, "\r\n", 2);
    }
    if (t == LUA_TNUMBER)
        lua_pop(L, 1);
    return len;
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

/* Walks the headers table at idx, raising on bad input, copying lines into out[0..cap) while
 * they fit. Returns the total length (> cap: nothing past cap was written). */
static size_t walk_headers(lua_State *L, int idx, char *out, size_t cap, int *flags)
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
                    size_t room = total < cap ? cap - total : 0;
                    total += header_line(L, idx, name, nlen, room ? out + total : NULL, room);
                    lua_pop(L, 1);
                }
            } else {
                size_t room = total < cap ? cap - total : 0;
                total += header_line(L, idx, name, nlen, room ? out + total : NULL, room);
            }
        }
        lua_pop(L, 1);
    }
    return total;
}

sy_str sy_lua_push_headers(lua_State *L, int idx, int *flags)
{
    idx = lua_absindex(L, idx);
    size_t total = walk_headers(L, idx, NULL, 0, flags);
    char *box = lua_newuserdatauv(L, total ? total : 1, 0);
    walk_headers(L, idx, box, total, flags);
    lua_pushlstring(L, box, total);
    lua_remove(L, -2);
    sy_str out;
    out.p = lua_tolstring(L, -1, &out.len);
    return out;
}

/* Formats the headers table at idx into buf (cap bytes) or, when larger, into a box pushed on
 * the stack; validated. */
static sy_str header_block(lua_State *L, int idx, char *buf, size_t cap, int *flags)
{
    if (lua_isnoneornil(L, idx))
        return sy_str_make("", 0);
    luaL_checktype(L, idx, LUA_TTABLE);
    idx = lua_absindex(L, idx);
    size_t total = walk_headers(L, idx, buf, cap, flags);
    if (total <= cap)
        return sy_str_make(buf, total);
    char *box = lua_newuserdatauv(L, total, 0);
    walk_headers(L, idx, box, total, flags);
    return sy_str_make(box, total);
}

/* res:send(status, body?, headers?) -> true | nil, "closed" */
static int res_send(lua_State *L)
{
    lres *r = check_res(L, 1);
    lua_Integer status = luaL_checkinteger(L, 2);
    /* RFC 9110 15: a final status is 200..599 here; an interim one (1xx) cannot be the
     * answer, and 101 comes from sy.accept. */
    luaL_argcheck(L, status >= 200 && status <= 599, 2,
                  "status must be 200..599 (1xx are not final; 101 comes from sy.accept)");
    size_t blen = 0;
    const char *body = luaL_optlstring(L, 3, NULL, &blen);
    int flags = 0;
    char stack[1024];
    sy_str hdrs = header_block(L, 4, stack, sizeof stack, &flags);
    if (!r->conn) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    sy_conn *c = r->conn;
    unlink_task(r); /* answered: the hook may go on waiting whatever its client does */
    int rc = sy_http_respond(c, r->stream, r, (int)status, hdrs,
                             sy_str_make(body ? body : "", blen), flags);
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
    /* Over HTTP/2 the Upgrade field is connection-specific and left out (RFC 9113 8.2.2). */
    unlink_task(r);
    int rc = sy_http_respond(r->conn, r->stream, r, 426, sy_str_make(hdrs, strlen(hdrs)),
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
    lua_rawsetp(L, LUA_REGISTRYINDEX, &res_mt_key);
}
