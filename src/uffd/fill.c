/* SPDX-License-Identifier: MIT */
/* src/uffd/fill.c — filling missing pages through userfaultfd, with the kernel's partial-copy rules. */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <sys/ioctl.h>

#include "os.h"
#include "stats.h"
#include "uffd/engine.h"


/* One ioctl over [dst, dst + len), waking nobody: returns bytes done (>= 0) or -errno; done may
 * be < len. */
typedef long fill_op(uintptr_t dst, size_t len);

static long copy_once(uintptr_t dst, size_t len)
{
    struct uffdio_copy c = {.dst = dst, .src = (uintptr_t)kvmm_engine.zeros, .len = len,
                            .mode = UFFDIO_COPY_MODE_DONTWAKE};
    if (ioctl(kvmm_engine.fd, UFFDIO_COPY, &c) == 0)
        return (long)len;
    /* A partial copy is reported as EAGAIN with the bytes done in .copy; a first page that is
     * already present as EEXIST with .copy = -EEXIST. */
    return c.copy > 0 ? (long)c.copy : -errno;
}

/* Maps the shared zero page (anonymous memory; a shmem mapping gets a zeroed page of its own).
 * The kernel reports a partial map and a present first page as UFFDIO_COPY does. */
static long zero_once(uintptr_t dst, size_t len)
{
    struct uffdio_zeropage z = {.range = {.start = dst, .len = len},
                                .mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE};
    if (ioctl(kvmm_engine.fd, UFFDIO_ZEROPAGE, &z) == 0)
        return (long)len;
    return z.zeropage > 0 ? (long)z.zeropage : -errno;
}

static long fill_with(fill_op *once, uintptr_t lo, uintptr_t hi, bool dont_wake)
{
    const size_t page = kvmm_os_page_size();
    uint64_t start = kvmm_os_now_ns();
    long filled = 0;
    size_t limit = KVMM_UFFD_CHUNK; /* shrinks when a piece crosses a kernel mapping */
    int retries = 0;
    for (uintptr_t cur = lo; cur < hi;) {
        size_t len = hi - cur < limit ? hi - cur : limit;
        long done = once(cur, len);
        if (done > 0) {
            filled += done / (long)page;
            cur += (uintptr_t)done;
        } else if (done == -EEXIST) {
            /* Filled by a racing fault or by read-ahead, whose copy woke its waiters. */
            cur += page;
        } else if (done == -ENOENT && len > page) {
            /* One ioctl must stay inside one registered kernel mapping, and a lazy span can
             * cover several the kernel did not merge: halve until the piece fits. */
            limit = (len / 2 + page - 1) & ~(page - 1);
        } else if (done == -EAGAIN && ++retries < 1000) {
            /* The address space is changing (mremap, fork in progress): retry shortly. */
            sched_yield();
        } else {
            /* -ENOENT on one page: not registered any more (unmapped, demoted). */
            if (filled == 0)
                filled = done;
            break;
        }
    }
    if (filled > 0) {
        kvmm_count(uffd_pages_filled, filled);
        kvmm_count(uffd_fill_ns, kvmm_os_now_ns() - start);
    }
    /* Woken only once counted: a thread that reads the statistics right after its access must
     * see the pages that access made the handler fill. */
    if (!dont_wake && filled > 0)
        kvmm_uffd_wake(lo, hi);
    return filled;
}

long kvmm_uffd_fill(uintptr_t lo, uintptr_t hi, bool dont_wake)
{
    return fill_with(copy_once, lo, hi, dont_wake);
}

long kvmm_uffd_zero(uintptr_t lo, uintptr_t hi, bool dont_wake)
{
    long n = fill_with(zero_once, lo, hi, dont_wake);
    /* A mapping that cannot take the zero page (hugetlbfs: EINVAL) still needs the fault served. */
    if (n == -EINVAL)
        return kvmm_uffd_fill(lo, hi, dont_wake);
    if (n > 0)
        kvmm_count(uffd_zero_pages, n);
    return n;
}

void kvmm_uffd_wake(uintptr_t lo, uintptr_t hi)
{
    struct uffdio_range r = {.start = lo, .len = hi - lo};
    ioctl(kvmm_engine.fd, UFFDIO_WAKE, &r);
}
