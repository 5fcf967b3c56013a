/* SPDX-License-Identifier: MIT */
/* tests/test_entity.c — KnElfCreateVmSegEx / KnElfFreeVmSeg and EntityInitFromSegEx / EntityRun / EntityWait / EntityFree: images built here, run as real processes. */
#include <coresrv/elf/elf_api.h>
#include <coresrv/entity/entity_api.h>
#include <coresrv/handle/handle_api.h>
#include <elf.h>
#include <rtl/retcode_hr.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#if defined(__x86_64__)
#define HOST_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define HOST_MACHINE EM_AARCH64
#endif

/*
 * Test images, built in memory: an ELF header, program headers at 64, code at file offset 0x1000
 * loaded READ|EXECUTE at CODE_VA, 16 data bytes at 0x1100 loaded READ|WRITE at DATA_VA with a
 * page of .bss after them. Optional section headers: a symbol table and its string table.
 */
#define CODE_VA 0x20000000ul
#define DATA_VA 0x20001000ul
#define CODE_OFF 0x1000u
#define DATA_OFF 0x1100u
#define SYM_OFF 0x1180u
#define STR_OFF 0x11a0u
#define SH_OFF 0x1200u
#define IMG_MAX 0x1400u

struct image {
    _Alignas(16) uint8_t b[IMG_MAX];
    size_t size;
};

#if defined(__x86_64__)
static const uint8_t code_exit42[] = {0xbf, 0x2a, 0, 0, 0, 0xb8, 0xe7, 0, 0, 0, 0x0f, 0x05};
/* exit_group(argc + 16 * envc) */
static const uint8_t code_argenv[] = {0x48, 0x8b, 0x3c, 0x24, 0x48, 0x8d, 0x74, 0xfc, 0x10, 0x31, 0xc9, 0x48, 0x83,
                                      0x3c, 0xce, 0x00, 0x74, 0x05, 0x48, 0xff, 0xc1, 0xeb, 0xf4, 0x48, 0xc1, 0xe1,
                                      0x04, 0x48, 0x01, 0xcf, 0xb8, 0xe7, 0, 0, 0, 0x0f, 0x05};
static const uint8_t code_spin[] = {0xeb, 0xfe};
/* exit_group(data[0] + data[1]) read from DATA_VA: 40 + 2 when .data was copied */
static const uint8_t code_data[] = {0x48, 0xbe, 0x00, 0x10, 0x00, 0x20, 0, 0, 0, 0, 0x48, 0x8b, 0x3e, 0x48,
                                    0x03, 0x7e, 0x08, 0xb8, 0xe7, 0, 0, 0, 0x0f, 0x05};
/* writes its own code: SIGSEGV */
static const uint8_t code_fault[] = {0x48, 0xbe, 0x00, 0x00, 0x00, 0x20, 0, 0, 0, 0, 0x48, 0x89, 0x36, 0xeb, 0xfe};
#define CAN_RUN 1
#else
static const uint8_t code_exit42[] = {0};
#define CAN_RUN 0
#endif

static Elf64_Ehdr *ehdr(struct image *im) { return (Elf64_Ehdr *)im->b; }
static Elf64_Phdr *phdr(struct image *im, int i) { return (Elf64_Phdr *)(im->b + 64) + i; }
static Elf64_Shdr *shdr(struct image *im, int i) { return (Elf64_Shdr *)(im->b + SH_OFF) + i; }

static void build(struct image *im, const uint8_t *code, size_t len, int sections)
{
    memset(im, 0, sizeof *im);
    Elf64_Ehdr *eh = ehdr(im);
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_EXEC;
    eh->e_machine = HOST_MACHINE;
    eh->e_version = EV_CURRENT;
    eh->e_entry = CODE_VA;
    eh->e_phoff = 64;
    eh->e_ehsize = sizeof *eh;
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = 2;
    *phdr(im, 0) = (Elf64_Phdr){.p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_offset = CODE_OFF,
                                .p_vaddr = CODE_VA, .p_filesz = len, .p_memsz = len};
    *phdr(im, 1) = (Elf64_Phdr){.p_type = PT_LOAD, .p_flags = PF_R | PF_W, .p_offset = DATA_OFF,
                                .p_vaddr = DATA_VA, .p_filesz = 16, .p_memsz = 0x1800};
    memcpy(im->b + CODE_OFF, code, len);
    uint64_t data[2] = {40, 2};
    memcpy(im->b + DATA_OFF, data, sizeof data);
    im->size = SH_OFF;
    if (sections) {
        eh->e_shoff = SH_OFF;
        eh->e_shentsize = sizeof(Elf64_Shdr);
        eh->e_shnum = 3;
        *shdr(im, 1) = (Elf64_Shdr){.sh_type = SHT_SYMTAB, .sh_offset = SYM_OFF, .sh_size = 24, .sh_link = 2,
                                    .sh_entsize = 24};
        *shdr(im, 2) = (Elf64_Shdr){.sh_type = SHT_STRTAB, .sh_offset = STR_OFF, .sh_size = 8};
        im->size = SH_OFF + 3 * sizeof(Elf64_Shdr);
    }
}

/* What KnElfCreateVmSegEx gave. */
struct segs {
    rtl_uintptr_t entry;
    VmSeg *segs;
    rtl_size_t count, sym_size, str_size, hdr_size;
    rtl_uint32_t sym, str;
    void *hdr;
};

static Retcode create(const void *img, size_t size, struct segs *s)
{
    return KnElfCreateVmSegEx(img, size, &s->entry, &s->segs, &s->count, &s->sym, &s->sym_size, &s->str,
                              &s->str_size, &s->hdr, &s->hdr_size);
}

