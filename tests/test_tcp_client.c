/* The outbound TCP client on a real loop against loopback servers the test runs in threads,
 * names from /etc/hosts or the test's DNS server (dns_stub.h): a byte exchange both ways with
 * backpressure and EOF, "localhost", the next address after a refusal, not found, refused, the
 * input bound, a connect timeout (a listener whose accept queue is full, a name server that
 * never answers, a TLS server that never answers), TLS with a certificate made here (verified
 * by the given CA, by address, refused without it or for another name, verify off, SNI as the
 * server saw it), and close at every stage with no callback afterwards. */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "dns_stub.h"
#include "tcp_client.h"
#include "test.h"

static struct ev_loop *loop;
static sy_resolver *resolver;
static dns_stub dns; /* the resolver's only name server (dns_stub.h) */

/* ---- what the callbacks saw ---------------------------------------------------------------- */

typedef struct rec {
    int connected, readable, drained, timeouts;
    char err[160];
    int free_in; /* 1: free the client in `connected`, 2: in `readable` */
    int done;    /* the step the test waits for happened */
    sy_tcp_client *c;
} rec;

static void cb_connected(sy_tcp_client *c, const char *err, void *ud)
{
    rec *r = ud;
    r->connected++;
    snprintf(r->err, sizeof r->err, "%s", err ? err : "");
    r->done = 1;
    if (r->free_in == 1) {
        sy_tcp_client_free(c);
        r->c = NULL;
    }
}

static void cb_readable(sy_tcp_client *c, void *ud)
{
    rec *r = ud;
    r->readable++;
    if (r->free_in == 2) {
        sy_tcp_client_free(c);
        r->c = NULL;
        r->done = 1;
        return;
    }
    r->done = 1;
}

static void cb_drained(sy_tcp_client *c, void *ud)
{
    (void)c;
    rec *r = ud;
    r->drained++;
    r->done = 1;
}

static void cb_timeout(sy_tcp_client *c, void *ud)
{
    (void)c;
    rec *r = ud;
    r->timeouts++;
    r->done = 1;
}

static const sy_tcp_client_cbs cbs = {cb_connected, cb_readable, cb_drained, cb_timeout};

static sy_tcp_client *client(rec *r)
{
    memset(r, 0, sizeof *r);
    r->c = sy_tcp_client_new(loop, resolver, &cbs, r);
    if (!r->c)
        exit(2);
    return r->c;
}

/* Runs the loop until r->done (then clears it) or the generous cap passes. */
static int wait_done(rec *r, double cap)
{
    double end = ev_time() + cap;
    while (!r->done && ev_time() < end)
        ev_run(loop, EVRUN_ONCE);
    int d = r->done;
    r->done = 0;
    return d;
}

/* Turns the loop for a while with nothing expected to happen. */
static void spin(double seconds)
{
    double end = ev_time() + seconds;
    while (ev_time() < end)
        ev_run(loop, EVRUN_NOWAIT);
}

/* ---- servers ------------------------------------------------------------------------------- */

/* A listener on ip (host order) and *port (0: any, then set); -1 when the port is taken. */
static int listener_at(uint32_t ip, int backlog, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(ip), .sin_port = htons((uint16_t)*port)};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* A small receive buffer (accepted sockets inherit it): a client's output backs up after a
     * few hundred KiB whatever the system's autotuning. */
    int rcv = 65536;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, backlog) != 0) {
        close(fd);
        return -1;
    }
    socklen_t sl = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &sl);
    *port = ntohs(a.sin_port);
    return fd;
}

static int listener(int backlog, int *port)
{
    *port = 0;
    int fd = listener_at(INADDR_LOOPBACK, backlog, port);
    if (fd < 0) {
        perror("listener");
        exit(2);
    }
    return fd;
}

static int write_full(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

#define UP_BYTES (8u * 1024 * 1024) /* client to server: more than the socket buffers hold */
#define DOWN_BYTES (300u * 1024)    /* server to client after the greeting */

static unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 7 + i / 251);
}

typedef struct server {
    int lfd;
    int gate[2];       /* the server waits for a byte here before it reads */
    unsigned long sum; /* what it received (sum of bytes) */
    size_t got;
    pthread_t th;
} server;

/* Plain exchange: greeting line, wait at the gate (the client's output backs up), read
 * UP_BYTES, answer "sum N\n" and DOWN_BYTES of pattern, then close (EOF). */
