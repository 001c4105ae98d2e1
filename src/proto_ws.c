/* WebSocket after the 101 (RFC 6455): frames in, messages to the app, the closing handshake,
 * keepalive pings and backpressure. Frame bytes are unmasked and checked in place in c->in as
 * they arrive, so invalid UTF-8 fails at its first byte and a valid message ahead of a bad
 * frame is delivered before the connection fails. With permessage-deflate (RFC 7692), a
 * compressed message is inflated frame by frame into the message buffer under the message
 * limit, and validated as UTF-8 as it comes out. */
#include "app.h"
#include "pmd.h"
#include "proto.h"
#include "ws.h"

/* The options a connection keeps (of sy_ws_options; the permessage-deflate ones go to pmd;
 * drop_on_backpressure is a bit of wsp). Seconds as float: sub-microsecond precision is not
 * needed for timeouts. Connections given the same options share one copy (limits_get). */
typedef struct ws_limits {
    size_t max_message;
    size_t max_backpressure;
    float idle_timeout, ping_interval, close_timeout;
    uint32_t max_fragments; /* sy_ws_options' value, capped at UINT32_MAX */
} ws_limits;

/* A shared copy of limits, counted, listed per thread (each server's connections live on its
 * loop's thread), the most recently used first. */
typedef struct ws_limits_ref {
    ws_limits o;
    size_t refs;
    struct ws_limits_ref *prev, *next;
} ws_limits_ref;

static _Thread_local ws_limits_ref *limits_list;

/* How many shared copies an accept compares with: an app that gives every connection other
 * options gets copies of their own at a bounded cost per accept. */
#define LIMITS_SCAN 8

/* A counted copy of o (shared with connections given the same), or NULL when out of memory. */
static const ws_limits *limits_get(const ws_limits *o)
{
    ws_limits_ref *r = NULL;
    ws_limits_ref *e = limits_list;
    for (int i = 0; e && i < LIMITS_SCAN; i++, e = e->next) {
        if (memcmp(&e->o, o, sizeof *o) == 0) {
            r = e; /* only a copy that compared equal is shared */
            break;
        }
    }
    if (r && r->refs < SIZE_MAX) {
        r->refs++;
        if (r == limits_list)
            return &r->o;
        r->prev->next = r->next; /* to the front */
        if (r->next)
            r->next->prev = r->prev;
    } else {
        if (!(r = sy_malloc(sizeof *r)))
            return NULL;
        r->o = *o;
        r->refs = 1;
    }
    r->prev = NULL;
    r->next = limits_list;
    if (limits_list)
        limits_list->prev = r;
    limits_list = r;
    return &r->o;
}

static void limits_put(const ws_limits *o)
{
    if (!o)
        return;
    ws_limits_ref *r = sy_container_of(o, ws_limits_ref, o);
    if (--r->refs)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else
        limits_list = r->next;
    if (r->next)
        r->next->prev = r->prev;
    sy_free(r);
}

/* The state of one WebSocket: every idle one holds it, inside its sy_conn when it fits (the
 * conn's area), so it is laid out without holes and its rarely used parts are allocated on
 * use (pmd, pong, log). */
typedef struct wsp {
    void *handle;            /* app handle; NULL once the app was told of the close */
    const ws_limits *o;      /* counted (limits_get) */
    struct ws_rx *rx;        /* the frame and message being read: during ws_on_bytes on its
                              * stack unless rx_owned; owned once a frame or message spans
                              * reads, freed by the timer once the connection is between
                              * messages again; else NULL */
    ev_tstamp last_rx;       /* last time a byte came from the peer */
    struct pmd_state *pmd;   /* owned; NULL without permessage-deflate */
    struct ws_pong *pong;    /* owned; the pong held while the queue is over the mark, or NULL */
    sy_access_counts *log;   /* owned; messages, bytes and close codes for the access log,
                              * made at the open when there is one (else NULL) */
    unsigned msg_opcode : 4; /* TEXT/BINARY of a fragmented message in progress, else 0 */
    unsigned have_hdr : 1;   /* rx->hdr holds the frame being read */
    unsigned frame_text : 1; /* the current frame's payload is text to validate */
    unsigned close_sent : 1;
    unsigned close_received : 1;
    unsigned failed : 1; /* a protocol error was answered: input is ignored */
    unsigned ping_outstanding : 1;
    unsigned msg_compressed : 1; /* the message in progress came with RSV1 */
    unsigned started : 1;        /* on_start ran: the app heard open, so it hears close */
    unsigned pong_paused : 1;    /* reading stopped until the held pong can be queued */
    unsigned drop_on_backpressure : 1;
    unsigned in_conn : 1;  /* lives in its conn's area: sy_ws_free does not free it */
    unsigned rx_owned : 1; /* rx was allocated (not ws_on_bytes' own) */
} wsp;

/* What a frame or message that spans reads keeps between them. A frame that arrives whole in
 * one read (the common case) is read with this on ws_on_bytes' stack: no allocation per
 * message, and none held by an idle WebSocket. */
typedef struct ws_rx {
    sy_ws_header hdr;    /* the frame being read, valid when have_hdr */
    uint64_t frame_done; /* payload bytes of this frame already unmasked and checked */
    sy_buf msg;          /* fragments of the message in progress */
    ev_tstamp data_rx;   /* last time the message in progress grew (or began): pings do not
                          * keep a stalled message alive */
    size_t input_held;   /* the partial message, as charged to the server's input budget */
    uint64_t wire_len;   /* compressed bytes of the message in progress */
    uint32_t fragments;  /* of the message in progress (max_fragments fits 32 bits) */
    sy_utf8 utf8;        /* the text message in progress */
} ws_rx;

/* An idle WebSocket's state takes no allocation of its own, and the area is no larger. */
_Static_assert(sizeof(wsp) <= SY_CONN_AREA && sizeof(wsp) + 8 > SY_CONN_AREA,
               "wsp must fit sy_conn's area exactly");

/* The payload of the most recent ping, answered once the output queue drains. */
typedef struct ws_pong {
    size_t len;
    uint8_t data[125];
} ws_pong;

