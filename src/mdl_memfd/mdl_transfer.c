/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/mdl_transfer.c — describing an MDL handle for another process and turning such a description into a handle. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mdl_internal.h"

int kvmm_mdl_export_lent(Handle h, uint32_t mask, struct kvmm_mdl_export *e, struct kvmm_mdl **lender)
{
    if (!e || !lender)
        return -EINVAL;
    struct kvmm_mdl *o;
    uint32_t rights;
    int rc = kvmm_mdl_get(h, &o, &rights);
    if (rc)
        return rc;
    struct kvmm_mdl_export x = {.buffer_fd = -1};
    if (!(rights & KVMM_RIGHT_TRANSFER)) {
        rc = -EACCES;
    } else {
        x.rights = rights & mask & KVMM_RIGHTS_ALL;
        x.buffer_size = o->buffer_size;
        x.offset = o->offset;
        x.length = o->length;
        /* A handle's description always has the access mode of its rights. Without WRITE in the
         * narrowed rights the copy gets a read-only description, whatever this handle holds: the
         * receiver's kernel then refuses writable mappings. */
        if ((x.rights & KVMM_RIGHT_WRITE) || !(rights & KVMM_RIGHT_WRITE))
            x.buffer_fd = o->fd;
        else
            rc = kvmm_mdl_held_ro_fd(o->held, o->fd, &x.buffer_fd);
        if (rc == 0)
            rc = kvmm_mdl_lend_words(o, &x);
    }
    if (rc) {
        kvmm_mdl_put(o);
        return rc;
    }
    *e = x;
    *lender = o;
    return 0;
}

void kvmm_mdl_export_return(struct kvmm_mdl *lender)
{
    if (lender)
        kvmm_mdl_put(lender);
}

int kvmm_mdl_export(Handle h, uint32_t mask, struct kvmm_mdl_export *e)
{
    if (!e)
        return -EINVAL;
    struct kvmm_mdl_export x;
    struct kvmm_mdl *o;
    int rc = kvmm_mdl_export_lent(h, mask, &x, &o);
    if (rc)
        return rc;
    /* The caller owns what it gets: duplicates of the lent descriptors. */
    int *fds[1 + KVMM_MDL_MAX_REVOKE];
    uint32_t n = 0;
    fds[n++] = &x.buffer_fd;
    for (uint32_t i = 0; i < x.revoke_count; i++)
        fds[n++] = &x.revoke_fd[i];
    uint32_t done = 0;
    for (; done < n; done++) {
        int fd = fcntl(*fds[done], F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            break;
        }
        *fds[done] = fd;
    }
    kvmm_mdl_export_return(o);
    if (rc) {
        while (done--)
            close(*fds[done]);
        return rc;
    }
    *e = x;
    return 0;
}

void kvmm_mdl_export_close(struct kvmm_mdl_export *e)
{
    if (!e)
        return;
    if (e->buffer_fd >= 0)
        close(e->buffer_fd);
    e->buffer_fd = -1;
    uint32_t n = e->revoke_count < KVMM_MDL_MAX_REVOKE ? e->revoke_count : KVMM_MDL_MAX_REVOKE;
    for (uint32_t i = 0; i < n; i++) {
        if (e->revoke_fd[i] >= 0)
            close(e->revoke_fd[i]);
        e->revoke_fd[i] = -1;
        if (e->revoke_page[i])
            kvmm_mdl_rpage_release(e->revoke_page[i], true);
        e->revoke_page[i] = NULL;
    }
}