/* The segments of an image built from code (see build), asserted to be created; the caller frees
 * them with KnElfFreeVmSeg. */
static struct segs build_segments(const uint8_t *code, size_t len, int sections)
{
    struct image im;
    build(&im, code, len, sections);
    struct segs s;
    ck_assert_uint_eq(create(im.b, im.size, &s), rcOk);
    return s;
}

/* What must come back to where it was after any failure: descriptors, handles, regions, children. */
struct snapshot {
    int fds;
    rtl_uint64_t handles, regions;
};

static struct snapshot snap(void)
{
    kosvmm_usage u = {.size = sizeof(kosvmm_usage)};
    ck_assert_uint_eq(kosvmm_get_usage(&u), rcOk);
    return (struct snapshot){tu_fd_count(), u.handles, tu_stats().regions};
}

static void assert_unchanged(struct snapshot was)
{
    struct snapshot now = snap();
    ck_assert_int_eq(now.fds, was.fds);
    ck_assert_uint_eq(now.handles, was.handles);
    ck_assert_uint_eq(now.regions, was.regions);
    siginfo_t si;
    errno = 0;
    ck_assert_int_eq(waitid(P_ALL, 0, &si, WEXITED | WNOHANG | __WALL), -1); /* no child, no zombie */
    ck_assert_int_eq(errno, ECHILD);
}

/* A malformed or foreign image: the documented code, nothing allocated, no output written. */
static void expect_refused(const void *img, size_t size, Retcode want)
{
    struct snapshot was = snap();
    struct segs s;
    memset(&s, 0xa5, sizeof s);
    struct segs poison = s;
    ck_assert_msg(create(img, size, &s) == want, "got %s, want %s", rtl_retcode_name(create(img, size, &s)),
                  rtl_retcode_name(want));
    ck_assert_mem_eq(&s, &poison, sizeof s);
    assert_unchanged(was);
}

START_TEST(parse_valid)
{
    struct snapshot was = snap();
    struct image im;
    build(&im, code_exit42, sizeof code_exit42, 1);
    struct segs s;
    ck_assert_uint_eq(create(im.b, im.size, &s), rcOk);
    ck_assert_uint_eq(s.entry, CODE_VA);
    ck_assert_uint_eq(s.count, 2);
    ck_assert_ptr_eq(s.segs[0].loadAddr, (void *)CODE_VA);
    ck_assert_uint_eq(s.segs[0].size, tu_page());
    ck_assert_uint_eq(s.segs[0].flags, VMM_FLAG_READ | VMM_FLAG_EXECUTE);
    ck_assert_uint_eq(s.segs[0].fileOffset, CODE_OFF);
    ck_assert_ptr_eq(s.segs[1].loadAddr, (void *)DATA_VA);
    ck_assert_uint_eq(s.segs[1].size, 2 * tu_page()); /* 0x1800 bytes of data and .bss */
    ck_assert_uint_eq(s.segs[1].flags, VMM_FLAG_READ | VMM_FLAG_WRITE);
    ck_assert_uint_eq(s.sym, 1);
    ck_assert_uint_eq(s.sym_size, 24);
    ck_assert_uint_eq(s.str, 2);
    ck_assert_uint_eq(s.str_size, 8);
    /* The header copy: ELF header as in the image, then the program and section header tables. */
    ck_assert_uint_eq(s.hdr_size, 64 + 2 * 56 + 3 * 64);
    ck_assert_mem_eq(s.hdr, im.b, 64 + 2 * 56);
    ck_assert_mem_eq((uint8_t *)s.hdr + 64 + 2 * 56, im.b + SH_OFF, 3 * 64);
    /* The data segment's buffer: the file bytes, then zeros. */
    void *at;
    ck_assert_uint_eq(KnPmmMdlMap(s.segs[1].h, 0, s.segs[1].size, RTL_NULL, VMM_FLAG_READ, &at), rcOk);
    ck_assert_uint_eq(((uint64_t *)at)[0], 40);
    ck_assert_uint_eq(((uint64_t *)at)[1], 2);
    for (size_t i = 16; i < s.segs[1].size; i++)
        ck_assert_uint_eq(((uint8_t *)at)[i], 0);
    ck_assert_uint_eq(KnVmUnmap(at, s.segs[1].size), rcOk);
    ck_assert_uint_eq(KnElfFreeVmSeg(s.segs, s.count), rcOk);
    assert_unchanged(was);
}
END_TEST

START_TEST(parse_bad_args)
{
    struct image im;
    build(&im, code_exit42, sizeof code_exit42, 0);
    struct segs s;
    memset(&s, 0, sizeof s);
    ck_assert_uint_eq(KnElfCreateVmSegEx(RTL_NULL, im.size, &s.entry, &s.segs, &s.count, &s.sym, &s.sym_size,
                                         &s.str, &s.str_size, &s.hdr, &s.hdr_size), rcInvalidArgument);
    ck_assert_uint_eq(KnElfCreateVmSegEx(im.b, im.size, RTL_NULL, &s.segs, &s.count, &s.sym, &s.sym_size, &s.str,
                                         &s.str_size, &s.hdr, &s.hdr_size), rcInvalidArgument);
    ck_assert_uint_eq(KnElfCreateVmSegEx(im.b, im.size, &s.entry, RTL_NULL, &s.count, &s.sym, &s.sym_size, &s.str,
                                         &s.str_size, &s.hdr, &s.hdr_size), rcInvalidArgument);
    ck_assert_uint_eq(KnElfCreateVmSegEx(im.b, im.size, &s.entry, &s.segs, &s.count, &s.sym, &s.sym_size, &s.str,
                                         &s.str_size, RTL_NULL, &s.hdr_size), rcInvalidArgument);
    ck_assert_uint_eq(KnElfCreateVmSegEx(im.b, im.size, &s.entry, &s.segs, &s.count, &s.sym, &s.sym_size, &s.str,
                                         &s.str_size, &s.hdr, RTL_NULL), rcInvalidArgument);
    ck_assert_ptr_null(s.segs);
}
END_TEST

