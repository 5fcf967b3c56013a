/* SPDX-License-Identifier: MIT */
/* tests/test_badargs.c — table-driven bad-argument matrix over every public call: exact Retcode, and nothing changed. */
#include "testutil.h"

#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define RW   (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define RES  VMM_FLAG_RESERVE
#define COM  VMM_FLAG_COMMIT
#define LCK  VMM_FLAG_LOCKED
#define UNK31 ((int)0x80000000u)
#define UNK20 0x00100000

/*
 * The test environment, built afresh in every (forked) test, NS pages from s:
 *   s+0        low guard of A
 *   s+1..s+8   region A (LOW_GUARD, RESERVE|RW): 0-3 committed RW, 4 reserved (RW), 5 reserved (R),
 *              6 committed R, 7 reserved (RW)
 *   s+9..s+12  region B (HIGH_GUARD, RESERVE|COMMIT|LOCKED|RW), all committed, directly after A
 *   s+13       high guard of B
 *   s+14..s+17 free
 *   s+18       a Linux mapping kosvmm does not manage (RW, filled)
 *   s+19..s+23 free
 */
#define NS 24
enum { A_OFF = 1, B_OFF = 9, GLO_OFF = 0, GHI_OFF = 13, FREE_OFF = 14, FOREIGN_OFF = 18 };

static char *S; /* s of the current test */

static size_t P(void)
{
    return tu_page();
}

static char *spg(long i)
{
    return S + i * (long)P();
}

static void fill_page(void *page, unsigned seed)
{
    unsigned char *c = page;
    for (size_t i = 0; i < P(); i++)
        c[i] = (unsigned char)(seed * 29u + i * 13u + 5u);
}

static void build_env(void)
{
    tu_start_lazy_engine();
    char *s = KnVmAllocate(RTL_NULL, NS * P(), RES);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(KnVmUnmap(s, NS * P()), rcOk);
    S = s;
    char *a = KnVmAllocate(spg(A_OFF), 8 * P(), RES | RW | VMM_FLAG_LOW_GUARD);
    ck_assert_ptr_eq(a, spg(A_OFF));
    ck_assert_uint_eq(KnVmCommit(a, 4 * P(), LCK), rcOk);
    ck_assert_uint_eq(KnVmCommit(spg(A_OFF + 6), P(), LCK), rcOk);
    for (unsigned i = 0; i < 4; i++)
        fill_page(spg(A_OFF + i), i);
    fill_page(spg(A_OFF + 6), 6);
    ck_assert_uint_eq(KnVmProtect(spg(A_OFF + 6), P(), VMM_FLAG_READ), rcOk);
    ck_assert_uint_eq(KnVmProtect(spg(A_OFF + 5), P(), VMM_FLAG_READ), rcOk);
    char *b = KnVmAllocate(spg(B_OFF), 4 * P(), RES | COM | LCK | RW | VMM_FLAG_HIGH_GUARD);
    ck_assert_ptr_eq(b, spg(B_OFF));
    for (unsigned i = 0; i < 4; i++)
        fill_page(spg(B_OFF + i), 20 + i);
    void *f = mmap(spg(FOREIGN_OFF), P(), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    ck_assert_ptr_eq(f, spg(FOREIGN_OFF));
    fill_page(f, 99);
}

/* ---- snapshots ---------------------------------------------------------------------------- */

typedef struct snap {
    VmQueryInfo q[NS];
    char perms[NS][5];
    int mapped[NS];
    uint64_t sum[NS];
    kosvmm_stats st;
    long maps_lines;        /* lines of /proc/self/maps */
    unsigned long maps_bytes; /* bytes mapped, [heap] and [stack] excluded */
} snap;

static uint64_t checksum(const void *page)
{
    const unsigned char *c = page;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < P(); i++)
        h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

static void maps_totals(long *lines, unsigned long *bytes)
{
    FILE *m = fopen("/proc/self/maps", "re");
    ck_assert_ptr_nonnull(m);
    char line[512];
    *lines = 0;
    *bytes = 0;
    while (fgets(line, sizeof line, m)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) != 2)
            continue;
        if (strstr(line, "[heap]") || strstr(line, "[stack]"))
            continue;
        ++*lines;
        *bytes += hi - lo;
    }
    fclose(m);
}

static void take(snap *sn)
{
    memset(sn, 0, sizeof *sn);
    for (long i = 0; i < NS; i++) {
        ck_assert_uint_eq(KnVmQuery(spg(i), &sn->q[i]), rcOk);
        sn->mapped[i] = tu_maps_perms(spg(i), sn->perms[i]) == 0;
        if (sn->mapped[i] && sn->perms[i][0] == 'r')
            sn->sum[i] = checksum(spg(i));
    }
    ck_assert_uint_eq(kosvmm_get_stats(&sn->st), rcOk);
    maps_totals(&sn->maps_lines, &sn->maps_bytes);
}

