/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/mdl_revoke.c — revocation words: shared memfd pages that carry a revocation to every derived handle. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mdl_internal.h"
#include "os.h"

/*
 * A handle that is cloned or exported gets its own 32-bit word on a page of a small memfd this
 * process keeps mapped read-write; every handle derived from it (clones here, copies in other
 * processes, and their clones and copies in turn) records (page, word) in its ancestry and reads
 * the words with an atomic load on each use. Revoking the handle stores 1 in its word: no thread,
 * no message, and the receivers see it on their next call. Receivers map the pages read-only from
 * read-only descriptions, so they cannot clear a word.
 *
 * A word is never handed out twice: a copy in another process may still read it, and this process
 * cannot know when that copy is gone. A page is unmapped and its fd closed here when no local
 * handle refers to it any more; its memory lives on while other processes hold it.
 */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvmm_mdl_rpage *pages;   /* every page this process maps */
static struct kvmm_mdl_rpage *current; /* the local page new words come from, or NULL */
static uint32_t npages;

static uint32_t words_per_page(void)
{
    return (uint32_t)(kvmm_os_page_size() / sizeof(uint32_t));
}

static void unref(struct kvmm_mdl_rpage *p)
{
    if (--p->refs)
        return;
    struct kvmm_mdl_rpage **pp = &pages;
    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
    npages--;
    if (current == p)
        current = NULL;
    munmap(p->words, kvmm_os_page_size());
    close(p->fd);
    free(p);
}

/* A new local page, mapped read-write; lock held. */
static int page_new_local(struct kvmm_mdl_rpage **out)
{
    size_t page = kvmm_os_page_size();
    struct kvmm_mdl_rpage *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    int fd, ro = -1;
    int rc = kvmm_mdl_memfd("kosvmm-revoke", page, KVMM_RIGHT_READ | KVMM_RIGHT_WRITE, &fd);
    if (rc) {
        free(p);
        return rc;
    }
    struct stat st;
    void *m = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        rc = -errno;
    else if ((rc = kvmm_mdl_fd_for(fd, KVMM_RIGHT_READ, &ro)) == 0 && fstat(ro, &st) != 0)
        rc = -errno;
    /* Only the mapping writes; the read-write description is not needed past this point. */
    close(fd);
    if (rc) {
        if (m != MAP_FAILED)
            munmap(m, page);
        if (ro >= 0)
            close(ro);
        free(p);
        return rc;
    }
    p->words = m;
    p->fd = ro;
    p->dev = st.st_dev;
    p->ino = st.st_ino;
    p->local = true;
    p->next = pages;
    pages = p;
    npages++;
    *out = p;
    return 0;
}

/* Gives o a word of its own; lock held. */
static int own_word_locked(struct kvmm_mdl *o)
{
    if (o->revoked)
        return -EKEYREVOKED;
    if (o->own.page)
        return 0;
    if (!current || current->next_slot == words_per_page()) {
        struct kvmm_mdl_rpage *p;
        int rc = page_new_local(&p);
        if (rc)
            return rc;
        current = p;
    }
    o->own.page = current;
    o->own.slot = current->next_slot++;
    current->refs++;
    return 0;
}

static bool word_set(struct kvmm_mdl_word w)
{
    return __atomic_load_n(&w.page->words[w.slot], __ATOMIC_ACQUIRE) != 0;
}

bool kvmm_mdl_is_revoked(const struct kvmm_mdl *o)
{
    /* The ancestry never changes once the handle is published, so no lock is needed. */
    for (uint32_t i = 0; i < o->nanc; i++)
        if (word_set(o->anc[i]))
            return true;
    return false;
}

int kvmm_mdl_own_word(struct kvmm_mdl *o)
{
    pthread_mutex_lock(&lock);
    int rc = own_word_locked(o);
    pthread_mutex_unlock(&lock);
    return rc;
}

int kvmm_mdl_inherit(struct kvmm_mdl *dst, const struct kvmm_mdl *src_const)
{
    struct kvmm_mdl *src = (struct kvmm_mdl *)src_const; /* only its word fields change */
    pthread_mutex_lock(&lock);
    /* Depth first, so a refused clone does not cost src a word. */
    int rc = src->nanc + 1 > KVMM_MDL_MAX_REVOKE ? -EDQUOT : own_word_locked(src);
    if (rc == 0) {
        for (uint32_t i = 0; i < src->nanc; i++) {
            dst->anc[i] = src->anc[i];
            dst->anc[i].page->refs++;
        }
        dst->anc[src->nanc] = src->own;
        src->own.page->refs++;
        dst->nanc = src->nanc + 1;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void kvmm_mdl_drop_words(struct kvmm_mdl *o)
{
    if (!o->own.page && !o->nanc)
        return;
    pthread_mutex_lock(&lock);
    if (o->own.page)
        unref(o->own.page);
    for (uint32_t i = 0; i < o->nanc; i++)
        unref(o->anc[i].page);
    o->own.page = NULL;
    o->nanc = 0;
    pthread_mutex_unlock(&lock);
}

void kvmm_mdl_revoke_object(void *object)
{
    struct kvmm_mdl *o = object;
    pthread_mutex_lock(&lock);
    o->revoked = true; /* a word handed out later would otherwise start live */
    if (o->own.page)
        __atomic_store_n(&o->own.page->words[o->own.slot], 1u, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&lock);
}

int kvmm_mdl_export_words(const struct kvmm_mdl *o_const, struct kvmm_mdl_export *e)
{
    struct kvmm_mdl *o = (struct kvmm_mdl *)o_const;
    pthread_mutex_lock(&lock);
    int rc = o->nanc + 1 > KVMM_MDL_MAX_REVOKE ? -EDQUOT : own_word_locked(o);
    uint32_t n = 0;
    for (; rc == 0 && n <= o->nanc; n++) {
        struct kvmm_mdl_word w = n < o->nanc ? o->anc[n] : o->own;
        int fd = fcntl(w.page->fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            break;
        }
        e->revoke_fd[n] = fd;
        e->revoke_slot[n] = w.slot;
    }
    pthread_mutex_unlock(&lock);
    if (rc) {
        while (n--)
            close(e->revoke_fd[n]);
        return rc;
    }
    e->revoke_count = n;
    for (; n < KVMM_MDL_MAX_REVOKE; n++) {
        e->revoke_fd[n] = -1;
        e->revoke_slot[n] = 0;
    }
    return 0;
}

/* Whether fd can serve as a revocation page: a read-only description of a regular file at least
 * a page long that cannot shrink (a shrunk page would turn our loads into SIGBUS). */
static int check_page_fd(int fd, uint32_t slot, struct stat *st)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -EINVAL;
    if ((fl & O_ACCMODE) != O_RDONLY)
        return -EACCES;
    int seals = fcntl(fd, F_GET_SEALS);
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || st->st_size < (off_t)kvmm_os_page_size() ||
        seals < 0 || !(seals & F_SEAL_SHRINK) || slot >= words_per_page())
        return -EINVAL;
    return 0;
}

