/* permessage-deflate (RFC 7692) streams on zlib: one message in, its compressed payload out,
 * and back, under the caller's size limit. No I/O; the streams allocate through sy_malloc. */
#ifndef SY_PMD_H
#define SY_PMD_H

#include "buf.h"
#include "ws.h"

typedef struct sy_deflater sy_deflater;
typedef struct sy_inflater sy_inflater;

/* A raw deflate stream with a window of 2^window_bits bytes (9..15), zlib's memLevel (1..9)
 * and level (0..9, or -1 for zlib's default). Returns NULL when out of memory or for a value
 * out of range (zlib's raw deflate has no 8-bit window). Free with sy_deflater_free. */
sy_deflater *sy_deflater_new(int window_bits, int mem_level, int level);
void sy_deflater_free(sy_deflater *d);

/* The most bytes sy_deflater_run may write for an n-byte message. */
size_t sy_deflater_bound(const sy_deflater *d, size_t n);

/* Compresses one whole message p[0..n) into out (cap >= sy_deflater_bound(d, n)) and returns
 * the payload length: the deflate blocks ending in an empty stored block whose 00 00 ff ff
 * tail is removed (RFC 7692 7.2.1). reset: forget the history afterwards (no context
 * takeover). Returns SY_ENOMEM or SY_EINVAL when zlib fails; the stream is reset then. */
ssize_t sy_deflater_run(sy_deflater *d, const void *p, size_t n, int reset, uint8_t *out,
                        size_t cap);

/* Forgets the history: the next message is compressed on its own. */
void sy_deflater_reset(sy_deflater *d);

/* A raw inflate stream for windows up to 2^window_bits bytes (9..15). NULL when out of
 * memory. Free with sy_inflater_free. */
sy_inflater *sy_inflater_new(int window_bits);
void sy_inflater_free(sy_inflater *f);

/* Inflates in[0..n), one frame's payload of a compressed message, and after it, when fin, the
 * 00 00 ff ff tail the sender removed (RFC 7692 7.2.2). The output is appended to out, and
 * never past limit bytes in all: SY_ELIMIT as soon as one more byte would pass it, so a small
 * frame that inflates to gigabytes costs at most limit bytes. u non-NULL: the output is a text
 * message, validated as it comes out (fail fast; the caller checks sy_utf8_complete at the
 * end). Data after a final deflate block (BFINAL) is ignored. Returns 0, SY_ELIMIT, SY_ENOMEM
 * or SY_EPROTO with *why (corrupt data, invalid UTF-8). The history is kept for the next
 * message unless reset; after fin with reset, or any failure, the stream starts afresh. */
int sy_inflater_run(sy_inflater *f, const uint8_t *in, size_t n, int fin, int reset, sy_buf *out,
                    size_t limit, sy_utf8 *u, const char **why);

#endif