static void same(const snap *x, const char *row)
{
    snap y;
    take(&y);
    for (long i = 0; i < NS; i++) {
        const VmQueryInfo *a = &x->q[i], *b = &y.q[i];
        ck_assert_msg(a->pageBase == b->pageBase && a->runSize == b->runSize && a->regionBase == b->regionBase &&
                          a->regionSize == b->regionSize && a->state == b->state && a->protection == b->protection &&
                          a->cache == b->cache && a->attributes == b->attributes &&
                          a->regionFlags == b->regionFlags,
                      "%s: KnVmQuery of page s+%ld changed (state %u->%u prot %u->%u attr %#x->%#x run %zu->%zu "
                      "region %p/%zu -> %p/%zu)",
                      row, i, a->state, b->state, a->protection, b->protection, a->attributes, b->attributes,
                      (size_t)a->runSize, (size_t)b->runSize, a->regionBase, (size_t)a->regionSize,
                      b->regionBase, (size_t)b->regionSize);
        ck_assert_msg(x->mapped[i] == y.mapped[i], "%s: page s+%ld mapped %d -> %d", row, i, x->mapped[i],
                      y.mapped[i]);
        if (x->mapped[i])
            ck_assert_msg(memcmp(x->perms[i], y.perms[i], 4) == 0, "%s: page s+%ld perms %.4s -> %.4s", row, i,
                          x->perms[i], y.perms[i]);
        ck_assert_msg(x->sum[i] == y.sum[i], "%s: contents of page s+%ld changed", row, i);
    }
    const kosvmm_stats *a = &x->st, *b = &y.st;
    ck_assert_msg(a->regions == b->regions && a->reserved_bytes == b->reserved_bytes &&
                      a->committed_bytes == b->committed_bytes && a->lazy_bytes == b->lazy_bytes &&
                      a->locked_bytes == b->locked_bytes && a->pinned_bytes == b->pinned_bytes &&
                      a->pin_refusals == b->pin_refusals && a->kernel_refusals == b->kernel_refusals &&
                      a->guard_mechanism == b->guard_mechanism,
                  "%s: kosvmm_get_stats changed (regions %llu->%llu reserved %llu->%llu committed %llu->%llu "
                  "pinned %llu->%llu)",
                  row, (unsigned long long)a->regions, (unsigned long long)b->regions,
                  (unsigned long long)a->reserved_bytes, (unsigned long long)b->reserved_bytes,
                  (unsigned long long)a->committed_bytes, (unsigned long long)b->committed_bytes,
                  (unsigned long long)a->pinned_bytes, (unsigned long long)b->pinned_bytes);
#ifndef __SANITIZE_ADDRESS__
    /* Process-wide totals catch a mapping leaked anywhere. Under ASan its allocator maps and
     * unmaps on its own schedule, so there only the per-page checks above and below apply. */
    ck_assert_msg(x->maps_lines == y.maps_lines && x->maps_bytes == y.maps_bytes,
                  "%s: /proc/self/maps changed (%ld lines/%lu bytes -> %ld lines/%lu bytes)", row, x->maps_lines,
                  x->maps_bytes, y.maps_lines, y.maps_bytes);
#endif
}

/* ---- addresses and sizes of the rows ------------------------------------------------------ */

enum ak { AK_A, AK_B, AK_GLO, AK_GHI, AK_FREE, AK_FOREIGN, AK_NULL, AK_TOP, AK_STACK };
enum sk { SZ_PAGES, SZ_MAX, SZ_HUGE };

static void *addr_of(enum ak k, long pages, long bytes)
{
    uintptr_t base;
    char local;
    switch (k) {
    case AK_A: base = (uintptr_t)spg(A_OFF); break;
    case AK_B: base = (uintptr_t)spg(B_OFF); break;
    case AK_GLO: base = (uintptr_t)spg(GLO_OFF); break;
    case AK_GHI: base = (uintptr_t)spg(GHI_OFF); break;
    case AK_FREE: base = (uintptr_t)spg(FREE_OFF); break;
    case AK_FOREIGN: base = (uintptr_t)spg(FOREIGN_OFF); break;
    case AK_NULL: base = 0; break;
    case AK_TOP: base = UINTPTR_MAX - (P() - 1); break; /* the highest page of the address space */
    case AK_STACK: base = (uintptr_t)&local & ~(uintptr_t)(P() - 1); break;
    default: base = 0; break;
    }
    return (void *)(base + (uintptr_t)(pages * (long)P()) + (uintptr_t)bytes);
}

static size_t size_of(enum sk k, long pages, long bytes)
{
    switch (k) {
    case SZ_MAX: return SIZE_MAX & ~(P() - 1);          /* page multiple; any addr > 0 overflows */
    case SZ_HUGE: return (size_t)1 << 40;               /* far past any region, no overflow */
    default: return (size_t)pages * P() + (size_t)bytes;
    }
}

static const char *rc_name(Retcode rc)
{
    switch (rc) {
    case rcOk: return "rcOk";
    case rcInvalidArgument: return "rcInvalidArgument";
    case rcOutOfMemory: return "rcOutOfMemory";
    case rcResourceNotFound: return "rcResourceNotFound";
    case rcAlreadyExists: return "rcAlreadyExists";
    case rcInvalidOperation: return "rcInvalidOperation";
    case rcHandleRevoked: return "rcHandleRevoked";
    default: return "(other)";
    }
}

#define CHECK_RC(row, got, want)                                                                          \
    ck_assert_msg((got) == (want), "%s: returned %s (%#x), expected %s", (row), rc_name(got), (unsigned)(got), \
                  rc_name(want))

/* ---- range operations: Commit, Decommit, Reset, Protect, Unmap -------------------------------- */

enum op { OP_COMMIT, OP_DECOMMIT, OP_RESET, OP_PROTECT, OP_UNMAP, N_OPS };
static const char *const op_names[N_OPS] = { "KnVmCommit", "KnVmDecommit", "KnVmReset", "KnVmProtect", "KnVmUnmap" };

