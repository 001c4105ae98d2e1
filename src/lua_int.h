/* Internals shared by the Lua binding files (lua_*.c). */
#ifndef SY_LUA_INT_H
#define SY_LUA_INT_H

#include <lauxlib.h>
#include <lua.h>

#include "app.h"
#include "decision.h"
#include "proto.h"
#include "server.h"

#define SY_REQUEST_MT "switchyard.Request"
#define SY_RESPONSE_MT "switchyard.Response"
#define SY_CONN_MT "switchyard.Conn"
#define SY_WEBSOCKET_MT "switchyard.WebSocket"
#define SY_WS_STATE_MT "switchyard.WebSocket.state" /* a face's state: no methods */
#define SY_TIMER_MT "switchyard.Timer"
#define SY_DECISION_MT "switchyard.Decision"

/* Registry key of the app table. */
const void *sy_lua_app_key(void);

/* The server running this state, or NULL (module loaded by a plain Lua interpreter). */
sy_server *sy_lua_server(lua_State *L);

/* The one entry from C into Lua: calls the function below nargs arguments with a traceback
 * handler. Returns 0 with nres results pushed, or SY_ELUA with nothing pushed after logging
 * "what: message + traceback". Never raises. */
int sy_lua_call(lua_State *L, int nargs, int nres, const char *what);
/* Same, logging "what 'name': ..." on error and copying the message (with its traceback)
 * into err (cap bytes; err may be NULL). */
int sy_lua_call_err(lua_State *L, int nargs, int nres, const char *what, const char *name,
                    char *err, size_t cap);

/* A decision returned by app.upgrade: made whole and checked by its constructor (sy.accept,
 * sy.ignore, sy.upgrade_required, sy.reject), then read only by C (lua_conn.c); the app can
 * neither edit nor forge one. Strings and tables live in its user values (DV_*). */
enum {
    DV_TOKEN = 1, /* accept: the token; upgrade_required: the protocols (string) */
    DV_HANDLERS,  /* accept: the handlers table, the name of a set in app.handlers, or nil */
    DV_OPTIONS,   /* accept: a private shallow copy of the options table, or nil */
    DV_BODY,      /* reject, upgrade_required: the body string, or nil */
    DV_HEADERS,   /* reject: validated header lines; accept: options.headers as lines; or nil */
    DV_COUNT = DV_HEADERS
};
typedef struct sy_lua_decision {
    int kind;   /* SY_DECIDE_* (decision.h) */
    int status; /* reject: 200..599 */
    int flags;  /* reject: SY_H1_CLOSE when its headers ask for "connection: close" */
} sy_lua_decision;
/* The decision at idx, or NULL when the value is not one. Never raises. */
sy_lua_decision *sy_lua_test_decision(lua_State *L, int idx);
/* A hook that made a decision (sy.accept, sy.reject, sy.upgrade_required) and returned nil
 * probably lacks a `return`: sy_lua_decision_unreturned logs a warning for it, once per call
 * site, naming the hook; both forget the running thread's last decision. Never raise (out of
 * memory aside, as any Lua call). */
void sy_lua_decision_forget(lua_State *L);
void sy_lua_decision_unreturned(lua_State *L, const char *hook);

/* Pushes the app's hook (app[name]) or returns 0 with nothing pushed when it is not a function. */
int sy_lua_push_hook(lua_State *L, const char *name);

/* Request handle: a self-contained copy of the head, body and offers. */
void sy_lua_push_request(lua_State *L, sy_conn *c, const sy_http1_request *req, sy_str body,
                         const sy_upgrade_offer *offers, size_t n);

/* Response handle for the pending request of c (stream 0) or its HTTP/2 stream. */
void sy_lua_push_response(lua_State *L, sy_conn *c, int32_t stream);
/* Pushes the validated header lines ("Name: value\r\n"...) of the table at idx as one string and
 * returns it; raises on a bad name or value. *flags gets SY_H1_CLOSE when the app asked for
 * "connection: close". */
sy_str sy_lua_push_headers(lua_State *L, int idx, int *flags);
/* Keeps a pending response alive after its hook returned (it may be sent from a timer). */
void sy_lua_anchor_response(lua_State *L, int idx);
/* The response at idx belongs to the hook running in task t (NULL: no more): when its client
 * leaves before the answer, the task is cancelled. */
