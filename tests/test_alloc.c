/* SPDX-License-Identifier: MIT */
/* tests/test_alloc.c — kos/alloc.h: size classes, alignment, zeroing, threads, misuse, quotas, RSS, fork. */
#include "testutil.h"

#include <kos/alloc.h>
#include <kosvmm/kosvmm.h>

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "alloc/alloc_internal.h"

#define MIB ((size_t)1 << 20)

/* ThreadSanitizer's shadow memory grows with every address the allocator touched: RSS says
 * nothing about the allocator there (kosvmm's own committed-bytes count still does). */
#ifdef __SANITIZE_THREAD__
#define RSS_MEANINGFUL 0
#else
#define RSS_MEANINGFUL 1
#endif

static void fill(void *p, size_t n, unsigned seed)
{
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        c[i] = (unsigned char)(seed + i * 131);
}

static int check_fill(const void *p, size_t n, unsigned seed)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != (unsigned char)(seed + i * 131))
            return 0;
    return 1;
}

static void check_block(void *p, size_t size, size_t align)
{
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % (align < 16 ? 16 : align), 0);
    ck_assert_uint_ge(KosMemGetSize(p), size);
}

/* ---- sizes, alignment, zeroing, GetSize ---- */

START_TEST(every_class_boundary)
{
    for (unsigned b = 0; b < KVMM_BINS; b++) {
        size_t bs = kvmm_bin_size(b);
        ck_assert_uint_eq(kvmm_bin_of(bs), b);
        size_t sizes[] = {bs - 1, bs, bs + 1};
        for (int k = 0; k < 3; k++) {
            void *p = KosMemAlloc(sizes[k]);
            check_block(p, sizes[k], 16);
            if (sizes[k] <= KVMM_SMALL_MAX)
                ck_assert_uint_eq(KosMemGetSize(p), kvmm_bin_size(kvmm_bin_of(sizes[k])));
            fill(p, sizes[k], b);
            ck_assert(check_fill(p, sizes[k], b));
            KosMemFree(p);
        }
    }
    /* Past the size classes: whole 64 KiB slots of a chunk, up to 1 MiB. */
    void *p = KosMemAlloc(KVMM_SMALL_MAX + 1);
    check_block(p, KVMM_SMALL_MAX + 1, KVMM_SLOT);
    ck_assert_uint_eq(KosMemGetSize(p), KVMM_SMALL_MAX + KVMM_SLOT);
    KosMemFree(p);
    p = KosMemAlloc(KVMM_RUN_MAX);
    ck_assert_uint_eq(KosMemGetSize(p), KVMM_RUN_MAX);
    KosMemFree(p);
    /* Past that: a region of its own, page-rounded. */
    p = KosMemAlloc(KVMM_RUN_MAX + 1);
    check_block(p, KVMM_RUN_MAX + 1, tu_page());
    ck_assert_uint_eq(KosMemGetSize(p), KVMM_RUN_MAX + tu_page());
    KosMemFree(p);
}
END_TEST

START_TEST(size_zero_and_unique)
{
    void *a = KosMemAlloc(0), *b = KosMemAlloc(0), *c = KosMemAllocEx(0, 64, 1);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_ne(a, b);
    ck_assert_uint_eq((uintptr_t)c % 64, 0);
    ck_assert_uint_ge(KosMemGetSize(a), 1);
    KosMemFree(a);
    KosMemFree(b);
    KosMemFree(c);
    KosMemFree(NULL); /* ignored */
}
END_TEST

