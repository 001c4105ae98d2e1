/* switchyard command line: parse options, listen, load the app, run until SIGINT or SIGTERM
 * (SIGHUP reloads the app); with --workers, supervise the worker processes. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"
#include "lua_path.h"
#include "metrics_hub.h"
#include "switchyard.h"
#include "topic_redis.h"
#include "topic_relay.h"
#include "topics.h"
#include "version.h"

#define MAX_LISTEN 32
#define GRACE_SECONDS 5.0
#define HEARTBEAT_SECONDS 1.0 /* a worker's heartbeat to the supervisor */

typedef struct options {
    const char *listen[MAX_LISTEN];
    int nlisten;
    const char *tls_listen[MAX_LISTEN];
    int ntls;
    const char *cert, *key;
    int workers;
    const char *redis, *redis_prefix;
    int check;
    const char *app;
    const char *access_log;
    const char *metrics; /* --metrics HOST:PORT */
} options;

static void usage(FILE *f)
{
    fputs(
        "usage: switchyard [--listen HOST:PORT]... [--tls-listen HOST:PORT]...\n"
        "                  [--cert FILE --key FILE] [--workers N]\n"
        "                  [--redis redis://HOST:PORT/DB [--redis-prefix PREFIX]]\n"
        "                  [--log-level LEVEL] [--log-format text|json] [--access-log FILE|-]\n"
        "                  [--metrics HOST:PORT] APP.lua\n"
        "       switchyard --check APP.lua\n"
        "       switchyard --version\n"
        "       switchyard test [BUSTED ARGS]...   (busted on lua5.4 with switchyard's modules)\n",
        f);
}

static int parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->workers = 1;
    sy_set_log_level(SY_LOG_INFO); /* the program's default; the library's is debug */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--version") == 0) {
            sy_version_print(stdout);
            exit(0);
        } else if (strcmp(a, "--check") == 0) {
            o->check = 1;
        } else if (strcmp(a, "--listen") == 0 || strcmp(a, "--tls-listen") == 0 ||
                   strcmp(a, "--cert") == 0 || strcmp(a, "--key") == 0 ||
                   strcmp(a, "--workers") == 0 || strcmp(a, "--redis") == 0 ||
                   strcmp(a, "--redis-prefix") == 0 || strcmp(a, "--log-level") == 0 ||
                   strcmp(a, "--log-format") == 0 || strcmp(a, "--access-log") == 0 ||
                   strcmp(a, "--metrics") == 0) {
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
            } else if (strcmp(a, "--redis") == 0) {
                o->redis = v;
            } else if (strcmp(a, "--redis-prefix") == 0) {
                o->redis_prefix = v;
            } else if (strcmp(a, "--log-level") == 0) {
                int lv = sy_log_level_parse(v);
                if (lv < 0) {
                    fprintf(stderr, "switchyard: --log-level: fatal, error, warn, info or debug\n");
                    return -1;
                }
                sy_set_log_level(lv);
            } else if (strcmp(a, "--log-format") == 0) {
                if (strcmp(v, "text") != 0 && strcmp(v, "json") != 0) {
                    fprintf(stderr, "switchyard: --log-format: text or json\n");
                    return -1;
                }
                sy_set_log_format(strcmp(v, "json") == 0 ? SY_LOG_JSON : SY_LOG_TEXT);
            } else if (strcmp(a, "--access-log") == 0) {
                o->access_log = v;
            } else if (strcmp(a, "--metrics") == 0) {
                o->metrics = v;
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

/* Signals handled by the loop or the supervisor: the stop signals, and SIGHUP (reload), blocked
 * from start-up so that one that arrives while the app loads is not lost (a SIGHUP then reloads
 * once the server runs). */
static void stop_signal_set(sigset_t *set, int with_chld)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1); /* not a stop: reopens the logs, but waits blocked the same way */
    if (with_chld)
        sigaddset(set, SIGCHLD);
}

