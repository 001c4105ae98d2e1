/* The access log: one line per request, upgrade decision and WebSocket or raw close (the
 * protocols' sy_access events), to a file that can be reopened by its path, or to stdout. */
#ifndef SY_ACCESS_LOG_H
#define SY_ACCESS_LOG_H

#include "env.h"

typedef struct sy_access_log sy_access_log;

/* Opens path for appending (created 0644), or stdout for "-". Returns the log (caller frees
 * with sy_access_log_free), or NULL with errno set. */
sy_access_log *sy_access_log_open(const char *path);

/* Opens the path again, then closes the old file, so lines written before stay in the old one
 * and the next go to the new one. Nothing for stdout. Returns 0, or -1 with errno set (the old
 * file stays in use). */
int sy_access_log_reopen(sy_access_log *l);

/* The path given to sy_access_log_open (borrowed; valid until the log is freed). */
const char *sy_access_log_path(const sy_access_log *l);

/* Formats a into buf as one line ending in "\n" (logfmt "key=value" pairs, or one JSON object
 * when json), with now as the time of the line and the end of its duration. Returns the
 * length; a line never exceeds cap (long fields are cut, marked "..."). cap >= 1024. */
size_t sy_access_format(const sy_access *a, double now, int json, char *buf, size_t cap);

/* Writes the line of a (in the process's log format) with one write call. */
void sy_access_log_write(sy_access_log *l, const sy_access *a, double now);

/* Closes the file (not stdout) and frees l. NULL is accepted. */
void sy_access_log_free(sy_access_log *l);

#endif
