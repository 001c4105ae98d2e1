/* The host's configuration calls, each checked by what a loopback client gets: the HTTP
 * limits and timeouts (431, 413, 408, the keep-alive close), listeners adopted from the host
 * (cleartext and TLS), TLS listeners with a certificate made here, and the Lua module opened
 * in a plain Lua state. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "host_net.h"

static char dir[] = "/tmp/sy_test_host_api_config_XXXXXX";
static char cert_path[128], key_path[128];

static const char APP[] =
    "return { request = function(req, res)\n"
    "  res:send(200, 'plain ' .. req.scheme .. ' ' .. #(req.body or '') .. '\\n') end }\n";

static void make_cert(void)
{
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    FILE *f = fopen(key_path, "w");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    X509_sign(x, k, EVP_sha256());
    f = fopen(cert_path, "w");
    PEM_write_X509(f, x);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static sy_server *new_server(struct ev_loop *loop)
{
    sy_server *s = sy_server_new(loop);
    CHECK_MSG(sy_server_load_app(s, net_write_file(dir, "app.lua", APP)) == 0, "%s",
              sy_server_error(s));
    return s;
}

/* Sends req on a new connection to port and reads until EOF or `until`; returns the reply in
 * *in (the connection is closed). */
static void exchange(struct ev_loop *loop, int port, const char *req, size_t n, const char *until,
                     net_in *in)
{
    int fd = net_connect(port);
    CHECK(fd >= 0);
    memset(in, 0, sizeof *in);
    net_send(fd, req, n);
    CHECK(net_until(loop, fd, in, until, until ? strlen(until) : 0));
    close(fd);
}

