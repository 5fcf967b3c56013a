/* SPDX-License-Identifier: MIT */
/* tests/test_guards.c — LOW_GUARD / HIGH_GUARD pages: faults, Query, residency, range checks, removal with the region. */
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include "testutil.h"

#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define LOW VMM_FLAG_LOW_GUARD
#define HIGH VMM_FLAG_HIGH_GUARD
#define FULL (VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW)
#define LAZY (VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW)

#define NPAGES 8

static char *alloc(int flags)
{
    char *p = KnVmAllocate(RTL_NULL, NPAGES * tu_page(), flags);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % tu_page(), 0);
    return p;
}

static void assert_guard(const char *g)
{
    VmQueryInfo info = tu_query(g + 7);
    ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_GUARD, 0);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(info.protection, 0);
    ck_assert_uint_eq(info.runSize, tu_page());
    ck_assert_ptr_eq(info.pageBase, g);
    ck_assert_int_eq(tu_resident_pages(g, tu_page()), 0);
}

static void assert_usable(char *p, int flags)
{
    size_t size = NPAGES * tu_page();
    VmQueryInfo info = tu_query(p);
    ck_assert_ptr_eq(info.regionBase, p);
    ck_assert_uint_eq(info.regionSize, size);
    ck_assert_uint_eq(info.attributes & VMM_PAGE_ATTR_GUARD, 0);
    ck_assert_uint_eq(tu_query(p + size - 1).attributes & VMM_PAGE_ATTR_GUARD, 0);
    ck_assert_uint_eq(info.regionFlags, (rtl_uint32_t)flags);
    p[0] = 1;
    p[size - 1] = 2;
    ck_assert_int_eq(p[0] + p[size - 1], 3);
}

/* ---- LOW_GUARD ---- */

START_TEST(low_guard_query)
{
    size_t pg = tu_page();
    char *p = alloc(LAZY | LOW);
    assert_usable(p, LAZY | LOW);
    assert_guard(p - pg);
    ck_assert_uint_eq(KnVmUnmap(p, NPAGES * pg), rcOk);
}
END_TEST

START_TEST(low_guard_read_faults)
{
    char *p = alloc(LAZY | LOW);
    p[0] = 1;
    volatile char *v = p - 1;
    (void)*v;
}
END_TEST

START_TEST(low_guard_write_faults)
{
    char *p = alloc(LAZY | LOW);
    p[0] = 1;
    volatile char *v = p - tu_page();
    *v = 1;
}
END_TEST

/* ---- HIGH_GUARD ---- */

START_TEST(high_guard_query)
{
    size_t pg = tu_page();
    char *p = alloc(LAZY | HIGH);
    assert_usable(p, LAZY | HIGH);
    assert_guard(p + NPAGES * pg);
    ck_assert_uint_eq(KnVmUnmap(p, NPAGES * pg), rcOk);
}
END_TEST

START_TEST(high_guard_read_faults)
{
    char *p = alloc(LAZY | HIGH);
    p[NPAGES * tu_page() - 1] = 1;
    volatile char *v = p + NPAGES * tu_page();
    (void)*v;
}
END_TEST

START_TEST(high_guard_write_faults)
{
    char *p = alloc(LAZY | HIGH);
    p[NPAGES * tu_page() - 1] = 1;
    volatile char *v = p + (NPAGES + 1) * tu_page() - 1;
    *v = 1;
}
END_TEST

/* ---- both ---- */

START_TEST(both_guards_query)
{
    size_t pg = tu_page();
    char *p = alloc(LAZY | LOW | HIGH);
    assert_usable(p, LAZY | LOW | HIGH);
    assert_guard(p - pg);
    assert_guard(p + NPAGES * pg);
    ck_assert_uint_eq(KnVmUnmap(p, NPAGES * pg), rcOk);
}
END_TEST

START_TEST(both_guards_low_faults)
{
    char *p = alloc(LAZY | LOW | HIGH);
    volatile char *v = p - 1;
    *v = 1;
}
END_TEST

START_TEST(both_guards_high_faults)
{
    char *p = alloc(LAZY | LOW | HIGH);
    volatile char *v = p + NPAGES * tu_page();
    (void)*v;
}
END_TEST

