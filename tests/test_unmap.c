/* SPDX-License-Identifier: MIT */
/* tests/test_unmap.c — KnVmUnmap: whole-region frees, front/middle/end splits, pieces stay usable, bad ranges change nothing. */
#include "testutil.h"

#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include <stdint.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define NPG 8 /* pages of the split test region */

static size_t P(void)
{
    return tu_page();
}

static char *pg(void *base, long i)
{
    return (char *)base + i * (long)tu_page();
}

static void fill_page(void *page, unsigned seed)
{
    unsigned char *c = page;
    for (size_t i = 0; i < P(); i++)
        c[i] = (unsigned char)(seed * 131u + i * 7u + 1u);
}

static int page_matches(const void *page, unsigned seed)
{
    const unsigned char *c = page;
    for (size_t i = 0; i < P(); i++)
        if (c[i] != (unsigned char)(seed * 131u + i * 7u + 1u))
            return 0;
    return 1;
}

static void expect_free(const void *va)
{
    ck_assert_msg(!tu_is_mapped(va), "page %p still mapped in /proc/self/maps", va);
    VmQueryInfo qi = tu_query(va);
    ck_assert_uint_eq(qi.state, VMM_PAGE_STATE_FREE);
    ck_assert_ptr_null(qi.regionBase);
}

static void expect_perms(const void *va, const char *want)
{
    char perms[5];
    ck_assert_msg(tu_maps_perms(va, perms) == 0, "page %p not mapped", va);
    ck_assert_msg(memcmp(perms, want, 4) == 0, "page %p: maps says %.4s, expected %s", va, perms, want);
}

/* ---- whole-region unmap ------------------------------------------------------------------ */

static const int whole_flags[] = {
    VMM_FLAG_RESERVE | RW,
    VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW,
    VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW,
    VMM_FLAG_RESERVE | VMM_FLAG_LOCKED | RW,
    VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW | VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD,
    VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_READ | VMM_FLAG_WRITE_COMBINE,
    VMM_FLAG_RESERVE | VMM_FLAG_GROW_DOWN | RW,
};
#define N_WHOLE ((int)(sizeof whole_flags / sizeof whole_flags[0]))

START_TEST(test_unmap_whole)
{
    int flags = whole_flags[_i];
    const size_t n = 4;
    kosvmm_stats s0 = tu_stats();
    char *b = KnVmAllocate(RTL_NULL, n * P(), flags);
    ck_assert_ptr_nonnull(b);
    if (flags & VMM_FLAG_COMMIT && flags & VMM_FLAG_WRITE)
        memset(b, 0x5A, n * P());
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.regions, s0.regions + 1);
    ck_assert_uint_eq(s1.reserved_bytes, s0.reserved_bytes + n * P());
    for (size_t i = 0; i < n; i++)
        ck_assert(tu_is_mapped(pg(b, (long)i)));

    ck_assert_uint_eq(KnVmUnmap(b, n * P()), rcOk);

    for (size_t i = 0; i < n; i++)
        expect_free(pg(b, (long)i));
    if (flags & VMM_FLAG_LOW_GUARD)
        expect_free(pg(b, -1));
    if (flags & VMM_FLAG_HIGH_GUARD)
        expect_free(pg(b, (long)n));
    kosvmm_stats s2 = tu_stats();
    ck_assert_uint_eq(s2.regions, s0.regions);
    ck_assert_uint_eq(s2.reserved_bytes, s0.reserved_bytes);
    ck_assert_uint_eq(s2.committed_bytes, s0.committed_bytes);
    ck_assert_uint_eq(s2.lazy_bytes, s0.lazy_bytes);
    ck_assert_uint_eq(s2.locked_bytes, s0.locked_bytes);
    ck_assert_uint_eq(s2.pinned_bytes, s0.pinned_bytes);

    /* The addresses are really free again: a fixed allocation there succeeds. */
    char *again = KnVmAllocate(b, n * P(), VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_eq(again, b);
    ck_assert_ptr_eq(tu_query(b).regionBase, b);
    ck_assert_uint_eq(KnVmUnmap(b, n * P()), rcOk);
}
END_TEST

/* ---- splits ------------------------------------------------------------------------------ */

