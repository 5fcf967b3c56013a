/* SPDX-License-Identifier: MIT */
/* src/uffd/uffd.h — the userfaultfd lazy-commit engine: its kvmm_lazy_engine (lib/lazy.h) and configuration. */
#ifndef KVMM_UFFD_H
#define KVMM_UFFD_H

#include <kosvmm/kosvmm.h>
#include <stdbool.h>
#include <stdint.h>

struct kvmm_region;

/*
 * A region is registered with the process's userfaultfd on its first lazy commit, as a whole
 * (registration flags differ per kernel mapping, so registering each lazy span would split
 * mappings towards vm.max_map_count). Missing-page faults then reach one handler thread, which
 * fills the faulting page and its neighbours: with UFFDIO_COPY for a write, with the shared zero
 * page (UFFDIO_ZEROPAGE) for a read, whose later write the kernel's copy-on-write serves without
 * the handler (a MISSING registration reports only missing pages). Reserved pages are PROT_NONE and
 * fault with SIGSEGV before userfaultfd sees them; fully committed pages are present; so every
 * fault the handler sees is a lazily committed page.
 *
 * The handler never waits for a kosvmm lock: it try-locks the map and the region to plan a
 * window, and fills only the faulting page when either is busy. That is safe because filling a
 * missing page of a lazy range with zeros is invisible except in memory use, and it means code
 * holding a region lock may touch lazy memory (KnPmmMdlCreateFromVm copies it) without deadlock.
 */

/* The config lazy commits get now (defaults, environment, kosvmm_set_lazy_config). */
void kvmm_lazy_config(kosvmm_lazy_config *out);
/* Whether KOSVMM_ENGINE named the engine: then a fallback to kernel paging is always reported. */
bool kvmm_lazy_engine_from_environment(void);

/* Whether r is served by this process's handler now (false in a forked child until
 * re-registered, and after the region was demoted to kernel paging). */
bool kvmm_uffd_active(const struct kvmm_region *r);

/*
 * Called with r locked when some of r becomes lazily committed: registers r with the engine if
 * the configuration asks for it, userfaultfd is usable and r was not demoted. Failure is not an
 * error for the caller: r then stays with kernel demand paging (same visible semantics).
 */
void kvmm_uffd_adopt(struct kvmm_region *r);

#endif
