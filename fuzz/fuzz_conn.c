/* libFuzzer target for a whole connection: bytes through a socketpair into a real server. */
#include <ev.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lua.h>

#include "switchyard.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Input layout: one control byte, then the bytes the client sends. The control byte's low two
 * bits give the number of writes (1..4); the rest seeds where the stream is cut. */

/* websocket (echo, small limits; "bye" makes the server close first, "boom" raises;
 * permessage-deflate on /z with context takeover and on /zs with the shared preset), a raw
 * "echo" token, 426 for TLS, h2c (then HTTP/2 streams, as with prior knowledge), a reject on
 * /reject, and plain requests answered with their body length. The same hook decides HTTP/2
 * extended CONNECTs (RFC 8441): WebSocket and "echo" streams on one connection (the h2_connect_*
 * seeds). */
static const char APP[] =
    "local sy = require 'switchyard'\n"
    "return {\n"
    "  http = { max_head = 4096, max_headers = 32, max_body = 65536 },\n"
    "  upgrade = function(req)\n"
    "    if req:offers('websocket') then\n"
    "      return sy.accept('websocket', {\n"
    "        message = function(ws, data, binary)\n"
    "          if data == 'bye' then ws:close(1000, 'bye')\n"
    "          elseif data == 'boom' then error('boom')\n"
    "          else ws:send(data, binary) end\n"
    "        end,\n"
    "      }, { max_message_size = 4096, max_fragments = 16,\n"
    "           compression = (req.path == '/z' and 'default') or (req.path == '/zs' and "
    "'shared'),\n"
    "           compression_threshold = 8 })\n"
    "    end\n"
    "    if req:offers('echo') then\n"
    "      return sy.accept('echo', { data = function(conn, bytes) conn:write(bytes) end }, {})\n"
    "    end\n"
    "    if req:offers('TLS') then return sy.upgrade_required('TLS/1.3') end\n"
    "    if req:offers('h2c') then return sy.accept('h2c') end\n"
    "    if req.path == '/reject' then return sy.reject(403, 'no\\n', {}) end\n"
    "    return nil\n"
    "  end,\n"
    "  request = function(req, res) res:send(200, #(req.body or '') .. '\\n') end,\n"
    "}\n";

static struct ev_loop *loop; /* owned; one for the process */
static sy_server *server;    /* owned; one for the process, freed by fuzz_fini */
static int verbose;          /* FUZZ_CONN_VERBOSE set: the server's answers go to stderr */

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_conn: %s: %s\n", what, server ? sy_server_error(server) : "");
    abort();
}

__attribute__((destructor)) static void fuzz_fini(void)
{
    sy_server_free(server);
    server = NULL;
    if (loop)
        ev_loop_destroy(loop);
    loop = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    verbose = getenv("FUZZ_CONN_VERBOSE") != NULL;
    loop = ev_loop_new(EVFLAG_AUTO);
    if (!loop)
        fail("ev_loop_new");
    server = sy_server_new(loop);
    if (!server)
        fail("sy_server_new");
    char path[] = "/tmp/fuzz_conn_app_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, APP, sizeof APP - 1) != (ssize_t)(sizeof APP - 1))
        fail("writing the app");
    close(fd);
    int rc = sy_server_load_app(server, path);
    unlink(path);
    if (rc != 0)
        fail("sy_server_load_app");
    if (sy_server_start(server) != 0)
        fail("sy_server_start");
    return 0;
}

/* Reads and drops what the server sent; returns 0 once the server closed its side. */
static int drain_peer(int peer)
{
    char buf[16384];
    for (;;) {
        ssize_t r = read(peer, buf, sizeof buf);
        if (r > 0) {
            if (verbose)
                fwrite(buf, 1, (size_t)r, stderr);
            continue;
        }
        if (r == 0)
            return 0;
        return !(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : 1;
    }
}

static void turn(int peer, int times)
{
    for (int i = 0; i < times; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        drain_peer(peer);
    }
}

/* Writes all of p[0..len) unless the server stops reading or closes; bounded. */
static void send_chunk(int peer, const uint8_t *p, size_t len)
{
    for (int tries = 0; len > 0 && tries < 64; tries++) {
        ssize_t w = write(peer, p, len);
        if (w > 0) {
            p += w;
            len -= (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return; /* EPIPE/ECONNRESET: the server closed */
        }
        turn(peer, 2);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned ctl = data[0];
    const uint8_t *in = data + 1;
    size_t len = size - 1;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        fail("socketpair");
    int peer = sv[1];
    if (sy_server_adopt(server, sv[0]) != 0)
        fail("sy_server_adopt");

    /* Cut points from a small LCG seeded by the control byte: same input, same cuts. */
    unsigned nchunks = (ctl & 3) + 1, seed = ctl >> 2;
    size_t at = 0;
    for (unsigned k = 0; k < nchunks && at <= len; k++) {
        size_t n = len - at;
        if (k + 1 < nchunks && n > 0) {
            seed = seed * 1103515245u + 12345u;
            n = (seed >> 8) % (n + 1);
        }
        send_chunk(peer, in + at, n);
        at += n;
        turn(peer, 3);
    }
    turn(peer, 8);

    close(peer);
    for (int i = 0; i < 64 && sy_server_connection_count(server) > 0; i++)
        ev_run(loop, EVRUN_NOWAIT);
    if (sy_server_connection_count(server) > 0)
        fail("a connection outlived its peer");
    /* Free the run's garbage now: with Lua's collector freeing it later, allocations and frees
     * never balance within a run, and libFuzzer then runs a full leak scan after every input
     * (most of the time went there). A real leak still shows: it survives the collection. */
    lua_gc(sy_server_lua(server), LUA_GCCOLLECT);
    return 0;
}
