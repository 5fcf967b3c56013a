/* SPDX-License-Identifier: MIT */
/* cli/cli.h — what every example and benchmark parses the same way: sizes with K/M/G/T, counts. */
#ifndef KOSVMM_CLI_H
#define KOSVMM_CLI_H

#include <stdint.h>

/*
 * A size: decimal digits, then at most one suffix K, M, G or T (also k, m, g, t: powers of 1024).
 * Nothing else: no sign, no space, no fraction, no "iB", no hex. "1X", "", "-1", "1.5G", "1KB"
 * and anything above UINT64_MAX are refused. Returns 0 and stores the value in *out, or -1 and
 * leaves *out alone.
 */
int cli_parse_size(const char *s, uint64_t *out);

/* A count: decimal digits only, within [min, max]. 0 and *out set, or -1 and *out untouched. */
int cli_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

#endif
