/* SPDX-License-Identifier: MIT */
/* tests/test_limits.c — kernel limits: vm.max_map_count exhaustion, RLIMIT_MEMLOCK (unpinned full commits), RLIMIT_AS. */
#include "testutil.h"

#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)

static size_t P(void)
{
    return tu_page();
}

static char *pg(void *base, size_t i)
{
    return (char *)base + i * tu_page();
}

/* A "Name:   123 kB" field of /proc/self/status, in kB. */
static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "re");
    ck_assert_ptr_nonnull(f);
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0) {
            v = strtol(line + n, NULL, 10);
            break;
        }
    fclose(f);
    ck_assert_msg(v >= 0, "no %s in /proc/self/status", field);
    return v;
}

/* ---- /proc/self/maps, parsed once into a preallocated array (no allocation at the limit) ----- */

typedef struct map_range {
    uintptr_t lo, hi;
    char perms[4];
} map_range;

static char maps_buf[1 << 16];

/* Fills r[0..cap) with the mappings, in address order; returns how many (or -1 past cap). */
static long parse_maps(map_range *r, long cap)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    long n = 0;
    size_t have = 0;
    for (;;) {
        ssize_t got = read(fd, maps_buf + have, sizeof maps_buf - have);
        ck_assert_int_ge(got, 0);
        have += (size_t)got;
        char *line = maps_buf, *end = maps_buf + have, *nl;
        while ((nl = memchr(line, '\n', (size_t)(end - line))) != NULL) {
            *nl = 0;
            unsigned long lo, hi;
            char p[5];
            if (sscanf(line, "%lx-%lx %4s", &lo, &hi, p) == 3) {
                if (n >= cap) {
                    close(fd);
                    return -1;
                }
                r[n].lo = lo;
                r[n].hi = hi;
                memcpy(r[n].perms, p, 4);
                n++;
            }
            line = nl + 1;
        }
        have = (size_t)(end - line);
        memmove(maps_buf, line, have);
        if (got == 0)
            break;
    }
    close(fd);
    return n;
}

static const map_range *find_range(const map_range *r, long n, uintptr_t a)
{
    long lo = 0, hi = n - 1;
    while (lo <= hi) {
        long mid = lo + (hi - lo) / 2;
        if (a < r[mid].lo)
            hi = mid - 1;
        else if (a >= r[mid].hi)
            lo = mid + 1;
        else
            return &r[mid];
    }
    return NULL;
}

/* KnVmQuery and the kernel agree on every page of [base, base + npages); returns the committed count. */
static size_t check_agreement(char *base, size_t npages, const map_range *r, long n)
{
    size_t committed = 0;
    for (size_t i = 0; i < npages; i++) {
        VmQueryInfo q;
        ck_assert_uint_eq(KnVmQuery(pg(base, i), &q), rcOk);
        ck_assert_msg(q.regionBase == base, "page %zu: regionBase %p, expected %p", i, q.regionBase, (void *)base);
        const map_range *m = find_range(r, n, (uintptr_t)pg(base, i));
        ck_assert_msg(m != NULL, "page %zu of the region is not in /proc/self/maps", i);
        const char *want = tu_expected_perms(q.state, q.protection);
        ck_assert_msg(memcmp(m->perms, want, 4) == 0, "page %zu: KnVmQuery state %u prot %u, but maps says %.4s", i,
                      q.state, q.protection, m->perms);
        committed += q.state == VMM_PAGE_STATE_COMMITTED;
    }
    return committed;
}

/* ---- vm.max_map_count ---------------------------------------------------------------------- */

