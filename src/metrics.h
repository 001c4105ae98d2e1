/* The metrics page: the core's counters (stats.h), the app's own counters and gauges
 * (sy.counter, sy.gauge) and their rendering in the Prometheus text format 0.0.4; the built-in
 * responder of the metrics listener; the merge of several workers' pages into one. */
#ifndef SY_METRICS_H
#define SY_METRICS_H

#include <stddef.h>

#include "sy_base.h"

struct sy_server;

#define SY_METRICS_MAX 256        /* app metrics per server */
#define SY_METRICS_MAX_SERIES 100 /* label sets per app metric */
#define SY_METRICS_MAX_LABELS 8   /* labels per series */
#define SY_METRICS_NAME_MAX 128
#define SY_METRICS_HELP_MAX 1024
#define SY_METRICS_LABELS_MAX 1024 /* bytes of one rendered label set */

enum { SY_METRIC_COUNTER = 1, SY_METRIC_GAUGE = 2 };

/* A growable text, NUL-terminated. */
typedef struct sy_text {
    char *p; /* owned; NULL while empty */
    size_t len, cap;
    int failed; /* out of memory: the text is incomplete */
} sy_text;

void sy_text_add(sy_text *t, const char *p, size_t n);
void sy_text_printf(sy_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sy_text_dispose(sy_text *t);

/* 1 when name follows the Prometheus grammar [a-zA-Z_:][a-zA-Z0-9_:]* (label 1: a label name,
 * [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"). */
int sy_metrics_valid_name(const char *name, size_t n, int label);

/* Appends value as a label value, escaped (backslash, double quote, newline). */
void sy_metrics_escape(sy_text *t, const char *value, size_t n);

/* Declares an app metric of type (SY_METRIC_*). The same name again returns the same metric
 * (its help text replaced), so a reloaded app keeps its values. Returns its id (>= 0), or
 * SY_EINVAL with a reason in *why (bad or reserved name, another type, too many metrics),
 * SY_ENOMEM. */
int sy_metrics_declare(struct sy_server *s, const char *name, const char *help, int type,
                       const char **why);

/* Changes the series labels (rendered 'a="x",b="y"', names sorted; len 0: none) of metric id:
 * set 1 replaces the value, else adds v. Returns 0, SY_EINVAL with *why (a counter going down,
 * too many label sets), SY_ENOMEM. */
int sy_metrics_update(struct sy_server *s, int id, const char *labels, size_t len, int set,
                      double v, const char **why);

/* The value of a series (0 when it does not exist yet). */
double sy_metrics_value(struct sy_server *s, int id, const char *labels, size_t len);

/* Renders the whole page of s (core counters, then the app's) into t. */
void sy_metrics_render(struct sy_server *s, sy_text *t);

/* Merges the pages of n workers (pages[i] may be NULL for a worker that did not answer) into
 * one: each family once, with its HELP and TYPE, every sample with a worker="i" label. */
void sy_metrics_merge(const sy_str *pages, int n, sy_text *out);

/* The app of the metrics listener's connections (server.c installs it). */
struct sy_app_ops;
extern const struct sy_app_ops sy_metrics_ops;

/* Frees the app metrics of s (sy_server_free). */
void sy_metrics_dispose(struct sy_server *s);

#endif