/* permessage-deflate for one connection. Streams exist only where a context outlives a
 * message; without context takeover the server's shared streams do the work. */
typedef struct pmd_state {
    sy_pmd_params p;
    size_t threshold;
    double ratio;     /* max_inflate_ratio; 0: no limit */
    uint64_t credit;  /* bytes this connection may still inflate */
    int mem_level;    /* of our own compressor (context takeover only) */
    sy_deflater *def; /* owned; made on first use, with server context takeover only */
    sy_inflater *inf; /* owned; made on first use: with client context takeover, or for
                       * a fragmented message (freed at its end) */
} pmd_state;

/* The server's shared streams (server->env.ws_pmd): compressors by window bits, all reset after
 * each message, and one inflater with the largest window for single-frame messages. */
typedef struct pmd_shared {
    sy_deflater *def[16];
    sy_inflater *inf;
} pmd_shared;

/* Compression level: zlib's default (6) balances ratio and speed for text. */
#define PMD_LEVEL (-1)

void sy_ws_pmd_config(int preset, sy_pmd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->server_window_bits = 15;
    cfg->client_window_bits = 15;
    if (preset == SY_PMD_SHARED) {
        cfg->server_no_context_takeover = 1;
        cfg->client_no_context_takeover = 1;
    } else if (preset == SY_PMD_SMALL) {
        cfg->server_window_bits = 11;
        cfg->client_window_bits = 11;
    }
}

static pmd_shared *shared_of(sy_env *e)
{
    if (!e->ws_pmd)
        e->ws_pmd = sy_calloc(1, sizeof(pmd_shared));
    return e->ws_pmd;
}

void sy_ws_env_dispose(sy_env *e)
{
    pmd_shared *sh = e->ws_pmd;
    if (!sh)
        return;
    for (int i = 0; i < 16; i++)
        sy_deflater_free(sh->def[i]);
    sy_inflater_free(sh->inf);
    sy_free(sh);
    e->ws_pmd = NULL;
}

static sy_deflater *shared_deflater(sy_env *e, int bits)
{
    pmd_shared *sh = shared_of(e);
    if (!sh)
        return NULL;
    if (!sh->def[bits])
        sh->def[bits] = sy_deflater_new(bits, 8, PMD_LEVEL);
    return sh->def[bits];
}

static sy_inflater *shared_inflater(sy_env *e)
{
    pmd_shared *sh = shared_of(e);
    if (!sh)
        return NULL;
    if (!sh->inf)
        sh->inf = sy_inflater_new(15);
    return sh->inf;
}

static void pmd_free(pmd_state *z)
{
    if (!z)
        return;
    sy_deflater_free(z->def);
    sy_inflater_free(z->inf);
    sy_free(z);
}

/* The compressor for a message on c: shared without server context takeover, else the
 * connection's own. NULL when out of memory or when the agreed window is below zlib's. */
static sy_deflater *deflater_for(sy_conn *c, pmd_state *z)
{
    int bits = z->p.server_window_bits;
    if (bits < 9)
        return NULL;
    if (z->p.server_no_context_takeover)
        return shared_deflater(c->env, bits);
    if (!z->def)
        z->def = sy_deflater_new(bits, z->mem_level, PMD_LEVEL);
    return z->def;
}

/* Compresses one message into a new chunk holding one frame with RSV1 (RFC 7692 6), starting
 * at *off. NULL when compression fails or does not make it smaller; the stream forgets the
 * message then, so sending it uncompressed keeps both sides in step. */
static sy_chunk *deflate_frame(sy_deflater *d, int reset, int opcode, const void *p, size_t n,
                               size_t *off)
{
    size_t bound = sy_deflater_bound(d, n);
    sy_chunk *ch = sy_chunk_new(SY_WS_MAX_HEADER + bound);
    if (!ch) {
        sy_deflater_reset(d);
        return NULL;
    }
    uint8_t *body = (uint8_t *)ch->data + SY_WS_MAX_HEADER;
    ssize_t len = sy_deflater_run(d, p, n, reset, body, bound);
    if (len < 0 || (size_t)len >= n) {
        if (len >= 0 && !reset)
            sy_deflater_reset(d);
        sy_chunk_release(ch);
        return NULL;
    }
    uint8_t hdr[SY_WS_MAX_HEADER];
    size_t hl = sy_ws_encode_header(hdr, 1, 4, opcode, (uint64_t)len);
    *off = SY_WS_MAX_HEADER - hl;
    memcpy(ch->data + *off, hdr, hl);
    ch->len = SY_WS_MAX_HEADER + (size_t)len;
    if (ch->cap - ch->len > 4096) {
        /* The bound is generous; a queued frame should not hold on to it. */
        sy_chunk *small = sy_realloc(ch, sizeof *ch + ch->len);
        if (small) {
            ch = small;
            ch->cap = ch->len;
        }
    }
    return ch;
}

void sy_ws_default_options(sy_ws_options *o)
{
    o->max_message = 1024 * 1024;
    o->max_fragments = 100000;
    o->idle_timeout = 120;
    o->ping_interval = 30;
    o->max_backpressure = 16 * 1024 * 1024;
    o->drop_on_backpressure = 0;
    o->close_timeout = 5;
    o->compression = SY_PMD_OFF;
    o->compression_threshold = 64;
    o->max_inflate_ratio = 100;
    o->pmd = 0;
    memset(&o->pmd_params, 0, sizeof o->pmd_params);
}