/* Every prefix of a valid image is refused: the parser never reads past imageSize. */
START_TEST(parse_every_truncation)
{
    struct image im;
    build(&im, code_exit42, sizeof code_exit42, 1);
    for (size_t n = 0; n < im.size; n++) {
        /* A copy of exactly n bytes on the heap: ASan reports any read past it. */
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, im.b, n);
        struct segs s;
        Retcode rc = create(cut, n, &s);
        ck_assert_msg(rc == rcInvalidArgument, "%zu bytes: %s", n, rtl_retcode_name(rc));
        free(cut);
    }
}
END_TEST

START_TEST(parse_foreign)
{
    struct image im;
    build(&im, code_exit42, sizeof code_exit42, 0);
    im.b[0] = 0x7e; /* no magic */
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_ident[EI_CLASS] = ELFCLASS32;
    expect_refused(im.b, im.size, rcUnimplemented);
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_ident[EI_CLASS] = 7;
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_ident[EI_DATA] = ELFDATA2MSB;
    expect_refused(im.b, im.size, rcUnimplemented);
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_machine = HOST_MACHINE == EM_X86_64 ? EM_AARCH64 : EM_X86_64;
    expect_refused(im.b, im.size, rcUnimplemented);
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_ident[EI_OSABI] = ELFOSABI_FREEBSD;
    expect_refused(im.b, im.size, rcUnimplemented);
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_type = ET_REL;
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_version = 2;
    expect_refused(im.b, im.size, rcInvalidArgument);
}
END_TEST

START_TEST(parse_dynamic)
{
    struct image im;
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_type = ET_DYN; /* PIE or shared object: would need relocation */
    expect_refused(im.b, im.size, rcUnimplemented);
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_phnum = 3;
    *phdr(&im, 2) = (Elf64_Phdr){.p_type = PT_INTERP, .p_offset = DATA_OFF, .p_filesz = 8};
    expect_refused(im.b, im.size, rcUnimplemented);
    phdr(&im, 2)->p_type = PT_DYNAMIC;
    expect_refused(im.b, im.size, rcUnimplemented);
}
END_TEST

START_TEST(parse_bad_headers)
{
    struct image im;
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_phentsize = 32;
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_phnum = 0;
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_phnum = PN_XNUM;
    expect_refused(im.b, im.size, rcUnimplemented);
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_phoff = im.size - 60; /* the table runs past the end */
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_phoff = UINT64_MAX - 8; /* offset + size overflows */
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 1);
    ehdr(&im)->e_shoff = im.size - 64; /* section table past the end */
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 1);
    ehdr(&im)->e_shentsize = 40;
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 1);
    ehdr(&im)->e_shnum = 0; /* extended numbering */
    expect_refused(im.b, im.size, rcUnimplemented);
    build(&im, code_exit42, sizeof code_exit42, 1);
    shdr(&im, 1)->sh_offset = im.size; /* symbol table bytes outside */
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 1);
    shdr(&im, 1)->sh_link = 0; /* no string table */
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 1);
    shdr(&im, 2)->sh_type = SHT_PROGBITS;
    expect_refused(im.b, im.size, rcInvalidArgument);
}
END_TEST

START_TEST(parse_bad_segments)
{
    struct image im;
    build(&im, code_exit42, sizeof code_exit42, 0);
    phdr(&im, 1)->p_offset = im.size; /* file bytes past the end */
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    phdr(&im, 1)->p_filesz = im.size;
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    phdr(&im, 1)->p_offset = UINT64_MAX - 4; /* offset + filesz overflows */
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    phdr(&im, 1)->p_filesz = 0x2000; /* more file bytes than memory */
    phdr(&im, 1)->p_memsz = 0x1000;
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    phdr(&im, 1)->p_memsz = UINT64_MAX - 0x100; /* vaddr + memsz overflows */
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    phdr(&im, 1)->p_vaddr = (1ull << 47) - 0x1000; /* past the user address space */
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    phdr(&im, 1)->p_vaddr = 0x10; /* page 0 */
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    phdr(&im, 1)->p_vaddr = CODE_VA + 0x800; /* shares the code's page */
    expect_refused(im.b, im.size, rcAlreadyExists);
    build(&im, code_exit42, sizeof code_exit42, 0);
    phdr(&im, 0)->p_vaddr = DATA_VA + 0x1000; /* inside the data segment, listed first */
    ehdr(&im)->e_entry = DATA_VA + 0x1000;
    expect_refused(im.b, im.size, rcAlreadyExists);
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_entry = DATA_VA; /* entry not executable */
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    phdr(&im, 0)->p_type = PT_NOTE; /* no PT_LOAD with memory at all */
    phdr(&im, 1)->p_memsz = phdr(&im, 1)->p_filesz = 0;
    expect_refused(im.b, im.size, rcInvalidArgument);
    build(&im, code_exit42, sizeof code_exit42, 0);
    ehdr(&im)->e_phnum = 34; /* 34 PT_LOADs, one page each: above KOSVMM_ELF_MAX_SEGS */
    for (int i = 0; i < 34; i++)
        *phdr(&im, i) = (Elf64_Phdr){.p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_vaddr = CODE_VA + i * 0x10000ul,
                                     .p_memsz = 1};
    expect_refused(im.b, im.size, rcInvalidArgument);
}
END_TEST

