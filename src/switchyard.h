/* switchyard public embedding API: run a server inside a host's own libev loop. */
#ifndef SWITCHYARD_H
#define SWITCHYARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version. CMakeLists.txt reads the project version from these three lines, so
 * the SONAME, switchyard.pc and the CMake package follow them; sy_version() reports the
 * version of the library actually linked. */
#define SY_VERSION_MAJOR 0
#define SY_VERSION_MINOR 1
#define SY_VERSION_PATCH 0

/* Marks the functions the library exports. The library's own build defines SY_BUILDING (and
 * compiles with -fvisibility=hidden); for a host SY_API expands to nothing, so including this
 * header exports nothing from the host. A host may define SY_API itself before the include. */
#ifndef SY_API
#if defined(SY_BUILDING) && defined(__GNUC__)
#define SY_API __attribute__((visibility("default")))
#else
#define SY_API
#endif
#endif

struct ev_loop;
struct lua_State;

typedef struct sy_server sy_server;

/* Result codes: 0 success, negative on failure. Codes at or below SY_EFATAL mean the object
 * may only be freed. */
enum {
    SY_OK = 0,
    SY_ENOMEM = -1,  /* out of memory */
    SY_EINVAL = -2,  /* bad argument (message in sy_server_error) */
    SY_ESYS = -3,    /* a system call failed (errno kept) */
    SY_ELUA = -4,    /* the app failed to load or a hook raised (message in sy_server_error) */
    SY_ECLOSED = -5, /* the object is closed */
    SY_ENOTSUP = -6, /* the connection's protocol does not take this call (e.g. sending to a
                      * connection that still speaks HTTP) */
    SY_EFATAL = -50,
};

/* Returns the version of the linked library as "MAJOR.MINOR.PATCH" (static; never NULL). A
 * host can compare it with the SY_VERSION_* it was compiled against. Any thread, any time. */
SY_API const char *sy_version(void);

/* Returns a static English description of a code; never NULL. */
SY_API const char *sy_strerror(int code);

/* Replaces malloc/realloc/free for the core, the Lua state, nghttp2 and zlib (not for c-ares or
 * OpenSSL). Call before any server exists. realloc_fn(ptr, 0) is never called; free_fn(NULL) must
 * be accepted. */
