/* SPDX-License-Identifier: MIT */
/* bench/bench_util.h — what both benchmarks share: clock, medians, formatting, /proc readers, fatal errors. */
#ifndef KOSVMM_BENCH_UTIL_H
#define KOSVMM_BENCH_UTIL_H

#include <rtl/retcode.h>
#include <stddef.h>

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)

double bench_now_ns(void);
void bench_die_rc(const char *what, Retcode rc);
void bench_die_errno(const char *what);
double bench_median(const double *v, int n);
const char *bench_fmt_size(size_t size, char *buf, size_t len);
long bench_meminfo_kib(const char *key);
void bench_read_line(const char *path, char *buf, size_t len);

#endif
