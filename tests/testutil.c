/* SPDX-License-Identifier: MIT */
/* tests/testutil.c — helpers shared by the Check suites: residency (mincore), /proc/self/maps, the runner. */
#include "testutil.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/io_uring.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/syscall.h>


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

size_t tu_page(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

long tu_resident_pages(const void *addr, size_t len)
{
    size_t pages = (len + tu_page() - 1) / tu_page();
    unsigned char *vec = malloc(pages ? pages : 1);
    if (!vec)
        return -1;
    long count = -1;
    if (mincore((void *)addr, len, vec) == 0) {
        count = 0;
        for (size_t i = 0; i < pages; i++)
            count += vec[i] & 1;
    }
    free(vec);
    return count;
}

long tu_backed_pages(const void *addr, size_t len)
{
    const uint64_t present = 1ull << 63, exclusive = 1ull << 56;
    size_t page = tu_page(), first = (uintptr_t)addr / page, pages = (len + page - 1) / page;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long count = 0;
    uint64_t ent[512];
    for (size_t i = 0; i < pages && count >= 0;) {
        size_t n = pages - i < 512 ? pages - i : 512;
        if (pread(fd, ent, n * sizeof ent[0], (off_t)((first + i) * sizeof ent[0])) != (ssize_t)(n * sizeof ent[0])) {
            count = -1;
            break;
        }
        for (size_t k = 0; k < n; k++)
            count += (ent[k] & (present | exclusive)) == (present | exclusive);
        i += n;
    }
    close(fd);
    return count;
}

/* Reads /proc/self/maps with a stack buffer: no malloc, so no allocator (ASan's included) maps
 * anything between a kosvmm call and this look at what the kernel has. */
int tu_maps_perms(const void *addr, char perms[5])
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[16384];
    size_t have = 0;
    int found = -1;
    unsigned long a = (unsigned long)addr;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = '\0';
            unsigned long lo, hi;
            char p[5];
            if (found < 0 && sscanf(line, "%lx-%lx %4s", &lo, &hi, p) == 3 && a >= lo && a < hi) {
                memcpy(perms, p, 5);
                found = 0;
            }
            line = nl + 1;
        }
        have = strlen(line);
        memmove(buf, line, have);
    }
    close(fd);
    return found;
}

int tu_is_mapped(const void *addr)
{
    char perms[5];
    return tu_maps_perms(addr, perms) == 0;
}

VmQueryInfo tu_query(const void *va)
{
    VmQueryInfo info;
    memset(&info, 0xA5, sizeof info);
    ck_assert_uint_eq(KnVmQuery(va, &info), rcOk);
    return info;
}

kosvmm_stats tu_stats(void)
{
    kosvmm_stats s = {.size = sizeof(kosvmm_stats)};
    ck_assert_uint_eq(kosvmm_get_stats(&s), rcOk);
    return s;
}

const char *tu_expected_perms(rtl_uint32_t state, rtl_uint32_t prot)
{
    if (state != VMM_PAGE_STATE_COMMITTED)
        return "---p";
    switch (prot) {
    case VMM_FLAG_READ: return "r--p";
    case VMM_FLAG_READ | VMM_FLAG_WRITE: return "rw-p";
    case VMM_FLAG_READ | VMM_FLAG_EXECUTE: return "r-xp";
    case VMM_FLAG_RWX_MASK: return "rwxp";
    default: return "---p";
    }
}

void tu_assert_perms(const void *p, const char *want)
{
    char perms[5];
    ck_assert_int_eq(tu_maps_perms(p, perms), 0);
    ck_assert_str_eq(perms, want);
}

long tu_vmlck_kb(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    ck_assert_ptr_nonnull(f);
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
            break;
    fclose(f);
    ck_assert_int_ge(kb, 0);
    return kb;
}

int tu_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

