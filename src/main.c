/* switchyard command line: parse options, listen, load the app, run until SIGINT/SIGTERM. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "switchyard.h"

#define MAX_LISTEN 32
#define GRACE_SECONDS 5.0

typedef struct options {
    const char *listen[MAX_LISTEN];
    int nlisten;
    const char *tls_listen[MAX_LISTEN];
    int ntls;
    const char *cert, *key;
    int workers;
    int check;
    const char *app;
} options;

static void usage(FILE *f)
{
    fputs("usage: switchyard [--listen HOST:PORT]... [--tls-listen HOST:PORT]...\n"
          "                  [--cert FILE --key FILE] [--workers N] APP.lua\n"
          "       switchyard --check APP.lua\n",
          f);
}

static int parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->workers = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--check") == 0) {
            o->check = 1;
        } else if (strcmp(a, "--listen") == 0 || strcmp(a, "--tls-listen") == 0 ||
                   strcmp(a, "--cert") == 0 || strcmp(a, "--key") == 0 ||
                   strcmp(a, "--workers") == 0) {
            if (!v) {
                fprintf(stderr, "switchyard: %s needs a value\n", a);
                return -1;
            }
            i++;
            if (strcmp(a, "--listen") == 0) {
                if (o->nlisten == MAX_LISTEN)
                    return fprintf(stderr, "switchyard: too many --listen\n"), -1;
                o->listen[o->nlisten++] = v;
            } else if (strcmp(a, "--tls-listen") == 0) {
                if (o->ntls == MAX_LISTEN)
                    return fprintf(stderr, "switchyard: too many --tls-listen\n"), -1;
                o->tls_listen[o->ntls++] = v;
            } else if (strcmp(a, "--cert") == 0) {
                o->cert = v;
            } else if (strcmp(a, "--key") == 0) {
                o->key = v;
            } else {
                char *end;
                long n = strtol(v, &end, 10);
                if (*end || n < 1 || n > 256) {
                    fprintf(stderr, "switchyard: --workers must be 1..256\n");
                    return -1;
                }
                o->workers = (int)n;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "switchyard: unknown option %s\n", a);
            return -1;
        } else if (o->app) {
            fprintf(stderr, "switchyard: more than one app file (%s, %s)\n", o->app, a);
            return -1;
        } else {
            o->app = a;
        }
    }
    if (!o->app) {
        fprintf(stderr, "switchyard: no app file given\n");
        return -1;
    }
    return 0;
}

/* "HOST:PORT", "[v6]:PORT" or ":PORT". */
static int split_hostport(const char *s, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon)
        return -1;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0) {
        h = "0.0.0.0";
        hl = strlen(h);
    }
    if (hl >= cap)
        return -1;
    memcpy(host, h, hl);
    host[hl] = 0;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || colon[1] == 0 || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

typedef struct run_state {
    struct ev_loop *loop;
    sy_server *server;
    ev_signal sigint, sigterm;
} run_state;

static void on_stopped(sy_server *s, void *ud)
{
    (void)s;
    run_state *r = ud;
    ev_break(r->loop, EVBREAK_ALL);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    run_state *r = w->data;
    ev_signal_stop(r->loop, &r->sigint);
    ev_signal_stop(r->loop, &r->sigterm);
    sy_server_shutdown(r->server, GRACE_SECONDS, on_stopped, r);
}

/* Serves until a signal: returns the exit status. */
static int serve(struct ev_loop *loop, sy_server *s)
{
    run_state r = {loop, s, {0}, {0}};
    ev_signal_init(&r.sigint, on_signal, SIGINT);
    ev_signal_init(&r.sigterm, on_signal, SIGTERM);
    r.sigint.data = r.sigterm.data = &r;
    ev_signal_start(loop, &r.sigint);
    ev_signal_start(loop, &r.sigterm);
    sy_server_start(s);
    ev_run(loop, 0);
    ev_signal_stop(loop, &r.sigint);
    ev_signal_stop(loop, &r.sigterm);
    return 0;
}

static volatile sig_atomic_t parent_stop;

static void parent_on_signal(int sig)
{
    (void)sig;
    parent_stop = 1;
}

