/* SPDX-License-Identifier: MIT */
/* tests/test_retcode.c — the SDK Retcode set, its errno map, rtl/align.h and hal/page.h. */
#include <check.h>
#include <errno.h>
#include <hal/page.h>
#include <rtl/align.h>
#include <rtl/retcode_hr.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "page_check.h"
#include "testutil.h"

#define RC(name) {name, #name}
static const struct {
    Retcode rc;
    const char *name;
} failures[] = {
    RC(rcFail), RC(rcInvalidArgument), RC(rcOutOfMemory), RC(rcResourceNotFound),
    RC(rcAlreadyExists), RC(rcInvalidOperation), RC(rcNoCapability), RC(rcSecurityDisallow),
    RC(rcHandleRevoked), RC(rcQuotaExceeded), RC(rcUnimplemented), RC(rcBusy), RC(rcNotConnected),
    RC(rcBufferTooSmall), RC(rcInternalError), RC(rcTransferError), RC(rcReceiveError),
    RC(rcSourceFault), RC(rcTargetFault), RC(rcIpcInterrupt), RC(rcRestart), RC(rcNotReady),
    RC(rcBufferTooLarge), RC(rcTimeout), RC(rcFutexWouldBlock), RC(rcAbort), RC(rcInvalidThreadState),
    RC(rcDeviceNotFound),
};
#define NFAIL (sizeof failures / sizeof failures[0])

START_TEST(retcode_is_signed_32_bit)
{
    ck_assert_uint_eq(sizeof(Retcode), 4);
    Retcode minus_one = -1;
    ck_assert(minus_one < 0); /* a signed type: SDK code testing rc < 0 works */
    ck_assert_int_eq(rcOk, 0);
    ck_assert(RC_SUCCEEDED(rcOk) && !RC_FAILED(rcOk));
}
END_TEST

START_TEST(every_failure_is_negative_and_distinct)
{
    for (size_t i = 0; i < NFAIL; i++) {
        Retcode rc = failures[i].rc;
        ck_assert_msg(rc < 0, "%s = %d is not negative", failures[i].name, rc);
        ck_assert_msg(rc != rcOk && RC_FAILED(rc) && !RC_SUCCEEDED(rc), "%s", failures[i].name);
        ck_assert_int_eq(RC_GET_SEVERITY(rc), 1);
        ck_assert_int_eq(RC_GET_CUSTOMER(rc), 0);
        ck_assert_int_eq(RC_GET_SPACE(rc), RC_SPACE_GENERAL);
        ck_assert_int_eq(RC_GET_FACILITY(rc), 0);
        ck_assert_int_eq(rc, RC_MAKE_ERROR(RC_GET_CODE(rc)));
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(rc != failures[j].rc, "%s == %s", failures[i].name, failures[j].name);
    }
}
END_TEST

START_TEST(every_name_prints)
{
    ck_assert_str_eq(rtl_retcode_name(rcOk), "rcOk");
    for (size_t i = 0; i < NFAIL; i++)
        ck_assert_str_eq(rtl_retcode_name(failures[i].rc), failures[i].name);
    char line[80];
    snprintf(line, sizeof line, RETCODE_HR_FMT, RETCODE_HR_PARAMS(rcTimeout));
    ck_assert_str_eq(line, "rcTimeout (0x80000018)");
    /* Values no kosvmm name has: another space, facility or code, a customer code, a success
     * value other than 0. */
    const Retcode unknown[] = {
        RC_MAKE_RETCODE(0, RC_SPACE_KERNEL, 0, 2), RC_MAKE_RETCODE(0, RC_SPACE_GENERAL, 1, 2),
        RC_MAKE_RETCODE(1, RC_SPACE_GENERAL, 0, 2), RC_MAKE_ERROR(0), RC_MAKE_ERROR(29),
        RC_MAKE_ERROR(0xFFFF), 1, 0x7FFFFFFF, RC_FAIL_BIT,
    };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        ck_assert_str_eq(rtl_retcode_name(unknown[i]), "rcUnknown");
}
END_TEST

START_TEST(fields_round_trip)
{
    Retcode rc = RC_MAKE_RETCODE(1, 0x2A, 0xC3, 0xBEEF);
    ck_assert(rc < 0);
    ck_assert_int_eq(RC_GET_SEVERITY(rc), 1);
    ck_assert_int_eq(RC_GET_CUSTOMER(rc), 1);
    ck_assert_int_eq(RC_GET_SPACE(rc), 0x2A);
    ck_assert_int_eq(RC_GET_FACILITY(rc), 0xC3);
    ck_assert_int_eq(RC_GET_CODE(rc), 0xBEEF);
    ck_assert_int_eq(RC_GET_CODE(rcOk) + RC_GET_SPACE(rcOk) + RC_GET_SEVERITY(rcOk), 0);
}
END_TEST

