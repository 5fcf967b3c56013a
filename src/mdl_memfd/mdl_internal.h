/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/mdl_internal.h — what the mdl_*.c files share: the handle object, revocation words, memfd helpers. */
#ifndef KVMM_MDL_INTERNAL_H
#define KVMM_MDL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rtl/retcode.h>

#include "mdl.h"

/*
 * One handle = one object: a file description of the buffer's memfd plus the window the handle
 * gives. Handles are never shared between slots, so the object's access mode always matches its
 * slot's rights (O_RDWR with KVMM_RIGHT_WRITE, O_RDONLY otherwise), and "the handle's own
 * revocation word" is simply the object's.
 */

/* A page of 32-bit revocation words: 0 = live, anything else = revoked. Local pages are mapped
 * read-write here and handed out read-only; imported pages are mapped read-only. */
struct kvmm_mdl_rpage {
    struct kvmm_mdl_rpage *next;   /* process-wide list, for deduplication on import */
    uint32_t *words;               /* MAP_SHARED mapping of one page */
    int fd;                        /* a read-only description, duplicated for every export */
    uint64_t dev, ino;             /* identity of the memfd, to share one mapping per page */
    uint32_t refs;                 /* local references: owners of words and ancestry entries */
    uint32_t next_slot;            /* local pages: words handed out so far (never reused) */
    bool local;
};

struct kvmm_mdl_word {
    struct kvmm_mdl_rpage *page;   /* NULL: none */
    uint32_t slot;
};

struct kvmm_mdl_held;
struct stat;

struct kvmm_mdl {
    uint32_t refs;                 /* the handle plus in-flight lookups (atomic) */
    int fd;                        /* the buffer; access mode as the rights say */
    struct kvmm_mdl_held *held;    /* the buffer's entry in the MDL quotas */
    uint64_t buffer_size;          /* size of the memfd */
    uint64_t offset, length;       /* the window, inside [0, buffer_size) */
    /* Guarded by the revocation lock: */
    bool revoked;                  /* this handle was revoked: never hand out a word for it */
    struct kvmm_mdl_word own;      /* revoked -> set; allocated on first clone or export */
    uint32_t nanc;
    struct kvmm_mdl_word anc[KVMM_MDL_MAX_REVOKE]; /* words of the origins: any set -> revoked */
    uint32_t fresh;                /* until published: bit i = anc[i]'s page was mapped by this import */
};

#define KVMM_RIGHT_RWX (KVMM_RIGHT_READ | KVMM_RIGHT_WRITE | KVMM_RIGHT_EXECUTE)
#define KVMM_RIGHTS_ALL (KVMM_RIGHT_RWX | KVMM_RIGHT_TRANSFER)

/* mdl_object.c */
extern const struct kvmm_handle_ops kvmm_mdl_ops;
/* An object over fd (taken over; closed on failure too) without any revocation words yet.
 * Charges the MDL quotas when this process holds no other handle to the buffer (-EDQUOT). */
int kvmm_mdl_object_new(int fd, uint64_t buffer_size, uint64_t offset, uint64_t length,
                        struct kvmm_mdl **out);
/* The same, with fd's fstat already at hand. */
int kvmm_mdl_object_new_stat(int fd, const struct stat *st, uint64_t buffer_size, uint64_t offset,
                             uint64_t length, struct kvmm_mdl **out);
/* Frees an object that never got a handle (its fd and page references with it). */
void kvmm_mdl_object_free(struct kvmm_mdl *o);
/* Opens a handle on o; on failure o is freed. */
int kvmm_mdl_publish(struct kvmm_mdl *o, uint32_t rights, Handle *out);
/* Looks h up: -EINVAL bad/forged/closed or not an MDL handle, -EKEYREVOKED when h or any origin
 * was revoked (here or in the process it came from). The caller drops o with kvmm_mdl_put. */
int kvmm_mdl_get(Handle h, struct kvmm_mdl **o, uint32_t *rights);
void kvmm_mdl_put(struct kvmm_mdl *o);

