/* SPDX-License-Identifier: MIT */
/* tests/test_stress.c — many threads for a bounded time mixing every public call against a model: no lost write, no deadlock, documented Retcodes, stats and fds back to baseline. */
#include "testutil.h"

#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "handle_table.h"
#include "mdl_memfd/mdl_internal.h"

/*
 * Every worker thread owns what it checks: its private regions, a slice of one region all workers
 * share (so faults, splits and transitions of its neighbours happen right next to its pages), one
 * 64-byte cell in every page of one MDL buffer all workers map, and the MDL handles it made.
 * Because only the owner writes what it owns, the value every cell must hold is deterministic, and
 * the model can also say exactly which Retcode each call must return. The handles and messages
 * other threads send it are the only things it does not own; for those it checks what the sender
 * promised in the message (a marker), or its own cells seen through them.
 */

#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define GUARDS (VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD)
#define NT 12            /* worker threads */
#define MAXSLOTS 5       /* slot 0: the thread's slice of the shared region; 1..: private regions */
#define SLOT_PAGES 12    /* pages of a private region at most */
#define BUF_PAGES 8      /* pages of the shared MDL buffer */
#define MAXMAPS 3        /* mappings of the shared buffer a thread keeps */
#define MAXH 10          /* private MDL handles a thread keeps */
#define STALL_SECONDS 60 /* a worker without progress this long is deadlocked (an op takes ms) */

static size_t P;

enum { FREE_ = 0, RESERVED_ = 1, COMMITTED_ = 2 };

typedef struct page_m {
    uint8_t state;  /* FREE_ (unmapped by its owner), RESERVED_, COMMITTED_ */
    uint8_t prot;   /* recorded protection */
    uint8_t full;   /* committed fully (LOCKED region, not reset since its last commit) */
    uint8_t mdl;    /* MDL-backed since a KnPmmMdlCreateFromVm / KnVmSegInitFromVm */
    uint8_t lost;   /* unmapped and not re-allocatable (something else took the addresses) */
    uint32_t rid;   /* which allocation the page belongs to; 0: the shared region (bounds unknown) */
    int rflags;     /* that allocation's flags */
    uint64_t val;   /* what the page's first and last word hold while committed */
} page_m;

typedef struct slot {
    char *base;     /* NULL: unused */
    size_t n;
    int low_guard, high_guard; /* still present (their edge page never unmapped) */
    page_m *pg;
} slot;

typedef struct hent {
    Handle h;       /* INVALID_HANDLE: unused */
    uint64_t id;
    uint64_t anc[2];/* ids of the origins it derives from (clone of a clone at most) */
    size_t size;    /* window bytes */
    int rights;     /* RW or READ */
    int revoked;    /* it or an origin was revoked */
    int self_revoked;
    uint64_t marker;/* word 0 of every page of the window holds it; 0: not known */
} hent;

typedef struct mapping {
    char *va;       /* NULL: unused */
    size_t first;   /* first buffer page it shows */
    size_t n;       /* pages */
    int prot;
} mapping;

/* One message on the channels: what the receiver may check. */
enum { MSG_PLAIN = 1, MSG_PRIVATE = 2, MSG_SHARED = 3 };
typedef struct msg {
    uint32_t kind;
    uint32_t sender;
    uint64_t marker;     /* MSG_PRIVATE: word 0 of every page */
    uint64_t size;       /* window bytes */
    uint32_t rights;     /* what the receiver must get */
    uint32_t maybe_revoked; /* the sender revoked its handle right after sending */
} msg;

typedef struct shared_state shared_state;

typedef struct worker {
    pthread_t tid;
    int id;
    unsigned seed;
    shared_state *sh;
    atomic_long progress;
    _Atomic(const char *) doing;
    atomic_int done;
    atomic_int errors;  /* read by the watchdog while the worker runs */
    char msg[512];
    uint64_t seq;
    uint32_t next_rid;
    uint64_t next_hid;
    slot slots[MAXSLOTS];
    hent hs[MAXH];
    mapping maps[MAXMAPS];
    uint64_t cell[BUF_PAGES]; /* what this thread's cell of each buffer page holds */
    long ops[16];
} worker;

struct shared_state {
    char *region;          /* the shared region: NT slices of own pages */
    size_t own;
    int region_flags;
    Handle buf;            /* the shared MDL buffer: every worker has a cell in every page */
    kosvmm_channel *ch[2]; /* a pair: a handle sent on one end is received on the other */
    atomic_int stop;
    int weights[16];       /* the test's mix of operations */
    worker w[NT];
};

#define WFAIL(w, ...)                                                   \
    do {                                                                \
        if ((w)->errors++ == 0)                                         \
            snprintf((w)->msg, sizeof (w)->msg, __VA_ARGS__);           \
    } while (0)

static const char *rc_name(Retcode rc)
{
    static const char *const names[] = {
        "rcOk", "rcFail", "rcInvalidArgument", "rcOutOfMemory", "rcResourceNotFound", "rcAlreadyExists",
        "rcInvalidOperation", "rcNoCapability", "rcSecurityDisallow", "rcHandleRevoked", "rcQuotaExceeded",
        "rcUnimplemented", "rcBusy",
    };
    if (rc == rcOk)
        return "rcOk";
    if (RC_FAILED(rc) && (rc & ~RC_FAIL_BIT) < sizeof names / sizeof names[0])
        return names[rc & ~RC_FAIL_BIT];
    return "an undocumented code";
}

/* Asserts one exact Retcode; returns whether it matched. */
#define EXPECT(w, call, want) expect_rc((w), (call), (want), #call, __LINE__)
static int expect_rc(worker *w, Retcode got, Retcode want, const char *what, int line)
{
    if (got == want)
        return 1;
    WFAIL(w, "thread %d, line %d: %s returned %s (%#x), expected %s", w->id, line, what, rc_name(got),
          (unsigned)got, rc_name(want));
    return 0;
}

/* Either of two Retcodes is right (the outcome depends on another thread); returns which: 0 or 1, -1 for neither. */
#define EXPECT2(w, call, a, b) expect_rc2((w), (call), (a), (b), #call, __LINE__)
static int expect_rc2(worker *w, Retcode got, Retcode a, Retcode b, const char *what, int line)
{
    if (got == a)
        return 0;
    if (got == b)
        return 1;
    WFAIL(w, "thread %d, line %d: %s returned %s (%#x), expected %s or %s", w->id, line, what, rc_name(got),
          (unsigned)got, rc_name(a), rc_name(b));
    return -1;
}

static unsigned rnd(worker *w, unsigned n)
{
    return n ? (unsigned)rand_r(&w->seed) % n : 0;
}

static void doing(worker *w, const char *what)
{
    atomic_store_explicit(&w->doing, what, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->progress, 1, memory_order_relaxed);
}

static uint64_t next_val(worker *w)
{
    return ((uint64_t)(w->id + 1) << 48) | ++w->seq;
}

