/* SPDX-License-Identifier: MIT */
/* tests/fuzz/fuzz_vmm.c — libFuzzer entry: each input is a sequence of kosvmm operations checked against the model. */
#include "driver.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libFuzzer's -print_final_stats counts inputs; this adds what they did, once at exit. */
static void summary(void)
{
    drv_counters c = drv_get_counters();
    fprintf(stderr,
            "kosvmm-fuzz: %llu runs, %llu operations (%llu calls expected to succeed, %llu expected to fail), %llu checks\n",
            (unsigned long long)c.runs, (unsigned long long)c.ops, (unsigned long long)c.calls_ok,
            (unsigned long long)c.calls_failed, (unsigned long long)c.checks);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (drv_setup() != 0) {
        fprintf(stderr, "kosvmm-fuzz: setup failed: %s\n", drv_failure());
        abort();
    }
    atexit(summary);
    return 0;
}

/* A run unmaps everything it made and closes every handle it holds: libFuzzer runs every input in
 * this one process, so each must start from an empty arena. A disagreement aborts, which
 * libFuzzer reports as a crash and saves the input. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (drv_run_bytes(data, size) != 0) {
        fprintf(stderr, "kosvmm-fuzz: model and library disagree: %s\n", drv_failure());
        summary();
        abort();
    }
    return 0;
}
