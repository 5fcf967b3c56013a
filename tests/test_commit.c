/* SPDX-License-Identifier: MIT */
/* tests/test_commit.c — commit modes (full/lazy), KnVmCommit, partial commits, read-only full pages, pinning. */
#include <check.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include "testutil.h"

#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)

static int cap_get(struct __user_cap_data_struct data[2])
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    return (int)syscall(SYS_capget, &hdr, data);
}

static int has_cap_ipc_lock(void)
{
    struct __user_cap_data_struct data[2];
    ck_assert_int_eq(cap_get(data), 0);
    return (data[0].effective >> CAP_IPC_LOCK) & 1u;
}

/* Makes this (forked) test process an ordinary one for mlock: no CAP_IPC_LOCK, RLIMIT_MEMLOCK 0. */
static void become_unprivileged_for_mlock(void)
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    ck_assert_int_eq(cap_get(data), 0);
    data[0].effective &= ~(1u << CAP_IPC_LOCK);
    data[0].permitted &= ~(1u << CAP_IPC_LOCK);
    data[0].inheritable &= ~(1u << CAP_IPC_LOCK);
    ck_assert_int_eq((int)syscall(SYS_capset, &hdr, data), 0);
    ck_assert_int_eq(has_cap_ipc_lock(), 0);
    struct rlimit rl = { 0, 0 };
    ck_assert_int_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
}

/* ---- the four modes of the SDK table ---- */

START_TEST(commit_locked_is_full_at_allocate)
{
    size_t pg = tu_page(), n = 64;
    kosvmm_stats s0 = tu_stats();
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), (long)n);
    tu_assert_perms(p, "rw-p");

    VmQueryInfo info = tu_query(p + 10 * pg);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_LOCKED, 0);
    ck_assert_uint_eq(info.attributes & VMM_PAGE_ATTR_LAZY, 0);
    ck_assert_uint_eq(info.protection, RW);

    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes + n * pg);
    ck_assert_uint_eq(s1.locked_bytes, s0.locked_bytes + n * pg);
    ck_assert_uint_eq(s1.lazy_bytes, s0.lazy_bytes);

    p[0] = 1;
    p[n * pg - 1] = 2;
    ck_assert_int_eq(p[0] + p[n * pg - 1], 3);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
    kosvmm_stats s2 = tu_stats();
    ck_assert_uint_eq(s2.committed_bytes, s0.committed_bytes);
    ck_assert_uint_eq(s2.locked_bytes, s0.locked_bytes);
}
END_TEST

START_TEST(commit_alone_is_lazy)
{
    size_t pg = tu_page(), n = 64;
    kosvmm_stats s0 = tu_stats();
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(p);
    tu_assert_perms(p, "rw-p");
    ck_assert_int_eq(tu_resident_pages(p, n * pg), 0);

    VmQueryInfo info = tu_query(p);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_LAZY, 0);
    ck_assert_uint_eq(info.attributes & (VMM_PAGE_ATTR_LOCKED | VMM_PAGE_ATTR_PINNED), 0);

    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes + n * pg);
    ck_assert_uint_eq(s1.lazy_bytes, s0.lazy_bytes + n * pg);
    ck_assert_uint_eq(s1.locked_bytes, s0.locked_bytes);

    /* Touching brings memory in: first touch makes the touched page resident. */
    p[5 * pg] = 77;
    ck_assert_int_eq(tu_resident_pages(p + 5 * pg, pg), 1);
    ck_assert_int_ge(tu_resident_pages(p, n * pg), 1);
    ck_assert_int_eq(p[5 * pg], 77);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(locked_alone_reserved_then_commit_full)
{
    size_t pg = tu_page(), n = 32;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(p);
    tu_assert_perms(p, "---p");
    ck_assert_int_eq(tu_resident_pages(p, n * pg), 0);
    ck_assert_uint_eq(tu_query(p).state, VMM_PAGE_STATE_RESERVED);

    ck_assert_uint_eq(KnVmCommit(p, n * pg, VMM_FLAG_LOCKED), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), (long)n);
    tu_assert_perms(p, "rw-p");
    VmQueryInfo info = tu_query(p + (n - 1) * pg);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_LOCKED, 0);
    ck_assert_uint_eq(info.attributes & VMM_PAGE_ATTR_LAZY, 0);
    p[3] = 9;
    ck_assert_int_eq(p[3], 9);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(neither_reserved_then_commit_lazy)
{
    size_t pg = tu_page(), n = 32;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(p);
    tu_assert_perms(p, "---p");
    ck_assert_uint_eq(tu_query(p).state, VMM_PAGE_STATE_RESERVED);

    ck_assert_uint_eq(KnVmCommit(p, n * pg, VMM_FLAG_LOCKED), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), 0);
    tu_assert_perms(p, "rw-p");
    VmQueryInfo info = tu_query(p);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_LAZY, 0);
    ck_assert_uint_eq(info.attributes & (VMM_PAGE_ATTR_LOCKED | VMM_PAGE_ATTR_PINNED), 0);

    p[n * pg - 1] = 5;
    ck_assert_int_eq(p[n * pg - 1], 5);
    ck_assert_int_ge(tu_resident_pages(p, n * pg), 1);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

