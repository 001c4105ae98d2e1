/* The supervisor's metrics listener: see metrics_hub.h. */
#include "metrics_hub.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "http1.h"
#include "metrics.h"

#define MAX_REQUEST 8192
#define MAX_FIELDS 64

enum { C_FREE, C_READING, C_WAITING, C_WRITING };

typedef struct client {
    int fd; /* owned; -1 while free */
    int state;
    double deadline; /* C_READING: when it is dropped */
    int head;        /* HEAD: no body */
    char in[MAX_REQUEST];
    size_t in_len;
    sy_text out; /* the response */
    size_t out_off;
} client;

struct sy_metrics_hub {
    int fd; /* owned; the listening socket */
    int port;
    int n;               /* workers */
    sy_relay_hub *relay; /* borrowed */
    client clients[SY_METRICS_HUB_CLIENTS];
    /* The scrape in flight: its id, whom it waits for, what came back. */
    unsigned long seq;
    int in_flight;
    double deadline;
    unsigned char *asked; /* owned; n flags */
    sy_text *pages;       /* owned; n pages (p == NULL: none) */
};

static void drop(client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = C_FREE;
    sy_text_dispose(&c->out);
}

static void respond(client *c, int status, const char *type, const char *body, size_t n)
{
    const char *reason = sy_http1_reason(status);
    sy_text_printf(&c->out,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                   "Connection: close\r\n\r\n",
                   status, reason, type, n, status == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (!c->head)
        sy_text_add(&c->out, body, n);
    c->state = C_WRITING;
    c->out_off = 0;
    if (c->out.failed)
        drop(c);
}

/* Writes what the socket takes; closes once all is sent. */
static void write_some(client *c)
{
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break;
    }
    drop(c);
}

/* Every page is in (or the wait is over): merge and answer the waiting clients. */
static void finish(sy_metrics_hub *h)
{
    sy_str pages[256];
    int n = h->n < 256 ? h->n : 256;
    for (int i = 0; i < n; i++)
        pages[i] = h->pages[i].p && !h->pages[i].failed
                       ? sy_str_make(h->pages[i].p, h->pages[i].len)
                       : sy_str_make(NULL, 0);
    sy_text merged = {0};
    sy_metrics_merge(pages, n, &merged);
    for (int k = 0; k < SY_METRICS_HUB_CLIENTS; k++) {
        client *c = &h->clients[k];
        if (c->state != C_WAITING)
            continue;
        if (merged.failed)
            respond(c, 503, "text/plain", "out of memory\n", 14);
        else
            respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", merged.p ? merged.p : "",
                    merged.len);
        if (c->state == C_WRITING)
            write_some(c);
    }
    sy_text_dispose(&merged);
    for (int i = 0; i < h->n; i++)
        sy_text_dispose(&h->pages[i]);
    h->in_flight = 0;
}

static int waiting_for_any(const sy_metrics_hub *h)
{
    for (int i = 0; i < h->n; i++)
        if (h->asked[i])
            return 1;
    return 0;
}

static void start_scrape(sy_metrics_hub *h, double now)
{
    char id[32];
    int len = snprintf(id, sizeof id, "%lu", ++h->seq);
    h->in_flight = 1;
    h->deadline = now + SY_METRICS_HUB_WAIT;
    for (int i = 0; i < h->n; i++)
        h->asked[i] = sy_relay_hub_scrape(h->relay, i, id, (size_t)len) == 0;
    if (!waiting_for_any(h))
        finish(h);
}

static void on_reply(int i, const char *id, size_t idlen, const char *page, size_t n, void *ud)
{
    sy_metrics_hub *h = ud;
    char want[32];
    int len = snprintf(want, sizeof want, "%lu", h->seq);
    /* A late answer to an earlier scrape is dropped. */
    if (!h->in_flight || i >= h->n || !h->asked[i] || idlen != (size_t)len ||
        memcmp(id, want, idlen) != 0)
        return;
    h->asked[i] = 0;
    sy_text_dispose(&h->pages[i]);
    sy_text_add(&h->pages[i], page, n);
    if (!waiting_for_any(h))
        finish(h);
}

/* A complete request head is in c->in: answer it or wait for the workers. */
static void on_request(sy_metrics_hub *h, client *c, double now)
{
    sy_http1_header fields[MAX_FIELDS];
    sy_http1_request req = {.headers = fields};
    sy_http1_limits lim = {MAX_REQUEST, MAX_FIELDS};
    const char *why = NULL;
    ssize_t rc = sy_http1_parse_head(c->in, c->in_len, &lim, &req, &why);
    if (rc == SY_EAGAIN) {
        if (c->in_len == sizeof c->in)
            respond(c, 431, "text/plain", "request too large\n", 18);
        return;
    }
    if (rc < 0) {
        int st = req.status ? req.status : 400;
        respond(c, st, "text/plain", "bad request\n", 12);
        return;
    }
    c->head = sy_str_eq(req.method, "HEAD");
    if (!sy_str_eq(req.path, "/metrics"))
        respond(c, 404, "text/plain", "not found\n", 10);
    else if (!sy_str_eq(req.method, "GET") && !c->head)
        respond(c, 405, "text/plain", "method not allowed\n", 19);
    else {
        c->state = C_WAITING;
        if (!h->in_flight)
            start_scrape(h, now);
    }
}

