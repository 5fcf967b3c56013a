/* SPDX-License-Identifier: MIT */
/* src/entity/stub.c — kosvmm-entity-stub: the new process of EntityInitFromSegEx; maps the segments it receives, then becomes the program. */
#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "entity/entity_wire.h"
#include "entity/stub.h"

/* A stub is run by the library only; anything unexpected ends it, and the host sees the end of
 * the channel (or the READY message saying why). */
static void quit(const char *why)
{
    fprintf(stderr, "kosvmm-entity-stub: %s\n", why);
    _exit(1);
}

static void send_status(kosvmm_channel *ch, uint32_t kind, Retcode rc, uint32_t index)
{
    struct kvmm_ew_status st = {.h = {KVMM_ENTITY_WIRE_MAGIC, kind}, .rc = (uint32_t)rc, .index = index};
    kosvmm_channel_send(ch, &st, sizeof st);
}

/*
 * A failure the host must hear about: one READY saying why, then the rest of what the host sends
 * is read and dropped until it lets go. Closing with messages unread would make the kernel reset
 * the connection (ECONNRESET), and the host could lose the READY in front of them.
 */
static void fail(kosvmm_channel *ch, Retcode rc, uint32_t index)
{
    send_status(ch, KVMM_EW_READY, rc, index);
    for (;;) {
        Handle h = INVALID_HANDLE;
        static char drop[KOSVMM_CHANNEL_MAX_PAYLOAD];
        Retcode r = kosvmm_channel_recv(ch, &h, drop, sizeof drop, RTL_NULL);
        if (h != INVALID_HANDLE)
            KnHandleClose(h);
        if (r == rcResourceNotFound)
            break;
    }
    kosvmm_channel_close(ch);
    _exit(1);
}

static char *copy_string(kosvmm_channel *ch, const struct kvmm_ew_str *m, size_t n)
{
    size_t len = n - sizeof m->h;
    if (n <= sizeof m->h || m->s[len - 1] != '\0')
        fail(ch, rcInvalidArgument, 0);
    char *s = malloc(len);
    if (!s)
        fail(ch, rcOutOfMemory, 0);
    memcpy(s, m->s, len);
    return s;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    /* The spawning child left only 0, 1, 2 and the channel; close anything a sanitizer runtime or
     * a preloaded library opened, so the program starts with exactly what the host gave it. */
    syscall(SYS_close_range, KVMM_ENTITY_STUB_FD + 1, ~0u, 0);
    kosvmm_channel *ch;
    if (RC_FAILED(kosvmm_channel_from_fd(KVMM_ENTITY_STUB_FD, &ch)))
        quit("no channel on descriptor 3: this program is started by EntityInitFromSegEx");
    kosvmm_peer_cred cred;
    if (RC_FAILED(kosvmm_channel_peer_cred(ch, &cred)) || cred.pid != getppid())
        quit("the channel does not lead to the parent process");

    struct kvmm_stub_start start = {0};
    char *args[ENTITY_ARGS_MAX_WIRE], *envs[ENTITY_ENV_MAX_WIRE];
    uint32_t nsegs = 0;
    for (;;) {
        Handle h;
        union {
            struct kvmm_ew_hdr h;
            struct kvmm_ew_seg seg;
            struct kvmm_ew_str str;
            struct kvmm_ew_load load;
        } m;
        rtl_size_t n;
        Retcode rc = kosvmm_channel_recv(ch, &h, &m, sizeof m, &n);
        if (rc == rcResourceNotFound)
            _exit(0); /* the host let go before the end: nothing to report to */
        if (RC_FAILED(rc))
            fail(ch, rc, nsegs);
        if (n < sizeof m.h || m.h.magic != KVMM_ENTITY_WIRE_MAGIC)
            fail(ch, rcInvalidArgument, nsegs);
        if (m.h.kind == KVMM_EW_SEG) {
            if (h == INVALID_HANDLE || n != sizeof m.seg || nsegs == KOSVMM_ELF_MAX_SEGS)
                fail(ch, rcInvalidArgument, nsegs);
            VmSeg s = m.seg.seg;
            void *at;
            rc = KnPmmMdlMap(h, 0, s.size, s.loadAddr, (int)s.flags, &at);
            KnHandleClose(h); /* the mapping keeps the memory */
            if (RC_FAILED(rc))
                fail(ch, rc, nsegs);
            nsegs++;
            continue;
        }
        if (h != INVALID_HANDLE)
            fail(ch, rcInvalidArgument, nsegs);
        if (m.h.kind == KVMM_EW_ARG && start.argc < ENTITY_ARGS_MAX_WIRE) {
            args[start.argc++] = copy_string(ch, &m.str, n);
        } else if (m.h.kind == KVMM_EW_ENV && start.envc < ENTITY_ENV_MAX_WIRE) {
            envs[start.envc++] = copy_string(ch, &m.str, n);
        } else if (m.h.kind == KVMM_EW_LOAD && n == sizeof m.load) {
            if (m.load.nsegs != nsegs || m.load.nargs != start.argc || m.load.nenvs != start.envc ||
                m.load.name[sizeof m.load.name - 1] != '\0')
                fail(ch, rcInvalidArgument, nsegs);
            start.entry = m.load.entry;
            start.phdr = m.load.phdr;
            start.phnum = m.load.phnum;
            memcpy(start.name, m.load.name, sizeof start.name);
            break;
        } else {
            fail(ch, rcInvalidArgument, nsegs);
        }
    }
    start.argv = args;
    start.envp = envs;
    send_status(ch, KVMM_EW_READY, rcOk, nsegs);

    /* Stopped until EntityRun says GO; a closed channel means EntityFree: leave quietly. */
    struct kvmm_ew_hdr go;
    rtl_size_t n;
    if (RC_FAILED(kosvmm_channel_recv(ch, RTL_NULL, &go, sizeof go, &n)))
        _exit(0);
    if (n != sizeof go || go.magic != KVMM_ENTITY_WIRE_MAGIC || go.kind != KVMM_EW_GO)
        quit("unexpected message instead of GO");
    uintptr_t sp;
    Retcode rc = kvmm_stub_build_stack(&start, &sp);
    send_status(ch, KVMM_EW_STARTED, rc, 0);
    if (RC_FAILED(rc))
        _exit(1);
    kosvmm_channel_close(ch);
    fflush(NULL); /* nothing of the stub's stdio may come out after the program's own output */
    kvmm_stub_jump(&start, sp);
}
