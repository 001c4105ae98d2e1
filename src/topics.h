/* Topics across processes: the Lua binding reports each publish and each topic that gains its
 * first or loses its last local subscriber; this module passes publishes on to the other
 * workers (topic_relay.c) and to other machines (topic_redis.c), and hands what they receive
 * back to the binding through the deliver callback, for local subscribers only. */
#ifndef SY_TOPICS_H
#define SY_TOPICS_H

#include <stddef.h>
#include <stdint.h>

struct sy_server;

/* Delivers a message that another process published to this process's subscribers of topic
 * (tlen bytes). p[0..n) and topic are borrowed for the call. Must not publish onwards. */
typedef void (*sy_topic_deliver_cb)(const char *topic, size_t tlen, const char *p, size_t n,
                                    int binary, void *ud);

/* Sets who delivers (the Lua binding, once its state is open). */
void sy_topics_set_deliver(struct sy_server *s, sy_topic_deliver_cb cb, void *ud);

/* A publish made in this process, delivered locally already: sent on to the other workers and
 * to Redis when they are linked. Never calls the deliver callback; never fails (what cannot
 * be queued is dropped and logged). */
void sy_topics_published(struct sy_server *s, const char *topic, size_t tlen, const char *p,
                         size_t n, int binary);

/* The topic got its first local subscriber (on = 1) or lost its last (on = 0). */
void sy_topics_interest(struct sy_server *s, const char *topic, size_t tlen, int on);

/* For a supervisor's worker: links s to the supervisor over fd (one end of a Unix stream
 * socketpair; takes ownership) and sets the origin id shared by the workers of one supervisor
 * (what Redis uses to drop the messages this group published). Returns 0 or SY_ENOMEM (fd is
 * closed then). */
int sy_topics_attach_relay(struct sy_server *s, int fd, uint64_t group);

/* The links' states for the metrics page: *redis and *relay become 1 (up) or 0 (down), and
 * stay untouched for a link that is not configured. */
void sy_topics_links(struct sy_server *s, int *redis, int *relay);

/* Frees the links of s (sy_server_free). */
void sy_topics_dispose(struct sy_server *s);

#endif
