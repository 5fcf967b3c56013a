/* SPDX-License-Identifier: MIT */
/* src/uffd/engine.c — the userfaultfd engine's life: probe, start, register regions, fork, stop. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vmm/flags.h>

#include "uffd/engine.h"
#include "uffd/uffd.h"

struct kvmm_engine kvmm_engine = {.fd = -1, .control = -1};

enum probe { UNKNOWN = 0, USABLE, UNUSABLE };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static enum probe probed[2];     /* per user_mode_only setting */
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
    }
    if (fd < 0)
        fd = (int)syscall(SYS_userfaultfd, flags);
    if (fd < 0 && user_mode_only)
        fd = (int)syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
    return fd < 0 ? -errno : fd;
}

/* The faulting thread's id (UFFD_FEATURE_THREAD_ID, Linux 4.14) lets an unbackable fault be
 * answered with SIGBUS to that thread; a kernel without it refuses the feature, and the fd is
 * opened again without (a refused UFFDIO_API leaves it unusable). */
static int open_userfaultfd(bool user_mode_only)
{
    static const uint64_t wanted[] = {UFFD_FEATURE_THREAD_ID, 0};
    int rc = -ENOSYS;
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
        int fd = open_raw(user_mode_only);
        if (fd < 0)
            return fd;
        struct uffdio_api api = {.api = UFFD_API, .features = wanted[i]};
        errno = 0;
        if (ioctl(fd, UFFDIO_API, &api) == 0 && (api.ioctls & (1ull << _UFFDIO_REGISTER)))
            return fd;
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
        int fd = open_userfaultfd(user_mode_only);
        *p = fd >= 0 ? USABLE : UNUSABLE;
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
    int fd = open_userfaultfd(user_mode_only);
    if (fd < 0)
        return fd;
    int control = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!kvmm_engine.zeros) {
        /* Never written: every page is the shared zero page, so the copy source costs nothing. */
        void *z = mmap(NULL, KVMM_UFFD_CHUNK, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        kvmm_engine.zeros = z == MAP_FAILED ? NULL : z;
    }
    int rc = control < 0 || !kvmm_engine.zeros ? -ENOMEM : 0;
    if (rc == 0) {
        kvmm_engine.fd = fd;
        kvmm_engine.control = control;
        kvmm_uffd_loop_init();
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

bool kvmm_uffd_active(const struct kvmm_region *r)
{
    uint32_t g = r->lazy.generation;
    return g != 0 && g == __atomic_load_n(&kvmm_engine.generation, __ATOMIC_ACQUIRE);
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
    if (start(cfg.user_mode_only) == 0 && register_anonymous_runs(r) == 0)
        r->lazy = (struct kvmm_lazy){.generation = kvmm_engine.generation};
    pthread_mutex_unlock(&lock);
}

uint32_t kvmm_uffd_engine(void)
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

void kvmm_uffd_fork_prepare(void)
{
    pthread_mutex_lock(&lock);
}

void kvmm_uffd_fork_parent(void)
{
    pthread_mutex_unlock(&lock);
}

/* Without UFFD_FEATURE_EVENT_FORK the child's mappings are not registered: its untouched lazy
 * pages fault like ordinary memory and read as zero. The child has no handler thread; its own
 * engine starts at its first lazy commit. */
void kvmm_uffd_fork_child(void)
{
    if (running) {
        close(kvmm_engine.fd);
        close(kvmm_engine.control);
        kvmm_uffd_loop_forget();
        kvmm_engine.fd = kvmm_engine.control = -1;
        running = false;
    }
    kvmm_uffd_readahead_clear();
    bump_generation();
    pthread_mutex_unlock(&lock);
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
