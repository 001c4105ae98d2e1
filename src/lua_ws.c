/* switchyard.WebSocket: the `ws` handle, its events, and topics (publish/subscribe). */
#include "lua_int.h"
#include "topics.h"
#include "ws.h"
#include "lua_task.h"
#include "ptrmap.h"

static const char topics_key = 't';  /* registry[&topics_key] = { [topic] = { [ws] = true } } */
static const char anchors_key = 'a'; /* registry[&anchors_key]: ws:send's anchors */
static const char deliver_key = 'd'; /* registry[&deliver_key]: deliver_batch, "message" */
static const char message_key = 'm'; /* registry[&message_key]: "message" */

/* The WebSocket whose face is at idx; the face is replaced with its state there (for the
 * user values and the topic sets). Raises on anything else. */
static lconn *check_ws(lua_State *L, int idx)
{
    lconn *h = sy_lua_ws_state(L, idx);
    if (!h)
        luaL_typeerror(L, idx, SY_WEBSOCKET_MT);
    return h;
}

/* The handle of c for an event, made now if it was not yet; NULL (c closing with 1011) when
 * it cannot be made. */
static lconn *ws_handle(sy_conn *c, void *handle)
{
    lconn *h = sy_lua_ws_make(c, handle);
    if (!h)
        sy_ws_close(c, 1011, SY_STR("internal error"));
    return h;
}

void sy_lua_ws_open(void *ud, sy_conn *c, void *handle)
{
    (void)ud;
    /* The host's on_open runs first and may have made the handle (sy_server_subscribe makes
     * it): the one the connection holds now is the one to use. */
    void *now = sy_ws_handle(c);
    if (now)
        handle = now;
    if (sy_lua_is_lazy(handle) && !sy_lua_lazy_has(handle, "open"))
        return; /* made on first use */
    lconn *h = ws_handle(c, handle);
    if (!h)
        return;
    sy_lua_task *t = h->conn ? sy_lua_handler_begin(h, "open") : NULL;
    if (t && sy_lua_handler_end(h, "open", t, 0) != 0)
        sy_lua_handler_failed(h);
}

/* The messages of one read, for deliver_batch (argument 1, a light userdata). */
typedef struct msg_batch {
    lconn *h;
    const sy_ws_msg *m; /* borrowed, valid during the call */
    size_t n;
    size_t i;   /* the message being handled */
    int cached; /* deliver_batch was found by its integer ref (sy_lua_push_cached) */
} msg_batch;

static int batch_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)L, (void)status, (void)ctx;
    return 0; /* a handler waited: the rest of the batch was held (sy_lua_ws_messages) */
}

/* [batch, handle, handlers, text slot], upvalue 1 "message": the message handler for each message
 * in turn, in one task. Stops when the connection stops taking messages (a handler closed it); an
 * error ends the batch, and the connection fails with 1011. The handler is looked up for each
 * message, so replacing it takes effect at the next one; a named set (sy.accept(token, "name")) is
 * resolved in the app loaded now once per batch. A handler that waits ends the batch here: the
 * messages after it are held and run once it returns. */
static int deliver_batch(lua_State *L)
{
    msg_batch *b = lua_touserdata(L, 1);
    lconn *h = b->h;
    sy_server *srv = sy_server_of(h->conn->env);
    if (b->n == 1) /* a lone message came here: its key may not be cached yet (else a no-op);
                      cached first, it is found first, on every lone message */
        sy_lua_cache(srv, L, &message_key);
    if (!b->cached) /* found in O(1) from the next batch on */
        sy_lua_cache(srv, L, &deliver_key);
    if (!lua_istable(L, 3))
        return 0; /* a named handler set the app no longer has (logged) */
    for (size_t i = 0; i < b->n; i++) {
        if (!h->conn || !sy_ws_open(h->conn))
            break; /* after our close, data is read and dropped (RFC 6455 5.5.1) */
        b->i = i;
        lua_pushvalue(L, lua_upvalueindex(1)); /* the key: no lookup of a C string per message */
        if (lua_gettable(L, 3) != LUA_TFUNCTION) {
            lua_pop(L, 1);
            continue; /* no handler: the payload is not even copied */
        }
        const sy_ws_msg *m = &b->m[i];
        lua_pushvalue(L, 2);
        const char *s = lua_pushlstring(L, m->p, m->n);
        lua_pushboolean(L, m->binary);
        /* The text is valid UTF-8 already, so ws:send of this very string skips the check. A
         * copy stays in slot 4, so the string outlives the handler even if it drops its
         * argument: its address cannot be reused by another string meanwhile. */
        lua_copy(L, -2, 4);
        srv->ws_validated = m->binary ? NULL : s;
        srv->ws_validated_len = m->binary ? 0 : m->n;
        if (i > 0)
            sy_lua_budget_restart(L); /* the time budget is per handler call */
        lua_callk(L, 3, 0, 0, batch_k);
    }
    b->i = b->n;
    return 0;
}

static void hold_messages(lconn *h, const sy_ws_msg *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sy_lua_hold(h, SY_HELD_MESSAGE, m[i].p, m[i].n, m[i].binary);
}

/* A lone message of at most LONE_MAX bytes may take the direct path (push_lone), while the Lua
 * memory cap, if set, leaves LONE_ROOM bytes free. The cap then cannot refuse its copy; what
 * could still fail it is the system itself running out of memory, which a small copy is the
 * least likely to meet, so larger messages keep the protected copy of deliver_batch. */
#define LONE_MAX 1024
#define LONE_ROOM (64 * 1024)

static int lone_fits(const sy_server *srv, const sy_ws_msg *m)
{
    return m->n <= LONE_MAX &&
           !(srv->lua.max_memory && srv->lua_memory + LONE_ROOM > srv->lua.max_memory);
}

