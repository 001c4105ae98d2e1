/* Listeners, accept, the connection list, deferred work and graceful shutdown on libev. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "access_log.h"
#include "app.h"
#include "metrics.h"
#include "proto.h"
#include "topics.h"

static void on_accept(struct ev_loop *loop, ev_io *w, int revents);
static void on_reaper(struct ev_loop *loop, ev_prepare *w, int revents);
static void on_nudge(struct ev_loop *loop, ev_idle *w, int revents);
static void on_accept_pause(struct ev_loop *loop, ev_timer *w, int revents);
static void on_stop_done(struct ev_loop *loop, ev_timer *w, int revents);
static void on_give_back(struct ev_loop *loop, ev_timer *w, int revents);
static void conn_added(sy_env *e, sy_conn *c);
static void conn_closed(sy_env *e, sy_conn *c);
static void kick(sy_env *e);

/* Seconds between checks for memory to give back while connections live. */
#define GIVE_BACK_EVERY 10.0
/* Growth of free memory (the pool's slabs since it last gave back, glibc's free heap since
 * its low point) worth giving back when the last connection closes, and while connections
 * live (then at least as much as the pool kept). Below it, a server that closes its last
 * connection after every request does no work for it. */
#define GIVE_BACK_IDLE ((size_t)1 << 20)
#define GIVE_BACK_BUSY ((size_t)32 << 20)

SY_API void sy_server_set_user_data(sy_server *s, void *ud)
{
    s->user = ud;
}

SY_API void *sy_server_user_data(const sy_server *s)
{
    return s->user;
}

SY_API int sy_server_set_lua_max_time(sy_server *s, double seconds)
{
    if (!(seconds >= 0 && seconds <= 3600))
        return sy_server_fail(s, SY_EINVAL, "Lua max time must be 0 .. 3600 s");
    s->lua.max_time = seconds;
    s->lua.max_time_set = 1;
    return 0;
}

SY_API int sy_server_set_lua_max_memory(sy_server *s, size_t bytes)
{
    if (bytes != 0 && bytes < 1024 * 1024)
        return sy_server_fail(s, SY_EINVAL, "Lua max memory must be 0 or at least 1 MiB");
    s->lua.max_memory = bytes;
    s->lua.max_memory_set = 1;
    return 0;
}

/* ---- connection ids ------------------------------------------------------------------------ */

/* Gives c an id from a free slot (growing the table by half when none is free). */
static void conn_id_assign(sy_server *s, sy_conn *c)
{
    if (!s->free_slot) {
        uint32_t n = s->nslots ? s->nslots + s->nslots / 2 : 16;
        if (n > UINT32_MAX / 2)
            return;
        if (s->slot_ud) {
            void **u = sy_realloc(s->slot_ud, (size_t)n * sizeof *u);
            if (!u)
                return; /* the connection works without an id */
            memset(u + s->nslots, 0, (size_t)(n - s->nslots) * sizeof *u);
            s->slot_ud = u;
        }
        sy_conn_slot *t = sy_realloc(s->slots, (size_t)n * sizeof *t);
        if (!t)
            return;
        memset(t + s->nslots, 0, (size_t)(n - s->nslots) * sizeof *t);
        for (uint32_t i = s->nslots; i < n; i++)
            t[i].next_free = i + 1 < n ? i + 2 : 0;
        s->free_slot = s->nslots + 1;
        s->slots = t;
        s->nslots = n;
    }
    uint32_t i = s->free_slot - 1;
    sy_conn_slot *sl = &s->slots[i];
    s->free_slot = sl->next_free;
    sl->conn = c;
    c->id = ((uint64_t)sl->gen << 32) | (uint64_t)(i + 1);
}

static sy_conn_slot *conn_slot(const sy_server *s, sy_conn_id id)
{
    uint32_t i = (uint32_t)(id & 0xffffffffu), gen = (uint32_t)(id >> 32);
    if (i == 0 || i > s->nslots)
        return NULL;
    sy_conn_slot *sl = &s->slots[i - 1];
    return sl->conn && sl->gen == gen ? sl : NULL;
}

