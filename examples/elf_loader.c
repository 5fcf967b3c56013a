/* SPDX-License-Identifier: MIT */
/* elf_loader.c — an Einit-style loader: an ELF's PT_LOAD segments go into MDL buffers (KnVmSegInitFromBuf) and over a channel to a stub process, which maps them and jumps in. */
#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>
#include <rtl/retcode_hr.h>

#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "elf_loader.h"

#define MAX_SEGS 16

static void die(const char *what)
{
    fprintf(stderr, "elf_loader: %s\n", what);
    exit(1);
}

static void must(Retcode rc, const char *what)
{
    if (RC_FAILED(rc)) {
        fprintf(stderr, "elf_loader: %s failed: " RETCODE_HR_FMT "\n", what, RETCODE_HR_PARAMS(rc));
        exit(1);
    }
}

/* The whole file in memory: segments are copied out of it into their buffers. */
static unsigned char *read_file(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        die("cannot open the ELF file");
    unsigned char *data = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (data && got < (size_t)st.st_size) {
        ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
        if (n <= 0)
            die("cannot read the ELF file");
        got += (size_t)n;
    }
    close(fd);
    if (!data)
        die("out of memory");
    *size = got;
    return data;
}

/* The checks a loader owes itself before trusting any offset in the file. */
static const Elf64_Ehdr *check_header(const unsigned char *file, size_t size)
{
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)file;
    if (size < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_type != ET_EXEC || eh->e_machine != EM_X86_64 ||
        eh->e_phentsize != sizeof(Elf64_Phdr))
        die("not a static x86-64 ELF executable");
    if (eh->e_phoff > size || eh->e_phnum > (size - eh->e_phoff) / sizeof(Elf64_Phdr))
        die("program headers outside the file");
    return eh;
}

/* The NT_GNU_BUILD_ID note, if a PT_NOTE holds one: it goes into every VmSeg. */
static size_t find_build_id(const unsigned char *file, size_t size, const Elf64_Phdr *ph, int phnum,
                            const unsigned char **id)
{
    for (int i = 0; i < phnum; i++) {
        if (ph[i].p_type != PT_NOTE || ph[i].p_offset > size || ph[i].p_filesz > size - ph[i].p_offset)
            continue;
        const unsigned char *p = file + ph[i].p_offset, *end = p + ph[i].p_filesz;
        while ((size_t)(end - p) >= sizeof(Elf64_Nhdr)) {
            const Elf64_Nhdr *n = (const Elf64_Nhdr *)p;
            size_t name = (n->n_namesz + 3u) & ~3u, desc = (n->n_descsz + 3u) & ~3u;
            if (name + desc > (size_t)(end - p) - sizeof *n)
                break;
            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && memcmp(p + sizeof *n, "GNU", 4) == 0 &&
                n->n_descsz <= VMM_SEG_BUILD_ID_MAX) {
                *id = p + sizeof *n + name;
                return n->n_descsz;
            }
            p += sizeof *n + name + desc;
        }
    }
    return 0;
}

/*
 * One PT_LOAD becomes one MDL buffer: the page that holds p_vaddr is the load address, the bytes
 * from the file go in at p_vaddr's offset within that page, and the buffer is rounded up to whole
 * pages; what lies past p_filesz stays zero, which is the .bss.
 */
static void load_segment(const unsigned char *file, size_t size, const Elf64_Phdr *ph, const unsigned char *id,
                         size_t id_size, VmSeg *seg)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    if (ph->p_offset > size || ph->p_filesz > size - ph->p_offset || ph->p_filesz > ph->p_memsz ||
        ph->p_vaddr > UINT64_MAX - ph->p_memsz - page)
        die("PT_LOAD outside the file or the address space");
    uint64_t start = ph->p_vaddr & ~(page - 1), in_page = ph->p_vaddr - start;
    uint64_t bytes = (in_page + ph->p_memsz + page - 1) & ~(page - 1);
    int flags = VMM_FLAG_READ | (ph->p_flags & PF_W ? VMM_FLAG_WRITE : 0) | (ph->p_flags & PF_X ? VMM_FLAG_EXECUTE : 0);
    must(KnVmSegInitFromBuf(seg, (void *)(uintptr_t)start, in_page, bytes, flags, ph->p_offset, id, id_size,
                            file + ph->p_offset, ph->p_filesz),
         "KnVmSegInitFromBuf");
    fprintf(stderr, "elf_loader: segment %#lx..%#lx %c%c%c  %lu file bytes at buffer offset %#lx\n",
            (unsigned long)start, (unsigned long)(start + bytes), 'r', flags & VMM_FLAG_WRITE ? 'w' : '-',
            flags & VMM_FLAG_EXECUTE ? 'x' : '-', (unsigned long)ph->p_filesz, (unsigned long)in_page);
}

