/* SPDX-License-Identifier: MIT */
/* lib/fork.c — keeps kosvmm usable in a forked child: no lock is held across fork(). */
#include <pthread.h>

#include "fork.h"
#include "handle_table.h"
#include "mdl_memfd/mdl_internal.h"
#include "policy.h"
#include "region_map.h"
#include "uffd/uffd.h"

/* Range calls hold the map lock (shared) for their whole duration, so holding it exclusively
 * here means no region lock is held either; then the engine lock, the handle table's, the MDL
 * quota table's and the policy's, in the order every other path takes them. */
static void prepare(void)
{
    kvmm_map_wrlock();
    kvmm_uffd_fork_prepare();
    kvmm_handle_table_lock();
    kvmm_mdl_hold_fork_prepare();
    kvmm_policy_fork_prepare();
}

static void parent(void)
{
    kvmm_policy_fork_release();
    kvmm_mdl_hold_fork_release();
    kvmm_handle_table_unlock();
    kvmm_uffd_fork_parent();
    kvmm_map_unlock();
}

static void child(void)
{
    kvmm_policy_fork_release();
    kvmm_mdl_hold_fork_release();
    kvmm_handle_table_unlock();
    kvmm_uffd_fork_child();
    kvmm_map_reset_lock();
}

static void install(void)
{
    pthread_atfork(prepare, parent, child);
}

/* Called when the first region or handle is made. Not a constructor: a static link keeps only
 * objects something refers to, and this one would be dropped. */
void kvmm_fork_guard(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install);
}
