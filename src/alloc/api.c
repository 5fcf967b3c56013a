/* SPDX-License-Identifier: MIT */
/* src/alloc/api.c — the kos/alloc.h entry points: route by size and alignment, report misuse. */
#include <kos/alloc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc_internal.h"
#include "visibility.h"

void kvmm_alloc_abort(const char *fn, const char *what, const void *p, const char *detail)
{
    /* No stdio buffers: the heap may be what is broken, and this must reach stderr before abort. */
    char msg[256];
    int n = snprintf(msg, sizeof msg, "%s(): %s: %p%s%s%s\n", fn, what, p, detail ? " (" : "",
                     detail ? detail : "", detail ? ")" : "");
    if (n > 0 && write(STDERR_FILENO, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1) < 0)
        n = 0;
    abort();
}

/* The smallest class at least size bytes whose block size is a multiple of align: pages start
 * 64 KiB-aligned, so its blocks are all aligned. -1 when no slab class fits. */
static int aligned_bin(size_t size, size_t align)
{
    for (unsigned b = kvmm_bin_of(size > align ? size : align); b < KVMM_BINS; b++)
        if ((kvmm_bin_size(b) & (align - 1)) == 0)
            return (int)b;
    return -1;
}

static void *allocate(size_t size, size_t align, int zeroed)
{
    if (align == 0 || (align & (align - 1)))
        return RTL_NULL;
    if (size == 0)
        size = 1; /* a unique block KosMemFree accepts */
    int bin = -1;
    if (size <= KVMM_SMALL_MAX)
        bin = align <= 16 ? (int)kvmm_bin_of(size) : align <= KVMM_SMALL_ALIGN_MAX ? aligned_bin(size, align) : -1;
    void *p;
    if (bin >= 0)
        p = kvmm_small_alloc((unsigned)bin);
    else if (size <= KVMM_RUN_MAX && align <= KVMM_SMALL_ALIGN_MAX)
        p = kvmm_run_alloc(size);
    else
        return kvmm_large_alloc(size, align); /* fresh from the kernel: already zero */
    if (p && zeroed)
        memset(p, 0, KosMemGetSize(p));
    return p;
}

KVMM_PUBLIC void *KosMemAlloc(rtl_size_t size)
{
    return allocate(size, 1, 0);
}

KVMM_PUBLIC void *KosMemZalloc(rtl_size_t size)
{
    return allocate(size, 1, 1);
}

KVMM_PUBLIC void *KosMemAllocEx(rtl_size_t size, rtl_size_t align, int zeroed)
{
    return allocate(size, align, zeroed != 0);
}

KVMM_PUBLIC void KosMemFree(void *ptr)
{
    if (!ptr)
        return;
    uintptr_t c = (uintptr_t)ptr & ~(KVMM_CHUNK - 1);
    if (kvmm_chunk_known(c)) {
        kvmm_small_free((struct kvmm_chunk *)c, ptr);
        return;
    }
    int rc = kvmm_large_free(ptr);
    if (rc == -2)
        kvmm_alloc_abort("KosMemFree", "double free detected", ptr, NULL);
    if (rc)
        kvmm_alloc_abort("KosMemFree", "invalid pointer", ptr, "not allocated by KosMemAlloc");
}

KVMM_PUBLIC rtl_size_t KosMemGetSize(void *ptr)
{
    if (!ptr)
        return 0;
    uintptr_t c = (uintptr_t)ptr & ~(KVMM_CHUNK - 1);
    if (kvmm_chunk_known(c))
        return kvmm_small_size((struct kvmm_chunk *)c, ptr);
    return kvmm_large_size(ptr);
}
