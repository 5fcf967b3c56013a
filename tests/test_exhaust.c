/* SPDX-License-Identifier: MIT */
/* tests/test_exhaust.c — resource exhaustion of MDL buffers and handle transfer: RLIMIT_NOFILE, descriptors in flight, vm.max_map_count, RLIMIT_AS, RLIMIT_MEMLOCK with partial room. */
#include "testutil.h"

#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "handle_table.h"
#include "mdl_memfd/mdl_internal.h"

#define R VMM_FLAG_READ
#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define RX (VMM_FLAG_READ | VMM_FLAG_EXECUTE)
#define T KOSVMM_RIGHT_TRANSFER
#define SENTINEL ((Handle)0x5a5a5a5au)

static size_t P(void)
{
    return tu_page();
}

static char *pg(void *base, size_t i)
{
    return (char *)base + i * tu_page();
}

static void fill(char *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (char)(seed + i % 251);
}

static bool filled(const char *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (char)(seed + i % 251))
            return false;
    return true;
}

/* ---- RLIMIT_NOFILE ----------------------------------------------------------------------- */

static struct rlimit nofile_saved;

/*
 * Lowers the soft RLIMIT_NOFILE so that exactly room descriptor numbers are free below it: the
 * kernel refuses any number >= the limit (EMFILE), and a new descriptor takes the lowest free
 * number, so this is exactly how many more descriptors the process can open. Only the soft limit
 * moves, so fd_unlimit can restore it even as an ordinary user. Between the two no Check assertion
 * runs: Check's bookkeeping must not meet the limit.
 */
static void fd_room(int room)
{
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &nofile_saved), 0);
    int n, count = 0;
    for (n = 0;; n++) {
        if (fcntl(n, F_GETFD) == -1 && errno == EBADF) {
            if (count == room)
                break;
            count++;
        }
    }
    struct rlimit lim = nofile_saved;
    lim.rlim_cur = (rlim_t)n;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
}

static void fd_unlimit(void)
{
    if (setrlimit(RLIMIT_NOFILE, &nofile_saved) != 0)
        abort();
}

/* The visible state a refused call must leave exactly as it was. */
typedef struct snapshot {
    int fds;
    uint32_t handles, rpages;
    kosvmm_stats st;
    long maps;
} snapshot;

static snapshot snap(void)
{
    snapshot s = {tu_fd_count(), kvmm_handle_count(), kvmm_mdl_rpage_count(), tu_stats(), tu_maps_lines()};
    return s;
}

static void assert_unchanged(const snapshot *a, const char *what, int room)
{
    snapshot b = snap();
    ck_assert_msg(b.fds == a->fds, "%s, room %d: %d fds, %d before", what, room, b.fds, a->fds);
    ck_assert_msg(b.handles == a->handles, "%s, room %d: %u handles, %u before", what, room, b.handles, a->handles);
    ck_assert_msg(b.rpages == a->rpages, "%s, room %d: %u revocation pages, %u before", what, room, b.rpages,
                  a->rpages);
    ck_assert_msg(b.maps == a->maps, "%s, room %d: %ld mappings, %ld before", what, room, b.maps, a->maps);
    ck_assert_uint_eq(b.st.regions, a->st.regions);
    ck_assert_uint_eq(b.st.committed_bytes, a->st.committed_bytes);
    ck_assert_uint_eq(b.st.reserved_bytes, a->st.reserved_bytes);
}

enum create_op {
    OP_CREATE_RW, OP_CREATE_R, OP_FROMBUF_RW, OP_FROMBUF_RX, OP_CLONE_FIRST, OP_CLONE_R_AGAIN,
    OP_FROMVM_LAZY_RW, OP_FROMVM_LOCKED_R, OP_SEG_FROMBUF, OP_SEG_FROMVM, OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "KnPmmMdlCreate RW", "KnPmmMdlCreate R", "KnPmmMdlCreateFromBuf RW", "KnPmmMdlCreateFromBuf RX",
    "KnPmmMdlClone (first: new revocation page)", "KnPmmMdlClone of a read-only handle (page exists)",
    "KnPmmMdlCreateFromVm lazy RW", "KnPmmMdlCreateFromVm locked R", "KnVmSegInitFromBuf", "KnVmSegInitFromVm",
};

#define NF_PAGES 4

/*
 * Every way of making an MDL handle, with 0, 1, 2, ... descriptors of room: each attempt either
 * fails with rcQuotaExceeded (the header: "no file descriptor left under RLIMIT_NOFILE ... Nothing
 * is left allocated then") leaving descriptors, handles, revocation pages, mappings, statistics
 * and the memory of a CreateFromVm range exactly as they were, or succeeds once there is room;
 * after the limit is lifted the handle works and closing it returns everything.
 */