void *sy_ws_new(sy_conn *c, void *handle, const sy_ws_options *o)
{
    wsp *w;
    if (!c->area_busy) {
        c->area_busy = 1;
        w = (wsp *)(void *)c->area;
        memset(w, 0, sizeof *w);
        w->in_conn = 1;
    } else if (!(w = sy_calloc(1, sizeof *w))) {
        return NULL;
    }
    w->handle = handle;
    ws_limits lim;
    memset(&lim, 0, sizeof lim); /* compared whole: no stray bytes */
    lim.max_message = o->max_message;
    lim.max_fragments = o->max_fragments > UINT32_MAX ? UINT32_MAX : (uint32_t)o->max_fragments;
    lim.max_backpressure = o->max_backpressure;
    lim.idle_timeout = (float)o->idle_timeout;
    lim.ping_interval = (float)o->ping_interval;
    lim.close_timeout = (float)o->close_timeout;
    if (!(w->o = limits_get(&lim))) {
        sy_ws_free(w);
        return NULL;
    }
    w->drop_on_backpressure = o->drop_on_backpressure != 0;
    if (o->pmd) {
        w->pmd = sy_calloc(1, sizeof *w->pmd);
        if (!w->pmd) {
            sy_ws_free(w);
            return NULL;
        }
        w->pmd->p = o->pmd_params;
        w->pmd->threshold = o->compression_threshold;
        w->pmd->ratio = o->max_inflate_ratio;
        w->pmd->credit = SY_WS_INFLATE_FLOOR;
        w->pmd->mem_level = o->compression == SY_PMD_SMALL ? 4 : 8;
    }
    return w;
}

/* Frees what the message in progress holds, and rx itself when it was allocated. The input
 * budget it was charged is released by the caller. */
static void rx_drop(wsp *w)
{
    ws_rx *rx = w->rx;
    if (!rx)
        return;
    sy_buf_dispose(&rx->msg);
    if (w->rx_owned)
        sy_free(rx);
    w->rx = NULL;
    w->rx_owned = 0;
}

void sy_ws_free(void *state)
{
    wsp *w = state;
    if (!w)
        return;
    rx_drop(w);
    limits_put(w->o);
    pmd_free(w->pmd);
    sy_free(w->pong);
    sy_free(w->log);
    if (w->in_conn)
        sy_container_of(w, sy_conn, area)->area_busy = 0;
    else
        sy_free(w);
}

static wsp *state_of(const sy_conn *c)
{
    return c->proto == &sy_proto_ws ? c->proto_state : NULL;
}

int sy_ws_open(const sy_conn *c)
{
    const wsp *w = state_of(c);
    return w && !c->closing && !w->close_sent;
}

void *sy_ws_handle(const sy_conn *c)
{
    const wsp *w = state_of(c);
    return w ? w->handle : NULL;
}

void sy_ws_set_handle(sy_conn *c, void *old, void *handle)
{
    wsp *w = state_of(c);
    if (w && w->handle == old && old)
        w->handle = handle;
}

/* Tells the app once; the handle is detached afterwards. */
static void notify_close(sy_conn *c, wsp *w, int code, sy_str reason)
{
    void *h = w->handle;
    if (!h)
        return;
    w->handle = NULL;
    sy_app_ws_close(c, h, code, reason);
}

static int write_frame(sy_conn *c, int opcode, const void *p, size_t n)
{
    uint8_t hdr[SY_WS_MAX_HEADER];
    size_t hl = sy_ws_encode_header(hdr, 1, 0, opcode, n);
    return sy_conn_write2(c, hdr, hl, p, n);
}

static void send_close_frame(sy_conn *c, wsp *w, int code, sy_str reason)
{
    if (w->close_sent)
        return;
    w->close_sent = 1;
    if (w->log)
        w->log->close_sent = code ? code : 1005;
    sy_stats_close_code(&c->env->stats, code, 1);
    uint8_t payload[125];
    size_t n = 0;
    if (code) {
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        n = 2;
        size_t r = reason.len > 123 ? 123 : reason.len;
        if (r)
            memcpy(payload + 2, reason.p, r);
        n += r;
    }
    write_frame(c, SY_WS_CLOSE, payload, n);
}

/* Fails the connection (RFC 6455 7.1.7): close frame with code, no more reading, TCP closes
 * once it is written. */
static void fail(sy_conn *c, wsp *w, int code, const char *why)
{
    if (c->closing)
        return;
    w->failed = 1;
    /* No message will complete now: its budget goes back at once (the memory once no code
     * can still be reading it, at the end of the read or at the close). */
    if (w->rx)
        sy_env_release_input(c->env, &w->rx->input_held);
    send_close_frame(c, w, code, sy_str_make(why, strlen(why)));
    if (c->closing)
        return;
    sy_buf_consume(&c->in, sy_buf_len(&c->in));
    notify_close(c, w, code, sy_str_make(why, strlen(why)));
    if (!c->closing)
        sy_conn_close_after_write(c);
}

/* Applies the backpressure policy and counts the message; 0: go on and send it, else the
 * result of the send (2: dropped; SY_ECLOSED). */
static int before_send(sy_conn *c, wsp *w, int control, size_t n)
{
    if (!w || c->closing || w->close_sent)
        return SY_ECLOSED;
    if (control && n > 125)
        return SY_EINVAL;
    if (!control && sy_conn_buffered(c) > w->o->max_backpressure) {
        if (w->drop_on_backpressure)
            return 2;
        /* RFC 6455 7.4.1: 1008 policy violation, for a consumer that never reads. */
        fail(c, w, 1008, "backpressure limit exceeded");
        return SY_ECLOSED;
    }
    if (!control && w->log)
        sy_access_count_out(w->log, n);
    return 0;
}

/* Sends a deflated frame when the message is to be compressed: 1 with *rc set, else 0. */
static int send_deflated(sy_conn *c, wsp *w, int opcode, const void *p, size_t n, int *rc)
{
    if (!w->pmd || opcode >= SY_WS_CLOSE || n < w->pmd->threshold)
        return 0;
    pmd_state *z = w->pmd;
    sy_deflater *d = deflater_for(c, z);
    size_t off;
    sy_chunk *ch = d ? deflate_frame(d, z->p.server_no_context_takeover, opcode, p, n, &off) : NULL;
    if (!ch)
        return 0;
    int r = sy_conn_write_shared(c, ch, off, ch->len - off);
    sy_chunk_release(ch);
    *rc = r < 0 ? SY_ECLOSED : r;
    return 1;
}

int sy_ws_send(sy_conn *c, int opcode, const void *p, size_t n)
{
    wsp *w = state_of(c);
    int rc = before_send(c, w, opcode >= SY_WS_CLOSE, n);
    if (rc != 0 || send_deflated(c, w, opcode, p, n, &rc))
        return rc;
    rc = write_frame(c, opcode, p, n);
    return rc < 0 ? SY_ECLOSED : rc;
}