static void conn_id_release(sy_server *s, sy_conn *c)
{
    sy_conn_slot *sl = c->id ? conn_slot(s, c->id) : NULL;
    if (!sl)
        return;
    sl->conn = NULL;
    if (s->slot_ud)
        s->slot_ud[sl - s->slots] = NULL;
    sl->gen++;
    sl->next_free = s->free_slot;
    s->free_slot = (uint32_t)(sl - s->slots) + 1;
}

sy_conn *sy_server_conn_find(const sy_server *s, sy_conn_id id)
{
    sy_conn_slot *sl = conn_slot(s, id);
    return sl && !sl->conn->closing ? sl->conn : NULL;
}

SY_API int sy_server_conn_set_user_data(sy_server *s, sy_conn_id id, void *ud)
{
    sy_conn_slot *sl = conn_slot(s, id);
    if (!sl)
        return SY_ECLOSED;
    if (!s->slot_ud) {
        if (!ud)
            return 0;
        if (!(s->slot_ud = sy_calloc(s->nslots, sizeof *s->slot_ud)))
            return SY_ENOMEM;
    }
    s->slot_ud[sl - s->slots] = ud;
    return 0;
}

SY_API void *sy_server_conn_user_data(const sy_server *s, sy_conn_id id)
{
    sy_conn_slot *sl = conn_slot(s, id);
    return sl && s->slot_ud ? s->slot_ud[sl - s->slots] : NULL;
}

int sy_server_fail(sy_server *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return code;
}

SY_API const char *sy_server_error(const sy_server *s)
{
    return s->err;
}

sy_server *sy_server_create(struct ev_loop *loop)
{
    sy_server *s = sy_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->env.loop = loop;
    s->env.app = &s->app;
    s->env.conn_added = conn_added;
    s->env.conn_closed = conn_closed;
    s->env.kick = kick;
    s->app.server = s;
    s->metrics_app.ops = &sy_metrics_ops;
    s->metrics_app.server = s;
    s->env.metrics_app = &s->metrics_app;
    s->metrics_listener.fd = -1;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    s->started_at = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    s->env.cfg.max_head = 16 * 1024;
    s->env.cfg.max_headers = 100;
    s->env.cfg.max_body = 1024 * 1024;
    s->env.cfg.header_timeout = 10;
    s->env.cfg.idle_timeout = 60;
    s->env.cfg.high_water = 1024 * 1024;
    s->env.cfg.max_buffered_total = (size_t)256 * 1024 * 1024;
    s->env.cfg.body_timeout = 60;
    s->env.cfg.send_timeout = 60;
    s->lua.max_time = 2;
    s->lua.max_memory = (size_t)1 << 30;
    s->lua.load_time = 10;
    s->env.scratch_headers = sy_calloc(s->env.cfg.max_headers, sizeof *s->env.scratch_headers);
    if (!s->env.scratch_headers) {
        sy_free(s);
        return NULL;
    }
    ev_prepare_init(&s->reaper, on_reaper); /* started by kick */
    ev_idle_init(&s->nudge, on_nudge);
    ev_timer_init(&s->accept_pause, on_accept_pause, 0.1, 0.);
    ev_timer_init(&s->stop_done, on_stop_done, 0., 0.);
    ev_timer_init(&s->give_back, on_give_back, GIVE_BACK_EVERY, GIVE_BACK_EVERY);
    return s;
}

SY_API int sy_server_set_max_head(sy_server *s, size_t bytes)
{
    if (bytes < 256 || bytes > 1024 * 1024)
        return sy_server_fail(s, SY_EINVAL, "max head must be 256 B .. 1 MiB");
    s->env.cfg.max_head = bytes;
    return 0;
}

SY_API int sy_server_set_max_headers(sy_server *s, size_t count)
{
    if (count < 1 || count > 10000)
        return sy_server_fail(s, SY_EINVAL, "max headers must be 1 .. 10000");
    sy_http1_header *h = sy_realloc(s->env.scratch_headers, count * sizeof *h);
    if (!h)
        return SY_ENOMEM;
    s->env.scratch_headers = h;
    s->env.cfg.max_headers = count;
    return 0;
}

