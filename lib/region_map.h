/* SPDX-License-Identifier: MIT */
/* lib/region_map.h — the process's regions (an AVL tree by base) and each region's spans of uniform pages. */
#ifndef KVMM_REGION_MAP_H
#define KVMM_REGION_MAP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "avl.h"

/*
 * The NT design the KasperskyOS VMM follows: a balanced tree of allocations (MEMORY_AREA), each
 * holding a list of sub-ranges with uniform attributes (MmAlterRegion). Here both levels are AVL
 * trees keyed by address, so lookups are O(log regions + log spans), and spans are coalesced after
 * every change, so a 1 TiB region that was reserved and then committed is still one span.
 *
 * Locking: the map lock (a rwlock) guards the region tree; each region's mutex guards its spans
 * and its kernel state. Order: map lock, then region lock. An operation on one region holds the
 * map lock (shared) for its whole duration, so the fork handler, by taking it exclusively, knows
 * no region lock is held when the process forks. The userfaultfd handler only ever try-locks.
 */

enum kvmm_state {
    KVMM_RESERVED = 0,  /* no access; no physical memory */
    KVMM_LAZY = 1,      /* committed; memory arrives on first touch */
    KVMM_FULL = 2,      /* committed; populated when committed */
    KVMM_MDL = 3,       /* committed; a MAP_SHARED mapping of an MDL buffer's memfd */
};

struct kvmm_attrs {
    uint8_t state;   /* enum kvmm_state */
    uint8_t prot;    /* VMM_FLAG_READ|WRITE|EXECUTE subset: current, or pending while reserved */
    uint8_t pinned;  /* KVMM_FULL only: mlock succeeded */
};

static inline bool kvmm_attrs_equal(struct kvmm_attrs a, struct kvmm_attrs b)
{
    return a.state == b.state && a.prot == b.prot && a.pinned == b.pinned;
}

/* The kernel protection a page must have: the single place where state x protection is derived. */
int kvmm_kernel_prot(struct kvmm_attrs a);

/* A stream of faults the userfaultfd handler is following in a region: the range it filled or
 * queued for read-ahead, and the window its next continuation gets. */
struct kvmm_stream {
    uintptr_t lo, hi;  /* filled or queued: [lo, hi); empty slot when lo == hi */
    uintptr_t next;    /* background fill cursor: pending in [next, hi) going up, [lo, next) down */
    int dir;           /* +1 up, -1 down */
    bool zero;         /* continued last by a read fault: background fill maps the zero page */
    uint32_t window;   /* pages the next continuation fills */
    uint32_t used;     /* last use, for replacement */
    uint32_t handoff;  /* 2 MiB extents the next hand-off to the kernel takes (0: none yet) */
};

#define KVMM_STREAMS 4  /* concurrent sequential streams followed per region (e.g. one per thread) */
#define KVMM_HANDED_MAX 8 /* separate ranges handed to the kernel per region; more are not handed */

/* The fault-around state of a region; written only by the handler thread, under the region lock. */
struct kvmm_lazy {
    uint32_t generation;  /* engine generation it is registered with; 0 = not registered */
    bool demoted;         /* random access: handed to kernel demand paging for good */
    uint32_t misses;      /* faults in a row that continued no stream */
    uint32_t clock;
    /* Extents handed to the kernel's huge-page faults (unregistered): the engine never fills,
     * moves into or discards them again, since the kernel fills them now, from other threads. */
    uint32_t nhanded;
    struct kvmm_range { uintptr_t lo, hi; } handed[KVMM_HANDED_MAX];
    struct kvmm_stream streams[KVMM_STREAMS];
};

struct kvmm_span {
    struct kvmm_avl_node node;  /* key = first byte */
    uintptr_t end;
    struct kvmm_attrs a;
};

struct kvmm_region {
    struct kvmm_avl_node node;  /* key = first usable byte */
    uintptr_t end;              /* one past the last usable byte */
    int flags;                  /* KnVmAllocate flags; a guard flag only while this piece has that edge */
    bool counted;               /* included in the regions statistic */
    struct kvmm_lazy lazy;
    pthread_mutex_t lock;
    struct kvmm_avl_tree spans;
    struct kvmm_span *spare[2]; /* kvmm_region_set never allocates: see kvmm_region_prepare */
};

/* Map lock. */
void kvmm_map_rdlock(void);
int kvmm_map_tryrdlock(void); /* 0 when taken */
void kvmm_map_wrlock(void);
void kvmm_map_unlock(void);
/* In a fork child, instead of unlocking what the fork handler locked: glibc's rwlock remembers
 * the writer's thread id, which is not the same in the child, so an unlock there would fail. */
void kvmm_map_reset_lock(void);

/* The region whose usable range contains addr, or NULL. Map lock held. */
struct kvmm_region *kvmm_map_find(uintptr_t addr);
/* The region owning the guard page that contains addr, or NULL. Map lock held. */
struct kvmm_region *kvmm_map_find_guard(uintptr_t addr);
void kvmm_map_insert(struct kvmm_region *r);   /* map write-locked */
void kvmm_map_remove(struct kvmm_region *r);   /* map write-locked */

/* Guard pages actually present around r. */
uintptr_t kvmm_region_low_guard(const struct kvmm_region *r);  /* 0 if none */
uintptr_t kvmm_region_high_guard(const struct kvmm_region *r); /* 0 if none */

/* A region of one span with attributes a; accounted in the statistics. NULL on ENOMEM. */
struct kvmm_region *kvmm_region_new(uintptr_t base, uintptr_t end, int flags, struct kvmm_attrs a);
/* Frees r and its spans and removes it from the statistics. r is not in the map. */
void kvmm_region_free(struct kvmm_region *r);

/* Ensures kvmm_region_set has the nodes it may need. Call before changing the kernel state, so
 * that recording the change afterwards cannot fail. 0 or -ENOMEM. */
int kvmm_region_prepare(struct kvmm_region *r);
/* Records that [lo, hi) now has attributes a (split, replace, coalesce). Needs kvmm_region_prepare. */
void kvmm_region_set(struct kvmm_region *r, uintptr_t lo, uintptr_t hi, struct kvmm_attrs a);
/* The span containing addr (which must be inside r). */
struct kvmm_span *kvmm_region_span_at(const struct kvmm_region *r, uintptr_t addr);

/* Bytes of [lo, hi) (inside r) that are privately committed (lazy or full) and MDL-backed. */
void kvmm_region_count(const struct kvmm_region *r, uintptr_t lo, uintptr_t hi, uint64_t *private_bytes,
                       uint64_t *mdl_bytes);

/* Checks that r's spans are contiguous, cover exactly [base, end), are coalesced, and pin only
 * fully committed pages. 0 or -1. For tests. */
int kvmm_region_validate(const struct kvmm_region *r);

/* Moves [at, r->end) of r into tail, an empty region made by kvmm_region_new_empty. */
struct kvmm_region *kvmm_region_new_empty(void);
void kvmm_region_split(struct kvmm_region *r, uintptr_t at, struct kvmm_region *tail);
/* Drops [lo, hi) from r's spans and statistics; [lo, hi) must be r's front or tail end. */
void kvmm_region_trim(struct kvmm_region *r, uintptr_t lo, uintptr_t hi);

#endif