struct sy_lua_task;
void sy_lua_response_task(lua_State *L, int idx, struct sy_lua_task *t);
/* The hook failed: the response res (a handle kept alive by the caller), when still owed,
 * is answered 500 (logged already). */
void sy_lua_response_fail(lua_State *L, void *res);
/* The connection a pending res answers on, or NULL once it is gone. */
sy_conn *sy_lua_response_conn(void *res);
/* The response at idx is done with (its request was switched): it answers nil, "closed". */
void sy_lua_response_forget(lua_State *L, int idx);

/* User values of connection handles: 1 the handlers, 2 the rest, made as it is needed: the
 * path string alone (an idle connection), else a table holding the handle's fields HF_*: path,
 * subprotocol, data (options.data of sy.accept, else the app's table made on first use),
 * subscribed topics (WebSocket), the app's own fields (ws.user = ...; made on first
 * assignment), the events held while a handler waits (made when one first waits). Nothing per
 * connection is created before it is needed: an idle WebSocket costs a few hundred bytes. A
 * WebSocket's state has a third: its face. */
enum { UV_HANDLERS = 1, UV_INFO, UV_FACE, UV_COUNT = UV_INFO, UV_WS_COUNT = UV_FACE };
enum { HF_PATH = 1, HF_SUBPROTOCOL, HF_DATA, HF_TOPICS, HF_EXTRA, HF_HELD, HF_COUNT = HF_HELD };
/* sy_lua_hf_get pushes field f of the handle at idx (nil when unset) and returns its type;
 * sy_lua_hf_set pops a value and stores it as field f (may raise: out of memory). */
int sy_lua_hf_get(lua_State *L, int idx, int f);
void sy_lua_hf_set(lua_State *L, int idx, int f);

typedef struct lconn {
    sy_conn *conn;                 /* borrowed; NULL once closed */
    lua_State *L;                  /* borrowed; the server's state */
    uint64_t id;                   /* the connection's id (ws.id), kept after close */
    struct sy_lua_task *task;      /* borrowed: the handler running or waiting for this connection,
                                      or NULL; later events are held (HF_HELD) until it ends */
    sy_peer peer;                  /* kept after close for ws.remote_addr */
    int ref;                       /* registry anchor of this userdata (the state) while the
                                      connection is open; a WebSocket's face is its user value
                                      UV_FACE */
    uint32_t held_first, held_end; /* held events: entries [held_first, held_end) of HF_HELD */
    uint32_t held_bytes;           /* their cost (payload bytes + 16 each, capped per event): past
                                      a bound reading pauses */
    unsigned websocket : 1;
    unsigned held_paused : 1; /* reading was paused for them */
    unsigned pumping : 1;     /* the held events are being run */
} lconn;

lconn *sy_lua_check_handle(lua_State *L, int idx);

/* A WebSocket handle is two objects. The app sees its face: a table whose one raw field is
 * send, so `ws:send` is found by the VM's table lookup with no metamethod call; its metatable
 * answers everything else. The connection's state is the userdata of the lconn (the
 * "state"), which holds the user values and is what the core's own tables (topic sets) key
 * on; the app never sees it. While the connection is open the registry holds the state
 * (lconn.ref), the state its face (user value UV_FACE), and the core finds the state of a face
 * through a map in C keyed by the face's address (sy_lua_ws_state); a face in the map is always
 * held, so its address cannot be reused meanwhile, and it needs no finalizer. At close the face
 * goes out of the map and keeps its state from then on through a table with weak keys (an
 * ephemeron: a state that refers back to its face does not keep it alive). Nothing an app can
 * reach in the face names the state. A raw connection's handle is its state. */
/* A WebSocket whose app never heard of it (its host closed it in on_open) is done with: out
 * of its topics (the host may have subscribed it), then detached. */
void sy_lua_ws_discard(lconn *h);
/* Makes the face of the state (a WebSocket's userdata) at idx, its user value UV_FACE; may
 * raise (memory). */
