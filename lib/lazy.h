/* SPDX-License-Identifier: MIT */
/* lib/lazy.h — what the core needs from a lazy-commit engine: the interface lib/ owns and src/uffd implements. */
#ifndef KVMM_LAZY_H
#define KVMM_LAZY_H

#include <stdbool.h>
#include <stdint.h>

struct kvmm_region;

/*
 * Lazily committed pages are kernel demand paging unless an engine serves them. The core asks the
 * engine three things, through this table; the engine plugs in below the API and reaches back
 * only through lib/ headers:
 *   - counters: it adds to kvmm_counters (stats.h: uffd_faults, uffd_pages_filled, ...) itself;
 *   - fork: it registers its own hooks with kvmm_fork_register (fork.h) at its rank;
 *   - its per-region state lives in struct kvmm_region's lazy member (region_map.h).
 *
 * Bound at link time: the engine defines kvmm_lazy_engine (src/uffd/engine.c). A registration
 * call from the engine's constructor would not do, since a static link keeps only the objects
 * something refers to, and nothing would refer to the engine: lazy memory would silently lose
 * it. This way the core's reference pulls it in, as mimalloc's prim.h pulls in its OS layer.
 */
struct kvmm_lazy_engine {
    /* Called with r locked when some of r becomes lazily committed, before those pages become
     * accessible. Never fails the caller: an engine that cannot serve r leaves it to kernel
     * demand paging, which has the same visible semantics. */
    void (*adopt)(struct kvmm_region *r);
    /* Whether the engine serves r in this process now (false in a fork child until adopted again,
     * and after the engine handed r to kernel paging). */
    bool (*active)(const struct kvmm_region *r);
    /* The engine new lazy commits get now (KOSVMM_ENGINE_*), for kosvmm_get_stats. */
    uint32_t (*kind)(void);
};

extern const struct kvmm_lazy_engine kvmm_lazy_engine;

#endif
