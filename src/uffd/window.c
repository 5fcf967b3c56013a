/* SPDX-License-Identifier: MIT */
/* src/uffd/window.c — fault-around policy: which pages a fault fills, streams, background fill, demotion. */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <vmm/flags.h>

#include "os.h"
#include "stats.h"
#include "uffd/engine.h"
#include "uffd/uffd.h"

/* Faults in a row that continue no stream before an adaptive region is handed to kernel demand
 * paging: one page per fault through a handler costs a wake-up (7-60 us here) against ~1.4 us for
 * the kernel's own fault, so random access is served best by not intercepting it at all. */
#define DEMOTE_AFTER 32
/* Window (pages) from which a stream is also filled one window ahead of the application. */
#define READAHEAD_FROM 64
/* Regions with background fill pending, followed at once. */
#define PENDING_MAX 16

static uintptr_t pending[PENDING_MAX]; /* region base addresses; handler thread only */
static unsigned npending;

static uintptr_t page_size(void)
{
    return kvmm_os_page_size();
}

static void add_pending(uintptr_t base)
{
    for (unsigned i = 0; i < npending; i++)
        if (pending[i] == base)
            return;
    if (npending == PENDING_MAX) { /* background fill is best effort: forget the oldest */
        memmove(pending, pending + 1, (PENDING_MAX - 1) * sizeof pending[0]);
        npending--;
    }
    pending[npending++] = base;
}

static void drop_pending(unsigned i)
{
    pending[i] = pending[--npending];
}

void kvmm_uffd_readahead_clear(void)
{
    npending = 0;
}

