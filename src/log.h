/* Logging: every line of the core goes through sy_log. */
#ifndef SY_LOG_H
#define SY_LOG_H

#include "sy_base.h"

/* Logs one line through the host's sy_set_log function (default: "[level] message" on
 * stderr). level is "fatal", "error", "warn", "info" or "debug" (another name: "error"). */
void sy_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
