/* Byte buffer, cutting a range: sy_buf_cut drops bytes from the middle of the readable bytes
 * (after a consumed front too), clamps at the end, and leaves the buffer usable. */
#include "buf.h"
#include "test.h"

static int is(const sy_buf *b, const char *want)
{
    return sy_buf_len(b) == strlen(want) && memcmp(sy_buf_data(b), want, strlen(want)) == 0;
}

int main(void)
{
    sy_buf b;
    sy_buf_init(&b, 64);
    CHECK(sy_buf_append(&b, "xxhead|framing|body|rest", 24) == 0);
    sy_buf_consume(&b, 2);
    sy_buf_cut(&b, 5, 8); /* "framing|" */
    CHECK(is(&b, "head|body|rest"));
    sy_buf_cut(&b, 9, 100); /* clamped to the end */
    CHECK(is(&b, "head|body"));
    sy_buf_cut(&b, 9, 3); /* at the end: nothing */
    sy_buf_cut(&b, 0, 0);
    CHECK(is(&b, "head|body"));
    sy_buf_cut(&b, 0, 5);
    CHECK(is(&b, "body"));
    /* The limit counts what is left: the room a cut frees is usable again. */
    char fill[64];
    memset(fill, 'f', sizeof fill);
    CHECK(sy_buf_append(&b, fill, 61) == SY_ELIMIT); /* 4 + 61 > 64 */
    CHECK(sy_buf_append(&b, fill, 60) == 0);
    CHECK(sy_buf_len(&b) == 64);
    sy_buf_dispose(&b);
    sy_buf_cut(&b, 0, 1); /* empty: nothing */
    CHECK(sy_buf_len(&b) == 0);
    return t_summary("test_buf_cut");
}
