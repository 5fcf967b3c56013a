/* SPDX-License-Identifier: MIT */
/* lib/region_map.c — the process's regions (an AVL tree by base) and each region's spans of uniform pages. */
#include "region_map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <vmm/flags.h>

#include "fork.h"
#include "os.h"
#include "stats.h"

static struct {
    pthread_rwlock_t lock;
    struct kvmm_avl_tree regions;
} map = {
    /* Writers first: glibc's default lets a stream of readers (queries, faults) starve an unmap. */
    .lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP,
};

int kvmm_kernel_prot(struct kvmm_attrs a)
{
    if (a.state == KVMM_RESERVED)
        return PROT_NONE;
    return (a.prot & VMM_FLAG_READ ? PROT_READ : 0) | (a.prot & VMM_FLAG_WRITE ? PROT_WRITE : 0) |
           (a.prot & VMM_FLAG_EXECUTE ? PROT_EXEC : 0);
}

void kvmm_map_rdlock(void)
{
    pthread_rwlock_rdlock(&map.lock);
}

int kvmm_map_tryrdlock(void)
{
    return pthread_rwlock_tryrdlock(&map.lock);
}

void kvmm_map_wrlock(void)
{
    pthread_rwlock_wrlock(&map.lock);
}

void kvmm_map_unlock(void)
{
    pthread_rwlock_unlock(&map.lock);
}

void kvmm_map_reset_lock(void)
{
    map.lock = (pthread_rwlock_t)PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
}

static const struct kvmm_fork_hooks map_fork_hooks = {
    .prepare = kvmm_map_wrlock,
    .parent = kvmm_map_unlock,
    .child = kvmm_map_reset_lock,
};

__attribute__((constructor)) static void register_fork_hooks(void)
{
    kvmm_fork_register(&map_fork_hooks, KVMM_FORK_RANK_MAP);
}

static struct kvmm_region *region_of(struct kvmm_avl_node *n)
{
    return n ? kvmm_container_of(n, struct kvmm_region, node) : NULL;
}

static struct kvmm_span *span_of(struct kvmm_avl_node *n)
{
    return n ? kvmm_container_of(n, struct kvmm_span, node) : NULL;
}

struct kvmm_region *kvmm_map_find(uintptr_t addr)
{
    struct kvmm_region *r = region_of(kvmm_avl_floor(&map.regions, addr));
    return r && addr < r->end ? r : NULL;
}

uintptr_t kvmm_region_low_guard(const struct kvmm_region *r)
{
    return r->flags & VMM_FLAG_LOW_GUARD ? r->node.key - kvmm_os_page_size() : 0;
}

uintptr_t kvmm_region_high_guard(const struct kvmm_region *r)
{
    return r->flags & VMM_FLAG_HIGH_GUARD ? r->end : 0;
}

struct kvmm_region *kvmm_map_find_guard(uintptr_t addr)
{
    uintptr_t page = addr & ~(uintptr_t)(kvmm_os_page_size() - 1);
    struct kvmm_region *below = region_of(kvmm_avl_floor(&map.regions, addr));
    if (below && kvmm_region_high_guard(below) == page)
        return below;
    struct kvmm_region *above = region_of(kvmm_avl_above(&map.regions, addr));
    if (above && kvmm_region_low_guard(above) == page)
        return above;
    return NULL;
}

void kvmm_map_insert(struct kvmm_region *r)
{
    kvmm_avl_insert(&map.regions, &r->node);
}

void kvmm_map_remove(struct kvmm_region *r)
{
    kvmm_avl_remove(&map.regions, &r->node);
}

/* Adds (sign 1) or removes (sign -1) bytes in state a from the statistics. */
static void account(struct kvmm_attrs a, uintptr_t bytes, int sign)
{
    uint64_t delta = sign > 0 ? bytes : -(uint64_t)bytes;
    if (a.state != KVMM_RESERVED)
        kvmm_count(committed, delta);
    if (a.state == KVMM_LAZY)
        kvmm_count(lazy, delta);
    if (a.state == KVMM_FULL)
        kvmm_count(locked, delta);
    if (a.pinned)
        kvmm_count(pinned, delta);
}

