/* SPDX-License-Identifier: MIT */
/* hello_elf.c — a freestanding static program (no libc, raw syscalls) that examples/elf_loader.c loads from MDL segments. */

/* The loader must copy .data from the file and leave .bss zero; both are checked before printing. */
static volatile long data_word = 0x5eed;
static volatile char bss_block[8192];

static long raw_syscall3(long n, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

__attribute__((noreturn)) void hello_main(void);
__attribute__((noreturn)) void hello_main(void)
{
    static const char line[] = "hello from an ELF loaded through MDL segments\n";
    long code = 42;
    for (unsigned long i = 0; i < sizeof bss_block; i++)
        if (bss_block[i] != 0)
            code = 3;
    if (data_word != 0x5eed)
        code = 4;
    raw_syscall3(1 /* write */, 1, (long)line, sizeof line - 1);
    for (;;)
        raw_syscall3(60 /* exit */, code, 0, 0);
}

/* Entered either by the kernel (stack 16-byte aligned, no return address) or called by the stub:
 * realign so hello_main sees the ABI's stack either way. */
__asm__(".text\n.globl _start\n.type _start,@function\n_start:\n"
        "  xor %ebp, %ebp\n  and $-16, %rsp\n  call hello_main\n  hlt\n");
