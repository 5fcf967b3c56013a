/* SPDX-License-Identifier: MIT */
/* tests/test_segments.c — KnVmSegInitFromBuf / KnVmSegInitFromVm (contents, rights, every bad input) and the Einit-style loader end to end. */
#include "testutil.h"

#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "handle_table.h"

#define R VMM_FLAG_READ
#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define RX (VMM_FLAG_READ | VMM_FLAG_EXECUTE)

static const unsigned char build_id[20] = {0xb0, 0xd2, 0xb2, 0xe2, 0x1d, 0xa9, 0x7a, 0xf4, 0x23, 0xd0,
                                           0xf7, 0x8f, 0xe9, 0xf1, 0x46, 0x49, 0x14, 0xad, 0xcc, 0x09};

/* ---- KnVmSegInitFromBuf ---- */

START_TEST(from_buf_places_bytes_at_offset)
{
    size_t P = tu_page(), size = 3 * P;
    unsigned char text[200];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (unsigned char)(i + 1);
    VmSeg seg;
    void *load = (void *)(uintptr_t)0x10003000;
    ck_assert_uint_eq(KnVmSegInitFromBuf(&seg, load, 0x30, size, RW, 0x2030, build_id, sizeof build_id, text,
                                         sizeof text),
                      rcOk);
    ck_assert_uint_ne(seg.h, INVALID_HANDLE);
    ck_assert_ptr_eq(seg.loadAddr, load);
    ck_assert_uint_eq(seg.size, size);
    ck_assert_uint_eq(seg.flags, RW);
    ck_assert_uint_eq(seg.offset, 0x30);
    ck_assert_uint_eq(seg.fileOffset, 0x2030);
    ck_assert_uint_eq(seg.buildIdSize, sizeof build_id);
    ck_assert_int_eq(memcmp(seg.buildId, build_id, sizeof build_id), 0);
    rtl_size_t got;
    ck_assert_uint_eq(KnPmmMdlGetSize(seg.h, &got), rcOk);
    ck_assert_uint_eq(got, size);

    unsigned char *m;
    ck_assert_uint_eq(KnPmmMdlMap(seg.h, 0, size, RTL_NULL, RW, (void **)&m), rcOk);
    for (size_t i = 0; i < 0x30; i++)
        ck_assert_uint_eq(m[i], 0);                  /* before the segment's first byte */
    ck_assert_int_eq(memcmp(m + 0x30, text, sizeof text), 0);
    for (size_t i = 0x30 + sizeof text; i < size; i++)
        ck_assert_uint_eq(m[i], 0);                  /* the .bss: zero to the end */
    ck_assert_uint_eq(KnVmUnmap(m, size), rcOk);
    ck_assert_uint_eq(KnHandleClose(seg.h), rcOk);
}
END_TEST

START_TEST(from_buf_rights_are_the_flags)
{
    size_t P = tu_page();
    const char code[] = "\xc3"; /* ret */
    VmSeg seg;
    void *m;
    ck_assert_uint_eq(KnVmSegInitFromBuf(&seg, RTL_NULL, 0, P, RX, 0, RTL_NULL, 0, code, 1), rcOk);
    ck_assert_ptr_eq(seg.loadAddr, RTL_NULL); /* 0: the new process picks the address */
    ck_assert_uint_eq(seg.buildIdSize, 0);
    ck_assert_uint_eq(KnPmmMdlMap(seg.h, 0, P, RTL_NULL, RW, &m), rcNoCapability);
    ck_assert_uint_eq(KnPmmMdlMap(seg.h, 0, P, RTL_NULL, RX, &m), rcOk);
    ((void (*)(void))(uintptr_t)m)(); /* executable, and holds what was copied */
    ck_assert_uint_eq(KnHandleClose(seg.h), rcOk);

    ck_assert_uint_eq(KnVmSegInitFromBuf(&seg, RTL_NULL, 0, P, R, 0, RTL_NULL, 0, code, 1), rcOk);
    ck_assert_uint_eq(KnPmmMdlMap(seg.h, 0, P, RTL_NULL, RW, &m), rcNoCapability);
    ck_assert_uint_eq(KnPmmMdlMap(seg.h, 0, P, RTL_NULL, RX, &m), rcNoCapability);
    ck_assert_uint_eq(KnPmmMdlMap(seg.h, 0, P, RTL_NULL, R, &m), rcOk);

    /* the segment exists to be sent: its handle carries the transfer right */
    kosvmm_channel *a, *b;
    Handle got;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, seg.h, R, &seg, sizeof seg), rcOk);
    VmSeg copy;
    ck_assert_uint_eq(kosvmm_channel_recv(b, &got, &copy, sizeof copy, RTL_NULL), rcOk);
    ck_assert_uint_eq(copy.size, P);
    ck_assert_uint_eq(KnPmmMdlMap(got, 0, P, RTL_NULL, R, &m), rcOk);
    ck_assert_uint_eq(*(unsigned char *)m, 0xc3);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
}
END_TEST

