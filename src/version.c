/* The library's version at run time, from the macros in switchyard.h, and the versions of the
 * libraries it runs on. */
#include "version.h"

#include <ev.h>
#include <lua.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <zlib.h>

#include "sy_base.h"

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

SY_API const char *sy_version(void)
{
    return STRINGIFY(SY_VERSION_MAJOR) "." STRINGIFY(SY_VERSION_MINOR) "." STRINGIFY(
        SY_VERSION_PATCH);
}

void sy_version_print(FILE *f)
{
    fprintf(f, "switchyard %s\n", sy_version());
    fprintf(f, "%s\n", LUA_RELEASE);
    fprintf(f, "%s\n", OpenSSL_version(OPENSSL_VERSION));
    fprintf(f, "libev %d.%d\n", ev_version_major(), ev_version_minor());
    fprintf(f, "nghttp2 %s\n", nghttp2_version(0)->version_str);
    fprintf(f, "zlib %s\n", zlibVersion());
}
