/* SPDX-License-Identifier: MIT */
/* bench/bench_alloc.c — kos/alloc.h against glibc malloc: multi-thread churn and large blocks, time and peak RSS. */
#include <kos/alloc.h>
#include <kosvmm/kosvmm.h>

#include <errno.h>
#include <getopt.h>
#include <linux/capability.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "cli.h"

/*
 * Every measurement runs in a fresh child (fork from a parent that never allocated through
 * either allocator), so each starts from the same state and its peak RSS is the kernel's
 * ru_maxrss for that child alone. Rounds are interleaved: each round runs every case with every
 * allocator, the order of the allocators alternating from round to round.
 */

enum { A_GLIBC, A_KOS, A_KOS_NOPIN, A_COUNT };
static const char *const alloc_name[A_COUNT] = {"glibc malloc", "KosMemAlloc", "KosMemAlloc unpinned"};

struct ops {
    void *(*alloc)(size_t);
    void (*release)(void *);
};

static void *kos_alloc(size_t n)
{
    return KosMemAlloc(n);
}

static const struct ops glibc_ops = {malloc, free};
static const struct ops kos_ops = {kos_alloc, KosMemFree};

/* ---- churn: a live set per thread, mixed sizes, some blocks freed by another thread ---- */

static long churn_ops = 2000000;   /* per thread */
static unsigned churn_slots = 40000; /* live-set slots per thread, about half in use */
static unsigned cross_every = 8;     /* one free in N is done by another thread; 0: none */
static size_t touch_max = SIZE_MAX;  /* bytes of each block the program writes */

/*
 * Sizes: a long-tailed mix as heap profiles of C services show: most requests are small
 * objects and strings, a few are buffers, very few are large.
 */
static size_t pick_size(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    unsigned r = (unsigned)(*s % 1000), v = (unsigned)(*s >> 20);
    if (r < 500)
        return 8 + v % 57;          /* 8..64: nodes, small strings */
    if (r < 800)
        return 65 + v % 192;        /* 65..256 */
    if (r < 950)
        return 257 + v % 1792;      /* 257..2048 */
    if (r < 995)
        return 2049 + v % 30720;    /* 2 KiB..32 KiB: buffers */
    return 32769 + v % 229376;      /* 32 KiB..256 KiB */
}

#define BATCH 256
#define INBOX 32

struct mailbox {
    pthread_mutex_t lock;
    int n;
    void *batch[INBOX][BATCH];
};

struct churn_thread {
    pthread_t tid;
    int id, nthreads;
    const struct ops *ops;
    struct mailbox *boxes;
    _Atomic int *go;
    long cross;
};

static void drain(const struct ops *ops, struct mailbox *box)
{
    static __thread void *take[INBOX][BATCH];
    pthread_mutex_lock(&box->lock);
    int n = box->n;
    memcpy(take, box->batch, sizeof take[0] * (size_t)n);
    box->n = 0;
    pthread_mutex_unlock(&box->lock);
    for (int b = 0; b < n; b++)
        for (int i = 0; i < BATCH; i++)
            ops->release(take[b][i]);
}

static void *churn_run(void *arg)
{
    struct churn_thread *t = arg;
    const struct ops *ops = t->ops;
    void **slot = calloc(churn_slots, sizeof *slot); /* glibc for both: bookkeeping, not measured */
    void *out[BATCH];
    int nout = 0;
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(t->id + 1);
    while (!atomic_load(t->go))
        ;
    for (long op = 0; op < churn_ops; op++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        unsigned i = (unsigned)(s % churn_slots);
        if (!slot[i]) {
            size_t n = pick_size(&s);
            char *p = ops->alloc(n);
            if (!p)
                bench_die_errno("allocation");
            memset(p, (int)op, n < touch_max ? n : touch_max); /* the program fills its block */
            slot[i] = p;
        } else if (cross_every && (s >> 40) % cross_every == 0 && t->nthreads > 1) {
            /* One free in eight is done by the next thread, in batches (a work queue). */
            out[nout++] = slot[i];
            slot[i] = NULL;
            if (nout == BATCH) {
                struct mailbox *box = &t->boxes[(t->id + 1) % t->nthreads];
                pthread_mutex_lock(&box->lock);
                int sent = box->n < INBOX;
                if (sent)
                    memcpy(box->batch[box->n++], out, sizeof out);
                pthread_mutex_unlock(&box->lock);
                if (!sent)
                    for (int k = 0; k < BATCH; k++)
                        ops->release(out[k]);
                t->cross += sent ? BATCH : 0;
                nout = 0;
            }
        } else {
            ops->release(slot[i]);
            slot[i] = NULL;
        }
        if ((op & 1023) == 0)
            drain(ops, &t->boxes[t->id]);
    }
    for (int k = 0; k < nout; k++)
        ops->release(out[k]);
    for (unsigned i = 0; i < churn_slots; i++)
        ops->release(slot[i]);
    free(slot);
    return NULL;
}

