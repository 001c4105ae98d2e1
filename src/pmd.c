/* permessage-deflate streams on zlib (RFC 7692 7.2). */
#include "pmd.h"

#include <limits.h>

#include <zlib.h>

struct sy_deflater {
    z_stream z;
};

struct sy_inflater {
    z_stream z;
    int ended; /* a final block was seen: the rest of this message is ignored */
    int fed;   /* bytes of this message were fed */
};

/* zlib allocates through the core's allocator (sy_set_allocator, the out-of-memory tests). */
static voidpf zalloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    if (size && items > SIZE_MAX / size)
        return Z_NULL;
    return sy_malloc((size_t)items * size);
}

static void zfree(voidpf opaque, voidpf p)
{
    (void)opaque;
    sy_free(p);
}

sy_deflater *sy_deflater_new(int window_bits, int mem_level, int level)
{
    /* zlib refuses a raw 8-bit window (zlib.h, deflateInit2: 8 is not supported). */
    if (window_bits < 9 || window_bits > 15 || mem_level < 1 || mem_level > 9 || level < -1 ||
        level > 9)
        return NULL;
    sy_deflater *d = sy_calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->z.zalloc = zalloc;
    d->z.zfree = zfree;
    /* Negative windowBits: raw deflate, no zlib header or trailer (RFC 7692 7.2.1). */
    if (deflateInit2(&d->z, level, Z_DEFLATED, -window_bits, mem_level, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        sy_free(d);
        return NULL;
    }
    return d;
}

void sy_deflater_free(sy_deflater *d)
{
    if (!d)
        return;
    deflateEnd(&d->z);
    sy_free(d);
}

size_t sy_deflater_bound(const sy_deflater *d, size_t n)
{
    /* deflateBound covers one deflate() with Z_FINISH; a sync flush adds an empty stored block
     * (at most 6 bytes with its alignment), and a bit of slack costs nothing. */
    uLong b = deflateBound((z_streamp)&d->z, (uLong)n);
    return (size_t)b + 16;
}

ssize_t sy_deflater_run(sy_deflater *d, const void *p, size_t n, int reset, uint8_t *out,
                        size_t cap)
{
    z_stream *z = &d->z;
    z->next_in = (Bytef *)(uintptr_t)p;
    z->avail_in = (uInt)n;
    z->next_out = out;
    z->avail_out = (uInt)cap;
    if (n > UINT_MAX || cap > UINT_MAX) {
        deflateReset(z);
        return SY_EINVAL;
    }
    int rc = deflate(z, Z_SYNC_FLUSH);
    size_t len = cap - z->avail_out;
    /* With cap at the bound, one call consumes everything and has room to spare. */
    if ((rc != Z_OK && rc != Z_BUF_ERROR) || z->avail_in != 0 || z->avail_out == 0) {
        deflateReset(z);
        return rc == Z_MEM_ERROR ? SY_ENOMEM : SY_EINVAL;
    }
    /* RFC 7692 7.2.1: the sync flush ends in 00 00 ff ff, which is not sent. */
    if (len >= 4 && out[len - 4] == 0 && out[len - 3] == 0 && out[len - 2] == 0xff &&
        out[len - 1] == 0xff)
        len -= 4;
    /* 7.2.3.6: an empty message is at least one empty stored block (0x00): with nothing
     * pending, zlib writes no flush block at all, and the bare tail is no complete block. */
    if (len == 0)
        out[len++] = 0x00;
    if (reset)
        deflateReset(z);
    return (ssize_t)len;
}

void sy_deflater_reset(sy_deflater *d)
{
    deflateReset(&d->z);
}

sy_inflater *sy_inflater_new(int window_bits)
{
    if (window_bits < 9 || window_bits > 15)
        return NULL;
    sy_inflater *f = sy_calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->z.zalloc = zalloc;
    f->z.zfree = zfree;
    if (inflateInit2(&f->z, -window_bits) != Z_OK) {
        sy_free(f);
        return NULL;
    }
    return f;
}

void sy_inflater_free(sy_inflater *f)
{
    if (!f)
        return;
    inflateEnd(&f->z);
    sy_free(f);
}

static int inflate_fail(sy_inflater *f, int rc, const char **why, const char *reason)
{
    inflateReset(&f->z);
    f->ended = 0;
    f->fed = 0;
    if (why)
        *why = reason;
    return rc;
}

/* Output is produced this many bytes at a time (fewer near the limit). */
#define INFLATE_STEP 16384

static int inflate_some(sy_inflater *f, const uint8_t *in, size_t n, sy_buf *out, size_t limit,
                        sy_utf8 *u, const char **why)
{
    z_stream *z = &f->z;
    z->next_in = (Bytef *)(uintptr_t)in;
    z->avail_in = (uInt)n;
    for (;;) {
        if (f->ended)
            return 0; /* a sender may end with BFINAL set; what follows is not inflated */
        size_t have = sy_buf_len(out);
        size_t room = limit > have ? limit - have : 0;
        size_t want = room < INFLATE_STEP ? room : INFLATE_STEP;
        char *span = NULL;
        uint8_t probe;
        if (want) {
            int rc = sy_buf_reserve_within(out, want, limit, &span);
            if (rc != 0)
                return inflate_fail(f, rc, why, "message too big");
            z->next_out = (Bytef *)span;
        } else {
            /* At the limit: one more byte of output means the message is too big. */
            z->next_out = &probe;
            want = 1;
        }
        z->avail_out = (uInt)want;
        int zr = inflate(z, Z_SYNC_FLUSH);
        size_t got = want - z->avail_out;
        if (!span && got)
            return inflate_fail(f, SY_ELIMIT, why, "message too big");
        if (span && got) {
            if (u && sy_utf8_feed(u, (const uint8_t *)span, got) != 0)
                return inflate_fail(f, SY_EPROTO, why, "invalid UTF-8 in a text message");
            sy_buf_commit(out, got);
        }
        if (zr == Z_STREAM_END) {
            f->ended = 1;
            return 0;
        }
        if (zr == Z_MEM_ERROR)
            return inflate_fail(f, SY_ENOMEM, why, "out of memory");
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            return inflate_fail(f, SY_EPROTO, why, "invalid compressed data");
        /* Done when all input is in and the output was not the limiting factor. */
        if (z->avail_in == 0 && z->avail_out > 0)
            return 0;
        if (zr == Z_BUF_ERROR && z->avail_out > 0)
            return 0; /* no progress possible without more input */
    }
}

int sy_inflater_run(sy_inflater *f, const uint8_t *in, size_t n, int fin, int reset, sy_buf *out,
                    size_t limit, sy_utf8 *u, const char **why)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    int rc = 0;
    f->fed |= n > 0;
    /* Frames are bounded far below 4 GiB by the message limit; feed in uInt-sized pieces. */
    while (n > 0 && rc == 0) {
        size_t part = n > (1u << 30) ? (1u << 30) : n;
        rc = inflate_some(f, in, part, out, limit, u, why);
        in += part;
        n -= part;
    }
    /* An empty payload is an empty message: the tail alone is no complete block, and would
     * leave the stream inside a block header (some senders emit nothing for an empty message
     * when nothing is pending, instead of the 0x00 RFC 7692 7.2.3.6 asks for). */
    if (rc == 0 && fin && f->fed)
        rc = inflate_some(f, tail, sizeof tail, out, limit, u, why);
    if (fin)
        f->fed = 0;
    if (rc != 0)
        return rc;
    if (fin && (reset || f->ended)) {
        /* A final block ends the sender's stream: the next message starts a new one. */
        inflateReset(&f->z);
        f->ended = 0;
    }
    return 0;
}
