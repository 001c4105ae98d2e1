/* TLS on OpenSSL 3 over a BIO of our own that reads and writes two byte buffers: no sockets. */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Ciphertext buffered per direction: a few records. Output may hold one direct write (see
 * conn.c) plus the records of a flush. */
#define IN_LIMIT (4 * 18432)
#define OUT_LIMIT (1024 * 1024)

struct sy_tls_ctx {
    SSL_CTX *ssl;    /* owned (one reference per connection besides) */
    BIO_METHOD *bio; /* owned; the buffers BIO below */
    int refs;        /* the creator's reference plus one per session made from it */
    int offer_h2;
};

struct sy_tls {
    SSL *ssl;        /* owned */
    sy_tls_ctx *ctx; /* one reference, dropped by sy_tls_free */
    sy_buf in;       /* ciphertext from the peer, not yet read by OpenSSL */
    sy_buf out;      /* bytes for the peer */
    unsigned ready : 1;
    unsigned closed_notify : 1;
    unsigned failed : 1;
    unsigned no_h2 : 1;  /* ALPN must not choose "h2" (an in-place upgrade stays HTTP/1.1) */
    unsigned client : 1; /* made by sy_tls_client_new */
};

/* ---- the BIO: OpenSSL reads t->in and appends to t->out ------------------------------------ */

static int bio_write(BIO *b, const char *p, int n)
{
    sy_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    if (sy_buf_append(&t->out, p, (size_t)n) != 0)
        return -1; /* the peer does not read and we are far past every bound: fail */
    return n;
}

