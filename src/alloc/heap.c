/* SPDX-License-Identifier: MIT */
/* src/alloc/heap.c — per-thread heaps: slab pages per size class, remote frees, abandon and adopt, fork. */
#include "alloc_internal.h"

#include <string.h>

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* initial-exec: the fast path must not call __tls_get_addr. */
static __thread struct kvmm_heap *tls_heap __attribute__((tls_model("initial-exec")));
static pthread_key_t heap_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT, fork_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvmm_heap *pool, *all_heaps;

static struct kvmm_chunk *chunk_of(const struct kvmm_page *pg)
{
    return (struct kvmm_chunk *)(pg->start & ~(KVMM_CHUNK - 1));
}

static unsigned first_slot(const struct kvmm_page *pg)
{
    return (unsigned)((pg->start & (KVMM_CHUNK - 1)) >> KVMM_SLOT_SHIFT);
}

/* ---- bin lists (owner, or the lock of an abandoned heap) ---- */

static void bin_unlink(struct kvmm_heap *h, struct kvmm_page *pg)
{
    if (pg->prev)
        pg->prev->next = pg->next;
    else
        h->bins[pg->bin] = pg->next;
    if (pg->next)
        pg->next->prev = pg->prev;
    pg->next = pg->prev = NULL;
}

static void bin_push(struct kvmm_heap *h, struct kvmm_page *pg, bool front)
{
    struct kvmm_page *head = h->bins[pg->bin];
    if (front || !head) {
        pg->prev = NULL;
        pg->next = head;
        if (head)
            head->prev = pg;
        h->bins[pg->bin] = pg;
        return;
    }
    /* Behind the head: the head keeps serving, this page is next when it runs dry. */
    pg->prev = head;
    pg->next = head->next;
    if (head->next)
        head->next->prev = pg;
    head->next = pg;
}

/* ---- chunks of a heap ---- */

static void chunk_link(struct kvmm_heap *h, struct kvmm_chunk *c)
{
    c->prev = NULL;
    c->next = h->chunks;
    if (h->chunks)
        h->chunks->prev = c;
    h->chunks = c;
}