START_TEST(nofile_during_mdl_creation)
{
    const enum create_op op = (enum create_op)_i;
    const size_t size = NF_PAGES * P();
    static char src[NF_PAGES * 4096 * 4];
    ck_assert_uint_le(size, sizeof src);
    fill(src, size, 11u * (unsigned)op);

    /* What the operation works on exists before the snapshot. */
    Handle origin = INVALID_HANDLE, ro_origin = INVALID_HANDLE;
    char *region = RTL_NULL;
    if (op == OP_CLONE_FIRST) {
        ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0); /* a forked test starts with none */
        ck_assert_uint_eq(KnPmmMdlCreateFromBuf(size, RW, src, size, &origin), rcOk);
    } else if (op == OP_CLONE_R_AGAIN) {
        Handle first;
        ck_assert_uint_eq(KnPmmMdlCreateFromBuf(size, R, src, size, &ro_origin), rcOk);
        ck_assert_uint_eq(KnPmmMdlClone(ro_origin, 0, P(), &first), rcOk); /* the page now exists */
        ck_assert_uint_eq(KnHandleClose(first), rcOk);
        origin = ro_origin;
    } else if (op == OP_FROMVM_LAZY_RW || op == OP_SEG_FROMVM) {
        region = KnVmAllocate(RTL_NULL, size, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
        ck_assert_ptr_nonnull(region);
        fill(region, size / 2, 11u * (unsigned)op); /* half touched, half never touched */
    } else if (op == OP_FROMVM_LOCKED_R) {
        region = KnVmAllocate(RTL_NULL, size, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW);
        ck_assert_ptr_nonnull(region);
        fill(region, size, 11u * (unsigned)op);
    }
    snapshot s0 = snap();

    Retcode rc = rcFail;
    Handle h = SENTINEL;
    VmSeg seg;
    int room;
    for (room = 0; room < 8; room++) {
        memset(&seg, 0x5A, sizeof seg);
        h = SENTINEL;
        fd_room(room);
        switch (op) {
        case OP_CREATE_RW: rc = KnPmmMdlCreate(size, RW, &h); break;
        case OP_CREATE_R: rc = KnPmmMdlCreate(size, R, &h); break;
        case OP_FROMBUF_RW: rc = KnPmmMdlCreateFromBuf(size, RW, src, size, &h); break;
        case OP_FROMBUF_RX: rc = KnPmmMdlCreateFromBuf(size, RX, src, size, &h); break;
        case OP_CLONE_FIRST:
        case OP_CLONE_R_AGAIN: rc = KnPmmMdlClone(origin, P(), size - P(), &h); break;
        case OP_FROMVM_LAZY_RW: rc = KnPmmMdlCreateFromVm(region, size, RW, &h); break;
        case OP_FROMVM_LOCKED_R: rc = KnPmmMdlCreateFromVm(region, size, R, &h); break;
        case OP_SEG_FROMBUF:
            rc = KnVmSegInitFromBuf(&seg, (void *)(uintptr_t)0x400000, 16, size, RX, 0, "id", 2, src, size - 16);
            h = seg.h;
            break;
        case OP_SEG_FROMVM:
            rc = KnVmSegInitFromVm(&seg, (void *)(uintptr_t)0x400000, region, size, RW);
            h = seg.h;
            break;
        default: break;
        }
        fd_unlimit();
        if (rc == rcOk)
            break;
        ck_assert_msg(rc == rcQuotaExceeded, "%s with %d descriptors of room: %#x, expected rcQuotaExceeded",
                      op_names[op], room, (unsigned)rc);
        if (op == OP_SEG_FROMBUF || op == OP_SEG_FROMVM) {
            ck_assert_uint_eq(seg.h, (Handle)0x5a5a5a5au); /* *seg is written only on success */
        } else {
            ck_assert_uint_eq(h, SENTINEL);
        }
        assert_unchanged(&s0, op_names[op], room);
        if (region) { /* the range is untouched: ordinary committed memory with its contents */
            for (size_t i = 0; i < NF_PAGES; i++) {
                VmQueryInfo q = tu_query(pg(region, i));
                ck_assert_uint_eq(q.state, VMM_PAGE_STATE_COMMITTED);
                ck_assert_uint_eq(q.attributes & VMM_PAGE_ATTR_MDL, 0);
                tu_assert_perms(pg(region, i), "rw-p");
            }
            size_t done = op == OP_FROMVM_LOCKED_R ? size : size / 2;
            ck_assert(filled(region, done, 11u * (unsigned)op));
        }
    }
    ck_assert_msg(rc == rcOk, "%s still failing with %d descriptors of room: %#x", op_names[op], room, (unsigned)rc);
    ck_assert_int_ge(room, 1); /* with no room at all, nothing can have worked */

    /* The limit lifted: the handle works. */
    rtl_size_t got = 0;
    ck_assert_uint_eq(KnPmmMdlGetSize(h, &got), rcOk);
    bool clone = op == OP_CLONE_FIRST || op == OP_CLONE_R_AGAIN;
    ck_assert_uint_eq(got, clone ? size - P() : size);
    void *m;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, got, RTL_NULL, R, &m), rcOk);
    switch (op) {
    case OP_CREATE_RW:
    case OP_CREATE_R:
        for (size_t i = 0; i < got; i += 512)
            ck_assert_int_eq(((char *)m)[i], 0);
        break;
    case OP_SEG_FROMBUF:
        ck_assert(filled((char *)m + 16, size - 16, 11u * (unsigned)op));
        ck_assert_int_eq(((char *)m)[0], 0);
        break;
    case OP_FROMVM_LAZY_RW:
    case OP_SEG_FROMVM:
        ck_assert(filled(m, size / 2, 11u * (unsigned)op));
        ck_assert_int_eq(((char *)m)[size - 1], 0);
        /* the range itself became MDL-backed, contents kept */
        ck_assert_uint_ne(tu_query(region).attributes & VMM_PAGE_ATTR_MDL, 0);
        ck_assert(filled(region, size / 2, 11u * (unsigned)op));
        break;
    case OP_FROMVM_LOCKED_R:
        ck_assert(filled(m, size, 11u * (unsigned)op));
        break;
    default: /* FromBuf and clones: src, from the clone's window on */
        ck_assert_int_eq(memcmp(m, src + (clone ? P() : 0), got), 0);
        break;
    }
    ck_assert_uint_eq(KnVmUnmap(m, got), rcOk);
    if (op == OP_CREATE_RW || op == OP_FROMBUF_RW || op == OP_CLONE_FIRST || op == OP_FROMVM_LAZY_RW) {
        ck_assert_uint_eq(KnPmmMdlMap(h, 0, P(), RTL_NULL, RW, &m), rcOk);
        ((char *)m)[0] = 42;
        ck_assert_uint_eq(KnVmUnmap(m, P()), rcOk);
    }

    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    if (region)
        ck_assert_uint_eq(KnVmUnmap(region, size), rcOk);
    if (origin != INVALID_HANDLE)
        ck_assert_uint_eq(KnHandleClose(origin), rcOk);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
    ck_assert_int_eq(tu_fd_count(), s0.fds - (origin != INVALID_HANDLE ? 1 + (op == OP_CLONE_R_AGAIN) : 0));
    ck_assert_uint_eq(tu_stats().regions, 0);
}
END_TEST

