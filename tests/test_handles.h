/* For unit tests that drive a server's Lua state: connection handles the registry holds. */
#ifndef SY_TEST_HANDLES_H
#define SY_TEST_HANDLES_H

#include "lua_int.h"

#include <lauxlib.h>

/* A WebSocket's face: a table with the WebSocket metatable. */
static inline int t_is_face(lua_State *L, int idx)
{
    if (!lua_istable(L, idx) || !lua_getmetatable(L, idx))
        return 0;
    luaL_getmetatable(L, SY_WEBSOCKET_MT);
    int yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return yes;
}

/* Connection handles the registry holds: WebSocket states and faces, and raw handles too when
 * raw is set. */
static inline int t_anchored_handles(lua_State *L, int raw)
{
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, LUA_REGISTRYINDEX)) {
        if ((raw && luaL_testudata(L, -1, SY_CONN_MT)) || luaL_testudata(L, -1, SY_WS_STATE_MT) ||
            t_is_face(L, -1))
            n++;
        lua_pop(L, 1);
    }
    return n;
}

#endif