typedef struct run_state {
    struct ev_loop *loop;
    sy_server *server;
    ev_signal sig[3];
    ev_timer beat;
    int beat_fd;    /* borrowed; the write end of the heartbeat pipe, -1 without a supervisor */
    ev_signal usr1; /* SIGUSR1: reopen the access log */
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
    if (w->signum == SIGHUP) {
        (void)sy_server_reload(r->server); /* a failure is logged; the old app stays */
        if (r->beat_fd >= 0)
            (void)!write(r->beat_fd, "R", 1); /* the supervisor's allowance ends */
        return;
    }
    /* A second stop signal meets the default action: a stop that takes too long can be
     * forced. SIGHUP stays handled (a reload is refused while stopping). */
    for (int i = 0; i < 2; i++)
        ev_signal_stop(r->loop, &r->sig[i]);
    sy_server_shutdown(r->server, GRACE_SECONDS, on_stopped, r);
}

/* SIGUSR1 (logrotate): the access log file is opened again by its path. */
static void on_reopen(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    run_state *r = w->data;
    if (sy_server_reopen_logs(r->server) != 0)
        sy_log("error", "SIGUSR1: %s", sy_server_error(r->server));
}

/* The supervisor's sign that this worker's loop turns. */
static void on_beat(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    run_state *r = w->data;
    (void)!write(r->beat_fd, ".", 1); /* non-blocking; a full pipe already says enough */
}

/* Serves until a stop signal: returns the exit status. The stop signals are blocked on entry
 * (since before the listeners were announced) and unblocked once their watchers run. */
static int serve(struct ev_loop *loop, sy_server *s, int beat_fd)
{
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    run_state r;
    memset(&r, 0, sizeof r);
    r.loop = loop;
    r.server = s;
    r.beat_fd = beat_fd;
    for (int i = 0; i < 3; i++) {
        ev_signal_init(&r.sig[i], on_signal, sigs[i]);
        r.sig[i].data = &r;
        ev_signal_start(loop, &r.sig[i]);
    }
    ev_signal_init(&r.usr1, on_reopen, SIGUSR1);
    r.usr1.data = &r;
    ev_signal_start(loop, &r.usr1);
    if (beat_fd >= 0) {
        ev_timer_init(&r.beat, on_beat, 0., HEARTBEAT_SECONDS);
        r.beat.data = &r;
        ev_timer_start(loop, &r.beat);
    }
    sigset_t set;
    stop_signal_set(&set, 1);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    sy_server_start(s);
    ev_run(loop, 0);
    for (int i = 0; i < 3; i++)
        ev_signal_stop(loop, &r.sig[i]);
    ev_signal_stop(loop, &r.usr1);
    ev_timer_stop(loop, &r.beat);
    return 0;
}

/* ---- workers and their supervisor -----------------------------------------------------------
 *
 * The supervisor binds the listeners, forks the workers (each builds its own server and Lua
 * state on the inherited sockets) and watches them: a worker that dies is started again, after
 * a pause that doubles while workers keep dying young; a worker whose loop has not turned for
 * the hard limit (it sends a heartbeat each second from a timer of its loop) is stuck inside one
 * call, such as a Lua pattern that backtracks on client input, and gets SIGKILL, then a
 * successor. Stop signals and SIGHUP (reload) go to every worker. The supervisor reads its signals
 * from a signalfd, blocked since start-up, so one that arrives while workers are being forked is
 * not lost. */

#define HEARTBEAT_LIMIT_MIN 10.0 /* default hard limit: max(this, 5 x app.lua.max_time) */
#define BACKOFF_MIN 0.1          /* first wait before a restart */
#define BACKOFF_MAX 10.0         /* longest wait */
#define BACKOFF_RESET 10.0       /* a worker that ran this long was healthy: wait BACKOFF_MIN */

typedef struct listener_set {
    int n;
    int fds[2 * MAX_LISTEN]; /* owned; the listening sockets the workers share */
    int tls[2 * MAX_LISTEN];
    char hosts[2 * MAX_LISTEN][256];
} listener_set;

