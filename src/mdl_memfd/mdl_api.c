/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/mdl_api.c — the KnPmmMdl* entry points except CreateFromVm: create, size, map, clone. */
#include <coresrv/vmm/vmm_api.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mdl_internal.h"
#include "os.h"
#include "policy.h"
#include "region_map.h"
#include "visibility.h"

int kvmm_mdl_create(uint64_t size, uint32_t rights, const void *buf, uint64_t buf_size,
                    uint64_t buf_offset, Handle *h)
{
    uint64_t page = kvmm_os_page_size(), rounded, buf_end;
    if (!h || (rights & ~KVMM_RIGHTS_ALL) || !kvmm_mdl_prot_valid((int)(rights & KVMM_RIGHT_RWX)) ||
        size == 0 || __builtin_add_overflow(size, page - 1, &rounded) || (buf_size && !buf) ||
        __builtin_add_overflow(buf_offset, buf_size, &buf_end) || buf_end > size)
        return -EINVAL;
    /* Whole pages, as mappings need; a memfd cannot be larger than off_t allows. */
    rounded &= ~(page - 1);
    if (rounded > (uint64_t)INT64_MAX)
        return -EINVAL;
    if (kvmm_policy_wx((int)(rights & KVMM_RIGHT_RWX)))
        return -EPERM;
    int fd, hfd;
    int rc = kvmm_mdl_memfd("kosvmm-mdl", rounded, rights, &fd);
    if (rc)
        return rc;
    /* The creator's read-write description serves the handle only if the handle may write;
     * either way it is what buf is written through. The object (and the quota charge) comes
     * first, so a buffer over quota costs no copy. */
    int wfd = fd;
    if (rights & KVMM_RIGHT_WRITE)
        hfd = fd, fd = -1;
    else if ((rc = kvmm_mdl_fd_for(fd, rights, &hfd))) {
        close(fd);
        return rc;
    }
    struct kvmm_mdl *o;
    if ((rc = kvmm_mdl_object_new(hfd, rounded, 0, rounded, &o)) == 0 && buf_size &&
        (rc = kvmm_mdl_write_all(wfd, buf, buf_size, buf_offset)) != 0)
        kvmm_mdl_object_free(o);
    if (fd >= 0)
        close(fd);
    return rc ? rc : kvmm_mdl_publish(o, rights, h);
}

KVMM_PUBLIC Retcode KnPmmMdlCreate(rtl_size_t size, int prot, Handle *handle)
{
    int rc = kvmm_policy_enter(KVMM_M_MDL_CREATE);
    if (rc)
        return kvmm_mdl_retcode(rc);
    if (!kvmm_mdl_prot_valid(prot))
        return kvmm_mdl_retcode(-EINVAL);
    return kvmm_mdl_retcode(kvmm_mdl_create(size, (uint32_t)prot | KVMM_RIGHT_TRANSFER, RTL_NULL, 0, 0, handle));
}

KVMM_PUBLIC Retcode KnPmmMdlCreateFromBuf(rtl_size_t size, int prot, const void *buf,
                                          rtl_size_t bufSize, Handle *handle)
{
    int rc = kvmm_policy_enter(KVMM_M_MDL_CREATE);
    if (rc)
        return kvmm_mdl_retcode(rc);
    if (!kvmm_mdl_prot_valid(prot))
        return kvmm_mdl_retcode(-EINVAL);
    return kvmm_mdl_retcode(
        kvmm_mdl_create(size, (uint32_t)prot | KVMM_RIGHT_TRANSFER, buf, bufSize, 0, handle));
}

KVMM_PUBLIC Retcode KnPmmMdlGetSize(Handle handle, rtl_size_t *size)
{
    int rc = kvmm_policy_enter(KVMM_M_MDL_GET_SIZE);
    if (rc || !size)
        return kvmm_mdl_retcode(rc ? rc : -EINVAL);
    struct kvmm_mdl *o;
    uint32_t rights;
    rc = kvmm_mdl_get(handle, &o, &rights);
    if (rc)
        return kvmm_mdl_retcode(rc);
    *size = o->length;
    kvmm_mdl_put(o);
    return rcOk;
}

/* offset/length name a non-empty, page-aligned part of a window of window bytes. */
static bool window_ok(uint64_t offset, uint64_t length, uint64_t window)
{
    uint64_t end;
    return !__builtin_add_overflow(offset, length, &end) && end <= window;
}

