/* SPDX-License-Identifier: MIT */
/* tests/fuzz/driver.h — model-based fuzz driver: random kosvmm calls applied to the library and the model, then compared. */
#ifndef KOSVMM_FUZZ_DRIVER_H
#define KOSVMM_FUZZ_DRIVER_H

#include <stddef.h>
#include <stdint.h>

/*
 * One run starts from an empty arena, applies operations (each a public call with valid or
 * invalid arguments, or a write probe), checks the library against the model after every one, and
 * ends by unmapping everything it made and closing every handle it holds, so runs can follow one
 * another in one process (libFuzzer). drv_setup must be called once before the first run.
 */

/* Reserves the arena window and starts the lazy engine. 0 on success, -1 with a message. */
int drv_setup(void);

/* A run whose operations are decoded from data (libFuzzer). 0, or -1 on a mismatch. */
int drv_run_bytes(const uint8_t *data, size_t size);

/* A run of nops operations drawn from a PRNG seeded with seed. 0, or -1 on a mismatch. */
int drv_run_seed(uint64_t seed, uint64_t nops);

/* After -1: what disagreed, with the last operations applied. */
const char *drv_failure(void);

/* Counters over every run of this process. */
typedef struct drv_counters {
    uint64_t runs;
    uint64_t ops;          /* operations applied (calls and write probes) */
    uint64_t calls_ok;     /* library calls the model expected to succeed */
    uint64_t calls_failed; /* library calls the model expected to fail (with that exact Retcode) */
    uint64_t checks;       /* full or partial state comparisons */
} drv_counters;
drv_counters drv_get_counters(void);

#endif