typedef struct worker {
    pid_t pid;         /* 0 while not running */
    int beat_fd;       /* owned; read end of its heartbeat pipe, -1 while not running */
    double started;    /* monotonic seconds */
    double last_beat;  /* 0 until the first heartbeat */
    double restart_at; /* while not running: when to start again */
    double backoff;    /* the last wait before a restart */
    int killed;        /* SIGKILL sent for the hard limit */
    int reloading;     /* SIGHUP was passed on: loading the app again gets the start-up
                          allowance until the worker writes "R" (reloaded) on its pipe */
} worker;

/* --redis and --redis-prefix on s. Returns 0, or a code with the message in s. */
static int set_redis(sy_server *s, const options *o)
{
    if (o->redis_prefix) {
        int rc = sy_server_set_redis_prefix(s, o->redis_prefix);
        if (rc != 0)
            return rc;
    }
    return sy_server_set_redis(s, o->redis);
}

typedef struct supervisor {
    const options *o;
    const listener_set *ls;
    worker *w; /* borrowed; o->workers entries */
    int sigfd; /* owned */
    pid_t self;
    double hard_limit;    /* seconds without a heartbeat before SIGKILL; 0: never */
    double startup_extra; /* added before the first heartbeat: loading the app */
    int stopping;
    uint64_t group;          /* the workers' origin id for topics shared through Redis */
    sy_relay_hub *hub;       /* owned; relays each worker's publishes to the others */
    sy_metrics_hub *metrics; /* owned; --metrics: answers scrapes from the workers' pages */
} supervisor;

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The child side of a fork: one worker serving the inherited listeners. Never returns. */
static void run_worker(const supervisor *sv, int beat_fd, int relay_fd)
{
    const options *o = sv->o;
    const listener_set *ls = sv->ls;
    /* Orphaned (the supervisor was killed): stop like on SIGTERM rather than serve on alone. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != sv->self)
        _exit(0);
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    if (!loop) {
        fprintf(stderr, "switchyard: worker %d: cannot create the event loop\n", (int)getpid());
        _exit(1);
    }
    sy_server *s = sy_server_new(loop);
    if (!s) {
        fprintf(stderr, "switchyard: worker %d: out of memory\n", (int)getpid());
        _exit(1);
    }
    if (o->cert && sy_server_set_tls(s, o->cert, o->key) != 0) {
        fprintf(stderr, "switchyard: worker %d: %s\n", (int)getpid(), sy_server_error(s));
        _exit(1);
    }
    if (sy_topics_attach_relay(s, relay_fd, sv->group) != 0 || (o->redis && set_redis(s, o) != 0) ||
        (o->access_log && sy_server_set_access_log(s, o->access_log) != 0)) {
        fprintf(stderr, "switchyard: worker %d: %s\n", (int)getpid(), sy_server_error(s));
        _exit(1);
    }
    for (int i = 0; i < ls->n; i++) {
        /* Each worker adopts a duplicate: the supervisor keeps the sockets for successors. */
        int fd = dup(ls->fds[i]);
        int rc = fd < 0       ? SY_ESYS
                 : ls->tls[i] ? sy_server_listen_tls_fd(s, ls->hosts[i], fd)
                              : sy_server_listen_fd(s, ls->hosts[i], fd);
        if (rc != 0) {
            fprintf(stderr, "switchyard: worker %d: cannot serve %s: %s\n", (int)getpid(),
                    ls->hosts[i], fd < 0 ? strerror(errno) : sy_server_error(s));
            _exit(1);
        }
    }
    for (int i = 0; i < ls->n; i++)
        close(ls->fds[i]);
    if (sy_server_load_app(s, o->app) != 0) {
        fprintf(stderr, "switchyard: worker %d: %s\n", (int)getpid(), sy_server_error(s));
        _exit(1);
    }
    int rc = serve(loop, s, beat_fd);
    sy_server_free(s);
    _exit(rc);
}