static void *plain_serve(void *arg)
{
    server *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    write_full(fd, "hi\r\n", 4);
    char g;
    if (read(s->gate[0], &g, 1) != 1)
        g = 0;
    static char buf[65536];
    while (s->got < UP_BYTES) {
        size_t want = UP_BYTES - s->got < sizeof buf ? UP_BYTES - s->got : sizeof buf;
        ssize_t k = read(fd, buf, want);
        if (k <= 0)
            break;
        for (ssize_t i = 0; i < k; i++)
            s->sum += (unsigned char)buf[i];
        s->got += (size_t)k;
    }
    char line[64];
    int n = snprintf(line, sizeof line, "sum %lu\n", s->sum);
    write_full(fd, line, (size_t)n);
    char *down = malloc(DOWN_BYTES);
    for (size_t i = 0; i < DOWN_BYTES; i++)
        down[i] = (char)pattern(i);
    write_full(fd, down, DOWN_BYTES);
    free(down);
    close(fd);
    return NULL;
}

/* Accepts one connection and holds it, reading nothing, until the gate opens. */
static void *hold_serve(void *arg)
{
    server *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    char g;
    if (read(s->gate[0], &g, 1) != 1)
        g = 0;
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void server_start(server *s, void *(*fn)(void *))
{
    memset(s, 0, sizeof *s);
    int port;
    s->lfd = listener(8, &port);
    if (pipe(s->gate) != 0)
        exit(2);
    pthread_create(&s->th, NULL, fn, s);
}

static int server_port(const server *s)
{
    struct sockaddr_in a;
    socklen_t sl = sizeof a;
    getsockname(s->lfd, (struct sockaddr *)&a, &sl);
    return ntohs(a.sin_port);
}

static void server_stop(server *s)
{
    if (write(s->gate[1], "x", 1) != 1)
        perror("gate");
    pthread_join(s->th, NULL);
    close(s->gate[0]);
    close(s->gate[1]);
    close(s->lfd);
}

/* ---- plain TCP ----------------------------------------------------------------------------- */

/* Takes a line from the input ("\n"-terminated) into out; 1 when one was there. */
static int take_line(sy_tcp_client *c, char *out, size_t cap)
{
    sy_buf *in = sy_tcp_client_input(c);
    const char *p = sy_buf_data(in);
    const char *nl = p ? memchr(p, '\n', sy_buf_len(in)) : NULL;
    if (!nl)
        return 0;
    size_t n = (size_t)(nl - p) + 1;
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
    sy_buf_consume(in, n);
    return 1;
}

/* Reads until a line is there (or the read side ends). */
static int receive_line(rec *r, char *out, size_t cap)
{
    for (;;) {
        if (take_line(r->c, out, cap)) {
            sy_tcp_client_read_stop(r->c);
            return 1;
        }
        if (sy_tcp_client_read_error(r->c))
            return 0;
        sy_tcp_client_read_start(r->c);
        if (!wait_done(r, 60))
            return 0;
    }
}

static void test_exchange(void)
{
    server s;
    server_start(&s, plain_serve);
    rec r;
    sy_tcp_client *c = client(&r);
    sy_tcp_client_opts o = {.timeout = 60};
    CHECK(sy_tcp_client_connect(c, "127.0.0.1", server_port(&s), &o) == 0);
    CHECK(r.connected == 0); /* never inside the call */
    CHECK(strcmp(sy_tcp_client_stage(c), "resolving") == 0);
    CHECK(sy_tcp_client_connect(c, "127.0.0.1", server_port(&s), &o) == SY_EINVAL);
    CHECK(wait_done(&r, 60) && r.connected == 1 && r.err[0] == '\0');
    CHECK(strcmp(sy_tcp_client_stage(c), "open") == 0);

    /* Send more than the socket takes while the server does not read: the rest queues. */
    char *up = malloc(UP_BYTES);
    unsigned long sum = 0;
    for (size_t i = 0; i < UP_BYTES; i++) {
        up[i] = (char)pattern(i);
        sum += pattern(i);
    }
    CHECK(sy_tcp_client_write(c, up, UP_BYTES / 2) == 0);
    CHECK(sy_tcp_client_write(c, up + UP_BYTES / 2, UP_BYTES - UP_BYTES / 2) == 0);
    free(up);
    size_t queued = sy_tcp_client_buffered(c);
    printf("queued after the writes: %zu of %u bytes\n", queued, UP_BYTES);
    CHECK(queued > 0);
    CHECK(r.drained == 0);
    /* The greeting arrives while the output waits. */
    char line[128];
    CHECK(receive_line(&r, line, sizeof line) && strcmp(line, "hi\r\n") == 0);
    if (write(s.gate[1], "g", 1) != 1)
        perror("gate");
    CHECK(wait_done(&r, 60) && r.drained == 1 && sy_tcp_client_buffered(c) == 0);
    CHECK(sy_tcp_client_write_error(c) == NULL);

    char want[64];
    snprintf(want, sizeof want, "sum %lu\n", sum);
    CHECK(receive_line(&r, line, sizeof line) && strcmp(line, want) == 0);
    /* Everything else up to EOF ("*a"). */
    while (!sy_tcp_client_read_error(c)) {
        sy_tcp_client_read_start(c);
        if (!wait_done(&r, 60))
            break;
    }
    CHECK_MSG(sy_tcp_client_read_error(c) && strcmp(sy_tcp_client_read_error(c), "closed") == 0,
              "read error %s", sy_tcp_client_read_error(c));
    sy_buf *in = sy_tcp_client_input(c);
    CHECK(sy_buf_len(in) == DOWN_BYTES);
    int same = sy_buf_len(in) == DOWN_BYTES;
    for (size_t i = 0; same && i < DOWN_BYTES; i++)
        same = (unsigned char)sy_buf_data(in)[i] == pattern(i);
    CHECK(same);
    sy_buf_consume(in, sy_buf_len(in));
    /* After EOF: reading stays off, no more callbacks. */
    int readable = r.readable;
    sy_tcp_client_read_start(c);
    spin(0.05);
    CHECK(r.readable == readable);
    sy_tcp_client_free(c);
    server_stop(&s);
    CHECK(s.got == UP_BYTES && s.sum == sum);
}

static void test_localhost_and_limits(void)
{
    /* "localhost" through the resolver (/etc/hosts), whatever family comes first. */
    server s;
    server_start(&s, plain_serve);
    rec r;
    sy_tcp_client *c = client(&r);
    sy_tcp_client_opts o = {.timeout = 60, .max_input = 3};
    CHECK(sy_tcp_client_connect(c, "localhost", server_port(&s), &o) == 0);
    CHECK_MSG(wait_done(&r, 60) && r.connected == 1 && r.err[0] == '\0', "localhost: %s", r.err);
    /* max_input 3: "hi\r\n" does not fit, so reading on ends with the limit. */
    sy_tcp_client_read_start(c);
    while (!sy_tcp_client_read_error(c) && wait_done(&r, 60))
        ;
    CHECK_MSG(sy_tcp_client_read_error(c) &&
                  strcmp(sy_tcp_client_read_error(c), "input too large") == 0,
              "limit: %s", sy_tcp_client_read_error(c));
    CHECK(sy_buf_len(sy_tcp_client_input(c)) == 3);
    sy_tcp_client_free(c);
    server_stop(&s);

    /* Addresses in order: 127.0.0.2 refuses (the listener has 127.0.0.1 only), 127.0.0.1 takes
     * it. A name not in DNS fails with "not found". */
    server_start(&s, plain_serve);
    c = client(&r);
    o.max_input = 0;
    CHECK(sy_tcp_client_connect(c, "two.test", server_port(&s), &o) == 0);
    CHECK_MSG(wait_done(&r, 60) && r.connected == 1 && r.err[0] == '\0', "two.test: %s", r.err);
    char line[64];
    CHECK(receive_line(&r, line, sizeof line) && strcmp(line, "hi\r\n") == 0);
    sy_tcp_client_free(c);
    server_stop(&s);
    c = client(&r);
    CHECK(sy_tcp_client_connect(c, "nothing.invalid", 80, &o) == 0);
    CHECK(wait_done(&r, 60) && r.connected == 1 && strcmp(r.err, "not found") == 0);
    sy_tcp_client_free(c);

    /* The timer for the owner's operations. */
    c = client(&r);
    sy_tcp_client_set_timer(c, 0.01);
    CHECK(wait_done(&r, 60) && r.timeouts == 1);
    sy_tcp_client_set_timer(c, 30);
    sy_tcp_client_set_timer(c, -1);
    spin(0.05);
    CHECK(r.timeouts == 1);
    /* Not connected: writes refused; bad arguments refused without a callback. */
    CHECK(sy_tcp_client_write(c, "x", 1) == SY_ECLOSED);
    CHECK(sy_tcp_client_connect(c, "127.0.0.1", 0, NULL) == SY_EINVAL);
    CHECK(sy_tcp_client_connect(c, "", 80, NULL) == SY_EINVAL);
    spin(0.02);
    CHECK(r.connected == 0);
    sy_tcp_client_free(c);
}

static void test_refused(void)
{
    /* A port bound but not listening refuses. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t sl = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &sl);
    rec r;
    sy_tcp_client *c = client(&r);
    CHECK(sy_tcp_client_connect(c, "127.0.0.1", ntohs(a.sin_port), NULL) == 0);
    CHECK(wait_done(&r, 60) && r.connected == 1);
    CHECK_MSG(strcmp(r.err, "refused") == 0, "refused: %s", r.err);
    CHECK(strcmp(sy_tcp_client_stage(c), "failed") == 0);
    CHECK(sy_tcp_client_write(c, "x", 1) == SY_ECLOSED);
    CHECK(strcmp(sy_tcp_client_read_error(c), "refused") == 0);
    sy_tcp_client_free(c);

    /* Freed inside its failing `connected`. */
    c = client(&r);
    r.free_in = 1;
    CHECK(sy_tcp_client_connect(c, "127.0.0.1", ntohs(a.sin_port), NULL) == 0);
    CHECK(wait_done(&r, 60) && r.connected == 1 && r.c == NULL);
    close(fd);
}

/* A listener whose accept queue is full: further SYNs are dropped, so a connect neither
 * succeeds nor fails until its timeout. Fills the queue (backlog 0) with connects of its own
 * until one stays pending. Returns the listener, or -1 when the system accepted them all. */
static int full_listener(uint32_t ip, int *port, int fillers[16], int *nfill)
{
    *port = 0;
    int l = listener_at(ip, 0, port);
    if (l < 0)
        return -1;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(ip), .sin_port = htons((uint16_t)*port)};
    *nfill = 0;
    for (int i = 0; i < 16; i++) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        fillers[(*nfill)++] = s;
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
            continue;
        struct pollfd p = {s, POLLOUT, 0};
        if (poll(&p, 1, 1000) == 0)
            return l; /* this one waits: the queue is full */
    }
    for (int i = 0; i < *nfill; i++)
        close(fillers[i]);
    close(l);
    return -1;
}

