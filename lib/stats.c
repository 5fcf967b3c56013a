/* lib/stats.c — process-wide counters behind kosvmm_get_stats. */
#include "stats.h"

#include <errno.h>
#include <kosvmm/kosvmm.h>

#include "errors.h"
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
    return rcOk;
}
