/* SPDX-License-Identifier: MIT */
/* bench_core.c — kosvmm-bench-core: core VMM calls against the equivalent raw Linux calls, interleaved in one run. */
#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>
#include <rtl/retcode_hr.h>

#include "bench_util.h"
#include "cli.h"
#include "fdpass.h"

#define _GNU_SOURCE 1
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 101
#define MAX_VARIANTS 3

/* A timed body: runs iters operations and returns the mean ns per operation, or a negative value when the
 * native side cannot run here (e.g. mlock refused), which turns its row into "n/a" rather than a failure. */
typedef double (*body_fn)(size_t size, long iters);

static size_t page_size;
static volatile unsigned long sink;     /* keeps the optimiser from dropping query results */
static void **query_bases;              /* regions the lookup bodies pick from */
static size_t query_count;
static unsigned long long rng_state = 0x9e3779b97f4a7c15ull;

static FILE *csv;
static int progress_tty;

static void *k_alloc(size_t size, int flags)
{
    void *p = KnVmAllocate(RTL_NULL, size, flags);
    if (p == RTL_NULL)
        bench_die_rc("KnVmAllocate", kosvmm_last_error());
    return p;
}

static void k_unmap(void *p, size_t size)
{
    Retcode rc = KnVmUnmap(p, size);
    if (RC_FAILED(rc))
        bench_die_rc("KnVmUnmap", rc);
}

static void *n_reserve(size_t size)
{
    void *p = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        bench_die_errno("mmap");
    return p;
}

/* ---- (a) reservation ---- */

static double k_reserve_body(size_t size, long iters)
{
    double t0 = bench_now_ns();
    for (long i = 0; i < iters; i++)
        k_unmap(k_alloc(size, VMM_FLAG_RESERVE | VMM_FLAG_READ | VMM_FLAG_WRITE), size);
    return (bench_now_ns() - t0) / (double)iters;
}

static double n_reserve_body(size_t size, long iters)
{
    double t0 = bench_now_ns();
    for (long i = 0; i < iters; i++)
        munmap(n_reserve(size), size);
    return (bench_now_ns() - t0) / (double)iters;
}

/* ---- (b) full commit ---- */

static double k_eager_body(size_t size, long iters)
{
    double t0 = bench_now_ns();
    for (long i = 0; i < iters; i++)
        k_unmap(k_alloc(size, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | VMM_FLAG_READ | VMM_FLAG_WRITE),
                size);
    return (bench_now_ns() - t0) / (double)iters;
}

/* The baseline opts out of THP so that both sides fault in 4 KiB pages; otherwise it would measure the THP
 * policy of the machine rather than the cost of the API. */
static double n_eager(size_t size, long iters, int pin)
{
    double t0 = bench_now_ns();
    for (long i = 0; i < iters; i++) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            bench_die_errno("mmap");
        if (madvise(p, size, MADV_NOHUGEPAGE) != 0 || madvise(p, size, MADV_POPULATE_WRITE) != 0)
            bench_die_errno("madvise");
        if (pin && mlock(p, size) != 0) {
            munmap(p, size);
            return -1;
        }
        munmap(p, size);
    }
    return (bench_now_ns() - t0) / (double)iters;
}

static double n_eager_body(size_t size, long iters) { return n_eager(size, iters, 0); }
static double n_eager_pin_body(size_t size, long iters) { return n_eager(size, iters, 1); }

/* Only the commit is timed: the reservation and the unmap are already covered by the other cases. */
static double k_commit_body(size_t size, long iters)
{
    double total = 0;
    for (long i = 0; i < iters; i++) {
        void *p = k_alloc(size, VMM_FLAG_RESERVE | VMM_FLAG_LOCKED | VMM_FLAG_READ | VMM_FLAG_WRITE);
        double t0 = bench_now_ns();
        Retcode rc = KnVmCommit(p, size, VMM_FLAG_LOCKED);
        total += bench_now_ns() - t0;
        if (RC_FAILED(rc))
            bench_die_rc("KnVmCommit", rc);
        k_unmap(p, size);
    }
    return total / (double)iters;
}

