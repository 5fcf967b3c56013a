/* SPDX-License-Identifier: MIT */
/* tests/fuzz/driver.c — decodes operations from bytes or a PRNG, applies each to kosvmm and the model, checks they agree. */
#include "driver.h"
#include "model.h"

#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define RWX VMM_FLAG_RWX_MASK
#define KNOWN_FLAGS                                                                                           \
    (VMM_FLAG_RWX_MASK | VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | VMM_FLAG_CACHE_MASK |        \
     VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD | VMM_FLAG_GROW_DOWN)
#define ARENA_PAGES 512u
#define POISON_HANDLE ((Handle)0xDEADBEEFu)
#define MAX_MAPS 16384
#define OPLOG 24

/* ---- byte source ------------------------------------------------------------------------------- */

typedef struct src {
    const uint8_t *d;
    size_t n, pos;
    uint64_t s;   /* PRNG state when prng */
    int prng;
} src;

static uint64_t xs(uint64_t *s)
{
    /* xorshift64*: enough for test data, and the same everywhere. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static uint32_t next_byte(src *s)
{
    if (s->prng)
        return (uint32_t)(xs(&s->s) >> 56);
    return s->pos < s->n ? s->d[s->pos++] : 0;
}

static int src_done(const src *s)
{
    return !s->prng && s->pos >= s->n;
}

/* A value in [0, bound), bound >= 1, from as few bytes as the bound needs. */
static uint32_t rnd(src *s, uint32_t bound)
{
    if (bound <= 1)
        return 0;
    uint32_t v = next_byte(s);
    if (bound > 256)
        v = v << 8 | next_byte(s);
    if (bound > 65536)
        v = v << 16 | next_byte(s) << 8 | next_byte(s);
    return v % bound;
}

/* ---- driver state ----------------------------------------------------------------------------- */

typedef struct maps_ent {
    uintptr_t lo, hi;
    char perms[5];
} maps_ent;

static struct {
    int ready;
    size_t P;
    uintptr_t arena;
    model m;
    src *s;
    jmp_buf fail_jmp;
    char failure[8192];
    char oplog[OPLOG][160];
    unsigned oplog_n;
    kosvmm_stats base;
    int fd_base;
    uint64_t fd_base_set[16]; /* which descriptors were open at setup */
    uint64_t step;
    /* Pages the current operation addressed: their contents are compared every step. */
    uintptr_t touched[8];
    int ntouched;
    uintptr_t span_lo, span_hi; /* addresses the current operation named */
    drv_counters c;
    uint8_t *scratch;    /* PRNG bytes for writes and CreateFromBuf, M_MAX_BUF_PAGES pages */
    uint8_t *zero;       /* one page of zeros */
    maps_ent maps[MAX_MAPS];
    int nmaps;
    char mapsbuf[65536];
} D;

static void oplog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void oplog(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(D.oplog[D.oplog_n % OPLOG], sizeof D.oplog[0], fmt, ap);
    va_end(ap);
    D.oplog_n++;
}

static void dfail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void dfail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(D.failure, sizeof D.failure, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof D.failure ? (size_t)n : sizeof D.failure - 1;
    len += (size_t)snprintf(D.failure + len, sizeof D.failure - len, "\n  step %llu; last operations:",
                            (unsigned long long)D.step);
    unsigned first = D.oplog_n > OPLOG ? D.oplog_n - OPLOG : 0;
    for (unsigned i = first; i < D.oplog_n && len < sizeof D.failure - 1; i++)
        len += (size_t)snprintf(D.failure + len, sizeof D.failure - len, "\n    #%u %s", i, D.oplog[i % OPLOG]);
    longjmp(D.fail_jmp, 1);
}

#define EXPECT(cond, ...)                                                                                    \
    do {                                                                                                     \
        if (!(cond))                                                                                         \
            dfail(__VA_ARGS__);                                                                               \
    } while (0)

static const char *rcn(Retcode rc)
{
    switch (rc) {
    case rcOk: return "rcOk";
    case rcFail: return "rcFail";
    case rcInvalidArgument: return "rcInvalidArgument";
    case rcOutOfMemory: return "rcOutOfMemory";
    case rcResourceNotFound: return "rcResourceNotFound";
    case rcAlreadyExists: return "rcAlreadyExists";
    case rcInvalidOperation: return "rcInvalidOperation";
    case rcNoCapability: return "rcNoCapability";
    case rcHandleRevoked: return "rcHandleRevoked";
    case rcQuotaExceeded: return "rcQuotaExceeded";
    default: return "(other)";
    }
}

/* A call returned got where the model wants want (or alt, where the header allows both). */
static void expect_rc(const char *what, Retcode got, Retcode want, Retcode alt)
{
    EXPECT(got == want || got == alt, "%s returned %s (%#x), model expects %s%s%s", what, rcn(got), got, rcn(want),
           alt != want ? " or " : "", alt != want ? rcn(alt) : "");
    if (got == rcOk)
        D.c.calls_ok++;
    else
        D.c.calls_failed++;
}

static void span(uintptr_t a, size_t sz)
{
    uintptr_t e = a + sz < a ? UINTPTR_MAX : a + sz;
    D.span_lo = a;
    D.span_hi = e > a + (uintptr_t)M_MAX_PAGES * 2 * D.P ? a + (uintptr_t)M_MAX_PAGES * 2 * D.P : e;
}

static void touch(uintptr_t a)
{
    if (D.ntouched < (int)(sizeof D.touched / sizeof D.touched[0]))
        D.touched[D.ntouched++] = a;
}

/* ---- kernel views: /proc/self/maps without malloc, mincore ------------------------------------- */

static uintptr_t hexval(const char **p)
{
    uintptr_t v = 0;
    for (;; (*p)++) {
        char ch = **p;
        if (ch >= '0' && ch <= '9')
            v = v << 4 | (uintptr_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v = v << 4 | (uintptr_t)(ch - 'a' + 10);
        else
            return v;
    }
}

/* Reads /proc/self/maps into D.maps with a static buffer: no allocator runs between the call
 * under test and this look at the kernel. */
static void read_maps(void)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    EXPECT(fd >= 0, "cannot open /proc/self/maps");
    size_t have = 0;
    D.nmaps = 0;
    for (;;) {
        ssize_t n = read(fd, D.mapsbuf + have, sizeof D.mapsbuf - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        D.mapsbuf[have] = '\0';
        char *line = D.mapsbuf, *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = '\0';
            const char *p = line;
            uintptr_t lo = hexval(&p);
            if (*p == '-' && D.nmaps < MAX_MAPS) {
                p++;
                uintptr_t hi = hexval(&p);
                if (*p == ' ' && strlen(p) >= 5) {
                    maps_ent *e = &D.maps[D.nmaps++];
                    e->lo = lo;
                    e->hi = hi;
                    memcpy(e->perms, p + 1, 4);
                    e->perms[4] = '\0';
                }
            }
            line = nl + 1;
        }
        have = strlen(line);
        memmove(D.mapsbuf, line, have);
    }
    close(fd);
}

/*
 * PROCMAP_QUERY (Linux 6.11): the same VMAs /proc/self/maps lists, one ioctl per VMA and no text
 * formatting of the whole address space, which would otherwise be most of each step's cost.
 * Declared here because older kernel headers lack it; the ABI is fixed (size-versioned struct).
 */
struct drv_procmap_query {
    uint64_t size, query_flags, query_addr, vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
    uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
    uint64_t vma_name_addr, build_id_addr;
};
#define DRV_PROCMAP_QUERY _IOWR('f', 17, struct drv_procmap_query)
#define DRV_PMQ_READ 0x01
#define DRV_PMQ_WRITE 0x02
#define DRV_PMQ_EXEC 0x04
#define DRV_PMQ_SHARED 0x08
#define DRV_PMQ_COVERING_OR_NEXT 0x10

static int maps_fd = -1;
static int procmap_query_ok = 1;

/* Appends the VMAs meeting [lo, hi) to D.maps; -1 when the kernel lacks PROCMAP_QUERY. */
static int query_vmas(uintptr_t lo, uintptr_t hi)
{
    for (uintptr_t at = lo; at < hi;) {
        struct drv_procmap_query q;
        memset(&q, 0, sizeof q);
        q.size = sizeof q;
        q.query_flags = DRV_PMQ_COVERING_OR_NEXT;
        q.query_addr = at;
        if (ioctl(maps_fd, DRV_PROCMAP_QUERY, &q) != 0)
            return errno == ENOENT ? 0 : -1;
        if (q.vma_start >= hi)
            return 0;
        int dup = 0;
        for (int i = 0; i < D.nmaps; i++)
            dup |= D.maps[i].lo == q.vma_start;
        if (!dup && D.nmaps < MAX_MAPS) {
            maps_ent *e = &D.maps[D.nmaps++];
            e->lo = q.vma_start;
            e->hi = q.vma_end;
            e->perms[0] = q.vma_flags & DRV_PMQ_READ ? 'r' : '-';
            e->perms[1] = q.vma_flags & DRV_PMQ_WRITE ? 'w' : '-';
            e->perms[2] = q.vma_flags & DRV_PMQ_EXEC ? 'x' : '-';
            e->perms[3] = q.vma_flags & DRV_PMQ_SHARED ? 's' : 'p';
            e->perms[4] = '\0';
        }
        at = q.vma_end;
    }
    return 0;
}

/* The VMAs of the arena and of every model region (guards included), sorted; 0, or -1. */
static int read_vmas(void)
{
    if (maps_fd < 0 && (maps_fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    D.nmaps = 0;
    if (query_vmas(D.arena, D.arena + ARENA_PAGES * D.P))
        return -1;
    for (int i = 0; i < M_MAX_REGIONS; i++) {
        const m_region *r = &D.m.reg[i];
        if (r->used && (r->base < D.arena || r->base >= D.arena + ARENA_PAGES * D.P) &&
            query_vmas(r->base - D.P, r->base + (r->npages + 1) * D.P))
            return -1;
    }
    for (int i = 1; i < D.nmaps; i++) /* insertion sort: a few dozen entries, and no allocator */
        for (int j = i; j > 0 && D.maps[j - 1].lo > D.maps[j].lo; j--) {
            maps_ent t = D.maps[j];
            D.maps[j] = D.maps[j - 1];
            D.maps[j - 1] = t;
        }
    return 0;
}

static void kernel_view(void)
{
    if (procmap_query_ok && read_vmas() == 0)
        return;
    procmap_query_ok = 0;
    read_maps();
}

/* Permissions of the mapping containing a, or NULL when nothing is mapped there. */
static const char *maps_perms(uintptr_t a)
{
    int lo = 0, hi = D.nmaps - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (a < D.maps[mid].lo)
            hi = mid - 1;
        else if (a >= D.maps[mid].hi)
            lo = mid + 1;
        else
            return D.maps[mid].perms;
    }
    return NULL;
}

static void prot_str(uint32_t prot, char out[5], char kind)
{
    out[0] = prot & VMM_FLAG_READ ? 'r' : '-';
    out[1] = prot & VMM_FLAG_WRITE ? 'w' : '-';
    out[2] = prot & VMM_FLAG_EXECUTE ? 'x' : '-';
    out[3] = kind;
    out[4] = '\0';
}

/* ---- checks ----------------------------------------------------------------------------------- */

static int readable(const m_page *p)
{
    return p->state != M_RESERVED && (p->prot & VMM_FLAG_READ);
}

static int writable(const m_page *p)
{
    return p->state != M_RESERVED && (p->prot & VMM_FLAG_WRITE);
}

static const char *state_name(uint8_t s)
{
    static const char *const n[] = {"reserved", "lazy", "full", "mdl"};
    return s < 4 ? n[s] : "?";
}

static void check_free_page(uintptr_t a)
{
    VmQueryInfo q;
    memset(&q, 0xA5, sizeof q);
    Retcode rc = KnVmQuery((void *)(a + (D.step % D.P)), &q);
    EXPECT(rc == rcOk, "KnVmQuery(%#lx) of a free page returned %s", (unsigned long)a, rcn(rc));
    EXPECT(q.state == VMM_PAGE_STATE_FREE && q.pageBase == (void *)a && q.runSize == D.P && q.regionBase == NULL &&
               q.regionSize == 0 && q.protection == 0 && q.attributes == 0 && q.regionFlags == 0 && q.cache == 0,
           "KnVmQuery(%#lx): model says free, library says state %u prot %u attr %#x region %p/%zu flags %#x", (unsigned long)a,
           q.state, q.protection, q.attributes, q.regionBase, (size_t)q.regionSize, q.regionFlags);
    const char *k = maps_perms(a);
    EXPECT(k == NULL, "page %#lx is free in the model but the kernel maps it %s", (unsigned long)a, k ? k : "");
}

static void check_guard(const m_region *r, uintptr_t g)
{
    VmQueryInfo q;
    memset(&q, 0xA5, sizeof q);
    EXPECT(KnVmQuery((void *)(g + 7), &q) == rcOk, "KnVmQuery of a guard page failed");
    uint32_t attr = VMM_PAGE_ATTR_GUARD | (r->flags & VMM_FLAG_GROW_DOWN ? VMM_PAGE_ATTR_GROW_DOWN : 0);
    EXPECT(q.state == VMM_PAGE_STATE_RESERVED && q.attributes == attr && q.protection == 0 && q.pageBase == (void *)g &&
               q.runSize == D.P && q.regionBase == (void *)r->base && q.regionSize == r->npages * D.P &&
               q.regionFlags == (uint32_t)r->flags,
           "guard page %#lx of region %#lx: state %u attr %#x prot %u run %zu region %p/%zu flags %#x (want flags %#x)",
           (unsigned long)g, (unsigned long)r->base, q.state, q.attributes, q.protection, (size_t)q.runSize, q.regionBase,
           (size_t)q.regionSize, q.regionFlags, (unsigned)r->flags);
    const char *k = maps_perms(g);
    EXPECT(k && strcmp(k, "---p") == 0, "guard page %#lx: kernel perms %s, want ---p", (unsigned long)g, k ? k : "(unmapped)");
}

static void check_contents(model *m, m_region *r, uint32_t i)
{
    const m_page *p = &r->pg[i];
    if (!readable(p))
        return;
    const uint8_t *want = m_page_data(m, p);
    const uint8_t *got = (const uint8_t *)(r->base + i * D.P);
    if (memcmp(got, want ? want : D.zero, D.P) != 0) {
        size_t off = 0;
        while (off < D.P && got[off] == (want ? want[off] : 0))
            off++;
        dfail("contents of page %#lx (region %#lx page %u, %s prot %u) differ at byte %zu: %#x, model %#x",
             (unsigned long)(r->base + i * D.P), (unsigned long)r->base, i, state_name(p->state), p->prot, off, got[off],
             want ? want[off] : 0);
    }
}

/* Any access to a region may let the lazy engine fill pages around it (its window and
 * read-ahead), so the model stops predicting residency for the region's lazy pages. */
static void forget_residency(m_region *r)
{
    for (uint32_t i = 0; i < r->npages; i++)
        if (r->pg[i].state == M_LAZY)
            r->pg[i].nonres = 0;
}

static void check_region(model *m, m_region *r, int full, uint64_t *pinned)
{
    VmQueryInfo q[M_MAX_PAGES];
    for (uint32_t i = 0; i < r->npages; i++) {
        memset(&q[i], 0xA5, sizeof q[i]);
        uintptr_t va = r->base + i * D.P + (D.step * 8 + i) % D.P;
        EXPECT(KnVmQuery((void *)va, &q[i]) == rcOk, "KnVmQuery(%#lx) failed", (unsigned long)va);
    }
    unsigned char vec[M_MAX_PAGES];
    int mc = mincore((void *)r->base, r->npages * D.P, vec);
    EXPECT(mc == 0, "mincore of region %#lx (%u pages) failed: not mapped", (unsigned long)r->base, r->npages);
    for (uint32_t i = 0; i < r->npages; i++) {
        const m_page *p = &r->pg[i];
        uintptr_t a = r->base + i * D.P;
        uint32_t pin = q[i].attributes & VMM_PAGE_ATTR_PINNED;
        uint32_t attr = (r->flags & VMM_FLAG_GROW_DOWN ? VMM_PAGE_ATTR_GROW_DOWN : 0) |
                        (p->state == M_LAZY ? VMM_PAGE_ATTR_LAZY : 0) | (p->state == M_FULL ? VMM_PAGE_ATTR_LOCKED : 0) |
                        (p->state == M_MDL ? VMM_PAGE_ATTR_MDL : 0);
        /* Pinning depends on the process's rights and RLIMIT_MEMLOCK: only fully committed pages may be. */
        EXPECT(!pin || p->state == M_FULL, "page %#lx is PINNED but %s", (unsigned long)a, state_name(p->state));
        *pinned += pin ? D.P : 0;
        uint32_t j = i + 1;
        while (j < r->npages && r->pg[j].state == p->state && r->pg[j].prot == p->prot &&
               (q[j].attributes & VMM_PAGE_ATTR_PINNED) == pin)
            j++;
        uint32_t st = p->state == M_RESERVED ? VMM_PAGE_STATE_RESERVED : VMM_PAGE_STATE_COMMITTED;
        EXPECT(q[i].pageBase == (void *)a && q[i].state == st && q[i].protection == p->prot &&
                   (q[i].attributes & ~VMM_PAGE_ATTR_PINNED) == attr && q[i].regionBase == (void *)r->base &&
                   q[i].regionSize == r->npages * D.P && q[i].regionFlags == (uint32_t)r->flags &&
                   q[i].cache == (uint32_t)(r->flags & VMM_FLAG_CACHE_MASK),
               "KnVmQuery(page %u of region %#lx): library state %u prot %u attr %#x region %p/%zu flags %#x cache %#x; "
               "model %s (state %u) prot %u attr %#x region %u pages flags %#x",
               i, (unsigned long)r->base, q[i].state, q[i].protection, q[i].attributes, q[i].regionBase,
               (size_t)q[i].regionSize, q[i].regionFlags, q[i].cache, state_name(p->state), st, p->prot, attr, r->npages,
               (unsigned)r->flags);
        EXPECT(q[i].runSize == (j - i) * D.P, "KnVmQuery(page %u of region %#lx, %s prot %u): runSize %zu, model %zu",
               i, (unsigned long)r->base, state_name(p->state), p->prot, (size_t)q[i].runSize, (size_t)((j - i) * D.P));
        char want[5];
        prot_str(p->state == M_RESERVED ? 0 : p->prot, want, p->state == M_MDL ? 's' : 'p');
        const char *k = maps_perms(a);
        EXPECT(k && strcmp(k, want) == 0, "page %u of region %#lx (%s prot %u): kernel perms %s, model %s", i,
               (unsigned long)r->base, state_name(p->state), p->prot, k ? k : "(unmapped)", want);
        if (p->state == M_FULL)
            EXPECT(vec[i] & 1, "page %u of region %#lx is fully committed but not resident", i, (unsigned long)r->base);
        if (p->state == M_RESERVED || p->nonres)
            EXPECT(!(vec[i] & 1), "page %u of region %#lx (%s) is resident; the model says its memory was freed", i,
                   (unsigned long)r->base, state_name(p->state));
    }
    if (r->flags & VMM_FLAG_LOW_GUARD)
        check_guard(r, m_low_guard(m, r));
    if (r->flags & VMM_FLAG_HIGH_GUARD)
        check_guard(r, m_high_guard(m, r));
    if (full) {
        int any = 0;
        for (uint32_t i = 0; i < r->npages; i++) {
            any |= readable(&r->pg[i]);
            check_contents(m, r, i);
        }
        if (any)
            forget_residency(r);
    }
}

static void check_handles(model *m)
{
    for (int i = 0; i < M_MAX_HANDLES; i++) {
        m_handle *h = &m->hd[i];
        if (!h->used)
            continue;
        rtl_size_t sz = 12345;
        Retcode rc = KnPmmMdlGetSize(h->h, &sz);
        Retcode want = m_handle_revoked(m, h) ? rcHandleRevoked : rcOk;
        EXPECT(rc == want, "KnPmmMdlGetSize(live handle %#x) returned %s, model %s", h->h, rcn(rc), rcn(want));
        EXPECT(rc != rcOk || sz == h->len * D.P, "KnPmmMdlGetSize(%#x) = %zu, model %zu", h->h, (size_t)sz,
               (size_t)(h->len * D.P));
        EXPECT(rc == rcOk || sz == 12345, "KnPmmMdlGetSize(%#x) failed but wrote its output", h->h);
    }
}

/* Compares everything the model predicts: every model region page (KnVmQuery, kernel perms,
 * residency), guard pages, free arena pages, statistics; contents of the pages the operation
 * addressed plus a few more, or of every readable page when full. */
static void check_all(int full)
{
    model *m = &D.m;
    D.c.checks++;
    kernel_view();
    uint64_t pinned = 0;
    for (int i = 0; i < M_MAX_REGIONS; i++)
        if (m->reg[i].used)
            check_region(m, &m->reg[i], full, &pinned);
    /* Free arena pages: all of them in a full check, else those around what the operation
     * addressed (where an unmap or a failed allocation could have left something behind). */
    uint32_t flo = 0, fhi = ARENA_PAGES;
    if (!full) {
        flo = D.span_lo > D.arena + 2 * D.P ? (uint32_t)((D.span_lo - D.arena) / D.P) - 2 : 0;
        fhi = D.span_hi > D.arena ? (uint32_t)((D.span_hi - D.arena + D.P - 1) / D.P) + 2 : 0;
        if (D.span_hi <= D.span_lo || D.span_lo >= D.arena + ARENA_PAGES * D.P)
            flo = fhi = 0;
        if (fhi > ARENA_PAGES)
            fhi = ARENA_PAGES;
    }
    for (uint32_t i = flo; i < fhi; i++) {
        uintptr_t a = D.arena + i * D.P;
        if (!m_find(m, a, NULL) && !m_find_guard(m, a))
            check_free_page(a);
    }
    if (!full) {
        for (int t = 0; t < D.ntouched; t++) {
            uint32_t idx;
            m_region *r = m_find(m, D.touched[t], &idx);
            if (r && readable(&r->pg[idx])) {
                check_contents(m, r, idx);
                forget_residency(r);
            }
        }
        /* Two more pages, chosen by the step number so the choice costs no input bytes. */
        for (int k = 0; k < 2; k++) {
            int ri = (int)((D.step * 7 + (uint64_t)k * 13) % M_MAX_REGIONS);
            m_region *r = &m->reg[ri];
            if (r->used) {
                uint32_t idx = (uint32_t)((D.step * 31 + (uint64_t)k) % r->npages);
                if (readable(&r->pg[idx])) {
                    check_contents(m, r, idx);
                    forget_residency(r);
                }
            }
        }
    } else {
        check_handles(m);
    }
    kosvmm_stats st = {.size = sizeof(kosvmm_stats)};
    EXPECT(kosvmm_get_stats(&st) == rcOk, "kosvmm_get_stats failed");
    m_totals t;
    m_totals_of(m, &t);
    EXPECT(st.regions - D.base.regions == t.regions && st.reserved_bytes - D.base.reserved_bytes == t.reserved &&
               st.committed_bytes - D.base.committed_bytes == t.committed && st.lazy_bytes - D.base.lazy_bytes == t.lazy &&
               st.locked_bytes - D.base.locked_bytes == t.locked && st.pinned_bytes - D.base.pinned_bytes == pinned,
           "statistics (since the run began) regions %llu reserved %llu committed %llu lazy %llu locked %llu pinned %llu; "
           "model regions %llu reserved %llu committed %llu lazy %llu locked %llu, pinned pages %llu bytes",
           (unsigned long long)(st.regions - D.base.regions), (unsigned long long)(st.reserved_bytes - D.base.reserved_bytes),
           (unsigned long long)(st.committed_bytes - D.base.committed_bytes),
           (unsigned long long)(st.lazy_bytes - D.base.lazy_bytes), (unsigned long long)(st.locked_bytes - D.base.locked_bytes),
           (unsigned long long)(st.pinned_bytes - D.base.pinned_bytes), (unsigned long long)t.regions,
           (unsigned long long)t.reserved, (unsigned long long)t.committed, (unsigned long long)t.lazy,
           (unsigned long long)t.locked, (unsigned long long)pinned);
}

/* ---- argument pickers ------------------------------------------------------------------------- */

static m_region *pick_region(src *s)
{
    model *m = &D.m;
    int n = M_MAX_REGIONS - m_free_region_slots(m);
    if (n == 0)
        return NULL;
    int k = (int)rnd(s, (uint32_t)n);
    for (int i = 0; i < M_MAX_REGIONS; i++)
        if (m->reg[i].used && k-- == 0)
            return &m->reg[i];
    return NULL;
}

/* An address and size for the range calls: mostly a part of a region (overlapping its end now
 * and then), else guard pages, free arena pages, unaligned values, zero, overflowing sizes. */
static void pick_range(src *s, uintptr_t *a, size_t *sz)
{
    m_region *r = pick_region(s);
    uint32_t k = rnd(s, 32);
    size_t P = D.P;
    if (r && k < 24) {
        uint32_t st = rnd(s, r->npages), len = 1 + rnd(s, r->npages - st);
        if (k < 6)
            st = 0, len = r->npages; /* the whole region */
        if (k == 23)
            len += 1 + rnd(s, 4); /* past the end */
        *a = r->base + st * P;
        *sz = len * P;
        if (k == 22 && r->npages > 1) /* ends exactly at the region end: the high-edge case */
            *a = r->base + (r->npages - len + (len == r->npages)) * P, *sz = (r->npages - (*a - r->base) / P) * P;
        return;
    }
    switch (k % 8) {
    case 0: /* a guard page or the page just below a region */
        if (r) {
            *a = (r->flags & VMM_FLAG_HIGH_GUARD) && rnd(s, 2) ? m_high_guard(&D.m, r) : r->base - P;
            *sz = (1 + rnd(s, 3)) * P;
            return;
        }
        /* fall through */
    case 1:
    case 2: /* somewhere in the arena, free or not */
        *a = D.arena + rnd(s, ARENA_PAGES) * P;
        *sz = (1 + rnd(s, 8)) * P;
        return;
    case 3: /* unaligned address */
        *a = (r ? r->base : D.arena) + 1 + rnd(s, (uint32_t)P - 1);
        *sz = P;
        return;
    case 4: /* unaligned size */
        *a = r ? r->base : D.arena;
        *sz = rnd(s, 2) ? 1 + rnd(s, (uint32_t)P - 1) : P + 1 + rnd(s, (uint32_t)P - 1);
        return;
    case 5: /* size 0 */
        *a = r ? r->base : D.arena;
        *sz = 0;
        return;
    case 6: /* overflowing or huge */
        *a = r ? r->base : D.arena;
        *sz = rnd(s, 2) ? SIZE_MAX & ~(P - 1) : (size_t)1 << 40;
        return;
    default: /* NULL and the top page */
        *a = rnd(s, 2) ? 0 : UINTPTR_MAX - (P - 1);
        *sz = P;
        return;
    }
}

/* The range checks every range call shares, in the header's order. */
static Retcode expect_range(uintptr_t a, size_t sz, m_region **rr, uint32_t *lo, uint32_t *hi)
{
    uintptr_t end;
    *rr = NULL;
    if (sz == 0 || a % D.P || sz % D.P || __builtin_add_overflow(a, sz, &end))
        return rcInvalidArgument;
    m_region *r = m_find(&D.m, a, lo);
    if (!r)
        return rcResourceNotFound;
    if (end > r->base + r->npages * D.P)
        return rcInvalidArgument;
    *rr = r;
    *hi = *lo + (uint32_t)(sz / D.P);
    return rcOk;
}

static int has_mdl(const m_region *r, uint32_t lo, uint32_t hi)
{
    for (uint32_t i = lo; i < hi; i++)
        if (r->pg[i].state == M_MDL)
            return 1;
    return 0;
}

static int prot_valid(int prot)
{
    return (prot & ~RWX) == 0 && (prot == 0 || (prot & VMM_FLAG_READ));
}

static int mdl_prot_valid(int prot)
{
    return (prot & ~RWX) == 0 && (prot & VMM_FLAG_READ);
}

static int pick_prot(src *s)
{
    static const int valid[] = {0, VMM_FLAG_READ, VMM_FLAG_READ | VMM_FLAG_WRITE, VMM_FLAG_READ | VMM_FLAG_EXECUTE, RWX};
    static const int invalid[] = {VMM_FLAG_WRITE, VMM_FLAG_EXECUTE, VMM_FLAG_WRITE | VMM_FLAG_EXECUTE,
                                  VMM_FLAG_READ | VMM_FLAG_RESERVE, 0x8, (int)0x80000000u};
    uint32_t k = rnd(s, 16);
    if (k < 15)
        return valid[k % 5];
    return invalid[rnd(s, 6)];
}

static int pick_mdl_prot(src *s, uint32_t rights)
{
    static const int valid[] = {VMM_FLAG_READ, VMM_FLAG_READ | VMM_FLAG_WRITE, VMM_FLAG_READ | VMM_FLAG_EXECUTE, RWX};
    uint32_t k = rnd(s, 16);
    if (k < 8 && rights) {
        /* Within the rights, as a user normally asks. */
        int p = valid[rnd(s, 4)] & (int)rights;
        return p & VMM_FLAG_READ ? p : VMM_FLAG_READ;
    }
    if (k < 15)
        return valid[k % 4];
    return k == 15 && rnd(s, 2) ? 0 : VMM_FLAG_WRITE;
}

/* A handle value: mostly a live one, else closed, forged or INVALID_HANDLE. */
static Handle pick_handle(src *s, m_handle **mh)
{
    model *m = &D.m;
    *mh = NULL;
    uint32_t k = rnd(s, 16);
    int live = m_live_handles(m);
    if (k < 12 && live) {
        int n = (int)rnd(s, (uint32_t)live);
        for (int i = 0; i < M_MAX_HANDLES; i++)
            if (m->hd[i].used && n-- == 0) {
                *mh = &m->hd[i];
                return m->hd[i].h;
            }
    }
    if (k < 14 && m->nstale) {
        Handle h = m->stale[rnd(s, m->nstale)];
        if (!m_handle_of(m, h))
            return h;
    }
    if (k == 15)
        return INVALID_HANDLE;
    for (;;) {
        Handle h = (Handle)(next_byte(s) << 24 | next_byte(s) << 16 | next_byte(s) << 8 | next_byte(s));
        if (!m_handle_of(m, h))
            return h;
    }
}

/* The handle checks every MDL call does after its own argument checks. */
static Retcode expect_handle(const m_handle *mh)
{
    if (!mh)
        return rcInvalidArgument;
    return m_handle_revoked(&D.m, mh) ? rcHandleRevoked : rcOk;
}

static void fill_scratch(src *s, size_t len)
{
    uint64_t st = (uint64_t)rnd(s, 0xFFFFFFFFu) << 1 | 1;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = xs(&st);
        memcpy(D.scratch + i, &v, len - i < 8 ? len - i : 8);
    }
}

/* A fixed address in the arena for n pages, with room for a guard below and above. */
static uintptr_t arena_spot(src *s, uint32_t n)
{
    uint32_t room = ARENA_PAGES - 2 - n;
    return D.arena + (1 + rnd(s, room + 1)) * D.P;
}

/* ---- operations ------------------------------------------------------------------------------- */

static void op_allocate(src *s)
{
    model *m = &D.m;
    size_t P = D.P;
    uint32_t n = 1 + rnd(s, M_MAX_PAGES);
    if (rnd(s, 2))
        n = 1 + rnd(s, 8); /* small regions fit the arena more often */
    uint32_t k = rnd(s, 16);
    uintptr_t addr = k == 0 ? 0 : arena_spot(s, n);
    size_t size = n * P;
    int flags = VMM_FLAG_RESERVE | (pick_prot(s) & RWX);
    uint32_t f = rnd(s, 256);
    flags |= f & 1 ? VMM_FLAG_COMMIT : 0;
    flags |= f & 2 ? VMM_FLAG_LOCKED : 0;
    flags |= f & 4 ? VMM_FLAG_LOW_GUARD : 0;
    flags |= f & 8 ? VMM_FLAG_HIGH_GUARD : 0;
    flags |= f & 16 ? VMM_FLAG_GROW_DOWN : 0;
    if (f & 32)
        flags |= VMM_FLAG_WRITE_BACK << ((f >> 6) & 3);
    uint32_t bad = rnd(s, 24);
    switch (bad) {
    case 0: flags &= ~VMM_FLAG_RESERVE; break;
    case 1: flags = (flags & ~RWX) | VMM_FLAG_WRITE; break;
    case 2: flags |= VMM_FLAG_WRITE_THROUGH | VMM_FLAG_CACHE_DISABLE; break;
    case 3: flags |= 0x00100000; break;
    case 4: size = 0; break;
    case 5: size += 1 + rnd(s, (uint32_t)P - 1); break;
    case 6: if (addr) addr += 1 + rnd(s, (uint32_t)P - 1); break;
    case 7: size = SIZE_MAX & ~(P - 1); break; /* once wrapped the aligned LOCKED path: see test_model.c */
    default: break;
    }
    if (!m_free_region_slots(m))
        return;
    /* The model's expectation, in the header's order. */
    Retcode want = rcOk;
    int prot = flags & RWX, cache = flags & VMM_FLAG_CACHE_MASK;
    size_t low = flags & VMM_FLAG_LOW_GUARD ? P : 0, high = flags & VMM_FLAG_HIGH_GUARD ? P : 0;
    uintptr_t end, total;
    if ((flags & ~KNOWN_FLAGS) || !(flags & VMM_FLAG_RESERVE) || !prot_valid(prot) || (cache & (cache - 1)) ||
        size == 0 || size % P || addr % P || __builtin_add_overflow(size, low + high, &total) ||
        __builtin_add_overflow(addr, total - low, &end))
        want = rcInvalidArgument; /* guards included, as the header says */
    else if (addr && m_overlaps(m, addr - low, addr + size + high))
        want = rcAlreadyExists;
    else if (size >= (size_t)1 << 47)
        want = rcOutOfMemory; /* more than user space: the kernel refuses */
    span(addr, size);
    oplog("KnVmAllocate(%#lx, %zu pages%s, %#x) want %s", (unsigned long)addr, size / P, size % P ? "+" : "", flags,
          rcn(want));
    void *got = KnVmAllocate((void *)addr, size, flags);
    Retcode rc = kosvmm_last_error();
    expect_rc("KnVmAllocate", rc, want, want);
    EXPECT((rc == rcOk) == (got != NULL), "KnVmAllocate returned %p with last error %s", got, rcn(rc));
    if (rc != rcOk)
        return;
    EXPECT(!addr || got == (void *)addr, "KnVmAllocate(%#lx) returned %p: fixed address not honoured",
           (unsigned long)addr, got);
    EXPECT(!m_overlaps(m, (uintptr_t)got - low, (uintptr_t)got + size + high),
           "KnVmAllocate(%#lx) placed a region at %p over another one", (unsigned long)addr, got);
    m_region *r = m_new_region(m);
    r->base = (uintptr_t)got;
    r->npages = n;
    r->flags = flags;
    for (uint32_t i = 0; i < n; i++) {
        m_page *p = &r->pg[i];
        p->prot = (uint8_t)prot;
        p->buf = -1;
        p->state = !(flags & VMM_FLAG_COMMIT) ? M_RESERVED : flags & VMM_FLAG_LOCKED ? M_FULL : M_LAZY;
        p->nonres = p->state != M_FULL;
    }
    touch(r->base);
}

enum range_op { R_COMMIT, R_DECOMMIT, R_RESET, R_PROTECT, R_UNMAP };

/* KnVmFree(a): the whole region whose first usable byte is a. */
static void op_free(uintptr_t a)
{
    model *m = &D.m;
    uint32_t idx = 0;
    m_region *r = a && a % D.P == 0 ? m_find(m, a, &idx) : NULL;
    Retcode want = !a || a % D.P ? rcInvalidArgument : !r ? rcResourceNotFound : idx ? rcInvalidArgument : rcOk;
    oplog("KnVmFree(%#lx) want %s [region %#lx]", (unsigned long)a, rcn(want), r ? (unsigned long)r->base : 0ul);
    if (r)
        span(r->base, r->npages * D.P);
    Retcode rc = KnVmFree((void *)a);
    expect_rc("KnVmFree", rc, want, want);
    if (rc == rcOk)
        m_unmap(m, r, 0, r->npages);
}

static void op_range(src *s, enum range_op op)
{
    static const char *const names[] = {"KnVmCommit", "KnVmDecommit", "KnVmReset", "KnVmProtect", "KnVmUnmap"};
    model *m = &D.m;
    uintptr_t a;
    size_t sz;
    pick_range(s, &a, &sz);
    if (op == R_UNMAP && rnd(s, 4) == 0) {
        op_free(a);
        return;
    }
    int prot = op == R_PROTECT ? pick_prot(s) : VMM_FLAG_LOCKED;
    m_region *r;
    uint32_t lo = 0, hi = 0;
    Retcode want = expect_range(a, sz, &r, &lo, &hi), alt = want;
    if (want == rcOk && op != R_UNMAP && has_mdl(r, lo, hi))
        want = alt = rcInvalidOperation;
    if (op == R_PROTECT && !prot_valid(prot)) {
        /* The header lists the protection check apart from the range order: either is right
         * when both the protection and the range are bad. */
        alt = want == rcOk ? rcInvalidArgument : want;
        want = rcInvalidArgument;
    }
    if (want == rcOk && op == R_UNMAP && lo > 0 && hi < r->npages && !m_free_region_slots(m))
        return; /* the model has no slot for the piece a split leaves */
    span(a, sz);
    oplog("%s(%#lx, %zu%s, %#x) want %s [region %#lx pages %u..%u]", names[op], (unsigned long)a, sz / D.P,
          sz % D.P ? "+" : " pages", prot, rcn(want), r ? (unsigned long)r->base : 0ul, lo, hi);
    Retcode rc;
    switch (op) {
    case R_COMMIT: rc = KnVmCommit((void *)a, sz, prot); break;
    case R_DECOMMIT: rc = KnVmDecommit((void *)a, sz); break;
    case R_RESET: rc = KnVmReset((void *)a, sz); break;
    case R_PROTECT: rc = KnVmProtect((void *)a, sz, prot); break;
    default: rc = KnVmUnmap((void *)a, sz); break;
    }
    expect_rc(names[op], rc, want, alt);
    if (rc != rcOk)
        return;
    touch(a);
    touch(a + sz - D.P);
    if (op == R_UNMAP) {
        m_unmap(m, r, lo, hi);
        return;
    }
    for (uint32_t i = lo; i < hi; i++) {
        m_page *p = &r->pg[i];
        switch (op) {
        case R_COMMIT:
            if (r->flags & VMM_FLAG_LOCKED) {
                p->state = M_FULL; /* contents stay */
                p->nonres = 0;
            } else if (p->state == M_RESERVED) {
                p->state = M_LAZY;
                p->nonres = 1;
            }
            break;
        case R_DECOMMIT:
            m_page_clear(m, p);
            p->state = M_RESERVED;
            p->nonres = 1;
            break;
        case R_RESET:
            m_page_clear(m, p);
            p->state = M_LAZY;
            p->nonres = 1;
            break;
        default:
            p->prot = (uint8_t)prot;
            break;
        }
    }
}

static void op_write(src *s)
{
    m_region *r = pick_region(s);
    if (!r)
        return;
    uint32_t i = rnd(s, r->npages);
    m_page *p = &r->pg[i];
    if (!writable(p))
        return;
    size_t off, len;
    if (rnd(s, 4) == 0)
        off = 0, len = D.P;
    else
        off = rnd(s, (uint32_t)D.P), len = 1 + rnd(s, 256);
    if (off + len > D.P)
        len = D.P - off;
    fill_scratch(s, len);
    oplog("write %zu bytes at page %u+%zu of region %#lx (%s)", len, i, off, (unsigned long)r->base, state_name(p->state));
    /* Every other step reads the page first, as read-modify-write code does: on an untouched
     * lazy page the read maps the zero page (the handler's UFFDIO_ZEROPAGE, or the kernel's) and
     * the write is then a copy-on-write fault. Chosen by the step number: no input bytes. */
    if (D.step % 2 == 0 && readable(p)) {
        const uint8_t *want = m_page_data(&D.m, p);
        uint8_t got = *(const volatile uint8_t *)(r->base + i * D.P + off);
        EXPECT(got == (want ? want[off] : 0), "read before write of page %u+%zu of region %#lx (%s): %#x, model %#x",
               i, off, (unsigned long)r->base, state_name(p->state), got, want ? want[off] : 0);
    }
    uint8_t *shadow = m_page_data_for_write(&D.m, p);
    memcpy(shadow + off, D.scratch, len);
    memcpy((void *)(r->base + i * D.P + off), D.scratch, len);
    forget_residency(r);
    touch(r->base + i * D.P);
}

/* Registers a handle the library returned for buffer b, window [off, off + len) pages. */
static m_handle *adopt_handle(Handle h, int b, uint32_t off, uint32_t len, uint32_t rights, const m_handle *origin)
{
    model *m = &D.m;
    EXPECT(h != POISON_HANDLE && h != INVALID_HANDLE && !m_handle_of(m, h), "new handle %#x is invalid or already live", h);
    m_handle *mh = m_new_handle(m);
    mh->h = h;
    mh->buf = b;
    mh->off = off;
    mh->len = len;
    mh->rights = rights;
    if (origin) {
        memcpy(mh->anc, origin->anc, origin->nanc * sizeof mh->anc[0]);
        mh->anc[origin->nanc] = origin->own;
        mh->nanc = origin->nanc + 1;
    }
    return mh;
}

static int room_for_handle(void)
{
    return m_live_handles(&D.m) < M_MAX_HANDLES && D.m.nwords < M_MAX_WORDS;
}

static void op_mdl_create(src *s, int from_buf)
{
    model *m = &D.m;
    if (!room_for_handle())
        return;
    size_t P = D.P;
    uint32_t n = 1 + rnd(s, 16);
    size_t size = n * P;
    uint32_t k = rnd(s, 16);
    if (k == 0)
        size = 0;
    else if (k < 4)
        size -= rnd(s, (uint32_t)P); /* rounded up to n pages */
    int prot = pick_mdl_prot(s, 0);
    if (rnd(s, 12) == 0)
        prot = rnd(s, 2) ? 0 : VMM_FLAG_READ | 0x10;
    int null_handle = rnd(s, 24) == 0;
    size_t bsz = 0;
    int null_buf = 0;
    if (from_buf) {
        bsz = (size_t)rnd(s, (uint32_t)(n * P + 1));
        uint32_t b = rnd(s, 16);
        if (b == 0)
            bsz = size + 1 + rnd(s, 8);
        else if (b == 1)
            null_buf = 1;
        else if (b == 2)
            null_buf = 1, bsz = 0;
        if (bsz > n * P + 8)
            bsz = n * P + 8;
        fill_scratch(s, bsz > M_MAX_BUF_PAGES * P ? M_MAX_BUF_PAGES * P : bsz);
    }
    Retcode want = rcOk;
    if (null_handle || size == 0 || !mdl_prot_valid(prot) || (from_buf && (bsz > size || (null_buf && bsz))))
        want = rcInvalidArgument;
    Handle h = POISON_HANDLE;
    Retcode rc;
    if (from_buf) {
        oplog("KnPmmMdlCreateFromBuf(%zu, %#x, %s, %zu) want %s", size, prot, null_buf ? "NULL" : "buf", bsz, rcn(want));
        rc = KnPmmMdlCreateFromBuf(size, prot, null_buf ? NULL : D.scratch, bsz, null_handle ? NULL : &h);
    } else {
        oplog("KnPmmMdlCreate(%zu, %#x) want %s", size, prot, rcn(want));
        rc = KnPmmMdlCreate(size, prot, null_handle ? NULL : &h);
    }
    expect_rc(from_buf ? "KnPmmMdlCreateFromBuf" : "KnPmmMdlCreate", rc, want, want);
    if (rc != rcOk) {
        EXPECT(h == POISON_HANDLE, "failed MDL create wrote its handle");
        return;
    }
    int b = m_new_buf(m, n);
    EXPECT(b >= 0, "model out of buffers"); /* bounded by live handles + mapped buffers */
    for (size_t off = 0; off < bsz; off += P) {
        size_t len = bsz - off < P ? bsz - off : P;
        uint8_t *d = calloc(1, P);
        if (!d)
            abort();
        memcpy(d, D.scratch + off, len);
        m->buf[b].data[off / P] = d;
    }
    adopt_handle(h, b, 0, n, (uint32_t)prot | KOSVMM_RIGHT_TRANSFER, NULL);
}

/* A window [*offb, *offb + *lenb) of mh (of a made-up handle without one), spoiled in 5 draws of
 * `odds`: unaligned offset, zero length, one page or one byte too long, offset at the end, offset
 * that overflows. Returns the window's length in pages before spoiling. */
static uint32_t pick_window(src *s, const m_handle *mh, uint32_t odds, size_t *offb, size_t *lenb)
{
    size_t P = D.P;
    uint32_t wl = mh ? mh->len : 1 + rnd(s, 8);
    uint32_t off = rnd(s, wl), len = 1 + rnd(s, wl - off);
    *offb = off * P;
    *lenb = len * P;
    uint32_t k = rnd(s, odds);
    if (k == 0)
        *offb += 1 + rnd(s, (uint32_t)P - 1);
    else if (k == 1)
        *lenb = 0;
    else if (k == 2)
        *lenb += rnd(s, 2) ? P : 1;
    else if (k == 3)
        *offb = wl * P;
    else if (k == 4)
        *offb = SIZE_MAX & ~(P - 1);
    return len;
}

static void op_mdl_map(src *s)
{
    model *m = &D.m;
    m_handle *mh;
    Handle h = pick_handle(s, &mh);
    size_t P = D.P, offb, lenb;
    uint32_t len = pick_window(s, mh, 32, &offb, &lenb);
    uint32_t hk = rnd(s, 16);
    uintptr_t hint = hk < 2 ? 0 : arena_spot(s, len > M_MAX_PAGES ? M_MAX_PAGES : len);
    if (hk == 2)
        hint += 1 + rnd(s, (uint32_t)P - 1);
    else if (hk == 3)
        hint = UINTPTR_MAX & ~(P - 1); /* hint + length overflows */
    int prot = pick_mdl_prot(s, mh ? mh->rights & RWX : 0);
    int null_addr = rnd(s, 32) == 0;
    if (lenb > M_MAX_PAGES * P || !m_free_region_slots(m))
        return;
    uintptr_t hend;
    Retcode want;
    if (null_addr || !mdl_prot_valid(prot) || offb % P || lenb % P || lenb == 0 || hint % P ||
        __builtin_add_overflow(hint, lenb, &hend))
        want = rcInvalidArgument;
    else if ((want = expect_handle(mh)) != rcOk)
        ;
    else if (offb + lenb < offb || offb + lenb > mh->len * P)
        want = rcInvalidArgument;
    else if ((uint32_t)prot & ~mh->rights)
        want = rcNoCapability;
    else if (hint && m_overlaps(m, hint, hint + lenb))
        want = rcAlreadyExists;
    span(hint, lenb);
    oplog("KnPmmMdlMap(%#x, %zu, %zu, %#lx, %#x) want %s", h, offb, lenb, (unsigned long)hint, prot, rcn(want));
    void *addr = (void *)1;
    Retcode rc = KnPmmMdlMap(h, offb, lenb, (void *)hint, prot, null_addr ? NULL : &addr);
    expect_rc("KnPmmMdlMap", rc, want, want);
    if (rc != rcOk) {
        EXPECT(addr == (void *)1, "failed KnPmmMdlMap wrote its address");
        return;
    }
    EXPECT(!hint || addr == (void *)hint, "KnPmmMdlMap(hint %#lx) mapped at %p", (unsigned long)hint, addr);
    EXPECT(!m_overlaps(m, (uintptr_t)addr, (uintptr_t)addr + lenb), "KnPmmMdlMap placed a mapping over a region");
    m_region *r = m_new_region(m);
    r->base = (uintptr_t)addr;
    r->npages = (uint32_t)(lenb / P);
    r->flags = VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | prot;
    r->mdlmap = 1;
    for (uint32_t i = 0; i < r->npages; i++) {
        m_page *p = &r->pg[i];
        p->state = M_MDL;
        p->prot = (uint8_t)prot;
        p->buf = (int16_t)mh->buf;
        p->bpage = (uint16_t)(mh->off + offb / P + i);
    }
    touch(r->base);
    touch(r->base + lenb - P);
}

static void op_mdl_clone(src *s)
{
    m_handle *mh;
    Handle h = pick_handle(s, &mh);
    size_t P = D.P, offb, lenb;
    pick_window(s, mh, 24, &offb, &lenb);
    int null_out = rnd(s, 32) == 0;
    if (!room_for_handle())
        return;
    Retcode want;
    if (null_out || offb % P || lenb % P || lenb == 0)
        want = rcInvalidArgument;
    else if ((want = expect_handle(mh)) != rcOk)
        ;
    else if (offb + lenb < offb || offb + lenb > mh->len * P)
        want = rcInvalidArgument;
    else if (mh->nanc + 1 > M_MAX_DEPTH)
        want = rcQuotaExceeded;
    oplog("KnPmmMdlClone(%#x, %zu, %zu) want %s [depth %u]", h, offb, lenb, rcn(want), mh ? mh->nanc : 0);
    Handle c = POISON_HANDLE;
    Retcode rc = KnPmmMdlClone(h, offb, lenb, null_out ? NULL : &c);
    expect_rc("KnPmmMdlClone", rc, want, want);
    if (rc != rcOk) {
        EXPECT(c == POISON_HANDLE, "failed KnPmmMdlClone wrote its handle");
        return;
    }
    adopt_handle(c, mh->buf, mh->off + (uint32_t)(offb / P), (uint32_t)(lenb / P), mh->rights, mh);
}

static void op_getsize(src *s)
{
    m_handle *mh;
    Handle h = pick_handle(s, &mh);
    int null_out = rnd(s, 16) == 0;
    Retcode want = null_out ? rcInvalidArgument : expect_handle(mh);
    oplog("KnPmmMdlGetSize(%#x) want %s", h, rcn(want));
    rtl_size_t sz = 777;
    Retcode rc = KnPmmMdlGetSize(h, null_out ? NULL : &sz);
    expect_rc("KnPmmMdlGetSize", rc, want, want);
    EXPECT(rc == rcOk ? sz == mh->len * D.P : sz == 777, "KnPmmMdlGetSize output %zu (rc %s)", (size_t)sz, rcn(rc));
}

static void op_close(src *s)
{
    m_handle *mh;
    Handle h = pick_handle(s, &mh);
    Retcode want = mh ? rcOk : rcInvalidArgument;
    oplog("KnHandleClose(%#x) want %s", h, rcn(want));
    Retcode rc = KnHandleClose(h);
    expect_rc("KnHandleClose", rc, want, want);
    if (rc == rcOk)
        m_close_handle(&D.m, mh);
}

/* KnHandleRevoke, or KnHandleRevokeEx with either close value: the handle's descendants are
 * revoked (its word set); it is closed, or kept with a fresh word for later descendants. A handle
 * revoked through an origin is refused and kept. */
static void op_revoke(src *s)
{
    m_handle *mh;
    Handle h = pick_handle(s, &mh);
    int how = (int)rnd(s, 4); /* 0, 1: KnHandleRevoke; 2: Ex(rtl_false); 3: Ex(rtl_true) */
    if (how == 2 && D.m.nwords >= M_MAX_WORDS)
        how = 3; /* no word left to give the kept handle */
    Retcode want = !mh ? rcInvalidArgument : m_handle_revoked(&D.m, mh) ? rcHandleRevoked : rcOk;
    oplog("%s(%#x) want %s", how == 2 ? "KnHandleRevokeEx(false)" : how == 3 ? "KnHandleRevokeEx(true)"
                                                                             : "KnHandleRevoke", h, rcn(want));
    Retcode rc = how < 2 ? KnHandleRevoke(h) : KnHandleRevokeEx(h, how == 3 ? rtl_true : rtl_false);
    expect_rc("KnHandleRevoke", rc, want, want);
    if (rc != rcOk)
        return;
    D.m.word[mh->own] = 1;
    if (how == 2)
        mh->own = D.m.nwords++;
    else
        m_close_handle(&D.m, mh);
}

/* KnPmmMdlCreateFromVm, or KnVmSegInitFromVm on top of it (seg). */
static void op_from_vm(src *s, int seg)
{
    model *m = &D.m;
    uintptr_t a;
    size_t sz;
    pick_range(s, &a, &sz);
    int flags = pick_mdl_prot(s, 0);
    if (rnd(s, 12) == 0)
        flags = rnd(s, 2) ? 0 : VMM_FLAG_READ | VMM_FLAG_COMMIT;
    int null_out = rnd(s, 32) == 0;
    uintptr_t load = rnd(s, 2) ? 0 : (uintptr_t)0x400000 + rnd(s, 64) * D.P;
    if (seg && rnd(s, 24) == 0)
        load += 8;
    if (!room_for_handle())
        return;
    m_region *r;
    uint32_t lo = 0, hi = 0;
    Retcode want = rcOk;
    uintptr_t e;
    if (null_out || !mdl_prot_valid(flags) || (seg && (load % D.P || __builtin_add_overflow(load, sz, &e) || !a)))
        want = rcInvalidArgument;
    if (want == rcOk && (want = expect_range(a, sz, &r, &lo, &hi)) == rcOk) {
        for (uint32_t i = lo; i < hi; i++)
            if (r->pg[i].state == M_RESERVED || r->pg[i].state == M_MDL)
                want = rcInvalidOperation;
    }
    oplog("%s(%#lx, %zu%s, %#x) want %s", seg ? "KnVmSegInitFromVm" : "KnPmmMdlCreateFromVm", (unsigned long)a,
          sz / D.P, sz % D.P ? "+" : " pages", flags, rcn(want));
    Handle h = POISON_HANDLE;
    VmSeg vs, poison;
    memset(&vs, 0xA5, sizeof vs);
    memset(&poison, 0xA5, sizeof poison);
    Retcode rc;
    if (seg)
        rc = KnVmSegInitFromVm(null_out ? NULL : &vs, (void *)load, (void *)a, sz, flags);
    else
        rc = KnPmmMdlCreateFromVm((void *)a, sz, flags, null_out ? NULL : &h);
    expect_rc(seg ? "KnVmSegInitFromVm" : "KnPmmMdlCreateFromVm", rc, want, want);
    if (rc != rcOk) {
        EXPECT(h == POISON_HANDLE && memcmp(&vs, &poison, sizeof vs) == 0, "failed call wrote its output");
        return;
    }
    if (seg) {
        EXPECT(vs.flags == (uint32_t)flags && vs.loadAddr == (void *)load && vs.size == sz && vs.offset == 0 &&
                   vs.fileOffset == 0 && vs.buildIdSize == 0,
               "KnVmSegInitFromVm: VmSeg flags %#x load %p size %zu offset %zu fileOffset %zu buildIdSize %zu", vs.flags,
               vs.loadAddr, (size_t)vs.size, (size_t)vs.offset, (size_t)vs.fileOffset, (size_t)vs.buildIdSize);
        h = vs.h;
    }
    int b = m_new_buf(m, hi - lo);
    EXPECT(b >= 0, "model out of buffers");
    for (uint32_t i = lo; i < hi; i++) {
        m_page *p = &r->pg[i];
        m->buf[b].data[i - lo] = p->data; /* the contents move into the buffer */
        p->data = NULL;
        p->state = M_MDL;
        p->buf = (int16_t)b;
        p->bpage = (uint16_t)(i - lo);
        p->nonres = 0;
    }
    forget_residency(r); /* the copy read the range */
    adopt_handle(h, b, 0, hi - lo, (uint32_t)flags | KOSVMM_RIGHT_TRANSFER, NULL);
    touch(a);
    touch(a + sz - D.P);
}

static void op_seg_from_buf(src *s)
{
    model *m = &D.m;
    size_t P = D.P;
    if (!room_for_handle())
        return;
    uint32_t n = 1 + rnd(s, 8);
    size_t size = n * P;
    size_t offset = rnd(s, (uint32_t)size + 1), bsz = rnd(s, (uint32_t)(size - offset) + 1);
    size_t bid = rnd(s, 24) ? rnd(s, 21) : VMM_SEG_BUILD_ID_MAX + rnd(s, 2);
    int flags = pick_mdl_prot(s, 0);
    uintptr_t load = rnd(s, 2) ? 0 : (uintptr_t)0x400000 + rnd(s, 64) * P;
    int null_seg = 0, null_buf = 0, null_bid = 0;
    switch (rnd(s, 32)) {
    case 0: null_seg = 1; break;
    case 1: load += 16; break;
    case 2: size += 1; break;
    case 3: size = 0; break;
    case 4: offset = size + 1; break;
    case 5: bsz = size - offset + 1; break;
    case 6: null_buf = bsz > 0; break;
    case 7: null_bid = bid > 0; break;
    case 8: flags = 0; break;
    default: break;
    }
    fill_scratch(s, size > 2 * P ? size : 2 * P);
    const uint8_t *buildid = D.scratch + size; /* any bytes; only copied */
    Retcode want = rcOk;
    uintptr_t e;
    if (null_seg || load % P || size == 0 || size % P || __builtin_add_overflow(load, size, &e) || !mdl_prot_valid(flags) ||
        offset > size || bsz > size - offset || null_buf || bid > VMM_SEG_BUILD_ID_MAX || null_bid)
        want = rcInvalidArgument;
    oplog("KnVmSegInitFromBuf(load %#lx, off %zu, size %zu, %#x, bid %zu, buf %zu) want %s", (unsigned long)load,
          offset, size, flags, bid, bsz, rcn(want));
    VmSeg vs, poison;
    memset(&vs, 0xA5, sizeof vs);
    memset(&poison, 0xA5, sizeof poison);
    Retcode rc = KnVmSegInitFromBuf(null_seg ? NULL : &vs, (void *)load, offset, size, flags, 4096 + offset,
                                    null_bid ? NULL : buildid, bid, null_buf ? NULL : D.scratch, bsz);
    expect_rc("KnVmSegInitFromBuf", rc, want, want);
    if (rc != rcOk) {
        EXPECT(memcmp(&vs, &poison, sizeof vs) == 0, "failed KnVmSegInitFromBuf wrote its VmSeg");
        return;
    }
    EXPECT(vs.flags == (uint32_t)flags && vs.loadAddr == (void *)load && vs.size == size && vs.offset == offset &&
               vs.fileOffset == 4096 + offset && vs.buildIdSize == bid && memcmp(vs.buildId, buildid, bid) == 0,
           "KnVmSegInitFromBuf: VmSeg fields differ from the arguments");
    int b = m_new_buf(m, n);
    EXPECT(b >= 0, "model out of buffers");
    for (size_t i = 0; i < bsz; i++) {
        size_t at = offset + i;
        uint8_t **d = &m->buf[b].data[at / P];
        if (!*d && !(*d = calloc(1, P)))
            abort();
        (*d)[at % P] = D.scratch[i];
    }
    adopt_handle(vs.h, b, 0, n, (uint32_t)flags | KOSVMM_RIGHT_TRANSFER, NULL);
}

static void op_query_null(void)
{
    oplog("KnVmQuery(NULL info) want rcInvalidArgument");
    expect_rc("KnVmQuery(info NULL)", KnVmQuery((void *)D.arena, NULL), rcInvalidArgument, rcInvalidArgument);
}

/* One operation. The weights favour the range calls and writes, which change page state most. */
static void step(src *s)
{
    uint32_t k = rnd(s, 100);
    D.ntouched = 0;
    D.span_lo = D.span_hi = 0;
    D.step++;
    D.c.ops++;
    if (k < 12)
        op_allocate(s);
    else if (k < 22)
        op_range(s, R_COMMIT);
    else if (k < 29)
        op_range(s, R_DECOMMIT);
    else if (k < 36)
        op_range(s, R_RESET);
    else if (k < 45)
        op_range(s, R_PROTECT);
    else if (k < 53)
        op_range(s, R_UNMAP);
    else if (k < 66)
        op_write(s);
    else if (k < 70)
        op_mdl_create(s, 0);
    else if (k < 73)
        op_mdl_create(s, 1);
    else if (k < 79)
        op_mdl_map(s);
    else if (k < 83)
        op_mdl_clone(s);
    else if (k < 85)
        op_getsize(s);
    else if (k < 88)
        op_close(s);
    else if (k < 91)
        op_revoke(s);
    else if (k < 95)
        op_from_vm(s, 0);
    else if (k < 97)
        op_from_vm(s, 1);
    else if (k < 99)
        op_seg_from_buf(s);
    else
        op_query_null();
    check_all(D.step % 16 == 0);
}

/* ---- runs ------------------------------------------------------------------------------------- */

/* Whether fd belongs to the fuzzing runtime rather than to kosvmm: the sanitizer symbolizer
 * (started when libFuzzer prints a newly covered function) keeps two pipes to llvm-symbolizer and
 * /proc/<pid>/maps open from then on. kosvmm makes no pipes and reads maps only within a call. */
static int runtime_fd(const char *target)
{
    size_t n = strlen(target);
    return strncmp(target, "pipe:", 5) == 0 ||
           (strncmp(target, "/proc/", 6) == 0 && n > 5 && strcmp(target + n - 5, "/maps") == 0);
}

static void fd_target(int fd, char *target, size_t cap)
{
    char link[32];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, target, cap - 1);
    target[len > 0 ? len : 0] = '\0';
}

