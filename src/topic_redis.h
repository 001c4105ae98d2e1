/* Topics across machines through Redis pub/sub (hiredis, async, on the server's libev loop):
 * one connection PUBLISHes, one SUBSCRIBEs to the channels (prefix + topic) of the topics with
 * local subscribers. A payload is 16 hex digits of origin id, 't' or 'b' (text, binary), then
 * the message: a process drops what its own origin published (delivered locally already). */
#ifndef SY_TOPIC_REDIS_H
#define SY_TOPIC_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "topics.h"

struct ev_loop;
typedef struct sy_topic_redis sy_topic_redis;

/* Bytes of PUBLISH commands Redis has not answered yet past which publishes are dropped (and
 * counted in a warning). */
#define SY_REDIS_PENDING_MAX (64u << 20)
#define SY_REDIS_BACKOFF_MIN 0.1
#define SY_REDIS_BACKOFF_MAX 5.0

/* Checks url: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]. Returns 0, or -1 with *why set. */
int sy_topic_redis_check_url(const char *url, const char **why);

/* Connects (asynchronously; retried with backoff while Redis is away) to url, which
 * sy_topic_redis_check_url accepted. prefix is copied. NULL when out of memory. */
sy_topic_redis *sy_topic_redis_new(struct ev_loop *loop, const char *url, const char *prefix,
                                   uint64_t origin, sy_topic_deliver_cb deliver, void *ud);
/* The origin id this link stamps on its publishes and drops when they come back. */
void sy_topic_redis_set_origin(sy_topic_redis *r, uint64_t origin);
void sy_topic_redis_publish(sy_topic_redis *r, const char *topic, size_t tlen, const char *p,
                            size_t n, int binary);
/* Subscribes to (on = 1) or unsubscribes from the topic's channel; remembered across
 * reconnects. */
void sy_topic_redis_interest(sy_topic_redis *r, const char *topic, size_t tlen, int on);
void sy_topic_redis_free(sy_topic_redis *r);
/* 1 while both links to Redis (publish, subscribe) are connected, else 0. */
int sy_topic_redis_up(const sy_topic_redis *r);

#endif
