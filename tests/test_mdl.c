/* SPDX-License-Identifier: MIT */
/* tests/test_mdl.c — MDL buffers: create/map/clone/size, CreateFromVm, rights enforced by the kernel, revocation across processes, fd and memory lifetime. */
#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <kosvmm/kosvmm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "handle_table.h"
#include "mdl_memfd/mdl.h"
#include "mdl_memfd/mdl_internal.h"
#include "testutil.h"

#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define RX (VMM_FLAG_READ | VMM_FLAG_EXECUTE)
#define RWX (VMM_FLAG_READ | VMM_FLAG_WRITE | VMM_FLAG_EXECUTE)
#define R VMM_FLAG_READ
#define SENTINEL ((Handle)0x5a5a5a5au)
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020 /* Linux 6.3 */
#endif

/* ---- helpers ---------------------------------------------------------------------------- */

static size_t P;

static void setup(void)
{
    P = tu_page();
}

static Handle create(size_t size, int prot)
{
    Handle h = SENTINEL;
    ck_assert_uint_eq(KnPmmMdlCreate(size, prot, &h), rcOk);
    ck_assert_uint_ne(h, SENTINEL);
    return h;
}

static void *map(Handle h, size_t off, size_t len, int prot)
{
    void *a = RTL_NULL;
    ck_assert_uint_eq(KnPmmMdlMap(h, off, len, RTL_NULL, prot, &a), rcOk);
    ck_assert_ptr_nonnull(a);
    return a;
}

static bool fd_closed(int fd)
{
    return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

/* How many of this process's fds and mappings refer to inode ino. */
static int inode_refs(ino_t ino)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; (e = readdir(d));) {
        struct stat st;
        if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &st, 0) == 0 && st.st_ino == ino &&
            S_ISREG(st.st_mode))
            n++;
    }
    closedir(d);
    FILE *maps = fopen("/proc/self/maps", "re");
    char line[512];
    while (fgets(line, sizeof line, maps)) {
        unsigned long long inode = 0;
        if (sscanf(line, "%*x-%*x %*s %*x %*x:%*x %llu", &inode) == 1 && inode == (unsigned long long)ino &&
            strstr(line, "memfd:"))
            n++;
    }
    fclose(maps);
    return n;
}

static long shmem_kib(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Shmem: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static ino_t buffer_ino(Handle h)
{
    struct kvmm_mdl_export e;
    ck_assert_int_eq(kvmm_mdl_export(h, KVMM_RIGHT_READ, &e), 0);
    struct stat st;
    ck_assert_int_eq(fstat(e.buffer_fd, &st), 0);
    kvmm_mdl_export_close(&e);
    return st.st_ino;
}

/* A description travels as raw SCM_RIGHTS here, so this suite does not depend on the channel. */
static void send_export(int sock, const struct kvmm_mdl_export *e)
{
    int fds[1 + KVMM_MDL_MAX_REVOKE];
    unsigned n = 0;
    fds[n++] = e->buffer_fd;
    for (uint32_t i = 0; i < e->revoke_count; i++)
        fds[n++] = e->revoke_fd[i];
    union {
        char buf[CMSG_SPACE(sizeof fds)];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct iovec iov = {(void *)e, sizeof *e};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = CMSG_SPACE(n * sizeof(int))};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n * sizeof(int));
    memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    if (sendmsg(sock, &msg, 0) != (ssize_t)sizeof *e)
        abort();
}

static int recv_export(int sock, struct kvmm_mdl_export *e)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * (1 + KVMM_MDL_MAX_REVOKE))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {e, sizeof *e};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof u.buf};
    if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != (ssize_t)sizeof *e)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS)
        return -1;
    int fds[1 + KVMM_MDL_MAX_REVOKE];
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    memcpy(fds, CMSG_DATA(c), n * sizeof(int));
    if (n != 1 + e->revoke_count)
        return -1;
    e->buffer_fd = fds[0];
    for (uint32_t i = 0; i < e->revoke_count; i++)
        e->revoke_fd[i] = fds[1 + i];
    return 0;
}

static void sync_send(int fd)
{
    char c = 1;
    if (write(fd, &c, 1) != 1)
        abort();
}

static void sync_wait(int fd)
{
    char c;
    if (read(fd, &c, 1) != 1)
        _exit(3);
}

/* ---- create, size ----------------------------------------------------------------------- */

START_TEST(create_rounds_up_and_reports_size)
{
    Handle h = create(3 * P, RW);
    rtl_size_t size = 0;
    ck_assert_uint_eq(KnPmmMdlGetSize(h, &size), rcOk);
    ck_assert_uint_eq(size, 3 * P);
    Handle g = create(1, R);
    ck_assert_uint_eq(KnPmmMdlGetSize(g, &size), rcOk);
    ck_assert_uint_eq(size, P);
    unsigned char *a = map(g, 0, P, R);
    for (size_t i = 0; i < P; i++)
        ck_assert_uint_eq(a[i], 0);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_uint_eq(KnHandleClose(g), rcOk);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
}
END_TEST

START_TEST(create_bad_arguments)
{
    Handle h = SENTINEL;
    const int bad_prot[] = {0, VMM_FLAG_WRITE, VMM_FLAG_EXECUTE, VMM_FLAG_WRITE | VMM_FLAG_EXECUTE,
                            R | VMM_FLAG_RESERVE, R | 0x100, -1, 8};
    for (size_t i = 0; i < sizeof bad_prot / sizeof bad_prot[0]; i++) {
        ck_assert_uint_eq(KnPmmMdlCreate(P, bad_prot[i], &h), rcInvalidArgument);
        ck_assert_uint_eq(KnPmmMdlCreateFromBuf(P, bad_prot[i], "x", 1, &h), rcInvalidArgument);
    }
    ck_assert_uint_eq(KnPmmMdlCreate(P, RW, RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlCreate(0, RW, &h), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlCreate(SIZE_MAX, RW, &h), rcInvalidArgument);          /* rounding overflows */
    ck_assert_uint_eq(KnPmmMdlCreate((size_t)INT64_MAX + 1, RW, &h), rcInvalidArgument); /* past off_t */
    ck_assert_uint_eq(h, SENTINEL);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
    ck_assert_uint_eq(kvmm_mdl_create(P, KVMM_RIGHT_READ | 0x8, RTL_NULL, 0, 0, &h), -EINVAL);
    ck_assert_uint_eq(kvmm_mdl_create(P, KVMM_RIGHT_TRANSFER, RTL_NULL, 0, 0, &h), -EINVAL);
}
END_TEST

START_TEST(create_from_buf_copies_and_zero_fills)
{
    char text[100];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + i % 26);
    Handle h = SENTINEL;
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(2 * P, R, text, sizeof text, &h), rcOk);
    unsigned char *a = map(h, 0, 2 * P, R);
    ck_assert_mem_eq(a, text, sizeof text);
    for (size_t i = sizeof text; i < 2 * P; i++)
        ck_assert_uint_eq(a[i], 0);
    /* bufSize == size, unaligned size: all of it copied. */
    Handle g;
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(sizeof text, RW, text, sizeof text, &g), rcOk);
    unsigned char *b = map(g, 0, P, RW);
    ck_assert_mem_eq(b, text, sizeof text);
    /* Empty source. */
    Handle e;
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(P, RW, RTL_NULL, 0, &e), rcOk);
    ck_assert_uint_eq(KnHandleClose(e), rcOk);
    /* Helper B's variant: data at an offset. */
    ck_assert_int_eq(kvmm_mdl_create(3 * P, KVMM_RIGHT_READ, text, 10, P + 5, &e), 0);
    unsigned char *c = map(e, 0, 3 * P, R);
    ck_assert_uint_eq(c[P + 4], 0);
    ck_assert_mem_eq(c + P + 5, text, 10);
    ck_assert_uint_eq(c[P + 15], 0);
}
END_TEST

