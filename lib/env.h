/* SPDX-License-Identifier: MIT */
/* lib/env.h — reading KOSVMM_* environment variables: secure_getenv, strict values, one warning per bad one. */
#ifndef KVMM_ENV_H
#define KVMM_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Every KOSVMM_* variable is read here, with secure_getenv: a set-user-ID or set-group-ID program
 * ignores them all, since whoever runs it controls the environment. An unset or empty variable
 * means "not given". A value that is not accepted is reported with one line on stderr naming the
 * variable, the value and what is accepted, and then ignored on its own: the variable keeps its
 * default, every other variable still applies (as mimalloc does with its options).
 *
 * The readers return 1 (given and valid, *out set), 0 (not given) or -1 (invalid, warned about,
 * *out untouched).
 */

/* The value of name, or NULL when unset or empty. */
const char *kvmm_env(const char *name);

/* "kosvmm: <name>=<value> ignored: expected <accepted>" on stderr. */
void kvmm_env_warn(const char *name, const char *value, const char *accepted);

/* 1, yes, true, on / 0, no, false, off, in any case. */
int kvmm_env_bool(const char *name, bool *out);

/* A decimal number in [min, max]. */
int kvmm_env_uint(const char *name, uint32_t min, uint32_t max, uint32_t *out);

/* One of n words, in any case; *out is its index. accepted is the text of the warning. */
int kvmm_env_choice(const char *name, const char *const *words, int n, const char *accepted, int *out);

#endif
