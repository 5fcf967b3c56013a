/* SPDX-License-Identifier: MIT */
/* src/uffd/engine.c — the userfaultfd engine's life: probe, start, register regions, fork, stop. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vmm/flags.h>

#include "fork.h"
#include "lazy.h"
#include "os.h"
#include "diag.h"
#include "uffd/engine.h"
#include "uffd/uffd.h"

struct kvmm_engine kvmm_engine = {.fd = -1, .control = -1};

enum probe { UNKNOWN = 0, USABLE, UNUSABLE };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static enum probe probed[2];     /* per user_mode_only setting */
static int probe_error[2];       /* why the probe failed: -errno */
static const char *opened_via[2]; /* how the probe got a userfaultfd */
static bool fallback_told;
static bool running, stopped;
static pid_t owner;              /* the process the handler thread belongs to */
static pthread_t thread;

/*
 * /dev/userfaultfd first: its permissions, not vm.unprivileged_userfaultfd, decide who may
 * intercept faults taken inside the kernel (read(2) into lazy memory, futexes, io_uring). Then
 * the system call, which without privilege only gives UFFD_USER_MODE_ONLY under
 * vm.unprivileged_userfaultfd=0 — used only when the user opted in, because it turns those
 * kernel-side faults into EFAULT.
 */
static int open_raw(bool user_mode_only)
{
    const int flags = O_CLOEXEC | O_NONBLOCK;
    int fd = -1;
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
        close(dev);
        opened_via[user_mode_only] = "/dev/userfaultfd";
    }
    if (fd < 0) {
        fd = (int)syscall(SYS_userfaultfd, flags);
        opened_via[user_mode_only] = "the userfaultfd system call";
    }
    if (fd < 0 && user_mode_only) {
        fd = (int)syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
        opened_via[user_mode_only] = "the userfaultfd system call, UFFD_USER_MODE_ONLY";
    }
    return fd < 0 ? -errno : fd;
}

/* The faulting thread's id (UFFD_FEATURE_THREAD_ID, Linux 4.14) lets an unbackable fault be
 * answered with SIGBUS to that thread, and UFFD_FEATURE_MOVE (Linux 6.8) lets streams get whole
 * huge pages (huge.c); a kernel without one refuses the request, and the fd is opened again with
 * less (a refused UFFDIO_API leaves it unusable). *granted: the features asked for and got. */
static int open_userfaultfd(bool user_mode_only, uint64_t *granted)
{
    const uint64_t wanted[] = {UFFD_FEATURE_THREAD_ID | kvmm_uffd_move_feature(), UFFD_FEATURE_THREAD_ID, 0};
    int rc = -ENOSYS;
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
        int fd = open_raw(user_mode_only);
        if (fd < 0)
            return fd;
        struct uffdio_api api = {.api = UFFD_API, .features = wanted[i]};
        errno = 0;
        if (ioctl(fd, UFFDIO_API, &api) == 0 && (api.ioctls & (1ull << _UFFDIO_REGISTER))) {
            *granted = wanted[i];
            return fd;
        }
        rc = errno ? -errno : -ENOSYS;
        close(fd);
    }
    return rc;
}

/* Whether userfaultfd works here (seccomp, sysctl, gVisor can all say no). Engine lock held. */
static bool usable(bool user_mode_only)
{
    enum probe *p = &probed[user_mode_only];
    if (*p == UNKNOWN) {
        uint64_t granted;
        int fd = open_userfaultfd(user_mode_only, &granted);
        *p = fd >= 0 ? USABLE : UNUSABLE;
        probe_error[user_mode_only] = fd < 0 ? fd : 0;
        if (fd >= 0)
            close(fd);
    }
    return *p == USABLE;
}

static void *handler_main(void *arg)
{
    kvmm_uffd_loop((sem_t *)arg);
    return NULL;
}

static void bump_generation(void)
{
    uint32_t g = kvmm_engine.generation + 1;
    __atomic_store_n(&kvmm_engine.generation, g ? g : 1, __ATOMIC_RELEASE);
}

/* Starts the handler thread. Engine lock held. */
static int start(bool user_mode_only)
{
    if (running)
        return 0;
    if (stopped || !usable(user_mode_only))
        return -ENOSYS;
    uint64_t granted = 0;
    int fd = open_userfaultfd(user_mode_only, &granted);
    if (fd < 0)
        return fd;
    int control = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!kvmm_engine.zeros) {
        /* Never written: every page is the shared zero page, so the copy source costs nothing. */
        uintptr_t z;
        kvmm_engine.zeros = kvmm_os_map_zeros(KVMM_UFFD_CHUNK, &z) == 0 ? (const void *)z : NULL;
    }
    int rc = control < 0 || !kvmm_engine.zeros ? -ENOMEM : 0;
    if (rc == 0) {
        kvmm_engine.fd = fd;
        kvmm_engine.control = control;
        kvmm_uffd_loop_init();
        kvmm_uffd_huge_start(granted);
        /* The handler takes no signal: a handler of the application could touch lazy memory,
         * and a fault in the one thread that serves faults would never be served. */
        sigset_t all, old;
        sigfillset(&all);
        sem_t up;
        sem_init(&up, 0, 0);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = -pthread_create(&thread, NULL, handler_main, &up);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        /* Wait until the handler runs: whatever its start maps (under sanitizers, their per-thread
         * state) then exists before the first lazy commit returns, never later in a hole the
         * application has just freed for a fixed address. */
        while (rc == 0 && sem_wait(&up) != 0)
            ;
        sem_destroy(&up);
    }
    if (rc) {
        kvmm_engine.fd = kvmm_engine.control = -1;
        close(fd);
        if (control >= 0)
            close(control);
        return rc;
    }
    pthread_setname_np(thread, "kosvmm-uffd");
    owner = getpid();
    running = true;
    bump_generation();
    return 0;
}

