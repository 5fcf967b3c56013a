/* SPDX-License-Identifier: MIT */
/* coresrv/vmm/vmm_api.h — the KasperskyOS virtual-memory API (reserve, commit, protect, query, free) on Linux. */
#ifndef KOSVMM_CORESRV_VMM_VMM_API_H
#define KOSVMM_CORESRV_VMM_VMM_API_H

#include <rtl/types.h>
#include <rtl/retcode.h>
#include <vmm/flags.h>
#include <coresrv/vmm/vmm_types.h>
#include <handle/handletype.h>

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
 * Lazy commit. The SDK: on an access, "the page containing the queried address and several pages
 * before and after this address are committed". The userfaultfd engine (the default) does that:
 * the first fault on an untouched lazy range fills the faulting page, at least one page before it
 * and at least one after it (more as a sequential stream shows itself), never past the lazy range
 * or the region. A write fills them with memory; a read maps them to the shared zero page, which
 * costs no memory until a page is written, as Linux does for reads. A region whose faults look
 * random is handed to kernel demand paging after a run of them, so random access does not pay
 * for neighbours it never touches. Kernel demand paging, the fallback (KOSVMM_ENGINE=kernel, or
 * no usable userfaultfd: seccomp, no privilege; see kosvmm/kosvmm.h), cannot fill around a fault:
 * there the faulting page alone is committed. Neither difference is visible in contents: lazy
 * pages read as zero until written.
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
 * KnVmFree, the older SDK call: frees the whole region that
 * starts at addr, the address KnVmAllocate or KnPmmMdlMap returned, as KnVmUnmap(addr, size of
 * that region) would, its guard pages included. Not in the KasperskyOS CE 1.1-1.4 documentation;
 * kosvmm follows the vmm.VMM endpoint's Free method and the way public code calls it
 * (KnVmFree(ptr) after ptr = KnVmAllocate(...)). After KnVmUnmap split a region, each remaining
 * piece is a region of its own, freed from its first usable byte. Policy method: "Free".
 * Errors, in the order they are checked, nothing changed on any:
 *   rcInvalidArgument   addr RTL_NULL or not page aligned;
 *   rcResourceNotFound  addr is not inside a region (guard pages included: they are not usable);
 *   rcInvalidArgument   addr is inside a region but not its first usable byte;
 *   rcOutOfMemory       the kernel refused (never expected for a whole region).
 */
Retcode KnVmFree(void *addr);

/*
 * Describes the page containing va (any address, aligned or not) into *info.
 * An address kosvmm does not manage is reported with state VMM_PAGE_STATE_FREE and rcOk.
 * kosvmm's choice of signature: the SDK does not document one publicly.
 * Returns rcOk, or rcInvalidArgument when info is RTL_NULL.
 */
Retcode KnVmQuery(const void *va, VmQueryInfo *info);

/*
 * MDL buffers: memory several processes map at once, named by handles. KnHandleClose and
 * KnHandleRevoke (coresrv/handle/handle_api.h) end handles; kosvmm/kosvmm.h has the rights
 * (KOSVMM_RIGHT_*) and the channels that move handles between processes.
 *
 * Linux realisation: a buffer is a memfd, sealed against shrink and grow (no holder can truncate
 * it under another's mapping), mode 0444, and sealed non-executable (MFD_NOEXEC_SEAL) when it
 * has no execute right. Every handle holds its own file description of it: read-write when the
 * handle has write right, read-only otherwise, so the kernel itself refuses a writable mapping
 * through a read-only handle, even a raw mmap of the descriptor by a process that received it.
 * The memory is freed when the last handle is closed and the last mapping unmapped, in every
 * process.
 *
 * Creation prot (flags for KnPmmMdlCreateFromVm): READ, READ|WRITE, READ|EXECUTE or
 * READ|WRITE|EXECUTE. The new handle's rights are that prot plus KOSVMM_RIGHT_TRANSFER.
 *
 * Handles: every call given a handle fails, after its own argument checks, with
 *   rcInvalidArgument  for a value that is not an MDL handle of this process (never issued,
 *                      closed, forged, or a handle of another kind of object);
 *   rcHandleRevoked    when a handle it derives from was revoked: the origin of a clone, the
 *                      sender's handle of a transferred copy, in this process or another,
 *                      transitively.
 * A handle gives a window of its buffer: all of it, or the part KnPmmMdlClone chose. Offsets and
 * lengths are relative to that window, page aligned, lengths non-zero, and must lie inside it
 * (rcInvalidArgument, overflow included).
 *
 * Lifetime: neither KnHandleClose nor KnHandleRevoke breaks a mapping made before; it stays valid
 * until KnVmUnmap. KnHandleRevoke revokes the handle's descendants and closes the handle
 * (coresrv/handle/handle_api.h). Revocation is enforced by kosvmm: it stops every later call
 * given a revoked handle, but a process that bypasses kosvmm keeps what its descriptors allow.
 *
 * Out of resources: rcOutOfMemory (memory, kernel map entries), rcQuotaExceeded (no file
 * descriptor left under RLIMIT_NOFILE, or no handle slot). Nothing is left allocated then.
 * rcUnimplemented when /proc is not mounted and a read-only description is needed.
 */

