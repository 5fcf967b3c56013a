/* SPDX-License-Identifier: MIT */
/* lib/fork.h — keeps kosvmm usable in a forked child: a registry of fork hooks, and kosvmm's lock order. */
#ifndef KVMM_FORK_H
#define KVMM_FORK_H

#include <pthread.h>

/*
 * fork() copies one thread; a lock another thread held at that moment stays held in the child
 * forever. So every module that owns a lock registers hooks: prepare takes its lock(s), parent
 * releases them, child makes the child's copy usable (a new ring, fresh pages) and releases them.
 * Prepare hooks run in ascending rank, parent and child hooks in descending rank.
 */
struct kvmm_fork_hooks {
    void (*prepare)(void);
    void (*parent)(void);
    void (*child)(void);
};

/*
 * THE LOCK ORDER of kosvmm, the one place it is written down. A rank is the position of a
 * module's lock in it: a thread that holds a lock may only take locks of a higher rank (or a
 * region lock under the map lock, which rank 10 covers), so taking them all in this order at
 * fork() cannot deadlock with any path. A new lock gets a rank here, with the reason.
 */
enum kvmm_fork_rank {
    /* lib/region_map.c: the map rwlock, taken for writing. Range calls hold it (shared) for their
     * whole duration, so holding it exclusively means no region lock is held either. */
    KVMM_FORK_RANK_MAP = 10,
    /* src/uffd/engine.c: the engine lock; a region is adopted under its region lock. */
    KVMM_FORK_RANK_LAZY_ENGINE = 20,
    /* lib/handle_table.c: the table lock; handle ops (acquire, release, revoke) run under it. */
    KVMM_FORK_RANK_HANDLES = 30,
    /* src/mdl_memfd/mdl_quota.c: the held-buffer table; it charges quotas (and may audit) under it. */
    KVMM_FORK_RANK_MDL_HOLD = 40,
    /* lib/policy.c: held while an audit line is written and a policy applied; takes nothing. */
    KVMM_FORK_RANK_POLICY = 50,
    /* src/mdl_memfd/mdl_revoke.c: revocation words; the revoke hook takes it under the table lock. */
    KVMM_FORK_RANK_MDL_REVOKE = 60,
    /* src/uffd/config.c: the lazy configuration; a leaf that the handler thread takes at every
     * fault and any thread may take through kosvmm_get/set_lazy_config. */
    KVMM_FORK_RANK_LAZY_CONFIG = 70,
    /* src/mdl_memfd/channel.c: remakes a channel's locks in a fork child; a leaf. (A channel's own
     * locks are not taken at fork: the child remakes them, see channel_impl.h.) */
    KVMM_FORK_RANK_CHANNEL = 80,
};

/* At most this many modules register. */
#define KVMM_FORK_MAX_HOOKS 16

/* Adds hooks (static storage) at rank. Call it from the module's constructor, so that the hooks
 * are in place before the first use of kosvmm installs the handlers (kvmm_fork_guard). 0, or
 * -ENOSPC past KVMM_FORK_MAX_HOOKS. */
int kvmm_fork_register(const struct kvmm_fork_hooks *hooks, enum kvmm_fork_rank rank);

/* For a module whose only fork concern is one pthread mutex: defines hooks that take it before
 * fork and release it in both processes, and registers them at rank from a constructor. Use at
 * file scope, followed by a semicolon. */
#define KVMM_FORK_MUTEX(mutex, rank)                                                               \
    static void kvmm_fork_mutex_lock_(void) { pthread_mutex_lock(&(mutex)); }                    \
    static void kvmm_fork_mutex_unlock_(void) { pthread_mutex_unlock(&(mutex)); }                \
    static const struct kvmm_fork_hooks kvmm_fork_mutex_hooks_ = {                               \
        kvmm_fork_mutex_lock_, kvmm_fork_mutex_unlock_, kvmm_fork_mutex_unlock_};                  \
    __attribute__((constructor)) static void kvmm_fork_mutex_register_(void)                     \
    {                                                                                            \
        kvmm_fork_register(&kvmm_fork_mutex_hooks_, (rank));                                     \
    }                                                                                            \
    extern int kvmm_fork_mutex_semicolon_

/* Installs the pthread_atfork handlers once; cheap after the first call. Every path that can take
 * a registered lock for the first time calls it first (region and handle creation, policy and
 * lazy-configuration calls). */
void kvmm_fork_guard(void);

#endif