SY_API int sy_server_set_max_body(sy_server *s, size_t bytes)
{
    if (bytes > (size_t)1 << 40)
        return sy_server_fail(s, SY_EINVAL, "max body too large");
    s->env.cfg.max_body = bytes;
    return 0;
}

SY_API int sy_server_set_header_timeout(sy_server *s, double seconds)
{
    if (!(seconds > 0 && seconds <= 3600))
        return sy_server_fail(s, SY_EINVAL, "header timeout must be in (0, 3600] s");
    s->env.cfg.header_timeout = seconds;
    return 0;
}

SY_API int sy_server_set_idle_timeout(sy_server *s, double seconds)
{
    if (!(seconds > 0 && seconds <= 86400))
        return sy_server_fail(s, SY_EINVAL, "idle timeout must be in (0, 86400] s");
    s->env.cfg.idle_timeout = seconds;
    return 0;
}

SY_API int sy_server_set_high_water(sy_server *s, size_t bytes)
{
    if (bytes < 1024)
        return sy_server_fail(s, SY_EINVAL, "high-water mark must be at least 1 KiB");
    s->env.cfg.high_water = bytes;
    return 0;
}

SY_API int sy_server_set_max_buffered_total(sy_server *s, size_t bytes)
{
    if (bytes != 0 && bytes < 64 * 1024)
        return sy_server_fail(s, SY_EINVAL,
                              "max buffered total must be 0 (none) or at least 64 KiB");
    s->env.cfg.max_buffered_total = bytes;
    return 0;
}

SY_API int sy_server_set_body_timeout(sy_server *s, double seconds)
{
    if (!(seconds > 0 && seconds <= 86400))
        return sy_server_fail(s, SY_EINVAL, "body timeout must be in (0, 86400] s");
    s->env.cfg.body_timeout = seconds;
    return 0;
}

SY_API int sy_server_set_send_timeout(sy_server *s, double seconds)
{
    if (!(seconds >= 0 && seconds <= 86400))
        return sy_server_fail(s, SY_EINVAL, "send timeout must be in [0, 86400] s");
    s->env.cfg.send_timeout = seconds;
    return 0;
}

SY_API int sy_server_set_load_timeout(sy_server *s, double seconds)
{
    if (!(seconds >= 0 && seconds <= 86400))
        return sy_server_fail(s, SY_EINVAL, "load timeout must be in [0, 86400] s");
    s->lua.load_time = seconds;
    s->lua.load_time_set = 1;
    return 0;
}

SY_API struct lua_State *sy_server_lua(sy_server *s)
{
    return s->L;
}

SY_API double sy_server_lua_max_time(const sy_server *s)
{
    return s->lua.max_time;
}

SY_API size_t sy_server_connection_count(const sy_server *s)
{
    return s->nconns;
}

static int bind_listener(sy_server *s, const char *host, int port, int reuseport, int *out_fd,
                         int *out_port)
{
    struct addrinfo hints = {0}, *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0)
        return sy_server_fail(s, SY_EINVAL, "cannot resolve %s: %s", host, gai_strerror(gai));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        return sy_server_fail(s, SY_ESYS, "socket: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        freeaddrinfo(res);
        close(fd);
        return sy_server_fail(s, SY_ESYS, "cannot listen on %s:%d: %s", host, port, strerror(e));
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *out_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *out_fd = fd;
    return 0;
}

static int add_listener_fd(sy_server *s, const char *host, int fd, int port, int tls)
{
    sy_listener *l = sy_realloc(s->listeners, (size_t)(s->nlisteners + 1) * sizeof *l);
    if (!l)
        return SY_ENOMEM;
    /* Watchers point into the array: re-init those of earlier entries after a move. */
    s->listeners = l;
    for (int i = 0; i < s->nlisteners; i++) {
        int active = ev_is_active(&l[i].io);
        if (active)
            ev_io_stop(s->env.loop, &l[i].io);
        ev_io_init(&l[i].io, on_accept, l[i].fd, EV_READ);
        if (active)
            ev_io_start(s->env.loop, &l[i].io);
    }
    sy_listener *n = &l[s->nlisteners++];
    memset(n, 0, sizeof *n);
    n->fd = fd;
    n->port = port;
    n->tls = tls;
    n->server = s;
    snprintf(n->host, sizeof n->host, "%s", host);
    ev_io_init(&n->io, on_accept, fd, EV_READ);
    if (s->started)
        ev_io_start(s->env.loop, &n->io);
    return 0;
}

