/* SPDX-License-Identifier: MIT */
/* src/entity/stub_exec.c — the stub becomes the program: a System V initial stack, default signals, then a jump to the entry point. */
#include <coresrv/vmm/vmm_api.h>
#include <elf.h>
#include <kosvmm/kosvmm.h>
#include <signal.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "entity/stub.h"

static size_t stack_size(void)
{
    struct rlimit rl;
    size_t size = 8u << 20;
    if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= (64u << 10) &&
        rl.rlim_cur < (1ull << 30))
        size = (size_t)rl.rlim_cur;
    return size & ~((size_t)sysconf(_SC_PAGESIZE) - 1);
}

/* Copies s below *top and returns where it went. */
static uintptr_t push_string(uintptr_t *top, const char *s)
{
    size_t len = strlen(s) + 1;
    *top -= len;
    memcpy((void *)*top, s, len);
    return *top;
}

Retcode kvmm_stub_build_stack(const struct kvmm_stub_start *st, uintptr_t *sp)
{
    size_t size = stack_size();
    /* Lazily committed through the kernel's demand paging: the userfaultfd engine would start a
     * handler thread, and the program must be the process's only thread (its exit may end just
     * the calling thread). */
    kosvmm_lazy_config cfg = {.size = sizeof(kosvmm_lazy_config)};
    kosvmm_get_lazy_config(&cfg);
    cfg.engine = KOSVMM_ENGINE_KERNEL;
    if (RC_FAILED(kosvmm_set_lazy_config(&cfg)))
        return rcFail;
    void *base = KnVmAllocate(RTL_NULL, size, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_READ | VMM_FLAG_WRITE);
    if (!base)
        return kosvmm_last_error();
    uintptr_t top = (uintptr_t)base + size;

    /* Strings and the AT_RANDOM bytes at the top, as the kernel puts them. */
    uintptr_t argv[ENTITY_ARGS_MAX_WIRE], envp[ENTITY_ENV_MAX_WIRE];
    for (unsigned i = 0; i < st->envc; i++)
        envp[i] = push_string(&top, st->envp[i]);
    for (unsigned i = 0; i < st->argc; i++)
        argv[i] = push_string(&top, st->argv[i]);
    top -= 16;
    uintptr_t random = top;
    if (getrandom((void *)random, 16, 0) != 16)
        memset((void *)random, 0x5a, 16); /* only the program's stack protector loses; it still runs */
    top &= ~(uintptr_t)15;

    uint64_t aux[][2] = {
        {AT_PHDR, st->phdr},        {AT_PHENT, sizeof(Elf64_Phdr)}, {AT_PHNUM, st->phnum},
        {AT_PAGESZ, (uint64_t)sysconf(_SC_PAGESIZE)}, {AT_ENTRY, st->entry},
        {AT_UID, getuid()},         {AT_EUID, geteuid()},           {AT_GID, getgid()},
        {AT_EGID, getegid()},       {AT_SECURE, 0},                 {AT_RANDOM, random},
        {AT_CLKTCK, (uint64_t)sysconf(_SC_CLK_TCK)},
        {AT_HWCAP, getauxval(AT_HWCAP)}, {AT_SYSINFO_EHDR, getauxval(AT_SYSINFO_EHDR)},
        {AT_NULL, 0},
    };
    unsigned first = st->phdr ? 0 : 3; /* no AT_PHDR/PHENT/PHNUM when the headers are not mapped */
    size_t naux = sizeof aux / sizeof aux[0] - first;
    size_t words = 1 + st->argc + 1 + st->envc + 1 + 2 * naux;
    top -= words * sizeof(uint64_t);
    top &= ~(uintptr_t)15; /* the ABI: the frame starts 16-byte aligned */
    uint64_t *w = (uint64_t *)top;
    *w++ = st->argc;
    for (unsigned i = 0; i < st->argc; i++)
        *w++ = argv[i];
    *w++ = 0;
    for (unsigned i = 0; i < st->envc; i++)
        *w++ = envp[i];
    *w++ = 0;
    memcpy(w, aux[first], 2 * naux * sizeof(uint64_t));
    *sp = top;
    return rcOk;
}

/* Raw system calls only from here: nothing of libc may run once the signal state is reset. */
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

__attribute__((noreturn)) void kvmm_stub_jump(const struct kvmm_stub_start *st, uintptr_t sp)
{
    prctl(PR_SET_NAME, st->name, 0, 0, 0);
    syscall(SYS_close_range, 3, ~0u, 0);
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    /* Handled signals would run the stub's handlers (a sanitizer's, for one) in the program, and
     * ignored ones would stay ignored: the program starts as after execve, all defaults. */
    struct kernel_sigaction dfl = {.handler = SIG_DFL};
    for (long sig = 1; sig < 65; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
    uint64_t none = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none);
#if defined(__x86_64__)
    /* rdx 0: no function for the program to register with atexit (the ABI's rtld_fini). */
    __asm__ volatile("mov %0, %%rsp\n\txor %%ebp, %%ebp\n\txor %%edx, %%edx\n\tjmp *%1"
                     :
                     : "D"(sp), "S"(st->entry)
                     : "memory");
#elif defined(__aarch64__)
    register uintptr_t rsp __asm__("x9") = sp;
    register uintptr_t rentry __asm__("x10") = st->entry;
    __asm__ volatile("mov sp, %0\n\tmov x29, xzr\n\tmov x30, xzr\n\tmov x0, xzr\n\tbr %1"
                     :
                     : "r"(rsp), "r"(rentry)
                     : "memory");
#else
#error "kosvmm-entity-stub: no jump for this architecture"
#endif
    __builtin_unreachable();
}
