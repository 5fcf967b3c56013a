/* SPDX-License-Identifier: MIT */
/* src/uffd/engine.h — shared state of the userfaultfd engine's files (handler thread side). */
#ifndef KVMM_UFFD_ENGINE_H
#define KVMM_UFFD_ENGINE_H

#include <semaphore.h>
#include <sys/types.h>
#include <stdbool.h>
#include <stdint.h>

#include "region_map.h"

/* Bytes one UFFDIO_COPY call fills at most: the size of the zero source buffer. Also the
 * read-ahead chunk, so pending faults wait for at most one chunk. */
#define KVMM_UFFD_CHUNK (64u * 4096u)

struct kvmm_engine {
    int fd;               /* the userfaultfd, -1 when not running */
    int control;          /* eventfd: wakes the handler to stop */
    uint32_t generation;  /* changes at every start, stop and fork: a region registered under an
                             older generation is not registered in this process any more */
    const void *zeros;    /* KVMM_UFFD_CHUNK bytes of zeros, the UFFDIO_COPY source */
};

extern struct kvmm_engine kvmm_engine;

/* Fills the missing pages of [lo, hi) with zeros (UFFDIO_COPY) and, unless dont_wake, wakes the
 * threads waiting on them; present pages are skipped. Pages filled, or -errno (-ENOENT: no
 * longer registered; -ESRCH: the process is exiting). */
long kvmm_uffd_fill(uintptr_t lo, uintptr_t hi, bool dont_wake);
/* The same with the shared zero page (UFFDIO_ZEROPAGE), for read faults: no memory is allocated
 * until a page is written, and then the kernel's copy-on-write fault allocates it without asking
 * the handler (the registration is MISSING only, and the zero page is present). */
long kvmm_uffd_zero(uintptr_t lo, uintptr_t hi, bool dont_wake);
/* Wakes threads waiting on [lo, hi) whose page someone else filled. */
void kvmm_uffd_wake(uintptr_t lo, uintptr_t hi);

/* Serves one fault: plans a window under try-locks, fills it, queues read-ahead. A write fault
 * fills with UFFDIO_COPY; a read fault maps the zero page over the same window (kvmm_uffd_zero),
 * as native demand paging does for a read, so a read-mostly pass costs no memory. */
void kvmm_uffd_serve(uintptr_t addr, pid_t tid, bool write);
/* No memory to back the faulting page (UFFDIO_COPY: ENOMEM): says so on stderr, naming the page,
 * its region [base, end) (0, 0 if unknown) and the thread, and sends that thread SIGBUS. */
void kvmm_uffd_overcommit(uintptr_t page, pid_t tid, uintptr_t base, uintptr_t end);
/* Fills one chunk of queued read-ahead. 1 if more is queued, 0 if none, -1 if a lock was busy. */
int kvmm_uffd_readahead_step(void);
/* Drops all queued read-ahead (stop, fork). */
void kvmm_uffd_readahead_clear(void);
/* The upward write stream of the region at base whose handed range ends at frontier hands its next
 * chunk to the kernel (as its writer's fault there would): 1 with the new end in *hi, 0 when there
 * is no such stream or nothing to hand, -1 when a lock was busy. Handler thread. */
int kvmm_uffd_stream_hand_on(uintptr_t base, uintptr_t frontier, uintptr_t *hi);

/* Streams handed to the kernel, watched for progress (watch.c); handler thread only. [lo, hi) was
 * just handed for the region at base. */
void kvmm_uffd_watch(uintptr_t base, uintptr_t lo, uintptr_t hi);
/* Hands on the streams whose writer is past the middle of its last chunk; forgets idle ones.
 * Milliseconds until it wants to look again, -1 when it watches nothing. */
int kvmm_uffd_watch_step(void);
/* Forgets every watched stream (stop, fork). */
void kvmm_uffd_watch_clear(void);

/* Huge-page streams (huge.c). UFFD_FEATURE_MOVE's bit, for UFFDIO_API. */
uint64_t kvmm_uffd_move_feature(void);
/* KOSVMM_UFFD_MOVE (default on), read once. */
bool kvmm_uffd_move_wanted(void);
/* At the engine's start, with the features UFFDIO_API granted: reads KOSVMM_UFFD_MOVE, checks
 * THP, maps the staging area; says what it chose under KOSVMM_VERBOSE. Engine lock held. */