START_TEST(errno_map)
{
    static const struct {
        int err;
        Retcode rc;
    } want[] = {
        {0, rcOk}, {EINVAL, rcInvalidArgument}, {EBADF, rcInvalidArgument}, {ENOMEM, rcOutOfMemory},
        {ENOENT, rcResourceNotFound}, {EEXIST, rcAlreadyExists}, {EOPNOTSUPP, rcInvalidOperation},
        {EACCES, rcNoCapability}, {EPERM, rcSecurityDisallow}, {EKEYREVOKED, rcHandleRevoked},
        {EDQUOT, rcQuotaExceeded}, {EMFILE, rcQuotaExceeded}, {ENFILE, rcQuotaExceeded},
        {ENOSYS, rcUnimplemented}, {EBUSY, rcBusy}, {ENOTCONN, rcNotConnected},
        {ERANGE, rcBufferTooSmall}, {E2BIG, rcBufferTooLarge}, {EMSGSIZE, rcBufferTooLarge},
        {ENOTRECOVERABLE, rcInternalError}, {EINTR, rcIpcInterrupt}, {EAGAIN, rcNotReady},
        {ETIMEDOUT, rcTimeout}, {ECANCELED, rcAbort}, {ENODEV, rcDeviceNotFound},
        {ENXIO, rcDeviceNotFound}, {EIO, rcFail}, {EPIPE, rcFail}, {9999, rcFail},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(kvmm_retcode(-want[i].err) == want[i].rc, "errno %d -> %s, want %s", want[i].err,
                      rtl_retcode_name(kvmm_retcode(-want[i].err)), rtl_retcode_name(want[i].rc));
}
END_TEST

START_TEST(align_helpers)
{
    ck_assert_uint_eq(rtl_align_up(0, 16), 0);
    ck_assert_uint_eq(rtl_align_up(1, 16), 16);
    ck_assert_uint_eq(rtl_align_up(16, 16), 16);
    ck_assert_uint_eq(rtl_align_up(17, 16), 32);
    ck_assert_uint_eq(rtl_align_down(31, 16), 16);
    ck_assert_uint_eq(rtl_align_down(15, 16), 0);
    ck_assert_uint_eq(rtl_align_up(5, 1), 5);
    ck_assert(rtl_is_aligned(4096, PAGE_SIZE) && !rtl_is_aligned(4097, PAGE_SIZE));
    ck_assert(rtl_is_aligned(0, 8) && rtl_is_aligned(7, 1));
    /* The mask is as wide as the value: a 32-bit alignment does not clear the high bits. */
    rtl_uintptr_t high = (rtl_uintptr_t)1 << (sizeof(rtl_uintptr_t) * 8 - 1);
    uint32_t a32 = 4096;
    ck_assert_uint_eq(rtl_align_up(high + 1, a32), high + 4096);
    ck_assert_uint_eq(rtl_align_down(high + 4097, a32), high + 4096);
    /* Documented wrap at the top of the address space. */
    ck_assert_uint_eq(rtl_align_up(UINTPTR_MAX - 3, 16), 0);
}
END_TEST

START_TEST(page_size_agrees)
{
    ck_assert_uint_eq(PAGE_SIZE, 1UL << PAGE_SHIFT);
    ck_assert_uint_eq(PAGE_MASK, ~(PAGE_SIZE - 1));
    long host = sysconf(_SC_PAGESIZE);
    ck_assert_msg((unsigned long)host == PAGE_SIZE,
                  "this host's pages are %ld bytes, hal/page.h says %lu: kosvmm warns at load", host,
                  PAGE_SIZE);
    ck_assert(kvmm_page_size_matches((size_t)host));
    ck_assert(!kvmm_page_size_matches(16384) && !kvmm_page_size_matches(65536));
}
END_TEST

START_TEST(rtl_null_and_bool)
{
    void *p = RTL_NULL;
    ck_assert_ptr_null(p);
    rtl_bool t = rtl_true, f = rtl_false;
    ck_assert(t && !f);
}
END_TEST

static Suite *retcode_suite(void)
{
    Suite *s = suite_create("retcode");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, retcode_is_signed_32_bit);
    tcase_add_test(tc, every_failure_is_negative_and_distinct);
    tcase_add_test(tc, every_name_prints);
    tcase_add_test(tc, fields_round_trip);
    tcase_add_test(tc, errno_map);
    tcase_add_test(tc, align_helpers);
    tcase_add_test(tc, page_size_agrees);
    tcase_add_test(tc, rtl_null_and_bool);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(retcode_suite());
}
