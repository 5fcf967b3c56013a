/* SPDX-License-Identifier: MIT */
/* tests/test_handles.c — the handle table: generation checks, forged/closed/revoked values, object lifetime. */
#include <coresrv/handle/handle_api.h>
#include <errno.h>
#include <stdlib.h>

#include "handle_table.h"
#include "testutil.h"

struct object {
    int refs;
};

static void acquire(void *o)
{
    ((struct object *)o)->refs++;
}

static void release(void *o)
{
    ((struct object *)o)->refs--;
}

static const struct kvmm_handle_ops ops = {acquire, release, NULL};
static const struct kvmm_handle_ops other_ops = {acquire, release, NULL};

START_TEST(open_get_close)
{
    struct object obj = {0};
    Handle h;
    ck_assert_int_eq(kvmm_handle_open(&ops, &obj, 0x5, &h), 0);
    ck_assert_uint_ne(h, INVALID_HANDLE);
    ck_assert_uint_ne(h, 0);
    ck_assert_int_eq(obj.refs, 1);
    void *got;
    uint32_t rights;
    ck_assert_int_eq(kvmm_handle_get(h, &ops, &got, &rights), 0);
    ck_assert_ptr_eq(got, &obj);
    ck_assert_uint_eq(rights, 0x5);
    ck_assert_int_eq(obj.refs, 2);
    release(got);
    ck_assert_uint_eq(kvmm_handle_count(), 1);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_int_eq(obj.refs, 0);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
}
END_TEST

START_TEST(closed_value_never_names_the_new_object)
{
    struct object a = {0}, b = {0};
    Handle ha, hb;
    ck_assert_int_eq(kvmm_handle_open(&ops, &a, 1, &ha), 0);
    ck_assert_uint_eq(KnHandleClose(ha), rcOk);
    ck_assert_int_eq(kvmm_handle_open(&ops, &b, 1, &hb), 0); /* reuses the slot */
    ck_assert_uint_ne(ha, hb);
    void *got;
    uint32_t rights;
    ck_assert_int_eq(kvmm_handle_get(ha, &ops, &got, &rights), -EINVAL);
    ck_assert_uint_eq(KnHandleClose(ha), rcInvalidArgument);
    ck_assert_uint_eq(KnHandleRevoke(ha), rcInvalidArgument);
    ck_assert_int_eq(b.refs, 1); /* untouched by the stale value */
    ck_assert_uint_eq(KnHandleClose(hb), rcOk);
}
END_TEST

START_TEST(forged_values_are_refused)
{
    struct object obj = {0};
    Handle h;
    ck_assert_int_eq(kvmm_handle_open(&ops, &obj, 1, &h), 0);
    const Handle forged[] = {0, INVALID_HANDLE, h + 1, h ^ (1u << 31), h & KVMM_HANDLE_MAX_SLOTS,
                             0x12345678u, KVMM_HANDLE_MAX_SLOTS};
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
        ck_assert_uint_eq(KnHandleClose(forged[i]), rcInvalidArgument);
        ck_assert_uint_eq(KnHandleRevoke(forged[i]), rcInvalidArgument);
    }
    void *got;
    uint32_t rights;
    /* A handle of one object type is not accepted where another type is expected. */
    ck_assert_int_eq(kvmm_handle_get(h, &other_ops, &got, &rights), -EINVAL);
    ck_assert_int_eq(obj.refs, 1);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
}
END_TEST

START_TEST(revoked_handle_fails_until_closed)
{
    struct object obj = {0};
    Handle h;
    ck_assert_int_eq(kvmm_handle_open(&ops, &obj, 1, &h), 0);
    ck_assert_uint_eq(KnHandleRevoke(h), rcOk);
    void *got;
    uint32_t rights;
    ck_assert_int_eq(kvmm_handle_get(h, &ops, &got, &rights), -EKEYREVOKED);
    ck_assert_uint_eq(KnHandleRevoke(h), rcHandleRevoked);
    ck_assert_int_eq(obj.refs, 1); /* revocation keeps the slot, and the object, until close */
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_int_eq(obj.refs, 0);
    ck_assert_uint_eq(KnHandleClose(h), rcInvalidArgument);
}
END_TEST

START_TEST(many_handles_grow_and_recycle)
{
    enum { N = 10000 };
    static Handle h[N];
    struct object obj = {0};
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++)
            ck_assert_int_eq(kvmm_handle_open(&ops, &obj, 1, &h[i]), 0);
        ck_assert_int_eq(obj.refs, N);
        for (int i = 0; i < N; i++)
            ck_assert_uint_eq(KnHandleClose(h[i]), rcOk);
        ck_assert_int_eq(obj.refs, 0);
    }
    ck_assert_uint_eq(kvmm_handle_count(), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("handles");
    TCase *tc = tcase_create("table");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, open_get_close);
    tcase_add_test(tc, closed_value_never_names_the_new_object);
    tcase_add_test(tc, forged_values_are_refused);
    tcase_add_test(tc, revoked_handle_fails_until_closed);
    tcase_add_test(tc, many_handles_grow_and_recycle);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