START_TEST(guards_of_full_region_not_resident)
{
    size_t pg = tu_page();
    char *p = alloc(FULL | LOW | HIGH);
    ck_assert_int_eq(tu_resident_pages(p, NPAGES * pg), NPAGES);
    ck_assert_int_eq(tu_resident_pages(p - pg, pg), 0);
    ck_assert_int_eq(tu_resident_pages(p + NPAGES * pg, pg), 0);
    assert_guard(p - pg);
    assert_guard(p + NPAGES * pg);
    /* Committing the whole usable range again does not touch the guards. */
    ck_assert_uint_eq(KnVmCommit(p, NPAGES * pg, VMM_FLAG_LOCKED), rcOk);
    ck_assert_int_eq(tu_resident_pages(p - pg, pg), 0);
    ck_assert_int_eq(tu_resident_pages(p + NPAGES * pg, pg), 0);
    ck_assert_uint_eq(KnVmUnmap(p, NPAGES * pg), rcOk);
}
END_TEST

START_TEST(guard_of_full_region_faults)
{
    char *p = alloc(FULL | LOW | HIGH);
    volatile char *v = p + NPAGES * tu_page();
    *v = 1;
}
END_TEST

START_TEST(guard_stays_after_protect_rwx)
{
    /* Changing the protection of the whole usable range must not open the guards. */
    size_t pg = tu_page();
    char *p = alloc(LAZY | LOW | HIGH);
    ck_assert_uint_eq(KnVmProtect(p, NPAGES * pg, VMM_FLAG_RWX_MASK), rcOk);
    assert_guard(p - pg);
    assert_guard(p + NPAGES * pg);
    volatile char *v = p - pg;
    *v = 1;
}
END_TEST

/* ---- ranges touching guards ---- */

