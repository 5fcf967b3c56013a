/* coresrv/vmm/vmm_types.h — types of the VMM API: the page-information record filled by KnVmQuery. */
#ifndef KOSVMM_CORESRV_VMM_VMM_TYPES_H
#define KOSVMM_CORESRV_VMM_VMM_TYPES_H

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

#endif /* KOSVMM_CORESRV_VMM_VMM_TYPES_H */
