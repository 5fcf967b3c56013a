/* SPDX-License-Identifier: MIT */
/* elf_stub.c — the new process of the Einit-style example: receives MDL segments over an inherited channel, maps each at its load address, jumps to the entry point. */
#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>
#include <rtl/retcode_hr.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elf_loader.h"

static void must(Retcode rc, const char *what)
{
    if (RC_FAILED(rc)) {
        fprintf(stderr, "elf_stub: %s failed: " RETCODE_HR_FMT "\n", what, RETCODE_HR_PARAMS(rc));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: elf_stub FD  (started by elf_loader)\n");
        return 2;
    }
    kosvmm_channel *ch;
    must(kosvmm_channel_from_fd(atoi(argv[1]), &ch), "kosvmm_channel_from_fd");

    /* The pair was made by the loader before it forked us: its credentials are the loader's. */
    kosvmm_peer_cred cred;
    must(kosvmm_channel_peer_cred(ch, &cred), "kosvmm_channel_peer_cred");
    if (cred.pid != getppid()) {
        fprintf(stderr, "elf_stub: the channel's peer (pid %d) is not my parent\n", (int)cred.pid);
        return 1;
    }

    unsigned mapped = 0;
    for (;;) {
        Handle h;
        union {
            VmSeg seg;
            struct elf_start start;
        } msg;
        rtl_size_t n;
        must(kosvmm_channel_recv(ch, &h, &msg, sizeof msg, &n), "kosvmm_channel_recv");
        if (h == INVALID_HANDLE) { /* payload only: the start message ends the list */
            if (n != sizeof msg.start || msg.start.segments != mapped) {
                fprintf(stderr, "elf_stub: bad start message\n");
                return 1;
            }
            kosvmm_channel_close(ch);
            fprintf(stderr, "elf_stub: %u segments mapped, jumping to %#lx\n", mapped,
                    (unsigned long)msg.start.entry);
            fflush(NULL); /* the program exits with a raw syscall: nothing of ours is flushed after */
            void (*entry)(void) = (void (*)(void))(uintptr_t)msg.start.entry;
            entry();
            return 1; /* not reached: the program exits by itself */
        }
        if (n != sizeof msg.seg) {
            fprintf(stderr, "elf_stub: bad segment message\n");
            return 1;
        }
        VmSeg seg = msg.seg;
        seg.h = h; /* the handle as it arrived in this process */
        void *at;
        must(KnPmmMdlMap(seg.h, 0, seg.size, seg.loadAddr, (int)seg.flags, &at), "KnPmmMdlMap");
        if (at != seg.loadAddr) {
            fprintf(stderr, "elf_stub: segment landed at %p, not %p\n", at, seg.loadAddr);
            return 1;
        }
        must(KnHandleClose(seg.h), "KnHandleClose"); /* closing a handle never breaks its mapping */
        mapped++;
    }
}