/*
 * Creates a zero-filled buffer of size bytes, rounded up to whole pages, and a handle for it.
 * rcInvalidArgument: handle RTL_NULL, size 0 or too large for a file (above INT64_MAX once
 * rounded), prot not one of the four allowed.
 */
Retcode KnPmmMdlCreate(rtl_size_t size, int prot, Handle *handle);

/*
 * Turns committed memory into an MDL buffer in place: [va, va + size) must be page aligned, inside
 * one region, and committed (lazily or fully; touched or not). A new buffer of size bytes gets its
 * contents, then is mapped over the same addresses with the protection each page had: the
 * addresses and contents stay, the pages become MDL-backed (KnVmQuery: VMM_PAGE_ATTR_MDL; no
 * longer LOCKED, LAZY or PINNED), and other processes can map the buffer through the handle.
 * flags is the buffer's prot, as for KnPmmMdlCreate; it bounds the handle, not these pages, whose
 * protection was set before the buffer existed. Threads must not write the range during the
 * call: a write racing with the copy may be lost.
 * Errors, in the order they are checked:
 *   rcInvalidArgument   handle RTL_NULL, bad flags, va or size unaligned, size 0, overflow;
 *   rcResourceNotFound  va is not inside a region allocated by KnVmAllocate;
 *   rcInvalidArgument   the range runs past the end of that region;
 *   rcInvalidOperation  a page of the range is reserved, or already MDL-backed;
 *   rcOutOfMemory       the kernel refused. If it refused part-way through a range whose pages had
 *                       different protections, the pieces already replaced stay MDL-backed (as
 *                       KnVmQuery reports, contents intact) and no handle is returned.
 */
Retcode KnPmmMdlCreateFromVm(void *va, rtl_size_t size, int flags, Handle *handle);

/*
 * KnPmmMdlCreate, then copies bufSize bytes from buf to the start of the buffer; the rest reads as
 * zero. rcInvalidArgument also for bufSize > size, buf RTL_NULL with bufSize > 0, or buf not
 * readable.
 */
Retcode KnPmmMdlCreateFromBuf(rtl_size_t size, int prot, const void *buf, rtl_size_t bufSize,
                              Handle *handle);

/*
 * The size in bytes of the handle's window: the whole (page-rounded) buffer for a handle from a
 * KnPmmMdlCreate* call, the clone's length for a clone. rcInvalidArgument for size RTL_NULL.
 */
Retcode KnPmmMdlGetSize(Handle handle, rtl_size_t *size);

