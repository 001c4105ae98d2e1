/* HTTP/2 on a connection (RFC 9113, h2c per RFC 7540 3.2): nghttp2's memory API fed from c->in
 * and drained into the conn's output queue; every stream is a request for the app.
 *
 * Extended CONNECT (RFC 8441): a stream whose HEADERS carry :protocol gets a stream connection
 * (sy_conn_new_stream) that reaches app.upgrade like an HTTP/1.1 offer. Once the app accepts,
 * the 200's DATA frames carry that connection's output queue and the stream's DATA fills its
 * input, so WebSocket and raw protocols run on it unchanged. Input is credited to the stream's
 * flow-control window only while the protocol reads (the connection window at once), so a
 * paused stream holds at most one window of input and the others go on. */
#include <nghttp2/nghttp2.h>
#include <stdio.h>

#include "app.h"
#include "proto.h"

#define H2_MAX_STREAMS 100 /* SETTINGS_MAX_CONCURRENT_STREAMS we announce */
#define H2_MAX_GAPS 8      /* skipped client stream id ranges remembered (RFC 9113 5.1.1) */
#define H2_HELD_BODIES 4   /* request bodies held at once per connection: this many max_body */

/* One request header field, as offsets into the stream's header bytes. */
typedef struct h2_field {
    uint32_t name, name_len, value, value_len;
} h2_field;

typedef struct h2_stream {
    int32_t id;
    sy_pool *pool;                 /* borrowed; the server's: this struct and its buffers */
    struct h2_stream *prev, *next; /* the connection's streams that have our state */
    char *hb;                      /* owned; every header byte of the request */
    size_t hb_len, hb_cap;
    h2_field *fields; /* owned; regular fields in order */
    size_t nfields, fields_cap;
    h2_field method, path, authority, scheme; /* pseudo-headers; name_len 0 when absent */
    h2_field protocol;                        /* :protocol of an extended CONNECT */
    struct h2 *owner;                         /* borrowed; the connection's state */
    sy_conn *vc;               /* borrowed; the stream connection of an extended CONNECT until
                                  either side lets go (closed here or sy_conn_stream_detach) */
    sy_http1_header *view;     /* owned (nfields entries); the request as the app sees it */
    size_t unconsumed;         /* tunnel input not yet credited to the stream window */
    struct h2_stream *next_in; /* h->inbox: tunnels with input or an end to deliver */
    char *body;                /* owned; the request body so far */
    size_t body_len, body_cap;
    char *out; /* owned (out_len bytes); the response body being sent */
    size_t out_len, out_off;
    void *res;                  /* borrowed app handle while the response is pending */
    ev_tstamp last_data;        /* when the request last made progress (HEADERS, DATA) */
    ev_tstamp started;          /* when its HEADERS began (for the access log) */
    const char *decision;       /* an extended CONNECT: what app.upgrade decided (static) */
    unsigned refused : 1;       /* answered by the core (413, 431, 408, 503): body discarded */
    unsigned req_done : 1;      /* END_STREAM received */
    unsigned dispatched : 1;    /* handed to the app */
    unsigned answered : 1;      /* a response was submitted */
    unsigned upgraded_body : 1; /* the body came with the h2c upgrade (not in h2->held) */
    unsigned waiting : 1;       /* complete, not yet handed to the app (h2->out_held full) */
    unsigned tunnel : 1;        /* an extended CONNECT (vc was made) */
    unsigned accepted : 1;      /* the 200 went out: DATA carries vc's output */
    unsigned deferred : 1;      /* the DATA source waits for vc's output */
    unsigned ended_local : 1;   /* our END_STREAM is submitted */
    unsigned in_inbox : 1;
    unsigned took : 1; /* vc's output was taken: its drain is due */
} h2_stream;

typedef struct h2 {
    nghttp2_session *session; /* owned; NULL until the protocol starts */
    h2_stream *streams;       /* owned list */
    h2_stream *cur;           /* borrowed; the stream of the last HEADERS begun, or NULL */
    h2_stream *upgraded;      /* owned until on_start: stream 1 of an h2c upgrade */
    uint8_t *settings;        /* owned; the HTTP2-Settings payload of an upgrade */
    size_t settings_len;
    int head_request;     /* the upgraded request was HEAD */
    int in_recv, in_send; /* inside nghttp2: no mem_send, no free */
    int dead;             /* the conn closed while inside nghttp2: free afterwards */
    int drained;          /* on_drain ran during produce */
    int hold_up;          /* h2c: stream 1's DATA waits for the client preface */
    int calm;             /* a header block passed the limits: input is over */
    size_t block_bytes;   /* the header block being decoded: RFC 9113 6.5.2 size */
    size_t block_fields;  /* and its regular fields */
    size_t held;          /* bytes of request bodies held for streams not yet served */
    size_t input_held;    /* held, as charged to the server's input budget */
    size_t out_held;      /* bytes of response bodies held for the client's windows */
    size_t waiting;       /* streams with st->waiting set */
    ev_tstamp idle_at;    /* when the connection is idle for keepalive_timeout */
    ev_tstamp stall_at;   /* when held response bodies made no progress for too long;
                             0: nothing held, or progress since the last produce */
    size_t tunnels;       /* streams with a stream connection */
    h2_stream *inbox;     /* borrowed list (next_in): tunnels to deliver to */
    int took;             /* some tunnel's output was taken in this produce round */
    int again;            /* a tunnel queued output during produce: another round */
    sy_conn *conn;        /* borrowed; the conn that owns this state */
    /* The frame walker (RFC 9113 5.1.1 check that nghttp2 leaves to the application). */
    size_t preface_left;
    uint8_t fh[9];
    size_t fh_have;
    uint32_t skip;
    int32_t max_opened;
    int32_t gap_lo[H2_MAX_GAPS], gap_hi[H2_MAX_GAPS];
    int ngaps;
} h2;

static void stream_free(h2_stream *st)
{
    sy_pool *pool = st->pool;
    sy_pool_put(pool, st->hb, st->hb_cap);
    sy_pool_put(pool, st->fields, st->fields_cap * sizeof(h2_field));
    sy_pool_put(pool, st->body, st->body_cap);
    sy_pool_put(pool, st->out, st->out_len);
    sy_free(st->view);
    sy_pool_put(pool, st, sizeof *st);
}

/* Releases a request body that is no longer needed (served, refused or reset). */
static void drop_body(h2 *h, h2_stream *st)
{
    if (!st->upgraded_body) {
        h->held -= st->body_len;
        sy_env_hold_input(h->conn->env, &h->input_held, h->held); /* a decrease */
    }
    sy_pool_put(st->pool, st->body, st->body_cap);
    st->body = NULL;
    st->body_len = st->body_cap = 0;
}

/* Releases a response body that is sent or no longer wanted. */
static void drop_out(h2 *h, h2_stream *st)
{
    h->out_held -= st->out_len;
    sy_pool_put(st->pool, st->out, st->out_len);
    st->out = NULL;
    st->out_len = st->out_off = 0;
}

static h2_stream *stream_new(h2 *h, int32_t id)
{
    sy_pool *pool = &h->conn->env->pool;
    h->conn->env->stats.h2_streams++;
    h2_stream *st = sy_pool_get(pool, sizeof *st);
    if (!st)
        return NULL;
    memset(st, 0, sizeof *st);
    st->pool = pool;
    st->owner = h;
    st->id = id;
    st->last_data = st->started = ev_now(h->conn->env->loop);
    st->next = h->streams;
    if (h->streams)
        h->streams->prev = st;
    h->streams = st;
    return st;
}

static void stream_unlink(h2 *h, h2_stream *st)
{
    if (h->cur == st)
        h->cur = NULL;
    if (st->prev)
        st->prev->next = st->next;
    else if (h->streams == st)
        h->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->prev = st->next = NULL;
}

/* Grows the pool block *p to hold need elements; a first allocation takes first elements (one
 * allocation for a typical request's header bytes or fields). */
static int grow(sy_pool *pool, void **p, size_t *cap, size_t need, size_t elem, size_t first)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : first;
    while (n < need)
        n *= 2;
    void *q = sy_pool_resize(pool, *p, *cap * elem, n * elem);
    if (!q)
        return SY_ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