static int listen_on(sy_server *s, const char *host, int port, int reuseport, int tls)
{
    if (!host || port < 0 || port > 65535)
        return sy_server_fail(s, SY_EINVAL, "invalid listen address");
    if (tls && !s->env.tls_ctx)
        return sy_server_fail(s, SY_EINVAL, "a TLS listener needs a certificate and key first");
    int fd = -1, bound = 0;
    int rc = bind_listener(s, host, port, reuseport, &fd, &bound);
    if (rc)
        return rc;
    rc = add_listener_fd(s, host, fd, bound, tls);
    if (rc)
        close(fd);
    return rc;
}

SY_API int sy_server_listen(sy_server *s, const char *host, int port, int reuseport)
{
    return listen_on(s, host, port, reuseport, 0);
}

SY_API int sy_server_listen_tls(sy_server *s, const char *host, int port, int reuseport)
{
    return listen_on(s, host, port, reuseport, 1);
}

SY_API int sy_server_listen_metrics(sy_server *s, const char *host, int port)
{
    if (!host || port < 0 || port > 65535)
        return sy_server_fail(s, SY_EINVAL, "invalid metrics address");
    if (s->metrics_listener.fd >= 0)
        return sy_server_fail(s, SY_EINVAL, "the server has a metrics listener already");
    int fd = -1, bound = 0;
    int rc = bind_listener(s, host, port, 0, &fd, &bound);
    if (rc)
        return rc;
    sy_listener *l = &s->metrics_listener;
    l->fd = fd;
    l->port = bound;
    l->server = s;
    snprintf(l->host, sizeof l->host, "%s", host);
    ev_io_init(&l->io, on_accept, fd, EV_READ);
    if (s->started)
        ev_io_start(s->env.loop, &l->io);
    return bound;
}

/* Starts or stops accepting on every listener, the metrics one included. */
static void accepting(sy_server *s, int on)
{
    for (int i = 0; i <= s->nlisteners; i++) {
        sy_listener *l = i < s->nlisteners ? &s->listeners[i] : &s->metrics_listener;
        if (l->fd < 0)
            continue;
        if (on)
            ev_io_start(s->env.loop, &l->io);
        else
            ev_io_stop(s->env.loop, &l->io);
    }
}

SY_API int sy_server_set_tls(sy_server *s, const char *cert_file, const char *key_file)
{
    if (!cert_file || !key_file)
        return sy_server_fail(s, SY_EINVAL, "TLS needs both a certificate and a key file");
    sy_tls_ctx *ctx = NULL;
    /* ALPN offers "h2" first: such connections start HTTP/2 (sy_h2_start_direct). */
    int rc = sy_tls_ctx_new(cert_file, key_file, 1, &ctx, s->err, sizeof s->err);
    if (rc == SY_ENOMEM)
        return sy_server_fail(s, rc, "out of memory");
    if (rc)
        return rc;
    /* Live connections keep their sessions: OpenSSL counts references to the old context. */
    sy_tls_ctx_free(s->env.tls_ctx);
    s->env.tls_ctx = ctx;
    return 0;
}

static int adopt_listener(sy_server *s, const char *host, int fd, int tls)
{
    if (tls && !s->env.tls_ctx)
        return sy_server_fail(s, SY_EINVAL, "a TLS listener needs a certificate and key first");
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return sy_server_fail(s, SY_EINVAL, "not a socket: %s", strerror(errno));
    int port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return add_listener_fd(s, host, fd, port, tls);
}

SY_API int sy_server_listen_fd(sy_server *s, const char *host, int fd)
{
    return adopt_listener(s, host, fd, 0);
}

