/* The library's version at run time, from the macros in switchyard.h. */
#include "sy_base.h"

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

SY_API const char *sy_version(void)
{
    return STRINGIFY(SY_VERSION_MAJOR) "." STRINGIFY(SY_VERSION_MINOR) "." STRINGIFY(
        SY_VERSION_PATCH);
}