/* A read with one small message (the common case at low load) resumes the task straight on the
 * handler, with no C frame of a batch around it and no lua_callk: the stack is [state, text,
 * fn, face, text, binary], and the state and the text stay below the function, so the text
 * outlives the handler as in deliver_batch. This stack is built outside any protected call, so
 * only when nothing on the way can raise: the handler is a plain field of a handler table (no
 * __index of the app's runs), and the payload's copy is small (lone_fits: a copy the cap
 * refuses would abort the server, not fail the handler). It starts from [state, set], set the
 * user value UV_HANDLERS, of type set_type. Returns the text's bytes; or NULL, with the stack
 * empty, and deliver_batch, which does all this under protection, takes the message (so it
 * does the server's first message, as deliver_batch caches the key looked up here). */
static const char *push_lone(sy_server *srv, lua_State *co, const sy_ws_msg *m, int set_type)
{
    if (set_type != LUA_TTABLE) {
        lua_settop(co, 1); /* a set by name, resolved in the app loaded now */
        if (sy_lua_push_handlers(co, 1) != LUA_TTABLE) {
            lua_settop(co, 0);
            return NULL;
        }
    }
    /* [state, set, "message"]; until deliver_batch has cached the key, it takes the message */
    if (!sy_lua_push_cached(srv, co, &message_key) || lua_rawget(co, 2) != LUA_TFUNCTION) {
        lua_settop(co, 0);
        return NULL;
    }
    lua_getiuservalue(co, 1, UV_FACE); /* the face */
    const char *text = lua_pushlstring(co, m->p, m->n);
    lua_pushboolean(co, m->binary);
    lua_copy(co, -2, 2); /* [state, text, fn, face, text, binary]: the set is no longer needed */
    return text;
}

/* What a task kept for a connection (sy_lua_task_keep) keeps on its stack between the
 * connection's messages: [state, set, face, "message", text], the text the last message's (a
 * slot each message overwrites). A connection whose messages come one per read, one after
 * another, then finds its handler with one lookup in its set, and nothing else: its state,
 * set and face are there already. Only for a handler table: a named set is looked up in the
 * app loaded now at each event. */
#define KEPT_TOP 5

/* On the kept stack, push_lone's message: [state, set, face, "message", text, fn, face, text,
 * binary], the text in slot 5, below the function, as push_lone keeps it. Returns the text's
 * bytes; or NULL, with the stack back to the kept values and the payload not copied, when the
 * set has no function for the key (deliver_batch takes the message). */
static const char *push_kept(lua_State *co, const sy_ws_msg *m)
{
    lua_pushvalue(co, 4);
    if (lua_rawget(co, 2) != LUA_TFUNCTION) {
        lua_settop(co, KEPT_TOP);
        return NULL;
    }
    lua_pushvalue(co, 3);
    const char *text = lua_pushlstring(co, m->p, m->n);
    lua_copy(co, -1, 5);
    lua_pushboolean(co, m->binary);
    return text;
}

/* The task for a lone message of h, its stack made: the task kept for h; or one from the pool,
 * kept for h when h's previous message was the server's last lone one too. Sets *text when
 * the handler's call is on the stack (else deliver_batch is to take the message); NULL when
 * out of memory. */
static sy_lua_task *lone_task(sy_server *srv, lconn *h, const sy_ws_msg *m, const char **text)
{
    int again;
    sy_lua_task *t = sy_lua_task_kept(srv, h, &again);
    if (t) {
        *text = push_kept(t->co, m);
        return t;
    }
    if (!(t = sy_lua_task_get(srv)))
        return NULL;
    lua_State *co = t->co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, h->ref);           /* [state] */
    int set_type = lua_getiuservalue(co, 1, UV_HANDLERS); /* [state, set] */
    if (again && set_type == LUA_TTABLE) {
        lua_getiuservalue(co, 1, UV_FACE);
        if (sy_lua_push_cached(srv, co, &message_key)) { /* [state, set, face, "message"] */
            lua_pushnil(co);                             /* the text's slot */
            sy_lua_task_keep(t, h, KEPT_TOP);
            *text = push_kept(co, m);
            return t;
        }
        lua_settop(co, 2);
    }
    *text = push_lone(srv, co, m, set_type);
    return t;
}

void sy_lua_ws_messages(void *ud, sy_conn *conn, void *handle, const sy_ws_msg *m, size_t n)
{
    (void)ud;
    lconn *h = handle;
    if (sy_lua_is_lazy(handle) && (n == 0 || !(h = ws_handle(conn, handle))))
        return;
    sy_conn *c = h->conn;
    if (h->ref == LUA_NOREF || !c || n == 0)
        return;
    if (h->task) {
        hold_messages(h, m, n);
        return;
    }
    sy_server *srv = sy_server_of(c->env);
    const char *text = NULL;
    sy_lua_task *t = n == 1 && sy_ws_open(c) && lone_fits(srv, m) ? lone_task(srv, h, m, &text)
                                                                  : sy_lua_task_get(srv);
    if (!t) {
        sy_lua_handler_failed(h);
        return;
    }
    msg_batch b = {h, m, n, 0, 0};
    lua_State *co = t->co;
    int nargs = 3;
    if (text) {
        srv->ws_validated = m->binary ? NULL : text;
        srv->ws_validated_len = m->binary ? 0 : m->n;
    } else { /* above the kept values, if t has them */
        b.cached = sy_lua_push_cached(srv, co, &deliver_key);
        lua_pushlightuserdata(co, &b);              /* [fn, batch] */
        lua_rawgeti(co, LUA_REGISTRYINDEX, h->ref); /* [fn, batch, state] */
        lua_getiuservalue(co, -1, UV_FACE);         /* [fn, batch, state, face] */
        sy_lua_push_handlers(co, -2);               /* [fn, batch, state, face, handlers] */
        lua_remove(co, -3);                         /* [fn, batch, face, handlers] */
        lua_pushnil(co);                            /* [..., slot for the current text] */
        nargs = 4;
    }
    t->what = "websocket handler";
    t->name = "message";
    t->conn = c;
    t->owner = h;
    t->done = sy_lua_handler_done;
    h->task = t;
    sy_conn_ref(c);
    int rc = sy_lua_task_run(t, nargs);
    srv->ws_validated = NULL;
    srv->ws_validated_len = 0;
    if (rc == 1) {
        if (b.i + 1 < n)
            hold_messages(h, m + b.i + 1, n - b.i - 1); /* borrowed: copied now */
    } else {
        h->task = NULL;
        if (rc == SY_ELUA)
            sy_lua_handler_failed(h);
        else if (h->held_first != h->held_end && !h->pumping)
            sy_lua_held_run(h);
    }
    sy_conn_unref(c);
}