START_TEST(range_starting_at_low_guard_not_found)
{
    size_t pg = tu_page();
    char *p = alloc(VMM_FLAG_RESERVE | RW | LOW | HIGH);
    char *lo = p - pg, *hi = p + NPAGES * pg;
    ck_assert_uint_eq(KnVmCommit(lo, pg, VMM_FLAG_LOCKED), rcResourceNotFound);
    ck_assert_uint_eq(KnVmCommit(lo, 2 * pg, 0), rcResourceNotFound);
    ck_assert_uint_eq(KnVmProtect(lo, 2 * pg, VMM_FLAG_READ), rcResourceNotFound);
    ck_assert_uint_eq(KnVmDecommit(lo, pg), rcResourceNotFound);
    ck_assert_uint_eq(KnVmReset(lo, pg), rcResourceNotFound);
    ck_assert_uint_eq(KnVmCommit(hi, pg, 0), rcResourceNotFound);
    ck_assert_uint_eq(KnVmProtect(hi, pg, RW), rcResourceNotFound);
    /* Nothing changed. */
    assert_guard(lo);
    assert_guard(hi);
    ck_assert_uint_eq(tu_query(p).state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(tu_query(p).protection, RW);
    ck_assert_uint_eq(KnVmUnmap(p, NPAGES * pg), rcOk);
}
END_TEST

START_TEST(range_into_high_guard_invalid)
{
    size_t pg = tu_page();
    char *p = alloc(VMM_FLAG_RESERVE | RW | LOW | HIGH);
    ck_assert_uint_eq(KnVmCommit(p, (NPAGES + 1) * pg, 0), rcInvalidArgument);
    ck_assert_uint_eq(KnVmCommit(p + (NPAGES - 1) * pg, 2 * pg, VMM_FLAG_LOCKED), rcInvalidArgument);
    ck_assert_uint_eq(KnVmProtect(p, (NPAGES + 1) * pg, VMM_FLAG_READ), rcInvalidArgument);
    ck_assert_uint_eq(KnVmReset(p + (NPAGES - 1) * pg, 2 * pg), rcInvalidArgument);
    /* Validation comes first: nothing was committed or re-protected. */
    for (size_t i = 0; i < NPAGES; i++) {
        VmQueryInfo info = tu_query(p + i * pg);
        ck_assert_uint_eq(info.state, VMM_PAGE_STATE_RESERVED);
        ck_assert_uint_eq(info.protection, RW);
    }
    char perms[5];
    ck_assert_int_eq(tu_maps_perms(p, perms), 0);
    ck_assert_str_eq(perms, "---p");
    assert_guard(p + NPAGES * pg);
    ck_assert_uint_eq(KnVmUnmap(p, NPAGES * pg), rcOk);
}
END_TEST

START_TEST(unmap_including_guard_rejected)
{
    size_t pg = tu_page();
    char *p = alloc(LAZY | LOW | HIGH);
    ck_assert_uint_eq(KnVmUnmap(p - pg, (NPAGES + 1) * pg), rcResourceNotFound);
    ck_assert_uint_eq(KnVmUnmap(p, (NPAGES + 1) * pg), rcInvalidArgument);
    assert_usable(p, LAZY | LOW | HIGH);
    ck_assert_uint_eq(KnVmUnmap(p, NPAGES * pg), rcOk);
}
END_TEST

/* ---- removal ---- */

START_TEST(unmap_removes_guards)
{
    size_t pg = tu_page();
    char *p = alloc(FULL | LOW | HIGH);
    char *lo = p - pg, *hi = p + NPAGES * pg;
    ck_assert_int_eq(tu_is_mapped(lo), 1);
    ck_assert_int_eq(tu_is_mapped(hi), 1);
    ck_assert_uint_eq(KnVmUnmap(p, NPAGES * pg), rcOk);
    ck_assert_int_eq(tu_is_mapped(lo), 0);
    ck_assert_int_eq(tu_is_mapped(p), 0);
    ck_assert_int_eq(tu_is_mapped(hi), 0);
    ck_assert_uint_eq(tu_query(lo).state, VMM_PAGE_STATE_FREE);
    ck_assert_uint_eq(tu_query(hi).state, VMM_PAGE_STATE_FREE);
}
END_TEST

START_TEST(guarded_fixed_allocation)
{
    size_t pg = tu_page();
    /* Find NPAGES + 2 free pages, then place a guarded region so its guards use the outer pages. */
    char *area = KnVmAllocate(RTL_NULL, (NPAGES + 2) * pg, VMM_FLAG_RESERVE);
    ck_assert_ptr_nonnull(area);
    ck_assert_uint_eq(KnVmUnmap(area, (NPAGES + 2) * pg), rcOk);
    char *want = area + pg;
    char *p = KnVmAllocate(want, NPAGES * pg, LAZY | LOW | HIGH);
    ck_assert_ptr_eq(p, want);
    assert_guard(area);
    assert_guard(want + NPAGES * pg);
    ck_assert_uint_eq(KnVmUnmap(p, NPAGES * pg), rcOk);
    ck_assert_int_eq(tu_is_mapped(area), 0);
}
END_TEST

START_TEST(guarded_fixed_allocation_needs_free_page_below)
{
    size_t pg = tu_page();
    char *a = KnVmAllocate(RTL_NULL, 2 * NPAGES * pg, LAZY);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(KnVmUnmap(a + NPAGES * pg, NPAGES * pg), rcOk);
    /* a + NPAGES*pg is free, but the page below it (the low guard's place) is still mapped. */
    ck_assert_ptr_null(KnVmAllocate(a + NPAGES * pg, 4 * pg, LAZY | LOW));
    ck_assert_uint_eq(kosvmm_last_error(), rcAlreadyExists);
    ck_assert_uint_eq(tu_query(a + (NPAGES - 1) * pg).attributes & VMM_PAGE_ATTR_GUARD, 0);
    ck_assert_uint_eq(tu_query(a + NPAGES * pg).state, VMM_PAGE_STATE_FREE);
    a[NPAGES * pg - 1] = 1;
    ck_assert_int_eq(a[NPAGES * pg - 1], 1);
    ck_assert_uint_eq(KnVmUnmap(a, NPAGES * pg), rcOk);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("guards");

    TCase *tc = tcase_create("low");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, low_guard_query);
    tcase_add_test_raise_signal(tc, low_guard_read_faults, SIGSEGV);
    tcase_add_test_raise_signal(tc, low_guard_write_faults, SIGSEGV);
    suite_add_tcase(s, tc);

    tc = tcase_create("high");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, high_guard_query);
    tcase_add_test_raise_signal(tc, high_guard_read_faults, SIGSEGV);
    tcase_add_test_raise_signal(tc, high_guard_write_faults, SIGSEGV);
    suite_add_tcase(s, tc);

    tc = tcase_create("both");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, both_guards_query);
    tcase_add_test_raise_signal(tc, both_guards_low_faults, SIGSEGV);
    tcase_add_test_raise_signal(tc, both_guards_high_faults, SIGSEGV);
    tcase_add_test(tc, guards_of_full_region_not_resident);
    tcase_add_test_raise_signal(tc, guard_of_full_region_faults, SIGSEGV);
    tcase_add_test_raise_signal(tc, guard_stays_after_protect_rwx, SIGSEGV);
    suite_add_tcase(s, tc);

    tc = tcase_create("ranges");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, range_starting_at_low_guard_not_found);
    tcase_add_test(tc, range_into_high_guard_invalid);
    tcase_add_test(tc, unmap_including_guard_rejected);
    suite_add_tcase(s, tc);

    tc = tcase_create("lifetime");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, unmap_removes_guards);
    tcase_add_test(tc, guarded_fixed_allocation);
    tcase_add_test(tc, guarded_fixed_allocation_needs_free_page_below);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tu_run(suite());
}