/* The stub defaults to the one built next to this loader. */
static void default_stub(char *out, size_t n)
{
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        die("cannot find /proc/self/exe");
    self[len] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    if (snprintf(out, n, "%s/elf_stub", self) >= (int)n)
        die("path too long");
}

/* fork + exec of the stub, handing it one end of the pair as an inherited descriptor on argv. */
static pid_t start_stub(const char *stub, kosvmm_channel *theirs)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = kosvmm_channel_fd(theirs);
        char arg[16];
        fcntl(fd, F_SETFD, 0); /* the pair is close-on-exec; this one end must survive exec */
        snprintf(arg, sizeof arg, "%d", fd);
        execl(stub, stub, arg, (char *)NULL);
        perror("elf_loader: exec of the stub");
        _exit(127);
    }
    if (pid < 0)
        die("fork failed");
    return pid;
}

int main(int argc, char **argv)
{
    char stub[PATH_MAX];
    if (argc == 4 && strcmp(argv[1], "--stub") == 0) {
        snprintf(stub, sizeof stub, "%s", argv[2]);
        argv += 2;
    } else if (argc == 2) {
        default_stub(stub, sizeof stub);
    } else {
        fprintf(stderr, "usage: elf_loader [--stub STUB] ELF\n");
        return 2;
    }

    size_t size;
    unsigned char *file = read_file(argv[1], &size);
    const Elf64_Ehdr *eh = check_header(file, size);
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(file + eh->e_phoff);
    const unsigned char *id = NULL;
    size_t id_size = find_build_id(file, size, ph, eh->e_phnum, &id);

    VmSeg segs[MAX_SEGS];
    int nsegs = 0;
    uint64_t prev_end = 0;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD || ph[i].p_memsz == 0)
            continue;
        if (nsegs == MAX_SEGS)
            die("too many PT_LOAD segments");
        load_segment(file, size, &ph[i], id, id_size, &segs[nsegs]);
        /* PT_LOADs come sorted by address; two sharing a page could not be separate buffers. */
        if ((uintptr_t)segs[nsegs].loadAddr < prev_end)
            die("PT_LOAD segments share a page");
        prev_end = (uintptr_t)segs[nsegs].loadAddr + segs[nsegs].size;
        nsegs++;
    }

    kosvmm_channel *mine, *theirs;
    must(kosvmm_channel_pair(&mine, &theirs), "kosvmm_channel_pair");
    pid_t child = start_stub(stub, theirs);
    must(kosvmm_channel_close(theirs), "kosvmm_channel_close");

    /* Each segment: its handle (no transfer right for the stub) and its VmSeg as the payload. */
    for (int i = 0; i < nsegs; i++) {
        must(kosvmm_channel_send_handle(mine, segs[i].h, segs[i].flags, &segs[i], sizeof segs[i]),
             "kosvmm_channel_send_handle");
        must(KnHandleClose(segs[i].h), "KnHandleClose"); /* the stub holds its own handle now */
    }
    struct elf_start start = {.entry = eh->e_entry, .segments = (uint32_t)nsegs};
    must(kosvmm_channel_send(mine, &start, sizeof start), "kosvmm_channel_send");
    fprintf(stderr, "elf_loader: sent %d segments and entry %#lx to stub pid %d\n", nsegs,
            (unsigned long)eh->e_entry, (int)child);
    kosvmm_channel_close(mine);
    free(file);

    int status;
    if (waitpid(child, &status, 0) != child)
        die("waitpid failed");
    if (!WIFEXITED(status)) {
        fprintf(stderr, "elf_loader: program killed by signal %d\n", WTERMSIG(status));
        return 128 + WTERMSIG(status);
    }
    fprintf(stderr, "elf_loader: program exited with status %d\n", WEXITSTATUS(status));
    return WEXITSTATUS(status); /* like exec: the loaded program's status is the loader's */
}
