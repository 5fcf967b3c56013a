/* SPDX-License-Identifier: MIT */
/* lib/handle_table.h — the process's handle table: generation-checked slots with rights and revocation. */
#ifndef KVMM_HANDLE_TABLE_H
#define KVMM_HANDLE_TABLE_H

#include <handle/handletype.h>
#include <stdint.h>

/*
 * A Handle packs a slot index (low 20 bits) and the slot's generation (high 12 bits, never 0 nor
 * 0xFFF), so 0 and INVALID_HANDLE are never issued and a closed value stops matching its slot
 * once the slot is reused: a stale or forged value is refused, it never names another object.
 */
#define KVMM_HANDLE_INDEX_BITS 20
#define KVMM_HANDLE_MAX_SLOTS ((1u << KVMM_HANDLE_INDEX_BITS) - 1)

struct kvmm_handle_ops {
    /* Called under the table lock when a handle to object is opened or looked up, and when it is
     * closed; the object lives while any handle or lookup holds it. */
    void (*acquire)(void *object);
    void (*release)(void *object);
    /* Optional. Called under the table lock just after a handle to object is marked revoked (not
     * again for a handle already revoked), so the object can revoke what derives from it (clones,
     * copies in other processes). Must not call into the handle table. */
    void (*revoke)(void *object);
};

/* A new handle to object with rights. 0, or -ENOMEM (-EMFILE past KVMM_HANDLE_MAX_SLOTS), or
 * -EDQUOT (the policy's max_handles). */
int kvmm_handle_open(const struct kvmm_handle_ops *ops, void *object, uint32_t rights, Handle *out);
/* Looks h up and acquires its object (the caller releases it). -EINVAL for a bad, forged or closed
 * value, -EKEYREVOKED when revoked. */
int kvmm_handle_get(Handle h, const struct kvmm_handle_ops *ops, void **object, uint32_t *rights);
/* Closes h (revoked or not). -EINVAL as above. */
int kvmm_handle_close(Handle h);
/* Revokes h: later lookups fail with -EKEYREVOKED until it is closed. */
int kvmm_handle_revoke(Handle h);
/* For fork(): the table lock, held across it so the child never inherits it taken. */
void kvmm_handle_table_lock(void);
void kvmm_handle_table_unlock(void);

/* Open handles, for statistics and tests. */
uint32_t kvmm_handle_count(void);

#endif