/* Appends bytes to the stream's header block; returns the offset or -1 (no memory). */
static int64_t hb_put(h2_stream *st, const void *p, size_t n)
{
    if (grow(st->pool, (void **)&st->hb, &st->hb_cap, st->hb_len + n + 1, 1, 512) != 0)
        return -1;
    memcpy(st->hb + st->hb_len, p, n);
    size_t off = st->hb_len;
    st->hb_len += n;
    return (int64_t)off;
}

static int put_field(h2_stream *st, h2_field *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen)
{
    int64_t no = hb_put(st, name, nlen);
    int64_t vo = no < 0 ? -1 : hb_put(st, value, vlen);
    if (vo < 0)
        return SY_ENOMEM;
    f->name = (uint32_t)no;
    f->name_len = (uint32_t)nlen;
    f->value = (uint32_t)vo;
    f->value_len = (uint32_t)vlen;
    return 0;
}

static sy_str fstr(const h2_stream *st, uint32_t off, uint32_t len)
{
    return sy_str_make(st->hb + off, len);
}

/* ---- output -------------------------------------------------------------------------------- */

static void h2_release(h2 *h);
static void dispatch(sy_conn *c, h2 *h, h2_stream *st);
static void tunnels_sent(h2 *h);

/* Response bodies a connection holds for the client's windows before further complete
 * requests wait to reach the app: the output high-water mark. */
static size_t out_cap(const sy_conn *c)
{
    return c->env->cfg.high_water;
}

/* How long held response bodies may make no progress (the client's windows stay shut, PINGs
 * or not) before the connection ends with GOAWAY: the send timeout, as for output that waits
 * for the socket (conn.c). 0: never. */
static double stall_timeout(const sy_conn *c)
{
    return c->env->cfg.send_timeout;
}

/* When the earliest request body still arriving reaches body_timeout without progress
 * (expire_bodies answers it then); 0: no body is arriving. */
static ev_tstamp body_deadline(const sy_conn *c, const h2 *h)
{
    ev_tstamp at = 0;
    for (const h2_stream *st = h->streams; st; st = st->next) {
        if (st->req_done || st->refused || st->dispatched)
            continue;
        ev_tstamp t = st->last_data + c->env->cfg.body_timeout;
        if (at == 0 || t < at)
            at = t;
    }
    return at;
}

/* Arms the conn's timer for the earliest of the idle, the stall and the body deadlines. */
static void arm_timer(sy_conn *c, h2 *h)
{
    ev_tstamp at = h->idle_at;
    if (h->stall_at && h->stall_at < at)
        at = h->stall_at;
    ev_tstamp body_at = body_deadline(c, h);
    if (body_at && body_at < at)
        at = body_at;
    double left = at - ev_now(c->env->loop);
    sy_conn_set_timeout(c, left > 0.001 ? left : 0.001);
}

/* Something came from the client: the idle deadline moves (the stall deadline does not). */
static void touch_idle(sy_conn *c, h2 *h)
{
    h->idle_at = ev_now(c->env->loop) + c->env->cfg.idle_timeout;
    arm_timer(c, h);
}

/* 1 while the app still owes the answer of a complete request (or has yet to get it). */
static int owed(const h2 *h)
{
    if (h->waiting)
        return 1;
    for (const h2_stream *st = h->streams; st; st = st->next)
        if (st->dispatched && !st->answered)
            return 1;
    return 0;
}

/* Hands waiting requests to the app, oldest first, while the held response bodies are under
 * the cap. The caller checks h->dead afterwards (the app may close the connection). */
static void dispatch_waiting(sy_conn *c, h2 *h)
{
    sy_conn_ref(c);
    h->in_recv = 1; /* responses given now go out in the caller's produce round */
    while (h->waiting && h->out_held < out_cap(c) && !h->dead && !c->closing) {
        h2_stream *first = NULL;
        for (h2_stream *st = h->streams; st; st = st->next)
            if (st->waiting && (!first || st->id < first->id))
                first = st;
        if (!first)
            break;
        first->waiting = 0;
        h->waiting--;
        dispatch(c, h, first);
    }
    h->in_recv = 0;
    sy_conn_unref(c);
}

/* Moves what nghttp2 has to send into the conn's queue until the queue is over the high-water
 * mark (on_drain resumes), then closes the conn when the session is over. */
static void produce(sy_conn *c, h2 *h)
{
    if (h->in_recv || h->in_send || c->closing || !h->session)
        return;
    h->in_send = 1;
    for (;;) {
        h->drained = 0;
        h->again = 0;
        sy_conn_cork(c);
        while (!c->closing && !c->close_after_write) {
            if (sy_conn_buffered(c) > c->env->cfg.high_water) {
                /* Stop reading too: a client that does not read gets no more work done. */
                sy_conn_pause(c);
                break;
            }
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(h->session, &data);
            if (n < 0) {
                sy_log("warn", "http2: %s", nghttp2_strerror((int)n));
                sy_conn_close_after_write(c);
                break;
            }
            if (n == 0)
                break;
            if (sy_conn_write(c, data, (size_t)n) < 0)
                break;
        }
        if (!c->closing)
            sy_conn_uncork(c);
        if (c->closing)
            break;
        if (h->took) {
            /* Tunnels whose output went: their drain handlers (which may queue more). */
            tunnels_sent(h);
            if (h->dead || c->closing)
                break;
        }
        if (h->again && sy_conn_buffered(c) <= c->env->cfg.high_water) {
            h->again = 0;
            continue;
        }
        if (!h->drained && h->waiting && h->out_held < out_cap(c)) {
            /* Room again: requests that waited reach the app, and their answers go out. */
            h->in_send = 0;
            dispatch_waiting(c, h);
            h->in_send = 1;
            if (h->dead || c->closing)
                break;
            continue;
        }
        if (!h->drained)
            break;
    }
    h->in_send = 0;
    if (h->dead) {
        h2_release(h);
        return;
    }
    if (c->closing)
        return;
    /* The stall clock runs while response bodies are held and none of them moved since the
     * last round (read_body clears it on progress); PINGs and WINDOW_UPDATEs of 0 do not count. */
    if (!h->out_held && !h->waiting) {
        if (h->stall_at) {
            h->stall_at = 0;
            arm_timer(c, h);
        }
    } else if (!h->stall_at && stall_timeout(c) > 0) {
        h->stall_at = ev_now(c->env->loop) + stall_timeout(c);
        arm_timer(c, h);
    }
    int want_write = nghttp2_session_want_write(h->session);
    if (!want_write &&
        (h->calm || !nghttp2_session_want_read(h->session) || (c->peer_eof && !owed(h))))
        sy_conn_close_after_write(c);
}

/* ---- the frame walker ---------------------------------------------------------------------- */

/* RFC 9113 5.1.1: a new stream's id must exceed every id the client used before. nghttp2 keeps
 * no record of skipped ids and ignores such HEADERS; this remembers the skipped ranges and
 * reports the offset of a HEADERS frame opening one of them (-1: none in p[0..n)). */
static ssize_t walk_frames(h2 *h, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (h->preface_left) {
            size_t k = n - i < h->preface_left ? n - i : h->preface_left;
            h->preface_left -= k;
            i += k;
            continue;
        }
        if (h->skip) {
            size_t k = n - i < h->skip ? n - i : h->skip;
            h->skip -= (uint32_t)k;
            i += k;
            continue;
        }
        size_t start = i;
        while (h->fh_have < 9 && i < n)
            h->fh[h->fh_have++] = p[i++];
        if (h->fh_have < 9)
            break;
        h->fh_have = 0;
        uint32_t len = (uint32_t)h->fh[0] << 16 | (uint32_t)h->fh[1] << 8 | h->fh[2];
        int32_t id = (int32_t)(((uint32_t)h->fh[5] << 24 | (uint32_t)h->fh[6] << 16 |
                                (uint32_t)h->fh[7] << 8 | h->fh[8]) &
                               0x7fffffffu);
        h->skip = len;
        if (h->fh[3] != NGHTTP2_HEADERS || !(id & 1))
            continue;
        if (id > h->max_opened) {
            if (id > h->max_opened + 2) {
                if (h->ngaps == H2_MAX_GAPS) {
                    /* Forget the oldest range: such ids are then left to nghttp2. */
                    memmove(h->gap_lo, h->gap_lo + 1, (H2_MAX_GAPS - 1) * sizeof h->gap_lo[0]);
                    memmove(h->gap_hi, h->gap_hi + 1, (H2_MAX_GAPS - 1) * sizeof h->gap_hi[0]);
                    h->ngaps--;
                }
                h->gap_lo[h->ngaps] = h->max_opened + 2;
                h->gap_hi[h->ngaps] = id - 2;
                h->ngaps++;
            }
            h->max_opened = id;
            continue;
        }
        for (int g = 0; g < h->ngaps; g++)
            if (id >= h->gap_lo[g] && id <= h->gap_hi[g])
                return (ssize_t)start;
    }
    return -1;
}