int sy_ws_send_ref(sy_conn *c, int opcode, const void *p, size_t n, sy_outq_loan *loan)
{
    wsp *w = state_of(c);
    int rc = before_send(c, w, opcode >= SY_WS_CLOSE, n);
    if (rc != 0 || send_deflated(c, w, opcode, p, n, &rc))
        return rc;
    uint8_t hdr[SY_WS_MAX_HEADER];
    size_t hl = sy_ws_encode_header(hdr, 1, 0, opcode, n);
    rc = sy_conn_write_ref(c, hdr, hl, p, n, loan);
    return rc < 0 ? SY_ECLOSED : rc;
}

sy_chunk *sy_ws_frame(int opcode, const void *p, size_t n)
{
    sy_chunk *ch = sy_chunk_new(SY_WS_MAX_HEADER + n);
    if (!ch)
        return NULL;
    size_t hl = sy_ws_encode_header((uint8_t *)ch->data, 1, 0, opcode, n);
    if (n)
        memcpy(ch->data + hl, p, n);
    ch->len = hl + n;
    return ch;
}

/* The payload length of a frame made by sy_ws_frame (unmasked, RFC 6455 5.2). */
static size_t frame_payload(const sy_chunk *frame)
{
    size_t len7 = (uint8_t)frame->data[1] & 0x7f;
    return frame->len - (len7 == 127 ? 10 : len7 == 126 ? 4 : 2);
}

int sy_ws_send_frame(sy_conn *c, sy_chunk *frame, int is_data)
{
    wsp *w = state_of(c);
    if (!w || c->closing || w->close_sent)
        return SY_ECLOSED;
    if (is_data && sy_conn_buffered(c) > w->o->max_backpressure) {
        if (w->drop_on_backpressure)
            return 2;
        fail(c, w, 1008, "backpressure limit exceeded");
        return SY_ECLOSED;
    }
    if (is_data && w->log)
        sy_access_count_out(w->log, frame_payload(frame));
    int rc = sy_conn_write_shared(c, frame, 0, frame->len);
    return rc < 0 ? SY_ECLOSED : rc;
}

int sy_ws_send_pub(sy_conn *c, sy_ws_pub *pub)
{
    wsp *w = state_of(c);
    pmd_state *z = w ? w->pmd : NULL;
    if (!z || pub->n < z->threshold || c->closing || w->close_sent ||
        sy_conn_buffered(c) > w->o->max_backpressure)
        return sy_ws_send_frame(c, pub->frame, 1); /* also applies the backpressure policy */
    if (!z->p.server_no_context_takeover)
        return sy_ws_send(c, pub->opcode, pub->p, pub->n);
    /* Every receiver with this window and no context takeover gets the same bytes. */
    int bits = z->p.server_window_bits;
    if (bits < 9)
        return sy_ws_send_frame(c, pub->frame, 1);
    if (!(pub->tried & (1u << bits))) {
        pub->tried |= 1u << bits;
        sy_deflater *d = shared_deflater(c->env, bits);
        if (d)
            pub->deflated[bits] =
                deflate_frame(d, 1, pub->opcode, pub->p, pub->n, &pub->deflated_off[bits]);
    }
    sy_chunk *ch = pub->deflated[bits];
    if (!ch)
        return sy_ws_send_frame(c, pub->frame, 1);
    size_t off = pub->deflated_off[bits];
    if (w->log)
        sy_access_count_out(w->log, pub->n);
    int rc = sy_conn_write_shared(c, ch, off, ch->len - off);
    return rc < 0 ? SY_ECLOSED : rc;
}

void sy_ws_pub_dispose(sy_ws_pub *pub)
{
    /* Only the window sizes that were tried hold a frame: none when nobody compresses. */
    for (unsigned bits = pub->tried; bits; bits &= bits - 1) {
        int i = __builtin_ctz(bits);
        sy_chunk_release(pub->deflated[i]);
        pub->deflated[i] = NULL;
    }
    pub->tried = 0;
}

int sy_ws_close(sy_conn *c, int code, sy_str reason)
{
    wsp *w = state_of(c);
    if (!w || c->closing || w->close_sent)
        return SY_ECLOSED;
    send_close_frame(c, w, code, reason);
    if (c->closing)
        return 0;
    if (w->close_received) {
        sy_conn_close_after_write(c);
        return 0;
    }
    /* Wait for the peer's close frame, but not forever. */
    sy_conn_set_timeout(c, w->o->close_timeout);
    return 0;
}

/* Hands whole messages to the app, after the host where it listens: then one at a time, each
 * only while the WebSocket is still open, so the order holds across the two. After our close,
 * data is read and dropped (RFC 6455 5.5.1). */
static void to_app(sy_conn *c, wsp *w, const sy_ws_msg *m, size_t n)
{
    for (size_t i = 0; w->log && i < n; i++)
        sy_access_count_in(w->log, m[i].n);
    if (!n || !w->handle || w->close_sent)
        return;
    if (!sy_app_ws_host_listens(c)) {
        sy_app_ws_messages(c, w->handle, m, n);
        return;
    }
    sy_conn_ref(c);
    for (size_t i = 0; i < n && sy_ws_open(c); i++)
        if (!sy_app_ws_host_message(c, &m[i]) && sy_ws_open(c))
            sy_app_ws_messages(c, w->handle, &m[i], 1);
    sy_conn_unref(c);
}

static void deliver(sy_conn *c, wsp *w, const uint8_t *p, size_t n, int opcode)
{
    sy_ws_msg m = {(const char *)p, n, opcode == SY_WS_BINARY};
    to_app(c, w, &m, 1);
}

/* Answers a ping. Over the high-water mark the pong is held instead, replacing any held
 * before (RFC 6455 5.5.3 lets an endpoint answer only the most recent ping), and reading
 * stops until the queue drains, as a peer that does not read gets no more work done. Returns
 * 0, or -1 when the connection failed. */
