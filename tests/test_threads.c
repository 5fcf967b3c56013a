/* SPDX-License-Identifier: MIT */
/* tests/test_threads.c — concurrency: private loops, disjoint and overlapping ranges of one region, 100 000 regions. */
#include "testutil.h"

#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define NTHREADS 8

static size_t P(void)
{
    return tu_page();
}

static char *pg(void *base, size_t i)
{
    return (char *)base + i * tu_page();
}

static void expect_stats_equal(const kosvmm_stats *a, const kosvmm_stats *b)
{
    ck_assert_uint_eq(a->regions, b->regions);
    ck_assert_uint_eq(a->reserved_bytes, b->reserved_bytes);
    ck_assert_uint_eq(a->committed_bytes, b->committed_bytes);
    ck_assert_uint_eq(a->lazy_bytes, b->lazy_bytes);
    ck_assert_uint_eq(a->locked_bytes, b->locked_bytes);
    ck_assert_uint_eq(a->pinned_bytes, b->pinned_bytes);
}

/* Failures inside worker threads are recorded and asserted by the main thread. */
typedef struct worker {
    pthread_t tid;
    int id;
    unsigned seed;
    int errors;
    long ops;
    char msg[256];
    void *shared;
    size_t shared_pages;
} worker;

#define WFAIL(w, ...)                                                      \
    do {                                                                   \
        if ((w)->errors++ == 0)                                            \
            snprintf((w)->msg, sizeof (w)->msg, __VA_ARGS__);              \
    } while (0)