/* Region variants of the split tests. */
static const int split_flags[] = {
    VMM_FLAG_RESERVE | RW,
    VMM_FLAG_RESERVE | VMM_FLAG_LOCKED | RW,
    VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW,
    VMM_FLAG_RESERVE | RW | VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD,
    VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW,
    VMM_FLAG_RESERVE | RW | VMM_FLAG_GROW_DOWN | VMM_FLAG_WRITE_THROUGH,
};
#define N_SPLIT_FLAGS ((int)(sizeof split_flags / sizeof split_flags[0]))

/* Unmapped page ranges [first, first+count) of the 8-page region. */
static const struct { long first, count; const char *what; } split_ranges[] = {
    { 0, 2, "front" },
    { 0, 1, "front single" },
    { 2, 3, "middle" },
    { 5, 1, "middle single" },
    { 6, 2, "end" },
    { 7, 1, "end single" },
};
#define N_SPLIT_RANGES ((int)(sizeof split_ranges / sizeof split_ranges[0]))

/* Page layout after setup: 0,1 C-RW; 2 C-R; 3 Res(RW); 4 Res(R); 5 C-RW; 6 C-R; 7 Res(RW). */
static const int layout_committed[NPG] = { 1, 1, 1, 0, 0, 1, 1, 0 };
static const rtl_uint32_t layout_prot[NPG] = { RW, RW, VMM_FLAG_READ, RW, VMM_FLAG_READ, RW, VMM_FLAG_READ, RW };

static char *setup_layout(int flags)
{
    char *b = KnVmAllocate(RTL_NULL, NPG * P(), flags);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(KnVmCommit(b, NPG * P(), VMM_FLAG_LOCKED), rcOk);
    for (unsigned i = 0; i < NPG; i++)
        fill_page(pg(b, i), i + 1);
    ck_assert_uint_eq(KnVmDecommit(pg(b, 3), 2 * P()), rcOk);
    ck_assert_uint_eq(KnVmDecommit(pg(b, 7), P()), rcOk);
    ck_assert_uint_eq(KnVmProtect(pg(b, 2), P(), VMM_FLAG_READ), rcOk);
    ck_assert_uint_eq(KnVmProtect(pg(b, 4), P(), VMM_FLAG_READ), rcOk);
    ck_assert_uint_eq(KnVmProtect(pg(b, 6), P(), VMM_FLAG_READ), rcOk);
    for (int i = 0; i < NPG; i++) {
        VmQueryInfo qi = tu_query(pg(b, i));
        ck_assert_uint_eq(qi.state, layout_committed[i] ? VMM_PAGE_STATE_COMMITTED : VMM_PAGE_STATE_RESERVED);
        ck_assert_uint_eq(qi.protection, layout_prot[i]);
        expect_perms(pg(b, i), tu_expected_perms(qi.state, qi.protection));
    }
    return b;
}

/* Checks every page of the piece [first, first+count) of the layout region b. */
static void check_piece(char *b, long first, long count, const VmQueryInfo *before)
{
    char *pbase = pg(b, first);
    /* A piece keeps the region's flags, minus the guard of an edge that is no longer its own. */
    rtl_uint32_t piece_flags = before[first].regionFlags;
    if (first != 0)
        piece_flags &= ~(rtl_uint32_t)VMM_FLAG_LOW_GUARD;
    if (first + count != NPG)
        piece_flags &= ~(rtl_uint32_t)VMM_FLAG_HIGH_GUARD;
    for (long i = first; i < first + count; i++) {
        VmQueryInfo qi = tu_query(pg(b, i) + 17);
        ck_assert_ptr_eq(qi.pageBase, pg(b, i));
        ck_assert_msg(qi.regionBase == pbase, "page %ld: regionBase %p, expected piece base %p", i, qi.regionBase,
                      (void *)pbase);
        ck_assert_uint_eq(qi.regionSize, (size_t)count * P());
        ck_assert_uint_eq(qi.state, before[i].state);
        ck_assert_uint_eq(qi.protection, before[i].protection);
        ck_assert_uint_eq(qi.attributes & ~VMM_PAGE_ATTR_GUARD, before[i].attributes & ~VMM_PAGE_ATTR_GUARD);
        ck_assert_uint_eq(qi.cache, before[i].cache);
        ck_assert_uint_eq(qi.regionFlags, piece_flags);
        ck_assert_msg((char *)qi.pageBase + qi.runSize <= pg(b, first + count),
                      "page %ld: run of %zu bytes runs past the piece end", i, (size_t)qi.runSize);
        expect_perms(pg(b, i), tu_expected_perms(qi.state, qi.protection));
        if (layout_committed[i])
            ck_assert_msg(page_matches(pg(b, i), (unsigned)i + 1), "page %ld lost its contents", i);
    }
}

