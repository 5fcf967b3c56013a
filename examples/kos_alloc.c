/* SPDX-License-Identifier: MIT */
/* examples/kos_alloc.c — a KasperskyOS-style program using kos/alloc.h, built unchanged against kosvmm. */
#include <coresrv/vmm/vmm_api.h>
#include <kos/alloc.h>
#include <rtl/retcode_hr.h>
#include <stdio.h>
#include <string.h>

/* A tiny string table, the kind of code the SDK's allocator serves. */
struct entry {
    struct entry *next;
    char text[];
};

static Retcode push(struct entry **list, const char *text)
{
    rtl_size_t len = strlen(text) + 1;
    struct entry *e = KosMemAlloc(sizeof *e + len);
    if (e == RTL_NULL)
        return rcOutOfMemory;
    memcpy(e->text, text, len);
    e->next = *list;
    *list = e;
    return rcOk;
}

int main(void)
{
    static const char *const words[] = {"reserve", "commit", "protect", "decommit", "unmap"};
    struct entry *list = RTL_NULL;
    for (unsigned i = 0; i < sizeof words / sizeof words[0]; i++) {
        Retcode rc = push(&list, words[i]);
        if (RC_FAILED(rc)) {
            fprintf(stderr, "push: " RETCODE_HR_FMT "\n", RETCODE_HR_PARAMS(rc));
            return 1;
        }
    }

    /* A page-aligned, zeroed buffer; KnVmQuery sees committed, LOCKED memory. */
    rtl_uint8_t *buf = KosMemAllocEx(10000, 4096, 1);
    VmQueryInfo info;
    if (buf == RTL_NULL || KnVmQuery(buf, &info) != rcOk)
        return 1;
    printf("buffer %p: %zu usable bytes, state %s%s, first byte %u\n", (void *)buf, KosMemGetSize(buf),
           info.state == VMM_PAGE_STATE_COMMITTED ? "committed" : "not committed",
           info.attributes & VMM_PAGE_ATTR_LOCKED ? " (LOCKED)" : "", buf[0]);

    for (struct entry *e = list, *next; e; e = next) {
        next = e->next;
        printf("%-8s in a block of %zu bytes\n", e->text, KosMemGetSize(e));
        KosMemFree(e);
    }
    KosMemFree(buf);
    return 0;
}