#define WCHECK_RC(w, call)                                                           \
    do {                                                                             \
        Retcode rc_ = (call);                                                        \
        if (rc_ != rcOk)                                                             \
            WFAIL(w, "thread %d: %s returned %#x", (w)->id, #call, (unsigned)rc_);   \
    } while (0)

static void run_workers(worker *w, int n, void *(*fn)(void *))
{
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(pthread_create(&w[i].tid, NULL, fn, &w[i]), 0);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(pthread_join(w[i].tid, NULL), 0);
    for (int i = 0; i < n; i++)
        ck_assert_msg(w[i].errors == 0, "%d error(s) in thread %d, first: %s", w[i].errors, w[i].id, w[i].msg);
}

static unsigned char pat(int id, long iter, size_t page, size_t off)
{
    return (unsigned char)(id * 37 + iter * 11 + (long)page * 5 + (long)(off % 251) + 1);
}

static int page_has(const void *page, int id, long iter, size_t pidx)
{
    const unsigned char *c = page;
    for (size_t off = 0; off < P(); off += 97)
        if (c[off] != pat(id, iter, pidx, off))
            return 0;
    return 1;
}

static void page_put(void *page, int id, long iter, size_t pidx)
{
    unsigned char *c = page;
    for (size_t off = 0; off < P(); off += 97)
        c[off] = pat(id, iter, pidx, off);
}

static int page_zero(const void *page)
{
    const unsigned char *c = page;
    for (size_t off = 0; off < P(); off++)
        if (c[off])
            return 0;
    return 1;
}

/* Self-consistency of one KnVmQuery answer for an address that may be anything. */
static int query_consistent(const void *va, const VmQueryInfo *q, char *why, size_t whylen)
{
    uintptr_t page = (uintptr_t)va & ~(uintptr_t)(P() - 1);
    if ((uintptr_t)q->pageBase != page)
        return snprintf(why, whylen, "pageBase %p for %p", q->pageBase, va), 0;
    if (q->state == VMM_PAGE_STATE_FREE)
        return q->regionBase == RTL_NULL ? 1 : (snprintf(why, whylen, "FREE with regionBase %p", q->regionBase), 0);
    if (q->state != VMM_PAGE_STATE_RESERVED && q->state != VMM_PAGE_STATE_COMMITTED)
        return snprintf(why, whylen, "state %u", q->state), 0;
    if (q->runSize < P() || q->runSize % P())
        return snprintf(why, whylen, "runSize %zu", (size_t)q->runSize), 0;
    if (q->attributes & VMM_PAGE_ATTR_GUARD)
        return 1;
    uintptr_t rb = (uintptr_t)q->regionBase, re = rb + q->regionSize;
    if (page < rb || page >= re)
        return snprintf(why, whylen, "page %p outside its region %p+%zu", va, q->regionBase,
                        (size_t)q->regionSize), 0;
    if (page + q->runSize > re)
        return snprintf(why, whylen, "run past the region end"), 0;
    return 1;
}

/* ---- private loops ---------------------------------------------------------------------------- */

#define PRIV_ITERS 300

/* Addresses recently handed out, for a querying thread that races with the workers. Atomics, not
 * volatile: the race is with kosvmm, not on these variables (ThreadSanitizer checks the difference). */
static _Atomic(void *) recent[64];
static atomic_int stop_querying;

static void *private_loop(void *arg)
{
    worker *w = arg;
    static const int variants[] = {
        VMM_FLAG_RESERVE | RW,
        VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW,
        VMM_FLAG_RESERVE | VMM_FLAG_LOCKED | RW,
        VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW,
        VMM_FLAG_RESERVE | RW | VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD,
    };
    for (long it = 0; it < PRIV_ITERS && w->errors == 0; it++) {
        size_t n = 1 + (size_t)(rand_r(&w->seed) % 8);
        int flags = variants[it % 5];
        char *p = KnVmAllocate(RTL_NULL, n * P(), flags);
        if (!p) {
            WFAIL(w, "thread %d iter %ld: KnVmAllocate failed %#x", w->id, it, (unsigned)kosvmm_last_error());
            break;
        }
        if (kosvmm_last_error() != rcOk)
            WFAIL(w, "thread %d: last error %#x after success", w->id, (unsigned)kosvmm_last_error());
        recent[(w->id * 8 + it) % 64] = p;
        VmQueryInfo q;
        WCHECK_RC(w, KnVmQuery(p + n * P() - 1, &q));
        if (q.regionBase != p || q.regionSize != n * P())
            WFAIL(w, "thread %d: region %p+%zu, expected %p+%zu", w->id, q.regionBase, (size_t)q.regionSize,
                  (void *)p, n * P());
        WCHECK_RC(w, KnVmCommit(p, n * P(), VMM_FLAG_LOCKED));
        for (size_t i = 0; i < n; i++)
            page_put(pg(p, i), w->id, it, i);
        for (size_t i = 0; i < n; i++)
            if (!page_has(pg(p, i), w->id, it, i))
                WFAIL(w, "thread %d iter %ld: page %zu lost its contents", w->id, it, i);
        WCHECK_RC(w, KnVmProtect(p, n * P(), VMM_FLAG_READ));
        WCHECK_RC(w, KnVmQuery(p, &q));
        if (q.state != VMM_PAGE_STATE_COMMITTED || q.protection != VMM_FLAG_READ)
            WFAIL(w, "thread %d: after protect state %u prot %u", w->id, q.state, q.protection);
        if (!page_has(pg(p, n - 1), w->id, it, n - 1))
            WFAIL(w, "thread %d iter %ld: contents changed by protect", w->id, it);
        if (it % 32 == 0) {
            char perms[5];
            if (tu_maps_perms(p, perms) != 0 || memcmp(perms, "r--p", 4) != 0)
                WFAIL(w, "thread %d: maps %.4s after protect READ", w->id, perms);
        }
        if (n > 1) {
            WCHECK_RC(w, KnVmDecommit(pg(p, 1), (n - 1) * P()));
            WCHECK_RC(w, KnVmQuery(pg(p, 1), &q));
            if (q.state != VMM_PAGE_STATE_RESERVED || q.protection != VMM_FLAG_READ)
                WFAIL(w, "thread %d: after decommit state %u prot %u", w->id, q.state, q.protection);
        }
        if (!page_has(p, w->id, it, 0))
            WFAIL(w, "thread %d iter %ld: page 0 changed by decommit of the others", w->id, it);
        WCHECK_RC(w, KnVmReset(p, P()));
        if (!page_zero(p))
            WFAIL(w, "thread %d iter %ld: page not zero after reset", w->id, it);
        WCHECK_RC(w, KnVmUnmap(p, n * P()));
        w->ops++;
    }
    return NULL;
}

static void *racing_query(void *arg)
{
    worker *w = arg;
    while (!stop_querying && w->errors == 0) {
        for (int i = 0; i < 64; i++) {
            char *p = recent[i];
            if (!p)
                continue;
            for (size_t k = 0; k < 3; k++) {
                VmQueryInfo q;
                char why[160];
                const char *va = p + k * P() + (size_t)(rand_r(&w->seed) % P());
                WCHECK_RC(w, KnVmQuery(va, &q));
                if (!query_consistent(va, &q, why, sizeof why))
                    WFAIL(w, "racing query of %p: %s", (const void *)va, why);
            }
        }
        w->ops++;
    }
    return NULL;
}

START_TEST(test_private_loops)
{
    kosvmm_stats s0 = tu_stats();
    worker w[NTHREADS + 1];
    memset(w, 0, sizeof w);
    for (int i = 0; i <= NTHREADS; i++) {
        w[i].id = i;
        w[i].seed = 1234u + (unsigned)i;
    }
    stop_querying = 0;
    ck_assert_int_eq(pthread_create(&w[NTHREADS].tid, NULL, racing_query, &w[NTHREADS]), 0);
    run_workers(w, NTHREADS, private_loop);
    stop_querying = 1;
    ck_assert_int_eq(pthread_join(w[NTHREADS].tid, NULL), 0);
    ck_assert_msg(w[NTHREADS].errors == 0, "querying thread: %s", w[NTHREADS].msg);
    for (int i = 0; i < NTHREADS; i++)
        ck_assert_int_eq(w[i].ops, PRIV_ITERS);
    kosvmm_stats s1 = tu_stats();
    expect_stats_equal(&s0, &s1);
    ck_assert_uint_eq(s1.regions, 0);
}
END_TEST

/* ---- one shared region, disjoint sub-ranges ------------------------------------------------- */

#define OWN 8          /* pages each thread owns */
#define DISJ_ITERS 150

static void *disjoint_loop(void *arg)
{
    worker *w = arg;
    char *mine = pg(w->shared, (size_t)w->id * OWN);
    for (long it = 0; it < DISJ_ITERS && w->errors == 0; it++) {
        WCHECK_RC(w, KnVmCommit(mine, OWN * P(), VMM_FLAG_LOCKED));
        WCHECK_RC(w, KnVmProtect(mine, OWN * P(), RW));
        for (size_t i = 0; i < OWN; i++)
            page_put(pg(mine, i), w->id, it, i);
        WCHECK_RC(w, KnVmProtect(mine, OWN * P(), VMM_FLAG_READ));
        for (size_t i = 0; i < OWN; i++) {
            VmQueryInfo q;
            WCHECK_RC(w, KnVmQuery(pg(mine, i), &q));
            if (q.state != VMM_PAGE_STATE_COMMITTED || q.protection != VMM_FLAG_READ ||
                q.regionBase != w->shared || q.regionSize != w->shared_pages * P())
                WFAIL(w, "thread %d iter %ld page %zu: state %u prot %u region %p+%zu", w->id, it, i, q.state,
                      q.protection, q.regionBase, (size_t)q.regionSize);
            if (!page_has(pg(mine, i), w->id, it, i))
                WFAIL(w, "thread %d iter %ld: page %zu changed under a neighbour's operations", w->id, it, i);
        }
        /* Decommit a random sub-range, check it, recommit it: it reads zero. */
        size_t a = (size_t)(rand_r(&w->seed) % OWN);
        size_t c = 1 + (size_t)(rand_r(&w->seed) % (OWN - a));
        WCHECK_RC(w, KnVmDecommit(pg(mine, a), c * P()));
        VmQueryInfo q;
        WCHECK_RC(w, KnVmQuery(pg(mine, a), &q));
        if (q.state != VMM_PAGE_STATE_RESERVED)
            WFAIL(w, "thread %d: decommitted page state %u", w->id, q.state);
        for (size_t i = 0; i < OWN; i++)
            if ((i < a || i >= a + c) && !page_has(pg(mine, i), w->id, it, i))
                WFAIL(w, "thread %d iter %ld: page %zu changed by decommit of %zu+%zu", w->id, it, i, a, c);
        WCHECK_RC(w, KnVmCommit(pg(mine, a), c * P(), 0));
        for (size_t i = a; i < a + c; i++)
            if (!page_zero(pg(mine, i)))
                WFAIL(w, "thread %d iter %ld: recommitted page %zu not zero", w->id, it, i);
        w->ops++;
    }
    /* Final state: pages 0-3 committed RW holding the thread's pattern, 4-7 reserved with READ. */
    WCHECK_RC(w, KnVmProtect(mine, OWN * P(), RW));
    for (size_t i = 0; i < OWN / 2; i++)
        page_put(pg(mine, i), w->id, -1, i);
    WCHECK_RC(w, KnVmDecommit(pg(mine, OWN / 2), OWN / 2 * P()));
    WCHECK_RC(w, KnVmProtect(pg(mine, OWN / 2), OWN / 2 * P(), VMM_FLAG_READ));
    return NULL;
}

START_TEST(test_shared_disjoint)
{
    kosvmm_stats s0 = tu_stats();
    const size_t npages = NTHREADS * OWN;
    char *r = KnVmAllocate(RTL_NULL, npages * P(), VMM_FLAG_RESERVE | RW | (_i ? VMM_FLAG_LOCKED : 0));
    ck_assert_ptr_nonnull(r);
    worker w[NTHREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < NTHREADS; i++) {
        w[i].id = i;
        w[i].seed = 99u + (unsigned)i;
        w[i].shared = r;
        w[i].shared_pages = npages;
    }
    run_workers(w, NTHREADS, disjoint_loop);
    for (int i = 0; i < NTHREADS; i++)
        ck_assert_int_eq(w[i].ops, DISJ_ITERS);

    for (size_t p = 0; p < npages; p++) {
        VmQueryInfo q;
        ck_assert_uint_eq(KnVmQuery(pg(r, p), &q), rcOk);
        int committed = p % OWN < OWN / 2;
        ck_assert_uint_eq(q.state, committed ? VMM_PAGE_STATE_COMMITTED : VMM_PAGE_STATE_RESERVED);
        ck_assert_uint_eq(q.protection, committed ? (unsigned)RW : (unsigned)VMM_FLAG_READ);
        ck_assert_ptr_eq(q.regionBase, r);
        char perms[5];
        ck_assert_int_eq(tu_maps_perms(pg(r, p), perms), 0);
        ck_assert_msg(memcmp(perms, tu_expected_perms(q.state, q.protection), 4) == 0, "page %zu: maps %.4s", p,
                      perms);
        if (committed)
            ck_assert_msg(page_has(pg(r, p), (int)(p / OWN), -1, p % OWN), "page %zu: wrong contents", p);
    }
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes + npages / 2 * P());
    ck_assert_uint_eq(s1.committed_bytes, s1.lazy_bytes + s1.locked_bytes);
    ck_assert_uint_eq(KnVmUnmap(r, npages * P()), rcOk);
    kosvmm_stats s2 = tu_stats();
    expect_stats_equal(&s0, &s2);
}
END_TEST

