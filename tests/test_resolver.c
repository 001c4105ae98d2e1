/* The resolver on a real libev loop: numeric addresses without DNS, /etc/hosts, and a small DNS
 * server of the test's own on 127.0.0.1 (dns_stub.h: an answer, no such name, silence), answers
 * never inside sy_resolve, cancellation at every stage, and freeing with requests pending. */
#include <arpa/inet.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "dns_stub.h"
#include "resolver.h"
#include "test.h"

static dns_stub dns;

/* ---- recording answers -------------------------------------------------------------------- */

typedef struct answer {
    int calls;
    size_t n;
    int families;      /* bit 0: AF_INET seen, bit 1: AF_INET6 seen */
    int loopback;      /* every address is 127.0.0.0/8 or ::1 */
    int port;          /* of the first address */
    uint32_t first_v4; /* the first address when IPv4 (host order) */
    char err[64];
    sy_resolve_req *cancel_other; /* cancelled from inside this callback */
    sy_resolver *free_resolver;   /* freed from inside this callback */
} answer;

static void on_answer(const sy_addr *addrs, size_t n, const char *err, void *ud)
{
    answer *a = ud;
    a->calls++;
    a->n = n;
    snprintf(a->err, sizeof a->err, "%s", err ? err : "");
    a->loopback = n > 0;
    for (size_t i = 0; i < n; i++) {
        const sy_addr *x = &addrs[i];
        if (x->u.sa.sa_family == AF_INET) {
            a->families |= 1;
            if ((ntohl(x->u.in.sin_addr.s_addr) >> 24) != 127)
                a->loopback = 0;
            if (i == 0) {
                a->port = ntohs(x->u.in.sin_port);
                a->first_v4 = ntohl(x->u.in.sin_addr.s_addr);
            }
        } else if (x->u.sa.sa_family == AF_INET6) {
            a->families |= 2;
            if (!IN6_IS_ADDR_LOOPBACK(&x->u.in6.sin6_addr))
                a->loopback = 0;
            if (i == 0)
                a->port = ntohs(x->u.in6.sin6_port);
        }
    }
    if (a->cancel_other) {
        sy_resolve_cancel(a->cancel_other);
        a->cancel_other = NULL;
    }
    if (a->free_resolver) {
        sy_resolver_free(a->free_resolver);
        a->free_resolver = NULL;
    }
}

/* Runs the loop until *flag is non-zero or the generous cap passes; returns *flag. */
static int run_until(struct ev_loop *loop, const int *flag, double cap)
{
    double end = ev_time() + cap;
    while (!*flag && ev_time() < end)
        ev_run(loop, EVRUN_ONCE);
    return *flag;
}

/* Runs the loop until the resolver owes nothing and c-ares let go of every query (no watcher
 * but the DNS server's is left). */
static void run_idle(struct ev_loop *loop, sy_resolver *r, double cap)
{
    double end = ev_time() + cap;
    while (ev_run(loop, EVRUN_ONCE) && ev_time() < end)
        ;
    CHECK(sy_resolver_pending(r) == 0);
}

static sy_resolver *new_resolver(struct ev_loop *loop, int timeout_ms)
{
    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%d", dns.port);
    sy_resolver_opts o = {.servers = servers, .timeout_ms = timeout_ms, .tries = 1};
    sy_resolver *r = NULL;
    int rc = sy_resolver_new(loop, &o, &r);
    CHECK(rc == 0 && r != NULL);
    if (!r)
        exit(1);
    return r;
}

