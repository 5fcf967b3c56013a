/* SPDX-License-Identifier: MIT */
/* tests/test_handles.c — the handle table: generation checks, forged/closed/revoked values, revoke-and-close, object lifetime. */
#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "errors.h"
#include "handle_table.h"
#include "testutil.h"

struct object {
    int refs;
    bool revoked;     /* the handle itself is revoked (an origin was) */
    int revokes;      /* calls of the revoke hook */
    bool last_close;  /* its close argument */
};

static void acquire(void *o)
{
    ((struct object *)o)->refs++;
}

static void release(void *o)
{
    ((struct object *)o)->refs--;
}

static void obj_revoke(void *o, bool close)
{
    ((struct object *)o)->revokes++;
    ((struct object *)o)->last_close = close;
}

static bool is_revoked(const void *o)
{
    return ((const struct object *)o)->revoked;
}

static const struct kvmm_handle_ops ops = {acquire, release, obj_revoke, is_revoked};
static const struct kvmm_handle_ops other_ops = {acquire, release, NULL, NULL};

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
        ck_assert_uint_eq(KnHandleRevokeEx(forged[i], rtl_false), rcInvalidArgument);
        ck_assert_uint_eq(KnHandleRevokeEx(forged[i], rtl_true), rcInvalidArgument);
        ck_assert_uint_eq(KnHandleRevokeSubtree(forged[i], h), rcInvalidArgument);
        ck_assert_uint_eq(KnHandleRevokeSubtree(forged[i], INVALID_HANDLE), rcInvalidArgument);
    }
    ck_assert_int_eq(obj.revokes, 0);
    ck_assert_uint_eq(kvmm_handle_count(), 1);
    void *got;
    uint32_t rights;
    /* A handle of one object type is not accepted where another type is expected. */
    ck_assert_int_eq(kvmm_handle_get(h, &other_ops, &got, &rights), -EINVAL);
    ck_assert_int_eq(obj.refs, 1);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
}
END_TEST

START_TEST(revoke_closes_the_handle)
{
    struct object obj = {0};
    Handle h;
    ck_assert_int_eq(kvmm_handle_open(&ops, &obj, 1, &h), 0);
    ck_assert_uint_eq(KnHandleRevoke(h), rcOk);
    /* Descendants revoked (the hook), then the handle closed: slot, quota and object released. */
    ck_assert_int_eq(obj.revokes, 1);
    ck_assert(obj.last_close);
    ck_assert_int_eq(obj.refs, 0);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
    void *got;
    uint32_t rights;
    ck_assert_int_eq(kvmm_handle_get(h, &ops, &got, &rights), -EINVAL);
    ck_assert_uint_eq(KnHandleClose(h), rcInvalidArgument);
    ck_assert_uint_eq(KnHandleRevoke(h), rcInvalidArgument); /* a closed value, not "revoked" */
    ck_assert_int_eq(obj.revokes, 1);
}
END_TEST

START_TEST(revoke_ex_keeps_or_closes)
{
    struct object obj = {0};
    Handle h;
    ck_assert_int_eq(kvmm_handle_open(&ops, &obj, 1, &h), 0);
    ck_assert_uint_eq(KnHandleRevokeEx(h, rtl_false), rcOk);
    ck_assert_int_eq(obj.revokes, 1);
    ck_assert(!obj.last_close);
    /* Still open and usable. */
    void *got;
    uint32_t rights;
    ck_assert_int_eq(kvmm_handle_get(h, &ops, &got, &rights), 0);
    release(got);
    ck_assert_int_eq(obj.refs, 1);
    ck_assert_uint_eq(KnHandleRevokeEx(h, rtl_false), rcOk); /* again: new descendants only */
    ck_assert_int_eq(obj.revokes, 2);
    /* Any non-zero close is rtl_true. */
    ck_assert_uint_eq(KnHandleRevokeEx(h, 2), rcOk);
    ck_assert_int_eq(obj.revokes, 3);
    ck_assert(obj.last_close);
    ck_assert_int_eq(obj.refs, 0);
    ck_assert_uint_eq(KnHandleRevokeEx(h, rtl_false), rcInvalidArgument);
}
END_TEST

START_TEST(revoked_handle_is_refused_and_kept)
{
    struct object obj = {.revoked = true};
    Handle h;
    ck_assert_int_eq(kvmm_handle_open(&ops, &obj, 1, &h), 0);
    ck_assert_uint_eq(KnHandleRevoke(h), rcHandleRevoked);
    ck_assert_uint_eq(KnHandleRevokeEx(h, rtl_true), rcHandleRevoked);
    ck_assert_uint_eq(KnHandleRevokeEx(h, rtl_false), rcHandleRevoked);
    ck_assert_uint_eq(KnHandleRevokeSubtree(h, INVALID_HANDLE), rcHandleRevoked);
    /* Nothing changed: the hook never ran, the slot and the object stay until KnHandleClose. */
    ck_assert_int_eq(obj.revokes, 0);
    ck_assert_int_eq(obj.refs, 1);
    ck_assert_uint_eq(kvmm_handle_count(), 1);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_int_eq(obj.refs, 0);
}
END_TEST

START_TEST(revoke_subtree_refuses_every_badge)
{
    struct object obj = {0}, other = {0};
    Handle h, o;
    ck_assert_int_eq(kvmm_handle_open(&ops, &obj, 1, &h), 0);
    ck_assert_int_eq(kvmm_handle_open(&ops, &other, 1, &o), 0);
    /* No resource transfer context object exists in kosvmm: a live handle is not a badge either. */
    const Handle badges[] = {INVALID_HANDLE, 0, h, o, o + 1, 0x12345678u};
    for (size_t i = 0; i < sizeof badges / sizeof badges[0]; i++)
        ck_assert_uint_eq(KnHandleRevokeSubtree(h, badges[i]), rcInvalidArgument);
    ck_assert_int_eq(obj.revokes + other.revokes, 0);
    ck_assert_int_eq(obj.refs + other.refs, 2);
    ck_assert_uint_eq(kvmm_handle_count(), 2);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_uint_eq(KnHandleClose(o), rcOk);
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

/* A full table is a limit like max_handles (rcQuotaExceeded), whichever call meets it: the handle
 * table says -EMFILE, and the one errno -> Retcode table maps it, no caller has to remember to. */
START_TEST(full_table_is_a_quota)
{
    ck_assert_uint_eq(kvmm_retcode(-EMFILE), rcQuotaExceeded);
    ck_assert_uint_eq(kvmm_retcode(-ENFILE), rcQuotaExceeded);
    struct object obj = {0};
    Handle h;
    uint32_t opened = 0;
    int rc;
    while ((rc = kvmm_handle_open(&ops, &obj, 1, &h)) == 0)
        opened++;
    ck_assert_int_eq(rc, -EMFILE);
    ck_assert_uint_eq(opened, KVMM_HANDLE_MAX_SLOTS);
    Handle mdl = INVALID_HANDLE;
    ck_assert_uint_eq(KnPmmMdlCreate(4096, VMM_FLAG_READ | VMM_FLAG_WRITE, &mdl), rcQuotaExceeded);
    ck_assert_uint_eq(mdl, INVALID_HANDLE);
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
    tcase_add_test(tc, revoke_closes_the_handle);
    tcase_add_test(tc, revoke_ex_keeps_or_closes);
    tcase_add_test(tc, revoked_handle_is_refused_and_kept);
    tcase_add_test(tc, revoke_subtree_refuses_every_badge);
    tcase_add_test(tc, many_handles_grow_and_recycle);
    tcase_add_test(tc, full_table_is_a_quota);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