SY_API int sy_server_listen_tls_fd(sy_server *s, const char *host, int fd)
{
    return adopt_listener(s, host, fd, 1);
}

SY_API int sy_server_listener_is_tls(const sy_server *s, int index)
{
    if (index < 0 || index >= s->nlisteners)
        return SY_EINVAL;
    return s->listeners[index].tls;
}

SY_API int sy_server_listener_count(const sy_server *s)
{
    return s->nlisteners;
}

SY_API int sy_server_listener_port(const sy_server *s, int index)
{
    if (index < 0 || index >= s->nlisteners)
        return SY_EINVAL;
    return s->listeners[index].port;
}

SY_API int sy_server_listener_fd(const sy_server *s, int index)
{
    if (index < 0 || index >= s->nlisteners)
        return SY_EINVAL;
    return s->listeners[index].fd;
}

SY_API int sy_server_listener_url(const sy_server *s, int index, char *buf, size_t cap)
{
    if (index < 0 || index >= s->nlisteners)
        return SY_EINVAL;
    const sy_listener *l = &s->listeners[index];
    int v6 = strchr(l->host, ':') != NULL;
    int n = snprintf(buf, cap, "%s://%s%s%s:%d", l->tls ? "https" : "http", v6 ? "[" : "", l->host,
                     v6 ? "]" : "", l->port);
    return n < 0 || (size_t)n >= cap ? SY_EINVAL : n;
}

SY_API int sy_server_load_app(sy_server *s, const char *path)
{
    if (!s->app.ops || !s->app.ops->load)
        return sy_server_fail(s, SY_EINVAL, "no app implementation to load %s", path);
    return sy_app_load(&s->app, path);
}

void sy_server_set_app(sy_server *s, const sy_app_ops *ops, void *ud)
{
    s->app.ops = ops;
    s->app.ud = ud;
}

SY_API void sy_server_set_ws_handler(sy_server *s, const sy_ws_handler *h, void *ud)
{
    if (h) {
        s->app.host_ws = *h;
        s->app.host_ws_ud = ud;
        s->app.has_host_ws = 1;
    } else {
        memset(&s->app.host_ws, 0, sizeof s->app.host_ws);
        s->app.host_ws_ud = NULL;
        s->app.has_host_ws = 0;
    }
}

SY_API int sy_server_start(sy_server *s)
{
    s->started = 1;
    accepting(s, 1);
    return 0;
}

static void on_accept_pause(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sy_server *s = sy_container_of(w, sy_server, accept_pause);
    if (s->env.stopping)
        return;
    accepting(s, 1);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    sy_listener *l = sy_container_of(w, sy_listener, io);
    sy_server *s = l->server;
    /* Bounded batch: other listeners and connections get their turn. */
    for (int i = 0; i < 64 && !s->env.stopping; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors or memory: the listener stays readable, so watching it
                 * would spin. Pause accepting briefly; closing connections free room. */
                sy_log("warn", "accept: %s; pausing accepts for 100 ms", strerror(errno));
                accepting(s, 0);
                ev_timer_stop(s->env.loop, &s->accept_pause);
                ev_timer_set(&s->accept_pause, 0.1, 0.);
                ev_timer_start(s->env.loop, &s->accept_pause);
            }
            /* EAGAIN: done until the next readiness. */
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        void *st = sy_h1_state_new();
        if (!st) {
            close(fd);
            continue;
        }
        sy_conn *c = sy_conn_new(&s->env, fd, (struct sockaddr *)&ss, &sy_proto_http1, st);
        if (!c) {
            sy_h1_state_free(st);
            continue;
        }
        if (l == &s->metrics_listener)
            c->metrics_app = 1;
        /* Under TLS the header timeout also bounds the handshake. */
        sy_conn_set_timeout(c, s->env.cfg.header_timeout);
        if (l->tls)
            sy_conn_start_tls(c, 12);
    }
}

