/* SPDX-License-Identifier: MIT */
/* lib/transition.c — moves a page range of a region between states: the kernel change, then its record. */
#include "transition.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <vmm/flags.h>

#include "os.h"
#include "stats.h"
#include "uffd/uffd.h"

static struct kvmm_attrs next_attrs(const struct kvmm_region *r, struct kvmm_attrs a,
                                    enum kvmm_op op, int prot)
{
    switch (op) {
    case KVMM_OP_COMMIT:
        if (r->flags & VMM_FLAG_LOCKED) {
            if (a.state != KVMM_FULL)
                a.state = KVMM_FULL;
        } else if (a.state == KVMM_RESERVED) {
            a.state = KVMM_LAZY;
        }
        break;
    case KVMM_OP_DECOMMIT:
        a.state = KVMM_RESERVED;
        a.pinned = 0;
        break;
    case KVMM_OP_RESET:
        a.state = KVMM_LAZY;
        a.pinned = 0;
        break;
    case KVMM_OP_PROTECT:
        a.prot = (uint8_t)prot;
        break;
    }
    return a;
}

static uint8_t vmm_prot(int kernel_prot)
{
    return (uint8_t)((kernel_prot & PROT_READ ? VMM_FLAG_READ : 0) |
                     (kernel_prot & PROT_WRITE ? VMM_FLAG_WRITE : 0) |
                     (kernel_prot & PROT_EXEC ? VMM_FLAG_EXECUTE : 0));
}

/* What a kernel protection seen in /proc/self/maps means for a page, during one step. */
struct candidate {
    int prot;
    struct kvmm_attrs a;
};

struct reconcile_ctx {
    struct kvmm_region *r;
    const struct candidate *c;
    int n;
};

static void reconcile_one(void *ctx, uintptr_t lo, uintptr_t hi, int prot)
{
    struct reconcile_ctx *rc = ctx;
    prot &= PROT_READ | PROT_WRITE | PROT_EXEC;
    for (int i = 0; i < rc->n; i++) {
        /* A record can only be written with its spare nodes; without memory for them the old
         * record stays, which is the best that can be done when malloc fails here too. */
        if (rc->c[i].prot == prot && kvmm_region_prepare(rc->r) == 0) {
            kvmm_region_set(rc->r, lo, hi, rc->c[i].a);
            return;
        }
    }
}

/* The kernel refused part-way: record, page by page, what it really did. */
static void reconcile(struct kvmm_region *r, uintptr_t lo, uintptr_t hi,
                      const struct candidate *c, int n)
{
    struct reconcile_ctx ctx = {r, c, n};
    kvmm_count(kernel_refusals, 1);
    kvmm_os_scan_prot(lo, hi, reconcile_one, &ctx);
}

/* mprotect that, when refused, leaves the record telling the truth about [lo, hi). */
static int set_prot(struct kvmm_region *r, uintptr_t lo, uintptr_t hi, int prot,
                    struct candidate from, struct candidate to)
{
    int rc = kvmm_os_protect(lo, hi - lo, prot);
    if (rc) {
        struct candidate c[2] = {from, to};
        reconcile(r, lo, hi, c, 2);
    }
    return rc;
}

/* Commit fully: the pages must be writable while they are faulted in, whatever protection they
 * end with. A failed populate is rolled back to the old state. */