static double n_commit(size_t size, long iters, int pin)
{
    double total = 0;
    for (long i = 0; i < iters; i++) {
        void *p = n_reserve(size);
        if (madvise(p, size, MADV_NOHUGEPAGE) != 0)
            bench_die_errno("madvise");
        double t0 = bench_now_ns();
        if (mprotect(p, size, PROT_READ | PROT_WRITE) != 0 || madvise(p, size, MADV_POPULATE_WRITE) != 0)
            bench_die_errno("mprotect/madvise");
        int pinned = !pin || mlock(p, size) == 0;
        total += bench_now_ns() - t0;
        munmap(p, size);
        if (!pinned)
            return -1;
    }
    return total / (double)iters;
}

static double n_commit_body(size_t size, long iters) { return n_commit(size, iters, 0); }
static double n_commit_pin_body(size_t size, long iters) { return n_commit(size, iters, 1); }

/* ---- (c) lookup ---- */

/* xorshift: cheap enough not to show in a ~100 ns lookup, and the same sequence cost on both sides. */
static size_t next_index(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (size_t)(rng_state % query_count);
}

static double k_query_body(size_t size, long iters)
{
    VmQueryInfo qi;
    double t0 = bench_now_ns();
    for (long i = 0; i < iters; i++) {
        Retcode rc = KnVmQuery(query_bases[next_index()], &qi);
        if (RC_FAILED(rc))
            bench_die_rc("KnVmQuery", rc);
        sink += qi.state;
    }
    return (bench_now_ns() - t0) / (double)iters;
}

/* mincore is the kernel looking up the same page in its own VMA tree: a reference point, not an equivalent. */
static double n_query_body(size_t size, long iters)
{
    unsigned char vec;
    double t0 = bench_now_ns();
    for (long i = 0; i < iters; i++) {
        if (mincore(query_bases[next_index()], page_size, &vec) != 0)
            bench_die_errno("mincore");
        sink += vec;
    }
    return (bench_now_ns() - t0) / (double)iters;
}

/* ---- measurement and reporting ---- */

static const char *fmt_time(double ns, char *buf, size_t len)
{
    if (ns < 0)
        snprintf(buf, len, "n/a");
    else if (ns < 1e3)
        snprintf(buf, len, "%.1f ns", ns);
    else if (ns < 1e6)
        snprintf(buf, len, "%.2f us", ns / 1e3);
    else if (ns < 1e9)
        snprintf(buf, len, "%.2f ms", ns / 1e6);
    else
        snprintf(buf, len, "%.3f s", ns / 1e9);
    return buf;
}

static void progress(const char *name, int round, int rounds)
{
    if (progress_tty)
        fprintf(stderr, "\r\033[Kkosvmm-bench-core: %s, round %d/%d", name, round + 1, rounds);
    else if (round == 0)
        fprintf(stderr, "kosvmm-bench-core: %s (%d rounds)\n", name, rounds);
}

static void print_row(const char *name, const double *k, const double *n, int rounds, long iters)
{
    char kb[32], nb[32], range[48] = "";
    double km = bench_median(k, rounds), nm = -1, rmin = 0, rmax = 0;
    int usable = 1;
    for (int r = 0; r < rounds; r++)
        usable &= n[r] > 0;
    if (usable) {
        nm = bench_median(n, rounds);
        rmin = rmax = k[0] / n[0];
        for (int r = 1; r < rounds; r++) {
            double q = k[r] / n[r];
            rmin = q < rmin ? q : rmin;
            rmax = q > rmax ? q : rmax;
        }
        snprintf(range, sizeof range, "%.2fx .. %.2fx", rmin, rmax);
    }
    char ratio[16] = "n/a";
    if (usable)
        snprintf(ratio, sizeof ratio, "%.2fx", km / nm);
    printf("%-44s %12s %12s %8s   %s\n", name, fmt_time(km, kb, sizeof kb), fmt_time(nm, nb, sizeof nb), ratio,
           usable ? range : "(native mlock refused: RLIMIT_MEMLOCK)");
    if (csv) {
        if (usable)
            fprintf(csv, "\"%s\",%.1f,%.1f,%.4f,%.4f,%.4f,%d,%ld\n", name, km, nm, km / nm, rmin, rmax, rounds, iters);
        else
            fprintf(csv, "\"%s\",%.1f,,,,,%d,%ld\n", name, km, rounds, iters);
    }
}

