/* TLS sessions without sockets: a client SSL over memory BIOs talks to sy_tls; handshakes fed
 * whole or one byte at a time, ALPN, SNI, version pinning, close_notify, garbage, and the
 * certificate loading errors. The certificate is made here, at run time. */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "test.h"
#include "tls.h"

static char dir[64], cert_path[128], key_path[128], other_key_path[128];

static EVP_PKEY *write_key(const char *path)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    FILE *f = fopen(path, "w");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    return k;
}

static void make_cert(void)
{
    snprintf(dir, sizeof dir, "/tmp/sy-test-tls.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
    snprintf(other_key_path, sizeof other_key_path, "%s/other.pem", dir);
    EVP_PKEY *k = write_key(key_path);
    EVP_PKEY_free(write_key(other_key_path));
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    X509_sign(x, k, EVP_sha256());
    FILE *f = fopen(cert_path, "w");
    PEM_write_X509(f, x);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

typedef struct client {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out; /* in: bytes from the server; out: bytes for the server */
} client;

static void client_new(client *c, int max_version, const char *alpn, size_t alpn_len,
                       const char *sni)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    if (max_version)
        SSL_CTX_set_max_proto_version(c->ctx, max_version);
    c->ssl = SSL_new(c->ctx);
    c->in = BIO_new(BIO_s_mem());
    c->out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c->in, -1); /* empty means "wait", not EOF */
    SSL_set_bio(c->ssl, c->in, c->out);
    if (alpn)
        SSL_set_alpn_protos(c->ssl, (const unsigned char *)alpn, (unsigned)alpn_len);
    if (sni)
        SSL_set_tlsext_host_name(c->ssl, sni);
    SSL_set_connect_state(c->ssl);
}

static void client_free(client *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
}

/* Moves client output into the server, step bytes at a time (0: all at once). */
static void to_server(client *c, sy_tls *t, size_t step)
{
    char buf[65536];
    int n;
    while ((n = BIO_read(c->out, buf, sizeof buf)) > 0) {
        size_t off = 0;
        while (off < (size_t)n) {
            size_t k = step && step < (size_t)n - off ? step : (size_t)n - off;
            char *span;
            if (sy_tls_in_reserve(t, k, &span) != 0)
                return;
            memcpy(span, buf + off, k);
            sy_tls_in_commit(t, k);
            off += k;
            char plain[256];
            const char *why;
            ssize_t r = sy_tls_read(t, plain, sizeof plain, &why);
            (void)r; /* the caller checks the state afterwards */
        }
    }
}

static void to_client(client *c, sy_tls *t)
{
    sy_buf *o = sy_tls_out(t);
    if (sy_buf_len(o)) {
        BIO_write(c->in, sy_buf_data(o), (int)sy_buf_len(o));
        sy_buf_consume(o, sy_buf_len(o));
    }
}

/* Runs the handshake; returns 1 when both sides completed it. */
static int handshake(client *c, sy_tls *t, size_t step)
{
    for (int round = 0; round < 20; round++) {
        int r = SSL_do_handshake(c->ssl);
        int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r); /* before the BIOs change */
        to_server(c, t, step);
        to_client(c, t);
        if (r == 1 && sy_tls_ready(t))
            return 1;
        if (r != 1 && e != SSL_ERROR_WANT_READ)
            return 0;
    }
    return 0;
}

static void test_handshake(sy_tls_ctx *ctx, size_t step, int offer_h2)
{
    client c;
    client_new(&c, 0, "\x02h2\x08http/1.1", 12, "example.test");
    sy_tls *t = sy_tls_new(ctx, 12);
    CHECK(t != NULL);
    CHECK(!sy_tls_ready(t));
    CHECK_MSG(handshake(&c, t, step), "step %zu", step);
    CHECK(strcmp(sy_tls_alpn(t), offer_h2 ? "h2" : "http/1.1") == 0);
    CHECK(sy_tls_sni(t) && strcmp(sy_tls_sni(t), "example.test") == 0);
    CHECK(strcmp(sy_tls_version(t), "TLSv1.3") == 0);

    /* Client to server, then server to client. */
    CHECK(SSL_write(c.ssl, "GET / HTTP/1.1\r\n\r\n", 18) == 18);
    int n;
    char buf[4096];
    while ((n = BIO_read(c.out, buf, sizeof buf)) > 0) {
        char *span;
        CHECK(sy_tls_in_reserve(t, (size_t)n, &span) == 0);
        memcpy(span, buf, (size_t)n);
        sy_tls_in_commit(t, (size_t)n);
    }
    CHECK(sy_tls_has_input(t));
    char plain[64];
    const char *why = NULL;
    ssize_t r = sy_tls_read(t, plain, sizeof plain, &why);
    CHECK(r == 18 && memcmp(plain, "GET / HTTP/1.1\r\n\r\n", 18) == 0);
    CHECK(sy_tls_read(t, plain, sizeof plain, &why) == SY_EAGAIN);
    CHECK(sy_tls_write(t, "HTTP/1.1 200 OK\r\n\r\n", 19) == 0);
    to_client(&c, t);
    n = SSL_read(c.ssl, buf, sizeof buf);
    CHECK(n == 19 && memcmp(buf, "HTTP/1.1 200 OK\r\n\r\n", 19) == 0);

    /* close_notify both ways. */
    sy_tls_close_notify(t);
    sy_tls_close_notify(t); /* once only */
    to_client(&c, t);
    CHECK(SSL_read(c.ssl, buf, sizeof buf) <= 0 &&
          SSL_get_error(c.ssl, -1) == SSL_ERROR_ZERO_RETURN);
    SSL_shutdown(c.ssl);
    to_server(&c, t, 0);
    CHECK(sy_tls_read(t, plain, sizeof plain, &why) == 0);
    sy_tls_free(t);
    client_free(&c);
}