static int populate(struct kvmm_region *r, uintptr_t lo, uintptr_t hi, struct kvmm_attrs old,
                    struct kvmm_attrs *new_attrs)
{
    int kp_old = kvmm_kernel_prot(old), kp_new = kvmm_kernel_prot(*new_attrs);
    int open = PROT_READ | PROT_WRITE | (kp_new & PROT_EXEC);
    struct kvmm_attrs opened = {KVMM_LAZY, vmm_prot(open), 0};
    struct candidate was = {kp_old, old}, now_open = {open, opened};
    int rc;
    if (open != kp_old && (rc = set_prot(r, lo, hi, open, was, now_open)))
        return rc;
    kvmm_count(thp_bytes, kvmm_os_advise_huge(lo, hi - lo));
    /* mlock of a private writable mapping write-faults every page in, so when pinning is allowed
     * it is the populate pass; MADV_POPULATE_WRITE then only serves processes that may not pin
     * (no CAP_IPC_LOCK and RLIMIT_MEMLOCK too low), whose pages LOCKED still promises to populate. */
    if (kvmm_os_pin(lo, hi - lo) == 0) {
        new_attrs->pinned = 1;
        rc = 0;
    } else {
        kvmm_os_unpin(lo, hi - lo);
        kvmm_count(pin_refusals, 1);
        rc = kvmm_os_populate(lo, hi - lo);
    }
    if (rc) {
        kvmm_count(kernel_refusals, 1);
        if (old.state == KVMM_RESERVED)
            kvmm_os_discard(lo, hi - lo);
        if (open != kp_old && kvmm_os_protect(lo, hi - lo, kp_old) != 0) {
            struct candidate c[2] = {was, now_open};
            reconcile(r, lo, hi, c, 2);
        }
        return rc;
    }
    struct kvmm_attrs filled = {KVMM_FULL, vmm_prot(open), new_attrs->pinned};
    if (open != kp_new)
        return set_prot(r, lo, hi, kp_new, (struct candidate){open, filled},
                        (struct candidate){kp_new, *new_attrs});
    return 0;
}

/* One piece of uniform old attributes [lo, hi) becomes new_attrs. */
static int apply_piece(struct kvmm_region *r, uintptr_t lo, uintptr_t hi, struct kvmm_attrs old,
                       struct kvmm_attrs new_attrs, enum kvmm_op op)
{
    size_t len = hi - lo;
    int rc = kvmm_region_prepare(r);
    if (rc)
        return rc;
    if (old.pinned && !new_attrs.pinned) {
        /* The kernel refuses MADV_DONTNEED on mlocked mappings, so unpin first. */
        if ((rc = kvmm_os_unpin(lo, len))) {
            kvmm_count(kernel_refusals, 1);
            return rc;
        }
        old.pinned = 0;
        kvmm_region_set(r, lo, hi, old);
        if ((rc = kvmm_region_prepare(r)))
            return rc;
    }
    int kp_old = kvmm_kernel_prot(old), kp_new = kvmm_kernel_prot(new_attrs);
    /* Registered before the pages become accessible; adopting never fails the transition, it
     * only decides whether the engine or the kernel serves the first touches. */
    if (new_attrs.state == KVMM_LAZY && !kvmm_uffd_active(r))
        kvmm_uffd_adopt(r);
    if (new_attrs.state == KVMM_FULL && old.state != KVMM_FULL) {
        if ((rc = populate(r, lo, hi, old, &new_attrs)))
            return rc;
    } else if (kp_old != kp_new &&
               (rc = set_prot(r, lo, hi, kp_new, (struct candidate){kp_old, old},
                              (struct candidate){kp_new, new_attrs}))) {
        return rc;
    }
    /* After the protection change, so no thread can fault a page back in behind the discard. */
    if (op == KVMM_OP_RESET || (old.state != KVMM_RESERVED && new_attrs.state == KVMM_RESERVED))
        kvmm_os_discard(lo, len);
    kvmm_region_set(r, lo, hi, new_attrs);
    return 0;
}

/* Whether any page of [lo, hi) is an MDL mapping: checked before anything changes. */
static bool has_mdl_pages(const struct kvmm_region *r, uintptr_t lo, uintptr_t hi)
{
    for (struct kvmm_avl_node *n = &kvmm_region_span_at(r, lo)->node; n && n->key < hi; n = kvmm_avl_next(n))
        if (kvmm_container_of(n, struct kvmm_span, node)->a.state == KVMM_MDL)
            return true;
    return false;
}

int kvmm_transition(struct kvmm_region *r, uintptr_t lo, uintptr_t hi, enum kvmm_op op, int prot)
{
    if (has_mdl_pages(r, lo, hi))
        return -EOPNOTSUPP;
    for (uintptr_t cur = lo; cur < hi;) {
        struct kvmm_span *s = kvmm_region_span_at(r, cur);
        uintptr_t end = s->end < hi ? s->end : hi;
        struct kvmm_attrs old = s->a, new_attrs = next_attrs(r, old, op, prot);
        if (op == KVMM_OP_RESET || !kvmm_attrs_equal(old, new_attrs)) {
            int rc = apply_piece(r, cur, end, old, new_attrs, op);
            if (rc)
                return rc;
        }
        cur = end;
    }
    return 0;
}