/* Returns the wall time of the churn; the blocks still in mailboxes are freed afterwards. */
static double churn(const struct ops *ops, int nthreads)
{
    struct mailbox *boxes = calloc((size_t)nthreads, sizeof *boxes);
    struct churn_thread *t = calloc((size_t)nthreads, sizeof *t);
    _Atomic int go = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_mutex_init(&boxes[i].lock, NULL);
        t[i] = (struct churn_thread){.id = i, .nthreads = nthreads, .ops = ops, .boxes = boxes, .go = &go};
        if (pthread_create(&t[i].tid, NULL, churn_run, &t[i]))
            bench_die_errno("pthread_create");
    }
    double t0 = bench_now_ns();
    atomic_store(&go, 1);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i].tid, NULL);
    double ns = bench_now_ns() - t0;
    for (int i = 0; i < nthreads; i++)
        drain(ops, &boxes[i]);
    free(t);
    free(boxes);
    return ns;
}

/* ---- large blocks: allocate, write every page, free ---- */

static double large(const struct ops *ops, size_t size, int iters)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    double t0 = bench_now_ns();
    for (int i = 0; i < iters; i++) {
        char *p = ops->alloc(size);
        if (!p)
            bench_die_errno("allocation");
        for (size_t off = 0; off < size; off += page)
            p[off] = (char)i;
        ops->release(p);
    }
    return bench_now_ns() - t0;
}

/* ---- one measurement in a child ---- */

struct cas {
    const char *name;
    int threads;      /* churn: thread count; 0: large */
    size_t size;      /* large: block size */
    int iters;
    long ops;         /* operations per run, for the throughput */
};

struct result {
    double ns;
    long maxrss_kb;
    uint64_t pin_refusals, pinned_peak;
};

/* Forbids pinning in this process: no CAP_IPC_LOCK, RLIMIT_MEMLOCK 0. LOCKED memory is then
 * populated without mlock, which is what an ordinary user gets past RLIMIT_MEMLOCK. */
static void forbid_pinning(void)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) == 0) {
        data[0].effective &= ~(1u << CAP_IPC_LOCK);
        data[0].permitted &= ~(1u << CAP_IPC_LOCK);
        data[0].inheritable &= ~(1u << CAP_IPC_LOCK);
        syscall(SYS_capset, &hdr, data);
    }
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_MEMLOCK, &rl);
}

static void run_case(const struct cas *c, int a)
{
    const struct ops *ops = a == A_GLIBC ? &glibc_ops : &kos_ops;
    if (a == A_KOS_NOPIN)
        forbid_pinning();
    struct result r = {0};
    r.ns = c->threads ? churn(ops, c->threads) : large(ops, c->size, c->iters);
    kosvmm_stats st = {.size = sizeof(kosvmm_stats)};
    if (kosvmm_get_stats(&st) == rcOk)
        r.pin_refusals = st.pin_refusals;
    if (write(STDOUT_FILENO, &r, sizeof r) != sizeof r)
        _exit(2);
}

