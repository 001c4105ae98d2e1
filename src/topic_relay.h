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

/* Frame flags besides 1 (binary): the supervisor asks a worker for its metrics page
 * (SY_RELAY_SCRAPE: the topic field carries the request's id, no payload); the worker answers
 * with the page as payload and the same id (SY_RELAY_SCRAPE_REPLY). */
#define SY_RELAY_SCRAPE 2
#define SY_RELAY_SCRAPE_REPLY 4

struct sy_text;

/* ---- worker side (on the worker's libev loop) ---- */
typedef struct sy_topic_relay sy_topic_relay;

/* Renders the worker's metrics page into t. */
typedef void (*sy_relay_scrape_cb)(struct sy_text *t, void *ud);
/* Sets who renders the page the supervisor asks for (none: an empty page). */
void sy_topic_relay_set_scrape(sy_topic_relay *r, sy_relay_scrape_cb cb, void *ud);

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

/* Worker i answered scrape id (idlen bytes) with page[0..n) (both borrowed for the call). */
typedef void (*sy_relay_reply_cb)(int i, const char *id, size_t idlen, const char *page, size_t n,
                                  void *ud);
void sy_relay_hub_set_reply(sy_relay_hub *h, sy_relay_reply_cb cb, void *ud);
/* Asks worker i for its metrics page. Returns 0, or -1 when its link is down or full. */
int sy_relay_hub_scrape(sy_relay_hub *h, int i, const char *id, size_t idlen);

#endif
