/* SPDX-License-Identifier: MIT */
/* lib/stats.h — process-wide counters behind kosvmm_get_stats, updated where the state changes. */
#ifndef KVMM_STATS_H
#define KVMM_STATS_H

#include <stdint.h>

struct kvmm_counters {
    uint64_t regions, reserved, committed, lazy, locked, pinned;
    uint64_t pin_refusals, kernel_refusals;
    uint64_t uffd_faults, uffd_pages_filled, uffd_readahead_pages, uffd_fill_ns, thp_bytes, uffd_overcommits;
    uint64_t uffd_zero_pages;
    uint64_t uffd_huge_moves, uffd_staged_pages, uffd_kernel_extents, uffd_collapsed_extents;
    uint32_t guard_mechanism, lazy_window;
};

extern struct kvmm_counters kvmm_counters;

/* Relaxed atomics: counters are statistics, never used to make decisions. */
#define kvmm_count(field, delta) \
    __atomic_add_fetch(&kvmm_counters.field, (uint64_t)(delta), __ATOMIC_RELAXED)

#endif
