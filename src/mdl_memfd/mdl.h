/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/mdl.h — MDL buffers on memfd: the internal interface between buffers/handles and their transfer. */
#ifndef KVMM_MDL_H
#define KVMM_MDL_H

#include <handle/handletype.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

struct kvmm_mdl;

/*
 * Owned by the MDL-buffer code (mdl_*.c). The channel code (channel*.c) uses only what is declared
 * here to move a handle between processes:
 *   sender:   kvmm_mdl_export_lent(h, mask, &e, &lender) -> send e's fds with SCM_RIGHTS and its
 *             numbers as payload -> kvmm_mdl_export_return(lender)
 *             (or kvmm_mdl_export(h, mask, &e) ... kvmm_mdl_export_close(&e) with fds of e's own)
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
    /* Sender (export): each page's identity, so a channel can tell a page it has sent before. */
    uint64_t revoke_dev[KVMM_MDL_MAX_REVOKE], revoke_ino[KVMM_MDL_MAX_REVOKE];
    /* Receiver (import): instead of revoke_fd[i] (then -1), a page already mapped here, with a
     * reference the struct owns (kvmm_mdl_rpage_adopt / kvmm_mdl_rpage_ref); NULL otherwise. */
    struct kvmm_mdl_rpage *revoke_page[KVMM_MDL_MAX_REVOKE];
};

/*
 * Revocation pages for a channel's page table (channel_wire.c): a channel sends each page's fd
 * once and names it by table index afterwards, so the receiver keeps the pages it was sent.
 */
struct kvmm_mdl_rpage;
/* Takes fd (closed on failure, or kept as the page's own): checks it as a received revocation page
 * (a read-only description of a regular file of at least a page, sealed against shrinking) and
 * returns the page with that identity, referenced: one already mapped here, or a new read-only
 * mapping (*fresh). dev, ino: its identity. -EACCES not read-only; -EINVAL otherwise. */
int kvmm_mdl_rpage_adopt(int fd, struct kvmm_mdl_rpage **page, bool *fresh, uint64_t *dev, uint64_t *ino);
/* Another reference to a page the caller holds a reference to. */
void kvmm_mdl_rpage_ref(struct kvmm_mdl_rpage *page);
/* Drops a reference; keep = false unmaps a page that no handle refers to at once (a refused
 * message mapped it) instead of caching it. */
void kvmm_mdl_rpage_release(struct kvmm_mdl_rpage *page, bool keep);

/* A channel's feedback page: one page of 32-bit words the receiver stores into and the sender
 * reads. _new: a sealed memfd page (its read-write fd, close-on-exec) mapped shared read-write.
 * _map: checks a received one (read-write description, regular, a page or more, sealed against
 * shrinking) and maps it shared read-write; fd stays the caller's. -EINVAL, -ENOMEM, -EMFILE. */
int kvmm_mdl_shared_page_new(int *fd, uint32_t **words);
int kvmm_mdl_shared_page_map(int fd, uint32_t **words, uint64_t *dev, uint64_t *ino);
void kvmm_mdl_shared_page_unmap(uint32_t *words);

/* Describes h for sending, with rights narrowed to h's rights & mask. New fds are made for e.
 * -EINVAL bad handle, -EKEYREVOKED revoked, -EACCES without KVMM_RIGHT_TRANSFER, -EMFILE/-ENOMEM;
 * -EDQUOT when h already descends from KVMM_MDL_MAX_REVOKE handles (the copy could not carry
 * h's own revocation word). The buffer fd is a read-only description unless the narrowed rights
 * hold KVMM_RIGHT_WRITE; every fd is close-on-exec. On failure e is untouched. */
int kvmm_mdl_export(Handle h, uint32_t mask, struct kvmm_mdl_export *e);
/* The fast path of a transfer: as kvmm_mdl_export, but no descriptor is made for e. Its fds are
 * the handle's own (its buffer description, or the buffer's read-only description, made once per
 * buffer and kept while a handle to it lives here, and its revocation pages'), lent until
 * kvmm_mdl_export_return(*lender): long enough for a sendmsg, whose datagram then holds its own
 * references. e must not be closed, imported or kept past the return. */
int kvmm_mdl_export_lent(Handle h, uint32_t mask, struct kvmm_mdl_export *e, struct kvmm_mdl **lender);
void kvmm_mdl_export_return(struct kvmm_mdl *lender);
/* Closes every fd of e and marks them -1; drops its page references. */
void kvmm_mdl_export_close(struct kvmm_mdl_export *e);
/* Turns a received description into a handle of this process. Takes ownership of e's fds in all
 * cases (closed on failure; each set to -1 as it is taken), and of its page references. Checks e against the fds (size via
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

/* KnPmmMdlCreateFromVm without the policy's method check, for calls built on it (which check
 * KVMM_M_MDL_CREATE_FROM_VM with kvmm_policy_allows, so audit lines name their own method):
 * [lo, lo + size) of committed memory becomes a buffer with rights flags | KVMM_RIGHT_TRANSFER,
 * in place. -EINVAL, -ENOENT (no region), -EOPNOTSUPP (not all committed), -EPERM (W^X),
 * -EDQUOT, -ENOMEM, -EMFILE. */
int kvmm_mdl_create_from_vm(uintptr_t lo, size_t size, int flags, Handle *h);

/* KnHandleRevokeEx(h, close) for an MDL handle (the handle table's kvmm_handle_revoke, which
 * calls kvmm_mdl_revoke_object): sets h's revocation word, so its clones and copies in other
 * processes fail with rcHandleRevoked, then closes h or gives it a fresh word. 0, -EINVAL (not an
 * MDL handle of this process), -EKEYREVOKED (h itself revoked through an origin). */
int kvmm_mdl_revoke(Handle h, bool close);
/* The handle-table hook: revokes what derives from the object's handle. */
void kvmm_mdl_revoke_object(void *object, bool close);

#endif
