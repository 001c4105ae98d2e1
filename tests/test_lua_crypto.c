/* switchyard.crypto and switchyard.jwt inside a server's Lua state (package.preload, the
 * source tree's lua/ on package.path), so the ASan+UBSan build runs them too: known answers,
 * base64 across the chunk boundaries, sign/verify with keys made here by OpenSSL, and every
 * call under a failing allocator (no leak, no crash). */
#include "lua_int.h"
#include "switchyard.h"
#include "test.h"

#include <ev.h>
#include <lauxlib.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

static const char CHECKS[] =
    "local crypto, jwt = require 'switchyard.crypto', require 'switchyard.jwt'\n"
    "local keys = ...\n"
    "local function hex(s) return (s:gsub('.', function(c) return ('%02x'):format(c:byte()) "
    "end)) end\n"
    "local function eq(a, b, what) if a ~= b then error(what .. ': ' .. tostring(a)) end end\n"
    "eq(assert(package.preload['switchyard.crypto']) ~= nil, true, 'preload')\n"
    "eq(hex(crypto.sha1('abc')), 'a9993e364706816aba3e25717850c26c9cd0d89d', 'sha1')\n"
    "eq(hex(crypto.sha256('abc')), "
    "'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'sha256')\n"
    "eq(hex(crypto.hmac('sha256', 'Jefe', 'what do ya want for nothing?')), "
    "'5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843', 'hmac')\n"
    "eq(crypto.base64_encode('foobar'), 'Zm9vYmFy', 'b64')\n"
    "eq(crypto.base64_decode('Zm9vYg=='), 'foob', 'b64 decode')\n"
    "eq(crypto.base64url_decode('Zm9vY!'), nil, 'bad b64')\n"
    "eq(crypto.equal('a', 'a'), true, 'equal')\n"
    "eq(crypto.equal('a', 'ab'), false, 'equal lengths')\n"
    "for _, n in ipairs({ 0, 1, 2, 3, 12287, 12288, 12289, 3071, 3072, 3073, 100000 }) do\n"
    "  local s = crypto.random(n)\n"
    "  eq(#s, n, 'random')\n"
    "  eq(crypto.base64_decode(crypto.base64_encode(s)), s, 'b64 round trip ' .. n)\n"
    "  local u = crypto.base64url_encode(s)\n"
    "  eq(u:find('[=+/]'), nil, 'url alphabet')\n"
    "  eq(crypto.base64url_decode(u), s, 'b64url round trip ' .. n)\n"
    "end\n"
    "for _, a in ipairs({ { 'RS256', 'rsa' }, { 'PS512', 'rsa' }, { 'ES256', 'ec' } }) do\n"
    "  local priv, pub = keys[a[2]], keys[a[2] .. '_pub']\n"
    "  local sig = assert(crypto.sign(a[1], priv, 'data'))\n"
    "  eq(crypto.verify(a[1], pub, 'data', sig), true, a[1])\n"
    "  eq(crypto.verify(a[1], pub, 'date', sig), false, a[1] .. ' other data')\n"
    "  local t = assert(jwt.sign({ sub = 'x', exp = 2e9 }, priv, a[1]))\n"
    "  eq(jwt.verify(t, pub, { now = 1e9 }).sub, 'x', 'jwt ' .. a[1])\n"
    "  eq(select(2, jwt.verify(t, pub, { now = 3e9 })), 'expired', 'jwt exp ' .. a[1])\n"
    "  eq(select(2, jwt.verify(t .. '.x', pub)), 'malformed', 'jwt sig ' .. a[1])\n"
    "  eq(select(2, jwt.verify(t .. 'A', pub)), 'bad signature', 'jwt sig ' .. a[1])\n"
    "end\n"
    "eq(crypto.verify('ES256', keys.rsa_pub, 'data', ('x'):rep(64)), nil, 'kind')\n"
    "eq(crypto.key_type(keys.ec), 'ec', 'key_type')\n"
    "local t = jwt.sign({ sub = 'y' }, 'secret')\n"
    "eq(jwt.verify(t, 'secret').sub, 'y', 'hs256')\n"
    "eq(select(2, jwt.verify(t, keys.rsa_pub)), 'unsupported alg', 'confusion')\n"
    "return 'ok'\n";