START_TEST(from_buf_boundaries)
{
    size_t P = tu_page();
    static unsigned char buf[3 * 4096 * 4];
    unsigned char id[VMM_SEG_BUILD_ID_MAX];
    memset(id, 0x77, sizeof id);
    VmSeg seg;
    /* bufSize == size - offset exactly; the largest build ID; a segment that is all .bss */
    ck_assert_uint_eq(KnVmSegInitFromBuf(&seg, RTL_NULL, 100, 2 * P, RW, 0, id, sizeof id, buf, 2 * P - 100), rcOk);
    ck_assert_uint_eq(seg.buildIdSize, VMM_SEG_BUILD_ID_MAX);
    ck_assert_uint_eq(KnHandleClose(seg.h), rcOk);
    ck_assert_uint_eq(KnVmSegInitFromBuf(&seg, RTL_NULL, 2 * P, 2 * P, RW, 0, RTL_NULL, 0, RTL_NULL, 0), rcOk);
    ck_assert_uint_eq(KnHandleClose(seg.h), rcOk);
    ck_assert_uint_eq(KnVmSegInitFromBuf(&seg, RTL_NULL, 0, P, VMM_FLAG_RWX_MASK, 0, RTL_NULL, 0, buf, P), rcOk);
    ck_assert_uint_eq(KnHandleClose(seg.h), rcOk);
}
END_TEST

/* Every refusal leaves *seg as it was and no handle or descriptor behind. */
static void expect_buf_refused(Retcode want, VmSeg *seg, void *load, size_t offset, size_t size, int flags,
                               const void *id, size_t id_size, const void *buf, size_t buf_size)
{
    VmSeg before;
    if (seg) {
        memset(seg, 0xAB, sizeof *seg);
        before = *seg;
    }
    uint32_t handles = kvmm_handle_count();
    int fds = tu_fd_count();
    ck_assert_uint_eq(KnVmSegInitFromBuf(seg, load, offset, size, flags, 0, id, id_size, buf, buf_size), want);
    if (seg)
        ck_assert_int_eq(memcmp(seg, &before, sizeof before), 0);
    ck_assert_uint_eq(kvmm_handle_count(), handles);
    ck_assert_int_eq(tu_fd_count(), fds);
}

START_TEST(from_buf_bad_inputs)
{
    size_t P = tu_page();
    static unsigned char buf[4 * 4096];
    unsigned char id[VMM_SEG_BUILD_ID_MAX + 1] = {0};
    VmSeg seg;
    const Retcode E = rcInvalidArgument;
    expect_buf_refused(E, RTL_NULL, RTL_NULL, 0, P, R, RTL_NULL, 0, buf, 1);                  /* no seg */
    expect_buf_refused(E, &seg, (void *)(uintptr_t)0x10000010, 0, P, R, RTL_NULL, 0, buf, 1); /* load unaligned */
    expect_buf_refused(E, &seg, RTL_NULL, 0, 0, R, RTL_NULL, 0, buf, 0);                      /* size 0 */
    expect_buf_refused(E, &seg, RTL_NULL, 0, P + 1, R, RTL_NULL, 0, buf, 1);                  /* size unaligned */
    expect_buf_refused(E, &seg, RTL_NULL, 0, P / 2, R, RTL_NULL, 0, buf, 1);
    expect_buf_refused(E, &seg, (void *)(UINTPTR_MAX & ~(uintptr_t)(P - 1)), 0, 2 * P, R, RTL_NULL, 0, buf, 1);
    expect_buf_refused(E, &seg, RTL_NULL, P + 1, P, R, RTL_NULL, 0, RTL_NULL, 0);              /* offset > size */
    expect_buf_refused(E, &seg, RTL_NULL, 1, P, R, RTL_NULL, 0, buf, P);                      /* bufSize > size - offset */
    expect_buf_refused(E, &seg, RTL_NULL, 0, P, R, RTL_NULL, 0, buf, P + 1);
    expect_buf_refused(E, &seg, RTL_NULL, SIZE_MAX, P, R, RTL_NULL, 0, buf, 2);               /* overflowing */
    expect_buf_refused(E, &seg, RTL_NULL, 8, P, R, RTL_NULL, 0, buf, SIZE_MAX - 4);
    expect_buf_refused(E, &seg, RTL_NULL, 0, P, R, RTL_NULL, 0, RTL_NULL, 1);                 /* no buf */
    expect_buf_refused(E, &seg, RTL_NULL, 0, P, R, id, VMM_SEG_BUILD_ID_MAX + 1, buf, 1);     /* build ID too long */
    expect_buf_refused(E, &seg, RTL_NULL, 0, P, R, RTL_NULL, 4, buf, 1);                      /* no build ID */
    expect_buf_refused(E, &seg, RTL_NULL, 0, P, 0, RTL_NULL, 0, buf, 1);                      /* no access */
    expect_buf_refused(E, &seg, RTL_NULL, 0, P, VMM_FLAG_WRITE, RTL_NULL, 0, buf, 1);
    expect_buf_refused(E, &seg, RTL_NULL, 0, P, VMM_FLAG_EXECUTE, RTL_NULL, 0, buf, 1);
    expect_buf_refused(E, &seg, RTL_NULL, 0, P, R | VMM_FLAG_COMMIT, RTL_NULL, 0, buf, 1);    /* not a protection */
    expect_buf_refused(E, &seg, RTL_NULL, 0, P, -1, RTL_NULL, 0, buf, 1);
}
END_TEST

