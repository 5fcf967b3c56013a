/* SPDX-License-Identifier: MIT */
/* src/uffd/overcommit.c — what a lazy page fault gets when no memory can back it: a message naming it, and SIGBUS. */
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "stats.h"
#include "uffd/engine.h"

void kvmm_uffd_overcommit(uintptr_t page, pid_t tid, uintptr_t base, uintptr_t end)
{
    char msg[320];
    int n;
    if (base < end)
        n = snprintf(msg, sizeof msg,
                     "kosvmm: Unhandled Overcommit: no memory to back page 0x%lx of the lazily committed "
                     "region 0x%lx-0x%lx (%lu KiB), faulted by thread %d; sending it SIGBUS\n",
                     (unsigned long)page, (unsigned long)base, (unsigned long)end,
                     (unsigned long)((end - base) / 1024), (int)tid);
    else
        n = snprintf(msg, sizeof msg,
                     "kosvmm: Unhandled Overcommit: no memory to back lazily committed page 0x%lx, faulted by "
                     "thread %d; sending it SIGBUS\n", (unsigned long)page, (int)tid);
    if (n > 0)
        (void)!write(STDERR_FILENO, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    kvmm_count(uffd_overcommits, 1);
    /* To the faulting thread, which the signal also wakes from its wait in the kernel. Without
     * its id (a kernel lacking UFFD_FEATURE_THREAD_ID reports 0), to the process: SIGBUS kills it
     * as a whole either way unless it is caught. */
    if (tid <= 0 || syscall(SYS_tgkill, getpid(), tid, SIGBUS) != 0)
        kill(getpid(), SIGBUS);
}