static void test_timeouts(void)
{
    int port, fillers[16], nfill;
    int l = full_listener(INADDR_LOOPBACK, &port, fillers, &nfill);
    CHECK_MSG(l >= 0, "could not fill an accept queue on this system");
    if (l >= 0) {
        rec r;
        sy_tcp_client *c = client(&r);
        sy_tcp_client_opts o = {.timeout = 0.3};
        CHECK(sy_tcp_client_connect(c, "127.0.0.1", port, &o) == 0);
        CHECK(wait_done(&r, 60) && r.connected == 1);
        CHECK_MSG(strcmp(r.err, "timeout") == 0, "connect timeout: %s", r.err);
        sy_tcp_client_free(c);

        /* Freed mid-connect: no callback. */
        c = client(&r);
        o.timeout = 0.2;
        CHECK(sy_tcp_client_connect(c, "127.0.0.1", port, &o) == 0);
        double end = ev_time() + 30;
        while (strcmp(sy_tcp_client_stage(c), "connecting") != 0 && ev_time() < end)
            ev_run(loop, EVRUN_NOWAIT);
        CHECK(strcmp(sy_tcp_client_stage(c), "connecting") == 0);
        sy_tcp_client_free(c);
        spin(0.4); /* past the connect timeout */
        CHECK(r.connected == 0);
        for (int i = 0; i < nfill; i++)
            close(fillers[i]);
        close(l);
    }

    /* Two addresses, the first silent: it gets its share of the timeout (4.5 s / 2, at least
     * 2 s), then the second answers. "two.test" is 127.0.0.2 (a full queue), then 127.0.0.1
     * (a plain listener on the same port). */
    l = full_listener(0x7f000002, &port, fillers, &nfill);
    int p1 = port, l1 = l >= 0 ? listener_at(INADDR_LOOPBACK, 8, &p1) : -1;
    CHECK_MSG(l >= 0 && l1 >= 0, "listeners on 127.0.0.2 and 127.0.0.1, same port");
    if (l >= 0 && l1 >= 0) {
        rec r;
        sy_tcp_client *c = client(&r);
        sy_tcp_client_opts o = {.timeout = 4.5};
        CHECK(sy_tcp_client_connect(c, "two.test", port, &o) == 0);
        CHECK(wait_done(&r, 60) && r.connected == 1);
        CHECK_MSG(r.err[0] == '\0', "the second address after a silent first: %s", r.err);
        sy_tcp_client_free(c);
    }
    if (l >= 0) {
        for (int i = 0; i < nfill; i++)
            close(fillers[i]);
        close(l);
    }
    if (l1 >= 0)
        close(l1);

    /* The timeout covers resolving: the name server never answers. */
    rec r;
    sy_tcp_client *c = client(&r);
    sy_tcp_client_opts o = {.timeout = 0.2};
    CHECK(sy_tcp_client_connect(c, "silent.test", 80, &o) == 0);
    CHECK(wait_done(&r, 60) && r.connected == 1 && strcmp(r.err, "timeout") == 0);
    sy_tcp_client_free(c);

    /* Freed mid-resolve: no callback. */
    c = client(&r);
    o.timeout = 0.1;
    CHECK(sy_tcp_client_connect(c, "silent.test", 80, &o) == 0);
    ev_run(loop, EVRUN_NOWAIT);
    CHECK(strcmp(sy_tcp_client_stage(c), "resolving") == 0);
    sy_tcp_client_free(c);
    /* Numeric: freed before the loop delivers the address. */
    c = client(&r);
    CHECK(sy_tcp_client_connect(c, "127.0.0.1", 9, &o) == 0);
    sy_tcp_client_free(c);
    spin(0.3);
    CHECK(r.connected == 0);
}

