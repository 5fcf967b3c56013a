/* SPDX-License-Identifier: MIT */
/* cli/cli.c — the one strict size and count parser of the examples and benchmarks. */
#include "cli.h"

/* strtoull would accept a sign, leading spaces and "0x", and wrap "-1" to UINT64_MAX: a user who
 * typed a wrong size must be told, not given a different run. */
static int digits(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t n = 0;
    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++)
        if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, (uint64_t)(*s - '0'), &n))
            return -1;
    *p = s;
    *out = n;
    return 0;
}

int cli_parse_size(const char *s, uint64_t *out)
{
    uint64_t n;
    if (!s || digits(&s, &n) != 0)
        return -1;
    unsigned shift = 0;
    switch (*s) {
    case '\0': break;
    case 'K': case 'k': shift = 10; break;
    case 'M': case 'm': shift = 20; break;
    case 'G': case 'g': shift = 30; break;
    case 'T': case 't': shift = 40; break;
    default: return -1;
    }
    if (shift && (s[1] != '\0' || n > (UINT64_MAX >> shift)))
        return -1;
    *out = n << shift;
    return 0;
}

int cli_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t n;
    if (!s || digits(&s, &n) != 0 || *s != '\0' || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}