static void test_http_limits(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = new_server(loop);
    net_in *in = calloc(1, sizeof *in);
    char req[4096];

    CHECK(sy_server_set_max_head(s, 255) == SY_EINVAL);
    CHECK(sy_server_set_max_head(s, (1 << 20) + 1) == SY_EINVAL);
    CHECK(sy_server_set_max_head(s, 1024) == 0);
    CHECK(sy_server_set_max_headers(s, 0) == SY_EINVAL);
    CHECK(sy_server_set_max_headers(s, 5) == 0);
    CHECK(sy_server_set_max_body(s, ((size_t)1 << 40) + 1) == SY_EINVAL);
    CHECK(sy_server_set_max_body(s, 10) == 0);
    CHECK(sy_server_set_header_timeout(s, 0) == SY_EINVAL);
    CHECK(sy_server_set_header_timeout(s, 0.3) == 0);
    CHECK(sy_server_set_idle_timeout(s, 0) == SY_EINVAL);
    CHECK(sy_server_set_idle_timeout(s, 0.3) == 0);
    CHECK(sy_server_listen(s, "127.0.0.1", 0, 0) == 0);
    CHECK(sy_server_start(s) == 0);
    int port = sy_server_listener_port(s, 0);

    /* Within every limit: served. */
    int n = snprintf(req, sizeof req,
                     "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                     "Connection: close\r\n\r\n0123456789");
    exchange(loop, port, req, (size_t)n, NULL, in);
    CHECK_MSG(strncmp(in->buf, "HTTP/1.1 200", 12) == 0 && strstr(in->buf, "plain http 10\n"), "%s",
              in->buf);

    /* A head of 1100 bytes passes 1024: 431. */
    n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: %01050d\r\n\r\n", 0);
    exchange(loop, port, req, (size_t)n, NULL, in);
    CHECK_MSG(strncmp(in->buf, "HTTP/1.1 431", 12) == 0, "%s", in->buf);

    /* Six header fields, one more than 5: 431. */
    n = snprintf(req, sizeof req,
                 "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n");
    exchange(loop, port, req, (size_t)n, NULL, in);
    CHECK_MSG(strncmp(in->buf, "HTTP/1.1 431", 12) == 0, "%s", in->buf);

    /* A body of 11 bytes passes 10: 413. */
    n = snprintf(req, sizeof req,
                 "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n0123456789a");
    exchange(loop, port, req, (size_t)n, NULL, in);
    CHECK_MSG(strncmp(in->buf, "HTTP/1.1 413", 12) == 0, "%s", in->buf);

    /* A head that never completes: 408 once the header timeout passes. */
    exchange(loop, port, "GET / HTTP/1.1\r\n", 16, NULL, in);
    CHECK_MSG(strncmp(in->buf, "HTTP/1.1 408", 12) == 0, "%s", in->buf);

    /* Keep-alive: answered, then closed by the server once idle past the timeout. */
    n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    exchange(loop, port, req, (size_t)n, NULL, in);
    CHECK(in->eof && strncmp(in->buf, "HTTP/1.1 200", 12) == 0);
    CHECK(strstr(in->buf, "plain http 0\n") != NULL);

    free(in);
    sy_server_free(s);
    ev_loop_destroy(loop);
}

/* A listening TCP socket on 127.0.0.1, port 0; *port gets the port. */
static int listening_socket(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        perror("listening socket");
        exit(2);
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* One request over TLS to port: handshake and exchange with the loop turning meanwhile.
 * Returns 1 when the answer came and holds `want`. */
static int tls_get(struct ev_loop *loop, int port, const char *want)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    int fd = net_connect(port);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    int ok = 0, sent = 0;
    char buf[4096];
    size_t len = 0;
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for (double end = net_now() + NET_CAP_SECONDS; net_now() < end;) {
        ev_run(loop, EVRUN_NOWAIT);
        if (!SSL_is_init_finished(ssl)) {
            int r = SSL_connect(ssl);
            int e = r == 1 ? 0 : SSL_get_error(ssl, r);
            if (r != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                break;
            if (r != 1) {
                usleep(500);
                continue;
            }
        }
        if (!sent) {
            CHECK(SSL_write(ssl, req, sizeof req - 1) == (int)(sizeof req - 1));
            sent = 1;
        }
        int r = SSL_read(ssl, buf + len, (int)(sizeof buf - 1 - len));
        if (r > 0) {
            len += (size_t)r;
            buf[len] = 0;
            if (strstr(buf, want)) {
                ok = strncmp(buf, "HTTP/1.1 200", 12) == 0;
                break;
            }
            continue;
        }
        int e = SSL_get_error(ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            break;
        usleep(500);
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return ok;
}

static void test_listeners(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = new_server(loop);
    net_in *in = calloc(1, sizeof *in);
    char url[128];

    /* TLS needs a certificate first; a missing file is named in the message. */
    CHECK(sy_server_listen_tls(s, "127.0.0.1", 0, 0) == SY_EINVAL);
    int tls_port, tls_fd = listening_socket(&tls_port);
    CHECK(sy_server_listen_tls_fd(s, "127.0.0.1", tls_fd) == SY_EINVAL);
    CHECK(sy_server_set_tls(s, "/nonexistent/cert.pem", key_path) == SY_EINVAL);
    CHECK(strstr(sy_server_error(s), "/nonexistent/cert.pem") != NULL);
    CHECK(sy_server_set_tls(s, cert_path, key_path) == 0);
    CHECK(sy_server_listener_count(s) == 0);

    /* 0: a cleartext socket of the host's; 1: a TLS listener; 2: a TLS socket of the host's. */
    int plain_port, plain_fd = listening_socket(&plain_port);
    CHECK(sy_server_listen_fd(s, "127.0.0.1", plain_fd) == 0);
    CHECK(sy_server_listen_tls(s, "127.0.0.1", 0, 0) == 0);
    CHECK(sy_server_listen_tls_fd(s, "127.0.0.1", tls_fd) == 0);
    CHECK(sy_server_listener_count(s) == 3);
    CHECK(sy_server_listener_fd(s, 0) == plain_fd && sy_server_listener_fd(s, 2) == tls_fd);
    CHECK(sy_server_listener_fd(s, 1) >= 0 && sy_server_listener_fd(s, 3) == SY_EINVAL);
    CHECK(sy_server_listener_port(s, 0) == plain_port);
    CHECK(sy_server_listener_port(s, 2) == tls_port);
    CHECK(sy_server_listener_is_tls(s, 0) == 0);
    CHECK(sy_server_listener_is_tls(s, 1) == 1 && sy_server_listener_is_tls(s, 2) == 1);
    CHECK(sy_server_listener_is_tls(s, 3) == SY_EINVAL);
    CHECK(sy_server_listener_url(s, 1, url, sizeof url) > 0 && strncmp(url, "https://", 8) == 0);
    CHECK(sy_server_start(s) == 0);

    exchange(loop, plain_port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 46, NULL,
             in);
    CHECK_MSG(strstr(in->buf, "plain http 0\n") != NULL, "%s", in->buf);
    CHECK(tls_get(loop, sy_server_listener_port(s, 1), "plain https 0\n"));
    CHECK(tls_get(loop, tls_port, "plain https 0\n"));

    free(in);
    sy_server_free(s);
    ev_loop_destroy(loop);
}

/* The module in a Lua state of the host's own, without a server: the decisions work, the
 * topics are empty, what needs a server says so. */
static void test_luaopen(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "switchyard", luaopen_switchyard, 1);
    lua_pop(L, 1);
    int rc = luaL_dostring(L, "local sy = require 'switchyard'\n"
                              "local d = sy.accept('websocket', {})\n"
                              "return d.kind, d.token, sy.subscribers('t'), sy.publish('t', 'x'),"
                              "  type(sy.now()), sy.version\n");
    CHECK_MSG(rc == LUA_OK, "%s", lua_tostring(L, -1));
    if (rc == LUA_OK) {
        CHECK(strcmp(lua_tostring(L, 1), "accept") == 0);
        CHECK(strcmp(lua_tostring(L, 2), "websocket") == 0);
        CHECK(lua_tointeger(L, 3) == 0 && lua_tointeger(L, 4) == 0);
        CHECK(strcmp(lua_tostring(L, 5), "number") == 0);
        CHECK(strcmp(lua_tostring(L, 6), sy_version()) == 0);
    }
    lua_settop(L, 0);
    CHECK(luaL_dostring(L, "require('switchyard').accept()") != LUA_OK);
    /* No WebSocket exists here; ws:send, reached through the registry, says what it needs
     * (the server's paths read the state's extra space, which is the host's here). */
    lua_settop(L, 0);
    rc = luaL_dostring(L, "local send = debug.getregistry()['switchyard.WebSocket'].__index({},"
                          " 'send')\nreturn pcall(send, {}, 'x')");
    CHECK_MSG(rc == LUA_OK, "%s", lua_tostring(L, -1));
    CHECK(rc == LUA_OK && !lua_toboolean(L, 1) &&
          strstr(lua_tostring(L, 2), "ws:send needs a switchyard server") != NULL);
    /* The extra space is the host's to use: sy.tcp must not take it for a server. */
    memset(lua_getextraspace(L), 0xab, LUA_EXTRASPACE);
    lua_settop(L, 0);
    rc = luaL_dostring(L, "return pcall(require('switchyard').tcp)");
    CHECK_MSG(rc == LUA_OK, "%s", lua_tostring(L, -1));
    CHECK(rc == LUA_OK && !lua_toboolean(L, 1) &&
          strstr(lua_tostring(L, 2), "needs a running switchyard server") != NULL);
    /* Nor may the WebSocket methods, which look for a face's state (a table is none). */
    lua_settop(L, 0);
    rc = luaL_dostring(L,
                       "return pcall(debug.getregistry()['switchyard.WebSocket'].__tostring, {})");
    CHECK_MSG(rc == LUA_OK, "%s", lua_tostring(L, -1));
    CHECK(rc == LUA_OK && !lua_toboolean(L, 1) &&
          strstr(lua_tostring(L, 2), "switchyard.WebSocket expected") != NULL);
    lua_close(L);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 2;
    make_cert();
    test_http_limits();
    test_listeners();
    test_luaopen();
    unlink(net_write_file(dir, "app.lua", ""));
    unlink(cert_path);
    unlink(key_path);
    rmdir(dir);
    return t_summary("test_host_api_config");
}
