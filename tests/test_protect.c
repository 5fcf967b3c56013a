/* SPDX-License-Identifier: MIT */
/* tests/test_protect.c — KnVmProtect: transitions, faults, close/re-open, reserved pages, RX, rejected flags. */
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include "testutil.h"

#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define RX (VMM_FLAG_READ | VMM_FLAG_EXECUTE)

static char *committed(size_t n, int prot)
{
    char *p = KnVmAllocate(RTL_NULL, n * tu_page(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | prot);
    ck_assert_ptr_nonnull(p);
    return p;
}

START_TEST(r_rw_r_transitions)
{
    size_t pg = tu_page(), n = 8;
    char *p = committed(n, VMM_FLAG_READ);
    tu_assert_perms(p, "r--p");
    ck_assert_uint_eq(tu_query(p).protection, VMM_FLAG_READ);

    ck_assert_uint_eq(KnVmProtect(p, n * pg, RW), rcOk);
    tu_assert_perms(p, "rw-p");
    tu_assert_perms(p + (n - 1) * pg, "rw-p");
    ck_assert_uint_eq(tu_query(p + pg).protection, RW);
    memset(p, 0x6B, n * pg);

    ck_assert_uint_eq(KnVmProtect(p, n * pg, VMM_FLAG_READ), rcOk);
    tu_assert_perms(p, "r--p");
    VmQueryInfo info = tu_query(p + 2 * pg);
    ck_assert_uint_eq(info.protection, VMM_FLAG_READ);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    for (size_t i = 0; i < n * pg; i++)
        ck_assert_int_eq(p[i], 0x6B);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(write_to_readonly_faults)
{
    size_t pg = tu_page(), n = 4;
    char *p = committed(n, RW);
    p[pg] = 1;
    ck_assert_uint_eq(KnVmProtect(p, n * pg, VMM_FLAG_READ), rcOk);
    ck_assert_int_eq(p[pg], 1);
    volatile char *v = p + pg;
    *v = 2;
}
END_TEST

START_TEST(protect_partial_range)
{
    size_t pg = tu_page(), n = 8;
    char *p = committed(n, RW);
    ck_assert_uint_eq(KnVmProtect(p + 2 * pg, 3 * pg, VMM_FLAG_READ), rcOk);
    tu_assert_perms(p + pg, "rw-p");
    tu_assert_perms(p + 2 * pg, "r--p");
    tu_assert_perms(p + 4 * pg, "r--p");
    tu_assert_perms(p + 5 * pg, "rw-p");
    ck_assert_uint_eq(tu_query(p + pg).protection, RW);
    ck_assert_uint_eq(tu_query(p + 3 * pg).protection, VMM_FLAG_READ);
    ck_assert_uint_eq(tu_query(p + 5 * pg).protection, RW);
    p[pg] = 1;
    p[5 * pg] = 1;
    ck_assert_int_eq(p[pg] + p[5 * pg], 2);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(protect_none_keeps_contents_and_reopens)
{
    size_t pg = tu_page(), n = 8;
    char *p = committed(n, RW);
    for (size_t i = 0; i < n * pg; i++)
        p[i] = (char)(i % 241);
    ck_assert_uint_eq(KnVmProtect(p, n * pg, 0), rcOk);
    tu_assert_perms(p, "---p");
    VmQueryInfo info = tu_query(p);
    ck_assert_uint_eq(info.protection, 0);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    /* Contents are kept: still resident. */
    ck_assert_int_eq(tu_resident_pages(p, n * pg), (long)n);

    ck_assert_uint_eq(KnVmProtect(p, n * pg, RW), rcOk);
    tu_assert_perms(p, "rw-p");
    ck_assert_uint_eq(tu_query(p).protection, RW);
    for (size_t i = 0; i < n * pg; i++)
        ck_assert_int_eq(p[i], (char)(i % 241));
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(protect_none_read_faults)
{
    size_t pg = tu_page(), n = 4;
    char *p = committed(n, RW);
    p[0] = 1;
    ck_assert_uint_eq(KnVmProtect(p, n * pg, 0), rcOk);
    volatile char *v = p;
    (void)*v;
}
END_TEST

START_TEST(protect_reserved_records_protection)
{
    size_t pg = tu_page(), n = 8;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(KnVmProtect(p, n * pg, VMM_FLAG_READ), rcOk);
    VmQueryInfo info = tu_query(p);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(info.protection, VMM_FLAG_READ);
    tu_assert_perms(p, "---p");
    ck_assert_int_eq(tu_resident_pages(p, n * pg), 0);

    ck_assert_uint_eq(KnVmCommit(p, n * pg, VMM_FLAG_LOCKED), rcOk);
    tu_assert_perms(p, "r--p");
    info = tu_query(p);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_eq(info.protection, VMM_FLAG_READ);
    ck_assert_int_eq(((volatile char *)p)[0], 0);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(protect_reserved_stays_inaccessible)
{
    size_t pg = tu_page(), n = 4;
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(KnVmProtect(p, n * pg, RW), rcOk);
    tu_assert_perms(p, "---p");
    volatile char *v = p;
    *v = 1;
}
END_TEST

START_TEST(protect_decommitted_then_commit_gets_it)
{
    size_t pg = tu_page(), n = 4;
    char *p = committed(n, RW);
    ck_assert_uint_eq(KnVmDecommit(p, n * pg), rcOk);
    ck_assert_uint_eq(KnVmProtect(p, n * pg, RX), rcOk);
    tu_assert_perms(p, "---p");
    ck_assert_uint_eq(KnVmCommit(p, n * pg, 0), rcOk);
    tu_assert_perms(p, "r-xp");
    ck_assert_uint_eq(tu_query(p).protection, RX);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(rx_perms)
{
    size_t pg = tu_page(), n = 4;
    char *p = committed(n, RX);
    tu_assert_perms(p, "r-xp");
    ck_assert_uint_eq(tu_query(p).protection, RX);

    char *r = committed(n, RW);
    ck_assert_uint_eq(KnVmProtect(r, n * pg, RX), rcOk);
    tu_assert_perms(r, "r-xp");
    ck_assert_uint_eq(tu_query(r).protection, RX);
    ck_assert_uint_eq(KnVmProtect(r, n * pg, VMM_FLAG_RWX_MASK), rcOk);
    tu_assert_perms(r, "rwxp");
    ck_assert_uint_eq(tu_query(r).protection, VMM_FLAG_RWX_MASK);

    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
    ck_assert_uint_eq(KnVmUnmap(r, n * pg), rcOk);
}
END_TEST

static const int bad_prot[] = {
    VMM_FLAG_WRITE,
    VMM_FLAG_EXECUTE,
    VMM_FLAG_WRITE | VMM_FLAG_EXECUTE,
    VMM_FLAG_COMMIT,
    VMM_FLAG_READ | VMM_FLAG_COMMIT,
    VMM_FLAG_READ | VMM_FLAG_RESERVE,
    VMM_FLAG_READ | VMM_FLAG_WRITE | VMM_FLAG_LOCKED,
    VMM_FLAG_READ | VMM_FLAG_WRITE_BACK,
    VMM_FLAG_READ | VMM_FLAG_LOW_GUARD,
    0x00100000,
    -1,
};

START_TEST(rejected_new_flags_change_nothing)
{
    size_t pg = tu_page(), n = 4;
    int bad = bad_prot[_i];
    char *p = committed(n, RW);
    memset(p, 0x2D, n * pg);
    VmQueryInfo before = tu_query(p);

    ck_assert_msg(KnVmProtect(p, n * pg, bad) == rcInvalidArgument, "newFlags %#x not rejected", (unsigned)bad);
    tu_assert_perms(p, "rw-p");
    VmQueryInfo after = tu_query(p);
    ck_assert_uint_eq(after.protection, before.protection);
    ck_assert_uint_eq(after.state, before.state);
    ck_assert_uint_eq(after.attributes, before.attributes);
    ck_assert_uint_eq(after.runSize, before.runSize);
    for (size_t i = 0; i < n * pg; i++)
        ck_assert_int_eq(p[i], 0x2D);
    p[0] = 1; /* still writable */
    ck_assert_int_eq(p[0], 1);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(rejected_new_flags_on_reserved_change_nothing)
{
    size_t pg = tu_page(), n = 4;
    int bad = bad_prot[_i];
    char *p = KnVmAllocate(RTL_NULL, n * pg, VMM_FLAG_RESERVE | VMM_FLAG_READ);
    ck_assert_ptr_nonnull(p);
    ck_assert_msg(KnVmProtect(p, n * pg, bad) == rcInvalidArgument, "newFlags %#x not rejected", (unsigned)bad);
    VmQueryInfo info = tu_query(p);
    ck_assert_uint_eq(info.protection, VMM_FLAG_READ);
    ck_assert_uint_eq(info.state, VMM_PAGE_STATE_RESERVED);
    tu_assert_perms(p, "---p");
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

START_TEST(protect_range_errors)
{
    size_t pg = tu_page(), n = 4;
    char *p = committed(n, RW);
    int local = 0;
    ck_assert_uint_eq(KnVmProtect(p + 1, pg, VMM_FLAG_READ), rcInvalidArgument);
    ck_assert_uint_eq(KnVmProtect(p, pg + 1, VMM_FLAG_READ), rcInvalidArgument);
    ck_assert_uint_eq(KnVmProtect(p, 0, VMM_FLAG_READ), rcInvalidArgument);
    ck_assert_uint_eq(KnVmProtect(p, (n + 1) * pg, VMM_FLAG_READ), rcInvalidArgument);
    uintptr_t page_of_local = (uintptr_t)&local & ~(uintptr_t)(pg - 1);
    ck_assert_uint_eq(KnVmProtect((void *)page_of_local, pg, VMM_FLAG_READ), rcResourceNotFound);
    tu_assert_perms(p, "rw-p");
    ck_assert_uint_eq(tu_query(p).protection, RW);
    ck_assert_uint_eq(tu_query(p + (n - 1) * pg).protection, RW);
    ck_assert_uint_eq(KnVmUnmap(p, n * pg), rcOk);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("protect");

    TCase *tc = tcase_create("transitions");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, r_rw_r_transitions);
    tcase_add_test_raise_signal(tc, write_to_readonly_faults, SIGSEGV);
    tcase_add_test(tc, protect_partial_range);
    tcase_add_test(tc, rx_perms);
    suite_add_tcase(s, tc);

    tc = tcase_create("close_reopen");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, protect_none_keeps_contents_and_reopens);
    tcase_add_test_raise_signal(tc, protect_none_read_faults, SIGSEGV);
    suite_add_tcase(s, tc);

    tc = tcase_create("reserved");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, protect_reserved_records_protection);
    tcase_add_test_raise_signal(tc, protect_reserved_stays_inaccessible, SIGSEGV);
    tcase_add_test(tc, protect_decommitted_then_commit_gets_it);
    suite_add_tcase(s, tc);

    tc = tcase_create("rejected");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, rejected_new_flags_change_nothing, 0, (int)(sizeof bad_prot / sizeof bad_prot[0]));
    tcase_add_loop_test(tc, rejected_new_flags_on_reserved_change_nothing, 0,
                        (int)(sizeof bad_prot / sizeof bad_prot[0]));
    tcase_add_test(tc, protect_range_errors);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tu_run(suite());
}
