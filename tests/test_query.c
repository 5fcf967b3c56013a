/* SPDX-License-Identifier: MIT */
/* tests/test_query.c — KnVmQuery: free addresses, region/page bases, run sizes, flags echo, attributes, bad args. */
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include "testutil.h"

#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)

static void assert_free(const void *va)
{
    VmQueryInfo info = tu_query(va);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_FREE);
    ck_assert_ptr_null(info.regionBase);
    ck_assert_uint_eq(info.protection, 0);
    ck_assert_uint_eq(info.runSize, tu_page());
    ck_assert_ptr_eq(info.pageBase, (void *)((uintptr_t)va & ~(uintptr_t)(tu_page() - 1)));
}

START_TEST(free_stack_address)
{
    volatile int local = 1;
    assert_free((const void *)&local);
    ck_assert_int_eq(local, 1);
}
END_TEST

START_TEST(free_heap_and_foreign_mmap)
{
    char *heap = malloc(100);
    ck_assert_ptr_nonnull(heap);
    assert_free(heap + 3);
    free(heap);

    char *m = mmap(NULL, 2 * tu_page(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    assert_free(m + tu_page() + 1);
    ck_assert_int_eq(munmap(m, 2 * tu_page()), 0);
}
END_TEST

START_TEST(free_after_unmap)
{
    size_t pg = tu_page();
    char *p = KnVmAllocate(RTL_NULL, 4 * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(tu_query(p).state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_eq(KnVmUnmap(p, 4 * pg), rcOk);
    assert_free(p);
    assert_free(p + 3 * pg);
}
END_TEST

START_TEST(null_info_rejected)
{
    size_t pg = tu_page();
    int local = 0;
    ck_assert_uint_eq(KnVmQuery(&local, RTL_NULL), rcInvalidArgument);
    char *p = KnVmAllocate(RTL_NULL, 4 * pg, VMM_FLAG_RESERVE);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(KnVmQuery(p, RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(KnVmUnmap(p, 4 * pg), rcOk);
}
END_TEST

START_TEST(region_base_and_size)
{
    size_t pg = tu_page(), n = 16;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(p);
    size_t probes[] = { 0, 1, 5 * pg + 17, n * pg - 1 };
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        VmQueryInfo info = tu_query(p + probes[i]);
        ck_assert_ptr_eq(info.regionBase, p);
        ck_assert_uint_eq(info.regionSize, n * pg);
        ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    }
    /* The byte just past the region is not part of it. */
    VmQueryInfo past = tu_query(p + n * pg);
    ck_assert_ptr_ne(past.regionBase, p);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(page_base_of_unaligned_va)
{
    size_t pg = tu_page(), n = 8;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_eq(tu_query(p + 3 * pg + 123).pageBase, p + 3 * pg);
    ck_assert_ptr_eq(tu_query(p + 3 * pg).pageBase, p + 3 * pg);
    ck_assert_ptr_eq(tu_query(p + 4 * pg - 1).pageBase, p + 3 * pg);
    ck_assert_ptr_eq(tu_query(p + 1).pageBase, p);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(run_size_tracks_identical_pages)
{
    size_t pg = tu_page(), n = 16;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(tu_query(p).runSize, n * pg);
    ck_assert_uint_eq(tu_query(p + 15 * pg).runSize, pg);

    ck_assert_uint_eq(KnVmCommit(p + 6 * pg, 4 * pg, 0), rcOk);
    /* reserved [0,6) committed [6,10) reserved [10,16) */
    VmQueryInfo a = tu_query(p);
    ck_assert_uint_eq(a.state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(a.runSize, 6 * pg);
    ck_assert_uint_eq(tu_query(p + 2 * pg + 9).runSize, 4 * pg);
    ck_assert_uint_eq(tu_query(p + 5 * pg).runSize, pg);

    VmQueryInfo m = tu_query(p + 6 * pg);
    ck_assert_uint_eq(m.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_eq(m.runSize, 4 * pg);
    ck_assert_uint_eq(tu_query(p + 8 * pg).runSize, 2 * pg);
    ck_assert_uint_eq(tu_query(p + 9 * pg + 1).runSize, pg);

    VmQueryInfo e = tu_query(p + 10 * pg);
    ck_assert_uint_eq(e.state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(e.runSize, 6 * pg);
    ck_assert_uint_eq(tu_query(p + 15 * pg).runSize, pg);

    /* A protection change splits the run too. */
    ck_assert_uint_eq(KnVmProtect(p + 7 * pg, pg, VMM_FLAG_READ), rcOk);
    ck_assert_uint_eq(tu_query(p + 6 * pg).runSize, pg);
    ck_assert_uint_eq(tu_query(p + 7 * pg).runSize, pg);
    ck_assert_uint_eq(tu_query(p + 8 * pg).runSize, 2 * pg);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(region_flags_echo)
{
    size_t pg = tu_page();
    const int variants[] = {
        VMM_FLAG_RESERVE,
        VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW | VMM_FLAG_WRITE_COMBINE,
        VMM_FLAG_RESERVE | VMM_FLAG_READ | VMM_FLAG_EXECUTE | VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD,
        VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW | VMM_FLAG_GROW_DOWN,
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        char *p = KnVmAllocate(RTL_NULL, 4 * pg, variants[i]);
        ck_assert_msg(p != NULL, "flags %#x rejected", (unsigned)variants[i]);
        VmQueryInfo info = tu_query(p + pg);
        ck_assert_uint_eq(info.regionFlags, (rtl_uint32_t)variants[i]);
        ck_assert_uint_eq(info.protection, (rtl_uint32_t)(variants[i] & VMM_FLAG_RWX_MASK));
        ck_assert_uint_eq(KnVmUnmap(p, 4 * pg), rcOk);
    }
}
END_TEST

START_TEST(attributes_grow_down)
{
    size_t pg = tu_page(), n = 8;
    char *g = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW | VMM_FLAG_GROW_DOWN);
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_ne(tu_query(g).attributes & VMM_PAGE_ATTR_GROW_DOWN, 0);
    ck_assert_uint_ne(tu_query(g + (n - 1) * pg).attributes & VMM_PAGE_ATTR_GROW_DOWN, 0);
    g[(n - 1) * pg] = 1; /* usable like any committed page */
    ck_assert_int_eq(g[(n - 1) * pg], 1);

    char *h = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(h);
    ck_assert_uint_eq(tu_query(h).attributes & VMM_PAGE_ATTR_GROW_DOWN, 0);

    ck_assert_uint_eq(KnVmUnmap(g, n * pg), rcOk);
    ck_assert_uint_eq(KnVmUnmap(h, n * pg), rcOk);
}
END_TEST

START_TEST(attributes_and_protection_by_state)
{
    size_t pg = tu_page(), n = 4;
    char *full = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | VMM_FLAG_READ);
    ck_assert_ptr_nonnull(full);
    VmQueryInfo info = tu_query(full);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_eq(info.protection, VMM_FLAG_READ);
    ck_assert_uint_ne(info.attributes & VMM_PAGE_ATTR_LOCKED, 0);
    ck_assert_uint_eq(info.attributes & (VMM_PAGE_ATTR_LAZY | VMM_PAGE_ATTR_GUARD | VMM_PAGE_ATTR_MDL), 0);
    ck_assert_uint_eq(info.cache, 0);

    char *res = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | RW | VMM_FLAG_CACHE_DISABLE);
    ck_assert_ptr_nonnull(res);
    info = tu_query(res + pg + 5);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(info.protection, RW); /* will have once committed */
    ck_assert_uint_eq(info.cache, VMM_FLAG_CACHE_DISABLE);
    ck_assert_uint_eq(info.attributes & (VMM_PAGE_ATTR_LAZY | VMM_PAGE_ATTR_LOCKED | VMM_PAGE_ATTR_PINNED |
                                         VMM_PAGE_ATTR_GUARD | VMM_PAGE_ATTR_MDL), 0);

    ck_assert_uint_eq(KnVmUnmap(full, n * pg), rcOk);
    ck_assert_uint_eq(KnVmUnmap(res, n * pg), rcOk);
}
END_TEST

START_TEST(query_after_partial_unmap)
{
    size_t pg = tu_page(), n = 12;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(KnVmUnmap(p + 4 * pg, 4 * pg), rcOk);
    VmQueryInfo lo = tu_query(p + pg), hi = tu_query(p + 9 * pg);
    ck_assert_ptr_eq(lo.regionBase, p);
    ck_assert_uint_eq(lo.regionSize, 4 * pg);
    ck_assert_ptr_eq(hi.regionBase, p + 8 * pg);
    ck_assert_uint_eq(hi.regionSize, 4 * pg);
    ck_assert_uint_eq(tu_query(p + 5 * pg).state, VMM_PAGE_STATE_FREE);
    ck_assert_uint_eq(KnVmUnmap(p, 4 * pg), rcOk);
    ck_assert_uint_eq(KnVmUnmap(p + 8 * pg, 4 * pg), rcOk);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("query");

    TCase *tc = tcase_create("free");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, free_stack_address);
    tcase_add_test(tc, free_heap_and_foreign_mmap);
    tcase_add_test(tc, free_after_unmap);
    tcase_add_test(tc, null_info_rejected);
    suite_add_tcase(s, tc);

    tc = tcase_create("layout");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, region_base_and_size);
    tcase_add_test(tc, page_base_of_unaligned_va);
    tcase_add_test(tc, run_size_tracks_identical_pages);
    tcase_add_test(tc, query_after_partial_unmap);
    suite_add_tcase(s, tc);

    tc = tcase_create("attributes");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, region_flags_echo);
    tcase_add_test(tc, attributes_grow_down);
    tcase_add_test(tc, attributes_and_protection_by_state);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tu_run(suite());
}
