/* SPDX-License-Identifier: MIT */
/* src/entity/elf_parse.c — the ELF image parser behind KnElfCreateVmSegEx: every offset and size checked before it is used. */
#include "entity/elf_parse.h"

#include <elf.h>
#include <errno.h>
#include <string.h>
#include <vmm/flags.h>

#if defined(__x86_64__)
#define HOST_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define HOST_MACHINE EM_AARCH64
#else
#define HOST_MACHINE EM_NONE /* no image is loadable: every one gets -ENOSYS */
#endif

/* [off, off + len) inside [0, size), without overflowing. */
static int in_image(uint64_t off, uint64_t len, size_t size)
{
    return off <= size && len <= size - off;
}

/* The image may sit at any alignment (a file read into a byte buffer at an odd offset): every
 * header is copied out rather than read in place. */
static void read_at(const void *image, uint64_t off, void *dst, size_t len)
{
    memcpy(dst, (const uint8_t *)image + off, len);
}

static int check_ident(const unsigned char *ident)
{
    if (memcmp(ident, ELFMAG, SELFMAG) != 0)
        return -EINVAL;
    if (ident[EI_CLASS] != ELFCLASS32 && ident[EI_CLASS] != ELFCLASS64)
        return -EINVAL;
    if (ident[EI_DATA] != ELFDATA2LSB && ident[EI_DATA] != ELFDATA2MSB)
        return -EINVAL;
    if (ident[EI_VERSION] != EV_CURRENT)
        return -EINVAL;
    if (ident[EI_CLASS] != ELFCLASS64 || ident[EI_DATA] != ELFDATA2LSB)
        return -ENOSYS;
    return 0;
}

/* The ELF header's own rules, shared by the parser and the header-copy check. */
static int check_ehdr(const Elf64_Ehdr *eh)
{
    if (eh->e_type != ET_EXEC && eh->e_type != ET_DYN)
        return -EINVAL;
    if (eh->e_version != EV_CURRENT || eh->e_ehsize < sizeof(Elf64_Ehdr) || eh->e_phentsize != sizeof(Elf64_Phdr) ||
        eh->e_phnum == 0 || (eh->e_shoff != 0 && eh->e_shentsize != sizeof(Elf64_Shdr)))
        return -EINVAL;
    if (eh->e_machine != HOST_MACHINE || eh->e_type == ET_DYN ||
        (eh->e_ident[EI_OSABI] != ELFOSABI_SYSV && eh->e_ident[EI_OSABI] != ELFOSABI_GNU))
        return -ENOSYS;
    if (eh->e_phnum == PN_XNUM || (eh->e_shoff != 0 && eh->e_shnum == 0))
        return -ENOSYS;
    return 0;
}

/* The NT_GNU_BUILD_ID note of a PT_NOTE segment (already known to lie inside the image). */
static void find_build_id(const uint8_t *image, const Elf64_Phdr *ph, struct kvmm_elf_info *out)
{
    uint64_t pos = ph->p_offset, end = ph->p_offset + ph->p_filesz;
    while (end - pos >= sizeof(Elf64_Nhdr)) {
        Elf64_Nhdr n;
        read_at(image, pos, &n, sizeof n);
        uint64_t name = ((uint64_t)n.n_namesz + 3) & ~3ull, desc = ((uint64_t)n.n_descsz + 3) & ~3ull;
        uint64_t left = end - pos - sizeof n;
        if (name > left || desc > left - name)
            return;
        if (n.n_type == NT_GNU_BUILD_ID && n.n_namesz == 4 && memcmp(image + pos + sizeof n, "GNU", 4) == 0 &&
            n.n_descsz > 0 && n.n_descsz <= 64 && !out->build_id) {
            out->build_id = image + pos + sizeof n + name;
            out->build_id_size = n.n_descsz;
            return;
        }
        pos += sizeof n + name + desc;
    }
}