static Retcode call_range(enum op op, void *addr, size_t size, int flags)
{
    switch (op) {
    case OP_COMMIT: return KnVmCommit(addr, size, flags);
    case OP_DECOMMIT: return KnVmDecommit(addr, size);
    case OP_RESET: return KnVmReset(addr, size);
    case OP_PROTECT: return KnVmProtect(addr, size, flags);
    case OP_UNMAP: return KnVmUnmap(addr, size);
    default: return rcFail;
    }
}

typedef struct range_row {
    const char *name;
    enum ak ak;
    long apages, abytes;
    enum sk sk;
    long spages, sbytes;
    Retcode want;
} range_row;

static const range_row range_rows[] = {
    { "unaligned addr (+1)", AK_A, 0, 1, SZ_PAGES, 1, 0, rcInvalidArgument },
    { "unaligned addr (+100)", AK_A, 1, 100, SZ_PAGES, 1, 0, rcInvalidArgument },
    { "unaligned size (page+1)", AK_A, 0, 0, SZ_PAGES, 1, 1, rcInvalidArgument },
    { "unaligned size (1 byte)", AK_A, 0, 0, SZ_PAGES, 0, 1, rcInvalidArgument },
    { "unaligned size (2 pages-1)", AK_B, 0, 0, SZ_PAGES, 2, -1, rcInvalidArgument },
    { "size 0", AK_A, 0, 0, SZ_PAGES, 0, 0, rcInvalidArgument },
    { "size 0 in B", AK_B, 1, 0, SZ_PAGES, 0, 0, rcInvalidArgument },
    { "size 0 at a free address (checked first)", AK_FREE, 0, 0, SZ_PAGES, 0, 0, rcInvalidArgument },
    { "unaligned free address (checked first)", AK_FREE, 0, 1, SZ_PAGES, 1, 0, rcInvalidArgument },
    { "unaligned NULL+1", AK_NULL, 0, 1, SZ_PAGES, 1, 0, rcInvalidArgument },
    { "addr+size overflows (top page + 2 pages)", AK_TOP, 0, 0, SZ_PAGES, 2, 0, rcInvalidArgument },
    { "addr+size overflows (A + max size)", AK_A, 0, 0, SZ_MAX, 0, 0, rcInvalidArgument },
    { "addr+size overflows (free + max size)", AK_FREE, 0, 0, SZ_MAX, 0, 0, rcInvalidArgument },
    { "free address", AK_FREE, 0, 0, SZ_PAGES, 1, 0, rcResourceNotFound },
    { "free address, 3 pages", AK_FREE, 1, 0, SZ_PAGES, 3, 0, rcResourceNotFound },
    { "NULL address", AK_NULL, 0, 0, SZ_PAGES, 1, 0, rcResourceNotFound },
    { "Linux mapping not made by kosvmm", AK_FOREIGN, 0, 0, SZ_PAGES, 1, 0, rcResourceNotFound },
    { "the stack", AK_STACK, 0, 0, SZ_PAGES, 1, 0, rcResourceNotFound },
    { "low guard page", AK_GLO, 0, 0, SZ_PAGES, 1, 0, rcResourceNotFound },
    { "from the low guard into A", AK_GLO, 0, 0, SZ_PAGES, 2, 0, rcResourceNotFound },
    { "high guard page", AK_GHI, 0, 0, SZ_PAGES, 1, 0, rcResourceNotFound },
    { "from the high guard into free space", AK_GHI, 0, 0, SZ_PAGES, 2, 0, rcResourceNotFound },
    { "free page just before the foreign mapping", AK_FOREIGN, -1, 0, SZ_PAGES, 2, 0, rcResourceNotFound },
    { "past the end of B into its guard", AK_B, 2, 0, SZ_PAGES, 3, 0, rcInvalidArgument },
    { "B plus guard plus free space", AK_B, 3, 0, SZ_PAGES, 3, 0, rcInvalidArgument },
    { "whole B plus one page", AK_B, 0, 0, SZ_PAGES, 5, 0, rcInvalidArgument },
    { "huge size from A", AK_A, 0, 0, SZ_HUGE, 0, 0, rcInvalidArgument },
    { "spanning A and B", AK_A, 6, 0, SZ_PAGES, 4, 0, rcInvalidArgument },
    { "last page of A and first of B", AK_A, 7, 0, SZ_PAGES, 2, 0, rcInvalidArgument },
    { "whole A plus one page (into B)", AK_A, 0, 0, SZ_PAGES, 9, 0, rcInvalidArgument },
    { "A and B whole", AK_A, 0, 0, SZ_PAGES, 12, 0, rcInvalidArgument },
};
#define N_RANGE_ROWS ((int)(sizeof range_rows / sizeof range_rows[0]))

START_TEST(test_range_rows)
{
    enum op op = (enum op)(_i / N_RANGE_ROWS);
    const range_row *r = &range_rows[_i % N_RANGE_ROWS];
    char row[256];
    snprintf(row, sizeof row, "%s: %s", op_names[op], r->name);

    build_env();
    snap before;
    take(&before);
    int flags = op == OP_PROTECT ? VMM_FLAG_READ : LCK;
    Retcode rc = call_range(op, addr_of(r->ak, r->apages, r->abytes), size_of(r->sk, r->spages, r->sbytes), flags);
    CHECK_RC(row, rc, r->want);
    same(&before, row);
}
END_TEST

/* Calls documented to succeed without changing anything. */
typedef struct noop_row {
    const char *name;
    enum op op;
    enum ak ak;
    long apages, spages;
    int flags;
} noop_row;