START_TEST(create_from_buf_bad_arguments)
{
    char buf[64] = {0};
    Handle h = SENTINEL;
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(P, RW, buf, P + 1, &h), rcInvalidArgument);   /* bufSize > size */
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(10, RW, buf, 11, &h), rcInvalidArgument);     /* before rounding */
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(P, RW, RTL_NULL, 1, &h), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(P, RW, buf, sizeof buf, RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(0, RW, buf, 0, &h), rcInvalidArgument);
    /* An unreadable source is refused, not a crash. */
    void *none = mmap(NULL, P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(none, MAP_FAILED);
    int fds = tu_fd_count();
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(P, RW, none, P, &h), rcInvalidArgument);
    ck_assert_int_eq(tu_fd_count(), fds);
    ck_assert_uint_eq(h, SENTINEL);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
}
END_TEST

static void dummy_acquire(void *o)
{
    (void)o;
}

static const struct kvmm_handle_ops other_ops = {dummy_acquire, dummy_acquire, NULL};

/* Every call that takes a handle refuses values that are not a live MDL handle of this process. */
START_TEST(bad_handles_everywhere)
{
    Handle closed = create(P, RW);
    ck_assert_uint_eq(KnHandleClose(closed), rcOk);
    Handle live = create(P, RW);
    int dummy;
    Handle other;
    ck_assert_int_eq(kvmm_handle_open(&other_ops, &dummy, 7, &other), 0);
    const Handle bad[] = {INVALID_HANDLE, 0, closed, live + 1, live ^ 0x80000000u, other, 0x12345678u};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rtl_size_t size = 77;
        void *a = &dummy;
        Handle c = SENTINEL;
        struct kvmm_mdl_export e = {.buffer_fd = -7};
        ck_assert_uint_eq(KnPmmMdlGetSize(bad[i], &size), rcInvalidArgument);
        ck_assert_uint_eq(KnPmmMdlMap(bad[i], 0, P, RTL_NULL, R, &a), rcInvalidArgument);
        ck_assert_uint_eq(KnPmmMdlClone(bad[i], 0, P, &c), rcInvalidArgument);
        ck_assert_int_eq(kvmm_mdl_export(bad[i], ~0u, &e), -EINVAL);
        ck_assert_int_eq(kvmm_mdl_revoke(bad[i]), -EINVAL); /* typed: refuses other_ops too */
        ck_assert_uint_eq(size, 77);
        ck_assert_ptr_eq(a, &dummy);
        ck_assert_uint_eq(c, SENTINEL);
        ck_assert_int_eq(e.buffer_fd, -7);
    }
    rtl_size_t size;
    ck_assert_uint_eq(KnPmmMdlGetSize(live, RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlGetSize(live, &size), rcOk);
}
END_TEST

/* ---- map --------------------------------------------------------------------------------- */

START_TEST(maps_alias_and_are_regions)
{
    Handle h = create(2 * P, RW);
    char *a = map(h, 0, 2 * P, RW), *b = map(h, 0, 2 * P, RW);
    ck_assert_ptr_ne(a, b);
    strcpy(a + P, "through a");
    ck_assert_str_eq(b + P, "through a");
    strcpy(b, "through b");
    ck_assert_str_eq(a, "through b");
    VmQueryInfo q;
    ck_assert_uint_eq(KnVmQuery(a + P + 5, &q), rcOk);
    ck_assert_uint_eq(q.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_eq(q.attributes & VMM_PAGE_ATTR_MDL, VMM_PAGE_ATTR_MDL);
    ck_assert_uint_eq(q.protection, RW);
    ck_assert_ptr_eq(q.regionBase, a);
    ck_assert_uint_eq(q.regionSize, 2 * P);
    ck_assert_uint_eq(q.regionFlags, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    char perms[5];
    ck_assert_int_eq(tu_maps_perms(a, perms), 0);
    ck_assert_str_eq(perms, "rw-s");
    /* Range calls refuse MDL pages; unmap frees the addresses and the buffer lives on. */
    ck_assert_uint_eq(KnVmProtect(a, P, R), rcInvalidOperation);
    ck_assert_uint_eq(KnVmDecommit(a, P), rcInvalidOperation);
    ck_assert_uint_eq(KnVmReset(a, P), rcInvalidOperation);
    ck_assert_uint_eq(KnVmCommit(a, P, VMM_FLAG_LOCKED), rcInvalidOperation);
    ck_assert_uint_eq(KnVmUnmap(a, 2 * P), rcOk);
    ck_assert_int_eq(tu_is_mapped(a), 0);
    ck_assert_uint_eq(KnVmQuery(a, &q), rcOk);
    ck_assert_uint_eq(q.state, VMM_PAGE_STATE_FREE);
    ck_assert_str_eq(b, "through b");
    char *c = map(h, P, P, R);
    ck_assert_str_eq(c, "through a");
    /* Partial unmap of a mapping keeps the rest. */
    ck_assert_uint_eq(KnVmUnmap(b, P), rcOk);
    ck_assert_str_eq(b + P, "through a");
    ck_assert_uint_eq(KnVmUnmap(b + P, P), rcOk);
    ck_assert_uint_eq(KnVmUnmap(c, P), rcOk);
    kosvmm_stats st;
    ck_assert_uint_eq(kosvmm_get_stats(&st), rcOk);
    ck_assert_uint_eq(st.regions, 0);
    ck_assert_uint_eq(st.committed_bytes, 0);
}
END_TEST

START_TEST(map_window_offsets)
{
    char data[3 * 4096 * 4];
    ck_assert_uint_ge(sizeof data, 3 * P);
    for (size_t i = 0; i < 3 * P; i++)
        data[i] = (char)(i / P + 1);
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(3 * P, RW, data, 3 * P, &h), rcOk);
    char *mid = map(h, P, P, R), *tail = map(h, P, 2 * P, RW);
    ck_assert_int_eq(mid[0], 2);
    ck_assert_int_eq(tail[P], 3);
    tail[0] = 42;
    ck_assert_int_eq(mid[0], 42);
}
END_TEST

START_TEST(map_bad_arguments)
{
    Handle h = create(4 * P, RWX);
    void *a = &h;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P, RTL_NULL, R, RTL_NULL), rcInvalidArgument);
    const int bad_prot[] = {0, VMM_FLAG_WRITE, VMM_FLAG_EXECUTE, VMM_FLAG_WRITE | VMM_FLAG_EXECUTE,
                            R | VMM_FLAG_COMMIT, 0x100 | R};
    for (size_t i = 0; i < sizeof bad_prot / sizeof bad_prot[0]; i++)
        ck_assert_uint_eq(KnPmmMdlMap(h, 0, P, RTL_NULL, bad_prot[i], &a), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlMap(h, 1, P, RTL_NULL, R, &a), rcInvalidArgument);       /* offset unaligned */
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P + 1, RTL_NULL, R, &a), rcInvalidArgument);   /* length unaligned */
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, 0, RTL_NULL, R, &a), rcInvalidArgument);       /* length 0 */
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, 5 * P, RTL_NULL, R, &a), rcInvalidArgument);   /* past the end */
    ck_assert_uint_eq(KnPmmMdlMap(h, 4 * P, P, RTL_NULL, R, &a), rcInvalidArgument);   /* at the end */
    ck_assert_uint_eq(KnPmmMdlMap(h, 3 * P, 2 * P, RTL_NULL, R, &a), rcInvalidArgument);
    size_t huge = SIZE_MAX & ~(P - 1);
    ck_assert_uint_eq(KnPmmMdlMap(h, huge, P, RTL_NULL, R, &a), rcInvalidArgument);    /* overflow */
    ck_assert_uint_eq(KnPmmMdlMap(h, P, huge, RTL_NULL, R, &a), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P, (void *)(uintptr_t)(P + 8), R, &a), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, 2 * P, (void *)(uintptr_t)huge, R, &a), rcInvalidArgument);
    ck_assert_ptr_eq(a, &h);
    kosvmm_stats st;
    ck_assert_uint_eq(kosvmm_get_stats(&st), rcOk);
    ck_assert_uint_eq(st.regions, 0);
}
END_TEST