static void test_close_with_output(void)
{
    /* Output queued against a peer that does not read, then freed: no callback, no leak. */
    server s;
    server_start(&s, hold_serve);
    rec r;
    sy_tcp_client *c = client(&r);
    CHECK(sy_tcp_client_connect(c, "127.0.0.1", server_port(&s), NULL) == 0);
    CHECK(wait_done(&r, 60) && r.connected == 1 && r.err[0] == '\0');
    char *big = calloc(1, UP_BYTES);
    CHECK(sy_tcp_client_write(c, big, UP_BYTES) == 0);
    free(big);
    CHECK(sy_tcp_client_buffered(c) > 0);
    spin(0.02);
    sy_tcp_client_free(c);
    spin(0.02);
    CHECK(r.drained == 0 && r.readable == 0);
    server_stop(&s);

    /* Freed inside `readable`. */
    server_start(&s, plain_serve);
    c = client(&r);
    CHECK(sy_tcp_client_connect(c, "127.0.0.1", server_port(&s), NULL) == 0);
    CHECK(wait_done(&r, 60) && r.connected == 1);
    r.free_in = 2;
    sy_tcp_client_read_start(c);
    CHECK(wait_done(&r, 60) && r.readable == 1 && r.c == NULL);
    spin(0.02);
    CHECK(r.readable == 1);
    server_stop(&s);
}

