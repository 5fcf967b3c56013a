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
    pthread_mutex_lock(&meta_lock);
    leaf = atomic_load_explicit(&chunk_map[idx >> LEAF_BITS], memory_order_relaxed);
    if (!leaf) {
        leaf = KnVmAllocate(RTL_NULL, (1u << LEAF_BITS) / 8, RW | VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED);
        if (leaf)
            atomic_store_explicit(&chunk_map[idx >> LEAF_BITS], leaf, memory_order_release);
    }
    pthread_mutex_unlock(&meta_lock);
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
    /* Heaps are a few hundred bytes and pooled forever; a small bump arena saves a region each. */
    static char *cur, *end;
    size = (size + 63) & ~(size_t)63;
    pthread_mutex_lock(&meta_lock);
    if (!cur || (size_t)(end - cur) < size) {
        size_t len = size > 65536 ? (size + kvmm_os_page_size() - 1) & ~(kvmm_os_page_size() - 1) : 65536;
        char *p = KnVmAllocate(RTL_NULL, len, RW | VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED);
        if (!p) {
            pthread_mutex_unlock(&meta_lock);
            return NULL;
        }
        cur = p;
        end = p + len;
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

int kvmm_chunk_commit(struct kvmm_chunk *c, unsigned upto)
{
    if (upto <= c->committed)
        return 0;
    /* Whole steps, so the region keeps few kernel mappings and few KnVmCommit calls are made. */
    unsigned to = c->committed + KVMM_COMMIT_STEP > upto ? c->committed + KVMM_COMMIT_STEP : upto;
    if (to > KVMM_SLOTS)
        to = KVMM_SLOTS;
    uintptr_t base = (uintptr_t)c;
    if (KnVmCommit((void *)(base + c->committed * KVMM_SLOT), (to - c->committed) * KVMM_SLOT,
                   VMM_FLAG_LOCKED) != rcOk)
        return -1;
    c->committed = to;
    return 0;
}

struct kvmm_chunk *kvmm_chunk_new(struct kvmm_heap *h)
{
    uintptr_t base = reserve_aligned();
    if (!base)
        return NULL;
    _Atomic uint64_t *leaf = leaf_of(base, true);
    /* The header slot and the first slab slots in one call. */
    if (!leaf || KnVmCommit((void *)base, KVMM_COMMIT_STEP * KVMM_SLOT, VMM_FLAG_LOCKED) != rcOk) {
        KnVmUnmap((void *)base, KVMM_CHUNK);
        return NULL;
    }
    struct kvmm_chunk *c = (struct kvmm_chunk *)base;
    /* Freshly committed memory reads as zero: only the non-zero fields are set. */
    c->magic = KVMM_CHUNK_MAGIC ^ base;
    c->heap = h;
    c->free_slots = ~(uint64_t)1;
    c->committed = KVMM_COMMIT_STEP;
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