START_TEST(map_hint_exact_and_never_clobbers)
{
    Handle h = create(2 * P, RW);
    /* A free hint is honoured exactly. */
    char *spot = mmap(NULL, 4 * P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(spot, MAP_FAILED);
    ck_assert_int_eq(munmap(spot, 4 * P), 0);
    void *a = RTL_NULL;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, 2 * P, spot + P, RW, &a), rcOk);
    ck_assert_ptr_eq(a, spot + P);
    strcpy(a, "hinted");
    /* Overlapping an MDL mapping, a kosvmm region or a foreign mapping: refused, nothing harmed. */
    void *b = &h;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, 2 * P, spot, RW, &b), rcAlreadyExists);
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P, spot + 2 * P, RW, &b), rcAlreadyExists);
    ck_assert_ptr_eq(b, &h);
    ck_assert_str_eq(a, "hinted");
    char *region = KnVmAllocate(RTL_NULL, 2 * P, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(region);
    strcpy(region + P, "region");
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P, region + P, RW, &b), rcAlreadyExists);
    ck_assert_str_eq(region + P, "region");
    char *foreign = mmap(NULL, P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    strcpy(foreign, "foreign");
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P, foreign, RW, &b), rcAlreadyExists);
    ck_assert_str_eq(foreign, "foreign");
    VmQueryInfo q;
    ck_assert_uint_eq(KnVmQuery(foreign, &q), rcOk);
    ck_assert_uint_eq(q.state, VMM_PAGE_STATE_FREE);
}
END_TEST

START_TEST(map_more_than_rights_is_no_capability)
{
    Handle r = create(P, R), rx = create(P, RX), rw = create(P, RW), rwx = create(P, RWX);
    void *a = &a;
    ck_assert_uint_eq(KnPmmMdlMap(r, 0, P, RTL_NULL, RW, &a), rcNoCapability);
    ck_assert_uint_eq(KnPmmMdlMap(r, 0, P, RTL_NULL, RX, &a), rcNoCapability);
    ck_assert_uint_eq(KnPmmMdlMap(rx, 0, P, RTL_NULL, RW, &a), rcNoCapability);
    ck_assert_uint_eq(KnPmmMdlMap(rw, 0, P, RTL_NULL, RX, &a), rcNoCapability);
    ck_assert_uint_eq(KnPmmMdlMap(rw, 0, P, RTL_NULL, RWX, &a), rcNoCapability);
    ck_assert_ptr_eq(a, &a);
    char perms[5];
    ck_assert_int_eq(tu_maps_perms(map(rx, 0, P, RX), perms), 0);
    ck_assert_str_eq(perms, "r-xs");
    ck_assert_int_eq(tu_maps_perms(map(rwx, 0, P, RWX), perms), 0);
    ck_assert_str_eq(perms, "rwxs");
    ck_assert_int_eq(tu_maps_perms(map(rwx, 0, P, R), perms), 0);
    ck_assert_str_eq(perms, "r--s");
}
END_TEST

START_TEST(write_to_read_only_mapping_faults)
{
    Handle h = create(P, RW);
    volatile char *a = map(h, 0, P, R);
    a[0] = 1;
}
END_TEST

START_TEST(read_only_handle_is_read_only_description)
{
    /* Even bypassing kosvmm, the fd behind a read-only handle cannot be mapped writable. */
    Handle h = create(P, R);
    struct kvmm_mdl_export e;
    ck_assert_int_eq(kvmm_mdl_export(h, ~0u, &e), 0);
    ck_assert_int_eq(fcntl(e.buffer_fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    ck_assert_ptr_eq(mmap(NULL, P, PROT_READ | PROT_WRITE, MAP_SHARED, e.buffer_fd, 0), MAP_FAILED);
    ck_assert_int_eq(errno, EACCES);
    ck_assert_int_eq(fcntl(e.buffer_fd, F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
                     F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    /* No execute right: sealed non-executable where the kernel has MFD_NOEXEC_SEAL (6.3+). */
    ck_assert_int_eq(fcntl(e.buffer_fd, F_GET_SEALS) & F_SEAL_EXEC, F_SEAL_EXEC);
    ck_assert_int_ne(fchmod(e.buffer_fd, 0755), 0);
    kvmm_mdl_export_close(&e);
}
END_TEST

/* ---- clone -------------------------------------------------------------------------------- */

START_TEST(clone_shares_memory_of_its_window)
{
    Handle h = create(4 * P, RW);
    char *whole = map(h, 0, 4 * P, RW);
    strcpy(whole + P, "page one");
    Handle c = SENTINEL;
    ck_assert_uint_eq(KnPmmMdlClone(h, P, 2 * P, &c), rcOk);
    rtl_size_t size;
    ck_assert_uint_eq(KnPmmMdlGetSize(c, &size), rcOk);
    ck_assert_uint_eq(size, 2 * P);
    char *cm = map(c, 0, 2 * P, RW);
    ck_assert_str_eq(cm, "page one");
    strcpy(cm + P, "via clone");
    ck_assert_str_eq(whole + 2 * P, "via clone");
    /* Windows are relative to the clone, and bounded by it. */
    void *a = &a;
    ck_assert_uint_eq(KnPmmMdlMap(c, 2 * P, P, RTL_NULL, R, &a), rcInvalidArgument);
    Handle cc;
    ck_assert_uint_eq(KnPmmMdlClone(c, P, P, &cc), rcOk);
    ck_assert_str_eq((char *)map(cc, 0, P, R), "via clone");
    ck_assert_uint_eq(KnPmmMdlClone(c, P, 2 * P, &cc), rcInvalidArgument);
    /* The clone outlives its origin's handle. */
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_str_eq((char *)map(c, 0, P, RW), "page one");
}
END_TEST

START_TEST(clone_of_read_only_is_read_only)
{
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(2 * P, R, "ro", 3, &h), rcOk);
    Handle c;
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, P, &c), rcOk);
    void *a = &a;
    ck_assert_uint_eq(KnPmmMdlMap(c, 0, P, RTL_NULL, RW, &a), rcNoCapability);
    ck_assert_str_eq((char *)map(c, 0, P, R), "ro");
    struct kvmm_mdl_export e;
    ck_assert_int_eq(kvmm_mdl_export(c, ~0u, &e), 0);
    ck_assert_uint_eq(e.rights, KVMM_RIGHT_READ | KVMM_RIGHT_TRANSFER);
    ck_assert_int_eq(fcntl(e.buffer_fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    kvmm_mdl_export_close(&e);
}
END_TEST

START_TEST(clone_bad_arguments)
{
    Handle h = create(2 * P, RW), c = SENTINEL;
    size_t huge = SIZE_MAX & ~(P - 1);
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, P, RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlClone(h, 1, P, &c), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, P - 1, &c), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, 0, &c), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlClone(h, 2 * P, P, &c), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlClone(h, P, 2 * P, &c), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlClone(h, huge, 2 * P, &c), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlClone(h, P, huge, &c), rcInvalidArgument);
    ck_assert_uint_eq(c, SENTINEL);
    ck_assert_uint_eq(kvmm_handle_count(), 1);
}
END_TEST

START_TEST(derivation_depth_is_bounded)
{
    Handle h = create(P, RW);
    for (int i = 0; i < KVMM_MDL_MAX_REVOKE; i++) {
        Handle c;
        ck_assert_uint_eq(KnPmmMdlClone(h, 0, P, &c), rcOk);
        h = c;
    }
    Handle c = SENTINEL;
    struct kvmm_mdl_export e;
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, P, &c), rcQuotaExceeded);
    ck_assert_int_eq(kvmm_mdl_export(h, ~0u, &e), -EDQUOT);
    ck_assert_uint_eq(c, SENTINEL);
    /* Still usable in every other way. */
    strcpy(map(h, 0, P, RW), "deep");
}
END_TEST

/* ---- lifetime, revocation ------------------------------------------------------------------- */

START_TEST(close_keeps_mappings)
{
    Handle h = create(P, RW);
    char *a = map(h, 0, P, RW);
    strcpy(a, "before close");
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_str_eq(a, "before close");
    strcpy(a, "after close");
    ck_assert_str_eq(a, "after close");
    void *b = &b;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P, RTL_NULL, R, &b), rcInvalidArgument);
    ck_assert_uint_eq(KnHandleClose(h), rcInvalidArgument);
    ck_assert_uint_eq(KnVmUnmap(a, P), rcOk);
}
END_TEST

