/* SPDX-License-Identifier: MIT */
/* src/alloc/alloc_internal.h — kos/alloc.h internals: size classes, chunks, slab pages, thread heaps. */
#ifndef KVMM_ALLOC_INTERNAL_H
#define KVMM_ALLOC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Layout. A chunk is a KVMM_CHUNK-aligned region of KVMM_CHUNK bytes, cut into 64 slots of
 * 64 KiB. Slot 0 holds the chunk header (struct kvmm_chunk): so the header of any small block is
 * found by aligning its address down, and KosMemFree/KosMemGetSize are O(1). A slab page is a run
 * of 1, 2, 4 or 8 slots aligned to its length, so a block whose size is a multiple of a power of
 * two up to 64 KiB is aligned to it. Blocks of 128 KiB to 1 MiB are run pages: one block made of
 * whole slots, freed back to the chunk without a system call.
 */
#define KVMM_CHUNK_SHIFT 22
#define KVMM_CHUNK ((uintptr_t)1 << KVMM_CHUNK_SHIFT)
#define KVMM_SLOT_SHIFT 16
#define KVMM_SLOT ((uintptr_t)1 << KVMM_SLOT_SHIFT)
#define KVMM_SLOTS 64
#define KVMM_SMALL_MAX ((size_t)128 << 10)   /* size-classed up to here */
#define KVMM_RUN_MAX ((size_t)1 << 20)       /* then a run of slots per block; above, a region */
#define KVMM_SMALL_ALIGN_MAX ((size_t)64 << 10)
#define KVMM_BINS 48
#define KVMM_KEEP_COMMITTED 4                /* slabs committed with a new chunk's header */
#define KVMM_KEEP_FREE_MIN 32                /* free slots a heap keeps committed: at least 2 MiB, */
#define KVMM_KEEP_FREE_SHIFT 2               /* or a quarter of what it has committed */

/* Size class of size (1..KVMM_SMALL_MAX): 16-byte steps up to 128, then 4 steps per doubling. */
static inline unsigned kvmm_bin_of(size_t size)
{
    if (size <= 128)
        return size <= 16 ? 0 : (unsigned)((size - 1) >> 4);
    size_t s = size - 1;
    unsigned w = 63u - (unsigned)__builtin_clzl(s);
    return 8u + (w - 7u) * 4u + (unsigned)((s >> (w - 2)) & 3u);
}

static inline size_t kvmm_bin_size(unsigned bin)
{
    if (bin < 8)
        return (size_t)(bin + 1) << 4;
    unsigned w = 7u + (bin - 8u) / 4u, sub = (bin - 8u) % 4u;
    return (size_t)(5u + sub) << (w - 2);
}

/* Slots per slab page of a bin: at least 4 blocks, and no more, since every committed byte is
 * populated (LOCKED) and a partly used page per bin and thread is the allocator's overhead. */
static inline unsigned kvmm_bin_span(unsigned bin)
{
    size_t bs = kvmm_bin_size(bin);
    return bs <= ((size_t)16 << 10) ? 1u : bs <= ((size_t)32 << 10) ? 2u : bs <= ((size_t)64 << 10) ? 4u : 8u;
}

/* The bin number of a run page: one block of whole slots, 128 KiB to 1 MiB. */
#define KVMM_RUN_BIN KVMM_BINS

struct kvmm_heap;
struct kvmm_chunk;

/*
 * A slab page: one size class. The owner thread uses free/bump/used/full without atomics; other
 * threads only push onto xfree. xfree is a tagged word: the list of blocks freed by other threads,
 * or exactly KVMM_XFULL while the page is full and out of its bin list, in which case they push
 * onto the heap's delayed list instead, so the owner hears of it. After its push a remote free
 * touches nothing of the page: the owner may retire it and unmap the chunk at once.
 */
#define KVMM_XFULL ((uintptr_t)1)

struct kvmm_page {
    void *free;                      /* owner's free list */
    struct kvmm_page *next, *prev;   /* the heap's bin list (pages that are not full) */
    _Atomic uintptr_t xfree;
    uintptr_t start;
    uint64_t recip;                  /* ceil(2^40 / bsize): offset -> index without a division */
    uint32_t bsize, capacity, bump, used;
    uint8_t bin, span, full;
};