/* h0 -> clone -> clone -> clone: a handle whose transfer carries 1 + depth + 1 descriptors
 * (the buffer, its origins' revocation pages' words and its own). All words come from one local
 * page, but each travels as its own descriptor. */
static Handle deep_clone(Handle h0, int depth, Handle *chain)
{
    Handle h = h0;
    for (int i = 0; i < depth; i++) {
        ck_assert_uint_eq(KnPmmMdlClone(h, 0, P(), &chain[i]), rcOk);
        h = chain[i];
    }
    return h;
}

static bool nothing_queued(kosvmm_channel *c)
{
    struct pollfd p = {kosvmm_channel_fd(c), POLLIN, 0};
    return poll(&p, 1, 0) == 0;
}

#define DEPTH 3

/*
 * The sending side out of descriptors: kosvmm_channel_send_handle lends the datagram the handle's
 * own descriptors (buffer and revocation pages), except that a read-only copy of a writable
 * handle needs the buffer's read-only description, made by the first such send and kept while a
 * handle to the buffer lives. Without room for it the send must fail with rcQuotaExceeded, change
 * nothing and send nothing; with room for one descriptor it works, the next one needs no room at
 * all, and the receiver gets a working handle. Closing every handle gives the descriptor back.
 */
START_TEST(nofile_send_side)
{
    const int before = tu_fd_count();
    Handle h0, chain[DEPTH];
    ck_assert_uint_eq(KnPmmMdlCreate(P(), RW, &h0), rcOk);
    void *m;
    ck_assert_uint_eq(KnPmmMdlMap(h0, 0, P(), RTL_NULL, RW, &m), rcOk);
    memset(m, 0x6B, P());
    Handle h = deep_clone(h0, DEPTH, chain);
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    snapshot s0 = snap();
    Retcode rc = rcFail;
    int room;
    for (room = 0; room < 2 + DEPTH + 2; room++) {
        fd_room(room);
        rc = kosvmm_channel_send_handle(a, h, R | T, "deep", 4);
        fd_unlimit();
        if (rc == rcOk)
            break;
        ck_assert_msg(rc == rcQuotaExceeded, "send with %d descriptors of room: %#x", room, (unsigned)rc);
        assert_unchanged(&s0, "send_handle", room);
        ck_assert_msg(nothing_queued(b), "a refused send queued a datagram (room %d)", room);
    }
    ck_assert_uint_eq(rc, rcOk);
    ck_assert_int_eq(room, 1);                  /* the read-only description, nothing else */
    ck_assert_int_eq(tu_fd_count(), s0.fds + 1);
    fd_room(0);
    rc = kosvmm_channel_send_handle(a, h, R | T, "more", 4);
    fd_unlimit();
    ck_assert_uint_eq(rc, rcOk);                /* lent descriptors only: no room needed */
    ck_assert_int_eq(tu_fd_count(), s0.fds + 1);
    Handle got, more;
    char buf[8];
    rtl_size_t n;
    ck_assert_uint_eq(kosvmm_channel_recv(b, &got, buf, sizeof buf, &n), rcOk);
    ck_assert_uint_eq(n, 4);
    ck_assert_uint_eq(kosvmm_channel_recv(b, &more, buf, sizeof buf, &n), rcOk);
    ck_assert_uint_eq(KnHandleClose(more), rcOk);
    void *r;
    ck_assert_uint_eq(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &r), rcOk);
    ck_assert_uint_eq(((unsigned char *)r)[P() - 1], 0x6B);
    /* revoking the root reaches the received copy through every word it carries */
    ck_assert_uint_eq(KnHandleRevoke(h0), rcOk);
    ck_assert_uint_eq(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &m), rcHandleRevoked);
    ck_assert_uint_eq(KnVmUnmap(r, P()), rcOk);
    ck_assert_uint_eq(KnHandleClose(got), rcOk);
    for (int i = 0; i < DEPTH; i++)
        ck_assert_uint_eq(KnHandleClose(chain[i]), rcOk);
    ck_assert_uint_eq(KnHandleClose(h0), rcInvalidArgument); /* KnHandleRevoke closed it */
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
    ck_assert_int_eq(tu_fd_count(), before);
}
END_TEST

/*
 * The receiving side out of descriptors with a message of many descriptors (test_channel covers
 * one revocation page with room 0 and 1): with room for 0 .. all-but-one of them, the kernel
 * installs what fits and sets MSG_CTRUNC; the receive must be rcQuotaExceeded with every installed
 * descriptor closed, the message consumed, and the next message (sent behind it) delivered.
 */