/* kosvmm's descriptors open now (see runtime_fd): a bit per number below 1024 (the fuzzer never
 * comes near that). Returns how many. */
static int fd_set_now(uint64_t set[16])
{
    memset(set, 0, 16 * sizeof set[0]);
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int self = dirfd(d), n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        int fd = atoi(e->d_name);
        char target[128];
        if (e->d_name[0] == '.' || fd == self || fd >= 1024)
            continue;
        fd_target(fd, target, sizeof target);
        if (!runtime_fd(target)) {
            set[fd / 64] |= 1ull << (fd % 64);
            n++;
        }
    }
    closedir(d);
    return n;
}

/* "fd N -> target" for each descriptor open now that was not at setup, so a leak report says
 * what leaked (a memfd, a revocation page, the engine's userfaultfd, ...). */
static void describe_new_fds(char *out, size_t cap)
{
    uint64_t now[16];
    fd_set_now(now);
    size_t n = 0;
    out[0] = '\0';
    for (int fd = 0; fd < 1024 && n + 1 < cap; fd++) {
        if (!(now[fd / 64] >> (fd % 64) & 1) || (D.fd_base_set[fd / 64] >> (fd % 64) & 1))
            continue;
        char target[128];
        fd_target(fd, target, sizeof target);
        int w = snprintf(out + n, cap - n, " fd %d -> %s;", fd, target);
        n = w < 0 ? cap : n + (size_t)w;
    }
}

