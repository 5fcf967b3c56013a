/* SPDX-License-Identifier: MIT */
/* lib/env.c — reading KOSVMM_* environment variables: secure_getenv, strict values, one warning per bad one. */
#include "env.h"

#include <stdlib.h>
#include <strings.h>

#include "diag.h"

const char *kvmm_env(const char *name)
{
    const char *v = secure_getenv(name);
    return v && *v ? v : NULL;
}

void kvmm_env_warn(const char *name, const char *value, const char *accepted)
{
    kvmm_message("%s=%s ignored: expected %s", name, value, accepted);
}

int kvmm_env_choice(const char *name, const char *const *words, int n, const char *accepted, int *out)
{
    const char *v = kvmm_env(name);
    if (!v)
        return 0;
    for (int i = 0; i < n; i++)
        if (strcasecmp(v, words[i]) == 0) {
            *out = i;
            return 1;
        }
    kvmm_env_warn(name, v, accepted);
    return -1;
}

int kvmm_env_bool(const char *name, bool *out)
{
    static const char *const words[] = {"0", "no", "false", "off", "1", "yes", "true", "on"};
    int i, rc = kvmm_env_choice(name, words, 8, "1, yes, true, on or 0, no, false, off", &i);
    if (rc == 1)
        *out = i >= 4;
    return rc;
}

int kvmm_env_uint(const char *name, uint32_t min, uint32_t max, uint32_t *out)
{
    const char *v = kvmm_env(name);
    if (!v)
        return 0;
    /* Digits only: strtoul would take a sign, spaces and "0x", and wrap "-1". */
    uint64_t n = 0;
    const char *s = v;
    for (; *s >= '0' && *s <= '9' && n <= max; s++)
        n = n * 10 + (uint64_t)(*s - '0');
    if (s == v || *s != '\0' || n < min || n > max) {
        char accepted[64];
        kvmm_format(accepted, sizeof accepted, "a number from %u to %u", (unsigned)min, (unsigned)max);
        kvmm_env_warn(name, v, accepted);
        return -1;
    }
    *out = (uint32_t)n;
    return 1;
}
