/* SPDX-License-Identifier: MIT */
/* src/uffd/huge.c — huge-page streams: pre-zeroed transparent huge pages staged ahead and moved into place with UFFDIO_MOVE. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "diag.h"
#include "env.h"
#include "os.h"
#include "stats.h"
#include "uffd/engine.h"

/* Linux 6.8 UAPI; older headers lack it, the running kernel decides (UFFDIO_API features). */
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1u << 16)
#endif
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
struct uffdio_move {
    __u64 dst;
    __u64 src;
    __u64 len;
    __u64 mode;
    __s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif
#ifndef UFFDIO_MOVE_MODE_DONTWAKE
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#endif

#define HUGE ((uintptr_t)KVMM_HUGE_PAGE)
/* Staged huge pages kept ready: one per stream the handler may be feeding at once (streams move
 * whole extents one at a time, so two streams in flight want two), plus one to move ahead with. */
#define SLOTS 4u

static bool knob = true;
static bool handoff_knob = true;
static uint64_t features_granted;
static bool thp_never, thp_always;
static uintptr_t staging;            /* SLOTS * HUGE bytes, 2 MiB aligned; 0 when moves are off */
static bool ready[SLOTS];            /* handler thread only (and a fork child before it has one) */
static bool wanted;                  /* a stream used a move: keep slots staged from now on */
static uint64_t last_move_ns;        /* CLOCK_MONOTONIC of the last move */

/* Staged pages no stream has asked for in this long are given back: a program that streamed once
 * must not hold SLOTS * 2 MiB of zeroed memory for the rest of its life. */
#define IDLE_RELEASE_MS 1000


uint64_t kvmm_uffd_move_feature(void)
{
    return UFFD_FEATURE_MOVE;
}

static void read_knob(void)
{
    kvmm_env_bool("KOSVMM_UFFD_MOVE", &knob);
    kvmm_env_bool("KOSVMM_UFFD_HANDOFF", &handoff_knob);
}

/* Read once: when the library is loaded if that asks the engine (kvmm_lazy_explain), so a bad
 * value is warned about then, else at the engine's start. */
bool kvmm_uffd_move_wanted(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_knob);
    return knob;
}

/* THP "never" gives 512 small pages to the populate: a move of those still works, page by page,
 * but costs more than UFFDIO_COPY, so moves are not used at all then. */
static bool thp_available(bool *always)
{
    char buf[128] = "";
    int fd = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    *always = strstr(buf, "[always]") != NULL;
    return !strstr(buf, "[never]");
}

void kvmm_uffd_huge_start(uint64_t features)
{
    kvmm_uffd_move_wanted();
    features_granted = features;
    thp_never = !thp_available(&thp_always);
    const char *why = NULL;
    if (!knob)
        why = "off (KOSVMM_UFFD_MOVE=0)";
    else if (!(features & UFFD_FEATURE_MOVE))
        why = "off (the kernel has no UFFD_FEATURE_MOVE; it needs Linux 6.8+)";
    else if (thp_never)
        why = "off (transparent huge pages are \"never\")";
    if (!why && !staging) {
        /* Made now, with the engine, never later in address space the application may have just
         * freed for a fixed address. Over-allocated by one huge page to align it. */
        uintptr_t raw;
        if (kvmm_os_reserve_aligned(SLOTS * HUGE, HUGE, 0, &raw) == 0) {
            /* WIPEONFORK: a child must neither see nor share the staged pages, and a THP shared
             * with a child could not be moved any more (EBUSY: not exclusive). */
            if (kvmm_os_protect(raw, SLOTS * HUGE, PROT_READ | PROT_WRITE) == 0 &&
                kvmm_os_advise_staging(raw, SLOTS * HUGE) == 0)
                staging = raw;
            else
                kvmm_os_release(raw, SLOTS * HUGE);
        }
        if (!staging)
            why = "off (no staging area: MADV_HUGEPAGE or MADV_WIPEONFORK refused)";
    }
    if (kvmm_verbose()) {
        kvmm_message("userfaultfd huge-page streams handed to the kernel: %s",
                     !handoff_knob ? "off (KOSVMM_UFFD_HANDOFF=0)" : thp_never ? "off (transparent huge pages are \"never\")" : "on");
        kvmm_message("userfaultfd huge-page streams moved: %s%s", why ? why : "on (UFFDIO_MOVE of staged transparent huge pages)",
                     !why && kvmm_uffd_handoff_on() ? ", for the streams not handed to the kernel" : "");
    }
}

bool kvmm_uffd_handoff_on(void)
{
    return handoff_knob && !thp_never;
}