static struct result measure(const struct cas *c, int a)
{
    int pfd[2];
    if (pipe(pfd))
        bench_die_errno("pipe");
    pid_t pid = fork();
    if (pid < 0)
        bench_die_errno("fork");
    if (pid == 0) {
        dup2(pfd[1], STDOUT_FILENO);
        close(pfd[0]);
        if (c)
            run_case(c, a);
        else {
            struct result r = {0};
            if (write(STDOUT_FILENO, &r, sizeof r) != sizeof r)
                _exit(2);
        }
        _exit(0);
    }
    close(pfd[1]);
    struct result r;
    ssize_t got = read(pfd[0], &r, sizeof r);
    close(pfd[0]);
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) || got != sizeof r) {
        fprintf(stderr, "%s: child for %s / %s failed (status %#x)\n", program_invocation_short_name,
                c ? c->name : "baseline", alloc_name[a], status);
        exit(1);
    }
    r.maxrss_kb = ru.ru_maxrss;
    return r;
}

#define MAX_ROUNDS 31
#define MAX_CASES 8

static void usage(FILE *out)
{
    fprintf(out, "usage: kosvmm-bench-alloc [--rounds N] [--quick] [--ops N] [--cross N] [--touch SIZE]\n"
                 "KosMemAlloc against glibc malloc, in interleaved rounds: multi-thread churn and large blocks.\n"
                 "  --rounds N    interleaved rounds (default 5, 1 with --quick), at most %d\n"
                 "  --quick       short run (CI smoke test)\n"
                 "  --ops N       churn operations per thread\n"
                 "  --cross N     1/N of frees done by another thread (0: none)\n"
                 "  --touch SIZE  bytes written per block (default: all)\n"
                 "  --help        this text\n", MAX_ROUNDS);
}

