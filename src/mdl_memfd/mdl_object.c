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

#include "handle_table.h"
#include "mdl_internal.h"
#include "os.h"

static void mdl_acquire(void *object)
{
    __atomic_add_fetch(&((struct kvmm_mdl *)object)->refs, 1, __ATOMIC_RELAXED);
}

static void mdl_release(void *object)
{
    kvmm_mdl_put(object);
}

static bool mdl_is_revoked(const void *object)
{
    return kvmm_mdl_is_revoked(object);
}

/* KnHandleRevoke sets the handle's revocation word: clones and copies in other processes see it. */
const struct kvmm_handle_ops kvmm_mdl_ops = {
    .acquire = mdl_acquire,
    .release = mdl_release,
    .revoke = kvmm_mdl_revoke_object,
    .is_revoked = mdl_is_revoked,
};

int kvmm_mdl_object_new(int fd, uint64_t buffer_size, uint64_t offset, uint64_t length,
                        struct kvmm_mdl **out)
{
    return kvmm_mdl_object_new_stat(fd, NULL, buffer_size, offset, length, out);
}

int kvmm_mdl_object_new_stat(int fd, const struct stat *st, uint64_t buffer_size, uint64_t offset,
                             uint64_t length, struct kvmm_mdl **out)
{
    struct kvmm_mdl *o = calloc(1, sizeof *o);
    int rc = o ? kvmm_mdl_hold(fd, st, buffer_size, &o->held) : -ENOMEM;
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
    /* An import's object is held past the publication, so that its pages can be settled even if
     * another thread closes the new handle at once. */
    bool settle = o->fresh != 0;
    if (settle)
        mdl_acquire(o);
    int rc = kvmm_handle_open(&kvmm_mdl_ops, o, rights, out);
    if (rc) {
        kvmm_mdl_object_free(o);
        return rc;
    }
    if (settle) {
        kvmm_mdl_settle_words(o);
        kvmm_mdl_put(o);
    }
    return 0;
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

int kvmm_mdl_revoke(Handle h, bool close)
{
    void *object;
    uint32_t rights;
    int rc = kvmm_handle_get(h, &kvmm_mdl_ops, &object, &rights);
    if (rc)
        return rc;
    kvmm_mdl_put(object);
    /* Typed above; the table revokes and closes under its own lock. */
    return kvmm_handle_revoke(h, close);
}