START_TEST(nofile_receive_side_many_fds)
{
    Handle h0, chain[DEPTH];
    ck_assert_uint_eq(KnPmmMdlCreate(P(), RW, &h0), rcOk);
    Handle h = deep_clone(h0, DEPTH, chain);
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    /* the buffer, the pages of DEPTH + 1 words (INLINE until the receiver has the channel's feedback
     * page), and that page, which comes last and so is cut first: it arrives with the last one */
    const int nfds = 1 + DEPTH + 1 + 1;
    for (int room = 0; room < nfds; room++) {
        ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R | T, "x", 1), rcOk);
        int seq = room;
        ck_assert_uint_eq(kosvmm_channel_send(a, &seq, sizeof seq), rcOk);
        snapshot s0 = snap();
        Handle got = SENTINEL;
        fd_room(room);
        Retcode rc = kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL);
        fd_unlimit();
        ck_assert_msg(rc == rcQuotaExceeded, "receive with room for %d of %d descriptors: %#x", room, nfds,
                      (unsigned)rc);
        ck_assert_uint_eq(got, SENTINEL);
        assert_unchanged(&s0, "recv", room);
        int next = -1;
        ck_assert_uint_eq(kosvmm_channel_recv(b, &got, &next, sizeof next, RTL_NULL), rcOk);
        ck_assert_uint_eq(got, INVALID_HANDLE);
        ck_assert_int_eq(next, room);
    }
    /* with room for all of them it arrives, and works */
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R | T, RTL_NULL, 0), rcOk);
    Handle got;
    fd_room(nfds);
    Retcode rc = kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL);
    fd_unlimit();
    ck_assert_uint_eq(rc, rcOk);
    void *m;
    ck_assert_uint_eq(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &m), rcOk);
    ck_assert_uint_eq(KnVmUnmap(m, P()), rcOk);
    ck_assert_uint_eq(KnHandleClose(got), rcOk);
    for (int i = 0; i < DEPTH; i++)
        ck_assert_uint_eq(KnHandleClose(chain[i]), rcOk);
    ck_assert_uint_eq(KnHandleClose(h0), rcOk);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
}
END_TEST

/* Drops capabilities from the effective and permitted sets of this (forked) test process. */
static bool drop_caps(const int *caps, int n)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) != 0)
        return false;
    for (int i = 0; i < n; i++) {
        unsigned idx = (unsigned)caps[i] / 32, bit = 1u << (caps[i] % 32);
        (void)prctl(PR_CAPBSET_DROP, caps[i], 0, 0, 0);
        data[idx].effective &= ~bit;
        data[idx].permitted &= ~bit;
        data[idx].inheritable &= ~bit;
    }
    if (syscall(SYS_capset, &hdr, data) != 0)
        return false;
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) != 0)
        return false;
    for (int i = 0; i < n; i++)
        if (data[caps[i] / 32].effective & (1u << (caps[i] % 32)))
            return false;
    return true;
}

/*
 * Descriptors in flight: Linux refuses SCM_RIGHTS (ETOOMANYREFS) once the sending user has more
 * descriptors queued in sockets than its RLIMIT_NOFILE, unless it has CAP_SYS_RESOURCE or
 * CAP_SYS_ADMIN (so they are dropped here; an ordinary user has neither). Handles sent and never
 * received reach that: the send must fail with rcQuotaExceeded without leaking the descriptors it
 * made, the messages already queued must all arrive intact, and once drained sending works again.
 */
START_TEST(descriptors_in_flight_limit)
{
    /* The count is per user, shared with every process of the uid (other test runs as root on
     * the same machine included): as root, this test process becomes a uid of its own, which also
     * drops every capability. An ordinary user has none to drop, and meson runs this suite alone. */
    if (geteuid() == 0) {
        uid_t own = (uid_t)(3000000 + getpid() % 1000000);
        ck_assert_int_eq(setresgid(own, own, own), 0);
        ck_assert_int_eq(setresuid(own, own, own), 0);
    }
    static const int caps[] = {CAP_SYS_RESOURCE, CAP_SYS_ADMIN};
    ck_assert_msg(drop_caps(caps, 2), "cannot drop CAP_SYS_RESOURCE / CAP_SYS_ADMIN");
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreate(P(), RW, &h), rcOk);
    void *m;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P(), RTL_NULL, RW, &m), rcOk);
    memset(m, 0x3D, P());
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    /* the first send makes h's revocation word and the channel's feedback page, the second sees
     * that b has that page (closing its descriptor) and puts h's page in b's table: before the counts */
    for (int i = 0; i < 2; i++) {
        Handle warm;
        ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
        ck_assert_uint_eq(kosvmm_channel_recv(b, &warm, RTL_NULL, 0, RTL_NULL), rcOk);
        ck_assert_uint_eq(KnHandleClose(warm), rcOk);
    }

    int base = tu_fd_count();
    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    lim = old;
    /* 20 in flight at most: each message carries the buffer's description alone (the warm-up put
     * h's revocation page in the receiver's table), and the queue holds more than 20 of them */
    lim.rlim_cur = (rlim_t)(base + 20);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
    Retcode rc = rcOk;
    int sent = 0;
    while (sent < 400) {
        struct pollfd p = {kosvmm_channel_fd(a), POLLOUT, 0};
        if (poll(&p, 1, 0) != 1) /* the queue is full before any refusal: do not block */
            break;
        rc = kosvmm_channel_send_handle(a, h, R, &sent, sizeof sent);
        if (rc != rcOk)
            break;
        sent++;
    }
    int during = tu_fd_count();
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    ck_assert_msg(rc == rcQuotaExceeded, "after %d queued handle messages: %#x, expected rcQuotaExceeded", sent,
                  (unsigned)rc);
    ck_assert_int_ge(sent, 10);
    ck_assert_int_eq(during, base);
    for (int i = 0; i < sent; i++) {
        Handle got;
        int seq = -1;
        ck_assert_uint_eq(kosvmm_channel_recv(b, &got, &seq, sizeof seq, RTL_NULL), rcOk);
        ck_assert_int_eq(seq, i);
        if (i % 8 == 0) {
            void *r;
            ck_assert_uint_eq(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &r), rcOk);
            ck_assert_uint_eq(((unsigned char *)r)[7], 0x3D);
            ck_assert_uint_eq(KnVmUnmap(r, P()), rcOk);
        }
        ck_assert_uint_eq(KnHandleClose(got), rcOk);
    }
    ck_assert(nothing_queued(b)); /* the refused one was never queued */
    ck_assert_int_eq(tu_fd_count(), base);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0); /* drained: the same limit allows sends again */
    for (int i = 0; i < 5; i++) {
        Handle got;
        ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
        ck_assert_uint_eq(kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL), rcOk);
        ck_assert_uint_eq(KnHandleClose(got), rcOk);
    }
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    ck_assert_int_eq(tu_fd_count(), base);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
}
END_TEST

