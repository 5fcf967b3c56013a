/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/mdl_fromvm.c — KnPmmMdlCreateFromVm: committed memory becomes an MDL buffer in place. */
#include <coresrv/vmm/vmm_api.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "errors.h"
#include "handle_table.h"
#include "mdl_internal.h"
#include "os.h"
#include "policy.h"
#include "region_map.h"
#include "stats.h"
#include "transition.h"
#include "visibility.h"

#define PAGEMAP_PRESENT (1ull << 63)
#define PAGEMAP_SWAPPED (1ull << 62)
#define PAGEMAP_CHUNK 512

/* Finds and locks the region holding all of [lo, hi), as the range calls do: the map lock
 * (shared) for the whole operation, so a fork never happens with the region lock held, then the
 * region lock. On success both stay held; on failure neither. */
static int lock_range(uintptr_t lo, uintptr_t hi, struct kvmm_region **out)
{
    kvmm_map_rdlock();
    struct kvmm_region *r = kvmm_map_find(lo);
    int rc = !r ? -ENOENT : hi > r->end ? -EINVAL : 0;
    if (rc) {
        kvmm_map_unlock();
        return rc;
    }
    pthread_mutex_lock(&r->lock);
    *out = r;
    return 0;
}

/* Every page committed, lazily or fully: reserved pages have nothing to share, MDL pages already
 * belong to a buffer. */
static int check_committed(const struct kvmm_region *r, uintptr_t lo, uintptr_t hi)
{
    for (const struct kvmm_span *s = kvmm_region_span_at(r, lo); s && s->node.key < hi;) {
        if (s->a.state != KVMM_LAZY && s->a.state != KVMM_FULL)
            return -EOPNOTSUPP;
        struct kvmm_avl_node *n = kvmm_avl_next(&s->node);
        s = n ? kvmm_container_of(n, struct kvmm_span, node) : NULL;
    }
    return 0;
}

static bool zero_page(const void *p, size_t len)
{
    const uint64_t *w = p;
    uint64_t acc = 0;
    for (size_t i = 0; i < len / sizeof *w; i++)
        acc |= w[i];
    return acc == 0;
}

/*
 * Copies [a, b) into fd at offset a - lo. A page that was never touched (neither present nor
 * swapped, per /proc/self/pagemap) reads as zero, and so does an all-zero page: both stay holes
 * in the memfd, so a large lazily committed range costs neither faults (with the userfaultfd
 * engine, a fault each) nor memory. A page a read mapped to the shared zero page (the engine's
 * UFFDIO_ZEROPAGE, or the kernel's own) is present in pagemap, so it is read, found all zero and
 * left a hole too. Without pagemap every page is read.
 */
static int copy_piece(int pagemap, int fd, uintptr_t lo, uintptr_t a, uintptr_t b)
{
    size_t page = kvmm_os_page_size();
    uint64_t ent[PAGEMAP_CHUNK];
    uintptr_t run = 0; /* start of the pending run of pages to copy; 0: none */
    int rc = 0;
    for (uintptr_t cur = a; cur < b && rc == 0;) {
        size_t n = (b - cur) / page < PAGEMAP_CHUNK ? (b - cur) / page : PAGEMAP_CHUNK;
        bool known = pagemap >= 0 &&
                     pread(pagemap, ent, n * sizeof ent[0], (off_t)(cur / page * sizeof ent[0])) ==
                         (ssize_t)(n * sizeof ent[0]);
        for (size_t i = 0; i < n && rc == 0; i++, cur += page) {
            bool skip = (known && !(ent[i] & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED))) ||
                        zero_page((const void *)cur, page);
            if (skip && run) {
                rc = kvmm_mdl_write_all(fd, (const void *)run, cur - run, run - lo);
                run = 0;
            } else if (!skip && !run) {
                run = cur;
            }
        }
    }
    if (rc == 0 && run)
        rc = kvmm_mdl_write_all(fd, (const void *)run, b - run, run - lo);
    return rc;
}