/* The second segment's buffer refused by the policy's quota: the first one's handle is closed. */
START_TEST(parse_fails_midway)
{
    struct image im;
    build(&im, code_exit42, sizeof code_exit42, 0);
    kosvmm_usage u = {.size = sizeof(kosvmm_usage)};
    kosvmm_policy pol = {.size = sizeof(kosvmm_policy)};
    ck_assert_uint_eq(kosvmm_get_usage(&u), rcOk);
    ck_assert_uint_eq(kosvmm_get_policy(&pol), rcOk);
    pol.max_mdl_buffers = u.mdl_buffers + 1;
    ck_assert_uint_eq(kosvmm_set_policy(&pol), rcOk);
    expect_refused(im.b, im.size, rcQuotaExceeded);
    pol.max_mdl_buffers = KOSVMM_UNLIMITED;
    ck_assert_uint_eq(kosvmm_set_policy(&pol), rcOk);
}
END_TEST

START_TEST(free_bad_args)
{
    struct segs s = build_segments(code_exit42, sizeof code_exit42, 0);
    struct snapshot was = snap();
    VmSeg foreign[2];
    ck_assert_uint_eq(KnElfFreeVmSeg(RTL_NULL, 2), rcInvalidArgument);
    ck_assert_uint_eq(KnElfFreeVmSeg(foreign, 2), rcInvalidArgument);
    ck_assert_uint_eq(KnElfFreeVmSeg(s.segs, 1), rcInvalidArgument);
    ck_assert_uint_eq(KnElfFreeVmSeg(s.segs + 1, 1), rcInvalidArgument);
    assert_unchanged(was);
    s.segs[0].h = INVALID_HANDLE; /* what the caller writes does not change what is closed */
    ck_assert_uint_eq(KnElfFreeVmSeg(s.segs, s.count), rcOk);
    ck_assert_uint_eq(snap().handles, was.handles - 2);
    ck_assert_uint_eq(KnElfFreeVmSeg(s.segs, s.count), rcInvalidArgument); /* double free */
}
END_TEST

/* ---- entities ---- */

static const EntityInfo test_info = {"test_entity.Test", 0, RTL_NULL, {RTL_NULL}, {RTL_NULL}, 0, RTL_NULL};

static Entity *init(const EntityInfo *info, const struct segs *s)
{
    return EntityInitFromSegEx(info, RTL_NULL, RTL_NULL, s->count, s->entry, s->segs, s->sym, s->sym_size, s->str,
                               s->str_size, s->hdr, s->hdr_size);
}

/* Runs an image built from code to its end: the exit code EntityWait reports. */
static rtl_uint32_t run_code(const EntityInfo *info, const uint8_t *code, size_t len)
{
    struct segs s = build_segments(code, len, 1);
    Entity *e = init(info, &s);
    ck_assert_msg(e != RTL_NULL, "EntityInitFromSegEx: %s", rtl_retcode_name(kosvmm_last_error()));
    ck_assert_uint_eq(kosvmm_last_error(), rcOk);
    ck_assert_uint_eq(KnElfFreeVmSeg(s.segs, s.count), rcOk); /* the entity holds its own handles */
    ck_assert_uint_eq(EntityRun(e), rcOk);
    rtl_uint32_t code_out = 0xdead, again = 0xbeef;
    ck_assert_uint_eq(EntityWait(e, INFINITE_TIMEOUT, &code_out), rcOk);
    ck_assert_uint_eq(EntityWait(e, 0, &again), rcOk); /* ended: the same code at once */
    ck_assert_uint_eq(again, code_out);
    EntityFree(e);
    return code_out;
}

START_TEST(run_exit_code)
{
    if (!CAN_RUN)
        return;
    struct snapshot was = snap();
    ck_assert_uint_eq(run_code(&test_info, code_exit42, sizeof code_exit42), 42);
    assert_unchanged(was);
}
END_TEST

#if CAN_RUN
START_TEST(run_data_and_bss)
{
    ck_assert_uint_eq(run_code(&test_info, code_data, sizeof code_data), 42);
}
END_TEST

START_TEST(run_killed_by_signal)
{
    rtl_uint32_t code = run_code(&test_info, code_fault, sizeof code_fault);
    ck_assert_uint_eq(code, KOSVMM_ENTITY_KILLED(SIGSEGV));
    ck_assert(KOSVMM_ENTITY_IS_KILLED(code));
    ck_assert_uint_eq(KOSVMM_ENTITY_SIGNAL(code), SIGSEGV);
}
END_TEST

START_TEST(run_args_and_env)
{
    EntityInfo info = test_info;
    info.args[0] = "one";
    info.args[1] = "two";
    info.args[2] = "three";
    info.envs[0] = "A=1";
    info.envs[1] = "B=2";
    /* argc (the name and three arguments) + 16 * envc */
    ck_assert_uint_eq(run_code(&info, code_argenv, sizeof code_argenv), 4 + 16 * 2);
    for (int i = 0; i < ENTITY_ARGS_MAX; i++)
        info.args[i] = "x";
    ck_assert_uint_eq(run_code(&info, code_argenv, sizeof code_argenv), 1 + ENTITY_ARGS_MAX + 16 * 2);
}
END_TEST

static volatile sig_atomic_t sigchld_seen;
static void on_sigchld(int sig)
{
    (void)sig;
    sigchld_seen++;
}