static const noop_row noop_rows[] = {
    { "decommit reserved pages", OP_DECOMMIT, AK_A, 4, 2, 0 },
    { "decommit the last (reserved) page of A", OP_DECOMMIT, AK_A, 7, 1, 0 },
    { "commit committed pages, junk flags (flags ignored)", OP_COMMIT, AK_A, 0, 4, UNK31 },
    { "commit a committed read-only page, flags 0", OP_COMMIT, AK_A, 6, 1, 0 },
    { "commit a fully committed LOCKED region again", OP_COMMIT, AK_B, 0, 4, LCK },
    { "protect with the protection it has", OP_PROTECT, AK_A, 0, 4, RW },
    { "protect a reserved page with its recorded protection", OP_PROTECT, AK_A, 5, 1, VMM_FLAG_READ },
};
#define N_NOOP_ROWS ((int)(sizeof noop_rows / sizeof noop_rows[0]))

START_TEST(test_noop_rows)
{
    const noop_row *r = &noop_rows[_i];
    build_env();
    snap before;
    take(&before);
    Retcode rc = call_range(r->op, addr_of(r->ak, r->apages, 0), (size_t)r->spages * P(), r->flags);
    CHECK_RC(r->name, rc, rcOk);
    same(&before, r->name);
}
END_TEST

/* ---- KnVmProtect: bad newFlags ------------------------------------------------------------- */

static const int bad_prot[] = {
    VMM_FLAG_WRITE, VMM_FLAG_EXECUTE, VMM_FLAG_WRITE | VMM_FLAG_EXECUTE,
    RES, COM, LCK, VMM_FLAG_READ | RES, VMM_FLAG_READ | COM, RW | LCK, RW | RES | COM | LCK,
    VMM_FLAG_WRITE_BACK, VMM_FLAG_READ | VMM_FLAG_WRITE_BACK, RW | VMM_FLAG_CACHE_DISABLE,
    VMM_FLAG_READ | VMM_FLAG_LOW_GUARD, VMM_FLAG_READ | VMM_FLAG_HIGH_GUARD, RW | VMM_FLAG_GROW_DOWN,
    UNK31, VMM_FLAG_READ | UNK31, UNK20, RW | UNK20, 0x8, VMM_FLAG_READ | 0x8, 0x80, 0x8000, -1,
    VMM_FLAG_WRITE | LCK, VMM_FLAG_EXECUTE | COM | LCK,
};
#define N_BAD_PROT ((int)(sizeof bad_prot / sizeof bad_prot[0]))

START_TEST(test_protect_bad_flags)
{
    int flags = bad_prot[_i / 3];
    static const long pages[3] = { 0, 4, 6 }; /* committed RW, reserved, committed R */
    long p = pages[_i % 3];
    char row[128];
    snprintf(row, sizeof row, "KnVmProtect(A+%ld pages, 1 page, %#x)", p, (unsigned)flags);
    build_env();
    snap before;
    take(&before);
    CHECK_RC(row, KnVmProtect(addr_of(AK_A, p, 0), P(), flags), rcInvalidArgument);
    same(&before, row);
}
END_TEST

/* ---- KnVmAllocate --------------------------------------------------------------------------- */

typedef struct alloc_row {
    const char *name;
    enum ak ak;
    long apages, abytes;
    enum sk sk;
    long spages, sbytes;
    int flags;
    Retcode want;
} alloc_row;

#define WC VMM_FLAG_WRITE_COMBINE
#define WB VMM_FLAG_WRITE_BACK
#define WT VMM_FLAG_WRITE_THROUGH
#define CD VMM_FLAG_CACHE_DISABLE
#define OK_FLAGS (RES | RW)