static int spawn(supervisor *sv, int i)
{
    worker *w = &sv->w[i];
    int p[2], t[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, t) != 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        close(t[0]);
        close(t[1]);
        return -1;
    }
    if (pid == 0) {
        close(sv->sigfd);
        close(p[0]);
        close(t[0]);
        sy_metrics_hub_forget(sv->metrics);
        for (int k = 0; k < sv->o->workers; k++) {
            if (sv->w[k].beat_fd >= 0)
                close(sv->w[k].beat_fd);
            if (sy_relay_hub_fd(sv->hub, k) >= 0)
                close(sy_relay_hub_fd(sv->hub, k));
        }
        sy_log_set_worker(i);
        run_worker(sv, p[1], t[1]);
    }
    close(p[1]);
    close(t[1]);
    sy_relay_hub_attach(sv->hub, i, t[0]);
    w->pid = pid;
    w->beat_fd = p[0];
    w->started = mono_now();
    w->last_beat = 0;
    w->reloading = 0;
    w->killed = 0;
    return 0;
}

static void schedule_restart(worker *w, double now)
{
    if (now - w->started >= BACKOFF_RESET)
        w->backoff = BACKOFF_MIN;
    else
        w->backoff = w->backoff < BACKOFF_MIN       ? BACKOFF_MIN
                     : w->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX
                                                    : w->backoff * 2;
    w->restart_at = now + w->backoff;
}

static void reap(supervisor *sv)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        worker *w = NULL;
        for (int i = 0; i < sv->o->workers; i++)
            if (sv->w[i].pid == pid)
                w = &sv->w[i];
        if (!w)
            continue;
        double now = mono_now();
        w->pid = 0;
        close(w->beat_fd);
        w->beat_fd = -1;
        sy_relay_hub_detach(sv->hub, (int)(w - sv->w));
        char how[64];
        if (WIFEXITED(st))
            snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(st));
        else
            snprintf(how, sizeof how, "was killed by signal %d", WTERMSIG(st));
        if (sv->stopping) {
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                sy_log("warn", "worker %d %s while stopping", (int)pid, how);
            continue;
        }
        schedule_restart(w, now);
        sy_log("error", "worker %d %s%s; restarting in %.1f s", (int)pid, how,
               w->killed ? " (hard limit)" : "", w->backoff);
    }
}

static void forward_stop(supervisor *sv)
{
    sv->stopping = 1;
    for (int i = 0; i < sv->o->workers; i++)
        if (sv->w[i].pid > 0)
            kill(sv->w[i].pid, SIGTERM);
}

/* SIGHUP: each worker reloads its own app. */
static void forward_reload(supervisor *sv)
{
    for (int i = 0; i < sv->o->workers; i++)
        if (sv->w[i].pid > 0 && !sv->stopping) {
            sv->w[i].reloading = 1;
            kill(sv->w[i].pid, SIGHUP);
        }
}

/* Reads the heartbeats that arrived and kills workers past the hard limit. */
static void watch(supervisor *sv, const struct pollfd *pfd, double now)
{
    for (int i = 0; i < sv->o->workers; i++) {
        worker *w = &sv->w[i];
        if (w->pid <= 0)
            continue;
        if (pfd[1 + i].revents) {
            char buf[256];
            ssize_t n;
            while ((n = read(w->beat_fd, buf, sizeof buf)) > 0) {
                w->last_beat = now;
                if (memchr(buf, 'R', (size_t)n))
                    w->reloading = 0;
            }
        }
        if (sv->hard_limit <= 0 || w->killed)
            continue;
        double since = w->last_beat > 0 ? w->last_beat : w->started;
        double limit = sv->hard_limit + (w->last_beat > 0 && !w->reloading ? 0 : sv->startup_extra);
        if (now - since > limit) {
            sy_log("error",
                   "worker %d: its loop has not turned for %.0f s (hard limit %.0f s, see "
                   "README \"Workers\"); killing it",
                   (int)w->pid, now - since, sv->hard_limit);
            kill(w->pid, SIGKILL);
            w->killed = 1;
        }
    }
}

