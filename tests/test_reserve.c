/* SPDX-License-Identifier: MIT */
/* tests/test_reserve.c — KnVmAllocate reservations: PROT_NONE, fixed addresses, overlaps, 1 TiB, flags, stats. */
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include "testutil.h"

#define TIB ((rtl_size_t)1 << 40)

/* Reserves and unmaps n pages to find a free, page-aligned address range. */
static char *free_address(size_t n)
{
    char *p = KnVmAllocate(RTL_NULL, n * tu_page(), VMM_FLAG_RESERVE);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(KnVmUnmap(p, n * tu_page()), rcOk);
    ck_assert_int_eq(tu_is_mapped(p), 0);
    return p;
}

START_TEST(reserve_only_is_prot_none_and_not_resident)
{
    size_t pg = tu_page(), n = 64;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_READ | VMM_FLAG_WRITE);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(kosvmm_last_error(), rcOk);
    ck_assert_uint_eq((uintptr_t)p % pg, 0);

    char perms[5];
    ck_assert_int_eq(tu_maps_perms(p, perms), 0);
    ck_assert_str_eq(perms, "---p");
    ck_assert_int_eq(tu_maps_perms(p + (n - 1) * pg, perms), 0);
    ck_assert_str_eq(perms, "---p");
    ck_assert_int_eq(tu_resident_pages(p, n * pg), 0);

    VmQueryInfo info = tu_query(p + 5 * pg);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_RESERVED);
    ck_assert_ptr_eq(info.regionBase, p);
    ck_assert_uint_eq(info.regionSize, n * pg);
    ck_assert_uint_eq(info.attributes & (VMM_PAGE_ATTR_LOCKED | VMM_PAGE_ATTR_LAZY | VMM_PAGE_ATTR_PINNED), 0);

    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
    ck_assert_int_eq(tu_is_mapped(p), 0);
}
END_TEST

START_TEST(reserve_only_access_faults)
{
    size_t pg = tu_page();
    char *p = KnVmAllocate(RTL_NULL, 4 * pg, VMM_FLAG_RESERVE | VMM_FLAG_READ | VMM_FLAG_WRITE);
    ck_assert_ptr_nonnull(p);
    volatile char *v = p + pg;
    (void)*v;
}
END_TEST

START_TEST(last_error_ok_after_success)
{
    size_t pg = tu_page();
    /* A failure first (size 0), then a success must reset the thread's last error. */
    ck_assert_ptr_null(KnVmAllocate(RTL_NULL, 0, VMM_FLAG_RESERVE));
    ck_assert_uint_eq(kosvmm_last_error(), rcInvalidArgument);
    char *p = KnVmAllocate(RTL_NULL, 2 * pg, VMM_FLAG_RESERVE);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(kosvmm_last_error(), rcOk);
    ck_assert_uint_eq(KnVmUnmap(p, 2 * pg), rcOk);
}
END_TEST

START_TEST(fixed_address_honoured)
{
    size_t pg = tu_page(), n = 16;
    char *want = free_address(n);
    VmQueryInfo info = tu_query(want);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_FREE);

    char *p = KnVmAllocate(want, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_READ | VMM_FLAG_WRITE);
    ck_assert_ptr_eq(p, want);
    ck_assert_uint_eq(kosvmm_last_error(), rcOk);
    info = tu_query(want + 3 * pg);
    ck_assert_ptr_eq(info.regionBase, want);
    ck_assert_uint_eq(info.regionSize, n * pg);
    p[0] = 1;
    p[n * pg - 1] = 2;
    ck_assert_int_eq(p[0] + p[n * pg - 1], 3);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(fixed_address_unaligned_rejected)
{
    size_t pg = tu_page();
    char *want = free_address(4);
    ck_assert_ptr_null(KnVmAllocate(want + 1, 2 * pg, VMM_FLAG_RESERVE));
    ck_assert_uint_eq(kosvmm_last_error(), rcInvalidArgument);
    ck_assert_int_eq(tu_is_mapped(want), 0);
}
END_TEST

