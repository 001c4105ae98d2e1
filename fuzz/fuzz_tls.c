/* libFuzzer target for tls: arbitrary bytes as a client's side of a handshake, fed in two pieces
 * split where the first byte says. The session fails cleanly or waits; it never completes a
 * handshake nobody could have keyed, and a failed session stays failed. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sy_tls_ctx *ctx;

static void check(int cond)
{
    if (!cond)
        abort();
}

/* A throw-away certificate for the process, written to a temp dir and removed again. */
static void setup(void)
{
    char dir[] = "/tmp/sy-fuzz-tls.XXXXXX", cert[64], key[64], err[256];
    check(mkdtemp(dir) != NULL);
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_sign(x, k, EVP_sha256());
    FILE *f = fopen(key, "w");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    f = fopen(cert, "w");
    PEM_write_X509(f, x);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
    check(sy_tls_ctx_new(cert, key, 1, &ctx, err, sizeof err) == 0);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

static ssize_t feed(sy_tls *t, const uint8_t *p, size_t n)
{
    char *span;
    if (n && sy_tls_in_reserve(t, n, &span) == 0) {
        memcpy(span, p, n);
        sy_tls_in_commit(t, n);
    }
    char plain[4096];
    const char *why = NULL;
    ssize_t r;
    while ((r = sy_tls_read(t, plain, sizeof plain, &why)) > 0)
        ;
    check(r == SY_EAGAIN || r == SY_EPROTO || r == 0);
    if (r == SY_EPROTO)
        check(why && *why);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx)
        setup();
    if (size == 0)
        return 0;
    size_t split = 1 + (size_t)data[0] * (size - 1) / 255;
    sy_tls *t = sy_tls_new(ctx, data[0] & 1 ? 13 : 12);
    check(t != NULL);
    ssize_t r = feed(t, data + 1, split - 1);
    if (r != SY_EPROTO)
        r = feed(t, data + split, size - split);
    check(!sy_tls_ready(t));
    if (r == SY_EPROTO) {
        check(feed(t, NULL, 0) == SY_EPROTO);
        check(sy_tls_write(t, "x", 1) == SY_EPROTO);
    }
    sy_tls_free(t);
    return 0;
}
