/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/mdl_quota.c — which MDL buffers this process holds, so the MDL quotas count each buffer once. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "avl.h"
#include "fork.h"
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
    int ro_fd;                 /* the buffer's read-only description for transfers, or -1 (atomic) */
    bool sealed;               /* an import saw its seals against shrink and grow */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvmm_avl_tree held;

int kvmm_mdl_hold(int fd, const struct stat *known, uint64_t bytes, struct kvmm_mdl_held **out)
{
    struct stat st;
    if (known)
        st = *known;
    else if (fstat(fd, &st) != 0)
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
            h->ro_fd = -1;
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
        if (h->ro_fd >= 0)
            close(h->ro_fd);
        kvmm_quota_uncharge(KVMM_Q_MDL_BUFFERS, 1);
        kvmm_quota_uncharge(KVMM_Q_MDL_BYTES, h->bytes);
        free(h);
    }
}

/*
 * Narrowing a read-write handle to a read-only copy needs a read-only file description, and the
 * only way to make one is a reopen through /proc/self/fd: a path walk and a new struct file, the
 * dearest step of a transfer. The description grants nothing beyond the buffer's read right, so
 * one per buffer serves every read-only transfer of it (the kernel keeps its own reference for
 * each datagram). It lives as long as the buffer is held here: the fd of a handle to the buffer,
 * which every caller holds, keeps this entry alive, so the number stays valid while it is lent
 * out. Descriptors sent to several receivers this way share one description, as descriptors of a
 * read-only handle always did (a dup); the buffer is only mapped or written with pwrite, so the
 * shared file offset and status flags do not matter.
 */
int kvmm_mdl_held_ro_fd(struct kvmm_mdl_held *h, int fd, int *out)
{
    int ro = __atomic_load_n(&h->ro_fd, __ATOMIC_ACQUIRE);
    if (ro < 0) {
        int nfd, rc = kvmm_mdl_fd_for(fd, KVMM_RIGHT_READ, &nfd);
        if (rc)
            return rc;
        pthread_mutex_lock(&lock);
        if ((ro = h->ro_fd) < 0) {
            __atomic_store_n(&h->ro_fd, nfd, __ATOMIC_RELEASE);
            ro = nfd;
            nfd = -1;
        }
        pthread_mutex_unlock(&lock);
        if (nfd >= 0)
            close(nfd); /* another thread made one first */
    }
    *out = ro;
    return 0;
}

bool kvmm_mdl_held_sealed(const struct stat *st)
{
    pthread_mutex_lock(&lock);
    struct kvmm_avl_node *n = kvmm_avl_floor(&held, (uintptr_t)st->st_ino);
    struct kvmm_mdl_held *h = n && n->key == (uintptr_t)st->st_ino ? kvmm_container_of(n, struct kvmm_mdl_held, node) : NULL;
    bool sealed = h && h->dev == (uint64_t)st->st_dev && h->sealed;
    pthread_mutex_unlock(&lock);
    return sealed;
}

void kvmm_mdl_held_mark_sealed(struct kvmm_mdl_held *h)
{
    pthread_mutex_lock(&lock);
    h->sealed = true;
    pthread_mutex_unlock(&lock);
}

KVMM_FORK_MUTEX(lock, KVMM_FORK_RANK_MDL_HOLD);
