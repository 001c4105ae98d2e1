/* Minimal unit-test harness shared by tests/test_*.c: checks, a summary line, guard pages. */
#ifndef SY_TEST_H
#define SY_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int t_failed, t_passed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            t_passed++;                                                                            \
        } else {                                                                                   \
            t_failed++;                                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (cond) {                                                                                \
            t_passed++;                                                                            \
        } else {                                                                                   \
            t_failed++;                                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* Prints "N passed, N failed" and returns the process exit code. */
static inline int t_summary(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, t_passed, t_failed);
    return t_failed ? 1 : 0;
}

/* Copies len bytes so they end exactly before a PROT_NONE page: reading past them crashes.
 * Free with t_guard_free. */
static inline char *t_guard_copy(const void *data, size_t len, void **map, size_t *maplen)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + page - 1) / page + 1;
    char *m = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    mprotect(m + (pages - 1) * page, page, PROT_NONE);
    char *p = m + (pages - 1) * page - len;
    if (len)
        memcpy(p, data, len);
    *map = m;
    *maplen = pages * page;
    return p;
}

static inline void t_guard_free(void *map, size_t maplen)
{
    munmap(map, maplen);
}

/* An app for a test: text written to app.lua in a new directory made from dir (a mkdtemp
 * template, rewritten in place); path (cap bytes) gets the file's name. 0, or -1. */
static inline int t_app_write(char *dir, const char *text, char *path, size_t cap)
{
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, cap, "%s/app.lua", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f) == 0 ? 0 : -1;
}

static inline void t_app_remove(const char *dir, const char *path)
{
    unlink(path);
    rmdir(dir);
}

#endif
