/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/mdl_quota.c — which MDL buffers this process holds, so the MDL quotas count each buffer once. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "avl.h"
#include "mdl_internal.h"
#include "policy.h"

/*
 * Handles are objects of their own (a clone or a received copy has its own file description), so
 * the buffer behind them is recognised by its memfd's inode: the first handle to a buffer charges
 * one buffer and its size, the last one to close gives them back. Every memfd lives on the one
 * internal shmem mount, so the inode number alone is the key; a file from elsewhere with a
 * colliding number is charged on its own rather than trusted to be the same buffer.
 */
struct kvmm_mdl_held {
    struct kvmm_avl_node node; /* key = inode */
    uint64_t dev;
    uint64_t bytes;
    uint32_t refs;
    bool in_tree;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvmm_avl_tree held;

int kvmm_mdl_hold(int fd, uint64_t bytes, struct kvmm_mdl_held **out)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    pthread_mutex_lock(&lock);
    struct kvmm_avl_node *n = kvmm_avl_floor(&held, (uintptr_t)st.st_ino);
    struct kvmm_mdl_held *h = n && n->key == (uintptr_t)st.st_ino ? kvmm_container_of(n, struct kvmm_mdl_held, node) : NULL;
    int rc = 0;
    if (h && h->dev == (uint64_t)st.st_dev) {
        h->refs++;
    } else if ((rc = kvmm_quota_charge2(KVMM_Q_MDL_BUFFERS, 1, KVMM_Q_MDL_BYTES, bytes)) == 0) {
        bool shared_key = h != NULL;
        if (!(h = calloc(1, sizeof *h))) {
            kvmm_quota_uncharge(KVMM_Q_MDL_BUFFERS, 1);
            kvmm_quota_uncharge(KVMM_Q_MDL_BYTES, bytes);
            rc = -ENOMEM;
        } else {
            h->node.key = (uintptr_t)st.st_ino;
            h->dev = (uint64_t)st.st_dev;
            h->bytes = bytes;
            h->refs = 1;
            h->in_tree = !shared_key;
            if (h->in_tree)
                kvmm_avl_insert(&held, &h->node);
        }
    }
    pthread_mutex_unlock(&lock);
    if (rc == 0)
        *out = h;
    return rc;
}

void kvmm_mdl_unhold(struct kvmm_mdl_held *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&lock);
    bool last = --h->refs == 0;
    if (last && h->in_tree)
        kvmm_avl_remove(&held, &h->node);
    pthread_mutex_unlock(&lock);
    if (last) {
        kvmm_quota_uncharge(KVMM_Q_MDL_BUFFERS, 1);
        kvmm_quota_uncharge(KVMM_Q_MDL_BYTES, h->bytes);
        free(h);
    }
}

void kvmm_mdl_hold_fork_prepare(void)
{
    pthread_mutex_lock(&lock);
}

void kvmm_mdl_hold_fork_release(void)
{
    pthread_mutex_unlock(&lock);
}
