/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/mdl_revoke.c — revocation words: shared memfd pages that carry a revocation to every derived handle. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fork.h"
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
 * cannot know when that copy is gone. A local page is unmapped and its fd closed here when no local
 * handle refers to it any more; its memory lives on while other processes hold it.
 *
 * An imported page that no handle here refers to any more stays mapped, its fd closed, in a small
 * cache: a peer sends every handle with words on the same few pages, and mapping a page for each
 * received handle and unmapping it at its close (a page fault on the first load, a TLB shootdown
 * across CPUs at the munmap) cost more than the rest of a transfer. The mapping pins the page's
 * inode, so its (dev, ino) cannot be reused by another file while it is cached: a received fd with
 * that identity is that very page, whose seals were checked when it was first mapped, and takes
 * the place of the closed fd. The cache holds no descriptor and at most RPAGE_CACHE_MAX pages
 * (least recently used out first), so a peer that dies or sends ever new pages costs at most that
 * many mappings of one page each here. A page first mapped by an import that then fails is
 * unmapped, not cached: a refused message leaves no mapping behind.
 */

#define RPAGE_CACHE_MAX 8

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvmm_mdl_rpage *pages;   /* every page a handle here refers to */
static struct kvmm_mdl_rpage *current; /* the local page new words come from, or NULL */
static struct kvmm_mdl_rpage *cached;  /* imported pages no handle refers to, most recent first */
static uint32_t npages, ncached;

static uint32_t words_per_page(void)
{
    return (uint32_t)(kvmm_os_page_size() / sizeof(uint32_t));
}

static void page_free(struct kvmm_mdl_rpage *p)
{
    kvmm_os_release((uintptr_t)p->words, kvmm_os_page_size());
    if (p->fd >= 0)
        close(p->fd);
    free(p);
}

/* Puts an imported page no handle refers to into the cache; lock held. */
static void cache_put(struct kvmm_mdl_rpage *p)
{
    close(p->fd);
    p->fd = -1;
    p->next = cached;
    cached = p;
    if (++ncached <= RPAGE_CACHE_MAX)
        return;
    struct kvmm_mdl_rpage **pp = &cached;
    while ((*pp)->next)
        pp = &(*pp)->next;
    page_free(*pp);
    *pp = NULL;
    ncached--;
}

/* keep: an imported page may go to the cache (false: a failed import mapped it). */
static void unref(struct kvmm_mdl_rpage *p, bool keep)
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
    if (keep && !p->local)
        cache_put(p);
    else
        page_free(p);
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
    uintptr_t m = 0;
    if ((rc = kvmm_os_map_file(fd, 0, page, PROT_READ | PROT_WRITE, 0, &m)) == 0 &&
        (rc = kvmm_mdl_fd_for(fd, KVMM_RIGHT_READ, &ro)) == 0 && fstat(ro, &st) != 0)
        rc = -errno;
    /* Only the mapping writes; the read-write description is not needed past this point. */
    close(fd);
    if (rc) {
        if (m)
            kvmm_os_release(m, page);
        if (ro >= 0)
            close(ro);
        free(p);
        return rc;
    }
    p->words = (uint32_t *)m;
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
        unref(o->own.page, true);
    for (uint32_t i = 0; i < o->nanc; i++)
        unref(o->anc[i].page, !(o->fresh & (1u << i)));
    o->own.page = NULL;
    o->nanc = 0;
    o->fresh = 0;
    pthread_mutex_unlock(&lock);
}

void kvmm_mdl_revoke_object(void *object, bool close)
{
    struct kvmm_mdl *o = object;
    pthread_mutex_lock(&lock);
    if (o->own.page)
        __atomic_store_n(&o->own.page->words[o->own.slot], 1u, __ATOMIC_RELEASE);
    if (close) {
        o->revoked = true; /* a clone or export racing with the close gets no live word */
    } else if (o->own.page) {
        /* The handle stays usable: what derives from it from now on gets a fresh word. */
        unref(o->own.page, true);
        o->own.page = NULL;
    }
    pthread_mutex_unlock(&lock);
}

