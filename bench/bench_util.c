/* SPDX-License-Identifier: MIT */
/* bench/bench_util.c — what both benchmarks share: clock, medians, formatting, /proc readers, fatal errors. */
#include "bench_util.h"

#include <errno.h>
#include <rtl/retcode_hr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* A kosvmm failure invalidates the whole comparison, so the benchmark stops instead of printing a partial table. */
void bench_die_rc(const char *what, Retcode rc)
{
    fprintf(stderr, "\n%s: %s failed: " RETCODE_HR_FMT "\n", program_invocation_short_name, what,
            RETCODE_HR_PARAMS(rc));
    exit(1);
}

void bench_die_errno(const char *what)
{
    fprintf(stderr, "\n%s: %s failed: %s\n", program_invocation_short_name, what, strerror(errno));
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(const double *v, int n)
{
    double s[n > 0 ? n : 1]; /* n is a round count, bounded by each benchmark's option parsing */
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

const char *bench_fmt_size(size_t size, char *buf, size_t len)
{
    if (size >= GIB && size % GIB == 0)
        snprintf(buf, len, "%zu GiB", size / GIB);
    else if (size >= MIB && size % MIB == 0)
        snprintf(buf, len, "%zu MiB", size / MIB);
    else
        snprintf(buf, len, "%zu KiB", size / KIB);
    return buf;
}

long bench_meminfo_kib(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0 && sscanf(line + strlen(key), "%ld", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

void bench_read_line(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    snprintf(buf, len, "unknown");
    if (f) {
        if (fgets(buf, (int)len, f))
            buf[strcspn(buf, "\n")] = '\0';
        fclose(f);
    }
}
