/* A DNS server for tests on 127.0.0.1 (UDP, on the test's libev loop), so no lookup leaves the
 * machine: "host.test" has A 127.0.0.1; "two.test" has A 127.0.0.2 then 127.0.0.1; both have
 * no AAAA (NOERROR, no answer); "silent.test" is never answered; any other name gets NXDOMAIN
 * (RFC 1035 4.1.1, RCODE 3). */
#ifndef SY_TEST_DNS_STUB_H
#define SY_TEST_DNS_STUB_H

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct dns_stub {
    ev_io io;
    int fd;
    int port;
    int queries; /* received so far */
} dns_stub;

static void dns_stub_answer(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    dns_stub *d = (dns_stub *)(void *)w;
    unsigned char q[512], a[600];
    struct sockaddr_storage from;
    socklen_t flen = sizeof from;
    ssize_t n = recvfrom(w->fd, q, sizeof q, 0, (struct sockaddr *)&from, &flen);
    if (n < 12)
        return;
    d->queries++;
    /* The question: labels from offset 12, then QTYPE and QCLASS. */
    char name[256];
    size_t off = 12, nl = 0;
    while (off < (size_t)n && q[off] != 0) {
        size_t l = q[off];
        if (off + 1 + l >= (size_t)n || nl + l + 1 >= sizeof name)
            return;
        if (nl)
            name[nl++] = '.';
        for (size_t i = 0; i < l; i++) {
            unsigned char c = q[off + 1 + i];
            name[nl++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        off += 1 + l;
    }
    name[nl] = '\0';
    if (off + 5 > (size_t)n)
        return;
    unsigned qtype = (unsigned)(q[off + 1] << 8 | q[off + 2]);
    size_t qend = off + 5;
    if (strcmp(name, "silent.test") == 0)
        return;
    static const unsigned char one[] = {127, 0, 0, 1}, two[] = {127, 0, 0, 2};
    const unsigned char *addrs[2];
    int naddrs = 0, found = 1;
    if (strcmp(name, "host.test") == 0) {
        addrs[naddrs++] = one;
    } else if (strcmp(name, "two.test") == 0) {
        addrs[naddrs++] = two;
        addrs[naddrs++] = one;
    } else {
        found = 0;
    }
    if (qtype != 1)
        naddrs = 0;
    memcpy(a, q, qend);
    a[2] = (unsigned char)(0x80 | (q[2] & 0x01));   /* QR, RD as asked */
    a[3] = (unsigned char)(0x80 | (found ? 0 : 3)); /* RA; NOERROR or NXDOMAIN */
    a[4] = 0, a[5] = 1;                             /* QDCOUNT */
    a[6] = 0, a[7] = (unsigned char)naddrs;         /* ANCOUNT */
    memset(a + 8, 0, 4);                            /* NSCOUNT, ARCOUNT */
    size_t len = qend;
    for (int i = 0; i < naddrs; i++) {
        /* The name as a pointer to the question, A, IN, TTL 60, 4 bytes. */
        static const unsigned char rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4};
        memcpy(a + len, rr, sizeof rr);
        memcpy(a + len + sizeof rr, addrs[i], 4);
        len += sizeof rr + 4;
    }
    sendto(w->fd, a, len, 0, (struct sockaddr *)&from, flen);
}

/* Starts the server on loop; its watcher does not count as work for ev_run (ev_unref). */
static void dns_stub_start(struct ev_loop *loop, dns_stub *d)
{
    memset(d, 0, sizeof *d);
    d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (d->fd < 0 || bind(d->fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        perror("dns stub");
        exit(2);
    }
    socklen_t sl = sizeof sin;
    getsockname(d->fd, (struct sockaddr *)&sin, &sl);
    d->port = ntohs(sin.sin_port);
    ev_io_init(&d->io, dns_stub_answer, d->fd, EV_READ);
    ev_io_start(loop, &d->io);
    ev_unref(loop);
}

static void dns_stub_stop(struct ev_loop *loop, dns_stub *d)
{
    ev_ref(loop);
    ev_io_stop(loop, &d->io);
    close(d->fd);
}

#endif