/* ---- RLIMIT_AS ----------------------------------------------------------------------------- */

static struct rlimit as_saved;

/* RLIMIT_AS = the current address-space size + headroom bytes (soft limit only). */
static void as_headroom(size_t headroom)
{
    ck_assert_int_eq(getrlimit(RLIMIT_AS, &as_saved), 0);
    long vm = tu_status_kb("VmSize:");
    ck_assert_int_gt(vm, 0);
    struct rlimit lim = as_saved;
    lim.rlim_cur = (rlim_t)vm * 1024 + headroom;
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &lim), 0);
}

static void as_unlimit(void)
{
    if (setrlimit(RLIMIT_AS, &as_saved) != 0)
        abort();
}

/*
 * Under RLIMIT_AS: a memfd's size costs no address space, so creating a large buffer works, but
 * mapping more of it than the headroom is rcOutOfMemory with no region, mapping or descriptor
 * left; a smaller window maps. KnPmmMdlCreateFromVm replaces pages in place (MAP_FIXED over the
 * region), which costs no new address space, so it works even with less headroom than the range.
 * Lifting the limit, the large mapping works.
 */
START_TEST(rlimit_as_mdl)
{
    const size_t big = (size_t)256 << 20, vm_size = (size_t)8 << 20;
    char *region = KnVmAllocate(RTL_NULL, vm_size, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(region);
    fill(region, 3 * P(), 5);
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreate(big, RW, &h), rcOk); /* before the limit: its page too */
    Handle warm;
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, P(), &warm), rcOk); /* the revocation page exists now */
    snapshot s0 = snap();

    as_headroom((size_t)1 << 20);
    void *m = RTL_NULL, *small = RTL_NULL;
    Handle h2 = SENTINEL, fv = SENTINEL;
    Retcode map_big = KnPmmMdlMap(h, 0, big, RTL_NULL, RW, &m);
    Retcode create2 = KnPmmMdlCreate(big, RW, &h2);
    Retcode map_small = KnPmmMdlMap(h, big - 4 * P(), 4 * P(), RTL_NULL, RW, &small);
    Retcode from_vm = KnPmmMdlCreateFromVm(region, vm_size, RW, &fv);
    as_unlimit();

    ck_assert_msg(map_big == rcOutOfMemory, "mapping 256 MiB with 1 MiB of RLIMIT_AS headroom: %#x",
                  (unsigned)map_big);
    ck_assert_ptr_null(m);
    ck_assert_uint_eq(create2, rcOk);
    ck_assert_uint_eq(map_small, rcOk);
    ck_assert_msg(from_vm == rcOk, "CreateFromVm of 8 MiB in place under RLIMIT_AS: %#x", (unsigned)from_vm);
    ck_assert_uint_ne(tu_query(region).attributes & VMM_PAGE_ATTR_MDL, 0);
    ck_assert(filled(region, 3 * P(), 5));
    /* only the small map added a region and a mapping; only its bytes and none of the big one */
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.regions, s0.st.regions + 1);
    ck_assert_uint_eq(s1.committed_bytes, s0.st.committed_bytes + 4 * P());
    ck_assert_int_eq(tu_fd_count(), s0.fds + 2); /* h2 and fv */

    /* lifted: the large mapping works, and sees what the small one wrote */
    memset(small, 0x19, 4 * P());
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, big, RTL_NULL, RW, &m), rcOk);
    ck_assert_uint_eq(((unsigned char *)m)[big - 1], 0x19);
    ck_assert_uint_eq(KnVmUnmap(m, big), rcOk);
    ck_assert_uint_eq(KnVmUnmap(small, 4 * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(region, vm_size), rcOk);
    ck_assert_uint_eq(KnHandleClose(h2), rcOk);
    ck_assert_uint_eq(KnHandleClose(fv), rcOk);
    ck_assert_uint_eq(KnHandleClose(warm), rcOk);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_uint_eq(tu_stats().regions, 0);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
}
END_TEST

/*
 * A receiver under RLIMIT_AS: importing a handle from another process maps its revocation page
 * (one page of new address space). With no headroom the receive is rcOutOfMemory, every received
 * descriptor is closed and the message consumed; with the limit lifted the next one arrives.
 * In a child, whose handle table and pages are its own: a page of this very process would already
 * be mapped and need nothing.
 */
START_TEST(rlimit_as_receiver)
{
    kosvmm_channel *a, *b;
    pid_t child = tu_fork_peer(&a, &b);
    if (child == 0) {
        int base = tu_fd_count();
        struct rlimit old, lim;
        TU_CHILD_CHECK(getrlimit(RLIMIT_AS, &old) == 0);
        long vm = tu_status_kb("VmSize:");
        lim = old;
        lim.rlim_cur = (rlim_t)vm * 1024;
        TU_CHILD_CHECK(setrlimit(RLIMIT_AS, &lim) == 0);
        Handle got = SENTINEL;
        Retcode rc = kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL);
        TU_CHILD_CHECK(setrlimit(RLIMIT_AS, &old) == 0);
        if (rc != rcOutOfMemory)
            fprintf(stderr, "child: receive with no address space left: %#x\n", (unsigned)rc);
        TU_CHILD_CHECK(rc == rcOutOfMemory);
        TU_CHILD_CHECK(got == SENTINEL);
        TU_CHILD_CHECK(tu_fd_count() == base);
        TU_CHILD_CHECK(kvmm_handle_count() == 0 && kvmm_mdl_rpage_count() == 0);
        TU_CHILD_CHECK(kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL) == rcOk);
        void *m;
        TU_CHILD_CHECK(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &m) == rcOk);
        TU_CHILD_CHECK(((unsigned char *)m)[5] == 0x4E);
        TU_CHILD_CHECK(KnVmUnmap(m, P()) == rcOk && KnHandleClose(got) == rcOk);
        TU_CHILD_CHECK(tu_fd_count() == base && kvmm_mdl_rpage_count() == 0);
        _exit(0);
    }
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreate(P(), RW, &h), rcOk);
    void *m;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P(), RTL_NULL, RW, &m), rcOk);
    memset(m, 0x4E, P());
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
    tu_wait_child_ok(child);
    kosvmm_channel_close(a);
}
END_TEST

