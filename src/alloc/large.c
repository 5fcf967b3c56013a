/* SPDX-License-Identifier: MIT */
/* src/alloc/large.c — blocks above the slab sizes: one VMM region each, found again through a hash table. */
#include "alloc_internal.h"

#include <coresrv/vmm/vmm_api.h>
#include <stdbool.h>
#include <string.h>

#include "os.h"

#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)

/*
 * Open addressing keyed by the block's address. A freed entry stays as a tombstone holding the
 * address, so a second KosMemFree of it is told apart from a foreign pointer (until the slot is
 * reused). Large blocks cost a mapping and a populate each, so one mutex here is not what limits
 * them.
 */
enum { E_EMPTY, E_LIVE, E_FREED };

struct entry {
    uintptr_t key;
    size_t len; /* bytes of the region, starting at key */
    uintptr_t state;
    uintptr_t pad; /* 32 bytes: 256 entries and every doubling are whole pages */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *table;
static size_t cap, live, used; /* used: live + tombstones */

static size_t slot_of(uintptr_t key, size_t mask)
{
    return (size_t)(((key >> 12) * 0x9e3779b97f4a7c15ull) >> 20) & mask;
}

static struct entry *find(uintptr_t key)
{
    if (!table)
        return NULL;
    for (size_t i = slot_of(key, cap - 1);; i = (i + 1) & (cap - 1)) {
        if (table[i].state == E_EMPTY)
            return NULL;
        if (table[i].key == key)
            return &table[i];
    }
}

static bool has_room(void)
{
    return table && (used + 1) * 4 <= cap * 3;
}

static size_t wanted_cap(void)
{
    size_t ncap = cap ? cap : 256;
    while ((live + 1) * 2 > ncap)
        ncap *= 2;
    return ncap;
}

/* Rebuilds the table into n (ncap entries), dropping tombstones. Lock held. */
static void rehash(struct entry *n, size_t ncap)
{
    for (size_t i = 0; table && i < cap; i++) {
        if (table[i].state != E_LIVE)
            continue;
        size_t j = slot_of(table[i].key, ncap - 1);
        while (n[j].state != E_EMPTY)
            j = (j + 1) & (ncap - 1);
        n[j] = table[i];
    }
    table = n;
    cap = ncap;
    used = live;
}

/* The table's own storage comes from the VMM like everything else, but not under this lock:
 * a lock taken around every large free must not order itself before kosvmm's (ThreadSanitizer saw
 * the cycle in a fork child, where kosvmm re-initialises its map lock). */
static int insert(uintptr_t key, size_t len)
{
    pthread_mutex_lock(&lock);
    struct entry *e = find(key);
    while (!e && !has_room()) {
        size_t ncap = wanted_cap();
        pthread_mutex_unlock(&lock);
        struct entry *n = KnVmAllocate(RTL_NULL, ncap * sizeof *n,
                                       RW | VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED);
        if (!n)
            return -1;
        pthread_mutex_lock(&lock);
        struct entry *old = NULL;
        size_t old_cap = cap;
        if (!has_room() && (live + 1) * 2 <= ncap) {
            old = table;
            rehash(n, ncap);
            n = NULL;
        }
        if (n || old) {
            /* Another thread grew it meanwhile, or the old storage goes: outside the lock. */
            pthread_mutex_unlock(&lock);
            if (n)
                KnVmUnmap(n, ncap * sizeof *n);
            if (old)
                KnVmUnmap(old, old_cap * sizeof *old);
            pthread_mutex_lock(&lock);
        }
        e = find(key);
    }
    if (!e) {
        size_t i = slot_of(key, cap - 1);
        while (table[i].state != E_EMPTY)
            i = (i + 1) & (cap - 1);
        e = &table[i];
        used++;
    }
    *e = (struct entry){key, len, E_LIVE, 0};
    live++;
    pthread_mutex_unlock(&lock);
    return 0;
}

static void *map_aligned(size_t len, size_t align)
{
    const int all = RW | VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED;
    size_t page = kvmm_os_page_size(), total;
    if (align <= page)
        return KnVmAllocate(RTL_NULL, len, all);
    /* Reserve len + align, cut the edges off, commit only what is kept. */
    if (__builtin_add_overflow(len, align, &total))
        return NULL;
    uintptr_t base = (uintptr_t)KnVmAllocate(RTL_NULL, total, RW | VMM_FLAG_RESERVE | VMM_FLAG_LOCKED);
    if (!base)
        return NULL;
    uintptr_t p = (base + align - 1) & ~(uintptr_t)(align - 1), tail = base + total - p - len;
    /* A refused split (vm.max_map_count) leaves the region whole: free what is still there. */
    if (p > base && KnVmUnmap((void *)base, p - base) != rcOk) {
        KnVmUnmap((void *)base, total);
        return NULL;
    }
    if (tail && KnVmUnmap((void *)(p + len), tail) != rcOk) {
        KnVmUnmap((void *)p, len + tail);
        return NULL;
    }
    if (KnVmCommit((void *)p, len, VMM_FLAG_LOCKED) != rcOk) {
        KnVmUnmap((void *)p, len);
        return NULL;
    }
    return (void *)p;
}

void *kvmm_large_alloc(size_t size, size_t align)
{
    size_t page = kvmm_os_page_size();
    if (size > SIZE_MAX - page)
        return NULL;
    size_t len = (size + page - 1) & ~(page - 1);
    void *p = map_aligned(len, align);
    if (p && insert((uintptr_t)p, len)) {
        KnVmUnmap(p, len);
        p = NULL;
    }
    return p;
}

int kvmm_large_free(void *p)
{
    pthread_mutex_lock(&lock);
    struct entry *e = find((uintptr_t)p);
    if (!e || e->state != E_LIVE) {
        pthread_mutex_unlock(&lock);
        return e ? -2 : -1;
    }
    size_t len = e->len;
    e->state = E_FREED;
    live--;
    pthread_mutex_unlock(&lock);
    KnVmUnmap(p, len);
    return 0;
}

size_t kvmm_large_size(const void *p)
{
    pthread_mutex_lock(&lock);
    struct entry *e = find((uintptr_t)p);
    size_t len = e && e->state == E_LIVE ? e->len : 0;
    pthread_mutex_unlock(&lock);
    return len;
}

void kvmm_large_fork_prepare(void)
{
    pthread_mutex_lock(&lock);
}

void kvmm_large_fork_parent(void)
{
    pthread_mutex_unlock(&lock);
}

void kvmm_large_fork_child(void)
{
    pthread_mutex_unlock(&lock);
}
