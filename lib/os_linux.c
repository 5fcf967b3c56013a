/* SPDX-License-Identifier: MIT */
/* lib/os_linux.c — the thin Linux primitive layer under the region map: one kernel mechanism per call. */
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

/* The syscall's result as 0 or a negative errno. */
static int os_result(int ret)
{
    return ret == 0 ? 0 : errno ? -errno : -EIO;
}

uint64_t kvmm_os_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

size_t kvmm_os_page_size(void)
{
    static size_t page;
    size_t p = __atomic_load_n(&page, __ATOMIC_RELAXED);
    if (!p) {
        p = (size_t)sysconf(_SC_PAGESIZE);
        __atomic_store_n(&page, p, __ATOMIC_RELAXED);
    }
    return p;
}

int kvmm_os_reserve(uintptr_t fixed, size_t len, uintptr_t *out)
{
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (fixed ? MAP_FIXED_NOREPLACE : 0);
    void *p = mmap((void *)fixed, len, PROT_NONE, flags, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    if (fixed && (uintptr_t)p != fixed) {
        /* Pre-4.17 kernels ignore MAP_FIXED_NOREPLACE and treat the address as a hint. */
        munmap(p, len);
        return -EEXIST;
    }
    *out = (uintptr_t)p;
    return 0;
}

int kvmm_os_reserve_aligned(size_t len, size_t align, size_t offset, uintptr_t *out)
{
    uintptr_t raw = 0; /* set on success; gcc -O3 cannot see it through the call */
    size_t total;
    /* No address space holds len + align bytes when that sum wraps: without this check a wrapped,
     * small total would be mapped and a region ending below its base recorded. */
    if (__builtin_add_overflow(len, align, &total))
        return -ENOMEM;
    int rc = kvmm_os_reserve(0, total, &raw);
    if (rc)
        return rc;
    uintptr_t start = ((raw + offset + align - 1) & ~(uintptr_t)(align - 1)) - offset;
    if (start > raw)
        munmap((void *)raw, start - raw);
    if (raw + len + align > start + len)
        munmap((void *)(start + len), raw + len + align - (start + len));
    *out = start;
    return 0;
}

int kvmm_os_map_file(int fd, uint64_t offset, size_t len, int prot, uintptr_t fixed, uintptr_t *out)
{
    void *p = mmap((void *)fixed, len, prot, MAP_SHARED | (fixed ? MAP_FIXED_NOREPLACE : 0), fd, (off_t)offset);
    if (p == MAP_FAILED)
        return -errno;
    if (fixed && (uintptr_t)p != fixed) {
        munmap(p, len); /* pre-4.17 kernels: a hint, as in kvmm_os_reserve */
        return -EEXIST;
    }
    *out = (uintptr_t)p;
    return 0;
}

int kvmm_os_map_file_over(uintptr_t addr, size_t len, int prot, int fd, uint64_t offset)
{
    void *p = mmap((void *)addr, len, prot, MAP_SHARED | MAP_FIXED, fd, (off_t)offset);
    return p == MAP_FAILED ? -errno : 0;
}

int kvmm_os_map_zeros(size_t len, uintptr_t *out)
{
    void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    *out = (uintptr_t)p;
    return 0;
}

size_t kvmm_os_advise_huge(uintptr_t addr, size_t len)
{
    uintptr_t lo = (addr + KVMM_HUGE_PAGE - 1) & ~(uintptr_t)(KVMM_HUGE_PAGE - 1);
    uintptr_t hi = (addr + len) & ~(uintptr_t)(KVMM_HUGE_PAGE - 1);
    if (hi <= lo || madvise((void *)lo, hi - lo, MADV_HUGEPAGE) != 0)
        return 0;
    return hi - lo;
}

int kvmm_os_advise_no_huge(uintptr_t addr, size_t len)
{
    return os_result(madvise((void *)addr, len, MADV_NOHUGEPAGE));
}

int kvmm_os_collapse(uintptr_t addr, size_t len)
{
    return os_result(madvise((void *)addr, len, MADV_COLLAPSE));
}

int kvmm_os_advise_staging(uintptr_t addr, size_t len)
{
    int rc = os_result(madvise((void *)addr, len, MADV_HUGEPAGE));
    return rc ? rc : os_result(madvise((void *)addr, len, MADV_WIPEONFORK));
}

int kvmm_os_release(uintptr_t addr, size_t len)
{
    return os_result(munmap((void *)addr, len));
}

int kvmm_os_protect(uintptr_t addr, size_t len, int prot)
{
    return os_result(mprotect((void *)addr, len, prot));
}

int kvmm_os_populate(uintptr_t addr, size_t len)
{
    static int no_populate_madvise;
    if (!__atomic_load_n(&no_populate_madvise, __ATOMIC_RELAXED)) {
        int rc = os_result(madvise((void *)addr, len, MADV_POPULATE_WRITE));
        if (rc != -EINVAL)
            return rc;
        __atomic_store_n(&no_populate_madvise, 1, __ATOMIC_RELAXED);
    }
    /* A write fault per page that cannot lose a concurrent writer's store. */
    for (uintptr_t p = addr; p < addr + len; p += kvmm_os_page_size())
        __atomic_fetch_add((volatile char *)p, 0, __ATOMIC_RELAXED);
    return 0;
}

int kvmm_os_discard(uintptr_t addr, size_t len)
{
    return os_result(madvise((void *)addr, len, MADV_DONTNEED));
}

/* Raw system calls: sanitizer runtimes intercept mlock/munlock as no-ops that return 0, which
 * would make a pin that never happened look successful. */
int kvmm_os_pin(uintptr_t addr, size_t len)
{
    return os_result((int)syscall(SYS_mlock, addr, len));
}

int kvmm_os_unpin(uintptr_t addr, size_t len)
{
    return os_result((int)syscall(SYS_munlock, addr, len));
}

int kvmm_os_install_guard(uintptr_t addr, size_t len)
{
    return os_result(madvise((void *)addr, len, MADV_GUARD_INSTALL));
}

static uintptr_t parse_hex(const char **s)
{
    uintptr_t v = 0;
    for (;; (*s)++) {
        char c = **s;
        if (c >= '0' && c <= '9')
            v = v * 16 + (uintptr_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v * 16 + (uintptr_t)(c - 'a' + 10);
        else
            return v;
    }
}

/* One maps line: "lo-hi rwxp ...". Returns 0 when parsed. */
static int parse_maps_line(const char *s, uintptr_t *lo, uintptr_t *hi, int *prot)
{
    *lo = parse_hex(&s);
    if (*s++ != '-')
        return -1;
    *hi = parse_hex(&s);
    if (*s++ != ' ' || strlen(s) < 3)
        return -1;
    *prot = (s[0] == 'r' ? PROT_READ : 0) | (s[1] == 'w' ? PROT_WRITE : 0) |
            (s[2] == 'x' ? PROT_EXEC : 0);
    return 0;
}

int kvmm_os_scan_prot(uintptr_t start, uintptr_t end, kvmm_os_prot_fn fn, void *ctx)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* Lines are short (< 4 KiB even with long paths, which are cut off harmlessly here). */
    char buf[8192];
    size_t have = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        have += (size_t)n;
        buf[have] = '\0';
        char *line = buf, *nl;
        while ((nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
            *nl = '\0';
            uintptr_t lo, hi;
            int prot;
            if (parse_maps_line(line, &lo, &hi, &prot) == 0 && hi > start && lo < end)
                fn(ctx, lo > start ? lo : start, hi < end ? hi : end, prot);
            line = nl + 1;
        }
        size_t rest = have - (size_t)(line - buf);
        if (n == 0)
            break;
        if (rest == sizeof buf - 1)
            rest = 0; /* an absurdly long line: drop it */
        memmove(buf, line, rest);
        have = rest;
    }
    close(fd);
    return rc;
}
