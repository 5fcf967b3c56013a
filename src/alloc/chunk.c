/* SPDX-License-Identifier: MIT */
/* src/alloc/chunk.c — 4 MiB chunk regions from the VMM API, committed slab by slab, and the chunk map. */
#include "alloc_internal.h"

#include <coresrv/vmm/vmm_api.h>
#include <string.h>

#include "os.h"

#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)

/*
 * Which chunk-aligned addresses are chunks: a bit per chunk of the 47-bit user address space, in
 * page-sized leaves made on demand. KosMemFree must tell a chunk from foreign memory before it
 * reads a header there, since a foreign address may not be mapped at all.
 */
#define MAP_ADDR_BITS 47
#define LEAF_BITS 15 /* a 4 KiB leaf: 32768 chunks */
#define TOP_ENTRIES (1u << (MAP_ADDR_BITS - KVMM_CHUNK_SHIFT - LEAF_BITS))

static _Atomic uint64_t *_Atomic chunk_map[TOP_ENTRIES];
static pthread_mutex_t meta_lock = PTHREAD_MUTEX_INITIALIZER;

static _Atomic uint64_t *leaf_of(uintptr_t chunk, bool make)
{
    uintptr_t idx = chunk >> KVMM_CHUNK_SHIFT;
    if (idx >> (MAP_ADDR_BITS - KVMM_CHUNK_SHIFT))
        return NULL;
    _Atomic uint64_t *leaf = atomic_load_explicit(&chunk_map[idx >> LEAF_BITS], memory_order_acquire);
    if (leaf || !make)
        return leaf;
    /* Made outside any lock (the metadata lock is never held across a VMM call); a racing thread's
     * leaf wins and this one goes back. */
    _Atomic uint64_t *fresh = KnVmAllocate(RTL_NULL, (1u << LEAF_BITS) / 8,
                                           RW | VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED);
    if (!fresh)
        return NULL;
    if (atomic_compare_exchange_strong_explicit(&chunk_map[idx >> LEAF_BITS], &leaf, fresh,
                                                memory_order_acq_rel, memory_order_acquire))
        return fresh;
    KnVmUnmap((void *)fresh, (1u << LEAF_BITS) / 8);
    return leaf;
}

bool kvmm_chunk_known(uintptr_t chunk)
{
    _Atomic uint64_t *leaf = leaf_of(chunk, false);
    if (!leaf)
        return false;
    uintptr_t bit = (chunk >> KVMM_CHUNK_SHIFT) & ((1u << LEAF_BITS) - 1);
    return atomic_load_explicit(&leaf[bit / 64], memory_order_acquire) >> (bit % 64) & 1;
}

static void map_set(uintptr_t chunk, _Atomic uint64_t *leaf, bool on)
{
    uintptr_t bit = (chunk >> KVMM_CHUNK_SHIFT) & ((1u << LEAF_BITS) - 1);
    if (on)
        atomic_fetch_or_explicit(&leaf[bit / 64], 1ull << (bit % 64), memory_order_release);
    else
        atomic_fetch_and_explicit(&leaf[bit / 64], ~(1ull << (bit % 64)), memory_order_release);
}

void *kvmm_meta_alloc(size_t size)
{
    /* Heaps are a few hundred bytes and pooled forever; a small bump arena saves a region each.
     * A new arena is mapped outside the lock; if another thread installed one meanwhile, the
     * request is served from whichever has room and a spare arena is kept for the next. */
    static char *cur, *end, *spare;
    size = (size + 63) & ~(size_t)63;
    if (size > 65536)
        return NULL;
    pthread_mutex_lock(&meta_lock);
    while (!cur || (size_t)(end - cur) < size) {
        if (spare) {
            cur = spare;
            end = spare + 65536;
            spare = NULL;
            break;
        }
        pthread_mutex_unlock(&meta_lock);
        char *p = KnVmAllocate(RTL_NULL, 65536, RW | VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED);
        if (!p)
            return NULL;
        pthread_mutex_lock(&meta_lock);
        if (!spare) {
            spare = p;
        } else { /* two threads raced for a spare: one is kept */
            pthread_mutex_unlock(&meta_lock);
            KnVmUnmap(p, 65536);
            pthread_mutex_lock(&meta_lock);
        }
    }
    void *r = cur;
    cur += size;
    pthread_mutex_unlock(&meta_lock);
    return r;
}

/* A KVMM_CHUNK-aligned reservation: twice the size reserved, the edges unmapped again. Only
 * reserved, so the excess costs no memory; LOCKED, so every later KnVmCommit populates. */
