/* Inside the connection module: what conn.c (plain sockets) and conn_tls.c (the TLS layer)
 * share. Nothing outside these two files includes it. */
#ifndef SY_CONN_INT_H
#define SY_CONN_INT_H

#include "conn.h"

/* Bytes asked of one read from the socket. */
#define READ_CHUNK 16384

/* ---- conn.c, for the TLS layer ---- */

/* Output is done: shut the write side and discard input for a moment, so a peer still sending
 * (a body we refused) reads our answer instead of a reset. */
void sy_conn_start_lingering(sy_conn *c);
/* Our side is done writing: FIN, and a close when the peer's side is done too. */
void sy_conn_send_fin(sy_conn *c);
/* Starts or stops watching the socket for readability (no-op without a socket). */
void sy_conn_io_read(sy_conn *c, int on);
/* Output waits for the socket: watch for writability and run the send timeout. */
void sy_conn_watch_output(sy_conn *c);
/* Output that was over the high-water mark fell to half of it or below: the protocol's on_drain
 * runs (not after close_after_write). 1 when on_drain ran and the connection is closing. */
int sy_conn_drained(sy_conn *c);
/* Nothing waits for the socket any more. */
void sy_conn_unwatch_output(sy_conn *c);
/* A send failed for good: closes c and returns SY_ECLOSED. */
int sy_conn_write_failed(sy_conn *c);
/* Room in c->in for the next read: about want bytes, less when the protocol's input limit is
 * near. Returns 0 with *span and *room set; 1 when the protocol let input pile up to its limit
 * (reading is paused until it catches up); -1 when out of memory (the conn is closed). */
int sy_conn_input_room(sy_conn *c, size_t want, char **span, size_t *room);

/* ---- conn_tls.c, for conn.c: each runs only while c->tls is set ---- */

/* The socket is readable: reads ciphertext, then as sy_conn_tls_run. */
void sy_conn_tls_readable(sy_conn *c);
/* Decrypts what the TLS layer holds into c->in, sends what the handshake produced, and tells the
 * protocol: on_bytes for new plaintext, for a handshake that just completed, or when forced (a
 * scheduled run); then on_eof when the peer is done (sock_eof or close_notify). */
void sy_conn_tls_run(sy_conn *c, int force, int sock_eof);
/* Encrypts and sends what the socket takes; then drain, lingering close or FIN as due. */
void sy_conn_tls_flush(sy_conn *c);
/* sy_conn_write2 and sy_conn_write_shared under TLS: same results. */
int sy_conn_tls_write2(sy_conn *c, const char *p1, size_t n1, const char *p2, size_t n2);
int sy_conn_tls_write_shared(sy_conn *c, sy_chunk *ch, size_t off, size_t len);

#endif