/* ---- one shared region, split concurrently by unmaps of disjoint pages ------------------- */

/* Each thread frees its own OWN pages of the shared region one by one, in a random order, while
 * the others split the same region elsewhere; before each unmap it checks the pages it still has. */
static void *split_unmapper(void *arg)
{
    worker *w = arg;
    char *mine = pg(w->shared, (size_t)w->id * OWN);
    size_t order[OWN];
    int gone[OWN] = { 0 };
    for (size_t i = 0; i < OWN; i++)
        order[i] = i;
    for (size_t i = OWN - 1; i > 0; i--) {
        size_t j = (size_t)rand_r(&w->seed) % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t k = 0; k < OWN && w->errors == 0; k++) {
        for (size_t i = 0; i < OWN; i++) {
            if (gone[i])
                continue;
            VmQueryInfo q;
            char why[160];
            WCHECK_RC(w, KnVmQuery(pg(mine, i), &q));
            if (!query_consistent(pg(mine, i), &q, why, sizeof why) || q.state != VMM_PAGE_STATE_COMMITTED)
                WFAIL(w, "thread %d: own page %zu: state %u %s", w->id, i, q.state, why);
            if (!page_has(pg(mine, i), w->id, 0, i))
                WFAIL(w, "thread %d: own page %zu lost its contents", w->id, i);
        }
        WCHECK_RC(w, KnVmUnmap(pg(mine, order[k]), P()));
        gone[order[k]] = 1;
        VmQueryInfo q;
        WCHECK_RC(w, KnVmQuery(pg(mine, order[k]), &q));
        if (q.state != VMM_PAGE_STATE_FREE)
            WFAIL(w, "thread %d: unmapped page %zu has state %u", w->id, order[k], q.state);
        w->ops++;
    }
    return NULL;
}