static bool window_aligned(uint64_t offset, uint64_t length)
{
    return length != 0 && kvmm_mdl_aligned(offset) && kvmm_mdl_aligned(length);
}

/* Maps [offset, offset + length) of o's window at hint (exactly) or anywhere, as a region. */
static int map_window(struct kvmm_mdl *o, uint64_t offset, uint64_t length, uintptr_t hint,
                      int prot, uintptr_t *out)
{
    struct kvmm_attrs a = {KVMM_MDL, (uint8_t)prot, 0};
    int flags = hint ? MAP_SHARED | MAP_FIXED_NOREPLACE : MAP_SHARED;
    int rc = kvmm_quota_charge(KVMM_Q_RESERVED, length);
    if (rc)
        return rc;
    void *m = mmap((void *)hint, length, kvmm_kernel_prot(a), flags, o->fd, (off_t)(o->offset + offset));
    uintptr_t base = (uintptr_t)m;
    struct kvmm_region *r = NULL;
    if (m == MAP_FAILED)
        rc = errno == EEXIST ? -EEXIST : errno == EACCES || errno == EPERM ? -EACCES : -ENOMEM;
    else if (hint && base != hint)
        rc = -EEXIST; /* kernels before 4.17 take MAP_FIXED_NOREPLACE as a mere hint */
    /* Flags as if allocated committed with this protection: what KnVmQuery reports. */
    else if (!(r = kvmm_region_new(base, base + length, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | prot, a)))
        rc = -ENOMEM;
    if (rc) {
        if (m != MAP_FAILED)
            munmap(m, length);
        kvmm_quota_uncharge(KVMM_Q_RESERVED, length);
        return rc;
    }
    kvmm_map_wrlock();
    kvmm_map_insert(r);
    kvmm_map_unlock();
    *out = base;
    return 0;
}

KVMM_PUBLIC Retcode KnPmmMdlMap(Handle handle, rtl_size_t offset, rtl_size_t length, void *hint,
                                int prot, void **address)
{
    uintptr_t h = (uintptr_t)hint, hint_end, base;
    int rc = kvmm_policy_enter(KVMM_M_MDL_MAP);
    if (rc)
        return kvmm_mdl_retcode(rc);
    if (!address || !kvmm_mdl_prot_valid(prot) || !window_aligned(offset, length) ||
        !kvmm_mdl_aligned(h) || __builtin_add_overflow(h, length, &hint_end))
        return kvmm_mdl_retcode(-EINVAL);
    if ((rc = kvmm_policy_wx(prot)))
        return kvmm_mdl_retcode(rc);
    struct kvmm_mdl *o;
    uint32_t rights;
    rc = kvmm_mdl_get(handle, &o, &rights);
    if (rc)
        return kvmm_mdl_retcode(rc);
    if (!window_ok(offset, length, o->length))
        rc = -EINVAL;
    else if ((uint32_t)prot & ~rights)
        rc = -EACCES;
    else
        rc = map_window(o, offset, length, h, prot, &base);
    kvmm_mdl_put(o);
    if (rc == 0)
        *address = (void *)base;
    return kvmm_mdl_retcode(rc);
}

KVMM_PUBLIC Retcode KnPmmMdlClone(Handle origin, rtl_size_t offset, rtl_size_t length, Handle *clone)
{
    int rc = kvmm_policy_enter(KVMM_M_MDL_CLONE);
    if (rc || !clone || !window_aligned(offset, length))
        return kvmm_mdl_retcode(rc ? rc : -EINVAL);
    struct kvmm_mdl *o, *c = NULL;
    uint32_t rights;
    rc = kvmm_mdl_get(origin, &o, &rights);
    if (rc)
        return kvmm_mdl_retcode(rc);
    int fd = -1;
    if (!window_ok(offset, length, o->length))
        rc = -EINVAL;
    /* Same access mode as the origin: a clone never holds more than its origin. */
    else if ((fd = fcntl(o->fd, F_DUPFD_CLOEXEC, 0)) < 0)
        rc = -errno;
    else if ((rc = kvmm_mdl_object_new(fd, o->buffer_size, o->offset + offset, length, &c)) == 0 &&
             (rc = kvmm_mdl_inherit(c, o)) != 0)
        kvmm_mdl_object_free(c);
    kvmm_mdl_put(o);
    Handle h;
    if (rc == 0 && (rc = kvmm_mdl_publish(c, rights, &h)) == 0)
        *clone = h;
    return kvmm_mdl_retcode(rc);
}