void sy_lua_ws_face(lua_State *L, int idx);
/* The face of the state at idx of h, attached (lconn.ref holds the state), goes in the map the
 * core finds states by; never raises (sy_lua_ws_face made room). sy_lua_ws_unbind, before the
 * registry lets go of the state, has the face keep the state from then on (the table of states)
 * and takes the face out of the map (a face in the map is always anchored, so its address is
 * not reused). Returns 0, or -1 when the first failed (out of memory, logged): the face stays
 * in the map, and the registry must keep the state. Never raises. */
void sy_lua_ws_bind(lua_State *L, int idx, lconn *h);
int sy_lua_ws_unbind(lconn *h);
/* When the value at idx is the face of a WebSocket, replaces it with the state and returns
 * its lconn; else NULL, the stack unchanged. Never raises. */
lconn *sy_lua_ws_state(lua_State *L, int idx);

/* WebSocket handles are made on first use: a handler event (open when the set has one, a
 * message, ping, pong, drain or close the set handles), a topic call by id. Until then the
 * core holds a tagged pointer (low bit set) to a lazy record: what sy.accept gave (handlers,
 * path, subprotocol, data), kept once for every connection accepted alike (a userdata with
 * the user values LZ_*, anchored while connections point at it, found again through a
 * cache by path of the records in use). An idle WebSocket costs the Lua heap nothing of its
 * own. */
enum { LZ_HANDLERS = UV_HANDLERS, LZ_PATH, LZ_SUBPROTOCOL, LZ_DATA, LZ_COUNT = LZ_DATA };
typedef struct sy_lua_lazy {
    lua_State *L;  /* borrowed; the main state */
    uint32_t refs; /* connections pointing at it */
    int ref;       /* registry anchor while refs > 0 */
} sy_lua_lazy;
static inline int sy_lua_is_lazy(const void *handle)
{
    return ((uintptr_t)handle & 1u) != 0;
}
/* The handle of WebSocket c whose core handle is handle: itself, or made now from the lazy
 * record (the core then holds the new one). NULL when it cannot be made (out of memory,
 * logged; the record is still held). Never raises. */
lconn *sy_lua_ws_make(sy_conn *c, void *handle);
/* 1 when the handler set of the lazy record has a function name. */
int sy_lua_lazy_has(void *handle, const char *name);
/* A connection lets go of its lazy record. */
void sy_lua_lazy_release(void *handle);
/* Handler sets: UV_HANDLERS of a handle is a table (the code it was given) or the name of a
 * set (sy.accept(token, "name")), looked up in app.handlers of the app loaded now at each
 * event. sy_lua_push_handler_set pushes app.handlers[name] for the name at name_idx and
 * returns LUA_TTABLE, or pushes nil and returns LUA_TNIL. sy_lua_push_handlers pushes the set
 * of the handle at handle_idx (resolving a name; a missing one is logged once per name and
 * loaded app, and gives nil) and returns its type. sy_lua_handler_sets_reset forgets which
 * missing names were logged (a new app was loaded). Never raise (out of memory aside). */
int sy_lua_push_handler_set(lua_State *L, int name_idx);
int sy_lua_push_handlers(lua_State *L, int handle_idx);
void sy_lua_handler_sets_reset(lua_State *L);
/* Calling a handler as a task: sy_lua_handler_begin pushes [state, handlers[name], handle] on
 * the stack of a task's coroutine (the state below the function keeps the lconn alive for the
 * whole call) and returns the task, or NULL when there is no such handler (or
 * the handle is detached); the caller pushes the arguments on t->co and calls
 * sy_lua_handler_end, which runs it. Returns 0 (done, or waiting: later events are held until
 * it ends), or SY_ELUA after logging. */
struct sy_lua_task *sy_lua_handler_begin(lconn *h, const char *name);
int sy_lua_handler_end(lconn *h, const char *name, struct sy_lua_task *t, int nargs);
/* Events of a connection whose handler waits, held in order for after it (payload copied). */
enum {
    SY_HELD_MESSAGE = 1,
    SY_HELD_PING,
    SY_HELD_PONG,
    SY_HELD_DRAIN,
    SY_HELD_DATA,
    SY_HELD_EOF,
    SY_HELD_SHUTDOWN
};
void sy_lua_hold(lconn *h, int kind, const char *p, size_t n, int binary);
/* A handler of h ran or waited: runs what was held meanwhile (unless h waits again). */
void sy_lua_held_run(lconn *h);
/* The connection ended: its waiting handler is closed and what was held is dropped. */
void sy_lua_handle_ended(lconn *h);
/* The done callback of connection handler tasks (lua_task.h; owner: the lconn). */
/* A handler failed (or its lookup did): WebSocket 1011 (RFC 6455 7.4.1: unexpected
 * condition); a raw protocol has no error channel, so the connection goes (after what was
 * queued). */
