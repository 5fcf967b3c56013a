/* SPDX-License-Identifier: MIT */
/* lib/stats.c — process-wide counters behind kosvmm_get_stats. */
#include "stats.h"

#include <errno.h>
#include <kosvmm/kosvmm.h>
#include <string.h>

#include "errors.h"
#include "ext_struct.h"
#include "lazy.h"
#include "visibility.h"

struct kvmm_counters kvmm_counters;

#define LOAD(field) __atomic_load_n(&kvmm_counters.field, __ATOMIC_RELAXED)

static int get_stats(kosvmm_stats *user)
{
    if (!user || kvmm_ext_check(kvmm_ext_size(user), KOSVMM_STATS_SIZE_MIN, _Alignof(kosvmm_stats)) != 0)
        return -EINVAL;
    /* Filled whole here, then copied out as far as the caller's struct reaches (lib/ext_struct.h). */
    kosvmm_stats full, *stats = &full;
    memset(&full, 0, sizeof full);
    full.size = sizeof full;
    stats->regions = LOAD(regions);
    stats->reserved_bytes = LOAD(reserved);
    stats->committed_bytes = LOAD(committed);
    stats->lazy_bytes = LOAD(lazy);
    stats->locked_bytes = LOAD(locked);
    stats->pinned_bytes = LOAD(pinned);
    stats->pin_refusals = LOAD(pin_refusals);
    stats->kernel_refusals = LOAD(kernel_refusals);
    stats->guard_mechanism = LOAD(guard_mechanism);
    stats->lazy_engine = kvmm_lazy_engine.kind();
    stats->lazy_window = LOAD(lazy_window);
    stats->uffd_faults = LOAD(uffd_faults);
    stats->uffd_pages_filled = LOAD(uffd_pages_filled);
    stats->uffd_readahead_pages = LOAD(uffd_readahead_pages);
    stats->uffd_fill_ns = LOAD(uffd_fill_ns);
    stats->thp_bytes = LOAD(thp_bytes);
    stats->uffd_overcommits = LOAD(uffd_overcommits);
    stats->uffd_zero_pages = LOAD(uffd_zero_pages);
    stats->uffd_huge_moves = LOAD(uffd_huge_moves);
    stats->uffd_staged_pages = LOAD(uffd_staged_pages);
    stats->uffd_kernel_extents = LOAD(uffd_kernel_extents);
    stats->uffd_collapsed_extents = LOAD(uffd_collapsed_extents);
    kvmm_ext_out(user, &full, sizeof full);
    return 0;
}

KVMM_PUBLIC Retcode kosvmm_get_stats(kosvmm_stats *stats)
{
    return kvmm_retcode(get_stats(stats));
}