static uintptr_t reserve_aligned(void)
{
    uintptr_t base = (uintptr_t)KnVmAllocate(RTL_NULL, 2 * KVMM_CHUNK, RW | VMM_FLAG_RESERVE | VMM_FLAG_LOCKED);
    if (!base)
        return 0;
    uintptr_t c = (base + KVMM_CHUNK - 1) & ~(KVMM_CHUNK - 1), tail = base + KVMM_CHUNK - c;
    /* A refused split (vm.max_map_count) leaves the region whole: free what is still there. */
    if (c > base && KnVmUnmap((void *)base, c - base) != rcOk) {
        KnVmUnmap((void *)base, 2 * KVMM_CHUNK);
        return 0;
    }
    if (tail && KnVmUnmap((void *)(c + KVMM_CHUNK), tail) != rcOk) {
        KnVmUnmap((void *)c, KVMM_CHUNK + tail);
        return 0;
    }
    return c;
}

static uint64_t run_mask(unsigned first, unsigned span)
{
    return (span >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << span) - 1) << first;
}

int kvmm_chunk_commit(struct kvmm_chunk *c, unsigned first, unsigned span)
{
    uint64_t need = run_mask(first, span);
    unsigned had = (unsigned)__builtin_popcountll(c->committed & need);
    /* The slots leave the free pool whether or not they must be committed now. */
    if (had < span && KnVmCommit((void *)((uintptr_t)c + first * KVMM_SLOT), span * KVMM_SLOT,
                                 VMM_FLAG_LOCKED) != rcOk)
        return -1; /* committed pages in the range stay as they were, and are not charged twice */
    c->committed |= need;
    c->heap->committed_slots += span - had;
    c->heap->free_slots -= had;
    return 0;
}

void kvmm_chunk_trim(struct kvmm_chunk *c, unsigned first, unsigned span)
{
    /* LOCKED memory is all resident, so free slots cost RAM until decommitted; but a page
     * retired and carved again soon should cost no system call. The heap keeps free slots
     * committed up to a budget, an eighth of what it has committed (at least 1 MiB). */
    struct kvmm_heap *h = c->heap;
    uint64_t run = run_mask(first, span) & c->committed;
    unsigned n = (unsigned)__builtin_popcountll(run);
    h->free_slots += n;
    size_t budget = h->committed_slots >> KVMM_KEEP_FREE_SHIFT;
    if (h->free_slots <= (budget > KVMM_KEEP_FREE_MIN ? budget : KVMM_KEEP_FREE_MIN) || !n)
        return;
    if (KnVmDecommit((void *)((uintptr_t)c + first * KVMM_SLOT), span * KVMM_SLOT) == rcOk) {
        c->committed &= ~run;
        h->committed_slots -= n;
        h->free_slots -= n;
    }
}

struct kvmm_chunk *kvmm_chunk_new(struct kvmm_heap *h)
{
    uintptr_t base = reserve_aligned();
    if (!base)
        return NULL;
    _Atomic uint64_t *leaf = leaf_of(base, true);
    /* The header slot and the first slab slots in one call. */
    if (!leaf || KnVmCommit((void *)base, (1 + KVMM_KEEP_COMMITTED) * KVMM_SLOT, VMM_FLAG_LOCKED) != rcOk) {
        KnVmUnmap((void *)base, KVMM_CHUNK);
        return NULL;
    }
    struct kvmm_chunk *c = (struct kvmm_chunk *)base;
    /* Freshly committed memory reads as zero: only the non-zero fields are set. */
    c->magic = KVMM_CHUNK_MAGIC ^ base;
    c->heap = h;
    c->free_slots = ~(uint64_t)1;
    c->committed = run_mask(0, 1 + KVMM_KEEP_COMMITTED);
    h->committed_slots += 1 + KVMM_KEEP_COMMITTED;
    h->free_slots += KVMM_KEEP_COMMITTED;
    memset(c->slot_page, KVMM_NO_PAGE, sizeof c->slot_page);
    map_set(base, leaf, true);
    return c;
}

void kvmm_chunk_release(struct kvmm_chunk *c)
{
    uintptr_t base = (uintptr_t)c;
    map_set(base, leaf_of(base, false), false);
    c->magic = 0;
    KnVmUnmap(c, KVMM_CHUNK);
}

void kvmm_meta_fork_prepare(void)
{
    pthread_mutex_lock(&meta_lock);
}

void kvmm_meta_fork_release(void)
{
    pthread_mutex_unlock(&meta_lock);
}
