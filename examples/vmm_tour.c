/* SPDX-License-Identifier: MIT */
/* vmm_tour.c — a guided walk through one region's life: reserve, commit, write, protect, decommit, reset, unmap. */
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>
#include <rtl/retcode_hr.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGES 16

static size_t pg;

/* Stops the tour at the first failure: every later step depends on the earlier ones. */
static void must(Retcode rc, const char *what)
{
    if (RC_FAILED(rc)) {
        fprintf(stderr, "%s failed: " RETCODE_HR_FMT "\n", what, RETCODE_HR_PARAMS(rc));
        exit(1);
    }
}

static const char *state_name(rtl_uint32_t s)
{
    return s == VMM_PAGE_STATE_COMMITTED ? "committed" : s == VMM_PAGE_STATE_RESERVED ? "reserved" : "free";
}

static void attr_names(rtl_uint32_t a, char *out, size_t n)
{
    snprintf(out, n, "%s%s%s%s%s", a & VMM_PAGE_ATTR_LOCKED ? "LOCKED " : "", a & VMM_PAGE_ATTR_LAZY ? "LAZY " : "",
             a & VMM_PAGE_ATTR_PINNED ? "PINNED " : "", a & VMM_PAGE_ATTR_GUARD ? "GUARD " : "",
             a & VMM_PAGE_ATTR_MDL ? "MDL " : "");
    if (out[0] == '\0')
        snprintf(out, n, "-");
}

/* The kernel's view, independent of kosvmm's bookkeeping: how many pages really hold RAM. */
static size_t resident(void *addr, size_t len)
{
    unsigned char vec[PAGES];
    size_t n = len / pg, count = 0;
    if (n > PAGES || mincore(addr, len, vec) != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        count += vec[i] & 1;
    return count;
}

/* Walks the region run by run, as KnVmQuery groups pages with identical state, protection and attributes. */
static void show(const char *step, char *base)
{
    printf("\n== %s\n", step);
    for (char *p = base; p < base + PAGES * pg;) {
        VmQueryInfo qi;
        char attrs[64];
        must(KnVmQuery(p, &qi), "KnVmQuery");
        attr_names(qi.attributes, attrs, sizeof attrs);
        size_t len = qi.runSize;
        if ((char *)qi.pageBase + len > base + PAGES * pg)
            len = (size_t)(base + PAGES * pg - (char *)qi.pageBase);
        printf("  pages %2zu-%2zu  %-9s  %c%c%c  %-16s resident %zu/%zu\n", (size_t)((char *)qi.pageBase - base) / pg,
               (size_t)((char *)qi.pageBase - base + len) / pg - 1, state_name(qi.state),
               qi.protection & VMM_FLAG_READ ? 'r' : '-', qi.protection & VMM_FLAG_WRITE ? 'w' : '-',
               qi.protection & VMM_FLAG_EXECUTE ? 'x' : '-', attrs, resident(qi.pageBase, len), len / pg);
        p = (char *)qi.pageBase + len;
    }
}

int main(void)
{
    pg = (size_t)sysconf(_SC_PAGESIZE);

    /* Addresses only: no RAM is used and any access would fault. */
    char *base = KnVmAllocate(RTL_NULL, PAGES * pg, VMM_FLAG_RESERVE | VMM_FLAG_READ | VMM_FLAG_WRITE);
    if (base == RTL_NULL)
        must(kosvmm_last_error(), "KnVmAllocate");
    printf("reserved %d pages at %p\n", PAGES, (void *)base);
    show("after KnVmAllocate(RESERVE|READ|WRITE)", base);

    /* The region has no LOCKED flag, so this commit is lazy; the flags argument is ignored, as on KasperskyOS. */
    must(KnVmCommit(base, 8 * pg, VMM_FLAG_LOCKED), "KnVmCommit");
    show("after KnVmCommit of pages 0-7 (lazy: nothing resident yet)", base);

    memset(base, 'k', 4 * pg);
    show("after writing pages 0-3 (first touch brings in RAM)", base);

    must(KnVmProtect(base, 8 * pg, VMM_FLAG_READ), "KnVmProtect");
    show("after KnVmProtect(pages 0-7, READ): contents kept, writes now fault", base);
    printf("  page 0 still reads '%c'\n", base[0]);

    must(KnVmDecommit(base, 2 * pg), "KnVmDecommit");
    show("after KnVmDecommit of pages 0-1: RAM freed, back to reserved, protection remembered", base);

    /* Reset makes every page usable with no further call, reading as zero. */
    must(KnVmReset(base, PAGES * pg), "KnVmReset");
    show("after KnVmReset of the whole region: lazily committed, all zero", base);
    printf("  page 2 now reads %d, page 8 takes writes again\n", base[2 * pg]);
    base[8 * pg] = 1;

    /* A full commit: populated now, and pinned when RLIMIT_MEMLOCK allows it. */
    char *eager = KnVmAllocate(RTL_NULL, 4 * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED |
                               VMM_FLAG_READ | VMM_FLAG_WRITE);
    if (eager == RTL_NULL)
        must(kosvmm_last_error(), "KnVmAllocate(COMMIT|LOCKED)");
    VmQueryInfo qi;
    must(KnVmQuery(eager, &qi), "KnVmQuery");
    printf("\n== a second region, KnVmAllocate(RESERVE|COMMIT|LOCKED|READ|WRITE) of 4 pages\n"
           "  %s, resident %zu/4, %s\n", state_name(qi.state), resident(eager, 4 * pg),
           qi.attributes & VMM_PAGE_ATTR_PINNED ? "pinned with mlock" : "populated but not pinned (RLIMIT_MEMLOCK)");

    kosvmm_stats st;
    must(kosvmm_get_stats(&st), "kosvmm_get_stats");
    printf("\nkosvmm_get_stats: %llu regions, %llu bytes reserved, %llu committed (%llu lazy, %llu locked, "
           "%llu pinned)\n", (unsigned long long)st.regions, (unsigned long long)st.reserved_bytes,
           (unsigned long long)st.committed_bytes, (unsigned long long)st.lazy_bytes,
           (unsigned long long)st.locked_bytes, (unsigned long long)st.pinned_bytes);

    /* Errors are Retcodes; nothing changes when a call is refused. */
    Retcode rc = KnVmCommit(base + 1, pg, 0);
    printf("\nKnVmCommit at an unaligned address: " RETCODE_HR_FMT "\n", RETCODE_HR_PARAMS(rc));
    rc = KnVmDecommit(base, (PAGES + 1) * pg);
    printf("KnVmDecommit past the end of the region: " RETCODE_HR_FMT "\n", RETCODE_HR_PARAMS(rc));

    must(KnVmUnmap(eager, 4 * pg), "KnVmUnmap");
    must(KnVmUnmap(base, PAGES * pg), "KnVmUnmap");
    must(KnVmQuery(base, &qi), "KnVmQuery");
    printf("after KnVmUnmap the first page is %s\n", state_name(qi.state));
    return 0;
}