START_TEST(test_shared_concurrent_unmap)
{
    kosvmm_stats s0 = tu_stats();
    const size_t npages = NTHREADS * OWN;
    char *r = KnVmAllocate(RTL_NULL, npages * P(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(r);
    for (size_t p = 0; p < npages; p++)
        page_put(pg(r, p), (int)(p / OWN), 0, p % OWN);
    worker w[NTHREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < NTHREADS; i++) {
        w[i].id = i;
        w[i].seed = 4242u + (unsigned)i + (unsigned)_i * 100u;
        w[i].shared = r;
        w[i].shared_pages = npages;
    }
    run_workers(w, NTHREADS, split_unmapper);
    for (int i = 0; i < NTHREADS; i++)
        ck_assert_int_eq(w[i].ops, OWN);
    for (size_t p = 0; p < npages; p++)
        ck_assert(!tu_is_mapped(pg(r, p)));
    kosvmm_stats s1 = tu_stats();
    expect_stats_equal(&s0, &s1);
}
END_TEST

/* ---- one shared region, overlapping sub-ranges -------------------------------------------- */

#define OVL_PAGES 32
#define OVL_OPS 1500
#define N_MUTATORS 4
#define N_QUERIERS 2

static void *overlap_mutator(void *arg)
{
    worker *w = arg;
    static const int prots[] = { 0, VMM_FLAG_READ, RW, RW };
    for (long it = 0; it < OVL_OPS && w->errors == 0; it++) {
        size_t a = (size_t)(rand_r(&w->seed) % OVL_PAGES);
        size_t c = 1 + (size_t)(rand_r(&w->seed) % (OVL_PAGES - a));
        char *va = pg(w->shared, a);
        switch (rand_r(&w->seed) % 5) {
        case 0: WCHECK_RC(w, KnVmCommit(va, c * P(), VMM_FLAG_LOCKED)); break;
        case 1: WCHECK_RC(w, KnVmDecommit(va, c * P())); break;
        case 2: WCHECK_RC(w, KnVmProtect(va, c * P(), prots[rand_r(&w->seed) % 4])); break;
        case 3: WCHECK_RC(w, KnVmReset(va, c * P())); break;
        default: {
            VmQueryInfo q;
            char why[160];
            WCHECK_RC(w, KnVmQuery(va, &q));
            if (!query_consistent(va, &q, why, sizeof why) || q.regionBase != w->shared)
                WFAIL(w, "thread %d: query of page %zu: %s (region %p)", w->id, a, why, q.regionBase);
            break;
        }
        }
        w->ops++;
    }
    return NULL;
}

static void *overlap_querier(void *arg)
{
    worker *w = arg;
    while (!stop_querying && w->errors == 0) {
        size_t a = (size_t)(rand_r(&w->seed) % OVL_PAGES);
        const char *va = pg(w->shared, a) + (size_t)(rand_r(&w->seed) % P());
        VmQueryInfo q;
        char why[160] = "";
        WCHECK_RC(w, KnVmQuery(va, &q));
        if (!query_consistent(va, &q, why, sizeof why) || q.regionBase != w->shared ||
            q.regionSize != OVL_PAGES * P() || q.state == VMM_PAGE_STATE_FREE ||
            (q.protection != 0 && q.protection != VMM_FLAG_READ && q.protection != RW))
            WFAIL(w, "querier %d: page %zu: state %u prot %u region %p+%zu %s", w->id, a, q.state, q.protection,
                  q.regionBase, (size_t)q.regionSize, why);
        w->ops++;
    }
    return NULL;
}

START_TEST(test_shared_overlap)
{
    kosvmm_stats s0 = tu_stats();
    int flags = VMM_FLAG_RESERVE | RW | (_i ? VMM_FLAG_LOCKED : 0);
    char *r = KnVmAllocate(RTL_NULL, OVL_PAGES * P(), flags);
    ck_assert_ptr_nonnull(r);
    worker w[N_MUTATORS + N_QUERIERS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < N_MUTATORS + N_QUERIERS; i++) {
        w[i].id = i;
        w[i].seed = 7u + (unsigned)i * 1000u + (unsigned)_i;
        w[i].shared = r;
        w[i].shared_pages = OVL_PAGES;
    }
    stop_querying = 0;
    for (int i = N_MUTATORS; i < N_MUTATORS + N_QUERIERS; i++)
        ck_assert_int_eq(pthread_create(&w[i].tid, NULL, overlap_querier, &w[i]), 0);
    run_workers(w, N_MUTATORS, overlap_mutator);
    stop_querying = 1;
    for (int i = N_MUTATORS; i < N_MUTATORS + N_QUERIERS; i++) {
        ck_assert_int_eq(pthread_join(w[i].tid, NULL), 0);
        ck_assert_msg(w[i].errors == 0, "querier %d: %s", i, w[i].msg);
        ck_assert_int_gt(w[i].ops, 0);
    }
    for (int i = 0; i < N_MUTATORS; i++)
        ck_assert_int_eq(w[i].ops, OVL_OPS);

    /* Whatever the interleaving, KnVmQuery and the kernel agree page by page, and the counters add up. */
    size_t committed = 0, lazy = 0, full = 0;
    for (size_t p = 0; p < OVL_PAGES; p++) {
        VmQueryInfo q;
        ck_assert_uint_eq(KnVmQuery(pg(r, p), &q), rcOk);
        ck_assert_ptr_eq(q.regionBase, r);
        ck_assert(q.state == VMM_PAGE_STATE_RESERVED || q.state == VMM_PAGE_STATE_COMMITTED);
        char perms[5];
        ck_assert_int_eq(tu_maps_perms(pg(r, p), perms), 0);
        ck_assert_msg(memcmp(perms, tu_expected_perms(q.state, q.protection), 4) == 0,
                      "page %zu: state %u prot %u but maps %.4s", p, q.state, q.protection, perms);
        if (q.state == VMM_PAGE_STATE_COMMITTED) {
            committed++;
            lazy += (q.attributes & VMM_PAGE_ATTR_LAZY) != 0;
            full += (q.attributes & VMM_PAGE_ATTR_LOCKED) != 0;
            ck_assert_msg(!(q.attributes & VMM_PAGE_ATTR_LAZY) != !(q.attributes & VMM_PAGE_ATTR_LOCKED),
                          "committed page %zu: attributes %#x (exactly one of LAZY, LOCKED)", p, q.attributes);
            if (q.protection & VMM_FLAG_READ)
                (void)*(volatile char *)pg(r, p); /* readable */
        }
    }
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes + committed * P());
    ck_assert_uint_eq(s1.lazy_bytes, s0.lazy_bytes + lazy * P());
    ck_assert_uint_eq(s1.locked_bytes, s0.locked_bytes + full * P());

    /* The region is fully usable afterwards. */
    ck_assert_uint_eq(KnVmCommit(r, OVL_PAGES * P(), VMM_FLAG_LOCKED), rcOk);
    ck_assert_uint_eq(KnVmProtect(r, OVL_PAGES * P(), RW), rcOk);
    for (size_t p = 0; p < OVL_PAGES; p++)
        page_put(pg(r, p), 5, 5, p);
    for (size_t p = 0; p < OVL_PAGES; p++)
        ck_assert(page_has(pg(r, p), 5, 5, p));
    ck_assert_uint_eq(KnVmUnmap(r, OVL_PAGES * P()), rcOk);
    kosvmm_stats s2 = tu_stats();
    expect_stats_equal(&s0, &s2);
}
END_TEST

/* ---- 100 000 regions --------------------------------------------------------------------- */

#define MANY 100000

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

static void expect_region(void *base, size_t size)
{
    VmQueryInfo q;
    ck_assert_uint_eq(KnVmQuery(base, &q), rcOk);
    ck_assert_msg(q.regionBase == base && q.regionSize == size && q.state == VMM_PAGE_STATE_RESERVED,
                  "query of %p: region %p+%zu state %u", base, q.regionBase, (size_t)q.regionSize, q.state);
    ck_assert_uint_eq(KnVmQuery((char *)base + size - 1, &q), rcOk);
    ck_assert_ptr_eq(q.regionBase, base);
}

START_TEST(test_100k_regions)
{
    kosvmm_stats s0 = tu_stats();
    ck_assert_uint_eq(s0.regions, 0);
    void **v = malloc(MANY * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < MANY; i++) {
        v[i] = KnVmAllocate(RTL_NULL, P(), VMM_FLAG_RESERVE | RW);
        ck_assert_msg(v[i] != RTL_NULL, "allocation %zu failed: %#x", i, (unsigned)kosvmm_last_error());
    }
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.regions, MANY);
    ck_assert_uint_eq(s1.reserved_bytes, (uint64_t)MANY * P());
    for (size_t i = 0; i < MANY; i++)
        expect_region(v[i], P());
    /* All distinct. */
    void **sorted = malloc(MANY * sizeof *sorted);
    ck_assert_ptr_nonnull(sorted);
    memcpy(sorted, v, MANY * sizeof *v);
    qsort(sorted, MANY, sizeof *sorted, cmp_ptr);
    for (size_t i = 1; i < MANY; i++)
        ck_assert_msg(sorted[i] != sorted[i - 1], "address %p handed out twice", sorted[i]);
    free(sorted);

    /* Unmap every other one; the rest still answer right. */
    for (size_t i = 0; i < MANY; i += 2)
        ck_assert_uint_eq(KnVmUnmap(v[i], P()), rcOk);
    ck_assert_uint_eq(tu_stats().regions, MANY / 2);
    for (size_t i = 0; i < MANY; i++) {
        if (i % 2) {
            expect_region(v[i], P());
        } else {
            VmQueryInfo q;
            ck_assert_uint_eq(KnVmQuery(v[i], &q), rcOk);
            ck_assert_msg(q.state == VMM_PAGE_STATE_FREE, "unmapped region %p: state %u", v[i], q.state);
        }
    }
    for (size_t i = MANY - 1; i < MANY; i -= 2) /* the odd ones, from the top down */
        ck_assert_uint_eq(KnVmUnmap(v[i], P()), rcOk);
    kosvmm_stats s2 = tu_stats();
    ck_assert_uint_eq(s2.regions, 0);
    expect_stats_equal(&s0, &s2);
    ck_assert(!tu_is_mapped(v[0]));
    ck_assert(!tu_is_mapped(v[MANY - 1]));
    free(v);
}
END_TEST