START_TEST(fixed_overlap_kosvmm_region_already_exists)
{
    size_t pg = tu_page(), n = 8;
    char *a = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_READ | VMM_FLAG_WRITE);
    ck_assert_ptr_nonnull(a);
    for (size_t i = 0; i < n * pg; i++)
        a[i] = (char)(i * 7 + 1);
    kosvmm_stats before = tu_stats();

    /* Exactly the same range, a range inside, and a range straddling the start of the region. */
    ck_assert_ptr_null(KnVmAllocate(a, n * pg, VMM_FLAG_RESERVE));
    ck_assert_uint_eq(kosvmm_last_error(), rcAlreadyExists);
    ck_assert_ptr_null(KnVmAllocate(a + 2 * pg, pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_READ));
    ck_assert_uint_eq(kosvmm_last_error(), rcAlreadyExists);

    char *below = a - 2 * pg;
    if (!tu_is_mapped(below) && !tu_is_mapped(below + pg)) {
        ck_assert_ptr_null(KnVmAllocate(below, 4 * pg, VMM_FLAG_RESERVE));
        ck_assert_uint_eq(kosvmm_last_error(), rcAlreadyExists);
        ck_assert_int_eq(tu_is_mapped(below), 0);
    }

    /* The existing region is untouched: contents, kernel protection, bookkeeping. */
    for (size_t i = 0; i < n * pg; i++)
        ck_assert_int_eq(a[i], (char)(i * 7 + 1));
    char perms[5];
    ck_assert_int_eq(tu_maps_perms(a + 2 * pg, perms), 0);
    ck_assert_str_eq(perms, "rw-p");
    VmQueryInfo info = tu_query(a + 2 * pg);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_ptr_eq(info.regionBase, a);
    ck_assert_uint_eq(info.regionSize, n * pg);
    kosvmm_stats after = tu_stats();
    ck_assert_uint_eq(after.regions, before.regions);
    ck_assert_uint_eq(after.reserved_bytes, before.reserved_bytes);

    ck_assert_uint_eq(KnVmUnmap(a, n * pg), rcOk);
}
END_TEST

START_TEST(fixed_overlap_foreign_mapping_already_exists)
{
    size_t pg = tu_page(), n = 4;
    char *m = mmap(NULL, n * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    memset(m, 0x5C, n * pg);

    ck_assert_ptr_null(KnVmAllocate(m + pg, pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_READ | VMM_FLAG_WRITE));
    ck_assert_uint_eq(kosvmm_last_error(), rcAlreadyExists);

    for (size_t i = 0; i < n * pg; i++)
        ck_assert_int_eq(m[i], 0x5C);
    char perms[5];
    ck_assert_int_eq(tu_maps_perms(m + pg, perms), 0);
    ck_assert_str_eq(perms, "rw-p");
    ck_assert_uint_eq(tu_query(m + pg).state, VMM_PAGE_STATE_FREE);
    ck_assert_int_eq(munmap(m, n * pg), 0);
}
END_TEST

START_TEST(reserve_one_tib)
{
    kosvmm_stats before = tu_stats();
    char *p = KnVmAllocate(RTL_NULL, TIB, VMM_FLAG_RESERVE | VMM_FLAG_READ | VMM_FLAG_WRITE);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(kosvmm_last_error(), rcOk);

    char *last = p + TIB - tu_page();
    ck_assert_int_eq(tu_is_mapped(p), 1);
    ck_assert_int_eq(tu_is_mapped(last), 1);
    VmQueryInfo info = tu_query(last);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_RESERVED);
    ck_assert_ptr_eq(info.regionBase, p);
    ck_assert_uint_eq(info.regionSize, TIB);
    kosvmm_stats mid = tu_stats();
    ck_assert_uint_eq(mid.reserved_bytes, before.reserved_bytes + TIB);
    ck_assert_uint_eq(mid.regions, before.regions + 1);

    ck_assert_uint_eq(KnVmUnmap(p, TIB), rcOk);
    ck_assert_int_eq(tu_is_mapped(p), 0);
    ck_assert_int_eq(tu_is_mapped(last), 0);
    ck_assert_uint_eq(tu_query(p).state, VMM_PAGE_STATE_FREE);
    kosvmm_stats after = tu_stats();
    ck_assert_uint_eq(after.reserved_bytes, before.reserved_bytes);
    ck_assert_uint_eq(after.regions, before.regions);
}
END_TEST

static const struct {
    int prot;
    const char *perms;
} prot_table[] = {
    { 0, "---p" },
    { VMM_FLAG_READ, "r--p" },
    { VMM_FLAG_READ | VMM_FLAG_WRITE, "rw-p" },
    { VMM_FLAG_READ | VMM_FLAG_EXECUTE, "r-xp" },
    { VMM_FLAG_READ | VMM_FLAG_WRITE | VMM_FLAG_EXECUTE, "rwxp" },
};

START_TEST(allowed_protection_reserve)
{
    size_t pg = tu_page();
    int prot = prot_table[_i].prot;
    char *p = KnVmAllocate(RTL_NULL, 4 * pg, VMM_FLAG_RESERVE | prot);
    ck_assert_msg(p != NULL, "prot %#x rejected", prot);
    ck_assert_uint_eq(kosvmm_last_error(), rcOk);
    VmQueryInfo info = tu_query(p);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(info.protection, (rtl_uint32_t)prot);
    char perms[5];
    ck_assert_int_eq(tu_maps_perms(p, perms), 0);
    ck_assert_str_eq(perms, "---p");
    ck_assert_uint_eq(KnVmUnmap(p, 4 * pg), rcOk);
}
END_TEST

START_TEST(allowed_protection_commit)
{
    size_t pg = tu_page();
    int prot = prot_table[_i].prot;
    char *p = KnVmAllocate(RTL_NULL, 4 * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | prot);
    ck_assert_msg(p != NULL, "prot %#x rejected", prot);
    ck_assert_uint_eq(kosvmm_last_error(), rcOk);
    VmQueryInfo info = tu_query(p);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_eq(info.protection, (rtl_uint32_t)prot);
    char perms[5];
    ck_assert_int_eq(tu_maps_perms(p, perms), 0);
    ck_assert_str_eq(perms, prot_table[_i].perms);
    ck_assert_uint_eq(KnVmUnmap(p, 4 * pg), rcOk);
}
END_TEST

