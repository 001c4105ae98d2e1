/* package.path for a server's Lua state: the installed helpers, or the source tree's in a build. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_path.h"
#include "sy_base.h"

/* 1 when the running program lives in the build tree (SY_BUILD_DIR or below), as the server
 * and the tests do before they are installed; 0 for an installed binary or a host elsewhere. */
static int in_build_tree(void)
{
#if defined(SY_BUILD_DIR) && defined(__linux__)
    char exe[PATH_MAX], build[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return 0;
    exe[n] = '\0';
    if (!realpath(SY_BUILD_DIR, build))
        return 0;
    size_t len = strlen(build);
    return strncmp(exe, build, len) == 0 && exe[len] == '/';
#else
    return 0;
#endif
}

/* Pushes "DIR/?.lua;DIR/?/init.lua;" unless package.path (at index path) already has DIR/?.lua. */
static int push_dir(lua_State *L, int path, const char *dir)
{
    lua_pushfstring(L, "%s/?.lua;", dir);
    if (strstr(lua_tostring(L, path), lua_tostring(L, -1))) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushfstring(L, "%s/?/init.lua;", dir);
    return 2;
}

int sy_lua_path_init(lua_State *L)
{
    int top = lua_gettop(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path"); /* [package, path] */
    int path = lua_gettop(L), n = 0;
#ifdef SY_LUA_SRC_DIR
    if (in_build_tree())
        n += push_dir(L, path, SY_LUA_SRC_DIR);
#endif
#ifdef SY_LUA_DIR
    n += push_dir(L, path, SY_LUA_DIR);
#endif
    lua_pushvalue(L, path);
    lua_concat(L, n + 1); /* [package, path, newpath] */
    lua_setfield(L, path - 1, "path");
    lua_settop(L, top);
    return 0;
}

/* Appends fmt (one %s: dir) to buf at *used; 0, or SY_ELIMIT when it does not fit. */
static int append(char *buf, size_t size, size_t *used, const char *fmt, const char *dir)
{
    int n = snprintf(buf + *used, size - *used, fmt, dir, dir);
    if (n < 0 || (size_t)n >= size - *used)
        return SY_ELIMIT;
    *used += (size_t)n;
    return 0;
}

int sy_lua_paths(char *path, size_t path_size, char *cpath, size_t cpath_size)
{
    size_t pu = 0, cu = 0;
    int rc = 0;
    if (path_size == 0 || cpath_size == 0)
        return SY_ELIMIT;
    path[0] = cpath[0] = '\0';
#if defined(SY_LUA_SRC_DIR) && defined(SY_BUILD_DIR)
    if (in_build_tree()) {
        rc |= append(path, path_size, &pu, "%s/?.lua;%s/?/init.lua;", SY_LUA_SRC_DIR);
        rc |= append(cpath, cpath_size, &cu, "%s/lua/?.so;", SY_BUILD_DIR);
    }
#endif
#ifdef SY_LUA_DIR
    rc |= append(path, path_size, &pu, "%s/?.lua;%s/?/init.lua;", SY_LUA_DIR);
#endif
#ifdef SY_LUA_CMOD_DIR
    rc |= append(cpath, cpath_size, &cu, "%s/?.so;", SY_LUA_CMOD_DIR);
#endif
    return rc ? SY_ELIMIT : 0;
}
