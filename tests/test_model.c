/* SPDX-License-Identifier: MIT */
/* tests/test_model.c — model-based fuzzing with fixed seeds: random call sequences checked step by step against tests/fuzz/model.c. */
#include "testutil.h"

/*
 * The driver and the model are compiled into this suite directly: tests/meson.build builds every
 * suite from test_<name>.c and testutil.c alone, and the libFuzzer target (tests/fuzz/fuzz_vmm.c,
 * -Dfuzz=true) shares exactly this code.
 */
#include "fuzz/model.c"
#include "fuzz/driver.c"

#include <stdio.h>
#include <stdlib.h>

/*
 * Operations per test: OPS_PER_TEST * KOSVMM_MODEL_SCALE / 100 (default 100), split into runs of
 * RUN_OPS operations that each start from an empty arena and end with everything unmapped and
 * closed. 8 tests x 24 000 + 6 000 short = 198 000 operations in all. Sanitizer builds are slower per step
 * (a full state comparison after every operation): scripts/quickstart.sh sets the scale there.
 */
#define OPS_PER_TEST 24000u
#define RUN_OPS 4000u

static uint64_t scaled_ops(void)
{
    const char *e = getenv("KOSVMM_MODEL_SCALE");
    long pct = e && *e ? strtol(e, NULL, 10) : 100;
    if (pct < 1)
        pct = 1;
    return (uint64_t)OPS_PER_TEST * (uint64_t)pct / 100u;
}

/* Runs the driver over consecutive seeds from first until ops operations were applied. */
static void run_seeds(uint64_t first)
{
    ck_assert_int_eq(drv_setup(), 0);
    uint64_t want = scaled_ops(), done = 0;
    for (uint64_t seed = first; done < want; seed++) {
        uint64_t n = want - done < RUN_OPS ? want - done : RUN_OPS;
        uint64_t before = drv_get_counters().ops;
        int rc = drv_run_seed(seed, n);
        ck_assert_msg(rc == 0, "seed %llu: %s", (unsigned long long)seed, drv_failure());
        done += drv_get_counters().ops - before;
    }
    drv_counters c = drv_get_counters();
    /* Every kind of outcome must have been exercised, or the run proved little. */
    ck_assert_uint_ge(c.ops, want);
    ck_assert_uint_gt(c.calls_ok, c.ops / 10);
    ck_assert_uint_gt(c.calls_failed, c.ops / 20);
    printf("model seeds %llu..: %llu operations, %llu calls ok, %llu failed as expected, %llu checks\n",
           (unsigned long long)first, (unsigned long long)c.ops, (unsigned long long)c.calls_ok,
           (unsigned long long)c.calls_failed, (unsigned long long)c.checks);
}

START_TEST(seeds_a) { run_seeds(1000); }
END_TEST
START_TEST(seeds_b) { run_seeds(2000); }
END_TEST
START_TEST(seeds_c) { run_seeds(3000); }
END_TEST
START_TEST(seeds_d) { run_seeds(4000); }
END_TEST
START_TEST(seeds_e) { run_seeds(5000); }
END_TEST
START_TEST(seeds_f) { run_seeds(6000); }
END_TEST
START_TEST(seeds_g) { run_seeds(7000); }
END_TEST
START_TEST(seeds_h) { run_seeds(8000); }
END_TEST

/* Short runs: many starts from an empty arena, so cleanup and first operations get covered. */
START_TEST(short_runs)
{
    ck_assert_int_eq(drv_setup(), 0);
    uint64_t want = scaled_ops() / 4;
    for (uint64_t seed = 90000; drv_get_counters().ops < want; seed++) {
        int rc = drv_run_seed(seed, 20 + seed % 80);
        ck_assert_msg(rc == 0, "seed %llu: %s", (unsigned long long)seed, drv_failure());
    }
}
END_TEST

/*
 * Bug 1 found by this fuzzer (fixed in lib/os_linux.c; kept as a regression test):
 * KnVmAllocate(NULL, SIZE_MAX & ~(page - 1), RESERVE|LOCKED...) returned a non-NULL address with
 * kosvmm_last_error() == rcOk. A LOCKED request of >= 2 MiB without an address goes to
 * kvmm_os_reserve_aligned(len, 2 MiB, ...), whose mmap length len + align wraps to ~2 MiB; the
 * small mapping "succeeds" and a region whose end wraps below its base is inserted (KnVmQuery of
 * the returned address says FREE, the statistics gain 16 EiB of reserved bytes, the region can
 * never be unmapped). The header wants rcOutOfMemory (the kernel cannot reserve that much; with a
 * guard the size + guard overflow is rcInvalidArgument and already caught).
 */
START_TEST(repro_huge_locked_allocate)
{
    size_t size = SIZE_MAX & ~(tu_page() - 1);
    void *p = KnVmAllocate(RTL_NULL, size, VMM_FLAG_RESERVE | VMM_FLAG_LOCKED | VMM_FLAG_READ | VMM_FLAG_WRITE);
    ck_assert_msg(p == RTL_NULL, "KnVmAllocate(NULL, %#zx, RESERVE|LOCKED|RW) returned %p", size, p);
    ck_assert_uint_eq(kosvmm_last_error(), rcOutOfMemory);
    p = KnVmAllocate(RTL_NULL, size, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | VMM_FLAG_READ);
    ck_assert_msg(p == RTL_NULL, "KnVmAllocate(NULL, %#zx, RESERVE|COMMIT|LOCKED|R) returned %p", size, p);
    ck_assert_uint_eq(kosvmm_last_error(), rcOutOfMemory);
}
END_TEST

static Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("seeds");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, seeds_a);
    tcase_add_test(tc, seeds_b);
    tcase_add_test(tc, seeds_c);
    tcase_add_test(tc, seeds_d);
    tcase_add_test(tc, seeds_e);
    tcase_add_test(tc, seeds_f);
    tcase_add_test(tc, seeds_g);
    tcase_add_test(tc, seeds_h);
    tcase_add_test(tc, short_runs);
    tcase_add_test(tc, repro_huge_locked_allocate);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(model_suite());
}