/* Registers every run of r's pages that is not an MDL mapping: those are shared memory, filled by
 * whoever writes the buffer, never by this engine. Refused (e.g. the split a registration needs
 * would pass vm.max_map_count): what was registered is undone and kernel paging it is. */
static int register_anonymous_runs(struct kvmm_region *r)
{
    uintptr_t run = 0;
    struct kvmm_avl_node *n = kvmm_avl_first(&r->spans);
    for (;; n = kvmm_avl_next(n)) {
        const struct kvmm_span *s = n ? kvmm_container_of(n, struct kvmm_span, node) : NULL;
        bool mdl = s && s->a.state == KVMM_MDL;
        if (s && !mdl && !run)
            run = s->node.key;
        if (run && (!s || mdl)) {
            uintptr_t end = s ? s->node.key : r->end;
            struct uffdio_register reg = {.range = {.start = run, .len = end - run},
                                          .mode = UFFDIO_REGISTER_MODE_MISSING};
            if (ioctl(kvmm_engine.fd, UFFDIO_REGISTER, &reg) != 0 || !(reg.ioctls & (1ull << _UFFDIO_COPY))) {
                struct uffdio_range all = {.start = r->node.key, .len = r->end - r->node.key};
                ioctl(kvmm_engine.fd, UFFDIO_UNREGISTER, &all);
                return -1;
            }
            run = 0;
        }
        if (!s)
            return 0;
    }
}

/* The huge-page advice goes to the same runs: an MDL mapping is shared memory, whose huge pages
 * (shmem_enabled) are not this engine's to choose. */
static void advise_anonymous_runs(const struct kvmm_region *r)
{
    uintptr_t run = 0;
    for (struct kvmm_avl_node *n = kvmm_avl_first(&r->spans);; n = kvmm_avl_next(n)) {
        const struct kvmm_span *s = n ? kvmm_container_of(n, struct kvmm_span, node) : NULL;
        bool mdl = s && s->a.state == KVMM_MDL;
        if (s && !mdl && !run)
            run = s->node.key;
        if (run && (!s || mdl)) {
            kvmm_uffd_huge_advise(run, s ? s->node.key : r->end);
            run = 0;
        }
        if (!s)
            return;
    }
}

bool kvmm_uffd_active(const struct kvmm_region *r)
{
    uint32_t g = r->lazy.generation;
    return g != 0 && g == __atomic_load_n(&kvmm_engine.generation, __ATOMIC_ACQUIRE);
}

/* Why userfaultfd cannot serve lazy commits here, in words a user can act on. Engine lock held. */
static void unusable_reason(bool user_mode_only, char *why, size_t size)
{
    int err = -probe_error[user_mode_only];
    if (stopped) {
        kvmm_format(why, size, "the process is exiting");
    } else if (err == EPERM || err == EACCES) {
        char unpriv[16] = "?";
        int fd = open("/proc/sys/vm/unprivileged_userfaultfd", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = read(fd, unpriv, sizeof unpriv - 1);
            unpriv[n > 0 ? n : 0] = '\0';
            unpriv[strcspn(unpriv, "\n")] = '\0';
            close(fd);
        }
        kvmm_format(why, size, "userfaultfd refused: %s (no access to /dev/userfaultfd, no CAP_SYS_PTRACE, "
                    "vm.unprivileged_userfaultfd=%s)%s", strerror(err), unpriv,
                    user_mode_only ? "" : "; KOSVMM_UFFD_USER_MODE_ONLY=1 would allow it for user-mode faults");
    } else if (err == ENOSYS) {
        kvmm_format(why, size, "no userfaultfd system call (a kernel without CONFIG_USERFAULTFD, or a seccomp filter)");
    } else {
        kvmm_format(why, size, "userfaultfd unusable: %s", strerror(err ? err : ENOSYS));
    }
}