/* ---- partial commits ---- */

static char *reserve_commit_middle(size_t n, size_t first, size_t count)
{
    size_t pg = tu_page();
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(KnVmCommit(p + first * pg, count * pg, 0), rcOk);
    memset(p + first * pg, 0x3C, count * pg);
    return p;
}

START_TEST(partial_commit_middle_only)
{
    size_t pg = tu_page(), n = 16;
    char *p = reserve_commit_middle(n, 6, 4);
    for (size_t i = 0; i < n; i++) {
        VmQueryInfo info = tu_query(p + i * pg);
        int committed = i >= 6 && i < 10;
        ck_assert_uint_eq(info.state, committed ? VMM_PAGE_STATE_COMMITTED : VMM_PAGE_STATE_RESERVED);
        tu_assert_perms(p + i * pg, committed ? "rw-p" : "---p");
    }
    ck_assert_int_eq(tu_resident_pages(p, 6 * pg), 0);
    ck_assert_int_eq(tu_resident_pages(p + 10 * pg, 6 * pg), 0);
    ck_assert_int_eq(p[6 * pg], 0x3C);
    ck_assert_int_eq(p[10 * pg - 1], 0x3C);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(partial_commit_below_faults)
{
    size_t pg = tu_page();
    char *p = reserve_commit_middle(16, 6, 4);
    volatile char *v = p + 6 * pg - 1;
    (void)*v;
}
END_TEST

START_TEST(partial_commit_above_faults)
{
    size_t pg = tu_page();
    char *p = reserve_commit_middle(16, 6, 4);
    volatile char *v = p + 10 * pg;
    *v = 1;
}
END_TEST

START_TEST(recommit_keeps_contents_lazy)
{
    size_t pg = tu_page(), n = 8;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n * pg; i++)
        p[i] = (char)(i % 251);
    ck_assert_uint_eq(KnVmCommit(p, n * pg, 0), rcOk);
    ck_assert_uint_eq(KnVmCommit(p + 2 * pg, 3 * pg, VMM_FLAG_LOCKED), rcOk);
    for (size_t i = 0; i < n * pg; i++)
        ck_assert_int_eq(p[i], (char)(i % 251));
    ck_assert_uint_eq(tu_query(p).state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(recommit_keeps_contents_locked)
{
    size_t pg = tu_page(), n = 8;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n * pg; i++)
        p[i] = (char)(i % 253);
    ck_assert_uint_eq(KnVmCommit(p, n * pg, VMM_FLAG_LOCKED), rcOk);
    for (size_t i = 0; i < n * pg; i++)
        ck_assert_int_eq(p[i], (char)(i % 253));
    ck_assert_int_eq(tu_resident_pages(p, n * pg), (long)n);
    ck_assert_uint_ne(tu_query(p).attributes & VMM_PAGE_ATTR_LOCKED, 0);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(commit_populates_lazy_pages_of_locked_region)
{
    /* In a LOCKED region, KnVmReset leaves pages lazily committed; KnVmCommit makes them full. */
    size_t pg = tu_page(), n = 16;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(KnVmReset(p, n * pg), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), 0);
    ck_assert_uint_ne(tu_query(p).attributes & VMM_PAGE_ATTR_LAZY, 0);

    ck_assert_uint_eq(KnVmCommit(p, n * pg, 0), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), (long)n);
    VmQueryInfo info = tu_query(p);
    ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_LOCKED, 0);
    ck_assert_uint_eq(info.attributes & VMM_PAGE_ATTR_LAZY, 0);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