/* ---- KnVmSegInitFromVm ---- */

START_TEST(from_vm_keeps_contents_and_aliases)
{
    size_t P = tu_page(), size = 4 * P;
    for (int lazy = 0; lazy < 2; lazy++) {
        int flags = VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW | (lazy ? 0 : VMM_FLAG_LOCKED);
        unsigned char *va = KnVmAllocate(RTL_NULL, size, flags);
        ck_assert_ptr_nonnull(va);
        memset(va, 0x3C, 2 * P); /* the rest stays untouched: lazily committed pages read as zero */
        VmSeg seg;
        void *load = (void *)(uintptr_t)0x20000000;
        ck_assert_uint_eq(KnVmSegInitFromVm(&seg, load, va, size, RW), rcOk);
        ck_assert_ptr_eq(seg.loadAddr, load);
        ck_assert_uint_eq(seg.size, size);
        ck_assert_uint_eq(seg.flags, RW);
        ck_assert_uint_eq(seg.offset, 0);
        ck_assert_uint_eq(seg.fileOffset, 0);
        ck_assert_uint_eq(seg.buildIdSize, 0);
        ck_assert_uint_eq(va[P], 0x3C);
        ck_assert_uint_eq(va[3 * P], 0);
        VmQueryInfo qi;
        ck_assert_uint_eq(KnVmQuery(va, &qi), rcOk);
        ck_assert(qi.attributes & VMM_PAGE_ATTR_MDL);
        unsigned char *m;
        ck_assert_uint_eq(KnPmmMdlMap(seg.h, 0, size, RTL_NULL, R, (void **)&m), rcOk);
        ck_assert_uint_eq(m[P], 0x3C);
        va[5] = 0x99; /* the original addresses and the buffer are the same memory now */
        ck_assert_uint_eq(m[5], 0x99);
        ck_assert_uint_eq(KnVmUnmap(m, size), rcOk);
        ck_assert_uint_eq(KnHandleClose(seg.h), rcOk);
        ck_assert_uint_eq(va[P], 0x3C); /* closing the handle leaves the mapping */
        ck_assert_uint_eq(KnVmUnmap(va, size), rcOk);
    }
}
END_TEST

static void expect_vm_refused(Retcode want, VmSeg *seg, void *load, void *addr, size_t size, int flags)
{
    VmSeg before;
    if (seg) {
        memset(seg, 0xAB, sizeof *seg);
        before = *seg;
    }
    uint32_t handles = kvmm_handle_count();
    int fds = tu_fd_count();
    Retcode rc = KnVmSegInitFromVm(seg, load, addr, size, flags);
    if (want == rcFail) /* "some failure", whatever the MDL layer calls it */
        ck_assert_msg(RC_FAILED(rc), "expected a failure, got %#x", rc);
    else
        ck_assert_uint_eq(rc, want);
    if (seg)
        ck_assert_int_eq(memcmp(seg, &before, sizeof before), 0);
    ck_assert_uint_eq(kvmm_handle_count(), handles);
    ck_assert_int_eq(tu_fd_count(), fds);
}