START_TEST(alignments)
{
    size_t sizes[] = {1, 24, 100, 4000, 70000, 900000};
    for (size_t align = 1; align <= 2 * MIB; align *= 2) {
        void *held[6];
        for (int k = 0; k < 6; k++) {
            held[k] = KosMemAllocEx(sizes[k], align, 0);
            check_block(held[k], sizes[k], align);
            fill(held[k], sizes[k], (unsigned)k);
        }
        for (int k = 0; k < 6; k++) {
            ck_assert(check_fill(held[k], sizes[k], (unsigned)k));
            KosMemFree(held[k]);
        }
    }
    /* Beyond the documented range: still honoured, through the large path. */
    void *p = KosMemAllocEx(10, 16 * MIB, 1);
    check_block(p, 10, 16 * MIB);
    KosMemFree(p);
    /* Not a power of two: refused. */
    ck_assert_ptr_null(KosMemAllocEx(16, 0, 0));
    ck_assert_ptr_null(KosMemAllocEx(16, 3, 0));
    ck_assert_ptr_null(KosMemAllocEx(16, 24, 0));
    ck_assert_ptr_null(KosMemAllocEx(16, (size_t)1 << 63 | 1, 0));
    /* Too large to map at all. */
    ck_assert_ptr_null(KosMemAlloc(SIZE_MAX));
    ck_assert_ptr_null(KosMemAlloc(SIZE_MAX - tu_page()));
    ck_assert_ptr_null(KosMemAllocEx(SIZE_MAX / 2, (size_t)1 << 62, 0));
    ck_assert_ptr_null(KosMemZalloc((size_t)1 << 62));
}
END_TEST

START_TEST(zeroing)
{
    size_t sizes[] = {1, 16, 100, 1000, 8192, 40000, KVMM_SMALL_MAX, 500000, 3 * MIB};
    for (int k = 0; k < 9; k++) {
        /* Dirty a block, free it, and ask for the same size again: the slab hands it back. */
        unsigned char *p = KosMemAlloc(sizes[k]);
        ck_assert_ptr_nonnull(p);
        memset(p, 0xa5, KosMemGetSize(p));
        KosMemFree(p);
        for (int how = 0; how < 3; how++) {
            unsigned char *z = how == 0 ? KosMemZalloc(sizes[k])
                             : how == 1 ? KosMemAllocEx(sizes[k], 1, 1)
                                        : KosMemAllocEx(sizes[k], 256, 1);
            ck_assert_ptr_nonnull(z);
            size_t n = KosMemGetSize(z);
            size_t i = 0;
            while (i < n && z[i] == 0)
                i++;
            ck_assert_msg(i == n, "size %zu, way %d: byte %zu is %#x", sizes[k], how, i, z[i]);
            memset(z, 0x5a, n);
            KosMemFree(z);
        }
    }
}
END_TEST

START_TEST(get_size)
{
    ck_assert_uint_eq(KosMemGetSize(NULL), 0);
    int local;
    ck_assert_uint_eq(KosMemGetSize(&local), 0);
    char *p = KosMemAlloc(100), *big = KosMemAlloc(MIB + 1);
    ck_assert_uint_eq(KosMemGetSize(p), 112);
    ck_assert_uint_eq(KosMemGetSize(p + 16), 0); /* inside the block */
    ck_assert_uint_eq(KosMemGetSize(big), MIB + tu_page());
    ck_assert_uint_eq(KosMemGetSize(big + tu_page()), 0);
    KosMemFree(p);
    KosMemFree(big);
    ck_assert_uint_eq(KosMemGetSize(p), 0);
    ck_assert_uint_eq(KosMemGetSize(big), 0);
}
END_TEST

/* ---- committed, LOCKED memory ---- */

