/* SPDX-License-Identifier: MIT */
/* tests/test_lazy.c — lazy commit through the userfaultfd engine (and its kernel fallback): same semantics, fault-around, races, fork, exit. */
#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <kosvmm/kosvmm.h>
#include <linux/userfaultfd.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* A transparent huge page: the extent huge-page streams fill at once. */
#define HUGE_SZ ((size_t)2 << 20)

#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define LAZY (VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW)

static char *pg(void *base, size_t i)
{
    return (char *)base + i * tu_page();
}

static void set_config(uint32_t engine, uint32_t wmin, uint32_t wmax, uint32_t readahead)
{
    kosvmm_lazy_config c = {.size = sizeof c, .engine = engine, .window_min = wmin, .window_max = wmax, .readahead = readahead};
    ck_assert_uint_eq(kosvmm_set_lazy_config(&c), rcOk);
}

/* The engine lazy commits get here: userfaultfd needs /dev/userfaultfd access or privilege. */
static bool uffd_engine(void)
{
    return tu_stats().lazy_engine == KOSVMM_ENGINE_UFFD;
}

/* ---- semantics, for both engines --------------------------------------------------------- */

START_TEST(lazy_memory_reads_zero_keeps_writes_and_resets)
{
    set_config(_i ? KOSVMM_ENGINE_UFFD : KOSVMM_ENGINE_KERNEL, 1, 512, 1);
    const size_t n = 256;
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(tu_resident_pages(a, n * tu_page()), 0);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(pg(a, i)[i % 64], 0);
    for (size_t i = 0; i < n; i++)
        pg(a, i)[7] = (char)(i + 1);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(pg(a, i)[7], (char)(i + 1));
    ck_assert_uint_eq(KnVmReset(a, n * tu_page()), rcOk);
    ck_assert_int_eq(tu_resident_pages(a, n * tu_page()), 0);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(pg(a, i)[7], 0);
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

START_TEST(kernel_engine_never_reaches_the_handler)
{
    set_config(KOSVMM_ENGINE_KERNEL, 1, 512, 1);
    ck_assert_uint_eq(tu_stats().lazy_engine, KOSVMM_ENGINE_KERNEL);
    kosvmm_stats s0 = tu_stats();
    char *a = KnVmAllocate(RTL_NULL, 64 * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    for (size_t i = 0; i < 64; i++)
        pg(a, i)[0] = 1;
    ck_assert_uint_eq(tu_stats().uffd_faults, s0.uffd_faults);
    ck_assert_int_eq(tu_resident_pages(a, 64 * tu_page()), 64);
    ck_assert_uint_eq(KnVmUnmap(a, 64 * tu_page()), rcOk);
}
END_TEST

START_TEST(reserved_pages_of_a_registered_region_still_fault)
{
    set_config(KOSVMM_ENGINE_UFFD, 1, 512, 1);
    char *a = KnVmAllocate(RTL_NULL, 16 * tu_page(), VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(KnVmCommit(a, 8 * tu_page(), 0), rcOk);
    pg(a, 0)[0] = 1;
    *(volatile char *)pg(a, 12) = 1; /* reserved: SIGSEGV, not a userfaultfd fault */
}
END_TEST

/* ---- fault-around ------------------------------------------------------------------------ */

START_TEST(fixed_window_fills_neighbours_within_the_lazy_span)
{
    set_config(KOSVMM_ENGINE_UFFD, 8, 8, 0);
    if (!uffd_engine())
        return; /* kernel engine here: one page per fault is all there is; covered above */
    char *a = KnVmAllocate(RTL_NULL, 64 * tu_page(), VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(a);
    /* Lazy span [8, 20): a fault at 16 fills 16..19 and stops at the span's end. */
    ck_assert_uint_eq(KnVmCommit(pg(a, 8), 12 * tu_page(), 0), rcOk);
    pg(a, 8)[0] = 1;
    ck_assert_int_eq(tu_resident_pages(pg(a, 8), 8 * tu_page()), 8);
    ck_assert_int_eq(tu_resident_pages(pg(a, 16), 4 * tu_page()), 0);
    pg(a, 16)[0] = 1;
    ck_assert_int_eq(tu_resident_pages(pg(a, 16), 4 * tu_page()), 4);
    ck_assert_int_eq(tu_resident_pages(a, 8 * tu_page()), 0);                /* reserved below */
    ck_assert_int_eq(tu_resident_pages(pg(a, 20), 44 * tu_page()), 0);       /* reserved above */
    ck_assert_uint_eq(KnVmUnmap(a, 64 * tu_page()), rcOk);
}
END_TEST

START_TEST(fill_stops_at_the_region_end)
{
    set_config(KOSVMM_ENGINE_UFFD, 16, 16, 0);
    if (!uffd_engine())
        return;
    /* Two adjacent lazy regions: streaming through the first never fills the second. */
    tu_start_lazy_engine();
    char *s = KnVmAllocate(RTL_NULL, 32 * tu_page(), VMM_FLAG_RESERVE);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(KnVmUnmap(s, 32 * tu_page()), rcOk);
    char *a = KnVmAllocate(s, 16 * tu_page(), LAZY);
    char *b = KnVmAllocate(pg(s, 16), 16 * tu_page(), LAZY);
    ck_assert_ptr_eq(a, s);
    ck_assert_ptr_eq(b, pg(s, 16));
    pg(a, 12)[0] = 1;
    ck_assert_int_eq(tu_resident_pages(pg(a, 12), 4 * tu_page()), 4);
    ck_assert_int_eq(tu_resident_pages(b, 16 * tu_page()), 0);
    ck_assert_uint_eq(KnVmUnmap(a, 16 * tu_page()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(b, 16 * tu_page()), rcOk);
}
END_TEST

START_TEST(sequential_stream_grows_the_window)
{
    set_config(KOSVMM_ENGINE_UFFD, 1, 512, 1);
    if (!uffd_engine())
        return;
    const size_t n = 8192; /* 32 MiB */
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    kosvmm_stats s0 = tu_stats();
    for (size_t i = 0; i < n; i++)
        pg(a, i)[0] = (char)i;
    kosvmm_stats s1 = tu_stats();
    /* Far fewer faults than pages: the window doubled up to 512 and read-ahead ran ahead, or the
     * extents ahead were handed to the kernel's huge-page faults (from a window of 8 on, the extent
     * the stream began in with them from 64 on, which ends the stream's faults sooner). */
    ck_assert_uint_lt(s1.uffd_faults - s0.uffd_faults, n / 16);
    uint64_t handed = (s1.uffd_kernel_extents - s0.uffd_kernel_extents) * (2u * 1024 * 1024 / tu_page());
    if (handed)
        ck_assert_uint_ge(s1.lazy_window, 64);
    else
        ck_assert_uint_eq(s1.lazy_window, 512);
    ck_assert_uint_ge(s1.uffd_pages_filled - s0.uffd_pages_filled + handed, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(pg(a, i)[0], (char)i);
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

START_TEST(backward_stream_fills_downward_in_grow_down_regions)
{
    set_config(KOSVMM_ENGINE_UFFD, 8, 8, 0);
    if (!uffd_engine())
        return;
    char *a = KnVmAllocate(RTL_NULL, 64 * tu_page(), LAZY | VMM_FLAG_GROW_DOWN);
    ck_assert_ptr_nonnull(a);
    pg(a, 63)[0] = 1; /* the top of a stack: the window goes down, 56..63 */
    ck_assert_int_eq(tu_resident_pages(pg(a, 56), 8 * tu_page()), 8);
    ck_assert_int_eq(tu_resident_pages(a, 56 * tu_page()), 0);
    char *b = KnVmAllocate(RTL_NULL, 64 * tu_page(), LAZY);
    ck_assert_ptr_nonnull(b);
    pg(b, 63)[0] = 1; /* an ordinary region: the window goes up and stops at the end, and the
                         first fault also fills the page before (the SDK's "before and after") */
    ck_assert_int_eq(tu_resident_pages(b, 64 * tu_page()), 2);
    ck_assert_int_eq(tu_resident_pages(pg(b, 62), 2 * tu_page()), 2);
    ck_assert_uint_eq(KnVmUnmap(a, 64 * tu_page()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(b, 64 * tu_page()), rcOk);
}
END_TEST

START_TEST(random_access_is_demoted_and_costs_no_extra_memory)
{
    set_config(KOSVMM_ENGINE_UFFD, 1, 512, 1);
    if (!uffd_engine())
        return;
    const size_t n = 16384;
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    kosvmm_stats s0 = tu_stats();
    srand(99);
    size_t touched = 0;
    for (size_t k = 0; k < 1000; k++) {
        size_t i = (size_t)rand() % n;
        touched += pg(a, i)[1] == 0;
        pg(a, i)[1] = 1;
    }
    kosvmm_stats s1 = tu_stats();
    /* Before demotion each fault the handler serves fills the page before and after it too (a
     * random neighbour may also pass for a stream and get a 2-page window); after it, the
     * kernel fills one page a fault. */
    long resident = tu_resident_pages(a, n * tu_page());
    ck_assert_int_ge(resident, (long)touched);
    ck_assert_int_le(resident, (long)touched + 2 * (long)(s1.uffd_faults - s0.uffd_faults) + 8);
    ck_assert_int_le(resident, (long)touched * 3 / 2);
    ck_assert_uint_lt(s1.uffd_faults - s0.uffd_faults, touched / 4);    /* then the kernel's */
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

/* ---- read faults map the zero page ------------------------------------------------------- */

/* Reads the first word of every page of [a, a + n pages): the OR of them all. */
static unsigned long read_pass(const char *a, size_t n)
{
    unsigned long acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= *(const volatile unsigned long *)(a + i * tu_page());
    return acc;
}

/* Pages of [a, a + n pages) with memory of their own after a read pass must be none with the
 * handler, which maps the zero page (UFFDIO_ZEROPAGE, over its window). Kernel paging does what
 * the kernel does: most map the zero page, some allocate a page per read fault (this project's
 * 6.18 CI VM does), so there any count from 0 to n is the kernel's. */
static void assert_read_pass_backs(const char *a, size_t n, long written)
{
    long backed = tu_backed_pages(a, n * tu_page());
    if (uffd_engine()) {
        ck_assert_int_eq(backed, written);
    } else {
        ck_assert_int_ge(backed, written);
        ck_assert_int_le(backed, (long)n);
    }
}

/* A read of untouched lazy memory costs no memory: the handler maps the shared zero page for a
 * read fault (UFFDIO_ZEROPAGE, over its window), as native demand paging does on most kernels. */
START_TEST(read_pass_maps_zero_pages_and_costs_no_memory)
{
    set_config(_i ? KOSVMM_ENGINE_UFFD : KOSVMM_ENGINE_KERNEL, 1, 512, 1);
    const size_t n = 8192; /* 32 MiB */
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    kosvmm_stats s0 = tu_stats();
    long rss0 = tu_status_kb("RssAnon:");
    ck_assert_uint_eq(read_pass(a, n), 0);
    long rss1 = tu_status_kb("RssAnon:");
    kosvmm_stats s1 = tu_stats();
    assert_read_pass_backs(a, n, 0);
    ck_assert_int_eq(tu_resident_pages(a, n * tu_page()), (long)n); /* mincore counts zero pages */
    if (uffd_engine() && _i) {
        /* The whole process's anonymous memory grew by less than 5% of the region read. ASan
         * reads its shadow of the region (an eighth of it) at every access, which a kernel that
         * gives read faults a page of their own then backs: that is not kosvmm's. ThreadSanitizer
         * writes its shadow (larger than the region) at every access: there only the region's
         * own pages, checked above, say anything. */
        long shadow_kb = TU_SANITIZED ? (long)(n * tu_page() / 1024 / 8) : 0;
#ifndef __SANITIZE_THREAD__
        ck_assert_int_lt(rss1 - rss0, (long)(n * tu_page() / 1024 / 20) + shadow_kb);
#else
        (void)rss1, (void)rss0, (void)shadow_kb;
#endif
        ck_assert_uint_ge(s1.uffd_zero_pages - s0.uffd_zero_pages, n);
        ck_assert_uint_eq(s1.uffd_zero_pages - s0.uffd_zero_pages, s1.uffd_pages_filled - s0.uffd_pages_filled);
        ck_assert_uint_lt(s1.uffd_faults - s0.uffd_faults, n / 16); /* windowed, as writes are */
    } else {
        ck_assert_uint_eq(s1.uffd_faults, s0.uffd_faults);
        ck_assert_uint_eq(s1.uffd_zero_pages, s0.uffd_zero_pages);
    }
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

/* A write to a page a read mapped to the zero page is the kernel's copy-on-write fault: the
 * handler sees no event (the registration is MISSING only), the data is kept, and only the pages
 * written get memory. */
START_TEST(read_then_write_keeps_data_and_backs_only_written_pages)
{
    set_config(_i ? KOSVMM_ENGINE_UFFD : KOSVMM_ENGINE_KERNEL, 1, 512, 1);
    const size_t n = 2048;
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(read_pass(a, n), 0);
    kosvmm_stats s0 = tu_stats();
    for (size_t i = 0; i < n; i += 4)
        ((unsigned *)pg(a, i))[9] = (unsigned)i + 1;
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.uffd_faults, s0.uffd_faults);
    assert_read_pass_backs(a, n, (long)(n / 4));
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(((unsigned *)pg(a, i))[9], i % 4 ? 0 : (unsigned)i + 1);
        ck_assert_uint_eq(((unsigned *)pg(a, i))[10], 0);
    }
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

START_TEST(decommit_and_reset_of_zero_mapped_pages)
{
    set_config(_i ? KOSVMM_ENGINE_UFFD : KOSVMM_ENGINE_KERNEL, 1, 512, 1);
    const size_t n = 512, h = n / 2;
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(read_pass(a, n), 0);
    pg(a, 3)[0] = 'x';          /* one written page in each half */
    pg(a, h + 3)[0] = 'y';
    /* Reset: the zero-mapped and the written page go, the range still reads zero and is usable. */
    ck_assert_uint_eq(KnVmReset(a, h * tu_page()), rcOk);
    ck_assert_int_eq(tu_resident_pages(a, h * tu_page()), 0);
    ck_assert_uint_eq(tu_query(pg(a, 1)).state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_eq(read_pass(a, h), 0);
    pg(a, 5)[0] = 'z';
    ck_assert_int_eq(pg(a, 5)[0], 'z');
    ck_assert_int_eq(pg(a, 3)[0], 0);
    /* Decommit: nothing stays resident, the pages are reserved; a recommit reads zero again. */
    ck_assert_uint_eq(KnVmDecommit(pg(a, h), h * tu_page()), rcOk);
    ck_assert_int_eq(tu_resident_pages(pg(a, h), h * tu_page()), 0);
    ck_assert_uint_eq(tu_query(pg(a, h + 1)).state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(KnVmCommit(pg(a, h), h * tu_page(), 0), rcOk);
    ck_assert_uint_eq(read_pass(pg(a, h), h), 0);
    ck_assert_int_eq(pg(a, h + 3)[0], 0);
    pg(a, h + 3)[1] = 'w';
    ck_assert_int_eq(pg(a, h + 3)[1], 'w');
    ck_assert_int_eq(pg(a, 5)[0], 'z');
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

START_TEST(protect_keeps_zero_mapped_pages_and_writes)
{
    set_config(_i ? KOSVMM_ENGINE_UFFD : KOSVMM_ENGINE_KERNEL, 1, 512, 1);
    const size_t n = 64;
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(read_pass(a, n / 2), 0); /* the lower half zero-mapped, the upper untouched */
    pg(a, 1)[0] = 'a';
    ck_assert_uint_eq(KnVmProtect(a, n * tu_page(), VMM_FLAG_READ), rcOk);
    ck_assert_uint_eq(read_pass(a, n), 'a');   /* untouched pages of a read-only range read too */
    ck_assert_uint_eq(KnVmProtect(a, n * tu_page(), 0), rcOk);
    ck_assert_uint_eq(KnVmProtect(a, n * tu_page(), RW), rcOk);
    ck_assert_int_eq(pg(a, 1)[0], 'a');
    for (size_t i = 0; i < n; i++)
        pg(a, i)[100] = (char)(i + 1);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(pg(a, i)[100], (char)(i + 1));
        ck_assert_int_eq(pg(a, i)[0], i == 1 ? 'a' : 0);
    }
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

START_TEST(write_to_read_only_zero_mapped_page_faults)
{
    set_config(KOSVMM_ENGINE_UFFD, 1, 512, 1);
    char *a = KnVmAllocate(RTL_NULL, 16 * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(read_pass(a, 16), 0);
    ck_assert_uint_eq(KnVmProtect(a, 16 * tu_page(), VMM_FLAG_READ), rcOk);
    *(volatile char *)pg(a, 4) = 1; /* the zero page is read-only: SIGSEGV, not a copy */
}
END_TEST

/* KnPmmMdlCreateFromVm walks pagemap: a zero-mapped page is present there, and must become a
 * page of zeros in the buffer (copied or left a hole), never anything else. */
START_TEST(mdl_from_vm_over_zero_mapped_pages)
{
    set_config(_i ? KOSVMM_ENGINE_UFFD : KOSVMM_ENGINE_KERNEL, 1, 512, 1);
    const size_t n = 64;
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(read_pass(a, n - 8), 0); /* the top 8 pages stay untouched */
    memset(pg(a, 10), 0x5a, tu_page());
    pg(a, 20)[77] = 7;
    Handle h = INVALID_HANDLE;
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(a, n * tu_page(), RW, &h), rcOk);
    ck_assert_uint_eq(tu_query(pg(a, 2)).attributes & VMM_PAGE_ATTR_MDL, VMM_PAGE_ATTR_MDL);
    void *m = RTL_NULL;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, n * tu_page(), RTL_NULL, RW, &m), rcOk);
    char *b = m;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < tu_page(); k++) {
            char want = i == 10 ? 0x5a : i == 20 && k == 77 ? 7 : 0;
            ck_assert_int_eq(pg(a, i)[k], want);
            ck_assert_int_eq(pg(b, i)[k], want);
        }
    /* The range is the buffer now: writes through either mapping are seen through both. */
    pg(b, 5)[1] = 'b';
    pg(a, 60)[2] = 'a';
    ck_assert_int_eq(pg(a, 5)[1], 'b');
    ck_assert_int_eq(pg(b, 60)[2], 'a');
    ck_assert_uint_eq(KnVmUnmap(b, n * tu_page()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
}
END_TEST

START_TEST(fork_after_reads_child_sees_zeros_and_writes_privately)
{
    set_config(_i ? KOSVMM_ENGINE_UFFD : KOSVMM_ENGINE_KERNEL, 1, 512, 1);
    const size_t n = 256;
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(read_pass(a, n), 0);
    pg(a, 7)[0] = 'p';
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char c;
        TU_CHILD_CHECK(read(go[0], &c, 1) == 1); /* after the parent's write below */
        TU_CHILD_CHECK(pg(a, 7)[0] == 'p');
        TU_CHILD_CHECK(pg(a, 9)[0] == 0);       /* the parent wrote it after the fork */
        TU_CHILD_CHECK(read_pass(a, n) == 'p');
        for (size_t i = 0; i < n; i++)
            pg(a, i)[1] = 'c';
        for (size_t i = 0; i < n; i++)
            TU_CHILD_CHECK(pg(a, i)[1] == 'c' && pg(a, i)[0] == (i == 7 ? 'p' : 0));
        _exit(0);
    }
    pg(a, 9)[0] = 'q';
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    tu_wait_child_ok(pid);
    close(go[0]);
    close(go[1]);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(pg(a, i)[1], 0); /* the child's writes stayed in the child */
        ck_assert_int_eq(pg(a, i)[0], i == 7 ? 'p' : i == 9 ? 'q' : 0);
    }
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

/* ---- the first fault fills the pages before and after ------------------------------------- */

/* Residency of page i of a, as mincore(2) reports it (a zero-mapped page counts). */
static int resident(const char *a, size_t i)
{
    return (int)tu_resident_pages(pg((void *)a, i), tu_page());
}

/* The SDK: on a lazy access "the page containing the queried address and several pages before
 * and after this address are committed". The handler does it on the first fault (a write or a
 * read); kernel demand paging, the fallback, fills the faulting page alone (vmm_api.h says so). */
START_TEST(first_fault_in_the_middle_fills_the_pages_before_and_after)
{
    set_config(KOSVMM_ENGINE_UFFD, 1, 512, 1);
    const size_t n = 1024, mid = n / 2;
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    if (_i)
        pg(a, mid)[5] = 1;
    else
        ck_assert_int_eq(*(volatile char *)(pg(a, mid) + 5), 0);
    long total = tu_resident_pages(a, n * tu_page()), backed = tu_backed_pages(a, n * tu_page());
    ck_assert_int_eq(resident(a, mid), 1);
    if (uffd_engine()) {
        ck_assert_int_eq(resident(a, mid - 1), 1);
        ck_assert_int_eq(resident(a, mid + 1), 1);
        ck_assert_int_ge(total, 3);
        ck_assert_int_le(total, 8); /* a few pages, never the region */
    } else {
        ck_assert_int_eq(total, 1);
    }
    /* A write's window is filled with memory (UFFDIO_COPY), a read's maps the zero page; the
     * kernel gives the faulting page alone memory for a write, and for a read on some kernels. */
    if (uffd_engine())
        ck_assert_int_eq(backed, _i ? total : 0);
    else
        ck_assert_int_le(backed, 1);
    ck_assert_int_ge(backed, _i);
    /* The neighbours read zero, the written byte is there. */
    ck_assert_int_eq(pg(a, mid - 1)[5], 0);
    ck_assert_int_eq(pg(a, mid + 1)[5], 0);
    ck_assert_int_eq(pg(a, mid)[5], _i ? 1 : 0);
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

START_TEST(first_fault_window_is_clamped_at_region_and_span_edges)
{
    set_config(KOSVMM_ENGINE_UFFD, 1, 512, 1);
    const size_t n = 64;
    const int around = uffd_engine();
    /* Guarded, so the pages just outside the region are guard pages: never filled, still faulting. */
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY | VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD);
    char *b = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY | VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    pg(a, 0)[0] = 1;                   /* the first page: the page after it, nothing before */
    ck_assert_int_eq(resident(a, 0), 1);
    ck_assert_int_eq(resident(a, 1), around);
    ck_assert_int_eq(tu_resident_pages(a, n * tu_page()), 1 + around);
    pg(b, n - 1)[0] = 1;               /* the last page: the page before it, nothing after */
    ck_assert_int_eq(resident(b, n - 1), 1);
    ck_assert_int_eq(resident(b, n - 2), around);
    ck_assert_int_eq(tu_resident_pages(b, n * tu_page()), 1 + around);
    ck_assert_int_eq(tu_resident_pages(pg(a, n), tu_page()), 0);        /* high guard of a */
    ck_assert_int_eq(tu_resident_pages(b - tu_page(), tu_page()), 0);   /* low guard of b */
    /* A lazy span inside a reserved region: [8, 20). Faults at its edges stay inside it. */
    char *c = KnVmAllocate(RTL_NULL, n * tu_page(), VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(KnVmCommit(pg(c, 8), 12 * tu_page(), 0), rcOk);
    pg(c, 8)[0] = 1;
    pg(c, 19)[0] = 1;
    ck_assert_int_eq(tu_resident_pages(c, 8 * tu_page()), 0);
    ck_assert_int_eq(tu_resident_pages(pg(c, 20), (n - 20) * tu_page()), 0);
    ck_assert_int_eq(resident(c, 9), around);
    ck_assert_int_eq(resident(c, 18), around);
    ck_assert_int_eq(tu_resident_pages(pg(c, 8), 12 * tu_page()), 2 + 2 * around);
    for (size_t i = 8; i < 20; i++)
        ck_assert_int_eq(pg(c, i)[1], 0);
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(b, n * tu_page()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(c, n * tu_page()), rcOk);
}
END_TEST

/* ---- concurrency ------------------------------------------------------------------------- */

struct writer {
    char *base;
    size_t pages;
    int id, nthreads;
};

static void *write_interleaved(void *arg)
{
    struct writer *w = arg;
    /* Every thread writes its own word of every page: all threads fault the same pages at once. */
    for (size_t i = 0; i < w->pages; i++)
        ((volatile uint32_t *)pg(w->base, i))[w->id] = (uint32_t)(i * 131 + (size_t)w->id);
    return NULL;
}

/* Eight threads write their own word of every page of a new lazy region of n pages, all at once,
 * and every write must be there afterwards; round names the attempt in a failure. */
static void eight_writers_in_step(size_t n, int round)
{
    enum { T = 8 };
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    pthread_t t[T];
    struct writer w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (struct writer){a, n, i, T};
        ck_assert_int_eq(pthread_create(&t[i], NULL, write_interleaved, &w[i]), 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(t[i], NULL);
    for (size_t i = 0; i < n; i++)
        for (int id = 0; id < T; id++)
            ck_assert_msg(((uint32_t *)pg(a, i))[id] == (uint32_t)(i * 131 + (size_t)id),
                          "round %d: page %zu lost the write of thread %d", round, i, id);
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}

START_TEST(many_threads_fault_same_pages_without_losing_writes)
{
    set_config(_i ? KOSVMM_ENGINE_UFFD : KOSVMM_ENGINE_KERNEL, 1, 512, 1);
    eight_writers_in_step(4096, 0);
}
END_TEST

/* Eight writers stream through the same pages together: faults of the lagging ones reach the
 * handler after the leading one's fault handed their extents to the kernel, which then fills them
 * from any thread; a stale fault must never discard such an extent (a write was lost that way). */
START_TEST(writers_in_step_through_handed_off_extents_lose_no_write)
{
    set_config(KOSVMM_ENGINE_UFFD, 1, 512, 1);
    for (int round = 0; round < 4; round++)
        eight_writers_in_step(16 * HUGE_SZ / tu_page(), round);
}
END_TEST

static void *write_own_chunk(void *arg)
{
    struct writer *w = arg;
    size_t per = w->pages / (size_t)w->nthreads;
    for (size_t i = (size_t)w->id * per; i < (size_t)(w->id + 1) * per; i++)
        ((volatile uint32_t *)pg(w->base, i))[3] = (uint32_t)i;
    return NULL;
}

START_TEST(many_threads_stream_their_own_chunks)
{
    set_config(KOSVMM_ENGINE_UFFD, 1, 512, 1);
    enum { T = 4 };
    const size_t n = 16384;
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    pthread_t t[T];
    struct writer w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (struct writer){a, n, i, T};
        ck_assert_int_eq(pthread_create(&t[i], NULL, write_own_chunk, &w[i]), 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(t[i], NULL);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(((uint32_t *)pg(a, i))[3], (uint32_t)i);
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

/* ---- faults taken inside the kernel ------------------------------------------------------ */

START_TEST(read_from_a_pipe_into_untouched_lazy_memory)
{
    set_config(_i ? KOSVMM_ENGINE_UFFD : KOSVMM_ENGINE_KERNEL, 1, 512, 1);
    char *a = KnVmAllocate(RTL_NULL, 16 * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    char msg[3000];
    memset(msg, 'k', sizeof msg);
    ck_assert_int_eq(write(p[1], msg, sizeof msg), (ssize_t)sizeof msg);
    /* The kernel's copy_to_user faults on the untouched page: the handler must serve it. */
    ck_assert_int_eq(read(p[0], pg(a, 5) + 2000, sizeof msg), (ssize_t)sizeof msg);
    ck_assert_int_eq(memcmp(pg(a, 5) + 2000, msg, sizeof msg), 0);
    close(p[0]);
    close(p[1]);
    ck_assert_uint_eq(KnVmUnmap(a, 16 * tu_page()), rcOk);
}
END_TEST

START_TEST(io_uring_read_into_untouched_lazy_memory)
{
    set_config(_i ? KOSVMM_ENGINE_UFFD : KOSVMM_ENGINE_KERNEL, 1, 512, 1);
    struct io_uring ring;
    if (io_uring_queue_init(4, &ring, 0) != 0)
        return; /* io_uring disabled on this host: nothing to test */
    char *a = KnVmAllocate(RTL_NULL, 16 * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    const char msg[] = "through the ring into lazy memory";
    ck_assert_int_eq(write(p[1], msg, sizeof msg), (ssize_t)sizeof msg);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_read(sqe, p[0], pg(a, 9) + 100, sizeof msg, 0);
    ck_assert_int_eq(io_uring_submit(&ring), 1);
    struct io_uring_cqe *cqe;
    ck_assert_int_eq(io_uring_wait_cqe(&ring, &cqe), 0);
    ck_assert_int_eq(cqe->res, (int)sizeof msg);
    io_uring_cqe_seen(&ring, cqe);
    ck_assert_str_eq(pg(a, 9) + 100, msg);
    io_uring_queue_exit(&ring);
    close(p[0]);
    close(p[1]);
    ck_assert_uint_eq(KnVmUnmap(a, 16 * tu_page()), rcOk);
}
END_TEST

/* ---- calls racing with faults ------------------------------------------------------------ */

struct racer {
    char *base;
    size_t pages;
    atomic_int stop;
    atomic_int started; /* threads that have reached their loop */
};

/* Writers race with kosvmm and with each other on the same words on purpose: relaxed atomic
 * stores say so (ThreadSanitizer runs this suite; the values are checked only for garbage). */
static void *keep_writing(void *arg)
{
    struct racer *r = arg;
    for (unsigned it = 1; !atomic_load(&r->stop); it++)
        for (size_t i = 0; i < r->pages && !atomic_load(&r->stop); i++)
            __atomic_store_n((unsigned *)pg(r->base, i), it, __ATOMIC_RELAXED);
    return NULL;
}

START_TEST(reset_decommit_and_unmap_race_with_faults)
{
    set_config(KOSVMM_ENGINE_UFFD, 1, 512, 1);
    const size_t n = 2048;
    /* Writers fault in [0, n/2) forever; the main thread resets that half (pages stay usable,
     * reading zero or the latest value), decommits and recommits the other half, and allocates
     * and unmaps other lazy regions, all at once. */
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    struct racer r = {a, n / 2, 0, 0};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, keep_writing, &r), 0);
    for (int round = 0; round < 200; round++) {
        size_t first = (size_t)rand() % (n / 2), count = 1 + (size_t)rand() % (n / 2 - first);
        ck_assert_uint_eq(KnVmReset(pg(a, first), count * tu_page()), rcOk);
        ck_assert_uint_eq(KnVmDecommit(pg(a, n / 2), n / 2 * tu_page()), rcOk);
        ck_assert_uint_eq(KnVmCommit(pg(a, n / 2), n / 2 * tu_page(), 0), rcOk);
        ck_assert_int_eq(pg(a, n / 2 + (size_t)round)[5], 0);
        pg(a, n / 2 + (size_t)round)[5] = 1;
        char *other = KnVmAllocate(RTL_NULL, 64 * tu_page(), LAZY);
        ck_assert_ptr_nonnull(other);
        other[round] = 1;
        ck_assert_uint_eq(KnVmUnmap(other, 64 * tu_page()), rcOk);
    }
    r.stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v = ((unsigned *)pg(a, i))[0];
        ck_assert(v < 1u << 30); /* zero (reset) or an iteration count: never garbage */
    }
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

/* ---- fork and exit ----------------------------------------------------------------------- */

START_TEST(fork_child_sees_zero_or_parent_data_and_keeps_working)
{
    set_config(KOSVMM_ENGINE_UFFD, 1, 512, 1);
    const size_t n = 1024;
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    for (size_t i = 0; i < n / 2; i++)
        pg(a, i)[0] = 'p';
    bool parent_uffd = uffd_engine();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += pg(a, i)[0] != (i < n / 2 ? 'p' : 0); /* touched: parent data; else zero */
        for (size_t i = n / 2; i < n; i++)
            pg(a, i)[0] = 'c'; /* untouched lazy pages of the child fault like ordinary memory */
        char *b = KnVmAllocate(RTL_NULL, 256 * tu_page(), LAZY); /* the child's own engine */
        kosvmm_stats s0 = tu_stats();
        for (size_t i = 0; b && i < 256; i++)
            pg(b, i)[0] = 'b';
        kosvmm_stats s1 = tu_stats();
        bad += !b || (parent_uffd && s1.uffd_faults == s0.uffd_faults);
        _exit(bad ? 1 : 0);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    for (size_t i = n / 2; i < n; i++) /* the child's writes stayed in the child */
        ck_assert_int_eq(pg(a, i)[0], 0);
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

/* Faults one page at a time through a region, resetting it after each pass, until told to stop:
 * every fault is a round trip through the handler thread. */
static void *fault_storm(void *arg)
{
    struct racer *r = arg;
    atomic_fetch_add(&r->started, 1);
    while (!atomic_load(&r->stop)) {
        for (size_t i = 0; i < r->pages && !atomic_load(&r->stop); i++)
            __atomic_store_n((unsigned *)pg(r->base, i), 1u, __ATOMIC_RELAXED);
        KnVmReset(r->base, r->pages * tu_page());
    }
    return NULL;
}

/* Reads the lazy configuration in a loop, as the handler thread does at every fault. */
static void *read_config(void *arg)
{
    struct racer *r = arg;
    kosvmm_lazy_config c = {.size = sizeof c};
    atomic_fetch_add(&r->started, 1);
    while (!atomic_load(&r->stop))
        kosvmm_get_lazy_config(&c);
    return NULL;
}

/* The handler thread reads the lazy configuration (under its lock) at every fault, and so may any
 * thread of the application; a fork at that moment must not leave the child with the lock taken,
 * or the child's first lazy commit waits for it forever. Many forks during a storm of single-page
 * faults and configuration reads: each child commits lazily, touches the memory and exits; one
 * that hangs fails the test (a timeout, not a hang).
 *
 * The forks start once every racer runs its loop, not while one is still starting: under
 * AddressSanitizer (GCC 12's libasan) a starting thread allocates in the runtime's own set-up
 * (pthread_getattr_np), and that allocator takes no lock at fork(), so a fork at that moment can
 * leave one of its size-class locks taken in the child, where the engine's new handler thread,
 * whose set-up allocates too, waits for it forever. That is the runtime's, not kosvmm's: a plain
 * program that forks right after pthread_create and starts a thread in the child hangs the same
 * way. The racers' loops themselves do not allocate. */
START_TEST(fork_during_fault_storm_child_commits_lazily)
{
    set_config(KOSVMM_ENGINE_UFFD, 1, 1, 0); /* one fault per page: as many handler passes as can be */
    const size_t n = 4096;
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    struct racer r = {a, n, 0, 0};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, i < 2 ? fault_storm : read_config, &r), 0);
    while (atomic_load(&r.started) < 3)
        sched_yield();
    int hung = 0, failed = 0, forks = 0;
    for (double t0 = tu_now(); forks < 400 && tu_now() - t0 < 15 && !hung; forks++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            char *b = KnVmAllocate(RTL_NULL, 16 * tu_page(), LAZY);
            TU_CHILD_CHECK(b != NULL);
            for (size_t i = 0; i < 16; i++)
                pg(b, i)[0] = 1;
            TU_CHILD_CHECK(KnVmUnmap(b, 16 * tu_page()) == rcOk);
            _exit(0);
        }
        /* Generous: a sanitized child at low priority on a loaded machine has been seen to take
         * more than 5 s to start its engine and exit; a hung one waits forever. */
        int status = tu_wait_child_for(pid, 20000);
        hung += status == -1;
        failed += status != -1 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    atomic_store(&r.stop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    ck_assert_msg(!hung, "a child forked during faults hung at its first lazy commit (fork %d)", forks);
    ck_assert_int_eq(failed, 0);
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

static char *exit_region;

static void touch_at_exit(void)
{
    /* Runs during exit, possibly after the engine stopped: must not hang. */
    for (size_t i = 0; i < 64; i++)
        pg(exit_region, 512 + i)[0] = 1;
}

START_TEST(exit_with_faults_in_flight_is_clean)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        set_config(KOSVMM_ENGINE_UFFD, 1, 512, 1);
        exit_region = KnVmAllocate(RTL_NULL, 1024 * tu_page(), LAZY);
        if (!exit_region)
            _exit(2);
        atexit(touch_at_exit);
        struct racer r = {exit_region, 512, 0, 0};
        pthread_t t[3];
        for (int i = 0; i < 3; i++)
            pthread_create(&t[i], NULL, keep_writing, &r);
        usleep(20000);
        exit(0); /* with the writers still faulting */
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* ---- userfaultfd blocked ----------------------------------------------------------------- */

START_TEST(blocked_userfaultfd_falls_back_to_the_kernel_engine)
{
    ck_assert_int_eq(tu_block_userfaultfd(), 0);
    ck_assert_int_lt(syscall(SYS_userfaultfd, O_CLOEXEC), 0);
    set_config(KOSVMM_ENGINE_UFFD, 1, 512, 1);
    ck_assert_uint_eq(tu_stats().lazy_engine, KOSVMM_ENGINE_KERNEL);
    char *a = KnVmAllocate(RTL_NULL, 128 * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    for (size_t i = 0; i < 128; i++)
        ck_assert_int_eq(pg(a, i)[0]++, 0);
    ck_assert_int_eq(tu_resident_pages(a, 128 * tu_page()), 128);
    ck_assert_uint_eq(tu_stats().uffd_faults, 0);
    ck_assert_uint_eq(KnVmUnmap(a, 128 * tu_page()), rcOk);
}
END_TEST

START_TEST(config_rejects_bad_values_and_changes_nothing)
{
    kosvmm_lazy_config before = {.size = sizeof(kosvmm_lazy_config)}, after = {.size = sizeof(kosvmm_lazy_config)};
    ck_assert_uint_eq(kosvmm_get_lazy_config(&before), rcOk);
    const kosvmm_lazy_config bad[] = {
        {.size = sizeof(kosvmm_lazy_config), .engine = 7, .window_min = 1, .window_max = 8},
        {.size = sizeof(kosvmm_lazy_config), .engine = KOSVMM_ENGINE_UFFD, .window_min = 0, .window_max = 8},
        {.size = sizeof(kosvmm_lazy_config), .engine = KOSVMM_ENGINE_UFFD, .window_min = 9, .window_max = 8},
        {.size = sizeof(kosvmm_lazy_config), .engine = KOSVMM_ENGINE_UFFD, .window_min = 1, .window_max = 4097},
        {.size = sizeof(kosvmm_lazy_config), .engine = KOSVMM_ENGINE_UFFD, .window_min = 1, .window_max = 8, .readahead = 2},
        {.size = sizeof(kosvmm_lazy_config), .engine = KOSVMM_ENGINE_UFFD, .window_min = 1, .window_max = 8, .user_mode_only = 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_uint_eq(kosvmm_set_lazy_config(&bad[i]), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_set_lazy_config(RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_get_lazy_config(RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_get_lazy_config(&after), rcOk);
    ck_assert_int_eq(memcmp(&before, &after, sizeof before), 0);
}
END_TEST

/* ---- huge-page streams (hand-off to the kernel, UFFDIO_MOVE of staged huge pages) ---------- */

/* A KOSVMM_UFFD_* knob as the library reads it (a boolean word; unset: on). */
static bool knob_on(const char *name)
{
    const char *v = getenv(name);
    return !v || !(strcmp(v, "0") == 0 || strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 ||
                   strcasecmp(v, "off") == 0);
}

static bool thp_available(void)
{
    char buf[128] = "";
    int fd = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return !strstr(buf, "[never]");
}

/* Whether this kernel lets the engine move huge pages: THP not "never", and a userfaultfd that
 * grants UFFD_FEATURE_MOVE (Linux 6.8+). Then, with the knob on, streams must get moves. */
static bool kernel_can_move(void)
{
    if (!thp_available())
        return false;
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    int u = dev >= 0 ? ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC) : -1;
    if (dev >= 0)
        close(dev);
    if (u < 0)
        u = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    if (u < 0)
        return false;
    struct uffdio_api api = {.api = UFFD_API, .features = 1ull << 16 /* UFFD_FEATURE_MOVE */};
    bool ok = ioctl(u, UFFDIO_API, &api) == 0;
    close(u);
    return ok;
}

/* How write streams get whole 2 MiB extents. */
enum huge_mode {
    HUGE_NONE,    /* 4 KiB copies only */
    HUGE_MOVES,   /* staged huge pages moved in (KOSVMM_UFFD_MOVE, with KOSVMM_UFFD_HANDOFF=0) */
    HUGE_HANDOFF, /* handed to the kernel's huge-page faults (KOSVMM_UFFD_HANDOFF, the default) */
};

/* The loop cases of the huge-page stream tests set the knobs before the engine starts (each test
 * runs in its own forked process): 0 turns both off, 1 hand-off off, 2 keeps the environment's
 * settings. Returns what streams must get here. */
static enum huge_mode huge_mode(int i)
{
    if (i == 0)
        ck_assert_int_eq(setenv("KOSVMM_UFFD_MOVE", "0", 1), 0);
    if (i < 2)
        ck_assert_int_eq(setenv("KOSVMM_UFFD_HANDOFF", "0", 1), 0);
    set_config(KOSVMM_ENGINE_UFFD, 1, 512, 1);
    if (!uffd_engine())
        return HUGE_NONE;
    if (knob_on("KOSVMM_UFFD_HANDOFF") && thp_available())
        return HUGE_HANDOFF;
    return knob_on("KOSVMM_UFFD_MOVE") && kernel_can_move() ? HUGE_MOVES : HUGE_NONE;
}

/* Extents streams got whole, either way. */
static uint64_t huge_extents(const kosvmm_stats *s)
{
    return s->uffd_huge_moves + s->uffd_kernel_extents;
}

static uint64_t huge_extents_now(void)
{
    kosvmm_stats t = tu_stats();
    return huge_extents(&t);
}

/* Writes word 0 of pages [first, first + n) in order, with no check on the way (a passing Check
 * assertion allocates); returns the first page whose rest did not come zeroed (a moved huge page
 * is a staged one, never written), or first + n. */
static size_t stream_write_unchecked(char *a, size_t first, size_t n, uint64_t seed)
{
    size_t bad = first + n;
    for (size_t i = first; i < first + n; i++) {
        volatile uint64_t *w = (volatile uint64_t *)pg(a, i);
        /* Written first (volatile, so the compiler cannot read first): a read fault would map the
         * shared zero page, and the write then take the kernel's copy-on-write, never a move. */
        w[0] = seed * 1000003u + i;
        if (bad == first + n && (w[1] != 0 || pg(a, i)[tu_page() - 1] != 0))
            bad = i;
    }
    return bad;
}

static void stream_write(char *a, size_t first, size_t n, uint64_t seed)
{
    size_t bad = stream_write_unchecked(a, first, n, seed);
    ck_assert_msg(bad == first + n, "page %zu not zero-filled", bad);
}

/* The first mapping overlapping [lo, hi) whose smaps VmFlags line satisfies match: its start
 * (lo if it starts below), *end its end; 0 if there is none. */
static uintptr_t first_mapping(uintptr_t lo, uintptr_t hi, bool (*match)(const char *vmflags), uintptr_t *end)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    uintptr_t a = 0, b = 0, found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        uintptr_t x, y;
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &x, &y) == 2)
            a = x, b = y;
        else if (strncmp(line, "VmFlags:", 8) == 0 && a < hi && lo < b && match(line))
            found = a > lo ? a : lo;
    }
    fclose(f);
    if (found && end)
        *end = b;
    return found;
}

/* Advised MADV_HUGEPAGE ("hg"). */
static bool hugepage_advised(const char *vmflags)
{
    return strstr(vmflags, " hg") != NULL;
}

/* Handed to the kernel: advised huge pages and not registered with the handler ("um"). */
static bool handed_to_kernel(const char *vmflags)
{
    return hugepage_advised(vmflags) && !strstr(vmflags, " um");
}

/* Registered and advised huge pages: the kernel would zero a huge page at each fault there, only
 * to drop it and ask the handler. */
static bool registered_and_hugepage_advised(const char *vmflags)
{
    return hugepage_advised(vmflags) && strstr(vmflags, " um");
}

/* The end of the mapping that contains p if it is handed to the kernel, else 0. */
static uintptr_t handed_end(const void *p)
{
    uintptr_t end = 0;
    return first_mapping((uintptr_t)p, (uintptr_t)p + 1, handed_to_kernel, &end) ? end : 0;
}

/* A new lazy region of n pages, streamed through with stream_write; *before: the statistics
 * before the stream. */
static char *streamed_region(size_t n, uint64_t seed, kosvmm_stats *before)
{
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    *before = tu_stats();
    stream_write(a, 0, n, seed);
    return a;
}

static void stream_check(char *a, size_t first, size_t n, uint64_t seed)
{
    for (size_t i = first; i < first + n; i++)
        ck_assert_msg(((uint64_t *)pg(a, i))[0] == seed * 1000003u + i, "page %zu lost its write", i);
}

START_TEST(huge_stream_fills_whole_extents_inside_the_lazy_span_only)
{
    enum huge_mode mode = huge_mode(_i);
    bool expect = mode != HUGE_NONE;
    /* A region of 10 MiB and 3 pages (its edges at no 2 MiB boundary in general)... */
    const size_t n = 10 * HUGE_SZ / tu_page() + 3;
    kosvmm_stats s0;
    char *a = streamed_region(n, 1, &s0);
    kosvmm_stats s1 = tu_stats();
    stream_check(a, 0, n, 1);
    ck_assert_int_eq(tu_resident_pages(a, n * tu_page()), (long)n);
    if (expect)
        ck_assert_uint_ge(huge_extents(&s1) - huge_extents(&s0), 3);
    else
        ck_assert_uint_eq(huge_extents(&s1), huge_extents(&s0));
    /* Every page but perhaps the first (its fault may come before the engine runs) was filled by
     * the handler or, handed off, by the kernel's fault. */
    uint64_t handed = (s1.uffd_kernel_extents - s0.uffd_kernel_extents) * (HUGE_SZ / tu_page());
    ck_assert_uint_ge(s1.uffd_pages_filled - s0.uffd_pages_filled + handed, expect ? n - 1 : 0);
    /* ...and a lazy span with reserved pages around it inside one region: the huge extents stay
     * inside the span, the reserved pages get nothing. */
    const size_t m = 12 * HUGE_SZ / tu_page(), lo = 5, hi = m - 7;
    char *b = KnVmAllocate(RTL_NULL, m * tu_page(), VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(KnVmCommit(pg(b, lo), (hi - lo) * tu_page(), RW), rcOk);
    stream_write(b, lo, hi - lo, 2);
    stream_check(b, lo, hi - lo, 2);
    ck_assert_int_eq(tu_resident_pages(b, lo * tu_page()), 0);
    ck_assert_int_eq(tu_resident_pages(pg(b, hi), (m - hi) * tu_page()), 0);
    ck_assert_int_eq(tu_resident_pages(pg(b, lo), (hi - lo) * tu_page()), (long)(hi - lo));
    kosvmm_stats s2 = tu_stats();
    if (expect)
        ck_assert_uint_ge(huge_extents(&s2) - huge_extents(&s1), 3);
    stream_check(a, 0, n, 1);
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(b, m * tu_page()), rcOk);
}
END_TEST

/* AnonHugePages (kB) of the mappings that overlap [a, a + len), from /proc/self/smaps. */
static long anon_huge_kb(const void *a, size_t len)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    long total = 0;
    bool inside = false;
    while (fgets(line, sizeof line, f)) {
        uintptr_t lo, hi;
        long kb;
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &lo, &hi) == 2)
            inside = lo < (uintptr_t)a + len && (uintptr_t)a < hi;
        else if (inside && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
            total += kb;
    }
    fclose(f);
    return total;
}

/* Whether an empty PMD comes back after its page table emptied (MADV_DONTNEED frees an empty page
 * table with PT_RECLAIM, Linux 6.14+) and a THP can be had now: the two things a whole-PMD move
 * into an extent where a thread faulted first depends on. */
static bool pmd_comes_back_huge(void)
{
    uintptr_t raw = (uintptr_t)mmap(NULL, 2 * HUGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_uint_ne(raw, (uintptr_t)MAP_FAILED);
    char *e = (char *)((raw + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1));
    ck_assert_int_eq(madvise(e, HUGE_SZ, MADV_NOHUGEPAGE), 0);
    e[0] = 1; /* a page table */
    ck_assert_int_eq(madvise(e, HUGE_SZ, MADV_DONTNEED), 0);
    bool huge = madvise(e, HUGE_SZ, MADV_HUGEPAGE) == 0 && madvise(e, HUGE_SZ, MADV_POPULATE_WRITE) == 0 &&
                anon_huge_kb(e, HUGE_SZ) == HUGE_SZ / 1024;
    munmap((void *)raw, 2 * HUGE_SZ);
    return huge;
}

START_TEST(extents_a_thread_faulted_in_first_become_huge_pages)
{
    enum huge_mode mode = huge_mode(_i);
    bool expect = mode != HUGE_NONE;
    /* No read-ahead: every extent is moved in or handed to the kernel for a fault of the writing
     * thread, whose fault path put a page table there before the handler heard of it. */
    set_config(KOSVMM_ENGINE_UFFD, 1, 512, 0);
    const size_t n = 16 * HUGE_SZ / tu_page();
    kosvmm_stats s0;
    char *a = streamed_region(n, 4, &s0);
    kosvmm_stats s1 = tu_stats();
    stream_check(a, 0, n, 4);
    uint64_t moves = huge_extents(&s1) - huge_extents(&s0);
    if (!expect) {
        ck_assert_uint_eq(moves, 0);
    } else {
        ck_assert_uint_ge(moves, 8);
        long kb = anon_huge_kb(a, n * tu_page());
        if (pmd_comes_back_huge())
            ck_assert_msg(kb >= (long)(moves * HUGE_SZ / 1024), "%" PRIu64 " extents moved, %ld kB huge", moves, kb);
        else
            fprintf(stderr, "note: this kernel keeps empty page tables (no PT_RECLAIM) or has no free huge "
                            "page: %" PRIu64 " extents moved page by page (%ld kB huge)\n", moves, kb);
    }
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

/* Whether this kernel makes an extent with pages one huge page in place now (MADV_COLLAPSE, Linux
 * 6.1+, and a free huge page to be had). */
static bool collapse_works(void)
{
    uintptr_t raw = (uintptr_t)mmap(NULL, 2 * HUGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_uint_ne(raw, (uintptr_t)MAP_FAILED);
    char *e = (char *)((raw + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1));
    e[0] = 1;
    bool ok = madvise(e, HUGE_SZ, MADV_HUGEPAGE) == 0 && madvise(e, HUGE_SZ, 25 /* MADV_COLLAPSE */) == 0 &&
              anon_huge_kb(e, HUGE_SZ) == HUGE_SZ / 1024 && e[0] == 1;
    munmap((void *)raw, 2 * HUGE_SZ);
    return ok;
}

/* Whether the page at p is part of a transparent huge page (/proc/kpageflags THP, bit 22), or -1
 * where the page frame cannot be read (unprivileged: pagemap then shows no frame numbers). */
static int in_huge_page(const void *p)
{
    uint64_t ent = 0, flags = 0;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, &ent, 8, (off_t)((uintptr_t)p / tu_page() * 8)), 8);
    close(fd);
    uint64_t pfn = ent & ((1ull << 55) - 1);
    if (!(ent >> 63) || pfn == 0 || (fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    ssize_t got = pread(fd, &flags, 8, (off_t)(pfn * 8));
    close(fd);
    return got == 8 ? (int)((flags >> 22) & 1) : -1;
}

/*
 * A stream begins with 4 KiB pages (its first fault fills the pages before and after, and a few
 * faults in a row may still be chance). Once it has run 64 pages, the extent it is in is made one
 * huge page in place, its pages copied (on this VM a first store to each new 4 KiB mapping costs
 * ~5 us, 4 ms for the extent); a shorter run keeps costing what it touched.
 */
START_TEST(the_extent_a_stream_began_in_becomes_one_huge_page)
{
    enum huge_mode mode = huge_mode(_i);
    const size_t n = 8 * HUGE_SZ / tu_page();
    char *a = KnVmAllocate(RTL_NULL, n * tu_page() + HUGE_SZ, LAZY);
    ck_assert_ptr_nonnull(a);
    char *e = (char *)(((uintptr_t)a + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1));
    const size_t per = HUGE_SZ / tu_page();
    kosvmm_stats s0 = tu_stats();
    stream_write(e, 0, 40, 50);
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.uffd_collapsed_extents, s0.uffd_collapsed_extents);
    ck_assert_int_lt(tu_resident_pages(e, HUGE_SZ), (long)per / 2);
    stream_write(e, 40, n - 40, 50);
    kosvmm_stats s2 = tu_stats();
    stream_check(e, 0, n, 50);
    uint64_t collapsed = s2.uffd_collapsed_extents - s1.uffd_collapsed_extents;
    if (mode != HUGE_HANDOFF) {
        ck_assert_uint_eq(collapsed, 0);
    } else if (!collapse_works()) {
        fprintf(stderr, "note: no MADV_COLLAPSE here (Linux < 6.1) or no free huge page: %" PRIu64
                        " extents collapsed\n", collapsed);
    } else {
        ck_assert_uint_eq(collapsed, 1);
        ck_assert_int_eq(tu_resident_pages(e, HUGE_SZ), (long)per);
        int huge = in_huge_page(pg(e, 7));
        ck_assert_msg(huge != 0, "the extent the stream began in has 4 KiB pages");
    }
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page() + HUGE_SZ), rcOk);
}
END_TEST

/*
 * The handler watches a handed-off stream and hands the next chunk to the kernel once the writer is
 * past the middle of the last one, before the writer gets to its end (and waits there for the
 * handler): a writer that stops short of the middle gets nothing more, one past it gets the next
 * chunk with no fault of its own.
 */
START_TEST(a_handed_off_stream_past_its_chunks_middle_gets_the_next_chunk_without_a_fault)
{
    if (huge_mode(2) != HUGE_HANDOFF)
        return;
    const size_t per = HUGE_SZ / tu_page(), n = 32 * per;
    char *a = KnVmAllocate(RTL_NULL, n * tu_page() + HUGE_SZ, LAZY);
    ck_assert_ptr_nonnull(a);
    char *e = (char *)(((uintptr_t)a + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1));
    /* Written until the stream is handed off: then [e, end) is the kernel's. */
    size_t i = 0;
    uintptr_t end = 0;
    for (; i < per && !end; i++) {
        stream_write(e, i, 1, 60);
        end = handed_end(e);
    }
    ck_assert_msg(end > (uintptr_t)pg(e, i), "no hand-off within the first extent");
    size_t chunk = (end - (uintptr_t)e) / HUGE_SZ;
    ck_assert_uint_ge(chunk, 2);
    /* Short of the middle: nothing more is handed. */
    size_t middle = chunk / 2 * per;
    stream_write(e, i, middle - 1 - i, 60);
    usleep(10 * 1000);
    ck_assert_uint_eq(handed_end(e), end);
    /* Past it: the next chunk, with no fault. */
    kosvmm_stats s0 = tu_stats();
    stream_write(e, middle - 1, 2, 60);
    uintptr_t now = end;
    for (int k = 0; k < 2000 && now == end; k++) {
        usleep(1000);
        now = handed_end(e);
    }
    ck_assert_msg(now > end, "the next chunk was not handed on");
    ck_assert_uint_eq(tu_stats().uffd_faults, s0.uffd_faults);
    stream_write(e, middle + 1, n - middle - 1, 60);
    stream_check(e, 0, n, 60);
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page() + HUGE_SZ), rcOk);
}
END_TEST

START_TEST(random_access_after_a_handed_off_stream_gets_no_huge_pages)
{
    enum huge_mode mode = huge_mode(2);
    const size_t n = 64 * HUGE_SZ / tu_page();
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    /* A stream over the first 8 MiB and a bit: hand-offs run ahead of it, into extents it never
     * reaches (the first covers the extent it began in and the next three). */
    const size_t streamed = 4 * HUGE_SZ / tu_page() + 16;
    stream_write(a, 0, streamed, 7);
    uintptr_t beyond = ((uintptr_t)pg(a, streamed) + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1);
    uintptr_t ahead = first_mapping(beyond, (uintptr_t)pg(a, n), hugepage_advised, NULL);
    if (mode != HUGE_HANDOFF) {
        ck_assert_uint_eq(ahead, 0);
    } else {
        ck_assert_uint_ne(ahead, 0);
        ck_assert_int_eq(tu_resident_pages((void *)ahead, tu_page()), 0);
        /* Then random access elsewhere in the region, until it is handed to kernel paging. */
        for (size_t i = 0; i < 64; i++)
            pg(a, n / 2 + i * 97)[0] = 1;
        ck_assert_uint_eq(first_mapping((uintptr_t)a, (uintptr_t)pg(a, n), hugepage_advised, NULL), 0);
        /* An untouched page there now costs one page, not 2 MiB. */
        ((volatile char *)ahead)[0] = 2;
        uintptr_t e = ahead & ~(uintptr_t)(HUGE_SZ - 1);
        ck_assert_int_lt(tu_resident_pages((void *)e, HUGE_SZ), 8);
    }
    stream_check(a, 0, streamed, 7);
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

START_TEST(huge_stream_skips_extents_already_partly_populated)
{
    enum huge_mode mode = huge_mode(_i);
    bool expect = mode != HUGE_NONE;
    const size_t n = 8 * HUGE_SZ / tu_page();
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    /* A page written in the middle of every extent first: no extent is wholly unpopulated, so
     * the stream must copy around those pages, and keep them. */
    for (size_t i = 300; i < n; i += HUGE_SZ / tu_page())
        ((uint64_t *)pg(a, i))[5] = 0xabcdefu + i;
    kosvmm_stats s0 = tu_stats();
    for (size_t i = 0; i < n; i++)
        ((uint64_t *)pg(a, i))[0] = i + 1;
    kosvmm_stats s1 = tu_stats();
    (void)expect;
    /* Nothing moved or handed off empty; with hand-off, an extent the stream was in may be made one
     * huge page in place, its page kept (checked below). */
    ck_assert_uint_eq(s1.uffd_huge_moves, s0.uffd_huge_moves);
    if (mode == HUGE_HANDOFF)
        ck_assert_uint_ge(s1.uffd_kernel_extents - s0.uffd_kernel_extents,
                          s1.uffd_collapsed_extents - s0.uffd_collapsed_extents);
    else
        ck_assert_uint_eq(s1.uffd_kernel_extents, s0.uffd_kernel_extents);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(((uint64_t *)pg(a, i))[0], i + 1);
        ck_assert_uint_eq(((uint64_t *)pg(a, i))[5], i % (HUGE_SZ / tu_page()) == 300 ? 0xabcdefu + i : 0);
    }
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

START_TEST(decommit_and_reset_inside_a_moved_huge_page)
{
    enum huge_mode mode = huge_mode(_i);
    bool expect = mode != HUGE_NONE;
    const size_t n = 8 * HUGE_SZ / tu_page();
    kosvmm_stats s0;
    char *a = streamed_region(n, 3, &s0);
    if (expect)
        ck_assert_uint_gt(huge_extents_now(), huge_extents(&s0));
    /* The third 2 MiB extent inside the region: moved whole when moves are on. */
    uintptr_t e = (((uintptr_t)a + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1)) + 2 * HUGE_SZ;
    size_t x = (e - (uintptr_t)a) / tu_page();
    ck_assert_uint_eq(KnVmDecommit(pg(a, x + 100), 16 * tu_page()), rcOk);
    ck_assert_uint_eq(KnVmReset(pg(a, x + 300), 8 * tu_page()), rcOk);
    ck_assert_int_eq(tu_resident_pages(pg(a, x + 100), 16 * tu_page()), 0);
    ck_assert_int_eq(tu_resident_pages(pg(a, x + 300), 8 * tu_page()), 0);
    /* Reset pages read zero; decommitted ones do once committed again; the rest kept its data. */
    for (size_t i = x + 300; i < x + 308; i++)
        ck_assert_uint_eq(((uint64_t *)pg(a, i))[0], 0);
    ck_assert_uint_eq(KnVmCommit(pg(a, x + 100), 16 * tu_page(), RW), rcOk);
    for (size_t i = x + 100; i < x + 116; i++) {
        ck_assert_uint_eq(((uint64_t *)pg(a, i))[0], 0);
        ((uint64_t *)pg(a, i))[0] = 3 * 1000003u + i;
    }
    for (size_t i = x + 300; i < x + 308; i++)
        ((uint64_t *)pg(a, i))[0] = 3 * 1000003u + i;
    stream_check(a, 0, n, 3);
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

/* Resident kilobytes of this process's staging area: the private mappings marked wipe-on-fork and
 * huge-page (glibc's getrandom state is wipe-on-fork too, but never huge-page). */
static long staging_rss_kb(void)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    long rss = 0, total = 0;
    while (fgets(line, sizeof line, f)) {
        long v;
        if (sscanf(line, "Rss: %ld kB", &v) == 1)
            rss = v;
        else if (strncmp(line, "VmFlags:", 8) == 0 && strstr(line, " wf") && strstr(line, " hg"))
            total += rss;
    }
    fclose(f);
    return total;
}

struct streamer {
    char *base;
    size_t first, pages;
    uint64_t seed;
    atomic_size_t done; /* pages written so far */
};

static void *stream_thread(void *arg)
{
    struct streamer *w = arg;
    for (size_t i = w->first; i < w->first + w->pages; i++) {
        ((volatile uint64_t *)pg(w->base, i))[0] = w->seed * 1000003u + i;
        atomic_store_explicit(&w->done, i + 1 - w->first, memory_order_relaxed);
    }
    return NULL;
}

START_TEST(staged_huge_pages_are_given_back_once_no_stream_wants_them)
{
    enum huge_mode mode = huge_mode(_i);
    bool expect = mode != HUGE_NONE;
    const size_t n = 12 * HUGE_SZ / tu_page();
    kosvmm_stats s0;
    char *a = streamed_region(n, 5, &s0);
    if (!expect) {
        ck_assert_uint_eq(tu_stats().uffd_staged_pages, s0.uffd_staged_pages);
        ck_assert_int_eq(staging_rss_kb(), 0);
    } else if (mode == HUGE_HANDOFF) {
        /* The kernel zeroes what it is handed: nothing is staged. */
        ck_assert_uint_gt(tu_stats().uffd_kernel_extents, s0.uffd_kernel_extents);
        ck_assert_uint_eq(tu_stats().uffd_staged_pages, s0.uffd_staged_pages);
        ck_assert_int_eq(staging_rss_kb(), 0);
    } else {
        /* The handler stages ahead while a stream runs, and gives the pages back after a second
         * with no move (huge.c). Polled, with the case's timeout as the bound. */
        ck_assert_uint_gt(huge_extents_now(), huge_extents(&s0));
        /* Idle after the stream, the handler fills its slots, then gives them back a second
         * later. */
        while (staging_rss_kb() == 0)
            usleep(1000);
        while (staging_rss_kb() != 0)
            usleep(50 * 1000);
        /* A new stream stages again, and its data is right. */
        char *b = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
        ck_assert_ptr_nonnull(b);
        kosvmm_stats s1 = tu_stats();
        stream_write(b, 0, n, 6);
        stream_check(b, 0, n, 6);
        ck_assert_uint_gt(huge_extents_now(), huge_extents(&s1));
        ck_assert_uint_eq(KnVmUnmap(b, n * tu_page()), rcOk);
    }
    stream_check(a, 0, n, 5);
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

START_TEST(fork_while_staging_child_gets_no_staged_memory)
{
    enum huge_mode mode = huge_mode(_i);
    bool expect = mode != HUGE_NONE;
    const size_t n = 32 * HUGE_SZ / tu_page();
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    stream_write(a, 0, 1024, 4); /* the engine and, with moves, its staging run */
    struct streamer w = {a, 1024, n - 1024, 4, 0};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, stream_thread, &w), 0);
    /* Forks only once the writer runs its loop, not while it is still starting: a thread being
     * started holds the sanitizer runtime's locks, which a child would then wait for forever. */
    while (atomic_load(&w.done) == 0)
        sched_yield();
    for (int k = 0; k < 4; k++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            /* The staging area is empty here, and this child's own streams still work. */
            TU_CHILD_CHECK(staging_rss_kb() == 0);
            const size_t cn = 6 * HUGE_SZ / tu_page();
            char *c = KnVmAllocate(RTL_NULL, cn * tu_page(), LAZY);
            TU_CHILD_CHECK(c != NULL);
            for (size_t i = 0; i < cn; i++) {
                TU_CHILD_CHECK(((uint64_t *)pg(c, i))[0] == 0);
                ((uint64_t *)pg(c, i))[0] = i ^ 0x5555;
            }
            for (size_t i = 0; i < cn; i++)
                TU_CHILD_CHECK(((uint64_t *)pg(c, i))[0] == (i ^ 0x5555));
            for (size_t i = 0; i < 1024; i++)
                TU_CHILD_CHECK(((uint64_t *)pg(a, i))[0] == 4 * 1000003u + i);
            _exit(0);
        }
        ck_assert_int_eq(tu_wait_child_for(pid, 60000), 0);
    }
    pthread_join(t, NULL);
    stream_check(a, 0, n, 4);
    /* The parent's own huge extents go on after the forks (a staged page shared with a child could
     * not be moved any more). */
    kosvmm_stats s0 = tu_stats();
    const size_t m = 6 * HUGE_SZ / tu_page();
    char *b = KnVmAllocate(RTL_NULL, m * tu_page(), LAZY);
    ck_assert_ptr_nonnull(b);
    stream_write(b, 0, m, 5);
    stream_check(b, 0, m, 5);
    if (expect)
        ck_assert_uint_gt(huge_extents_now(), huge_extents(&s0));
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(b, m * tu_page()), rcOk);
}
END_TEST

/* Two and four threads, each streaming its own part: no write lost, and (issue 9) the windows
 * grow for every stream, so far fewer faults than one per 64 pages. */
START_TEST(streams_of_two_and_four_threads_lose_no_write)
{
    bool expect = huge_mode(_i % 3) != HUGE_NONE;
    const int T = _i < 3 ? 2 : 4;
    const size_t n = 32 * HUGE_SZ / tu_page();
    char *a = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY);
    ck_assert_ptr_nonnull(a);
    pthread_t t[4];
    struct streamer w[4];
    kosvmm_stats s0 = tu_stats();
    for (int i = 0; i < T; i++) {
        w[i] = (struct streamer){a, n * (size_t)i / (size_t)T, n / (size_t)T, 6 + (uint64_t)i, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, stream_thread, &w[i]), 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(t[i], NULL);
    kosvmm_stats s1 = tu_stats();
    for (int i = 0; i < T; i++)
        stream_check(a, w[i].first, w[i].pages, w[i].seed);
    ck_assert_int_eq(tu_resident_pages(a, n * tu_page()), (long)n);
    if (expect) {
        ck_assert_uint_gt(huge_extents(&s1) - huge_extents(&s0), 8);
        ck_assert_uint_lt((s1.uffd_faults - s0.uffd_faults) * 64, n);
    }
    ck_assert_uint_eq(KnVmUnmap(a, n * tu_page()), rcOk);
}
END_TEST

/* Fills the process's map entries up to vm.max_map_count with a raw mapping whose pages alternate
 * PROT_NONE and PROT_READ, a map entry a page; returns its start, *len its length, *err why the
 * last change was refused (checked once there is room). One more entry is free after the munmap
 * of page 2, a PROT_READ page between two PROT_NONE ones. */
static char *fill_map_entries(size_t *len, int *err)
{
    long max_maps = tu_read_long("/proc/sys/vm/max_map_count");
    ck_assert_msg(max_maps > 0 && max_maps <= 1000000, "vm.max_map_count %ld out of range for this test", max_maps);
    *len = ((size_t)max_maps + 64) * tu_page();
    char *f = mmap(NULL, *len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ck_assert_ptr_ne(f, MAP_FAILED);
    size_t k = 1;
    while (2 * k + 2 < *len / tu_page() && mprotect(pg(f, 2 * k), tu_page(), PROT_READ) == 0)
        k++;
    *err = errno;
    return f;
}

/*
 * Hand-off at vm.max_map_count. Its MADV_HUGEPAGE and unregistration change the lazy region's map
 * entries one by one, splitting them, and stop at the first split the kernel refuses, keeping what
 * they did before it. Stream a[0] meets the limit with no entry free. a[1] and a[2] have a boundary
 * between two entries of their region (MADV_DONTFORK on part of it) inside the extents they would
 * hand off, and meet the limit with no entry free and with one: where the hand-off starts at an
 * entry's start, the advice takes the first entry with no split and stops at the second's (a[1]);
 * where it must split there first, it takes the free entry for that split (a[2]). Every write must
 * be kept, no part of a region be left both registered and advised huge pages, and, with room
 * again, streams get whole extents again.
 */
START_TEST(streams_at_max_map_count_keep_every_write)
{
    enum huge_mode mode = huge_mode(_i);
    enum { REGIONS = 3 };
    const size_t n = 8 * HUGE_SZ / tu_page();
    char *a[REGIONS];
    for (int i = 0; i < REGIONS; i++) {
        ck_assert_ptr_nonnull(a[i] = KnVmAllocate(RTL_NULL, n * tu_page(), LAZY));
        /* The first hand-off covers 4 extents from the region's first 2 MiB boundary (with the
         * extent the stream began in, made huge in place) or from the next one: both cover mid. */
        char *mid = (char *)(((uintptr_t)a[i] + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1)) + 2 * HUGE_SZ;
        if (i > 0)
            ck_assert_int_eq(madvise(mid, (size_t)(pg(a[i], n) - mid), MADV_DONTFORK), 0);
    }
    /* No check at the limit: a passing one allocates too (Check records where it is), and a
     * sanitizer's allocator needs new mappings for it. */
    size_t flen, unzeroed[REGIONS];
    int refused, given_back = 0;
    char *f = fill_map_entries(&flen, &refused);
    for (int i = 0; i < REGIONS; i++) {
        if (i == 2)
            given_back = munmap(pg(f, 2), tu_page());
        unzeroed[i] = stream_write_unchecked(a[i], 0, n, 20 + (uint64_t)i);
    }
    ck_assert_int_eq(munmap(f, flen), 0);
    ck_assert_int_eq(refused, ENOMEM);
    ck_assert_int_eq(given_back, 0);
    for (int i = 0; i < REGIONS; i++) {
        ck_assert_msg(unzeroed[i] == n, "stream %d: page %zu not zero-filled", i, unzeroed[i]);
        stream_check(a[i], 0, n, 20 + (uint64_t)i);
        ck_assert_msg(!first_mapping((uintptr_t)a[i], (uintptr_t)pg(a[i], n), registered_and_hugepage_advised, NULL),
                      "stream %d at the limit left memory registered and advised huge pages", i);
        ck_assert_uint_eq(KnVmUnmap(a[i], n * tu_page()), rcOk);
    }
    kosvmm_stats s0;
    char *b = streamed_region(n, 30, &s0);
    stream_check(b, 0, n, 30);
    if (mode != HUGE_NONE)
        ck_assert_uint_gt(huge_extents_now(), huge_extents(&s0));
    ck_assert_uint_eq(KnVmUnmap(b, n * tu_page()), rcOk);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("lazy");
    TCase *tc = tcase_create("semantics");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, lazy_memory_reads_zero_keeps_writes_and_resets, 0, 2);
    tcase_add_test(tc, kernel_engine_never_reaches_the_handler);
    tcase_add_test_raise_signal(tc, reserved_pages_of_a_registered_region_still_fault, SIGSEGV);
    tcase_add_test(tc, config_rejects_bad_values_and_changes_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("fault_around");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, fixed_window_fills_neighbours_within_the_lazy_span);
    tcase_add_test(tc, fill_stops_at_the_region_end);
    tcase_add_test(tc, sequential_stream_grows_the_window);
    tcase_add_test(tc, backward_stream_fills_downward_in_grow_down_regions);
    tcase_add_test(tc, random_access_is_demoted_and_costs_no_extra_memory);
    suite_add_tcase(s, tc);

    tc = tcase_create("zero_pages");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, read_pass_maps_zero_pages_and_costs_no_memory, 0, 2);
    tcase_add_loop_test(tc, read_then_write_keeps_data_and_backs_only_written_pages, 0, 2);
    tcase_add_loop_test(tc, decommit_and_reset_of_zero_mapped_pages, 0, 2);
    tcase_add_loop_test(tc, protect_keeps_zero_mapped_pages_and_writes, 0, 2);
    tcase_add_test_raise_signal(tc, write_to_read_only_zero_mapped_page_faults, SIGSEGV);
    tcase_add_loop_test(tc, mdl_from_vm_over_zero_mapped_pages, 0, 2);
    tcase_add_loop_test(tc, fork_after_reads_child_sees_zeros_and_writes_privately, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("first_fault");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, first_fault_in_the_middle_fills_the_pages_before_and_after, 0, 2);
    tcase_add_test(tc, first_fault_window_is_clamped_at_region_and_span_edges);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, many_threads_fault_same_pages_without_losing_writes, 0, 2);
    tcase_add_test(tc, writers_in_step_through_handed_off_extents_lose_no_write);
    tcase_add_test(tc, many_threads_stream_their_own_chunks);
    tcase_add_loop_test(tc, read_from_a_pipe_into_untouched_lazy_memory, 0, 2);
    tcase_add_loop_test(tc, io_uring_read_into_untouched_lazy_memory, 0, 2);
    tcase_add_test(tc, reset_decommit_and_unmap_race_with_faults);
    suite_add_tcase(s, tc);

    tc = tcase_create("huge_streams");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, huge_stream_fills_whole_extents_inside_the_lazy_span_only, 0, 3);
    tcase_add_loop_test(tc, huge_stream_skips_extents_already_partly_populated, 0, 3);
    tcase_add_test(tc, random_access_after_a_handed_off_stream_gets_no_huge_pages);
    tcase_add_loop_test(tc, extents_a_thread_faulted_in_first_become_huge_pages, 0, 3);
    tcase_add_loop_test(tc, the_extent_a_stream_began_in_becomes_one_huge_page, 0, 3);
    tcase_add_test(tc, a_handed_off_stream_past_its_chunks_middle_gets_the_next_chunk_without_a_fault);
    tcase_add_loop_test(tc, decommit_and_reset_inside_a_moved_huge_page, 0, 3);
    tcase_add_loop_test(tc, staged_huge_pages_are_given_back_once_no_stream_wants_them, 0, 3);
    tcase_add_loop_test(tc, fork_while_staging_child_gets_no_staged_memory, 0, 3);
    tcase_add_loop_test(tc, streams_of_two_and_four_threads_lose_no_write, 0, 6);
    tcase_add_loop_test(tc, streams_at_max_map_count_keep_every_write, 0, 3);
    suite_add_tcase(s, tc);

    tc = tcase_create("process");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, fork_child_sees_zero_or_parent_data_and_keeps_working);
    tcase_add_test(tc, exit_with_faults_in_flight_is_clean);
    tcase_add_test(tc, fork_during_fault_storm_child_commits_lazily);
    tcase_add_test(tc, blocked_userfaultfd_falls_back_to_the_kernel_engine);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
