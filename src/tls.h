/* TLS on OpenSSL 3 without sockets: ciphertext in, plaintext out and back, so TLS can start on
 * the first byte of a connection or in the middle of one (RFC 2817). */
#ifndef SY_TLS_H
#define SY_TLS_H

#include "buf.h"

typedef struct sy_tls_ctx sy_tls_ctx;
typedef struct sy_tls sy_tls;

/* Largest plaintext of one TLS record (RFC 8446 5.1). */
#define SY_TLS_RECORD 16384

/* Loads a PEM certificate chain and its private key into a server context: TLS 1.2 and 1.3
 * only, forward-secret AEAD ciphers for TLS 1.2, OpenSSL's TLS 1.3 suites, no compression or
 * renegotiation, ALPN "http/1.1" (and "h2" when offer_h2). Returns 0 and *out (caller frees
 * with sy_tls_ctx_free); else SY_EINVAL with a message naming the file and the reason in
 * err (never any content of the key), or SY_ENOMEM. */
int sy_tls_ctx_new(const char *cert_file, const char *key_file, int offer_h2, sy_tls_ctx **out,
                   char *err, size_t errcap);
/* A client context: TLS 1.2 and 1.3, no compression or renegotiation. verify 1 checks the
 * peer's chain against ca_file (PEM; only those authorities) or, when ca_file is NULL, the
 * system's store (OpenSSL's default paths); verify 0 accepts any certificate. Returns 0 and
 * *out (caller frees with sy_tls_ctx_free); SY_EINVAL with the reason in err (an unreadable
 * or unusable CA file); SY_ENOMEM. */
int sy_tls_client_ctx_new(const char *ca_file, int verify, sy_tls_ctx **out, char *err,
                          size_t errcap);
/* Drops the caller's reference. NULL is accepted. Every session made from the context holds a
 * reference of its own, so the context may be freed while they live. */
void sy_tls_ctx_free(sy_tls_ctx *ctx);

/* A server-side TLS session that will accept a handshake: min_version 12 or 13 is the lowest
 * protocol version allowed. Returns NULL when out of memory. */
sy_tls *sy_tls_new(sy_tls_ctx *ctx, int min_version);
/* A client-side session on a context from sy_tls_client_ctx_new: the first sy_tls_read
 * queues the ClientHello. server_name (borrowed, copied) is sent as SNI and is the name the
 * certificate must match when the context verifies; a numeric address (brackets allowed) is
 * matched against the certificate's IP entries and not sent. NULL or "": no SNI, no name
 * check. A failed verification makes sy_tls_read answer SY_EPROTO with the check's reason
 * ("self-signed certificate", "Hostname mismatch", ...). Returns NULL when out of memory. */
sy_tls *sy_tls_client_new(sy_tls_ctx *ctx, const char *server_name);
/* NULL is accepted. */
void sy_tls_free(sy_tls *t);
/* Before the handshake: ALPN will not choose "h2" even when the context offers it (the RFC 2817
 * in-place upgrade answers its request over HTTP/1.1). */
void sy_tls_refuse_h2(sy_tls *t);

/* Ciphertext from the peer: reserve a span of at least n bytes, then commit what was written. */
int sy_tls_in_reserve(sy_tls *t, size_t n, char **span);
void sy_tls_in_commit(sy_tls *t, size_t n);
/* Frees the input buffer when it is empty (idle connections). */
void sy_tls_in_trim(sy_tls *t);
/* 1 when ciphertext or decrypted plaintext waits inside the session. */
int sy_tls_has_input(const sy_tls *t);

/* Runs the handshake and decrypts: copies up to cap plaintext bytes into buf. Returns the count
 * (> 0), SY_EAGAIN (more ciphertext needed; output may have been produced), 0 once the peer
 * sent close_notify, or SY_EPROTO (handshake or record failure; *why is a static reason or the
 * library's; an alert may wait in the output). */
ssize_t sy_tls_read(sy_tls *t, char *buf, size_t cap, const char **why);

/* 1 once the handshake completed. */
int sy_tls_ready(const sy_tls *t);

/* Encrypts n plaintext bytes (the handshake must be done) into the output. Returns 0, or
 * SY_EPROTO when the session failed (an OpenSSL error, or no memory or room for the output);
 * the session is then unusable. */
int sy_tls_write(sy_tls *t, const void *p, size_t n);

/* Queues close_notify (once, after a completed handshake). */
void sy_tls_close_notify(sy_tls *t);

/* Bytes to send to the peer, in order: the caller consumes what the socket took. */
sy_buf *sy_tls_out(sy_tls *t);

/* After the handshake: the ALPN protocol chosen ("http/1.1", "h2") or "" when none; the server
 * name the client asked for (SNI) or NULL; "TLSv1.2" / "TLSv1.3". Borrowed, valid until
 * sy_tls_free. */
const char *sy_tls_alpn(const sy_tls *t);
const char *sy_tls_sni(const sy_tls *t);
const char *sy_tls_version(const sy_tls *t);

#endif
