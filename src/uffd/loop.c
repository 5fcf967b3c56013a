/* SPDX-License-Identifier: MIT */
/* src/uffd/loop.c — the handler thread's event loop: io_uring over the userfaultfd and a control eventfd, or poll(2). */
#include <errno.h>
#include <liburing.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "diag.h"
#include "env.h"
#include "uffd/engine.h"

/* How long to wait before retrying background fill that found a lock busy. */
#define BUSY_RETRY_MS 1

/* Reads and serves every queued fault. Returns false when asked to stop. */
static bool drain(void)
{
    struct uffd_msg msgs[32];
    for (;;) {
        ssize_t n = read(kvmm_engine.fd, msgs, sizeof msgs);
        if (n <= 0)
            break; /* EAGAIN: queue empty */
        for (size_t i = 0; i < (size_t)n / sizeof msgs[0]; i++)
            if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
                kvmm_uffd_serve((uintptr_t)msgs[i].arg.pagefault.address,
                                (pid_t)msgs[i].arg.pagefault.feat.ptid,
                                msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE);
    }
    uint64_t stop;
    return read(kvmm_engine.control, &stop, sizeof stop) != sizeof stop;
}

static struct waiter {
    bool uring;
    struct io_uring ring;
    struct pollfd fds[2];
} waiter;

static void arm(struct waiter *w, int fd)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    io_uring_prep_poll_multishot(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, (uint64_t)fd);
}

static bool no_uring;

static void read_no_uring(void)
{
    kvmm_env_bool("KOSVMM_NO_URING", &no_uring);
}

/* Read once, when the library is loaded (kvmm_lazy_explain), so a bad value is warned about then. */
bool kvmm_uffd_no_uring(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_no_uring);
    return no_uring;
}

/* io_uring unless it is disabled (kernel.io_uring_disabled, seccomp) or KOSVMM_NO_URING is set. */
void kvmm_uffd_loop_init(void)
{
    struct waiter *w = &waiter;
    kvmm_uffd_no_uring();
    w->uring = !no_uring && io_uring_queue_init(16, &w->ring, 0) == 0;
    if (kvmm_verbose())
        kvmm_message("userfaultfd handler waits with %s", w->uring ? "io_uring" : no_uring ? "poll(2) (KOSVMM_NO_URING)"
                                                                                          : "poll(2) (io_uring refused)");
    w->fds[0] = (struct pollfd){.fd = kvmm_engine.fd, .events = POLLIN};
    w->fds[1] = (struct pollfd){.fd = kvmm_engine.control, .events = POLLIN};
}

/* Waits until either fd may be readable, or timeout_ms passes (-1: forever, 0: just look). */
static void wait_events(struct waiter *w, int timeout_ms)
{
    if (!w->uring) {
        while (poll(w->fds, 2, timeout_ms) < 0 && errno == EINTR)
            ;
        return;
    }
    struct io_uring_cqe *cqe;
    int rc;
    if (timeout_ms < 0) {
        rc = io_uring_wait_cqe(&w->ring, &cqe);
    } else {
        struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
        rc = timeout_ms ? io_uring_wait_cqe_timeout(&w->ring, &cqe, &ts) : io_uring_peek_cqe(&w->ring, &cqe);
    }
    if (rc != 0)
        return;
    unsigned head, seen = 0, rearm = 0;
    io_uring_for_each_cqe(&w->ring, head, cqe) {
        /* A multishot poll ends on error or overflow: arm it again. */
        if (!(cqe->flags & IORING_CQE_F_MORE)) {
            arm(w, (int)io_uring_cqe_get_data64(cqe));
            rearm++;
        }
        seen++;
    }
    io_uring_cq_advance(&w->ring, seen);
    if (rearm)
        io_uring_submit(&w->ring);
}

static bool events_waiting(struct waiter *w)
{
    if (w->uring)
        return io_uring_cq_ready(&w->ring) > 0;
    return poll(w->fds, 2, 0) > 0;
}

void kvmm_uffd_loop_forget(void)
{
    if (waiter.uring)
        io_uring_queue_exit(&waiter.ring);
    waiter.uring = false;
}

void kvmm_uffd_loop(sem_t *up)
{
    struct waiter *w = &waiter;
    /* Submitted here, not where the ring was made: io_uring completes a poll through task work of
     * the task that submitted it, and an application thread may be blocked in the very fault the
     * completion must report. */
    if (w->uring) {
        arm(w, kvmm_engine.fd);
        arm(w, kvmm_engine.control);
        if (io_uring_submit(&w->ring) != 2) {
            io_uring_queue_exit(&w->ring);
            w->uring = false;
        }
    }
    sem_post(up);
    for (;;) {
        if (!drain())
            break;
        /* Background fill only while no fault waits: one chunk, then look at the queue again. */
        int more = kvmm_uffd_readahead_step();
        if (more > 0 && !events_waiting(w))
            continue;
        /* Then, still only while no fault waits, zero a huge page for the next move: the
         * faulting thread should wait for a move, never for a populate. */
        if (more <= 0 && !events_waiting(w) && kvmm_uffd_stage_step() > 0)
            continue;
        /* Nothing to do: sleep, at most until staged huge pages count as idle. */
        kvmm_uffd_huge_release_idle();
        int idle_ms = kvmm_uffd_huge_idle_ms(), watch_ms = kvmm_uffd_watch_step();
        if (watch_ms >= 0 && (idle_ms < 0 || watch_ms < idle_ms))
            idle_ms = watch_ms;
        wait_events(w, more > 0 ? 0 : more < 0 ? BUSY_RETRY_MS : idle_ms);
    }
    if (w->uring)
        io_uring_queue_exit(&w->ring);
}
