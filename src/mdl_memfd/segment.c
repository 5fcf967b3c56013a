/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/segment.c — KnVmSegInitFromVm / KnVmSegInitFromBuf: an ELF image segment in an MDL buffer, described by a VmSeg. */
#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "mdl_memfd/mdl.h"
#include "policy.h"
#include "visibility.h"

static bool page_aligned(uintptr_t v)
{
    return (v & ((uintptr_t)sysconf(_SC_PAGESIZE) - 1)) == 0;
}

/* READ, READ|WRITE, READ|EXECUTE or READ|WRITE|EXECUTE, as the spec lists for segments. */
static bool seg_flags_valid(int flags)
{
    return (flags & ~VMM_FLAG_RWX_MASK) == 0 && (flags & VMM_FLAG_READ);
}

/* What both calls check about the segment as the new process will see it. */
static int check_placement(const VmSeg *seg, const void *loadAddr, size_t size, int flags)
{
    uintptr_t end;
    if (!seg || !page_aligned((uintptr_t)loadAddr) || size == 0 || !page_aligned(size) ||
        __builtin_add_overflow((uintptr_t)loadAddr, size, &end) || !seg_flags_valid(flags))
        return -EINVAL;
    return 0;
}

/* The buffer's rights: the segment's protection, plus transfer, since it exists to be sent. */
static uint32_t seg_rights(int flags)
{
    return (uint32_t)(flags & VMM_FLAG_RWX_MASK) | KVMM_RIGHT_TRANSFER;
}

KVMM_PUBLIC Retcode KnVmSegInitFromVm(VmSeg *seg, void *loadAddr, void *addr, rtl_size_t size, int flags)
{
    int denied = kvmm_policy_enter(KVMM_M_SEG_INIT);
    if (denied)
        return kvmm_retcode(denied);
    if (check_placement(seg, loadAddr, size, flags) || !addr || !page_aligned((uintptr_t)addr))
        return rcInvalidArgument;
    Handle h;
    Retcode rc = KnPmmMdlCreateFromVm(addr, size, flags, &h);
    if (RC_FAILED(rc))
        return rc;
    VmSeg s = {.h = h, .flags = (rtl_uint32_t)flags, .loadAddr = loadAddr, .size = size};
    *seg = s;
    return rcOk;
}

static int init_from_buf(VmSeg *seg, void *loadAddr, size_t offset, size_t size, int flags, size_t fileOffset,
                         const void *buildId, size_t buildIdSize, const void *buf, size_t bufSize)
{
    int rc = kvmm_policy_enter(KVMM_M_SEG_INIT);
    if (rc || (rc = kvmm_policy_allows(KVMM_M_MDL_CREATE)) || (rc = check_placement(seg, loadAddr, size, flags)))
        return rc;
    if (offset > size || bufSize > size - offset || (bufSize && !buf))
        return -EINVAL;
    if (buildIdSize > VMM_SEG_BUILD_ID_MAX || (buildIdSize && !buildId))
        return -EINVAL;

    /* One step: a fresh buffer holding buf at offset and zeros around it (the .bss), created with
     * the segment's rights from the start, so no writable description of it ever exists here. */
    Handle h;
    if ((rc = kvmm_mdl_create(size, seg_rights(flags), buf, bufSize, offset, &h)))
        return rc == -EMFILE || rc == -ENFILE ? -EDQUOT : rc; /* out of descriptors: a quota */
    VmSeg s = {.h = h, .flags = (rtl_uint32_t)flags, .loadAddr = loadAddr, .size = size, .offset = offset,
               .fileOffset = fileOffset, .buildIdSize = buildIdSize};
    if (buildIdSize)
        memcpy(s.buildId, buildId, buildIdSize);
    *seg = s;
    return 0;
}

KVMM_PUBLIC Retcode KnVmSegInitFromBuf(VmSeg *seg, void *loadAddr, rtl_size_t offset, rtl_size_t size, int flags,
                                       rtl_size_t fileOffset, const void *buildId, rtl_size_t buildIdSize,
                                       const void *buf, rtl_size_t bufSize)
{
    return kvmm_retcode(init_from_buf(seg, loadAddr, offset, size, flags, fileOffset, buildId, buildIdSize, buf,
                                      bufSize));
}
