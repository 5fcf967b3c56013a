/* SPDX-License-Identifier: MIT */
/* src/entity/elf_api.c — KnElfCreateVmSegEx / KnElfFreeVmSeg: one MDL buffer per PT_LOAD, one allocation for the array and the header copy. */
#include <coresrv/elf/elf_api.h>
#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "entity/elf_parse.h"
#include "errors.h"
#include "visibility.h"

/*
 * The SDK's KnElfFreeVmSeg gets only the array back, yet the header copy must be freed too, and
 * the caller may have written into the array: the block keeps the handles as created, and is
 * registered, so a foreign, freed or miscounted array is refused instead of being passed to free().
 */
struct seg_block {
    struct seg_block *next;
    size_t count;
    Handle handles[KVMM_ELF_MAX_LOADS];
    _Alignas(16) VmSeg segs[]; /* then the header copy */
};

static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;
static struct seg_block *blocks;

static void close_all(const Handle *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        KnHandleClose(h[i]);
}

static Retcode make_segments(const uint8_t *image, const struct kvmm_elf_info *info, struct seg_block *b)
{
    for (unsigned i = 0; i < info->nloads; i++) {
        const struct kvmm_elf_load *l = &info->load[i];
        Retcode rc = KnVmSegInitFromBuf(&b->segs[i], (void *)(uintptr_t)l->start, l->in_page, l->bytes, l->flags,
                                        l->offset, info->build_id, info->build_id_size,
                                        l->filesz ? image + l->offset : RTL_NULL, l->filesz);
        if (RC_FAILED(rc)) {
            close_all(b->handles, i);
            return rc;
        }
        b->handles[i] = b->segs[i].h;
    }
    return rcOk;
}

KVMM_PUBLIC Retcode KnElfCreateVmSegEx(const void *image, rtl_size_t imageSize, rtl_uintptr_t *entry, VmSeg **segs,
                                       rtl_size_t *segsCount, rtl_uint32_t *symIndex, rtl_size_t *symSize,
                                       rtl_uint32_t *strIndex, rtl_size_t *strSize, void **hdrData,
                                       rtl_size_t *hdrSize)
{
    if (!image || !entry || !segs || !segsCount || !symIndex || !symSize || !strIndex || !strSize || !hdrData ||
        !hdrSize)
        return rcInvalidArgument;
    /* On the stack: the parser allocates nothing, so a malformed image costs no memory at all. */
    struct kvmm_elf_info info;
    int err = kvmm_elf_parse(image, imageSize, (uint64_t)sysconf(_SC_PAGESIZE), &info);
    if (err)
        return kvmm_retcode(err);

    size_t hdr = kvmm_elf_headers_size(&info);
    struct seg_block *b = malloc(sizeof *b + info.nloads * sizeof(VmSeg) + hdr);
    if (!b)
        return rcOutOfMemory;
    b->count = info.nloads;
    Retcode rc = make_segments(image, &info, b);
    if (RC_FAILED(rc)) {
        free(b);
        return rc;
    }
    void *copy = &b->segs[info.nloads];
    kvmm_elf_headers_copy(image, &info, copy);

    pthread_mutex_lock(&blocks_lock);
    b->next = blocks;
    blocks = b;
    pthread_mutex_unlock(&blocks_lock);

    *entry = (rtl_uintptr_t)info.entry;
    *segs = b->segs;
    *segsCount = info.nloads;
    *symIndex = info.sym_index;
    *symSize = info.sym_size;
    *strIndex = info.str_index;
    *strSize = info.str_size;
    *hdrData = copy;
    *hdrSize = hdr;
    return rcOk;
}

KVMM_PUBLIC Retcode KnElfFreeVmSeg(VmSeg *segs, rtl_size_t segsCount)
{
    if (!segs)
        return rcInvalidArgument;
    pthread_mutex_lock(&blocks_lock);
    struct seg_block **p = &blocks;
    while (*p && (*p)->segs != segs)
        p = &(*p)->next;
    struct seg_block *b = *p;
    if (!b || b->count != segsCount) {
        pthread_mutex_unlock(&blocks_lock);
        return rcInvalidArgument;
    }
    *p = b->next;
    pthread_mutex_unlock(&blocks_lock);
    close_all(b->handles, b->count);
    free(b);
    return rcOk;
}
