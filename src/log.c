/* The one log function of the core, the host's replacement for where lines go, the level
 * threshold and the line format (text or JSON) with its escaping. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static sy_log_fn log_fn;
static void *log_ud;
static int log_threshold = SY_LOG_DEBUG;
static int log_json;
static int log_worker;

SY_API void sy_set_log(sy_log_fn fn, void *ud)
{
    log_fn = fn;
    log_ud = ud;
}

SY_API void sy_set_log_level(int level)
{
    log_threshold = level < SY_LOG_FATAL   ? SY_LOG_FATAL
                    : level > SY_LOG_DEBUG ? SY_LOG_DEBUG
                                           : level;
}

SY_API void sy_set_log_format(int format)
{
    log_json = format == SY_LOG_JSON;
}

void sy_log_set_worker(int worker)
{
    log_worker = worker;
}

int sy_log_worker(void)
{
    return log_worker;
}

int sy_log_is_json(void)
{
    return log_json;
}

static const char *const level_names[] = {"fatal", "error", "warn", "info", "debug"};

SY_API const char *sy_log_level_name(int level)
{
    return level >= 0 && level < (int)SY_COUNTOF(level_names) ? level_names[level] : "?";
}

int sy_log_level_parse(const char *name)
{
    for (int i = 0; i < (int)SY_COUNTOF(level_names); i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

double sy_log_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- lines --------------------------------------------------------------------------------- */

void sy_line_put(sy_line *l, const char *p, size_t n)
{
    if (l->len + n + 1 > l->cap) {
        l->full = 1;
        return;
    }
    memcpy(l->p + l->len, p, n);
    l->len += n;
}

void sy_line_puts(sy_line *l, const char *s)
{
    sy_line_put(l, s, strlen(s));
}

void sy_line_printf(sy_line *l, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    sy_line_put(l, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* The length of the valid UTF-8 sequence at p[0..n) (RFC 3629 4: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0 when p[0] does not start one. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return len;
}

void sy_line_json(sy_line *l, const char *s, size_t n, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t used = 0;
    sy_line_put(l, "\"", 1);
    for (size_t i = 0; i < n;) {
        char esc[8];
        const char *out = esc;
        size_t k, step = 1;
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, k = 2;
        } else if (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : c == '\b' ? 'b' : 'f';
            k = 2;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4], esc[5] = hex[c & 15], k = 6;
        } else if (c < 0x80) {
            out = (const char *)p + i, k = 1;
        } else if ((step = utf8_len(p + i, n - i)) > 0) {
            out = (const char *)p + i, k = step;
        } else {
            out = "\\ufffd", k = 6, step = 1;
        }
        /* Cut here when the content is at max, or when the buffer keeps only the room for
         * "...", the closing quote and the newline. */
        int short_of_room = l->len + k + 5 > l->cap;
        if (used + k > max || short_of_room) {
            sy_line_put(l, "...", 3);
            l->full |= short_of_room;
            break;
        }
        sy_line_put(l, out, k);
        used += k;
        i += step;
    }
    sy_line_put(l, "\"", 1);
}

/* A message in a text line: control characters other than tab escaped (\n, \r, \xNN), so one
 * message stays one line; other bytes as they are. */
static void put_text(sy_line *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 0x20 && c != 0x7f) || c == '\t')
            continue;
        sy_line_put(l, s + from, i - from);
        char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
        if (c == '\n' || c == '\r') {
            esc[1] = c == '\n' ? 'n' : 'r';
            sy_line_put(l, esc, 2);
        } else {
            sy_line_put(l, esc, 4);
        }
        from = i + 1;
    }
    sy_line_put(l, s + from, n - from);
}

void sy_line_time(sy_line *l, double t)
{
    time_t sec = (time_t)t;
    long usec = (long)((t - (double)sec) * 1e6);
    if (usec < 0)
        usec = 0;
    else if (usec > 999999)
        usec = 999999;
    struct tm tm;
    gmtime_r(&sec, &tm);
    sy_line_printf(l, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                   tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
}

/* Writes the whole line to fd, retrying after EINTR and short writes (a blocked pipe waits). */
static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

void sy_log(const char *level, const char *fmt, ...)
{
    int lv = sy_log_level_parse(level);
    if (lv < 0)
        lv = SY_LOG_ERROR;
    if (lv > log_threshold)
        return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t mlen = n < 0 ? 0 : (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    sy_log_fn fn = log_fn;
    if (fn) {
        fn(lv, msg, log_ud);
        return;
    }
    /* One write per line: lines of several workers on one stderr do not interleave. */
    char buf[6 * sizeof msg + 256];
    sy_line l = {buf, 0, sizeof buf, 0};
    if (log_json) {
        sy_line_puts(&l, "{\"time\":\"");
        sy_line_time(&l, sy_log_now());
        sy_line_printf(&l, "\",\"level\":\"%s\",\"worker\":", level_names[lv]);
        if (log_worker >= 0)
            sy_line_printf(&l, "%d", log_worker);
        else
            sy_line_puts(&l, "null");
        sy_line_printf(&l, ",\"pid\":%ld,\"msg\":", (long)getpid());
        sy_line_json(&l, msg, mlen, sizeof buf - 256);
        sy_line_puts(&l, "}");
    } else {
        sy_line_time(&l, sy_log_now());
        sy_line_printf(&l, " [%s] worker=", level_names[lv]);
        if (log_worker >= 0)
            sy_line_printf(&l, "%d", log_worker);
        else
            sy_line_puts(&l, "supervisor");
        sy_line_printf(&l, " pid=%ld ", (long)getpid());
        put_text(&l, msg, mlen);
    }
    l.p[l.len++] = '\n';
    write_all(2, l.p, l.len);
}
