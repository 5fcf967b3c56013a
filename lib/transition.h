/* SPDX-License-Identifier: MIT */
/* lib/transition.h — moves a page range of a region between states: the kernel change, then its record. */
#ifndef KVMM_TRANSITION_H
#define KVMM_TRANSITION_H

#include <stdint.h>

#include "region_map.h"

enum kvmm_op {
    KVMM_OP_COMMIT,    /* reserved -> lazy or full (the region's LOCKED flag decides); lazy -> full if LOCKED */
    KVMM_OP_DECOMMIT,  /* anything -> reserved, memory freed */
    KVMM_OP_RESET,     /* anything -> lazy, memory freed */
    KVMM_OP_PROTECT,   /* new protection, state kept */
};

/*
 * Applies op to [lo, hi), which lies inside r; r's lock is held (or r is not yet in the map).
 * Returns 0 or a negative errno: -EOPNOTSUPP, with nothing changed, when any page of the range is
 * backed by an MDL buffer (the SDK forbids these calls there). On a kernel refusal the range may
 * be partly transitioned, but every page's record agrees with the kernel: a refused mprotect is
 * read back from /proc/self/maps.
 */
int kvmm_transition(struct kvmm_region *r, uintptr_t lo, uintptr_t hi, enum kvmm_op op, int prot);

/*
 * KnPmmMdlCreateFromVm's step: the committed pages [lo, hi) of r become MDL-backed in place, a
 * shared mapping of fd (from offset 0 at lo) replacing them span by span, each with the
 * protection it had. Each piece is recorded as soon as the kernel has replaced it, so a refusal
 * part-way (-ENOMEM) leaves the pieces done MDL-backed, recorded so, and the rest as it was. r's
 * lock is held; the caller has checked that every page is committed and copied the contents.
 */
int kvmm_transition_to_mdl(struct kvmm_region *r, uintptr_t lo, uintptr_t hi, int fd);

#endif