static int answer_ping(sy_conn *c, wsp *w, const uint8_t *p, size_t n)
{
    if (w->close_sent)
        return 0;
    if (!c->over_high_water && !w->pong) {
        write_frame(c, SY_WS_PONG, p, n);
        return 0;
    }
    if (!w->pong && !(w->pong = sy_malloc(sizeof *w->pong))) {
        fail(c, w, 1011, "out of memory");
        return -1;
    }
    w->pong->len = n;
    if (n)
        memcpy(w->pong->data, p, n);
    w->pong_paused = 1;
    sy_conn_pause(c);
    return 0;
}

/* A complete control frame. */
static void on_control(sy_conn *c, wsp *w, const uint8_t *p, size_t n)
{
    switch (w->rx->hdr.opcode) {
    case SY_WS_PING:
        if (answer_ping(c, w, p, n) != 0)
            return;
        if (!c->closing && w->handle)
            sy_app_ws_ping(c, w->handle, (const char *)p, n, 0);
        break;
    case SY_WS_PONG:
        w->ping_outstanding = 0;
        if (w->handle)
            sy_app_ws_ping(c, w->handle, (const char *)p, n, 1);
        break;
    case SY_WS_CLOSE: {
        int code;
        sy_str reason;
        const char *why;
        if (sy_ws_parse_close(p, n, &code, &reason, &why) != 0) {
            fail(c, w, code, why);
            return;
        }
        w->close_received = 1;
        if (w->log)
            w->log->close_received = code;
        sy_stats_close_code(&c->env->stats, code, 0);
        if (!w->close_sent) {
            /* Echo the peer's code (RFC 6455 5.5.1); an empty close gets an empty one. */
            send_close_frame(c, w, code == 1005 ? 0 : code, sy_str_make(NULL, 0));
        }
        if (c->closing)
            return;
        sy_buf_consume(&c->in, sy_buf_len(&c->in));
        notify_close(c, w, code, reason);
        if (!c->closing)
            sy_conn_close_after_write(c);
        break;
    }
    default: break;
    }
}

/* A complete frame of a compressed message: inflated into w->rx->msg, delivered after the last
 * one. Returns 0, or -1 when the connection failed or closed. */
static int on_compressed(sy_conn *c, wsp *w, const uint8_t *payload, size_t plen, size_t used)
{
    pmd_state *z = w->pmd;
    int op = w->rx->hdr.opcode, fin = w->rx->hdr.fin;
    if (op != SY_WS_CONT)
        w->msg_opcode = op;
    int mop = w->msg_opcode;
    int reset = z->p.client_no_context_takeover;
    sy_inflater *inf = z->inf;
    if (!inf && reset && op != SY_WS_CONT && fin) {
        /* No context survives this message: the server's inflater serves it whole. */
        inf = shared_inflater(c->env);
    } else if (!inf) {
        int bits = z->p.client_window_bits < 9 ? 9 : z->p.client_window_bits;
        inf = z->inf = sy_inflater_new(reset ? 15 : bits);
    }
    if (!inf) {
        fail(c, w, 1011, "out of memory");
        return -1;
    }
    /* Inflating is work an attacker chooses: about 1000 times the bytes sent for zeros. A
     * connection earns ratio bytes of inflation per compressed byte it sends, on top of a
     * floor, so the server's work stays in proportion to the client's. */
    size_t have = sy_buf_len(&w->rx->msg), limit = w->o->max_message;
    int by_ratio = 0;
    if (z->ratio > 0) {
        double earned = z->ratio * (double)plen;
        z->credit = earned >= (double)(UINT64_MAX / 2) - (double)z->credit
                        ? UINT64_MAX / 2
                        : z->credit + (uint64_t)earned;
        if (z->credit < (uint64_t)(limit - have)) {
            limit = have + (size_t)z->credit;
            by_ratio = 1;
        }
    }
    const char *why = "message too big";
    int rc = sy_inflater_run(inf, payload, plen, fin, reset, &w->rx->msg, limit,
                             mop == SY_WS_TEXT ? &w->rx->utf8 : NULL, &why);
    if (rc == SY_ELIMIT && by_ratio) {
        /* RFC 6455 7.4.1: 1008, a policy violation. */
        fail(c, w, 1008, "compressed data inflates too far");
        return -1;
    }
    if (rc != 0) {
        /* RFC 6455 7.4.1: 1009 too big; 1007 data inconsistent with the message (corrupt
         * compressed data or invalid UTF-8 once inflated). */
        fail(c, w, rc == SY_ELIMIT ? 1009 : rc == SY_ENOMEM ? 1011 : 1007, why);
        return -1;
    }
    if (z->ratio > 0)
        z->credit -= sy_buf_len(&w->rx->msg) - have;
    sy_buf_consume(&c->in, used);
    if (!fin)
        return 0;
    w->msg_opcode = 0;
    w->rx->fragments = 0;
    w->msg_compressed = 0;
    if (reset && z->inf) {
        sy_inflater_free(z->inf); /* a fragmented message's stream is not kept */
        z->inf = NULL;
    }
    if (mop == SY_WS_TEXT && !sy_utf8_complete(&w->rx->utf8)) {
        fail(c, w, 1007, "invalid UTF-8 in a text message");
        return -1;
    }
    deliver(c, w, (const uint8_t *)sy_buf_data(&w->rx->msg), sy_buf_len(&w->rx->msg), mop);
    if (c->closing)
        return -1;
    sy_buf_consume(&w->rx->msg, sy_buf_len(&w->rx->msg));
    sy_buf_trim(&w->rx->msg, 0);
    return 0;
}

/* Whole single-frame messages of one read, handed to the app together: one protected Lua call
 * for the lot instead of one per message. Their payloads stay where they are in c->in:
 * consuming only moves its start, and nothing reads into c->in before the batch is flushed. */
#define WS_BATCH 64

typedef struct ws_batch {
    size_t n;
    sy_ws_msg m[WS_BATCH];
} ws_batch;

/* Delivers what is pending, before anything else happens on the connection: a control frame,
 * a failure, the end of the read. */
static void flush(sy_conn *c, wsp *w, ws_batch *b)
{
    size_t n = b->n;
    b->n = 0;
    to_app(c, w, b->m, n);
}

/* fail, after the messages that came before the bad frame. */
static void fail_after(sy_conn *c, wsp *w, ws_batch *b, int code, const char *why)
{
    flush(c, w, b);
    fail(c, w, code, why);
}