/* Unmaps every region and closes every handle, checking each call, then that the arena is empty
 * and the statistics are back where the run began. */
static void cleanup(void)
{
    model *m = &D.m;
    check_all(1);
    for (int i = 0; i < M_MAX_REGIONS; i++) {
        m_region *r = &m->reg[i];
        if (!r->used)
            continue;
        oplog("cleanup: KnVmUnmap(%#lx, %u pages)", (unsigned long)r->base, r->npages);
        expect_rc("KnVmUnmap (cleanup)", KnVmUnmap((void *)r->base, r->npages * D.P), rcOk, rcOk);
        m_unmap(m, r, 0, r->npages);
    }
    for (int i = 0; i < M_MAX_HANDLES; i++)
        if (m->hd[i].used) {
            oplog("cleanup: KnHandleClose(%#x)", m->hd[i].h);
            expect_rc("KnHandleClose (cleanup)", KnHandleClose(m->hd[i].h), rcOk, rcOk);
            m_close_handle(m, &m->hd[i]);
        }
    check_all(1);
}

static int run(src *s, uint64_t nops)
{
    if (!D.ready && drv_setup() != 0)
        return -1;
    m_reset(&D.m);
    D.step = 0;
    D.oplog_n = 0;
    D.s = s;
    D.c.runs++;
    if (setjmp(D.fail_jmp)) {
        m_reset(&D.m);
        return -1;
    }
    D.base.size = sizeof D.base;
    EXPECT(kosvmm_get_stats(&D.base) == rcOk, "kosvmm_get_stats failed");
    for (uint64_t i = 0; i < nops && !src_done(s); i++)
        step(s);
    cleanup();
    uint64_t now[16];
    int fds = fd_set_now(now);
    /* Revocation words live in shared pages that are kept for reuse, so one descriptor may stay. */
    if (fds > D.fd_base + 1) {
        char extra[512];
        describe_new_fds(extra, sizeof extra);
        dfail("%d descriptors open after the run, %d before the first: a handle leaked:%s", fds, D.fd_base,
              extra);
    }
    m_reset(&D.m);
    return 0;
}

