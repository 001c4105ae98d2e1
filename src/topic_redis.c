/* Topics across machines through Redis pub/sub on hiredis's async API and libev adapter. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libev.h>

#include "buf.h"
#include "log.h"
#include "topic_redis.h"

#define ORIGIN_LEN 16 /* hex digits of the origin id at the front of a payload */

/* A topic with local subscribers: remembered to subscribe again after a reconnect. */
typedef struct interest {
    struct interest *next;
    size_t len;
    char topic[]; /* len bytes */
} interest;

/* One of the two connections. */
typedef struct rlink {
    struct sy_topic_redis *r; /* borrowed: the owner */
    redisAsyncContext *ac;    /* owned by hiredis; NULL while down */
    int up;                   /* connected (AUTH sent when needed) */
    int sub;                  /* 1: the SUBSCRIBE connection */
    int down_logged;          /* the outage was logged: log its end */
    double backoff;
    ev_timer retry;
} rlink;

struct sy_topic_redis {
    struct ev_loop *loop; /* borrowed */
    char host[256];
    int port;
    char *password; /* owned; NULL for none */
    char *username; /* owned; NULL: AUTH for the default user (Redis 6 ACLs otherwise) */
    char *prefix;   /* owned */
    size_t plen;
    uint64_t origin;
    char origin_hex[ORIGIN_LEN + 1];
    sy_topic_deliver_cb deliver;
    void *ud;
    rlink pub, sub;
    interest *topics;      /* owned list */
    size_t pending;        /* bytes of PUBLISH not answered yet */
    unsigned long dropped; /* publishes not sent during this outage or backlog */
    int freeing;
};

int sy_topic_redis_check_url(const char *url, const char **why)
{
    if (strncmp(url, "redis://", 8) != 0)
        return *why = "want redis://[:PASSWORD@]HOST[:PORT][/DB]", -1;
    const char *h = url + 8;
    const char *at = strrchr(h, '@');
    if (at)
        h = at + 1;
    size_t hl = strcspn(h, ":/");
    if (hl == 0 || hl >= 256)
        return *why = "no host", -1;
    const char *rest = h + hl;
    if (*rest == ':') {
        char *end;
        long port = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || port < 1 || port > 65535 || (*end && *end != '/'))
            return *why = "bad port", -1;
        rest = end;
    }
    if (*rest == '/' && rest[1]) {
        char *end;
        long db = strtol(rest + 1, &end, 10);
        if (*end || db < 0)
            return *why = "bad database number", -1;
    }
    return 0;
}

static void parse_url(sy_topic_redis *r, const char *url)
{
    const char *h = url + 8;
    const char *at = strrchr(h, '@');
    if (at) {
        const char *colon = memchr(h, ':', (size_t)(at - h));
        const char *pw = colon ? colon + 1 : h;
        if (colon && colon > h) {
            size_t un = (size_t)(colon - h);
            r->username = sy_malloc(un + 1);
            if (r->username) {
                memcpy(r->username, h, un);
                r->username[un] = 0;
            }
        }
        size_t n = (size_t)(at - pw);
        r->password = sy_malloc(n + 1);
        if (r->password) {
            memcpy(r->password, pw, n);
            r->password[n] = 0;
        }
        h = at + 1;
    }
    size_t hl = strcspn(h, ":/");
    memcpy(r->host, h, hl);
    r->host[hl] = 0;
    r->port = h[hl] == ':' ? atoi(h + hl + 1) : 6379;
}

static void connect_link(rlink *l);

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    connect_link(w->data);
}

/* The link failed (or closed): log once per outage, try again after the backoff. */
static void link_lost(rlink *l, const char *why)
{
    sy_topic_redis *r = l->r;
    l->ac = NULL;
    l->up = 0;
    if (r->freeing || ev_is_active(&l->retry))
        return;
    if (!l->down_logged) {
        sy_log("warn",
               "topics: Redis %s:%d (%s connection): %s; local delivery goes on, retrying "
               "from %.1f s up to every %.0f s",
               r->host, r->port, l->sub ? "subscribe" : "publish", why, SY_REDIS_BACKOFF_MIN,
               SY_REDIS_BACKOFF_MAX);
        l->down_logged = 1;
    }
    l->backoff = l->backoff < SY_REDIS_BACKOFF_MIN       ? SY_REDIS_BACKOFF_MIN
                 : l->backoff * 2 > SY_REDIS_BACKOFF_MAX ? SY_REDIS_BACKOFF_MAX
                                                         : l->backoff * 2;
    ev_timer_set(&l->retry, l->backoff, 0);
    ev_timer_start(r->loop, &l->retry);
}

