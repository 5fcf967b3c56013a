/* tests/testutil.h — helpers shared by the Check suites: residency (mincore), /proc/self/maps, the runner. */
#ifndef KOSVMM_TESTUTIL_H
#define KOSVMM_TESTUTIL_H

#include <check.h>
#include <stddef.h>

/* The system page size. */
size_t tu_page(void);

/* Number of resident pages in [addr, addr + len) as mincore(2) reports them; -1 if not mapped. */
long tu_resident_pages(const void *addr, size_t len);

/* The "rwxp" permission field of the /proc/self/maps line containing addr, copied into perms[5].
 * Returns 0, or -1 when no mapping contains addr. */
int tu_maps_perms(const void *addr, char perms[5]);

/* 1 if any mapping of this process contains addr, else 0 (from /proc/self/maps). */
int tu_is_mapped(const void *addr);

/* Starts kosvmm's userfaultfd engine now (a lazily committed page, touched and freed), so the
 * mappings it makes once (thread stack, ring, buffers) cannot land in an address-space hole a
 * test frees next to place a region at a fixed address. */
void tu_start_lazy_engine(void);

/* Runs one suite in fork mode (CK_FORK), prints Check's summary, returns the process exit code. */
int tu_run(Suite *suite);

#endif
