/* SPDX-License-Identifier: MIT */
/* src/entity/elf_parse.h — the ELF image parser behind KnElfCreateVmSegEx: bounds-checked, allocation-free, fuzzed. */
#ifndef KVMM_ELF_PARSE_H
#define KVMM_ELF_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define KVMM_ELF_MAX_LOADS 32u
/* The end of the user address space every supported host has (47 bits: x86-64's default
 * mmap window, AArch64 with 48-bit VAs reaches past it). */
#define KVMM_ELF_VADDR_END (1ull << 47)

struct kvmm_elf_load {
    uint64_t start;   /* page-aligned load address */
    uint64_t bytes;   /* page-multiple size of the buffer */
    uint64_t in_page; /* where the file bytes start in it (p_vaddr - start) */
    uint64_t offset;  /* p_offset */
    uint64_t filesz;  /* p_filesz */
    int flags;        /* VMM_FLAG_READ plus WRITE / EXECUTE */
};

struct kvmm_elf_info {
    uint64_t entry;
    unsigned nloads;
    struct kvmm_elf_load load[KVMM_ELF_MAX_LOADS]; /* sorted by start, disjoint pages */
    uint32_t sym_index, str_index;
    uint64_t sym_size, str_size;
    const uint8_t *build_id; /* into the image, or NULL */
    size_t build_id_size;
    uint64_t phoff, shoff; /* where the tables are in the image */
    unsigned phnum, shnum; /* shnum 0 when there is no section header table */
};

/*
 * Parses image[0..size) for a static executable of this host (elf_api.h lists the rules and
 * their order). Reads nothing outside the image and makes no assumption on its alignment.
 * 0, or -EINVAL (malformed), -ENOSYS (well-formed, not loadable here), -EEXIST (PT_LOADs share
 * a page). page is the page size (a power of two).
 */
int kvmm_elf_parse(const void *image, size_t size, uint64_t page, struct kvmm_elf_info *out);

/* The size of the header copy (ELF header, program headers, section headers) and the copy. */
size_t kvmm_elf_headers_size(const struct kvmm_elf_info *info);
void kvmm_elf_headers_copy(const void *image, const struct kvmm_elf_info *info, void *dst);

/* What EntityInitFromSegEx needs from a header copy made by kvmm_elf_headers_copy. */
struct kvmm_elf_hdr_view {
    uint64_t phdr;   /* where the program headers are in the new process (AT_PHDR), 0: unknown */
    unsigned phnum;
};

/* Checks a header copy: its size, class, machine, table sizes, and that sym/str name an
 * SHT_SYMTAB / SHT_STRTAB section of those sizes in it (all four 0: no tables). 0 or -EINVAL. */
int kvmm_elf_headers_check(const void *hdr, size_t size, uint32_t sym_index, uint64_t sym_size,
                           uint32_t str_index, uint64_t str_size, struct kvmm_elf_hdr_view *view);

#endif