bool kvmm_uffd_move_on(void)
{
    return staging != 0 && (features_granted & UFFD_FEATURE_MOVE);
}

void kvmm_uffd_huge_forget(void)
{
    /* The child's copy of the staging area is empty (WIPEONFORK). */
    for (unsigned i = 0; i < SLOTS; i++)
        ready[i] = false;
    wanted = false;
}

void kvmm_uffd_huge_advise(uintptr_t lo, uintptr_t hi)
{
    /* Where THP is "always", the kernel's own fault path in a registered range allocates and
     * zeroes a huge page for every first fault in an empty PMD, only to drop it and report the
     * fault to the handler (measured here: 203 against 119 us a fault with the range advised
     * MADV_HUGEPAGE). A move needs no advice on the destination (a moved THP stays one PMD in a
     * MADV_NOHUGEPAGE range), and the region gets demoted to kernel paging for random access,
     * which must not get 2 MiB a touch: so no huge pages are advised there, ever. Under
     * "madvise" (the default) that is already so and the advice would only split mappings. */
    if (!thp_always)
        return;
    uintptr_t a = (lo + HUGE - 1) & ~(HUGE - 1), b = hi & ~(HUGE - 1);
    if (a < b)
        (void)kvmm_os_advise_no_huge(a, b - a);
}

static bool handed(const struct kvmm_region *r, uintptr_t lo, uintptr_t hi)
{
    for (uint32_t i = 0; i < r->lazy.nhanded; i++)
        if (lo < r->lazy.handed[i].hi && r->lazy.handed[i].lo < hi)
            return true;
    return false;
}

/* Records [lo, hi) as handed, merged with a range it continues; false when there is no room. */
static bool record_handed(struct kvmm_region *r, uintptr_t lo, uintptr_t hi, bool dry_run)
{
    struct kvmm_lazy *lz = &r->lazy;
    for (uint32_t i = 0; i < lz->nhanded; i++)
        if (lz->handed[i].hi == lo || lz->handed[i].lo == hi) {
            if (!dry_run) {
                lz->handed[i].lo = lz->handed[i].lo < lo ? lz->handed[i].lo : lo;
                lz->handed[i].hi = lz->handed[i].hi > hi ? lz->handed[i].hi : hi;
            }
            return true;
        }
    if (lz->nhanded == KVMM_HANDED_MAX)
        return false;
    if (!dry_run)
        lz->handed[lz->nhanded++] = (struct kvmm_range){lo, hi};
    return true;
}

/* Whether the 2 MiB extent at e lies wholly inside one lazy span whose kernel protection is the
 * staging area's (UFFDIO_MOVE refuses different protections), and was never handed to the
 * kernel: its pages are the kernel's to fill then, from any thread, unseen by mincore until they
 * are there, and a discard could destroy a write. */
static bool in_one_lazy_span(const struct kvmm_region *r, uintptr_t e)
{
    if (e < r->node.key || e + HUGE > r->end || e + HUGE < e || handed(r, e, e + HUGE))
        return false;
    const struct kvmm_span *s = kvmm_region_span_at(r, e);
    return s->a.state == KVMM_LAZY && s->end >= e + HUGE && kvmm_kernel_prot(s->a) == (PROT_READ | PROT_WRITE);
}

/* Whether the extent at e can receive a staged huge page or be handed off empty: in one lazy span,
 * and no page of it present (a present destination page stops a move part-way with EEXIST). */