/* Runs the workers until a stop signal and every worker is gone. Returns the exit status. */
static int supervise(supervisor *sv)
{
    int n = sv->o->workers;
    for (int i = 0; i < n; i++)
        sv->w[i].beat_fd = -1;
    for (int i = 0; i < n; i++) {
        if (spawn(sv, i) != 0) {
            sy_log("error", "cannot start a worker: %s; retrying", strerror(errno));
            schedule_restart(&sv->w[i], mono_now());
        }
    }
    struct pollfd pfd[1 + 2 * 256 + 1 + SY_METRICS_HUB_CLIENTS];
    for (;;) {
        double now = mono_now();
        int live = 0;
        double wait = 1.0;
        for (int i = 0; i < n; i++) {
            worker *w = &sv->w[i];
            if (w->pid > 0) {
                live++;
            } else if (!sv->stopping) {
                if (w->restart_at <= now) {
                    if (spawn(sv, i) == 0) {
                        live++;
                    } else {
                        sy_log("error", "cannot start a worker: %s", strerror(errno));
                        schedule_restart(w, now);
                    }
                } else if (w->restart_at - now < wait) {
                    wait = w->restart_at - now;
                }
            }
        }
        if (sv->stopping && live == 0)
            return 0;
        pfd[0] = (struct pollfd){.fd = sv->sigfd, .events = POLLIN};
        for (int i = 0; i < n; i++) {
            pfd[1 + i] = (struct pollfd){.fd = sv->w[i].beat_fd, .events = POLLIN};
            pfd[1 + n + i] = (struct pollfd){.fd = sy_relay_hub_fd(sv->hub, i),
                                             .events = sy_relay_hub_events(sv->hub, i)};
        }
        int nm = sv->metrics
                     ? sy_metrics_hub_poll(sv->metrics, pfd + 1 + 2 * n, 1 + SY_METRICS_HUB_CLIENTS)
                     : 0;
        if (sv->metrics)
            wait = sy_metrics_hub_wait(sv->metrics, now, wait);
        int r = poll(pfd, (nfds_t)(1 + 2 * n + nm), (int)(wait * 1000) + 1);
        if (r < 0 && errno != EINTR) {
            perror("switchyard: poll");
            forward_stop(sv);
            return 1;
        }
        if (r > 0 && pfd[0].revents) {
            struct signalfd_siginfo si;
            while (read(sv->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo == SIGCHLD)
                    continue;
                if (si.ssi_signo == SIGUSR1) {
                    sy_log("info", "SIGUSR1: the workers reopen their logs");
                    for (int i = 0; i < n; i++)
                        if (sv->w[i].pid > 0)
                            kill(sv->w[i].pid, SIGUSR1);
                    continue;
                }
                if (si.ssi_signo == SIGHUP) {
                    forward_reload(sv);
                    continue;
                }
                /* Each stop signal is passed on: a second one stops workers at once. */
                forward_stop(sv);
            }
        }
        if (r > 0)
            for (int i = 0; i < n; i++)
                if (pfd[1 + n + i].revents && pfd[1 + n + i].fd == sy_relay_hub_fd(sv->hub, i))
                    sy_relay_hub_ready(sv->hub, i, pfd[1 + n + i].revents);
        if (sv->metrics)
            sy_metrics_hub_ready(sv->metrics, pfd + 1 + 2 * n, r > 0 ? nm : 0, mono_now());
        reap(sv);
        watch(sv, pfd, mono_now());
    }
}

/* The hard limit: SWITCHYARD_WORKER_HARD_LIMIT seconds (0: none), else max(10 s, 5 x
 * app.lua.max_time), none when the app has no time budget. Returns -1 for a bad value. */
static double hard_limit(double max_time)
{
    const char *v = getenv("SWITCHYARD_WORKER_HARD_LIMIT");
    if (v && *v) {
        char *end;
        double d = strtod(v, &end);
        if (*end || !(d == 0 || (d >= 2 && d <= 86400)))
            return -1;
        return d;
    }
    if (max_time <= 0)
        return 0;
    return 5 * max_time > HEARTBEAT_LIMIT_MIN ? 5 * max_time : HEARTBEAT_LIMIT_MIN;
}

/* Sets name (LUA_PATH_5_4 or LUA_CPATH_5_4) to prefix followed by what Lua would have used:
 * the variable itself, else the unversioned one, else the defaults (";;"). 0 or -1. */
static int prepend_env(const char *name, const char *plain, const char *prefix)
{
    const char *old = getenv(name) ? getenv(name) : getenv(plain) ? getenv(plain) : ";";
    size_t n = strlen(prefix) + strlen(old) + 1;
    char *v = malloc(n);
    if (!v)
        return -1;
    snprintf(v, n, "%s%s", prefix, old);
    int rc = setenv(name, v, 1);
    free(v);
    return rc;
}

