/* SPDX-License-Identifier: MIT */
/* lib/handle_table.c — the process's handle table: generation-checked slots with rights and revocation. */
#include "handle_table.h"

#include "fork.h"
#include "policy.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#define GEN_SHIFT KVMM_HANDLE_INDEX_BITS
#define GEN_MAX 0xFFEu /* 0xFFF would let slot 0xFFFFF collide with INVALID_HANDLE */

enum slot_state { SLOT_FREE, SLOT_OPEN, SLOT_REVOKED };

struct slot {
    uint32_t gen;
    uint8_t state;
    uint32_t rights;
    void *object;
    const struct kvmm_handle_ops *ops;
    uint32_t next_free;
};

static struct {
    pthread_mutex_t lock;
    struct slot *slots;
    uint32_t capacity, used, open, free_head; /* free_head: index + 1, 0 = none */
} table = {.lock = PTHREAD_MUTEX_INITIALIZER};

static Handle encode(uint32_t index, uint32_t gen)
{
    return (Handle)((gen << GEN_SHIFT) | index);
}

/* The slot h names, if h is current; table locked. */
static struct slot *lookup(Handle h)
{
    uint32_t index = h & KVMM_HANDLE_MAX_SLOTS, gen = h >> GEN_SHIFT;
    if (h == INVALID_HANDLE || index >= table.used)
        return NULL;
    struct slot *s = &table.slots[index];
    return s->state != SLOT_FREE && s->gen == gen ? s : NULL;
}

static int grow(void)
{
    if (table.capacity >= KVMM_HANDLE_MAX_SLOTS)
        return -EMFILE;
    uint32_t cap = table.capacity ? table.capacity * 2 : 64;
    if (cap > KVMM_HANDLE_MAX_SLOTS)
        cap = KVMM_HANDLE_MAX_SLOTS;
    struct slot *slots = realloc(table.slots, cap * sizeof *slots);
    if (!slots)
        return -ENOMEM;
    table.slots = slots;
    table.capacity = cap;
    return 0;
}

int kvmm_handle_open(const struct kvmm_handle_ops *ops, void *object, uint32_t rights, Handle *out)
{
    kvmm_fork_guard();
    int rc = kvmm_quota_charge(KVMM_Q_HANDLES, 1);
    if (rc)
        return rc;
    pthread_mutex_lock(&table.lock);
    uint32_t index;
    if (table.free_head) {
        index = table.free_head - 1;
        table.free_head = table.slots[index].next_free;
    } else if (table.used < table.capacity || (rc = grow()) == 0) {
        index = table.used++;
        table.slots[index].gen = 0;
    }
    if (rc == 0) {
        struct slot *s = &table.slots[index];
        s->gen = s->gen % GEN_MAX + 1;
        s->state = SLOT_OPEN;
        s->rights = rights;
        s->object = object;
        s->ops = ops;
        table.open++;
        if (ops->acquire)
            ops->acquire(object);
        *out = encode(index, s->gen);
    }
    pthread_mutex_unlock(&table.lock);
    if (rc)
        kvmm_quota_uncharge(KVMM_Q_HANDLES, 1);
    return rc;
}

int kvmm_handle_get(Handle h, const struct kvmm_handle_ops *ops, void **object, uint32_t *rights)
{
    pthread_mutex_lock(&table.lock);
    struct slot *s = lookup(h);
    /* A handle of another object type is as invalid here as a forged one. */
    int rc = !s || s->ops != ops ? -EINVAL : s->state == SLOT_REVOKED ? -EKEYREVOKED : 0;
    if (rc == 0) {
        if (ops->acquire)
            ops->acquire(s->object);
        *object = s->object;
        *rights = s->rights;
    }
    pthread_mutex_unlock(&table.lock);
    return rc;
}

int kvmm_handle_close(Handle h)
{
    pthread_mutex_lock(&table.lock);
    struct slot *s = lookup(h);
    void *object = NULL;
    const struct kvmm_handle_ops *ops = NULL;
    if (s) {
        object = s->object;
        ops = s->ops;
        s->state = SLOT_FREE;
        s->object = NULL;
        s->next_free = table.free_head;
        table.free_head = (uint32_t)(s - table.slots) + 1;
        table.open--;
    }
    pthread_mutex_unlock(&table.lock);
    if (s)
        kvmm_quota_uncharge(KVMM_Q_HANDLES, 1);
    /* Released outside the lock: dropping the last reference may unmap or close an fd. */
    if (ops && ops->release)
        ops->release(object);
    return s ? 0 : -EINVAL;
}

int kvmm_handle_revoke(Handle h)
{
    pthread_mutex_lock(&table.lock);
    struct slot *s = lookup(h);
    int rc = !s ? -EINVAL : s->state == SLOT_REVOKED ? -EKEYREVOKED : 0;
    if (rc == 0) {
        s->state = SLOT_REVOKED;
        if (s->ops->revoke)
            s->ops->revoke(s->object);
    }
    pthread_mutex_unlock(&table.lock);
    return rc;
}

void kvmm_handle_table_lock(void)
{
    pthread_mutex_lock(&table.lock);
}

void kvmm_handle_table_unlock(void)
{
    pthread_mutex_unlock(&table.lock);
}

uint32_t kvmm_handle_count(void)
{
    pthread_mutex_lock(&table.lock);
    uint32_t n = table.open;
    pthread_mutex_unlock(&table.lock);
    return n;
}