/* Adds a whole message (its bytes consumed from c->in already: consuming only moves the
 * start) to b; a full batch is delivered at once. Returns 1 when it was. */
static int batch_add(sy_conn *c, wsp *w, ws_batch *b, const uint8_t *p, size_t n, int binary)
{
    b->m[b->n].p = (const char *)p;
    b->m[b->n].n = n;
    b->m[b->n].binary = binary;
    if (++b->n < WS_BATCH)
        return 0;
    flush(c, w, b);
    return 1;
}

/* 1 while frames of c are still read: open, a WebSocket, not failed, no close received. */
static int reading(const sy_conn *c, const wsp *w)
{
    return !c->closing && c->proto == &sy_proto_ws && !w->failed && !w->close_received;
}

/* The common case of a read, ahead of the general loop (read_frames): whole frames that are
 * each a whole message (final, masked, text or binary, no RSV bit, within max_message), with
 * no message in progress. Each is unmasked, its text checked, and put in the batch. The first
 * frame that is anything else, or not all here, is left untouched to the general loop, which
 * applies every rule and answers every error. Returns 1 when it stopped at a full batch, which
 * it delivered (more may follow); 0 otherwise (also when a text frame was not UTF-8: the
 * connection failed with 1007). */
static int take_whole(sy_conn *c, wsp *w, ws_batch *b)
{
    for (;;) {
        uint8_t *in = (uint8_t *)sy_buf_data(&c->in);
        size_t len = sy_buf_len(&c->in);
        if (len < 2)
            return 0; /* no header yet (most often: the read is done) */
        sy_ws_header h;
        const char *why = NULL;
        ssize_t hl = sy_ws_decode_header(in, len, &h, &why);
        if (hl < 0 || !h.fin || h.rsv || !h.masked ||
            (h.opcode != SY_WS_TEXT && h.opcode != SY_WS_BINARY) || h.len > w->o->max_message ||
            h.len > len - (size_t)hl)
            return 0;
        uint8_t *p = in + hl;
        size_t n = (size_t)h.len;
        sy_ws_unmask(p, n, h.mask, 0);
        if (h.opcode == SY_WS_TEXT && !sy_utf8_valid(p, n)) {
            fail_after(c, w, b, 1007, "invalid UTF-8 in a text message");
            return 0;
        }
        sy_buf_consume(&c->in, (size_t)hl + n);
        if (batch_add(c, w, b, p, n, h.opcode == SY_WS_BINARY))
            return 1;
    }
}

/* The messages of a read that are not delivered yet go to the app: the end of a read. */
static void flush_read(sy_conn *c, wsp *w, ws_batch *b)
{
    /* One message left to deliver: its first reply needs no queue (a no-op when output is
     * queued already, so the order of bytes holds). */
    if (b->n == 1)
        sy_conn_uncork_one(c);
    flush(c, w, b);
}

/* 1 while a data message has begun and not ended (a fragment or part of a frame is in). */
static int in_message(const wsp *w)
{
    return w->msg_opcode || (w->have_hdr && w->rx->hdr.opcode < SY_WS_CLOSE);
}

/* Charges what the message in progress holds (its fragments so far and the part of its
 * current frame in c->in) to the server's input budget. Past the budget the connection closes
 * with 1013, try again later (RFC 6455 7.4.1, registered by IANA). After a failure, frees the
 * fragments. */
static void hold_partial(sy_conn *c, wsp *w)
{
    if (!w->failed) {
        size_t want = sy_buf_len(&w->rx->msg);
        if (w->have_hdr && w->rx->hdr.opcode < SY_WS_CLOSE)
            want += (size_t)w->rx->frame_done;
        if (want != w->rx->input_held && sy_env_hold_input(c->env, &w->rx->input_held, want) != 0)
            fail(c, w, 1013, "server busy: too much message data buffered");
    }
    if (w->failed && !c->closing)
        sy_buf_dispose(&w->rx->msg);
}

/* The stack's state of read_frames is done with (it is never rx_owned). */
static void rx_local_drop(wsp *w, ws_rx *local)
{
    sy_buf_dispose(&local->msg);
    w->rx = NULL;
}

/* At the end of read_frames: a frame or message left in progress keeps its state in an
 * allocation of its own (made once; the timer frees it between messages), else the stack's
 * state is done with. */
static void rx_keep(sy_conn *c, wsp *w, ws_rx *local)
{
    if (w->rx != local)
        return;
    if (w->failed || !(w->have_hdr || in_message(w) || local->input_held || local->msg.data)) {
        rx_local_drop(w, local);
        return;
    }
    ws_rx *rx = sy_malloc(sizeof *rx);
    if (!rx) {
        fail(c, w, 1011, "out of memory");
        if (w->rx == local) /* not closed yet: the close frame is being written */
            rx_local_drop(w, local);
        return;
    }
    *rx = *local;
    w->rx = rx;
    w->rx_owned = 1;
}

/* Reads frames from c->in, in every case the protocol allows, until it runs dry, the conn
 * closes, or a close was received; whole messages go to b, delivered at the end with those
 * take_whole put there, before a partial message is charged to the input budget (so a 1013
 * comes after the answers to the messages before it). A frame or message left in progress
 * keeps its state (rx_keep). */
