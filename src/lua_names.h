/* Checking the names an app writes against the known ones, with a suggestion for a typo. */
#ifndef SY_LUA_NAMES_H
#define SY_LUA_NAMES_H

#include <stddef.h>

#include <lua.h>

/* The edit distance (insertions, deletions, substitutions) of a and b; above cap it returns
 * cap + 1 without finishing. */
size_t sy_edit_distance(const char *a, const char *b, size_t cap);
/* The known name (a NULL-ended list) that name resembles: the same but for case, or within
 * edit distance 2 (the closest, the first of equals); NULL when none does. */
const char *sy_name_suggest(const char *name, const char *const *known);
int sy_name_known(const char *name, const char *const *known);
enum {
    SY_NAMES_OWN = 1,       /* keys starting with '_' are the app's own */
    SY_NAMES_FUNCTIONS = 2, /* a function under a name far from every known one is allowed */
};
/* Walks the table at idx: for the first key not in known (nor allowed by flags), pushes "unknown
 * WHAT 'key' (did you mean 'name'?)" and returns 1; else pushes nothing and returns 0. May raise
 * (out of memory). */
int sy_lua_unknown_key(lua_State *L, int idx, const char *const *known, const char *what,
                       int flags);

#endif
