/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/mdl_fd.c — the memfd helpers under buffers and revocation pages: sealed creation, narrowed descriptions, whole writes. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmm/flags.h>

#include "mdl_internal.h"
#include "os.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U /* Linux 6.3 */
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

static int memfd_open(const char *name, uint32_t rights)
{
    unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
    /* Without EXECUTE right: sealed non-executable (no execve, no chmod +x). MFD_EXEC names the
     * other choice explicitly, which also keeps the kernel from warning about memfds that say
     * neither. Older kernels know neither flag (EINVAL); vm.memfd_noexec=2 refuses MFD_EXEC
     * (EACCES), and a NOEXEC memfd can still be mapped PROT_EXEC, so fall back to it. */
    int fd = memfd_create(name, flags | (rights & KVMM_RIGHT_EXECUTE ? MFD_EXEC : MFD_NOEXEC_SEAL));
    if (fd < 0 && errno == EACCES)
        fd = memfd_create(name, flags | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL)
        fd = memfd_create(name, flags);
    return fd < 0 ? -errno : fd;
}

int kvmm_mdl_memfd(const char *name, uint64_t size, uint32_t rights, int *out)
{
    int fd = memfd_open(name, rights);
    if (fd < 0)
        return fd;
    int rc = 0;
    if (ftruncate(fd, (off_t)size) != 0)
        rc = errno == EFBIG || errno == ENOSPC ? -ENOMEM : -errno;
    /* 0444: reopening a read-only copy for writing through /proc/<pid>/fd then needs ownership
     * of the inode (to chmod it back) or CAP_DAC_OVERRIDE, not just the fd. */
    else if (fchmod(fd, 0444) != 0)
        rc = -errno;
    /* Nobody can truncate the buffer under another holder's mapping (SIGBUS), nor unseal it. */
    else if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
        rc = -errno;
    if (rc) {
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

int kvmm_mdl_fd_for(int fd, uint32_t rights, int *out)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    int mode = fl & O_ACCMODE, nfd;
    if (rights & KVMM_RIGHT_WRITE ? mode == O_RDWR : mode == O_RDONLY) {
        nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    } else if (!(rights & KVMM_RIGHT_WRITE) && mode == O_RDWR) {
        /* A new, read-only file description of the same memfd: the kernel then refuses writable
         * shared mappings of it (EACCES), whoever ends up holding it. */
        char path[32] = "/proc/self/fd/", digits[12];
        int n = 0, len = (int)strlen(path);
        /* By hand rather than snprintf: this also runs in a fork child (mdl_revoke.c). */
        for (unsigned v = (unsigned)fd; n == 0 || v; v /= 10)
            digits[n++] = (char)('0' + v % 10);
        while (n)
            path[len++] = digits[--n];
        path[len] = '\0';
        nfd = open(path, O_RDONLY | O_CLOEXEC);
        if (nfd < 0 && errno == ENOENT)
            return -ENOSYS; /* no /proc: no way to narrow a description */
    } else {
        return -EACCES;
    }
    if (nfd < 0)
        return -errno;
    *out = nfd;
    return 0;
}

int kvmm_mdl_write_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const char *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 || errno == ENOSPC ? -ENOMEM : errno == EFAULT ? -EINVAL : -errno;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

bool kvmm_mdl_aligned(uint64_t v)
{
    return (v & (kvmm_os_page_size() - 1)) == 0;
}

bool kvmm_mdl_prot_valid(int prot)
{
    /* The SDK's combinations; "no access" would make a buffer nobody can ever map. */
    return (prot & ~VMM_FLAG_RWX_MASK) == 0 && (prot & VMM_FLAG_READ);
}

int kvmm_mdl_shared_page_new(int *fd_out, uint32_t **words)
{
    size_t page = kvmm_os_page_size();
    int fd;
    int rc = kvmm_mdl_memfd("kosvmm-channel", page, KVMM_RIGHT_READ | KVMM_RIGHT_WRITE, &fd);
    if (rc)
        return rc;
    uintptr_t m;
    if ((rc = kvmm_os_map_file(fd, 0, page, PROT_READ | PROT_WRITE, 0, &m))) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    *words = (uint32_t *)m;
    return 0;
}

int kvmm_mdl_shared_page_map(int fd, uint32_t **words, uint64_t *dev, uint64_t *ino)
{
    size_t page = kvmm_os_page_size();
    struct stat st;
    int fl = fcntl(fd, F_GETFL), seals = fcntl(fd, F_GET_SEALS);
    /* Sealed against shrinking, or its owner could turn our stores into SIGBUS. */
    if (fl < 0 || (fl & O_ACCMODE) != O_RDWR || seals < 0 || !(seals & F_SEAL_SHRINK) || fstat(fd, &st) != 0 ||
        !S_ISREG(st.st_mode) || st.st_size < (off_t)page)
        return -EINVAL;
    uintptr_t m;
    int rc = kvmm_os_map_file(fd, 0, page, PROT_READ | PROT_WRITE, 0, &m);
    if (rc)
        return rc;
    *words = (uint32_t *)m;
    *dev = (uint64_t)st.st_dev;
    *ino = (uint64_t)st.st_ino;
    return 0;
}

void kvmm_mdl_shared_page_unmap(uint32_t *words)
{
    if (words)
        kvmm_os_release((uintptr_t)words, kvmm_os_page_size());
}