void sy_lua_ws_held(lconn *h, int kind, lua_State *L, int payload, int binary)
{
    const char *name = kind == SY_HELD_MESSAGE ? "message"
                       : kind == SY_HELD_PING  ? "ping"
                       : kind == SY_HELD_PONG  ? "pong"
                       : kind == SY_HELD_DRAIN ? "drain"
                                               : NULL;
    if (!name || (kind == SY_HELD_MESSAGE && !sy_ws_open(h->conn)))
        return;
    sy_lua_task *t = sy_lua_handler_begin(h, name);
    if (!t)
        return;
    int nargs = 0;
    if (kind != SY_HELD_DRAIN) {
        lua_pushvalue(L, payload);
        lua_xmove(L, t->co, 1);
        nargs = 1;
        if (kind == SY_HELD_MESSAGE) {
            lua_pushboolean(t->co, binary);
            nargs = 2;
        }
    }
    if (sy_lua_handler_end(h, name, t, nargs) != 0)
        sy_lua_handler_failed(h);
}

void sy_lua_ws_ping(void *ud, sy_conn *c, void *handle, const char *p, size_t n, int pong)
{
    (void)ud;
    const char *name = pong ? "pong" : "ping";
    if (sy_lua_is_lazy(handle) && !sy_lua_lazy_has(handle, name))
        return; /* the core answers pings; the handle waits for a handler to need it */
    lconn *h = ws_handle(c, handle);
    if (!h)
        return;
    if (h->task) {
        if (sy_lua_has_handler(h, name))
            sy_lua_hold(h, pong ? SY_HELD_PONG : SY_HELD_PING, p, n, 0);
        return;
    }
    sy_lua_task *t = sy_lua_handler_begin(h, name);
    if (!t)
        return;
    lua_pushlstring(t->co, p, n);
    if (sy_lua_handler_end(h, name, t, 1) != 0)
        sy_lua_handler_failed(h);
}

void sy_lua_ws_drain(void *ud, sy_conn *c, void *handle)
{
    (void)ud;
    if (sy_lua_is_lazy(handle) && !sy_lua_lazy_has(handle, "drain"))
        return;
    lconn *h = ws_handle(c, handle);
    if (!h)
        return;
    if (h->task) {
        if (sy_lua_has_handler(h, "drain"))
            sy_lua_hold(h, SY_HELD_DRAIN, NULL, 0, 0);
        return;
    }
    sy_lua_task *t = sy_lua_handler_begin(h, "drain");
    if (t && sy_lua_handler_end(h, "drain", t, 0) != 0)
        sy_lua_handler_failed(h);
}

/* The topic (a string) at idx got its first subscriber (on) or lost its last: processes
 * linked to this one (workers, Redis) send it this topic's messages only while it has any. */
static void interest(lua_State *L, int idx, int on)
{
    idx = lua_absindex(L, idx);
    sy_server *s = sy_lua_server(L);
    if (s)
        s->env.stats.topics += on ? 1 : -1;
    if (s && s->topics) {
        size_t len;
        const char *topic = lua_tolstring(L, idx, &len);
        sy_topics_interest(s, topic, len, on);
    }
}

/* A subscription was added (+1) or removed (-1). */
static void subscribed(lua_State *L, int d)
{
    sy_server *s = sy_lua_server(L);
    if (s)
        s->env.stats.subscriptions += d;
}

/* Removes the handle at idx from every topic it joined. */
static void unsubscribe_all(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &topics_key); /* [topics] */
    sy_lua_hf_get(L, idx, HF_TOPICS);               /* [topics, mine] */
    if (lua_istable(L, -1) && lua_istable(L, -2)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) { /* [topics, mine, topic, true] */
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            if (lua_rawget(L, -4) == LUA_TTABLE) { /* [topics, mine, topic, set] */
                lua_pushvalue(L, idx);
                if (lua_rawget(L, -2) != LUA_TNIL)
                    subscribed(L, -1);
                lua_pop(L, 1);
                lua_pushvalue(L, idx);
                lua_pushnil(L);
                lua_rawset(L, -3);
                lua_pushnil(L);
                if (!lua_next(L, -2)) { /* empty set: drop the topic */
                    lua_pushvalue(L, -2);
                    lua_pushnil(L);
                    lua_rawset(L, -6);
                    interest(L, -2, 0);
                } else {
                    lua_pop(L, 2);
                }
            }
            lua_pop(L, 1); /* [topics, mine, topic] */
        }
    }
    lua_pop(L, 2);
    lua_pushnil(L);
    sy_lua_hf_set(L, idx, HF_TOPICS);
}

/* An attached handle leaves every topic it joined (topic sets hold its state). */
static void leave_topics(lconn *h)
{
    if (h->ref == LUA_NOREF)
        return;
    lua_State *L = h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
    unsubscribe_all(L, -1);
    lua_pop(L, 1);
}

void sy_lua_ws_discard(lconn *h)
{
    h->conn = NULL;
    leave_topics(h);
    sy_lua_detach(h);
}

void sy_lua_ws_close(void *ud, sy_conn *c, void *handle, int code, sy_str reason)
{
    (void)ud;
    lconn *h = handle;
    if (sy_lua_is_lazy(handle)) {
        /* Never used: a handle only for the close handler, if the set has one. */
        if (!sy_lua_lazy_has(handle, "close") || !(h = sy_lua_ws_make(c, handle))) {
            sy_lua_lazy_release(handle);
            return;
        }
    }
    h->conn = NULL; /* the close handler sees a closed ws: sends answer nil, "closed" */
    leave_topics(h);
    sy_lua_handle_ended(h); /* a waiting handler is closed, held messages dropped */
    sy_lua_task *t = sy_lua_handler_begin(h, "close");
    if (t) {
        /* The last event: it may wait, holding nothing back. */
        lua_pushinteger(t->co, code);
        lua_pushlstring(t->co, reason.p ? reason.p : "", reason.len);
        t->what = "websocket handler";
        t->name = "close";
        sy_lua_task_run(t, 3);
    }
    sy_lua_detach(h);
}