/*
 * Maps [offset, offset + length) of the handle's window with protection prot (READ, READ|WRITE,
 * READ|EXECUTE or READ|WRITE|EXECUTE) and stores the first byte in *address. hint RTL_NULL lets
 * the system choose; otherwise hint must be page aligned and is honoured exactly, never replacing
 * an existing mapping. The mapping is a region: KnVmQuery reports it COMMITTED with
 * VMM_PAGE_ATTR_MDL, protection prot and regionFlags RESERVE|COMMIT|prot, and it counts in the
 * statistics' committed bytes. KnVmCommit, KnVmDecommit, KnVmReset and KnVmProtect refuse it with
 * rcInvalidOperation; KnVmUnmap frees the addresses and the buffer lives on. A buffer may be
 * mapped any number of times, by any number of processes: all mappings share the same memory.
 * Errors, in the order they are checked:
 *   rcInvalidArgument   address RTL_NULL, bad prot, offset or length unaligned, length 0, hint
 *                       unaligned or hint + length overflowing;
 *   rcInvalidArgument / rcHandleRevoked  as for every handle;
 *   rcInvalidArgument   the range is not inside the window;
 *   rcNoCapability      prot asks for more than the handle's rights;
 *   rcAlreadyExists     hint overlaps an existing mapping;
 *   rcOutOfMemory       the kernel refused (an address beyond user space, vm.max_map_count).
 */
Retcode KnPmmMdlMap(Handle handle, rtl_size_t offset, rtl_size_t length, void *hint, int prot,
                    void **address);

/*
 * A new handle over [offset, offset + length) of origin's window: the same memory, so writes
 * through either are seen through both. The clone has origin's rights (a clone of a read-only
 * handle is read-only) and derives from it: revoking origin revokes the clone and its copies in
 * other processes. A handle derived through KVMM_MDL_MAX_REVOKE (8) clones or transfers cannot be
 * cloned or transferred again: rcQuotaExceeded.
 * rcInvalidArgument: clone RTL_NULL, offset or length unaligned, length 0, range outside the window.
 */
Retcode KnPmmMdlClone(Handle origin, rtl_size_t offset, rtl_size_t length, Handle *clone);

/* ELF image segments */

/*
 * Both calls put one ELF image segment into a new MDL buffer and describe it in *seg (seg->h is
 * the buffer's handle, with the rights in flags plus transfer), so that an initializer such as
 * Einit can send it to a new process, which maps it at seg->loadAddr. flags is READ, READ|WRITE,
 * READ|EXECUTE or READ|WRITE|EXECUTE. *seg is written only on success; on failure no handle is
 * left open. The caller closes seg->h with KnHandleClose once the new process has mapped it.
 *
 * KnVmSegInitFromVm: the segment is already in memory: [addr, addr + size), page aligned, a
 * committed range of one region, becomes the buffer (KnPmmMdlCreateFromVm: the addresses stay
 * usable and are then backed by it; KnVmUnmap frees them). offset, fileOffset and the build ID
 * are recorded as 0. Errors: rcInvalidArgument for seg RTL_NULL, addr RTL_NULL or unaligned,
 * loadAddr unaligned, size 0 or not a page multiple, loadAddr + size overflowing, bad flags; and
 * those of KnPmmMdlCreateFromVm.
 */
Retcode KnVmSegInitFromVm(VmSeg *seg, void *loadAddr, void *addr, rtl_size_t size, int flags);

/*
 * KnVmSegInitFromBuf: a new zero-filled buffer of size bytes gets bufSize bytes of buf copied at
 * offset (the in-page offset of p_vaddr, typically); the rest stays zero, which is the .bss.
 * fileOffset and the build ID are recorded in *seg. Errors: rcInvalidArgument for seg RTL_NULL,
 * loadAddr unaligned, size 0 or not a page multiple, loadAddr + size overflowing, offset > size,
 * bufSize > size - offset, buf RTL_NULL with bufSize > 0, buildIdSize > VMM_SEG_BUILD_ID_MAX,
 * buildId RTL_NULL with buildIdSize > 0, bad flags; rcOutOfMemory when the buffer cannot be made.
 */
Retcode KnVmSegInitFromBuf(VmSeg *seg, void *loadAddr, rtl_size_t offset, rtl_size_t size, int flags,
                           rtl_size_t fileOffset, const void *buildId, rtl_size_t buildIdSize,
                           const void *buf, rtl_size_t bufSize);

#ifdef __cplusplus
}
#endif

#endif /* KOSVMM_CORESRV_VMM_VMM_API_H */
