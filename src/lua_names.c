/* Names the app writes (hooks, settings, handlers, options), checked against the names the
 * server knows, so a typo is an error that says what was meant instead of a setting silently
 * ignored. */
#include <ctype.h>
#include <string.h>

#include <lauxlib.h>

#include "lua_names.h"

/* Levenshtein distance of a and b, capped: any distance above cap is reported as cap + 1.
 * Names longer than the buffer are compared only as equal or far. */
size_t sy_edit_distance(const char *a, const char *b, size_t cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return strcmp(a, b) == 0 ? 0 : cap + 1;
    if ((la > lb ? la - lb : lb - la) > cap)
        return cap + 1;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0], best;
        row[0] = best = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t v = diag + (a[i - 1] != b[j - 1]);
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            if (up + 1 < v)
                v = up + 1;
            row[j] = v;
            diag = up;
            if (v < best)
                best = v;
        }
        if (best > cap)
            return cap + 1;
    }
    return row[lb] > cap ? cap + 1 : row[lb];
}

static int same_but_case(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return 0;
    return *a == *b;
}

const char *sy_name_suggest(const char *name, const char *const *known)
{
    const char *best = NULL;
    size_t bestd = 3;
    for (size_t i = 0; known[i]; i++) {
        size_t d = same_but_case(name, known[i]) ? 0 : sy_edit_distance(name, known[i], 2);
        if (d < bestd) {
            bestd = d;
            best = known[i];
        }
    }
    return best;
}

int sy_name_known(const char *name, const char *const *known)
{
    for (size_t i = 0; known[i]; i++)
        if (strcmp(name, known[i]) == 0)
            return 1;
    return 0;
}

int sy_lua_unknown_key(lua_State *L, int idx, const char *const *known, const char *what, int flags)
{
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int fn = lua_type(L, -1) == LUA_TFUNCTION;
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pushfstring(L, "unknown %s %s (names are strings)", what,
                            luaL_tolstring(L, -1, NULL));
            lua_replace(L, -3); /* [msg, key] */
            lua_pop(L, 1);
            return 1;
        }
        const char *k = lua_tostring(L, -1);
        if (((flags & SY_NAMES_OWN) && k[0] == '_') || sy_name_known(k, known))
            continue;
        const char *like = sy_name_suggest(k, known);
        if (!like && fn && (flags & SY_NAMES_FUNCTIONS))
            continue;
        if (like)
            lua_pushfstring(L, "unknown %s '%s' (did you mean '%s'?)", what, k, like);
        else
            lua_pushfstring(L, "unknown %s '%s'", what, k);
        lua_replace(L, -2);
        return 1;
    }
    return 0;
}