/* ---- publish ------------------------------------------------------------------------------ */

/* Local subscribers only: what sy_lua_publish and deliveries from other processes share. */
static int publish_local(lua_State *L, int topic_idx, const char *p, size_t n, int binary,
                         lconn *except)
{
    topic_idx = lua_absindex(L, topic_idx);
    int top = lua_gettop(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &topics_key);
    if (!lua_istable(L, -1) || lua_rawget(L, (lua_pushvalue(L, topic_idx), -2)) != LUA_TTABLE) {
        lua_settop(L, top);
        return 0;
    }
    /* Snapshot the subscribers first: a send may close a connection, whose close handler may
     * change the topic while we walk it. */
    int set = lua_gettop(L);
    lua_newtable(L);
    int snap = lua_gettop(L);
    lua_Integer k = 0;
    lua_pushnil(L);
    while (lua_next(L, set)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, snap, ++k);
    }
    sy_chunk *frame = sy_ws_frame(binary ? SY_WS_BINARY : SY_WS_TEXT, p, n);
    if (!frame) {
        lua_settop(L, top);
        return luaL_error(L, "out of memory");
    }
    /* Compressed copies are made once per window size, for the receivers that need them. */
    sy_ws_pub pub = {.opcode = binary ? SY_WS_BINARY : SY_WS_TEXT, .p = p, .n = n, .frame = frame};
    sy_server *srv = sy_lua_server(L);
    int sent = 0;
    for (lua_Integer i = 1; i <= k; i++) {
        lua_rawgeti(L, snap, i);
        lconn *h = lua_touserdata(L, -1);
        int rc = h && h != except && h->conn ? sy_ws_send_pub(h->conn, &pub) : -1;
        if ((rc == 0 || rc == 1) && srv)
            sy_stats_ws_out(&srv->env.stats, n);
        if (rc >= 0)
            sent++;
        lua_pop(L, 1);
    }
    sy_ws_pub_dispose(&pub);
    sy_chunk_release(frame);
    lua_settop(L, top);
    return sent;
}

int sy_lua_publish(lua_State *L, int topic_idx, const char *p, size_t n, int binary, lconn *except)
{
    int sent = publish_local(L, topic_idx, p, n, binary, except);
    sy_server *s = sy_lua_server(L);
    if (s)
        s->env.stats.publishes++;
    if (s && s->topics) {
        size_t tlen;
        const char *topic = lua_tolstring(L, topic_idx, &tlen);
        sy_topics_published(s, topic, tlen, p, n, binary);
    }
    return sent;
}

typedef struct deliver_args {
    const char *topic, *p;
    size_t tlen, n;
    int binary;
} deliver_args;

/* [args] */
static int deliver_in_lua(lua_State *L)
{
    const deliver_args *a = lua_touserdata(L, 1);
    lua_pushlstring(L, a->topic, a->tlen);
    publish_local(L, 2, a->p, a->n, a->binary, NULL);
    return 0;
}

void sy_lua_topic_deliver(const char *topic, size_t tlen, const char *p, size_t n, int binary,
                          void *ud)
{
    lua_State *L = ud;
    deliver_args a = {topic, p, tlen, n, binary};
    int top = lua_gettop(L);
    lua_pushcfunction(L, deliver_in_lua);
    lua_pushlightuserdata(L, &a);
    sy_lua_call(L, 1, 0, "topic delivery");
    lua_settop(L, top);
}

/* sy.publish(topic, data, binary?) -> number of receivers */
int sy_lua_publish_fn(lua_State *L)
{
    luaL_checkstring(L, 1);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    int binary = lua_toboolean(L, 3);
    lua_pushinteger(L, sy_lua_publish(L, 1, p, n, binary, NULL));
    return 1;
}

/* ---- methods ------------------------------------------------------------------------------ */

static int closed(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
}

static int send_result(lua_State *L, int rc)
{
    if (rc == 2) {
        lua_pushnil(L);
        lua_pushliteral(L, "dropped");
        return 2;
    }
    if (rc < 0)
        return closed(L);
    lua_pushboolean(L, rc == 0);
    return 1;
}

/* ---- anchors of sent strings -----------------------------------------------------------------
 *
 * ws:send hands the Lua string itself to the connection (no copy). What the socket takes at
 * once needs nothing more; a string queued must stay alive until the queue lets go of it. It
 * is kept in a slot of a private table (ws:send's upvalue 1), and the free slots are a stack
 * in C: anchoring is one store into the table's array part, releasing is a push on that stack.
 * A released slot keeps its string until the slot is reused (the next queued send, most often)
 * unless that would keep more than ANCHOR_STALE_MAX bytes of released strings alive; past
 * that, the slot is cleared at once. So a connection whose replies are queued overwrites one
 * slot per reply and touches no table on release, and a large string is let go as soon as it
 * is written. */
#define ANCHOR_STALE_MAX (64 * 1024)
#define ANCHOR_OVERHEAD 32 /* bytes of a string object besides its characters */

typedef struct anchors {
    lua_State *L;    /* the main state (outlives every connection), for clearing a slot */
    sy_ptrmap faces; /* an open WebSocket's face (lua_topointer) -> its lconn: the registry
                        holds the face (lconn.ref) while it is here, so its address cannot be
                        reused; closed faces are found through the table of states */
    int table;       /* registry ref of the slot table */
    int send_ref;    /* registry refs made with the anchors (so in the registry's array part,
                        read without a hash lookup): ws:send, the faces' metatable and the
                        table of states, for making a face */
    int mt_ref;
    int states_ref;
    int nslots;   /* slots 1..nslots exist */
    int nfree;    /* free[0..nfree): slots free for reuse, the most recently freed last */
    int cap;      /* entries allocated in free and held */
    int *free;    /* stack of free slots */
    size_t *held; /* held[k]: bytes of the string slot k keeps alive (0: nothing) */
    size_t stale; /* sum of held[k] over the free slots */
} anchors;

