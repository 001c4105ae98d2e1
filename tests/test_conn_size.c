/* The memory of an idle connection: a WebSocket is one sy_conn with the protocol's state in
 * its area, and the struct stays within the bound bench/README.md records (bench/idle.sh
 * measures the whole per-connection figure). A field added to sy_conn or to the WebSocket state
 * must fit these bounds or move to an allocation made on use. */
#include "conn.h"
#include "proto_ws.h"
#include "test.h"
#include "ws.h"

/* glibc hands out 16-byte multiples with 8 bytes of its own: 360 bytes is a 368-byte chunk. */
#define CONN_BOUND 360

int main(void)
{
    CHECK_MSG(sizeof(sy_conn) <= CONN_BOUND, "sizeof(sy_conn) %zu > %d\n", sizeof(sy_conn),
              CONN_BOUND);
    CHECK_MSG(sizeof(sy_ws_header) <= 24, "sizeof(sy_ws_header) %zu\n", sizeof(sy_ws_header));

    /* The WebSocket state lives in the conn's area, and a second one (never made by the core)
     * gets its own allocation. */
    sy_conn *c = sy_calloc(1, sizeof *c);
    CHECK(c != NULL);
    sy_ws_options o;
    sy_ws_default_options(&o);
    o.max_fragments = (size_t)1e12; /* kept, capped at 32 bits */
    void *w = sy_ws_new(c, NULL, &o);
    CHECK(w == (void *)c->area && c->area_busy);
    void *w2 = sy_ws_new(c, NULL, &o);
    CHECK(w2 != NULL && w2 != (void *)c->area);
    sy_ws_free(w2);
    CHECK(c->area_busy);
    sy_ws_free(w);
    CHECK(!c->area_busy);
    /* With permessage-deflate the extra state is allocated on the side. */
    o.pmd = 1;
    w = sy_ws_new(c, NULL, &o);
    CHECK(w == (void *)c->area);
    sy_ws_free(w);
    CHECK(!c->area_busy);
    sy_free(c);

    printf("sizeof(sy_conn) = %zu (bound %d)\n", sizeof(sy_conn), CONN_BOUND);
    return t_summary("test_conn_size");
}