static const alloc_row alloc_rows[] = {
    /* sizes and addresses */
    { "size 0", AK_NULL, 0, 0, SZ_PAGES, 0, 0, OK_FLAGS, rcInvalidArgument },
    { "size 0, COMMIT|LOCKED", AK_NULL, 0, 0, SZ_PAGES, 0, 0, OK_FLAGS | COM | LCK, rcInvalidArgument },
    { "size 0 at a fixed free address", AK_FREE, 0, 0, SZ_PAGES, 0, 0, OK_FLAGS, rcInvalidArgument },
    { "size 1 byte", AK_NULL, 0, 0, SZ_PAGES, 0, 1, OK_FLAGS, rcInvalidArgument },
    { "size page+1", AK_NULL, 0, 0, SZ_PAGES, 1, 1, OK_FLAGS, rcInvalidArgument },
    { "size page-1, COMMIT", AK_NULL, 0, 0, SZ_PAGES, 1, -1, OK_FLAGS | COM, rcInvalidArgument },
    { "unaligned fixed addr (+1)", AK_FREE, 0, 1, SZ_PAGES, 1, 0, OK_FLAGS, rcInvalidArgument },
    { "unaligned fixed addr (+100), COMMIT", AK_FREE, 1, 100, SZ_PAGES, 1, 0, OK_FLAGS | COM, rcInvalidArgument },
    { "unaligned addr inside A", AK_A, 0, 8, SZ_PAGES, 1, 0, OK_FLAGS, rcInvalidArgument },
    { "addr+size overflows (top page + 2 pages)", AK_TOP, 0, 0, SZ_PAGES, 2, 0, OK_FLAGS, rcInvalidArgument },
    { "addr+size overflows (free + max size)", AK_FREE, 0, 0, SZ_MAX, 0, 0, OK_FLAGS, rcInvalidArgument },
    /* flags */
    { "RESERVE missing: 0", AK_NULL, 0, 0, SZ_PAGES, 1, 0, 0, rcInvalidArgument },
    { "RESERVE missing: RW", AK_NULL, 0, 0, SZ_PAGES, 1, 0, RW, rcInvalidArgument },
    { "RESERVE missing: COMMIT|RW", AK_NULL, 0, 0, SZ_PAGES, 1, 0, COM | RW, rcInvalidArgument },
    { "RESERVE missing: LOCKED|RW", AK_NULL, 0, 0, SZ_PAGES, 1, 0, LCK | RW, rcInvalidArgument },
    { "RESERVE missing: COMMIT|LOCKED|RW", AK_NULL, 0, 0, SZ_PAGES, 1, 0, COM | LCK | RW, rcInvalidArgument },
    { "RESERVE missing, fixed free addr", AK_FREE, 0, 0, SZ_PAGES, 1, 0, COM | RW, rcInvalidArgument },
    { "unknown bit 31", AK_NULL, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | UNK31, rcInvalidArgument },
    { "unknown bit 20", AK_NULL, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | UNK20, rcInvalidArgument },
    { "unknown bit 3", AK_NULL, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | 0x8, rcInvalidArgument },
    { "unknown bit 7", AK_NULL, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | 0x80, rcInvalidArgument },
    { "unknown bit 15", AK_NULL, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | 0x8000, rcInvalidArgument },
    { "unknown bit 16, COMMIT|LOCKED", AK_NULL, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | COM | LCK | 0x10000,
      rcInvalidArgument },
    { "all bits (-1)", AK_NULL, 0, 0, SZ_PAGES, 1, 0, -1, rcInvalidArgument },
    { "unknown bit 20 at a fixed free addr", AK_FREE, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | UNK20, rcInvalidArgument },
    { "WRITE alone", AK_NULL, 0, 0, SZ_PAGES, 1, 0, RES | VMM_FLAG_WRITE, rcInvalidArgument },
    { "EXECUTE alone", AK_NULL, 0, 0, SZ_PAGES, 1, 0, RES | VMM_FLAG_EXECUTE, rcInvalidArgument },
    { "WRITE|EXECUTE", AK_NULL, 0, 0, SZ_PAGES, 1, 0, RES | VMM_FLAG_WRITE | VMM_FLAG_EXECUTE, rcInvalidArgument },
    { "WRITE alone, COMMIT|LOCKED", AK_NULL, 0, 0, SZ_PAGES, 1, 0, RES | COM | LCK | VMM_FLAG_WRITE,
      rcInvalidArgument },
    { "EXECUTE alone, LOCKED", AK_NULL, 0, 0, SZ_PAGES, 1, 0, RES | LCK | VMM_FLAG_EXECUTE, rcInvalidArgument },
    { "WRITE|EXECUTE, COMMIT", AK_NULL, 0, 0, SZ_PAGES, 1, 0, RES | COM | VMM_FLAG_WRITE | VMM_FLAG_EXECUTE,
      rcInvalidArgument },
    { "WRITE alone, guards", AK_NULL, 0, 0, SZ_PAGES, 1, 0,
      RES | VMM_FLAG_WRITE | VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD, rcInvalidArgument },
    { "WRITE_BACK|WRITE_THROUGH", AK_NULL, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | WB | WT, rcInvalidArgument },
    { "WRITE_BACK|WRITE_COMBINE", AK_NULL, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | WB | WC, rcInvalidArgument },
    { "WRITE_BACK|CACHE_DISABLE", AK_NULL, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | WB | CD, rcInvalidArgument },
    { "WRITE_THROUGH|WRITE_COMBINE", AK_NULL, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | WT | WC, rcInvalidArgument },
    { "WRITE_THROUGH|CACHE_DISABLE", AK_NULL, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | WT | CD, rcInvalidArgument },
    { "WRITE_COMBINE|CACHE_DISABLE, COMMIT|LOCKED", AK_NULL, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | COM | LCK | WC | CD,
      rcInvalidArgument },
    { "three cache modes, LOCKED", AK_NULL, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | LCK | WB | WT | CD, rcInvalidArgument },
    { "CACHE_MASK", AK_NULL, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | VMM_FLAG_CACHE_MASK, rcInvalidArgument },
    { "bad flags at an occupied fixed addr (flags checked first)", AK_A, 0, 0, SZ_PAGES, 1, 0,
      RES | VMM_FLAG_WRITE, rcInvalidArgument },
    /* occupied fixed addresses */
    { "fixed at A", AK_A, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS, rcAlreadyExists },
    { "fixed inside A, COMMIT|LOCKED", AK_A, 2, 0, SZ_PAGES, 4, 0, OK_FLAGS | COM | LCK, rcAlreadyExists },
    { "fixed over A's reserved pages", AK_A, 4, 0, SZ_PAGES, 2, 0, OK_FLAGS, rcAlreadyExists },
    { "fixed at B", AK_B, 0, 0, SZ_PAGES, 4, 0, OK_FLAGS, rcAlreadyExists },
    { "fixed at A's low guard", AK_GLO, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS, rcAlreadyExists },
    { "fixed at B's high guard", AK_GHI, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS, rcAlreadyExists },
    { "fixed at the foreign mapping", AK_FOREIGN, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS, rcAlreadyExists },
    { "fixed free range running into the foreign mapping", AK_FREE, 0, 0, SZ_PAGES, 5, 0, OK_FLAGS | COM,
      rcAlreadyExists },
    { "fixed free, HIGH_GUARD on the foreign mapping", AK_FREE, 1, 0, SZ_PAGES, 3, 0,
      OK_FLAGS | VMM_FLAG_HIGH_GUARD, rcAlreadyExists },
    { "fixed free, LOW_GUARD on B's high guard", AK_FREE, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS | VMM_FLAG_LOW_GUARD,
      rcAlreadyExists },
    { "fixed free, LOW_GUARD on the foreign mapping", AK_FOREIGN, 1, 0, SZ_PAGES, 1, 0,
      OK_FLAGS | VMM_FLAG_LOW_GUARD, rcAlreadyExists },
    { "fixed at the stack", AK_STACK, 0, 0, SZ_PAGES, 1, 0, OK_FLAGS, rcAlreadyExists },
    /* the kernel refuses */
    { "beyond the user address space (fixed)", AK_TOP, -16, 0, SZ_PAGES, 1, 0, OK_FLAGS, rcOutOfMemory },
    { "2^62 bytes", AK_NULL, 0, 0, SZ_PAGES, 0, (long)((size_t)1 << 62), OK_FLAGS, rcOutOfMemory },
};
#define N_ALLOC_ROWS ((int)(sizeof alloc_rows / sizeof alloc_rows[0]))