int kvmm_mdl_lend_words(const struct kvmm_mdl *o_const, struct kvmm_mdl_export *e)
{
    struct kvmm_mdl *o = (struct kvmm_mdl *)o_const;
    pthread_mutex_lock(&lock);
    int rc = o->nanc + 1 > KVMM_MDL_MAX_REVOKE ? -EDQUOT : own_word_locked(o);
    uint32_t n = 0;
    /* o references each page, so each page's fd stays open while the caller holds o. */
    for (; rc == 0 && n <= o->nanc; n++) {
        struct kvmm_mdl_word w = n < o->nanc ? o->anc[n] : o->own;
        e->revoke_fd[n] = w.page->fd;
        e->revoke_slot[n] = w.slot;
        e->revoke_dev[n] = w.page->dev;
        e->revoke_ino[n] = w.page->ino;
        e->revoke_page[n] = NULL;
    }
    pthread_mutex_unlock(&lock);
    if (rc)
        return rc;
    e->revoke_count = n;
    for (; n < KVMM_MDL_MAX_REVOKE; n++) {
        e->revoke_fd[n] = -1;
        e->revoke_slot[n] = 0;
        e->revoke_dev[n] = e->revoke_ino[n] = 0;
        e->revoke_page[n] = NULL;
    }
    return 0;
}

/* What a revocation page fd must be, whether or not its page is known here: a read-only
 * description (another process we pass it on to must not be able to clear a word) of a regular
 * file at least a page long, and a word inside the page. */
static int check_page_fd(int fd, struct stat *st)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -EINVAL;
    if ((fl & O_ACCMODE) != O_RDONLY)
        return -EACCES;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || st->st_size < (off_t)kvmm_os_page_size())
        return -EINVAL;
    return 0;
}

static bool same_file(const struct kvmm_mdl_rpage *p, const struct stat *st)
{
    return p->dev == (uint64_t)st->st_dev && p->ino == (uint64_t)st->st_ino;
}

/* The page mapped here with st's identity, referenced or cached (*in_cache), or NULL; lock held. */
static struct kvmm_mdl_rpage *page_find(const struct stat *st, struct kvmm_mdl_rpage ***in_cache)
{
    *in_cache = NULL;
    for (struct kvmm_mdl_rpage *p = pages; p; p = p->next)
        if (same_file(p, st))
            return p;
    for (struct kvmm_mdl_rpage **pp = &cached; *pp; pp = &(*pp)->next)
        if (same_file(*pp, st)) {
            *in_cache = pp;
            return *pp;
        }
    return NULL;
}

/* A page not mapped here yet must also be sealed against shrinking: a shrunk page would turn our
 * loads into SIGBUS. Pages mapped here were checked when they were mapped (or made here), and
 * seals are never removed. Lock held. */
static int check_new_page_fd(int fd, const struct stat *st)
{
    struct kvmm_mdl_rpage **in_cache;
    if (page_find(st, &in_cache))
        return 0;
    int seals = fcntl(fd, F_GET_SEALS);
    return seals < 0 || !(seals & F_SEAL_SHRINK) ? -EINVAL : 0;
}

/* The page with this identity, referenced (out of the cache if it was there: fd takes the place of
 * the fd it closed), or a new read-only mapping of fd (*fresh); lock held. Takes fd in all cases. */
