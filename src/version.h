/* The versions of switchyard and of the libraries it runs on, for `switchyard --version`. */
#ifndef SY_VERSION_H
#define SY_VERSION_H

#include <stdio.h>

/* Writes "switchyard MAJOR.MINOR.PATCH" and one line per library (Lua, OpenSSL, libev,
 * nghttp2, zlib: the versions linked, Lua's as compiled) to f. */
void sy_version_print(FILE *f);

#endif