/* Runs variant 0 (kosvmm) against 1..nv-1 (native) in interleaved rounds, after one untimed warm-up of each,
 * so that drift in the machine (frequency, other load) hits both sides alike. One row per native variant. */
static void run_case(const char *name, const char *const labels[], body_fn fns[], int nv, size_t size, long iters,
                     int rounds)
{
    double t[MAX_VARIANTS][MAX_ROUNDS];
    for (int v = 0; v < nv; v++)
        fns[v](size, iters > 1 ? iters / 10 + 1 : 1);
    for (int r = 0; r < rounds; r++) {
        progress(name, r, rounds);
        for (int v = 0; v < nv; v++)
            t[v][r] = fns[v](size, iters);
    }
    if (progress_tty)
        fprintf(stderr, "\r\033[K");
    for (int v = 1; v < nv; v++)
        print_row(labels[v - 1], t[0], t[v], rounds, iters);
}

/* ---- (d) handle transfer ---- */

/*
 * One round trip = send a handle (read-only copy of a read-write MDL buffer) + the peer receives it,
 * closes it and acknowledges with one byte; natively: sendmsg(SCM_RIGHTS) of a memfd + recvmsg + close +
 * a one-byte ack. The peer is a fork of this process that serves both kinds of round trip in batches.
 */
enum { RT_KOSVMM = 1, RT_RAW = 2, RT_DONE = 3 };

static kosvmm_channel *rt_channel;      /* ours; the peer holds the other end */
static int rt_raw = -1;                 /* a SOCK_SEQPACKET pair for the native side */
static pid_t rt_peer = -1;
static Handle rt_handle = INVALID_HANDLE;
static int rt_memfd = -1;

static void rt_die(const char *what, Retcode rc)
{
    if (rt_peer > 0)
        kill(rt_peer, SIGKILL);
    bench_die_rc(what, rc);
}

static int rt_serve(kosvmm_channel *ch, int raw)
{
    for (;;) {
        uint32_t cmd[2];
        rtl_size_t n;
        if (RC_FAILED(kosvmm_channel_recv(ch, RTL_NULL, cmd, sizeof cmd, &n)) || n != sizeof cmd)
            return 1;
        if (cmd[0] == RT_DONE)
            return 0;
        for (uint32_t i = 0; i < cmd[1]; i++) {
            char byte = 'a';
            if (cmd[0] == RT_KOSVMM) {
                Handle h;
                if (RC_FAILED(kosvmm_channel_recv(ch, &h, RTL_NULL, 0, RTL_NULL)) || RC_FAILED(KnHandleClose(h)) ||
                    RC_FAILED(kosvmm_channel_send(ch, &byte, 1)))
                    return 1;
            } else if (cli_fd_serve_one(raw) != 0) {
                return 1;
            }
        }
    }
}

static void rt_start(void)
{
    kosvmm_channel *theirs;
    int sv[2];
    Retcode rc = kosvmm_channel_pair(&rt_channel, &theirs);
    if (RC_FAILED(rc))
        bench_die_rc("kosvmm_channel_pair", rc);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        bench_die_errno("socketpair");
    if (RC_FAILED(rc = KnPmmMdlCreate((rtl_size_t)page_size, VMM_FLAG_READ | VMM_FLAG_WRITE, &rt_handle)))
        bench_die_rc("KnPmmMdlCreate", rc);
    if ((rt_memfd = memfd_create("bench-raw", MFD_CLOEXEC)) < 0 || ftruncate(rt_memfd, (off_t)page_size) != 0)
        bench_die_errno("memfd_create");
    fflush(NULL);
    rt_peer = fork();
    if (rt_peer < 0)
        bench_die_errno("fork");
    if (rt_peer == 0) {
        kosvmm_channel_close(rt_channel);
        close(sv[0]);
        /* The peer stands for an unrelated process: it holds the buffer only through what it
         * receives (an inherited handle would spare its imports the seal check). */
        KnHandleClose(rt_handle);
        _exit(rt_serve(theirs, sv[1]));
    }
    kosvmm_channel_close(theirs);
    close(sv[1]);
    rt_raw = sv[0];
}