/* ---- requests to the app ------------------------------------------------------------------- */

static void respond_core(sy_conn *c, h2 *h, h2_stream *st, int status, const char *why);

static int is_name(const h2_field *f, const h2_stream *st, const char *lower)
{
    return sy_str_eq(fstr(st, f->name, f->name_len), lower);
}

/* Builds the request view of a complete stream and hands it to the app. */
static void dispatch(sy_conn *c, h2 *h, h2_stream *st)
{
    st->dispatched = 1;
    /* RFC 9113 8.2.3: cookie crumbs join with "; " into one field. */
    size_t ncookies = 0;
    for (size_t i = 0; i < st->nfields; i++)
        ncookies += is_name(&st->fields[i], st, "cookie");
    if (ncookies > 1) {
        h2_field joined;
        int64_t no = hb_put(st, "cookie", 6);
        int64_t vo = no < 0 ? -1 : (int64_t)st->hb_len;
        int first = 1;
        size_t kept = 0;
        for (size_t i = 0; i < st->nfields && vo >= 0; i++) {
            h2_field f = st->fields[i];
            if (!is_name(&f, st, "cookie")) {
                st->fields[kept++] = f;
                continue;
            }
            if ((!first && hb_put(st, "; ", 2) < 0) ||
                hb_put(st, st->hb + f.value, f.value_len) < 0)
                vo = -1;
            first = 0;
        }
        if (vo < 0) {
            respond_core(c, h, st, 500, "out of memory");
            return;
        }
        joined.name = (uint32_t)no;
        joined.name_len = 6;
        joined.value = (uint32_t)vo;
        joined.value_len = (uint32_t)(st->hb_len - (size_t)vo);
        st->nfields = kept;
        st->fields[st->nfields++] = joined;
    }
    int has_host = 0;
    for (size_t i = 0; i < st->nfields && !has_host; i++)
        has_host = is_name(&st->fields[i], st, "host");
    int64_t host_name = -1;
    if (!has_host && st->authority.value_len && (host_name = hb_put(st, "host", 4)) < 0) {
        respond_core(c, h, st, 500, "out of memory");
        return;
    }
    size_t n = st->nfields + (host_name >= 0 ? 1 : 0);
    sy_http1_header stack_hdrs[32];
    sy_http1_header *hdrs = n <= SY_COUNTOF(stack_hdrs) ? stack_hdrs : sy_calloc(n, sizeof *hdrs);
    if (!hdrs) {
        respond_core(c, h, st, 500, "out of memory");
        return;
    }
    sy_http1_request req;
    memset(&req, 0, sizeof req);
    req.headers = hdrs;
    for (size_t i = 0; i < st->nfields; i++) {
        hdrs[i].name = fstr(st, st->fields[i].name, st->fields[i].name_len);
        hdrs[i].value = fstr(st, st->fields[i].value, st->fields[i].value_len);
    }
    if (n > st->nfields) {
        /* :authority stands in for Host (RFC 9113 8.3.1). */
        hdrs[n - 1].name = fstr(st, (uint32_t)host_name, 4);
        hdrs[n - 1].value = fstr(st, st->authority.value, st->authority.value_len);
    }
    req.nheaders = n;
    req.method = fstr(st, st->method.value, st->method.value_len);
    if (st->path.name_len) {
        req.target = fstr(st, st->path.value, st->path.value_len);
        req.target_form = SY_TARGET_ORIGIN;
        const char *q = memchr(req.target.p, '?', req.target.len);
        req.path = q ? sy_str_make(req.target.p, (size_t)(q - req.target.p)) : req.target;
        if (q)
            req.query = sy_str_make(q + 1, req.target.len - req.path.len - 1);
        if (sy_str_eq(req.target, "*"))
            req.target_form = SY_TARGET_ASTERISK;
    } else {
        /* CONNECT carries only :authority (RFC 9113 8.5). */
        req.target = req.path = fstr(st, st->authority.value, st->authority.value_len);
        req.target_form = SY_TARGET_AUTHORITY;
    }
    req.version = 20;
    req.content_length = -1;
    req.keep_alive = 1;
    sy_str body = sy_str_make(st->body, st->body_len);
    if (!sy_app_request(c, &req, body, st->id))
        sy_http_not_found(c, st->id);
    if (hdrs != stack_hdrs)
        sy_free(hdrs);
    if (!h->dead)
        drop_body(h, st); /* the app has its own copy */
}

/* ---- responses ----------------------------------------------------------------------------- */

static ssize_t read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    (void)session;
    h2 *h = user_data;
    h2_stream *st = source->ptr;
    /* After the 101 the server may send at once (RFC 7540 3.2), but Debian's curl 7.88 keeps
     * at most 32 KiB behind a 101: stream 1's body waits for the client preface
     * (on_frame_recv resumes it). */
    if (h->hold_up && stream_id == 1)
        return NGHTTP2_ERR_DEFERRED;
    size_t left = st->out_len - st->out_off;
    size_t n = left < length ? left : length;
    if (n) {
        memcpy(buf, st->out + st->out_off, n);
        h->stall_at = 0; /* progress */
    }
    st->out_off += n;
    if (st->out_off == st->out_len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        drop_out(h, st);
    }
    return (ssize_t)n;
}

/* Connection-specific fields never travel in HTTP/2 (RFC 9113 8.2.2). */
static int connection_specific(const char *name, size_t n)
{
    sy_str s = sy_str_make(name, n);
    return sy_str_ieq(s, "connection") || sy_str_ieq(s, "keep-alive") ||
           sy_str_ieq(s, "proxy-connection") || sy_str_ieq(s, "transfer-encoding") ||
           sy_str_ieq(s, "upgrade") || sy_str_ieq(s, "te");
}

static int status_has_body(int status)
{
    return !(status == 204 || status == 304);
}

/* The access log's line for the response to st: status and bytes of body. An extended CONNECT
 * that app.upgrade decided is an upgrade line (tunnel: the accept's 200), as over HTTP/1.1. */
static void log_stream(sy_conn *c, const h2_stream *st, int status, size_t bytes, int tunnel)
{
    if (!c->env->access)
        return;
    sy_access a;
    memset(&a, 0, sizeof a);
    a.event = SY_ACCESS_REQUEST;
    sy_env *env = c->env;
    if (st->tunnel && st->decision) {
        a.event = SY_ACCESS_UPGRADE;
        a.decision = st->decision;
        if (st->vc)
            c = st->vc; /* its id ties the line to the stream's close line */
        a.upgrade = fstr(st, st->protocol.value, st->protocol.value_len);
        if (tunnel)
            a.protocol = a.upgrade;
    }
    a.stream = st->id;
    a.proto = "HTTP/2";
    if (st->method.name_len)
        a.method = fstr(st, st->method.value, st->method.value_len);
    if (st->path.name_len)
        a.target = fstr(st, st->path.value, st->path.value_len);
    a.status = status;
    a.bytes_out = bytes;
    a.started = st->started;
    a.conn = c;
    env->access(env, &a);
}

static ssize_t read_tunnel(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                           uint32_t *data_flags, nghttp2_data_source *source, void *user_data);

/* Submits a response. tunnel: the 200 of an accepted extended CONNECT, whose DATA is the
 * stream connection's output (no content-length, no end of its own). */