/*
 * kosvmm installs no handler and never calls waitpid(-1): the host's SIGCHLD handler and mask stay
 * as they were, and the exit code comes through the pidfd. The stub is an ordinary child once
 * it has exec'd, so the host's handler does see SIGCHLD; a host that sets SIGCHLD to SIG_IGN
 * (the kernel then reaps every child at once) loses the code: rcResourceNotFound.
 */
START_TEST(host_signals_untouched)
{
    struct sigaction sa = {.sa_handler = on_sigchld}, now;
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t mask, mask_now;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_SETMASK, &mask, NULL);
    struct segs s = build_segments(code_spin, sizeof code_spin, 0);
    Entity *e = init(&test_info, &s);
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(EntityRun(e), rcOk);
    rtl_uint32_t code = 7;
    ck_assert_int_eq(EntityWait(e, 50, &code), rcTimeout); /* the timeout: still running */
    ck_assert_uint_eq(code, 7);
    EntityFree(e); /* killed and reaped */
    ck_assert_uint_eq(run_code(&test_info, code_exit42, sizeof code_exit42), 42);
    sigaction(SIGCHLD, NULL, &now);
    ck_assert(now.sa_handler == on_sigchld);
    sigprocmask(SIG_SETMASK, NULL, &mask_now);
    ck_assert(sigismember(&mask_now, SIGUSR1) && !sigismember(&mask_now, SIGCHLD));

    signal(SIGCHLD, SIG_IGN);
    ck_assert_uint_eq(KnElfFreeVmSeg(s.segs, s.count), rcOk);
    s = build_segments(code_exit42, sizeof code_exit42, 0);
    e = init(&test_info, &s);
    ck_assert_uint_eq(EntityRun(e), rcOk);
    ck_assert_uint_eq(EntityWait(e, INFINITE_TIMEOUT, &code), rcResourceNotFound);
    EntityFree(e);
    ck_assert_uint_eq(KnElfFreeVmSeg(s.segs, s.count), rcOk);
}
END_TEST

START_TEST(states)
{
    struct snapshot was = snap();
    struct segs s = build_segments(code_exit42, sizeof code_exit42, 0);
    Entity *e = init(&test_info, &s);
    ck_assert_ptr_nonnull(e);
    rtl_uint32_t code;
    ck_assert_uint_eq(EntityWait(e, 0, &code), rcInvalidOperation); /* stopped: nothing to wait for */
    ck_assert_uint_eq(EntityWait(e, 0, RTL_NULL), rcInvalidArgument);
    EntityFree(e); /* a stopped entity is dismissed */
    ck_assert_uint_eq(EntityRun(e), rcInvalidArgument); /* freed */
    ck_assert_uint_eq(EntityWait(e, 0, &code), rcInvalidArgument);
    EntityFree(e); /* ignored */

    e = init(&test_info, &s);
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(EntityRun(e), rcOk);
    ck_assert_uint_eq(EntityRun(e), rcInvalidOperation);
    ck_assert_uint_eq(EntityWait(e, INFINITE_TIMEOUT, &code), rcOk);
    ck_assert_uint_eq(code, 42);
    EntityFree(e);

    /* A fork child's copy is not its own. */
    e = init(&test_info, &s);
    pid_t pid = fork();
    if (pid == 0) {
        TU_CHILD_CHECK(EntityRun(e) == rcInvalidOperation);
        TU_CHILD_CHECK(EntityWait(e, 0, &code) == rcInvalidOperation);
        EntityFree(e); /* ignored: must not kill the parent's stub */
        _exit(0);
    }
    tu_wait_child_ok(pid);
    ck_assert_uint_eq(EntityRun(e), rcOk);
    ck_assert_uint_eq(EntityWait(e, INFINITE_TIMEOUT, &code), rcOk);
    ck_assert_uint_eq(code, 42);
    EntityFree(e);

    Entity *bogus = (Entity *)&code;
    ck_assert_uint_eq(EntityRun(RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(EntityRun(bogus), rcInvalidArgument);
    ck_assert_uint_eq(EntityWait(bogus, 0, &code), rcInvalidArgument);
    EntityFree(RTL_NULL);
    EntityFree(bogus);
    ck_assert_uint_eq(KnElfFreeVmSeg(s.segs, s.count), rcOk);
    assert_unchanged(was);
}
END_TEST
#endif

/*
 * A transferred handle gets a revocation word, on a page kosvmm opens on first need and closes
 * once its last word is freed. Tests that count descriptors around a failed start hold one word
 * for their whole run, so the page's descriptor is there before and after.
 */
static void hold_revocation_page(void)
{
    Handle h, got;
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(KnPmmMdlCreate(tu_page(), VMM_FLAG_READ, &h), rcOk);
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, KOSVMM_RIGHT_READ, RTL_NULL, 0), rcOk);
    ck_assert_uint_eq(kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL), rcOk);
    ck_assert_uint_eq(KnHandleClose(got), rcOk);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
}

/* EntityInitFromSegEx with one thing wrong: RTL_NULL, the code, nothing left behind. */
static void expect_init_refused(const EntityInfo *info, const void *reserved, const struct segs *s, Retcode want)
{
    struct snapshot was = snap();
    Entity *e = EntityInitFromSegEx(info, RTL_NULL, reserved, s->count, s->entry, s->segs, s->sym, s->sym_size,
                                    s->str, s->str_size, s->hdr, s->hdr_size);
    ck_assert_ptr_null(e);
    ck_assert_msg(kosvmm_last_error() == want, "got %s, want %s", rtl_retcode_name(kosvmm_last_error()),
                  rtl_retcode_name(want));
    assert_unchanged(was);
}