static void rt_stop(void)
{
    uint32_t done[2] = {RT_DONE, 0};
    int status;
    kosvmm_channel_send(rt_channel, done, sizeof done);
    if (waitpid(rt_peer, &status, 0) != rt_peer || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "kosvmm-bench-core: the round-trip peer failed\n");
    kosvmm_channel_close(rt_channel);
    close(rt_raw);
    close(rt_memfd);
    KnHandleClose(rt_handle);
}

static void rt_command(uint32_t kind, long iters)
{
    uint32_t cmd[2] = {kind, (uint32_t)iters};
    Retcode rc = kosvmm_channel_send(rt_channel, cmd, sizeof cmd);
    if (RC_FAILED(rc))
        rt_die("kosvmm_channel_send", rc);
}

#define RT_MAX_ITERS 10000
static double rt_times[RT_MAX_ITERS];

/* A round trip is two context switches on one CPU; on a loaded machine another task's time slice
 * lands in some of them and dwarfs the rest, so each round reports the median round trip rather
 * than the mean. */
static double k_transfer_body(size_t size, long iters)
{
    (void)size;
    char byte;
    rt_command(RT_KOSVMM, iters);
    for (long i = 0; i < iters; i++) {
        double t0 = bench_now_ns();
        Retcode rc = kosvmm_channel_send_handle(rt_channel, rt_handle, VMM_FLAG_READ, RTL_NULL, 0);
        if (RC_FAILED(rc))
            rt_die("kosvmm_channel_send_handle", rc);
        if (RC_FAILED(rc = kosvmm_channel_recv(rt_channel, RTL_NULL, &byte, 1, RTL_NULL)))
            rt_die("kosvmm_channel_recv", rc);
        rt_times[i] = bench_now_ns() - t0;
    }
    return bench_median(rt_times, (int)iters);
}

static double n_transfer_body(size_t size, long iters)
{
    (void)size;
    rt_command(RT_RAW, iters);
    for (long i = 0; i < iters; i++) {
        double t0 = bench_now_ns();
        if (cli_fd_round_trip(rt_raw, rt_memfd) != 0) {
            kill(rt_peer, SIGKILL);
            bench_die_errno("raw round trip");
        }
        rt_times[i] = bench_now_ns() - t0;
    }
    return bench_median(rt_times, (int)iters);
}

/* Pins this process and the peer: both to cpus[0] (one CPU, so every wake-up is a context switch on it), or
 * this one to cpus[0] and the peer to cpus[1]. */
static void rt_pin(const int cpus[2], int one_cpu)
{
    cpu_set_t a, b;
    CPU_ZERO(&a);
    CPU_ZERO(&b);
    CPU_SET(cpus[0], &a);
    CPU_SET(cpus[one_cpu ? 0 : 1], &b);
    if (sched_setaffinity(0, sizeof a, &a) != 0 || sched_setaffinity(rt_peer, sizeof b, &b) != 0) {
        kill(rt_peer, SIGKILL);
        bench_die_errno("sched_setaffinity");
    }
}

