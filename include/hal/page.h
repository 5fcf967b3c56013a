/* SPDX-License-Identifier: MIT */
/* hal/page.h — the page size KasperskyOS programs compute with: PAGE_SHIFT, PAGE_SIZE, PAGE_MASK. */
#ifndef KOSVMM_HAL_PAGE_H
#define KOSVMM_HAL_PAGE_H

/*
 * A compile-time constant, as in the SDK: 4 KiB, the page size of KasperskyOS and of Linux on
 * x86-64 and on most arm64 kernels. Spelled as glibc's <sys/user.h> spells them, so a program
 * including both sees identical definitions.
 *
 * The host must agree: libkosvmm.so checks sysconf(_SC_PAGESIZE) against PAGE_SIZE when it is
 * loaded (a static link includes the check only if it pulls in lib/page_check.c).
 * Where the host's pages are larger (arm64 kernels built for 16 KiB or 64 KiB pages), kosvmm
 * prints one warning on stderr at load and keeps working at the host's granularity: every
 * address and size given to KnVm* and KnPmmMdl* calls must then be a multiple of the host's page,
 * so a PAGE_SIZE-aligned value that is not is refused with rcInvalidArgument, never silently
 * rounded. Such a program should be built with -DPAGE_SHIFT=14 (or 16) to match the host.
 */
#ifndef PAGE_SHIFT
#  define PAGE_SHIFT 12
#endif
#ifndef PAGE_SIZE
#  define PAGE_SIZE (1UL << PAGE_SHIFT)
#endif
#ifndef PAGE_MASK
#  define PAGE_MASK (~(PAGE_SIZE - 1))
#endif

#endif /* KOSVMM_HAL_PAGE_H */
