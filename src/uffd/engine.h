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
