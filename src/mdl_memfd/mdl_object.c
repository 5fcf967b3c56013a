/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/mdl_object.c — MDL handle objects: the memfd behind them, their lifetime, lookups with revocation. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmm/flags.h>

#include "errors.h"
#include "handle_table.h"
#include "mdl_internal.h"
#include "os.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U /* Linux 6.3 */
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

static void mdl_acquire(void *object)
{
    __atomic_add_fetch(&((struct kvmm_mdl *)object)->refs, 1, __ATOMIC_RELAXED);
}

static void mdl_release(void *object)
{
    kvmm_mdl_put(object);
}

/* KnHandleRevoke also sets the handle's revocation word: clones and copies in other processes see it. */
const struct kvmm_handle_ops kvmm_mdl_ops = {
    .acquire = mdl_acquire,
    .release = mdl_release,
    .revoke = kvmm_mdl_revoke_object,
};

bool kvmm_mdl_aligned(uint64_t v)
{
    return (v & (kvmm_os_page_size() - 1)) == 0;
}

bool kvmm_mdl_prot_valid(int prot)
{
    /* The SDK's combinations; "no access" would make a buffer nobody can ever map. */
    return (prot & ~VMM_FLAG_RWX_MASK) == 0 && (prot & VMM_FLAG_READ);
}

Retcode kvmm_mdl_retcode(int rc)
{
    /* RLIMIT_NOFILE is a configured limit: each handle holds one file descriptor. */
    return kvmm_retcode(rc == -EMFILE || rc == -ENFILE ? -EDQUOT : rc);
}

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

int kvmm_mdl_object_new(int fd, uint64_t buffer_size, uint64_t offset, uint64_t length,
                        struct kvmm_mdl **out)
{
    struct kvmm_mdl *o = calloc(1, sizeof *o);
    int rc = o ? kvmm_mdl_hold(fd, buffer_size, &o->held) : -ENOMEM;
    if (rc) {
        free(o);
        close(fd);
        return rc;
    }
    o->fd = fd;
    o->buffer_size = buffer_size;
    o->offset = offset;
    o->length = length;
    *out = o;
    return 0;
}

void kvmm_mdl_object_free(struct kvmm_mdl *o)
{
    kvmm_mdl_drop_words(o);
    close(o->fd);
    kvmm_mdl_unhold(o->held);
    free(o);
}

int kvmm_mdl_publish(struct kvmm_mdl *o, uint32_t rights, Handle *out)
{
    int rc = kvmm_handle_open(&kvmm_mdl_ops, o, rights, out);
    if (rc)
        kvmm_mdl_object_free(o);
    return rc;
}

int kvmm_mdl_get(Handle h, struct kvmm_mdl **out, uint32_t *rights)
{
    void *object;
    uint32_t r;
    int rc = kvmm_handle_get(h, &kvmm_mdl_ops, &object, &r);
    if (rc)
        return rc;
    /* The slot says whether h itself was revoked; its origins' words say the rest. */
    if (kvmm_mdl_is_revoked(object)) {
        kvmm_mdl_put(object);
        return -EKEYREVOKED;
    }
    *out = object;
    *rights = r;
    return 0;
}

void kvmm_mdl_put(struct kvmm_mdl *o)
{
    /* The last reference closes the fd: mappings keep the memory alive on their own. */
    if (__atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) == 0)
        kvmm_mdl_object_free(o);
}

int kvmm_mdl_revoke(Handle h)
{
    void *object;
    uint32_t rights;
    int rc = kvmm_handle_get(h, &kvmm_mdl_ops, &object, &rights);
    if (rc)
        return rc;
    /* The reference keeps the object alive even if h is closed between these two steps. */
    rc = kvmm_handle_revoke(h);
    if (rc == 0)
        kvmm_mdl_revoke_object(object);
    kvmm_mdl_put(object);
    return rc;
}