static int anchors_gc(lua_State *L)
{
    anchors *a = lua_touserdata(L, 1);
    sy_ptrmap_dispose(&a->faces);
    sy_free(a->free);
    sy_free(a->held);
    a->free = NULL;
    a->held = NULL;
    a->cap = a->nfree = 0;
    return 0;
}

/* Releases slot k (the release callback of sy_ws_send_ref): exactly once per anchored send. */
static void unanchor(void *ud, int k)
{
    anchors *a = ud;
    if (a->stale + a->held[k] > ANCHOR_STALE_MAX) {
        lua_State *L = a->L; /* clearing a slot never allocates nor raises */
        lua_rawgeti(L, LUA_REGISTRYINDEX, a->table);
        lua_pushnil(L);
        lua_rawseti(L, -2, k);
        lua_pop(L, 1);
        a->held[k] = 0;
    } else {
        a->stale += a->held[k];
    }
    a->free[a->nfree++] = k; /* room: cap exceeds every slot number */
}

/* Makes sure a free slot waits for keep. Raises only when out of memory, before anything is
 * sent. */
static void reserve(lua_State *L, anchors *a)
{
    if (a->nfree)
        return;
    if (a->nslots + 1 >= a->cap) {
        int ncap = a->cap ? a->cap * 2 : 64;
        int *f = sy_realloc(a->free, (size_t)ncap * sizeof *f);
        if (f)
            a->free = f;
        size_t *h = f ? sy_realloc(a->held, (size_t)ncap * sizeof *h) : NULL;
        if (!h)
            luaL_error(L, "out of memory");
        a->held = h;
        for (int i = a->cap; i < ncap; i++)
            h[i] = 0;
        a->cap = ncap;
    }
    int k = a->nslots + 1;
    lua_pushboolean(L, 0);
    lua_rawseti(L, lua_upvalueindex(1), k); /* may raise: nothing counted yet */
    a->nslots = k;
    a->free[a->nfree++] = k;
}

/* ws:send's loan of its string (argument 2) to the output queue. */
typedef struct send_loan {
    sy_outq_loan loan; /* first: keep finds the rest from it */
    lua_State *L;      /* running ws_send, whose upvalue 1 is the slot table */
    size_t n;
} send_loan;

/* Anchors the string in the slot reserve left free: an existing slot, so this never
 * allocates nor raises. */
static int keep(sy_outq_loan *loan)
{
    send_loan *l = (send_loan *)loan;
    anchors *a = loan->ud;
    int k = a->free[--a->nfree];
    lua_pushvalue(l->L, 2);
    lua_rawseti(l->L, lua_upvalueindex(1), k);
    a->stale -= a->held[k];
    a->held[k] = l->n + ANCHOR_OVERHEAD;
    return k;
}

/* Lets go of the strings that released slots still keep (the loop is idle: memory back
 * to the collector). */
static void anchors_trim(anchors *a)
{
    if (!a->stale)
        return;
    lua_State *L = a->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->table);
    for (int i = 0; i < a->nfree; i++) {
        int k = a->free[i];
        if (a->held[k]) {
            lua_pushnil(L);
            lua_rawseti(L, -2, k);
            a->held[k] = 0;
        }
    }
    lua_pop(L, 1);
    a->stale = 0;
}

void sy_lua_ws_anchors_trim(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &anchors_key) == LUA_TUSERDATA)
        anchors_trim(lua_touserdata(L, -1));
    lua_pop(L, 1);
}

/* ---- faces -------------------------------------------------------------------------------- */

/* The anchors of any state the binding opened (a host's own too), by the registry. */
static anchors *anchors_of(lua_State *L)
{
    anchors *a = lua_rawgetp(L, LUA_REGISTRYINDEX, &anchors_key) == LUA_TUSERDATA
                     ? lua_touserdata(L, -1)
                     : NULL;
    lua_pop(L, 1);
    return a;
}

/* The same for a server's state, where WebSockets live, with no lookup: its extra space names
 * the server (in a host's own state it is the host's, so only paths that run in a server's
 * state use this). */
static anchors *server_anchors(lua_State *L)
{
    return sy_lua_state_server(L)->lua_ws_send;
}

void sy_lua_ws_face(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    anchors *a = server_anchors(L);
    if (!a)
        luaL_error(L, "switchyard.WebSocket is not open in this state");
    lua_createtable(L, 0, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->send_ref);
    lua_setfield(L, -2, "send"); /* a plain set: the table has no metatable yet */
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->mt_ref);
    lua_setmetatable(L, -2);
    /* While open the registry holds the state and the state its face; the face finds the
     * state through the map (sy_lua_ws_bind). */
    lua_setiuservalue(L, idx, UV_FACE);
    if (sy_ptrmap_reserve(&a->faces) != 0) /* for sy_lua_ws_bind, which cannot fail */
        luaL_error(L, "out of memory");
}

void sy_lua_ws_bind(lua_State *L, int idx, lconn *h)
{
    lua_getiuservalue(L, idx, UV_FACE);
    sy_ptrmap_put(&server_anchors(L)->faces, lua_topointer(L, -1), h); /* reserved */
    lua_pop(L, 1);
}

/* [states, face, state]: states[face] = state (may raise: memory). */
static int set_state(lua_State *L)
{
    lua_rawset(L, 1);
    return 0;
}