SY_API int sy_server_adopt(sy_server *s, int fd)
{
    if (fd < 0)
        return sy_server_fail(s, SY_EINVAL, "invalid descriptor");
    if (s->env.stopping) {
        close(fd);
        return sy_server_fail(s, SY_ECLOSED, "the server is stopping");
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        ss.ss_family = AF_UNSPEC; /* a socketpair has no address: remote_addr is "" */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    void *st = sy_h1_state_new();
    if (!st) {
        close(fd);
        return SY_ENOMEM;
    }
    sy_conn *c = sy_conn_new(&s->env, fd, (struct sockaddr *)&ss, &sy_proto_http1, st);
    if (!c) {
        sy_h1_state_free(st);
        return SY_ENOMEM;
    }
    sy_conn_set_timeout(c, s->env.cfg.header_timeout);
    return 0;
}

static void conn_added(sy_env *e, sy_conn *c)
{
    sy_server *s = sy_server_of(e);
    conn_id_assign(s, c);
    c->next = s->conns;
    c->prev = NULL;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (!ev_is_active(&s->give_back))
        ev_timer_start(s->env.loop, &s->give_back);
}

/* The stop is complete: the host hears of it from the loop, never from inside the close chain
 * (or sy_server_shutdown) that got here, so done_cb may free the server. */
static void stop_completed(sy_server *s)
{
    ev_timer_stop(s->env.loop, &s->stop_timer);
    if (s->stop_cb && !ev_is_active(&s->stop_done))
        ev_timer_start(s->env.loop, &s->stop_done);
}

static void on_stop_done(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sy_server *s = sy_container_of(w, sy_server, stop_done);
    void (*cb)(sy_server *, void *) = s->stop_cb;
    s->stop_cb = NULL;
    if (cb)
        cb(s, s->stop_ud); /* last: the host may have freed s */
}

static void conn_closed(sy_env *e, sy_conn *c)
{
    sy_server *s = sy_server_of(e);
    conn_id_release(s, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    s->nconns--;
    if (s->nconns == 0) {
        ev_timer_stop(s->env.loop, &s->give_back);
        s->went_idle = 1;
    }
    c->next_dead = s->dead;
    s->dead = c;
    kick(&s->env);
    if (s->env.stopping && s->nconns == 0 && !s->app_stopping)
        stop_completed(s);
}

/* The reaper runs only while it has work (kick starts it, on_reaper stops it once none is
 * left): an active prepare watcher costs the loop a pass over its pending queue on every
 * iteration. It never keeps the loop running by itself. */
static void reaper_start(sy_server *s)
{
    if (!ev_is_active(&s->reaper)) {
        ev_prepare_start(s->env.loop, &s->reaper);
        ev_unref(s->env.loop);
    }
}

static void reaper_stop(sy_server *s)
{
    if (ev_is_active(&s->reaper)) {
        ev_ref(s->env.loop);
        ev_prepare_stop(s->env.loop, &s->reaper);
    }
}

/* Work was queued for the reaper (a connection scheduled or closed): it runs before the loop
 * next blocks, and the nudge keeps the loop from blocking first. */
static void kick(sy_env *e)
{
    sy_server *s = sy_server_of(e);
    reaper_start(s);
    if (!ev_is_active(&s->nudge))
        ev_idle_start(s->env.loop, &s->nudge);
}

static void on_nudge(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    ev_idle_stop(loop, w);
}

static void run_scheduled(sy_server *s)
{
    /* Take the whole list: work it creates lands on a fresh list for the next round. */
    sy_conn *c = s->env.scheduled;
    s->env.scheduled = NULL;
    while (c) {
        sy_conn *next = c->next_queued;
        c->next_queued = NULL;
        c->pending = 0;
        sy_conn_run_scheduled(c);
        c->refs--; /* taken by sy_conn_schedule */
        c = next;
    }
}

static void reap(sy_server *s)
{
    sy_conn **pp = &s->dead;
    while (*pp) {
        sy_conn *c = *pp;
        if (c->refs > 0 || c->pending) {
            pp = &c->next_dead;
            continue;
        }
        *pp = c->next_dead;
        sy_free(c);
    }
}

/* Returns memory held after a spike to the system: the pool's empty slabs, then glibc's free
 * heap pages (malloc_trim). idle: the last connection just closed; otherwise a periodic check,
 * which acts only on a large amount so a busy server does not give back what it reuses. */
static void give_back(sy_server *s, int idle)
{
    size_t pool_grown = s->env.pool.slab_bytes > s->pool_after_release
                            ? s->env.pool.slab_bytes - s->pool_after_release
                            : 0;
    size_t pool_worth =
        idle ? GIVE_BACK_IDLE
             : (s->pool_after_release > GIVE_BACK_IDLE ? s->pool_after_release : GIVE_BACK_IDLE);
    if (pool_grown >= pool_worth) {
        (void)sy_pool_release_empty(&s->env.pool); /* lowers slab_bytes by what it frees */
        s->pool_after_release = s->env.pool.slab_bytes;
    } else if (s->env.pool.slab_bytes < s->pool_after_release)
        s->pool_after_release = s->env.pool.slab_bytes;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    /* Free chunks stay counted in fordblks after malloc_trim returns their pages, so growth
     * from the low point is memory freed since the last trim. */
    size_t heap_free = mallinfo2().fordblks;
    if (heap_free >= s->heap_free_low + (idle ? GIVE_BACK_IDLE : GIVE_BACK_BUSY)) {
        malloc_trim(0);
        heap_free = mallinfo2().fordblks;
        s->heap_free_low = heap_free;
    } else if (heap_free < s->heap_free_low) {
        s->heap_free_low = heap_free;
    }
#endif
}

static void on_give_back(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    give_back(sy_container_of(w, sy_server, give_back), 0);
}

static void on_reaper(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    sy_server *s = sy_container_of(w, sy_server, reaper);
    if (s->env.scheduled)
        run_scheduled(s);
    reap(s);
    if (s->went_idle && s->nconns == 0 && !s->dead) {
        s->went_idle = 0;
        give_back(s, 1);
    }
    if (s->env.scheduled)
        kick(&s->env);
    else if (!s->dead && !(s->went_idle && s->nconns == 0))
        reaper_stop(s); /* nothing left: kick starts it again */
}

static void on_stop_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sy_server *s = sy_container_of(w, sy_server, stop_timer);
    if (s->app_stopping)
        sy_log("warn", "the grace period ended while app.shutdown was still running");
    s->app_stopping = 0;
    /* Grace is over: close whoever is left. */
    while (s->conns)
        sy_conn_close(s->conns);
    stop_completed(s);
}

static void shutdown_one(sy_conn *c)
{
    if (c->closing)
        return;
    if (c->proto && c->proto->on_shutdown)
        c->proto->on_shutdown(c);
    else
        sy_conn_close_after_write(c);
}

/* Asks every connection to finish. Any of them may close itself, or others (a write fails, a
 * close handler of the app closes another connection), while it is told: the list is copied
 * first, each entry holding a ref so that it stays readable while the walk goes on. */
static void tell_shutdown(sy_server *s)
{
    size_t n = s->nconns, i = 0;
    sy_conn **all = n ? sy_malloc(n * sizeof *all) : NULL;
    if (!all) {
        /* Out of memory: walk the list itself, starting over whenever the next entry was
         * closed meanwhile (telling a connection twice is harmless: each step is idempotent,
         * and the list only shrinks while stopping). */
        sy_conn *c = s->conns;
        while (c) {
            sy_conn *next = c->next;
            if (next)
                next->refs++;
            c->refs++;
            shutdown_one(c);
            c->refs--;
            if (next) {
                next->refs--;
                if (next->closing)
                    next = s->conns;
            }
            c = next;
        }
        return;
    }
    for (sy_conn *c = s->conns; c && i < n; c = c->next) {
        c->refs++;
        all[i++] = c;
    }
    for (size_t k = 0; k < i; k++)
        shutdown_one(all[k]);
    for (size_t k = 0; k < i; k++)
        all[k]->refs--;
    sy_free(all);
}

/* The app's shutdown ended (or had nothing to do): the connections are told to finish. */
static void tell_connections(sy_server *s)
{
    tell_shutdown(s);
    if (s->nconns == 0)
        stop_completed(s);
}

static void on_app_stopped(void *arg)
{
    sy_server *s = arg;
    if (!s->app_stopping)
        return; /* the grace period ended first */
    s->app_stopping = 0;
    tell_connections(s);
}

SY_API void sy_server_shutdown(sy_server *s, double grace, void (*done_cb)(sy_server *, void *),
                               void *ud)
{
    if (s->env.stopping)
        return;
    s->env.stopping = 1;
    s->stop_cb = done_cb;
    s->stop_ud = ud;
    ev_timer_stop(s->env.loop, &s->accept_pause);
    accepting(s, 0);
    for (int i = 0; i < s->nlisteners; i++) {
        close(s->listeners[i].fd);
        s->listeners[i].fd = -1;
    }
    if (s->metrics_listener.fd >= 0) {
        close(s->metrics_listener.fd);
        s->metrics_listener.fd = -1;
    }
    /* The grace period covers the app's own shutdown too. */
    ev_timer_init(&s->stop_timer, on_stop_timer, grace > 0 ? grace : 0.001, 0);
    ev_timer_start(s->env.loop, &s->stop_timer);
    s->app_stopping = 1;
    if (sy_app_shutdown(&s->app, on_app_stopped, s) == 1)
        return;
    s->app_stopping = 0;
    tell_connections(s);
}

SY_API void sy_server_free(sy_server *s)
{
    if (!s)
        return;
    while (s->conns)
        sy_conn_close(s->conns);
    accepting(s, 0);
    for (int i = 0; i < s->nlisteners; i++)
        if (s->listeners[i].fd >= 0)
            close(s->listeners[i].fd);
    if (s->metrics_listener.fd >= 0)
        close(s->metrics_listener.fd);
    ev_timer_stop(s->env.loop, &s->stop_timer);
    ev_timer_stop(s->env.loop, &s->stop_done); /* freed first: done_cb never runs */
    s->stop_cb = NULL;
    ev_timer_stop(s->env.loop, &s->accept_pause);
    ev_timer_stop(s->env.loop, &s->give_back);
    sy_app_close(&s->app);
    sy_topics_dispose(s); /* after the app: closing it drops its topics */
    sy_metrics_dispose(s);
    sy_tls_ctx_free(s->env.tls_ctx);
    sy_ws_env_dispose(&s->env);
    /* After the app is gone nothing holds refs: free every queued connection. */
    sy_conn *c = s->dead;
    while (c) {
        sy_conn *next = c->next_dead;
        sy_free(c);
        c = next;
    }
    s->env.scheduled = NULL;
    reaper_stop(s);
    ev_idle_stop(s->env.loop, &s->nudge);
    sy_free(s->listeners);
    sy_free(s->env.scratch_headers);
    sy_free(s->slots);
    sy_free(s->slot_ud);
    sy_pool_dispose(&s->env.pool);
    sy_access_log_free(s->access_log); /* last: closing connections wrote their lines */
    sy_free(s);
}

/* ---- access log ---------------------------------------------------------------------------- */

static void on_access(sy_env *e, const sy_access *a)
{
    sy_server *s = sy_server_of(e);
    if (s->access_log)
        sy_access_log_write(s->access_log, a, ev_time());
}

SY_API int sy_server_set_access_log(sy_server *s, const char *path)
{
    sy_access_log *l = NULL;
    if (path) {
        l = sy_access_log_open(path);
        if (!l)
            return sy_server_fail(s, SY_ESYS, "cannot open the access log %s: %s", path,
                                  strerror(errno));
    }
    sy_access_log_free(s->access_log);
    s->access_log = l;
    s->env.access = l ? on_access : NULL;
    return 0;
}

SY_API int sy_server_reopen_logs(sy_server *s)
{
    if (!s->access_log || strcmp(sy_access_log_path(s->access_log), "-") == 0)
        return 0;
    const char *path = sy_access_log_path(s->access_log);
    if (sy_access_log_reopen(s->access_log) != 0)
        return sy_server_fail(s, SY_ESYS, "cannot reopen the access log %s: %s", path,
                              strerror(errno));
    sy_log("info", "reopened the access log %s", path);
    return 0;
}
