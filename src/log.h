/* Logging: every line of the core goes through sy_log; the line format and the escaping that the
 * access log shares. */
#ifndef SY_LOG_H
#define SY_LOG_H

#include "sy_base.h"

/* Logs one line through the host's sy_set_log function, or by default as one line on stderr
 * (text or JSON, sy_set_log_format), unless level is above the threshold of sy_set_log_level.
 * level is "fatal", "error", "warn", "info" or "debug" (another name: "error"). */
void sy_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The level named name (SY_LOG_*), or -1 for an unknown name. */
int sy_log_level_parse(const char *name);

/* The worker that every line names: a worker number (0 by default, also for a single process),
 * or -1 for the supervisor of --workers. Process-wide; set once after fork. */
void sy_log_set_worker(int worker);
int sy_log_worker(void);

/* 1 when lines are JSON objects (sy_set_log_format(SY_LOG_JSON)). */
int sy_log_is_json(void);

/* A line being built in a caller's buffer: appends never write past cap - 1 (one byte stays
 * for the newline); what does not fit is dropped and `full` is set. */
typedef struct sy_line {
    char *p; /* borrowed; cap bytes */
    size_t len, cap;
    int full;
} sy_line;

void sy_line_put(sy_line *l, const char *p, size_t n);
void sy_line_puts(sy_line *l, const char *s);
void sy_line_printf(sy_line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* p[0..n) as a JSON string, quotes included (RFC 8259 7): '"', '\\' and control characters
 * escaped (\n, \t, ... or \u00XX, DEL too), valid UTF-8 kept, each byte of invalid UTF-8
 * replaced by \ufffd. At most max bytes of output for the string's content: a longer one is
 * cut at a character boundary and ends with "...". The string is always closed. */
void sy_line_json(sy_line *l, const char *p, size_t n, size_t max);
/* The RFC 3339 UTC time of t (seconds since the epoch) with microseconds:
 * "2026-12-06T02:42:34.123456Z". */
void sy_line_time(sy_line *l, double t);

/* Seconds since the epoch, now (CLOCK_REALTIME). */
double sy_log_now(void);

#endif