int sy_lua_ws_unbind(lconn *h)
{
    lua_State *L = h->L;
    anchors *a = h->ref != LUA_NOREF ? server_anchors(L) : NULL;
    if (!a)
        return 0;
    /* From now on the face keeps its state alive, through an ephemeron: a state that refers
     * back to its face (ws.me = ws, ws.data.owner = ws, a closure over ws) does not keep the
     * face alive. Only closed faces are there, so a collection does not walk one entry per
     * open connection (it walks a weak table whole whenever it changed). */
    int top = lua_gettop(L), rc = -1;
    if (lua_checkstack(L, 6)) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref); /* [state] */
        if (lua_getiuservalue(L, -1, UV_FACE) != LUA_TTABLE) {
            lua_settop(L, top);
            return 0; /* no face was made: nothing can meet the state again */
        }
        const void *face = lua_topointer(L, -1); /* [state, face] */
        /* The core's bookkeeping for a connection going away, which lets go of more than
         * this takes: not held to app.lua.max_memory, or an app at its cap would leak. */
        sy_server *s = sy_lua_state_server(L);
        size_t cap = s->lua.max_memory;
        s->lua.max_memory = 0;
        lua_pushcfunction(L, set_state);
        lua_rawgeti(L, LUA_REGISTRYINDEX, a->states_ref);
        lua_pushvalue(L, top + 2);
        lua_pushvalue(L, top + 1); /* [state, face, f, states, face, state] */
        rc = lua_pcall(L, 3, 0, 0) == LUA_OK ? 0 : -1;
        s->lua.max_memory = cap;
        if (rc == 0)
            sy_ptrmap_del(&a->faces, face);
        lua_settop(L, top);
    }
    if (rc != 0)
        sy_log("error",
               "websocket: out of memory closing connection %llu: its handle stays anchored "
               "until the server stops",
               (unsigned long long)h->id);
    return rc; /* failed: the map keeps the face, the registry its state: all still answers */
}

/* Pushes the state of the face at idx (an absolute index) from the table of states; returns
 * its lconn, or NULL (nothing pushed) when idx holds no face. */
static lconn *push_state_of(lua_State *L, anchors *a, int idx)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->states_ref);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) != LUA_TUSERDATA) {
        lua_pop(L, 2);
        return NULL;
    }
    lua_remove(L, -2);
    return lua_touserdata(L, -1);
}

lconn *sy_lua_ws_state(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return NULL;
    idx = lua_absindex(L, idx);
    anchors *a = anchors_of(L);
    if (!a)
        return NULL;
    lconn *h = sy_ptrmap_get(&a->faces, lua_topointer(L, idx));
    if (h) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref); /* open: by its integer ref */
    } else {
        h = push_state_of(L, a, idx); /* closed, or not a face */
        if (!h)
            return NULL;
    }
    lua_replace(L, idx);
    return h;
}

/* ws:send(data, binary?) -> true | false (queued over the high-water mark) | nil, "closed" |
 * nil, "dropped" */
static int ws_send(lua_State *L)
{
    /* Installed in a server's state only (sy_lua_open_ws): its extra space names the server,
     * which holds the anchors; no API call, unlike an upvalue. */
    sy_server *srv = sy_lua_state_server(L);
    anchors *a = srv->lua_ws_send;
    int binary = lua_toboolean(L, 3);
    /* By address alone: the map holds open faces, each anchored, so no other object has that
     * address. For a value of another kind lua_topointer answers a C function's code or a
     * light userdata, which only C code makes: neither meets a face's address by chance. */
    const void *self = lua_topointer(L, 1);
    lconn *h = self ? sy_ptrmap_get(&a->faces, self) : NULL;
    if (!h && !(h = sy_lua_ws_state(L, 1))) /* not open: found through the table of states */
        luaL_typeerror(L, 1, SY_WEBSOCKET_MT);
    size_t n;
    const char *p = lua_tolstring(L, 2, &n);
    if (!p)
        p = luaL_checklstring(L, 2, &n); /* raises the usual message */
    if (!h->conn)
        return closed(L);
    /* The text being handled was validated on arrival; echoing it needs no second pass. */
    if (!binary && !(p == srv->ws_validated && n == srv->ws_validated_len) &&
        !sy_utf8_valid((const uint8_t *)p, n))
        return luaL_argerror(L, 2, "text messages must be valid UTF-8 (pass binary = true)");
    sy_stats *st = &srv->env.stats;
    /* No copy: the string goes to the socket, or is anchored until the queue lets go of it. */
    reserve(L, a);
    send_loan l = {{keep, unanchor, a}, L, n};
    int rc = sy_ws_send_ref(h->conn, binary ? SY_WS_BINARY : SY_WS_TEXT, p, n, &l.loan);
    if (rc == 0 || rc == 1)
        sy_stats_ws_out(st, n);
    return send_result(L, rc);
}

/* ws:ping(data?) */
static int ws_ping(lua_State *L)
{
    lconn *h = check_ws(L, 1);
    size_t n = 0;
    const char *p = luaL_optlstring(L, 2, "", &n);
    luaL_argcheck(L, n <= 125, 2, "ping payload is at most 125 bytes");
    if (!h->conn)
        return closed(L);
    return send_result(L, sy_ws_send(h->conn, SY_WS_PING, p, n));
}