static uintptr_t clamp(uintptr_t v, uintptr_t lo, uintptr_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* [lo, hi) of the lazily committed span around page, or an empty range when page is not lazy
 * any more (a stale fault: decommitted or reset meanwhile; it is only woken up). */
static void lazy_extent(const struct kvmm_region *r, uintptr_t page, uintptr_t *lo, uintptr_t *hi)
{
    const struct kvmm_span *s = kvmm_region_span_at(r, page);
    if (s->a.state == KVMM_LAZY) {
        *lo = s->node.key;
        *hi = s->end;
    } else {
        *lo = *hi = page;
    }
}

static struct kvmm_stream *find_stream(struct kvmm_lazy *lz, uintptr_t page, int *hit)
{
    for (int i = 0; i < KVMM_STREAMS; i++) {
        struct kvmm_stream *s = &lz->streams[i];
        if (s->lo == s->hi)
            continue;
        if (page >= s->lo && page <= s->hi) {
            *hit = page == s->hi ? +1 : s->dir; /* at the top: continues up; inside: its own way */
            return s;
        }
        if (page + page_size() == s->lo) {
            *hit = -1;
            return s;
        }
    }
    return NULL;
}

static struct kvmm_stream *new_stream(struct kvmm_lazy *lz)
{
    struct kvmm_stream *victim = &lz->streams[0];
    for (int i = 0; i < KVMM_STREAMS; i++) {
        struct kvmm_stream *s = &lz->streams[i];
        if (s->lo == s->hi)
            return s;
        if (s->used < victim->used)
            victim = s;
    }
    return victim;
}

/*
 * The SDK commits "the page containing the queried address and several pages before and after
 * this address" on a lazy fault. A window grows one way only, so a fault that starts a stream
 * (the first in an untouched region, or random access before demotion) also gets the page on its
 * other side: at least one page before and one after, within the lazy span. Random access pays
 * for that only until its region is demoted to kernel paging, which fills one page a fault.
 */
static void fill_around_first_fault(struct kvmm_stream *s, uintptr_t page, uintptr_t ext_lo, uintptr_t ext_hi,
                                    uintptr_t *now_lo, uintptr_t *now_hi)
{
    const uintptr_t P = page_size();
    uintptr_t lo = page > ext_lo ? page - P : page;
    uintptr_t hi = ext_hi - page > P ? page + 2 * P : page + P;
    *now_lo = lo < *now_lo ? lo : *now_lo;
    *now_hi = hi > *now_hi ? hi : *now_hi;
    s->lo = *now_lo < s->lo ? *now_lo : s->lo;
    s->hi = *now_hi > s->hi ? *now_hi : s->hi;
    /* The background fill starts past what this fault fills. */
    if (s->dir > 0 && s->next < *now_hi)
        s->next = *now_hi;
    if (s->dir < 0 && s->next > *now_lo)
        s->next = *now_lo;
}

/* Extents handed to the kernel were advised MADV_HUGEPAGE for a stream; random access must not get
 * 2 MiB a touch there, so a demoted region's anonymous pages in those ranges lose the advice (an
 * MDL mapping is shared memory, whose huge pages are not this engine's to choose). */
static void unadvise_range(const struct kvmm_region *r, uintptr_t lo, uintptr_t hi)
{
    lo = lo > r->node.key ? lo : r->node.key; /* a split may have left the range partly outside */
    hi = hi < r->end ? hi : r->end;
    if (lo >= hi)
        return;
    for (const struct kvmm_avl_node *n = &kvmm_region_span_at(r, lo)->node; n; n = kvmm_avl_next(n)) {
        const struct kvmm_span *s = kvmm_container_of(n, struct kvmm_span, node);
        if (s->node.key >= hi)
            break;
        uintptr_t a = s->node.key > lo ? s->node.key : lo, b = s->end < hi ? s->end : hi;
        if (s->a.state != KVMM_MDL && a < b)
            (void)kvmm_os_advise_no_huge(a, b - a);
    }
}

static void unadvise_handed(const struct kvmm_region *r)
{
    for (uint32_t i = 0; i < r->lazy.nhanded; i++)
        unadvise_range(r, r->lazy.handed[i].lo, r->lazy.handed[i].hi);
}

static void demote(struct kvmm_region *r)
{
    unadvise_handed(r);
    /* Unregistering wakes every thread waiting on the range; they retry as ordinary faults. */
    struct uffdio_range range = {.start = r->node.key, .len = r->end - r->node.key};
    ioctl(kvmm_engine.fd, UFFDIO_UNREGISTER, &range);
    r->lazy.demoted = true;
    r->lazy.generation = 0;
}

/*
 * Huge-page streams (huge.c): a stream whose window has grown takes the whole 2 MiB extent of the
 * faulting page at once, when it can be moved in; and a copy never spills into a movable extent,
 * which would leave it partly populated. The stream's range then covers what was filled.
 */
static void plan_huge(const struct kvmm_region *r, struct kvmm_stream *s, uintptr_t page, uintptr_t *now_lo,
                      uintptr_t *now_hi, bool *huge)
{
    uintptr_t e;
    if (kvmm_uffd_huge_extent(r, page, s->window, &e)) {
        *now_lo = e;
        *now_hi = e + KVMM_HUGE_PAGE;
        s->lo = s->lo < e ? s->lo : e;
        s->hi = s->hi > e + KVMM_HUGE_PAGE ? s->hi : e + KVMM_HUGE_PAGE;
        *huge = true;
        return;
    }
    kvmm_uffd_huge_chunk(r, s->dir, false, now_lo, now_hi);
}

/* Extents a stream hands to the kernel at once: doubling from 4, so a short stream leaves little
 * advised memory it never reached, up to 32 (64 MiB), after which the handler hears from the
 * stream once per 64 MiB (each hearing costs both writers of a 2-thread stream: 1.51x native THP
 * at 16, 1.26x at 64 in one run each here, and the 2-thread figures vary 1.3-2.1x between runs). Nothing is committed by a hand-off: the kernel fills on touch; but a
 * touch in the part a stream never reached gets 2 MiB, and the handler does not see it. */
#define HANDOFF_MIN 4u
#define HANDOFF_MAX 32u

/* Kernel huge-page streams (huge.c): a write stream whose window has grown hands the extents ahead
 * of it, from the faulting page's own, to the kernel's huge-page faults. The faulting thread was
 * woken by the unregistration: nothing is filled for it. */
static bool hand_off(struct kvmm_region *r, struct kvmm_stream *s, uintptr_t page, bool collapse, uintptr_t *hi)
{
    uintptr_t lo;
    uint32_t n = s->handoff ? s->handoff : HANDOFF_MIN;
    if (!kvmm_uffd_handoff(r, page, n, collapse, &lo, hi))
        return false;
    s->handoff = 2 * n < HANDOFF_MAX ? 2 * n : HANDOFF_MAX;
    s->lo = s->lo < lo ? s->lo : lo;
    s->hi = s->hi > *hi ? s->hi : *hi;
    s->next = s->hi; /* the kernel fills it: no background fill */
    kvmm_uffd_watch(r->node.key, lo, *hi);
    return true;
}

static bool plan_handoff(struct kvmm_region *r, struct kvmm_stream *s, uintptr_t page, uintptr_t *now_lo,
                         uintptr_t *now_hi)
{
    uintptr_t hi;
    bool collapse = s->window >= KVMM_UFFD_COLLAPSE_FROM_WINDOW;
    if (s->dir < 0 || s->window < KVMM_UFFD_MOVE_FROM_WINDOW || !hand_off(r, s, page, collapse, &hi))
        return false;
    *now_lo = *now_hi = page;
    return true;
}

int kvmm_uffd_stream_hand_on(uintptr_t base, uintptr_t frontier, uintptr_t *hi)
{
    if (kvmm_map_tryrdlock() != 0)
        return -1;
    int rc = 0;
    struct kvmm_region *r = kvmm_map_find(base);
    if (r && r->node.key == base) {
        if (pthread_mutex_trylock(&r->lock) != 0) {
            rc = -1;
        } else {
            for (int i = 0; i < KVMM_STREAMS && rc == 0; i++) {
                struct kvmm_stream *s = &r->lazy.streams[i];
                if (s->lo != s->hi && s->dir > 0 && s->hi == frontier && kvmm_uffd_active(r))
                    rc = hand_off(r, s, frontier, false, hi) ? 1 : 0;
            }
            pthread_mutex_unlock(&r->lock);
        }
    }
    kvmm_map_unlock();
    return rc;
}

/*
 * Decides what the fault at page fills now ([*now_lo, *now_hi), at most one chunk, containing
 * page) and what is left to background fill in the stream. r is locked. Returns false when r
 * was demoted instead.
 */
static bool plan(struct kvmm_region *r, uintptr_t page, bool write, const kosvmm_lazy_config *cfg,
                 uintptr_t *now_lo, uintptr_t *now_hi, bool *huge)
{
    const uintptr_t P = page_size();
    struct kvmm_lazy *lz = &r->lazy;
    uintptr_t ext_lo, ext_hi;
    lazy_extent(r, page, &ext_lo, &ext_hi);
    if (ext_lo == ext_hi) {
        *now_lo = *now_hi = page;
        return true;
    }
    int dir = 0;
    struct kvmm_stream *s = find_stream(lz, page, &dir);
    const bool first = !s;
    *huge = false;
    if (s) {
        lz->misses = 0;
        uint32_t grown = s->window * ((r->flags & VMM_FLAG_GROW_DOWN) && dir < 0 ? 4 : 2);
        s->window = grown < cfg->window_max ? grown : cfg->window_max;
    } else {
        bool adaptive = cfg->window_min < cfg->window_max;
        if (adaptive && ++lz->misses >= DEMOTE_AFTER) {
            demote(r);
            return false;
        }
        s = new_stream(lz);
        s->window = cfg->window_min;
        s->handoff = 0;
        /* Stacks grow down: a GROW_DOWN region's first window extends below the fault. */
        dir = r->flags & VMM_FLAG_GROW_DOWN ? -1 : +1;
    }
    s->used = ++lz->clock;
    s->dir = dir;
    s->zero = !write;
    uintptr_t span = (uintptr_t)s->window * P;
    uintptr_t ahead = cfg->readahead && s->window >= READAHEAD_FROM ? span : 0;
    if (dir > 0) {
        s->lo = page;
        s->hi = clamp(page + span + ahead, page + P, ext_hi);
        *now_lo = page;
        *now_hi = clamp(page + KVMM_UFFD_CHUNK, page + P, s->hi);
        s->next = *now_hi;
    } else {
        s->hi = page + P;
        s->lo = clamp(page + P - span - ahead, ext_lo, page);
        *now_hi = page + P;
        *now_lo = clamp(page + P - KVMM_UFFD_CHUNK, s->lo, page);
        s->next = *now_lo;
    }
    if (first)
        fill_around_first_fault(s, page, ext_lo, ext_hi, now_lo, now_hi);
    /* Writes only: a read stream maps the shared zero page, which costs no memory at all. Not on
     * a first fault either, whose pages before and after the SDK asks for. */
    else if (write && !plan_handoff(r, s, page, now_lo, now_hi)) {
        plan_huge(r, s, page, now_lo, now_hi, huge);
        s->next = dir > 0 ? *now_hi : *now_lo;
    }
    if (s->next != (dir > 0 ? s->hi : s->lo))
        add_pending(r->node.key);
    __atomic_store_n(&kvmm_counters.lazy_window, s->window, __ATOMIC_RELAXED);
    return true;
}

void kvmm_uffd_serve(uintptr_t addr, pid_t tid, bool write)
{
    long (*const fill)(uintptr_t, uintptr_t, bool) = write ? kvmm_uffd_fill : kvmm_uffd_zero;
    const uintptr_t P = page_size();
    const uintptr_t page = addr & ~(P - 1);
    kvmm_count(uffd_faults, 1);
    kosvmm_lazy_config cfg;
    kvmm_lazy_config(&cfg);
    bool planned = false;
    long first = 0;
    uintptr_t base = 0, end = 0;
    if (kvmm_map_tryrdlock() == 0) {
        struct kvmm_region *r = kvmm_map_find(page);
        uintptr_t lo, hi;
        if (r) {
            base = r->node.key;
            end = r->end;
        }
        bool huge = false;
        if (r && pthread_mutex_trylock(&r->lock) == 0) {
            if (kvmm_uffd_active(r) && plan(r, page, write, &cfg, &lo, &hi, &huge) && lo < hi) {
                planned = true;
                /* A whole extent: the faulting thread waits only for the move, which wakes it. */
                if (huge && (first = kvmm_uffd_move(lo, false)) > 0)
                    lo = hi = page;
                else
                    first = 0;
                /* The faulting page first and alone, since it always lies in one kernel mapping
                 * (a window may cross several), and without waking its thread, which resumes once
                 * its whole first chunk is there instead of faulting again on the next page. */
                if (lo < hi)
                    first = fill(page, page + P, true);
                if (lo < page && first >= 0)
                    fill(lo, page, false);
                if (page + P < hi && first >= 0)
                    fill(page + P, hi, false);
            }
            pthread_mutex_unlock(&r->lock);
        }
        kvmm_map_unlock();
    }
    /* No window: locks busy (a kosvmm call in progress, perhaps by this very faulting thread),
     * the region unknown or demoted meanwhile, or the page no longer lazy. The faulting page is
     * still filled, alone: a missing page of a registered mapping reads as zero whatever it
     * backs (anonymous or memfd), so this is always right, and a fault never returns without
     * progress, which could otherwise repeat forever. Its neighbours are not: which of them are
     * lazy is known only under the region lock, so the SDK's "before and after" waits for it. */
    if (!planned)
        first = fill(page, page + P, true);
    /* The kernel found no memory for the page (the cgroup's limit with nothing it may kill).
     * Waking the thread would only fault again, forever: it gets SIGBUS, as KasperskyOS ends a
     * process whose lazy commit cannot be backed ("Unhandled Overcommit"). */
    if (first == -ENOMEM)
        kvmm_uffd_overcommit(page, tid, base, end);
    kvmm_uffd_wake(page, page + P);
}

/* One chunk of one stream's background fill. r is locked. Returns true if r has more. The
 * streams take turns: served in array order, a second thread's stream would wait until the first
 * one's range is full, and the second thread then faults on every chunk. */
static bool fill_stream_chunk(struct kvmm_region *r)
{
    static unsigned turn; /* handler thread only */
    bool more = false, done_one = false;
    for (int k = 0; k < KVMM_STREAMS; k++) {
        int i = (int)((turn + (unsigned)k) % KVMM_STREAMS);
        struct kvmm_stream *s = &r->lazy.streams[i];
        uintptr_t end = s->dir > 0 ? s->hi : s->lo;
        if (s->lo == s->hi || s->next == end)
            continue;
        if (done_one) {
            more = true;
            continue;
        }
        turn = (unsigned)i + 1;
        uintptr_t lo = s->dir > 0 ? s->next : (s->next - s->lo > KVMM_UFFD_CHUNK ? s->next - KVMM_UFFD_CHUNK : s->lo);
        uintptr_t hi = s->dir > 0 ? (s->hi - s->next > KVMM_UFFD_CHUNK ? s->next + KVMM_UFFD_CHUNK : s->hi) : s->next;
        uintptr_t ext_lo, ext_hi;
        lazy_extent(r, s->dir > 0 ? lo : hi - page_size(), &ext_lo, &ext_hi);
        lo = clamp(lo, ext_lo, ext_hi);
        hi = clamp(hi, ext_lo, ext_hi);
        long n = -1;
        /* An upward write stream's extents go to the kernel at its next fault (plan_handoff)
         * where hand-off is on: not moved here, and not copied into either. */
        bool may_move = s->window >= KVMM_UFFD_MOVE_FROM_WINDOW && !(s->dir > 0 && kvmm_uffd_handoff_on());
        if (!s->zero && kvmm_uffd_handoff_ahead(r, s->dir, lo))
            hi = lo;
        if (lo < hi && !s->zero && kvmm_uffd_huge_chunk(r, s->dir, may_move, &lo, &hi)) {
            n = kvmm_uffd_move(lo, false);
            /* The stream's range grows to the whole extent moved. */
            if (s->dir > 0 && hi > s->hi)
                s->hi = end = hi;
            if (s->dir < 0 && lo < s->lo)
                s->lo = end = lo;
        }
        if (n < 0)
            n = lo < hi ? (s->zero ? kvmm_uffd_zero : kvmm_uffd_fill)(lo, hi, false) : 0;
        if (n > 0)
            kvmm_count(uffd_readahead_pages, n);
        /* Stop the stream at the end of its lazy span, or when the range went away. */
        if (lo == hi || n < 0)
            s->next = end;
        else
            s->next = s->dir > 0 ? hi : lo;
        done_one = true;
        more |= s->next != end;
    }
    return more;
}

int kvmm_uffd_readahead_step(void)
{
    if (npending == 0)
        return 0;
    if (kvmm_map_tryrdlock() != 0)
        return -1;
    int busy = 0;
    for (unsigned i = 0; i < npending;) {
        struct kvmm_region *r = kvmm_map_find(pending[i]);
        if (!r || r->node.key != pending[i] || !kvmm_uffd_active(r)) {
            drop_pending(i);
            continue;
        }
        if (pthread_mutex_trylock(&r->lock) != 0) {
            busy = 1;
            i++;
            continue;
        }
        bool more = fill_stream_chunk(r);
        pthread_mutex_unlock(&r->lock);
        if (!more)
            drop_pending(i);
        break; /* one chunk per step: faults waiting in the queue come first */
    }
    kvmm_map_unlock();
    return npending ? (busy ? -1 : 1) : 0;
}