static void check_guards_after(char *b, int flags, long first, long count)
{
    if (flags & VMM_FLAG_LOW_GUARD) {
        if (first == 0) {
            expect_free(pg(b, -1));
        } else {
            VmQueryInfo g = tu_query(pg(b, -1));
            ck_assert_uint_eq(g.state, VMM_PAGE_STATE_RESERVED);
            ck_assert_ptr_eq(g.regionBase, b); /* the piece it guards */
            ck_assert_uint_eq(g.regionSize, (size_t)first * P());
            ck_assert_uint_ne(g.attributes & VMM_PAGE_ATTR_GUARD, 0);
            ck_assert(tu_is_mapped(pg(b, -1)));
        }
    }
    if (flags & VMM_FLAG_HIGH_GUARD) {
        if (first + count == NPG) {
            expect_free(pg(b, NPG));
        } else {
            VmQueryInfo g = tu_query(pg(b, NPG));
            ck_assert_uint_eq(g.state, VMM_PAGE_STATE_RESERVED);
            ck_assert_ptr_eq(g.regionBase, pg(b, first + count));
            ck_assert_uint_eq(g.regionSize, (size_t)(NPG - first - count) * P());
            ck_assert_uint_ne(g.attributes & VMM_PAGE_ATTR_GUARD, 0);
            ck_assert(tu_is_mapped(pg(b, NPG)));
        }
    }
}

START_TEST(test_unmap_split)
{
    int flags = split_flags[_i / N_SPLIT_RANGES];
    long first = split_ranges[_i % N_SPLIT_RANGES].first;
    long count = split_ranges[_i % N_SPLIT_RANGES].count;

    kosvmm_stats s0 = tu_stats();
    char *b = setup_layout(flags);
    VmQueryInfo before[NPG];
    for (int i = 0; i < NPG; i++)
        before[i] = tu_query(pg(b, i));
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.regions, s0.regions + 1);
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes + 5 * P());

    ck_assert_uint_eq(KnVmUnmap(pg(b, first), (size_t)count * P()), rcOk);

    size_t gone_committed = 0, gone_lazy = 0, gone_locked = 0, gone_pinned = 0;
    for (long i = first; i < first + count; i++) {
        expect_free(pg(b, i));
        gone_committed += (size_t)layout_committed[i];
        if (layout_committed[i]) {
            gone_lazy += (before[i].attributes & VMM_PAGE_ATTR_LAZY) != 0;
            gone_locked += (before[i].attributes & VMM_PAGE_ATTR_LOCKED) != 0;
            gone_pinned += (before[i].attributes & VMM_PAGE_ATTR_PINNED) != 0;
        }
    }
    int middle = first > 0 && first + count < NPG;
    if (first > 0)
        check_piece(b, 0, first, before);
    if (first + count < NPG)
        check_piece(b, first + count, NPG - (first + count), before);
    check_guards_after(b, flags, first, count);

    kosvmm_stats s2 = tu_stats();
    ck_assert_uint_eq(s2.regions, s1.regions + (middle ? 1 : 0));
    ck_assert_uint_eq(s2.reserved_bytes, s1.reserved_bytes - (size_t)count * P());
    ck_assert_uint_eq(s2.committed_bytes, s1.committed_bytes - gone_committed * P());
    ck_assert_uint_eq(s2.lazy_bytes, s1.lazy_bytes - gone_lazy * P());
    ck_assert_uint_eq(s2.locked_bytes, s1.locked_bytes - gone_locked * P());
    ck_assert_uint_eq(s2.pinned_bytes, s1.pinned_bytes - gone_pinned * P());

    /* Unmapping the pieces brings everything back. */
    if (first > 0)
        ck_assert_uint_eq(KnVmUnmap(b, (size_t)first * P()), rcOk);
    if (first + count < NPG)
        ck_assert_uint_eq(KnVmUnmap(pg(b, first + count), (size_t)(NPG - first - count) * P()), rcOk);
    for (long i = 0; i < NPG; i++)
        expect_free(pg(b, i));
    if (flags & VMM_FLAG_LOW_GUARD)
        expect_free(pg(b, -1));
    if (flags & VMM_FLAG_HIGH_GUARD)
        expect_free(pg(b, NPG));
    kosvmm_stats s3 = tu_stats();
    ck_assert_uint_eq(s3.regions, s0.regions);
    ck_assert_uint_eq(s3.reserved_bytes, s0.reserved_bytes);
    ck_assert_uint_eq(s3.committed_bytes, s0.committed_bytes);
    ck_assert_uint_eq(s3.lazy_bytes, s0.lazy_bytes);
    ck_assert_uint_eq(s3.locked_bytes, s0.locked_bytes);
    ck_assert_uint_eq(s3.pinned_bytes, s0.pinned_bytes);
}
END_TEST