static void test_numeric(struct ev_loop *loop)
{
    sy_resolver *r = new_resolver(loop, 2000);
    int before = dns.queries, err = 0;
    answer a4 = {0}, a6 = {0}, ab = {0}, wrong = {0};
    CHECK(sy_resolve(r, "127.0.0.1", 8080, AF_UNSPEC, on_answer, &a4, &err) != NULL);
    CHECK(sy_resolve(r, "::1", 443, AF_UNSPEC, on_answer, &a6, &err) != NULL);
    CHECK(sy_resolve(r, "[::1]", 1, AF_INET6, on_answer, &ab, &err) != NULL);
    CHECK(sy_resolve(r, "127.0.0.1", 1, AF_INET6, on_answer, &wrong, &err) != NULL);
    /* Never inside sy_resolve: on the loop's next turn. */
    CHECK(a4.calls == 0 && a6.calls == 0 && ab.calls == 0 && wrong.calls == 0);
    CHECK(sy_resolver_pending(r) == 4);
    run_until(loop, &wrong.calls, 30);
    CHECK(a4.calls == 1 && a4.n == 1 && a4.families == 1 && a4.loopback && a4.port == 8080);
    CHECK(a6.calls == 1 && a6.n == 1 && a6.families == 2 && a6.loopback && a6.port == 443);
    CHECK(ab.calls == 1 && ab.n == 1 && ab.families == 2);
    CHECK(wrong.calls == 1 && wrong.n == 0 && strcmp(wrong.err, "not found") == 0);
    CHECK(dns.queries == before); /* no DNS for a numeric address */
    CHECK(sy_resolver_pending(r) == 0);
    CHECK(sy_host_is_numeric("10.1.2.3") && sy_host_is_numeric("[fe80::1]") &&
          sy_host_is_numeric("::") && !sy_host_is_numeric("localhost") &&
          !sy_host_is_numeric("1.2.3") && !sy_host_is_numeric("[1.2.3.4]"));

    /* A name c-ares refuses at once is still answered from the loop. */
    answer bad = {0};
    CHECK(sy_resolve(r, "bad..name", 1, AF_UNSPEC, on_answer, &bad, &err) != NULL);
    CHECK(bad.calls == 0);
    run_until(loop, &bad.calls, 30);
    CHECK_MSG(bad.calls == 1 && bad.n == 0 && bad.err[0], "bad..name: %s", bad.err);
    printf("bad..name: %s\n", bad.err);

    /* Bad arguments: NULL, no callback ever. */
    err = 0;
    CHECK(sy_resolve(r, "", 80, AF_UNSPEC, on_answer, &a4, &err) == NULL && err == SY_EINVAL);
    err = 0;
    CHECK(sy_resolve(r, "a", 65536, AF_UNSPEC, on_answer, &a4, &err) == NULL && err == SY_EINVAL);
    err = 0;
    CHECK(sy_resolve(r, "a", 1, AF_UNIX, on_answer, &a4, &err) == NULL && err == SY_EINVAL);
    CHECK(sy_resolver_pending(r) == 0);
    sy_resolver_free(r);
}

static void test_hosts_and_dns(struct ev_loop *loop)
{
    sy_resolver *r = new_resolver(loop, 2000);
    int err = 0;
    answer lh = {0}, host = {0}, host6 = {0}, none = {0};
    /* localhost: from /etc/hosts (or c-ares' own loopback answer), loopback addresses only. */
    CHECK(sy_resolve(r, "localhost", 80, AF_UNSPEC, on_answer, &lh, &err) != NULL);
    CHECK(lh.calls == 0);
    run_until(loop, &lh.calls, 30);
    CHECK_MSG(lh.calls == 1 && lh.n >= 1 && lh.loopback && lh.port == 80, "localhost: %s", lh.err);

    /* From the DNS server, through c-ares' socket on the loop. */
    CHECK(sy_resolve(r, "host.test", 8443, AF_UNSPEC, on_answer, &host, &err) != NULL);
    run_until(loop, &host.calls, 30);
    CHECK_MSG(host.calls == 1 && host.n == 1 && host.families == 1 && host.loopback &&
                  host.port == 8443,
              "host.test: %s", host.err);
    CHECK(sy_resolve(r, "host.test", 1, AF_INET6, on_answer, &host6, &err) != NULL);
    run_until(loop, &host6.calls, 30);
    CHECK_MSG(host6.calls == 1 && host6.n == 0 && strcmp(host6.err, "not found") == 0,
              "host.test AAAA: %s", host6.err);

    /* Two addresses, in the server's order (both loopback: RFC 6724 keeps the order). */
    answer two = {0};
    CHECK(sy_resolve(r, "two.test", 1, AF_UNSPEC, on_answer, &two, &err) != NULL);
    run_until(loop, &two.calls, 30);
    CHECK_MSG(two.calls == 1 && two.n == 2 && two.first_v4 == 0x7f000002, "two.test: %s %zu %x",
              two.err, two.n, two.first_v4);

    /* RFC 6761 6.4: ".invalid" never exists; the server says NXDOMAIN. */
    int before = dns.queries;
    CHECK(sy_resolve(r, "nothing.invalid", 1, AF_UNSPEC, on_answer, &none, &err) != NULL);
    run_until(loop, &none.calls, 30);
    CHECK_MSG(none.calls == 1 && none.n == 0 && strcmp(none.err, "not found") == 0,
              "nothing.invalid: %s", none.err);
    CHECK(dns.queries > before);
    run_idle(loop, r, 30);
    CHECK(lh.calls == 1 && host.calls == 1 && none.calls == 1);
    sy_resolver_free(r);
}