/* mdl_fd.c — the memfd helpers (used by buffers and revocation pages alike, so neither file
 * depends on the other through them). */
/* A new memfd of size bytes (page multiple), read-write, mode 0444, sealed against shrink, grow
 * and further seals, and against exec (MFD_NOEXEC_SEAL) unless rights hold KVMM_RIGHT_EXECUTE. */
int kvmm_mdl_memfd(const char *name, uint64_t size, uint32_t rights, int *fd);
/* A description of fd with the access mode rights need: a dup when fd already matches, else a
 * read-only reopen through /proc/self/fd. Close-on-exec. */
int kvmm_mdl_fd_for(int fd, uint32_t rights, int *out);
/* pwrite of all len bytes; -EINVAL when buf is not readable. */
int kvmm_mdl_write_all(int fd, const void *buf, size_t len, uint64_t off);
/* A buffer's or a mapping's protection: READ, READ|WRITE, READ|EXECUTE or READ|WRITE|EXECUTE. */
bool kvmm_mdl_prot_valid(int prot);
bool kvmm_mdl_aligned(uint64_t v);

/* mdl_quota.c — a buffer counts once, from its first handle here to its last. */
/* st: fd's fstat when the caller has it, else NULL. */
int kvmm_mdl_hold(int fd, const struct stat *st, uint64_t bytes, struct kvmm_mdl_held **out);
/* The buffer's read-only description (made on first use from fd, a description of the buffer,
 * and kept until the buffer's last handle here closes): lent, never to be closed by the caller. */
int kvmm_mdl_held_ro_fd(struct kvmm_mdl_held *h, int fd, int *out);
void kvmm_mdl_unhold(struct kvmm_mdl_held *h);
/* Whether a buffer held here has st's identity and had its seals checked by an import (seals are
 * never removed, and the holder's fd pins the inode, so the identity names that very file). */
bool kvmm_mdl_held_sealed(const struct stat *st);
void kvmm_mdl_held_mark_sealed(struct kvmm_mdl_held *h);

/* mdl_revoke.c — all under one process-wide lock, never held while calling the handle table. */
/* Whether o or any origin of o has been revoked (atomic loads, no lock). */
bool kvmm_mdl_is_revoked(const struct kvmm_mdl *o);
/* Gives o its own word if it has none yet. -EKEYREVOKED when o was revoked meanwhile. */
int kvmm_mdl_own_word(struct kvmm_mdl *o);
/* dst's ancestry = src's ancestry + src's own word (referenced). -EDQUOT past KVMM_MDL_MAX_REVOKE. */
int kvmm_mdl_inherit(struct kvmm_mdl *dst, const struct kvmm_mdl *src);
/* Drops o's page references (own word and ancestry). */
void kvmm_mdl_drop_words(struct kvmm_mdl *o);
/* Fills e's revocation part with the read-only fds and slots of o's ancestry and own word. The fds
 * are the pages' own, lent: valid while the caller holds a reference on o, never closed by it. */
int kvmm_mdl_lend_words(const struct kvmm_mdl *o, struct kvmm_mdl_export *e);
/* Makes the words of e o's ancestry, mapping each page read-only (one mapping per page, kept in a
 * bounded cache after its last handle closes); closes e's revocation fds or keeps them as the
 * pages' own, and marks them -1 in all cases. If o is freed before kvmm_mdl_settle_words, the
 * pages this import mapped are unmapped rather than cached. */
int kvmm_mdl_import_words(struct kvmm_mdl *o, struct kvmm_mdl_export *e);
/* The import that made o succeeded: pages it mapped may be cached once no handle uses them. */
void kvmm_mdl_settle_words(struct kvmm_mdl *o);
/* Revocation pages handles of this process refer to (for tests). */
uint32_t kvmm_mdl_rpage_count(void);
/* Imported pages no handle refers to, kept mapped (no fd) in the cache (for tests). */
uint32_t kvmm_mdl_rpage_cached(void);

#endif