void sy_lua_handler_failed(lconn *h);
void sy_lua_handler_done(void *owner, int status);
/* 1 when the handlers of h have a function name. */
int sy_lua_has_handler(lconn *h, const char *name);
/* Runs one held WebSocket event (lua_ws.c). */
void sy_lua_ws_held(lconn *h, int kind, lua_State *L, int payload, int binary);
void sy_lua_push_traceback(lua_State *L);
/* Within one protected call from the core that runs several handlers in turn: the next one
 * gets a whole time budget (app.lua.max_time) of its own. */
void sy_lua_budget_restart(lua_State *L);
/* Drops the registry anchor and the conn pointer. */
void sy_lua_detach(lconn *h);
/* Publishes data to every open WebSocket subscribed to the topic at topic_idx except
 * `except` (may be NULL): framed once, queued by reference. Returns the number of receivers. */
int sy_lua_publish(lua_State *L, int topic_idx, const char *p, size_t n, int binary, lconn *except);
/* Topics (the registry's table of sets of WebSocket handles; shared by ws:subscribe, the
 * host's sy_server_subscribe and every publish). sy_lua_topic_join adds the WebSocket handle
 * at ws_idx to the topic (a string) at topic_idx and returns 1, or 0 when it was there
 * already; sy_lua_topic_leave removes it and returns 1, or 0 when it was not there. Both may
 * raise (out of memory) and leave the stack as they found it. */
int sy_lua_topic_join(lua_State *L, int ws_idx, int topic_idx);
int sy_lua_topic_leave(lua_State *L, int ws_idx, int topic_idx);
/* The topic's subscribers that can still receive (open, closing handshake not started):
 * those a publish reaches now. Walks the topic's set; never raises. */
lua_Integer sy_lua_topic_count(lua_State *L, int topic_idx);
/* Delivers a message published by another process to this state's local subscribers (the
 * topics deliver callback, ud = the lua_State). Never raises; logs a failure. */
void sy_lua_topic_deliver(const char *topic, size_t tlen, const char *p, size_t n, int binary,
                          void *ud);
void sy_lua_open_ws(lua_State *L);
/* Lets go of the sent strings that ws:send's anchors still keep after they were written
 * (the loop is idle). Never raises. */
void sy_lua_ws_anchors_trim(lua_State *L);
/* sy.tcp() (lua_tcp.c): the Socket type and the server's resolver slot. */
void sy_lua_open_tcp(lua_State *L);
int sy_lua_tcp_new(lua_State *L);
/* The server's print: its arguments as Lua's print joins them (tostring, tabs), logged at
 * "info" (so on stderr by default, where stdout keeps the `listening on` lines). */
int sy_lua_print(lua_State *L);
int sy_lua_publish_fn(lua_State *L);
int sy_lua_subscribers_fn(lua_State *L);
/* Reads WebSocket options from the table at idx over *o (app.options, then accept options);
 * raises on a bad value. */
void sy_lua_ws_options(lua_State *L, int idx, sy_ws_options *o);

/* Connection handles (raw and WebSocket): creates one for c with the handlers table at
 * handlers_idx (may be 0 for none); leaves it on the stack and returns its C pointer. The
 * handle is created closed (no anchor, no conn): sy_lua_attach opens it. May raise. */
void *sy_lua_new_conn_handle(lua_State *L, sy_conn *c, int websocket, int handlers_idx);
/* Anchors the handle at idx in the registry, then points it at c. May raise (out of memory)
 * before anything is attached; the caller holds no C resource for it yet. */
