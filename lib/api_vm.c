/* SPDX-License-Identifier: MIT */
/* lib/api_vm.c — the vmm_api.h entry points: validate, lock, transition, translate errno to Retcode once. */
#include <coresrv/vmm/vmm_api.h>
#include <errno.h>
#include <kosvmm/kosvmm.h>
#include <string.h>

#include "errors.h"
#include "os.h"
#include "policy.h"
#include "region_map.h"
#include "stats.h"
#include "transition.h"
#include "visibility.h"

#define KNOWN_FLAGS                                                                  \
    (VMM_FLAG_RWX_MASK | VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED |     \
     VMM_FLAG_CACHE_MASK | VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD | VMM_FLAG_GROW_DOWN)

static __thread Retcode last_error;

static bool page_aligned(uintptr_t v)
{
    return (v & (kvmm_os_page_size() - 1)) == 0;
}

/* No protection, or READ plus any of WRITE/EXECUTE: the SDK's list, with "none" added. */
static bool protection_valid(int prot)
{
    return (prot & ~VMM_FLAG_RWX_MASK) == 0 && (prot == 0 || (prot & VMM_FLAG_READ));
}

static int check_range(uintptr_t addr, size_t size, uintptr_t *end)
{
    if (size == 0 || !page_aligned(addr) || !page_aligned(size) || __builtin_add_overflow(addr, size, end))
        return -EINVAL;
    return 0;
}

static int check_alloc(uintptr_t addr, size_t size, int flags)
{
    int cache = flags & VMM_FLAG_CACHE_MASK;
    uintptr_t end;
    if ((flags & ~KNOWN_FLAGS) || !(flags & VMM_FLAG_RESERVE) ||
        !protection_valid(flags & VMM_FLAG_RWX_MASK) || (cache & (cache - 1)))
        return -EINVAL;
    if (check_range(addr, size, &end))
        return -EINVAL;
    size_t page = kvmm_os_page_size();
    /* The guards must fit too: below a fixed address, and above any address. */
    if (addr && (flags & VMM_FLAG_LOW_GUARD) && addr < 2 * page)
        return -EINVAL;
    if ((flags & VMM_FLAG_HIGH_GUARD) && end > UINTPTR_MAX - page)
        return -EINVAL;
    return 0;
}

static void install_guard(uintptr_t page)
{
    uint32_t mechanism = kvmm_os_install_guard(page, kvmm_os_page_size()) == 0
                             ? KOSVMM_GUARD_MADV_INSTALL
                             : KOSVMM_GUARD_PROT_NONE; /* still PROT_NONE and never committed */
    __atomic_store_n(&kvmm_counters.guard_mechanism, mechanism, __ATOMIC_RELAXED);
}

static int place(uintptr_t addr, size_t size, int flags, uintptr_t *out)
{
    int rc;
    size_t page = kvmm_os_page_size();
    size_t low = flags & VMM_FLAG_LOW_GUARD ? page : 0, high = flags & VMM_FLAG_HIGH_GUARD ? page : 0;
    size_t total;
    if (__builtin_add_overflow(size, low + high, &total))
        return -EINVAL;
    uintptr_t start;
    /* A region that will be fully committed gets 2 MiB alignment, so its commit can use
     * transparent huge pages: ~7x cheaper to populate than 4 KiB pages. */
    if (!addr && (flags & VMM_FLAG_LOCKED) && size >= KVMM_HUGE_PAGE)
        rc = kvmm_os_reserve_aligned(total, KVMM_HUGE_PAGE, low, &start);
    else
        rc = kvmm_os_reserve(addr ? addr - low : 0, total, &start);
    if (rc)
        return rc;
    uintptr_t base = start + low, end = base + size;
    if (low)
        install_guard(start);
    if (high)
        install_guard(end);
    struct kvmm_attrs reserved = {KVMM_RESERVED, (uint8_t)(flags & VMM_FLAG_RWX_MASK), 0};
    struct kvmm_region *r = kvmm_region_new(base, end, flags, reserved);
    if (!r) {
        kvmm_os_release(start, total);
        return -ENOMEM;
    }
    /* Committed before it is published: nothing else can see the region, so no lock is held while
     * a large LOCKED region is populated. */
    if ((flags & VMM_FLAG_COMMIT) && (rc = kvmm_transition(r, base, end, KVMM_OP_COMMIT, 0))) {
        kvmm_os_release(start, total);
        kvmm_region_free(r);
        return rc;
    }
    kvmm_map_wrlock();
    kvmm_map_insert(r);
    kvmm_map_unlock();
    *out = base;
    return 0;
}

