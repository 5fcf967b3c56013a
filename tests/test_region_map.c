/* SPDX-License-Identifier: MIT */
/* tests/test_region_map.c — random public calls on a few regions; after each, spans and kernel agree page by page. */
#include <coresrv/vmm/vmm_api.h>
#include <stdlib.h>
#include <string.h>

#include "region_map.h"
#include "testutil.h"

#define PAGES 64

/* The maps permissions a page must show for what KnVmQuery says of it. */
static void expect_kernel_agrees(const char *base)
{
    for (int i = 0; i < PAGES; i++) {
        VmQueryInfo qi;
        ck_assert_uint_eq(KnVmQuery(base + i * tu_page(), &qi), rcOk);
        char want[5] = "---p", have[5];
        if (qi.state == VMM_PAGE_STATE_COMMITTED) {
            want[0] = qi.protection & VMM_FLAG_READ ? 'r' : '-';
            want[1] = qi.protection & VMM_FLAG_WRITE ? 'w' : '-';
            want[2] = qi.protection & VMM_FLAG_EXECUTE ? 'x' : '-';
        }
        ck_assert_int_eq(tu_maps_perms(base + i * tu_page(), have), 0);
        ck_assert_msg(memcmp(want, have, 4) == 0, "page %d: query says %s, kernel %.4s", i, want, have);
    }
}

static void expect_spans_valid(const char *base)
{
    kvmm_map_rdlock();
    struct kvmm_region *r = kvmm_map_find((uintptr_t)base);
    ck_assert_ptr_nonnull(r);
    pthread_mutex_lock(&r->lock);
    int ok = kvmm_region_validate(r);
    pthread_mutex_unlock(&r->lock);
    kvmm_map_unlock();
    ck_assert_int_eq(ok, 0);
}

START_TEST(random_calls_keep_spans_and_kernel_in_agreement)
{
    static const int protections[] = {0, VMM_FLAG_READ, VMM_FLAG_READ | VMM_FLAG_WRITE,
                                      VMM_FLAG_READ | VMM_FLAG_EXECUTE, VMM_FLAG_RWX_MASK};
    const int flags = VMM_FLAG_RESERVE | VMM_FLAG_READ | VMM_FLAG_WRITE | (_i ? VMM_FLAG_LOCKED : 0);
    char *base = KnVmAllocate(RTL_NULL, PAGES * tu_page(), flags);
    ck_assert_ptr_nonnull(base);
    srand(1000u + (unsigned)_i);
    for (int step = 0; step < 3000; step++) {
        int first = rand() % PAGES, count = 1 + rand() % (PAGES - first);
        char *addr = base + first * tu_page();
        size_t size = (size_t)count * tu_page();
        Retcode rc = rcOk;
        switch (rand() % 4) {
        case 0: rc = KnVmCommit(addr, size, 0); break;
        case 1: rc = KnVmDecommit(addr, size); break;
        case 2: rc = KnVmReset(addr, size); break;
        case 3: rc = KnVmProtect(addr, size, protections[rand() % 5]); break;
        }
        ck_assert_uint_eq(rc, rcOk);
        expect_spans_valid(base);
        if (step % 10 == 0)
            expect_kernel_agrees(base);
    }
    ck_assert_uint_eq(KnVmUnmap(base, PAGES * tu_page()), rcOk);
}
END_TEST

START_TEST(random_partial_unmaps_leave_valid_pieces)
{
    char *base = KnVmAllocate(RTL_NULL, PAGES * tu_page(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | 3);
    ck_assert_ptr_nonnull(base);
    ck_assert_uint_eq(KnVmProtect(base + 8 * tu_page(), 8 * tu_page(), VMM_FLAG_READ), rcOk);
    srand(77);
    for (int step = 0; step < 200; step++) {
        char *addr = base + (rand() % PAGES) * tu_page();
        VmQueryInfo qi;
        ck_assert_uint_eq(KnVmQuery(addr, &qi), rcOk);
        if (qi.state == VMM_PAGE_STATE_FREE)
            continue;
        char *end = (char *)qi.regionBase + qi.regionSize;
        size_t size = (size_t)(1 + rand() % ((end - addr) / (long)tu_page())) * tu_page();
        ck_assert_uint_eq(KnVmUnmap(addr, size), rcOk);
        /* Right away, before anything could map there again: the kernel let the range go. */
        for (size_t off = 0; off < size; off += tu_page())
            ck_assert(!tu_is_mapped(addr + off));
        for (int i = 0; i < PAGES; i++) {
            ck_assert_uint_eq(KnVmQuery(base + i * tu_page(), &qi), rcOk);
            if (qi.state != VMM_PAGE_STATE_FREE)
                expect_spans_valid(qi.regionBase);
        }
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("region_map");
    TCase *tc = tcase_create("invariants");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, random_calls_keep_spans_and_kernel_in_agreement, 0, 2);
    tcase_add_test(tc, random_partial_unmaps_leave_valid_pieces);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
