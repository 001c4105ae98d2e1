/* switchyard.crypto: digests, HMAC, base64, random bytes, constant-time compare and JWS
 * signatures (RS/PS/ES), all done by OpenSSL's libcrypto; this file only binds them to Lua. */
#include "lua_crypto.h"

#include <limits.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "sy_base.h"

/* Built as the loadable module (switchyard/crypto.so) the opener is its one export; built
 * into the server it stays hidden, like everything else not in switchyard.h. */
#ifdef SY_CRYPTO_MODULE
#define CRYPTO_EXPORT __attribute__((visibility("default")))
#else
#define CRYPTO_EXPORT
#endif

#define JOB_MT "switchyard.crypto.Job"
#define RANDOM_MAX (1 << 20)

/* ---- digests and HMAC ---------------------------------------------------------------------- */

static const EVP_MD *check_md(lua_State *L, int arg)
{
    const char *name = luaL_checkstring(L, arg);
    const EVP_MD *md = EVP_get_digestbyname(name);
    if (!md)
        luaL_argerror(L, arg, lua_pushfstring(L, "unknown digest '%s'", name));
    return md;
}

static int push_digest(lua_State *L, const EVP_MD *md, int arg)
{
    size_t n;
    const char *data = luaL_checklstring(L, arg, &n);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_Digest(data, n, out, &len, md, NULL)) {
        ERR_clear_error();
        return luaL_error(L, "digest failed");
    }
    lua_pushlstring(L, (const char *)out, len);
    return 1;
}

/* crypto.digest(name, data): the raw digest; name is OpenSSL's ("sha256", "sha3-256", ...). */
static int l_digest(lua_State *L)
{
    return push_digest(L, check_md(L, 1), 2);
}

static int l_sha1(lua_State *L)
{
    return push_digest(L, EVP_sha1(), 1);
}

static int l_sha256(lua_State *L)
{
    return push_digest(L, EVP_sha256(), 1);
}

static int l_sha384(lua_State *L)
{
    return push_digest(L, EVP_sha384(), 1);
}

static int l_sha512(lua_State *L)
{
    return push_digest(L, EVP_sha512(), 1);
}

/* crypto.hmac(digest, key, data): the raw MAC. */
static int l_hmac(lua_State *L)
{
    const EVP_MD *md = check_md(L, 1);
    size_t klen, n;
    const char *key = luaL_checklstring(L, 2, &klen);
    const char *data = luaL_checklstring(L, 3, &n);
    luaL_argcheck(L, klen <= INT_MAX, 2, "key too long");
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC(md, key, (int)klen, (const unsigned char *)data, n, out, &len)) {
        ERR_clear_error();
        return luaL_error(L, "hmac failed");
    }
    lua_pushlstring(L, (const char *)out, len);
    return 1;
}

/* ---- base64 (RFC 4648 4 and 5) ------------------------------------------------------------- */

/* Input bytes per EVP_EncodeBlock call: a multiple of 3, so only the last call pads. */
#define ENC_CHUNK (3 * 4096)
/* Input characters per EVP_DecodeBlock call: a multiple of 4. */
#define DEC_CHUNK (4 * 1024)

static int encode(lua_State *L, int url)
{
    size_t n;
    const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    while (n > 0) {
        int take = n < ENC_CHUNK ? (int)n : ENC_CHUNK;
        char *out = luaL_prepbuffsize(&b, (size_t)take / 3 * 4 + 5);
        int len = EVP_EncodeBlock((unsigned char *)out, p, take);
        if (url) {
            while (len > 0 && out[len - 1] == '=')
                len--;
            for (int i = 0; i < len; i++) {
                if (out[i] == '+')
                    out[i] = '-';
                else if (out[i] == '/')
                    out[i] = '_';
            }
        }
        luaL_addsize(&b, (size_t)len);
        p += take;
        n -= (size_t)take;
    }
    luaL_pushresult(&b);
    return 1;
}

static int l_base64_encode(lua_State *L)
{
    return encode(L, 0);
}

static int l_base64url_encode(lua_State *L)
{
    return encode(L, 1);
}