void tu_start_lazy_engine(void)
{
    char *p = KnVmAllocate(RTL_NULL, tu_page(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_READ | VMM_FLAG_WRITE);
    ck_assert_ptr_nonnull(p);
    p[0] = 1;
    ck_assert_uint_eq(KnVmUnmap(p, tu_page()), rcOk);
}

int tu_block_userfaultfd(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_userfaultfd, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, USERFAULTFD_IOC_NEW, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

void tu_wait_child_ok(pid_t pid)
{
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: status %#x", status);
}

void *tu_in_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    void *result;
    ck_assert_int_eq(pthread_create(&t, NULL, fn, arg), 0);
    ck_assert_int_eq(pthread_join(t, &result), 0);
    return result;
}

int tu_wait_child_for(pid_t pid, int timeout_ms)
{
    int status;
    for (int waited = 0; waited <= timeout_ms; waited++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        usleep(1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

pid_t tu_fork_peer(kosvmm_channel **parent_end, kosvmm_channel **child_end)
{
    kosvmm_channel *p, *c;
    ck_assert_uint_eq(kosvmm_channel_pair(&p, &c), rcOk);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    kosvmm_channel_close(pid == 0 ? p : c);
    *parent_end = p;
    *child_end = c;
    return pid;
}

void tu_maps_totals(long *lines, unsigned long *bytes)
{
    FILE *m = fopen("/proc/self/maps", "re");
    ck_assert_ptr_nonnull(m);
    char line[512];
    *lines = 0;
    *bytes = 0;
    while (fgets(line, sizeof line, m)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) != 2 || strstr(line, "[heap]") || strstr(line, "[stack]"))
            continue;
        ++*lines;
        *bytes += hi - lo;
    }
    fclose(m);
}

double tu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int tu_run(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    srunner_set_fork_status(runner, CK_FORK);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

long tu_maps_lines(void)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[16384];
    long lines = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    }
    close(fd);
    return lines;
}

long tu_read_long(const char *path)
{
    FILE *f = fopen(path, "re");
    ck_assert_ptr_nonnull(f);
    long v = -1;
    ck_assert_int_eq(fscanf(f, "%ld", &v), 1);
    fclose(f);
    return v;
}

long tu_status_kb(const char *field)
{
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[8192]; /* the whole file: a few hundred bytes more than it has ever needed */
    ssize_t have = 0, n;
    while (have < (ssize_t)sizeof buf - 1 && (n = read(fd, buf + have, sizeof buf - 1 - (size_t)have)) > 0)
        have += n;
    close(fd);
    buf[have] = '\0';
    size_t len = strlen(field);
    for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, field, len) == 0)
            return strtol(line + len, NULL, 10);
    return -1;
}

int tu_block_io_uring(int err)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_setup, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_enter, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_register, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

int tu_io_uring_usable(void)
{
    /* The raw system call, so the answer does not depend on what liburing caches or retries. */
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    long fd = syscall(SYS_io_uring_setup, 1, &params);
    if (fd < 0)
        return 0;
    close((int)fd);
    return 1;
}

int tu_server_wait_unimplemented(kosvmm_channel_server *srv)
{
    if (tu_io_uring_usable())
        return 0;
    static kosvmm_channel_event ev; /* 4 KiB of payload: not on a test's stack */
    ev.type = 99;
    ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 0, &ev), rcUnimplemented);
    ck_assert_uint_eq(ev.type, 99); /* nothing written on failure */
    ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 0, &ev), rcUnimplemented); /* and it stays so */
    return 1;
}

void tu_raw_send(int sock, const void *data, size_t len, const int *fds, int nfds)
{
    struct {
        _Alignas(struct cmsghdr) char buf[CMSG_SPACE(sizeof(int) * 32)];
    } control;
    struct iovec iov = {(void *)data, len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    ck_assert_int_le(nfds, 32);
    if (nfds) {
        memset(&control, 0, sizeof control);
        m.msg_control = control.buf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    ck_assert_int_eq(sendmsg(sock, &m, MSG_NOSIGNAL), (ssize_t)len);
}