#define KVMM_NO_PAGE 0xffu
#define KVMM_CHUNK_MAGIC 0x4b6f734d656d4368ull /* "KosMemCh", xor'ed with the chunk's address */

struct kvmm_chunk {
    uint64_t magic;
    struct kvmm_heap *heap;                 /* owner, for the chunk's whole life */
    struct kvmm_chunk *next, *prev;         /* the heap's chunk list */
    uint64_t free_slots;                    /* bit i: slot i belongs to no page */
    uint32_t pages;                         /* slab pages */
    uint32_t busy;                          /* of which with a block in use */
    uint64_t committed;                     /* bit i: slot i is committed */
    uint8_t slot_page[KVMM_SLOTS];          /* first slot of the page holding each slot */
    struct kvmm_page page[KVMM_SLOTS];      /* indexed by a page's first slot */
    /* Allocated bit per block (atomic: set by the owner, cleared by whoever frees): a block freed
     * twice finds its bit clear. 4096 bits per slot covers 16-byte blocks in a 64 KiB slot. */
    _Atomic uint64_t bits[KVMM_SLOTS][KVMM_SLOT / 16 / 64];
};

_Static_assert(sizeof(struct kvmm_chunk) <= KVMM_SLOT, "chunk header must fit slot 0");

enum { KVMM_HEAP_OWNED, KVMM_HEAP_ABANDONED, KVMM_HEAP_DEAD };

/* One per thread; pooled when the thread exits and adopted by the next new thread. */
struct kvmm_heap {
    struct kvmm_page *bins[KVMM_BINS];      /* head: the page allocations come from */
    struct kvmm_chunk *chunks;
    unsigned empty_chunks;                  /* chunks with no page, kept (at most 1 while owned) */
    size_t committed_slots, free_slots;     /* slots committed in its chunks; of which in no page */
    void *_Atomic delayed;                  /* blocks other threads freed into full pages */
    _Atomic int state;
    _Atomic int pending;                    /* abandoned: a free came in during a collection */
    pthread_mutex_t lock;                   /* taken only for an abandoned heap */
    struct kvmm_heap *all_next, *pool_next;
};

/* chunk.c: chunk regions and the map of which chunk-aligned addresses are chunks. */
struct kvmm_chunk *kvmm_chunk_new(struct kvmm_heap *h);
/* Unmaps an empty chunk (already unlinked from its heap). */
void kvmm_chunk_release(struct kvmm_chunk *c);
/* Makes slots [first, first + span) committed. 0 or -1 (the VMM refused: quota, memory). */
int kvmm_chunk_commit(struct kvmm_chunk *c, unsigned first, unsigned span);
/* Slots [first, first + span) were just freed: decommits them unless the chunk keeps them. */
void kvmm_chunk_trim(struct kvmm_chunk *c, unsigned first, unsigned span);
bool kvmm_chunk_known(uintptr_t chunk);
/* Page-granular metadata memory that is never returned (leaves of the chunk map, heaps). */
void *kvmm_meta_alloc(size_t size);

/* large.c: blocks with a region of their own. */
void *kvmm_large_alloc(size_t size, size_t align);
/* 0 freed; -1 not a large block; -2 a large block already freed (double free). */
int kvmm_large_free(void *p);
size_t kvmm_large_size(const void *p);
void kvmm_large_fork_prepare(void);
void kvmm_large_fork_parent(void);
void kvmm_large_fork_child(void);

/* heap.c: thread heaps, slab pages. */
void *kvmm_small_alloc(unsigned bin);
void *kvmm_run_alloc(size_t size);
void kvmm_small_free(struct kvmm_chunk *c, void *p);
size_t kvmm_small_size(struct kvmm_chunk *c, const void *p);

/* chunk.c: the metadata lock across fork. */
void kvmm_meta_fork_prepare(void);
void kvmm_meta_fork_release(void);

/* api.c: misuse is fatal, with glibc's wording: "fn(): what: 0x... (detail)" on stderr, then abort. */
__attribute__((noreturn)) void kvmm_alloc_abort(const char *fn, const char *what, const void *p,
                                                const char *detail);

#endif