static void read_frames(sy_conn *c, wsp *w, ws_batch *b)
{
    ws_rx local;
    if (!w->rx) {
        memset(&local, 0, sizeof local);
        sy_buf_init(&local.msg, w->o->max_message);
        w->rx = &local;
    }
    while (reading(c, w)) {
        uint8_t *in = (uint8_t *)sy_buf_data(&c->in);
        size_t len = sy_buf_len(&c->in);
        if (!w->have_hdr) {
            if (len == 0)
                break;
            const char *why = NULL;
            ssize_t hl = sy_ws_decode_header(in, len, &w->rx->hdr, &why);
            if (hl == SY_EAGAIN)
                break;
            /* RFC 7692 6: RSV1 marks a compressed message on its first frame only. */
            int rsv_ok =
                w->pmd && (w->rx->hdr.opcode == SY_WS_TEXT || w->rx->hdr.opcode == SY_WS_BINARY)
                    ? 4
                    : 0;
            if (hl < 0 || sy_ws_check_header(&w->rx->hdr, rsv_ok, &why) != 0) {
                fail_after(c, w, b, 1002, why ? why : "protocol error");
                break;
            }
            int op = w->rx->hdr.opcode;
            if (op < SY_WS_CLOSE) {
                if (op == SY_WS_CONT && !w->msg_opcode) {
                    fail_after(c, w, b, 1002, "continuation frame without a message to continue");
                    break;
                }
                if (op != SY_WS_CONT && w->msg_opcode) {
                    fail_after(c, w, b, 1002, "new message before the fragmented one finished");
                    break;
                }
                if (op != SY_WS_CONT)
                    w->msg_compressed = (w->rx->hdr.rsv & 4) != 0;
                /* Sizes count as soon as a header announces them, not when bytes arrive. */
                if (w->msg_compressed) {
                    /* The limit is on the inflated size, checked while inflating; the wire
                     * bytes get a little slack for incompressible data. */
                    uint64_t cap = (uint64_t)w->o->max_message + (w->o->max_message >> 8) + 64;
                    if (op != SY_WS_CONT)
                        w->rx->wire_len = 0;
                    if (w->rx->hdr.len > cap || w->rx->wire_len + w->rx->hdr.len > cap) {
                        fail_after(c, w, b, 1009, "message too big");
                        break;
                    }
                    w->rx->wire_len += w->rx->hdr.len;
                } else if (w->rx->hdr.len > w->o->max_message ||
                           sy_buf_len(&w->rx->msg) + w->rx->hdr.len > w->o->max_message) {
                    fail_after(c, w, b, 1009, "message too big");
                    break;
                }
                if (!w->rx->hdr.fin || op == SY_WS_CONT) {
                    if (++w->rx->fragments > w->o->max_fragments) {
                        fail_after(c, w, b, 1009, "too many fragments");
                        break;
                    }
                }
                if (op != SY_WS_CONT) {
                    memset(&w->rx->utf8, 0, sizeof w->rx->utf8);
                    w->rx->data_rx = w->last_rx;
                }
                w->frame_text =
                    !w->msg_compressed &&
                    (op == SY_WS_TEXT || (op == SY_WS_CONT && w->msg_opcode == SY_WS_TEXT));
            } else {
                w->frame_text = 0;
            }
            w->have_hdr = 1;
            w->rx->frame_done = 0;
            /* A large frame needs room in c->in: raise its limit to hold it whole. */
            if (c->in.limit < w->rx->hdr.header_len + w->rx->hdr.len + 65536)
                c->in.limit = w->rx->hdr.header_len + (size_t)w->rx->hdr.len + 65536;
        }
        size_t hl = w->rx->hdr.header_len;
        uint64_t avail = len - hl;
        if (avail > w->rx->hdr.len)
            avail = w->rx->hdr.len;
        if (avail > w->rx->frame_done) {
            uint8_t *p = in + hl + w->rx->frame_done;
            size_t n = (size_t)(avail - w->rx->frame_done);
            sy_ws_unmask(p, n, w->rx->hdr.mask, w->rx->frame_done);
            if (w->rx->hdr.opcode < SY_WS_CLOSE)
                w->rx->data_rx = w->last_rx;
            if (w->frame_text && sy_utf8_feed(&w->rx->utf8, p, n) != 0) {
                fail_after(c, w, b, 1007, "invalid UTF-8 in a text message");
                break;
            }
            w->rx->frame_done = avail;
        }
        if (avail < w->rx->hdr.len)
            break; /* the rest of the frame is still on its way */

        uint8_t *payload = in + hl;
        size_t plen = (size_t)w->rx->hdr.len;
        int op = w->rx->hdr.opcode;
        w->have_hdr = 0;
        if (w->rx->hdr.fin && (op == SY_WS_TEXT || op == SY_WS_BINARY) && !w->msg_compressed) {
            /* A whole message in one frame: handed over straight from the input buffer. */
            if (op == SY_WS_TEXT && !sy_utf8_complete(&w->rx->utf8)) {
                fail_after(c, w, b, 1007, "invalid UTF-8 in a text message");
                break;
            }
            sy_buf_consume(&c->in, hl + plen);
            batch_add(c, w, b, payload, plen, op == SY_WS_BINARY);
            continue;
        }
        flush(c, w, b);
        if (c->closing)
            break;
        if (op >= SY_WS_CLOSE) {
            on_control(c, w, payload, plen);
            if (!c->closing && !w->close_received && !w->failed)
                sy_buf_consume(&c->in, hl + plen);
            continue;
        }
        if (w->msg_compressed) {
            if (on_compressed(c, w, payload, plen, hl + plen) != 0)
                break;
            continue;
        }
        if (op != SY_WS_CONT)
            w->msg_opcode = op;
        if (sy_buf_append(&w->rx->msg, payload, plen) != 0) {
            fail_after(c, w, b, 1009, "message too big");
            break;
        }
        sy_buf_consume(&c->in, hl + plen);
        if (w->rx->hdr.fin) {
            int mop = w->msg_opcode;
            w->msg_opcode = 0;
            w->rx->fragments = 0;
            if (mop == SY_WS_TEXT && !sy_utf8_complete(&w->rx->utf8)) {
                fail_after(c, w, b, 1007, "invalid UTF-8 in a text message");
                break;
            }
            deliver(c, w, (const uint8_t *)sy_buf_data(&w->rx->msg), sy_buf_len(&w->rx->msg), mop);
            if (c->closing)
                break;
            sy_buf_consume(&w->rx->msg, sy_buf_len(&w->rx->msg));
            sy_buf_trim(&w->rx->msg, 0);
        }
    }
    /* The messages before a failure of the budget or of memory below are answered first. */
    if (!c->closing)
        flush_read(c, w, b);
    if (!c->closing)
        hold_partial(c, w);
    if (!c->closing)
        rx_keep(c, w, &local);
}

/* A read: whole single-frame messages first (take_whole), then frames of every other kind
 * (read_frames); the messages of the read go to the app together. Its output is corked and
 * goes out in one system call at the end, but for the first reply to a lone message, which
 * goes straight out (flush_read). */