/* Checks s[0..n) strictly: the alphabet only, padding only at the end and only as much as the
 * last group needs (required for base64, optional for base64url), and zero bits after the last
 * whole byte (the one canonical encoding). Sets *data to the count of characters before the
 * padding. Returns NULL or a static reason. */
static const char *b64_check(const unsigned char *s, size_t n, int url, size_t *data)
{
    size_t d = n;
    while (d > 0 && s[d - 1] == '=' && n - d < 2)
        d--;
    size_t pad = n - d;
    if (pad > 0 || !url) {
        if (n % 4 != 0)
            return "bad base64 length or padding";
        if (pad > 0 && d % 4 + pad != 4)
            return "bad base64 padding";
    }
    if (d % 4 == 1)
        return "bad base64 length";
    for (size_t i = 0; i < d; i++) {
        if (sy_base64_value(s[i], url) < 0)
            return "bad base64 character";
    }
    if (d % 4 == 2 && (sy_base64_value(s[d - 1], url) & 0x0f))
        return "non-canonical base64";
    if (d % 4 == 3 && (sy_base64_value(s[d - 1], url) & 0x03))
        return "non-canonical base64";
    *data = d;
    return NULL;
}

/* Decodes: the bytes, or nil and a reason for input that is not strictly base64. */
static int decode(lua_State *L, int url)
{
    size_t n, d = 0;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    const char *why = b64_check(s, n, url, &d);
    if (why) {
        luaL_pushfail(L);
        lua_pushstring(L, why);
        return 2;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    unsigned char in[DEC_CHUNK];
    for (size_t at = 0; at < d; at += DEC_CHUNK) {
        size_t take = d - at < DEC_CHUNK ? d - at : DEC_CHUNK, len = take;
        for (size_t i = 0; i < take; i++) {
            unsigned char c = s[at + i];
            in[i] = c == '-' ? '+' : c == '_' ? '/' : c;
        }
        /* The last group, when short, is completed with 'A' (zero bits: checked above), and
         * the bytes those add are dropped. */
        size_t extra = 0;
        while (len % 4 != 0) {
            in[len++] = 'A';
            extra++;
        }
        char *out = luaL_prepbuffsize(&b, len / 4 * 3);
        int got = EVP_DecodeBlock((unsigned char *)out, in, (int)len);
        if (got < 0 || (size_t)got != len / 4 * 3) {
            ERR_clear_error();
            return luaL_error(L, "base64 decoder failed on checked input");
        }
        luaL_addsize(&b, (size_t)got - extra);
    }
    luaL_pushresult(&b);
    return 1;
}

static int l_base64_decode(lua_State *L)
{
    return decode(L, 0);
}

static int l_base64url_decode(lua_State *L)
{
    return decode(L, 1);
}

/* ---- random bytes, comparison ------------------------------------------------------------- */

/* crypto.random(n): n bytes (0..1 MiB) from OpenSSL's CSPRNG; nil, reason if it fails. */
static int l_random(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= RANDOM_MAX, 1, "must be 0..1048576");
    luaL_Buffer b;
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
    if (n > 0 && RAND_bytes(p, (int)n) != 1) {
        ERR_clear_error();
        luaL_pushfail(L);
        lua_pushliteral(L, "random generator failed");
        return 2;
    }
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

/* crypto.equal(a, b): true when the strings are equal, in a time that depends on their length
 * only (strings of different lengths answer false at once). */
static int l_equal(lua_State *L)
{
    size_t na, nb;
    const char *a = luaL_checklstring(L, 1, &na);
    const char *b = luaL_checklstring(L, 2, &nb);
    lua_pushboolean(L, na == nb && CRYPTO_memcmp(a, b, na) == 0);
    return 1;
}

/* ---- keys and signatures ------------------------------------------------------------------- */

/* What an operation holds while OpenSSL works: parked in a userdata with __gc before anything
 * is acquired, so a Lua error (out of memory while pushing the result) leaks nothing. */
typedef struct job {
    EVP_PKEY *pkey;     /* owned */
    EVP_MD_CTX *ctx;    /* owned */
    unsigned char *der; /* owned (OPENSSL_free): an ECDSA signature in DER */
    unsigned char *sig; /* owned (OPENSSL_free): a signature being made */
} job;

static void job_release(job *j)
{
    EVP_PKEY_free(j->pkey);
    EVP_MD_CTX_free(j->ctx);
    OPENSSL_free(j->der);
    OPENSSL_free(j->sig);
    memset(j, 0, sizeof *j);
    ERR_clear_error(); /* leave the thread's error queue clean for the TLS code */
}

static int job_gc(lua_State *L)
{
    job_release(luaL_checkudata(L, 1, JOB_MT));
    return 0;
}

static job *new_job(lua_State *L)
{
    job *j = lua_newuserdatauv(L, sizeof *j, 0);
    memset(j, 0, sizeof *j);
    luaL_setmetatable(L, JOB_MT);
    return j;
}

/* PEM callbacks get no password: an encrypted key fails instead of prompting on a terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* Reads a key from PEM text: a private key when private, else a public key, a certificate's
 * key or (its public half) a private key. Returns the key (caller frees with EVP_PKEY_free)
 * or NULL. */
static EVP_PKEY *load_key(const char *pem, size_t n, int private)
{
    EVP_PKEY *k = NULL;
    for (int form = private ? 2 : 0; !k && form < 3; form++) {
        BIO *bio = BIO_new_mem_buf(pem, (int)n);
        if (!bio)
            break;
        if (form == 0) {
            k = PEM_read_bio_PUBKEY(bio, NULL, no_password, NULL);
        } else if (form == 1) {
            X509 *x = PEM_read_bio_X509(bio, NULL, no_password, NULL);
            if (x) {
                k = X509_get_pubkey(x);
                X509_free(x);
            }
        } else {
            k = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
        }
        BIO_free(bio);
    }
    ERR_clear_error();
    return k;
}

/* The NID of an EC key's curve, or NID_undef. */
static int ec_curve(EVP_PKEY *k)
{
    char name[64];
    size_t len = 0;
    if (!EVP_PKEY_get_group_name(k, name, sizeof name, &len))
        return NID_undef;
    int nid = OBJ_sn2nid(name);
    if (nid == NID_undef)
        nid = EC_curve_nist2nid(name);
    return nid;
}

/* crypto.key_type(pem): "rsa", "ec", or OpenSSL's name of another kind, and the key's size in
 * bits (the curve's for EC); nil, reason for text that holds no key. */
static int l_key_type(lua_State *L)
{
    size_t n;
    const char *pem = luaL_checklstring(L, 1, &n);
    luaL_argcheck(L, n <= INT_MAX, 1, "too long");
    job *j = new_job(L);
    j->pkey = load_key(pem, n, 0);
    if (!j->pkey) {
        luaL_pushfail(L);
        lua_pushliteral(L, "no PEM key or certificate");
        return 2;
    }
    if (EVP_PKEY_is_a(j->pkey, "RSA") || EVP_PKEY_is_a(j->pkey, "RSA-PSS")) {
        lua_pushliteral(L, "rsa");
    } else if (EVP_PKEY_is_a(j->pkey, "EC")) {
        lua_pushliteral(L, "ec");
    } else {
        /* Another kind, by OpenSSL's name in lower case: "ed25519", "x25519", ... */
        const char *t = EVP_PKEY_get0_type_name(j->pkey);
        char name[32];
        size_t i = 0;
        for (; t && t[i] && i < sizeof name; i++)
            name[i] = (char)(t[i] >= 'A' && t[i] <= 'Z' ? t[i] + 32 : t[i]);
        lua_pushlstring(L, name, i);
    }
    lua_pushinteger(L, EVP_PKEY_get_bits(j->pkey));
    job_release(j);
    return 2;
}

/* The JWS algorithms of RFC 7518 3.3-3.5 that take a key pair. */
static const struct jws_alg {
    const char *name;
    const char *md;
    int kind;  /* 'R' RSASSA-PKCS1-v1_5, 'P' RSASSA-PSS, 'E' ECDSA */
    int curve; /* ECDSA: the curve's NID */
    int half;  /* ECDSA: bytes of r and of s in the JWS form r || s */
} jws_algs[] = {
    {"RS256", "SHA256", 'R', 0, 0},
    {"RS384", "SHA384", 'R', 0, 0},
    {"RS512", "SHA512", 'R', 0, 0},
    {"PS256", "SHA256", 'P', 0, 0},
    {"PS384", "SHA384", 'P', 0, 0},
    {"PS512", "SHA512", 'P', 0, 0},
    {"ES256", "SHA256", 'E', NID_X9_62_prime256v1, 32},
    {"ES384", "SHA384", 'E', NID_secp384r1, 48},
    {"ES512", "SHA512", 'E', NID_secp521r1, 66},
};

static const struct jws_alg *check_alg(lua_State *L, int arg)
{
    const char *name = luaL_checkstring(L, arg);
    for (size_t i = 0; i < sizeof jws_algs / sizeof jws_algs[0]; i++) {
        if (strcmp(jws_algs[i].name, name) == 0)
            return &jws_algs[i];
    }
    luaL_argerror(L, arg,
                  lua_pushfstring(L,
                                  "unknown signature algorithm '%s' (RS256, RS384, RS512, "
                                  "PS256, PS384, PS512, ES256, ES384, ES512)",
                                  name));
    return NULL;
}

/* NULL when key k fits alg (RFC 7518: RSA keys of 2048 bits or more; ECDSA on the named
 * curve), else a static reason. */
static const char *key_fits(const struct jws_alg *alg, EVP_PKEY *k)
{
    if (alg->kind == 'E') {
        if (!EVP_PKEY_is_a(k, "EC"))
            return "ES algorithms need an EC key";
        if (ec_curve(k) != alg->curve) {
            switch (alg->curve) {
            case NID_X9_62_prime256v1: return "ES256 needs a P-256 key";
            case NID_secp384r1: return "ES384 needs a P-384 key";
            default: return "ES512 needs a P-521 key";
            }
        }
        return NULL;
    }
    if (!EVP_PKEY_is_a(k, "RSA") && !(alg->kind == 'P' && EVP_PKEY_is_a(k, "RSA-PSS")))
        return alg->kind == 'P' ? "PS algorithms need an RSA key" : "RS algorithms need an RSA key";
    if (EVP_PKEY_get_bits(k) < 2048)
        return "RSA keys must have 2048 bits or more";
    return NULL;
}

/* Sets up j->ctx for signing (sign) or verifying with j->pkey. Returns 0 or -1. */
static int start(job *j, const struct jws_alg *alg, int sign)
{
    EVP_PKEY_CTX *pctx = NULL;
    j->ctx = EVP_MD_CTX_new();
    if (!j->ctx)
        return -1;
    const EVP_MD *md = EVP_get_digestbyname(alg->md);
    int ok = sign ? EVP_DigestSignInit(j->ctx, &pctx, md, NULL, j->pkey)
                  : EVP_DigestVerifyInit(j->ctx, &pctx, md, NULL, j->pkey);
    if (ok != 1)
        return -1;
    /* RFC 7518 3.5: PSS with MGF1 on the same hash, salt as long as the hash. */
    if (alg->kind == 'P' && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
                             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0 ||
                             EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) <= 0))
        return -1;
    return 0;
}

