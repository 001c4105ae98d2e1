/* switchyard public embedding API: run a server inside a host's own libev loop. */
#ifndef SWITCHYARD_H
#define SWITCHYARD_H

#include <stddef.h>

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
    SY_EFATAL = -50,
};

/* Returns the version of the linked library as "MAJOR.MINOR.PATCH" (static; never NULL). A
 * host can compare it with the SY_VERSION_* it was compiled against. Any thread, any time. */
SY_API const char *sy_version(void);

/* Returns a static English description of a code; never NULL. */
SY_API const char *sy_strerror(int code);

/* Replaces malloc/realloc/free for the core, the Lua state, nghttp2 and zlib (not for
 * OpenSSL). Call before any server exists. realloc_fn(ptr, 0) is never called; free_fn(NULL) must be accepted. */
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
/* Writes "http://HOST:PORT" ("https://" for a TLS listener) for listener index into buf; returns its length or SY_EINVAL. */
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

/* Opens the switchyard Lua module (for package.preload or a loadable module). */
SY_API int luaopen_switchyard(struct lua_State *L);

#ifdef __cplusplus
}
#endif
#endif