static int submit(sy_conn *c, h2 *h, h2_stream *st, int status, sy_str headers, sy_str body,
                  int tunnel)
{
    if (!tunnel) /* the accept's 200 counts as an upgrade, as a 101 does */
        sy_stats_response(&c->env->stats, 1, status);
    /* Lines are "Name: value\r\n" (validated): count them, then point into a lower-cased copy. */
    size_t lines = 0;
    for (size_t i = 0; i + 1 < headers.len; i++)
        if (headers.p[i] == '\r' && headers.p[i + 1] == '\n')
            lines++;
    nghttp2_nv stack_nv[24];
    nghttp2_nv *nv =
        lines + 3 <= SY_COUNTOF(stack_nv) ? stack_nv : sy_malloc((lines + 3) * sizeof *nv);
    char stack_copy[1024];
    char *copy = headers.len <= sizeof stack_copy ? stack_copy : sy_malloc(headers.len);
    if (!nv || !copy) {
        if (nv != stack_nv)
            sy_free(nv);
        if (copy != stack_copy)
            sy_free(copy);
        return SY_ENOMEM;
    }
    /* Formatted by hand: this runs once per response. */
    char st_buf[3] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
                      (char)('0' + status % 10)};
    char cl_buf[24];
    size_t nnv = 0;
#define NV(n, nl, v, vl)                                                                           \
    (nv[nnv].name = (uint8_t *)(n), nv[nnv].namelen = (nl), nv[nnv].value = (uint8_t *)(v),        \
     nv[nnv].valuelen = (vl), nv[nnv].flags = NGHTTP2_NV_FLAG_NONE, nnv++)
    NV(":status", 7, st_buf, 3);
    /* "Date: ...\r\n" from the per-second cache. */
    const char *date = sy_env_date(c->env);
    NV("date", 4, date + 6, strlen(date) - 8);
    int with_body = status_has_body(status) && !tunnel;
    if (with_body) {
        size_t k = sizeof cl_buf, v = body.len;
        do {
            cl_buf[--k] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        NV("content-length", 14, cl_buf + k, sizeof cl_buf - k);
    }
    if (headers.len) {
        memcpy(copy, headers.p, headers.len);
        size_t i = 0;
        while (i < headers.len) {
            char *line = copy + i;
            char *end = memchr(line, '\r', headers.len - i);
            if (!end)
                break;
            char *colon = memchr(line, ':', (size_t)(end - line));
            i = (size_t)(end - copy) + 2;
            if (!colon)
                continue;
            size_t nlen = (size_t)(colon - line);
            for (size_t k = 0; k < nlen; k++)
                if (line[k] >= 'A' && line[k] <= 'Z')
                    line[k] = (char)(line[k] + 32);
            if (connection_specific(line, nlen))
                continue;
            char *v = colon + 1;
            while (v < end && *v == ' ')
                v++;
            NV(line, nlen, v, (size_t)(end - v));
        }
    }
#undef NV
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    int send_body = with_body && body.len &&
                    !sy_str_eq(fstr(st, st->method.value, st->method.value_len), "HEAD");
    int rc = 0;
    if (tunnel) {
        prd.read_callback = read_tunnel;
        send_body = 1;
    } else if (send_body) {
        st->out = sy_pool_get(st->pool, body.len);
        if (!st->out)
            rc = SY_ENOMEM;
        else {
            memcpy(st->out, body.p, body.len);
            st->out_len = body.len;
            st->out_off = 0;
            h->out_held += body.len;
        }
    }
    if (rc == 0 &&
        nghttp2_submit_response(h->session, st->id, nv, nnv, send_body ? &prd : NULL) != 0)
        rc = SY_ECLOSED;
    if (nv != stack_nv)
        sy_free(nv);
    if (copy != stack_copy)
        sy_free(copy);
    if (rc == 0) {
        log_stream(c, st, status, send_body ? body.len : 0, tunnel);
        st->answered = 1;
        st->ended_local = !tunnel;
        /* Whoever answered (the app's res or the core's own 500), the app's handle is done:
         * a copy kept in a timer then answers nil, "closed" instead of reaching a dead conn. */
        if (st->res)
            sy_app_response_dropped(c, st->res);
        st->res = NULL;
    }
    return rc;
}

/* The core's own answer on a stream: a status and a one-line reason. */
static void respond_core(sy_conn *c, h2 *h, h2_stream *st, int status, const char *why)
{
    char body[160];
    int n = snprintf(body, sizeof body, "%s\n", why);
    if (n < 0 || (size_t)n >= sizeof body)
        n = (int)sizeof body - 1;
    st->refused = 1;
    if (st->answered)
        return;
    if (st->res) {
        sy_app_response_dropped(c, st->res);
        st->res = NULL;
    }
    if (submit(c, h, st, status, SY_STR("content-type: text/plain\r\n"),
               sy_str_make(body, (size_t)n), 0) != 0)
        nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
}

static h2 *state_of(sy_conn *c)
{
    if (c->closing || c->proto != &sy_proto_h2)
        return NULL;
    h2 *h = c->proto_state;
    return h && h->session && !h->dead ? h : NULL;
}

int sy_h2_respond(sy_conn *c, int32_t stream_id, void *res, int status, sy_str headers, sy_str body)
{
    h2 *h = state_of(c);
    if (!h)
        return SY_ECLOSED;
    h2_stream *st = nghttp2_session_get_stream_user_data(h->session, stream_id);
    if (!st || st->answered || st->refused || (res && st->res && st->res != res))
        return SY_ECLOSED;
    /* An HTTP/2 response has one final status; interim ones are not offered. */
    if (status < 200 || status > 999)
        return SY_EINVAL;
    int rc = submit(c, h, st, status, headers, body, 0);
    if (rc != 0) {
        /* Nothing was sent: reset the stream so the client is told and nothing stays owed. */
        nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        if (st->res)
            sy_app_response_dropped(c, st->res);
        st->res = NULL;
        st->refused = 1;
    }
    produce(c, h);
    return rc;
}

/* ---- extended CONNECT (RFC 8441) ----------------------------------------------------------- */

static const sy_proto tunnel_wait_proto;
static const sy_conn_sink tunnel_sink;

/* The stream of a stream connection made here, or NULL (another conn, or let go). */
static h2_stream *tunnel_of(const sy_conn *c)
{
    return c->sink == &tunnel_sink ? c->sink_ud : NULL;
}

/* The stream lets go of its stream connection, which closes (a WebSocket not closed by its
 * handshake hears 1006). Nothing happens without one. */
static void close_tunnel(h2 *h, h2_stream *st)
{
    sy_conn *vc = st->vc;
    if (!vc)
        return;
    st->vc = NULL;
    h->tunnels--;
    sy_conn_stream_detach(vc);
    sy_conn_close(vc);
}

/* Credits the tunnel's input to its stream window while its protocol reads. */
static void credit(h2 *h, h2_stream *st)
{
    sy_conn *vc = st->vc;
    if (!st->unconsumed || !vc || vc->read_paused || vc->closing || !st->accepted)
        return;
    (void)nghttp2_session_consume_stream(h->session, st->id, st->unconsumed);
    st->unconsumed = 0;
}

static void inbox_add(h2 *h, h2_stream *st)
{
    if (st->in_inbox)
        return;
    st->in_inbox = 1;
    st->next_in = h->inbox;
    h->inbox = st;
}

static void inbox_remove(h2 *h, h2_stream *st)
{
    if (!st->in_inbox)
        return;
    for (h2_stream **p = &h->inbox; *p; p = &(*p)->next_in)
        if (*p == st) {
            *p = st->next_in;
            break;
        }
    st->in_inbox = 0;
    st->next_in = NULL;
}

/* Hands the tunnels' new input (and their peers' ends) to their protocols, outside nghttp2.
 * in_recv holds produce back meanwhile, so no stream is freed; the caller produces after. */
static void deliver_inbox(h2 *h)
{
    int was = h->in_recv;
    h->in_recv = 1;
    while (h->inbox && !h->dead) {
        h2_stream *st = h->inbox;
        h->inbox = st->next_in;
        st->next_in = NULL;
        st->in_inbox = 0;
        sy_conn *vc = st->vc;
        if (!vc || !st->accepted)
            continue; /* still waiting for the app: input stays in vc->in */
        sy_conn_ref(vc);
        sy_conn_stream_deliver(vc, st->req_done);
        credit(h, st);
        sy_conn_unref(vc);
    }
    h->in_recv = was;
}

