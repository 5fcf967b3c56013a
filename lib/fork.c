/* SPDX-License-Identifier: MIT */
/* lib/fork.c — keeps kosvmm usable in a forked child: runs the registered fork hooks in lock order. */
#include "fork.h"

#include <errno.h>
#include <pthread.h>

/* Sorted by rank. Written only by registrations, which run in constructors, before any fork. */
static struct {
    const struct kvmm_fork_hooks *hooks;
    enum kvmm_fork_rank rank;
} entries[KVMM_FORK_MAX_HOOKS];
static unsigned count;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

static void prepare(void)
{
    unsigned n = __atomic_load_n(&count, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++)
        if (entries[i].hooks->prepare)
            entries[i].hooks->prepare();
}

static void parent(void)
{
    for (unsigned i = __atomic_load_n(&count, __ATOMIC_ACQUIRE); i-- > 0;)
        if (entries[i].hooks->parent)
            entries[i].hooks->parent();
}

static void child(void)
{
    for (unsigned i = __atomic_load_n(&count, __ATOMIC_ACQUIRE); i-- > 0;)
        if (entries[i].hooks->child)
            entries[i].hooks->child();
}

int kvmm_fork_register(const struct kvmm_fork_hooks *hooks, enum kvmm_fork_rank rank)
{
    pthread_mutex_lock(&registry_lock);
    unsigned n = count;
    if (n == KVMM_FORK_MAX_HOOKS) {
        pthread_mutex_unlock(&registry_lock);
        return -ENOSPC;
    }
    unsigned i = n;
    for (; i > 0 && entries[i - 1].rank > rank; i--)
        entries[i] = entries[i - 1];
    entries[i].hooks = hooks;
    entries[i].rank = rank;
    __atomic_store_n(&count, n + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&registry_lock);
    return 0;
}

static void install(void)
{
    pthread_atfork(prepare, parent, child);
}

/* Installed at first use (the first region, handle, policy or lazy configuration call), not at
 * load: a process that forks before it uses kosvmm (a test runner forking each test, a daemon
 * forking before main work) then runs no kosvmm hook, and ThreadSanitizer, which cannot see the
 * child's re-initialised map lock, has nothing to report there. Until that first use no kosvmm
 * lock can be held, so there is nothing to guard. */
void kvmm_fork_guard(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install);
}
