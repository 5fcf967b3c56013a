/* kosvmm/kosvmm.h — host-only additions of kosvmm: last error, statistics. Never part of the SDK headers. */
#ifndef KOSVMM_KOSVMM_H
#define KOSVMM_KOSVMM_H

#include <rtl/types.h>
#include <rtl/retcode.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Why the last KnVmAllocate of the calling thread returned RTL_NULL (rcOk after a success).
 * Thread-local, so it behaves like errno.
 */
Retcode kosvmm_last_error(void);

/* A snapshot of process-wide counters. Byte counts cover usable pages only (no guard pages). */
typedef struct kosvmm_stats {
    rtl_uint64_t regions;            /* regions currently allocated */
    rtl_uint64_t reserved_bytes;     /* bytes in regions, any state */
    rtl_uint64_t committed_bytes;    /* committed bytes, lazy and full */
    rtl_uint64_t lazy_bytes;         /* of which lazily committed */
    rtl_uint64_t locked_bytes;       /* of which fully committed (populated at commit) */
    rtl_uint64_t pinned_bytes;       /* of which pinned with mlock */
    rtl_uint64_t pin_refusals;       /* mlock calls refused (no CAP_IPC_LOCK, RLIMIT_MEMLOCK too low) */
    rtl_uint64_t kernel_refusals;    /* kernel calls refused while changing memory (ENOMEM at
                                        vm.max_map_count, out of RAM), whole or part-way */
    rtl_uint32_t guard_mechanism;    /* KOSVMM_GUARD_* used for guard pages */
    rtl_uint32_t lazy_engine;        /* KOSVMM_ENGINE_* that new lazy commits get now */
    rtl_uint32_t lazy_window;        /* pages the last userfaultfd fault filled around itself */
    rtl_uint64_t uffd_faults;        /* faults served by the userfaultfd handler */
    rtl_uint64_t uffd_pages_filled;  /* pages it filled (faulting pages, neighbours, read-ahead) */
    rtl_uint64_t uffd_readahead_pages; /* of which filled ahead of a stream, before any fault */
    rtl_uint64_t uffd_fill_ns;       /* time spent in UFFDIO_COPY / UFFDIO_ZEROPAGE */
    rtl_uint64_t thp_bytes;          /* bytes of full commits advised for transparent huge pages
                                        (2 MiB-aligned extents; cumulative) */
} kosvmm_stats;

#define KOSVMM_GUARD_PROT_NONE     0u  /* guard page = a PROT_NONE page of the reservation */
#define KOSVMM_GUARD_MADV_INSTALL  1u  /* MADV_GUARD_INSTALL markers (Linux 6.13+), robust to mprotect */

/* Fills *stats. Returns rcOk, or rcInvalidArgument when stats is RTL_NULL. */
Retcode kosvmm_get_stats(kosvmm_stats *stats);

/*
 * Lazy commit engines. The SDK says a lazy page is committed on first access "together with
 * several pages before and after" it; KOSVMM_ENGINE_UFFD does exactly that with a userfaultfd
 * handler thread, KOSVMM_ENGINE_KERNEL leaves it to Linux demand paging (one page per fault).
 * Both give the same visible semantics: lazy pages read as zero until written.
 */
#define KOSVMM_ENGINE_KERNEL  0u
#define KOSVMM_ENGINE_UFFD    1u

typedef struct kosvmm_lazy_config {
    rtl_uint32_t engine;          /* KOSVMM_ENGINE_* wanted; UFFD falls back to KERNEL when no
                                     usable userfaultfd exists (see kosvmm_stats.lazy_engine) */
    rtl_uint32_t window_min;      /* pages filled per fault on random access, >= 1 */
    rtl_uint32_t window_max;      /* pages filled per fault on a stream, <= 4096, >= window_min */
    rtl_uint32_t readahead;       /* 1: on a stream, fill the next window before it is touched */
    rtl_uint32_t user_mode_only;  /* 1: allow UFFD_USER_MODE_ONLY, which lets unprivileged processes
                                     use userfaultfd under vm.unprivileged_userfaultfd=0, but makes
                                     system calls that write into untouched lazy memory (read(2),
                                     recv, io_uring reads) fail with EFAULT */
} kosvmm_lazy_config;

/*
 * The configuration new lazy commits get. Defaults: engine UFFD, window 1..512, readahead 1,
 * user_mode_only 0; the environment overrides them when the library first needs them:
 * KOSVMM_ENGINE=uffd|kernel, KOSVMM_WINDOW_MIN=n, KOSVMM_WINDOW_MAX=n, KOSVMM_READAHEAD=0|1,
 * KOSVMM_UFFD_USER_MODE_ONLY=0|1. A region keeps the engine it got at its first lazy commit.
 * kosvmm_set_lazy_config: rcInvalidArgument for a NULL pointer, an unknown engine or bad window
 * bounds, and then nothing changes.
 */
Retcode kosvmm_get_lazy_config(kosvmm_lazy_config *config);
Retcode kosvmm_set_lazy_config(const kosvmm_lazy_config *config);

#ifdef __cplusplus
}
#endif

#endif /* KOSVMM_KOSVMM_H */
