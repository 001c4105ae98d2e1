/* Pointer map (ptrmap.h). */
#include "ptrmap.h"

#include "buf.h" /* sy_calloc, sy_free */

#include <string.h>

#define MIN_CAP 16

void sy_ptrmap_dispose(sy_ptrmap *m)
{
    sy_free(m->slots);
    memset(m, 0, sizeof *m);
}

/* Rehashes every key into a table of cap slots (a power of two >= MIN_CAP). */
static int resize(sy_ptrmap *m, size_t cap)
{
    sy_ptrmap_slot *slots = sy_calloc(cap, sizeof *slots);
    if (!slots)
        return SY_ENOMEM;
    sy_ptrmap old = *m;
    unsigned bits = 0;
    while (((size_t)1 << bits) < cap)
        bits++;
    m->slots = slots;
    m->cap = cap;
    m->shift = 64 - bits;
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.slots[i].key)
            continue;
        size_t j = sy_ptrmap_home(m, old.slots[i].key);
        while (slots[j].key)
            j = (j + 1) & (cap - 1);
        slots[j] = old.slots[i];
    }
    sy_free(old.slots);
    return 0;
}

int sy_ptrmap_reserve(sy_ptrmap *m)
{
    if ((m->n + 1) * 4 <= m->cap * 3)
        return 0;
    return resize(m, m->cap ? m->cap * 2 : MIN_CAP);
}

int sy_ptrmap_put(sy_ptrmap *m, const void *key, void *value)
{
    if (sy_ptrmap_reserve(m) != 0)
        return SY_ENOMEM;
    size_t mask = m->cap - 1;
    size_t i = sy_ptrmap_home(m, key);
    while (m->slots[i].key && m->slots[i].key != key)
        i = (i + 1) & mask;
    if (!m->slots[i].key)
        m->n++;
    m->slots[i].key = key;
    m->slots[i].value = value;
    return 0;
}

void *sy_ptrmap_del(sy_ptrmap *m, const void *key)
{
    if (!m->n)
        return NULL;
    size_t mask = m->cap - 1;
    size_t i = sy_ptrmap_home(m, key);
    while (m->slots[i].key != key) {
        if (!m->slots[i].key)
            return NULL;
        i = (i + 1) & mask;
    }
    void *value = m->slots[i].value;
    /* Backward shift: each later entry of the run moves into the hole unless its home lies
     * cyclically in (hole, its slot], where it is already reachable. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        size_t home = sy_ptrmap_home(m, m->slots[j].key);
        int reachable = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!reachable) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].key = NULL;
    m->slots[hole].value = NULL;
    m->n--;
    if (m->cap > MIN_CAP && m->n * 8 < m->cap)
        resize(m, m->cap / 2); /* on failure it stays larger: still valid */
    return value;
}
