/* SPDX-License-Identifier: MIT */
/* tests/test_structs.c — the extensible public structs: older (smaller) and newer (larger) sizes work, bad sizes change nothing. */
#include <check.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>
#include <rtl/retcode_hr.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "testutil.h"

#define CANARY 0xA5
#define ROOM 256   /* bytes of buffer past the struct, as a newer kosvmm's struct would have */

typedef Retcode (*get_fn)(void *);

static Retcode get_stats(void *p) { return kosvmm_get_stats(p); }
static Retcode get_usage(void *p) { return kosvmm_get_usage(p); }
static Retcode get_policy(void *p) { return kosvmm_get_policy(p); }
static Retcode get_lazy(void *p) { return kosvmm_get_lazy_config(p); }

static const struct kind {
    const char *name;
    get_fn get;
    size_t full, min, align;
    size_t older;   /* a size a program built before the last fields were appended would pass */
} kinds[] = {
    {"kosvmm_stats", get_stats, sizeof(kosvmm_stats), KOSVMM_STATS_SIZE_MIN, 8, offsetof(kosvmm_stats, guard_mechanism)},
    {"kosvmm_usage", get_usage, sizeof(kosvmm_usage), KOSVMM_USAGE_SIZE_MIN, 8, offsetof(kosvmm_usage, handles)},
    {"kosvmm_policy", get_policy, sizeof(kosvmm_policy), KOSVMM_POLICY_SIZE_MIN, 8, offsetof(kosvmm_policy, deny)},
    {"kosvmm_lazy_config", get_lazy, sizeof(kosvmm_lazy_config), KOSVMM_LAZY_CONFIG_SIZE_MIN, 4,
     offsetof(kosvmm_lazy_config, readahead)},
};

static void set_size(unsigned char *buf, uint32_t size)
{
    memcpy(buf, &size, sizeof size);
}

static uint32_t size_of(const unsigned char *buf)
{
    uint32_t size;
    memcpy(&size, buf, sizeof size);
    return size;
}

/* Something in every struct, so that a copied field differs from the canary and from zero. */
static void *region;

static void setup(void)
{
    region = KnVmAllocate(RTL_NULL, 16 * tu_page(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_READ |
                                                      VMM_FLAG_WRITE);
    ck_assert_ptr_nonnull(region);
    kosvmm_policy p = {.size = sizeof p};
    ck_assert_uint_eq(kosvmm_get_policy(&p), rcOk);
    p.max_handles = 77;
    p.max_reserved_bytes = 1ull << 40;
    ck_assert_uint_eq(kosvmm_set_policy(&p), rcOk);
}

static void teardown(void)
{
    KnVmUnmap(region, 16 * tu_page());
}

/* The reference: the whole struct, as this build knows it. */
static void full_get(const struct kind *k, unsigned char *ref)
{
    memset(ref, 0, k->full);
    set_size(ref, (uint32_t)k->full);
    ck_assert_uint_eq(k->get(ref), rcOk);
    ck_assert_uint_eq(size_of(ref), k->full);
}

START_TEST(current_size_fills_everything)
{
    const struct kind *k = &kinds[_i];
    unsigned char ref[1024], buf[1024];
    full_get(k, ref);
    memset(buf, CANARY, sizeof buf);
    set_size(buf, (uint32_t)k->full);
    ck_assert_uint_eq(k->get(buf), rcOk);
    ck_assert_msg(memcmp(buf, ref, k->full) == 0, "%s", k->name);
    for (size_t i = k->full; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], CANARY);
}
END_TEST

/* An older caller: the fields its struct has, not a byte more; size says what was filled. */
START_TEST(older_smaller_sizes_get_their_prefix)
{
    const struct kind *k = &kinds[_i];
    unsigned char ref[1024], buf[1024];
    full_get(k, ref);
    const size_t sizes[] = {k->min, k->older};
    for (size_t j = 0; j < 2; j++) {
        size_t size = sizes[j];
        ck_assert_uint_lt(size, k->full);
        memset(buf, CANARY, sizeof buf);
        set_size(buf, (uint32_t)size);
        ck_assert_uint_eq(k->get(buf), rcOk);
        ck_assert_uint_eq(size_of(buf), size);
        ck_assert_msg(memcmp(buf + 4, ref + 4, size - 4) == 0, "%s size %zu", k->name, size);
        for (size_t i = size; i < sizeof buf; i++)
            ck_assert_msg(buf[i] == CANARY, "%s size %zu: byte %zu written", k->name, size, i);
    }
}
END_TEST

