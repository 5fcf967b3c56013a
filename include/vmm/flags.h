/* SPDX-License-Identifier: MIT */
/* vmm/flags.h — VMM_FLAG_* allocation, protection, cache and layout flags of the KasperskyOS VMM. */
#ifndef KOSVMM_VMM_FLAGS_H
#define KOSVMM_VMM_FLAGS_H

/* Protection. Allowed combinations: READ, READ|WRITE, READ|EXECUTE, READ|WRITE|EXECUTE (= RWX_MASK);
 * kosvmm also accepts none of them (pages exist but are inaccessible until KnVmProtect).
 * WRITE alone, EXECUTE alone and WRITE|EXECUTE are rejected with rcInvalidArgument. */
#define VMM_FLAG_READ            0x00000001
#define VMM_FLAG_WRITE           0x00000002
#define VMM_FLAG_EXECUTE         0x00000004
#define VMM_FLAG_RWX_MASK        0x00000007

/* Allocation. RESERVE is required by KnVmAllocate. */
#define VMM_FLAG_RESERVE         0x00000010
#define VMM_FLAG_COMMIT          0x00000020
#define VMM_FLAG_LOCKED          0x00000040

/* Cache mode: at most one. Recorded and reported by KnVmQuery; ordinary host RAM is always
 * write-back, so on Linux the mode has no effect on the mapping. */
#define VMM_FLAG_WRITE_BACK      0x00000100
#define VMM_FLAG_WRITE_THROUGH   0x00000200
#define VMM_FLAG_WRITE_COMBINE   0x00000400
#define VMM_FLAG_CACHE_DISABLE   0x00000800
#define VMM_FLAG_CACHE_MASK      0x00000F00

/* Layout. A guard page is never committed; any access to it raises SIGSEGV. */
#define VMM_FLAG_LOW_GUARD       0x00001000
#define VMM_FLAG_HIGH_GUARD      0x00002000
#define VMM_FLAG_GROW_DOWN       0x00004000

#endif /* KOSVMM_VMM_FLAGS_H */