/* Copies the whole range, span by span. A span committed without access is made readable for
 * the copy and given its protection back. Region locked. */
static int copy_range(const struct kvmm_region *r, uintptr_t lo, uintptr_t hi, int fd)
{
    int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    int rc = 0;
    for (uintptr_t cur = lo; cur < hi && rc == 0;) {
        const struct kvmm_span *s = kvmm_region_span_at(r, cur);
        uintptr_t end = s->end < hi ? s->end : hi;
        int kp = kvmm_kernel_prot(s->a);
        bool raise = !(kp & PROT_READ);
        if (raise && (rc = kvmm_os_protect(cur, end - cur, PROT_READ)))
            break;
        rc = copy_piece(pagemap, fd, lo, cur, end);
        if (raise && kvmm_os_protect(cur, end - cur, kp) != 0)
            kvmm_count(kernel_refusals, 1); /* restoring only merges mappings back: not expected */
        cur = end;
    }
    if (pagemap >= 0)
        close(pagemap);
    return rc;
}

/* The buffer exists (quota charged, contents copied, handle open) before the memory changes,
 * so running out of quota, memory or fds leaves the range untouched. Region locked. */
static int create_locked(struct kvmm_region *r, uintptr_t lo, uintptr_t hi, uint32_t rights, int *fd, Handle *h)
{
    size_t size = hi - lo;
    int hfd;
    struct kvmm_mdl *o;
    int rc = check_committed(r, lo, hi);
    if (rc || (rc = kvmm_mdl_memfd("kosvmm-mdl", size, rights, fd)) || (rc = kvmm_mdl_fd_for(*fd, rights, &hfd)) ||
        (rc = kvmm_mdl_object_new(hfd, size, 0, size, &o)))
        return rc;
    if ((rc = copy_range(r, lo, hi, *fd))) {
        kvmm_mdl_object_free(o);
        return rc;
    }
    if ((rc = kvmm_mdl_publish(o, rights, h)))
        return rc;
    /* The pages stop being private committed memory: the buffer's MDL bytes hold them now,
     * also those of a part-way refusal, which stay MDL-backed. */
    uint64_t left;
    rc = kvmm_transition_to_mdl(r, lo, hi, *fd);
    kvmm_region_count(r, lo, hi, &left, NULL);
    kvmm_quota_uncharge(KVMM_Q_COMMITTED, size - left);
    if (rc)
        kvmm_handle_close(*h);
    return rc;
}

int kvmm_mdl_create_from_vm(uintptr_t lo, size_t size, int flags, Handle *out)
{
    uintptr_t hi;
    int rc;
    if (!out || !kvmm_mdl_prot_valid(flags) || size == 0 || !kvmm_mdl_aligned(lo) ||
        !kvmm_mdl_aligned(size) || __builtin_add_overflow(lo, size, &hi))
        return -EINVAL;
    if ((rc = kvmm_policy_wx(flags)))
        return rc;
    uint32_t rights = (uint32_t)flags | KVMM_RIGHT_TRANSFER;
    struct kvmm_region *r;
    if ((rc = lock_range(lo, hi, &r)))
        return rc;
    int fd = -1;
    Handle h;
    rc = create_locked(r, lo, hi, rights, &fd, &h);
    pthread_mutex_unlock(&r->lock);
    kvmm_map_unlock();
    /* The creator's read-write description: the mappings made from it keep the memory now. */
    if (fd >= 0)
        close(fd);
    if (rc == 0)
        *out = h;
    return rc;
}

static int create_from_vm(uintptr_t lo, size_t size, int flags, Handle *out)
{
    int rc = kvmm_policy_enter(KVMM_M_MDL_CREATE_FROM_VM);
    return rc ? rc : kvmm_mdl_create_from_vm(lo, size, flags, out);
}

KVMM_PUBLIC Retcode KnPmmMdlCreateFromVm(void *va, rtl_size_t size, int flags, Handle *handle)
{
    return kvmm_retcode(create_from_vm((uintptr_t)va, size, flags, handle));
}