static double stress_seconds(void)
{
    const char *s = getenv("KOSVMM_STRESS_SECONDS");
    double v = s && *s ? strtod(s, NULL) : 8.0;
    return v > 0 ? v : 0.2;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- private memory: slots and their page model ------------------------------------------- */

static char *pva(const slot *s, size_t i)
{
    return s->base + i * P;
}

static volatile uint64_t *word(char *page, int last)
{
    return (volatile uint64_t *)(page + (last ? P - sizeof(uint64_t) : 0));
}

/* [*lo, *hi): the region piece (same allocation, none unmapped) holding page i. */
static void run_of(const slot *s, size_t i, size_t *lo, size_t *hi)
{
    size_t a = i, b = i + 1;
    while (a > 0 && s->pg[a - 1].state != FREE_ && s->pg[a - 1].rid == s->pg[i].rid)
        a--;
    while (b < s->n && s->pg[b].state != FREE_ && s->pg[b].rid == s->pg[i].rid)
        b++;
    *lo = a;
    *hi = b;
}

/* A random mapped page of the slot, or -1. */
static long random_live(worker *w, const slot *s)
{
    if (!s->base)
        return -1;
    size_t start = rnd(w, (unsigned)s->n);
    for (size_t k = 0; k < s->n; k++) {
        size_t i = (start + k) % s->n;
        if (s->pg[i].state != FREE_)
            return (long)i;
    }
    return -1;
}

/* A random range [*a, *a + *c) inside one region piece of a random slot. */
static slot *random_range(worker *w, size_t *a, size_t *c)
{
    for (int tries = 0; tries < 2 * MAXSLOTS; tries++) {
        slot *s = &w->slots[rnd(w, MAXSLOTS)];
        long i = random_live(w, s);
        if (i < 0)
            continue;
        size_t lo, hi;
        run_of(s, (size_t)i, &lo, &hi);
        switch (rnd(w, 3)) {
        case 0: *a = lo, *c = hi - lo; break; /* the whole piece */
        case 1: *a = (size_t)i, *c = 1; break;
        default: *a = lo + rnd(w, (unsigned)(hi - lo)), *c = 1 + rnd(w, (unsigned)(hi - *a)); break;
        }
        return s;
    }
    return NULL;
}

static int readable(const page_m *p)
{
    return p->state == COMMITTED_ && (p->prot & VMM_FLAG_READ);
}

static int writable(const page_m *p)
{
    return p->state == COMMITTED_ && (p->prot & VMM_FLAG_WRITE);
}

/* KnVmQuery of page i against the model, then its contents if readable. */
static void check_page(worker *w, slot *s, size_t i)
{
    page_m *p = &s->pg[i];
    if (p->state == FREE_)
        return;
    char *va = pva(s, i);
    VmQueryInfo q;
    memset(&q, 0xA5, sizeof q);
    if (!EXPECT(w, KnVmQuery(va + rnd(w, (unsigned)P), &q), rcOk))
        return;
    size_t lo, hi;
    run_of(s, i, &lo, &hi);
    uint32_t kinds = q.attributes & (VMM_PAGE_ATTR_MDL | VMM_PAGE_ATTR_LOCKED | VMM_PAGE_ATTR_LAZY);
    uint32_t want_kind = p->state != COMMITTED_ ? 0
                         : p->mdl               ? VMM_PAGE_ATTR_MDL
                         : p->full              ? VMM_PAGE_ATTR_LOCKED
                                                : VMM_PAGE_ATTR_LAZY;
    int bad = q.pageBase != va || q.state != p->state || q.protection != p->prot ||
              (p->state == COMMITTED_ && kinds != want_kind) || (q.attributes & VMM_PAGE_ATTR_GUARD) ||
              (uintptr_t)q.regionBase > (uintptr_t)va ||
              (uintptr_t)q.regionBase + q.regionSize < (uintptr_t)va + P || q.runSize < P ||
              (uintptr_t)va + q.runSize > (uintptr_t)q.regionBase + q.regionSize;
    if (p->rid != 0 && (q.regionBase != pva(s, lo) || q.regionSize != (hi - lo) * P))
        bad = 1;
    if (!p->mdl && (q.regionFlags & ~(uint32_t)GUARDS) != ((uint32_t)p->rflags & ~(uint32_t)GUARDS))
        bad = 1;
    if (bad) {
        WFAIL(w, "thread %d: KnVmQuery(%p) = page %p state %u prot %#x attr %#x region %p+%#zx flags %#x run %#zx; "
                 "model: state %u prot %#x full %u mdl %u region %s%p+%#zx flags %#x",
              w->id, (void *)va, q.pageBase, q.state, q.protection, q.attributes, q.regionBase,
              (size_t)q.regionSize, q.regionFlags, (size_t)q.runSize, p->state, p->prot, p->full, p->mdl,
              p->rid ? "" : "inside ", (void *)pva(s, lo), (hi - lo) * P, (unsigned)p->rflags);
        return;
    }
    if (readable(p)) {
        uint64_t a = *word(va, 0), b = *word(va, 1);
        if (a != p->val || b != p->val)
            WFAIL(w, "thread %d: lost write at %p: holds %#llx/%#llx, expected %#llx (state %u prot %#x full %u mdl %u)",
                  w->id, (void *)va, (unsigned long long)a, (unsigned long long)b, (unsigned long long)p->val,
                  p->state, p->prot, p->full, p->mdl);
    }
}

/* Checks the guard pages a private slot still has. */
static void check_guards(worker *w, slot *s)
{
    for (int hi = 0; hi < 2; hi++) {
        if (!(hi ? s->high_guard : s->low_guard))
            continue;
        size_t edge = hi ? s->n - 1 : 0, lo_, hi_;
        run_of(s, edge, &lo_, &hi_);
        char *g = hi ? pva(s, s->n) : s->base - P;
        VmQueryInfo q;
        if (EXPECT(w, KnVmQuery(g, &q), rcOk) &&
            (!(q.attributes & VMM_PAGE_ATTR_GUARD) || q.state != VMM_PAGE_STATE_RESERVED ||
             q.regionBase != pva(s, lo_)))
            WFAIL(w, "thread %d: guard %p: state %u attr %#x region %p, expected a guard of %p", w->id, (void *)g,
                  q.state, q.attributes, q.regionBase, (void *)pva(s, lo_));
    }
}

static void write_page(worker *w, slot *s, size_t i)
{
    page_m *p = &s->pg[i];
    if (!writable(p))
        return;
    char *va = pva(s, i);
    if (p->prot & VMM_FLAG_READ) {
        uint64_t a = *word(va, 0);
        if (a != p->val)
            WFAIL(w, "thread %d: lost write at %p: holds %#llx, expected %#llx (state %u prot %#x full %u mdl %u)",
                  w->id, (void *)va, (unsigned long long)a, (unsigned long long)p->val, p->state, p->prot,
                  p->full, p->mdl);
    }
    p->val = next_val(w);
    *word(va, 0) = p->val;
    *word(va, 1) = p->val;
}

static const int alloc_variants[] = {
    VMM_FLAG_RESERVE | RW,
    VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW,
    VMM_FLAG_RESERVE | VMM_FLAG_LOCKED | RW,
    VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW,
    VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW | VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD,
    VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_READ | VMM_FLAG_HIGH_GUARD,
    VMM_FLAG_RESERVE | VMM_FLAG_LOCKED | RW | VMM_FLAG_LOW_GUARD,
};

/* The model of freshly allocated pages. */
static void model_alloc(worker *w, page_m *p, size_t n, int flags)
{
    uint32_t rid = ++w->next_rid;
    for (size_t i = 0; i < n; i++)
        p[i] = (page_m){.state = flags & VMM_FLAG_COMMIT ? COMMITTED_ : RESERVED_,
                        .prot = (uint8_t)(flags & VMM_FLAG_RWX_MASK),
                        .full = (flags & VMM_FLAG_COMMIT) && (flags & VMM_FLAG_LOCKED),
                        .rid = rid, .rflags = flags};
}

static void op_alloc(worker *w)
{
    doing(w, "allocate");
    slot *s = NULL;
    for (int i = 1; i < MAXSLOTS && !s; i++)
        if (!w->slots[i].base)
            s = &w->slots[i];
    if (!s)
        return;
    size_t n = 1 + rnd(w, SLOT_PAGES);
    int flags = alloc_variants[rnd(w, sizeof alloc_variants / sizeof alloc_variants[0])];
    char *want = RTL_NULL;
    if (rnd(w, 4) == 0) {
        /* A fixed address just freed: another thread (or the kernel) may take it first. */
        flags &= ~GUARDS;
        want = KnVmAllocate(RTL_NULL, n * P, VMM_FLAG_RESERVE | RW);
        if (!want) {
            WFAIL(w, "thread %d: KnVmAllocate(%zu pages) failed: %s", w->id, n, rc_name(kosvmm_last_error()));
            return;
        }
        EXPECT(w, KnVmUnmap(want, n * P), rcOk);
    }
    char *p = KnVmAllocate(want, n * P, flags);
    if (!p) {
        if (want && kosvmm_last_error() == rcAlreadyExists)
            return;
        WFAIL(w, "thread %d: KnVmAllocate(%p, %zu pages, %#x) failed: %s", w->id, (void *)want, n, (unsigned)flags,
              rc_name(kosvmm_last_error()));
        return;
    }
    EXPECT(w, kosvmm_last_error(), rcOk);
    if (want && p != want)
        WFAIL(w, "thread %d: KnVmAllocate(%p) returned %p", w->id, (void *)want, (void *)p);
    s->base = p;
    s->n = n;
    s->low_guard = (flags & VMM_FLAG_LOW_GUARD) != 0;
    s->high_guard = (flags & VMM_FLAG_HIGH_GUARD) != 0;
    model_alloc(w, s->pg, n, flags);
    check_page(w, s, rnd(w, (unsigned)n));
    check_guards(w, s);
}

/* Commit, decommit, reset or protect a range, whole regions or parts. */
static void op_range(worker *w)
{
    size_t a, c;
    slot *s = random_range(w, &a, &c);
    if (!s)
        return;
    int has_mdl = 0;
    for (size_t i = a; i < a + c; i++)
        has_mdl |= s->pg[i].mdl;
    Retcode want = has_mdl ? rcInvalidOperation : rcOk;
    char *va = pva(s, a);
    static const uint8_t prots[] = {0, VMM_FLAG_READ, RW, RW};
    unsigned which = rnd(w, 4);
    uint8_t prot = prots[rnd(w, 4)];
    switch (which) {
    case 0:
        doing(w, "commit");
        if (!EXPECT(w, KnVmCommit(va, c * P, VMM_FLAG_LOCKED), want) || has_mdl)
            return;
        for (size_t i = a; i < a + c; i++) {
            page_m *p = &s->pg[i];
            if (p->state == RESERVED_)
                p->val = 0;
            p->state = COMMITTED_;
            p->full = (p->rflags & VMM_FLAG_LOCKED) != 0;
        }
        break;
    case 1:
        doing(w, "decommit");
        if (!EXPECT(w, KnVmDecommit(va, c * P), want) || has_mdl)
            return;
        for (size_t i = a; i < a + c; i++)
            s->pg[i].state = RESERVED_, s->pg[i].full = 0;
        break;
    case 2:
        doing(w, "reset");
        if (!EXPECT(w, KnVmReset(va, c * P), want) || has_mdl)
            return;
        for (size_t i = a; i < a + c; i++)
            s->pg[i].state = COMMITTED_, s->pg[i].full = 0, s->pg[i].val = 0;
        break;
    default:
        doing(w, "protect");
        if (!EXPECT(w, KnVmProtect(va, c * P, prot), want) || has_mdl)
            return;
        for (size_t i = a; i < a + c; i++)
            s->pg[i].prot = prot;
        break;
    }
    check_page(w, s, a + rnd(w, (unsigned)c));
}

/* The slice of the shared region: pages unmapped there are allocated again at the same address. */
static void reallocate_slice(worker *w)
{
    slot *s = &w->slots[0];
    for (size_t i = 0; i < s->n; i++) {
        if (s->pg[i].state != FREE_ || s->pg[i].lost)
            continue;
        size_t j = i;
        while (j < s->n && s->pg[j].state == FREE_ && !s->pg[j].lost)
            j++;
        int flags = rnd(w, 2) ? VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW : w->sh->region_flags;
        char *p = KnVmAllocate(pva(s, i), (j - i) * P, flags);
        if (p == pva(s, i)) {
            model_alloc(w, &s->pg[i], j - i, flags);
        } else if (p || kosvmm_last_error() != rcAlreadyExists) {
            WFAIL(w, "thread %d: KnVmAllocate(%p, %zu pages) in its slice: %p, %s", w->id, (void *)pva(s, i), j - i,
                  (void *)p, rc_name(kosvmm_last_error()));
        } else {
            for (size_t k = i; k < j; k++) /* someone else's mapping landed there: never touch it */
                s->pg[k].lost = 1;
        }
        i = j;
    }
}

static void op_unmap(worker *w)
{
    size_t a, c;
    slot *s = random_range(w, &a, &c);
    if (!s)
        return;
    if (s == &w->slots[0] && rnd(w, 3))
        return; /* splitting the shared region is rarer than the rest */
    doing(w, "unmap");
    if (!EXPECT(w, KnVmUnmap(pva(s, a), c * P), rcOk))
        return;
    for (size_t i = a; i < a + c; i++)
        s->pg[i].state = FREE_;
    if (a == 0)
        s->low_guard = 0;
    if (a + c == s->n)
        s->high_guard = 0;
    /* The freed addresses are not looked at: another thread may have mapped them already. */
    long left = random_live(w, s);
    if (left >= 0) {
        check_page(w, s, (size_t)left);
        check_guards(w, s);
    } else if (s != &w->slots[0]) {
        s->base = NULL;
    }
    if (s == &w->slots[0]) {
        doing(w, "allocate fixed");
        reallocate_slice(w);
    }
}

static void op_write(worker *w)
{
    slot *s = &w->slots[rnd(w, MAXSLOTS)];
    if (!s->base)
        return;
    doing(w, "write");
    if (rnd(w, 2)) { /* a stream over the whole slot: the fault handler's windows grow */
        for (size_t i = 0; i < s->n; i++)
            write_page(w, s, i);
    } else {
        for (int k = 0; k < 4; k++)
            write_page(w, s, rnd(w, (unsigned)s->n));
    }
}

static void op_verify(worker *w)
{
    doing(w, "verify");
    for (int k = 0; k < MAXSLOTS; k++) {
        slot *s = &w->slots[k];
        if (!s->base)
            continue;
        for (size_t i = 0; i < s->n; i++)
            check_page(w, s, i);
        if (k)
            check_guards(w, s);
    }
}

/* ---- MDL handles ---------------------------------------------------------------------------- */

static hent *free_hent(worker *w)
{
    for (int i = 0; i < MAXH; i++)
        if (w->hs[i].h == INVALID_HANDLE)
            return &w->hs[i];
    return NULL;
}

static hent *random_hent(worker *w)
{
    int start = (int)rnd(w, MAXH);
    for (int k = 0; k < MAXH; k++) {
        hent *e = &w->hs[(start + k) % MAXH];
        if (e->h != INVALID_HANDLE)
            return e;
    }
    return NULL;
}

static void close_hent(worker *w, hent *e)
{
    doing(w, "close handle");
    EXPECT(w, KnHandleClose(e->h), rcOk);
    EXPECT(w, KnHandleClose(e->h), rcInvalidArgument); /* generation-checked: stale now */
    e->h = INVALID_HANDLE;
}

/* Turns a committed range of private memory into an MDL buffer in place. */
static void op_from_vm(worker *w)
{
    size_t a, c;
    slot *s = random_range(w, &a, &c);
    hent *e = free_hent(w);
    if (!s || !e)
        return;
    int ok = 1;
    for (size_t i = a; i < a + c; i++)
        ok &= s->pg[i].state == COMMITTED_ && !s->pg[i].mdl;
    Handle h = INVALID_HANDLE;
    Retcode rc;
    if (rnd(w, 2)) {
        doing(w, "KnPmmMdlCreateFromVm");
        rc = KnPmmMdlCreateFromVm(pva(s, a), c * P, RW, &h);
    } else {
        doing(w, "KnVmSegInitFromVm");
        VmSeg seg;
        memset(&seg, 0, sizeof seg);
        rc = KnVmSegInitFromVm(&seg, pva(s, a), pva(s, a), c * P, RW);
        if (rc == rcOk && (seg.size != c * P || seg.offset != 0 || seg.loadAddr != pva(s, a) || seg.flags != RW))
            WFAIL(w, "thread %d: VmSeg size %zu offset %zu load %p flags %#x", w->id, (size_t)seg.size,
                  (size_t)seg.offset, seg.loadAddr, seg.flags);
        h = seg.h;
    }
    if (!EXPECT(w, rc, ok ? rcOk : rcInvalidOperation) || !ok)
        return;
    for (size_t i = a; i < a + c; i++)
        s->pg[i].mdl = 1, s->pg[i].full = 0;
    /* The buffer holds what the pages held: seen through a second mapping of it. */
    void *m;
    if (EXPECT(w, KnPmmMdlMap(h, 0, c * P, RTL_NULL, VMM_FLAG_READ, &m), rcOk)) {
        for (size_t i = 0; i < c; i++)
            if (*word((char *)m + i * P, 0) != s->pg[a + i].val)
                WFAIL(w, "thread %d: buffer made from %p holds %#llx at page %zu, the page held %#llx", w->id,
                      (void *)pva(s, a), (unsigned long long)*word((char *)m + i * P, 0), i,
                      (unsigned long long)s->pg[a + i].val);
        EXPECT(w, KnVmUnmap(m, c * P), rcOk);
    }
    *e = (hent){.h = h, .id = ++w->next_hid, .size = c * P, .rights = RW};
    check_page(w, s, a);
}

/* Maps a handle and checks the marker it promises (or that revocation stops it). */
static void map_and_check(worker *w, hent *e)
{
    doing(w, "map private handle");
    void *m;
    size_t len = e->size;
    Retcode rc = KnPmmMdlMap(e->h, 0, len, RTL_NULL, e->rights, &m);
    if (!EXPECT(w, rc, e->revoked ? rcHandleRevoked : rcOk) || e->revoked)
        return;
    for (size_t i = 0; e->marker && i < len / P; i++)
        if (*word((char *)m + i * P, 0) != e->marker)
            WFAIL(w, "thread %d: handle %#x page %zu holds %#llx, expected marker %#llx", w->id, (unsigned)e->h, i,
                  (unsigned long long)*word((char *)m + i * P, 0), (unsigned long long)e->marker);
    if (e->rights & VMM_FLAG_WRITE) /* a scratch word: written and read back through the same mapping */
        for (size_t i = 0; i < len / P; i++)
            ((volatile uint64_t *)((char *)m + i * P))[1] = w->seq;
    VmQueryInfo q;
    if (EXPECT(w, KnVmQuery(m, &q), rcOk) &&
        (q.state != VMM_PAGE_STATE_COMMITTED || !(q.attributes & VMM_PAGE_ATTR_MDL) || q.regionBase != m ||
         q.regionSize != len || q.protection != (unsigned)e->rights))
        WFAIL(w, "thread %d: MDL mapping %p: state %u attr %#x region %p+%zu prot %#x", w->id, m, q.state,
              q.attributes, q.regionBase, (size_t)q.regionSize, q.protection);
    EXPECT(w, KnVmDecommit(m, P), rcInvalidOperation);
    EXPECT(w, KnVmUnmap(m, len), rcOk);
}

static void op_handles(worker *w)
{
    hent *e = random_hent(w), *f = free_hent(w);
    switch (rnd(w, 8)) {
    case 0:
    case 1: { /* a new buffer, marked */
        if (!f)
            break;
        size_t n = 1 + rnd(w, 4);
        uint64_t marker = next_val(w);
        Handle h;
        if (rnd(w, 2)) {
            doing(w, "KnPmmMdlCreate");
            if (!EXPECT(w, KnPmmMdlCreate(n * P - rnd(w, 100), RW, &h), rcOk))
                break;
            void *m;
            if (EXPECT(w, KnPmmMdlMap(h, 0, n * P, RTL_NULL, RW, &m), rcOk)) {
                for (size_t i = 0; i < n; i++)
                    *word((char *)m + i * P, 0) = marker;
                EXPECT(w, KnVmUnmap(m, n * P), rcOk);
            }
        } else {
            doing(w, "KnPmmMdlCreateFromBuf");
            uint64_t *src = calloc(n, P);
            if (!src) {
                WFAIL(w, "calloc");
                break;
            }
            for (size_t i = 0; i < n; i++)
                src[i * P / sizeof *src] = marker;
            Retcode rc = KnPmmMdlCreateFromBuf(n * P, RW, src, (n - 1) * P + sizeof *src, &h);
            free(src);
            if (!EXPECT(w, rc, rcOk))
                break;
        }
        rtl_size_t size = 0;
        EXPECT(w, KnPmmMdlGetSize(h, &size), rcOk);
        if (size != n * P)
            WFAIL(w, "thread %d: KnPmmMdlGetSize %zu, expected %zu", w->id, (size_t)size, n * P);
        *f = (hent){.h = h, .id = ++w->next_hid, .size = n * P, .rights = RW, .marker = marker};
        break;
    }
    case 2: { /* an ELF segment */
        if (!f)
            break;
        doing(w, "KnVmSegInitFromBuf");
        VmSeg seg;
        uint64_t marker = next_val(w);
        static const uint8_t build_id[20] = {1, 2, 3};
        size_t n = 1 + rnd(w, 3);
        if (!EXPECT(w, KnVmSegInitFromBuf(&seg, (void *)(uintptr_t)0x400000, 0, n * P, VMM_FLAG_READ, 0x1000,
                                          build_id, sizeof build_id, &marker, sizeof marker), rcOk))
            break;
        if (seg.size != n * P || seg.flags != VMM_FLAG_READ || seg.buildIdSize != sizeof build_id ||
            seg.fileOffset != 0x1000)
            WFAIL(w, "thread %d: VmSeg from a buffer: size %zu flags %#x", w->id, (size_t)seg.size, seg.flags);
        *f = (hent){.h = seg.h, .id = ++w->next_hid, .size = n * P, .rights = VMM_FLAG_READ};
        void *m;
        if (EXPECT(w, KnPmmMdlMap(seg.h, 0, P, RTL_NULL, VMM_FLAG_READ, &m), rcOk)) {
            if (*word(m, 0) != marker)
                WFAIL(w, "thread %d: segment holds %#llx", w->id, (unsigned long long)*word(m, 0));
            EXPECT(w, KnVmUnmap(m, P), rcOk);
        }
        EXPECT(w, KnPmmMdlMap(seg.h, 0, P, RTL_NULL, RW, &m), rcNoCapability);
        break;
    }
    case 3: { /* a clone of part of a window */
        if (!e || !f)
            break;
        doing(w, "KnPmmMdlClone");
        size_t pages = e->size / P, off = rnd(w, (unsigned)pages), len = 1 + rnd(w, (unsigned)(pages - off));
        Handle c;
        int depth = (e->anc[0] != 0) + (e->anc[1] != 0);
        Retcode rc = KnPmmMdlClone(e->h, off * P, len * P, &c);
        if (depth >= 2) { /* keep ancestry short: the clone is closed again */
            if (EXPECT(w, rc, e->revoked ? rcHandleRevoked : rcOk) && !e->revoked)
                EXPECT(w, KnHandleClose(c), rcOk);
            break;
        }
        if (!EXPECT(w, rc, e->revoked ? rcHandleRevoked : rcOk) || e->revoked)
            break;
        *f = (hent){.h = c, .id = ++w->next_hid, .anc = {e->id, e->anc[0]}, .size = len * P, .rights = e->rights,
                    .marker = e->marker};
        rtl_size_t size = 0;
        EXPECT(w, KnPmmMdlGetSize(c, &size), rcOk);
        if (size != len * P)
            WFAIL(w, "thread %d: clone size %zu, expected %zu", w->id, (size_t)size, len * P);
        EXPECT(w, KnPmmMdlClone(e->h, off * P, (pages - off + 1) * P, &c), e->revoked ? rcHandleRevoked
                                                                                   : rcInvalidArgument);
        break;
    }
    case 4:
        if (e)
            map_and_check(w, e);
        break;
    case 5: { /* revoke: it and everything derived from it stop; mappings made before stay */
        if (!e)
            break;
        doing(w, "KnHandleRevoke");
        /* Revoked itself: rcHandleRevoked. Only through an origin: handle_api.h does not say (the
         * library answers rcOk and revokes it in its own right), so either is accepted. */
        Retcode rc = KnHandleRevoke(e->h);
        if (e->self_revoked ? !EXPECT(w, rc, rcHandleRevoked)
            : e->revoked    ? EXPECT2(w, rc, rcOk, rcHandleRevoked) < 0
                            : !EXPECT(w, rc, rcOk))
            break;
        e->self_revoked = 1;
        for (int i = 0; i < MAXH; i++) {
            hent *x = &w->hs[i];
            if (x->h != INVALID_HANDLE && (x == e || x->anc[0] == e->id || x->anc[1] == e->id))
                x->revoked = 1;
        }
        rtl_size_t size;
        EXPECT(w, KnPmmMdlGetSize(e->h, &size), rcHandleRevoked);
        break;
    }
    default:
        if (e)
            close_hent(w, e);
        break;
    }
}

/* ---- the shared MDL buffer: one cell per thread in every page, several mappings ------------- */

static volatile uint64_t *cell(worker *w, const mapping *m, size_t k)
{
    return (volatile uint64_t *)(m->va + k * P + (size_t)w->id * 64);
}

static void check_cells(worker *w, const mapping *m)
{
    for (size_t k = 0; k < m->n; k++) {
        uint64_t v = *cell(w, m, k);
        if (v != w->cell[m->first + k])
            WFAIL(w, "thread %d: lost write in the shared buffer, page %zu through %p: %#llx, expected %#llx",
                  w->id, m->first + k, (void *)m->va, (unsigned long long)v,
                  (unsigned long long)w->cell[m->first + k]);
    }
}

static void op_shared_buffer(worker *w)
{
    shared_state *sh = w->sh;
    mapping *m = &w->maps[rnd(w, MAXMAPS)];
    if (!m->va) { /* map a window: through the shared handle, or through a clone made for it */
        size_t first = rnd(w, BUF_PAGES), n = 1 + rnd(w, (unsigned)(BUF_PAGES - first));
        int prot = rnd(w, 4) ? RW : VMM_FLAG_READ;
        void *va;
        if (rnd(w, 2)) {
            doing(w, "map shared buffer");
            if (!EXPECT(w, KnPmmMdlMap(sh->buf, first * P, n * P, RTL_NULL, prot, &va), rcOk))
                return;
        } else {
            doing(w, "map shared buffer through a clone");
            Handle c;
            if (!EXPECT(w, KnPmmMdlClone(sh->buf, first * P, n * P, &c), rcOk))
                return;
            Retcode rc = KnPmmMdlMap(c, 0, n * P, RTL_NULL, prot, &va);
            if (rnd(w, 2)) { /* revoking the clone leaves the mapping made through it valid */
                EXPECT(w, KnHandleRevoke(c), rcOk);
                void *x;
                EXPECT(w, KnPmmMdlMap(c, 0, P, RTL_NULL, VMM_FLAG_READ, &x), rcHandleRevoked);
            }
            EXPECT(w, KnHandleClose(c), rcOk);
            if (!EXPECT(w, rc, rcOk))
                return;
        }
        *m = (mapping){.va = va, .first = first, .n = n, .prot = prot};
        check_cells(w, m);
        return;
    }
    switch (rnd(w, 4)) {
    case 0: /* unmap all or an edge of it */
        doing(w, "unmap shared buffer");
        if (m->n > 1 && rnd(w, 2)) {
            if (rnd(w, 2)) {
                EXPECT(w, KnVmUnmap(m->va, P), rcOk);
                m->va += P;
                m->first++;
            } else {
                EXPECT(w, KnVmUnmap(m->va + (m->n - 1) * P, P), rcOk);
            }
            m->n--;
            check_cells(w, m);
        } else {
            EXPECT(w, KnVmUnmap(m->va, m->n * P), rcOk);
            m->va = NULL;
        }
        break;
    case 1:
        doing(w, "verify shared buffer");
        for (int i = 0; i < MAXMAPS; i++)
            if (w->maps[i].va)
                check_cells(w, &w->maps[i]);
        break;
    default: { /* write cells through this mapping, read them back through every other */
        if (!(m->prot & VMM_FLAG_WRITE))
            break;
        doing(w, "write shared buffer");
        for (size_t k = 0; k < m->n; k++) {
            uint64_t v = *cell(w, m, k);
            if (v != w->cell[m->first + k])
                WFAIL(w, "thread %d: shared buffer page %zu: %#llx, expected %#llx", w->id, m->first + k,
                      (unsigned long long)v, (unsigned long long)w->cell[m->first + k]);
            w->cell[m->first + k] = next_val(w);
            *cell(w, m, k) = w->cell[m->first + k];
        }
        for (int i = 0; i < MAXMAPS; i++)
            if (w->maps[i].va)
                check_cells(w, &w->maps[i]);
        break;
    }
    }
}

/* ---- channels: every send is followed by a receive by the same thread ------------------------ */

/* A thread receives on an end only right after it sent to it, so a receiver always has a message
 * coming: nobody blocks forever, whoever gets whose message. */
static void receive_one(worker *w, kosvmm_channel *ch)
{
    doing(w, "kosvmm_channel_recv");
    msg m;
    memset(&m, 0, sizeof m);
    rtl_size_t size = 0;
    Handle h = INVALID_HANDLE;
    int accept_handles = rnd(w, 8) != 0;
    Retcode rc = kosvmm_channel_recv(ch, accept_handles ? &h : RTL_NULL, &m, sizeof m, &size);
    if (rc == rcInvalidOperation && !accept_handles)
        return; /* a handle message, refused and dropped: its descriptors were closed */
    if (rc == rcHandleRevoked)
        return; /* legitimate only for a handle the sender revoked; checked below when it arrives */
    if (!EXPECT(w, rc, rcOk))
        return;
    if (size != sizeof m || m.sender >= NT || m.kind < MSG_PLAIN || m.kind > MSG_SHARED) {
        WFAIL(w, "thread %d: received %zu bytes, kind %u from %u", w->id, (size_t)size, m.kind, m.sender);
        return;
    }
    if (m.kind == MSG_PLAIN) {
        if (h != INVALID_HANDLE)
            WFAIL(w, "thread %d: a payload-only message came with handle %#x", w->id, (unsigned)h);
        return;
    }
    if (h == INVALID_HANDLE) {
        WFAIL(w, "thread %d: a handle message came without a handle", w->id);
        return;
    }
    rtl_size_t hs = 0;
    Retcode want = rcOk;
    Retcode got = KnPmmMdlGetSize(h, &hs);
    if (m.maybe_revoked && got == rcHandleRevoked)
        want = rcHandleRevoked;
    if (EXPECT(w, got, want) && want == rcOk && hs != m.size)
        WFAIL(w, "thread %d: received handle of %zu bytes, expected %llu", w->id, (size_t)hs,
              (unsigned long long)m.size);
    void *va;
    if (want == rcOk && !(m.rights & VMM_FLAG_WRITE))
        EXPECT2(w, KnPmmMdlMap(h, 0, P, RTL_NULL, RW, &va), rcNoCapability, rcHandleRevoked);
    rc = KnPmmMdlMap(h, 0, (size_t)m.size, RTL_NULL, VMM_FLAG_READ, &va);
    if (want == rcOk && m.maybe_revoked && rc == rcHandleRevoked)
        want = rcHandleRevoked;
    if (EXPECT(w, rc, want) && want == rcOk) {
        if (m.kind == MSG_PRIVATE) {
            for (size_t i = 0; i < m.size / P; i++)
                if (*word((char *)va + i * P, 0) != m.marker)
                    WFAIL(w, "thread %d: handle from thread %u: page %zu holds %#llx, expected %#llx", w->id,
                          m.sender, i, (unsigned long long)*word((char *)va + i * P, 0),
                          (unsigned long long)m.marker);
        } else { /* the whole shared buffer, read-only: this thread's own cells must be there */
            mapping all = {.va = va, .first = 0, .n = BUF_PAGES, .prot = VMM_FLAG_READ};
            check_cells(w, &all);
        }
        EXPECT(w, KnVmUnmap(va, (size_t)m.size), rcOk);
    }
    EXPECT(w, KnHandleClose(h), rcOk);
}

static void op_channel(worker *w)
{
    shared_state *sh = w->sh;
    int end = (int)rnd(w, 2);
    kosvmm_channel *tx = sh->ch[end], *rx = sh->ch[1 - end];
    msg m = {.kind = MSG_PLAIN, .sender = (uint32_t)w->id};
    Retcode rc;
    switch (rnd(w, 3)) {
    case 0:
        doing(w, "kosvmm_channel_send");
        rc = kosvmm_channel_send(tx, &m, sizeof m);
        break;
    case 1: { /* one of its own marked buffers, narrowed to read-only or not */
        hent *e = random_hent(w);
        if (!e || !e->marker || e->revoked || e->anc[1])
            return;
        doing(w, "kosvmm_channel_send_handle (private)");
        uint32_t mask = rnd(w, 2) ? KOSVMM_RIGHT_READ : KOSVMM_RIGHT_READ | KOSVMM_RIGHT_WRITE;
        /* maybe_revoked: this thread may revoke it, or an origin, before the receiver gets to it. */
        m = (msg){.kind = MSG_PRIVATE, .sender = (uint32_t)w->id, .marker = e->marker, .size = e->size,
                  .rights = (uint32_t)e->rights & mask, .maybe_revoked = 1};
        rc = kosvmm_channel_send_handle(tx, e->h, mask, &m, sizeof m);
        break;
    }
    default: { /* the shared buffer, through a clone revoked right after sending now and then */
        doing(w, "kosvmm_channel_send_handle (shared)");
        Handle c;
        if (!EXPECT(w, KnPmmMdlClone(sh->buf, 0, BUF_PAGES * P, &c), rcOk))
            return;
        m = (msg){.kind = MSG_SHARED, .sender = (uint32_t)w->id, .size = BUF_PAGES * P,
                  .rights = VMM_FLAG_READ, .maybe_revoked = rnd(w, 3) == 0};
        rc = kosvmm_channel_send_handle(tx, c, KOSVMM_RIGHT_READ | KOSVMM_RIGHT_TRANSFER, &m, sizeof m);
        if (m.maybe_revoked)
            EXPECT(w, KnHandleRevoke(c), rcOk);
        EXPECT(w, KnHandleClose(c), rcOk);
        break;
    }
    }
    if (EXPECT(w, rc, rcOk))
        receive_one(w, rx);
}

/* ---- everything else: queries of any address, statistics, configuration, bad arguments --------- */

static void op_misc(worker *w)
{
    shared_state *sh = w->sh;
    VmQueryInfo q;
    void *va;
    switch (rnd(w, 6)) {
    case 0: { /* any address at all: another thread's pages, free space, the stack */
        doing(w, "query anywhere");
        int other = (int)rnd(w, NT);
        const char *a = sh->region + (size_t)other * sh->own * P + rnd(w, (unsigned)(sh->own * P));
        if (EXPECT(w, KnVmQuery(a, &q), rcOk) && q.state != VMM_PAGE_STATE_FREE &&
            ((uintptr_t)q.pageBase != ((uintptr_t)a & ~(uintptr_t)(P - 1)) || q.runSize < P ||
             ((uintptr_t)q.regionBase > (uintptr_t)a && !(q.attributes & VMM_PAGE_ATTR_GUARD))))
            WFAIL(w, "thread %d: KnVmQuery(%p): page %p run %zu region %p", w->id, (const void *)a, q.pageBase,
                  (size_t)q.runSize, q.regionBase);
        EXPECT(w, KnVmQuery(&q, &q), rcOk);
        if (q.state != VMM_PAGE_STATE_FREE)
            WFAIL(w, "thread %d: its stack is not free for kosvmm: state %u", w->id, q.state);
        break;
    }
    case 1: {
        doing(w, "kosvmm_get_stats");
        kosvmm_stats st;
        EXPECT(w, kosvmm_get_stats(&st), rcOk);
        EXPECT(w, kosvmm_get_stats(RTL_NULL), rcInvalidArgument);
        break;
    }
    case 2: { /* the lazy configuration changes under the faulting threads */
        doing(w, "kosvmm_set_lazy_config");
        kosvmm_lazy_config c;
        EXPECT(w, kosvmm_get_lazy_config(&c), rcOk);
        c.window_max = rnd(w, 2) ? 512 : 16;
        c.window_min = 1 + rnd(w, 2);
        c.readahead = rnd(w, 2);
        EXPECT(w, kosvmm_set_lazy_config(&c), rcOk);
        c.window_min = c.window_max + 1;
        EXPECT(w, kosvmm_set_lazy_config(&c), rcInvalidArgument);
        break;
    }
    case 3: { /* bad arguments: refused whatever the other threads do */
        doing(w, "bad arguments");
        slot *s = &w->slots[0];
        long i = random_live(w, s);
        if (i >= 0) {
            EXPECT(w, KnVmCommit(pva(s, (size_t)i) + 1, P, 0), rcInvalidArgument);
            EXPECT(w, KnVmProtect(pva(s, (size_t)i), P, VMM_FLAG_WRITE), rcInvalidArgument);
            EXPECT(w, KnVmReset(pva(s, (size_t)i), 0), rcInvalidArgument);
            EXPECT(w, KnVmQuery(pva(s, (size_t)i), RTL_NULL), rcInvalidArgument);
        }
        if (KnVmAllocate(RTL_NULL, P, VMM_FLAG_COMMIT | RW) != RTL_NULL)
            WFAIL(w, "thread %d: KnVmAllocate without RESERVE succeeded", w->id);
        EXPECT(w, kosvmm_last_error(), rcInvalidArgument);
        EXPECT(w, KnHandleClose(INVALID_HANDLE), rcInvalidArgument);
        EXPECT(w, KnHandleRevoke(INVALID_HANDLE), rcInvalidArgument);
        EXPECT(w, KnPmmMdlMap(sh->buf, 0, P, RTL_NULL, VMM_FLAG_WRITE, &va), rcInvalidArgument);
        EXPECT(w, KnPmmMdlMap(sh->buf, P, BUF_PAGES * P, RTL_NULL, VMM_FLAG_READ, &va), rcInvalidArgument);
        EXPECT(w, KnPmmMdlGetSize(sh->buf, RTL_NULL), rcInvalidArgument);
        Handle c;
        EXPECT(w, KnPmmMdlClone(sh->buf, 0, (BUF_PAGES + 1) * P, &c), rcInvalidArgument);
        EXPECT(w, KnPmmMdlCreate(0, RW, &c), rcInvalidArgument);
        EXPECT(w, kosvmm_channel_send(sh->ch[0], RTL_NULL, 5), rcInvalidArgument);
        EXPECT(w, kosvmm_channel_send_handle(sh->ch[0], sh->buf, 0x800, RTL_NULL, 0), rcInvalidArgument);
        break;
    }
    case 4: {
        doing(w, "kosvmm_channel_peer_cred");
        kosvmm_peer_cred cred;
        if (EXPECT(w, kosvmm_channel_peer_cred(sh->ch[rnd(w, 2)], &cred), rcOk) && cred.pid != (int32_t)getpid())
            WFAIL(w, "thread %d: peer pid %d", w->id, cred.pid);
        if (kosvmm_channel_fd(sh->ch[0]) < 0)
            WFAIL(w, "thread %d: kosvmm_channel_fd < 0", w->id);
        break;
    }
    default: /* MDL-backed addresses refuse the private-memory transitions */
        for (int i = 0; i < MAXMAPS; i++) {
            mapping *m = &w->maps[i];
            if (!m->va)
                continue;
            doing(w, "transitions on an MDL mapping");
            EXPECT(w, KnVmCommit(m->va, P, 0), rcInvalidOperation);
            EXPECT(w, KnVmReset(m->va, m->n * P), rcInvalidOperation);
            EXPECT(w, KnVmProtect(m->va, P, VMM_FLAG_READ), rcInvalidOperation);
            break;
        }
        break;
    }
}

/* ---- the workers and the watchdog --------------------------------------------------------------- */

enum { OP_ALLOC, OP_RANGE, OP_UNMAP, OP_WRITE, OP_VERIFY, OP_FROM_VM, OP_HANDLES, OP_SHARED, OP_CHANNEL, OP_MISC,
       NOPS };
static void (*const op_fn[NOPS])(worker *) = {op_alloc, op_range, op_unmap, op_write, op_verify,
                                               op_from_vm, op_handles, op_shared_buffer, op_channel, op_misc};

/* Frees everything the worker still holds, checking it one last time. */
static void cleanup(worker *w)
{
    doing(w, "cleanup");
    for (int k = 0; k < MAXSLOTS; k++) {
        slot *s = &w->slots[k];
        if (!s->base)
            continue;
        for (size_t i = 0; i < s->n; i++)
            check_page(w, s, i);
        for (size_t i = 0; i < s->n;) {
            if (s->pg[i].state == FREE_) {
                i++;
                continue;
            }
            size_t lo, hi;
            run_of(s, i, &lo, &hi);
            EXPECT(w, KnVmUnmap(pva(s, lo), (hi - lo) * P), rcOk);
            i = hi;
        }
    }
    for (int i = 0; i < MAXMAPS; i++)
        if (w->maps[i].va) {
            check_cells(w, &w->maps[i]);
            EXPECT(w, KnVmUnmap(w->maps[i].va, w->maps[i].n * P), rcOk);
        }
    for (int i = 0; i < MAXH; i++)
        if (w->hs[i].h != INVALID_HANDLE)
            EXPECT(w, KnHandleClose(w->hs[i].h), rcOk);
}

static void *work(void *arg)
{
    worker *w = arg;
    shared_state *sh = w->sh;
    int total = 0;
    for (int i = 0; i < NOPS; i++)
        total += sh->weights[i];
    while (!atomic_load(&sh->stop) && w->errors == 0) {
        int r = (int)rnd(w, (unsigned)total), op = 0;
        while (r >= sh->weights[op])
            r -= sh->weights[op++];
        op_fn[op](w);
        w->ops[op]++;
        doing(w, "between operations");
    }
    cleanup(w);
    atomic_store(&w->done, 1);
    return NULL;
}

static void expect_stats_equal(const kosvmm_stats *a, const kosvmm_stats *b)
{
    ck_assert_uint_eq(a->regions, b->regions);
    ck_assert_uint_eq(a->reserved_bytes, b->reserved_bytes);
    ck_assert_uint_eq(a->committed_bytes, b->committed_bytes);
    ck_assert_uint_eq(a->lazy_bytes, b->lazy_bytes);
    ck_assert_uint_eq(a->locked_bytes, b->locked_bytes);
    ck_assert_uint_eq(a->pinned_bytes, b->pinned_bytes);
}

/* Watches the workers until they are all done: one without progress for STALL_SECONDS is stuck
 * (deadlock, or a fault nobody serves); the report names what each was doing. */
static void watch(shared_state *sh, double seconds)
{
    long last[NT];
    double since[NT], start = now_s();
    for (int i = 0; i < NT; i++)
        last[i] = -1, since[i] = start;
    for (;;) {
        usleep(50 * 1000);
        double t = now_s();
        int done = 0, failed = 0;
        for (int i = 0; i < NT; i++) {
            worker *w = &sh->w[i];
            done += atomic_load(&w->done);
            failed |= w->errors != 0; /* read racily on purpose: only to stop early */
            long p = atomic_load_explicit(&w->progress, memory_order_relaxed);
            if (p != last[i])
                last[i] = p, since[i] = t;
            if (!atomic_load(&w->done) && t - since[i] > STALL_SECONDS) {
                for (int k = 0; k < NT; k++)
                    fprintf(stderr, "thread %d: %s%s\n", k, atomic_load(&sh->w[k].doing),
                            atomic_load(&sh->w[k].done) ? " (done)" : "");
                ck_abort_msg("thread %d made no progress for %d s while doing %s: deadlock?", i, STALL_SECONDS,
                             atomic_load(&w->doing));
            }
        }
        if (done == NT)
            return;
        if (t - start >= seconds || failed)
            atomic_store(&sh->stop, 1);
    }
}

static void run_stress(const int weights[NOPS], int region_flags, size_t own)
{
    P = tu_page();
    tu_start_lazy_engine(); /* its thread, descriptors and ring exist before the baselines */
    kosvmm_lazy_config config0;
    ck_assert_uint_eq(kosvmm_get_lazy_config(&config0), rcOk);
    kosvmm_stats s0 = tu_stats();
    int fds0 = tu_fd_count();
    uint32_t handles0 = kvmm_handle_count();

    static shared_state sh; /* fork mode: one test per process, so static is private to the test */
    memset(&sh, 0, sizeof sh);
    memcpy(sh.weights, weights, sizeof sh.weights[0] * NOPS);
    sh.own = own;
    sh.region_flags = region_flags;
    sh.region = KnVmAllocate(RTL_NULL, NT * own * P, region_flags);
    ck_assert_ptr_nonnull(sh.region);
    ck_assert_uint_eq(KnPmmMdlCreate(BUF_PAGES * P, RW, &sh.buf), rcOk);
    ck_assert_uint_eq(kosvmm_channel_pair(&sh.ch[0], &sh.ch[1]), rcOk);

    /* A new seed each run (printed on failure; KOSVMM_STRESS_SEED replays one). Thread timing still
     * differs between runs, so a replay is likelier, not certain, to fail the same way. */
    const char *seed_env = getenv("KOSVMM_STRESS_SEED");
    unsigned seed = seed_env && *seed_env ? (unsigned)strtoul(seed_env, NULL, 0) : (unsigned)time(NULL);
    for (int i = 0; i < NT; i++) {
        worker *w = &sh.w[i];
        w->id = i;
        w->sh = &sh;
        w->seed = seed + (unsigned)i * 7919u;
        atomic_init(&w->doing, "starting");
        for (int k = 0; k < MAXH; k++)
            w->hs[k].h = INVALID_HANDLE;
        for (int k = 0; k < MAXSLOTS; k++) {
            w->slots[k].pg = calloc(k ? SLOT_PAGES : own, sizeof(page_m));
            ck_assert_ptr_nonnull(w->slots[k].pg);
        }
        slot *s = &w->slots[0];
        s->base = sh.region + (size_t)i * own * P;
        s->n = own;
        model_alloc(w, s->pg, own, region_flags);
        for (size_t k = 0; k < own; k++)
            s->pg[k].rid = 0; /* the shared region: neighbours split it, so its bounds are not ours to know */
    }
    for (int i = 0; i < NT; i++)
        ck_assert_int_eq(pthread_create(&sh.w[i].tid, NULL, work, &sh.w[i]), 0);
    watch(&sh, stress_seconds());
    long total[NOPS] = {0};
    for (int i = 0; i < NT; i++) {
        ck_assert_int_eq(pthread_join(sh.w[i].tid, NULL), 0);
        for (int k = 0; k < NOPS; k++)
            total[k] += sh.w[i].ops[k];
    }
    for (int i = 0; i < NT; i++)
        ck_assert_msg(sh.w[i].errors == 0, "%d error(s) in thread %d (KOSVMM_STRESS_SEED=%u), first: %s",
                      (int)sh.w[i].errors, i, seed, sh.w[i].msg);
    printf("stress: %ld alloc, %ld range, %ld unmap, %ld write, %ld verify, %ld from_vm, %ld handle, %ld buffer, "
           "%ld channel, %ld misc\n",
           total[0], total[1], total[2], total[3], total[4], total[5], total[6], total[7], total[8], total[9]);
    fflush(stdout); /* Check ends a forked test with _exit: stdio buffers would be lost */
    for (int k = 0; k < NOPS; k++)
        ck_assert_msg(!weights[k] || total[k] > 0, "operation %d never ran", k);

    ck_assert_uint_eq(kosvmm_channel_close(sh.ch[0]), rcOk);
    ck_assert_uint_eq(kosvmm_channel_close(sh.ch[1]), rcOk);
    ck_assert_uint_eq(KnHandleClose(sh.buf), rcOk);
    for (int i = 0; i < NT; i++)
        for (int k = 0; k < MAXSLOTS; k++)
            free(sh.w[i].slots[k].pg);
    ck_assert_uint_eq(kosvmm_set_lazy_config(&config0), rcOk);

    /* Everything freed: the counters, the handle table and the descriptors are where they started. */
    kosvmm_stats s1 = tu_stats();
    expect_stats_equal(&s0, &s1);
    /* The faults were the handler's to serve where it runs (not with userfaultfd blocked). */
    printf("stress: engine %s, %llu faults served by it\n", s0.lazy_engine == KOSVMM_ENGINE_UFFD ? "uffd" : "kernel",
           (unsigned long long)(s1.uffd_faults - s0.uffd_faults));
    if (s0.lazy_engine == KOSVMM_ENGINE_UFFD)
        ck_assert_uint_gt(s1.uffd_faults, s0.uffd_faults);
    fflush(stdout);
    ck_assert_uint_eq(kvmm_handle_count(), handles0);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
    ck_assert_int_eq(tu_fd_count(), fds0);
}

/*                                   alloc range unmap write verify from_vm handles shared channel misc */
static const int mixed_weights[NOPS] = {6, 20, 4, 16, 6, 3, 12, 12, 8, 8};
static const int storm_weights[NOPS] = {2, 20, 3, 40, 8, 1, 2, 8, 2, 3};

/* Every public call at once; the shared region is LOCKED (full commits, resets make lazy pages). */
START_TEST(mixed)
{
    run_stress(mixed_weights, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW, 16);
}
END_TEST

/* Mostly faults: streams over each thread's part of one big lazy region, whose neighbours commit,
 * decommit, reset, protect and unmap theirs meanwhile (a fault window may span several owners). */
START_TEST(lazy_storm)
{
    run_stress(storm_weights, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW, 96);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("stress");
    TCase *tc = tcase_create("threads");
    /* Well above the run time: the watchdog reports a stall first, this catches a hung cleanup. */
    tcase_set_timeout(tc, stress_seconds() + 2 * STALL_SECONDS + 60);
    tcase_add_test(tc, mixed);
    tcase_add_test(tc, lazy_storm);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