START_TEST(revoke_local_handle)
{
    Handle h = create(2 * P, RW);
    char *a = map(h, 0, P, RW);
    ck_assert_uint_eq(KnHandleRevoke(h), rcOk);
    rtl_size_t size = 9;
    void *b = &b;
    Handle c = SENTINEL;
    struct kvmm_mdl_export e;
    ck_assert_uint_eq(KnPmmMdlGetSize(h, &size), rcHandleRevoked);
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P, RTL_NULL, R, &b), rcHandleRevoked);
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, P, &c), rcHandleRevoked);
    ck_assert_int_eq(kvmm_mdl_export(h, ~0u, &e), -EKEYREVOKED);
    ck_assert_uint_eq(KnHandleRevoke(h), rcHandleRevoked);
    ck_assert_uint_eq(size, 9);
    ck_assert_ptr_eq(b, &b);
    ck_assert_uint_eq(c, SENTINEL);
    /* The mapping made before stays valid; the slot stays until closed. */
    strcpy(a, "still mapped");
    ck_assert_str_eq(a, "still mapped");
    ck_assert_uint_eq(kvmm_handle_count(), 1);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
}
END_TEST

START_TEST(revoke_reaches_every_descendant)
{
    Handle h = create(2 * P, RW);
    Handle c, cc, sibling, imported;
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, 2 * P, &c), rcOk);
    ck_assert_uint_eq(KnPmmMdlClone(c, P, P, &cc), rcOk);
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, P, &sibling), rcOk);
    struct kvmm_mdl_export e;
    ck_assert_int_eq(kvmm_mdl_export(cc, ~0u, &e), 0);
    ck_assert_uint_eq(e.revoke_count, 3); /* h's, c's and cc's words */
    ck_assert_int_eq(kvmm_mdl_import(&e, &imported), 0);
    char *m = map(cc, 0, P, RW);
    /* Revoking c: c and everything derived from it, not h nor c's sibling. */
    ck_assert_uint_eq(KnHandleRevoke(c), rcOk);
    rtl_size_t size;
    ck_assert_uint_eq(KnPmmMdlGetSize(c, &size), rcHandleRevoked);
    ck_assert_uint_eq(KnPmmMdlGetSize(cc, &size), rcHandleRevoked);
    ck_assert_uint_eq(KnPmmMdlGetSize(imported, &size), rcHandleRevoked);
    ck_assert_uint_eq(KnPmmMdlGetSize(h, &size), rcOk);
    ck_assert_uint_eq(KnPmmMdlGetSize(sibling, &size), rcOk);
    ck_assert_uint_eq(KnHandleRevoke(c), rcHandleRevoked);
    strcpy(m, "mapping survives");
    /* Revoking the root: the sibling too. */
    ck_assert_uint_eq(KnHandleRevoke(h), rcOk);
    ck_assert_uint_eq(KnPmmMdlGetSize(sibling, &size), rcHandleRevoked);
    void *a = &a;
    ck_assert_uint_eq(KnPmmMdlMap(sibling, 0, P, RTL_NULL, R, &a), rcHandleRevoked);
    ck_assert_uint_eq(KnPmmMdlClone(sibling, 0, P, &c), rcHandleRevoked);
    /* A revoked description is refused at import. */
    ck_assert_int_eq(kvmm_mdl_export(sibling, ~0u, &e), -EKEYREVOKED);
}
END_TEST

START_TEST(revoke_hook_sets_the_word)
{
    /* The callback the handle table will call from KnHandleRevoke, tested directly. */
    Handle h = create(P, RW), c;
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, P, &c), rcOk);
    struct kvmm_mdl *o;
    uint32_t rights;
    ck_assert_int_eq(kvmm_mdl_get(h, &o, &rights), 0);
    ck_assert_ptr_nonnull(o->own.page);
    ck_assert_uint_eq(o->own.page->words[o->own.slot], 0);
    kvmm_mdl_revoke_object(o);
    ck_assert_uint_eq(o->own.page->words[o->own.slot], 1);
    /* A handle revoked before it ever had a word never gets one. */
    ck_assert_int_eq(kvmm_mdl_own_word(o), -EKEYREVOKED);
    kvmm_mdl_put(o);
    rtl_size_t size;
    ck_assert_uint_eq(KnPmmMdlGetSize(c, &size), rcHandleRevoked);
    Handle g = create(P, RW);
    ck_assert_int_eq(kvmm_mdl_get(g, &o, &rights), 0);
    kvmm_mdl_revoke_object(o);
    ck_assert_ptr_null(o->own.page);
    ck_assert_int_eq(kvmm_mdl_own_word(o), -EKEYREVOKED);
    kvmm_mdl_put(o);
}
END_TEST

START_TEST(memory_freed_after_last_close_and_unmap)
{
    const size_t size = 128u << 20;
    long before = shmem_kib();
    Handle h = create(size, RW), c;
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, size, &c), rcOk);
    ino_t ino = buffer_ino(h);
    char *a = map(h, 0, size, RW);
    for (size_t i = 0; i < size; i += P)
        a[i] = 1;
    long touched = shmem_kib();
    ck_assert_int_ge(touched - before, (long)(size >> 10) * 3 / 4);
    ck_assert_int_ge(inode_refs(ino), 3);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_uint_eq(KnHandleClose(c), rcOk);
    ck_assert_int_eq(inode_refs(ino), 1);  /* the mapping alone keeps it */
    ck_assert_int_eq(a[size - P], 1);
    ck_assert_uint_eq(KnVmUnmap(a, size), rcOk);
    ck_assert_int_eq(inode_refs(ino), 0);  /* nothing of this process holds it: the kernel frees it */
    ck_assert_int_ge(touched - shmem_kib(), (long)(size >> 10) * 3 / 4);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
}
END_TEST

START_TEST(fd_count_back_to_baseline_after_cycles)
{
    int base = tu_fd_count();
    for (int i = 0; i < 1000; i++) {
        Handle h = create(2 * P, RW), c, imp;
        char *a = map(h, 0, 2 * P, RW);
        a[0] = (char)i;
        ck_assert_uint_eq(KnPmmMdlClone(h, P, P, &c), rcOk);
        struct kvmm_mdl_export e;
        ck_assert_int_eq(kvmm_mdl_export(c, KVMM_RIGHT_READ, &e), 0);
        ck_assert_int_eq(kvmm_mdl_import(&e, &imp), 0);
        char *b = map(imp, 0, P, R);
        ck_assert_int_eq(b[0], 0);
        /* Refused imports close what they were given too. */
        ck_assert_int_eq(kvmm_mdl_export(h, ~0u, &e), 0);
        e.rights |= 0x80;
        Handle refused = SENTINEL;
        ck_assert_int_eq(kvmm_mdl_import(&e, &refused), -EINVAL);
        ck_assert_uint_eq(KnVmUnmap(a, 2 * P), rcOk);
        ck_assert_uint_eq(KnVmUnmap(b, P), rcOk);
        ck_assert_uint_eq(KnHandleClose(imp), rcOk);
        ck_assert_uint_eq(KnHandleClose(c), rcOk);
        ck_assert_uint_eq(KnHandleClose(h), rcOk);
    }
    ck_assert_int_eq(tu_fd_count(), base);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
}
END_TEST

/* ---- CreateFromVm ----------------------------------------------------------------------------- */

static void fill(char *p, size_t len, char seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (char)(seed + i % 251);
}

static bool filled(const char *p, size_t len, char seed)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (char)(seed + i % 251))
            return false;
    return true;
}