static void test_tls12_cipher(sy_tls_ctx *ctx)
{
    client c;
    client_new(&c, TLS1_2_VERSION, NULL, 0, NULL);
    sy_tls *t = sy_tls_new(ctx, 12);
    CHECK(handshake(&c, t, 0));
    CHECK(strcmp(sy_tls_version(t), "TLSv1.2") == 0);
    const char *cipher = SSL_get_cipher_name(c.ssl);
    CHECK_MSG(strncmp(cipher, "ECDHE-", 6) == 0 &&
                  (strstr(cipher, "GCM") || strstr(cipher, "CHACHA20")),
              "%s", cipher);
    CHECK(strcmp(sy_tls_alpn(t), "") == 0); /* none asked */
    CHECK(sy_tls_sni(t) == NULL);
    sy_tls_free(t);
    client_free(&c);

    /* A TLS 1.3 pin refuses a TLS 1.2 client. */
    client_new(&c, TLS1_2_VERSION, NULL, 0, NULL);
    t = sy_tls_new(ctx, 13);
    CHECK(!handshake(&c, t, 0));
    char plain[16];
    const char *why = NULL;
    CHECK(sy_tls_read(t, plain, sizeof plain, &why) == SY_EPROTO && why);
    sy_tls_free(t);
    client_free(&c);
}

static void test_garbage(sy_tls_ctx *ctx)
{
    static const sy_str inputs[] = {
        SY_STR("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        SY_STR("\x16\x03\x01\x00\x04\x01\x00\x00\x00"),            /* an empty ClientHello */
        SY_STR("\x15\x03\x03\x00\x02\x02\x28 and then some more"), /* an alert first */
    };
    for (size_t i = 0; i < SY_COUNTOF(inputs); i++) {
        sy_tls *t = sy_tls_new(ctx, 12);
        size_t n = inputs[i].len;
        char *span;
        CHECK(sy_tls_in_reserve(t, n, &span) == 0);
        memcpy(span, inputs[i].p, n);
        sy_tls_in_commit(t, n);
        char plain[64];
        const char *why = NULL;
        ssize_t r = sy_tls_read(t, plain, sizeof plain, &why);
        CHECK_MSG(r == SY_EPROTO && why && *why, "input %zu: %zd", i, r);
        CHECK(sy_tls_read(t, plain, sizeof plain, &why) == SY_EPROTO); /* stays failed */
        CHECK(sy_tls_write(t, "x", 1) == SY_EPROTO);
        sy_tls_free(t);
    }
}

static void test_ctx_errors(void)
{
    char err[512];
    sy_tls_ctx *ctx = (sy_tls_ctx *)1;
    CHECK(sy_tls_ctx_new("/nonexistent/cert.pem", key_path, 0, &ctx, err, sizeof err) == SY_EINVAL);
    CHECK(ctx == NULL);
    CHECK_MSG(strstr(err, "cannot read the certificate /nonexistent/cert.pem"), "%s", err);
    CHECK(sy_tls_ctx_new(cert_path, "/nonexistent/key.pem", 0, &ctx, err, sizeof err) == SY_EINVAL);
    CHECK_MSG(strstr(err, "cannot read the private key"), "%s", err);
    CHECK(sy_tls_ctx_new(key_path, key_path, 0, &ctx, err, sizeof err) == SY_EINVAL);
    CHECK_MSG(strstr(err, "cannot load the certificate from"), "%s", err);
    CHECK(sy_tls_ctx_new(cert_path, cert_path, 0, &ctx, err, sizeof err) == SY_EINVAL);
    CHECK_MSG(strstr(err, "cannot load the private key from"), "%s", err);
    CHECK(sy_tls_ctx_new(cert_path, other_key_path, 0, &ctx, err, sizeof err) == SY_EINVAL);
    CHECK_MSG(strstr(err, "does not match"), "%s", err);
    CHECK(!strstr(err, "BEGIN"));
}

int main(void)
{
    make_cert();
    char err[512];
    sy_tls_ctx *ctx = NULL, *ctx_h2 = NULL;
    CHECK(sy_tls_ctx_new(cert_path, key_path, 0, &ctx, err, sizeof err) == 0);
    CHECK(sy_tls_ctx_new(cert_path, key_path, 1, &ctx_h2, err, sizeof err) == 0);
    if (ctx && ctx_h2) {
        test_handshake(ctx, 0, 0);
        test_handshake(ctx_h2, 0, 1);
        /* Any split of the input gives the same result. */
        size_t steps[] = {1, 2, 3, 7, 100, 1000};
        for (size_t i = 0; i < SY_COUNTOF(steps); i++)
            test_handshake(ctx, steps[i], 0);
        test_tls12_cipher(ctx);
        test_garbage(ctx);
    }
    test_ctx_errors();
    sy_tls_ctx_free(ctx);
    sy_tls_ctx_free(ctx_h2);
    unlink(cert_path);
    unlink(key_path);
    unlink(other_key_path);
    rmdir(dir);
    return t_summary("test_tls");
}
