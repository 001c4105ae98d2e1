/* The host's calls on one connection, named by its id (switchyard.h, "Host calls"). */
#include "proto.h"
#include "server.h"
#include "ws.h"

SY_API int sy_server_send(sy_server *s, sy_conn_id id, const void *data, size_t len, int binary)
{
    sy_conn *c = sy_server_conn_find(s, id);
    if (!c)
        return SY_ECLOSED;
    if (c->proto != &sy_proto_ws)
        return sy_server_fail(s, SY_EINVAL, "connection %llu is not a WebSocket",
                              (unsigned long long)id);
    if (!data && len)
        return sy_server_fail(s, SY_EINVAL, "no data");
    if (!binary && !sy_utf8_valid((const uint8_t *)data, len))
        return sy_server_fail(s, SY_EINVAL, "text messages must be valid UTF-8");
    return sy_ws_send(c, binary ? SY_WS_BINARY : SY_WS_TEXT, data ? data : "", len);
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
