/* bench/malloc_count.c: an LD_PRELOAD library that counts malloc, calloc, realloc and free calls
 * of the process it is loaded into, and prints the counts to stderr on SIGUSR2 (a line
 * "MALLOC_COUNT malloc=N calloc=N realloc=N free=N"). Used by bench/syscalls.sh; by-hand only.
 *
 * Build: gcc -O2 -shared -fPIC -o malloc_count.so bench/malloc_count.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong n_malloc, n_calloc, n_realloc, n_free;
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);

/* dlsym may call calloc before real_calloc is known: serve that from a static arena. */
static char boot[4096];
static size_t boot_used;

static void *boot_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (boot_used + n > sizeof boot)
        return NULL;
    void *p = boot + boot_used;
    boot_used += n;
    return p;
}

static void resolve(void)
{
    if (!real_malloc) {
        real_calloc = dlsym(RTLD_NEXT, "calloc");
        real_malloc = dlsym(RTLD_NEXT, "malloc");
        real_realloc = dlsym(RTLD_NEXT, "realloc");
        real_free = dlsym(RTLD_NEXT, "free");
    }
}

void *malloc(size_t n)
{
    resolve();
    atomic_fetch_add_explicit(&n_malloc, 1, memory_order_relaxed);
    return real_malloc(n);
}

void *calloc(size_t n, size_t s)
{
    if (!real_calloc) {
        void *p = boot_alloc(n * s);
        if (p)
            memset(p, 0, n * s);
        return p;
    }
    atomic_fetch_add_explicit(&n_calloc, 1, memory_order_relaxed);
    return real_calloc(n, s);
}

void *realloc(void *p, size_t n)
{
    resolve();
    atomic_fetch_add_explicit(&n_realloc, 1, memory_order_relaxed);
    return real_realloc(p, n);
}

void free(void *p)
{
    if ((char *)p >= boot && (char *)p < boot + sizeof boot)
        return;
    resolve();
    if (p)
        atomic_fetch_add_explicit(&n_free, 1, memory_order_relaxed);
    real_free(p);
}

static void on_usr2(int sig)
{
    (void)sig;
    char line[160];
    int n = snprintf(line, sizeof line, "MALLOC_COUNT malloc=%lu calloc=%lu realloc=%lu free=%lu\n",
                     atomic_load(&n_malloc), atomic_load(&n_calloc), atomic_load(&n_realloc),
                     atomic_load(&n_free));
    (void)!write(2, line, (size_t)n);
}

__attribute__((constructor)) static void init(void)
{
    resolve();
    signal(SIGUSR2, on_usr2);
}