/* The page with this identity, referenced, or a new read-only mapping of fd; lock held.
 * Takes fd in all cases. */
static int page_attach(int fd, const struct stat *st, struct kvmm_mdl_rpage **out)
{
    for (struct kvmm_mdl_rpage *p = pages; p; p = p->next) {
        if (p->dev == (uint64_t)st->st_dev && p->ino == (uint64_t)st->st_ino) {
            close(fd);
            p->refs++;
            *out = p;
            return 0;
        }
    }
    struct kvmm_mdl_rpage *p = calloc(1, sizeof *p);
    void *m = p ? mmap(NULL, kvmm_os_page_size(), PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (m == MAP_FAILED) {
        int rc = p ? -errno : -ENOMEM;
        free(p);
        close(fd);
        return rc;
    }
    p->words = m;
    p->fd = fd;
    p->dev = st->st_dev;
    p->ino = st->st_ino;
    p->refs = 1;
    p->next = pages;
    pages = p;
    npages++;
    *out = p;
    return 0;
}

int kvmm_mdl_import_words(struct kvmm_mdl *o, struct kvmm_mdl_export *e)
{
    uint32_t n = e->revoke_count;
    struct stat st[KVMM_MDL_MAX_REVOKE];
    int rc = 0;
    /* Everything is checked before anything is mapped. */
    for (uint32_t i = 0; i < n && rc == 0; i++)
        rc = check_page_fd(e->revoke_fd[i], e->revoke_slot[i], &st[i]);
    pthread_mutex_lock(&lock);
    for (uint32_t i = 0; i < n; i++) {
        int fd = e->revoke_fd[i];
        e->revoke_fd[i] = -1;
        if (rc) {
            close(fd);
            continue;
        }
        struct kvmm_mdl_rpage *p = NULL;
        if ((rc = page_attach(fd, &st[i], &p)) == 0) {
            o->anc[o->nanc].page = p;
            o->anc[o->nanc].slot = e->revoke_slot[i];
            o->nanc++;
        }
    }
    pthread_mutex_unlock(&lock);
    /* Already revoked: refuse now rather than hand out a handle that can never be used. */
    if (rc == 0 && kvmm_mdl_is_revoked(o))
        rc = -EKEYREVOKED;
    return rc;
}

/*
 * fork(): the child inherits the handle table, and with it handles whose words live on pages it
 * shares with the parent (MAP_SHARED). Revoking a handle in one process must not revoke the
 * other's copy, nor may both hand out the same word afterwards. So the child gives every local
 * page a copy of its own, mapped over the same address (the objects keep their pointers), and
 * starts a new page for new words. Pages imported from other processes stay shared: their
 * owners' revocations apply to the child's copies too. Best effort: if the kernel refuses a copy,
 * that page stays shared (revocations through it then reach both processes), never worse.
 */
static void fork_page(struct kvmm_mdl_rpage *p)
{
    size_t page = kvmm_os_page_size();
    int fd, ro = -1;
    struct stat st;
    if (kvmm_mdl_memfd("kosvmm-revoke", page, KVMM_RIGHT_READ | KVMM_RIGHT_WRITE, &fd))
        return;
    if (kvmm_mdl_write_all(fd, p->words, page, 0) == 0 && kvmm_mdl_fd_for(fd, KVMM_RIGHT_READ, &ro) == 0 &&
        fstat(ro, &st) == 0 &&
        mmap(p->words, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) != MAP_FAILED) {
        close(p->fd);
        p->fd = ro;
        p->dev = st.st_dev;
        p->ino = st.st_ino;
        ro = -1;
    }
    if (ro >= 0)
        close(ro);
    close(fd);
}

static void fork_prepare(void)
{
    pthread_mutex_lock(&lock);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&lock);
}

static void fork_child(void)
{
    current = NULL;
    for (struct kvmm_mdl_rpage *p = pages; p; p = p->next)
        if (p->local)
            fork_page(p);
    pthread_mutex_unlock(&lock);
}

/* Registered before lib/fork.c's handlers (a constructor with a priority runs before those
 * without), so that at fork this lock is taken last: the handle table's lock is taken before it
 * on every path (the revoke hook runs under the table lock). */
__attribute__((constructor(101))) static void install_fork_handlers(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

uint32_t kvmm_mdl_rpage_count(void)
{
    pthread_mutex_lock(&lock);
    uint32_t n = npages;
    pthread_mutex_unlock(&lock);
    return n;
}