/* Every call that holds OpenSSL objects, for the out-of-memory loop. */
static const char UNDER_PRESSURE[] =
    "local crypto, jwt = require 'switchyard.crypto', require 'switchyard.jwt'\n"
    "local keys, fails = ..., 0\n"
    "local function try(...) if not pcall(...) then fails = fails + 1 end end\n"
    "try(crypto.sign, 'RS256', keys.rsa, 'data')\n"
    "try(crypto.sign, 'ES256', keys.ec, 'data')\n"
    "try(crypto.verify, 'ES256', keys.ec_pub, 'data', ('x'):rep(64))\n"
    "try(crypto.key_type, keys.rsa_pub)\n"
    "try(crypto.base64url_decode, ('QUJD'):rep(3000))\n"
    "try(crypto.random, 5000)\n"
    "try(jwt.sign, { sub = 'z' }, keys.ec, 'ES256')\n"
    "return fails\n";

/* Sets field name of the table at the top to the PEM of k (private or public half). */
static void set_pem(lua_State *L, const char *name, EVP_PKEY *k, int private)
{
    BIO *b = BIO_new(BIO_s_mem());
    CHECK(b != NULL);
    int ok = private ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)
                     : PEM_write_bio_PUBKEY(b, k);
    CHECK(ok == 1);
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    lua_pushlstring(L, p, (size_t)n);
    lua_setfield(L, -2, name);
    BIO_free(b);
}

/* Runs chunk with the keys table as its argument; returns its result as a string (static
 * storage), or the error message. */
static const char *run(lua_State *L, const char *chunk, int keys)
{
    static char out[512];
    if (luaL_loadstring(L, chunk) != LUA_OK) {
        snprintf(out, sizeof out, "load: %s", lua_tostring(L, -1));
    } else {
        lua_pushvalue(L, keys);
        int rc = lua_pcall(L, 1, 1, 0);
        snprintf(out, sizeof out, "%s%s", rc == LUA_OK ? "" : "error: ",
                 lua_tostring(L, -1) ? lua_tostring(L, -1) : "(nil)");
    }
    lua_pop(L, 1);
    return out;
}

int main(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = sy_server_new(loop);
    CHECK(s != NULL);
    lua_State *L = sy_server_lua(s);

    EVP_PKEY *rsa = EVP_RSA_gen(2048), *ec = EVP_EC_gen("P-256");
    CHECK(rsa && ec);
    lua_newtable(L);
    set_pem(L, "rsa", rsa, 1);
    set_pem(L, "rsa_pub", rsa, 0);
    set_pem(L, "ec", ec, 1);
    set_pem(L, "ec_pub", ec, 0);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    int keys = lua_gettop(L);

    const char *r = run(L, CHECKS, keys);
    CHECK_MSG(strcmp(r, "ok") == 0, "%s", r);

    /* Each allocation limit in turn, from none to spare up to enough for every call. */
    size_t limit = s->lua.max_memory;
    int failed_runs = 0;
    for (size_t slack = 0; slack <= 60000; slack += 256) {
        lua_gc(L, LUA_GCCOLLECT);
        s->lua.max_memory = s->lua_memory + slack;
        r = run(L, UNDER_PRESSURE, keys);
        s->lua.max_memory = limit;
        failed_runs += strcmp(r, "0") != 0;
        if (slack == 0)
            CHECK_MSG(strstr(r, "not enough memory") != NULL, "%s", r); /* the loop bites */
    }
    CHECK_MSG(strcmp(r, "0") == 0, "with the most room: %s", r); /* and ends with room */
    CHECK(failed_runs > 1);
    lua_gc(L, LUA_GCCOLLECT);
    r = run(L, CHECKS, keys); /* still whole afterwards */
    CHECK_MSG(strcmp(r, "ok") == 0, "%s", r);

    lua_settop(L, 0);
    sy_server_free(s);
    ev_loop_destroy(loop);
    return t_summary("test_lua_crypto");
}