static void on_message(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    sy_topic_redis *r = privdata;
    const redisReply *m = reply;
    if (!m || r->freeing || m->type != REDIS_REPLY_ARRAY || m->elements != 3 ||
        m->element[0]->type != REDIS_REPLY_STRING || strcmp(m->element[0]->str, "message") != 0)
        return;
    const redisReply *ch = m->element[1], *pl = m->element[2];
    if (ch->type != REDIS_REPLY_STRING || pl->type != REDIS_REPLY_STRING || ch->len < r->plen ||
        pl->len < ORIGIN_LEN + 1 || memcmp(ch->str, r->prefix, r->plen) != 0)
        return;
    if (memcmp(pl->str, r->origin_hex, ORIGIN_LEN) == 0)
        return; /* this process (or its group of workers) published it: delivered already */
    r->deliver(ch->str + r->plen, ch->len - r->plen, pl->str + ORIGIN_LEN + 1,
               pl->len - ORIGIN_LEN - 1, pl->str[ORIGIN_LEN] == 'b', r->ud);
}

static void subscribe(sy_topic_redis *r, const char *topic, size_t len, int on)
{
    char stack[512];
    size_t n = r->plen + len;
    char *ch = n <= sizeof stack ? stack : sy_malloc(n);
    if (!ch)
        return;
    memcpy(ch, r->prefix, r->plen);
    memcpy(ch + r->plen, topic, len);
    if (on)
        redisAsyncCommand(r->sub.ac, on_message, r, "SUBSCRIBE %b", ch, n);
    else
        redisAsyncCommand(r->sub.ac, NULL, NULL, "UNSUBSCRIBE %b", ch, n);
    if (ch != stack)
        sy_free(ch);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rlink *l = ac->data;
    sy_topic_redis *r = l->r;
    if (status != REDIS_OK) {
        link_lost(l, ac->errstr[0] ? ac->errstr : "cannot connect");
        return;
    }
    /* A peer that vanishes without a reset (a dropped NAT entry) is found by TCP keepalive. */
    redisEnableKeepAlive((redisContext *)&ac->c);
    l->up = 1;
    l->backoff = 0;
    if (l->down_logged) {
        sy_log("info", "topics: Redis %s:%d (%s connection) is back", r->host, r->port,
               l->sub ? "subscribe" : "publish");
        l->down_logged = 0;
    }
    if (l->sub)
        for (interest *i = r->topics; i; i = i->next)
            subscribe(r, i->topic, i->len, 1);
    if (!l->sub && r->dropped) {
        sy_log("warn", "topics: %lu publishes did not reach Redis", r->dropped);
        r->dropped = 0;
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rlink *l = ac->data;
    link_lost(l, status == REDIS_OK ? "closed" : ac->errstr[0] ? ac->errstr : "connection lost");
}

static void on_auth(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    const redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        rlink *l = ac->data;
        sy_log("error", "topics: Redis %s:%d refused AUTH: %s", l->r->host, l->r->port, rep->str);
        /* Not up: every command would fail quietly. Drop the link; it retries with backoff. */
        redisAsyncDisconnect(ac);
    }
}