START_TEST(init_bad_args)
{
    hold_revocation_page();
    struct segs good = build_segments(code_exit42, sizeof code_exit42, 1);
    struct segs s;
    EntityInfo info = test_info;
    static char long_string[KOSVMM_ENTITY_STRING_MAX + 2];
    memset(long_string, 'a', sizeof long_string - 1);

    expect_init_refused(RTL_NULL, RTL_NULL, &good, rcInvalidArgument);
    info.eiid = RTL_NULL;
    expect_init_refused(&info, RTL_NULL, &good, rcInvalidArgument);
    info.eiid = "";
    expect_init_refused(&info, RTL_NULL, &good, rcInvalidArgument);
    info.eiid = long_string;
    expect_init_refused(&info, RTL_NULL, &good, rcInvalidArgument);
    info = test_info;
    info.max_endpoints = 1;
    expect_init_refused(&info, RTL_NULL, &good, rcInvalidArgument);
    EndpointInfo ep = {RTL_NULL, 1, RTL_NULL};
    info.endpoints = &ep;
    expect_init_refused(&info, RTL_NULL, &good, rcInvalidArgument);
    info = test_info;
    info.flags = (EntityFlags)4;
    expect_init_refused(&info, RTL_NULL, &good, rcInvalidArgument);
    info = test_info;
    for (int i = 0; i <= ENTITY_ARGS_MAX; i++)
        info.args[i] = "x"; /* the terminator slot taken */
    expect_init_refused(&info, RTL_NULL, &good, rcInvalidArgument);
    info = test_info;
    info.envs[0] = "NOEQUALS";
    expect_init_refused(&info, RTL_NULL, &good, rcInvalidArgument);
    info = test_info;
    info.args[0] = long_string;
    expect_init_refused(&info, RTL_NULL, &good, rcInvalidArgument);
    expect_init_refused(&test_info, &info, &good, rcInvalidArgument); /* reserved */

    s = good;
    s.segs = RTL_NULL;
    expect_init_refused(&test_info, RTL_NULL, &s, rcInvalidArgument);
    s = good;
    s.count = 0;
    expect_init_refused(&test_info, RTL_NULL, &s, rcInvalidArgument);
    s.count = KOSVMM_ELF_MAX_SEGS + 1;
    expect_init_refused(&test_info, RTL_NULL, &s, rcInvalidArgument);

    VmSeg copy[2];
    s = good;
    s.segs = copy;
    memcpy(copy, good.segs, sizeof copy);
    copy[1].loadAddr = (char *)copy[1].loadAddr + 8;
    expect_init_refused(&test_info, RTL_NULL, &s, rcInvalidArgument);
    memcpy(copy, good.segs, sizeof copy);
    copy[1].loadAddr = RTL_NULL;
    expect_init_refused(&test_info, RTL_NULL, &s, rcInvalidArgument);
    memcpy(copy, good.segs, sizeof copy);
    copy[1].size = 100;
    expect_init_refused(&test_info, RTL_NULL, &s, rcInvalidArgument);
    memcpy(copy, good.segs, sizeof copy);
    copy[1].flags = VMM_FLAG_WRITE;
    expect_init_refused(&test_info, RTL_NULL, &s, rcInvalidArgument);
    memcpy(copy, good.segs, sizeof copy);
    copy[1].loadAddr = (void *)(UINTPTR_MAX & ~(uintptr_t)(tu_page() - 1));
    expect_init_refused(&test_info, RTL_NULL, &s, rcInvalidArgument); /* overflows */
    memcpy(copy, good.segs, sizeof copy);
    copy[1].loadAddr = copy[0].loadAddr;
    expect_init_refused(&test_info, RTL_NULL, &s, rcAlreadyExists);
    s = good;
    s.entry = DATA_VA; /* not executable */
    expect_init_refused(&test_info, RTL_NULL, &s, rcInvalidArgument);
    s = good;
    s.hdr = RTL_NULL; /* sizes without headers */
    expect_init_refused(&test_info, RTL_NULL, &s, rcInvalidArgument);
    s = good;
    s.hdr_size -= 1;
    expect_init_refused(&test_info, RTL_NULL, &s, rcInvalidArgument);
    s = good;
    s.sym = 2;
    expect_init_refused(&test_info, RTL_NULL, &s, rcInvalidArgument);
    s = good;
    s.str_size = 9;
    expect_init_refused(&test_info, RTL_NULL, &s, rcInvalidArgument);
    ck_assert_uint_eq(KnElfFreeVmSeg(good.segs, good.count), rcOk);
}
END_TEST