SY_API void sy_set_allocator(void *(*malloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                             void (*free_fn)(void *));

/* Creates a server driven by the host's loop (borrowed; must outlive the server). Returns NULL
 * when out of memory. The server owns a fresh Lua state with the switchyard module preloaded. */
SY_API sy_server *sy_server_new(struct ev_loop *loop);

/* Limits and timeouts; each setter returns SY_EINVAL for a value out of range. Sizes in bytes,
 * times in seconds. Defaults in README.md, "Limits and defaults". */
SY_API int sy_server_set_max_head(sy_server *s, size_t bytes);
SY_API int sy_server_set_max_headers(sy_server *s, size_t count);
SY_API int sy_server_set_max_body(sy_server *s, size_t bytes);
SY_API int sy_server_set_header_timeout(sy_server *s, double seconds);
SY_API int sy_server_set_idle_timeout(sy_server *s, double seconds);
SY_API int sy_server_set_high_water(sy_server *s, size_t bytes);
/* Request bodies (HTTP/1.1 and HTTP/2) and partial WebSocket messages held by the whole server
 * at once; past it a new body gets 503 and a message closes its WebSocket with 1013. 0: no
 * limit; else at least 64 KiB. */
SY_API int sy_server_set_max_buffered_total(sy_server *s, size_t bytes);
/* A request body that makes no progress for this long gets 408 (HTTP/1.1) or its stream is
 * answered 408 and reset (HTTP/2); HTTP/2 PINGs and other frames do not count as progress. */
SY_API int sy_server_set_body_timeout(sy_server *s, double seconds);
/* Output that waits this long without the peer taking a byte closes the connection, whatever
 * its protocol (default 60 s; 0: never). Applies to connections' next wait. */
SY_API int sy_server_set_send_timeout(sy_server *s, double seconds);

/* Adds a cleartext HTTP/1.1 listener on host:port (port 0 picks one). reuseport sets
 * SO_REUSEPORT. Returns 0 and starts accepting once the app is loaded; the actual port is
 * then reported by sy_server_listener_port(s, index) in the order listeners were added. */
SY_API int sy_server_listen(sy_server *s, const char *host, int port, int reuseport);
/* Adopts an already listening socket (takes ownership), e.g. one inherited by a worker. */
SY_API int sy_server_listen_fd(sy_server *s, const char *host, int fd);

/* Adds the metrics listener on host:port (port 0 picks one): its connections get the
 * Prometheus text format 0.0.4 at GET /metrics (404 for other paths, 405 for other methods),
 * never the app. At most one per server. Returns the bound port (> 0), or SY_EINVAL / SY_ESYS
 * with the message in sy_server_error. Families and labels: README.md, "Metrics". */
SY_API int sy_server_listen_metrics(sy_server *s, const char *host, int port);

/* TLS. sy_server_set_tls loads a PEM certificate chain and private key (TLS 1.2 and 1.3, ALPN
 * "http/1.1"); it serves TLS listeners and the in-place upgrade of RFC 2817 on cleartext ones.
 * Returns 0 or SY_EINVAL with a message naming the file (never the key's content) in
 * sy_server_error. Calling it again replaces the certificate for new connections. */
SY_API int sy_server_set_tls(sy_server *s, const char *cert_file, const char *key_file);
/* Adds a listener where TLS starts on the first byte; needs sy_server_set_tls first (else
 * SY_EINVAL). Same arguments and results as sy_server_listen. */
SY_API int sy_server_listen_tls(sy_server *s, const char *host, int port, int reuseport);
/* Adopts an already listening socket as a TLS listener (needs sy_server_set_tls first). */
SY_API int sy_server_listen_tls_fd(sy_server *s, const char *host, int fd);
/* 1 for a TLS listener, 0 for a cleartext one, SY_EINVAL for a bad index. */
SY_API int sy_server_listener_is_tls(const sy_server *s, int index);
SY_API int sy_server_listener_fd(const sy_server *s, int index);
SY_API int sy_server_listener_count(const sy_server *s);
SY_API int sy_server_listener_port(const sy_server *s, int index);
/* Writes "http://HOST:PORT" ("https://" for a TLS listener) for listener index into buf; returns
 * its length or SY_EINVAL. */
SY_API int sy_server_listener_url(const sy_server *s, int index, char *buf, size_t cap);

/* Serves an already connected stream socket (takes ownership of fd, also on failure) as a new
 * HTTP/1.1 connection: for hosts that accept sockets themselves, and for tests that drive a
 * connection through a socketpair. Returns 0, SY_ENOMEM, SY_EINVAL or SY_ECLOSED (stopping). */
SY_API int sy_server_adopt(sy_server *s, int fd);

/* How long loading the app file (running its main chunk) may take, in seconds: 10 by default,
 * 0 for no limit; app.lua.max_time applies to calls after the load. Without this call the
 * environment variable SWITCHYARD_LOAD_TIMEOUT (seconds) is read at each load. Returns 0 or
 * SY_EINVAL (outside 0 .. 86400). */
SY_API int sy_server_set_load_timeout(sy_server *s, double seconds);

/* Loads APP.lua (the file must return a table) within the load timeout. Returns 0, or SY_ELUA
 * with the message (file:line) in sy_server_error; SY_EINVAL for a bad
 * SWITCHYARD_LOAD_TIMEOUT. */
SY_API int sy_server_load_app(sy_server *s, const char *path);

/* Loads the app file of sy_server_load_app again, keeping every open connection (what the
 * switchyard program does on SIGHUP). The new file is loaded and checked as at the first load
 * (load timeout, app keys, app.http, app.lua); when it fails, the app loaded before stays (with
 * its modules in package.loaded and its settings), the error is logged at "error" and the call
 * returns SY_ELUA (SY_EINVAL for a bad SWITCHYARD_LOAD_TIMEOUT) with the message in
 * sy_server_error. After a good reload, new requests and upgrades run the new hooks; open
 * WebSockets and raw connections keep their handlers, except those accepted with a named
 * handler set (sy.accept(token, "name")), which run the new app's app.handlers[name] from
 * their next event. Returns 0; SY_EINVAL when no app file was loaded or when called from
 * inside a call into the app; SY_ECLOSED once sy_server_shutdown began. */
SY_API int sy_server_reload(sy_server *s);

/* Starts the listeners' watchers. */
SY_API int sy_server_start(sy_server *s);

/* Begins a graceful stop: listeners close, WebSockets get 1001, connections drain. done_cb
 * (may be NULL) runs once when no connection is left or after grace seconds, always from the
 * loop (never inside sy_server_shutdown or a connection's close), so it may free the server
 * with sy_server_free. It does not run if the server is freed first. */
SY_API void sy_server_shutdown(sy_server *s, double grace, void (*done_cb)(sy_server *, void *),
                               void *ud);

/* Number of open connections. */
SY_API size_t sy_server_connection_count(const sy_server *s);

/* The time one call into the app may take (app.lua.max_time, seconds; 0: no limit), as set
 * by the loaded app. A call stuck inside one C function (a Lua pattern that backtracks) is
 * not stopped by it: a host's watchdog may use a multiple of it as its own limit. */
SY_API double sy_server_lua_max_time(const sy_server *s);

/* The server's Lua state (borrowed; valid until sy_server_free). */
SY_API struct lua_State *sy_server_lua(sy_server *s);

/* The last error message (borrowed; valid until the next call on s). Never NULL. */
SY_API const char *sy_server_error(const sy_server *s);

/* Closes every connection and listener at once and frees the server. NULL is accepted. Free a
 * server on the thread that made it: the Lua time budget's CPU timer (SIGVTALRM, one per
 * thread) is deleted when the thread's last server is freed. */
SY_API void sy_server_free(sy_server *s);

/* ---- Logging ----------------------------------------------------------------------------
 *
 * Every line the library logs (errors of the app's handlers, warnings, the server's notices)
 * goes through one function. By default it is written to stderr, one line per message:
 * "TIME [level] worker=N pid=P message" (TIME in RFC 3339, UTC, microseconds), or one JSON
 * object per line with sy_set_log_format(SY_LOG_JSON). */
enum {
    SY_LOG_FATAL = 0, /* the process cannot go on (the switchyard program exits after it) */
    SY_LOG_ERROR = 1, /* a handler raised, a connection failed in a way worth seeing */
    SY_LOG_WARN = 2,
    SY_LOG_INFO = 3,
    SY_LOG_DEBUG = 4, /* sy.log("debug", ...) of the app */
};

/* Receives one log line: level (SY_LOG_*), msg (borrowed, NUL-terminated, no newline; valid
 * during the call only) and the ud given to sy_set_log. It runs on the thread that logs, from
 * inside whatever the library was doing (a loop callback, a Lua handler's failure): it must
 * not call back into the library, except sy_log_level_name. */
typedef void (*sy_log_fn)(int level, const char *msg, void *ud);

/* Routes the library's log lines to fn (NULL: back to the default, stderr). Process-wide; set
 * it before servers run, or make sure no server logs on another thread meanwhile. */
SY_API void sy_set_log(sy_log_fn fn, void *ud);

/* "fatal", "error", "warn", "info", "debug" (static; "?" for an unknown level). */
SY_API const char *sy_log_level_name(int level);

/* Lines above level (SY_LOG_*) are dropped before they reach the sink (the default or the
 * host's function). The library's default is SY_LOG_DEBUG: nothing is dropped (the switchyard
 * program starts at SY_LOG_INFO, see --log-level). A level out of range is clamped.
 * Process-wide, like sy_set_log. */
SY_API void sy_set_log_level(int level);

enum {
    SY_LOG_TEXT = 0, /* "TIME [level] worker=N pid=P message" */
    SY_LOG_JSON = 1, /* {"time":..,"level":..,"worker":N,"pid":P,"msg":..} per line */
};

/* The format of the default sink's lines and of access logs (SY_LOG_TEXT or SY_LOG_JSON;
 * another value: SY_LOG_TEXT). Process-wide. A host's sy_set_log function still gets the bare
 * message. */
SY_API void sy_set_log_format(int format);

/* Opens path as the access log of s: one line per HTTP request and per upgrade decision, one
 * at the close of each WebSocket and raw stream (README "Logs"), in the format of
 * sy_set_log_format. "-" is stdout; NULL turns the access log off. The file is opened for
 * appending (created 0644) and written line by line without buffering. Returns 0, or SY_ESYS
 * with the message in sy_server_error (the previous access log stays then). */
SY_API int sy_server_set_access_log(sy_server *s, const char *path);

/* Reopens the access log file of s by its path (logrotate: rename, then reopen): the new file
 * is opened before the old one is closed, so no line is lost. Nothing to do without an access
 * log or when it is stdout. Returns 0, or SY_ESYS with the message in sy_server_error (the old
 * file stays in use). The switchyard program calls it on SIGUSR1. */
SY_API int sy_server_reopen_logs(sy_server *s);

/* ---- Host calls ---------------------------------------------------------------------------
 *
 * Unless said otherwise, the calls below run on the thread of the server's loop: from any of
 * the loop's callbacks (the host's own timers too), from the callbacks of sy_ws_handler, and
 * from C functions the host registered in the server's Lua state while Lua calls them. None of
 * them frees the server; sy_server_free must not be called from inside the server's callbacks
 * (use sy_server_shutdown's done_cb). */

/* The host's pointer for the server (NULL until set); the library never looks inside it. */
SY_API void sy_server_set_user_data(sy_server *s, void *ud);
SY_API void *sy_server_user_data(const sy_server *s);

/* Connections are named by ids, never by pointers: an id is a nonzero number given to each
 * connection when it is accepted or adopted, never given again by the same server. A call with
 * the id of a connection that has closed answers SY_ECLOSED (or NULL), so a host may keep ids
 * as long as it likes. The id of a WebSocket is also its Lua handle's ws.id. */
typedef uint64_t sy_conn_id;

/* The host's pointer for one connection (NULL until set). It is forgotten (not freed) when
 * the connection is gone, after sy_ws_handler.on_close has run (on_close can still read it).
 * Returns 0, SY_ECLOSED, or SY_ENOMEM (the first non-NULL pointer set makes the server's table
 * of them). */
SY_API int sy_server_conn_set_user_data(sy_server *s, sy_conn_id id, void *ud);
/* The connection's pointer, or NULL (none set, or the connection is gone). */
SY_API void *sy_server_conn_user_data(const sy_server *s, sy_conn_id id);
/* 1 while the connection is open (for a WebSocket: until its closing handshake starts), 0
 * after. */
SY_API int sy_server_conn_alive(const sy_server *s, sy_conn_id id);

/* Sends data to connection id, copied or sent before the call returns:
 * - a WebSocket gets one message: text (binary 0: must be valid UTF-8) or binary;
 * - a raw connection (its app accepted a token other than websocket, h2c or TLS) gets the
 *   bytes as they are, after what its Lua handlers wrote before; binary is ignored. Past the
 *   high-water mark reading from the peer pauses until the queue drains, as after
 *   conn:write.
 * data may be NULL when len is 0. Returns 0; 1 when the connection's queue is now over the
 * high-water mark (the data is queued; slow down); 2 when a WebSocket's backpressure policy
 * dropped it; SY_ECLOSED when the connection is gone or closing (a WebSocket after its closing
 * handshake started, a raw connection after sy_server_close_conn, conn:close() or
 * conn:shutdown()); SY_ENOTSUP when it speaks another protocol (HTTP/1.1 before or without an
 * upgrade, HTTP/2); SY_EINVAL for text that is not UTF-8 or NULL data with len > 0. */
SY_API int sy_server_send(sy_server *s, sy_conn_id id, const void *data, size_t len, int binary);

/* Closes connection id: a WebSocket starts its closing handshake with code (1000, 1001 or
 * 3000..4999) and reason (UTF-8, at most 123 bytes; NULL for none); any other connection
 * closes once its queued output is written (code and reason unused). The close callbacks
 * (sy_ws_handler.on_close, the Lua close handler) run later, from the loop, when the peer
 * answers or the close timeout passes. Returns 0, SY_ECLOSED (gone, or closing already) or
 * SY_EINVAL (bad code or reason). */
SY_API int sy_server_close_conn(sy_server *s, sy_conn_id id, int code, const char *reason);

/* Sends data to every WebSocket subscribed to topic (NUL-terminated; joined by ws:subscribe in
 * Lua or sy_server_subscribe): the frame is built once and queued by reference to each receiver
 * (compressed once per window size for those that agreed on permessage-deflate), and passed on
 * to the other workers and Redis when linked. Returns the number of receivers in this process
 * (0 for an unknown topic), SY_EINVAL for text that is not UTF-8 or a NULL
 * topic, SY_ENOMEM. Receivers whose queue is past their backpressure bound drop or close as
 * for ws:publish. May run the Lua close handler of a receiver that fails (out of memory)
 * before it returns. */
SY_API int sy_server_publish(sy_server *s, const char *topic, const void *data, size_t len,
                             int binary);

/* Shares topics with other processes and machines through Redis pub/sub: url is
 * redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (port 6379 by default; the DB number is accepted
 * but pub/sub channels are the same in every database: the prefix keeps apps apart). Every
 * publish is delivered locally at once and PUBLISHed on channel prefix + topic; the server
 * SUBSCRIBEs to the channels of the topics that have local subscribers and delivers what
 * other processes published there. The link connects from the loop and reconnects with
 * backoff (0.1 s doubling to 5 s) while Redis is away, logging a warning; local delivery goes
 * on. Call before sy_server_start. Returns 0, SY_EINVAL for a bad URL, SY_ENOMEM. */
SY_API int sy_server_set_redis(sy_server *s, const char *url);
/* The channel prefix for sy_server_set_redis (default "switchyard:", at most 256 bytes); set
 * it before the URL. Returns 0, SY_EINVAL (too long, or the URL was set already), SY_ENOMEM. */
SY_API int sy_server_set_redis_prefix(sy_server *s, const char *prefix);

/* Topics: named groups of WebSockets that one publish reaches (sy_server_publish, and
 * sy.publish / ws:publish in Lua). They are the ones ws:subscribe uses: a connection the host
 * subscribed is also reached by the app's Lua publishes, and the other way round. A topic is
 * len bytes (any bytes; sy_server_publish names topics without a NUL byte) and is copied; it
 * exists while it has subscribers. A connection that closes leaves all its topics (by the
 * time its Lua close handler runs). Like the calls above, these run on the loop's thread, from
 * the host's callbacks too (sy_ws_handler.on_open may put a new player into a room). Topics
 * are shared with the other workers of --workers and, with sy_server_set_redis, with other
 * processes; subscriber counts are this server's own.
 *
 * sy_server_subscribe adds WebSocket id to topic. Returns 1 when it joined, 0 when it was
 * subscribed already; SY_ECLOSED when the connection is gone or its closing handshake has
 * started; SY_ENOTSUP when it is not a WebSocket (raw and HTTP connections have no topics);
 * SY_EINVAL for a NULL topic; SY_ENOMEM. */
SY_API int sy_server_subscribe(sy_server *s, sy_conn_id id, const char *topic, size_t len);
/* Removes WebSocket id from topic (also while its closing handshake runs). Returns 1 when it
 * was subscribed, 0 when not; SY_ECLOSED, SY_ENOTSUP, SY_EINVAL, SY_ENOMEM as above. */
SY_API int sy_server_unsubscribe(sy_server *s, sy_conn_id id, const char *topic, size_t len);
/* The number of this server's WebSockets subscribed to topic that can still receive (open,
 * closing handshake not started): those a publish would reach now; 0 for an unknown topic.
 * The same count as sy.subscribers(topic) in Lua. It walks the topic's subscribers. Returns
 * the count, SY_EINVAL for a NULL topic, SY_ENOMEM. */
SY_API int sy_server_subscribers(sy_server *s, const char *topic, size_t len);

/* WebSocket events in C. The Lua app still decides each upgrade (app.upgrade or the default
 * routes); once a WebSocket is open, these callbacks run beside the Lua handlers:
 * - on_open(s, id, ud): the WebSocket opened; runs before the Lua open handler.
 * - on_message(s, id, data, len, binary, ud): one whole message (text is valid UTF-8; data
 *   borrowed, valid during the call only). Return 1 when the host handled it (the Lua message
 *   handler is then not called for it), 0 to pass it on to Lua.
 * - on_close(s, id, code, reason, reason_len, ud): the connection is closing or closed; runs
 *   at most once for every on_open, before the Lua close handler; sends to the id answer
 *   SY_ECLOSED from here on, its user data still answers. code and reason are those the Lua
 *   close handler gets (1006 when the peer sent no close frame).
 * Any entry may be NULL. The callbacks may call the host calls above (send, publish, close,
 * call_lua); sy_server_close_conn from on_message stops the delivery of the messages that
 * arrived behind it. */
typedef struct sy_ws_handler {
    void (*on_open)(sy_server *s, sy_conn_id id, void *ud);
    int (*on_message)(sy_server *s, sy_conn_id id, const char *data, size_t len, int binary,
                      void *ud);
    void (*on_close)(sy_server *s, sy_conn_id id, int code, const char *reason, size_t reason_len,
                     void *ud);
} sy_ws_handler;

/* Installs h (copied; NULL removes it) with ud passed to its callbacks; takes effect at once.
 * on_close runs for each WebSocket whose on_open ran (with the callbacks installed when it
 * closes; none after a removal), also from sy_server_free, where only the user-data calls
 * still answer. */
SY_API void sy_server_set_ws_handler(sy_server *s, const sy_ws_handler *h, void *ud);

/* An argument for sy_server_call_lua: a string (s, len bytes; len SIZE_MAX: NUL-terminated)
 * or a number. */
typedef struct sy_lua_arg {
    int type; /* SY_LUA_STRING or SY_LUA_NUMBER */
    const char *s;
    size_t len;
    double n;
} sy_lua_arg;
enum { SY_LUA_STRING = 1, SY_LUA_NUMBER = 2 };
#define SY_LUA_STR(str) ((sy_lua_arg){SY_LUA_STRING, (str), (size_t)-1, 0})
#define SY_LUA_NUM(num) ((sy_lua_arg){SY_LUA_NUMBER, NULL, 0, (double)(num)})

/* Calls the app's function name (the field of the table the app file returned, else a global
 * of that name) with nargs arguments, under the app's time budget (sy_server_lua_max_time:
 * a call still running past it raises) and memory bound, as the core calls handlers. Results
 * are dropped. Returns 0; SY_ELUA when the function raised or ran out of time or memory (the
 * message with its traceback in sy_server_error, also logged); SY_EINVAL when there is no
 * such function or an argument is bad. May be called from inside a Lua handler (for example
 * by a C function the app calls): the time budget of the outermost call then applies. */
SY_API int sy_server_call_lua(sy_server *s, const char *name, const sy_lua_arg *args, size_t nargs);

/* The Lua bounds, set by the host: each overrides app.lua.max_time / app.lua.max_memory of
 * the app file (which is then still checked, but not applied). max_time: seconds one call from
 * the core or the host into Lua may run (0: no limit; at most 3600; default 2). max_memory:
 * bytes the Lua state may hold (0: no limit, else at least 1 MiB; default 1 GiB); lowering it
 * below what the state holds fails the allocations that would grow it. Return 0 or
 * SY_EINVAL. */
SY_API int sy_server_set_lua_max_time(sy_server *s, double seconds);
SY_API int sy_server_set_lua_max_memory(sy_server *s, size_t bytes);

/* Opens the switchyard Lua module (for package.preload or a loadable module). */
SY_API int luaopen_switchyard(struct lua_State *L);

#ifdef __cplusplus
}
#endif
#endif