static void expect_mdl(const void *va, size_t size, uint32_t prot)
{
    VmQueryInfo q;
    ck_assert_uint_eq(KnVmQuery(va, &q), rcOk);
    ck_assert_uint_eq(q.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_eq(q.attributes & (VMM_PAGE_ATTR_MDL | VMM_PAGE_ATTR_LAZY | VMM_PAGE_ATTR_LOCKED |
                                      VMM_PAGE_ATTR_PINNED),
                      VMM_PAGE_ATTR_MDL);
    ck_assert_uint_eq(q.protection, prot);
    ck_assert_uint_ge(q.runSize, size);
}

START_TEST(from_vm_lazy_keeps_contents)
{
    char *r = KnVmAllocate(RTL_NULL, 8 * P, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(r);
    fill(r, P, 1);           /* pages 0 and 5 touched, the rest never */
    fill(r + 5 * P, P, 5);
    (void)*(volatile char *)(r + 3 * P); /* page 3 read only: the zero page */
    Handle h = SENTINEL;
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r, 8 * P, RW, &h), rcOk);
    ck_assert_uint_ne(h, SENTINEL);
    expect_mdl(r, 8 * P, RW);
    /* Untouched pages cost the buffer nothing (checked before reading them below: a read fault
     * on a memfd hole allocates the page). */
    struct kvmm_mdl_export e;
    ck_assert_int_eq(kvmm_mdl_export(h, KVMM_RIGHT_READ, &e), 0);
    struct stat st;
    ck_assert_int_eq(fstat(e.buffer_fd, &st), 0);
    ck_assert_int_le(st.st_blocks * 512, 2 * (long)P);
    kvmm_mdl_export_close(&e);
    ck_assert(filled(r, P, 1));
    ck_assert(filled(r + 5 * P, P, 5));
    for (size_t i = P; i < 5 * P; i++)
        ck_assert_int_eq(r[i], 0);
    /* The range is the buffer: a mapping of the handle aliases it. */
    char *m = map(h, 0, 8 * P, RW);
    ck_assert(filled(m + 5 * P, P, 5));
    strcpy(r + 7 * P, "written in place");
    ck_assert_str_eq(m + 7 * P, "written in place");
    ck_assert_uint_eq(KnVmProtect(r, P, R), rcInvalidOperation);
    ck_assert_uint_eq(KnVmDecommit(r + P, P), rcInvalidOperation);
    ck_assert_uint_eq(KnVmReset(r, 8 * P), rcInvalidOperation);
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r, P, RW, &h), rcInvalidOperation); /* already MDL */
    ck_assert_uint_eq(KnVmUnmap(r, 8 * P), rcOk);
    ck_assert_str_eq(m + 7 * P, "written in place");
}
END_TEST

START_TEST(from_vm_locked_keeps_contents_and_accounts)
{
    char *r = KnVmAllocate(RTL_NULL, 4 * P, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(r);
    fill(r, 4 * P, 9);
    kosvmm_stats before, after;
    ck_assert_uint_eq(kosvmm_get_stats(&before), rcOk);
    ck_assert_uint_eq(before.locked_bytes, 4 * P);
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r + P, 2 * P, RW, &h), rcOk);
    ck_assert(filled(r, 4 * P, 9));
    expect_mdl(r + P, 2 * P, RW);
    VmQueryInfo q;
    ck_assert_uint_eq(KnVmQuery(r, &q), rcOk);
    ck_assert_uint_eq(q.attributes & VMM_PAGE_ATTR_LOCKED, VMM_PAGE_ATTR_LOCKED);
    ck_assert_uint_eq(q.runSize, P);
    ck_assert_uint_eq(KnVmQuery(r + 3 * P, &q), rcOk);
    ck_assert_uint_eq(q.attributes & VMM_PAGE_ATTR_LOCKED, VMM_PAGE_ATTR_LOCKED);
    ck_assert_uint_eq(kosvmm_get_stats(&after), rcOk);
    ck_assert_uint_eq(after.locked_bytes, 2 * P);
    ck_assert_uint_eq(after.committed_bytes, before.committed_bytes);
    ck_assert_uint_eq(after.pinned_bytes, before.pinned_bytes - (before.pinned_bytes ? 2 * P : 0));
    ck_assert_mem_eq(map(h, 0, 2 * P, R), r + P, 2 * P);
    ck_assert_uint_eq(KnVmProtect(r + P, P, R), rcInvalidOperation);
    ck_assert_uint_eq(KnVmDecommit(r, 4 * P), rcInvalidOperation);
    ck_assert_uint_eq(KnVmReset(r + 2 * P, P), rcInvalidOperation);
    ck_assert_uint_eq(KnVmCommit(r, 4 * P, VMM_FLAG_LOCKED), rcInvalidOperation);
    ck_assert_uint_eq(KnVmUnmap(r, 4 * P), rcOk);
    ck_assert_uint_eq(kosvmm_get_stats(&after), rcOk);
    ck_assert_uint_eq(after.locked_bytes, 0);
    ck_assert_uint_eq(after.pinned_bytes, 0);
}
END_TEST

START_TEST(from_vm_keeps_each_pages_protection)
{
    char *r = KnVmAllocate(RTL_NULL, 3 * P, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    fill(r, 3 * P, 3);
    ck_assert_uint_eq(KnVmProtect(r + P, P, R), rcOk);
    ck_assert_uint_eq(KnVmProtect(r + 2 * P, P, 0), rcOk);
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r, 3 * P, R, &h), rcOk);
    expect_mdl(r, P, RW);
    expect_mdl(r + P, P, R);
    expect_mdl(r + 2 * P, P, 0);
    char perms[5];
    ck_assert_int_eq(tu_maps_perms(r, perms), 0);
    ck_assert_str_eq(perms, "rw-s");
    ck_assert_int_eq(tu_maps_perms(r + P, perms), 0);
    ck_assert_str_eq(perms, "r--s");
    ck_assert_int_eq(tu_maps_perms(r + 2 * P, perms), 0);
    ck_assert_str_eq(perms, "---s");
    /* The inaccessible page's contents were copied too; the handle is read-only (flags R). */
    char *m = map(h, 0, 3 * P, R);
    ck_assert(filled(m, 3 * P, 3));
    void *a = &a;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P, RTL_NULL, RW, &a), rcNoCapability);
    /* The first page was writable before the buffer existed, and stays so. */
    r[0] = 'w';
    ck_assert_int_eq(m[0], 'w');
}
END_TEST

START_TEST(from_vm_large_lazy_range_costs_nothing)
{
    /* 256 MiB committed lazily, a few pages touched: no page-by-page faulting, no memory. */
    const size_t size = 256u << 20;
    char *r = KnVmAllocate(RTL_NULL, size, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(r);
    strcpy(r + size / 2, "middle");
    strcpy(r + size - P, "end");
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r, size, RW, &h), rcOk);
    ck_assert_str_eq(r + size / 2, "middle");
    ck_assert_int_le(tu_resident_pages(r, size), 16);
    struct kvmm_mdl_export e;
    ck_assert_int_eq(kvmm_mdl_export(h, KVMM_RIGHT_READ, &e), 0);
    struct stat st;
    ck_assert_int_eq(fstat(e.buffer_fd, &st), 0);
    ck_assert_int_le(st.st_blocks * 512, 16 * (long)P);
    kvmm_mdl_export_close(&e);
    ck_assert_str_eq(r + size - P, "end");
}
END_TEST

START_TEST(from_vm_bad_arguments)
{
    char *r = KnVmAllocate(RTL_NULL, 4 * P,
                           VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW | VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD);
    ck_assert_ptr_nonnull(r);
    fill(r, 4 * P, 7);
    Handle h = SENTINEL;
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r, P, RW, RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r, P, 0, &h), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r, P, VMM_FLAG_WRITE, &h), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r, P, RW | VMM_FLAG_COMMIT, &h), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r + 1, P, RW, &h), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r, P + 1, RW, &h), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r, 0, RW, &h), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r, SIZE_MAX & ~(P - 1), RW, &h), rcInvalidArgument);
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r, 5 * P, RW, &h), rcInvalidArgument);  /* past the region */
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r - P, P, RW, &h), rcResourceNotFound); /* guard page */
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r + 4 * P, P, RW, &h), rcResourceNotFound);
    char *foreign = mmap(NULL, P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(foreign, P, RW, &h), rcResourceNotFound);
    /* Reserved pages: nothing to share. */
    ck_assert_uint_eq(KnVmDecommit(r + 2 * P, P), rcOk);
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r, 4 * P, RW, &h), rcInvalidOperation);
    char *reserved = KnVmAllocate(RTL_NULL, P, VMM_FLAG_RESERVE | RW);
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(reserved, P, RW, &h), rcInvalidOperation);
    ck_assert_uint_eq(h, SENTINEL);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
    /* Nothing changed. */
    ck_assert(filled(r, 2 * P, 7));
    VmQueryInfo q;
    ck_assert_uint_eq(KnVmQuery(r, &q), rcOk);
    ck_assert_uint_eq(q.attributes & VMM_PAGE_ATTR_MDL, 0);
    ck_assert_uint_eq(q.runSize, 2 * P);
}
END_TEST