/* Runs the drains of the tunnels whose output nghttp2 took (inside produce: in_send holds
 * produce back, so no stream is freed). */
static void tunnels_sent(h2 *h)
{
    h->took = 0;
    for (h2_stream *st = h->streams; st && !h->dead; st = st->next) {
        if (!st->took)
            continue;
        st->took = 0;
        sy_conn *vc = st->vc;
        if (!vc)
            continue;
        sy_conn_ref(vc);
        sy_conn_stream_sent(vc);
        sy_conn_unref(vc);
    }
}

/* The DATA of an accepted tunnel: what its stream connection queued, END_STREAM once it
 * closes after writing (or shuts its side). */
static ssize_t read_tunnel(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                           uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    (void)session;
    (void)stream_id;
    h2 *h = user_data;
    h2_stream *st = source->ptr;
    sy_conn *vc = st->vc;
    if (!vc)
        return NGHTTP2_ERR_DEFERRED; /* closed: its RST_STREAM ends the stream */
    int end = 0;
    size_t n = sy_conn_stream_take(vc, buf, length, &end);
    if (n || end) {
        st->took = 1;
        h->took = 1;
    }
    if (end) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        st->ended_local = 1;
    } else if (n == 0) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static void tunnel_wake(sy_conn *vc, void *ud)
{
    (void)vc;
    h2_stream *st = ud;
    h2 *h = st->owner;
    if (!st->accepted || !h->session || h->dead)
        return;
    if (st->deferred) {
        st->deferred = 0;
        (void)nghttp2_session_resume_data(h->session, st->id);
    }
    if (h->in_send)
        h->again = 1;
    else
        produce(h->conn, h);
}

static void tunnel_resume(sy_conn *vc, void *ud)
{
    (void)vc;
    h2_stream *st = ud;
    h2 *h = st->owner;
    if (!h->session || h->dead)
        return;
    credit(h, st);
    produce(h->conn, h);
}

/* The stream connection closes on its own: a stream not ended both ways is reset with CANCEL
 * (RFC 8441 4: the reset of the tunnelled connection). */
static void tunnel_closed(sy_conn *vc, void *ud)
{
    (void)vc;
    h2_stream *st = ud;
    h2 *h = st->owner;
    st->vc = NULL;
    h->tunnels--;
    inbox_remove(h, st);
    if (!h->session || h->dead)
        return;
    if (!st->ended_local || !st->req_done)
        nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    produce(h->conn, h);
}

static const sy_conn_sink tunnel_sink = {
    .wake = tunnel_wake,
    .resume = tunnel_resume,
    .closed = tunnel_closed,
};

/* Until the app decides, a tunnel's input waits in vc->in (uncredited: one window at most). */
static void wait_on_bytes(sy_conn *c)
{
    (void)c;
}

static void wait_on_shutdown(sy_conn *c)
{
    (void)c; /* the connection's GOAWAY covers it; the app's answer still goes out */
}

static const sy_proto tunnel_wait_proto = {
    .name = "h2-connect",
    .on_bytes = wait_on_bytes,
    .on_shutdown = wait_on_shutdown,
};

/* The request view of an extended CONNECT: :path as the target, :authority as Host, the
 * offer from :protocol ("name" or "name/version", as an Upgrade token). */
static void tunnel_request(h2_stream *st, sy_http1_request *req, sy_upgrade_offer *offer)
{
    memset(req, 0, sizeof *req);
    for (size_t i = 0; i < st->nfields; i++) {
        st->view[i].name = fstr(st, st->fields[i].name, st->fields[i].name_len);
        st->view[i].value = fstr(st, st->fields[i].value, st->fields[i].value_len);
    }
    req->headers = st->view;
    req->nheaders = st->nfields;
    req->method = fstr(st, st->method.value, st->method.value_len);
    req->target = fstr(st, st->path.value, st->path.value_len);
    req->target_form = SY_TARGET_ORIGIN;
    const char *q = req->target.len ? memchr(req->target.p, '?', req->target.len) : NULL;
    req->path = q ? sy_str_make(req->target.p, (size_t)(q - req->target.p)) : req->target;
    if (q)
        req->query = sy_str_make(q + 1, req->target.len - req->path.len - 1);
    req->version = 20;
    req->content_length = -1;
    req->keep_alive = 1;
    sy_str token = fstr(st, st->protocol.value, st->protocol.value_len);
    const char *slash = token.len ? memchr(token.p, '/', token.len) : NULL;
    memset(offer, 0, sizeof *offer);
    offer->name = slash ? sy_str_make(token.p, (size_t)(slash - token.p)) : token;
    if (slash)
        offer->version = sy_str_make(slash + 1, token.len - offer->name.len - 1);
    offer->kind = !slash && sy_str_ieq(offer->name, "websocket") ? SY_UP_WEBSOCKET : SY_UP_OTHER;
}

/* An extended CONNECT arrived (its HEADERS): a stream connection for it, then app.upgrade. */
static void dispatch_tunnel(sy_conn *c, h2 *h, h2_stream *st)
{
    st->dispatched = 1;
    st->tunnel = 1;
    sy_str token = fstr(st, st->protocol.value, st->protocol.value_len);
    if (sy_str_ieq(token, "websocket")) {
        /* RFC 8441 5: the RFC 6455 fields less Key and Accept; the version must be 13. */
        int v13 = 0;
        for (size_t i = 0; i < st->nfields; i++)
            if (is_name(&st->fields[i], st, "sec-websocket-version"))
                v13 = sy_str_eq(fstr(st, st->fields[i].value, st->fields[i].value_len), "13");
        if (!v13) {
            st->refused = 1;
            if (submit(c, h, st, 426,
                       SY_STR("sec-websocket-version: 13\r\ncontent-type: text/plain\r\n"),
                       SY_STR("unsupported Sec-WebSocket-Version (13 expected)\n"), 0) != 0)
                nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, st->id,
                                          NGHTTP2_INTERNAL_ERROR);
            return;
        }
    }
    int has_host = 0;
    for (size_t i = 0; i < st->nfields && !has_host; i++)
        has_host = is_name(&st->fields[i], st, "host");
    if (!has_host && st->authority.value_len) {
        /* :authority stands in for Host (RFC 9113 8.3.1). */
        h2_field host = st->authority;
        int64_t no = hb_put(st, "host", 4);
        if (no < 0 || grow(st->pool, (void **)&st->fields, &st->fields_cap, st->nfields + 1,
                           sizeof(h2_field), 16) != 0) {
            respond_core(c, h, st, 500, "out of memory");
            return;
        }
        host.name = (uint32_t)no;
        host.name_len = 4;
        st->fields[st->nfields++] = host;
    }
    st->view = sy_calloc(st->nfields ? st->nfields : 1, sizeof *st->view);
    sy_conn *vc =
        st->view ? sy_conn_new_stream(c->env, c, &tunnel_wait_proto, st, &tunnel_sink, st) : NULL;
    if (!vc) {
        respond_core(c, h, st, 500, "out of memory");
        return;
    }
    st->vc = vc;
    h->tunnels++;
    sy_http1_request req;
    sy_upgrade_offer offer;
    tunnel_request(st, &req, &offer);
    sy_conn_ref(vc);
    if (!sy_app_dispatch(vc, &req, sy_str_make(NULL, 0), &offer, 1))
        sy_http_not_found(vc, 0);
    sy_conn_unref(vc);
}

/* The app's answer to an extended CONNECT other than an accept (a reject, a 426, or
 * app.request after an ignore): an ordinary response that ends the stream. */
static int tunnel_respond(sy_conn *vc, void *res, int status, sy_str headers, sy_str body)
{
    h2_stream *st = tunnel_of(vc);
    if (!st || vc->closing)
        return SY_ECLOSED;
    h2 *h = st->owner;
    if (!h->session || h->dead || st->answered || st->refused || (res && st->res && st->res != res))
        return SY_ECLOSED;
    if (status < 200 || status > 999)
        return SY_EINVAL;
    int rc = submit(h->conn, h, st, status, headers, body, 0);
    if (rc != 0) {
        nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        if (st->res)
            sy_app_response_dropped(vc, st->res);
        st->res = NULL;
        st->refused = 1;
    }
    produce(h->conn, h);
    return rc;
}