void kvmm_uffd_huge_start(uint64_t features);
/* Whether whole 2 MiB extents of streams are filled by UFFDIO_MOVE of staged huge pages. */
bool kvmm_uffd_move_on(void);
/* Called for each anonymous run of a region just registered: keeps the kernel from making huge
 * pages there itself (huge.c says why). */
void kvmm_uffd_huge_advise(uintptr_t lo, uintptr_t hi);
/* A stream with this window faulted at page: true, with the extent's base, when that whole 2 MiB
 * extent should be moved in now. r locked. */
bool kvmm_uffd_huge_extent(const struct kvmm_region *r, uintptr_t page, uint32_t window, uintptr_t *extent);
/* A fill of [*lo, *hi) going dir (+1 up from lo, -1 down from hi): true when, may_move, it should
 * rather move the whole extent it was widened to; otherwise [*lo, *hi) may be narrowed so that a
 * copy stops short of a movable extent. r locked. */
bool kvmm_uffd_huge_chunk(const struct kvmm_region *r, int dir, bool may_move, uintptr_t *lo, uintptr_t *hi);
/* Whether write streams are handed to the kernel's huge-page faults (KOSVMM_UFFD_HANDOFF, THP not
 * "never"). */
bool kvmm_uffd_handoff_on(void);
/* A write stream with its window grown faulted at page: hands up to extents 2 MiB extents from
 * page's own on, each wholly lazy, read-write and empty, to the kernel (MADV_HUGEPAGE, unregistered;
 * the faulting thread is woken and faults again there), and records them in r->lazy.handed. With
 * collapse, page's extent may already have pages: it is then filled and made one huge page in
 * place. true with [*lo, *hi) handed; false when page's extent does not qualify or r has no room
 * to record another range. r locked. */
bool kvmm_uffd_handoff(struct kvmm_region *r, uintptr_t page, uint32_t extents, bool collapse, uintptr_t *lo,
                       uintptr_t *hi);
/* Whether a background fill going dir must stop at lo: the start of an empty extent that an upward
 * write stream's next fault hands to the kernel (a copy would leave it partly populated). r locked. */
bool kvmm_uffd_handoff_ahead(const struct kvmm_region *r, int dir, uintptr_t lo);
/* Window a stream needs before its extents are moved whole: two or three faults in a row may
 * still be chance, and 2 MiB for them would defeat window_min's economy for random access. */
#define KVMM_UFFD_MOVE_FROM_WINDOW 8u
/* Window a stream needs before the extent it is in, already partly written, is made one huge page
 * (kvmm_uffd_handoff's collapse): 64 pages or more in a row, of which the window's read-ahead
 * would commit as many again anyway. Shorter runs (records written here and there) keep costing
 * what they touch, not 2 MiB each. */
#define KVMM_UFFD_COLLAPSE_FROM_WINDOW 64u
/* Moves a staged huge page to the 2 MiB extent at dst (staging one first if none is ready). Pages
 * filled, or -errno: the caller then copies instead. Handler thread. */
long kvmm_uffd_move(uintptr_t dst, bool dont_wake);
/* Stages one huge page ahead if a stream wants them and a slot is empty: 1 if it did. */
int kvmm_uffd_stage_step(void);
/* Milliseconds until staged huge pages count as idle (0: they do now), -1 when no stream wants
 * them. Handler thread. */
int kvmm_uffd_huge_idle_ms(void);
/* Once idle (kvmm_uffd_huge_idle_ms() == 0): gives the staged pages back to the kernel and stages no
 * more until the next move. Handler thread. */
void kvmm_uffd_huge_release_idle(void);
/* In a fork child: nothing is staged (the staging area is MADV_WIPEONFORK). */
void kvmm_uffd_huge_forget(void);

/* KOSVMM_NO_URING: the handler waits with poll(2), never io_uring. */
bool kvmm_uffd_no_uring(void);
/* Sets up the handler loop's waiting (io_uring, or poll(2) when io_uring is unavailable) in the
 * calling thread, so every mapping the engine makes exists before the first lazy commit returns:
 * none appears later in address space the application may have just freed for a fixed address. */
void kvmm_uffd_loop_init(void);
/* In a fork child: releases the parent's ring (the child has no handler thread). */
void kvmm_uffd_loop_forget(void);
/* The handler loop; posts up once it is ready to serve, returns on stop. */
void kvmm_uffd_loop(sem_t *up);

#endif