static void expect_committed(const void *p)
{
    VmQueryInfo q = tu_query(p);
    ck_assert_uint_eq(q.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_eq(q.protection, VMM_FLAG_READ | VMM_FLAG_WRITE);
    ck_assert(q.attributes & VMM_PAGE_ATTR_LOCKED);
    ck_assert(!(q.attributes & VMM_PAGE_ATTR_LAZY));
    ck_assert(q.regionFlags & VMM_FLAG_LOCKED);
    /* Populated at commit, not on first touch. */
    ck_assert_int_eq(tu_resident_pages((const void *)((uintptr_t)p & ~(tu_page() - 1)), tu_page()), 1);
}

START_TEST(query_reports_committed)
{
    void *small = KosMemAlloc(40), *mid = KosMemAlloc(100000), *big = KosMemAlloc(5 * MIB);
    void *run = KosMemAlloc(600000);
    expect_committed(run);
    expect_committed((char *)run + 599999);
    KosMemFree(run);
    void *aligned = KosMemAllocEx(5000, 2 * MIB, 0);
    expect_committed(small);
    expect_committed(mid);
    expect_committed(big);
    expect_committed((char *)big + 5 * MIB - 1);
    expect_committed(aligned);
    kosvmm_stats s = tu_stats();
    ck_assert_uint_ge(s.locked_bytes, 5 * MIB);
    KosMemFree(small);
    KosMemFree(mid);
    KosMemFree(big);
    KosMemFree(aligned);
    ck_assert_uint_eq(tu_query(big).state, VMM_PAGE_STATE_FREE);
}
END_TEST

/* ---- threads ---- */

/* Makes the allocator's lasting metadata (a thread heap, the chunk-map leaf, the large-block
 * table), so that a baseline taken afterwards sees only what a test allocates. */
static void *warm_up(void *arg)
{
    (void)arg;
    KosMemFree(KosMemAlloc(10));
    KosMemFree(KosMemAlloc(3 * MIB));
    return NULL;
}

#define XFER 20000

struct xfer {
    void *blocks[XFER];
    size_t sizes[XFER];
};

static void *producer(void *arg)
{
    struct xfer *x = arg;
    for (int i = 0; i < XFER; i++) {
        x->sizes[i] = 1 + (size_t)(i * 7919) % 3000;
        x->blocks[i] = KosMemAlloc(x->sizes[i]);
        if (x->blocks[i])
            fill(x->blocks[i], x->sizes[i], (unsigned)i);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    struct xfer *x = arg;
    for (int i = 0; i < XFER; i++) {
        if (!check_fill(x->blocks[i], x->sizes[i], (unsigned)i))
            return (void *)1;
        KosMemFree(x->blocks[i]);
    }
    return NULL;
}

START_TEST(free_across_threads)
{
    static struct xfer x;
    tu_in_thread(warm_up, NULL);
    kosvmm_stats before = tu_stats();
    for (int round = 0; round < 3; round++) {
        /* The producer exits first: the consumer frees into an abandoned heap, and the next
         * producer adopts it. */
        tu_in_thread(producer, &x);
        for (int i = 0; i < XFER; i++)
            ck_assert_ptr_nonnull(x.blocks[i]);
        ck_assert_ptr_null(tu_in_thread(consumer, &x));
        for (int i = 0; i < XFER; i += 97)
            ck_assert_uint_eq(KosMemGetSize(x.blocks[i]), 0);
    }
    /* Both threads are gone: every chunk of theirs went back. */
    kosvmm_stats after = tu_stats();
    ck_assert_uint_eq(after.committed_bytes, before.committed_bytes);
    /* Another thread frees what main made while main lives: main reuses those blocks. */
    producer(&x);
    kosvmm_stats made = tu_stats();
    tu_in_thread(consumer, &x);
    producer(&x);
    ck_assert_uint_eq(tu_stats().committed_bytes, made.committed_bytes);
    for (int i = 0; i < XFER; i++)
        KosMemFree(x.blocks[i]);
    /* Blocks other threads freed return when their owner next allocates or frees in their
     * page, or exits: a page only ever freed into from outside may still hold a chunk. */
    ck_assert_uint_le(tu_stats().committed_bytes, before.committed_bytes + 2 * KVMM_CHUNK);
}
END_TEST

#define CHURN_THREADS 8
#define CHURN_SLOTS 4096
#define SHARED_SLOTS 1024

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    void *p;
    size_t size;
    unsigned seed;
} shared[SHARED_SLOTS];

static size_t churn_size(unsigned *seed)
{
    unsigned r = (unsigned)rand_r(seed) % 1000;
    if (r < 600)
        return 1 + (unsigned)rand_r(seed) % 64;
    if (r < 900)
        return 65 + (unsigned)rand_r(seed) % 1024;
    if (r < 990)
        return 1089 + (unsigned)rand_r(seed) % 32768;
    return 33857 + (unsigned)rand_r(seed) % (300 << 10);
}

static void *churn(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 7777 + 1;
    static __thread void *slot[CHURN_SLOTS];
    static __thread size_t size[CHURN_SLOTS];
    static __thread unsigned tag[CHURN_SLOTS];
    long ops = TU_SANITIZED ? 60000 : 200000;
    for (long op = 0; op < ops; op++) {
        unsigned i = (unsigned)rand_r(&seed) % CHURN_SLOTS;
        if (slot[i]) {
            /* Check only the ends of large blocks: the content checks are about blocks
             * overlapping, which shows at any byte. */
            size_t n = size[i] - 1 < 256 ? size[i] - 1 : 256;
            if (!check_fill(slot[i], n, tag[i]) ||
                ((unsigned char *)slot[i])[size[i] - 1] != (unsigned char)tag[i])
                return (void *)1;
            if (rand_r(&seed) % 8 == 0) {
                /* Hand it to whichever thread takes this shared slot next. */
                pthread_mutex_lock(&shared_lock);
                unsigned s = (unsigned)rand_r(&seed) % SHARED_SLOTS;
                void *old = shared[s].p;
                size_t oldsize = shared[s].size;
                unsigned oldseed = shared[s].seed;
                shared[s].p = slot[i];
                shared[s].size = size[i];
                shared[s].seed = tag[i];
                pthread_mutex_unlock(&shared_lock);
                if (old) {
                    size_t m = oldsize - 1 < 256 ? oldsize - 1 : 256;
                    if (!check_fill(old, m, oldseed))
                        return (void *)2;
                    KosMemFree(old);
                }
            } else {
                KosMemFree(slot[i]);
            }
            slot[i] = NULL;
        } else {
            size[i] = churn_size(&seed);
            tag[i] = (unsigned)rand_r(&seed);
            slot[i] = rand_r(&seed) % 16 ? KosMemAlloc(size[i])
                                         : KosMemAllocEx(size[i], (size_t)16 << (rand_r(&seed) % 10), 0);
            if (!slot[i])
                return (void *)3;
            fill(slot[i], size[i] - 1 < 256 ? size[i] - 1 : 256, tag[i]);
            ((unsigned char *)slot[i])[size[i] - 1] = (unsigned char)tag[i];
        }
    }
    for (unsigned i = 0; i < CHURN_SLOTS; i++)
        KosMemFree(slot[i]);
    return NULL;
}

START_TEST(churn_8_threads)
{
    pthread_t t[CHURN_THREADS];
    tu_in_thread(warm_up, NULL);
    kosvmm_stats before = tu_stats();
    for (uintptr_t i = 0; i < CHURN_THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, churn, (void *)i), 0);
    for (int i = 0; i < CHURN_THREADS; i++) {
        void *res;
        ck_assert_int_eq(pthread_join(t[i], &res), 0);
        ck_assert_msg(res == NULL, "thread %d: content check failed (%p)", i, res);
    }
    for (unsigned s = 0; s < SHARED_SLOTS; s++)
        KosMemFree(shared[s].p);
    /* Every thread is gone and every block freed (main allocated nothing): every chunk went. */
    kosvmm_stats after = tu_stats();
    ck_assert_uint_eq(after.committed_bytes, before.committed_bytes);
    ck_assert_uint_eq(after.regions, before.regions);
}
END_TEST

