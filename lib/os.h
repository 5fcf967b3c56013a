/* SPDX-License-Identifier: MIT */
/* lib/os.h — the thin Linux primitive layer under the region map: one kernel mechanism per call. */
#ifndef KVMM_OS_H
#define KVMM_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Every mmap, munmap, mprotect and madvise of kosvmm goes through this layer (lib/ and the engines
 * in src/ alike; scripts/check_layers.sh checks it), so what each kernel call may do to the
 * address space is written down once, here.
 *
 * Contract, for every kvmm_os_* call below: addresses and lengths are page aligned and non-zero;
 * the call returns 0 on success or a negative errno; on failure the kernel state is unchanged
 * unless the comment says otherwise. None takes a lock or allocates heap memory, so every one
 * may run in a fork child and under any kosvmm lock.
 */

size_t kvmm_os_page_size(void);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t kvmm_os_now_ns(void);

/*
 * Reserves len bytes of inaccessible, unaccounted address space (PROT_NONE, MAP_NORESERVE).
 * fixed != 0: exactly at fixed, never replacing an existing mapping (-EEXIST; also on kernels
 * older than 4.17, where MAP_FIXED_NOREPLACE is only a hint and the result is checked).
 */
int kvmm_os_reserve(uintptr_t fixed, size_t len, uintptr_t *out);

/* Like kvmm_os_reserve without a fixed address, but *out + offset is a multiple of align (a
 * power of two > page size): over-reserves by align and returns the excess. */
int kvmm_os_reserve_aligned(size_t len, size_t align, size_t offset, uintptr_t *out);

/* Maps len bytes of fd from offset, shared (MAP_SHARED), with POSIX PROT_* bits prot. fixed != 0:
 * exactly at fixed, never replacing an existing mapping (-EEXIST, as kvmm_os_reserve). The
 * kernel's refusals: -EACCES when fd's access mode does not allow prot (a read-only description
 * and PROT_WRITE), -EPERM when the file forbids exec, -ENOMEM out of address space or map count. */
int kvmm_os_map_file(int fd, uint64_t offset, size_t len, int prot, uintptr_t fixed, uintptr_t *out);

/* Maps len bytes of fd from offset over [addr, addr + len), shared, replacing whatever was there
 * in one step (MAP_FIXED; the old pages' mlock goes with them). On failure the old pages may be
 * gone too (the kernel unmaps before it maps): callers read the range back if they must know. */
int kvmm_os_map_file_over(uintptr_t addr, size_t len, int prot, int fd, uint64_t offset);

/* A private, anonymous, read-only mapping of len bytes that is never written: every page is the
 * kernel's shared zero page, so it costs address space and no memory (a copy source of zeros). */
int kvmm_os_map_zeros(size_t len, uintptr_t *out);

/* Size of a transparent huge page (PMD) on this machine. */
#define KVMM_HUGE_PAGE (2u * 1024 * 1024)

/* Asks for transparent huge pages on the 2 MiB-aligned interior of [addr, addr + len)
 * (MADV_HUGEPAGE); returns the bytes advised, 0 when there is no aligned extent or the kernel
 * refused. Splits the kernel mapping at the extent's edges. */
size_t kvmm_os_advise_huge(uintptr_t addr, size_t len);
/* Keeps the kernel from making transparent huge pages in [addr, addr + len) (MADV_NOHUGEPAGE). */
int kvmm_os_advise_no_huge(uintptr_t addr, size_t len);
/* Makes the 2 MiB-aligned [addr, addr + len) transparent huge pages now, copying the pages present
 * and zeroing the rest (MADV_COLLAPSE, Linux 6.1+: -EINVAL before; -EAGAIN/-ENOMEM when no huge
 * page could be had). Refused (-EINVAL) where the mapping is not eligible, such as MADV_NOHUGEPAGE. */
int kvmm_os_collapse(uintptr_t addr, size_t len);
/* Private scratch memory for huge pages that a forked child must neither see nor share:
 * MADV_HUGEPAGE and MADV_WIPEONFORK (Linux 4.14) on [addr, addr + len). */
int kvmm_os_advise_staging(uintptr_t addr, size_t len);

/* munmap. May fail with -ENOMEM when it must split a mapping past vm.max_map_count. */
int kvmm_os_release(uintptr_t addr, size_t len);

/* mprotect with POSIX PROT_* bits. A failure part-way through several kernel mappings can leave
 * some changed: callers that need to know read the result back with kvmm_os_scan_prot. */
int kvmm_os_protect(uintptr_t addr, size_t len, int prot);

/* Allocates and maps every page now, as a write fault would (MADV_POPULATE_WRITE, Linux 5.14+;
 * older kernels: an atomic no-op write per page). Needs write permission. -ENOMEM when RAM runs
 * out; pages populated before the failure stay populated. */
int kvmm_os_populate(uintptr_t addr, size_t len);

/* Frees the physical pages; anonymous memory then reads as zero (MADV_DONTNEED). The range must
 * not be mlocked (the kernel refuses DONTNEED on VM_LOCKED mappings). */
int kvmm_os_discard(uintptr_t addr, size_t len);

/* mlock / munlock. kvmm_os_pin fails with -ENOMEM/-EPERM/-EAGAIN when RLIMIT_MEMLOCK or the
 * capability set forbids it; a failure part-way may leave part locked (undo with kvmm_os_unpin). */
int kvmm_os_pin(uintptr_t addr, size_t len);
int kvmm_os_unpin(uintptr_t addr, size_t len);

/* Installs guard markers (MADV_GUARD_INSTALL, Linux 6.13+) so any access faults even if the
 * protection is later changed. -EINVAL/-ENOSYS on kernels without it. */
int kvmm_os_install_guard(uintptr_t addr, size_t len);

/* Reads /proc/self/maps and reports the kernel protection of every part of [start, end) that is
 * mapped, in address order. For error paths and tests only: it is a file read. */
typedef void (*kvmm_os_prot_fn)(void *ctx, uintptr_t lo, uintptr_t hi, int prot);
int kvmm_os_scan_prot(uintptr_t start, uintptr_t end, kvmm_os_prot_fn fn, void *ctx);

#endif