/* Leaves kosvmm_last_error() at something other than `not` by a failing call that changes nothing. */
static void prime_last_error(Retcode not)
{
    if (not == rcInvalidArgument) {
        ck_assert_ptr_null(KnVmAllocate(spg(A_OFF), P(), RES)); /* rcAlreadyExists */
        ck_assert_uint_eq(kosvmm_last_error(), rcAlreadyExists);
    } else {
        ck_assert_ptr_null(KnVmAllocate(RTL_NULL, 0, RES));
        ck_assert_uint_eq(kosvmm_last_error(), rcInvalidArgument);
    }
}

START_TEST(test_alloc_rows)
{
    const alloc_row *r = &alloc_rows[_i];
    char row[256];
    snprintf(row, sizeof row, "KnVmAllocate: %s", r->name);
    build_env();
    prime_last_error(r->want);
    snap before;
    take(&before);
    void *p = KnVmAllocate(addr_of(r->ak, r->apages, r->abytes), size_of(r->sk, r->spages, r->sbytes), r->flags);
    ck_assert_msg(p == RTL_NULL, "%s: returned %p, expected RTL_NULL", row, p);
    CHECK_RC(row, kosvmm_last_error(), r->want);
    same(&before, row);
}
END_TEST

/* Every combination of protection (8) x RESERVE/COMMIT/LOCKED (8): LOCKED with everything. */
START_TEST(test_alloc_flag_matrix)
{
    int prot = _i & 7;
    int flags = prot | ((_i >> 3) & 1 ? RES : 0) | ((_i >> 4) & 1 ? COM : 0) | ((_i >> 5) & 1 ? LCK : 0);
    int forbidden = prot == VMM_FLAG_WRITE || prot == VMM_FLAG_EXECUTE || prot == (VMM_FLAG_WRITE | VMM_FLAG_EXECUTE);
    int valid = (flags & RES) && !forbidden;
    char row[128];
    snprintf(row, sizeof row, "KnVmAllocate(NULL, 2 pages, %#x)", (unsigned)flags);

    build_env();
    prime_last_error(valid ? rcOk : rcInvalidArgument);
    snap before;
    take(&before);
    char *p = KnVmAllocate(RTL_NULL, 2 * P(), flags);
    if (!valid) {
        ck_assert_msg(p == RTL_NULL, "%s: returned %p, expected RTL_NULL", row, (void *)p);
        CHECK_RC(row, kosvmm_last_error(), rcInvalidArgument);
        same(&before, row);
        return;
    }
    ck_assert_msg(p != RTL_NULL, "%s failed with %s", row, rc_name(kosvmm_last_error()));
    CHECK_RC(row, kosvmm_last_error(), rcOk);
    VmQueryInfo qi;
    ck_assert_uint_eq(KnVmQuery(p + P(), &qi), rcOk);
    ck_assert_ptr_eq(qi.regionBase, p);
    ck_assert_uint_eq(qi.regionSize, 2 * P());
    ck_assert_uint_eq(qi.protection, (unsigned)prot);
    ck_assert_uint_eq(qi.regionFlags, (unsigned)flags);
    ck_assert_uint_eq(qi.cache, 0);
    char perms[5];
    ck_assert_int_eq(tu_maps_perms(p, perms), 0);
    if (flags & COM) {
        ck_assert_uint_eq(qi.state, VMM_PAGE_STATE_COMMITTED);
        if (flags & LCK) {
            ck_assert_uint_ne(qi.attributes & VMM_PAGE_ATTR_LOCKED, 0);
            ck_assert_int_eq(tu_resident_pages(p, 2 * P()), 2);
        } else {
            ck_assert_uint_ne(qi.attributes & VMM_PAGE_ATTR_LAZY, 0);
        }
        char want[5] = "---p";
        if (prot & VMM_FLAG_READ)
            want[0] = 'r';
        if (prot & VMM_FLAG_WRITE)
            want[1] = 'w';
        if (prot & VMM_FLAG_EXECUTE)
            want[2] = 'x';
        ck_assert_msg(memcmp(perms, want, 4) == 0, "%s: maps %.4s, expected %s", row, perms, want);
    } else {
        ck_assert_uint_eq(qi.state, VMM_PAGE_STATE_RESERVED);
        ck_assert_msg(memcmp(perms, "---p", 4) == 0, "%s: maps %.4s, expected ---p", row, perms);
    }
    ck_assert_uint_eq(KnVmUnmap(p, 2 * P()), rcOk);
    same(&before, row);
}
END_TEST