/* ws:close(code?, reason?): code 1000 or 3000-4999; reason UTF-8, at most 123 bytes. */
static int ws_close(lua_State *L)
{
    lconn *h = check_ws(L, 1);
    lua_Integer code = luaL_optinteger(L, 2, 1000);
    size_t n = 0;
    const char *reason = luaL_optlstring(L, 3, "", &n);
    luaL_argcheck(L, code == 1000 || code == 1001 || (code >= 3000 && code <= 4999), 2,
                  "close code must be 1000, 1001 or 3000-4999");
    luaL_argcheck(L, n <= 123, 3, "close reason is at most 123 bytes");
    luaL_argcheck(L, sy_utf8_valid((const uint8_t *)reason, n), 3, "close reason must be UTF-8");
    if (!h->conn)
        return closed(L);
    if (sy_ws_close(h->conn, (int)code, sy_str_make(reason, n)) != 0)
        return closed(L);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- topics ------------------------------------------------------------------------------- */

int sy_lua_topic_join(lua_State *L, int ws_idx, int topic_idx)
{
    ws_idx = lua_absindex(L, ws_idx);
    topic_idx = lua_absindex(L, topic_idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &topics_key); /* [topics] */
    lua_pushvalue(L, topic_idx);
    if (lua_rawget(L, -2) != LUA_TTABLE) { /* [topics, set] */
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, topic_idx);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
        interest(L, topic_idx, 1);
    }
    lua_pushvalue(L, ws_idx);
    int joined = lua_rawget(L, -2) == LUA_TNIL;
    lua_pop(L, 1);
    if (joined)
        subscribed(L, 1);
    lua_pushvalue(L, ws_idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    if (sy_lua_hf_get(L, ws_idx, HF_TOPICS) != LUA_TTABLE) { /* [topics, set, mine] */
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        sy_lua_hf_set(L, ws_idx, HF_TOPICS);
    }
    lua_pushvalue(L, topic_idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 3);
    return joined;
}

int sy_lua_topic_leave(lua_State *L, int ws_idx, int topic_idx)
{
    ws_idx = lua_absindex(L, ws_idx);
    topic_idx = lua_absindex(L, topic_idx);
    int was = 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &topics_key); /* [topics] */
    lua_pushvalue(L, topic_idx);
    if (lua_rawget(L, -2) == LUA_TTABLE) { /* [topics, set] */
        lua_pushvalue(L, ws_idx);
        was = lua_rawget(L, -2) != LUA_TNIL;
        lua_pop(L, 1);
        if (was)
            subscribed(L, -1);
        lua_pushvalue(L, ws_idx);
        lua_pushnil(L);
        lua_rawset(L, -3);
        lua_pushnil(L);
        if (!lua_next(L, -2)) { /* empty set: drop the topic */
            lua_pushvalue(L, topic_idx);
            lua_pushnil(L);
            lua_rawset(L, -4);
            interest(L, topic_idx, 0);
        } else {
            lua_pop(L, 2);
        }
    }
    lua_pop(L, 2);
    if (sy_lua_hf_get(L, ws_idx, HF_TOPICS) == LUA_TTABLE) {
        lua_pushvalue(L, topic_idx);
        lua_pushnil(L);
        lua_rawset(L, -3);
    }
    lua_pop(L, 1);
    return was;
}

lua_Integer sy_lua_topic_count(lua_State *L, int topic_idx)
{
    topic_idx = lua_absindex(L, topic_idx);
    lua_Integer n = 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &topics_key); /* [topics] */
    lua_pushvalue(L, topic_idx);
    if (lua_istable(L, -2) && lua_rawget(L, -2) == LUA_TTABLE) { /* [topics, set] */
        lua_pushnil(L);
        while (lua_next(L, -2)) { /* [topics, set, ws, true] */
            lua_pop(L, 1);
            const lconn *h = lua_touserdata(L, -1);
            if (h && h->conn && sy_ws_open(h->conn))
                n++;
        }
    }
    lua_pop(L, 2);
    return n;
}

/* sy.subscribers(topic) -> the number of this server's open WebSockets subscribed to topic */
int sy_lua_subscribers_fn(lua_State *L)
{
    luaL_checkstring(L, 1);
    lua_pushinteger(L, sy_lua_topic_count(L, 1));
    return 1;
}

/* ws:subscribe(topic) -> true | nil, "closed" */
static int ws_subscribe(lua_State *L)
{
    lconn *h = check_ws(L, 1);
    luaL_checkstring(L, 2);
    if (!h->conn)
        return closed(L);
    sy_lua_topic_join(L, 1, 2);
    lua_pushboolean(L, 1);
    return 1;
}

/* ws:unsubscribe(topic) -> whether it was subscribed */
static int ws_unsubscribe(lua_State *L)
{
    check_ws(L, 1);
    luaL_checkstring(L, 2);
    lua_pushboolean(L, sy_lua_topic_leave(L, 1, 2));
    return 1;
}

/* ws:publish(topic, data, binary?): to every other subscriber of topic. */
static int ws_publish(lua_State *L)
{
    lconn *h = check_ws(L, 1);
    luaL_checkstring(L, 2);
    size_t n;
    const char *p = luaL_checklstring(L, 3, &n);
    int binary = lua_toboolean(L, 4);
    lua_pushinteger(L, sy_lua_publish(L, 2, p, n, binary, h));
    return 1;
}

static int ws_buffered(lua_State *L)
{
    lconn *h = check_ws(L, 1);
    lua_pushinteger(L, h->conn ? (lua_Integer)sy_conn_buffered(h->conn) : 0);
    return 1;
}

/* __index of a face: the methods (upvalue 1; send too, for a face whose own was removed),
 * then the built-in fields, then the app's own. Argument 1 is checked before its fields are
 * read: getmetatable's view of the metatable lets an app call this with anything there. */
static int ws_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) /* methods first */
        return 1;
    lua_pop(L, 1);
    lconn *h = check_ws(L, 1);
    return sy_lua_handle_field(L, h, lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "");
}

/* __newindex of a face (upvalue 1: the methods): send, the face's own field, may be put back
 * after the app removed it (it is the one built-in name the app can assign); everything else
 * as on every handle. */
static int ws_newindex(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "send") == 0) {
        lua_settop(L, 3);
        lua_pushvalue(L, 1);
        if (sy_lua_ws_state(L, 4)) { /* a face (a copy of it is now its state) */
            lua_settop(L, 3);
            lua_rawset(L, 1);
            return 0;
        }
        lua_settop(L, 3);
    }
    return sy_lua_handle_newindex(L);
}

/* ws:send in a Lua state of the host's own (luaopen_switchyard without a server), where no
 * WebSocket can exist. */
static int ws_send_unbound(lua_State *L)
{
    return luaL_error(L, "ws:send needs a switchyard server");
}

static int ws_tostring(lua_State *L)
{
    lconn *h = check_ws(L, 1);
    char a[INET6_ADDRSTRLEN];
    sy_peer_format(&h->peer, a);
    lua_pushfstring(L, "switchyard.WebSocket(%s%s)", a, h->conn ? "" : ", closed");
    return 1;
}