/* ---- read-only full commit ---- */

START_TEST(readonly_full_is_resident_and_readable)
{
    size_t pg = tu_page(), n = 16;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | VMM_FLAG_READ);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), (long)n);
    tu_assert_perms(p, "r--p");
    ck_assert_uint_eq(tu_query(p).protection, VMM_FLAG_READ);
    for (size_t i = 0; i < n * pg; i += 512)
        ck_assert_int_eq(((volatile char *)p)[i], 0);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(readonly_full_write_faults)
{
    size_t pg = tu_page(), n = 4;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | VMM_FLAG_READ);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), (long)n);
    volatile char *v = p + pg;
    *v = 1;
}
END_TEST

/* ---- pinning ---- */

START_TEST(pinned_when_allowed)
{
    size_t pg = tu_page(), n = 256; /* 1 MiB with 4 KiB pages */
    size_t size = n * pg;
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
    long lck0 = tu_vmlck_kb();
    int allowed = has_cap_ipc_lock() || rl.rlim_cur == RLIM_INFINITY ||
                  rl.rlim_cur >= size + (size_t)lck0 * 1024;
    kosvmm_stats s0 = tu_stats();

    char *p = KnVmAllocate(RTL_NULL, size, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(tu_resident_pages(p, size), (long)n);
    VmQueryInfo info = tu_query(p);
    ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_LOCKED, 0);
    kosvmm_stats s1 = tu_stats();
    if (allowed) {
        ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_PINNED, 0);
        ck_assert_int_ge(tu_vmlck_kb(), lck0 + (long)(size / 1024));
        ck_assert_uint_eq(s1.pinned_bytes, s0.pinned_bytes + size);
    } else {
        /* Not enough RLIMIT_MEMLOCK and no CAP_IPC_LOCK in this environment. */
        ck_assert_uint_eq(info.attributes & VMM_PAGE_ATTR_PINNED, 0);
        ck_assert_uint_gt(s1.pin_refusals, s0.pin_refusals);
    }
    ck_assert_uint_eq(KnVmUnmap(p, size), rcOk);
    ck_assert_int_eq(tu_vmlck_kb(), lck0);
    ck_assert_uint_eq(tu_stats().pinned_bytes, s0.pinned_bytes);
}
END_TEST

START_TEST(pin_refused_at_allocate_still_commits)
{
    size_t pg = tu_page(), n = 64;
    become_unprivileged_for_mlock();
    long lck0 = tu_vmlck_kb();
    kosvmm_stats s0 = tu_stats();

    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(kosvmm_last_error(), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), (long)n);
    VmQueryInfo info = tu_query(p + pg);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_LOCKED, 0);
    ck_assert_uint_eq(info.attributes & VMM_PAGE_ATTR_PINNED, 0);
    ck_assert_int_eq(tu_vmlck_kb(), lck0);
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_gt(s1.pin_refusals, s0.pin_refusals);
    ck_assert_uint_eq(s1.pinned_bytes, s0.pinned_bytes);
    ck_assert_uint_eq(s1.locked_bytes, s0.locked_bytes + n * pg);

    p[0] = 11;
    ck_assert_int_eq(p[0], 11);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(pin_refused_at_commit_still_commits)
{
    size_t pg = tu_page(), n = 64;
    become_unprivileged_for_mlock();
    kosvmm_stats s0 = tu_stats();

    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(KnVmCommit(p, n * pg, VMM_FLAG_LOCKED), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), (long)n);
    VmQueryInfo info = tu_query(p);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_LOCKED, 0);
    ck_assert_uint_eq(info.attributes & VMM_PAGE_ATTR_PINNED, 0);
    ck_assert_uint_gt(tu_stats().pin_refusals, s0.pin_refusals);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

