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
} kosvmm_stats;

#define KOSVMM_GUARD_PROT_NONE     0u  /* guard page = a PROT_NONE page of the reservation */
#define KOSVMM_GUARD_MADV_INSTALL  1u  /* MADV_GUARD_INSTALL markers (Linux 6.13+), robust to mprotect */

/* Fills *stats. Returns rcOk, or rcInvalidArgument when stats is RTL_NULL. */
Retcode kosvmm_get_stats(kosvmm_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* KOSVMM_KOSVMM_H */