/* The same number of regions made by 4 threads at once, each checking its own. */
#define MANY_THREADS 4

static void *many_worker(void *arg)
{
    worker *w = arg;
    size_t n = MANY / MANY_THREADS;
    void **v = malloc(n * sizeof *v);
    if (!v) {
        WFAIL(w, "malloc");
        return NULL;
    }
    size_t made = 0;
    for (; made < n; made++) {
        v[made] = KnVmAllocate(RTL_NULL, P(), VMM_FLAG_RESERVE | RW);
        if (!v[made]) {
            WFAIL(w, "thread %d: allocation %zu failed: %#x", w->id, made, (unsigned)kosvmm_last_error());
            break;
        }
    }
    for (size_t i = 0; i < made; i++) {
        VmQueryInfo q;
        WCHECK_RC(w, KnVmQuery((char *)v[i] + 5, &q));
        if (q.regionBase != v[i] || q.regionSize != P())
            WFAIL(w, "thread %d: region %p answered as %p+%zu", w->id, v[i], q.regionBase, (size_t)q.regionSize);
    }
    for (size_t i = 0; i < made; i++)
        WCHECK_RC(w, KnVmUnmap(v[i], P()));
    w->ops = (long)made;
    free(v);
    return NULL;
}

START_TEST(test_100k_regions_threads)
{
    worker w[MANY_THREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < MANY_THREADS; i++)
        w[i].id = i;
    run_workers(w, MANY_THREADS, many_worker);
    for (int i = 0; i < MANY_THREADS; i++)
        ck_assert_int_eq(w[i].ops, MANY / MANY_THREADS);
    kosvmm_stats s = tu_stats();
    ck_assert_uint_eq(s.regions, 0);
    ck_assert_uint_eq(s.reserved_bytes, 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("threads");

    TCase *tc = tcase_create("private");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_private_loops);
    suite_add_tcase(s, tc);

    tc = tcase_create("shared");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_shared_disjoint, 0, 2);
    tcase_add_loop_test(tc, test_shared_overlap, 0, 2);
    tcase_add_loop_test(tc, test_shared_concurrent_unmap, 0, 4);
    suite_add_tcase(s, tc);

    tc = tcase_create("many");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_100k_regions);
    tcase_add_test(tc, test_100k_regions_threads);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tu_run(suite());
}