/* ---- the flags argument of KnVmCommit is fictitious ---- */

START_TEST(commit_flags_ignored_in_locked_region)
{
    size_t pg = tu_page(), n = 8;
    char *p = KnVmAllocate(RTL_NULL, 2 * n * pg, VMM_FLAG_RESERVE | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(KnVmCommit(p, n * pg, 0), rcOk);
    ck_assert_uint_eq(KnVmCommit(p + n * pg, n * pg, (int)0x7FFFFFFF), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, 2 * n * pg), (long)(2 * n));
    ck_assert_uint_ne(tu_query(p).attributes & VMM_PAGE_ATTR_LOCKED, 0);
    ck_assert_uint_ne(tu_query(p + n * pg).attributes & VMM_PAGE_ATTR_LOCKED, 0);
    ck_assert_uint_eq(KnVmUnmap(p, 2 * n * pg), rcOk);
}
END_TEST

START_TEST(commit_flags_ignored_in_lazy_region)
{
    size_t pg = tu_page(), n = 8;
    char *p = KnVmAllocate(RTL_NULL, 3 * n * pg, VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(KnVmCommit(p, n * pg, VMM_FLAG_LOCKED), rcOk);
    ck_assert_uint_eq(KnVmCommit(p + n * pg, n * pg, VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | VMM_FLAG_RWX_MASK), rcOk);
    ck_assert_uint_eq(KnVmCommit(p + 2 * n * pg, n * pg, -1), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, 3 * n * pg), 0);
    for (size_t i = 0; i < 3; i++) {
        VmQueryInfo info = tu_query(p + i * n * pg);
        ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
        ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_LAZY, 0);
        ck_assert_uint_eq(info.protection, RW); /* flags did not change the protection either */
    }
    tu_assert_perms(p + 2 * n * pg, "rw-p");
    ck_assert_uint_eq(KnVmUnmap(p, 3 * n * pg), rcOk);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("commit");

    TCase *tc = tcase_create("modes");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, commit_locked_is_full_at_allocate);
    tcase_add_test(tc, commit_alone_is_lazy);
    tcase_add_test(tc, locked_alone_reserved_then_commit_full);
    tcase_add_test(tc, neither_reserved_then_commit_lazy);
    suite_add_tcase(s, tc);

    tc = tcase_create("partial");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, partial_commit_middle_only);
    tcase_add_test_raise_signal(tc, partial_commit_below_faults, SIGSEGV);
    tcase_add_test_raise_signal(tc, partial_commit_above_faults, SIGSEGV);
    tcase_add_test(tc, recommit_keeps_contents_lazy);
    tcase_add_test(tc, recommit_keeps_contents_locked);
    tcase_add_test(tc, commit_populates_lazy_pages_of_locked_region);
    suite_add_tcase(s, tc);

    tc = tcase_create("readonly");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, readonly_full_is_resident_and_readable);
    tcase_add_test_raise_signal(tc, readonly_full_write_faults, SIGSEGV);
    suite_add_tcase(s, tc);

    tc = tcase_create("pinning");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, pinned_when_allowed);
    tcase_add_test(tc, pin_refused_at_allocate_still_commits);
    tcase_add_test(tc, pin_refused_at_commit_still_commits);
    suite_add_tcase(s, tc);

    tc = tcase_create("flags_ignored");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, commit_flags_ignored_in_locked_region);
    tcase_add_test(tc, commit_flags_ignored_in_lazy_region);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tu_run(suite());
}
