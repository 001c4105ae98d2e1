/* Output queue: copies coalesce, shared chunks are referenced (not copied), consumption at any
 * split releases chunks exactly once. */
#include "outq.h"
#include "test.h"

static size_t gather(const sy_outq *q, char *out)
{
    struct iovec iov[64];
    int n = sy_outq_iov(q, iov, 64);
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        memcpy(out + len, iov[i].iov_base, iov[i].iov_len);
        len += iov[i].iov_len;
    }
    return len;
}

int main(void)
{
    sy_outq q = {0};
    char buf[65536];
    CHECK(sy_outq_copy(&q, "abc", 3) == 0);
    CHECK(sy_outq_copy(&q, "def", 3) == 0);
    CHECK(q.count == 1 && q.bytes == 6); /* coalesced into one chunk */

    sy_chunk *shared = sy_chunk_new(16);
    memcpy(shared->data, "SHARED", 6);
    shared->len = 6;
    CHECK(sy_outq_share(&q, shared, 0, 6) == 0);
    CHECK(shared->refs == 2 && shared->sealed);
    CHECK(sy_outq_copy(&q, "ghi", 3) == 0);
    CHECK(q.count == 3); /* no append into a shared chunk */

    sy_outq q2 = {0};
    CHECK(sy_outq_share(&q2, shared, 1, 4) == 0);
    CHECK(shared->refs == 3);
    size_t n = gather(&q2, buf);
    CHECK(n == 4 && memcmp(buf, "HARE", 4) == 0);

    n = gather(&q, buf);
    CHECK(n == 15 && memcmp(buf, "abcdefSHAREDghi", 15) == 0);
    /* Consume at every split point of a copy of the queue state. */
    sy_outq_consume(&q, 4);
    n = gather(&q, buf);
    CHECK(n == 11 && memcmp(buf, "efSHAREDghi", 11) == 0);
    sy_outq_consume(&q, 2 + 6);
    CHECK(shared->refs == 2);
    n = gather(&q, buf);
    CHECK(n == 3 && memcmp(buf, "ghi", 3) == 0);
    sy_outq_consume(&q, 3);
    CHECK(q.bytes == 0 && q.count == 0);
    sy_outq_dispose(&q);
    sy_outq_dispose(&q2);
    CHECK(shared->refs == 1);
    sy_chunk_release(shared);

    /* Many entries: the ring grows and keeps order. */
    for (int i = 0; i < 1000; i++) {
        sy_chunk *ch = sy_chunk_new(1);
        ch->data[0] = (char)('a' + i % 26);
        ch->len = 1;
        CHECK(sy_outq_share(&q, ch, 0, 1) == 0);
        sy_chunk_release(ch);
        if (i % 7 == 0)
            sy_outq_consume(&q, 1);
    }
    size_t left = q.bytes;
    CHECK(left == 1000 - 143);
    sy_outq_dispose(&q);
    CHECK(q.bytes == 0);
    /* Two pieces (a frame header and its payload) append to the tail as one. */
    sy_outq q3 = {0};
    CHECK(sy_outq_copy2(&q3, "\x81\x03", 2, "abc", 3) == 0);
    CHECK(sy_outq_copy2(&q3, "\x82\x00", 2, NULL, 0) == 0); /* empty payload */
    CHECK(sy_outq_copy2(&q3, NULL, 0, "z", 1) == 0);
    CHECK(sy_outq_copy2(&q3, NULL, 0, NULL, 0) == 0 && q3.bytes == 8);
    CHECK(q3.count == 1);
    n = gather(&q3, buf);
    CHECK(n == 8 && memcmp(buf,
                           "\x81\x03"
                           "abc\x82\x00z",
                           8) == 0);
    /* Not fitting in the tail: the rest goes to new chunks, in order, nothing lost. */
    static char big[6000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('A' + i % 26);
    CHECK(sy_outq_copy2(&q3, "hd", 2, big, sizeof big) == 0);
    CHECK(q3.bytes == 8 + 2 + sizeof big && q3.count >= 2);
    n = gather(&q3, buf);
    CHECK(n == q3.bytes && memcmp(buf + 8, "hd", 2) == 0 && memcmp(buf + 10, big, sizeof big) == 0);
    sy_outq_dispose(&q3);

    return t_summary("test_outq");
}