static int add_load(const Elf64_Phdr *ph, size_t size, uint64_t page, struct kvmm_elf_info *out)
{
    if (!in_image(ph->p_offset, ph->p_filesz, size) || ph->p_filesz > ph->p_memsz)
        return -EINVAL;
    if (ph->p_memsz == 0)
        return 0; /* occupies nothing: loaders skip it */
    uint64_t start = ph->p_vaddr & ~(page - 1), end;
    if (__builtin_add_overflow(ph->p_vaddr, ph->p_memsz, &end) || end > KVMM_ELF_VADDR_END || start == 0)
        return -EINVAL;
    end = (end + page - 1) & ~(page - 1);
    if (out->nloads == KVMM_ELF_MAX_LOADS)
        return -EINVAL;
    struct kvmm_elf_load *l = &out->load[out->nloads++];
    l->start = start;
    l->bytes = end - start;
    l->in_page = ph->p_vaddr - start;
    l->offset = ph->p_offset;
    l->filesz = ph->p_filesz;
    l->flags = VMM_FLAG_READ | (ph->p_flags & PF_W ? VMM_FLAG_WRITE : 0) | (ph->p_flags & PF_X ? VMM_FLAG_EXECUTE : 0);
    return 0;
}

/* Sorted by address (the ELF rule, not trusted), then no page may belong to two segments. */
static int sort_and_check_overlap(struct kvmm_elf_info *out)
{
    for (unsigned i = 1; i < out->nloads; i++) {
        struct kvmm_elf_load l = out->load[i];
        unsigned j = i;
        for (; j > 0 && out->load[j - 1].start > l.start; j--)
            out->load[j] = out->load[j - 1];
        out->load[j] = l;
    }
    for (unsigned i = 1; i < out->nloads; i++)
        if (out->load[i].start < out->load[i - 1].start + out->load[i - 1].bytes)
            return -EEXIST;
    return 0;
}

static int entry_executable(const struct kvmm_elf_info *out)
{
    for (unsigned i = 0; i < out->nloads; i++) {
        const struct kvmm_elf_load *l = &out->load[i];
        if ((l->flags & VMM_FLAG_EXECUTE) && out->entry >= l->start + l->in_page &&
            out->entry - l->start < l->bytes)
            return 1;
    }
    return 0;
}

/* The first SHT_SYMTAB and its string table; their bytes must lie in the image. */
static int find_symtab(const uint8_t *image, size_t size, struct kvmm_elf_info *out)
{
    for (unsigned i = 1; i < out->shnum; i++) {
        Elf64_Shdr sh;
        read_at(image, out->shoff + (uint64_t)i * sizeof sh, &sh, sizeof sh);
        if (sh.sh_type != SHT_SYMTAB)
            continue;
        if (!in_image(sh.sh_offset, sh.sh_size, size) || sh.sh_link == 0 || sh.sh_link >= out->shnum)
            return -EINVAL;
        Elf64_Shdr st;
        read_at(image, out->shoff + (uint64_t)sh.sh_link * sizeof st, &st, sizeof st);
        if (st.sh_type != SHT_STRTAB || !in_image(st.sh_offset, st.sh_size, size))
            return -EINVAL;
        out->sym_index = i;
        out->sym_size = sh.sh_size;
        out->str_index = sh.sh_link;
        out->str_size = st.sh_size;
        return 0;
    }
    return 0;
}

int kvmm_elf_parse(const void *image, size_t size, uint64_t page, struct kvmm_elf_info *out)
{
    const uint8_t *img = image;
    int rc;
    memset(out, 0, sizeof *out);
    if (size < EI_NIDENT)
        return -EINVAL;
    if ((rc = check_ident(img)))
        return rc;
    Elf64_Ehdr eh;
    if (size < sizeof eh)
        return -EINVAL;
    read_at(img, 0, &eh, sizeof eh);
    if ((rc = check_ehdr(&eh)))
        return rc;
    if (!in_image(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), size))
        return -EINVAL;
    if (eh.e_shoff != 0 && !in_image(eh.e_shoff, (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr), size))
        return -EINVAL;
    out->entry = eh.e_entry;
    out->phoff = eh.e_phoff;
    out->phnum = eh.e_phnum;
    out->shoff = eh.e_shoff;
    out->shnum = eh.e_shoff ? eh.e_shnum : 0;

    /* Dynamic linking is refused first, whatever else the headers say. */
    for (unsigned i = 0; i < out->phnum; i++) {
        Elf64_Phdr ph;
        read_at(img, eh.e_phoff + (uint64_t)i * sizeof ph, &ph, sizeof ph);
        if (ph.p_type == PT_INTERP || ph.p_type == PT_DYNAMIC)
            return -ENOSYS;
    }
    for (unsigned i = 0; i < out->phnum; i++) {
        Elf64_Phdr ph;
        read_at(img, eh.e_phoff + (uint64_t)i * sizeof ph, &ph, sizeof ph);
        if (ph.p_type == PT_LOAD && (rc = add_load(&ph, size, page, out)))
            return rc;
        if (ph.p_type == PT_NOTE && in_image(ph.p_offset, ph.p_filesz, size))
            find_build_id(img, &ph, out);
    }
    if (out->nloads == 0)
        return -EINVAL;
    if ((rc = sort_and_check_overlap(out)))
        return rc;
    if (!entry_executable(out))
        return -EINVAL;
    return find_symtab(img, size, out);
}

