/* SPDX-License-Identifier: MIT */
/* src/uffd/config.c — the lazy-commit configuration: defaults, environment overrides, kosvmm_*_lazy_config. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "env.h"
#include "errors.h"
#include "fork.h"
#include "ext_struct.h"
#include "uffd/uffd.h"
#include "visibility.h"

#define WINDOW_LIMIT 4096u

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static kosvmm_lazy_config config = {
    .size = sizeof(kosvmm_lazy_config),
    .engine = KOSVMM_ENGINE_UFFD,
    /* One page per fault until a stream shows itself: random access must not pay for neighbours
     * it never touches. 512 pages (2 MiB) per fault amortises a cross-CPU wake-up (~60 us here)
     * to ~0.1 us a page, below the ~0.84 us a page UFFDIO_COPY itself costs. */
    .window_min = 1,
    .window_max = 512,
    .readahead = 1,
    .user_mode_only = 0,
};
static int environment_read;

static int valid(const kosvmm_lazy_config *c)
{
    return (c->engine == KOSVMM_ENGINE_KERNEL || c->engine == KOSVMM_ENGINE_UFFD) &&
           c->window_min >= 1 && c->window_min <= c->window_max && c->window_max <= WINDOW_LIMIT &&
           c->readahead <= 1 && c->user_mode_only <= 1;
}

static bool engine_from_environment;

/*
 * Each variable is checked alone and a bad one is warned about and ignored (lib/env.h), so one
 * typo never drops the others: the defaults are always a working setup. The window bounds are
 * also checked against each other; when they contradict, the one given is ignored (both, when
 * both are given).
 */
static void read_environment(void)
{
    static const char *const engines[] = {"kernel", "uffd"};
    kosvmm_lazy_config c = config;
    int engine;
    bool b;
    if (kvmm_env_choice("KOSVMM_ENGINE", engines, 2, "uffd or kernel (any case)", &engine) == 1) {
        c.engine = engine ? KOSVMM_ENGINE_UFFD : KOSVMM_ENGINE_KERNEL;
        engine_from_environment = true;
    }
    int min_given = kvmm_env_uint("KOSVMM_WINDOW_MIN", 1, WINDOW_LIMIT, &c.window_min) == 1;
    int max_given = kvmm_env_uint("KOSVMM_WINDOW_MAX", 1, WINDOW_LIMIT, &c.window_max) == 1;
    if (c.window_min > c.window_max) {
        char accepted[96];
        kvmm_format(accepted, sizeof accepted, "window_min <= window_max (here %u > %u)", (unsigned)c.window_min,
                    (unsigned)c.window_max);
        if (min_given) {
            kvmm_env_warn("KOSVMM_WINDOW_MIN", kvmm_env("KOSVMM_WINDOW_MIN"), accepted);
            c.window_min = config.window_min;
        }
        if (max_given && (min_given || c.window_min > c.window_max)) {
            kvmm_env_warn("KOSVMM_WINDOW_MAX", kvmm_env("KOSVMM_WINDOW_MAX"), accepted);
            c.window_max = config.window_max;
        }
    }
    if (kvmm_env_bool("KOSVMM_READAHEAD", &b) == 1)
        c.readahead = b;
    if (kvmm_env_bool("KOSVMM_UFFD_USER_MODE_ONLY", &b) == 1)
        c.user_mode_only = b;
    if (valid(&c))
        config = c;
    environment_read = 1;
}

bool kvmm_lazy_engine_from_environment(void)
{
    pthread_mutex_lock(&lock);
    if (!environment_read)
        read_environment();
    bool e = engine_from_environment;
    pthread_mutex_unlock(&lock);
    return e;
}

void kvmm_lazy_config(kosvmm_lazy_config *out)
{
    kvmm_fork_guard(); /* the lock may be taken before any region exists (statistics, get) */
    pthread_mutex_lock(&lock);
    if (!environment_read)
        read_environment();
    *out = config;
    pthread_mutex_unlock(&lock);
}

static bool size_ok(const kosvmm_lazy_config *user)
{
    return user && kvmm_ext_check(kvmm_ext_size(user), KOSVMM_LAZY_CONFIG_SIZE_MIN, _Alignof(kosvmm_lazy_config)) == 0;
}

KVMM_PUBLIC Retcode kosvmm_get_lazy_config(kosvmm_lazy_config *out)
{
    if (!size_ok(out))
        return kvmm_retcode(-EINVAL);
    kosvmm_lazy_config full;
    kvmm_lazy_config(&full);
    kvmm_ext_out(out, &full, sizeof full);
    return rcOk;
}

/* The handler thread takes the lock at every fault: a fork at that moment must not leave the
 * child's copy taken, or the child's first lazy commit waits for it forever. */
KVMM_FORK_MUTEX(lock, KVMM_FORK_RANK_LAZY_CONFIG);

/* Fields past the caller's size keep their current values (kosvmm.h, extensible structs), so the
 * merged configuration can only be checked under the lock; a bad one changes nothing. */
KVMM_PUBLIC Retcode kosvmm_set_lazy_config(const kosvmm_lazy_config *in)
{
    kvmm_fork_guard();
    if (!size_ok(in))
        return kvmm_retcode(-EINVAL);
    pthread_mutex_lock(&lock);
    if (!environment_read)
        read_environment();
    kosvmm_lazy_config c = config;
    int rc = kvmm_ext_in(&c, in, sizeof c) == 0 && valid(&c) ? 0 : -EINVAL;
    if (rc == 0)
        config = c;
    pthread_mutex_unlock(&lock);
    return kvmm_retcode(rc);
}
