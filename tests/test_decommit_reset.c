/* SPDX-License-Identifier: MIT */
/* tests/test_decommit_reset.c — KnVmDecommit and KnVmReset: memory freed, states, zeroing, protection, partial ranges. */
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include "testutil.h"

#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)

static void fill(char *p, size_t len, int seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (char)((i * 13 + (size_t)seed) % 251 + 1);
}

static void assert_filled(const char *p, size_t len, int seed)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (char)((i * 13 + (size_t)seed) % 251 + 1))
            ck_abort_msg("byte %zu changed", i);
}

static void assert_zero(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != 0)
            ck_abort_msg("byte %zu is %d, not 0", i, p[i]);
}

/* A fully committed, written RW region of n pages. */
static char *full_region(size_t n)
{
    char *p = KnVmAllocate(RTL_NULL, n * tu_page(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(p);
    fill(p, n * tu_page(), 1);
    ck_assert_int_eq(tu_resident_pages(p, n * tu_page()), (long)n);
    return p;
}

/* ---- decommit ---- */

START_TEST(decommit_frees_memory)
{
    size_t pg = tu_page(), n = 32;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(p);
    fill(p, n * pg, 2);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), (long)n);
    kosvmm_stats s0 = tu_stats();

    ck_assert_uint_eq(KnVmDecommit(p, n * pg), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), 0);
    tu_assert_perms(p, "---p");
    VmQueryInfo info = tu_query(p + pg);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(info.protection, RW); /* kept for the next commit */
    ck_assert_uint_eq(info.attributes & (VMM_PAGE_ATTR_LAZY | VMM_PAGE_ATTR_LOCKED | VMM_PAGE_ATTR_PINNED), 0);
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes - n * pg);
    ck_assert_uint_eq(s1.reserved_bytes, s0.reserved_bytes);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(decommit_then_access_faults)
{
    size_t pg = tu_page();
    char *p = full_region(8);
    ck_assert_uint_eq(KnVmDecommit(p, 8 * pg), rcOk);
    volatile char *v = p + 3 * pg;
    (void)*v;
}
END_TEST

