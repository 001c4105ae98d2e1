/* Log lines: JSON string escaping (control characters, invalid UTF-8, truncation), the RFC 3339
 * time, the level threshold (sy_set_log_level) and the default sink's text and JSON lines
 * (sy_set_log_format) as written to stderr. */
#include <fcntl.h>

#include "log.h"
#include "test.h"

/* sy_line_json of p[0..n) with max, as a C string (static buffer). */
static const char *json(const char *p, size_t n, size_t max)
{
    static char out[1024];
    sy_line l = {out, 0, sizeof out, 0};
    sy_line_json(&l, p, n, max);
    out[l.len] = 0;
    return out;
}

static void test_json_strings(void)
{
    CHECK(strcmp(json("a\"b\\c", 5, 100), "\"a\\\"b\\\\c\"") == 0);
    CHECK(strcmp(json("\n\r\t\b\f\x01\x1f\x7f", 8, 100),
                 "\"\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f\"") == 0);
    CHECK(strcmp(json("\0x", 2, 100), "\"\\u0000x\"") == 0);
    /* Valid UTF-8 stays; each byte of an invalid sequence becomes U+FFFD. */
    CHECK(strcmp(json("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, 100),
                 "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"") == 0);
    CHECK(strcmp(json("\xff\xfe", 2, 100), "\"\\ufffd\\ufffd\"") == 0);
    CHECK(strcmp(json("\xc0\xaf", 2, 100), "\"\\ufffd\\ufffd\"") == 0);            /* overlong */
    CHECK(strcmp(json("\xed\xa0\x80", 3, 100), "\"\\ufffd\\ufffd\\ufffd\"") == 0); /* surrogate */
    CHECK(strcmp(json("\xf4\x90\x80\x80", 4, 100), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"") ==
          0);                                                             /* above U+10FFFF */
    CHECK(strcmp(json("a\xe2\x82", 3, 100), "\"a\\ufffd\\ufffd\"") == 0); /* cut short */
    /* Truncation keeps whole characters and escapes, and closes the string. */
    CHECK(strcmp(json("abcdef", 6, 4), "\"abcd...\"") == 0);
    CHECK(strcmp(json("ab\ncd", 5, 3), "\"ab...\"") == 0);
    CHECK(strcmp(json("a\xe2\x82\xac", 4, 3), "\"a...\"") == 0);
    /* A buffer that runs out still gets the closing quote (and room for the newline). */
    char small[12];
    sy_line l = {small, 0, sizeof small, 0};
    sy_line_json(&l, "abcdefghij", 10, 100);
    CHECK(l.full && l.len == sizeof small - 1 && memcmp(small, "\"abcdef...\"", 11) == 0);
}

static void test_time(void)
{
    char out[64];
    sy_line l = {out, 0, sizeof out, 0};
    sy_line_time(&l, 1700000000.25);
    out[l.len] = 0;
    CHECK_MSG(strcmp(out, "2023-11-14T22:13:20.250000Z") == 0, "%s", out);
}

static int got_level, got_count;
static char got_msg[256];

static void capture(int level, const char *msg, void *ud)
{
    (void)ud;
    got_level = level;
    got_count++;
    snprintf(got_msg, sizeof got_msg, "%s", msg);
}

static void test_levels(void)
{
    sy_set_log(capture, NULL);
    sy_log("debug", "shown"); /* the library drops nothing by default */
    CHECK(got_count == 1 && got_level == SY_LOG_DEBUG);
    sy_set_log_level(SY_LOG_INFO);
    sy_log("debug", "hidden");
    CHECK(got_count == 1);
    sy_log("info", "shown %d", 1);
    CHECK(got_count == 2 && got_level == SY_LOG_INFO && strcmp(got_msg, "shown 1") == 0);
    sy_set_log_level(SY_LOG_WARN);
    sy_log("info", "hidden");
    sy_log("warn", "w");
    sy_log("fatal", "f");
    CHECK(got_count == 4 && got_level == SY_LOG_FATAL);
    sy_set_log_level(99); /* clamped to debug */
    sy_log("debug", "d");
    CHECK(got_count == 5 && got_level == SY_LOG_DEBUG);
    sy_set_log_level(-5); /* clamped to fatal */
    sy_log("error", "hidden");
    CHECK(got_count == 5);
    sy_set_log_level(SY_LOG_DEBUG);
    sy_set_log(NULL, NULL);
    CHECK(sy_log_level_parse("warn") == SY_LOG_WARN && sy_log_level_parse("loud") == -1);
}

/* Runs sy_log with stderr redirected to a file; returns what was written (static). */
static const char *stderr_of(const char *level, const char *msg)
{
    static char text[1024];
    char path[] = "/tmp/sy_test_log_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    int saved = dup(2);
    dup2(fd, 2);
    sy_log(level, "%s", msg);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    text[n > 0 ? n : 0] = 0;
    close(fd);
    unlink(path);
    return text;
}

static void test_default_sink(void)
{
    char pid[32];
    snprintf(pid, sizeof pid, " pid=%ld ", (long)getpid());
    const char *t = stderr_of("warn", "two\nlines\x01");
    /* "2026-12-06T02:42:34.123456Z [warn] worker=0 pid=P two\nlines\x01" */
    CHECK_MSG(strlen(t) > 28 && t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[26] == 'Z' &&
                  strncmp(t + 27, " [warn] worker=0", 16) == 0 && strstr(t, pid) &&
                  strstr(t, " two\\nlines\\x01\n") && strchr(t, '\n') == t + strlen(t) - 1,
              "%s", t);
    sy_log_set_worker(-1);
    CHECK(strstr(stderr_of("info", "x"), "[info] worker=supervisor pid="));
    sy_log_set_worker(3);
    sy_set_log_format(SY_LOG_JSON);
    t = stderr_of("error", "q\"");
    snprintf(pid, sizeof pid, ",\"pid\":%ld,", (long)getpid());
    CHECK_MSG(strncmp(t, "{\"time\":\"", 9) == 0 &&
                  strstr(t, "Z\",\"level\":\"error\",\"worker\":3,") && strstr(t, pid) &&
                  strstr(t, "\"msg\":\"q\\\"\"}\n"),
              "%s", t);
    sy_log_set_worker(-1);
    CHECK(strstr(stderr_of("info", "x"), "\"worker\":null,"));
    sy_set_log_format(SY_LOG_TEXT);
    sy_log_set_worker(0);
    sy_set_log_level(SY_LOG_ERROR);
    CHECK(stderr_of("warn", "dropped")[0] == 0);
    sy_set_log_level(SY_LOG_DEBUG);
}

int main(void)
{
    test_json_strings();
    test_time();
    test_levels();
    test_default_sink();
    return t_summary("test_log");
}