/* Every subset of the four cache modes, plain and COMMIT|LOCKED: at most one is allowed. */
START_TEST(test_alloc_cache_matrix)
{
    static const int modes[4] = { WB, WT, WC, CD };
    int cache = 0, n = 0;
    for (int b = 0; b < 4; b++)
        if (_i & (1 << b)) {
            cache |= modes[b];
            n++;
        }
    int flags = RES | RW | cache | (_i & 16 ? COM | LCK : 0);
    char row[128];
    snprintf(row, sizeof row, "KnVmAllocate(NULL, 1 page, %#x)", (unsigned)flags);
    build_env();
    prime_last_error(n > 1 ? rcInvalidArgument : rcOk);
    snap before;
    take(&before);
    void *p = KnVmAllocate(RTL_NULL, P(), flags);
    if (n > 1) {
        ck_assert_msg(p == RTL_NULL, "%s: returned %p, expected RTL_NULL", row, p);
        CHECK_RC(row, kosvmm_last_error(), rcInvalidArgument);
    } else {
        ck_assert_msg(p != RTL_NULL, "%s failed with %s", row, rc_name(kosvmm_last_error()));
        CHECK_RC(row, kosvmm_last_error(), rcOk);
        VmQueryInfo qi;
        ck_assert_uint_eq(KnVmQuery(p, &qi), rcOk);
        ck_assert_uint_eq(qi.cache, (unsigned)cache);
        ck_assert_uint_eq(KnVmUnmap(p, P()), rcOk);
    }
    same(&before, row);
}
END_TEST

/* ---- KnVmQuery, kosvmm_get_stats ---------------------------------------------------------- */

static const struct { enum ak ak; long pages, bytes; } query_null_rows[] = {
    { AK_A, 0, 0 }, { AK_A, 4, 0 }, { AK_A, 6, 123 }, { AK_B, 0, 0 }, { AK_GLO, 0, 0 }, { AK_GHI, 0, 0 },
    { AK_FREE, 0, 0 }, { AK_FOREIGN, 0, 0 }, { AK_NULL, 0, 0 }, { AK_TOP, 0, 0 },
};
#define N_QUERY_NULL ((int)(sizeof query_null_rows / sizeof query_null_rows[0]))

START_TEST(test_query_null_info)
{
    char row[64];
    snprintf(row, sizeof row, "KnVmQuery(row %d, NULL)", _i);
    build_env();
    snap before;
    take(&before);
    CHECK_RC(row, KnVmQuery(addr_of(query_null_rows[_i].ak, query_null_rows[_i].pages, query_null_rows[_i].bytes),
                            RTL_NULL),
             rcInvalidArgument);
    same(&before, row);
}
END_TEST

