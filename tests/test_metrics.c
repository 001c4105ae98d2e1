/* Metrics: the bounded label sets of the core's counters, name validation, the merge of
 * workers' pages, and sy_server_listen_metrics on a real server. */
#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "metrics.h"
#include "stats.h"
#include "switchyard.h"
#include "test.h"

static void test_tokens(void)
{
    static sy_stats st; /* zeroed: valid */
    sy_stats_upgrade(&st, "WebSocket", 9, SY_SO_ACCEPT);
    sy_stats_upgrade(&st, "TLS/1.3", 7, SY_SO_ACCEPT);
    CHECK(sy_stats_token_of(&st, "websocket", 9)->n[SY_SO_ACCEPT] == 1);
    CHECK(sy_stats_token_of(&st, "tls", 3)->n[SY_SO_ACCEPT] == 1);
    char name[16];
    for (int i = 0; i < 40; i++) {
        int n = snprintf(name, sizeof name, "t%d", i);
        sy_stats_upgrade(&st, name, (size_t)n, SY_SO_IGNORE);
    }
    CHECK(sy_stats_token_of(&st, "t31", 3)->n[SY_SO_IGNORE] == 1);
    CHECK(strcmp(sy_stats_token_of(&st, "t32", 3)->name, "other") == 0);
    CHECK(sy_stats_token_of(&st, "anything", 8)->n[SY_SO_IGNORE] == 8);
    CHECK(st.ntokens == SY_STATS_TOKENS - 1);
    /* A long token is cut to its first SY_STATS_TOKEN_MAX bytes. */
    static sy_stats st2;
    char longer[100];
    memset(longer, 'a', sizeof longer);
    CHECK(strlen(sy_stats_token_of(&st2, longer, sizeof longer)->name) == SY_STATS_TOKEN_MAX);

    static sy_stats st3;
    for (int code = 3000; code < 3050; code++)
        sy_stats_close_code(&st3, code, 1);
    sy_stats_close_code(&st3, 1000, 0);
    sy_stats_close_code(&st3, 0, 1);
    int other = 0, k1000 = 0, k1005 = 0;
    for (int i = 0; i < SY_STATS_CODES; i++) {
        if (st3.codes[i].code == -1)
            other = (int)st3.codes[i].sent;
        if (st3.codes[i].code == 1000)
            k1000 = (int)st3.codes[i].received;
        if (st3.codes[i].code == 1005)
            k1005 = (int)st3.codes[i].sent;
    }
    CHECK_MSG(other == 50 - SY_STATS_SEEN, "other %d", other);
    CHECK(k1000 == 1 && k1005 == 1);
}

static void test_names(void)
{
    CHECK(sy_metrics_valid_name("app_hits_total", 14, 0));
    CHECK(sy_metrics_valid_name("ns:hits", 7, 0));
    CHECK(!sy_metrics_valid_name("ns:hits", 7, 1));
    CHECK(!sy_metrics_valid_name("9x", 2, 0));
    CHECK(!sy_metrics_valid_name("a-b", 3, 0));
    CHECK(!sy_metrics_valid_name("", 0, 0));
    CHECK(!sy_metrics_valid_name("__x", 3, 1));
    CHECK(sy_metrics_valid_name("_x", 2, 1));
    sy_text t = {0};
    sy_metrics_escape(&t, "a\"b\\c\nd", 7);
    CHECK(t.p && strcmp(t.p, "a\\\"b\\\\c\\nd") == 0);
    sy_text_dispose(&t);
}

static void test_merge(void)
{
    static const char a[] = "# HELP x_total X.\n# TYPE x_total counter\nx_total 1\n"
                            "# HELP g G.\n# TYPE g gauge\ng{k=\"v\"} 2\n";
    static const char b[] = "# HELP x_total X.\n# TYPE x_total counter\nx_total 3\n";
    sy_str pages[3] = {sy_str_make(a, sizeof a - 1), sy_str_make(NULL, 0),
                       sy_str_make(b, sizeof b - 1)};
    sy_text out = {0};
    sy_metrics_merge(pages, 3, &out);
    static const char want[] = "# HELP x_total X.\n# TYPE x_total counter\n"
                               "x_total{worker=\"0\"} 1\nx_total{worker=\"2\"} 3\n"
                               "# HELP g G.\n# TYPE g gauge\ng{worker=\"0\",k=\"v\"} 2\n";
    CHECK_MSG(out.p && strcmp(out.p, want) == 0, "%s", out.p ? out.p : "(null)");
    sy_text_dispose(&out);
}

static char dir[] = "/tmp/sy_test_metrics_XXXXXX";

static size_t exchange(struct ev_loop *loop, int port, const char *req, char *buf, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    size_t len = 0;
    buf[0] = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        send(fd, req, strlen(req), 0) != (ssize_t)strlen(req)) {
        close(fd);
        return 0;
    }
    /* Until the server closes (Connection: close), bounded by ~10 s of loop turns. */
    for (int i = 0; i < 10000; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        ssize_t n = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
        if (n > 0) {
            len += (size_t)n;
            buf[len] = 0;
        } else if (n == 0) {
            break;
        } else {
            usleep(1000);
        }
    }
    close(fd);
    return len;
}

static void test_listener(void)
{
    if (!mkdtemp(dir))
        exit(2);
    char path[256];
    snprintf(path, sizeof path, "%s/app.lua", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        exit(2);
    fputs("local sy = require 'switchyard'\n"
          "local c = sy.counter('c_app_total', 'Loaded')\n"
          "c:inc(2)\n"
          "return {}\n",
          f);
    fclose(f);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = sy_server_new(loop);
    CHECK(s != NULL);
    CHECK(sy_server_load_app(s, path) == 0);
    CHECK(sy_server_listen_metrics(s, "127.0.0.1", 70000) == SY_EINVAL);
    int port = sy_server_listen_metrics(s, "127.0.0.1", 0);
    CHECK(port > 0);
    CHECK(sy_server_listen_metrics(s, "127.0.0.1", 0) == SY_EINVAL);
    CHECK(sy_server_listener_count(s) == 0); /* not one of the app's listeners */
    sy_server_start(s);
    static char buf[65536];
    exchange(loop, port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", buf,
             sizeof buf);
    CHECK_MSG(strncmp(buf, "HTTP/1.1 200 ", 13) == 0, "%.40s", buf);
    CHECK(strstr(buf, "Content-Type: text/plain; version=0.0.4") != NULL);
    CHECK(strstr(buf, "switchyard_build_info{version=\"") != NULL);
    CHECK(strstr(buf, "\nc_app_total 2\n") != NULL);
    /* The scrape is a connection of the server like another. */
    CHECK(strstr(buf, "switchyard_connections_open{protocol=\"http1\"} 1\n") != NULL);
    exchange(loop, port, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", buf,
             sizeof buf);
    CHECK(strncmp(buf, "HTTP/1.1 404 ", 13) == 0);
    exchange(loop, port,
             "PUT /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
             buf, sizeof buf);
    CHECK(strncmp(buf, "HTTP/1.1 405 ", 13) == 0);
    sy_server_free(s);
    ev_loop_destroy(loop);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    test_tokens();
    test_names();
    test_merge();
    test_listener();
    return t_summary("test_metrics");
}
