/* src/mdl_memfd/mdl_api.c — the KnPmmMdl* entry points except CreateFromVm: create, size, map, clone. */
#include <coresrv/vmm/vmm_api.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mdl_internal.h"
#include "os.h"
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
    int fd, hfd = -1;
    int rc = kvmm_mdl_memfd("kosvmm-mdl", rounded, rights, &fd);
    if (rc)
        return rc;
    if (buf_size)
        rc = kvmm_mdl_write_all(fd, buf, buf_size, buf_offset);
    /* The creator's read-write description serves the handle only if the handle may write. */
    if (rc == 0 && !(rights & KVMM_RIGHT_WRITE))
        rc = kvmm_mdl_fd_for(fd, rights, &hfd);
    else if (rc == 0)
        hfd = fd, fd = -1;
    if (fd >= 0)
        close(fd);
    struct kvmm_mdl *o;
    if (rc || (rc = kvmm_mdl_object_new(hfd, rounded, 0, rounded, &o)))
        return rc;
    return kvmm_mdl_publish(o, rights, h);
}

KVMM_PUBLIC Retcode KnPmmMdlCreate(rtl_size_t size, int prot, Handle *handle)
{
    if (!kvmm_mdl_prot_valid(prot))
        return kvmm_mdl_retcode(-EINVAL);
    return kvmm_mdl_retcode(kvmm_mdl_create(size, (uint32_t)prot | KVMM_RIGHT_TRANSFER, RTL_NULL, 0, 0, handle));
}

KVMM_PUBLIC Retcode KnPmmMdlCreateFromBuf(rtl_size_t size, int prot, const void *buf,
                                          rtl_size_t bufSize, Handle *handle)
{
    if (!kvmm_mdl_prot_valid(prot))
        return kvmm_mdl_retcode(-EINVAL);
    return kvmm_mdl_retcode(
        kvmm_mdl_create(size, (uint32_t)prot | KVMM_RIGHT_TRANSFER, buf, bufSize, 0, handle));
}

KVMM_PUBLIC Retcode KnPmmMdlGetSize(Handle handle, rtl_size_t *size)
{
    if (!size)
        return kvmm_mdl_retcode(-EINVAL);
    struct kvmm_mdl *o;
    uint32_t rights;
    int rc = kvmm_mdl_get(handle, &o, &rights);
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
    void *m = mmap((void *)hint, length, kvmm_kernel_prot(a), flags, o->fd, (off_t)(o->offset + offset));
    if (m == MAP_FAILED)
        return errno == EEXIST ? -EEXIST : errno == EACCES || errno == EPERM ? -EACCES : -ENOMEM;
    uintptr_t base = (uintptr_t)m;
    if (hint && base != hint) {
        /* Kernels before 4.17 take MAP_FIXED_NOREPLACE as a mere hint. */
        munmap(m, length);
        return -EEXIST;
    }
    /* Flags as if allocated committed with this protection: what KnVmQuery reports. */
    struct kvmm_region *r = kvmm_region_new(base, base + length, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | prot, a);
    if (!r) {
        munmap(m, length);
        return -ENOMEM;
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
    if (!address || !kvmm_mdl_prot_valid(prot) || !window_aligned(offset, length) ||
        !kvmm_mdl_aligned(h) || __builtin_add_overflow(h, length, &hint_end))
        return kvmm_mdl_retcode(-EINVAL);
    struct kvmm_mdl *o;
    uint32_t rights;
    int rc = kvmm_mdl_get(handle, &o, &rights);
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
    if (!clone || !window_aligned(offset, length))
        return kvmm_mdl_retcode(-EINVAL);
    struct kvmm_mdl *o, *c = NULL;
    uint32_t rights;
    int rc = kvmm_mdl_get(origin, &o, &rights);
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
