/* Names checked against the known ones: the edit distance (capped) and the suggestion for a
 * typo (within distance 2, or the same but for case; the closest wins). */
#include <string.h>

#include "lua_names.h"
#include "test.h"

int main(void)
{
    CHECK(sy_edit_distance("upgrade", "upgrade", 2) == 0);
    CHECK(sy_edit_distance("upgarde", "upgrade", 2) == 2); /* a swap is two edits */
    CHECK(sy_edit_distance("mesage", "message", 2) == 1);
    CHECK(sy_edit_distance("", "abc", 5) == 3);
    CHECK(sy_edit_distance("abc", "", 5) == 3);
    CHECK(sy_edit_distance("kitten", "sitting", 5) == 3);
    CHECK(sy_edit_distance("kitten", "sitting", 2) == 3); /* capped: cap + 1 */
    CHECK(sy_edit_distance("a", "abcdefgh", 2) == 3);     /* lengths alone say too far */
    char longer[100];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    CHECK(sy_edit_distance(longer, longer, 2) == 0);
    CHECK(sy_edit_distance(longer, "x", 2) == 3);

    static const char *const hooks[] = {"request", "upgrade", "options", "lua", NULL};
    CHECK(sy_name_suggest("upgarde", hooks) == hooks[1]);
    CHECK(sy_name_suggest("Request", hooks) == hooks[0]);
    CHECK(sy_name_suggest("REQUEST", hooks) == hooks[0]); /* case only, however many */
    CHECK(sy_name_suggest("option", hooks) == hooks[2]);
    CHECK(sy_name_suggest("lu", hooks) == hooks[3]);
    CHECK(sy_name_suggest("settings", hooks) == NULL);
    CHECK(sy_name_known("lua", hooks));
    CHECK(!sy_name_known("Lua", hooks));
    return t_summary("test_lua_names");
}
