/* SPDX-License-Identifier: MIT */
/* src/uffd/watch.c — hand-off ahead of a stream's progress: the next chunk goes to the kernel before the writer reaches the end of the last. */
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>

#include "os.h"
#include "uffd/engine.h"

/*
 * A stream handed to the kernel is heard of again only when its writer faults at the end of the
 * chunk handed last: a round trip through the handler (two wake-ups across CPUs, the hand-off's
 * calls, the writer's fault again), ~200 us a chunk against ~120 us for an extent's own fault, 11
 * times in a 512 MiB stream. So the handler watches: while a stream is handed off it wakes every
 * millisecond, looks whether the writer has reached the middle of the last chunk (mincore of one
 * page), and if so hands the next chunk at once. A chunk of 16 or more extents lasts 2 ms or more
 * here, so the writer meets the handed next chunk instead of a registered extent. What is handed
 * stays what a fault would have handed (the same chunk sizes, the same checks, never more than one
 * chunk ahead of the writer), only earlier. A stream whose writer reaches no new extent for
 * WATCH_IDLE_MS is forgotten (a slow writer as well as a stopped one: a fault at its chunk's end
 * then hands off as before), so a finished stream costs the handler at most that many wake-ups.
 */
#define WATCH_MAX 4
#define WATCH_POLL_MS 1
#define WATCH_IDLE_MS 200

static struct watch {
    uintptr_t base;     /* the region's */
    uintptr_t frontier; /* end of what is handed */
    uintptr_t probe;    /* the page whose presence says the writer is past the chunk's middle */
    uintptr_t reached;  /* the extent up to which the writer was seen: each has its first page */
    uint64_t until_ns;  /* forgotten then, unless the writer reaches another extent */
} watches[WATCH_MAX];   /* handler thread only */
static unsigned nwatches;

void kvmm_uffd_watch(uintptr_t base, uintptr_t lo, uintptr_t hi)
{
    struct watch *w = NULL;
    for (unsigned i = 0; i < nwatches && !w; i++)
        if (watches[i].base == base && watches[i].frontier == lo)
            w = &watches[i];
    if (!w && nwatches < WATCH_MAX)
        w = &watches[nwatches++];
    if (!w) { /* the oldest goes */
        w = &watches[0];
        for (unsigned i = 1; i < nwatches; i++)
            if (watches[i].until_ns < w->until_ns)
                w = &watches[i];
    }
    uintptr_t half = ((hi - lo) / KVMM_HUGE_PAGE / 2) * KVMM_HUGE_PAGE;
    *w = (struct watch){base, hi, hi - (half ? half : KVMM_HUGE_PAGE), lo, kvmm_os_now_ns() + WATCH_IDLE_MS * 1000000ull};
}

void kvmm_uffd_watch_clear(void)
{
    nwatches = 0;
}

static bool present(uintptr_t page)
{
    unsigned char v = 0;
    return mincore((void *)page, kvmm_os_page_size(), &v) == 0 && (v & 1);
}

int kvmm_uffd_watch_step(void)
{
    uint64_t now = kvmm_os_now_ns();
    for (unsigned i = 0; i < nwatches;) {
        struct watch *w = &watches[i];
        bool moved = false;
        while (w->reached < w->frontier && present(w->reached))
            w->reached += KVMM_HUGE_PAGE, moved = true;
        if (moved)
            w->until_ns = now + WATCH_IDLE_MS * 1000000ull;
        else if (now > w->until_ns) {
            *w = watches[--nwatches];
            continue;
        }
        uintptr_t hi;
        /* Handed on, the stream's hand-off calls kvmm_uffd_watch, which moves w on. */
        if (present(w->probe) && kvmm_uffd_stream_hand_on(w->base, w->frontier, &hi) == 0) {
            *w = watches[--nwatches]; /* no such stream any more, or nothing left to hand */
            continue;
        }
        i++;
    }
    return nwatches ? WATCH_POLL_MS : -1;
}