void sy_h2_tunnel_note_decision(sy_conn *vc, const char *decision)
{
    h2_stream *st = tunnel_of(vc);
    if (st && !st->answered)
        st->decision = decision;
}

int sy_h2_tunnel_accept(sy_conn *vc, sy_str headers, const sy_proto *proto, void *state)
{
    h2_stream *st = tunnel_of(vc);
    if (!st || vc->closing)
        return SY_ECLOSED;
    h2 *h = st->owner;
    if (!h->session || h->dead || st->answered || st->refused)
        return SY_ECLOSED;
    int rc = submit(h->conn, h, st, 200, headers, SY_STR(""), 1);
    if (rc != 0)
        return rc;
    st->accepted = 1;
    sy_conn_switch(vc, proto, state);
    if (!vc->closing && st->vc == vc) {
        if (st->req_done) {
            vc->stream_eof = 1;
            sy_conn_schedule(vc);
        }
        credit(h, st);
    }
    produce(h->conn, h);
    return 0;
}

int sy_http_pending_request(sy_conn *c, sy_http1_request *req, sy_str *body,
                            sy_upgrade_offer *offers, size_t *n)
{
    if (!sy_conn_is_stream(c))
        return sy_h1_pending_request(c, req, body, offers, n);
    h2_stream *st = tunnel_of(c);
    if (!st || c->closing || st->answered || st->refused || c->proto != &tunnel_wait_proto)
        return SY_ECLOSED;
    tunnel_request(st, req, &offers[0]);
    *n = 1;
    *body = sy_str_make(NULL, 0);
    return 0;
}

int sy_http_respond(sy_conn *c, int32_t stream_id, void *res, int status, sy_str headers,
                    sy_str body, int flags)
{
    if (c->sink == &tunnel_sink)
        return tunnel_respond(c, res, status, headers, body);
    if (stream_id == 0)
        return sy_h1_respond(c, res, status, headers, body, flags);
    return sy_h2_respond(c, stream_id, res, status, headers, body);
}

void sy_http_not_found(sy_conn *c, int32_t stream_id)
{
    int rc = sy_http_respond(c, stream_id, NULL, 404, SY_STR("Content-Type: text/plain\r\n"),
                             SY_STR("not found\n"), 0);
    if (rc != 0 && rc != SY_ECLOSED && !c->closing)
        sy_conn_close(c);
}

void sy_http_set_response_handle(sy_conn *c, int32_t stream_id, void *res)
{
    if (c->sink == &tunnel_sink) {
        h2_stream *st = tunnel_of(c);
        if (st && !st->answered && !st->refused)
            st->res = res;
        return;
    }
    if (stream_id == 0) {
        sy_h1_set_response_handle(c, res);
        return;
    }
    h2 *h = state_of(c);
    if (!h)
        return;
    h2_stream *st = nghttp2_session_get_stream_user_data(h->session, stream_id);
    if (st && !st->answered && !st->refused)
        st->res = res;
}

/* ---- nghttp2 callbacks --------------------------------------------------------------------- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    h2 *h = ud;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    h->block_bytes = h->block_fields = 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h2_stream *st = stream_new(h, frame->hd.stream_id);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM INTERNAL_ERROR */
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, st);
    h->cur = st;
    return 0;
}

/* A header block (request or trailers) over max_head or max_headers: decoding stops at once,
 * so a block that inflates to far more than it weighs (an HPACK bomb) costs no more than the
 * limit; its stream is answered 431 and, since the rest of the block can no longer be decoded,
 * the connection ends (h2_on_bytes sends GOAWAY ENHANCE_YOUR_CALM). */