/* After a middle split both pieces take every operation on their own, and a range may not
 * cross the hole. */
START_TEST(test_pieces_operable)
{
    kosvmm_stats s0 = tu_stats();
    char *b = setup_layout(VMM_FLAG_RESERVE | RW);
    ck_assert_uint_eq(KnVmUnmap(pg(b, 3), 2 * P()), rcOk); /* A = [0,3), B = [5,8) */

    /* Ranges crossing the hole, or inside it. */
    ck_assert_uint_eq(KnVmCommit(pg(b, 2), 2 * P(), VMM_FLAG_LOCKED), rcInvalidArgument);
    ck_assert_uint_eq(KnVmProtect(b, 4 * P(), VMM_FLAG_READ), rcInvalidArgument);
    ck_assert_uint_eq(KnVmUnmap(b, NPG * P()), rcInvalidArgument);
    ck_assert_uint_eq(KnVmDecommit(pg(b, 3), P()), rcResourceNotFound);
    ck_assert_uint_eq(KnVmUnmap(pg(b, 4), 2 * P()), rcResourceNotFound);
    ck_assert(page_matches(b, 1));
    ck_assert(page_matches(pg(b, 5), 6));

    /* Piece B: commit its reserved page, protect all RW, write, decommit part. */
    ck_assert_uint_eq(KnVmCommit(pg(b, 5), 3 * P(), VMM_FLAG_LOCKED), rcOk);
    ck_assert(page_matches(pg(b, 5), 6)); /* committed pages keep their contents */
    ck_assert(page_matches(pg(b, 6), 7));
    ck_assert_uint_eq(KnVmProtect(pg(b, 5), 3 * P(), RW), rcOk);
    for (long i = 5; i < 8; i++) {
        VmQueryInfo qi = tu_query(pg(b, i));
        ck_assert_uint_eq(qi.state, VMM_PAGE_STATE_COMMITTED);
        ck_assert_uint_eq(qi.protection, RW);
        ck_assert_ptr_eq(qi.regionBase, pg(b, 5));
        expect_perms(pg(b, i), "rw-p");
    }
    fill_page(pg(b, 7), 77);
    ck_assert(page_matches(pg(b, 7), 77));
    ck_assert_uint_eq(KnVmDecommit(pg(b, 6), P()), rcOk);
    ck_assert_uint_eq(tu_query(pg(b, 6)).state, VMM_PAGE_STATE_RESERVED);
    expect_perms(pg(b, 6), "---p");

    /* Piece A is unaffected by all that. */
    ck_assert(page_matches(b, 1));
    ck_assert(page_matches(pg(b, 1), 2));
    ck_assert(page_matches(pg(b, 2), 3));
    ck_assert_uint_eq(tu_query(pg(b, 2)).protection, VMM_FLAG_READ);

    /* Piece A: protect, split again, unmap. */
    ck_assert_uint_eq(KnVmProtect(b, 3 * P(), VMM_FLAG_READ), rcOk);
    expect_perms(b, "r--p");
    ck_assert(page_matches(pg(b, 1), 2));
    ck_assert_uint_eq(KnVmUnmap(pg(b, 1), P()), rcOk); /* A splits into [0,1) and [2,3) */
    ck_assert_ptr_eq(tu_query(b).regionBase, b);
    ck_assert_uint_eq(tu_query(b).regionSize, P());
    ck_assert_ptr_eq(tu_query(pg(b, 2)).regionBase, pg(b, 2));
    ck_assert_uint_eq(tu_query(pg(b, 2)).regionSize, P());
    ck_assert(page_matches(pg(b, 2), 3));
    ck_assert_uint_eq(tu_stats().regions, s0.regions + 3);
    ck_assert_uint_eq(KnVmUnmap(b, P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(pg(b, 2), P()), rcOk);
    expect_free(b);
    expect_free(pg(b, 2));

    /* Piece B still whole and right. */
    ck_assert_ptr_eq(tu_query(pg(b, 7)).regionBase, pg(b, 5));
    ck_assert_uint_eq(tu_query(pg(b, 7)).regionSize, 3 * P());
    ck_assert(page_matches(pg(b, 7), 77));
    ck_assert_uint_eq(KnVmUnmap(pg(b, 5), 3 * P()), rcOk);
    for (long i = 0; i < NPG; i++)
        expect_free(pg(b, i));
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.regions, s0.regions);
    ck_assert_uint_eq(s1.reserved_bytes, s0.reserved_bytes);
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes);
}
END_TEST

