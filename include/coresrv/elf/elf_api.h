/* SPDX-License-Identifier: MIT */
/* coresrv/elf/elf_api.h — an ELF image in memory becomes VmSegs (MDL buffers), ready for EntityInitFromSegEx. */
#ifndef KOSVMM_CORESRV_ELF_ELF_API_H
#define KOSVMM_CORESRV_ELF_ELF_API_H

#include <rtl/types.h>
#include <rtl/retcode.h>
#include <coresrv/vmm/vmm_types.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * What kosvmm loads: static executables (ET_EXEC, no PT_INTERP, no PT_DYNAMIC) of the host's class,
 * byte order and machine (ELFCLASS64, little-endian, EM_X86_64 or EM_AARCH64), such as
 * freestanding programs linked with -static -nostdlib at a fixed address. Nothing is relocated.
 */
#define KOSVMM_ELF_MAX_SEGS 32u  /* PT_LOAD segments (with a non-zero p_memsz) an image may have */

/*
 * KnElfCreateVmSegEx: parses the image [image, image + imageSize) and puts each PT_LOAD segment
 * into its own MDL buffer with KnVmSegInitFromBuf: the page holding p_vaddr is the load address,
 * the file bytes go in at p_vaddr's offset in that page, the rest (the .bss) reads as zero; the
 * protection is READ plus PF_W / PF_X; the image's NT_GNU_BUILD_ID (from a PT_NOTE) goes into every
 * VmSeg. The image is only read, never kept: it may be freed as soon as the call returns.
 *
 * Outputs, written only on success (kosvmm's choices where the SDK does not document them):
 *   *entry       e_entry;
 *   *segs        an array of *segsCount VmSegs, sorted by load address, one per PT_LOAD whose
 *                p_memsz is not 0; each holds its own MDL handle (seg.h);
 *   *symIndex, *symSize  the section-header index and size in bytes of the first SHT_SYMTAB
 *                section, 0 and 0 when the image has none (index 0 is never a real table);
 *   *strIndex, *strSize  the same for the string table that symbol table links to (sh_link);
 *   *hdrData, *hdrSize   a copy of the headers: the ELF header exactly as in the image (e_phoff,
 *                e_shoff unchanged), then the e_phnum program headers, then the e_shnum section
 *                headers (none when e_shoff is 0); the tables follow each other with no gap.
 *                hdrData lives in the same allocation as segs and is freed with it.
 * Everything is freed with one KnElfFreeVmSeg(*segs, *segsCount), which also closes the handles.
 *
 * Errors, in the order they are checked; on any error nothing is allocated and no output written:
 *   rcInvalidArgument  image or an output pointer RTL_NULL; imageSize too small for the part
 *                      being read (truncated ELF header, program or section header table);
 *                      no ELF magic; a bad EI_CLASS/EI_DATA value; e_version or EI_VERSION not
 *                      EV_CURRENT; e_type neither ET_EXEC nor ET_DYN; e_ehsize, e_phentsize or
 *                      e_shentsize not the ELF64 sizes; e_phnum 0;
 *   rcUnimplemented    a well-formed image kosvmm does not load: ELFCLASS32, big-endian,
 *                      another machine, an OS ABI other than SYSV/GNU, ET_DYN (PIE or shared
 *                      object), PT_INTERP or PT_DYNAMIC (dynamically linked), extended
 *                      numbering (e_phnum PN_XNUM, or e_shnum 0 with e_shoff set);
 *   rcInvalidArgument  a header table or PT_LOAD outside the image (offset + size overflowing
 *                      or past imageSize); p_filesz > p_memsz; a segment reaching page 0 or past
 *                      the user address space (47 bits), p_vaddr + p_memsz overflowing; more than
 *                      KOSVMM_ELF_MAX_SEGS PT_LOADs; no PT_LOAD with a non-zero p_memsz;
 *   rcAlreadyExists    two PT_LOAD segments share a page (each becomes its own buffer, mapped
 *                      at a fixed address: they cannot overlap);
 *   rcInvalidArgument  e_entry not inside a PT_LOAD with PF_X; a symbol table whose bytes lie
 *                      outside the image, or whose sh_link is not an SHT_STRTAB inside it;
 *   rcOutOfMemory, rcQuotaExceeded, rcSecurityDisallow  from KnVmSegInitFromBuf (memory,
 *                      descriptors, the policy's SegInit / MdlCreate / W^X / quotas).
 */
Retcode KnElfCreateVmSegEx(const void *image, rtl_size_t imageSize, rtl_uintptr_t *entry, VmSeg **segs,
                           rtl_size_t *segsCount, rtl_uint32_t *symIndex, rtl_size_t *symSize,
                           rtl_uint32_t *strIndex, rtl_size_t *strSize, void **hdrData, rtl_size_t *hdrSize);

/*
 * Frees what KnElfCreateVmSegEx returned: closes the segments' MDL handles (the values it
 * created, whatever the caller wrote into the array since) and frees the array and the header
 * copy. Mappings already made from the handles stay valid (a running entity keeps its memory).
 * Returns rcOk, or rcInvalidArgument, changing nothing, when segs is RTL_NULL, was not returned
 * by KnElfCreateVmSegEx, was already freed, or segsCount is not the count returned with it.
 */
Retcode KnElfFreeVmSeg(VmSeg *segs, rtl_size_t segsCount);

#ifdef __cplusplus
}
#endif

#endif /* KOSVMM_CORESRV_ELF_ELF_API_H */