/* ---- TLS ----------------------------------------------------------------------------------- */

static char dir[64], cert_path[128], key_path[128];

static void make_cert(void)
{
    snprintf(dir, sizeof dir, "/tmp/sy-test-tcpc.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    FILE *f = fopen(key_path, "w");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
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
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *san =
        X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    X509_add_ext(x, san, -1);
    X509_EXTENSION_free(san);
    X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(x, bc, -1);
    X509_EXTENSION_free(bc);
    X509_sign(x, k, EVP_sha256());
    f = fopen(cert_path, "w");
    PEM_write_X509(f, x);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

typedef struct tls_server {
    server s;
    SSL_CTX *ctx;
    int stall;   /* accept TCP, never answer the ClientHello */
    size_t bulk; /* > 0: read this many bytes, send them back, close (instead of a line) */
    int garbage; /* after the handshake, bytes that are no TLS record; hold until the gate */
    int handshake_ok;
    char sni[128]; /* the name the client sent, "" for none */
    char line[64]; /* what the client wrote */
} tls_server;

static int sni_seen(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    tls_server *t = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    snprintf(t->sni, sizeof t->sni, "%s", name ? name : "");
    return SSL_TLSEXT_ERR_OK;
}

/* One connection: handshake, read a line, answer "pong\n" (or echo bulk bytes), close_notify,
 * close. */
static void *tls_serve(void *arg)
{
    tls_server *t = arg;
    int fd = accept(t->s.lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    if (t->stall) {
        char g;
        if (read(t->s.gate[0], &g, 1) != 1)
            g = 0;
        close(fd);
        return NULL;
    }
    SSL *ssl = SSL_new(t->ctx);
    SSL_set_fd(ssl, fd);
    t->handshake_ok = SSL_accept(ssl) == 1;
    if (t->handshake_ok && t->garbage) {
        write_full(fd, "\x17\x03\x03\x00\x05garbage", 12);
        char g;
        if (read(t->s.gate[0], &g, 1) != 1)
            g = 0;
    } else if (t->handshake_ok && t->bulk) {
        char *b = malloc(t->bulk);
        size_t n = 0;
        while (n < t->bulk) {
            int k = SSL_read(ssl, b + n, (int)(t->bulk - n));
            if (k <= 0)
                break;
            n += (size_t)k;
        }
        for (size_t off = 0; off < n;) {
            int k = SSL_write(ssl, b + off, (int)(n - off));
            if (k <= 0)
                break;
            off += (size_t)k;
        }
        free(b);
        SSL_shutdown(ssl);
    } else if (t->handshake_ok) {
        size_t n = 0;
        while (n < sizeof t->line - 1) {
            int k = SSL_read(ssl, t->line + n, 1);
            if (k <= 0)
                break;
            if (t->line[n++] == '\n')
                break;
        }
        t->line[n] = '\0';
        SSL_write(ssl, "pong\n", 5);
        SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    close(fd);
    ERR_clear_error();
    return NULL;
}

static void tls_server_start(tls_server *t, int stall)
{
    memset(t, 0, sizeof *t);
    t->stall = stall;
    t->ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate_chain_file(t->ctx, cert_path);
    SSL_CTX_use_PrivateKey_file(t->ctx, key_path, SSL_FILETYPE_PEM);
    SSL_CTX_set_tlsext_servername_callback(t->ctx, sni_seen);
    SSL_CTX_set_tlsext_servername_arg(t->ctx, t);
    int port;
    t->s.lfd = listener(8, &port);
    if (pipe(t->s.gate) != 0)
        exit(2);
    pthread_create(&t->s.th, NULL, tls_serve, t);
}

static void tls_server_stop(tls_server *t)
{
    server_stop(&t->s);
    SSL_CTX_free(t->ctx);
}

/* Connects with TLS; on success sends "ping\n" and reads "pong\n" then EOF. Returns the connect
 * error ("" on success) in r->err. */
static void tls_case(tls_server *t, rec *r, const char *host, sy_tls_ctx *ctx, const char *sni,
                     int *exchanged)
{
    sy_tcp_client *c = client(r);
    sy_tcp_client_opts o = {.timeout = 60, .tls = ctx, .server_name = sni};
    CHECK(sy_tcp_client_connect(c, host, server_port(&t->s), &o) == 0);
    CHECK(wait_done(r, 60) && r->connected == 1);
    *exchanged = 0;
    if (r->err[0] == '\0') {
        CHECK(sy_tcp_client_write(c, "ping\n", 5) == 0);
        char line[64];
        if (receive_line(r, line, sizeof line) && strcmp(line, "pong\n") == 0)
            *exchanged = 1;
        while (!sy_tcp_client_read_error(c)) {
            sy_tcp_client_read_start(c);
            if (!wait_done(r, 60))
                break;
        }
        CHECK(sy_tcp_client_read_error(c) && strcmp(sy_tcp_client_read_error(c), "closed") == 0);
    }
    sy_tcp_client_free(c);
}

static void test_tls(void)
{
    make_cert();
    char err[256];
    sy_tls_ctx *with_ca = NULL, *system = NULL, *noverify = NULL, *bad = NULL;
    CHECK(sy_tls_client_ctx_new(cert_path, 1, &with_ca, err, sizeof err) == 0);
    CHECK(sy_tls_client_ctx_new(NULL, 1, &system, err, sizeof err) == 0);
    CHECK(sy_tls_client_ctx_new(NULL, 0, &noverify, err, sizeof err) == 0);
    CHECK(sy_tls_client_ctx_new("/nonexistent/ca.pem", 1, &bad, err, sizeof err) == SY_EINVAL &&
          bad == NULL && strstr(err, "/nonexistent/ca.pem"));

    tls_server t;
    rec r;
    int ok;
    /* Verified by the given CA, SNI "localhost" as the server saw it. */
    tls_server_start(&t, 0);
    tls_case(&t, &r, "localhost", with_ca, NULL, &ok);
    tls_server_stop(&t);
    CHECK_MSG(r.err[0] == '\0' && ok, "with CA: %s", r.err);
    CHECK(t.handshake_ok && strcmp(t.sni, "localhost") == 0 && strcmp(t.line, "ping\n") == 0);

    /* A numeric host: checked against the certificate's IP entry; no SNI. */
    tls_server_start(&t, 0);
    tls_case(&t, &r, "127.0.0.1", with_ca, NULL, &ok);
    tls_server_stop(&t);
    CHECK_MSG(r.err[0] == '\0' && ok, "by address: %s", r.err);
    CHECK(t.handshake_ok && t.sni[0] == '\0');

    /* An explicit server name: sent as SNI and checked (this certificate does not have it). */
    tls_server_start(&t, 0);
    tls_case(&t, &r, "127.0.0.1", with_ca, "other.example", &ok);
    tls_server_stop(&t);
    CHECK_MSG(strncmp(r.err, "tls: ", 5) == 0 && strstr(r.err, "ostname"), "other name: %s", r.err);
    CHECK(strcmp(t.sni, "other.example") == 0 && !t.handshake_ok);

    /* The system's store does not know the test's CA. */
    tls_server_start(&t, 0);
    tls_case(&t, &r, "localhost", system, NULL, &ok);
    tls_server_stop(&t);
    CHECK_MSG(strncmp(r.err, "tls: ", 5) == 0, "system store: %s", r.err);
    printf("without the CA: %s\n", r.err);
    CHECK(!t.handshake_ok);

    /* Verification off: any certificate, any name; SNI still sent. */
    tls_server_start(&t, 0);
    tls_case(&t, &r, "localhost", noverify, "whatever.example", &ok);
    tls_server_stop(&t);
    CHECK_MSG(r.err[0] == '\0' && ok, "verify off: %s", r.err);
    CHECK(strcmp(t.sni, "whatever.example") == 0);

    /* The context may go while a session made from it lives (the session holds a reference). */
    sy_tls_ctx *temp = NULL;
    CHECK(sy_tls_client_ctx_new(cert_path, 1, &temp, err, sizeof err) == 0);
    tls_server_start(&t, 0);
    sy_tcp_client *c = client(&r);
    sy_tcp_client_opts o = {.timeout = 60, .tls = temp};
    CHECK(sy_tcp_client_connect(c, "localhost", server_port(&t.s), &o) == 0);
    sy_tls_ctx_free(temp);
    CHECK(wait_done(&r, 60) && r.connected == 1 && r.err[0] == '\0');
    sy_tcp_client_free(c);
    tls_server_stop(&t);

    /* Many records both ways: the client's output backs up while the server reads it all
     * before it answers, then the same bytes come back, then close_notify. */
    tls_server_start(&t, 0);
    t.bulk = 3u * 1024 * 1024 + 5;
    c = client(&r);
    o.tls = with_ca;
    CHECK(sy_tcp_client_connect(c, "localhost", server_port(&t.s), &o) == 0);
    CHECK(wait_done(&r, 60) && r.connected == 1 && r.err[0] == '\0');
    char *bulk = malloc(t.bulk);
    for (size_t i = 0; i < t.bulk; i++)
        bulk[i] = (char)pattern(i);
    CHECK(sy_tcp_client_write(c, bulk, t.bulk) == 0);
    if (sy_tcp_client_buffered(c) > 0)
        CHECK(wait_done(&r, 60) && r.drained == 1);
    CHECK(sy_tcp_client_buffered(c) == 0 && sy_tcp_client_write_error(c) == NULL);
    while (!sy_tcp_client_read_error(c)) {
        sy_tcp_client_read_start(c);
        if (!wait_done(&r, 60))
            break;
    }
    CHECK_MSG(sy_tcp_client_read_error(c) && strcmp(sy_tcp_client_read_error(c), "closed") == 0,
              "bulk: %s", sy_tcp_client_read_error(c));
    sy_buf *in = sy_tcp_client_input(c);
    CHECK(sy_buf_len(in) == t.bulk && memcmp(sy_buf_data(in), bulk, t.bulk) == 0);
    free(bulk);
    sy_tcp_client_free(c);
    tls_server_stop(&t);

    /* A broken record while output waits: the read side ends with "tls: ...", and the writes
     * waiting fail with it (`drained`). */
    tls_server_start(&t, 0);
    t.garbage = 1;
    c = client(&r);
    CHECK(sy_tcp_client_connect(c, "localhost", server_port(&t.s), &o) == 0);
    CHECK(wait_done(&r, 60) && r.connected == 1 && r.err[0] == '\0');
    bulk = calloc(1, UP_BYTES);
    CHECK(sy_tcp_client_write(c, bulk, UP_BYTES) == 0);
    free(bulk);
    CHECK(sy_tcp_client_buffered(c) > 0);
    sy_tcp_client_read_start(c);
    while ((!sy_tcp_client_read_error(c) || !r.drained) && wait_done(&r, 60))
        ;
    CHECK_MSG(sy_tcp_client_read_error(c) && strncmp(sy_tcp_client_read_error(c), "tls: ", 5) == 0,
              "garbage: %s", sy_tcp_client_read_error(c));
    printf("a broken record: %s\n", sy_tcp_client_read_error(c));
    CHECK(r.drained == 1 && sy_tcp_client_write_error(c) && sy_tcp_client_buffered(c) == 0);
    CHECK(sy_tcp_client_write(c, "x", 1) == SY_ECLOSED);
    sy_tcp_client_free(c);
    tls_server_stop(&t);

    /* A server that never answers the ClientHello: the connect timeout ends the handshake. */
    tls_server_start(&t, 1);
    c = client(&r);
    o.tls = with_ca;
    o.timeout = 0.3;
    CHECK(sy_tcp_client_connect(c, "127.0.0.1", server_port(&t.s), &o) == 0);
    CHECK(wait_done(&r, 60) && r.connected == 1 && strcmp(r.err, "timeout") == 0);
    sy_tcp_client_free(c);
    tls_server_stop(&t);

    /* Freed mid-handshake: no callback. */
    tls_server_start(&t, 1);
    c = client(&r);
    o.timeout = 0.2;
    CHECK(sy_tcp_client_connect(c, "127.0.0.1", server_port(&t.s), &o) == 0);
    double end = ev_time() + 30;
    while (strcmp(sy_tcp_client_stage(c), "handshake") != 0 && ev_time() < end)
        ev_run(loop, EVRUN_ONCE);
    CHECK(strcmp(sy_tcp_client_stage(c), "handshake") == 0);
    sy_tcp_client_free(c);
    spin(0.3);
    CHECK(r.connected == 0);
    tls_server_stop(&t);

    /* Freed inside a successful `connected` under TLS. */
    tls_server_start(&t, 0);
    c = client(&r);
    r.free_in = 1;
    o.timeout = 60;
    CHECK(sy_tcp_client_connect(c, "localhost", server_port(&t.s), &o) == 0);
    CHECK(wait_done(&r, 60) && r.connected == 1 && r.err[0] == '\0' && r.c == NULL);
    tls_server_stop(&t);

    sy_tls_ctx_free(with_ca);
    sy_tls_ctx_free(system);
    sy_tls_ctx_free(noverify);
    unlink(cert_path);
    unlink(key_path);
    rmdir(dir);
}

/* ---- out of memory --------------------------------------------------------------------------- */

static int fail_at = -1, alloc_calls;

static void *test_malloc(size_t n)
{
    return alloc_calls++ == fail_at ? NULL : malloc(n);
}

static void *test_realloc(void *p, size_t n)
{
    return alloc_calls++ == fail_at ? NULL : realloc(p, n);
}

/* Each allocation of a whole scenario (resolver, request, client, connect by name through the
 * DNS server, a write) fails in turn: every step answers SY_ENOMEM or "out of memory" (or
 * "timeout" when c-ares' socket could not be watched), and nothing leaks (ASan). c-ares
 * allocates with its own malloc. */
static void test_out_of_memory(void)
{
    int port;
    int l = listener(8, &port); /* the kernel completes handshakes; nobody accepts */
    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%d", dns.port);
    sy_set_allocator(test_malloc, test_realloc, free);
    int completed = 0, runs = 0;
    for (fail_at = 0; fail_at < 200 && !completed; fail_at++, runs++) {
        alloc_calls = 0;
        sy_resolver *res = NULL;
        sy_resolver_opts ro = {.servers = servers, .timeout_ms = 500, .tries = 1};
        int rc = sy_resolver_new(loop, &ro, &res);
        CHECK(rc == 0 || rc == SY_ENOMEM);
        if (rc != 0)
            continue;
        rec r;
        memset(&r, 0, sizeof r);
        sy_tcp_client *c = sy_tcp_client_new(loop, res, &cbs, &r);
        if (c) {
            rc = sy_tcp_client_connect(c, "host.test", port, NULL);
            CHECK(rc == 0 || rc == SY_ENOMEM);
            if (rc == 0) {
                CHECK(wait_done(&r, 60) && r.connected == 1);
                /* A DNS socket that could not be watched ends by c-ares' timeout. */
                CHECK_MSG(r.err[0] == '\0' || strcmp(r.err, "out of memory") == 0 ||
                              strcmp(r.err, "timeout") == 0,
                          "oom: %s", r.err);
                if (r.err[0] == '\0') {
                    rc = sy_tcp_client_write(c, "x", 1);
                    CHECK(rc == 0 || rc == SY_ENOMEM);
                }
            }
            sy_tcp_client_free(c);
        }
        sy_resolver_free(res);
        completed = alloc_calls <= fail_at;
    }
    sy_set_allocator(NULL, NULL, NULL);
    fail_at = -1;
    printf("out of memory: %d runs, the last without a failure\n", runs);
    CHECK(completed);
    close(l);
}

int main(void)
{
    /* The test's own TLS server writes with OpenSSL's socket BIO (plain write) to clients that
     * may have gone; the client itself sends with MSG_NOSIGNAL. */
    signal(SIGPIPE, SIG_IGN);
    loop = ev_loop_new(EVFLAG_AUTO);
    dns_stub_start(loop, &dns);
    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%d", dns.port);
    sy_resolver_opts ro = {.servers = servers, .timeout_ms = 5000, .tries = 1};
    if (sy_resolver_new(loop, &ro, &resolver) != 0)
        return 2;

    test_exchange();
    test_localhost_and_limits();
    test_refused();
    test_timeouts();
    test_close_with_output();
    test_tls();
    test_out_of_memory();

    sy_resolver_free(resolver);
    dns_stub_stop(loop, &dns);
    CHECK(ev_run(loop, EVRUN_NOWAIT) == 0); /* no watcher left behind */
    ev_loop_destroy(loop);
    return t_summary("test_tcp_client");
}