/* ---- RLIMIT_MEMLOCK with partial room -------------------------------------------------------- */

/* Makes RLIMIT_MEMLOCK binding for this (forked) test process: root's CAP_IPC_LOCK would let
 * mlock ignore it. An ordinary user has nothing to drop. */
static bool memlock_binding(void)
{
    static const int caps[] = {CAP_IPC_LOCK};
    return drop_caps(caps, 1);
}

static void assert_pinned(const char *p, size_t first, size_t count, bool pinned)
{
    for (size_t i = first; i < first + count; i++) {
        VmQueryInfo q = tu_query(pg((void *)p, i));
        ck_assert_uint_eq(q.state, VMM_PAGE_STATE_COMMITTED);
        ck_assert_uint_ne(q.attributes & VMM_PAGE_ATTR_LOCKED, 0);
        ck_assert_msg(!!(q.attributes & VMM_PAGE_ATTR_PINNED) == pinned, "page %zu: attributes %#x, pinned expected %d",
                      i, q.attributes, (int)pinned);
    }
}

/* VmLck (what the kernel pinned) and pinned_bytes (what kosvmm says it pinned) agree. */
static void assert_vmlck(size_t pages)
{
    ck_assert_int_eq(tu_vmlck_kb(), (long)(pages * P() / 1024));
    ck_assert_uint_eq(tu_stats().pinned_bytes, pages * P());
}

/*
 * test_limits covers no room (0 or 1 page) at all. Here the limit is 8 pages and is used up in
 * steps: commits that fit are pinned, the one that would exceed it is populated but not pinned
 * (the whole commit: mlock is all or nothing per call), freeing pinned pages makes room again
 * (a decommit munlocks), and a reset-then-commit of unpinned LOCKED pages pins them once room
 * exists. VmLck and the statistics agree throughout, and everything returns to zero.
 */
START_TEST(memlock_partial_room)
{
    ck_assert_msg(memlock_binding(), "cannot drop CAP_IPC_LOCK");
    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_MEMLOCK, &old), 0);
    ck_assert_msg(old.rlim_max == RLIM_INFINITY || old.rlim_max >= 8 * P(), "hard RLIMIT_MEMLOCK below 8 pages");
    lim = old;
    lim.rlim_cur = 8 * P();
    ck_assert_int_eq(setrlimit(RLIMIT_MEMLOCK, &lim), 0);
    kosvmm_stats s0 = tu_stats();
    ck_assert_int_eq(tu_vmlck_kb(), 0);

    const int full = VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW;
    char *a = KnVmAllocate(RTL_NULL, 4 * P(), full); /* 4 of 8: pinned */
    ck_assert_ptr_nonnull(a);
    assert_pinned(a, 0, 4, true);
    assert_vmlck(4);
    char *b = KnVmAllocate(RTL_NULL, 8 * P(), full); /* 4 + 8 > 8: populated, not pinned */
    ck_assert_ptr_nonnull(b);
    assert_pinned(b, 0, 8, false);
    ck_assert_int_eq(tu_resident_pages(b, 8 * P()), 8);
    assert_vmlck(4);
    ck_assert_uint_gt(tu_stats().pin_refusals, s0.pin_refusals);
    char *c = KnVmAllocate(RTL_NULL, 8 * P(), VMM_FLAG_RESERVE | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(KnVmCommit(c, 4 * P(), VMM_FLAG_LOCKED), rcOk); /* exactly fills the limit */
    assert_pinned(c, 0, 4, true);
    assert_vmlck(8);
    ck_assert_uint_eq(KnVmCommit(pg(c, 4), 4 * P(), VMM_FLAG_LOCKED), rcOk); /* no room left */
    assert_pinned(c, 4, 4, false);
    assert_vmlck(8);
    memset(c, 0x21, 8 * P());

    /* decommitting pinned pages gives their room back */
    ck_assert_uint_eq(KnVmDecommit(a, 4 * P()), rcOk);
    assert_vmlck(4);
    ck_assert_uint_eq(KnVmReset(pg(c, 4), 4 * P()), rcOk); /* lazily committed now */
    ck_assert_uint_eq(KnVmCommit(pg(c, 4), 4 * P(), VMM_FLAG_LOCKED), rcOk);
    assert_pinned(c, 4, 4, true);
    assert_vmlck(8);
    ck_assert_int_eq(c[4 * P()], 0);    /* reset: zero */
    ck_assert_int_eq(c[4 * P() - 1], 0x21); /* untouched neighbour kept */
    /* full again: recommitting a's pages populates without pinning */
    ck_assert_uint_eq(KnVmCommit(a, 4 * P(), VMM_FLAG_LOCKED), rcOk);
    assert_pinned(a, 0, 4, false);
    assert_vmlck(8);

    /* lifted: the same kind of commit pins */
    ck_assert_int_eq(setrlimit(RLIMIT_MEMLOCK, &old), 0);
    if (old.rlim_cur == RLIM_INFINITY || old.rlim_cur >= 16 * P()) {
        ck_assert_uint_eq(KnVmDecommit(a, 4 * P()), rcOk);
        ck_assert_uint_eq(KnVmCommit(a, 4 * P(), VMM_FLAG_LOCKED), rcOk);
        assert_pinned(a, 0, 4, true);
        assert_vmlck(12);
    }
    ck_assert_uint_eq(KnVmUnmap(a, 4 * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(b, 8 * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(c, 8 * P()), rcOk);
    assert_vmlck(0);
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.regions, s0.regions);
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes);
    ck_assert_uint_eq(s1.locked_bytes, s0.locked_bytes);
}
END_TEST