int main(int argc, char **argv)
{
    int rounds = 5, quick = 0;
    static const struct option opts[] = {
        {"rounds", required_argument, NULL, 'r'}, {"quick", no_argument, NULL, 'q'},
        {"ops", required_argument, NULL, 'o'},    {"cross", required_argument, NULL, 'x'},
        {"touch", required_argument, NULL, 't'},  {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    uint64_t n;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'q': quick = 1; break;
        case 'r':
            if (cli_parse_uint(optarg, 1, MAX_ROUNDS, &n) != 0)
                goto bad;
            rounds = (int)n;
            break;
        case 'o':
            if (cli_parse_uint(optarg, 1, 1000000000, &n) != 0)
                goto bad;
            churn_ops = (long)n;
            break;
        case 'x':
            if (cli_parse_uint(optarg, 0, 1000000, &n) != 0)
                goto bad;
            cross_every = (unsigned)n;
            break;
        case 't':
            if (cli_parse_size(optarg, &n) != 0)
                goto bad;
            touch_max = (size_t)n;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
bad:
        fprintf(stderr, "kosvmm-bench-alloc: bad option value or argument%s%s\n", optarg ? ": " : "",
                optarg ? optarg : "");
        usage(stderr);
        return 2;
    }
    if (quick) {
        rounds = rounds == 5 ? 1 : rounds;
        churn_ops = churn_ops == 2000000 ? 400000 : churn_ops;
        churn_slots = 10000;
    }
    if (rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "%s: --rounds must be 1..%d\n", argv[0], MAX_ROUNDS);
        return 2;
    }
    struct cas cases[MAX_CASES];
    int ncases = 0;
    cases[ncases++] = (struct cas){"churn, 2 threads", 2, 0, 0, 2 * churn_ops};
    cases[ncases++] = (struct cas){"churn, 4 threads", 4, 0, 0, 4 * churn_ops};
    size_t lsizes[] = {256 * KIB, 1 * MIB, 4 * MIB, 16 * MIB};
    for (int k = quick ? 1 : 0; k < (quick ? 3 : 4); k += quick ? 2 : 1) {
        int iters = (int)((quick ? 64 : 512) * MIB / lsizes[k]);
        char name[64], sz[32];
        snprintf(name, sizeof name, "large %s x%d", bench_fmt_size(lsizes[k], sz, sizeof sz), iters);
        cases[ncases] = (struct cas){NULL, 0, lsizes[k], iters, iters};
        cases[ncases].name = strdup(name);
        ncases++;
    }

    struct rlimit ml;
    getrlimit(RLIMIT_MEMLOCK, &ml);
    printf("kosvmm-bench-alloc: %d round(s), interleaved, each run in a fresh child; euid %d, RLIMIT_MEMLOCK %s\n",
           rounds, (int)geteuid(), ml.rlim_cur == RLIM_INFINITY ? "unlimited" : "limited");
    printf("churn: %ld operations per thread, %u live-set slots per thread, ", churn_ops, churn_slots);
    if (cross_every)
        printf("1/%u of frees by another thread\n", cross_every);
    else
        printf("no frees by another thread\n");
    if (touch_max != SIZE_MAX)
        printf("only the first %zu bytes of each block are written: untouched glibc memory is not resident,\n"
               "LOCKED memory always is\n", touch_max);

    static struct result res[MAX_CASES][A_COUNT][MAX_ROUNDS];
    struct result base = measure(NULL, A_GLIBC);
    for (int r = 0; r < rounds; r++) {
        for (int c = 0; c < ncases; c++) {
            for (int k = 0; k < A_COUNT; k++) {
                int a = (r % 2 ? A_COUNT - 1 - k : k);
                fprintf(stderr, "\rround %d/%d: %-24s %-22s", r + 1, rounds, cases[c].name, alloc_name[a]);
                res[c][a][r] = measure(&cases[c], a);
            }
        }
    }
    fprintf(stderr, "\r%70s\r", "");

    printf("\n%-22s %-22s %12s %10s %15s %12s %9s %10s\n", "case", "allocator", "Mops/s", "vs glibc",
           "(round range)", "peak RSS MiB", "vs glibc", "pin refus.");
    printf("(baseline child peak RSS: %.1f MiB, subtracted from every RSS figure)\n", base.maxrss_kb / 1024.0);
    for (int c = 0; c < ncases; c++) {
        double tput[A_COUNT], rss[A_COUNT];
        for (int a = 0; a < A_COUNT; a++) {
            double t[MAX_ROUNDS], m[MAX_ROUNDS];
            for (int r = 0; r < rounds; r++) {
                t[r] = cases[c].ops / res[c][a][r].ns * 1e3;
                m[r] = (double)(res[c][a][r].maxrss_kb - base.maxrss_kb) / 1024.0;
            }
            tput[a] = bench_median(t, rounds);
            rss[a] = bench_median(m, rounds);
        }
        for (int a = 0; a < A_COUNT; a++) {
            double lo = 1e300, hi = 0;
            for (int r = 0; r < rounds; r++) {
                double q = (cases[c].ops / res[c][a][r].ns) / (cases[c].ops / res[c][A_GLIBC][r].ns);
                lo = q < lo ? q : lo;
                hi = q > hi ? q : hi;
            }
            char range[32] = "";
            if (a != A_GLIBC)
                snprintf(range, sizeof range, "(%.2f..%.2f)", lo, hi);
            printf("%-22s %-22s %12.4g %9.2fx %15s %12.1f %8.2fx %10llu\n", a ? "" : cases[c].name,
                   alloc_name[a], tput[a], tput[a] / tput[A_GLIBC], range, rss[a],
                   rss[A_GLIBC] > 0 ? rss[a] / rss[A_GLIBC] : 0.0,
                   (unsigned long long)res[c][a][rounds - 1].pin_refusals);
        }
    }
    printf("\nMops/s: millions of operations per second (churn: allocations and frees; large: one allocate,\n"
           "touch every page, free), median over rounds; vs glibc: ratio of medians (above 1.00x is faster than glibc), round range:\n"
           "per-round ratios. Peak RSS: ru_maxrss of the run's child minus the baseline child's.\n"
           "\"unpinned\": the same allocator in a child without CAP_IPC_LOCK and with RLIMIT_MEMLOCK 0,\n"
           "where LOCKED memory is populated but not mlocked (an ordinary user past its RLIMIT_MEMLOCK).\n");
    return 0;
}