int drv_setup(void)
{
    if (D.ready)
        return 0;
    D.P = (size_t)sysconf(_SC_PAGESIZE);
    D.scratch = calloc(M_MAX_BUF_PAGES + 1, D.P);
    D.zero = calloc(1, D.P);
    if (!D.scratch || !D.zero) {
        snprintf(D.failure, sizeof D.failure, "out of memory");
        return -1;
    }
    /* Start the lazy engine first: what it maps once (thread stack, buffers) must not land in the
     * arena later. */
    char *p = KnVmAllocate(NULL, D.P, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_READ | VMM_FLAG_WRITE);
    if (!p) {
        snprintf(D.failure, sizeof D.failure, "KnVmAllocate of one page failed");
        return -1;
    }
    p[0] = 1;
    KnVmUnmap(p, D.P);
    /* The arena: a window far below where the kernel puts mappings (top-down from below the
     * stack) and away from ASan's shadow and allocator, so nothing else ever lands in its free
     * pages and "free in the model" can mean "unmapped in the kernel". */
    for (uintptr_t base = (uintptr_t)0x3e0000000000ull; base < (uintptr_t)0x5e0000000000ull;
         base += (uintptr_t)0x10000000000ull) {
        void *a = KnVmAllocate((void *)base, ARENA_PAGES * D.P, VMM_FLAG_RESERVE);
        if (a) {
            KnVmUnmap(a, ARENA_PAGES * D.P);
            D.arena = base;
            break;
        }
    }
    if (!D.arena) {
        snprintf(D.failure, sizeof D.failure, "no free arena window");
        return -1;
    }
    m_init(&D.m, D.P, D.arena, ARENA_PAGES);
    D.fd_base = fd_set_now(D.fd_base_set);
    D.ready = 1;
    return 0;
}

int drv_run_bytes(const uint8_t *data, size_t size)
{
    src s = {.d = data, .n = size};
    return run(&s, UINT64_MAX);
}

int drv_run_seed(uint64_t seed, uint64_t nops)
{
    src s = {.prng = 1, .s = seed * 0x9E3779B97F4A7C15ull | 1};
    return run(&s, nops);
}

const char *drv_failure(void)
{
    return D.failure;
}

drv_counters drv_get_counters(void)
{
    return D.c;
}
