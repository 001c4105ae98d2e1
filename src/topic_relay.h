/* Topics shared by the workers of one supervisor: each worker holds a Unix stream socket to
 * the supervisor; a worker sends every publish up, the supervisor's hub passes it to every
 * other worker, which delivers it to its local subscribers. One stream per worker keeps the
 * order of each publisher. Frames: u32 length of the rest (big-endian), u8 flags (1: binary),
 * u32 topic length, topic, payload. */
#ifndef SY_TOPIC_RELAY_H
#define SY_TOPIC_RELAY_H

#include <stddef.h>

#include "topics.h"

struct ev_loop;

/* Bytes queued on one link, in either direction, past which frames are dropped (and counted
 * in a warning) instead of queued: a process that cannot keep up loses messages rather than
 * the others' memory. */
#define SY_RELAY_QUEUE_MAX (64u << 20)

/* ---- worker side (on the worker's libev loop) ---- */
typedef struct sy_topic_relay sy_topic_relay;

/* Reads and writes fd (takes ownership; made non-blocking) on loop; what other workers
 * published goes to deliver(…, ud). NULL when out of memory (fd closed). */
sy_topic_relay *sy_topic_relay_new(struct ev_loop *loop, int fd, sy_topic_deliver_cb deliver,
                                   void *ud);
/* Queues one publish for the supervisor. */
void sy_topic_relay_publish(sy_topic_relay *r, const char *topic, size_t tlen, const char *p,
                            size_t n, int binary);
void sy_topic_relay_free(sy_topic_relay *r);
/* 1 while the link to the supervisor is up, 0 after it went down. */
int sy_topic_relay_up(const sy_topic_relay *r);

/* ---- supervisor side (poll-driven; the supervisor has no libev loop) ---- */
typedef struct sy_relay_hub sy_relay_hub;

/* A hub for up to n workers. NULL when out of memory. */
sy_relay_hub *sy_relay_hub_new(int n);
/* Worker i's link is fd (takes ownership; made non-blocking). */
void sy_relay_hub_attach(sy_relay_hub *h, int i, int fd);
/* Worker i is gone: closes its link and drops what was queued for it. */
void sy_relay_hub_detach(sy_relay_hub *h, int i);
/* Worker i's fd (-1 when detached) and the poll events the hub waits for on it. */
int sy_relay_hub_fd(const sy_relay_hub *h, int i);
short sy_relay_hub_events(const sy_relay_hub *h, int i);
/* poll reported revents on worker i's fd: reads, relays, writes. A link that fails is
 * detached. */
void sy_relay_hub_ready(sy_relay_hub *h, int i, short revents);
void sy_relay_hub_free(sy_relay_hub *h);

#endif