/* Rounds interleave everything compared: (one CPU: kosvmm, native), (two CPUs: kosvmm, native), ... */
static void run_transfer(long iters, int rounds)
{
    static double t[4][MAX_ROUNDS];
    cpu_set_t all;
    int cpus[2] = {-1, -1}, ncpus = 0;
    if (sched_getaffinity(0, sizeof all, &all) != 0)
        bench_die_errno("sched_getaffinity");
    for (int c = 0; c < CPU_SETSIZE && ncpus < 2; c++)
        if (CPU_ISSET(c, &all))
            cpus[ncpus++] = c;
    rt_start();
    int configs = ncpus >= 2 ? 2 : 1;
    for (int cfg = 0; cfg < configs; cfg++) { /* untimed warm-up */
        rt_pin(cpus, cfg == 0);
        k_transfer_body(0, iters / 10 + 1);
        n_transfer_body(0, iters / 10 + 1);
    }
    for (int r = 0; r < rounds; r++) {
        progress("handle transfer round trip", r, rounds);
        for (int cfg = 0; cfg < configs; cfg++) {
            rt_pin(cpus, cfg == 0);
            t[2 * cfg][r] = k_transfer_body(0, iters);
            t[2 * cfg + 1][r] = n_transfer_body(0, iters);
        }
    }
    if (progress_tty)
        fprintf(stderr, "\r\033[K");
    rt_stop();
    sched_setaffinity(0, sizeof all, &all);
    char name[96];
    snprintf(name, sizeof name, "handle round trip, 1 CPU (cpu %d)", cpus[0]);
    print_row(name, t[0], t[1], rounds, iters);
    if (configs == 2) {
        snprintf(name, sizeof name, "handle round trip, 2 CPUs (cpus %d, %d)", cpus[0], cpus[1]);
        print_row(name, t[2], t[3], rounds, iters);
    } else {
        printf("%-44s %12s %12s %8s   %s\n", "handle round trip, 2 CPUs", "n/a", "n/a", "n/a",
               "(only one CPU allowed)");
    }
}

