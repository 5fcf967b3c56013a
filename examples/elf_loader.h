/* SPDX-License-Identifier: MIT */
/* elf_loader.h — the loader-to-stub protocol of the Einit-style example: what follows the segment messages. */
#ifndef KOSVMM_EXAMPLE_ELF_LOADER_H
#define KOSVMM_EXAMPLE_ELF_LOADER_H

#include <stdint.h>

/*
 * The loader sends, over one channel:
 *   one handle message per PT_LOAD segment: the segment's MDL handle, with the VmSeg describing it
 *   as the payload (its h field is the loader's handle value, meaningless to the stub);
 *   then one payload-only message, struct elf_start.
 * The stub tells them apart by the handle it receives: INVALID_HANDLE means payload only.
 */
struct elf_start {
    uint64_t entry;     /* e_entry: where the stub jumps once every segment is mapped */
    uint32_t segments;  /* how many segment messages came before */
    uint32_t reserved;
};

#endif