static int too_large(h2 *h, int32_t stream_id)
{
    h2_stream *st = nghttp2_session_get_stream_user_data(h->session, stream_id);
    if (st && !st->answered && !st->refused)
        respond_core(h->conn, h, st, 431, "request header fields too large");
    h->calm = 1;
    return NGHTTP2_ERR_CALLBACK_FAILURE; /* nghttp2_session_mem_recv returns at once */
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags;
    h2 *h = ud;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    const sy_config *cfg = &h->conn->env->cfg;
    h->block_bytes += namelen + valuelen + 32;
    if (!namelen || name[0] != ':')
        h->block_fields++;
    if (h->block_bytes > cfg->max_head || h->block_fields > cfg->max_headers)
        return too_large(h, frame->hd.stream_id);
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailer fields are not passed on */
    /* A header block arrives in one piece (RFC 9113 4.3): its stream is the one just begun. */
    h2_stream *st = h->cur && h->cur->id == frame->hd.stream_id
                        ? h->cur
                        : nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!st)
        return 0;
    h2_field *pseudo = NULL;
    if (namelen && name[0] == ':') {
        /* nghttp2 already checked which pseudo-headers may appear (RFC 9113 8.3.1). */
        sy_str n = sy_str_make((const char *)name, namelen);
        pseudo = sy_str_eq(n, ":method")      ? &st->method
                 : sy_str_eq(n, ":path")      ? &st->path
                 : sy_str_eq(n, ":authority") ? &st->authority
                 : sy_str_eq(n, ":scheme")    ? &st->scheme
                 : sy_str_eq(n, ":protocol")  ? &st->protocol
                                              : NULL;
        if (!pseudo)
            return 0;
    } else {
        if (grow(st->pool, (void **)&st->fields, &st->fields_cap, st->nfields + 1, sizeof(h2_field),
                 16) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        pseudo = &st->fields[st->nfields++];
    }
    if (put_field(st, pseudo, name, namelen, value, valuelen) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *ud)
{
    (void)flags;
    h2 *h = ud;
    h2_stream *st = nghttp2_session_get_stream_user_data(session, stream_id);
    if (st && st->tunnel) {
        /* The connection window opens at once; the stream's as its protocol reads (credit). */
        (void)nghttp2_session_consume_connection(session, len);
        if (!st->vc || st->refused)
            return 0;
        if (sy_conn_stream_input(st->vc, data, len) != 0) {
            sy_conn_close(st->vc); /* out of memory: the stream is reset (tunnel_closed) */
            return 0;
        }
        st->unconsumed += len;
        inbox_add(h, st);
        return 0;
    }
    /* Request bodies are counted against their own limits: their windows open as they come. */
    (void)nghttp2_session_consume(session, stream_id, len);
    if (!st || st->refused || st->dispatched)
        return 0;
    size_t max_body = h->conn->env->cfg.max_body;
    if (st->body_len + len > max_body) {
        drop_body(h, st);
        respond_core(h->conn, h, st, 413, "request body too large");
        return 0;
    }
    if (h->held + len > H2_HELD_BODIES * max_body) {
        /* Many bodies arriving at once: this stream is refused before any processing, so the
         * client may retry it (RFC 9113 8.7); memory per connection stays bounded. */
        drop_body(h, st);
        st->refused = 1;
        if (st->res) {
            sy_app_response_dropped(h->conn, st->res);
            st->res = NULL;
        }
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    if (sy_env_hold_input(h->conn->env, &h->input_held, h->held + len) != 0) {
        drop_body(h, st);
        respond_core(h->conn, h, st, 503, "server busy: too much request data buffered");
        return 0;
    }
    st->last_data = ev_now(h->conn->env->loop);
    if (grow(st->pool, (void **)&st->body, &st->body_cap, st->body_len + len + 1, 1, 1024) != 0) {
        drop_body(h, st);
        respond_core(h->conn, h, st, 500, "out of memory");
        return 0;
    }
    memcpy(st->body + st->body_len, data, len);
    st->body_len += len;
    h->held += len; /* as charged above */
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    h2 *h = ud;
    if (frame->hd.type == NGHTTP2_SETTINGS && h->hold_up) {
        /* The client preface is complete (nghttp2 checked that SETTINGS comes first). */
        h->hold_up = 0;
        if (nghttp2_session_find_stream(session, 1))
            (void)nghttp2_session_resume_data(session, 1); /* fails when nothing was deferred */
        return 0;
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    h2_stream *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!st)
        return 0;
    int end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (st->tunnel || (frame->hd.type == NGHTTP2_HEADERS &&
                       frame->headers.cat == NGHTTP2_HCAT_REQUEST && st->protocol.name_len)) {
        if (end) {
            st->req_done = 1;
            if (st->vc)
                inbox_add(h, st);
        }
        if (!st->tunnel)
            dispatch_tunnel(h->conn, h, st);
        return 0;
    }
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        /* A declared body over the limit is refused before it arrives. */
        for (size_t i = 0; i < st->nfields; i++) {
            if (!is_name(&st->fields[i], st, "content-length"))
                continue;
            sy_str v = fstr(st, st->fields[i].value, st->fields[i].value_len);
            uint64_t cl = 0;
            int big = 0;
            for (size_t k = 0; k < v.len; k++) {
                if (cl > (UINT64_MAX - 9) / 10)
                    big = 1;
                else
                    cl = cl * 10 + (uint64_t)(v.p[k] - '0');
            }
            if (big || cl > h->conn->env->cfg.max_body)
                respond_core(h->conn, h, st, 413, "request body too large");
        }
    }
    if (!end)
        return 0;
    st->req_done = 1;
    if (st->refused || st->dispatched || st->waiting)
        return 0;
    if (h->out_held >= out_cap(h->conn)) {
        /* The client's windows hold enough of our answers: this request waits (produce hands
         * it over as they drain), so a client that never opens its window cannot make the
         * server copy one body after another. */
        st->waiting = 1;
        h->waiting++;
        return 0;
    }
    dispatch(h->conn, h, st);
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    (void)ud;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    h2_stream *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    /* Answered before the request ended (413, 431, or the app did not wait): RFC 9113 8.1
     * lets the server stop the rest of the request with RST_STREAM NO_ERROR. */
    /* A tunnel that only shut its side (conn:shutdown) goes on reading. */
    if (st && !st->req_done && !(st->accepted && st->vc && !st->vc->close_after_write))
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *ud)
{
    (void)error_code;
    h2 *h = ud;
    h2_stream *st = nghttp2_session_get_stream_user_data(session, stream_id);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    inbox_remove(h, st);
    /* Ended both ways, or reset by either side: the stream connection closes (a WebSocket
     * not closed by its handshake hears 1006). */
    close_tunnel(h, st);
    if (st->res) {
        /* Reset or cut before the app answered: its res goes dead. */
        void *res = st->res;
        st->res = NULL;
        sy_app_response_dropped(h->conn, res);
    }
    if (st->waiting) {
        st->waiting = 0;
        h->waiting--;
    }
    drop_body(h, st);
    drop_out(h, st);
    stream_unlink(h, st);
    stream_free(st);
    return 0;
}

/* ---- the protocol -------------------------------------------------------------------------- */

static h2 *h2_alloc(sy_conn *c)
{
    h2 *h = sy_calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->conn = c;
    h->preface_left = sizeof SY_H2_PREFACE - 1;
    return h;
}

static void h2_release(h2 *h)
{
    if (h->input_held)
        sy_env_release_input(h->conn->env, &h->input_held);
    if (h->session)
        nghttp2_session_del(h->session);
    while (h->streams) {
        h2_stream *st = h->streams;
        stream_unlink(h, st);
        stream_free(st);
    }
    if (h->upgraded)
        stream_free(h->upgraded);
    sy_free(h->settings);
    sy_free(h);
}

/* nghttp2's blocks (streams, frames, header buffers) come from the server's pool. */
static void *h2_malloc(size_t n, void *ud)
{
    return sy_pool_malloc(ud, n);
}

static void h2_mfree(void *p, void *ud)
{
    sy_pool_free(ud, p);
}

static void *h2_calloc(size_t n, size_t size, void *ud)
{
    return sy_pool_calloc(ud, n, size);
}

static void *h2_realloc(void *p, size_t n, void *ud)
{
    return sy_pool_realloc(ud, p, n);
}

static int make_session(h2 *h)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return SY_ENOMEM;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        return SY_ENOMEM;
    }
    /* Windows open as input is used (on_data_chunk, credit): a paused tunnel holds its own. */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* HTTP messaging checks stay on (pseudo-headers, connection-specific fields,
     * content-length against DATA: RFC 9113 8.1, 8.2). */
    nghttp2_mem mem = {&h->conn->env->pool, h2_malloc, h2_mfree, h2_calloc, h2_realloc};
    int rc = nghttp2_session_server_new3(&h->session, cb, h, opt, &mem); /* copies mem */
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rc != 0) {
        h->session = NULL;
        return SY_ENOMEM;
    }
    return 0;
}

static int submit_settings(h2 *h)
{
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)h->conn->env->cfg.max_head},
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
    };
    /* RFC 8441 3: extended CONNECT only where the app decides upgrades. */
    size_t n = sy_app_has_upgrade(h->conn) ? SY_COUNTOF(iv) : SY_COUNTOF(iv) - 1;
    return nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, iv, n) == 0 ? 0 : SY_ENOMEM;
}

static void h2_on_start(sy_conn *c)
{
    h2 *h = c->proto_state;
    if (!h->session && make_session(h) != 0) {
        sy_conn_close(c);
        return;
    }
    h2_stream *up = h->upgraded;
    if (up) {
        /* RFC 7540 3.2: the upgrading request is stream 1, half-closed (remote). */
        h->upgraded = NULL;
        up->next = h->streams;
        if (h->streams)
            h->streams->prev = up;
        h->streams = up;
        h->max_opened = 1;
        if (nghttp2_session_upgrade2(h->session, h->settings, h->settings_len, h->head_request,
                                     up) != 0) {
            sy_log("warn", "http2: the upgrade's HTTP2-Settings were refused");
            nghttp2_session_terminate_session(h->session, NGHTTP2_PROTOCOL_ERROR);
            produce(c, h);
            sy_conn_close_after_write(c);
            return;
        }
        /* The server side of nghttp2 ignores upgrade2's user data argument. */
        nghttp2_session_set_stream_user_data(h->session, 1, up);
        h->hold_up = 1;
    }
    if (submit_settings(h) != 0) {
        sy_conn_close(c);
        return;
    }
    touch_idle(c, h);
    if (up) {
        up->req_done = 1;
        sy_conn_ref(c);
        h->in_recv = 1; /* responses given during the hook go out below, after the preface */
        dispatch(c, h, up);
        h->in_recv = 0;
        sy_conn_unref(c);
        if (h->dead) {
            h2_release(h);
            return;
        }
    }
    if (c->env->stopping)
        nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(h->session), NGHTTP2_NO_ERROR,
                              NULL, 0);
    produce(c, h);
}

/* Request bodies that made no progress for body_timeout are answered 408 (the rest of the
 * stream is then reset, on_frame_send); PINGs and other streams do not count as progress.
 * Sets *expired when one was. Returns the seconds until the next such deadline, 0: none. */
static double expire_bodies(sy_conn *c, h2 *h, int *expired)
{
    double limit = c->env->cfg.body_timeout, next = 0;
    ev_tstamp now = ev_now(c->env->loop);
    for (h2_stream *st = h->streams; st; st = st->next) {
        if (st->req_done || st->refused || st->dispatched)
            continue;
        double left = st->last_data + limit - now;
        if (left <= 0) {
            drop_body(h, st);
            respond_core(c, h, st, 408, "request body timeout");
            *expired = 1;
        } else if (next == 0 || left < next) {
            next = left;
        }
    }
    return next;
}