/* A newer caller: this kosvmm fills what it knows, zeroes the rest, and says how much it filled. */
START_TEST(newer_larger_sizes_get_zeros_past_what_is_known)
{
    const struct kind *k = &kinds[_i];
    unsigned char ref[1024], buf[1024];
    full_get(k, ref);
    memset(buf, CANARY, sizeof buf);
    set_size(buf, (uint32_t)(k->full + ROOM));
    ck_assert_uint_eq(k->get(buf), rcOk);
    ck_assert_uint_eq(size_of(buf), k->full);
    ck_assert_int_eq(memcmp(buf + 4, ref + 4, k->full - 4), 0);
    for (size_t i = k->full; i < k->full + ROOM; i++)
        ck_assert_uint_eq(buf[i], 0);
    for (size_t i = k->full + ROOM; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], CANARY);
}
END_TEST

START_TEST(bad_sizes_write_nothing)
{
    const struct kind *k = &kinds[_i];
    unsigned char buf[1024], copy[1024];
    const uint32_t sizes[] = {0, 1, 4, (uint32_t)k->min - (uint32_t)k->align, (uint32_t)k->min + 1,
                              (uint32_t)k->full + 2, (uint32_t)k->full - 1, KOSVMM_STRUCT_SIZE_MAX + (uint32_t)k->align,
                              UINT32_MAX};
    for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
        memset(buf, CANARY, sizeof buf);
        set_size(buf, sizes[j]);
        memcpy(copy, buf, sizeof buf);
        ck_assert_msg(k->get(buf) == rcInvalidArgument, "%s size %u accepted", k->name, sizes[j]);
        ck_assert_msg(memcmp(buf, copy, sizeof buf) == 0, "%s size %u: written", k->name, sizes[j]);
    }
    ck_assert_uint_eq(k->get(RTL_NULL), rcInvalidArgument);
}
END_TEST

/* ---- set calls ---- */

static kosvmm_lazy_config lazy_now(void)
{
    kosvmm_lazy_config c = {.size = sizeof c};
    ck_assert_uint_eq(kosvmm_get_lazy_config(&c), rcOk);
    return c;
}

/* An older caller sets the fields it knows; the ones it does not know keep their values. */
START_TEST(set_lazy_config_older_size_keeps_the_rest)
{
    kosvmm_lazy_config c = lazy_now();
    c.window_min = 2;
    c.window_max = 100;
    c.readahead = 0;
    c.user_mode_only = 1;
    ck_assert_uint_eq(kosvmm_set_lazy_config(&c), rcOk);

    kosvmm_lazy_config older = {.size = offsetof(kosvmm_lazy_config, readahead), .engine = KOSVMM_ENGINE_KERNEL,
                                .window_min = 8, .window_max = 64, .readahead = 1, .user_mode_only = 0};
    ck_assert_uint_eq(kosvmm_set_lazy_config(&older), rcOk);
    kosvmm_lazy_config now = lazy_now();
    ck_assert_uint_eq(now.engine, KOSVMM_ENGINE_KERNEL);
    ck_assert_uint_eq(now.window_min, 8);
    ck_assert_uint_eq(now.window_max, 64);
    ck_assert_uint_eq(now.readahead, 0);       /* past its size: kept */
    ck_assert_uint_eq(now.user_mode_only, 1);  /* past its size: kept */

    /* The merged configuration is checked: min above the kept max is refused, nothing changes. */
    kosvmm_lazy_config tiny = {.size = KOSVMM_LAZY_CONFIG_SIZE_MIN + 4, .engine = KOSVMM_ENGINE_UFFD,
                               .window_min = 65};
    ck_assert_uint_eq(kosvmm_set_lazy_config(&tiny), rcInvalidArgument);
    kosvmm_lazy_config after = lazy_now();
    ck_assert_int_eq(memcmp(&after, &now, sizeof now), 0);
}
END_TEST