static void test_timeout(struct ev_loop *loop)
{
    /* A server that never answers: c-ares gives up after its tries (100 ms, one try). */
    sy_resolver *r = new_resolver(loop, 100);
    int err = 0;
    answer s = {0};
    CHECK(sy_resolve(r, "silent.test", 1, AF_INET, on_answer, &s, &err) != NULL);
    run_until(loop, &s.calls, 60);
    CHECK_MSG(s.calls == 1 && s.n == 0 && strcmp(s.err, "timeout") == 0, "silent: '%s'", s.err);
    sy_resolver_free(r);
}

static void test_cancel(struct ev_loop *loop)
{
    sy_resolver *r = new_resolver(loop, 100);
    int err = 0;
    answer num = {0}, slow = {0}, host = {0}, lh = {0}, first = {0}, second = {0};

    /* Mid-resolve inside c-ares, and answered but not yet delivered (numeric, /etc/hosts). */
    sy_resolve_req *q1 = sy_resolve(r, "silent.test", 1, AF_UNSPEC, on_answer, &slow, &err);
    sy_resolve_req *q2 = sy_resolve(r, "127.0.0.1", 1, AF_UNSPEC, on_answer, &num, &err);
    sy_resolve_req *q3 = sy_resolve(r, "localhost", 1, AF_UNSPEC, on_answer, &lh, &err);
    CHECK(q1 && q2 && q3);
    sy_resolve_cancel(q2);
    sy_resolve_cancel(q3);
    /* Let the query reach the server, then cancel it before the answer would come. */
    sy_resolve_req *q4 = sy_resolve(r, "host.test", 1, AF_UNSPEC, on_answer, &host, &err);
    sy_resolve_cancel(q4);
    ev_run(loop, EVRUN_NOWAIT);
    sy_resolve_cancel(q1);
    CHECK(sy_resolver_pending(r) == 0);
    run_idle(loop, r, 30);
    /* c-ares let go of them (the silent one by its timeout): none was called. */
    CHECK(ev_run(loop, EVRUN_NOWAIT) == 0);
    CHECK(num.calls == 0 && slow.calls == 0 && host.calls == 0 && lh.calls == 0);

    /* From inside a callback: the first answer cancels the second, already answered. */
    sy_resolve_req *a = sy_resolve(r, "127.0.0.1", 1, AF_UNSPEC, on_answer, &first, &err);
    sy_resolve_req *b = sy_resolve(r, "::1", 1, AF_UNSPEC, on_answer, &second, &err);
    CHECK(a && b);
    first.cancel_other = b;
    run_until(loop, &first.calls, 30);
    run_idle(loop, r, 30);
    CHECK(first.calls == 1 && second.calls == 0);
    sy_resolver_free(r);
}

static void test_free_pending(struct ev_loop *loop)
{
    /* Freed with a query inside c-ares and an answer not yet delivered: no callback, no leak. */
    sy_resolver *r = new_resolver(loop, 5000);
    int err = 0;
    answer slow = {0}, num = {0};
    CHECK(sy_resolve(r, "silent.test", 1, AF_UNSPEC, on_answer, &slow, &err) != NULL);
    CHECK(sy_resolve(r, "::1", 1, AF_UNSPEC, on_answer, &num, &err) != NULL);
    ev_run(loop, EVRUN_NOWAIT);
    sy_resolver_free(r);
    ev_run(loop, EVRUN_NOWAIT);
    CHECK(slow.calls == 0);
    CHECK(num.calls <= 1);                  /* it may have run in the turn above */
    CHECK(ev_run(loop, EVRUN_NOWAIT) == 0); /* only the DNS server's watcher is left */

    /* Freed inside a callback, with an answer queued behind it and a query inside c-ares. */
    r = new_resolver(loop, 5000);
    answer first = {0}, second = {0}, slow2 = {0};
    CHECK(sy_resolve(r, "silent.test", 1, AF_UNSPEC, on_answer, &slow2, &err) != NULL);
    CHECK(sy_resolve(r, "127.0.0.1", 1, AF_UNSPEC, on_answer, &first, &err) != NULL);
    CHECK(sy_resolve(r, "::1", 1, AF_UNSPEC, on_answer, &second, &err) != NULL);
    first.free_resolver = r;
    run_until(loop, &first.calls, 30);
    ev_run(loop, EVRUN_NOWAIT);
    CHECK(first.calls == 1 && second.calls == 0 && slow2.calls == 0);
    CHECK(ev_run(loop, EVRUN_NOWAIT) == 0);
}

int main(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    dns_stub_start(loop, &dns);
    test_numeric(loop);
    test_hosts_and_dns(loop);
    test_timeout(loop);
    test_cancel(loop);
    test_free_pending(loop);
    dns_stub_stop(loop, &dns);
    ev_loop_destroy(loop);
    return t_summary("test_resolver");
}