/* `switchyard test [ARGS]`: runs `lua5.4 BUSTED ARGS` with this program's Lua helpers and C
 * modules in front of Lua 5.4's module paths, so specs that require "switchyard.testing" run
 * on Lua 5.4 whatever interpreter busted's own script names. Returns only on failure. */
static int run_tests(int argc, char **argv)
{
    char path[8192], cpath[8192], busted[4096] = "";
    if (sy_lua_paths(path, sizeof path, cpath, sizeof cpath) != 0 ||
        prepend_env("LUA_PATH_5_4", "LUA_PATH", path) != 0 ||
        prepend_env("LUA_CPATH_5_4", "LUA_CPATH", cpath) != 0) {
        fprintf(stderr, "switchyard: test: cannot set the Lua paths\n");
        return 1;
    }
    /* lua5.4 takes busted's script by its path: look it up in PATH as a shell would. */
    const char *dirs = getenv("PATH") ? getenv("PATH") : "/usr/local/bin:/usr/bin:/bin";
    for (const char *d = dirs; *d && !busted[0];) {
        size_t len = strcspn(d, ":");
        snprintf(busted, sizeof busted, "%.*s/busted", (int)len, len ? d : ".");
        if (access(busted, X_OK) != 0)
            busted[0] = '\0';
        d += len + (d[len] == ':');
    }
    if (!busted[0]) {
        fprintf(stderr, "switchyard: test: busted not found in PATH (Debian: apt install "
                        "lua-busted)\n");
        return 127;
    }
    char **args = calloc((size_t)argc + 3, sizeof *args);
    if (!args) {
        fprintf(stderr, "switchyard: out of memory\n");
        return 1;
    }
    static char lua[] = "lua5.4";
    args[0] = lua;
    args[1] = busted;
    for (int i = 0; i < argc; i++)
        args[i + 2] = argv[i];
    execvp(args[0], args);
    fprintf(stderr, "switchyard: test: cannot run lua5.4: %s\n", strerror(errno));
    free(args);
    return 127;
}