START_TEST(set_lazy_config_newer_size_needs_zeros_past_the_known_fields)
{
    kosvmm_lazy_config before = lazy_now();
    struct {
        kosvmm_lazy_config c;
        uint32_t future[4];
    } newer;
    memset(&newer, 0, sizeof newer);
    newer.c = before;
    newer.c.size = sizeof newer;
    newer.c.window_max = 256;
    ck_assert_uint_eq(kosvmm_set_lazy_config(&newer.c), rcOk);
    ck_assert_uint_eq(lazy_now().window_max, 256);

    kosvmm_lazy_config now = lazy_now();
    newer.c.window_max = 128;
    newer.future[2] = 1;   /* a setting this kosvmm does not have */
    ck_assert_uint_eq(kosvmm_set_lazy_config(&newer.c), rcInvalidArgument);
    kosvmm_lazy_config after = lazy_now();
    ck_assert_int_eq(memcmp(&after, &now, sizeof now), 0);

    const uint32_t bad[] = {0, 4, 6, 10, sizeof(kosvmm_lazy_config) + 1, KOSVMM_STRUCT_SIZE_MAX + 4};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kosvmm_lazy_config c = now;
        c.size = bad[i];
        c.window_max = 300;
        ck_assert_msg(kosvmm_set_lazy_config(&c) == rcInvalidArgument, "size %u accepted", bad[i]);
    }
    after = lazy_now();
    ck_assert_int_eq(memcmp(&after, &now, sizeof now), 0);
}
END_TEST

static kosvmm_policy policy_now(void)
{
    kosvmm_policy p = {.size = sizeof p};
    ck_assert_uint_eq(kosvmm_get_policy(&p), rcOk);
    return p;
}

START_TEST(set_policy_sizes)
{
    kosvmm_policy before = policy_now();
    ck_assert_uint_eq(before.max_handles, 77);
    /* The smallest policy: only max_reserved_bytes; every other field keeps its value. */
    kosvmm_policy small = {.size = KOSVMM_POLICY_SIZE_MIN, .max_reserved_bytes = 1ull << 30, .max_handles = 1,
                           .deny = KOSVMM_METHODS_ALL};
    ck_assert_uint_eq(kosvmm_set_policy(&small), rcOk);
    kosvmm_policy now = policy_now();
    ck_assert_uint_eq(now.max_reserved_bytes, 1ull << 30);
    ck_assert_uint_eq(now.max_handles, 77);
    ck_assert_uint_eq(now.deny, 0);

    /* Reserved not zero, bad sizes, a newer caller's unknown setting: refused, nothing changes. */
    kosvmm_policy bad = now;
    bad.reserved = 1;
    bad.max_handles = 5;
    ck_assert_uint_eq(kosvmm_set_policy(&bad), rcInvalidArgument);
    const uint32_t sizes[] = {0, 8, 12, 20, sizeof(kosvmm_policy) + 4, KOSVMM_STRUCT_SIZE_MAX + 8};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        bad = now;
        bad.size = sizes[i];
        bad.max_handles = 5;
        ck_assert_msg(kosvmm_set_policy(&bad) == rcInvalidArgument, "size %u accepted", sizes[i]);
    }
    struct {
        kosvmm_policy p;
        uint64_t future;
    } newer = {now, 1};
    newer.p.size = sizeof newer;
    newer.p.max_handles = 5;
    ck_assert_uint_eq(kosvmm_set_policy(&newer.p), rcInvalidArgument);
    kosvmm_policy after = policy_now();
    ck_assert_int_eq(memcmp(&after, &now, sizeof now), 0);
    newer.future = 0;
    ck_assert_uint_eq(kosvmm_set_policy(&newer.p), rcOk);
    ck_assert_uint_eq(policy_now().max_handles, 5);
}
END_TEST

static Suite *structs_suite(void)
{
    Suite *s = suite_create("structs");
    TCase *tc = tcase_create("get");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    const int n = (int)(sizeof kinds / sizeof kinds[0]);
    tcase_add_loop_test(tc, current_size_fills_everything, 0, n);
    tcase_add_loop_test(tc, older_smaller_sizes_get_their_prefix, 0, n);
    tcase_add_loop_test(tc, newer_larger_sizes_get_zeros_past_what_is_known, 0, n);
    tcase_add_loop_test(tc, bad_sizes_write_nothing, 0, n);
    suite_add_tcase(s, tc);

    tc = tcase_create("set");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, set_lazy_config_older_size_keeps_the_rest);
    tcase_add_test(tc, set_lazy_config_newer_size_needs_zeros_past_the_known_fields);
    tcase_add_test(tc, set_policy_sizes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(structs_suite());
}
