/* Output queue entries by reference (sy_outq_ref): bytes borrowed until written, released exactly
 * once whether written whole, written in pieces, or dropped; and byte buffers that borrow a
 * shared read buffer (sy_buf_borrow / sy_buf_own). */
#include "buf.h"
#include "outq.h"
#include "test.h"

static int released[8];

static void on_release(void *ud, int ref)
{
    CHECK(ud == released);
    CHECK(ref >= 0 && ref < 8);
    released[ref]++;
}

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
    char out[256];
    sy_outq q = {0};

    /* Written whole: header in place, payload by reference, released once. */
    char payload[] = "PAYLOAD";
    CHECK(sy_outq_ref(&q, "HD", 2, payload, 7, on_release, released, 0) == 0);
    CHECK(q.count == 1 && q.bytes == 9); /* one entry: header in place, then the payload */
    struct iovec iov[4];
    CHECK(sy_outq_iov(&q, iov, 4) == 2);
    CHECK(iov[1].iov_base == payload); /* not copied */
    CHECK(gather(&q, out) == 9 && memcmp(out, "HDPAYLOAD", 9) == 0);
    sy_outq_consume(&q, 9);
    CHECK(released[0] == 1 && q.count == 0 && q.bytes == 0);

    /* Room for one iovec: the header first, then the payload, each whole. */
    CHECK(sy_outq_ref(&q, "HD", 2, payload, 7, on_release, released, 0) == 0);
    CHECK(sy_outq_iov(&q, iov, 1) == 1 && iov[0].iov_len == 2);
    sy_outq_consume(&q, 1);
    CHECK(sy_outq_iov(&q, iov, 1) == 1 && iov[0].iov_len == 1);
    sy_outq_consume(&q, 1);
    CHECK(sy_outq_iov(&q, iov, 4) == 1 && iov[0].iov_base == payload && iov[0].iov_len == 7);
    sy_outq_consume(&q, 7);
    CHECK(released[0] == 2 && q.count == 0 && q.bytes == 0);
    released[0] = 1;

    /* Written in pieces: partial header, partial payload; the release waits for the last byte. */
    CHECK(sy_outq_copy(&q, "x", 1) == 0);
    CHECK(sy_outq_ref(&q, "AB", 2, payload, 7, on_release, released, 1) == 0);
    CHECK(sy_outq_ref(&q, NULL, 0, "tail", 4, on_release, released, 2) == 0);
    sy_outq_consume(&q, 2); /* "x" and "A" */
    CHECK(gather(&q, out) == 12 && memcmp(out, "BPAYLOADtail", 12) == 0);
    sy_outq_consume(&q, 4); /* "B" and "PAY" */
    CHECK(released[1] == 0);
    CHECK(gather(&q, out) == 8 && memcmp(out, "LOADtail", 8) == 0);
    sy_outq_consume(&q, 4);
    CHECK(released[1] == 1 && released[2] == 0);
    sy_outq_consume(&q, 4);
    CHECK(released[1] == 1 && released[2] == 1 && q.bytes == 0);

    /* Dropped at the close: every queued reference released once, sent ones not again. */
    CHECK(sy_outq_ref(&q, "H", 1, payload, 7, on_release, released, 3) == 0);
    CHECK(sy_outq_ref(&q, "H", 1, payload, 7, on_release, released, 4) == 0);
    sy_outq_consume(&q, 8);
    CHECK(released[3] == 1 && released[4] == 0);
    sy_outq_dispose(&q);
    CHECK(released[3] == 1 && released[4] == 1);
    sy_outq_dispose(&q); /* idempotent: nothing released twice */
    CHECK(released[4] == 1);

    /* An empty payload or a head too big: released at once. */
    CHECK(sy_outq_ref(&q, "H", 1, payload, 0, on_release, released, 5) == 0);
    CHECK(released[5] == 1 && q.bytes == 1);
    char big[SY_OUTQ_SMALL + 1] = {0};
    CHECK(sy_outq_ref(&q, big, sizeof big, payload, 7, on_release, released, 6) == SY_EINVAL);
    CHECK(released[6] == 1 && q.bytes == 1);
    sy_outq_dispose(&q);

    /* Many entries: the ring grows past its first size and keeps the order. */
    for (int i = 0; i < 40; i++)
        CHECK(sy_outq_ref(&q, "h", 1, "p", 1, on_release, released, 7) == 0);
    CHECK(q.bytes == 80);
    sy_outq_consume(&q, 79);
    CHECK(released[7] == 39);
    sy_outq_dispose(&q);
    CHECK(released[7] == 40);

    /* A buffer borrowing a read: consumed in place, never freed; what is left moves to memory of
     * its own. */
    char shared[64];
    memcpy(shared, "frame1frame2part", 16);
    sy_buf b;
    sy_buf_init(&b, 0);
    sy_buf_borrow(&b, shared, 16);
    CHECK(sy_buf_borrowed(&b) && sy_buf_data(&b) == shared && sy_buf_len(&b) == 16);
    sy_buf_consume(&b, 12);
    CHECK(sy_buf_own(&b) == 0);
    CHECK(!sy_buf_borrowed(&b) && sy_buf_len(&b) == 4 && sy_buf_data(&b) != shared + 12);
    CHECK(memcmp(sy_buf_data(&b), "part", 4) == 0);
    CHECK(sy_buf_append(&b, "more", 4) == 0);
    CHECK(memcmp(sy_buf_data(&b), "partmore", 8) == 0);
    sy_buf_dispose(&b);

    /* All consumed: nothing kept, nothing allocated. */
    sy_buf_borrow(&b, shared, 6);
    sy_buf_consume(&b, 6);
    CHECK(sy_buf_own(&b) == 0 && b.data == NULL && b.cap == 0);

    /* A reserve while borrowing copies first; dispose never frees the lent memory. */
    sy_buf_borrow(&b, shared, 6);
    char *span;
    CHECK(sy_buf_reserve(&b, 10, &span) == 0);
    CHECK(sy_buf_data(&b) != shared && memcmp(sy_buf_data(&b), "frame1", 6) == 0);
    sy_buf_dispose(&b);
    sy_buf_borrow(&b, shared, 6);
    sy_buf_dispose(&b);
    CHECK(b.data == NULL);
    sy_buf_trim(&b, 0);
    return 0;
}