int main(int argc, char **argv)
{
    options o;
    if (argc >= 2 && strcmp(argv[1], "test") == 0)
        return run_tests(argc - 2, argv + 2);
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!o.check && (!o.cert) != (!o.key)) {
        fprintf(stderr, "switchyard: --cert and --key go together\n");
        return 1;
    }
    if (!o.check && o.redis_prefix && !o.redis) {
        fprintf(stderr, "switchyard: --redis-prefix goes with --redis\n");
        return 1;
    }
    const char *why;
    if (!o.check && o.redis && sy_topic_redis_check_url(o.redis, &why) != 0) {
        fprintf(stderr, "switchyard: bad --redis %s: %s\n", o.redis, why);
        return 1;
    }
    if (!o.check && o.ntls && !o.cert) {
        fprintf(stderr, "switchyard: --tls-listen needs --cert FILE and --key FILE\n");
        return 1;
    }
    /* Stop signals wait (blocked) until a loop or the supervisor handles them: one that comes
     * while the app loads or workers are forked stops the server cleanly. */
    sigset_t stops;
    stop_signal_set(&stops, o.workers > 1);
    if (!o.check)
        sigprocmask(SIG_BLOCK, &stops, NULL);
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
    if (o.workers > 1)
        sy_log_set_worker(-1); /* until a worker's fork names it */
    double load_started = mono_now();
    if (sy_server_load_app(s, o.app) != 0) {
        fprintf(stderr, "switchyard: %s\n", sy_server_error(s));
        sy_server_free(s);
        return 1;
    }
    double load_took = mono_now() - load_started;
    if (o.check) {
        printf("ok: %s\n", o.app);
        sy_server_free(s);
        return 0;
    }
    double limit = o.workers > 1 ? hard_limit(sy_server_lua_max_time(s)) : 0;
    if (limit < 0) {
        fprintf(stderr, "switchyard: SWITCHYARD_WORKER_HARD_LIMIT must be 0 or 2..86400 s\n");
        sy_server_free(s);
        return 1;
    }
    /* With workers each opens its own: this one checks the path before any is forked. */
    if (o.access_log && sy_server_set_access_log(s, o.access_log) != 0) {
        fprintf(stderr, "switchyard: --access-log: %s\n", sy_server_error(s));
        sy_server_free(s);
        return 1;
    }
    /* The certificate serves --tls-listen and the in-place upgrade on --listen (RFC 2817). */
    if (o.cert && sy_server_set_tls(s, o.cert, o.key) != 0) {
        fprintf(stderr, "switchyard: %s\n", sy_server_error(s));
        sy_server_free(s);
        return 1;
    }
    if (o.nlisten == 0 && o.ntls == 0)
        o.listen[o.nlisten++] = "127.0.0.1:8080";
    static listener_set ls;
    for (int i = 0; i < o.nlisten + o.ntls; i++) {
        int tls = i >= o.nlisten;
        const char *addr = tls ? o.tls_listen[i - o.nlisten] : o.listen[i];
        char *host = ls.hosts[i];
        int port;
        if (split_hostport(addr, host, sizeof ls.hosts[i], &port) != 0) {
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
    char mhost[256];
    int mport = -1;
    if (o.metrics && split_hostport(o.metrics, mhost, sizeof mhost, &mport) != 0) {
        fprintf(stderr, "switchyard: invalid --metrics %s (want HOST:PORT)\n", o.metrics);
        sy_server_free(s);
        return 1;
    }
    if (o.metrics && o.workers <= 1) {
        /* One process: its server answers scrapes; with workers the supervisor does. */
        mport = sy_server_listen_metrics(s, mhost, mport);
        if (mport < 0) {
            fprintf(stderr, "switchyard: %s\n", sy_server_error(s));
            sy_server_free(s);
            return 1;
        }
        printf("metrics on http://%s:%d/metrics\n", mhost, mport);
    }
    fflush(stdout);
    if (o.workers <= 1) {
        if (o.redis && set_redis(s, &o) != 0) {
            fprintf(stderr, "switchyard: %s\n", sy_server_error(s));
            sy_server_free(s);
            return 1;
        }
        int rc = serve(loop, s, -1);
        sy_server_free(s);
        return rc;
    }

    /* Workers: the supervisor keeps the listening sockets (for the workers it restarts) and
     * its own server goes away. */
    ls.n = sy_server_listener_count(s);
    for (int i = 0; i < ls.n; i++) {
        ls.fds[i] = dup(sy_server_listener_fd(s, i));
        ls.tls[i] = sy_server_listener_is_tls(s, i) == 1;
        if (ls.fds[i] < 0) {
            perror("switchyard: dup");
            sy_server_free(s);
            return 1;
        }
    }
    sy_server_free(s);
    ev_loop_destroy(loop);
    static worker workers[256];
    supervisor sv = {&o, &ls, workers, -1, getpid(), limit, 5 + 3 * load_took, 0, 0, NULL, NULL};
    if (getrandom(&sv.group, sizeof sv.group, 0) != (ssize_t)sizeof sv.group)
        sv.group = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
    sv.hub = sy_relay_hub_new(o.workers);
    if (!sv.hub) {
        fprintf(stderr, "switchyard: out of memory\n");
        return 1;
    }
    if (o.metrics) {
        char err[512];
        sv.metrics = sy_metrics_hub_new(mhost, mport, o.workers, sv.hub, err, sizeof err);
        if (!sv.metrics) {
            fprintf(stderr, "switchyard: %s\n", err);
            return 1;
        }
        printf("metrics on http://%s:%d/metrics\n", mhost, sy_metrics_hub_port(sv.metrics));
        fflush(stdout);
    }
    sv.sigfd = signalfd(-1, &stops, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sv.sigfd < 0) {
        perror("switchyard: signalfd");
        return 1;
    }
    int rc = supervise(&sv);
    sy_metrics_hub_free(sv.metrics);
    sy_relay_hub_free(sv.hub);
    close(sv.sigfd);
    return rc;
}
