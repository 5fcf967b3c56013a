/* SPDX-License-Identifier: MIT */
/* tests/fuzz/fuzz_elf.c — libFuzzer target for the ELF parser: every input goes through kvmm_elf_parse and KnElfCreateVmSegEx, which must agree, never read outside the input, and leave nothing behind. */
#include <coresrv/elf/elf_api.h>
#include <dirent.h>
#include <kosvmm/kosvmm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "entity/elf_parse.h"
#include "errors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_elf: %s\n", what);
    abort();
}

static int fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        fail("cannot read /proc/self/fd");
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static rtl_uint64_t handles(void)
{
    kosvmm_usage u = {.size = sizeof(kosvmm_usage)};
    if (kosvmm_get_usage(&u) != rcOk)
        fail("kosvmm_get_usage");
    return u.handles;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* libFuzzer's buffer is exactly size bytes long: ASan reports any read past it. */
    struct kvmm_elf_info info;
    int err = kvmm_elf_parse(data, size, (uint64_t)sysconf(_SC_PAGESIZE), &info);
    int fds = fd_count();
    rtl_uint64_t h0 = handles();

    rtl_uintptr_t entry;
    VmSeg *segs;
    rtl_size_t count, sym_size, str_size, hdr_size;
    rtl_uint32_t sym, str;
    void *hdr;
    Retcode rc = KnElfCreateVmSegEx(data, size, &entry, &segs, &count, &sym, &sym_size, &str, &str_size, &hdr,
                                    &hdr_size);
    if (err) {
        if (rc != kvmm_retcode(err))
            fail("KnElfCreateVmSegEx disagrees with the parser on a refused image");
    } else if (rc == rcOutOfMemory || rc == rcQuotaExceeded) {
        /* a segment too large for the host: allowed, as long as nothing is left behind */
    } else if (rc != rcOk) {
        fail("a parsed image was refused");
    } else {
        if (count != info.nloads || entry != info.entry || sym != info.sym_index || str != info.str_index ||
            hdr_size != kvmm_elf_headers_size(&info))
            fail("outputs differ from the parse");
        for (size_t i = 0; i < count; i++) {
            if ((uintptr_t)segs[i].loadAddr != info.load[i].start || segs[i].size != info.load[i].bytes)
                fail("segment placement differs from the parse");
            if (i && (uintptr_t)segs[i].loadAddr < (uintptr_t)segs[i - 1].loadAddr + segs[i - 1].size)
                fail("segments overlap");
        }
        if (memcmp(hdr, data, 64) != 0)
            fail("the header copy does not start with the ELF header");
        struct kvmm_elf_hdr_view view;
        if (kvmm_elf_headers_check(hdr, hdr_size, sym, sym_size, str, str_size, &view) != 0)
            fail("the header copy does not pass its own check");
        if (KnElfFreeVmSeg(segs, count) != rcOk)
            fail("KnElfFreeVmSeg");
    }
    if (fd_count() != fds || handles() != h0)
        fail("descriptors or handles left behind");
    return 0;
}
