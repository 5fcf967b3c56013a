/* SPDX-License-Identifier: MIT */
/* lib/diag.h — what kosvmm tells the user on stderr: warnings, KOSVMM_VERBOSE, KOSVMM_SHOW_STATS. */
#ifndef KVMM_DIAG_H
#define KVMM_DIAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One line "kosvmm: <text>\n" on stderr with one write(2), so lines of several threads or
 * processes never interleave. Never allocates. */
void kvmm_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* snprintf that always terminates and never fails the caller. */
void kvmm_format(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* KOSVMM_VERBOSE is set: explain every choice made on the user's behalf. */
bool kvmm_verbose(void);

/*
 * Called once, when the library is loaded, by lib/policy.c's constructor after KOSVMM_POLICY was
 * applied (policy_source says where the policy came from). Reads the lazy engine's configuration,
 * so a bad KOSVMM_* value is warned about at start, not at the first lazy commit; under
 * KOSVMM_VERBOSE prints the version, the lazy engine and why, the guard mechanism and the policy
 * source; under KOSVMM_SHOW_STATS arranges for the statistics to be printed at exit.
 */
void kvmm_diag_start(const char *policy_source);

/*
 * What the report needs from the lazy-commit engine, which implements it (src/uffd/engine.c;
 * bound at link time, as lib/lazy.h's table is). Reads the engine's configuration (and so its
 * environment variables). With probe, also checks that the engine can run here and writes in
 * why[] what decided; returns the KOSVMM_ENGINE_* new lazy commits get.
 */
uint32_t kvmm_lazy_explain(bool probe, char *why, size_t size);

#endif
