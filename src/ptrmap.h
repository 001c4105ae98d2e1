/* Pointer map: keys are addresses (never NULL), values pointers; open addressing with linear
 * probing, so a lookup is a multiply, a shift and most often one compare. For finding a C
 * object from the address of the Lua value that stands for it (lua_topointer), on paths too hot
 * for a Lua table lookup. Grows at three quarters full, shrinks at an eighth; deleting shifts the
 * entries after the hole back, so no tombstones accumulate. */
#ifndef SY_PTRMAP_H
#define SY_PTRMAP_H

#include <stdint.h>

#include "sy_base.h"

typedef struct sy_ptrmap_slot {
    const void *key; /* NULL: free */
    void *value;
} sy_ptrmap_slot;

typedef struct sy_ptrmap {
    sy_ptrmap_slot *slots; /* owned; cap entries, or NULL while empty */
    size_t cap;            /* a power of two, or 0 */
    size_t n;              /* keys held */
    unsigned shift;        /* 64 - log2(cap): the hash keeps its high bits */
} sy_ptrmap;

/* Valid when zeroed. Frees the slots; the map is empty (and valid) afterwards. */
void sy_ptrmap_dispose(sy_ptrmap *m);

/* Makes room for one more key, so the next sy_ptrmap_put cannot fail. 0 or SY_ENOMEM. */
int sy_ptrmap_reserve(sy_ptrmap *m);

/* Sets key (not NULL) to value, replacing what it had. 0, or SY_ENOMEM (nothing changed) when
 * the map had to grow and could not. */
int sy_ptrmap_put(sy_ptrmap *m, const void *key, void *value);

/* Removes key; returns its value, or NULL when it had none. */
void *sy_ptrmap_del(sy_ptrmap *m, const void *key);

static inline size_t sy_ptrmap_home(const sy_ptrmap *m, const void *key)
{
    return (size_t)(((uint64_t)(uintptr_t)key * UINT64_C(0x9E3779B97F4A7C15)) >> m->shift);
}

/* The value of key, or NULL. */
static inline void *sy_ptrmap_get(const sy_ptrmap *m, const void *key)
{
    if (!m->n)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = sy_ptrmap_home(m, key);; i = (i + 1) & mask) {
        const sy_ptrmap_slot *s = &m->slots[i];
        if (s->key == key)
            return s->value;
        if (!s->key)
            return NULL;
    }
}

#endif