/* ---- misuse: the message, then the signal ---- */

typedef void (*misuse_fn)(void *);

/* Runs fn in a child with stderr captured; asserts it died of SIGABRT saying want. */
static void expect_abort_message(misuse_fn fn, void *arg, const char *want)
{
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(pfd[1], STDERR_FILENO);
        close(pfd[0]);
        fn(arg);
        _exit(0);
    }
    close(pfd[1]);
    char buf[1024];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(pfd[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(pfd[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %#x, stderr: %s", status, buf);
    ck_assert_msg(strstr(buf, want) != NULL, "want \"%s\" in stderr: %s", want, buf);
}

static void double_free(void *p)
{
    KosMemFree(p);
    KosMemFree(p);
}

static void free_once(void *p)
{
    KosMemFree(p);
}

static void run_misuse(misuse_fn fn, void *arg, const char *what, const void *shown)
{
    char want[256];
    snprintf(want, sizeof want, "KosMemFree(): %s: %p", what, shown);
    expect_abort_message(fn, arg, want);
    fn(arg); /* and here, for tcase_add_test_raise_signal */
}

START_TEST(double_free_small)
{
    void *keep = KosMemAlloc(48);
    void *p = KosMemAlloc(48);
    run_misuse(double_free, p, "double free detected", p);
    KosMemFree(keep);
}
END_TEST

START_TEST(double_free_large)
{
    void *p = KosMemAlloc(3 * MIB);
    ck_assert_ptr_nonnull(p);
    run_misuse(double_free, p, "double free detected", p);
}
END_TEST

static void *remote_double(void *p)
{
    KosMemFree(p);
    return NULL;
}

static void double_free_other_thread(void *p)
{
    tu_in_thread(remote_double, p);
    KosMemFree(p);
}

START_TEST(double_free_across_threads)
{
    void *p = KosMemAlloc(700);
    run_misuse(double_free_other_thread, p, "double free detected", p);
}
END_TEST

START_TEST(foreign_pointer)
{
    static char not_heap[64];
    run_misuse(free_once, not_heap + 16, "invalid pointer", not_heap + 16);
}
END_TEST

START_TEST(foreign_vmm_pointer)
{
    /* Memory of the same VMM, but never a KosMemAlloc block; and an address nothing maps. */
    void *r = KnVmAllocate(RTL_NULL, 8 * MIB, VMM_FLAG_READ | VMM_FLAG_WRITE | VMM_FLAG_RESERVE);
    ck_assert_ptr_nonnull(r);
    void *aligned = (void *)(((uintptr_t)r + KVMM_CHUNK - 1) & ~(KVMM_CHUNK - 1));
    expect_abort_message(free_once, aligned, "KosMemFree(): invalid pointer");
    run_misuse(free_once, (void *)0x10, "invalid pointer", (void *)0x10);
}
END_TEST

START_TEST(interior_pointer_small)
{
    char *p = KosMemAlloc(200);
    run_misuse(free_once, p + 8, "invalid pointer", p + 8);
}
END_TEST

START_TEST(interior_pointer_large)
{
    char *p = KosMemAlloc(2 * MIB);
    ck_assert_ptr_nonnull(p);
    run_misuse(free_once, p + tu_page(), "invalid pointer", p + tu_page());
}
END_TEST

START_TEST(header_pointer)
{
    /* The chunk's own header: its address aligned down. */
    char *p = KosMemAlloc(32);
    void *header = (void *)((uintptr_t)p & ~(KVMM_CHUNK - 1));
    run_misuse(free_once, header, "invalid pointer", header);
}
END_TEST

/* ---- quotas ---- */

static kosvmm_usage usage(void)
{
    kosvmm_usage u = {.size = sizeof(kosvmm_usage)};
    ck_assert_int_eq(kosvmm_get_usage(&u), rcOk);
    return u;
}

static void set_committed_limit(rtl_uint64_t limit)
{
    kosvmm_policy p = {.size = sizeof(kosvmm_policy)};
    ck_assert_int_eq(kosvmm_get_policy(&p), rcOk);
    p.max_committed_bytes = limit;
    ck_assert_int_eq(kosvmm_set_policy(&p), rcOk);
}

#define QUOTA_MAX 200000

struct quota_run {
    void *blocks[QUOTA_MAX];
    int n;
    int large_refused, small_refused;
};

static void *fill_quota(void *arg)
{
    struct quota_run *q = arg;
    q->large_refused = KosMemAlloc(8 * MIB) == NULL && KosMemAllocEx(4 * MIB, 4 * MIB, 0) == NULL;
    while (q->n < QUOTA_MAX && (q->blocks[q->n] = KosMemAlloc(1000 + (size_t)(q->n % 7) * 500)))
        q->n++;
    q->small_refused = q->n < QUOTA_MAX;
    for (int i = 0; i < q->n; i++)
        KosMemFree(q->blocks[i]);
    return NULL;
}

START_TEST(quota_makes_alloc_fail)
{
    static struct quota_run q;
    tu_in_thread(warm_up, NULL);
    kosvmm_usage base = usage();
    kosvmm_stats sbase = tu_stats();
    set_committed_limit(base.committed_bytes + 3 * MIB);
    tu_in_thread(fill_quota, &q);
    ck_assert(q.large_refused);
    ck_assert(q.small_refused);
    ck_assert_int_gt(q.n, 1000); /* up to the limit, not short of it */
    kosvmm_usage after = usage();
    ck_assert_uint_gt(after.quota_refusals, base.quota_refusals);
    /* Nothing leaked: the thread freed everything and exited, so its chunks are unmapped. */
    ck_assert_uint_eq(after.committed_bytes, base.committed_bytes);
    ck_assert_uint_eq(after.reserved_bytes, base.reserved_bytes);
    ck_assert_uint_eq(tu_stats().regions, sbase.regions);
    /* Room again once the limit is lifted. */
    set_committed_limit(KOSVMM_UNLIMITED);
    void *p = KosMemAlloc(8 * MIB);
    ck_assert_ptr_nonnull(p);
    KosMemFree(p);
}
END_TEST

/* ---- memory goes back ---- */

#define RSS_BLOCKS 40000

static void *alloc_and_free_all(void *arg)
{
    static void *b[RSS_BLOCKS];
    (void)arg;
    for (int i = 0; i < RSS_BLOCKS; i++) {
        size_t size = i % 100 == 0 ? 300 << 10 : 16 + (size_t)(i * 37) % 4000;
        b[i] = KosMemAlloc(size);
        if (!b[i])
            return (void *)1;
        memset(b[i], 1, size);
    }
    for (int i = 0; i < RSS_BLOCKS; i += 2)
        KosMemFree(b[i]);
    for (int i = 1; i < RSS_BLOCKS; i += 2)
        KosMemFree(b[i]);
    return NULL;
}

START_TEST(rss_returns)
{
    /* Once first, so the lasting metadata (thread heap, large-block table at its size) exists. */
    tu_in_thread(alloc_and_free_all, NULL);
    long rss0 = tu_status_kb("VmRSS:");
    kosvmm_stats s0 = tu_stats();
    /* A thread: everything it had goes back when it exits. */
    ck_assert_ptr_null(tu_in_thread(alloc_and_free_all, NULL));
    long rss1 = tu_status_kb("VmRSS:");
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes);
    ck_assert_uint_eq(s1.regions, s0.regions);
    ck_assert_msg(!RSS_MEANINGFUL || rss1 - rss0 < 2048, "RSS %ld kB -> %ld kB", rss0, rss1);
    /* The main thread: at most the one chunk it keeps for reuse stays (~110 MB were used). */
    ck_assert_ptr_null(alloc_and_free_all(NULL));
    long rss2 = tu_status_kb("VmRSS:");
    ck_assert_msg(!RSS_MEANINGFUL || rss2 - rss0 < 4096 + 2048, "RSS %ld kB -> %ld kB", rss0, rss2);
    ck_assert_uint_le(tu_stats().committed_bytes, s0.committed_bytes + KVMM_CHUNK);
}
END_TEST

/* ---- fork ---- */

static _Atomic int spin_stop, spin_pause, spin_paused;

static void *spinner(void *arg)
{
    (void)arg;
    unsigned seed = 5;
    while (!spin_stop) {
        if (spin_pause) {
            spin_paused = 1;
            while (spin_pause && !spin_stop)
                sched_yield();
            spin_paused = 0;
            continue;
        }
        void *p = KosMemAlloc(churn_size(&seed));
        KosMemFree(p);
    }
    return NULL;
}

START_TEST(fork_child_allocates)
{
    char *mine = KosMemAlloc(500), *big = KosMemAlloc(3 * MIB);
    fill(mine, 500, 9);
    fill(big, 3 * MIB, 10);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, spinner, NULL), 0);
    /* Sanitized processes fork slowly (their shadow mappings are copied): fewer rounds there. */
    for (int round = 0; round < (TU_SANITIZED ? 4 : 20); round++) {
#ifdef __SANITIZE_ADDRESS__
        /* ASan's own allocator has no fork handler (GCC 12's libasan intercepts no fork): when the
         * spinner is inside it (KosMemAlloc reaches malloc through the region map for a new
         * chunk), the child inherits that lock held and hangs at its first malloc or new thread
         * (AsanThread::Init allocates). So under ASan the spinner is parked outside any allocation
         * at each fork; the normal and TSan builds keep forking in the middle of its allocations. */
        spin_pause = 1;
        while (!spin_paused)
            sched_yield();
#endif
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
#ifdef __SANITIZE_ADDRESS__
        if (pid > 0)
            spin_pause = 0;
#endif
        if (pid == 0) {
            /* Another thread was allocating when fork() was called: no lock of it is held here. */
            TU_CHILD_CHECK(check_fill(mine, 500, 9) && check_fill(big, 3 * MIB, 10));
            unsigned seed = 77;
            void *held[256] = {0};
            for (int i = 0; i < (TU_SANITIZED ? 4000 : 20000); i++) {
                int k = i % 256;
                KosMemFree(held[k]);
                held[k] = KosMemAlloc(churn_size(&seed));
                TU_CHILD_CHECK(held[k] != NULL);
            }
            for (int k = 0; k < 256; k++)
                KosMemFree(held[k]);
            KosMemFree(mine);
            KosMemFree(big);
#ifndef __SANITIZE_THREAD__
            /* A new thread of the child gets a heap too. (Not under ThreadSanitizer, whose
             * record of the parent's spinner thread, dead in the child, clashes with a new
             * thread there: "dup thread with used id".) */
            pthread_t ct;
            TU_CHILD_CHECK(pthread_create(&ct, NULL, warm_up, NULL) == 0);
            TU_CHILD_CHECK(pthread_join(ct, NULL) == 0);
#endif
            _exit(0);
        }
        tu_wait_child_ok(pid);
    }
    spin_stop = 1;
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert(check_fill(mine, 500, 9));
    KosMemFree(mine);
    KosMemFree(big);
}
END_TEST