static void h2_on_bytes(sy_conn *c)
{
    h2 *h = c->proto_state;
    if (!h->session)
        return;
    size_t len = sy_buf_len(&c->in);
    if (len == 0)
        return;
    if (h->calm) {
        /* After a header block over the limits nothing more is decoded. */
        sy_buf_consume(&c->in, len);
        return;
    }
    const uint8_t *p = (const uint8_t *)sy_buf_data(&c->in);
    ssize_t bad = walk_frames(h, p, len);
    size_t feed = bad >= 0 ? (size_t)bad : len;
    sy_conn_ref(c);
    h->in_recv = 1;
    ssize_t n = feed ? nghttp2_session_mem_recv(h->session, p, feed) : 0;
    h->in_recv = 0;
    sy_conn_unref(c);
    if (h->dead) {
        h2_release(h);
        return;
    }
    if (c->closing)
        return;
    sy_buf_consume(&c->in, len);
    if (h->inbox) {
        sy_conn_ref(c);
        deliver_inbox(h);
        sy_conn_unref(c);
        if (h->dead) {
            h2_release(h);
            return;
        }
        if (c->closing)
            return;
    }
    if (n < 0 && h->calm) {
        /* RFC 9113 11.4 (denial of service): the 431 and what was answered before go out,
         * then the connection closes (produce); streams after this one were not processed. */
        sy_log("info", "http2: a header block over max_head or max_headers: GOAWAY");
        nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(h->session),
                              NGHTTP2_ENHANCE_YOUR_CALM, NULL, 0);
    } else if (n < 0) {
        if (n != NGHTTP2_ERR_BAD_CLIENT_MAGIC)
            sy_log("info", "http2: %s", nghttp2_strerror((int)n));
        /* A bad client preface: nothing HTTP/2 was agreed, so the connection just ends. */
        if (n == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
            sy_conn_close_after_write(c);
            return;
        }
        nghttp2_session_terminate_session(h->session, NGHTTP2_PROTOCOL_ERROR);
    } else if (bad >= 0) {
        nghttp2_session_terminate_session2(h->session,
                                           nghttp2_session_get_last_proc_stream_id(h->session),
                                           NGHTTP2_PROTOCOL_ERROR);
    }
    touch_idle(c, h);
    produce(c, h);
}

/* GOAWAY naming the last stream that will be served (RFC 9113 6.8); open streams finish, then
 * the connection closes. */
static void goaway_gracefully(sy_conn *c)
{
    h2 *h = c->proto_state;
    if (!h->session) {
        sy_conn_close(c);
        return;
    }
    nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h->session), NGHTTP2_NO_ERROR,
                          NULL, 0);
    produce(c, h);
}

/* The client sends nothing more: streams already complete are still answered (as with
 * HTTP/1.1), then the connection closes; incomplete ones can never finish. */
static void h2_on_eof(sy_conn *c)
{
    goaway_gracefully(c);
}

static void h2_on_drain(sy_conn *c)
{
    h2 *h = c->proto_state;
    /* Reading resumes here also when the queue drained inside produce (while flushing): the
     * client's WINDOW_UPDATEs must be read for the rest of the body to go out. */
    sy_conn_resume(c);
    if (h->in_send) {
        h->drained = 1;
        return;
    }
    produce(c, h);
}

static void h2_on_timeout(sy_conn *c)
{
    h2 *h = c->proto_state;
    ev_tstamp now = ev_now(c->env->loop);
    int expired = 0;
    expire_bodies(c, h, &expired);
    if (h->stall_at && now >= h->stall_at) {
        sy_log("info",
               "http2: response bodies made no progress for %g s (the client's windows "
               "stay shut, or it does not read): closing",
               stall_timeout(c));
    } else if (expired || now < h->idle_at) {
        /* A body or stall deadline came first; the idle one is still ahead. */
        arm_timer(c, h);
        produce(c, h);
        return;
    } else if (owed(h) || h->out_held || h->tunnels) {
        /* The app still owes an answer, or one is still going out (and moving, else the stall
         * deadline would have passed): as in HTTP/1.1, a pending response is not cut. */
        touch_idle(c, h);
        return;
    }
    nghttp2_session_terminate_session(h->session, NGHTTP2_NO_ERROR);
    produce(c, h);
    sy_conn_close_after_write(c);
}

/* The server is stopping. */
static void h2_on_shutdown(sy_conn *c)
{
    goaway_gracefully(c);
}

static void h2_on_close(sy_conn *c)
{
    h2 *h = c->proto_state;
    if (!h)
        return;
    c->proto_state = NULL;
    for (h2_stream *st = h->streams; st; st = st->next) {
        close_tunnel(h, st); /* the carrier is gone: 1006 for a WebSocket */
        if (st->res) {
            void *res = st->res;
            st->res = NULL;
            sy_app_response_dropped(c, res);
        }
    }
    if (h->in_recv || h->in_send) {
        h->dead = 1; /* freed when nghttp2 returns */
        return;
    }
    h2_release(h);
}

const sy_proto sy_proto_h2 = {
    .name = "h2",
    .on_bytes = h2_on_bytes,
    .on_eof = h2_on_eof,
    .on_drain = h2_on_drain,
    .on_timeout = h2_on_timeout,
    .on_shutdown = h2_on_shutdown,
    .on_close = h2_on_close,
    .on_start = h2_on_start,
};

int sy_h2_start_direct(sy_conn *c)
{
    if (c->closing)
        return SY_ECLOSED;
    if (c->proto == &sy_proto_http1 && c->proto_state) {
        sy_h1_state_free(c->proto_state);
        c->proto_state = NULL;
    }
    h2 *h = h2_alloc(c);
    if (!h) {
        sy_conn_close(c);
        return SY_ENOMEM;
    }
    sy_conn_switch(c, &sy_proto_h2, h);
    return c->closing ? SY_ECLOSED : 0;
}

void *sy_h2_new_upgrade(sy_conn *c, const sy_http1_request *req, sy_str body, sy_str settings)
{
    h2 *h = h2_alloc(c);
    if (!h)
        return NULL;
    sy_pool *pool = &c->env->pool;
    h2_stream *st = sy_pool_get(pool, sizeof *st);
    h->upgraded = st;
    if (!st)
        goto fail;
    memset(st, 0, sizeof *st);
    st->pool = pool;
    st->id = 1;
    st->started = ev_now(c->env->loop);
    h->head_request = sy_str_eq(req->method, "HEAD");
    ssize_t n = sy_upgrade_base64url_decode(settings, NULL, 0);
    if (n < 0)
        goto fail;
    h->settings = sy_malloc(n ? (size_t)n : 1);
    if (!h->settings)
        goto fail;
    h->settings_len = (size_t)sy_upgrade_base64url_decode(settings, h->settings, (size_t)n);
#define PUT(f, nm, v)                                                                              \
    if (put_field(st, (f), (const uint8_t *)(nm), strlen(nm), (const uint8_t *)(v).p, (v).len))    \
    goto fail
    PUT(&st->method, ":method", req->method);
    PUT(&st->path, ":path", req->target);
    sy_str scheme = SY_STR("http");
    PUT(&st->scheme, ":scheme", scheme);
    /* The HTTP/1.1 fields carry over, less the connection-specific ones and the upgrade's own
     * (RFC 9113 8.2.2), with lower-case names as HTTP/2 has them. */
    for (size_t i = 0; i < req->nheaders; i++) {
        sy_str name = req->headers[i].name;
        if (connection_specific(name.p, name.len) || sy_str_ieq(name, "http2-settings"))
            continue;
        if (grow(st->pool, (void **)&st->fields, &st->fields_cap, st->nfields + 1, sizeof(h2_field),
                 16) != 0)
            goto fail;
        h2_field *f = &st->fields[st->nfields];
        if (put_field(st, f, (const uint8_t *)name.p, name.len,
                      (const uint8_t *)req->headers[i].value.p, req->headers[i].value.len) != 0)
            goto fail;
        for (uint32_t k = 0; k < f->name_len; k++) {
            char *ch = st->hb + f->name + k;
            if (*ch >= 'A' && *ch <= 'Z')
                *ch = (char)(*ch + 32);
        }
        st->nfields++;
    }
#undef PUT
    if (body.len) {
        st->body = sy_pool_get(pool, body.len);
        if (!st->body)
            goto fail;
        memcpy(st->body, body.p, body.len);
        st->body_len = st->body_cap = body.len;
        st->upgraded_body = 1;
    }
    /* The client preface follows the 101; the walker starts counting there. */
    return h;

fail:
    h2_release(h);
    return NULL;
}

void sy_h2_free(void *state)
{
    if (state)
        h2_release(state);
}