static int bio_read(BIO *b, char *p, int n)
{
    sy_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t have = sy_buf_len(&t->in);
    if (have == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t k = (size_t)n < have ? (size_t)n : have;
    memcpy(p, sy_buf_data(&t->in), k);
    sy_buf_consume(&t->in, k);
    return (int)k;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_PENDING:
    case BIO_CTRL_WPENDING: return 0;
    default: return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* ---- context --------------------------------------------------------------------------------- */

/* A context for method with our buffers BIO, one reference held by the caller; NULL when out
 * of memory. */
static sy_tls_ctx *ctx_alloc(const SSL_METHOD *method)
{
    sy_tls_ctx *ctx = sy_calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->refs = 1;
    ERR_clear_error();
    ctx->ssl = SSL_CTX_new(method);
    if (!ctx->ssl)
        goto fail_ctx;
    ctx->bio = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "switchyard buffers");
    if (!ctx->bio)
        goto fail_ssl;
    BIO_meth_set_write(ctx->bio, bio_write);
    BIO_meth_set_read(ctx->bio, bio_read);
    BIO_meth_set_ctrl(ctx->bio, bio_ctrl);
    BIO_meth_set_create(ctx->bio, bio_create);
    return ctx;

fail_ssl:
    SSL_CTX_free(ctx->ssl);
fail_ctx:
    ERR_clear_error();
    sy_free(ctx);
    return NULL;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    const sy_tls_ctx *ctx = arg;
    const sy_tls *t = SSL_get_app_data(ssl);
    /* Our preference decides (h2 first when we speak it); the client's list is only a set. */
    static const char *const prefs[] = {"h2", "http/1.1"};
    for (size_t k = ctx->offer_h2 && !(t && t->no_h2) ? 0 : 1; k < SY_COUNTOF(prefs); k++) {
        size_t plen = strlen(prefs[k]);
        for (unsigned int i = 0; i < inlen;) {
            unsigned int l = in[i];
            if (i + 1 + l > inlen)
                break;
            if (l == plen && memcmp(in + i + 1, prefs[k], plen) == 0) {
                *out = in + i + 1;
                *outlen = (unsigned char)l;
                return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + l;
        }
    }
    /* Nothing we speak: go on without ALPN (RFC 7301 allows it) and serve HTTP/1.1. */
    return SSL_TLSEXT_ERR_NOACK;
}

/* SNI: any name is welcome (one certificate serves all). Acknowledging it also keeps the name
 * in the session, so a resumed session still reports it. */
static int servername_ok(SSL *ssl, int *alert, void *arg)
{
    (void)ssl;
    (void)alert;
    (void)arg;
    return SSL_TLSEXT_ERR_OK;
}

static int fail_file(char *err, size_t cap, const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, cap, "cannot load the %s from %s: %s", what, file,
             reason ? reason : "unknown OpenSSL error");
    ERR_clear_error();
    return SY_EINVAL;
}

int sy_tls_ctx_new(const char *cert_file, const char *key_file, int offer_h2, sy_tls_ctx **out,
                   char *err, size_t errcap)
{
    *out = NULL;
    /* Readable at all? The system's reason reads better than OpenSSL's. */
    const char *files[2] = {cert_file, key_file};
    const char *whats[2] = {"certificate", "private key"};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(files[i], "rb");
        if (!f) {
            snprintf(err, errcap, "cannot read the %s %s: %s", whats[i], files[i], strerror(errno));
            return SY_EINVAL;
        }
        fclose(f);
    }
    sy_tls_ctx *ctx = ctx_alloc(TLS_server_method());
    if (!ctx)
        return SY_ENOMEM;
    ctx->offer_h2 = offer_h2;

    SSL_CTX *s = ctx->ssl;
    SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
    SSL_CTX_set_options(s, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* TLS 1.2: ECDHE key exchange and AEAD ciphers only (forward secrecy, no CBC). TLS 1.3 keeps
     * OpenSSL's suites (AES-GCM, ChaCha20-Poly1305). */
    if (!SSL_CTX_set_cipher_list(s, "ECDHE+AESGCM:ECDHE+CHACHA20"))
        goto fail_bio;
    /* Writes pass partly filled buffers; idle connections drop their record buffers. */
    SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char sid_ctx[] = "switchyard";
    SSL_CTX_set_session_id_context(s, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_alpn_select_cb(s, alpn_select, ctx);
    SSL_CTX_set_tlsext_servername_callback(s, servername_ok);

    if (SSL_CTX_use_certificate_chain_file(s, cert_file) != 1) {
        fail_file(err, errcap, "certificate", cert_file);
        goto fail_quiet;
    }
    if (SSL_CTX_use_PrivateKey_file(s, key_file, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(err, errcap, "the private key %s does not match the certificate %s", key_file,
                     cert_file);
        else
            fail_file(err, errcap, "private key", key_file);
        goto fail_quiet;
    }
    if (SSL_CTX_check_private_key(s) != 1) {
        snprintf(err, errcap, "the private key %s does not match the certificate %s", key_file,
                 cert_file);
        ERR_clear_error();
        goto fail_quiet;
    }
    *out = ctx;
    return 0;

fail_bio:
    snprintf(err, errcap, "cannot set up TLS");
fail_quiet:
    ERR_clear_error();
    sy_tls_ctx_free(ctx);
    return SY_EINVAL;
}

int sy_tls_client_ctx_new(const char *ca_file, int verify, sy_tls_ctx **out, char *err,
                          size_t errcap)
{
    *out = NULL;
    if (ca_file) {
        FILE *f = fopen(ca_file, "rb");
        if (!f) {
            snprintf(err, errcap, "cannot read the CA file %s: %s", ca_file, strerror(errno));
            return SY_EINVAL;
        }
        fclose(f);
    }
    sy_tls_ctx *ctx = ctx_alloc(TLS_client_method());
    if (!ctx)
        return SY_ENOMEM;
    SSL_CTX *s = ctx->ssl;
    SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
    SSL_CTX_set_options(s, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(s, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (verify) {
        int ok = ca_file ? SSL_CTX_load_verify_locations(s, ca_file, NULL)
                         : SSL_CTX_set_default_verify_paths(s);
        if (ok != 1) {
            if (ca_file)
                fail_file(err, errcap, "CA certificates", ca_file);
            else
                snprintf(err, errcap, "cannot load the system's CA certificates");
            ERR_clear_error();
            sy_tls_ctx_free(ctx);
            return SY_EINVAL;
        }
    }
    *out = ctx;
    return 0;
}

void sy_tls_ctx_free(sy_tls_ctx *ctx)
{
    if (!ctx || --ctx->refs > 0)
        return;
    BIO_meth_free(ctx->bio);
    SSL_CTX_free(ctx->ssl);
    sy_free(ctx);
}

/* ---- sessions -------------------------------------------------------------------------------- */

/* A session on ctx's buffers BIO, holding a reference to ctx; NULL when out of memory. */
static sy_tls *session_new(sy_tls_ctx *ctx)
{
    sy_tls *t = sy_calloc(1, sizeof *t);
    if (!t)
        return NULL;
    sy_buf_init(&t->in, IN_LIMIT);
    sy_buf_init(&t->out, OUT_LIMIT);
    t->ssl = SSL_new(ctx->ssl);
    if (!t->ssl)
        goto fail_tls;
    BIO *b = BIO_new(ctx->bio);
    if (!b)
        goto fail_ssl;
    BIO_set_data(b, t);
    SSL_set_bio(t->ssl, b, b); /* one reference, taken by the session */
    SSL_set_app_data(t->ssl, t);
    t->ctx = ctx;
    ctx->refs++;
    return t;

fail_ssl:
    SSL_free(t->ssl);
fail_tls:
    ERR_clear_error();
    sy_free(t);
    return NULL;
}

sy_tls *sy_tls_new(sy_tls_ctx *ctx, int min_version)
{
    sy_tls *t = session_new(ctx);
    if (!t)
        return NULL;
    if (min_version >= 13)
        SSL_set_min_proto_version(t->ssl, TLS1_3_VERSION);
    SSL_set_accept_state(t->ssl);
    return t;
}

sy_tls *sy_tls_client_new(sy_tls_ctx *ctx, const char *server_name)
{
    sy_tls *t = session_new(ctx);
    if (!t)
        return NULL;
    t->client = 1;
    if (server_name && *server_name) {
        /* An address (brackets allowed) is checked against the certificate's IP entries and
         * never sent as SNI (RFC 6066 3); a name is both. */
        char ip[INET6_ADDRSTRLEN + 2];
        size_t len = strlen(server_name);
        const char *name = server_name;
        if (len >= 2 && len < sizeof ip && server_name[0] == '[' && server_name[len - 1] == ']') {
            memcpy(ip, server_name + 1, len - 2);
            ip[len - 2] = '\0';
            name = ip;
        }
        unsigned char bin[16];
        int ok;
        if (inet_pton(AF_INET, name, bin) == 1 || inet_pton(AF_INET6, name, bin) == 1)
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name);
        else
            ok = SSL_set_tlsext_host_name(t->ssl, server_name) == 1 &&
                 SSL_set1_host(t->ssl, server_name) == 1;
        if (ok != 1) {
            sy_tls_free(t);
            return NULL;
        }
    }
    SSL_set_connect_state(t->ssl);
    return t;
}

void sy_tls_refuse_h2(sy_tls *t)
{
    t->no_h2 = 1;
}

void sy_tls_free(sy_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    sy_buf_dispose(&t->in);
    sy_buf_dispose(&t->out);
    sy_tls_ctx_free(t->ctx);
    sy_free(t);
}

int sy_tls_in_reserve(sy_tls *t, size_t n, char **span)
{
    return sy_buf_reserve(&t->in, n, span);
}

void sy_tls_in_commit(sy_tls *t, size_t n)
{
    sy_buf_commit(&t->in, n);
}

void sy_tls_in_trim(sy_tls *t)
{
    sy_buf_trim(&t->in, 0);
}

int sy_tls_has_input(const sy_tls *t)
{
    return sy_buf_len(&t->in) > 0 || (t->ready && SSL_pending(t->ssl) > 0);
}

static const char *last_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "TLS failure";
}

/* Why a handshake failed: for a client that verifies, the certificate check's own words
 * ("self-signed certificate", "hostname mismatch") when that was it. */
static const char *handshake_reason(const sy_tls *t)
{
    if (t->client && (SSL_get_verify_mode(t->ssl) & SSL_VERIFY_PEER)) {
        long v = SSL_get_verify_result(t->ssl);
        if (v != X509_V_OK) {
            ERR_clear_error();
            return X509_verify_cert_error_string(v);
        }
    }
    return last_reason();
}

ssize_t sy_tls_read(sy_tls *t, char *buf, size_t cap, const char **why)
{
    if (t->failed) {
        *why = "TLS session failed";
        return SY_EPROTO;
    }
    if (t->closed_notify)
        return 0;
    if (!t->ready) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return SY_EAGAIN;
            t->failed = 1;
            *why = handshake_reason(t);
            return SY_EPROTO;
        }
        t->ready = 1;
    }
    if (cap > INT32_MAX)
        cap = INT32_MAX;
    int r = SSL_read(t->ssl, buf, (int)cap);
    if (r > 0)
        return r;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return SY_EAGAIN;
    if (e == SSL_ERROR_ZERO_RETURN) {
        t->closed_notify = 1;
        ERR_clear_error();
        return 0;
    }
    t->failed = 1;
    *why = last_reason();
    return SY_EPROTO;
}

int sy_tls_ready(const sy_tls *t)
{
    return t->ready;
}

int sy_tls_write(sy_tls *t, const void *p, size_t n)
{
    if (!t->ready || t->failed)
        return SY_EPROTO;
    const char *c = p;
    while (n) {
        int k = n > INT32_MAX ? INT32_MAX : (int)n;
        int w = SSL_write(t->ssl, c, k);
        if (w <= 0) {
            t->failed = 1;
            ERR_clear_error();
            return SY_EPROTO;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

void sy_tls_close_notify(sy_tls *t)
{
    if (!t->ready || t->failed || (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN))
        return;
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

sy_buf *sy_tls_out(sy_tls *t)
{
    return &t->out;
}

const char *sy_tls_alpn(const sy_tls *t)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    if (!p || n == 0)
        return "";
    /* The selected name is one of ours: return our static copy (NUL-terminated). */
    if (n == 2 && memcmp(p, "h2", 2) == 0)
        return "h2";
    if (n == 8 && memcmp(p, "http/1.1", 8) == 0)
        return "http/1.1";
    return "";
}

const char *sy_tls_sni(const sy_tls *t)
{
    return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
}

const char *sy_tls_version(const sy_tls *t)
{
    return SSL_get_version(t->ssl);
}