int main(int argc, char **argv)
{
    options o;
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!o.check && (!o.cert) != (!o.key)) {
        fprintf(stderr, "switchyard: --cert and --key go together\n");
        return 1;
    }
    if (!o.check && o.ntls && !o.cert) {
        fprintf(stderr, "switchyard: --tls-listen needs --cert FILE and --key FILE\n");
        return 1;
    }
    /* With workers the parent only binds and supervises: it must not own the default loop,
     * whose SIGCHLD handling would reap the workers behind its back. Each worker makes the
     * default loop of its own process after the fork. */
    struct ev_loop *loop = o.workers > 1 ? ev_loop_new(EVFLAG_AUTO) : ev_default_loop(EVFLAG_AUTO);
    if (!loop) {
        fprintf(stderr, "switchyard: cannot create the event loop\n");
        return 1;
    }
    sy_server *s = sy_server_new(loop);
    if (!s) {
        fprintf(stderr, "switchyard: out of memory\n");
        return 1;
    }
    if (sy_server_load_app(s, o.app) != 0) {
        fprintf(stderr, "switchyard: %s\n", sy_server_error(s));
        sy_server_free(s);
        return 1;
    }
    if (o.check) {
        printf("ok: %s\n", o.app);
        sy_server_free(s);
        return 0;
    }
    /* The certificate serves --tls-listen and the in-place upgrade on --listen (RFC 2817). */
    if (o.cert && sy_server_set_tls(s, o.cert, o.key) != 0) {
        fprintf(stderr, "switchyard: %s\n", sy_server_error(s));
        sy_server_free(s);
        return 1;
    }
    if (o.nlisten == 0 && o.ntls == 0)
        o.listen[o.nlisten++] = "127.0.0.1:8080";
    for (int i = 0; i < o.nlisten + o.ntls; i++) {
        int tls = i >= o.nlisten;
        const char *addr = tls ? o.tls_listen[i - o.nlisten] : o.listen[i];
        char host[256];
        int port;
        if (split_hostport(addr, host, sizeof host, &port) != 0) {
            fprintf(stderr, "switchyard: invalid %s %s (want HOST:PORT)\n",
                    tls ? "--tls-listen" : "--listen", addr);
            sy_server_free(s);
            return 1;
        }
        int rc = tls ? sy_server_listen_tls(s, host, port, o.workers > 1)
                     : sy_server_listen(s, host, port, o.workers > 1);
        if (rc != 0) {
            fprintf(stderr, "switchyard: %s\n", sy_server_error(s));
            sy_server_free(s);
            return 1;
        }
    }
    for (int i = 0; i < sy_server_listener_count(s); i++) {
        char url[512];
        sy_server_listener_url(s, i, url, sizeof url);
        printf("listening on %s\n", url);
    }
    fflush(stdout);
    if (o.workers <= 1) {
        int rc = serve(loop, s);
        sy_server_free(s);
        return rc;
    }

    /* Workers: each child inherits the listening sockets and builds its own server and Lua
     * state; the parent only supervises and forwards SIGINT/SIGTERM. */
    int nl = sy_server_listener_count(s);
    int fds[2 * MAX_LISTEN], tls[2 * MAX_LISTEN];
    for (int i = 0; i < nl; i++) {
        fds[i] = dup(sy_server_listener_fd(s, i));
        tls[i] = sy_server_listener_is_tls(s, i) == 1;
    }
    sy_server_free(s);
    ev_loop_destroy(loop);
    pid_t pids[256];
    for (int w = 0; w < o.workers; w++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("switchyard: fork");
            o.workers = w;
            break;
        }
        if (pid == 0) {
            struct ev_loop *wloop = ev_default_loop(EVFLAG_AUTO);
            if (!wloop)
                _exit(1);
            sy_server *cs = sy_server_new(wloop);
            if (!cs)
                _exit(1);
            if (o.cert && sy_server_set_tls(cs, o.cert, o.key) != 0) {
                fprintf(stderr, "switchyard: %s\n", sy_server_error(cs));
                _exit(1);
            }
            for (int i = 0; i < nl; i++) {
                if (tls[i])
                    sy_server_listen_tls_fd(cs, "127.0.0.1", fds[i]);
                else
                    sy_server_listen_fd(cs, "127.0.0.1", fds[i]);
            }
            if (sy_server_load_app(cs, o.app) != 0) {
                fprintf(stderr, "switchyard: %s\n", sy_server_error(cs));
                _exit(1);
            }
            int rc = serve(wloop, cs);
            sy_server_free(cs);
            _exit(rc);
        }
        pids[w] = pid;
    }
    for (int i = 0; i < nl; i++)
        close(fds[i]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = parent_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int alive = o.workers, status = 0, forwarded = 0;
    while (alive > 0) {
        int st;
        pid_t p = waitpid(-1, &st, 0);
        if (p < 0) {
            if (errno == EINTR) {
                if (parent_stop && !forwarded) {
                    forwarded = 1;
                    for (int w = 0; w < o.workers; w++)
                        kill(pids[w], SIGTERM);
                }
                continue;
            }
            break;
        }
        alive--;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            status = 1;
        if (!parent_stop && !forwarded) {
            /* A worker died on its own: stop the others rather than serve at reduced size. */
            fprintf(stderr, "switchyard: worker %d exited; stopping\n", (int)p);
            forwarded = 1;
            for (int w = 0; w < o.workers; w++)
                if (pids[w] != p)
                    kill(pids[w], SIGTERM);
        }
    }
    return parent_stop ? 0 : status;
}
