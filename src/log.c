/* The one log function of the core, and the host's replacement for where lines go. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static sy_log_fn log_fn;
static void *log_ud;

SY_API void sy_set_log(sy_log_fn fn, void *ud)
{
    log_fn = fn;
    log_ud = ud;
}

static const char *const level_names[] = {"fatal", "error", "warn", "info", "debug"};

SY_API const char *sy_log_level_name(int level)
{
    return level >= 0 && level < (int)SY_COUNTOF(level_names) ? level_names[level] : "?";
}

void sy_log(const char *level, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    int lv = SY_LOG_ERROR;
    for (int i = 0; i < (int)SY_COUNTOF(level_names); i++)
        if (strcmp(level, level_names[i]) == 0)
            lv = i;
    sy_log_fn fn = log_fn;
    if (fn) {
        fn(lv, line, log_ud);
        return;
    }
    fprintf(stderr, "[%s] %s\n", level_names[lv], line);
    fflush(stderr);
}
