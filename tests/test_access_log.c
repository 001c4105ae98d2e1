/* The access log: lines as logfmt and JSON (quoting, escaping, a cut target), and a real server
 * writing its access log to a file that is renamed and reopened (sy_server_set_access_log,
 * sy_server_reopen_logs), in text and JSON. */
#include "access_log.h"
#include "conn.h"
#include "host_net.h"
#include "log.h"

static char dir[] = "/tmp/sy_test_access_log_XXXXXX";

static const char *format(const sy_access *a, int json_mode)
{
    static char out[16 * 1024];
    size_t n = sy_access_format(a, 1700000000.5, json_mode, out, sizeof out);
    CHECK(n > 0 && n < sizeof out && out[n - 1] == '\n');
    out[n] = 0;
    return out;
}

static void test_format(void)
{
    sy_conn c;
    memset(&c, 0, sizeof c);
    c.peer.family = AF_INET;
    c.peer.addr[0] = 127, c.peer.addr[3] = 1;
    c.peer.port = 4242;
    c.id = 7;
    sy_access a;
    memset(&a, 0, sizeof a);
    a.event = SY_ACCESS_UPGRADE;
    a.conn = &c;
    a.proto = "HTTP/1.1";
    a.method = SY_STR("GET");
    a.target = SY_STR("/a b?\"q\"=\x01\xff");
    a.upgrade = SY_STR("websocket");
    a.decision = "accept";
    a.protocol = SY_STR("websocket");
    a.status = 101;
    a.started = 1700000000.25;
    const char *t = format(&a, 0);
    CHECK_MSG(strcmp(t, "time=2023-11-14T22:13:20.500000Z event=upgrade remote=127.0.0.1 "
                        "port=4242 worker=0 conn=7 proto=HTTP/1.1 method=GET "
                        "target=\"/a b?\\\"q\\\"=\\u0001\\ufffd\" upgrade=websocket "
                        "decision=accept protocol=websocket status=101 bytes_out=0 "
                        "duration=0.250000\n") == 0,
              "%s", t);
    t = format(&a, 1);
    CHECK_MSG(strcmp(t, "{\"time\":\"2023-11-14T22:13:20.500000Z\",\"event\":\"upgrade\","
                        "\"remote\":\"127.0.0.1\",\"port\":4242,\"worker\":0,\"conn\":7,"
                        "\"proto\":\"HTTP/1.1\",\"method\":\"GET\","
                        "\"target\":\"/a b?\\\"q\\\"=\\u0001\\ufffd\",\"upgrade\":\"websocket\","
                        "\"decision\":\"accept\",\"protocol\":\"websocket\",\"status\":101,"
                        "\"bytes_out\":0,\"duration\":0.250000}\n") == 0,
              "%s", t);
    /* A close: counts and codes, no request fields. */
    sy_access k;
    memset(&k, 0, sizeof k);
    k.event = SY_ACCESS_CLOSE;
    k.conn = &c;
    k.proto = "websocket";
    k.msgs_in = 3, k.msgs_out = 2, k.bytes_in = 10, k.bytes_out = 20;
    k.close_sent = 1001, k.close_received = 1005;
    t = format(&k, 0);
    CHECK_MSG(strcmp(t, "time=2023-11-14T22:13:20.500000Z event=close remote=127.0.0.1 "
                        "port=4242 worker=0 conn=7 proto=websocket msgs_in=3 msgs_out=2 "
                        "bytes_in=10 bytes_out=20 close_sent=1001 close_recv=1005 "
                        "duration=0.000000\n") == 0,
              "%s", t);
    /* Unknown method and target (a head that could not be read) are left out. */
    sy_access r;
    memset(&r, 0, sizeof r);
    r.event = SY_ACCESS_REQUEST;
    r.conn = &c;
    r.proto = "HTTP/1.1";
    r.status = 400;
    r.bytes_out = 12;
    t = format(&r, 0);
    CHECK_MSG(strstr(t, "proto=HTTP/1.1 status=400 bytes_out=12 ") && !strstr(t, "method"), "%s",
              t);
    /* A huge target is cut: the line stays within its buffer. */
    static char big[20000];
    memset(big, 'x', sizeof big);
    r.target = sy_str_make(big, sizeof big);
    t = format(&r, 1);
    CHECK(strlen(t) < 5000 && strstr(t, "x...\",\"status\":400"));
}