static const int cache_table[] = {
    0, VMM_FLAG_WRITE_BACK, VMM_FLAG_WRITE_THROUGH, VMM_FLAG_WRITE_COMBINE, VMM_FLAG_CACHE_DISABLE,
};

START_TEST(cache_mode_recorded)
{
    size_t pg = tu_page();
    int cache = cache_table[_i];
    int flags = VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_READ | VMM_FLAG_WRITE | cache;
    char *p = KnVmAllocate(RTL_NULL, 4 * pg, flags);
    ck_assert_msg(p != NULL, "cache mode %#x rejected", cache);
    VmQueryInfo info = tu_query(p + pg);
    ck_assert_uint_eq(info.cache, (rtl_uint32_t)cache);
    ck_assert_uint_eq(info.regionFlags, (rtl_uint32_t)flags);
    /* Host RAM is always write-back: the mapping behaves normally whatever the mode. */
    p[pg] = 42;
    ck_assert_int_eq(p[pg], 42);
    ck_assert_uint_eq(KnVmUnmap(p, 4 * pg), rcOk);
}
END_TEST

START_TEST(two_cache_modes_rejected)
{
    size_t pg = tu_page();
    ck_assert_ptr_null(KnVmAllocate(RTL_NULL, 4 * pg,
                                    VMM_FLAG_RESERVE | VMM_FLAG_WRITE_BACK | VMM_FLAG_CACHE_DISABLE));
    ck_assert_uint_eq(kosvmm_last_error(), rcInvalidArgument);
}
END_TEST

START_TEST(stats_regions_and_reserved_bytes)
{
    size_t pg = tu_page();
    kosvmm_stats s0 = tu_stats();
    char *a = KnVmAllocate(RTL_NULL, 16 * pg, VMM_FLAG_RESERVE);
    ck_assert_ptr_nonnull(a);
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.regions, s0.regions + 1);
    ck_assert_uint_eq(s1.reserved_bytes, s0.reserved_bytes + 16 * pg);

    /* Guard pages are not counted. */
    char *b = KnVmAllocate(RTL_NULL, 8 * pg, VMM_FLAG_RESERVE | VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD);
    ck_assert_ptr_nonnull(b);
    kosvmm_stats s2 = tu_stats();
    ck_assert_uint_eq(s2.regions, s0.regions + 2);
    ck_assert_uint_eq(s2.reserved_bytes, s0.reserved_bytes + 24 * pg);

    ck_assert_uint_eq(KnVmUnmap(a, 16 * pg), rcOk);
    kosvmm_stats s3 = tu_stats();
    ck_assert_uint_eq(s3.regions, s0.regions + 1);
    ck_assert_uint_eq(s3.reserved_bytes, s0.reserved_bytes + 8 * pg);

    ck_assert_uint_eq(KnVmUnmap(b, 8 * pg), rcOk);
    kosvmm_stats s4 = tu_stats();
    ck_assert_uint_eq(s4.regions, s0.regions);
    ck_assert_uint_eq(s4.reserved_bytes, s0.reserved_bytes);
}
END_TEST

START_TEST(stats_null_rejected)
{
    ck_assert_uint_eq(kosvmm_get_stats(RTL_NULL), rcInvalidArgument);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("reserve");

    TCase *tc = tcase_create("reserve_only");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, reserve_only_is_prot_none_and_not_resident);
    tcase_add_test_raise_signal(tc, reserve_only_access_faults, SIGSEGV);
    tcase_add_test(tc, last_error_ok_after_success);
    suite_add_tcase(s, tc);

    tc = tcase_create("fixed");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, fixed_address_honoured);
    tcase_add_test(tc, fixed_address_unaligned_rejected);
    tcase_add_test(tc, fixed_overlap_kosvmm_region_already_exists);
    tcase_add_test(tc, fixed_overlap_foreign_mapping_already_exists);
    suite_add_tcase(s, tc);

    tc = tcase_create("huge");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, reserve_one_tib);
    suite_add_tcase(s, tc);

    tc = tcase_create("flags");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, allowed_protection_reserve, 0, (int)(sizeof prot_table / sizeof prot_table[0]));
    tcase_add_loop_test(tc, allowed_protection_commit, 0, (int)(sizeof prot_table / sizeof prot_table[0]));
    tcase_add_loop_test(tc, cache_mode_recorded, 0, (int)(sizeof cache_table / sizeof cache_table[0]));
    tcase_add_test(tc, two_cache_modes_rejected);
    suite_add_tcase(s, tc);

    tc = tcase_create("stats");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, stats_regions_and_reserved_bytes);
    tcase_add_test(tc, stats_null_rejected);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tu_run(suite());
}