static Suite *alloc_suite(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("api");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, every_class_boundary);
    tcase_add_test(tc, size_zero_and_unique);
    tcase_add_test(tc, alignments);
    tcase_add_test(tc, zeroing);
    tcase_add_test(tc, get_size);
    tcase_add_test(tc, query_reports_committed);
    suite_add_tcase(s, tc);

    /* Generous: CI machines are shared, and the timeouts only catch a hang. */
    tc = tcase_create("threads");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, free_across_threads);
    tcase_add_test(tc, churn_8_threads);
    tcase_add_test(tc, fork_child_allocates);
    suite_add_tcase(s, tc);

    tc = tcase_create("misuse");
    tcase_set_timeout(tc, 30);
    tcase_add_test_raise_signal(tc, double_free_small, SIGABRT);
    tcase_add_test_raise_signal(tc, double_free_large, SIGABRT);
    tcase_add_test_raise_signal(tc, double_free_across_threads, SIGABRT);
    tcase_add_test_raise_signal(tc, foreign_pointer, SIGABRT);
    tcase_add_test_raise_signal(tc, foreign_vmm_pointer, SIGABRT);
    tcase_add_test_raise_signal(tc, interior_pointer_small, SIGABRT);
    tcase_add_test_raise_signal(tc, interior_pointer_large, SIGABRT);
    tcase_add_test_raise_signal(tc, header_pointer, SIGABRT);
    suite_add_tcase(s, tc);

    tc = tcase_create("resources");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, quota_makes_alloc_fail);
    tcase_add_test(tc, rss_returns);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(alloc_suite());
}
