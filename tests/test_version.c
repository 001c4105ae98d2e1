/* The version in switchyard.h, sy_version() and the CMake project version agree; SY_API is
 * empty outside the library's own build. */
#include <stdio.h>
#include <string.h>

#include "switchyard.h"
#include "test.h"

#define STR_(x) #x
#define STR(x) STR_(x)

int main(void)
{
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", SY_VERSION_MAJOR, SY_VERSION_MINOR, SY_VERSION_PATCH);
    CHECK_MSG(strcmp(want, SY_PROJECT_VERSION) == 0, "header %s, project %s", want,
              SY_PROJECT_VERSION);
    CHECK(sy_version() != NULL);
    CHECK_MSG(strcmp(sy_version(), want) == 0, "sy_version() %s, header %s", sy_version(), want);
    CHECK(sy_version() == sy_version()); /* static */
    /* A host that includes the header exports nothing through it. */
    CHECK(strcmp(STR(SY_API), "") == 0);
    /* SONAME: MAJOR.MINOR before 1.0, MAJOR after. */
    char so[32];
    if (SY_VERSION_MAJOR == 0)
        snprintf(so, sizeof so, "0.%d", SY_VERSION_MINOR);
    else
        snprintf(so, sizeof so, "%d", SY_VERSION_MAJOR);
    CHECK_MSG(strcmp(so, SY_PROJECT_SOVERSION) == 0, "soversion %s, want %s", SY_PROJECT_SOVERSION,
              so);
    return t_summary("test_version");
}