uint32_t kvmm_lazy_explain(bool probe, char *why, size_t size)
{
    kosvmm_lazy_config cfg;
    kvmm_lazy_config(&cfg);
    kvmm_uffd_no_uring();
    kvmm_uffd_move_wanted();
    if (cfg.engine != KOSVMM_ENGINE_UFFD) {
        kvmm_format(why, size, "%s", kvmm_lazy_engine_from_environment() ? "KOSVMM_ENGINE=kernel"
                                                                          : "the configuration asks for it");
        return KOSVMM_ENGINE_KERNEL;
    }
    if (!probe)
        return KOSVMM_ENGINE_UFFD;
    pthread_mutex_lock(&lock);
    bool ok = !stopped && (running || usable(cfg.user_mode_only));
    if (ok)
        kvmm_format(why, size, "userfaultfd usable through %s%s", opened_via[cfg.user_mode_only],
                    kvmm_lazy_engine_from_environment() ? ", KOSVMM_ENGINE=uffd" : ", the default");
    else
        unusable_reason(cfg.user_mode_only, why, size);
    pthread_mutex_unlock(&lock);
    return ok ? KOSVMM_ENGINE_UFFD : KOSVMM_ENGINE_KERNEL;
}

/* A lazy commit that wanted userfaultfd got kernel paging. Said once: on stderr when the user asked for
 * uffd by name (KOSVMM_ENGINE=uffd), else only under KOSVMM_VERBOSE, since the fallback is designed
 * behaviour with the same visible semantics. Engine lock held. */
static void tell_fallback(bool user_mode_only, int err)
{
    if (fallback_told || !(kvmm_lazy_engine_from_environment() || kvmm_verbose()))
        return;
    fallback_told = true;
    char why[256];
    if (stopped || !usable(user_mode_only))
        unusable_reason(user_mode_only, why, sizeof why);
    else
        kvmm_format(why, sizeof why, "the handler could not start: %s", strerror(-err));
    kvmm_message("lazy commits fall back to kernel demand paging (one page per fault, same semantics): %s", why);
}

void kvmm_uffd_adopt(struct kvmm_region *r)
{
    kosvmm_lazy_config cfg;
    kvmm_lazy_config(&cfg);
    /* LOCKED regions populate at commit (with huge pages where aligned), which a registered
     * range would turn into a round trip per fault; their lazy pages after KnVmReset are few. */
    if (cfg.engine != KOSVMM_ENGINE_UFFD || r->lazy.demoted || (r->flags & VMM_FLAG_LOCKED) ||
        kvmm_uffd_active(r))
        return;
    pthread_mutex_lock(&lock);
    int rc = start(cfg.user_mode_only);
    if (rc != 0)
        tell_fallback(cfg.user_mode_only, rc);
    else if (register_anonymous_runs(r) == 0) {
        r->lazy = (struct kvmm_lazy){.generation = kvmm_engine.generation};
        advise_anonymous_runs(r);
    }
    pthread_mutex_unlock(&lock);
}

static uint32_t engine_kind(void)
{
    kosvmm_lazy_config cfg;
    kvmm_lazy_config(&cfg);
    if (cfg.engine != KOSVMM_ENGINE_UFFD)
        return KOSVMM_ENGINE_KERNEL;
    pthread_mutex_lock(&lock);
    bool ok = !stopped && (running || usable(cfg.user_mode_only));
    pthread_mutex_unlock(&lock);
    return ok ? KOSVMM_ENGINE_UFFD : KOSVMM_ENGINE_KERNEL;
}

static void fork_prepare(void)
{
    pthread_mutex_lock(&lock);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&lock);
}

/* Without UFFD_FEATURE_EVENT_FORK the child's mappings are not registered: its untouched lazy
 * pages fault like ordinary memory and read as zero. The child has no handler thread; its own
 * engine starts at its first lazy commit. */
static void fork_child(void)
{
    if (running) {
        close(kvmm_engine.fd);
        close(kvmm_engine.control);
        kvmm_uffd_loop_forget();
        kvmm_engine.fd = kvmm_engine.control = -1;
        running = false;
    }
    kvmm_uffd_readahead_clear();
    kvmm_uffd_watch_clear();
    kvmm_uffd_huge_forget();
    bump_generation();
    pthread_mutex_unlock(&lock);
}

const struct kvmm_lazy_engine kvmm_lazy_engine = {
    .adopt = kvmm_uffd_adopt,
    .active = kvmm_uffd_active,
    .kind = engine_kind,
};

static const struct kvmm_fork_hooks fork_hooks = {fork_prepare, fork_parent, fork_child};

__attribute__((constructor)) static void register_fork_hooks(void)
{
    kvmm_fork_register(&fork_hooks, KVMM_FORK_RANK_LAZY_ENGINE);
}

/* At exit or unload: stop the handler, then close the userfaultfd, which unregisters every range
 * and wakes every waiting thread; from then on lazy pages fault like ordinary memory, so a
 * destructor that runs later and touches lazy memory still works. */
__attribute__((destructor)) static void stop(void)
{
    pthread_mutex_lock(&lock);
    stopped = true;
    if (running && owner == getpid()) {
        uint64_t one = 1;
        if (write(kvmm_engine.control, &one, sizeof one) == sizeof one)
            pthread_join(thread, NULL);
        close(kvmm_engine.fd);
        close(kvmm_engine.control);
        kvmm_engine.fd = kvmm_engine.control = -1;
        running = false;
        bump_generation();
    }
    pthread_mutex_unlock(&lock);
}