static long anon_huge_kib(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* What a LOCKED commit really did on this machine: pinned or not, and whether THP gave it huge pages. */
static void probe_locked(size_t size, char *out, size_t len)
{
    kosvmm_stats before = {.size = sizeof(kosvmm_stats)}, after = {.size = sizeof(kosvmm_stats)};
    if (RC_FAILED(kosvmm_get_stats(&before)))
        bench_die_rc("kosvmm_get_stats", rcInvalidArgument);
    long huge0 = anon_huge_kib();
    void *p = k_alloc(size, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | VMM_FLAG_READ | VMM_FLAG_WRITE);
    long huge1 = anon_huge_kib();
    Retcode rc = kosvmm_get_stats(&after);
    if (RC_FAILED(rc))
        bench_die_rc("kosvmm_get_stats", rc);
    k_unmap(p, size);
    snprintf(out, len, "pinned_bytes %llu of %zu, pin_refusals +%llu, AnonHugePages +%ld kB",
             (unsigned long long)(after.pinned_bytes - before.pinned_bytes), size,
             (unsigned long long)(after.pin_refusals - before.pin_refusals), huge1 - huge0);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: kosvmm-bench-core [--rounds N] [--quick] [--csv FILE] [--only GROUP]\n"
                 "kosvmm calls against the raw Linux calls doing the same job, in interleaved rounds.\n"
                 "  --rounds N   interleaved rounds per case (default 7, 3 with --quick), at most %d\n"
                 "  --quick      fewer iterations and 64 MiB instead of 1 GiB commits (CI smoke test)\n"
                 "  --csv FILE   also write the rows as CSV\n"
                 "  --only GROUP run one group of cases: reserve, commit, query or transfer\n"
                 "  --help       this text\n", MAX_ROUNDS);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"rounds", required_argument, NULL, 'r'}, {"quick", no_argument, NULL, 'q'},
        {"csv", required_argument, NULL, 'c'}, {"only", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int rounds = 0, rounds_set = 0, quick = 0, c;
    const char *csv_path = NULL, *only = NULL;
    while ((c = getopt_long(argc, argv, "r:qc:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'r': {
            uint64_t n;
            if (cli_parse_uint(optarg, 1, MAX_ROUNDS, &n) != 0) {
                fprintf(stderr, "kosvmm-bench-core: --rounds '%s': expected 1..%d\n", optarg, MAX_ROUNDS);
                return 2;
            }
            rounds = (int)n;
            rounds_set = 1;
            break;
        }
        case 'q': quick = 1; break;
        case 'c': csv_path = optarg; break;
        case 'o': only = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    static const char *const groups[] = {"reserve", "commit", "query", "transfer"};
    int run[4] = {1, 1, 1, 1};
    if (only) {
        int known = 0;
        for (int g = 0; g < 4; g++)
            known |= run[g] = strcmp(only, groups[g]) == 0;
        if (!known) {
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || (rounds_set && (rounds < 1 || rounds > MAX_ROUNDS))) {
        usage(stderr);
        return 2;
    }
    if (!rounds_set)
        rounds = quick ? 3 : 7;
    if (csv_path) {
        if (!(csv = fopen(csv_path, "w")))
            bench_die_errno(csv_path);
        fprintf(csv, "case,kosvmm_median_ns,native_median_ns,ratio,ratio_min,ratio_max,rounds,iterations\n");
    }
    progress_tty = isatty(STDERR_FILENO);
    page_size = (size_t)sysconf(_SC_PAGESIZE);

    /* Three live copies can exist at once (probe aside, one per variant in turn), so leave the machine headroom. */
    size_t commit_size = quick ? 64 * MIB : GIB;
    long avail_kib = bench_meminfo_kib("MemAvailable:");
    while (avail_kib > 0 && commit_size > 64 * MIB && commit_size / KIB * 3 > (size_t)avail_kib)
        commit_size /= 2;
    const long reserve_iters = quick ? 2000 : 20000, query_iters = quick ? 50000 : 500000;
    const long transfer_iters = quick ? 300 : 3000;
    const size_t region_counts[] = {1, 1000, 100000};

    struct utsname uts;
    struct rlimit ml;
    char thp[128], tb[32], sz[16], probe[160], name[96];
    uname(&uts);
    getrlimit(RLIMIT_MEMLOCK, &ml);
    bench_read_line("/sys/kernel/mm/transparent_hugepage/enabled", thp, sizeof thp);
    if (run[1])
        probe_locked(commit_size, probe, sizeof probe);
    else
        snprintf(probe, sizeof probe, "not probed (--only)");

    printf("kosvmm-bench-core: Linux %s %s, page %zu B, euid %d, RLIMIT_MEMLOCK %s, THP \"%s\"\n", uts.release,
           uts.machine, page_size, (int)geteuid(),
           ml.rlim_cur == RLIM_INFINITY ? "unlimited" : bench_fmt_size((size_t)ml.rlim_cur, tb, sizeof tb), thp);
    printf("%d interleaved rounds per case (kosvmm, native, kosvmm, native, ...); medians of per-operation means%s\n",
           rounds, quick ? "; --quick" : "");
    printf("LOCKED commit of %s, probed once: %s\n\n", bench_fmt_size(commit_size, sz, sizeof sz), probe);
    printf("%-44s %12s %12s %8s   %s\n", "case", "kosvmm", "native", "ratio", "per-round ratio range");

    static const char *const l_reserve64[] = {"reserve+unmap 64 KiB"};
    static const char *const l_reserve1g[] = {"reserve+unmap 1 GiB"};
    body_fn reserve_fns[] = {k_reserve_body, n_reserve_body};
    if (run[0]) {
        run_case("reserve+unmap 64 KiB", l_reserve64, reserve_fns, 2, 64 * KIB, reserve_iters, rounds);
        run_case("reserve+unmap 1 GiB", l_reserve1g, reserve_fns, 2, GIB, reserve_iters, rounds);
    }

    char l_eager[2][96], l_commit[2][96];
    bench_fmt_size(commit_size, sz, sizeof sz);
    snprintf(l_eager[0], sizeof l_eager[0], "alloc COMMIT|LOCKED+unmap %s", sz);
    snprintf(l_eager[1], sizeof l_eager[1], "  same, native incl. mlock");
    snprintf(l_commit[0], sizeof l_commit[0], "KnVmCommit %s into LOCKED reservation", sz);
    snprintf(l_commit[1], sizeof l_commit[1], "  same, native incl. mlock");
    const char *const le[] = {l_eager[0], l_eager[1]}, *const lc[] = {l_commit[0], l_commit[1]};
    body_fn eager_fns[] = {k_eager_body, n_eager_body, n_eager_pin_body};
    body_fn commit_fns[] = {k_commit_body, n_commit_body, n_commit_pin_body};
    if (run[1]) {
        run_case(l_eager[0], le, eager_fns, 3, commit_size, 1, rounds);
        run_case(l_commit[0], lc, commit_fns, 3, commit_size, 1, rounds);
    }

    body_fn query_fns[] = {k_query_body, n_query_body};
    for (size_t i = 0; run[2] && i < sizeof region_counts / sizeof region_counts[0]; i++) {
        size_t want = region_counts[i];
        query_bases = calloc(want, sizeof(void *));
        if (!query_bases)
            bench_die_errno("calloc");
        /* Stops early rather than failing when the kernel runs out of map entries (vm.max_map_count). */
        for (query_count = 0; query_count < want; query_count++) {
            query_bases[query_count] = KnVmAllocate(RTL_NULL, page_size, VMM_FLAG_RESERVE | VMM_FLAG_READ);
            if (query_bases[query_count] == RTL_NULL)
                break;
        }
        if (query_count == 0)
            bench_die_rc("KnVmAllocate", kosvmm_last_error());
        snprintf(name, sizeof name, "KnVmQuery, %zu region%s%s", query_count, query_count == 1 ? "" : "s",
                 query_count < want ? " (kernel refused more)" : "");
        const char *const lq[] = {name};
        run_case(name, lq, query_fns, 2, page_size, query_iters, rounds);
        for (size_t j = 0; j < query_count; j++)
            k_unmap(query_bases[j], page_size);
        free(query_bases);
    }

    if (run[3])
        run_transfer(transfer_iters, rounds);

    kosvmm_stats st = {.size = sizeof(kosvmm_stats)};
    Retcode rc = kosvmm_get_stats(&st);
    if (RC_FAILED(rc))
        bench_die_rc("kosvmm_get_stats", rc);
    printf("\nnative baselines:\n"
           "  reserve:      mmap(PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE) + munmap\n"
           "  alloc commit: mmap(RW) + madvise(MADV_NOHUGEPAGE) + madvise(MADV_POPULATE_WRITE) [+ mlock] + munmap\n"
           "  KnVmCommit:   mprotect(RW) + madvise(MADV_POPULATE_WRITE) [+ mlock] on a PROT_NONE MADV_NOHUGEPAGE\n"
           "                reservation; only the commit is timed on both sides\n"
           "  KnVmQuery:    mincore() of one page at the same random region bases: the kernel's own lookup, a\n"
           "                system call, so a reference point for the O(log n) growth, not an equivalent operation;\n"
           "                lookups go to random regions, so with many regions cache misses add to the tree walk\n"
           "  handle:       kosvmm_channel_send_handle(READ-only copy of a READ|WRITE one-page MDL buffer) + the\n"
           "                peer's kosvmm_channel_recv + KnHandleClose + a 1-byte kosvmm_channel_send back, against\n"
           "                sendmsg(SCM_RIGHTS, memfd) + recvmsg + close + 1-byte send back on a SEQPACKET pair;\n"
           "                the peer is a forked process; \"1 CPU\" pins both to one CPU (every message is a\n"
           "                context switch there), \"2 CPUs\" pins them to two (wake-up latency dominates);\n"
           "                each round reports the median of its round trips, not their mean\n"
           "notes:\n"
           "  THP is disabled in the native baselines (MADV_NOHUGEPAGE) so they fault 4 KiB pages; the probe line\n"
           "  above shows whether kosvmm's commit got huge pages (AnonHugePages) on this machine.\n"
           "  LOCKED commits are pinned with mlock only as root or when RLIMIT_MEMLOCK allows; otherwise they are\n"
           "  populated but not pinned. This run: %llu LOCKED commit(s) could not be pinned (pin_refusals).\n"
           "  ratio = kosvmm median / native median; below 1.00x kosvmm was faster.\n",
           (unsigned long long)st.pin_refusals);
    if (csv)
        fclose(csv);
    return 0;
}