static int page_attach(int fd, const struct stat *st, struct kvmm_mdl_rpage **out, bool *fresh)
{
    struct kvmm_mdl_rpage **in_cache, *p = page_find(st, &in_cache);
    *fresh = false;
    if (p && !in_cache) {
        close(fd);
        p->refs++;
        *out = p;
        return 0;
    }
    if (p) {
        *in_cache = p->next;
        ncached--;
    } else {
        p = calloc(1, sizeof *p);
        uintptr_t m;
        int rc = p ? kvmm_os_map_file(fd, 0, kvmm_os_page_size(), PROT_READ, 0, &m) : -ENOMEM;
        if (rc) {
            free(p);
            close(fd);
            return rc;
        }
        p->words = (uint32_t *)m;
        p->dev = st->st_dev;
        p->ino = st->st_ino;
        *fresh = true;
    }
    p->fd = fd;
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
    /* Everything is checked before anything is mapped. A page that came as a reference is mapped
     * here already and was checked when its fd arrived. */
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        if (e->revoke_slot[i] >= words_per_page() || (!e->revoke_page[i] && e->revoke_fd[i] < 0))
            rc = -EINVAL;
        else if (!e->revoke_page[i])
            rc = check_page_fd(e->revoke_fd[i], &st[i]);
    }
    pthread_mutex_lock(&lock);
    for (uint32_t i = 0; i < n && rc == 0; i++)
        if (!e->revoke_page[i])
            rc = check_new_page_fd(e->revoke_fd[i], &st[i]);
    for (uint32_t i = 0; i < n; i++) {
        int fd = e->revoke_fd[i];
        struct kvmm_mdl_rpage *p = e->revoke_page[i];
        e->revoke_fd[i] = -1;
        e->revoke_page[i] = NULL;
        if (rc) {
            if (p)
                unref(p, true);
            else if (fd >= 0)
                close(fd);
            continue;
        }
        bool fresh = false;
        if (p) {
            if (fd >= 0)
                close(fd);
        } else {
            rc = page_attach(fd, &st[i], &p, &fresh);
        }
        if (rc == 0) {
            /* A referenced page's reference becomes the ancestry entry's. */
            o->anc[o->nanc].page = p;
            o->anc[o->nanc].slot = e->revoke_slot[i];
            if (fresh)
                o->fresh |= 1u << o->nanc;
            o->nanc++;
        }
    }
    pthread_mutex_unlock(&lock);
    /* Already revoked: refuse now rather than hand out a handle that can never be used. */
    if (rc == 0 && kvmm_mdl_is_revoked(o))
        rc = -EKEYREVOKED;
    return rc;
}

int kvmm_mdl_rpage_adopt(int fd, struct kvmm_mdl_rpage **page, bool *fresh, uint64_t *dev, uint64_t *ino)
{
    struct stat st;
    int rc = check_page_fd(fd, &st);
    if (rc) {
        close(fd);
        return rc;
    }
    pthread_mutex_lock(&lock);
    if ((rc = check_new_page_fd(fd, &st)) == 0)
        rc = page_attach(fd, &st, page, fresh);
    else
        close(fd);
    pthread_mutex_unlock(&lock);
    if (rc == 0) {
        *dev = (uint64_t)st.st_dev;
        *ino = (uint64_t)st.st_ino;
    }
    return rc;
}

void kvmm_mdl_rpage_ref(struct kvmm_mdl_rpage *p)
{
    pthread_mutex_lock(&lock);
    p->refs++;
    pthread_mutex_unlock(&lock);
}

void kvmm_mdl_rpage_release(struct kvmm_mdl_rpage *p, bool keep)
{
    pthread_mutex_lock(&lock);
    unref(p, keep);
    pthread_mutex_unlock(&lock);
}

void kvmm_mdl_settle_words(struct kvmm_mdl *o)
{
    pthread_mutex_lock(&lock);
    o->fresh = 0;
    pthread_mutex_unlock(&lock);
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
        kvmm_os_map_file_over((uintptr_t)p->words, page, PROT_READ | PROT_WRITE, fd, 0) == 0) {
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

static const struct kvmm_fork_hooks fork_hooks = {fork_prepare, fork_parent, fork_child};

__attribute__((constructor)) static void register_fork_hooks(void)
{
    kvmm_fork_register(&fork_hooks, KVMM_FORK_RANK_MDL_REVOKE);
}

uint32_t kvmm_mdl_rpage_count(void)
{
    pthread_mutex_lock(&lock);
    uint32_t n = npages;
    pthread_mutex_unlock(&lock);
    return n;
}

uint32_t kvmm_mdl_rpage_cached(void)
{
    pthread_mutex_lock(&lock);
    uint32_t n = ncached;
    pthread_mutex_unlock(&lock);
    return n;
}