/* The description's own consistency, before any fd is looked at. */
static int check_description(const struct kvmm_mdl_export *e)
{
    uint64_t end;
    if (e->revoke_count > KVMM_MDL_MAX_REVOKE || (e->rights & ~KVMM_RIGHTS_ALL) || e->length == 0 ||
        !kvmm_mdl_aligned(e->offset) || !kvmm_mdl_aligned(e->length) ||
        !kvmm_mdl_aligned(e->buffer_size) || __builtin_add_overflow(e->offset, e->length, &end) ||
        end > e->buffer_size || e->buffer_size > (uint64_t)INT64_MAX || e->buffer_fd < 0)
        return -EINVAL;
    /* Each fd is taken over exactly once: a number given twice would be closed twice. */
    for (uint32_t i = 0; i < e->revoke_count; i++) {
        if (e->revoke_page[i]) { /* a page mapped here, by reference: no fd with it */
            if (e->revoke_fd[i] >= 0)
                return -EINVAL;
            continue;
        }
        if (e->revoke_fd[i] < 0 || e->revoke_fd[i] == e->buffer_fd)
            return -EINVAL;
        for (uint32_t j = 0; j < i; j++)
            if (e->revoke_fd[j] == e->revoke_fd[i])
                return -EINVAL;
    }
    return 0;
}

/* Closes every fd of a refused description once, even if it names one several times. */
static void close_refused(struct kvmm_mdl_export *e)
{
    uint32_t n = e->revoke_count < KVMM_MDL_MAX_REVOKE ? e->revoke_count : KVMM_MDL_MAX_REVOKE;
    int *fds[1 + KVMM_MDL_MAX_REVOKE];
    fds[0] = &e->buffer_fd;
    for (uint32_t i = 0; i < n; i++)
        fds[1 + i] = &e->revoke_fd[i];
    for (uint32_t i = 0; i <= n; i++) {
        int fd = *fds[i];
        if (fd < 0)
            continue;
        close(fd);
        for (uint32_t j = i; j <= n; j++)
            if (*fds[j] == fd)
                *fds[j] = -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (e->revoke_page[i])
            kvmm_mdl_rpage_release(e->revoke_page[i], true);
        e->revoke_page[i] = NULL;
    }
}

/* The buffer fd against the description: the size it claims, sealed so no holder can shrink it
 * under our mappings, and an access mode that gives at least the rights claimed. Replaces a
 * read-write description by a read-only one when the rights lack WRITE. */
static int check_buffer_fd(const struct kvmm_mdl_export *e, int *fd, struct stat *st)
{
    int fl = fcntl(*fd, F_GETFL);
    if (fl < 0 || fstat(*fd, st) != 0 || !S_ISREG(st->st_mode) || (uint64_t)st->st_size != e->buffer_size)
        return -EINVAL;
    /* Seals are never removed, so a file already held here with its seals checked needs no
     * second look: the held entry's fd pins the inode, so (dev, ino) names that very file. */
    if (!kvmm_mdl_held_sealed(st)) {
        int seals = fcntl(*fd, F_GET_SEALS);
        if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
            return -EINVAL;
    }
    int mode = fl & O_ACCMODE;
    if (mode == O_WRONLY || ((e->rights & KVMM_RIGHT_WRITE) && mode != O_RDWR))
        return -EACCES;
    if (!(e->rights & KVMM_RIGHT_WRITE) && mode == O_RDWR) {
        int ro;
        int rc = kvmm_mdl_fd_for(*fd, e->rights, &ro);
        if (rc)
            return rc;
        close(*fd);
        *fd = ro;
    }
    return 0;
}

int kvmm_mdl_import(struct kvmm_mdl_export *e, Handle *h)
{
    if (!e)
        return -EINVAL;
    int rc = !h ? -EINVAL : check_description(e);
    if (rc) {
        close_refused(e);
        return rc;
    }
    int fd = e->buffer_fd;
    e->buffer_fd = -1;
    struct stat st; /* the same inode after a read-only reopen: the quota entry can use it */
    if ((rc = check_buffer_fd(e, &fd, &st))) {
        close(fd);
        kvmm_mdl_export_close(e);
        return rc;
    }
    struct kvmm_mdl *o;
    if ((rc = kvmm_mdl_object_new_stat(fd, &st, e->buffer_size, e->offset, e->length, &o))) {
        kvmm_mdl_export_close(e);
        return rc;
    }
    kvmm_mdl_held_mark_sealed(o->held);
    if ((rc = kvmm_mdl_import_words(o, e))) {
        kvmm_mdl_object_free(o);
        return rc;
    }
    return kvmm_mdl_publish(o, e->rights, h);
}
