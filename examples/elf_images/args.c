/* SPDX-License-Identifier: MIT */
/* args.c — a freestanding static program that checks its System V start: argc, argv[0], the environment, the auxiliary vector, no descriptor but 0-2; exits 0 when all hold, else the number of the first failed check. */
#include <elf.h>

static long raw_syscall3(long n, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

static __attribute__((noreturn)) void leave(long code)
{
    for (;;)
        raw_syscall3(231 /* exit_group */, code, 0, 0);
}

static int same(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

__attribute__((noreturn)) void args_main(long *sp);
__attribute__((noreturn)) void args_main(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1), **envp = argv + argc + 1;
    if (argc < 1 || !argv[0] || argv[argc])
        leave(10);
    if (!same(argv[0], "args"))  /* elf_loader names each process after its file */
        leave(11);
    while (*envp)
        envp++;
    Elf64_auxv_t *aux = (Elf64_auxv_t *)(envp + 1);
    unsigned long page = 0, entry = 0, phdr = 0, random = 0;
    for (; aux->a_type != AT_NULL; aux++) {
        if (aux->a_type == AT_PAGESZ) page = aux->a_un.a_val;
        if (aux->a_type == AT_ENTRY) entry = aux->a_un.a_val;
        if (aux->a_type == AT_PHDR) phdr = aux->a_un.a_val;
        if (aux->a_type == AT_RANDOM) random = aux->a_un.a_val;
    }
    extern char _start[];
    if (page < 4096 || (page & (page - 1)))
        leave(12);
    if (entry != (unsigned long)_start)
        leave(13);
    if (!random)
        leave(14);
    if (phdr && ((Elf64_Phdr *)phdr)->p_type == 0xdeadbeef) /* mapped where AT_PHDR says: readable */
        leave(15);
    if (raw_syscall3(72 /* fcntl */, 3, 1 /* F_GETFD */, 0) != -9 /* -EBADF: the stub's channel is gone */)
        leave(16);
    leave(0);
}

/* The System V start: argc at the stack pointer; passed on to args_main before realigning. */
__asm__(".text\n.globl _start\n.type _start,@function\n_start:\n"
        "  xor %ebp, %ebp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call args_main\n  hlt\n");