/* Runs the loop until path holds want (or the cap). Returns the file's text (static). */
static const char *wait_file(struct ev_loop *loop, const char *path, const char *want)
{
    static char text[8192];
    for (double end = net_now() + NET_CAP_SECONDS; net_now() < end;) {
        ev_run(loop, EVRUN_NOWAIT);
        text[0] = 0;
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(text, 1, sizeof text - 1, f);
            text[n] = 0;
            fclose(f);
        }
        if (strstr(text, want))
            break;
        usleep(1000);
    }
    return text;
}

static void request(struct ev_loop *loop, int port, const char *path)
{
    int fd = net_connect(port);
    CHECK(fd >= 0);
    char req[128];
    int n =
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    net_send(fd, req, (size_t)n);
    net_in *in = calloc(1, sizeof *in);
    CHECK(net_until(loop, fd, in, NULL, 0));
    CHECK(strncmp(in->buf, "HTTP/1.1 200", 12) == 0);
    free(in);
    close(fd);
}

static void test_server(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = sy_server_new(loop);
    CHECK(sy_server_reopen_logs(s) == 0); /* no access log: nothing to do */
    CHECK(sy_server_listen(s, "127.0.0.1", 0, 0) == 0);
    const char *app = net_write_file(
        dir, "app.lua", "return { request = function(req, res) res:send(200, 'ok') end }\n");
    CHECK_MSG(sy_server_load_app(s, app) == 0, "%s", sy_server_error(s));
    CHECK(sy_server_start(s) == 0);
    int port = sy_server_listener_port(s, 0);
    char path[256], old[300], bad[300];
    snprintf(path, sizeof path, "%s/access.log", dir);
    snprintf(old, sizeof old, "%s.1", path);
    snprintf(bad, sizeof bad, "%s/no/such/dir/access.log", dir);

    CHECK(sy_server_set_access_log(s, bad) == SY_ESYS);
    CHECK_MSG(strstr(sy_server_error(s), "no/such/dir"), "%s", sy_server_error(s));
    CHECK(sy_server_set_access_log(s, path) == 0);
    request(loop, port, "/one");
    const char *text = wait_file(loop, path, "target=/one");
    CHECK_MSG(strstr(text, "event=request") && strstr(text, "target=/one status=200 bytes_out=2"),
              "%s", text);
    /* A failed reopen of another path keeps the open log. */
    CHECK(sy_server_set_access_log(s, bad) == SY_ESYS);
    CHECK(rename(path, old) == 0);
    request(loop, port, "/two");
    CHECK(strstr(wait_file(loop, old, "target=/two"), "target=/two"));
    sy_set_log_level(SY_LOG_WARN); /* the reopen's info line stays off the test's stderr */
    CHECK_MSG(sy_server_reopen_logs(s) == 0, "%s", sy_server_error(s));
    sy_set_log_level(SY_LOG_DEBUG);
    sy_set_log_format(SY_LOG_JSON);
    request(loop, port, "/three");
    text = wait_file(loop, path, "/three");
    CHECK_MSG(strncmp(text, "{\"time\":\"", 9) == 0 && strstr(text, "\"target\":\"/three\""), "%s",
              text);
    sy_set_log_format(SY_LOG_TEXT);
    /* The line goes out before the response: once the client has it, the file has it. */
    CHECK(!strstr(wait_file(loop, old, ""), "/three"));
    /* Off: no more lines. */
    CHECK(sy_server_set_access_log(s, NULL) == 0);
    request(loop, port, "/four");
    CHECK(!strstr(wait_file(loop, path, ""), "/four"));
    CHECK(sy_server_reopen_logs(s) == 0);
    sy_server_free(s);
    ev_loop_destroy(loop);
    unlink(path);
    unlink(old);
    unlink(app);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 2;
    test_format();
    test_server();
    rmdir(dir);
    return t_summary("test_access_log");
}