/* RFC 7518 3.4: a JWS ECDSA signature is r || s, each of half bytes; OpenSSL reads DER.
 * Stores the DER form in j->der. Returns its length, or -1. */
static int raw_to_der(job *j, const unsigned char *sig, int half)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, half, NULL), *s = BN_bin2bn(sig + half, half, NULL);
    int len = -1;
    if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* owned by es now */
        len = i2d_ECDSA_SIG(es, &j->der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return len;
}

/* The other way: DER at der[0..n) to r || s in out (2 * half bytes). Returns 0 or -1. */
static int der_to_raw(const unsigned char *der, long n, unsigned char *out, int half)
{
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &der, n);
    if (!es)
        return -1;
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(es, &r, &s);
    int ok = BN_bn2binpad(r, out, half) == half && BN_bn2binpad(s, out + half, half) == half;
    ECDSA_SIG_free(es);
    return ok ? 0 : -1;
}

/* crypto.verify(alg, pem, data, sig): true when sig (JWS form: r || s for ES) is alg's
 * signature of data under the public key, certificate or private key in pem; false when it is
 * not; nil, reason when pem holds no key or a key that does not fit alg. */
static int l_verify(lua_State *L)
{
    const struct jws_alg *alg = check_alg(L, 1);
    size_t kn, n, sn;
    const char *pem = luaL_checklstring(L, 2, &kn);
    const char *data = luaL_checklstring(L, 3, &n);
    const unsigned char *sig = (const unsigned char *)luaL_checklstring(L, 4, &sn);
    luaL_argcheck(L, kn <= INT_MAX, 2, "too long");
    job *j = new_job(L);
    j->pkey = load_key(pem, kn, 0);
    const char *why = j->pkey ? key_fits(alg, j->pkey) : "no PEM key or certificate";
    if (why) {
        job_release(j);
        luaL_pushfail(L);
        lua_pushstring(L, why);
        return 2;
    }
    int good = 0;
    if (alg->kind == 'E') {
        int len = sn == (size_t)alg->half * 2 ? raw_to_der(j, sig, alg->half) : -1;
        good = len > 0 && start(j, alg, 0) == 0 &&
               EVP_DigestVerify(j->ctx, j->der, (size_t)len, (const unsigned char *)data, n) == 1;
    } else {
        good = start(j, alg, 0) == 0 &&
               EVP_DigestVerify(j->ctx, sig, sn, (const unsigned char *)data, n) == 1;
    }
    job_release(j);
    lua_pushboolean(L, good);
    return 1;
}