struct kvmm_region *kvmm_region_new_empty(void)
{
    kvmm_fork_guard();
    struct kvmm_region *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

struct kvmm_region *kvmm_region_new(uintptr_t base, uintptr_t end, int flags, struct kvmm_attrs a)
{
    struct kvmm_region *r = kvmm_region_new_empty();
    struct kvmm_span *s = malloc(sizeof *s);
    if (!r || !s) {
        free(r);
        free(s);
        return NULL;
    }
    r->node.key = base;
    r->end = end;
    r->flags = flags;
    s->node.key = base;
    s->end = end;
    s->a = a;
    kvmm_avl_insert(&r->spans, &s->node);
    r->counted = true;
    kvmm_count(regions, 1);
    kvmm_count(reserved, end - base);
    account(a, end - base, 1);
    return r;
}

void kvmm_region_free(struct kvmm_region *r)
{
    if (r->spans.count)
        kvmm_region_trim(r, r->node.key, r->end);
    if (r->counted)
        kvmm_count(regions, -1);
    free(r->spare[0]);
    free(r->spare[1]);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

int kvmm_region_prepare(struct kvmm_region *r)
{
    for (int i = 0; i < 2; i++)
        if (!r->spare[i] && !(r->spare[i] = malloc(sizeof *r->spare[i])))
            return -ENOMEM;
    return 0;
}

static struct kvmm_span *take_spare(struct kvmm_region *r)
{
    struct kvmm_span *s = r->spare[1] ? r->spare[1] : r->spare[0];
    if (r->spare[1])
        r->spare[1] = NULL;
    else
        r->spare[0] = NULL;
    return s;
}

/* Recycles a span node into the spares, or frees it when they are full. */
static void give_back(struct kvmm_region *r, struct kvmm_span *s)
{
    if (!r->spare[0])
        r->spare[0] = s;
    else if (!r->spare[1])
        r->spare[1] = s;
    else
        free(s);
}

struct kvmm_span *kvmm_region_span_at(const struct kvmm_region *r, uintptr_t addr)
{
    return span_of(kvmm_avl_floor(&r->spans, addr));
}

/* Ensures a span boundary at addr (inside r). Uses at most one spare node. */
static void split_at(struct kvmm_region *r, uintptr_t addr)
{
    struct kvmm_span *s = kvmm_region_span_at(r, addr);
    if (s->node.key == addr)
        return;
    struct kvmm_span *tail = take_spare(r);
    tail->node.key = addr;
    tail->end = s->end;
    tail->a = s->a;
    s->end = addr;
    kvmm_avl_insert(&r->spans, &tail->node);
}

/* Merges s with its neighbours when their attributes match. */
static void coalesce(struct kvmm_region *r, struct kvmm_span *s)
{
    struct kvmm_span *next = span_of(kvmm_avl_next(&s->node));
    if (next && next->node.key == s->end && kvmm_attrs_equal(next->a, s->a)) {
        s->end = next->end;
        kvmm_avl_remove(&r->spans, &next->node);
        give_back(r, next);
    }
    struct kvmm_span *prev = span_of(kvmm_avl_prev(&s->node));
    if (prev && prev->end == s->node.key && kvmm_attrs_equal(prev->a, s->a)) {
        prev->end = s->end;
        kvmm_avl_remove(&r->spans, &s->node);
        give_back(r, s);
    }
}

void kvmm_region_set(struct kvmm_region *r, uintptr_t lo, uintptr_t hi, struct kvmm_attrs a)
{
    split_at(r, lo);
    if (hi < r->end)
        split_at(r, hi);
    struct kvmm_span *first = kvmm_region_span_at(r, lo);
    struct kvmm_span *s = first;
    while (s && s->node.key < hi) {
        struct kvmm_span *next = span_of(kvmm_avl_next(&s->node));
        account(s->a, s->end - s->node.key, -1);
        if (s != first) {
            kvmm_avl_remove(&r->spans, &s->node);
            give_back(r, s);
        }
        s = next;
    }
    first->end = hi;
    first->a = a;
    account(a, hi - lo, 1);
    coalesce(r, first);
}

void kvmm_region_split(struct kvmm_region *r, uintptr_t at, struct kvmm_region *tail)
{
    split_at(r, at);
    struct kvmm_span *s = kvmm_region_span_at(r, at);
    while (s) {
        struct kvmm_span *next = span_of(kvmm_avl_next(&s->node));
        kvmm_avl_remove(&r->spans, &s->node);
        kvmm_avl_insert(&tail->spans, &s->node);
        s = next;
    }
    tail->node.key = at;
    tail->end = r->end;
    tail->flags = r->flags & ~VMM_FLAG_LOW_GUARD;
    /* The kernel mappings keep their userfaultfd registration across the split. */
    tail->lazy.generation = r->lazy.generation;
    tail->lazy.demoted = r->lazy.demoted;
    tail->lazy.nhanded = r->lazy.nhanded;
    memcpy(tail->lazy.handed, r->lazy.handed, sizeof r->lazy.handed);
    r->end = at;
    r->flags &= ~VMM_FLAG_HIGH_GUARD;
    tail->counted = true;
    kvmm_count(regions, 1);
}

void kvmm_region_trim(struct kvmm_region *r, uintptr_t lo, uintptr_t hi)
{
    /* Only one cut is ever needed: [lo, hi) touches the front or the end of r. */
    if (lo > r->node.key)
        split_at(r, lo);
    else if (hi < r->end)
        split_at(r, hi);
    struct kvmm_span *s = kvmm_region_span_at(r, lo);
    while (s && s->node.key < hi) {
        struct kvmm_span *next = span_of(kvmm_avl_next(&s->node));
        account(s->a, s->end - s->node.key, -1);
        kvmm_avl_remove(&r->spans, &s->node);
        give_back(r, s);
        s = next;
    }
    kvmm_count(reserved, -(uint64_t)(hi - lo));
    if (lo == r->node.key) {
        /* The front went: the region now starts at hi and no longer has its low edge. */
        r->flags &= ~VMM_FLAG_LOW_GUARD;
        r->node.key = hi;
    } else {
        r->flags &= ~VMM_FLAG_HIGH_GUARD;
        r->end = lo;
    }
}

void kvmm_region_count(const struct kvmm_region *r, uintptr_t lo, uintptr_t hi, uint64_t *private_bytes,
                       uint64_t *mdl_bytes)
{
    uint64_t priv = 0, mdl = 0;
    for (const struct kvmm_span *s = kvmm_region_span_at(r, lo); s && s->node.key < hi;
         s = span_of(kvmm_avl_next(&s->node))) {
        uintptr_t a = s->node.key > lo ? s->node.key : lo, b = s->end < hi ? s->end : hi;
        if (s->a.state == KVMM_LAZY || s->a.state == KVMM_FULL)
            priv += b - a;
        else if (s->a.state == KVMM_MDL)
            mdl += b - a;
    }
    *private_bytes = priv;
    if (mdl_bytes)
        *mdl_bytes = mdl;
}

int kvmm_region_validate(const struct kvmm_region *r)
{
    if (kvmm_avl_validate(&r->spans) < 1)
        return -1;
    uintptr_t expect = r->node.key;
    const struct kvmm_span *prev = NULL;
    for (struct kvmm_avl_node *n = kvmm_avl_first(&r->spans); n; n = kvmm_avl_next(n)) {
        const struct kvmm_span *s = span_of(n);
        if (s->node.key != expect || s->end <= s->node.key)
            return -1;
        if (prev && kvmm_attrs_equal(prev->a, s->a))
            return -1;
        if (s->a.pinned && s->a.state != KVMM_FULL)
            return -1;
        expect = s->end;
        prev = s;
    }
    return expect == r->end ? 0 : -1;
}