START_TEST(from_vm_other_process_maps_it)
{
    /* The other process is forked before this one commits anything lazily, so it is a process of
     * its own rather than a fork of one running the userfaultfd handler thread. */
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct kvmm_mdl_export e;
        Handle got;
        void *a = RTL_NULL;
        TU_CHILD_CHECK(recv_export(sv[1], &e) == 0);
        TU_CHILD_CHECK(kvmm_mdl_import(&e, &got) == 0);
        TU_CHILD_CHECK(KnPmmMdlMap(got, 0, 2 * P, RTL_NULL, RW, &a) == rcOk);
        TU_CHILD_CHECK(strcmp(a, "shared by CreateFromVm") == 0);
        strcpy((char *)a + P, "child wrote");
        sync_send(sv[1]);
        _exit(0);
    }
    char *r = KnVmAllocate(RTL_NULL, 2 * P, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    strcpy(r, "shared by CreateFromVm");
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(r, 2 * P, RW, &h), rcOk);
    struct kvmm_mdl_export e;
    ck_assert_int_eq(kvmm_mdl_export(h, ~0u, &e), 0);
    send_export(sv[0], &e);
    kvmm_mdl_export_close(&e);
    sync_wait(sv[0]);
    tu_wait_child_ok(pid);
    ck_assert_str_eq(r + P, "child wrote");
}
END_TEST

static atomic_int streaming; /* atomic, not volatile: ThreadSanitizer runs this suite */

/* Keeps the userfaultfd handler busy: writes through a large lazy region, page after page. */
static void *stream_writer(void *arg)
{
    char *z = arg;
    for (size_t i = 0; streaming; i = (i + P) % (64u << 20))
        z[i] = 1;
    return NULL;
}

START_TEST(from_vm_while_other_threads_fault)
{
    /* CreateFromVm holds the region lock while it reads lazy pages; the handler thread must
     * never need that lock to serve the faults (its own or other threads'). */
    char *z = KnVmAllocate(RTL_NULL, 64u << 20, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(z);
    streaming = 1;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, stream_writer, z), 0);
    for (int i = 0; i < 200; i++) {
        char *r = KnVmAllocate(RTL_NULL, 64 * P, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
        ck_assert_ptr_nonnull(r);
        for (int k = 0; k < 64; k += 7)
            r[(size_t)k * P] = (char)(k + i);
        Handle h;
        ck_assert_uint_eq(KnPmmMdlCreateFromVm(r + 8 * P, 48 * P, RW, &h), rcOk);
        for (int k = 0; k < 64; k += 7)
            ck_assert_int_eq(r[(size_t)k * P], (char)(k + i));
        ck_assert_uint_eq(KnVmUnmap(r, 64 * P), rcOk);
        ck_assert_uint_eq(KnHandleClose(h), rcOk);
    }
    streaming = 0;
    pthread_join(t, NULL);
}
END_TEST

struct stress {
    Handle root;
    int rounds;
};

/* Clones, exports, imports, maps and closes against a root another thread revokes. */
static void *handle_stress(void *arg)
{
    struct stress *st = arg;
    for (int i = 0; i < st->rounds; i++) {
        Handle h = create(P, RW), c, imp, rc_;
        if (KnPmmMdlClone(h, 0, P, &c) != rcOk)
            abort();
        struct kvmm_mdl_export e;
        if (kvmm_mdl_export(c, ~0u, &e) != 0 || kvmm_mdl_import(&e, &imp) != 0)
            abort();
        void *a;
        if (KnPmmMdlMap(imp, 0, P, RTL_NULL, RW, &a) != rcOk || KnVmUnmap(a, P) != rcOk)
            abort();
        /* The shared root: any result but a crash or a wrong code is fine. */
        Retcode r = KnPmmMdlClone(st->root, 0, P, &rc_);
        if (r == rcOk)
            KnHandleClose(rc_);
        else if (r != rcHandleRevoked)
            abort();
        KnHandleClose(imp);
        KnHandleClose(c);
        KnHandleClose(h);
    }
    return NULL;
}

START_TEST(handles_from_many_threads)
{
    int base = tu_fd_count();
    struct stress st = {create(P, RW), 300};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, handle_stress, &st), 0);
    usleep(20000);
    ck_assert_uint_eq(KnHandleRevoke(st.root), rcOk);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    ck_assert_uint_eq(KnHandleClose(st.root), rcOk);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
    ck_assert_int_eq(tu_fd_count(), base);
}
END_TEST

/* ---- transfer ----------------------------------------------------------------------------------- */