static int allocate(uintptr_t addr, size_t size, int flags, uintptr_t *out)
{
    int rc = kvmm_policy_enter(KVMM_M_ALLOCATE);
    if (rc || (rc = check_alloc(addr, size, flags)) || (rc = kvmm_policy_wx(flags & VMM_FLAG_RWX_MASK)))
        return rc;
    uint64_t committed = flags & VMM_FLAG_COMMIT ? size : 0;
    if ((rc = kvmm_quota_charge2(KVMM_Q_RESERVED, size, KVMM_Q_COMMITTED, committed)))
        return rc;
    if ((rc = place(addr, size, flags, out))) {
        kvmm_quota_uncharge(KVMM_Q_RESERVED, size);
        kvmm_quota_uncharge(KVMM_Q_COMMITTED, committed);
    }
    return rc;
}

KVMM_PUBLIC void *KnVmAllocate(void *addr, rtl_size_t size, int flags)
{
    uintptr_t base = 0;
    last_error = kvmm_retcode(allocate((uintptr_t)addr, size, flags, &base));
    return last_error == rcOk ? (void *)base : RTL_NULL;
}

KVMM_PUBLIC Retcode kosvmm_last_error(void)
{
    return last_error;
}

/* The transition, with the committed-bytes quota charged for what it may add and settled with
 * what it really did (a kernel refusal part-way leaves some pieces changed). Region locked. */
static int charged_transition(struct kvmm_region *r, uintptr_t lo, uintptr_t hi, enum kvmm_op op, int prot)
{
    uint64_t before, mdl, now;
    kvmm_region_count(r, lo, hi, &before, &mdl);
    /* Commit and reset leave the whole range committed, decommit none of it; a range with MDL
     * pages is refused before anything changes, so it asks for nothing. */
    uint64_t after = op == KVMM_OP_PROTECT || mdl ? before : op == KVMM_OP_DECOMMIT ? 0 : hi - lo;
    uint64_t charge = after > before ? after - before : 0;
    int rc = kvmm_quota_charge(KVMM_Q_COMMITTED, charge);
    if (rc)
        return rc;
    rc = kvmm_transition(r, lo, hi, op, prot);
    kvmm_region_count(r, lo, hi, &now, NULL);
    kvmm_quota_settle(KVMM_Q_COMMITTED, charge, (int64_t)(now - before));
    return rc;
}

static int range_op(enum kvmm_method m, void *addr, size_t size, enum kvmm_op op, int prot)
{
    uintptr_t lo = (uintptr_t)addr, hi;
    int rc = kvmm_policy_enter(m);
    if (rc)
        return rc;
    if (op == KVMM_OP_PROTECT && !protection_valid(prot))
        return -EINVAL;
    if ((rc = check_range(lo, size, &hi)) || (op == KVMM_OP_PROTECT && (rc = kvmm_policy_wx(prot))))
        return rc;
    kvmm_map_rdlock();
    struct kvmm_region *r = kvmm_map_find(lo);
    rc = !r ? -ENOENT : hi > r->end ? -EINVAL : 0;
    if (!rc) {
        pthread_mutex_lock(&r->lock);
        rc = charged_transition(r, lo, hi, op, prot);
        pthread_mutex_unlock(&r->lock);
    }
    kvmm_map_unlock();
    return rc;
}

KVMM_PUBLIC Retcode KnVmCommit(void *addr, rtl_size_t size, int flags)
{
    (void)flags; /* fictitious on KasperskyOS too: the region's LOCKED flag decides the mode */
    return kvmm_retcode(range_op(KVMM_M_COMMIT, addr, size, KVMM_OP_COMMIT, 0));
}

KVMM_PUBLIC Retcode KnVmDecommit(void *addr, rtl_size_t size)
{
    return kvmm_retcode(range_op(KVMM_M_DECOMMIT, addr, size, KVMM_OP_DECOMMIT, 0));
}

KVMM_PUBLIC Retcode KnVmReset(void *addr, rtl_size_t size)
{
    return kvmm_retcode(range_op(KVMM_M_RESET, addr, size, KVMM_OP_RESET, 0));
}

KVMM_PUBLIC Retcode KnVmProtect(void *addr, rtl_size_t size, int newFlags)
{
    return kvmm_retcode(range_op(KVMM_M_PROTECT, addr, size, KVMM_OP_PROTECT, newFlags));
}

