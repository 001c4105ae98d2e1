/* The access log: formatting the protocols' events as logfmt or JSON lines, and the file behind
 * them (reopened on demand for logrotate). */
#include "access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"

/* Longest output of one field: a line stays well under the 16 KiB buffer, so a line is one
 * write, and under the 4 KiB that a pipe takes atomically unless a target is very long. */
#define MAX_METHOD 64
#define MAX_TARGET 4096
#define MAX_UPGRADE 512
#define MAX_PROTOCOL 128
#define LINE_CAP (16 * 1024)

struct sy_access_log {
    int fd;     /* owned unless it is stdout (1) */
    char *path; /* owned; "-" for stdout */
};

sy_access_log *sy_access_log_open(const char *path)
{
    sy_access_log *l = sy_calloc(1, sizeof *l);
    char *copy = l ? sy_malloc(strlen(path) + 1) : NULL;
    if (!copy) {
        sy_free(l);
        errno = ENOMEM;
        return NULL;
    }
    strcpy(copy, path);
    l->path = copy;
    l->fd =
        strcmp(path, "-") == 0 ? 1 : open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (l->fd < 0) {
        int e = errno;
        sy_free(copy);
        sy_free(l);
        errno = e;
        return NULL;
    }
    return l;
}

int sy_access_log_reopen(sy_access_log *l)
{
    if (l->fd == 1 && strcmp(l->path, "-") == 0)
        return 0;
    int fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    /* Every line went out with its own write: the old file is complete when it closes. */
    close(l->fd);
    l->fd = fd;
    return 0;
}

const char *sy_access_log_path(const sy_access_log *l)
{
    return l->path;
}

void sy_access_log_free(sy_access_log *l)
{
    if (!l)
        return;
    if (strcmp(l->path, "-") != 0)
        close(l->fd);
    sy_free(l->path);
    sy_free(l);
}

/* ---- formatting ---------------------------------------------------------------------------- */

typedef struct fmt {
    sy_line *l;
    int json;
    int n; /* fields written */
} fmt;

static void key(fmt *f, const char *k)
{
    if (f->json) {
        sy_line_puts(f->l, f->n ? ",\"" : "{\"");
        sy_line_puts(f->l, k);
        sy_line_puts(f->l, "\":");
    } else {
        if (f->n)
            sy_line_put(f->l, " ", 1);
        sy_line_puts(f->l, k);
        sy_line_put(f->l, "=", 1);
    }
    f->n++;
}

/* A logfmt value is quoted (as a JSON string) when it is empty or holds a space, a quote, an
 * equals sign, a backslash, a control character or a non-ASCII byte. */
static int needs_quotes(const char *p, size_t n)
{
    if (n == 0)
        return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '=' || c == '\\')
            return 1;
    }
    return 0;
}

static void field_str(fmt *f, const char *k, sy_str v, size_t max)
{
    if (!v.p)
        return;
    key(f, k);
    if (f->json || v.len > max || needs_quotes(v.p, v.len))
        sy_line_json(f->l, v.p, v.len, max);
    else
        sy_line_put(f->l, v.p, v.len);
}

static void field_cstr(fmt *f, const char *k, const char *v)
{
    if (v)
        field_str(f, k, sy_str_make(v, strlen(v)), MAX_PROTOCOL);
}

static void field_u64(fmt *f, const char *k, uint64_t v)
{
    key(f, k);
    sy_line_printf(f->l, "%" PRIu64, v);
}

size_t sy_access_format(const sy_access *a, double now, int json, char *buf, size_t cap)
{
    static const char *const events[] = {"?", "request", "upgrade", "close"};
    sy_line l = {buf, 0, cap, 0};
    fmt f = {&l, json, 0};
    key(&f, "time");
    if (json)
        sy_line_put(&l, "\"", 1);
    sy_line_time(&l, now);
    if (json)
        sy_line_put(&l, "\"", 1);
    field_cstr(&f, "event", events[a->event >= 1 && a->event <= 3 ? a->event : 0]);
    char addr[INET6_ADDRSTRLEN];
    sy_peer_format(&a->conn->peer, addr);
    field_cstr(&f, "remote", addr[0] ? addr : "-");
    field_u64(&f, "port", a->conn->peer.port);
    key(&f, "worker");
    if (sy_log_worker() >= 0)
        sy_line_printf(&l, "%d", sy_log_worker());
    else
        sy_line_puts(&l, json ? "null" : "supervisor");
    field_u64(&f, "conn", a->conn->id);
    if (a->stream)
        field_u64(&f, "stream", (uint64_t)a->stream);
    field_cstr(&f, "proto", a->proto);
    if (a->event == SY_ACCESS_CLOSE) {
        if (a->msgs_in || a->msgs_out || a->close_sent || a->close_received ||
            (a->proto && strcmp(a->proto, "websocket") == 0)) {
            field_u64(&f, "msgs_in", a->msgs_in);
            field_u64(&f, "msgs_out", a->msgs_out);
        }
        field_u64(&f, "bytes_in", a->bytes_in);
        field_u64(&f, "bytes_out", a->bytes_out);
        if (a->close_sent)
            field_u64(&f, "close_sent", (uint64_t)a->close_sent);
        if (a->close_received)
            field_u64(&f, "close_recv", (uint64_t)a->close_received);
    } else {
        field_str(&f, "method", a->method, MAX_METHOD);
        field_str(&f, "target", a->target, MAX_TARGET);
        field_str(&f, "upgrade", a->upgrade, MAX_UPGRADE);
        field_cstr(&f, "decision", a->decision);
        field_str(&f, "protocol", a->protocol, MAX_PROTOCOL);
        field_u64(&f, "status", (uint64_t)(a->status > 0 ? a->status : 0));
        field_u64(&f, "bytes_out", a->bytes_out);
    }
    double took = a->started > 0 && now > a->started ? now - a->started : 0;
    key(&f, "duration");
    sy_line_printf(&l, "%.6f", took);
    if (json)
        sy_line_put(&l, "}", 1);
    l.p[l.len++] = '\n'; /* sy_line keeps one byte for it */
    return l.len;
}

void sy_access_log_write(sy_access_log *l, const sy_access *a, double now)
{
    char buf[LINE_CAP];
    size_t n = sy_access_format(a, now, sy_log_is_json(), buf, sizeof buf);
    const char *p = buf;
    while (n) {
        ssize_t w = write(l->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* a full disk or a closed stdout loses the line, never the server */
        p += w;
        n -= (size_t)w;
    }
}
