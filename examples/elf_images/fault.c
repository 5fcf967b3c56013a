/* SPDX-License-Identifier: MIT */
/* fault.c — a freestanding static program that writes to its own read-only code: the runner must report it killed by SIGSEGV. */

__attribute__((noreturn)) void fault_main(void);
__attribute__((noreturn)) void fault_main(void)
{
    extern char _start[];
    *(volatile char *)_start = 0; /* .text is mapped READ|EXECUTE from its MDL buffer */
    for (;;)
        __asm__ volatile("syscall" : : "a"(231L), "D"(0L) : "rcx", "r11", "memory");
}

__asm__(".text\n.globl _start\n.type _start,@function\n_start:\n"
        "  xor %ebp, %ebp\n  and $-16, %rsp\n  call fault_main\n  hlt\n");