static const luaL_Reg ws_methods[] = {
    {"send", NULL}, /* made with its anchors by sy_lua_open_ws */
    {"ping", ws_ping},
    {"close", ws_close},
    {"subscribe", ws_subscribe},
    {"unsubscribe", ws_unsubscribe},
    {"publish", ws_publish},
    {"buffered", ws_buffered},
    {NULL, NULL},
};

static double opt_number(lua_State *L, int idx, const char *name, double def, double lo, double hi)
{
    int t = lua_getfield(L, idx, name);
    double v = def;
    if (t != LUA_TNIL) {
        if (!lua_isnumber(L, -1))
            luaL_error(L, "option %s must be a number", name);
        v = lua_tonumber(L, -1);
        if (!(v >= lo && v <= hi))
            luaL_error(L, "option %s must be in [%f, %f]", name, lo, hi);
    }
    lua_pop(L, 1);
    return v;
}

void sy_lua_ws_options(lua_State *L, int idx, sy_ws_options *o)
{
    idx = lua_absindex(L, idx);
    o->max_message = (size_t)opt_number(L, idx, "max_message_size", (double)o->max_message, 0,
                                        (double)((size_t)1 << 40));
    o->max_fragments =
        (size_t)opt_number(L, idx, "max_fragments", (double)o->max_fragments, 1, 1e12);
    o->idle_timeout = opt_number(L, idx, "idle_timeout", o->idle_timeout, 0, 1e7);
    o->ping_interval = opt_number(L, idx, "ping_interval", o->ping_interval, 0, 1e7);
    o->max_backpressure =
        (size_t)opt_number(L, idx, "max_backpressure", (double)o->max_backpressure, 0, 1e15);
    o->close_timeout = opt_number(L, idx, "close_timeout", o->close_timeout, 0.01, 3600);
    o->compression_threshold = (size_t)opt_number(L, idx, "compression_threshold",
                                                  (double)o->compression_threshold, 0, 1e15);
    o->max_inflate_ratio = opt_number(L, idx, "max_inflate_ratio", o->max_inflate_ratio, 0, 1e6);
    int t = lua_getfield(L, idx, "compression");
    if (t == LUA_TBOOLEAN) {
        /* true: the preset that keeps memory flat however many connections there are. */
        o->compression = lua_toboolean(L, -1) ? SY_PMD_SHARED : SY_PMD_OFF;
    } else if (t != LUA_TNIL) {
        const char *v = lua_tostring(L, -1);
        if (t == LUA_TSTRING && strcmp(v, "shared") == 0)
            o->compression = SY_PMD_SHARED;
        else if (t == LUA_TSTRING && strcmp(v, "small") == 0)
            o->compression = SY_PMD_SMALL;
        else if (t == LUA_TSTRING && strcmp(v, "default") == 0)
            o->compression = SY_PMD_DEFAULT;
        else
            luaL_error(L,
                       "option compression must be false, true, \"shared\", \"small\" or "
                       "\"default\" (got %s)",
                       luaL_tolstring(L, -1, NULL));
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "backpressure") != LUA_TNIL) {
        const char *v = lua_tostring(L, -1);
        if (v && strcmp(v, "drop") == 0)
            o->drop_on_backpressure = 1;
        else if (v && strcmp(v, "close") == 0)
            o->drop_on_backpressure = 0;
        else
            luaL_error(L, "option backpressure must be \"close\" or \"drop\" (got %s)",
                       luaL_tolstring(L, -1, NULL));
    }
    lua_pop(L, 1);
}

void sy_lua_open_ws(lua_State *L)
{
    if (luaL_newmetatable(L, SY_WEBSOCKET_MT)) {
        /* [mt]: the metatable of the faces */
        luaL_newlibtable(L, ws_methods);
        luaL_setfuncs(L, ws_methods, 0); /* [mt, methods] */
        /* send: upvalues the slot table and its anchors */
        lua_createtable(L, 64, 0);
        anchors *a = lua_newuserdatauv(L, sizeof *a, 0); /* [mt, methods, slots, a] */
        memset(a, 0, sizeof *a);
        lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
        a->L = lua_tothread(L, -1);
        lua_pop(L, 1);
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, anchors_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -2);
        a->table = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &anchors_key); /* [mt, methods, slots, a] */
        lua_pushvalue(L, -4);
        a->mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_newtable(L); /* the states by face: weak keys, so an ephemeron table */
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        a->states_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        /* A server's state (its extra space names it) gets the send that finds the anchors
         * through the server. */
        sy_server *srv = sy_lua_server(L);
        if (srv)
            srv->lua_ws_send = a;
        lua_pushcclosure(L, srv ? ws_send : ws_send_unbound, 2); /* [mt, methods, send] */
        lua_pushvalue(L, -1);
        a->send_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_setfield(L, -2, "send"); /* [mt, methods] */
        lua_pushvalue(L, -1);
        lua_pushcclosure(L, ws_newindex, 1);
        lua_setfield(L, -3, "__newindex");
        lua_pushcclosure(L, ws_index, 1);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, ws_tostring);
        lua_setfield(L, -2, "__tostring");
        /* What getmetatable answers for a face: a copy, and setmetatable refuses to replace a
         * metatable that has __metatable. Changing the copy changes no face. */
        lua_createtable(L, 0, 4);
        const char *const shown[] = {"__index", "__newindex", "__tostring", "__name"};
        for (size_t i = 0; i < SY_COUNTOF(shown); i++) {
            lua_getfield(L, -2, shown[i]);
            lua_setfield(L, -2, shown[i]);
        }
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    /* The states' metatable names them (for a count of what the registry holds) and nothing
     * more: the app never sees a state, and could not use one. */
    if (luaL_newmetatable(L, SY_WS_STATE_MT)) {
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &topics_key);
    lua_pushliteral(L, "message");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &message_key);
    lua_pushcclosure(L, deliver_batch, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &deliver_key);
}
