/* A minimal host built against the installed library: it runs a server in its own libev loop,
 * sets a Lua global from C, answers one HTTP request made over a loopback socket, and frees
 * everything. Usage: consumer APP.lua; exit 0 when the answer was right. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <lua.h>

#include "switchyard.h"

static char reply[4096];
static size_t reply_len;
static int timed_out;

static void on_reply(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    ssize_t n = read(w->fd, reply + reply_len, sizeof reply - 1 - reply_len);
    if (n > 0)
        reply_len += (size_t)n;
    reply[reply_len] = '\0';
    if (n <= 0 || strstr(reply, "hello from the host /embed\n") || reply_len == sizeof reply - 1)
        ev_break(loop, EVBREAK_ALL);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    timed_out = 1;
    ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: consumer APP.lua\n");
        return 2;
    }
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", SY_VERSION_MAJOR, SY_VERSION_MINOR, SY_VERSION_PATCH);
    if (strcmp(sy_version(), want) != 0) {
        fprintf(stderr, "consumer: library %s, header %s\n", sy_version(), want);
        return 1;
    }
    struct ev_loop *loop = EV_DEFAULT;
    sy_server *s = sy_server_new(loop);
    if (!s) {
        fprintf(stderr, "consumer: %s\n", sy_strerror(SY_ENOMEM));
        return 1;
    }
    int rc = 1, fd = -1;
    lua_State *L = sy_server_lua(s);
    lua_pushstring(L, "from the host");
    lua_setglobal(L, "GREETING");
    if (sy_server_listen(s, "127.0.0.1", 0, 0) != 0 || sy_server_load_app(s, argv[1]) != 0
        || sy_server_start(s) != 0) {
        fprintf(stderr, "consumer: %s\n", sy_server_error(s));
        goto fail_server;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_port = htons((uint16_t)sy_server_listener_port(s, 0));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    /* A blocking connect to a listening loopback socket completes from the backlog. */
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("consumer: connect");
        goto fail_server;
    }
    static const char req[] = "GET /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
        perror("consumer: write");
        goto fail_server;
    }
    ev_io io;
    ev_timer timer;
    ev_io_init(&io, on_reply, fd, EV_READ);
    ev_io_start(loop, &io);
    ev_timer_init(&timer, on_timeout, 30.0, 0.0);
    ev_timer_start(loop, &timer);
    ev_run(loop, 0);
    ev_io_stop(loop, &io);
    ev_timer_stop(loop, &timer);
    if (timed_out)
        fprintf(stderr, "consumer: no answer within 30 s\n");
    else if (strncmp(reply, "HTTP/1.1 200", 12) != 0
             || !strstr(reply, "hello from the host /embed\n"))
        fprintf(stderr, "consumer: unexpected answer:\n%s\n", reply);
    else
        rc = 0;
fail_server:
    if (fd >= 0)
        close(fd);
    sy_server_free(s);
    if (rc == 0)
        printf("consumer: switchyard %s answered: 200 hello from the host /embed\n", sy_version());
    return rc;
}