/* Before the chunk is unmapped (every page retired): its slots leave the heap's counts. */
static void chunk_unlink(struct kvmm_heap *h, struct kvmm_chunk *c)
{
    h->committed_slots -= (size_t)__builtin_popcountll(c->committed);
    h->free_slots -= (size_t)__builtin_popcountll(c->committed & ~(uint64_t)1);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->chunks = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

/* ---- blocks ---- */

static uint32_t index_of(const struct kvmm_page *pg, uintptr_t off)
{
    return (uint32_t)((off * pg->recip) >> 40);
}

static void mark_allocated(struct kvmm_page *pg, void *b)
{
    uint32_t i = index_of(pg, (uintptr_t)b - pg->start);
    uint64_t bit = 1ull << (i % 64);
    uint64_t old = atomic_fetch_or_explicit(&chunk_of(pg)->bits[first_slot(pg)][i / 64], bit,
                                            memory_order_relaxed);
    if (unlikely(old & bit))
        kvmm_alloc_abort("KosMemAlloc", "heap corruption", b, "a free block is already allocated");
}

/* Takes a block from a page known to have one. */
static void *take(struct kvmm_page *pg)
{
    void *b = pg->free;
    if (b) {
        void *next = *(void **)b;
        /* A write after free into the link would hand out foreign memory next time. */
        if (unlikely(next && (uintptr_t)next - pg->start >= (uintptr_t)pg->capacity * pg->bsize))
            kvmm_alloc_abort("KosMemAlloc", "heap corruption", b, "free list link overwritten after free");
        pg->free = next;
    } else {
        b = (void *)(pg->start + (uintptr_t)pg->bump++ * pg->bsize);
    }
    if (pg->used++ == 0)
        chunk_of(pg)->busy++;
    mark_allocated(pg, b);
    return b;
}

/* Moves the blocks other threads freed into the owner's list. */
static void collect(struct kvmm_page *pg)
{
    /* seq_cst with the pushes and the heap state: see remote_free. */
    if (pg->full || !atomic_load_explicit(&pg->xfree, memory_order_seq_cst))
        return;
    void *list = (void *)atomic_exchange_explicit(&pg->xfree, 0, memory_order_seq_cst);
    uint32_t n = 1;
    void *tail = list;
    while (*(void **)tail) {
        tail = *(void **)tail;
        n++;
    }
    *(void **)tail = pg->free;
    pg->free = list;
    if ((pg->used -= n) == 0)
        chunk_of(pg)->busy--;
}

static bool has_room(const struct kvmm_page *pg)
{
    return pg->free || pg->bump < pg->capacity;
}

/* ---- pages ---- */

/* First fit among the slots in avail: span of them, aligned to span for slab pages (a power of
 * two), anywhere for run pages. */
static int find_run(uint64_t avail, unsigned span, bool aligned)
{
    if (span == 1)
        return avail ? __builtin_ctzll(avail) : -1;
    uint64_t mask = (1ull << span) - 1;
    for (unsigned i = aligned ? span : 1; i + span <= KVMM_SLOTS; i += aligned ? span : 1)
        if (((avail >> i) & mask) == mask)
            return (int)i;
    return -1;
}

static struct kvmm_page *page_new(struct kvmm_heap *h, unsigned bin, unsigned span)
{
    bool aligned = bin != KVMM_RUN_BIN;
    struct kvmm_chunk *c = NULL;
    int i = -1;
    /* Slots still committed first (in any chunk): each KnVmCommit and KnVmDecommit costs
     * system calls and a populate, so retired slots are reused before new ones are committed. */
    for (int pass = 0; pass < 2 && i < 0; pass++)
        for (c = h->chunks; c; c = c->next)
            if ((i = find_run(pass ? c->free_slots : c->free_slots & c->committed, span, aligned)) >= 0)
                break;
    if (!c) {
        if (!(c = kvmm_chunk_new(h)))
            return NULL;
        chunk_link(h, c);
        h->empty_chunks++;
        i = find_run(c->free_slots & c->committed, span, aligned);
        if (i < 0)
            i = find_run(c->free_slots, span, aligned);
    }
    if (kvmm_chunk_commit(c, (unsigned)i, span)) {
        if (c->pages == 0 && h->empty_chunks > 1) {
            h->empty_chunks--;
            chunk_unlink(h, c);
            kvmm_chunk_release(c);
        }
        return NULL;
    }
    if (c->pages++ == 0)
        h->empty_chunks--;
    c->free_slots &= ~(((span == 64 ? 0 : 1ull << span) - 1) << i);
    memset(&c->slot_page[i], i, span);
    struct kvmm_page *pg = &c->page[i];
    uint32_t bsize = (uint32_t)(aligned ? kvmm_bin_size(bin) : span * KVMM_SLOT);
    pg->free = NULL;
    pg->next = pg->prev = NULL;
    pg->start = (uintptr_t)c + (uintptr_t)i * KVMM_SLOT;
    pg->bsize = bsize;
    pg->recip = ((1ull << 40) + bsize - 1) / bsize;
    pg->capacity = (uint32_t)(span * KVMM_SLOT / bsize);
    pg->bump = 0;
    pg->used = 0;
    pg->bin = (uint8_t)bin;
    pg->span = (uint8_t)span;
    pg->full = 0;
    atomic_store_explicit(&pg->xfree, 0, memory_order_relaxed);
    return pg;
}

/* A page with no block in use goes back to its chunk; returns the chunk when that left it empty
 * and it should be unmapped (by the caller, outside any lock). */
static struct kvmm_chunk *page_retire(struct kvmm_heap *h, struct kvmm_page *pg, unsigned keep)
{
    struct kvmm_chunk *c = chunk_of(pg);
    unsigned i = first_slot(pg);
    if (!pg->full)
        bin_unlink(h, pg);
    pg->full = 0;
    atomic_store_explicit(&pg->xfree, 0, memory_order_relaxed);
    pg->bsize = 0;
    memset(&c->slot_page[i], KVMM_NO_PAGE, pg->span);
    c->free_slots |= ((pg->span == 64 ? 0 : 1ull << pg->span) - 1) << i;
    kvmm_chunk_trim(c, i, pg->span);
    if (--c->pages)
        return NULL;
    /* Hysteresis: one empty chunk stays with a live thread, for the next burst. */
    if (++h->empty_chunks <= keep)
        return NULL;
    h->empty_chunks--;
    chunk_unlink(h, c);
    return c;
}

/* A full page is back in its bin: remote frees go to the page again. */
static void unfull(struct kvmm_heap *h, struct kvmm_page *pg)
{
    pg->full = 0;
    atomic_store_explicit(&pg->xfree, 0, memory_order_release);
    bin_push(h, pg, false);
}

/* A page whose last block was freed. It stays when it is the only page of its bin and other
 * pages of its chunk are in use (or a loop of one allocation and one free would carve and retire
 * a page each time); once no page of the chunk is in use, all of them go, so kept pages never
 * hold an otherwise empty chunk. Returns the chunk to unmap, if that emptied one. */
static struct kvmm_chunk *page_emptied(struct kvmm_heap *h, struct kvmm_page *pg, unsigned keep)
{
    struct kvmm_chunk *c = chunk_of(pg);
    if (keep && c->busy && !pg->full && pg->bin != KVMM_RUN_BIN && h->bins[pg->bin] == pg && !pg->next)
        return NULL;
    struct kvmm_chunk *gone = page_retire(h, pg, keep);
    for (unsigned s = 1; !gone && !c->busy && c->pages && s < KVMM_SLOTS; s++)
        if (c->slot_page[s] == s && c->page[s].used == 0)
            gone = page_retire(h, &c->page[s], keep);
    return gone;
}

/* A block returned to its page by the owner (its allocated bit already cleared). Returns the
 * chunk to unmap, if that emptied one. */
static struct kvmm_chunk *give_back(struct kvmm_heap *h, struct kvmm_page *pg, void *p, unsigned keep)
{
    /* Remote frees of this page are absorbed here too, so a thread that only frees still
     * empties its pages. The owner writes this descriptor anyway: no extra cache line. */
    if (atomic_load_explicit(&pg->xfree, memory_order_relaxed) > KVMM_XFULL)
        collect(pg);
    *(void **)p = pg->free;
    pg->free = p;
    if (--pg->used == 0) {
        chunk_of(pg)->busy--;
        return page_emptied(h, pg, keep);
    }
    if (pg->full && pg->bin != KVMM_RUN_BIN)
        unfull(h, pg);
    return NULL;
}

static struct kvmm_page *page_of(void *p)
{
    struct kvmm_chunk *c = (struct kvmm_chunk *)((uintptr_t)p & ~(KVMM_CHUNK - 1));
    return &c->page[c->slot_page[((uintptr_t)p & (KVMM_CHUNK - 1)) >> KVMM_SLOT_SHIFT]];
}

/* Blocks other threads freed into full pages. */
static void drain_delayed(struct kvmm_heap *h, unsigned keep, struct kvmm_chunk **gone)
{
    void *b = atomic_exchange_explicit(&h->delayed, NULL, memory_order_seq_cst);
    while (b) {
        void *next = *(void **)b;
        struct kvmm_chunk *g = give_back(h, page_of(b), b, keep);
        if (g) {
            g->next = *gone;
            *gone = g;
        }
        b = next;
    }
}

static void release_all(struct kvmm_chunk *gone)
{
    while (gone) {
        struct kvmm_chunk *next = gone->next;
        kvmm_chunk_release(gone);
        gone = next;
    }
}

static struct kvmm_heap *heap_init_thread(void);

static void *alloc_slow(struct kvmm_heap *h, unsigned bin)
{
    if (atomic_load_explicit(&h->delayed, memory_order_relaxed)) {
        struct kvmm_chunk *gone = NULL;
        drain_delayed(h, 1, &gone);
        release_all(gone);
    }
    struct kvmm_page *pg;
    while ((pg = h->bins[bin])) {
        collect(pg);
        if (has_room(pg))
            return take(pg);
        /* Full: tagged, so later remote frees go to the heap's delayed list; if some arrived
         * meanwhile, the tag is refused and they are collected instead. */
        uintptr_t none = 0;
        if (atomic_compare_exchange_strong_explicit(&pg->xfree, &none, KVMM_XFULL, memory_order_acq_rel,
                                                    memory_order_relaxed)) {
            bin_unlink(h, pg);
            pg->full = 1;
        }
    }
    if (!(pg = page_new(h, bin, kvmm_bin_span(bin))))
        return NULL;
    bin_push(h, pg, true);
    return take(pg);
}

/* A run page is in no bin list: it is "full" from the start, so frees from other threads reach
 * the owner through the delayed list, and its one free retires it. */
void *kvmm_run_alloc(size_t size)
{
    struct kvmm_heap *h = tls_heap;
    if (unlikely(!h) && !(h = heap_init_thread()))
        return NULL;
    struct kvmm_page *pg = page_new(h, KVMM_RUN_BIN, (unsigned)((size + KVMM_SLOT - 1) >> KVMM_SLOT_SHIFT));
    if (!pg)
        return NULL;
    pg->full = 1;
    atomic_store_explicit(&pg->xfree, KVMM_XFULL, memory_order_relaxed);
    return take(pg);
}

void *kvmm_small_alloc(unsigned bin)
{
    struct kvmm_heap *h = tls_heap;
    if (unlikely(!h) && !(h = heap_init_thread()))
        return NULL;
    struct kvmm_page *pg = h->bins[bin];
    if (likely(pg && has_room(pg)))
        return take(pg);
    return alloc_slow(h, bin);
}

/* ---- free ---- */

/* The page and index of p, or NULL when p is not the start of a block slot. */
static struct kvmm_page *locate(struct kvmm_chunk *c, const void *p, uint32_t *index, const char **why)
{
    uintptr_t off = (uintptr_t)p - (uintptr_t)c;
    unsigned slot = (unsigned)(off >> KVMM_SLOT_SHIFT);
    unsigned first = slot ? c->slot_page[slot] : KVMM_NO_PAGE;
    if (first == KVMM_NO_PAGE) {
        *why = slot ? "not in use by any size class" : "inside an allocator header";
        return NULL;
    }
    struct kvmm_page *pg = &c->page[first];
    uintptr_t in = (uintptr_t)p - pg->start;
    uint32_t i = index_of(pg, in);
    if (in >= (uintptr_t)pg->capacity * pg->bsize || (uintptr_t)i * pg->bsize != in) {
        *why = "not the start of a block";
        return NULL;
    }
    *index = i;
    return pg;
}

static void heap_collect_all(struct kvmm_heap *h, struct kvmm_chunk **gone);

/* Collects an abandoned heap unless someone else is at it. Whoever holds the lock may already
 * have passed the page of a new free: every holder looks again when it sees pending after its
 * pass, so a free never waits for the lock and no block is stranded. */
static void collect_abandoned(struct kvmm_heap *h)
{
    while (pthread_mutex_trylock(&h->lock) == 0) {
        struct kvmm_chunk *gone = NULL;
        atomic_store_explicit(&h->pending, 0, memory_order_seq_cst);
        if (atomic_load_explicit(&h->state, memory_order_relaxed) == KVMM_HEAP_ABANDONED)
            heap_collect_all(h, &gone);
        pthread_mutex_unlock(&h->lock);
        release_all(gone);
        if (!atomic_load_explicit(&h->pending, memory_order_seq_cst))
            break;
    }
}

static void remote_free(struct kvmm_heap *h, struct kvmm_page *pg, void *p)
{
    uintptr_t head = atomic_load_explicit(&pg->xfree, memory_order_relaxed);
    for (;;) {
        if (head == KVMM_XFULL) {
            void *top = atomic_load_explicit(&h->delayed, memory_order_relaxed);
            do
                *(void **)p = top;
            while (!atomic_compare_exchange_weak_explicit(&h->delayed, &top, p, memory_order_seq_cst,
                                                          memory_order_relaxed));
            break;
        }
        *(void **)p = (void *)head;
        if (atomic_compare_exchange_weak_explicit(&pg->xfree, &head, (uintptr_t)p, memory_order_seq_cst,
                                                  memory_order_relaxed))
            break;
    }
    /* From here the page may be gone; the heap never is (heaps are pooled, not freed). An
     * abandoned heap has no owner to collect: whoever frees into it does, if nobody else is.
     * The push above, this load, and the exiting owner's state store and collection are all
     * seq_cst: either this free sees the heap abandoned, or the owner's last pass sees the
     * block (with release/acquire both could miss each other, stranding the block). */
    if (atomic_load_explicit(&h->state, memory_order_seq_cst) != KVMM_HEAP_ABANDONED)
        return;
    atomic_store_explicit(&h->pending, 1, memory_order_seq_cst);
    collect_abandoned(h);
}

void kvmm_small_free(struct kvmm_chunk *c, void *p)
{
    uint32_t i;
    const char *why;
    struct kvmm_page *pg = locate(c, p, &i, &why);
    if (unlikely(!pg))
        kvmm_alloc_abort("KosMemFree", "invalid pointer", p, why);
    uint64_t bit = 1ull << (i % 64);
    uint64_t old = atomic_fetch_and_explicit(&c->bits[first_slot(pg)][i / 64], ~bit, memory_order_relaxed);
    if (unlikely(!(old & bit)))
        kvmm_alloc_abort("KosMemFree", "double free detected", p, NULL);
    struct kvmm_heap *h = c->heap;
    if (h != tls_heap) {
        remote_free(h, pg, p);
        return;
    }
    struct kvmm_chunk *gone = give_back(h, pg, p, 1);
    if (unlikely(gone != NULL)) {
        gone->next = NULL;
        release_all(gone);
    }
}

size_t kvmm_small_size(struct kvmm_chunk *c, const void *p)
{
    uint32_t i;
    const char *why;
    struct kvmm_page *pg = locate(c, p, &i, &why);
    if (!pg)
        return 0;
    uint64_t bits = atomic_load_explicit(&c->bits[first_slot(pg)][i / 64], memory_order_relaxed);
    return bits >> (i % 64) & 1 ? pg->bsize : 0;
}

/* ---- thread heaps ---- */

/* Every remote free collected, empty pages retired, every empty chunk handed back in *gone.
 * The owner, or the lock holder of an abandoned heap. */
static void heap_collect_all(struct kvmm_heap *h, struct kvmm_chunk **gone)
{
    drain_delayed(h, 0, gone);
    for (struct kvmm_chunk *c = h->chunks, *next; c; c = next) {
        next = c->next;
        for (unsigned s = 1; s < KVMM_SLOTS; s++) {
            if (c->slot_page[s] != s)
                continue;
            struct kvmm_page *pg = &c->page[s];
            collect(pg);
            if (pg->used == 0) {
                struct kvmm_chunk *g = page_retire(h, pg, 0);
                if (g) {
                    g->next = *gone;
                    *gone = g;
                }
            }
        }
    }
    /* Chunks left empty earlier (the one kept for reuse) go too. */
    for (struct kvmm_chunk *c = h->chunks, *next; c; c = next) {
        next = c->next;
        if (c->pages == 0) {
            chunk_unlink(h, c);
            c->next = *gone;
            *gone = c;
        }
    }
    h->empty_chunks = 0;
}

static void heap_abandon(void *arg)
{
    struct kvmm_heap *h = arg;
    struct kvmm_chunk *gone = NULL;
    tls_heap = NULL;
    /* Abandoned first, then collected under the lock: a remote free that saw the heap still
     * owned has pushed its block before this pass; any later one sees it abandoned. */
    pthread_mutex_lock(&h->lock);
    atomic_store_explicit(&h->state, KVMM_HEAP_ABANDONED, memory_order_seq_cst);
    atomic_store_explicit(&h->pending, 0, memory_order_seq_cst);
    heap_collect_all(h, &gone);
    pthread_mutex_unlock(&h->lock);
    release_all(gone);
    /* Frees that found the lock held during this pass. */
    if (atomic_load_explicit(&h->pending, memory_order_seq_cst))
        collect_abandoned(h);
    pthread_mutex_lock(&pool_lock);
    h->pool_next = pool;
    pool = h;
    pthread_mutex_unlock(&pool_lock);
}

static void make_key(void)
{
    pthread_key_create(&heap_key, heap_abandon);
}

/*
 * fork(): the child must find no allocator lock held, and consistent heaps. prepare takes every
 * lock (pool, heaps, large table, metadata), so no abandoned heap is mid-collection. Heaps owned
 * by threads other than the forking one may be mid-operation and have no thread in the child:
 * they become DEAD there (never adopted; blocks freed into them are not reused). Registered
 * after kosvmm's own handlers (a region exists by then), so this prepare runs before theirs and
 * a thread holding one of these locks inside a VMM call can finish it.
 */
static void fork_prepare(void)
{
    pthread_mutex_lock(&pool_lock);
    for (struct kvmm_heap *h = all_heaps; h; h = h->all_next)
        pthread_mutex_lock(&h->lock);
    kvmm_large_fork_prepare();
    kvmm_meta_fork_prepare();
}

static void fork_parent(void)
{
    kvmm_meta_fork_release();
    kvmm_large_fork_parent();
    for (struct kvmm_heap *h = all_heaps; h; h = h->all_next)
        pthread_mutex_unlock(&h->lock);
    pthread_mutex_unlock(&pool_lock);
}

static void fork_child(void)
{
    kvmm_meta_fork_release();
    kvmm_large_fork_child();
    for (struct kvmm_heap *h = all_heaps; h; h = h->all_next) {
        if (h != tls_heap && atomic_load_explicit(&h->state, memory_order_relaxed) == KVMM_HEAP_OWNED)
            atomic_store_explicit(&h->state, KVMM_HEAP_DEAD, memory_order_relaxed);
        pthread_mutex_unlock(&h->lock);
    }
    pthread_mutex_unlock(&pool_lock);
}

static void install_fork(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static struct kvmm_heap *heap_init_thread(void)
{
    pthread_once(&key_once, make_key);
    pthread_mutex_lock(&pool_lock);
    struct kvmm_heap *h = pool;
    if (h) {
        pool = h->pool_next;
        pthread_mutex_lock(&h->lock);
        atomic_store_explicit(&h->state, KVMM_HEAP_OWNED, memory_order_seq_cst);
        pthread_mutex_unlock(&h->lock);
    }
    pthread_mutex_unlock(&pool_lock);
    if (!h) {
        if (!(h = kvmm_meta_alloc(sizeof *h)))
            return NULL;
        pthread_mutex_init(&h->lock, NULL);
        atomic_store_explicit(&h->state, KVMM_HEAP_OWNED, memory_order_relaxed);
        pthread_once(&fork_once, install_fork);
        pthread_mutex_lock(&pool_lock);
        h->all_next = all_heaps;
        all_heaps = h;
        pthread_mutex_unlock(&pool_lock);
    }
    tls_heap = h;
    pthread_setspecific(heap_key, h);
    return h;
}