static void connect_link(rlink *l)
{
    sy_topic_redis *r = l->r;
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (!ac) {
        link_lost(l, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        link_lost(l, why);
        return;
    }
    ac->data = l;
    l->ac = ac;
    redisLibevAttach(r->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Queued now, sent first once connected. */
    if (r->password && r->username)
        redisAsyncCommand(ac, on_auth, NULL, "AUTH %s %s", r->username, r->password);
    else if (r->password)
        redisAsyncCommand(ac, on_auth, NULL, "AUTH %s", r->password);
}

sy_topic_redis *sy_topic_redis_new(struct ev_loop *loop, const char *url, const char *prefix,
                                   uint64_t origin, sy_topic_deliver_cb deliver, void *ud)
{
    sy_topic_redis *r = sy_malloc(sizeof *r);
    if (!r)
        return NULL;
    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->plen = strlen(prefix);
    r->prefix = sy_malloc(r->plen + 1);
    if (!r->prefix) {
        sy_free(r);
        return NULL;
    }
    memcpy(r->prefix, prefix, r->plen + 1);
    parse_url(r, url);
    sy_topic_redis_set_origin(r, origin);
    r->deliver = deliver;
    r->ud = ud;
    rlink *ls[2] = {&r->pub, &r->sub};
    for (int i = 0; i < 2; i++) {
        ls[i]->r = r;
        ls[i]->sub = i;
        ev_init(&ls[i]->retry, on_retry);
        ls[i]->retry.data = ls[i];
        connect_link(ls[i]);
    }
    return r;
}

void sy_topic_redis_set_origin(sy_topic_redis *r, uint64_t origin)
{
    r->origin = origin;
    snprintf(r->origin_hex, sizeof r->origin_hex, "%016" PRIx64, origin);
}

static void on_published(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)reply;
    rlink *l = ac->data;
    size_t n = (size_t)(uintptr_t)privdata;
    l->r->pending = l->r->pending > n ? l->r->pending - n : 0;
}

void sy_topic_redis_publish(sy_topic_redis *r, const char *topic, size_t tlen, const char *p,
                            size_t n, int binary)
{
    size_t chn = r->plen + tlen, pln = ORIGIN_LEN + 1 + n;
    if (!r->pub.up || r->pending + chn + pln > SY_REDIS_PENDING_MAX) {
        if (r->dropped++ == 0 && r->pub.up)
            sy_log("warn",
                   "topics: Redis is not keeping up (%zu bytes unanswered); dropping "
                   "publishes for other machines",
                   r->pending);
        return;
    }
    char *buf = sy_malloc(chn + pln);
    if (!buf) {
        r->dropped++;
        return;
    }
    memcpy(buf, r->prefix, r->plen);
    memcpy(buf + r->plen, topic, tlen);
    memcpy(buf + chn, r->origin_hex, ORIGIN_LEN);
    buf[chn + ORIGIN_LEN] = binary ? 'b' : 't';
    memcpy(buf + chn + ORIGIN_LEN + 1, p, n);
    if (redisAsyncCommand(r->pub.ac, on_published, (void *)(uintptr_t)(chn + pln), "PUBLISH %b %b",
                          buf, chn, buf + chn, pln) == REDIS_OK)
        r->pending += chn + pln;
    else
        r->dropped++;
    sy_free(buf);
}

void sy_topic_redis_interest(sy_topic_redis *r, const char *topic, size_t tlen, int on)
{
    interest **pp = &r->topics;
    while (*pp && !((*pp)->len == tlen && memcmp((*pp)->topic, topic, tlen) == 0))
        pp = &(*pp)->next;
    if (on && !*pp) {
        interest *i = sy_malloc(sizeof *i + tlen);
        if (!i)
            return;
        i->next = r->topics;
        i->len = tlen;
        memcpy(i->topic, topic, tlen);
        r->topics = i;
    } else if (!on && *pp) {
        interest *i = *pp;
        *pp = i->next;
        sy_free(i);
    } else {
        return;
    }
    if (r->sub.up)
        subscribe(r, topic, tlen, on);
}

void sy_topic_redis_free(sy_topic_redis *r)
{
    if (!r)
        return;
    r->freeing = 1;
    rlink *ls[2] = {&r->pub, &r->sub};
    for (int i = 0; i < 2; i++) {
        ev_timer_stop(r->loop, &ls[i]->retry);
        if (ls[i]->ac)
            redisAsyncFree(ls[i]->ac);
    }
    while (r->topics) {
        interest *i = r->topics;
        r->topics = i->next;
        sy_free(i);
    }
    sy_free(r->password);
    sy_free(r->username);
    sy_free(r->prefix);
    sy_free(r);
}

int sy_topic_redis_up(const sy_topic_redis *r)
{
    return r->pub.up && r->sub.up;
}