static bool movable(const struct kvmm_region *r, uintptr_t e)
{
    if (!in_one_lazy_span(r, e))
        return false;
    unsigned char vec[KVMM_HUGE_PAGE / 4096];
    size_t n = HUGE / kvmm_os_page_size();
    if (n > sizeof vec || mincore((void *)e, HUGE, vec) != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (vec[i] & 1)
            return false;
    return true;
}

/*
 * Hands [e, e + n * 2 MiB) of a write stream to the kernel: MADV_HUGEPAGE, then unregistered, so the
 * writer's own faults get transparent huge pages from the kernel's fault path. That zeroes each
 * 2 MiB on the writer's CPU just before the writer's stores, which then hit its caches: 28 us for
 * the stores of 2 MiB here, against 105 us into a huge page zeroed on another CPU (a staged move),
 * and no round trip through the handler. The extent a thread faulted in first loses the page table
 * that fault made (a THP needs an empty PMD), as before a move; the unregistration wakes it, and it
 * faults again the kernel's way.
 *
 * The extent the stream is in may already have pages: the stream began there (its first fault
 * filled pages before and after), or they were written before. It is handed off too and made one
 * huge page in place (MADV_COLLAPSE copies its pages and zeroes the rest), since left to 4 KiB
 * pages it cost more than the rest of a 512 MiB stream's extents together: a first store to each
 * new 4 KiB mapping costs ~5 us on this VM (the host maps it too), 4 ms for the extent, against
 * ~0.2 ms for the collapse. The writer, woken by the unregistration, may meanwhile take a few
 * 4 KiB pages from the kernel; the collapse copies those too.
 */
bool kvmm_uffd_handoff(struct kvmm_region *r, uintptr_t page, uint32_t extents, bool collapse, uintptr_t *lo,
                       uintptr_t *hi)
{
    if (!kvmm_uffd_handoff_on())
        return false;
    uintptr_t e = page & ~(HUGE - 1);
    if (movable(r, e))
        collapse = false;
    else if (!collapse || !in_one_lazy_span(r, e))
        return false;
    uintptr_t b = e + HUGE;
    while (b - e < (uintptr_t)extents * HUGE && movable(r, b))
        b += HUGE;
    if (!record_handed(r, e, b, true))
        return false;
    /* Advised first: a fault between the two calls must not get a 4 KiB page from the kernel.
     * Both calls work map entry by map entry and stop at the first split refused at
     * vm.max_map_count, keeping what they did: so a refusal takes the advice back over the whole
     * range (registered huge-advised memory would have the kernel zero a huge page at every
     * fault, only to drop it for the handler), and an unregistration refused part-way still
     * records the range, since part of it may be the kernel's now, where a discard could destroy
     * a write. The parts still registered get 4 KiB fills from the handler. */
    if (kvmm_os_advise_huge(e, b - e) != b - e) {
        (void)kvmm_os_advise_no_huge(e, b - e);
        return false;
    }
    /* A collapse is refused while a page is missing in a registered mapping, or new since the
     * kernel drained its per-CPU page lists: so every page is filled before the writer is woken
     * (it then faults no new page there), and the collapse follows the unregistration. */
    if (!collapse)
        (void)kvmm_os_discard(e, HUGE);
    else
        (void)kvmm_uffd_fill(e, e + HUGE, true);
    struct uffdio_range range = {.start = e, .len = b - e};
    bool unregistered = ioctl(kvmm_engine.fd, UFFDIO_UNREGISTER, &range) == 0;
    record_handed(r, e, b, false);
    if (!unregistered) {
        (void)kvmm_os_advise_no_huge(e, b - e);
        return false;
    }
    kvmm_count(uffd_kernel_extents, (b - e) / HUGE);
    /* Refused (no huge page to be had, a kernel before 6.1): the kernel's 4 KiB faults fill the
     * rest of the extent. */
    if (collapse && kvmm_os_collapse(e, HUGE) == 0)
        kvmm_count(uffd_collapsed_extents, 1);
    *lo = e;
    *hi = b;
    return true;
}

bool kvmm_uffd_handoff_ahead(const struct kvmm_region *r, int dir, uintptr_t lo)
{
    return dir > 0 && kvmm_uffd_handoff_on() && !(lo & (HUGE - 1)) && movable(r, lo);
}

bool kvmm_uffd_huge_extent(const struct kvmm_region *r, uintptr_t page, uint32_t window, uintptr_t *extent)
{
    if (!kvmm_uffd_move_on() || window < KVMM_UFFD_MOVE_FROM_WINDOW)
        return false;
    uintptr_t e = page & ~(HUGE - 1);
    if (!movable(r, e))
        return false;
    *extent = e;
    return true;
}

bool kvmm_uffd_huge_chunk(const struct kvmm_region *r, int dir, bool may_move, uintptr_t *lo, uintptr_t *hi)
{
    if (!kvmm_uffd_move_on() && !kvmm_uffd_handoff_on())
        return false;
    may_move = may_move && kvmm_uffd_move_on();
    if (dir > 0) {
        if (may_move && !(*lo & (HUGE - 1)) && movable(r, *lo)) {
            *hi = *lo + HUGE;
            return true;
        }
        /* Copying into the next extent would leave it partly populated, and unmovable. */
        uintptr_t e = (*lo & ~(HUGE - 1)) + HUGE;
        if (e < *hi && movable(r, e))
            *hi = e;
    } else {
        if (may_move && !(*hi & (HUGE - 1)) && *hi >= HUGE && movable(r, *hi - HUGE)) {
            *lo = *hi - HUGE;
            return true;
        }
        uintptr_t e = (*hi - 1) & ~(HUGE - 1);
        if (e > *lo && movable(r, e - HUGE))
            *lo = e;
    }
    return false;
}

/* Populates slot i with a zeroed huge page. Handler thread. 0 or -errno. */
static int stage(unsigned i)
{
    uintptr_t s = staging + i * HUGE;
    /* Frees a page table a split move or a populate without a free huge page left here (PT_RECLAIM),
     * so that this populate can make a THP again. */
    (void)kvmm_os_discard(s, HUGE);
    int rc = kvmm_os_populate(s, HUGE);
    if (rc) {
        (void)kvmm_os_discard(s, HUGE);
        return rc;
    }
    ready[i] = true;
    return 0;
}

int kvmm_uffd_stage_step(void)
{
    if (!wanted || !kvmm_uffd_move_on())
        return 0;
    for (unsigned i = 0; i < SLOTS; i++)
        if (!ready[i]) {
            if (stage(i) != 0)
                return 0;
            kvmm_count(uffd_staged_pages, HUGE / kvmm_os_page_size());
            return 1;
        }
    return 0;
}

int kvmm_uffd_huge_idle_ms(void)
{
    if (!wanted)
        return -1;
    uint64_t idle_ms = (kvmm_os_now_ns() - last_move_ns) / 1000000u;
    return idle_ms >= IDLE_RELEASE_MS ? 0 : (int)(IDLE_RELEASE_MS - idle_ms);
}

void kvmm_uffd_huge_release_idle(void)
{
    if (kvmm_uffd_huge_idle_ms() != 0)
        return;
    for (unsigned i = 0; i < SLOTS; i++)
        if (ready[i]) {
            (void)kvmm_os_discard(staging + i * HUGE, HUGE);
            ready[i] = false;
        }
    wanted = false; /* until the next move */
}

long kvmm_uffd_move(uintptr_t dst, bool dont_wake)
{
    const uintptr_t P = kvmm_os_page_size();
    wanted = true;
    last_move_ns = kvmm_os_now_ns();
    unsigned i = 0;
    while (i < SLOTS && !ready[i])
        i++;
    if (i == SLOTS) {
        /* Nothing staged ahead (the handler had no idle moment): the faulting thread waits for
         * the populate too, which still costs it less per page than 512 UFFDIO_COPYs. */
        i = 0;
        int rc = stage(i);
        if (rc)
            return rc;
    }
    uintptr_t src = staging + i * HUGE;
    /* A PMD is moved whole only into an empty PMD; where a page table hangs, the kernel splits
     * the THP and moves its 512 pages one by one, and the slot keeps an empty page table that
     * makes every later populate of it 4 KiB pages. A table is there whenever a thread faulted in
     * the extent: outside MADV_HUGEPAGE the fault path allocates it before it asks the handler.
     * The extent has no page (movable), so MADV_DONTNEED changes no data; with PT_RECLAIM
     * (Linux 6.14+) it frees the empty table. Measured here: 2 500 -> 420 ns a page for a
     * sequential write, and every extent a huge PMD instead of half of them. */
    (void)kvmm_os_discard(dst, HUGE);
    /* Woken below, once counted (fill.c says why). */
    struct uffdio_move m = {.dst = dst, .src = src, .len = HUGE, .mode = UFFDIO_MOVE_MODE_DONTWAKE};
    int rc = 0;
    for (int tries = 0;; tries++) {
        m.move = 0;
        if (ioctl(kvmm_engine.fd, UFFDIO_MOVE, &m) == 0)
            break;
        rc = -errno;
        /* EAGAIN before anything moved: the address space is changing (fork in progress). */
        if (rc == -EAGAIN && m.move <= 0 && tries < 100) {
            sched_yield();
            rc = 0;
            continue;
        }
        break;
    }
    ready[i] = false;
    if (rc == 0) {
        kvmm_count(uffd_huge_moves, 1);
        kvmm_count(uffd_pages_filled, HUGE / P);
        if (!dont_wake)
            kvmm_uffd_wake(dst, dst + HUGE);
        return (long)(HUGE / P);
    }
    if (m.move > 0) {
        kvmm_count(uffd_pages_filled, (uint64_t)m.move / P);
        if (!dont_wake)
            kvmm_uffd_wake(dst, dst + (uintptr_t)m.move);
    }
    /* Part-way (a destination page appeared, or the range changed): the slot is no longer one
     * whole zeroed THP. Emptied, to be staged again; the caller copies what is still missing. */
    (void)kvmm_os_discard(src, HUGE);
    return rc;
}