START_TEST(export_import_narrows_rights)
{
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(3 * P, RWX, "abc", 4, &h), rcOk);
    Handle c;
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, 2 * P, &c), rcOk);
    struct kvmm_mdl_export e;
    ck_assert_int_eq(kvmm_mdl_export(c, KVMM_RIGHT_READ | KVMM_RIGHT_EXECUTE, &e), 0);
    ck_assert_uint_eq(e.rights, KVMM_RIGHT_READ | KVMM_RIGHT_EXECUTE);
    ck_assert_uint_eq(e.buffer_size, 3 * P);
    ck_assert_uint_eq(e.offset, 0);
    ck_assert_uint_eq(e.length, 2 * P);
    ck_assert_int_eq(fcntl(e.buffer_fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    ck_assert_int_ne(fcntl(e.buffer_fd, F_GETFD) & FD_CLOEXEC, 0);
    for (uint32_t i = 0; i < e.revoke_count; i++)
        ck_assert_int_eq(fcntl(e.revoke_fd[i], F_GETFL) & O_ACCMODE, O_RDONLY);
    Handle imp = SENTINEL;
    ck_assert_int_eq(kvmm_mdl_import(&e, &imp), 0);
    ck_assert_int_eq(e.buffer_fd, -1);
    rtl_size_t size;
    ck_assert_uint_eq(KnPmmMdlGetSize(imp, &size), rcOk);
    ck_assert_uint_eq(size, 2 * P);
    void *a = &a;
    ck_assert_uint_eq(KnPmmMdlMap(imp, 0, P, RTL_NULL, RW, &a), rcNoCapability);
    ck_assert_str_eq((char *)map(imp, 0, P, RX), "abc");
    /* No TRANSFER: the copy cannot be sent on. */
    ck_assert_int_eq(kvmm_mdl_export(imp, ~0u, &e), -EACCES);
}
END_TEST

START_TEST(export_bad_arguments)
{
    Handle h = create(P, RW);
    ck_assert_int_eq(kvmm_mdl_export(h, ~0u, RTL_NULL), -EINVAL);
    struct kvmm_mdl_export e;
    ck_assert_int_eq(kvmm_mdl_export(h, KVMM_RIGHT_READ, &e), 0);
    Handle no_transfer;
    ck_assert_int_eq(kvmm_mdl_import(&e, &no_transfer), 0);
    struct kvmm_mdl_export x = {.buffer_fd = -9};
    ck_assert_int_eq(kvmm_mdl_export(no_transfer, ~0u, &x), -EACCES);
    ck_assert_int_eq(x.buffer_fd, -9);
    kvmm_mdl_export_close(RTL_NULL);
}
END_TEST

/* A fresh description of h, for import tests that then spoil one field. */
static void describe(Handle h, uint32_t mask, struct kvmm_mdl_export *e, int fds[1 + KVMM_MDL_MAX_REVOKE])
{
    ck_assert_int_eq(kvmm_mdl_export(h, mask, e), 0);
    fds[0] = e->buffer_fd;
    for (uint32_t i = 0; i < KVMM_MDL_MAX_REVOKE; i++)
        fds[1 + i] = i < e->revoke_count ? e->revoke_fd[i] : -1;
}

static void expect_refused(struct kvmm_mdl_export *e, const int fds[1 + KVMM_MDL_MAX_REVOKE], int want)
{
    Handle h = SENTINEL;
    uint32_t before = kvmm_handle_count();
    ck_assert_int_eq(kvmm_mdl_import(e, &h), want);
    ck_assert_uint_eq(h, SENTINEL);
    ck_assert_uint_eq(kvmm_handle_count(), before);
    for (int i = 0; i < 1 + KVMM_MDL_MAX_REVOKE; i++)
        if (fds[i] >= 0)
            ck_assert_msg(fd_closed(fds[i]), "fd %d (#%d) left open", fds[i], i);
}

START_TEST(import_validates_description)
{
    Handle h = create(2 * P, RW), c;
    ck_assert_uint_eq(KnPmmMdlClone(h, P, P, &c), rcOk);
    int base = tu_fd_count();
    struct kvmm_mdl_export e;
    int fds[1 + KVMM_MDL_MAX_REVOKE];
#define SPOIL(stmt, want)                                                                \
    do {                                                                                 \
        describe(c, ~0u, &e, fds);                                                       \
        stmt;                                                                            \
        expect_refused(&e, fds, want);                                                   \
    } while (0)
    SPOIL(e.rights |= 0x8, -EINVAL);
    SPOIL(e.length = 0, -EINVAL);
    SPOIL(e.length = 2 * P, -EINVAL);                /* past the buffer */
    SPOIL(e.offset = 1, -EINVAL);
    SPOIL(e.length = P + 1, -EINVAL);
    SPOIL(e.offset = SIZE_MAX & ~(P - 1), -EINVAL);  /* overflow */
    SPOIL(e.buffer_size = 4 * P, -EINVAL);           /* not the fd's size */
    SPOIL(e.buffer_size = P + 1, -EINVAL);
    SPOIL(e.revoke_count = KVMM_MDL_MAX_REVOKE + 1, -EINVAL);
    SPOIL(e.revoke_slot[0] = 1u << 30, -EINVAL);
    SPOIL((close(e.revoke_fd[0]), e.revoke_fd[0] = e.buffer_fd, fds[1] = -1), -EINVAL); /* same fd twice */
    SPOIL((close(e.revoke_fd[1]), e.revoke_fd[1] = e.revoke_fd[0], fds[2] = -1), -EINVAL);
    /* A description claiming more than its fds give. */
    {
        describe(c, KVMM_RIGHT_READ | KVMM_RIGHT_TRANSFER, &e, fds);
        e.rights |= KVMM_RIGHT_WRITE;
        expect_refused(&e, fds, -EACCES);
    }
    /* A writable revocation fd would let the receiver clear a revocation. */
    {
        describe(c, ~0u, &e, fds);
        int rw = memfd_create("fake-revoke", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        ck_assert_int_eq(ftruncate(rw, (off_t)P), 0);
        ck_assert_int_eq(fcntl(rw, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
        close(e.revoke_fd[0]);
        e.revoke_fd[0] = fds[1] = rw;
        expect_refused(&e, fds, -EACCES);
    }
    /* A buffer that could shrink under our mappings. */
    {
        describe(c, ~0u, &e, fds);
        int loose = memfd_create("unsealed", MFD_CLOEXEC);
        ck_assert_int_eq(ftruncate(loose, (off_t)(2 * P)), 0);
        close(e.buffer_fd);
        e.buffer_fd = fds[0] = loose;
        expect_refused(&e, fds, -EINVAL);
    }
    /* Not a file at all. */
    {
        describe(c, ~0u, &e, fds);
        int pipefd[2];
        ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
        close(pipefd[1]);
        close(e.buffer_fd);
        e.buffer_fd = fds[0] = pipefd[0];
        expect_refused(&e, fds, -EINVAL);
    }
    /* A NULL output: refused, the fds still closed. */
    describe(c, ~0u, &e, fds);
    ck_assert_int_eq(kvmm_mdl_import(&e, RTL_NULL), -EINVAL);
    for (int i = 0; i < 1 + KVMM_MDL_MAX_REVOKE; i++)
        if (fds[i] >= 0)
            ck_assert(fd_closed(fds[i]));
    ck_assert_int_eq(kvmm_mdl_import(RTL_NULL, &c), -EINVAL);
    /* Already revoked. */
    describe(c, ~0u, &e, fds);
    ck_assert_uint_eq(KnHandleRevoke(h), rcOk);
    expect_refused(&e, fds, -EKEYREVOKED);
    ck_assert_int_eq(tu_fd_count(), base);
#undef SPOIL
}
END_TEST

START_TEST(import_narrows_a_writable_description)
{
    /* A description granting less than its fd allows: the handle gets a read-only reopen. */
    Handle h = create(P, RW), imp;
    struct kvmm_mdl_export e;
    ck_assert_int_eq(kvmm_mdl_export(h, ~0u, &e), 0);
    ck_assert_int_eq(fcntl(e.buffer_fd, F_GETFL) & O_ACCMODE, O_RDWR);
    e.rights = KVMM_RIGHT_READ | KVMM_RIGHT_TRANSFER;
    ck_assert_int_eq(kvmm_mdl_import(&e, &imp), 0);
    struct kvmm_mdl *o;
    uint32_t rights;
    ck_assert_int_eq(kvmm_mdl_get(imp, &o, &rights), 0);
    ck_assert_int_eq(fcntl(o->fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    kvmm_mdl_put(o);
}
END_TEST

/* The receiving process tries every way to write a buffer it got read-only. */
static void child_escalation(int sock)
{
    struct kvmm_mdl_export e;
    TU_CHILD_CHECK(recv_export(sock, &e) == 0);
    int raw = dup(e.buffer_fd), rev = dup(e.revoke_fd[0]);
    Handle h;
    TU_CHILD_CHECK(kvmm_mdl_import(&e, &h) == 0);
    void *a = RTL_NULL;
    TU_CHILD_CHECK(KnPmmMdlMap(h, 0, P, RTL_NULL, RW, &a) == rcNoCapability);
    TU_CHILD_CHECK(KnPmmMdlMap(h, 0, P, RTL_NULL, R, &a) == rcOk && strcmp(a, "secret") == 0);
    Handle c;
    TU_CHILD_CHECK(KnPmmMdlClone(h, 0, P, &c) == rcOk);
    TU_CHILD_CHECK(KnPmmMdlMap(c, 0, P, RTL_NULL, RW, &a) == rcNoCapability);
    /* As root, become someone else: the owner of the memfd, or CAP_DAC_OVERRIDE, could reopen
     * it writable through /proc (documented); another user cannot. */
    bool other_user = getuid() == 0;
    if (other_user)
        TU_CHILD_CHECK(setresgid(65534, 65534, 65534) == 0 && setresuid(65534, 65534, 65534) == 0);
    char path[64];
    for (int *fdp = (int[]){raw, rev, -1}; *fdp >= 0; fdp++) {
        int fd = *fdp;
        TU_CHILD_CHECK(mmap(NULL, P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED && errno == EACCES);
        TU_CHILD_CHECK(ftruncate(fd, 0) != 0);
        TU_CHILD_CHECK(ftruncate(fd, (off_t)(16 * P)) != 0);
        TU_CHILD_CHECK(write(fd, "x", 1) < 0);
        TU_CHILD_CHECK(pwrite(fd, "x", 1, 0) < 0);
        TU_CHILD_CHECK(fchmod(fd, 0777) != 0);           /* exec bits: F_SEAL_EXEC, even for root */
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        TU_CHILD_CHECK(open(path, O_RDWR) < 0 && errno == EACCES);
        TU_CHILD_CHECK(open(path, O_WRONLY) < 0 && errno == EACCES);
        TU_CHILD_CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) != 0); /* F_SEAL_SEAL */
        if (other_user) {
            TU_CHILD_CHECK(fchmod(fd, 0666) != 0 && errno == EPERM); /* not the owner */
            TU_CHILD_CHECK(fchown(fd, 65534, 65534) != 0);
        }
    }
    fprintf(stderr, "child escalation attempts refused (%s)\n", other_user ? "other user" : "same user");
    sync_send(sock);
    _exit(0);
}

START_TEST(receiver_cannot_escalate_through_raw_fd)
{
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(P, RW, "secret", 7, &h), rcOk);
    Handle c;
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, P, &c), rcOk); /* so the copy carries revocation fds */
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        child_escalation(sv[1]);
    struct kvmm_mdl_export e;
    ck_assert_int_eq(kvmm_mdl_export(c, KVMM_RIGHT_READ | KVMM_RIGHT_TRANSFER, &e), 0);
    ck_assert_uint_ge(e.revoke_count, 1);
    send_export(sv[0], &e);
    kvmm_mdl_export_close(&e);
    sync_wait(sv[0]);
    tu_wait_child_ok(pid);
    ck_assert_str_eq((char *)map(h, 0, P, R), "secret");
}
END_TEST

START_TEST(revocation_seen_by_other_process)
{
    Handle h = create(2 * P, RW), c;
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, 2 * P, &c), rcOk);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct kvmm_mdl_export e;
        Handle got, sub, imported_again;
        rtl_size_t size;
        void *a = RTL_NULL;
        TU_CHILD_CHECK(recv_export(sv[1], &e) == 0);
        TU_CHILD_CHECK(kvmm_mdl_import(&e, &got) == 0);
        TU_CHILD_CHECK(KnPmmMdlGetSize(got, &size) == rcOk && size == 2 * P);
        TU_CHILD_CHECK(KnPmmMdlMap(got, 0, P, RTL_NULL, RW, &a) == rcOk);
        TU_CHILD_CHECK(KnPmmMdlClone(got, P, P, &sub) == rcOk);
        /* A second hop inside the child (a copy of a copy) inherits the whole ancestry. */
        TU_CHILD_CHECK(kvmm_mdl_export(sub, ~0u, &e) == 0 && e.revoke_count == 4);
        TU_CHILD_CHECK(kvmm_mdl_import(&e, &imported_again) == 0);
        sync_send(sv[1]);  /* ready */
        sync_wait(sv[1]);  /* parent has revoked h */
        TU_CHILD_CHECK(KnPmmMdlGetSize(got, &size) == rcHandleRevoked);
        TU_CHILD_CHECK(KnPmmMdlMap(got, 0, P, RTL_NULL, R, &a) == rcHandleRevoked);
        TU_CHILD_CHECK(KnPmmMdlClone(got, 0, P, &sub) == rcHandleRevoked);
        TU_CHILD_CHECK(KnPmmMdlGetSize(sub, &size) == rcHandleRevoked);
        TU_CHILD_CHECK(KnPmmMdlGetSize(imported_again, &size) == rcHandleRevoked);
        TU_CHILD_CHECK(kvmm_mdl_export(got, ~0u, &e) == -EKEYREVOKED);
        /* What was mapped before stays mapped. */
        strcpy(a, "child still writes");
        TU_CHILD_CHECK(KnHandleClose(got) == rcOk);
        sync_send(sv[1]);
        _exit(0);
    }
    struct kvmm_mdl_export e;
    ck_assert_int_eq(kvmm_mdl_export(c, ~0u, &e), 0);
    ck_assert_uint_eq(e.revoke_count, 2);
    send_export(sv[0], &e);
    kvmm_mdl_export_close(&e);
    sync_wait(sv[0]);
    char *m = map(h, 0, P, R);
    /* Through the internal path: KnHandleRevoke sets the word too once the handle table calls
     * kvmm_mdl_revoke_object (see the report to the lead). */
    ck_assert_uint_eq(KnHandleRevoke(h), rcOk);
    sync_send(sv[0]);
    sync_wait(sv[0]);
    tu_wait_child_ok(pid);
    ck_assert_str_eq(m, "child still writes");
}
END_TEST

