/* switchyard.crypto: the Lua module over OpenSSL's libcrypto (digests, HMAC, base64, random
 * bytes, constant-time compare, JWS signatures). */
#ifndef SY_LUA_CRYPTO_H
#define SY_LUA_CRYPTO_H

struct lua_State;

/* Opens the module: pushes its table and returns 1. The server's Lua state has it in
 * package.preload["switchyard.crypto"] (sy_lua_app's state setup); the same file builds the
 * loadable module switchyard/crypto.so for a plain lua5.4, where this is the one exported
 * symbol. Depends on nothing of the server: only Lua and libcrypto. */
int luaopen_switchyard_crypto(struct lua_State *L);

#endif
