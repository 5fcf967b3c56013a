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

#endif