static void ws_on_bytes(sy_conn *c)
{
    wsp *w = c->proto_state;
    if (w->failed || w->close_received) {
        sy_buf_consume(&c->in, sy_buf_len(&c->in));
        return;
    }
    w->last_rx = ev_now(c->env->loop);
    w->ping_outstanding = 0;
    ws_batch b;
    b.n = 0;
    sy_conn_cork(c);
    if (!w->have_hdr && !w->msg_opcode)
        while (take_whole(c, w, &b) && reading(c, w))
            continue;
    if (sy_buf_len(&c->in) && reading(c, w))
        read_frames(c, w, &b); /* it delivers what it and take_whole put in b */
    else if (!c->closing)
        flush_read(c, w, &b);
    if (!c->closing) {
        sy_conn_uncork(c);
        if (!c->closing && sy_buf_len(&c->in) == 0)
            sy_buf_trim(&c->in, 0); /* idle connections keep no input memory */
    }
}

static void ws_on_eof(sy_conn *c)
{
    /* RFC 6455 7.1.5: no close frame arrived, so the close code is 1006 (in on_close). */
    sy_conn_close(c);
}

static void ws_on_drain(sy_conn *c)
{
    wsp *w = c->proto_state;
    ws_pong *pong = w->pong;
    if (pong) {
        w->pong = NULL;
        if (!w->close_sent)
            write_frame(c, SY_WS_PONG, pong->data, pong->len);
        sy_free(pong);
        if (c->closing)
            return;
    }
    if (w->pong_paused && !c->over_high_water) {
        w->pong_paused = 0;
        sy_conn_resume(c);
    }
    if (w->handle && !w->close_sent)
        sy_app_ws_drain(c, w->handle);
}

/* One timer per connection: keepalive pings, the idle limit, and the close handshake's wait. */
static void ws_on_timeout(sy_conn *c)
{
    wsp *w = c->proto_state;
    if (w->close_sent) {
        sy_conn_close(c); /* the peer never answered our close */
        return;
    }
    ev_tstamp now = ev_now(c->env->loop);
    if (w->pong_paused && c->env->cfg.send_timeout > 0) {
        /* Reading waits for the peer to read our output down (a held pong): its frames wait
         * unread, so its silence cannot be told. The send timeout bounds a peer that reads
         * nothing. */
        w->last_rx = now;
        if (w->rx)
            w->rx->data_rx = now;
    }
    if (w->rx && !w->have_hdr && !in_message(w) && w->rx->input_held == 0 && !w->rx->msg.data)
        rx_drop(w); /* between messages again: an idle WebSocket keeps no rx */
    double quiet = now - w->last_rx;
    /* A message in progress must grow: control frames alone do not keep it open. Without an
     * idle limit (0) the server's body_timeout bounds it, as it bounds a request body. */
    int in_msg = in_message(w);
    double stalled = in_msg ? now - w->rx->data_rx : quiet;
    double limit =
        in_msg && w->o->idle_timeout <= 0 ? c->env->cfg.body_timeout : w->o->idle_timeout;
    if (limit > 0 && stalled >= limit) {
        fail(c, w, 1001, in_msg ? "message timeout" : "idle timeout");
        return;
    }
    if (w->o->ping_interval > 0 && quiet >= w->o->ping_interval && !w->ping_outstanding) {
        w->ping_outstanding = 1;
        write_frame(c, SY_WS_PING, NULL, 0);
        if (c->closing)
            return;
    }
    /* Without an idle limit the timer still looks every body_timeout for a stalled message. */
    double next = limit > 0 ? limit - stalled : c->env->cfg.body_timeout;
    if (w->o->ping_interval > 0 && !w->ping_outstanding && w->o->ping_interval - quiet < next)
        next = w->o->ping_interval - quiet;
    sy_conn_set_timeout(c, next > 0.05 ? next : 0.05);
}

static void ws_on_shutdown(sy_conn *c)
{
    wsp *w = c->proto_state;
    /* RFC 6455 7.4.1: 1001, the server is going away; wait for the peer's close. */
    sy_ws_close(c, 1001, SY_STR("server shutting down"));
    (void)w;
}

static void ws_on_close(sy_conn *c)
{
    wsp *w = c->proto_state;
    if (!w)
        return;
    c->proto_state = NULL;
    if (w->rx)
        sy_env_release_input(c->env, &w->rx->input_held);
    if (w->started) {
        /* Without counts (the access log came after the open, or memory did not): zeros. */
        sy_access_counts none = {0};
        sy_env_access_close(c, "websocket", w->log ? w->log : &none);
        notify_close(c, w, 1006, sy_str_make("", 0));
    } else if (w->handle) {
        /* Closed between the accept and the switch: open never ran, so close does not. */
        void *h = w->handle;
        w->handle = NULL;
        sy_app_conn_discard(c, h);
    }
    sy_ws_free(w);
}

/* Right after the switch (bytes may follow at once). */
static void ws_on_start(sy_conn *c)
{
    wsp *w = c->proto_state;
    w->started = 1;
    w->last_rx = ev_now(c->env->loop);
    if (c->env->access && (w->log = sy_calloc(1, sizeof *w->log)) != NULL)
        w->log->started = w->last_rx;
    /* The HTTP read buffer is not needed until a frame arrives: idle sockets keep none. */
    if (sy_buf_len(&c->in) == 0)
        sy_buf_trim(&c->in, 0);
    double first = w->o->idle_timeout > 0 ? w->o->idle_timeout : c->env->cfg.body_timeout;
    if (w->o->ping_interval > 0 && w->o->ping_interval < first)
        first = w->o->ping_interval;
    sy_conn_set_timeout(c, first);
    if (w->handle)
        sy_app_ws_open(c, w->handle);
}

const sy_proto sy_proto_ws = {
    .name = "websocket",
    .on_bytes = ws_on_bytes,
    .on_eof = ws_on_eof,
    .on_drain = ws_on_drain,
    .on_timeout = ws_on_timeout,
    .on_shutdown = ws_on_shutdown,
    .on_close = ws_on_close,
    .on_start = ws_on_start,
    .borrows_input = 1,
};