START_TEST(test_max_map_count)
{
    long max_maps = tu_read_long("/proc/sys/vm/max_map_count");
    ck_assert_int_gt(max_maps, 0);
    ck_assert_msg(max_maps <= 1000000, "vm.max_map_count %ld is too large for this test", max_maps);
    long cap = max_maps + 4096;
    map_range *ranges = malloc((size_t)cap * sizeof *ranges); /* before the limit is reached */
    ck_assert_ptr_nonnull(ranges);
    memset(ranges, 0, (size_t)cap * sizeof *ranges);

    kosvmm_stats s0 = tu_stats();
    /* Each single-page commit in the middle of the reservation splits its VMA in three: two more
     * map entries per commit, so max_map_count/2 commits (plus a margin) reach the limit. */
    size_t npages = (size_t)max_maps + 2048;
    char *r = KnVmAllocate(RTL_NULL, npages * P(), VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(r);

    size_t ok = 0;
    Retcode rc = rcOk;
    size_t k;
    for (k = 0; 2 * k + 1 < npages - 64 && k < (size_t)max_maps; k++) {
        rc = KnVmCommit(pg(r, 2 * k + 1), P(), VMM_FLAG_LOCKED);
        if (rc != rcOk)
            break;
        ok++;
    }
    ck_assert_msg(rc == rcOutOfMemory, "after %zu single-page commits: rc %#x, expected rcOutOfMemory", ok,
                  (unsigned)rc);
    ck_assert_uint_gt(ok, 100);
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_gt(s1.kernel_refusals, s0.kernel_refusals);

    /* Page by page, KnVmQuery agrees with the kernel. */
    long n = parse_maps(ranges, cap);
    ck_assert_int_gt(n, 0);
    ck_assert_int_ge(n, max_maps - 8); /* we really are at the limit */
    size_t committed = check_agreement(r, npages, ranges, n);
    ck_assert_msg(committed == ok || committed == ok + 1, "%zu pages committed by Query after %zu commits", committed,
                  ok);
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes + committed * P());
    /* The committed pages hold memory that works. */
    for (size_t i = 0; i < ok; i += 97)
        *(volatile char *)pg(r, 2 * i + 1) = 1;

    /* At the limit, other operations either work or fail with rcOutOfMemory; the two views still agree. */
    ck_assert_uint_eq(KnVmDecommit(pg(r, 1), P()), rcOk); /* merges entries: always possible */
    ck_assert_uint_eq(KnVmCommit(pg(r, 1), P(), VMM_FLAG_LOCKED), rcOk); /* back to the count it had */
    rc = KnVmProtect(pg(r, 3), 2 * P(), VMM_FLAG_READ); /* a committed page and a reserved one */
    ck_assert_msg(rc == rcOk || rc == rcOutOfMemory, "protect at the limit: %#x", (unsigned)rc);
    rc = KnVmUnmap(pg(r, npages - 10), P()); /* the middle of the untouched tail: needs a split */
    ck_assert_msg(rc == rcOk || rc == rcOutOfMemory, "unmap at the limit: %#x", (unsigned)rc);
    VmQueryInfo q;
    ck_assert_uint_eq(KnVmQuery(pg(r, npages - 10), &q), rcOk);
    if (rc == rcOk) {
        ck_assert_uint_eq(q.state, VMM_PAGE_STATE_FREE);
        ck_assert(!tu_is_mapped(pg(r, npages - 10)));
    } else {
        ck_assert_uint_eq(q.state, VMM_PAGE_STATE_RESERVED);
        ck_assert(tu_is_mapped(pg(r, npages - 10)));
    }
    size_t head = npages - 16; /* the part of r that is surely still one region */

    /* Multi-page operations at the limit, which may need splits: each works or fails with
     * rcOutOfMemory (possibly part-way); after each, Query, the kernel and the counters agree. */
    const struct { int op; size_t first, count; int prot; } at_limit[] = {
        { 1, npages - 200, 7, 0 },             /* reset reserved tail pages (they become committed) */
        { 0, npages - 400, 50, 0 },            /* commit in the middle of the tail */
        { 2, npages - 300, 9, VMM_FLAG_READ }, /* protect reserved tail pages: only recorded */
        { 0, 2 * ok - 5, 12, 0 },              /* commit: end of the committed zone into the tail */
        { 2, 2 * ok - 20, 40, VMM_FLAG_READ }, /* protect a mixed range */
        { 3, 100, 50, 0 },                     /* decommit in the committed zone */
        { 0, 2 * ok + 100, 3, 0 },             /* commit in the tail after the decommit freed entries */
    };
    for (unsigned i = 0; i < sizeof at_limit / sizeof at_limit[0]; i++) {
        char *va = pg(r, at_limit[i].first);
        size_t len = at_limit[i].count * P();
        switch (at_limit[i].op) {
        case 0: rc = KnVmCommit(va, len, VMM_FLAG_LOCKED); break;
        case 1: rc = KnVmReset(va, len); break;
        case 2: rc = KnVmProtect(va, len, at_limit[i].prot); break;
        default: rc = KnVmDecommit(va, len); break;
        }
        ck_assert_msg(rc == rcOk || rc == rcOutOfMemory, "operation %u at the limit: %#x", i, (unsigned)rc);
        if (at_limit[i].op == 3)
            ck_assert_msg(rc == rcOk, "decommit (which only merges map entries) failed: %#x", (unsigned)rc);
        n = parse_maps(ranges, cap);
        ck_assert_int_gt(n, 0);
        size_t c = check_agreement(r, head, ranges, n);
        kosvmm_stats si = tu_stats();
        ck_assert_msg(si.committed_bytes == s0.committed_bytes + c * P(),
                      "operation %u (rc %#x): committed_bytes %llu, Query counts %zu committed pages", i,
                      (unsigned)rc, (unsigned long long)(si.committed_bytes - s0.committed_bytes), c);
        ck_assert_uint_eq(si.committed_bytes, si.lazy_bytes + si.locked_bytes);
    }

    void *extra = KnVmAllocate(RTL_NULL, P(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    if (extra == RTL_NULL)
        ck_assert_uint_eq(kosvmm_last_error(), rcOutOfMemory);
    n = parse_maps(ranges, cap);
    ck_assert_int_gt(n, 0);
    check_agreement(r, head, ranges, n);

    /* Leaving the limit: decommit everything, then free it. */
    ck_assert_uint_eq(KnVmDecommit(r, head * P()), rcOk);
    n = parse_maps(ranges, cap);
    check_agreement(r, head, ranges, n);
    for (size_t i = 0; i < head; i++) {
        ck_assert_uint_eq(KnVmQuery(pg(r, i), &q), rcOk);
        ck_assert_uint_eq(q.state, VMM_PAGE_STATE_RESERVED);
    }
    if (extra)
        ck_assert_uint_eq(KnVmUnmap(extra, P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(r, head * P()), rcOk);
    for (size_t i = head; i < npages; i++) {
        ck_assert_uint_eq(KnVmQuery(pg(r, i), &q), rcOk);
        if (q.state != VMM_PAGE_STATE_FREE)
            ck_assert_uint_eq(KnVmUnmap(pg(r, i), P()), rcOk);
    }
    ck_assert(!tu_is_mapped(r));
    ck_assert(!tu_is_mapped(pg(r, npages - 1)));
    kosvmm_stats s2 = tu_stats();
    ck_assert_uint_eq(s2.regions, s0.regions);
    ck_assert_uint_eq(s2.reserved_bytes, s0.reserved_bytes);
    ck_assert_uint_eq(s2.committed_bytes, s0.committed_bytes);

    /* The process is usable again: new regions, commits, splits, ordinary mallocs. */
    char *again = KnVmAllocate(RTL_NULL, 64 * P(), VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(again);
    for (size_t i = 1; i < 64; i += 2)
        ck_assert_uint_eq(KnVmCommit(pg(again, i), P(), VMM_FLAG_LOCKED), rcOk);
    for (size_t i = 1; i < 64; i += 2)
        pg(again, i)[0] = (char)i;
    n = parse_maps(ranges, cap);
    check_agreement(again, 64, ranges, n);
    ck_assert_uint_eq(KnVmUnmap(again, 64 * P()), rcOk);
    void *big = malloc(8u << 20);
    ck_assert_ptr_nonnull(big);
    memset(big, 1, 8u << 20);
    free(big);
    free(ranges);
}
END_TEST

/* ---- RLIMIT_MEMLOCK ------------------------------------------------------------------------- */

/* Makes RLIMIT_MEMLOCK binding for this (forked) process: root's CAP_IPC_LOCK would let mlock ignore
 * it. Drops the capability with capset (and from the bounding set); as a last resort, when still
 * root, switches to uid/gid 65534. Returns 1 when mlock is now bound by the limit. */
static int make_memlock_binding(void)
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    const unsigned idx = CAP_IPC_LOCK / 32, bit = 1u << (CAP_IPC_LOCK % 32);
    if (syscall(SYS_capget, &hdr, data) == 0) {
        if (!(data[idx].effective & bit))
            return 1;
        (void)prctl(PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0);
        data[idx].effective &= ~bit;
        data[idx].permitted &= ~bit;
        data[idx].inheritable &= ~bit;
        if (syscall(SYS_capset, &hdr, data) == 0) {
            memset(data, 0, sizeof data);
            if (syscall(SYS_capget, &hdr, data) == 0 && !(data[idx].effective & bit))
                return 1;
        }
    }
    if (geteuid() == 0 && setresgid(65534, 65534, 65534) == 0 && setresuid(65534, 65534, 65534) == 0)
        return 1;
    return 0;
}

#define LOCK_PAGES 16

START_TEST(test_memlock_limit_unpinned)
{
    ck_assert_msg(make_memlock_binding(), "cannot make RLIMIT_MEMLOCK binding (CAP_IPC_LOCK cannot be dropped)");
    struct rlimit saved, rl;
    ck_assert_int_eq(getrlimit(RLIMIT_MEMLOCK, &saved), 0);
    rl = saved;
    rl.rlim_cur = _i == 0 ? 0 : P(); /* no room at all / room for one page only */
    ck_assert_int_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);

    kosvmm_stats s0 = tu_stats();
    char *p = KnVmAllocate(RTL_NULL, LOCK_PAGES * P(),
                           VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW);
    ck_assert_msg(p != RTL_NULL, "COMMIT|LOCKED allocation failed under a small RLIMIT_MEMLOCK: %#x",
                  (unsigned)kosvmm_last_error());
    ck_assert_uint_eq(kosvmm_last_error(), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, LOCK_PAGES * P()), LOCK_PAGES); /* populated anyway */
    for (size_t i = 0; i < LOCK_PAGES; i++) {
        VmQueryInfo q;
        ck_assert_uint_eq(KnVmQuery(pg(p, i), &q), rcOk);
        ck_assert_uint_eq(q.state, VMM_PAGE_STATE_COMMITTED);
        ck_assert_uint_ne(q.attributes & VMM_PAGE_ATTR_LOCKED, 0);
        ck_assert_msg(!(q.attributes & VMM_PAGE_ATTR_PINNED), "page %zu reported PINNED (attributes %#x)", i,
                      q.attributes);
    }
    ck_assert_int_eq(status_kb("VmLck:"), 0);
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_gt(s1.pin_refusals, s0.pin_refusals);
    ck_assert_uint_eq(s1.pinned_bytes, s0.pinned_bytes);
    ck_assert_uint_eq(s1.locked_bytes, s0.locked_bytes + LOCK_PAGES * P());
    memset(p, 0x77, LOCK_PAGES * P());
    ck_assert_int_eq(p[LOCK_PAGES * P() - 1], 0x77);

    /* A LOCKED reservation committed later: the same. */
    char *l = KnVmAllocate(RTL_NULL, LOCK_PAGES * P(), VMM_FLAG_RESERVE | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(tu_resident_pages(l, LOCK_PAGES * P()), 0);
    ck_assert_uint_eq(KnVmCommit(l, LOCK_PAGES * P(), VMM_FLAG_LOCKED), rcOk);
    ck_assert_int_eq(tu_resident_pages(l, LOCK_PAGES * P()), LOCK_PAGES);
    VmQueryInfo q;
    ck_assert_uint_eq(KnVmQuery(pg(l, 3), &q), rcOk);
    ck_assert_uint_ne(q.attributes & VMM_PAGE_ATTR_LOCKED, 0);
    ck_assert_uint_eq(q.attributes & VMM_PAGE_ATTR_PINNED, 0);
    kosvmm_stats s2 = tu_stats();
    ck_assert_uint_gt(s2.pin_refusals, s1.pin_refusals);
    ck_assert_uint_eq(s2.pinned_bytes, s0.pinned_bytes);
    ck_assert_int_eq(status_kb("VmLck:"), 0);

    /* Control: with the limit raised again (up to the hard limit), the same call pins. */
    if (saved.rlim_max == RLIM_INFINITY || saved.rlim_max >= 4 * LOCK_PAGES * P()) {
        rl.rlim_cur = saved.rlim_max == RLIM_INFINITY ? 4 * LOCK_PAGES * P() : saved.rlim_max;
        ck_assert_int_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
        char *pinned = KnVmAllocate(RTL_NULL, LOCK_PAGES * P(),
                                    VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW);
        ck_assert_ptr_nonnull(pinned);
        ck_assert_uint_eq(KnVmQuery(pinned, &q), rcOk);
        ck_assert_uint_ne(q.attributes & VMM_PAGE_ATTR_PINNED, 0);
        ck_assert_int_ge(status_kb("VmLck:"), (long)(LOCK_PAGES * P() / 1024));
        ck_assert_uint_eq(tu_stats().pinned_bytes, s0.pinned_bytes + LOCK_PAGES * P());
        ck_assert_uint_eq(KnVmUnmap(pinned, LOCK_PAGES * P()), rcOk);
        ck_assert_int_eq(status_kb("VmLck:"), 0);
    } else {
        ck_assert_uint_lt(saved.rlim_max, 4 * LOCK_PAGES * P());
    }

    ck_assert_uint_eq(KnVmUnmap(p, LOCK_PAGES * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(l, LOCK_PAGES * P()), rcOk);
    kosvmm_stats s3 = tu_stats();
    ck_assert_uint_eq(s3.regions, s0.regions);
    ck_assert_uint_eq(s3.locked_bytes, s0.locked_bytes);
    ck_assert_uint_eq(s3.pinned_bytes, s0.pinned_bytes);
}
END_TEST

/* ---- RLIMIT_AS ------------------------------------------------------------------------------ */

START_TEST(test_rlimit_as)
{
    const size_t gig = (size_t)1 << 30;
    /* A fixed address known to be free: reserve, then release, 2 GiB. */
    char *fixed = KnVmAllocate(RTL_NULL, 2 * gig, VMM_FLAG_RESERVE);
    ck_assert_ptr_nonnull(fixed);
    ck_assert_uint_eq(KnVmUnmap(fixed, 2 * gig), rcOk);
    /* An existing region whose state must survive. */
    char *keep = KnVmAllocate(RTL_NULL, 4 * P(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(keep);
    memset(keep, 0x3C, 4 * P());
    VmQueryInfo kq0;
    ck_assert_uint_eq(KnVmQuery(keep, &kq0), rcOk);

    struct rlimit saved, rl;
    ck_assert_int_eq(getrlimit(RLIMIT_AS, &saved), 0);
    rl = saved;
    rl.rlim_cur = (rlim_t)status_kb("VmSize:") * 1024 + 256u * 1024 * 1024; /* 256 MiB of headroom */
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);

    kosvmm_stats s0 = tu_stats();
    long lines0;
    unsigned long bytes0;
    tu_maps_totals(&lines0, &bytes0);

    static const int flag_sets[] = {
        VMM_FLAG_RESERVE | RW,
        VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW,
        VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW,
        VMM_FLAG_RESERVE | RW | VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD,
    };
    for (unsigned i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
        void *p = KnVmAllocate(RTL_NULL, gig, flag_sets[i]);
        ck_assert_msg(p == RTL_NULL, "1 GiB allocation (flags %#x) succeeded under RLIMIT_AS", flag_sets[i]);
        ck_assert_msg(kosvmm_last_error() == rcOutOfMemory, "flags %#x: last error %#x, expected rcOutOfMemory",
                      flag_sets[i], (unsigned)kosvmm_last_error());
    }
    void *p = KnVmAllocate(fixed, gig, VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_null(p);
    ck_assert_uint_eq(kosvmm_last_error(), rcOutOfMemory);
    ck_assert(!tu_is_mapped(fixed));
    VmQueryInfo q;
    ck_assert_uint_eq(KnVmQuery(fixed, &q), rcOk);
    ck_assert_uint_eq(q.state, VMM_PAGE_STATE_FREE);

    /* Nothing changed. */
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.regions, s0.regions);
    ck_assert_uint_eq(s1.reserved_bytes, s0.reserved_bytes);
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes);
    ck_assert_uint_eq(s1.locked_bytes, s0.locked_bytes);
    long lines1;
    unsigned long bytes1;
    tu_maps_totals(&lines1, &bytes1);
    ck_assert_int_eq(lines1, lines0);
    ck_assert_uint_eq(bytes1, bytes0);
    ck_assert_uint_eq(KnVmQuery(keep + 1, &q), rcOk);
    ck_assert_ptr_eq(q.regionBase, kq0.regionBase);
    ck_assert_uint_eq(q.state, kq0.state);
    ck_assert_uint_eq(q.protection, kq0.protection);
    for (size_t i = 0; i < 4 * P(); i += 61)
        ck_assert_int_eq(keep[i], 0x3C);

    /* Within the limit, allocation still works. */
    char *small = KnVmAllocate(RTL_NULL, 16 * P(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(small);
    small[0] = 1;
    ck_assert_uint_eq(KnVmUnmap(small, 16 * P()), rcOk);

    /* Limit raised again: the large reservation works, at the system's choice and fixed. */
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &saved), 0);
    char *large = KnVmAllocate(RTL_NULL, gig, VMM_FLAG_RESERVE | RW);
    ck_assert_msg(large != RTL_NULL, "1 GiB allocation failed after raising RLIMIT_AS: %#x",
                  (unsigned)kosvmm_last_error());
    ck_assert_uint_eq(kosvmm_last_error(), rcOk);
    ck_assert_uint_eq(KnVmQuery(large + gig - 1, &q), rcOk);
    ck_assert_ptr_eq(q.regionBase, large);
    ck_assert_uint_eq(q.regionSize, gig);
    ck_assert_uint_eq(KnVmCommit(large + gig / 2, P(), 0), rcOk);
    large[gig / 2] = 5;
    ck_assert_uint_eq(KnVmUnmap(large, gig), rcOk);
    char *f = KnVmAllocate(fixed, gig, VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_eq(f, fixed);
    ck_assert_uint_eq(KnVmUnmap(f, gig), rcOk);
    ck_assert_uint_eq(KnVmUnmap(keep, 4 * P()), rcOk);
    ck_assert_uint_eq(tu_stats().regions, 0);
}
END_TEST

/* A reservation larger than any address space: refused, nothing changed, next call fine. */
START_TEST(test_impossible_reservation)
{
    kosvmm_stats s0 = tu_stats();
    static const size_t shifts[] = { 62, 60, 57 };
    for (unsigned i = 0; i < 3; i++) {
        void *p = KnVmAllocate(RTL_NULL, (size_t)1 << shifts[i], VMM_FLAG_RESERVE);
        ck_assert_msg(p == RTL_NULL, "2^%zu bytes reserved at %p", shifts[i], p);
        ck_assert_uint_eq(kosvmm_last_error(), rcOutOfMemory);
    }
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.regions, s0.regions);
    ck_assert_uint_eq(s1.reserved_bytes, s0.reserved_bytes);
    void *p = KnVmAllocate(RTL_NULL, P(), VMM_FLAG_RESERVE);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(kosvmm_last_error(), rcOk);
    ck_assert_uint_eq(KnVmUnmap(p, P()), rcOk);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("limits");

    TCase *tc = tcase_create("max_map_count");
    tcase_set_timeout(tc, 240);
    /* The ASan runtime aborts the process when its own mmap fails at vm.max_map_count, so this
     * one runs in the normal build only. */
    if (!TU_SANITIZED)
        tcase_add_test(tc, test_max_map_count);
    suite_add_tcase(s, tc);

    tc = tcase_create("rlimits");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_memlock_limit_unpinned, 0, 2);
    tcase_add_test(tc, test_rlimit_as);
    tcase_add_test(tc, test_impossible_reservation);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tu_run(suite());
}