/* ---- vm.max_map_count -------------------------------------------------------------------------- */

/* Query and the kernel agree on page p: the permissions the one rule derives, and MDL pages are
 * shared mappings of the buffer ("rw-s"), others private. */
static void assert_agrees(const char *p)
{
    VmQueryInfo q = tu_query(p);
    char perms[5];
    ck_assert_int_eq(tu_maps_perms(p, perms), 0);
    char want[5];
    memcpy(want, tu_expected_perms(q.state, q.protection), 5);
    if (q.attributes & VMM_PAGE_ATTR_MDL)
        want[3] = 's';
    ck_assert_msg(strcmp(perms, want) == 0, "%p: Query state %u prot %u attr %#x, maps %s", (const void *)p, q.state,
                  q.protection, q.attributes, perms);
}

/*
 * test_limits reaches vm.max_map_count with VM commits; this takes the MDL side there. The real
 * limit (65530 here) is filled with single-page commits in a reservation, each splitting its map
 * entry. Then, at the limit:
 *  - KnPmmMdlMap needs a new map entry: within a few attempts rcOutOfMemory (the kernel lets a new
 *    mapping take the count one past the limit, so the first may still work), nothing left behind;
 *  - receiving a handle from another process needs a mapping of its revocation page:
 *    rcOutOfMemory, every descriptor closed, no handle;
 *  - KnPmmMdlCreateFromVm over a range of two protections (two map entries, the second to be
 *    split): rcOk, or rcOutOfMemory part-way, and then exactly as the header says (pieces done are
 *    MDL-backed with their contents, the rest as it was, no handle, Query and the kernel agree);
 * and once entries are freed the same operations work, and the process frees everything.
 */
