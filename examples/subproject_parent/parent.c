/* SPDX-License-Identifier: MIT */
/* examples/subproject_parent/parent.c — reserves, commits, writes and frees one region through kosvmm built as a subproject. */
#include <stdio.h>
#include <string.h>

#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>
#include <rtl/retcode_hr.h>

int main(void)
{
    const rtl_size_t size = 1 << 20;
    char *p = KnVmAllocate(RTL_NULL, size, VMM_FLAG_RESERVE | VMM_FLAG_READ | VMM_FLAG_WRITE);
    if (!p) {
        fprintf(stderr, "KnVmAllocate: " RETCODE_HR_FMT "\n", RETCODE_HR_PARAMS(kosvmm_last_error()));
        return 1;
    }
    Retcode rc = KnVmCommit(p, size, VMM_FLAG_LOCKED);
    if (RC_SUCCEEDED(rc)) {
        memset(p, 0x5a, size);
        rc = KnVmUnmap(p, size);
    }
    printf("kosvmm %s as a subproject: " RETCODE_HR_FMT "\n", kosvmm_version(), RETCODE_HR_PARAMS(rc));
    return RC_FAILED(rc);
}
