/* SPDX-License-Identifier: MIT */
/* kos/alloc.h — KasperskyOS heap allocation (KosMemAlloc, KosMemFree, ...) on kosvmm's VMM regions. */
#ifndef KOSVMM_KOS_ALLOC_H
#define KOSVMM_KOS_ALLOC_H

#include <rtl/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Allocated memory is committed and readable and writable, as if allocated with
 * VMM_FLAG_READ | VMM_FLAG_WRITE | VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED:
 * KnVmQuery on any byte of a block reports VMM_PAGE_STATE_COMMITTED with VMM_PAGE_ATTR_LOCKED and
 * protection READ|WRITE. Every call is thread-safe; a block may be freed by any thread.
 *
 * How (the way libkos does it): blocks of up to 128 KiB come from size-classed slabs carved out of
 * 4 MiB chunks, each chunk one KnVmAllocate'd region whose slabs are committed with KnVmCommit as
 * they are first used; blocks up to 1 MiB are runs of 64 KiB slots of a chunk. Larger blocks, and
 * alignments above 64 KiB, get a region of their own, returned with KnVmUnmap when freed. Each
 * thread allocates from its own chunks without a lock; a block freed by another thread goes back
 * to its owner through an atomic list, and is reused when the owner next allocates or frees in
 * its page, or exits. Memory goes back to the system with some hysteresis: the slots of an empty
 * slab are decommitted once a thread holds more free committed slots than a quarter of what it
 * has committed (at least 2 MiB); a chunk with no slab is unmapped, except one per thread kept
 * for reuse; an exiting thread's empty chunks all go.
 *
 * LOCKED and pinning (host difference): the memory is populated when committed, never lazily
 * faulted. It is also pinned with mlock when the process may (CAP_IPC_LOCK or room under
 * RLIMIT_MEMLOCK), as for every LOCKED region of kosvmm; otherwise populated but not pinned
 * (VMM_PAGE_ATTR_PINNED clear). KasperskyOS has no swap, so both give its guarantee: no page of
 * a block is ever missing.
 *
 * Quotas: the chunks and large regions are ordinary kosvmm regions, so the process policy
 * (kosvmm/kosvmm.h) charges them: when a limit would be passed, the allocation returns RTL_NULL
 * and nothing is left allocated. A denied Allocate or Commit method makes every allocation that
 * needs new memory return RTL_NULL.
 *
 * Misuse is detected and reported on stderr, then the process aborts (SIGABRT), as glibc does:
 *   "KosMemFree(): double free detected: 0x..."        a block freed twice;
 *   "KosMemFree(): invalid pointer: 0x... (...)"       a pointer KosMemAlloc did not return:
 *                                                     foreign memory, or inside a block.
 * This works in every build, sanitizers included (they watch malloc, not this allocator).
 */

/*
 * Allocates size bytes. The block is aligned to 16 bytes. size 0 gives a unique pointer that
 * KosMemFree accepts (a 16-byte block). Returns RTL_NULL when memory (or the quota) is exhausted,
 * or size is too large to be mapped.
 */
void *KosMemAlloc(rtl_size_t size);

/* KosMemAlloc, with the whole block (KosMemGetSize bytes) filled with zeros. */
void *KosMemZalloc(rtl_size_t size);

/*
 * KosMemAlloc with an alignment: align is a power of two, 1 (or anything up to 16) meaning the
 * default 16-byte alignment; any power of two that fits the address space is honoured. zeroed:
 * 1 fills the block with zeros (as KosMemZalloc), 0 leaves it as it is; other values are taken
 * as 1. Returns RTL_NULL also when align is 0 or not a power of two. As the SDK allows, the block
 * may be larger than size (KosMemGetSize says how large).
 */
void *KosMemAllocEx(rtl_size_t size, rtl_size_t align, int zeroed);

/*
 * Frees a block from KosMemAlloc, KosMemZalloc or KosMemAllocEx. RTL_NULL is ignored. A double
 * free, or a pointer that is not the start of a live block, is reported and aborts (above).
 */
void KosMemFree(void *ptr);

/*
 * The usable size of a live block, at least the size asked for: the size class for small blocks,
 * the page-rounded size for large ones. O(1). kosvmm's choice where the SDK is silent: returns 0
 * for RTL_NULL and for anything that is not the start of a live block (a freed block, a foreign
 * or interior pointer), without aborting, so it is also a validity test.
 */
rtl_size_t KosMemGetSize(void *ptr);

#ifdef __cplusplus
}
#endif

#endif /* KOSVMM_KOS_ALLOC_H */
