/* SPDX-License-Identifier: MIT */
/* main.c — the smallest program against an installed kosvmm: uses only the SDK header paths, exits 0 on success. */
/* The SDK headers are installed under <includedir>/kosvmm/sdk/; kosvmm.pc's Cflags make the includes below work unchanged. */
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>
#include <rtl/retcode_hr.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    const rtl_size_t size = 1 << 20;
    char *p = KnVmAllocate(RTL_NULL, size, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_READ | VMM_FLAG_WRITE);
    if (p == RTL_NULL) {
        fprintf(stderr, "KnVmAllocate: " RETCODE_HR_FMT "\n", RETCODE_HR_PARAMS(kosvmm_last_error()));
        return 1;
    }
    memset(p, 0x5a, size);
    Retcode rc = KnVmUnmap(p, size);
    if (RC_FAILED(rc)) {
        fprintf(stderr, "KnVmUnmap: " RETCODE_HR_FMT "\n", RETCODE_HR_PARAMS(rc));
        return 1;
    }
    printf("pkgconfig consumer: allocated, wrote and freed 1 MiB through the installed kosvmm\n");
    return 0;
}
