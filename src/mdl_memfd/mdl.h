/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/mdl.h — MDL buffers on memfd: the internal interface between buffers/handles and their transfer. */
#ifndef KVMM_MDL_H
#define KVMM_MDL_H

#include <handle/handletype.h>
#include <stdint.h>

/*
 * Owned by the MDL-buffer code (mdl_*.c). The channel code (channel*.c) uses only what is declared
 * here to move a handle between processes:
 *   sender:   kvmm_mdl_export(h, mask, &e) -> send e's fds with SCM_RIGHTS and its numbers as payload
 *             -> kvmm_mdl_export_close(&e)
 *   receiver: rebuild e from the message (fds received with MSG_CMSG_CLOEXEC) -> kvmm_mdl_import(&e, &h)
 */

/* Handle rights (the public names are KOSVMM_RIGHT_* in kosvmm/kosvmm.h, same values). */
#define KVMM_RIGHT_READ      0x001u  /* = VMM_FLAG_READ: may be mapped readable */
#define KVMM_RIGHT_WRITE     0x002u  /* = VMM_FLAG_WRITE: may be mapped writable */
#define KVMM_RIGHT_EXECUTE   0x004u  /* = VMM_FLAG_EXECUTE: may be mapped executable */
#define KVMM_RIGHT_TRANSFER  0x100u  /* may be sent to another process */

#define KVMM_MDL_MAX_REVOKE 8  /* revocation words a handle can inherit: its own and its origins' */

/* Everything that travels for one handle. File descriptors belong to whoever holds the struct. */
struct kvmm_mdl_export {
    int buffer_fd;                 /* the memfd; a read-only file description without WRITE right */
    uint64_t buffer_size;          /* size of the memfd */
    uint64_t offset, length;       /* the window this handle gives (clones narrow it) */
    uint32_t rights;               /* KVMM_RIGHT_*, already narrowed by the sender's mask */
    uint32_t revoke_count;
    int revoke_fd[KVMM_MDL_MAX_REVOKE];       /* read-only fds of revocation-word pages */
    uint32_t revoke_slot[KVMM_MDL_MAX_REVOKE];/* word index within each page */
};

/* Describes h for sending, with rights narrowed to h's rights & mask. New fds are made for e.
 * -EINVAL bad handle, -EKEYREVOKED revoked, -EACCES without KVMM_RIGHT_TRANSFER, -EMFILE/-ENOMEM;
 * -EDQUOT when h already descends from KVMM_MDL_MAX_REVOKE handles (the copy could not carry
 * h's own revocation word). The buffer fd is a read-only description unless the narrowed rights
 * hold KVMM_RIGHT_WRITE; every fd is close-on-exec. On failure e is untouched. */
int kvmm_mdl_export(Handle h, uint32_t mask, struct kvmm_mdl_export *e);
/* Closes every fd of e and marks them -1. */
void kvmm_mdl_export_close(struct kvmm_mdl_export *e);
/* Turns a received description into a handle of this process. Takes ownership of e's fds in all
 * cases (closed on failure; each set to -1 as it is taken). Checks e against the fds (size via
 * fstat, access mode via fcntl): a description claiming more than its fds allow is refused with
 * -EACCES, and so is a revocation fd that is not a read-only description. -EINVAL for a malformed
 * description: h NULL, unknown rights, a window outside the buffer or unaligned, an fd number
 * given twice, a buffer not sealed against shrink and grow or not of buffer_size, a revocation
 * page smaller than a page or not sealed against shrink. -EKEYREVOKED when one of its revocation
 * words is already set. A buffer fd with more access than the rights need is replaced by a
 * read-only reopen, so the handle never holds more than it may. */
int kvmm_mdl_import(struct kvmm_mdl_export *e, Handle *h);

/*
 * Also for the other src/ code and the tests (not part of the public API):
 */

/* A buffer of size bytes (rounded up to pages) with rights (KVMM_RIGHT_*; READ required),
 * holding buf_size bytes of buf at buf_offset and zeros elsewhere, as a new handle.
 * buf_offset + buf_size <= size. -EINVAL for bad arguments (also an unreadable buf). */
int kvmm_mdl_create(uint64_t size, uint32_t rights, const void *buf, uint64_t buf_size,
                    uint64_t buf_offset, Handle *h);

/* Revokes h as KnHandleRevoke will once lib/handle_table.c calls kvmm_mdl_revoke_object: marks
 * the slot revoked and sets h's revocation word, so clones and copies in other processes fail
 * too. 0, -EINVAL, -EKEYREVOKED (already revoked). */
int kvmm_mdl_revoke(Handle h);
/* The handle-table hook: called with the object of a handle that has just been revoked. */
void kvmm_mdl_revoke_object(void *object);

#endif
