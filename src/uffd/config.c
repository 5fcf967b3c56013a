/* SPDX-License-Identifier: MIT */
/* src/uffd/config.c — the lazy-commit configuration: defaults, environment overrides, kosvmm_*_lazy_config. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "uffd/uffd.h"
#include "visibility.h"

#define WINDOW_LIMIT 4096u

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static kosvmm_lazy_config config = {
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

/* A malformed variable is ignored rather than fatal: the defaults are always a working setup. */
static void read_number(const char *name, rtl_uint32_t *out)
{
    const char *v = getenv(name);
    char *end;
    if (!v || !*v)
        return;
    unsigned long n = strtoul(v, &end, 10);
    if (*end == '\0' && n <= WINDOW_LIMIT)
        *out = (rtl_uint32_t)n;
}

static void read_environment(void)
{
    kosvmm_lazy_config c = config;
    const char *engine = getenv("KOSVMM_ENGINE");
    if (engine && strcmp(engine, "kernel") == 0)
        c.engine = KOSVMM_ENGINE_KERNEL;
    else if (engine && strcmp(engine, "uffd") == 0)
        c.engine = KOSVMM_ENGINE_UFFD;
    read_number("KOSVMM_WINDOW_MIN", &c.window_min);
    read_number("KOSVMM_WINDOW_MAX", &c.window_max);
    read_number("KOSVMM_READAHEAD", &c.readahead);
    read_number("KOSVMM_UFFD_USER_MODE_ONLY", &c.user_mode_only);
    if (valid(&c))
        config = c;
    environment_read = 1;
}

void kvmm_lazy_config(kosvmm_lazy_config *out)
{
    pthread_mutex_lock(&lock);
    if (!environment_read)
        read_environment();
    *out = config;
    pthread_mutex_unlock(&lock);
}

KVMM_PUBLIC Retcode kosvmm_get_lazy_config(kosvmm_lazy_config *out)
{
    if (!out)
        return kvmm_retcode(-EINVAL);
    kvmm_lazy_config(out);
    return rcOk;
}

KVMM_PUBLIC Retcode kosvmm_set_lazy_config(const kosvmm_lazy_config *in)
{
    if (!in || !valid(in))
        return kvmm_retcode(-EINVAL);
    pthread_mutex_lock(&lock);
    environment_read = 1; /* an explicit setting wins over the environment from now on */
    config = *in;
    pthread_mutex_unlock(&lock);
    return rcOk;
}