/* Segments made by hand (no headers), from another handle kind of trouble. */
START_TEST(init_handle_failures)
{
    hold_revocation_page();
    struct segs good = build_segments(code_exit42, sizeof code_exit42, 0);
    struct segs s;
    VmSeg copy[2];
    s = good;
    s.segs = copy;
    s.hdr = RTL_NULL;
    s.hdr_size = 0;

    memcpy(copy, good.segs, sizeof copy);
    copy[1].h = (Handle)12345; /* not a handle */
    expect_init_refused(&test_info, RTL_NULL, &s, rcInvalidArgument);

    /* A read-only buffer asked to be mapped writable: the stub's KnPmmMdlMap refuses. */
    memcpy(copy, good.segs, sizeof copy);
    ck_assert_uint_eq(KnVmSegInitFromBuf(&copy[1], (void *)DATA_VA, 0, tu_page(), VMM_FLAG_READ, 0, RTL_NULL, 0,
                                         RTL_NULL, 0), rcOk);
    copy[1].flags = VMM_FLAG_READ | VMM_FLAG_WRITE;
    expect_init_refused(&test_info, RTL_NULL, &s, rcNoCapability);
    /* A revoked handle: a clone whose origin was revoked (revoking reaches descendants whether or
     * not it also closes the origin, as KasperskyOS CE 1.3 does). */
    Handle origin = copy[1].h, clone;
    ck_assert_uint_eq(KnPmmMdlClone(origin, 0, tu_page(), &clone), rcOk);
    ck_assert_uint_eq(KnHandleRevoke(origin), rcOk);
    copy[1].h = clone;
    copy[1].flags = VMM_FLAG_READ;
    expect_init_refused(&test_info, RTL_NULL, &s, rcHandleRevoked);
    ck_assert_uint_eq(KnHandleClose(clone), rcOk);
    KnHandleClose(origin); /* already closed where KnHandleRevoke closes */

    /* The policy refuses handle transfer. */
    kosvmm_policy pol = {.size = sizeof(kosvmm_policy)};
    ck_assert_uint_eq(kosvmm_get_policy(&pol), rcOk);
    pol.deny = KOSVMM_METHOD_HANDLE_TRANSFER;
    ck_assert_uint_eq(kosvmm_set_policy(&pol), rcOk);
    expect_init_refused(&test_info, RTL_NULL, &good, rcSecurityDisallow);
    pol.deny = 0;
    ck_assert_uint_eq(kosvmm_set_policy(&pol), rcOk);
    ck_assert_uint_eq(KnElfFreeVmSeg(good.segs, good.count), rcOk);
}
END_TEST

/* The stub program itself missing, not executable, or not a stub at all. */
START_TEST(init_stub_failures)
{
    hold_revocation_page();
    struct segs good = build_segments(code_exit42, sizeof code_exit42, 0);
    const char *stub = getenv("KOSVMM_ENTITY_STUB");
    setenv("KOSVMM_ENTITY_STUB", "/nonexistent/kosvmm-entity-stub", 1);
    expect_init_refused(&test_info, RTL_NULL, &good, rcResourceNotFound);
    char plain[] = "/tmp/kosvmm-test-stub-XXXXXX"; /* a file without execute permission */
    int fd = mkstemp(plain);
    ck_assert_int_ge(fd, 0);
    close(fd);
    setenv("KOSVMM_ENTITY_STUB", plain, 1);
    expect_init_refused(&test_info, RTL_NULL, &good, rcNoCapability);
    unlink(plain);
    setenv("KOSVMM_ENTITY_STUB", "/bin/true", 1); /* ends without a word */
    expect_init_refused(&test_info, RTL_NULL, &good, rcResourceNotFound);
    setenv("KOSVMM_ENTITY_STUB", stub, 1);
    ck_assert_uint_eq(KnElfFreeVmSeg(good.segs, good.count), rcOk);
}
END_TEST

/* Starts an entity with exactly free_slots descriptors left under RLIMIT_NOFILE: refused with
 * rcQuotaExceeded, and once the filler descriptors are closed, nothing else is left open. */
static void init_with_descriptors(const struct segs *good, int free_slots)
{
    struct snapshot was = snap();
    struct rlimit old;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    struct rlimit rl = {64, old.rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    int fds[64], n = 0, fd;
    while ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        fds[n++] = fd;
    ck_assert_int_ge(n, free_slots);
    for (int i = 0; i < free_slots; i++)
        close(fds[--n]);
    Entity *e = init(&test_info, good);
    Retcode rc = kosvmm_last_error();
    while (n > 0)
        close(fds[--n]);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    ck_assert_ptr_null(e);
    ck_assert_msg(rc == rcQuotaExceeded, "%d free descriptors: %s", free_slots, rtl_retcode_name(rc));
    assert_unchanged(was);
}

START_TEST(init_out_of_descriptors)
{
    hold_revocation_page();
    struct segs good = build_segments(code_exit42, sizeof code_exit42, 0);
    init_with_descriptors(&good, 0); /* no channel */
    init_with_descriptors(&good, 1);
    init_with_descriptors(&good, 2); /* the channel, but no pidfd */
    ck_assert_uint_eq(KnElfFreeVmSeg(good.segs, good.count), rcOk);
}
END_TEST

/* clone refused by seccomp (as a sandbox may): no child, nothing left. Only clones asking for a
 * pidfd are refused, so LeakSanitizer's own clone at exit still works. */
START_TEST(init_clone_refused)
{
    struct segs good = build_segments(code_exit42, sizeof code_exit42, 0);
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_PIDFD, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    ck_assert_int_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    ck_assert_int_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
    expect_init_refused(&test_info, RTL_NULL, &good, rcQuotaExceeded);
}
END_TEST

#if defined(__x86_64__)
/* Without address randomisation the stub's stack ends at 0x7ffffffff000: a segment there would
 * replace it. */
START_TEST(init_over_stub_stack)
{
    hold_revocation_page();
    ck_assert_int_ge(personality(ADDR_NO_RANDOMIZE), 0);
    struct image im;
    build(&im, code_exit42, sizeof code_exit42, 0);
    phdr(&im, 1)->p_vaddr = 0x7ffffffff000ul - 0x4000;
    phdr(&im, 1)->p_memsz = 0x1000;
    struct segs s;
    ck_assert_uint_eq(create(im.b, im.size, &s), rcOk);
    expect_init_refused(&test_info, RTL_NULL, &s, rcAlreadyExists);
    ck_assert_uint_eq(KnElfFreeVmSeg(s.segs, s.count), rcOk);
}
END_TEST
#endif

#if CAN_RUN
/* The stub, found as this process's only child (/proc/.../children). */
static pid_t only_child(void)
{
    char path[64], buf[64] = {0};
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)gettid());
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_gt(read(fd, buf, sizeof buf - 1), 0);
    close(fd);
    return (pid_t)atoi(buf);
}