START_TEST(mdl_at_max_map_count)
{
    long max_maps = tu_read_long("/proc/sys/vm/max_map_count");
    ck_assert_msg(max_maps > 0 && max_maps <= 1000000, "vm.max_map_count %ld out of range for this test", max_maps);

    /* A peer in another process, forked while there is room, with a handle of its own to send. */
    kosvmm_channel *a, *b;
    pid_t child = tu_fork_peer(&b, &a);
    if (child == 0) {
        Handle h;
        void *m;
        TU_CHILD_CHECK(KnPmmMdlCreate(P(), RW, &h) == rcOk && KnPmmMdlMap(h, 0, P(), RTL_NULL, RW, &m) == rcOk);
        memset(m, 0x7E, P());
        char go;
        for (int i = 0; i < 2; i++) { /* one handle per request */
            TU_CHILD_CHECK(kosvmm_channel_recv(a, RTL_NULL, &go, 1, RTL_NULL) == rcOk);
            TU_CHILD_CHECK(kosvmm_channel_send_handle(a, h, RW, RTL_NULL, 0) == rcOk);
        }
        TU_CHILD_CHECK(kosvmm_channel_recv(a, RTL_NULL, &go, 1, RTL_NULL) == rcOk);
        _exit(0);
    }

    /* Made while there is room: the lazy engine (the commits below are lazy: r has no LOCKED), a
     * buffer with its revocation page, and a region of two protections. */
    tu_start_lazy_engine();
    int fds_start = tu_fd_count();
    Handle h, warm;
    ck_assert_uint_eq(KnPmmMdlCreate(16 * P(), RW, &h), rcOk);
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, P(), &warm), rcOk);
    char *y = KnVmAllocate(RTL_NULL, 4 * P(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED | RW);
    ck_assert_ptr_nonnull(y);
    fill(y, 4 * P(), 9);
    ck_assert_uint_eq(KnVmProtect(y, 2 * P(), R), rcOk); /* y[0..1] R, y[2..3] RW: two map entries */
    kosvmm_stats s0 = tu_stats();
    int fds0 = tu_fd_count();
    uint32_t handles0 = kvmm_handle_count();

    size_t npages = (size_t)max_maps + 2048, ok = 0;
    char *r = KnVmAllocate(RTL_NULL, npages * P(), VMM_FLAG_RESERVE | RW);
    ck_assert_ptr_nonnull(r);
    Retcode rc = rcOk;
    for (size_t k = 0; 2 * k + 1 < npages && rc == rcOk; k++)
        if ((rc = KnVmCommit(pg(r, 2 * k + 1), P(), VMM_FLAG_LOCKED)) == rcOk)
            ok++;
    ck_assert_msg(rc == rcOutOfMemory, "after %zu commits: %#x", ok, (unsigned)rc);

    /* KnPmmMdlMap at the limit */
    void *maps[4] = {RTL_NULL, RTL_NULL, RTL_NULL, RTL_NULL};
    int mapped = 0;
    while (mapped < 4 && (rc = KnPmmMdlMap(h, (size_t)mapped * P(), P(), RTL_NULL, RW, &maps[mapped])) == rcOk)
        mapped++;
    ck_assert_msg(rc == rcOutOfMemory, "KnPmmMdlMap at the limit: %#x after %d mappings", (unsigned)rc, mapped);
    ck_assert_ptr_null(maps[mapped < 4 ? mapped : 3]);
    ck_assert_uint_eq(tu_stats().regions, s0.regions + 1 + (uint64_t)mapped);

    /* A handle from the other process at the limit */
    ck_assert_uint_eq(kosvmm_channel_send(b, "1", 1), rcOk);
    Handle got = SENTINEL;
    rc = kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL);
    ck_assert_msg(rc == rcOutOfMemory, "receive at the limit: %#x", (unsigned)rc);
    ck_assert_uint_eq(got, SENTINEL);
    ck_assert_int_eq(tu_fd_count(), fds0);
    ck_assert_uint_eq(kvmm_handle_count(), handles0);

    /* CreateFromVm of y[1..2], with the count at the limit again (one mapping freed): the first
     * piece (R) splits the tail off one map entry, which the kernel lets go one past the limit;
     * the second (RW) is then a new mapping over the count, which it refuses. */
    if (mapped > 0) {
        ck_assert_uint_eq(KnVmUnmap(maps[mapped - 1], P()), rcOk);
        mapped--;
    }
    Handle fv = SENTINEL;
    rc = KnPmmMdlCreateFromVm(pg(y, 1), 2 * P(), RW, &fv);
    ck_assert_msg(rc == rcOk || rc == rcOutOfMemory, "CreateFromVm at the limit: %#x", (unsigned)rc);
    size_t mdl_pages = 0;
    for (size_t i = 0; i < 4; i++) {
        assert_agrees(pg(y, i));
        mdl_pages += (tu_query(pg(y, i)).attributes & VMM_PAGE_ATTR_MDL) != 0;
    }
    ck_assert(filled(y, 4 * P(), 9));
    if (rc == rcOutOfMemory) {
        ck_assert_uint_eq(fv, SENTINEL);
        ck_assert_uint_eq(kvmm_handle_count(), handles0);
        ck_assert_int_eq(tu_fd_count(), fds0);
        ck_assert_uint_le(mdl_pages, 1); /* at most the first piece: whole spans, in order */
        if (mdl_pages)
            ck_assert_uint_ne(tu_query(pg(y, 1)).attributes & VMM_PAGE_ATTR_MDL, 0);
    } else {
        ck_assert_uint_eq(mdl_pages, 2);
    }
    ck_assert_uint_eq(tu_query(y).attributes & VMM_PAGE_ATTR_MDL, 0);
    ck_assert_uint_eq(tu_query(pg(y, 3)).attributes & VMM_PAGE_ATTR_MDL, 0);
    fprintf(stderr, "mdl_at_max_map_count: %zu commits, %d MDL mappings, CreateFromVm %s with %zu MDL pages\n", ok,
            mapped + 1, rc == rcOk ? "rcOk" : "rcOutOfMemory", mdl_pages);

    /* Out of the limit: decommit the whole committed zone (merging everything back). */
    ck_assert_uint_eq(KnVmDecommit(r, npages * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(r, npages * P()), rcOk);

    /* The same operations again, successfully. */
    Handle fv2 = SENTINEL;
    if (rc == rcOutOfMemory) {
        size_t first = 1 + mdl_pages; /* what is still ordinary memory of y[1..2] */
        ck_assert_uint_eq(KnPmmMdlCreateFromVm(pg(y, first), (3 - first) * P(), RW, &fv2), rcOk);
    }
    for (size_t i = 1; i < 3; i++) {
        assert_agrees(pg(y, i));
        ck_assert_uint_ne(tu_query(pg(y, i)).attributes & VMM_PAGE_ATTR_MDL, 0);
    }
    ck_assert(filled(y, 4 * P(), 9));
    y[2 * P()] = 1; /* still writable where it was */
    void *more;
    ck_assert_uint_eq(KnPmmMdlMap(h, 8 * P(), P(), RTL_NULL, RW, &more), rcOk);
    ck_assert_uint_eq(kosvmm_channel_send(b, "2", 1), rcOk);
    ck_assert_uint_eq(kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL), rcOk);
    void *rm;
    ck_assert_uint_eq(KnPmmMdlMap(got, 0, P(), RTL_NULL, RW, &rm), rcOk);
    ck_assert_uint_eq(((unsigned char *)rm)[100], 0x7E);
    ck_assert_uint_eq(kosvmm_channel_send(b, "3", 1), rcOk);
    tu_wait_child_ok(child);

    /* Everything freed: back to where the test started. */
    ck_assert_uint_eq(KnVmUnmap(rm, P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(more, P()), rcOk);
    for (int i = 0; i < mapped; i++)
        ck_assert_uint_eq(KnVmUnmap(maps[i], P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(y, 4 * P()), rcOk);
    ck_assert_uint_eq(KnHandleClose(got), rcOk);
    if (fv != SENTINEL)
        ck_assert_uint_eq(KnHandleClose(fv), rcOk);
    if (fv2 != SENTINEL)
        ck_assert_uint_eq(KnHandleClose(fv2), rcOk);
    ck_assert_uint_eq(KnHandleClose(warm), rcOk);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    kosvmm_channel_close(b);
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.regions, 0);
    ck_assert_uint_eq(s1.committed_bytes, 0);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
    ck_assert_int_eq(tu_fd_count(), fds_start - 1); /* b is gone */
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("exhaust");

    TCase *tc = tcase_create("nofile");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, nofile_during_mdl_creation, 0, OP_COUNT);
    tcase_add_test(tc, nofile_send_side);
    tcase_add_test(tc, nofile_receive_side_many_fds);
    tcase_add_test(tc, descriptors_in_flight_limit);
    suite_add_tcase(s, tc);

    tc = tcase_create("rlimits");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, rlimit_as_mdl);
    tcase_add_test(tc, rlimit_as_receiver);
    tcase_add_test(tc, memlock_partial_room);
    suite_add_tcase(s, tc);

    tc = tcase_create("max_map_count");
    tcase_set_timeout(tc, 120);
    /* The ASan runtime aborts the process when its own mmap fails at vm.max_map_count. */
    if (!TU_SANITIZED)
        tcase_add_test(tc, mdl_at_max_map_count);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
