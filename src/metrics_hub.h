/* The supervisor's metrics listener (--metrics with --workers): poll-driven like the relay hub.
 * A scrape asks every live worker for its page over its relay link, waits for the answers (at
 * most SY_METRICS_HUB_WAIT seconds) and answers one page merged from them, each sample with a
 * worker="i" label. Requests are read with the core's HTTP/1.1 parser; one response per
 * connection. */
#ifndef SY_METRICS_HUB_H
#define SY_METRICS_HUB_H

#include <poll.h>
#include <stddef.h>

#include "topic_relay.h"

#define SY_METRICS_HUB_WAIT 5.0   /* seconds a scrape waits for the workers' pages */
#define SY_METRICS_HUB_CLIENTS 16 /* connections at once; more are closed at once */
#define SY_METRICS_HUB_IDLE 10.0  /* seconds a connection may take to send its request */

typedef struct sy_metrics_hub sy_metrics_hub;

/* Listens on host:port (0: a free port) for up to n workers whose links are in relay
 * (borrowed; outlives the hub). NULL with a message in err on failure. */
sy_metrics_hub *sy_metrics_hub_new(const char *host, int port, int n, sy_relay_hub *relay,
                                   char *err, size_t cap);
/* The bound port. */
int sy_metrics_hub_port(const sy_metrics_hub *h);
/* Fills at most max pollfds (listener and connections); returns how many. */
int sy_metrics_hub_poll(sy_metrics_hub *h, struct pollfd *pfd, int max);
/* After poll: handles the events of the n pollfds filled by sy_metrics_hub_poll and the
 * deadlines that passed. now: monotonic seconds. */
void sy_metrics_hub_ready(sy_metrics_hub *h, const struct pollfd *pfd, int n, double now);
/* Seconds until the hub's next deadline (at most max). */
double sy_metrics_hub_wait(const sy_metrics_hub *h, double now, double max);
/* Closes the hub's descriptors in a forked child (nothing else is freed; the child exits). */
void sy_metrics_hub_forget(sy_metrics_hub *h);
void sy_metrics_hub_free(sy_metrics_hub *h);

#endif
