/* SPDX-License-Identifier: MIT */
/* coresrv/vmm/vmm_types.h — types of the VMM API: the page-information record filled by KnVmQuery. */
#ifndef KOSVMM_CORESRV_VMM_VMM_TYPES_H
#define KOSVMM_CORESRV_VMM_VMM_TYPES_H

#include <handle/handletype.h>
#include <rtl/types.h>

/* VmQueryInfo.state */
#define VMM_PAGE_STATE_FREE       0u  /* not managed by kosvmm (it may still hold other Linux mappings) */
#define VMM_PAGE_STATE_RESERVED   1u  /* reserved: any access faults (includes guard pages) */
#define VMM_PAGE_STATE_COMMITTED  2u  /* committed: accessible as its protection allows */

/* VmQueryInfo.attributes */
#define VMM_PAGE_ATTR_GUARD       0x01u /* a LOW_GUARD / HIGH_GUARD page: never committed, access = SIGSEGV */
#define VMM_PAGE_ATTR_LOCKED      0x02u /* committed fully: populated when committed, not on first touch */
#define VMM_PAGE_ATTR_LAZY        0x04u /* committed lazily: physical memory arrives on first touch */
#define VMM_PAGE_ATTR_PINNED      0x08u /* LOCKED and also pinned in RAM with mlock (CAP_IPC_LOCK or
                                           RLIMIT_MEMLOCK allowed it) */
#define VMM_PAGE_ATTR_MDL         0x10u /* backed by an MDL buffer mapping */
#define VMM_PAGE_ATTR_GROW_DOWN   0x20u /* the region was allocated with VMM_FLAG_GROW_DOWN */

/*
 * What KnVmQuery reports about the page that contains an address. Modelled on the NT
 * MEMORY_BASIC_INFORMATION the KasperskyOS VMM design descends from: the page, the run of pages
 * after it that share every attribute, and the region (allocation) it belongs to.
 */
typedef struct VmQueryInfo {
    void        *pageBase;     /* the page containing the queried address */
    rtl_size_t   runSize;      /* bytes from pageBase with identical state/protection/attributes,
                                  never past the region's end (page size for a free or guard page) */
    void        *regionBase;   /* first usable byte of the region (the KnVmAllocate result); for a
                                  guard page, the region it guards; RTL_NULL when state is FREE */
    rtl_size_t   regionSize;   /* usable bytes of the region, guard pages excluded */
    rtl_uint32_t state;        /* VMM_PAGE_STATE_* */
    rtl_uint32_t protection;   /* VMM_FLAG_READ|WRITE|EXECUTE subset the page has (or will have once
                                  committed, for reserved pages); 0 for guard and free pages */
    rtl_uint32_t cache;        /* the region's VMM_FLAG_CACHE_* mode, 0 when none was given */
    rtl_uint32_t attributes;   /* VMM_PAGE_ATTR_* */
    rtl_uint32_t regionFlags;  /* the flags the region was allocated with; a piece left by a partial
                                  KnVmUnmap loses the guard flag of an edge that was unmapped */
} VmQueryInfo;

/*
 * An ELF image segment placed in an MDL buffer, ready to be mapped into a new process (filled by
 * KnVmSegInitFromVm / KnVmSegInitFromBuf). The loader sends h to the new process, which maps the
 * buffer at loadAddr with flags. Fields other than h are the segment's description and travel with
 * it; h is a handle of the process that holds the VmSeg.
 */
#define VMM_SEG_BUILD_ID_MAX 64u  /* bytes of build ID a VmSeg holds (GNU build IDs are 20) */

typedef struct VmSeg {
    Handle        h;            /* the MDL buffer holding the segment's pages */
    rtl_uint32_t  flags;        /* VMM_FLAG_READ / WRITE / EXECUTE: the buffer's rights and the
                                   protection the segment is mapped with */
    void         *loadAddr;     /* page-aligned load address in the new process; RTL_NULL: any */
    rtl_size_t    size;         /* bytes of the buffer and of the mapping, a page multiple */
    rtl_size_t    offset;       /* where in the buffer the segment's bytes start (e.g. the in-page
                                   offset of p_vaddr); 0 for KnVmSegInitFromVm */
    rtl_size_t    fileOffset;   /* offset of the segment in the ELF image; 0 for KnVmSegInitFromVm */
    rtl_size_t    buildIdSize;  /* bytes of buildId in use, <= VMM_SEG_BUILD_ID_MAX */
    rtl_uint8_t   buildId[VMM_SEG_BUILD_ID_MAX]; /* the image's build ID (NT_GNU_BUILD_ID) */
} VmSeg;

#endif /* KOSVMM_CORESRV_VMM_VMM_TYPES_H */
