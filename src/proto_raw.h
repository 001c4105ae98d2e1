/* Raw protocols (proto_raw.c): bytes both ways for the app's handle. */
#ifndef SY_PROTO_RAW_H
#define SY_PROTO_RAW_H

#include "conn.h"

extern const sy_proto sy_proto_raw;

/* Raw protocol settings for one connection (accept options over app.options over defaults). */
typedef struct sy_raw_options {
    double idle_timeout; /* seconds without bytes from the peer: close (default 120; 0 none) */
} sy_raw_options;

void sy_raw_default_options(sy_raw_options *o);

/* Creates the raw protocol state for the app's handle (borrowed; the app releases it in
 * sy_app_raw_close, or in sy_app_conn_discard when the protocol never started). Returns NULL
 * when out of memory. */
void *sy_raw_new(void *handle, const sy_raw_options *o);
/* Frees a state that never started (the app is not told). */
void sy_raw_free(void *state);

/* sy_conn_write for the app's bytes on a raw connection, counted for its access log line. */
int sy_raw_write(sy_conn *c, const void *p, size_t n);

#endif