/* A fixed allocation fills the hole a middle unmap left; it is a region of its own. */
START_TEST(test_hole_reusable)
{
    char *b = setup_layout(VMM_FLAG_RESERVE | RW);
    ck_assert_uint_eq(KnVmUnmap(pg(b, 3), 2 * P()), rcOk);
    char *h = KnVmAllocate(pg(b, 3), 2 * P(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_eq(h, pg(b, 3));
    ck_assert_uint_eq(kosvmm_last_error(), rcOk);
    fill_page(h, 40);
    VmQueryInfo qi = tu_query(pg(b, 4));
    ck_assert_ptr_eq(qi.regionBase, h);
    ck_assert_uint_eq(qi.regionSize, 2 * P());
    ck_assert_uint_eq(qi.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_ptr_eq(tu_query(pg(b, 2)).regionBase, b);
    ck_assert_ptr_eq(tu_query(pg(b, 5)).regionBase, pg(b, 5));
    /* Now three adjacent regions: an unmap across any boundary fails. */
    ck_assert_uint_eq(KnVmUnmap(pg(b, 2), 2 * P()), rcInvalidArgument);
    ck_assert_uint_eq(KnVmUnmap(pg(b, 4), 2 * P()), rcInvalidArgument);
    ck_assert(page_matches(h, 40));
    ck_assert(page_matches(pg(b, 2), 3));
    ck_assert(page_matches(pg(b, 5), 6));
    ck_assert_uint_eq(KnVmUnmap(b, 3 * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(h, 2 * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(pg(b, 5), 3 * P()), rcOk);
    for (long i = 0; i < NPG; i++)
        expect_free(pg(b, i));
}
END_TEST

/* ---- failures ---------------------------------------------------------------------------- */

START_TEST(test_unmap_spanning_two_regions)
{
    /* Two adjacent regions, A = [s, s+4) and B = [s+4, s+8), made with fixed addresses. */
    char *s = KnVmAllocate(RTL_NULL, 8 * P(), VMM_FLAG_RESERVE);
    ck_assert_ptr_nonnull(s);
    /* Each half stays reserved until it is reused: the first lazy commit may start the
     * userfaultfd engine, whose own mappings could otherwise land in a freed hole. */
    ck_assert_uint_eq(KnVmUnmap(s, 4 * P()), rcOk);
    char *a = KnVmAllocate(s, 4 * P(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_eq(a, s);
    ck_assert_uint_eq(KnVmUnmap(pg(s, 4), 4 * P()), rcOk);
    char *bb = KnVmAllocate(pg(s, 4), 4 * P(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_eq(bb, pg(s, 4));
    for (unsigned i = 0; i < 8; i++)
        fill_page(pg(s, i), 100 + i);
    ck_assert_uint_eq(KnVmDecommit(pg(s, 1), P()), rcOk); /* some variety */
    VmQueryInfo before[8];
    for (int i = 0; i < 8; i++)
        before[i] = tu_query(pg(s, i));
    kosvmm_stats s0 = tu_stats();

    ck_assert_uint_eq(KnVmUnmap(pg(s, 2), 4 * P()), rcInvalidArgument);
    ck_assert_uint_eq(KnVmUnmap(s, 8 * P()), rcInvalidArgument);
    ck_assert_uint_eq(KnVmUnmap(pg(s, 3), 2 * P()), rcInvalidArgument);
    ck_assert_uint_eq(KnVmUnmap(pg(s, 4), 5 * P()), rcInvalidArgument); /* B plus one page past it */

    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.regions, s0.regions);
    ck_assert_uint_eq(s1.reserved_bytes, s0.reserved_bytes);
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes);
    for (int i = 0; i < 8; i++) {
        VmQueryInfo qi = tu_query(pg(s, i));
        ck_assert_uint_eq(qi.state, before[i].state);
        ck_assert_ptr_eq(qi.regionBase, before[i].regionBase);
        ck_assert_uint_eq(qi.regionSize, 4 * P());
        ck_assert_uint_eq(qi.protection, before[i].protection);
        expect_perms(pg(s, i), i == 1 ? "---p" : "rw-p");
        if (i != 1)
            ck_assert_msg(page_matches(pg(s, i), 100u + (unsigned)i), "page %d changed", i);
    }
    ck_assert_ptr_eq(tu_query(pg(s, 3)).regionBase, s);
    ck_assert_ptr_eq(tu_query(pg(s, 4)).regionBase, pg(s, 4));
    ck_assert_uint_eq(KnVmUnmap(s, 4 * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(pg(s, 4), 4 * P()), rcOk);
    for (int i = 0; i < 8; i++)
        expect_free(pg(s, i));
}
END_TEST

START_TEST(test_unmap_free_address)
{
    kosvmm_stats s0 = tu_stats();
    /* An address that was a region and no longer is. */
    char *b = KnVmAllocate(RTL_NULL, 2 * P(), VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(KnVmUnmap(b, 2 * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(b, 2 * P()), rcResourceNotFound);
    ck_assert_uint_eq(KnVmUnmap(pg(b, 1), P()), rcResourceNotFound);

    /* A Linux mapping kosvmm does not manage: refused, and left alone. */
    char *foreign = mmap(NULL, 2 * P(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(foreign != MAP_FAILED);
    fill_page(foreign, 9);
    ck_assert_uint_eq(KnVmUnmap(foreign, P()), rcResourceNotFound);
    ck_assert_uint_eq(KnVmUnmap(foreign, 2 * P()), rcResourceNotFound);
    ck_assert(tu_is_mapped(foreign));
    expect_perms(foreign, "rw-p");
    ck_assert(page_matches(foreign, 9));

    /* The NULL page and the stack. */
    ck_assert_uint_eq(KnVmUnmap(RTL_NULL, P()), rcResourceNotFound);
    char local[16];
    void *stack_page = (void *)((uintptr_t)local & ~(uintptr_t)(P() - 1));
    ck_assert_uint_eq(KnVmUnmap(stack_page, P()), rcResourceNotFound);
    local[0] = 1; /* the stack still works */
    ck_assert_int_eq(local[0], 1);

    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.regions, s0.regions);
    ck_assert_uint_eq(s1.reserved_bytes, s0.reserved_bytes);
    munmap(foreign, 2 * P());
}
END_TEST

START_TEST(test_unmap_twice)
{
    char *b = KnVmAllocate(RTL_NULL, 6 * P(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(b);
    memset(b, 3, 6 * P());
    /* Twice on a piece. */
    ck_assert_uint_eq(KnVmUnmap(b, 2 * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(b, 2 * P()), rcResourceNotFound);
    ck_assert_uint_eq(KnVmUnmap(pg(b, 1), P()), rcResourceNotFound);
    /* A range starting in the freed front and reaching into the rest. */
    ck_assert_uint_eq(KnVmUnmap(pg(b, 1), 2 * P()), rcResourceNotFound);
    ck_assert_ptr_eq(tu_query(pg(b, 2)).regionBase, pg(b, 2));
    ck_assert_uint_eq(tu_query(pg(b, 2)).regionSize, 4 * P());
    ck_assert_int_eq(((char *)pg(b, 2))[0], 3);
    /* Twice on the rest. */
    ck_assert_uint_eq(KnVmUnmap(pg(b, 2), 4 * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(pg(b, 2), 4 * P()), rcResourceNotFound);
    for (long i = 0; i < 6; i++)
        expect_free(pg(b, i));
}
END_TEST

START_TEST(test_unmap_locked_pinned)
{
    const size_t n = 4;
    /* Pinning needs RLIMIT_MEMLOCK room for n pages (or root's CAP_IPC_LOCK); raise the soft
     * limit towards the hard one if it is smaller. */
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < n * P()) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= n * P() ? n * P() : rl.rlim_max;
        ck_assert_int_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
    }
    int can_pin = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= n * P() || geteuid() == 0;
    kosvmm_stats s0 = tu_stats();
    char *b = KnVmAllocate(RTL_NULL, n * P(),
                           VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(b);
    VmQueryInfo qi = tu_query(b);
    ck_assert_uint_eq(qi.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_ne(qi.attributes & VMM_PAGE_ATTR_LOCKED, 0);
    if (can_pin) {
        ck_assert_uint_ne(qi.attributes & VMM_PAGE_ATTR_PINNED, 0);
        ck_assert_uint_eq(tu_stats().pinned_bytes, s0.pinned_bytes + n * P());
    }
    ck_assert_int_eq(tu_resident_pages(b, n * P()), (long)n);
    memset(b, 0x11, n * P());

    /* Unmap part of it, then the rest. */
    ck_assert_uint_eq(KnVmUnmap(pg(b, 3), P()), rcOk);
    expect_free(pg(b, 3));
    qi = tu_query(pg(b, 2));
    ck_assert_uint_ne(qi.attributes & VMM_PAGE_ATTR_LOCKED, 0);
    ck_assert_uint_eq(qi.regionSize, 3 * P());
    ck_assert_int_eq(((char *)pg(b, 2))[5], 0x11);
    if (can_pin) {
        ck_assert_uint_ne(qi.attributes & VMM_PAGE_ATTR_PINNED, 0);
        ck_assert_uint_eq(tu_stats().pinned_bytes, s0.pinned_bytes + 3 * P());
    }
    ck_assert_uint_eq(KnVmUnmap(b, 3 * P()), rcOk);
    for (long i = 0; i < (long)n; i++)
        expect_free(pg(b, i));
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.regions, s0.regions);
    ck_assert_uint_eq(s1.locked_bytes, s0.locked_bytes);
    ck_assert_uint_eq(s1.pinned_bytes, s0.pinned_bytes);
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes);
}
END_TEST

/* An unmapped page really is gone: touching it faults. */
START_TEST(test_unmapped_access_faults)
{
    char *b = KnVmAllocate(RTL_NULL, 3 * P(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(b);
    memset(b, 1, 3 * P());
    ck_assert_uint_eq(KnVmUnmap(pg(b, 1), P()), rcOk);
    ck_assert_int_eq(b[0], 1);
    ck_assert_int_eq(pg(b, 2)[0], 1);
    *(volatile char *)pg(b, 1) = 2; /* SIGSEGV */
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("unmap");

    TCase *tc = tcase_create("whole");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_unmap_whole, 0, N_WHOLE);
    tcase_add_test(tc, test_unmap_locked_pinned);
    suite_add_tcase(s, tc);

    tc = tcase_create("split");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_unmap_split, 0, N_SPLIT_FLAGS * N_SPLIT_RANGES);
    tcase_add_test(tc, test_pieces_operable);
    tcase_add_test(tc, test_hole_reusable);
    tcase_add_test_raise_signal(tc, test_unmapped_access_faults, SIGSEGV);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_unmap_spanning_two_regions);
    tcase_add_test(tc, test_unmap_free_address);
    tcase_add_test(tc, test_unmap_twice);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tu_run(suite());
}