START_TEST(fork_child_revocations_stay_in_the_child)
{
    Handle h = create(P, RW), c;
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, P, &c), rcOk);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        rtl_size_t size;
        Handle n1, n2;
        TU_CHILD_CHECK(KnHandleRevoke(h) == rcOk);
        TU_CHILD_CHECK(KnPmmMdlGetSize(c, &size) == rcHandleRevoked);
        /* Words handed out in the child come from a page of its own. */
        Handle g = create(P, RW);
        TU_CHILD_CHECK(KnPmmMdlClone(g, 0, P, &n1) == rcOk && KnPmmMdlClone(n1, 0, P, &n2) == rcOk);
        TU_CHILD_CHECK(KnHandleRevoke(n1) == rcOk);
        _exit(0);
    }
    tu_wait_child_ok(pid);
    rtl_size_t size;
    ck_assert_uint_eq(KnPmmMdlGetSize(c, &size), rcOk);
    Handle g = create(P, RW), n1, n2;
    ck_assert_uint_eq(KnPmmMdlClone(g, 0, P, &n1), rcOk);
    ck_assert_uint_eq(KnPmmMdlClone(n1, 0, P, &n2), rcOk);
    ck_assert_uint_eq(KnPmmMdlGetSize(n2, &size), rcOk);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("mdl");
    struct {
        const char *name;
        int timeout;
    } names[] = {{"create", 30}, {"map", 30}, {"clone", 30}, {"lifetime", 120},
                 {"from_vm", 60}, {"transfer", 60}};
    TCase *tc[6];
    for (int i = 0; i < 6; i++) {
        tc[i] = tcase_create(names[i].name);
        tcase_set_timeout(tc[i], names[i].timeout);
        tcase_add_checked_fixture(tc[i], setup, NULL);
        suite_add_tcase(s, tc[i]);
    }
    tcase_add_test(tc[0], create_rounds_up_and_reports_size);
    tcase_add_test(tc[0], create_bad_arguments);
    tcase_add_test(tc[0], create_from_buf_copies_and_zero_fills);
    tcase_add_test(tc[0], create_from_buf_bad_arguments);
    tcase_add_test(tc[0], bad_handles_everywhere);
    tcase_add_test(tc[1], maps_alias_and_are_regions);
    tcase_add_test(tc[1], map_window_offsets);
    tcase_add_test(tc[1], map_bad_arguments);
    tcase_add_test(tc[1], map_hint_exact_and_never_clobbers);
    tcase_add_test(tc[1], map_more_than_rights_is_no_capability);
    tcase_add_test_raise_signal(tc[1], write_to_read_only_mapping_faults, SIGSEGV);
    tcase_add_test(tc[1], read_only_handle_is_read_only_description);
    tcase_add_test(tc[2], clone_shares_memory_of_its_window);
    tcase_add_test(tc[2], clone_of_read_only_is_read_only);
    tcase_add_test(tc[2], clone_bad_arguments);
    tcase_add_test(tc[2], derivation_depth_is_bounded);
    tcase_add_test(tc[3], close_keeps_mappings);
    tcase_add_test(tc[3], revoke_local_handle);
    tcase_add_test(tc[3], revoke_reaches_every_descendant);
    tcase_add_test(tc[3], revoke_hook_sets_the_word);
    tcase_add_test(tc[3], memory_freed_after_last_close_and_unmap);
    tcase_add_test(tc[3], fd_count_back_to_baseline_after_cycles);
    tcase_add_test(tc[4], from_vm_lazy_keeps_contents);
    tcase_add_test(tc[4], from_vm_locked_keeps_contents_and_accounts);
    tcase_add_test(tc[4], from_vm_keeps_each_pages_protection);
    tcase_add_test(tc[4], from_vm_large_lazy_range_costs_nothing);
    tcase_add_test(tc[4], from_vm_bad_arguments);
    tcase_add_test(tc[4], from_vm_other_process_maps_it);
    tcase_add_test(tc[4], from_vm_while_other_threads_fault);
    tcase_add_test(tc[3], handles_from_many_threads);
    tcase_add_test(tc[5], export_import_narrows_rights);
    tcase_add_test(tc[5], export_bad_arguments);
    tcase_add_test(tc[5], import_validates_description);
    tcase_add_test(tc[5], import_narrows_a_writable_description);
    tcase_add_test(tc[5], receiver_cannot_escalate_through_raw_fd);
    tcase_add_test(tc[5], revocation_seen_by_other_process);
    tcase_add_test(tc[5], fork_child_revocations_stay_in_the_child);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
