/* SPDX-License-Identifier: MIT */
/* src/entity/entity_proc.c — the entity's Linux process: clone(CLONE_PIDFD) with no exit signal, exec of the stub, poll + waitid on the pidfd. */
#include "entity/entity_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <kosvmm/kosvmm.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "entity/entity_wire.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

/*
 * The child of a raw clone is a copy of a possibly multi-threaded process in which other threads'
 * locks may be held: until exec it makes raw system calls only, on memory prepared beforehand.
 */
static __attribute__((noreturn)) void child(const char *stub, int channel_fd, char *const *argv, char *const *envp)
{
    /* The parent's handlers must not run here, nor ignored signals stay ignored in the stub. */
    struct kernel_sigaction dfl = {.handler = SIG_DFL};
    for (long sig = 1; sig < 65; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
    uint64_t none = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none);
    long rc = channel_fd == KVMM_ENTITY_STUB_FD ? syscall(SYS_fcntl, channel_fd, F_SETFD, 0)
                                                : syscall(SYS_dup3, channel_fd, KVMM_ENTITY_STUB_FD, 0);
    if (rc >= 0)
        syscall(SYS_execve, stub, argv, envp);
    long err = errno < 100 ? errno : 99;
    syscall(SYS_exit_group, KVMM_ENTITY_EXEC_FAILED + err);
    __builtin_unreachable();
}

int kvmm_entity_spawn(const char *stub, int channel_fd, int *pidfd_out)
{
    char *argv[] = {(char *)"kosvmm-entity-stub", NULL}, *envp[] = {NULL};
    sigset_t all, old;
    sigfillset(&all);
    /* No handler of the host may run in the child between clone and its signal reset. */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int pidfd = -1;
    /*
     * CLONE_PIDFD gives the pidfd atomically with the child (pidfd_open after fork could fail on
     * EMFILE with the child already running), and the child is then waited for through it only.
     * Exit signal 0 covers the child until exec (a failed exec sends no SIGCHLD); execve itself
     * makes SIGCHLD the exit signal again (the kernel's de_thread), so once the stub runs it is an
     * ordinary child of the host, which sees its SIGCHLD.
     */
    long pid = syscall(SYS_clone, (unsigned long)CLONE_PIDFD, 0UL, &pidfd, 0UL, 0UL);
    if (pid == 0)
        child(stub, channel_fd, argv, envp);
    int err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        switch (err) {
        case EMFILE: case ENFILE: case EAGAIN: return -EDQUOT;
        case ENOMEM: return -ENOMEM;
        case EINVAL: case ENOSYS: return -ENOSYS;
        case EPERM: case EACCES: return -EPERM;
        default: return -err;
        }
    }
    *pidfd_out = pidfd;
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kvmm_entity_reap(int pidfd, int64_t timeout_ms, uint32_t *code)
{
    int64_t deadline = timeout_ms < 0 ? 0 : now_ms() + timeout_ms;
    for (;;) {
        int wait_ms = -1;
        if (timeout_ms >= 0) {
            int64_t left = deadline - now_ms();
            wait_ms = left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
        }
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        int n = poll(&p, 1, wait_ms);
        if (n > 0)
            break;
        if (n == 0 && timeout_ms >= 0 && now_ms() >= deadline)
            return -ETIMEDOUT;
        if (n < 0 && errno != EINTR) /* a host signal handler ran: the wait goes on until its deadline */
            return -errno;
    }
    siginfo_t si = {0};
    while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED | __WALL) != 0)
        if (errno != EINTR) /* ECHILD: the host reaped it (SIG_IGN for SIGCHLD, a waitpid(-1) loop) */
            return errno == ECHILD ? -ENOENT : -errno;
    *code = si.si_code == CLD_EXITED ? (uint32_t)si.si_status & 0xffu : KOSVMM_ENTITY_KILLED((uint32_t)si.si_status);
    return 0;
}

void kvmm_entity_kill(int pidfd)
{
    uint32_t code;
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    kvmm_entity_reap(pidfd, -1, &code);
    close(pidfd);
}