/* Odd but valid addresses: rcOk and a sensible answer, nothing changed. */
START_TEST(test_query_odd_addresses)
{
    build_env();
    snap before;
    take(&before);
    VmQueryInfo qi;
    static const enum ak free_kinds[] = { AK_NULL, AK_TOP, AK_FREE, AK_FOREIGN, AK_STACK };
    for (unsigned k = 0; k < sizeof free_kinds / sizeof free_kinds[0]; k++) {
        char *va = addr_of(free_kinds[k], 0, (long)P() - 1); /* last byte of the page */
        memset(&qi, 0x5A, sizeof qi);
        ck_assert_uint_eq(KnVmQuery(va, &qi), rcOk);
        ck_assert_msg(qi.state == VMM_PAGE_STATE_FREE, "kind %u: state %u", k, qi.state);
        ck_assert_ptr_null(qi.regionBase);
        ck_assert_ptr_eq(qi.pageBase, addr_of(free_kinds[k], 0, 0));
        ck_assert_uint_eq(qi.protection, 0);
    }
    /* UINTPTR_MAX itself. */
    ck_assert_uint_eq(KnVmQuery((void *)UINTPTR_MAX, &qi), rcOk);
    ck_assert_uint_eq(qi.state, VMM_PAGE_STATE_FREE);
    ck_assert_ptr_eq(qi.pageBase, addr_of(AK_TOP, 0, 0));
    /* Guard pages. */
    static const enum ak guard_kinds[] = { AK_GLO, AK_GHI };
    for (unsigned k = 0; k < 2; k++) {
        ck_assert_uint_eq(KnVmQuery(addr_of(guard_kinds[k], 0, 77), &qi), rcOk);
        ck_assert_uint_eq(qi.state, VMM_PAGE_STATE_RESERVED);
        ck_assert_uint_ne(qi.attributes & VMM_PAGE_ATTR_GUARD, 0);
        ck_assert_uint_eq(qi.protection, 0);
        ck_assert_uint_eq(qi.runSize, P());
        ck_assert_ptr_eq(qi.pageBase, addr_of(guard_kinds[k], 0, 0));
    }
    /* Unaligned addresses inside A and B. */
    ck_assert_uint_eq(KnVmQuery(addr_of(AK_A, 5, 1), &qi), rcOk);
    ck_assert_uint_eq(qi.state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(qi.protection, VMM_FLAG_READ);
    ck_assert_ptr_eq(qi.regionBase, addr_of(AK_A, 0, 0));
    ck_assert_uint_eq(qi.regionSize, 8 * P());
    ck_assert_uint_eq(KnVmQuery(addr_of(AK_B, 3, (long)P() - 1), &qi), rcOk);
    ck_assert_uint_eq(qi.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_ptr_eq(qi.regionBase, addr_of(AK_B, 0, 0));
    ck_assert_uint_eq(qi.regionSize, 4 * P());
    same(&before, "KnVmQuery of odd addresses");
}
END_TEST

START_TEST(test_stats_null)
{
    build_env();
    snap before;
    take(&before);
    CHECK_RC("kosvmm_get_stats(NULL)", kosvmm_get_stats(RTL_NULL), rcInvalidArgument);
    same(&before, "kosvmm_get_stats(NULL)");
}
END_TEST

/* ---- KnHandleClose / KnHandleRevoke: no handle can exist yet, so every value is invalid ------ */

static Handle handle_value(int i)
{
    static const Handle fixed[] = {
        INVALID_HANDLE, 0, 1, 2, 3, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFEu, 0x00010001u, 0x00010000u,
        0x12345678u, 0xDEADBEEFu, 0x0000FFFFu, 0xFFFF0000u,
    };
    const int nfixed = (int)(sizeof fixed / sizeof fixed[0]);
    if (i < nfixed)
        return fixed[i];
    /* Forged values from a fixed-seed generator, reproducible. */
    uint32_t x = 2463534242u + (uint32_t)i * 2654435761u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}
#define N_HANDLES 64

START_TEST(test_handle_close_invalid)
{
    build_env();
    snap before;
    take(&before);
    for (int i = 0; i < N_HANDLES; i++) {
        char row[64];
        snprintf(row, sizeof row, "KnHandleClose(%#x)", (unsigned)handle_value(i));
        CHECK_RC(row, KnHandleClose(handle_value(i)), rcInvalidArgument);
        CHECK_RC(row, KnHandleClose(handle_value(i)), rcInvalidArgument); /* and again */
    }
    same(&before, "KnHandleClose");
}
END_TEST

START_TEST(test_handle_revoke_invalid)
{
    build_env();
    snap before;
    take(&before);
    for (int i = 0; i < N_HANDLES; i++) {
        char row[64];
        snprintf(row, sizeof row, "KnHandleRevoke(%#x)", (unsigned)handle_value(i));
        CHECK_RC(row, KnHandleRevoke(handle_value(i)), rcInvalidArgument);
        CHECK_RC(row, KnHandleRevoke(handle_value(i)), rcInvalidArgument); /* never "already revoked" */
        CHECK_RC(row, KnHandleClose(handle_value(i)), rcInvalidArgument);
    }
    same(&before, "KnHandleRevoke");
}
END_TEST

/* The environment itself is what the rows assume (guards the meaning of every row above). */
START_TEST(test_environment)
{
    build_env();
    VmQueryInfo qi;
    static const unsigned state[8] = { 2, 2, 2, 2, 1, 1, 2, 1 };
    static const unsigned prot[8] = { RW, RW, RW, RW, RW, VMM_FLAG_READ, VMM_FLAG_READ, RW };
    for (long i = 0; i < 8; i++) {
        ck_assert_uint_eq(KnVmQuery(spg(A_OFF + i), &qi), rcOk);
        ck_assert_uint_eq(qi.state, state[i]);
        ck_assert_uint_eq(qi.protection, prot[i]);
        ck_assert_ptr_eq(qi.regionBase, spg(A_OFF));
    }
    for (long i = 0; i < 4; i++) {
        ck_assert_uint_eq(KnVmQuery(spg(B_OFF + i), &qi), rcOk);
        ck_assert_uint_eq(qi.state, VMM_PAGE_STATE_COMMITTED);
        ck_assert_ptr_eq(qi.regionBase, spg(B_OFF));
    }
    for (long i = FREE_OFF; i < NS; i++) {
        ck_assert_uint_eq(KnVmQuery(spg(i), &qi), rcOk);
        ck_assert_uint_eq(qi.state, VMM_PAGE_STATE_FREE);
        ck_assert_int_eq(tu_is_mapped(spg(i)), i == FOREIGN_OFF);
    }
    ck_assert(tu_is_mapped(spg(GLO_OFF)));
    ck_assert(tu_is_mapped(spg(GHI_OFF)));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("badargs");

    TCase *tc = tcase_create("environment");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_environment);
    suite_add_tcase(s, tc);

    tc = tcase_create("ranges");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_range_rows, 0, N_OPS * N_RANGE_ROWS);
    tcase_add_loop_test(tc, test_noop_rows, 0, N_NOOP_ROWS);
    tcase_add_loop_test(tc, test_protect_bad_flags, 0, 3 * N_BAD_PROT);
    suite_add_tcase(s, tc);

    tc = tcase_create("allocate");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_alloc_rows, 0, N_ALLOC_ROWS);
    tcase_add_loop_test(tc, test_alloc_flag_matrix, 0, 64);
    tcase_add_loop_test(tc, test_alloc_cache_matrix, 0, 32);
    suite_add_tcase(s, tc);

    tc = tcase_create("query_stats");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_query_null_info, 0, N_QUERY_NULL);
    tcase_add_test(tc, test_query_odd_addresses);
    tcase_add_test(tc, test_stats_null);
    suite_add_tcase(s, tc);

    tc = tcase_create("handles");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_handle_close_invalid);
    tcase_add_test(tc, test_handle_revoke_invalid);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tu_run(suite());
}