static void on_readable(sy_metrics_hub *h, client *c, double now)
{
    ssize_t r = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        drop(c);
        return;
    }
    if (r < 0)
        return;
    c->in_len += (size_t)r;
    on_request(h, c, now);
    if (c->state == C_WRITING)
        write_some(c);
}

static void on_accept(sy_metrics_hub *h, double now)
{
    for (int k = 0; k < 16; k++) {
        int fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        client *c = NULL;
        for (int i = 0; i < SY_METRICS_HUB_CLIENTS && !c; i++)
            if (h->clients[i].state == C_FREE)
                c = &h->clients[i];
        if (!c) {
            close(fd); /* busy: the scraper retries */
            continue;
        }
        memset(&c->out, 0, sizeof c->out);
        c->fd = fd;
        c->state = C_READING;
        c->deadline = now + SY_METRICS_HUB_IDLE;
        c->in_len = 0;
        c->head = 0;
    }
}

sy_metrics_hub *sy_metrics_hub_new(const char *host, int port, int n, sy_relay_hub *relay,
                                   char *err, size_t cap)
{
    struct addrinfo hints = {0}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, ps, &hints, &res);
    if (gai != 0) {
        snprintf(err, cap, "cannot resolve %s: %s", host, gai_strerror(gai));
        return NULL;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        snprintf(err, cap, "cannot listen on %s:%d for metrics: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return NULL;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    sy_metrics_hub *h = sy_calloc(1, sizeof *h);
    if (h) {
        h->asked = sy_calloc((size_t)n, 1);
        h->pages = sy_calloc((size_t)n, sizeof *h->pages);
    }
    if (!h || !h->asked || !h->pages) {
        if (h) {
            sy_free(h->asked);
            sy_free(h->pages);
        }
        sy_free(h);
        close(fd);
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    h->fd = fd;
    h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    h->n = n;
    h->relay = relay;
    for (int i = 0; i < SY_METRICS_HUB_CLIENTS; i++)
        h->clients[i].fd = -1;
    sy_relay_hub_set_reply(relay, on_reply, h);
    return h;
}

int sy_metrics_hub_port(const sy_metrics_hub *h)
{
    return h->port;
}

int sy_metrics_hub_poll(sy_metrics_hub *h, struct pollfd *pfd, int max)
{
    int k = 0;
    if (k < max)
        pfd[k++] = (struct pollfd){.fd = h->fd, .events = POLLIN};
    for (int i = 0; i < SY_METRICS_HUB_CLIENTS && k < max; i++) {
        client *c = &h->clients[i];
        short ev = c->state == C_READING ? POLLIN : c->state == C_WRITING ? POLLOUT : 0;
        pfd[k++] = (struct pollfd){.fd = c->state == C_FREE ? -1 : c->fd, .events = ev};
    }
    return k;
}

void sy_metrics_hub_ready(sy_metrics_hub *h, const struct pollfd *pfd, int n, double now)
{
    for (int k = 1; k < n; k++) {
        client *c = &h->clients[k - 1];
        if (c->state == C_FREE || pfd[k].fd != c->fd || !pfd[k].revents)
            continue;
        if (c->state == C_READING)
            on_readable(h, c, now);
        else if (c->state == C_WRITING)
            write_some(c);
        else if (pfd[k].revents & (POLLHUP | POLLERR))
            drop(c);
    }
    if (n > 0 && pfd[0].revents & POLLIN)
        on_accept(h, now);
    for (int i = 0; i < SY_METRICS_HUB_CLIENTS; i++)
        if (h->clients[i].state == C_READING && now > h->clients[i].deadline)
            drop(&h->clients[i]);
    if (h->in_flight && now > h->deadline)
        finish(h); /* with the pages that came */
}

double sy_metrics_hub_wait(const sy_metrics_hub *h, double now, double max)
{
    double w = max;
    if (h->in_flight && h->deadline - now < w)
        w = h->deadline - now;
    for (int i = 0; i < SY_METRICS_HUB_CLIENTS; i++)
        if (h->clients[i].state == C_READING && h->clients[i].deadline - now < w)
            w = h->clients[i].deadline - now;
    return w < 0 ? 0 : w;
}

void sy_metrics_hub_forget(sy_metrics_hub *h)
{
    if (!h)
        return;
    close(h->fd);
    for (int i = 0; i < SY_METRICS_HUB_CLIENTS; i++)
        if (h->clients[i].fd >= 0)
            close(h->clients[i].fd);
}

void sy_metrics_hub_free(sy_metrics_hub *h)
{
    if (!h)
        return;
    for (int i = 0; i < SY_METRICS_HUB_CLIENTS; i++)
        drop(&h->clients[i]);
    for (int i = 0; i < h->n; i++)
        sy_text_dispose(&h->pages[i]);
    close(h->fd);
    sy_free(h->asked);
    sy_free(h->pages);
    sy_free(h);
}
