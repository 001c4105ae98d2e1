/* Topics across processes: passes publishes and interest to the worker relay and to Redis,
 * and what they receive to the binding's deliver callback. */
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "buf.h"
#include "metrics.h"
#include "server.h"
#include "topic_redis.h"
#include "topic_relay.h"
#include "topics.h"

#define DEFAULT_PREFIX "switchyard:"

struct sy_topics {
    sy_topic_deliver_cb deliver;
    void *ud;
    uint64_t origin;       /* this process (or its supervisor's group of workers) */
    sy_topic_relay *relay; /* owned; NULL without a supervisor */
    sy_topic_redis *redis; /* owned; NULL without sy_server_set_redis */
    char *prefix;          /* owned; NULL for DEFAULT_PREFIX */
};

static struct sy_topics *topics_of(sy_server *s)
{
    if (s->topics)
        return s->topics;
    struct sy_topics *t = sy_malloc(sizeof *t);
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    if (getrandom(&t->origin, sizeof t->origin, 0) != (ssize_t)sizeof t->origin)
        t->origin = (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)t;
    s->topics = t;
    return t;
}

/* What a link received: delivered locally, never passed on (each link reaches every other
 * process already). */
/* The supervisor asks for this worker's page. */
static void scrape(sy_text *t, void *ud)
{
    sy_metrics_render(ud, t);
}

static void received(const char *topic, size_t tlen, const char *p, size_t n, int binary, void *ud)
{
    struct sy_topics *t = ud;
    if (t->deliver)
        t->deliver(topic, tlen, p, n, binary, t->ud);
}

void sy_topics_set_deliver(sy_server *s, sy_topic_deliver_cb cb, void *ud)
{
    struct sy_topics *t = topics_of(s);
    if (t) {
        t->deliver = cb;
        t->ud = ud;
    }
}

void sy_topics_published(sy_server *s, const char *topic, size_t tlen, const char *p, size_t n,
                         int binary)
{
    struct sy_topics *t = s->topics;
    if (!t)
        return;
    if (t->relay)
        sy_topic_relay_publish(t->relay, topic, tlen, p, n, binary);
    if (t->redis)
        sy_topic_redis_publish(t->redis, topic, tlen, p, n, binary);
}

void sy_topics_interest(sy_server *s, const char *topic, size_t tlen, int on)
{
    struct sy_topics *t = s->topics;
    if (t && t->redis)
        sy_topic_redis_interest(t->redis, topic, tlen, on);
}

int sy_topics_attach_relay(sy_server *s, int fd, uint64_t group)
{
    struct sy_topics *t = topics_of(s);
    if (!t) {
        close(fd);
        return SY_ENOMEM;
    }
    sy_topic_relay_free(t->relay);
    t->relay = sy_topic_relay_new(s->env.loop, fd, received, t);
    if (!t->relay)
        return SY_ENOMEM;
    sy_topic_relay_set_scrape(t->relay, scrape, s);
    t->origin = group;
    if (t->redis)
        sy_topic_redis_set_origin(t->redis, group);
    return 0;
}

SY_API int sy_server_set_redis_prefix(sy_server *s, const char *prefix)
{
    if (!prefix || strlen(prefix) > 256)
        return sy_server_fail(s, SY_EINVAL, "the Redis channel prefix is at most 256 bytes");
    struct sy_topics *t = topics_of(s);
    if (!t)
        return SY_ENOMEM;
    if (t->redis)
        return sy_server_fail(s, SY_EINVAL, "set the Redis channel prefix before the Redis URL");
    size_t n = strlen(prefix);
    char *copy = sy_malloc(n + 1);
    if (!copy)
        return SY_ENOMEM;
    memcpy(copy, prefix, n + 1);
    sy_free(t->prefix);
    t->prefix = copy;
    return 0;
}

SY_API int sy_server_set_redis(sy_server *s, const char *url)
{
    const char *why = "no URL";
    if (!url || sy_topic_redis_check_url(url, &why) != 0)
        return sy_server_fail(s, SY_EINVAL, "bad Redis URL %s: %s", url ? url : "(null)", why);
    struct sy_topics *t = topics_of(s);
    if (!t)
        return SY_ENOMEM;
    sy_topic_redis_free(t->redis);
    t->redis = sy_topic_redis_new(s->env.loop, url, t->prefix ? t->prefix : DEFAULT_PREFIX,
                                  t->origin, received, t);
    return t->redis ? 0 : SY_ENOMEM;
}

void sy_topics_links(sy_server *s, int *redis, int *relay)
{
    struct sy_topics *t = s->topics;
    if (t && t->redis)
        *redis = sy_topic_redis_up(t->redis);
    if (t && t->relay)
        *relay = sy_topic_relay_up(t->relay);
}

void sy_topics_dispose(sy_server *s)
{
    struct sy_topics *t = s->topics;
    if (!t)
        return;
    sy_topic_relay_free(t->relay);
    sy_topic_redis_free(t->redis);
    sy_free(t->prefix);
    sy_free(t);
    s->topics = NULL;
}
