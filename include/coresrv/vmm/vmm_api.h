/* coresrv/vmm/vmm_api.h — the KasperskyOS virtual-memory API (reserve, commit, protect, query, free) on Linux. */
#ifndef KOSVMM_CORESRV_VMM_VMM_API_H
#define KOSVMM_CORESRV_VMM_VMM_API_H

#include <rtl/types.h>
#include <rtl/retcode.h>
#include <vmm/flags.h>
#include <coresrv/vmm/vmm_types.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Pages are free, reserved or committed. Every call is thread-safe. Every call validates all of
 * its arguments before it changes anything: on rcInvalidArgument, rcResourceNotFound or
 * rcInvalidOperation nothing has changed and no output was written.
 *
 * Ranges. KnVmCommit, KnVmDecommit, KnVmReset, KnVmProtect and KnVmUnmap take a page-aligned
 * address and a non-zero page-multiple size, and accept the whole region or any part of one
 * region. Errors, in the order they are checked:
 *   rcInvalidArgument   addr or size not page aligned, size 0, addr + size past the end of the
 *                       address space;
 *   rcResourceNotFound  addr is not inside a region allocated by KnVmAllocate (guard pages are not
 *                       part of the usable region);
 *   rcInvalidArgument   the range runs past the end of the region that contains addr;
 *   rcOutOfMemory       the kernel refused (ENOMEM, e.g. vm.max_map_count reached). The range may then
 *                       be partly transitioned, but KnVmQuery and the kernel agree page by page.
 *
 * Commit modes (set per region by KnVmAllocate, as the SDK's table says):
 *   COMMIT|LOCKED   committed and populated now ("full"); pinned with mlock when the process may
 *                   (CAP_IPC_LOCK, or room under RLIMIT_MEMLOCK), otherwise populated but not
 *                   pinned (VMM_PAGE_ATTR_PINNED clear, kosvmm_stats.pin_refusals counts it);
 *   COMMIT          committed lazily: physical memory arrives on first touch;
 *   LOCKED          reserved; a later KnVmCommit commits fully;
 *   neither         reserved; a later KnVmCommit commits lazily.
 *
 * Linux realisation: a region is one mmap(PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE);
 * the kernel protection of a page is derived from (state, protection) in one place: committed
 * pages get their protection, everything else PROT_NONE.
 */

/*
 * Reserves (and optionally commits) size bytes. addr == RTL_NULL lets the system choose; a
 * non-zero addr must be page aligned and is honoured exactly (MAP_FIXED_NOREPLACE): the call fails
 * rather than replace an existing mapping. With VMM_FLAG_LOW_GUARD / VMM_FLAG_HIGH_GUARD one guard
 * page lies directly below / above the size usable bytes; the returned address is the first
 * usable byte (so a guarded fixed allocation also needs the page below addr to be free).
 * Returns the first usable byte, or RTL_NULL; kosvmm_last_error() (kosvmm/kosvmm.h) then says why,
 * all arguments being checked before the kernel is asked:
 *   rcInvalidArgument  size 0 or unaligned, addr unaligned, addr + size (guards included) past the
 *                      end of the address space, RESERVE missing, unknown bits, a forbidden
 *                      protection combination, more than one cache mode;
 *   rcAlreadyExists    addr overlaps an existing mapping;
 *   rcOutOfMemory      the kernel refused the reservation (RLIMIT_AS, vm.max_map_count, an address
 *                      beyond user space) or the commit; nothing is left allocated.
 */
void *KnVmAllocate(void *addr, rtl_size_t size, int flags);

/*
 * Commits a range. flags is fictitious, as on KasperskyOS (pass VMM_FLAG_LOCKED); it is ignored.
 * The region's VMM_FLAG_LOCKED decides the mode: full (populate now, pin if allowed) or lazy.
 * Pages already committed stay committed with their contents; in a LOCKED region lazily
 * committed pages (e.g. after KnVmReset) are populated and become fully committed.
 * rcInvalidOperation for a range backed by an MDL buffer.
 */
Retcode KnVmCommit(void *addr, rtl_size_t size, int flags);

/*
 * Decommits a range: contents are lost, physical memory is freed, pages return to reserved and any
 * access faults until KnVmCommit. The recorded protection is kept for the next commit.
 * Decommitting reserved pages is allowed and changes nothing. rcInvalidOperation on MDL ranges.
 */
Retcode KnVmDecommit(void *addr, rtl_size_t size);

/*
 * Changes the protection of a range to newFlags, which may hold only protection bits:
 * 0 (no access, contents kept), READ, READ|WRITE, READ|EXECUTE or READ|WRITE|EXECUTE.
 * On reserved pages it records the protection they will have once committed; they stay
 * inaccessible. rcInvalidArgument for other bits or combinations; rcInvalidOperation on MDL ranges.
 */
Retcode KnVmProtect(void *addr, rtl_size_t size, int newFlags);

/*
 * Resets a range: physical memory is freed and the pages read as zero, yet stay usable with no
 * further call: the range becomes lazily committed (as if allocated with COMMIT, without LOCKED).
 * Applies to reserved pages too, which become lazily committed. Protection is kept.
 * kosvmm's choice of signature: the SDK does not document one publicly.
 * rcInvalidOperation on MDL ranges.
 */
Retcode KnVmReset(void *addr, rtl_size_t size);

/*
 * Frees a range: the pages become free whatever their state, and their physical memory is freed.
 * Unmapping the front, middle or end of a region splits it into the remaining pieces; a guard
 * page goes with the edge of the region it guards. On an MDL-backed range the addresses are freed
 * but the MDL buffer lives on. Unmapping inside a region splits a kernel mapping, which the kernel
 * may refuse at vm.max_map_count: rcOutOfMemory, and nothing changed.
 */
Retcode KnVmUnmap(void *addr, rtl_size_t size);

/*
 * Describes the page containing va (any address, aligned or not) into *info.
 * An address kosvmm does not manage is reported with state VMM_PAGE_STATE_FREE and rcOk.
 * kosvmm's choice of signature: the SDK does not document one publicly.
 * Returns rcOk, or rcInvalidArgument when info is RTL_NULL.
 */
Retcode KnVmQuery(const void *va, VmQueryInfo *info);

#ifdef __cplusplus
}
#endif

#endif /* KOSVMM_CORESRV_VMM_VMM_API_H */
