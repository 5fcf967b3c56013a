/* SPDX-License-Identifier: MIT */
/* lib/page_check.c — checks at load that the host's page size is hal/page.h's PAGE_SIZE. */
#include <hal/page.h>
#include <stdio.h>

#include "os.h"
#include "page_check.h"

bool kvmm_page_size_matches(size_t host)
{
    return host == PAGE_SIZE;
}

/*
 * KasperskyOS code computes with the compile-time PAGE_SIZE; the kernel maps at its own page size.
 * Where they differ (arm64 kernels with 16 KiB or 64 KiB pages), kosvmm keeps the host's
 * granularity, so PAGE_SIZE-aligned values that are not host-aligned are refused with
 * rcInvalidArgument: say so once, at load, rather than let the first refusal puzzle the user.
 */
__attribute__((constructor)) static void check_page_size(void)
{
    size_t host = kvmm_os_page_size();
    if (!kvmm_page_size_matches(host))
        fprintf(stderr,
                "kosvmm: the host page size is %zu bytes, not hal/page.h's default PAGE_SIZE of %lu: "
                "addresses and sizes must be multiples of %zu, others are refused with "
                "rcInvalidArgument (build programs with -DPAGE_SHIFT=%d)\n",
                host, PAGE_SIZE, host, __builtin_ctzl(host));
}