void sy_lua_attach(lua_State *L, int idx, lconn *h, sy_conn *c);
/* Sets a string field of the handle at idx (HF_PATH, HF_SUBPROTOCOL). */
void sy_lua_handle_set_info(lua_State *L, int idx, int f, sy_str value);
/* __index helpers shared by Conn and WebSocket: pushes the field named k and returns 1; for
 * a name that is not built in, the app's own field of that name (or nil). */
int sy_lua_handle_field(lua_State *L, lconn *h, const char *k);
/* __newindex of Conn and WebSocket, a closure with the method table as upvalue 1: the app's
 * own fields go to HF_EXTRA; built-in names (methods and fields) raise "<what>.<k> is
 * read-only" at the app's line. */
int sy_lua_handle_newindex(lua_State *L);

/* The binding's side of the app interface (app.h; ud is the server), installed by
 * sy_server_new. */
void sy_lua_dispatch(void *ud, sy_conn *c, const sy_http1_request *req, sy_str body,
                     const sy_upgrade_offer *offers, size_t n);
void sy_lua_request(void *ud, sy_conn *c, const sy_http1_request *req, sy_str body,
                    int32_t stream_id);
void sy_lua_response_dropped(void *ud, void *res);
void sy_lua_raw_open(void *ud, void *handle);
void sy_lua_raw_data(void *ud, void *handle, const char *p, size_t n);
void sy_lua_raw_drain(void *ud, void *handle);
int sy_lua_raw_eof(void *ud, void *handle);
int sy_lua_raw_shutdown(void *ud, void *handle);
void sy_lua_raw_close(void *ud, void *handle);
void sy_lua_conn_discard(void *ud, void *handle);
void sy_lua_ws_open(void *ud, sy_conn *c, void *handle);
void sy_lua_ws_messages(void *ud, sy_conn *c, void *handle, const sy_ws_msg *m, size_t n);
void sy_lua_ws_ping(void *ud, sy_conn *c, void *handle, const char *p, size_t n, int pong);
void sy_lua_ws_drain(void *ud, sy_conn *c, void *handle);
void sy_lua_ws_close(void *ud, sy_conn *c, void *handle, int code, sy_str reason);

/* The time budget (lua_budget.c). sy_lua_budget_enter starts the outermost call from the
 * core into s's state on this thread (deadline, and the hook where this thread needs one) and
 * returns the server whose call it interrupts, for sy_lua_budget_leave. */
double sy_lua_mono_now(void);
/* The server of a state made by the binding, from the state's extra space (no lookup). Only
 * for a server's state: in a state of the host's own (luaopen_switchyard) the extra space is
 * the host's; sy_lua_server, by the registry, tells the two apart. */
static inline sy_server *sy_lua_state_server(lua_State *L)
{
    return *(sy_server **)lua_getextraspace(L);
}
sy_server *sy_lua_budget_enter(sy_server *s, lua_State *L);
void sy_lua_budget_leave(sy_server *s, lua_State *L, sy_server *prev);
/* Same for a coroutine that ran used seconds already (its deadline is that much nearer);
 * *now gets the time it starts. */
sy_server *sy_lua_budget_enter_at(sy_server *s, lua_State *L, double used, double *now);
/* The deadline of the running call: max_time from now less used seconds. Returns now. */
double sy_lua_budget_arm(sy_server *s, double used);
/* In hooked mode, gives L the count hook if it lacks it. */
void sy_lua_budget_hook(lua_State *L);
/* Lua code runs on L now (a coroutine resumed, or back to its resumer); returns the thread
 * that ran before, to be given back when L stops. The signal-based budget stops this one. */
lua_State *sy_lua_budget_thread(lua_State *L);
/* A state was made on this thread / its server is gone (the thread's timer goes with the last
 * one). */
void sy_lua_budget_server_added(void);
void sy_lua_budget_server_gone(void);

/* Module parts. */
void sy_lua_open_request(lua_State *L);
void sy_lua_open_response(lua_State *L);
void sy_lua_open_conn(lua_State *L);
void sy_lua_open_timer(lua_State *L);
int sy_lua_after(lua_State *L);
int sy_lua_every(lua_State *L);

/* sy.counter and sy.gauge (lua_metrics.c), and the metatable of what they return. */
int sy_lua_counter_fn(lua_State *L);
int sy_lua_gauge_fn(lua_State *L);
void sy_lua_open_metric(lua_State *L);

#endif
