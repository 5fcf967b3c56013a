/* SPDX-License-Identifier: MIT */
/* lib/stats.c — process-wide counters behind kosvmm_get_stats. */
#include "stats.h"

#include <errno.h>
#include <kosvmm/kosvmm.h>

#include "errors.h"
#include "uffd/uffd.h"
#include "visibility.h"

struct kvmm_counters kvmm_counters;

#define LOAD(field) __atomic_load_n(&kvmm_counters.field, __ATOMIC_RELAXED)

KVMM_PUBLIC Retcode kosvmm_get_stats(kosvmm_stats *stats)
{
    if (!stats)
        return kvmm_retcode(-EINVAL);
    stats->regions = LOAD(regions);
    stats->reserved_bytes = LOAD(reserved);
    stats->committed_bytes = LOAD(committed);
    stats->lazy_bytes = LOAD(lazy);
    stats->locked_bytes = LOAD(locked);
    stats->pinned_bytes = LOAD(pinned);
    stats->pin_refusals = LOAD(pin_refusals);
    stats->kernel_refusals = LOAD(kernel_refusals);
    stats->guard_mechanism = LOAD(guard_mechanism);
    stats->lazy_engine = kvmm_uffd_engine();
    stats->lazy_window = LOAD(lazy_window);
    stats->uffd_faults = LOAD(uffd_faults);
    stats->uffd_pages_filled = LOAD(uffd_pages_filled);
    stats->uffd_readahead_pages = LOAD(uffd_readahead_pages);
    stats->uffd_fill_ns = LOAD(uffd_fill_ns);
    stats->thp_bytes = LOAD(thp_bytes);
    stats->uffd_overcommits = LOAD(uffd_overcommits);
    return rcOk;
}
