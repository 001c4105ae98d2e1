/* Where a server's Lua state looks for Lua modules (package.path). */
#ifndef SY_LUA_PATH_H
#define SY_LUA_PATH_H

#include <stddef.h>

struct lua_State;

/* Puts the installed Lua helpers (SY_LUA_DIR, the install prefix's share/lua/5.4, compiled in)
 * in front of package.path unless Lua's defaults already list them, and, for a program that
 * runs from the build tree it was built in (SY_BUILD_DIR), the source tree's lua/ in front of
 * those. The app's own directory is added later, by sy_app_load, in front of all. A
 * lua_CFunction for lua_pcall: it raises only a memory error and leaves the stack as it was. */
int sy_lua_path_init(struct lua_State *L);

/* For a plain Lua interpreter run by this program (`switchyard test`): fills path with
 * "DIR/?.lua;DIR/?/init.lua;" for each directory of Lua helpers and cpath with "DIR/?.so;" for
 * each directory of C modules (switchyard.so, switchyard/crypto.so), in the order
 * sy_lua_path_init searches: the source tree's lua/ and the build tree's lua/ first for a
 * program in its build tree, then the installed ones (SY_LUA_DIR, SY_LUA_CMOD_DIR). Both are
 * NUL-terminated. Returns 0, or SY_ELIMIT when a buffer is too small. */
int sy_lua_paths(char *path, size_t path_size, char *cpath, size_t cpath_size);

#endif