/* Unmaps [lo, hi) of r; the map is write-locked and r locked. Frees r when nothing is left. */
static int unmap_locked(struct kvmm_region *r, uintptr_t lo, uintptr_t hi)
{
    uintptr_t base = r->node.key, end = r->end;
    struct kvmm_region *tail = NULL;
    int rc = kvmm_region_prepare(r);
    if (!rc && lo > base && hi < end && !(tail = kvmm_region_new_empty()))
        rc = -ENOMEM;
    if (rc)
        return rc;
    /* A guard page goes with the edge it guards. */
    uintptr_t klo = lo == base && kvmm_region_low_guard(r) ? kvmm_region_low_guard(r) : lo;
    uintptr_t khi = hi == end && kvmm_region_high_guard(r) ? hi + kvmm_os_page_size() : hi;
    if ((rc = kvmm_os_release(klo, khi - klo))) {
        /* munmap splits first and fails before unmapping anything (vm.max_map_count). */
        kvmm_count(kernel_refusals, 1);
        if (tail)
            kvmm_region_free(tail);
        return rc;
    }
    if (lo == base && hi == end) {
        kvmm_map_remove(r);
        pthread_mutex_unlock(&r->lock);
        kvmm_region_free(r);
        return 1;
    }
    if (tail) {
        kvmm_region_split(r, hi, tail);
        kvmm_map_insert(tail);
    }
    /* Trimming the front raises r's key inside its own old range: the tree order still holds. */
    kvmm_region_trim(r, lo, hi);
    return 0;
}

KVMM_PUBLIC Retcode KnVmUnmap(void *addr, rtl_size_t size)
{
    uintptr_t lo = (uintptr_t)addr, hi;
    int rc = kvmm_policy_enter(KVMM_M_FREE);
    if (rc || (rc = check_range(lo, size, &hi)))
        return kvmm_retcode(rc);
    /* Write lock: the region may be split, shrunk or removed. */
    kvmm_map_wrlock();
    struct kvmm_region *r = kvmm_map_find(lo);
    rc = !r ? -ENOENT : hi > r->end ? -EINVAL : 0;
    if (!rc) {
        pthread_mutex_lock(&r->lock);
        uint64_t committed;
        kvmm_region_count(r, lo, hi, &committed, NULL);
        rc = unmap_locked(r, lo, hi);
        if (rc >= 0) { /* munmap is all or nothing */
            kvmm_quota_uncharge(KVMM_Q_RESERVED, hi - lo);
            kvmm_quota_uncharge(KVMM_Q_COMMITTED, committed);
        }
        if (rc == 1)
            rc = 0; /* r is gone, its lock with it */
        else
            pthread_mutex_unlock(&r->lock);
    }
    kvmm_map_unlock();
    return kvmm_retcode(rc);
}

static void describe_region(const struct kvmm_region *r, VmQueryInfo *info)
{
    info->regionBase = (void *)r->node.key;
    info->regionSize = r->end - r->node.key;
    info->cache = (rtl_uint32_t)(r->flags & VMM_FLAG_CACHE_MASK);
    info->regionFlags = (rtl_uint32_t)r->flags;
    info->attributes = r->flags & VMM_FLAG_GROW_DOWN ? VMM_PAGE_ATTR_GROW_DOWN : 0;
}

KVMM_PUBLIC Retcode KnVmQuery(const void *va, VmQueryInfo *info)
{
    int rc = kvmm_policy_enter(KVMM_M_QUERY);
    if (rc || !info)
        return kvmm_retcode(rc ? rc : -EINVAL);
    uintptr_t page = (uintptr_t)va & ~(uintptr_t)(kvmm_os_page_size() - 1);
    VmQueryInfo out;
    memset(&out, 0, sizeof out);
    out.pageBase = (void *)page;
    out.runSize = kvmm_os_page_size();
    out.state = VMM_PAGE_STATE_FREE;

    kvmm_map_rdlock();
    struct kvmm_region *r = kvmm_map_find(page);
    if (r) {
        describe_region(r, &out);
        pthread_mutex_lock(&r->lock);
        const struct kvmm_span *s = kvmm_region_span_at(r, page);
        out.runSize = s->end - page;
        out.protection = s->a.prot;
        out.state = s->a.state == KVMM_RESERVED ? VMM_PAGE_STATE_RESERVED : VMM_PAGE_STATE_COMMITTED;
        out.attributes |= (s->a.state == KVMM_LAZY ? VMM_PAGE_ATTR_LAZY : 0) |
                          (s->a.state == KVMM_FULL ? VMM_PAGE_ATTR_LOCKED : 0) |
                          (s->a.state == KVMM_MDL ? VMM_PAGE_ATTR_MDL : 0) |
                          (s->a.pinned ? VMM_PAGE_ATTR_PINNED : 0);
        pthread_mutex_unlock(&r->lock);
    } else if ((r = kvmm_map_find_guard(page))) {
        describe_region(r, &out);
        out.state = VMM_PAGE_STATE_RESERVED;
        out.attributes |= VMM_PAGE_ATTR_GUARD;
    }
    kvmm_map_unlock();
    *info = out;
    return rcOk;
}
