/* SPDX-License-Identifier: MIT */
/* src/entity/stub.h — the stub's last steps: the program's initial stack, then the jump into it. */
#ifndef KVMM_ENTITY_STUB_H
#define KVMM_ENTITY_STUB_H

#include <coresrv/elf/elf_api.h>
#include <coresrv/entity/entity_api.h>
#include <rtl/retcode.h>
#include <stdint.h>

#define ENTITY_ARGS_MAX_WIRE (ENTITY_ARGS_MAX + 1) /* the name, then the arguments */
#define ENTITY_ENV_MAX_WIRE ENTITY_ENV_MAX

struct kvmm_stub_start {
    uint64_t entry, phdr;
    uint32_t phnum;
    unsigned argc, envc;
    char **argv, **envp;
    char name[16];
};

/* Allocates a stack (KnVmAllocate, lazily committed; RLIMIT_STACK, 8 MiB when unlimited) and lays
 * out the System V start frame on it: argc, argv, envp, auxv, then the strings. rcOk and the
 * frame's address, or KnVmAllocate's reason. */
Retcode kvmm_stub_build_stack(const struct kvmm_stub_start *start, uintptr_t *sp);

/* Names the process, closes every descriptor above 2, resets every signal to its default and
 * unblocks it, and jumps to the entry point with the stack pointer at sp. */
__attribute__((noreturn)) void kvmm_stub_jump(const struct kvmm_stub_start *start, uintptr_t sp);

#endif