/* crypto.sign(alg, pem, data): alg's signature of data (JWS form) with the private key in pem;
 * nil, reason when pem holds no private key, a key that does not fit alg, or signing fails. */
static int l_sign(lua_State *L)
{
    const struct jws_alg *alg = check_alg(L, 1);
    size_t kn, n;
    const char *pem = luaL_checklstring(L, 2, &kn);
    const char *data = luaL_checklstring(L, 3, &n);
    luaL_argcheck(L, kn <= INT_MAX, 2, "too long");
    job *j = new_job(L);
    j->pkey = load_key(pem, kn, 1);
    const char *why = j->pkey ? key_fits(alg, j->pkey) : "no PEM private key";
    size_t len = 0;
    if (!why && (start(j, alg, 1) != 0 ||
                 EVP_DigestSign(j->ctx, NULL, &len, (const unsigned char *)data, n) != 1 ||
                 !(j->sig = OPENSSL_malloc(len)) ||
                 EVP_DigestSign(j->ctx, j->sig, &len, (const unsigned char *)data, n) != 1))
        why = "signing failed";
    unsigned char raw[2 * 66];
    if (!why && alg->kind == 'E' && der_to_raw(j->sig, (long)len, raw, alg->half) != 0)
        why = "signing failed";
    if (why) {
        job_release(j);
        luaL_pushfail(L);
        lua_pushstring(L, why);
        return 2;
    }
    if (alg->kind == 'E')
        lua_pushlstring(L, (const char *)raw, (size_t)alg->half * 2);
    else
        lua_pushlstring(L, (const char *)j->sig, len);
    job_release(j);
    return 1;
}

static const luaL_Reg crypto_fns[] = {
    {"digest", l_digest},
    {"sha1", l_sha1},
    {"sha256", l_sha256},
    {"sha384", l_sha384},
    {"sha512", l_sha512},
    {"hmac", l_hmac},
    {"base64_encode", l_base64_encode},
    {"base64_decode", l_base64_decode},
    {"base64url_encode", l_base64url_encode},
    {"base64url_decode", l_base64url_decode},
    {"random", l_random},
    {"equal", l_equal},
    {"key_type", l_key_type},
    {"verify", l_verify},
    {"sign", l_sign},
    {NULL, NULL},
};

CRYPTO_EXPORT int luaopen_switchyard_crypto(lua_State *L)
{
    luaL_newlib(L, crypto_fns); /* [..., module] */
    if (luaL_newmetatable(L, JOB_MT)) {
        lua_pushcfunction(L, job_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    return 1;
}