size_t kvmm_elf_headers_size(const struct kvmm_elf_info *info)
{
    return sizeof(Elf64_Ehdr) + (size_t)info->phnum * sizeof(Elf64_Phdr) + (size_t)info->shnum * sizeof(Elf64_Shdr);
}

void kvmm_elf_headers_copy(const void *image, const struct kvmm_elf_info *info, void *dst)
{
    uint8_t *d = dst;
    memcpy(d, image, sizeof(Elf64_Ehdr));
    d += sizeof(Elf64_Ehdr);
    memcpy(d, (const uint8_t *)image + info->phoff, (size_t)info->phnum * sizeof(Elf64_Phdr));
    d += (size_t)info->phnum * sizeof(Elf64_Phdr);
    if (info->shnum)
        memcpy(d, (const uint8_t *)image + info->shoff, (size_t)info->shnum * sizeof(Elf64_Shdr));
}

/* Where the kernel would say the program headers are: PT_PHDR, else the PT_LOAD holding them. */
static uint64_t phdr_address(const Elf64_Ehdr *eh, const uint8_t *ph_table)
{
    uint64_t table = (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr);
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, ph_table + (size_t)i * sizeof ph, sizeof ph);
        if (ph.p_type == PT_PHDR)
            return ph.p_vaddr;
    }
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, ph_table + (size_t)i * sizeof ph, sizeof ph);
        if (ph.p_type == PT_LOAD && eh->e_phoff >= ph.p_offset && eh->e_phoff - ph.p_offset <= ph.p_filesz &&
            table <= ph.p_filesz - (eh->e_phoff - ph.p_offset))
            return ph.p_vaddr + (eh->e_phoff - ph.p_offset);
    }
    return 0;
}

int kvmm_elf_headers_check(const void *hdr, size_t size, uint32_t sym_index, uint64_t sym_size,
                           uint32_t str_index, uint64_t str_size, struct kvmm_elf_hdr_view *view)
{
    Elf64_Ehdr eh;
    if (size < sizeof eh)
        return -EINVAL;
    read_at(hdr, 0, &eh, sizeof eh);
    if (check_ident(eh.e_ident) || check_ehdr(&eh))
        return -EINVAL;
    unsigned shnum = eh.e_shoff ? eh.e_shnum : 0;
    if (size != sizeof eh + (size_t)eh.e_phnum * sizeof(Elf64_Phdr) + (size_t)shnum * sizeof(Elf64_Shdr))
        return -EINVAL;
    const uint8_t *sh_table = (const uint8_t *)hdr + sizeof eh + (size_t)eh.e_phnum * sizeof(Elf64_Phdr);
    if (sym_index || sym_size || str_index || str_size) {
        Elf64_Shdr sym, str;
        if (sym_index == 0 || str_index == 0 || sym_index >= shnum || str_index >= shnum)
            return -EINVAL;
        memcpy(&sym, sh_table + (size_t)sym_index * sizeof sym, sizeof sym);
        memcpy(&str, sh_table + (size_t)str_index * sizeof str, sizeof str);
        if (sym.sh_type != SHT_SYMTAB || sym.sh_size != sym_size || sym.sh_link != str_index ||
            str.sh_type != SHT_STRTAB || str.sh_size != str_size)
            return -EINVAL;
    }
    view->phdr = phdr_address(&eh, (const uint8_t *)hdr + sizeof eh);
    view->phnum = eh.e_phnum;
    return 0;
}
