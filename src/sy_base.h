/* Internal basics shared by every module: visibility, error codes, the slice type. */
#ifndef SY_BASE_H
#define SY_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "switchyard.h"

#define SY_HIDDEN __attribute__((visibility("hidden")))

#define sy_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#define SY_COUNTOF(a) (sizeof(a) / sizeof((a)[0]))

/* Internal-only codes; never cross the public header (sy_strerror maps them anyway). */
enum {
    SY_EAGAIN = -100, /* need more input */
    SY_ELIMIT = -101, /* a configured limit was exceeded */
    SY_EPROTO = -102, /* the peer broke the protocol; a static reason goes with it */
};

/* A slice: never owning, never assumed NUL-terminated. */
typedef struct sy_str {
    const char *p;
    size_t len;
} sy_str;

/* The 6-bit value of base64 character c in the standard alphabet (url 0) or the URL-safe one
 * (RFC 4648 4 and 5), or -1. */
static inline int sy_base64_value(unsigned char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

#define SY_STR(lit) ((sy_str){(lit), sizeof(lit) - 1})

static inline sy_str sy_str_make(const char *p, size_t len)
{
    sy_str s = {p, len};
    return s;
}

/* Case-insensitive equality of a slice with a lower-case C string. */
static inline int sy_str_ieq(sy_str s, const char *lower)
{
    size_t n = strlen(lower);
    if (s.len != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + 32);
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

static inline int sy_str_eq(sy_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.p, lit, n) == 0;
}

#endif