START_TEST(recommit_after_decommit_is_zeroed)
{
    size_t pg = tu_page(), n = 8;
    char *p = full_region(n);
    ck_assert_uint_eq(KnVmDecommit(p, n * pg), rcOk);
    ck_assert_uint_eq(KnVmCommit(p, n * pg, VMM_FLAG_LOCKED), rcOk);
    ck_assert_uint_eq(tu_query(p).state, VMM_PAGE_STATE_COMMITTED);
    tu_assert_perms(p, "rw-p");
    assert_zero(p, n * pg);
    fill(p, n * pg, 3);
    assert_filled(p, n * pg, 3);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(decommit_reserved_is_ok)
{
    size_t pg = tu_page(), n = 8;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(p);
    kosvmm_stats s0 = tu_stats();
    ck_assert_uint_eq(KnVmDecommit(p, n * pg), rcOk);
    VmQueryInfo info = tu_query(p);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(info.protection, RW);
    tu_assert_perms(p, "---p");
    ck_assert_int_eq(tu_resident_pages(p, n * pg), 0);
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes);
    ck_assert_uint_eq(s1.reserved_bytes, s0.reserved_bytes);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(decommit_locked_region)
{
    size_t pg = tu_page(), n = 64;
    long lck0 = tu_vmlck_kb();
    char *p = full_region(n);
    VmQueryInfo info = tu_query(p);
    ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_LOCKED, 0);
    int pinned = (info.attributes & VMM_PAGE_ATTR_PINNED) != 0;
    if (pinned)
        ck_assert_int_ge(tu_vmlck_kb(), lck0 + (long)(n * pg / 1024));

    ck_assert_uint_eq(KnVmDecommit(p, n * pg), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), 0);
    info = tu_query(p);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(info.attributes & (VMM_PAGE_ATTR_LOCKED | VMM_PAGE_ATTR_PINNED), 0);
    ck_assert_int_eq(tu_vmlck_kb(), lck0);
    ck_assert_uint_eq(tu_stats().pinned_bytes, 0);

    /* The region is still LOCKED: a later commit is full again. */
    ck_assert_uint_eq(KnVmCommit(p, n * pg, 0), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), (long)n);
    assert_zero(p, n * pg);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(decommit_middle_keeps_neighbours)
{
    size_t pg = tu_page(), n = 16;
    char *p = full_region(n);
    ck_assert_uint_eq(KnVmDecommit(p + 6 * pg, 4 * pg), rcOk);
    ck_assert_int_eq(tu_resident_pages(p + 6 * pg, 4 * pg), 0);
    ck_assert_int_eq(tu_resident_pages(p, 6 * pg), 6);
    ck_assert_int_eq(tu_resident_pages(p + 10 * pg, 6 * pg), 6);
    assert_filled(p, 6 * pg, 1);
    for (size_t i = 10 * pg; i < n * pg; i++)
        ck_assert_int_eq(p[i], (char)((i * 13 + 1) % 251 + 1));
    ck_assert_uint_eq(tu_query(p + 5 * pg).state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_eq(tu_query(p + 6 * pg).state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(tu_query(p + 9 * pg).state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(tu_query(p + 10 * pg).state, VMM_PAGE_STATE_COMMITTED);
    tu_assert_perms(p + 5 * pg, "rw-p");
    tu_assert_perms(p + 6 * pg, "---p");
    tu_assert_perms(p + 10 * pg, "rw-p");
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(decommit_middle_hole_faults)
{
    size_t pg = tu_page();
    char *p = full_region(16);
    ck_assert_uint_eq(KnVmDecommit(p + 6 * pg, 4 * pg), rcOk);
    ck_assert_int_eq(p[5 * pg], (char)((5 * pg * 13 + 1) % 251 + 1));
    volatile char *v = p + 9 * pg;
    *v = 1;
}
END_TEST

/* ---- reset ---- */

START_TEST(reset_frees_and_reads_zero)
{
    size_t pg = tu_page(), n = 32;
    char *p = full_region(n);
    ck_assert_uint_eq(KnVmReset(p, n * pg), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), 0);
    VmQueryInfo info = tu_query(p + pg);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_LAZY, 0);
    ck_assert_uint_eq(info.attributes & (VMM_PAGE_ATTR_LOCKED | VMM_PAGE_ATTR_PINNED), 0);
    ck_assert_uint_eq(info.protection, RW);
    tu_assert_perms(p, "rw-p");
    /* No further call: the pages are usable and read as zero. */
    assert_zero(p, n * pg);
    p[0] = 4;
    ck_assert_int_eq(p[0], 4);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(reset_lazy_region)
{
    size_t pg = tu_page(), n = 16;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(p);
    fill(p, n * pg, 5);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), (long)n);
    ck_assert_uint_eq(KnVmReset(p, n * pg), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), 0);
    ck_assert_uint_ne(tu_query(p).attributes & VMM_PAGE_ATTR_LAZY, 0);
    assert_zero(p, n * pg);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(reset_keeps_readonly_protection)
{
    size_t pg = tu_page(), n = 8;
    char *p = full_region(n);
    ck_assert_uint_eq(KnVmProtect(p, n * pg, VMM_FLAG_READ), rcOk);
    ck_assert_uint_eq(KnVmReset(p, n * pg), rcOk);
    ck_assert_int_eq(tu_resident_pages(p, n * pg), 0);
    VmQueryInfo info = tu_query(p);
    ck_assert_uint_eq(info.protection, VMM_FLAG_READ);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    tu_assert_perms(p, "r--p");
    assert_zero(p, n * pg);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(reset_readonly_write_faults)
{
    size_t pg = tu_page(), n = 4;
    char *p = full_region(n);
    ck_assert_uint_eq(KnVmProtect(p, n * pg, VMM_FLAG_READ), rcOk);
    ck_assert_uint_eq(KnVmReset(p, n * pg), rcOk);
    volatile char *v = p + pg;
    *v = 1;
}
END_TEST

START_TEST(reset_reserved_becomes_lazy_committed)
{
    size_t pg = tu_page(), n = 16;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(p);
    kosvmm_stats s0 = tu_stats();
    ck_assert_uint_eq(KnVmReset(p, n * pg), rcOk);
    VmQueryInfo info = tu_query(p);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_LAZY, 0);
    ck_assert_uint_eq(info.protection, RW);
    tu_assert_perms(p, "rw-p");
    ck_assert_int_eq(tu_resident_pages(p, n * pg), 0);
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes + n * pg);
    ck_assert_uint_eq(s1.lazy_bytes, s0.lazy_bytes + n * pg);
    assert_zero(p, n * pg);
    p[n * pg - 1] = 3;
    ck_assert_int_eq(p[n * pg - 1], 3);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(reset_middle_keeps_neighbours)
{
    size_t pg = tu_page(), n = 16;
    char *p = full_region(n);
    ck_assert_uint_eq(KnVmReset(p + 6 * pg, 4 * pg), rcOk);
    ck_assert_int_eq(tu_resident_pages(p + 6 * pg, 4 * pg), 0);
    ck_assert_int_eq(tu_resident_pages(p, 6 * pg), 6);
    ck_assert_int_eq(tu_resident_pages(p + 10 * pg, 6 * pg), 6);
    assert_filled(p, 6 * pg, 1);
    for (size_t i = 10 * pg; i < n * pg; i++)
        ck_assert_int_eq(p[i], (char)((i * 13 + 1) % 251 + 1));
    assert_zero(p + 6 * pg, 4 * pg);

    VmQueryInfo left = tu_query(p + 5 * pg), mid = tu_query(p + 6 * pg), right = tu_query(p + 10 * pg);
    ck_assert_uint_ne(left.attributes & VMM_PAGE_ATTR_LOCKED, 0);
    ck_assert_uint_ne(right.attributes & VMM_PAGE_ATTR_LOCKED, 0);
    ck_assert_uint_ne(mid.attributes & VMM_PAGE_ATTR_LAZY, 0);
    ck_assert_uint_eq(mid.attributes & VMM_PAGE_ATTR_LOCKED, 0);
    ck_assert_uint_eq(mid.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("decommit_reset");

    TCase *tc = tcase_create("decommit");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, decommit_frees_memory);
    tcase_add_test_raise_signal(tc, decommit_then_access_faults, SIGSEGV);
    tcase_add_test(tc, recommit_after_decommit_is_zeroed);
    tcase_add_test(tc, decommit_reserved_is_ok);
    tcase_add_test(tc, decommit_locked_region);
    suite_add_tcase(s, tc);

    tc = tcase_create("decommit_partial");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, decommit_middle_keeps_neighbours);
    tcase_add_test_raise_signal(tc, decommit_middle_hole_faults, SIGSEGV);
    suite_add_tcase(s, tc);

    tc = tcase_create("reset");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, reset_frees_and_reads_zero);
    tcase_add_test(tc, reset_lazy_region);
    tcase_add_test(tc, reset_keeps_readonly_protection);
    tcase_add_test_raise_signal(tc, reset_readonly_write_faults, SIGSEGV);
    tcase_add_test(tc, reset_reserved_becomes_lazy_committed);
    suite_add_tcase(s, tc);

    tc = tcase_create("reset_partial");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, reset_middle_keeps_neighbours);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tu_run(suite());
}