START_TEST(from_vm_bad_inputs)
{
    size_t P = tu_page(), size = 2 * P;
    char *va = KnVmAllocate(RTL_NULL, size, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(va);
    VmSeg seg;
    const Retcode E = rcInvalidArgument;
    expect_vm_refused(E, RTL_NULL, RTL_NULL, va, size, RW);
    expect_vm_refused(E, &seg, RTL_NULL, RTL_NULL, size, RW);
    expect_vm_refused(E, &seg, RTL_NULL, va + 8, P, RW);
    expect_vm_refused(E, &seg, (void *)(uintptr_t)0x123, va, size, RW);
    expect_vm_refused(E, &seg, RTL_NULL, va, 0, RW);
    expect_vm_refused(E, &seg, RTL_NULL, va, P + 8, RW);
    expect_vm_refused(E, &seg, (void *)(UINTPTR_MAX & ~(uintptr_t)(P - 1)), va, size, RW);
    expect_vm_refused(E, &seg, RTL_NULL, va, size, 0);
    expect_vm_refused(E, &seg, RTL_NULL, va, size, VMM_FLAG_WRITE);
    expect_vm_refused(E, &seg, RTL_NULL, va, size, RW | VMM_FLAG_LOCKED);
    /* what the MDL layer refuses: not kosvmm memory, reserved (uncommitted) pages, past the region */
    static char not_ours[3 * 4096] __attribute__((aligned(4096)));
    expect_vm_refused(rcFail, &seg, RTL_NULL, not_ours, P, RW);
    char *reserved = KnVmAllocate(RTL_NULL, size, VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(reserved);
    expect_vm_refused(rcFail, &seg, RTL_NULL, reserved, size, RW);
    expect_vm_refused(rcFail, &seg, RTL_NULL, va, 2 * size, RW);
    /* and the memory is as it was: still ordinary committed memory */
    VmQueryInfo qi;
    ck_assert_uint_eq(KnVmQuery(va, &qi), rcOk);
    ck_assert(!(qi.attributes & VMM_PAGE_ATTR_MDL));
    va[0] = 1;
}
END_TEST

/* ---- the Einit-style loader, end to end ---- */

/* The examples live next to the tests in the build tree; KOSVMM_EXAMPLES_DIR overrides. */
static int examples_dir(char *out, size_t n)
{
    const char *env = getenv("KOSVMM_EXAMPLES_DIR");
    if (env) {
        snprintf(out, n, "%s", env);
    } else {
        char self[PATH_MAX];
        ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
        if (len <= 0)
            return -1;
        self[len] = '\0';
        *strrchr(self, '/') = '\0';
        if (snprintf(out, n, "%s/../examples", self) >= (int)n)
            return -1;
    }
    char probe[PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/elf_loader", out);
    return access(probe, X_OK);
}

/* Runs the loader on elf, capturing its standard output; returns the wait status. */
static int run_loader(const char *dir, const char *elf, char *out, size_t n)
{
    char loader[PATH_MAX + 32];
    snprintf(loader, sizeof loader, "%s/elf_loader", dir);
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        execl(loader, loader, elf, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    size_t got = 0;
    ssize_t r;
    while (got < n - 1 && (r = read(p[0], out + got, n - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = '\0';
    close(p[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}

START_TEST(loader_runs_the_freestanding_elf)
{
    char dir[PATH_MAX], elf[PATH_MAX + 32], out[256];
    if (examples_dir(dir, sizeof dir) != 0) {
        /* e.g. the unprivileged run, which copies the test programs away from the build tree */
        printf("loader_runs_the_freestanding_elf: examples not found next to the test; not run\n");
        return;
    }
    snprintf(elf, sizeof elf, "%s/hello_elf", dir);
    int status = run_loader(dir, elf, out, sizeof out);
    ck_assert_msg(WIFEXITED(status), "loader status %#x", status);
    ck_assert_int_eq(WEXITSTATUS(status), 42); /* 3 or 4 would mean .bss or .data was wrong */
    ck_assert_str_eq(out, "hello from an ELF loaded through MDL segments\n");

    /* not a static executable (this test is a PIE): the loader refuses it before starting anything */
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    ck_assert_int_gt(len, 0);
    self[len] = '\0';
    status = run_loader(dir, self, out, sizeof out);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    ck_assert_str_eq(out, "");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("segments");

    TCase *tc = tcase_create("from_buf");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, from_buf_places_bytes_at_offset);
    tcase_add_test(tc, from_buf_rights_are_the_flags);
    tcase_add_test(tc, from_buf_boundaries);
    tcase_add_test(tc, from_buf_bad_inputs);
    suite_add_tcase(s, tc);

    tc = tcase_create("from_vm");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, from_vm_keeps_contents_and_aliases);
    tcase_add_test(tc, from_vm_bad_inputs);
    suite_add_tcase(s, tc);

    tc = tcase_create("loader");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, loader_runs_the_freestanding_elf);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tu_run(suite());
}