/* A stub killed from outside while stopped: EntityRun says so, and nothing is left. */
START_TEST(run_stub_killed)
{
    struct snapshot was = snap();
    struct segs s = build_segments(code_exit42, sizeof code_exit42, 0);
    Entity *e = init(&test_info, &s);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(kill(only_child(), SIGKILL), 0);
    ck_assert_uint_eq(EntityRun(e), rcResourceNotFound);
    rtl_uint32_t code;
    ck_assert_uint_eq(EntityWait(e, 0, &code), rcInvalidOperation); /* never ran */
    ck_assert_uint_eq(EntityRun(e), rcInvalidOperation);
    EntityFree(e);

    /* Killed while running: the signal is the exit code. */
    ck_assert_uint_eq(KnElfFreeVmSeg(s.segs, s.count), rcOk);
    s = build_segments(code_spin, sizeof code_spin, 0);
    e = init(&test_info, &s);
    ck_assert_uint_eq(EntityRun(e), rcOk);
    ck_assert_int_eq(kill(only_child(), SIGTERM), 0);
    ck_assert_uint_eq(EntityWait(e, INFINITE_TIMEOUT, &code), rcOk);
    ck_assert_uint_eq(code, KOSVMM_ENTITY_KILLED(SIGTERM));
    EntityFree(e);
    ck_assert_uint_eq(KnElfFreeVmSeg(s.segs, s.count), rcOk);
    assert_unchanged(was);
}
END_TEST

/*
 * The stub cannot make the program's stack: RLIMIT_AS (inherited) leaves it less address space
 * than RLIMIT_STACK asks for. EntityRun says rcOutOfMemory, the entity is finished, nothing is
 * left. Not under a sanitizer, whose shadow memory needs terabytes of address space.
 */
START_TEST(run_stack_refused)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return;
#endif
    struct snapshot was = snap();
    struct segs s = build_segments(code_exit42, sizeof code_exit42, 0);
    long vm_kb = tu_status_kb("VmSize:");
    ck_assert_int_gt(vm_kb, 0);
    struct rlimit stack = {(1ul << 30) - 4096, RLIM_INFINITY}, as;
    ck_assert_int_eq(getrlimit(RLIMIT_AS, &as), 0);
    ck_assert_int_eq(setrlimit(RLIMIT_STACK, &stack), 0);
    as.rlim_cur = ((rlim_t)vm_kb << 10) + (256ul << 20); /* the host's room; the stub's stack is bigger */
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &as), 0);
    Entity *e = init(&test_info, &s);
    ck_assert_msg(e != RTL_NULL, "EntityInitFromSegEx: %s", rtl_retcode_name(kosvmm_last_error()));
    ck_assert_uint_eq(EntityRun(e), rcOutOfMemory);
    rtl_uint32_t code;
    ck_assert_uint_eq(EntityWait(e, 0, &code), rcInvalidOperation);
    EntityFree(e);
    ck_assert_uint_eq(KnElfFreeVmSeg(s.segs, s.count), rcOk);
    assert_unchanged(was);
}
END_TEST
#endif

static Suite *entity_suite(void)
{
    Suite *s = suite_create("entity");
    TCase *parse = tcase_create("parse");
    tcase_add_test(parse, parse_valid);
    tcase_add_test(parse, parse_bad_args);
    tcase_add_test(parse, parse_every_truncation);
    tcase_add_test(parse, parse_foreign);
    tcase_add_test(parse, parse_dynamic);
    tcase_add_test(parse, parse_bad_headers);
    tcase_add_test(parse, parse_bad_segments);
    tcase_add_test(parse, parse_fails_midway);
    tcase_add_test(parse, free_bad_args);
    suite_add_tcase(s, parse);
    TCase *run = tcase_create("run");
    tcase_set_timeout(run, 30);
    tcase_add_test(run, run_exit_code);
#if CAN_RUN
    tcase_add_test(run, run_data_and_bss);
    tcase_add_test(run, run_killed_by_signal);
    tcase_add_test(run, run_args_and_env);
    tcase_add_test(run, host_signals_untouched);
    tcase_add_test(run, states);
    tcase_add_test(run, run_stub_killed);
    tcase_add_test(run, run_stack_refused);
#endif
    suite_add_tcase(s, run);
    TCase *fail = tcase_create("init_failures");
    tcase_set_timeout(fail, 30);
    tcase_add_test(fail, init_bad_args);
    tcase_add_test(fail, init_handle_failures);
    tcase_add_test(fail, init_stub_failures);
    tcase_add_test(fail, init_out_of_descriptors);
    tcase_add_test(fail, init_clone_refused);
#if defined(__x86_64__)
    tcase_add_test(fail, init_over_stub_stack);
#endif
    suite_add_tcase(s, fail);
    return s;
}

int main(void)
{
    /* The stub: KOSVMM_ENTITY_STUB if set, else a copy beside this program (the unprivileged run
     * copies both), else the one in the build tree. */
    if (!getenv("KOSVMM_ENTITY_STUB")) {
        char self[PATH_MAX], beside[PATH_MAX + 32];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
            self[n] = '\0';
            *strrchr(self, '/') = '\0';
            snprintf(beside, sizeof beside, "%s/kosvmm-entity-stub", self);
        }
        setenv("KOSVMM_ENTITY_STUB", n > 0 && access(beside, X_OK) == 0 ? beside : TEST_ENTITY_STUB, 1);
    }
    return tu_run(entity_suite());
}
