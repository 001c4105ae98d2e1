/* The host's calls on one connection, named by its id (switchyard.h, "Host calls"). */
#include "proto.h"
#include "server.h"
#include "ws.h"

/* A raw connection takes bytes as conn:write does: refused once the app or the host closed
 * it or shut its write side; over the high-water mark reading pauses until the drain. */
static int send_raw(sy_server *s, sy_conn *c, const void *data, size_t len)
{
    if (c->close_after_write || c->shut_wr)
        return SY_ECLOSED;
    if (len == 0)
        return 0;
    int rc = sy_raw_write(c, data, len);
    if (rc < 0)
        return rc == SY_ENOMEM ? sy_server_fail(s, SY_ENOMEM, "out of memory") : SY_ECLOSED;
    if (rc == 1)
        sy_conn_pause(c);
    return rc;
}

SY_API int sy_server_send(sy_server *s, sy_conn_id id, const void *data, size_t len, int binary)
{
    sy_conn *c = sy_server_conn_find(s, id);
    if (!c)
        return SY_ECLOSED;
    if (!data && len)
        return sy_server_fail(s, SY_EINVAL, "no data");
    if (c->proto == &sy_proto_raw)
        return send_raw(s, c, data, len);
    if (c->proto != &sy_proto_ws)
        return sy_server_fail(s, SY_ENOTSUP,
                              "connection %llu speaks %s: only WebSocket and "
                              "raw connections take sends",
                              (unsigned long long)id,
                              c->proto == &sy_proto_http1 ? "HTTP/1.1" : c->proto->name);
    if (!binary && !sy_utf8_valid((const uint8_t *)data, len))
        return sy_server_fail(s, SY_EINVAL, "text messages must be valid UTF-8");
    int rc = sy_ws_send(c, binary ? SY_WS_BINARY : SY_WS_TEXT, data ? data : "", len);
    if (rc == 0 || rc == 1)
        sy_stats_ws_out(&s->env.stats, len);
    return rc;
}

SY_API int sy_server_close_conn(sy_server *s, sy_conn_id id, int code, const char *reason)
{
    sy_conn *c = sy_server_conn_find(s, id);
    if (!c)
        return SY_ECLOSED;
    if (c->proto != &sy_proto_ws) {
        if (c->close_after_write)
            return SY_ECLOSED;
        sy_conn_close_after_write(c);
        return 0;
    }
    size_t n = reason ? strlen(reason) : 0;
    if (!(code == 1000 || code == 1001 || (code >= 3000 && code <= 4999)))
        return sy_server_fail(s, SY_EINVAL, "close code must be 1000, 1001 or 3000-4999");
    if (n > 123 || !sy_utf8_valid((const uint8_t *)(reason ? reason : ""), n))
        return sy_server_fail(s, SY_EINVAL, "close reason must be UTF-8, at most 123 bytes");
    return sy_ws_close(c, code, sy_str_make(reason ? reason : "", n));
}

SY_API int sy_server_conn_alive(const sy_server *s, sy_conn_id id)
{
    sy_conn *c = sy_server_conn_find(s, id);
    return c && (c->proto != &sy_proto_ws || sy_ws_open(c));
}
