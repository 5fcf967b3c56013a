/* SPDX-License-Identifier: MIT */
/* tests/test_peers.c — peers killed at random points: the survivor's buffers, handles, mappings and descriptors stay intact, whichever side dies. */
#include "testutil.h"

#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "handle_table.h"
#include "mdl_memfd/mdl_internal.h"

#ifdef __SANITIZE_ADDRESS__
#define MAPS_SLACK 512L /* ASan maps allocator regions as its quarantine fills */
#else
#define MAPS_SLACK 8L
#endif

#define R VMM_FLAG_READ
#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define T KOSVMM_RIGHT_TRANSFER

#define ROUNDS 60
#define PAGES 4

static size_t P(void)
{
    return tu_page();
}

static char *pg(void *base, size_t i)
{
    return (char *)base + i * tu_page();
}

/* A seed per run, printed, so a failing sequence of kill points can be replayed (PEERS_SEED=n). */
static unsigned seed_once(void)
{
    const char *e = getenv("PEERS_SEED");
    unsigned seed = e ? (unsigned)strtoul(e, NULL, 0) : (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "test_peers: seed %u\n", seed);
    return seed;
}

static void kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    /* the child may have died of its own failure first: that is a failure too */
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %#x", status);
}

static unsigned char pattern(size_t page, size_t i)
{
    return (unsigned char)(page * 31 + i % 97 + 1);
}

/* ---- the receiver dies ----------------------------------------------------------------------- */

#define MARK 0xEE

/* Receives handles forever: maps each (writable when allowed), checks it, writes MARK over the
 * last page when writable, clones and maps the clone, unmaps, closes, and acknowledges. */
static void greedy_receiver(kosvmm_channel *c)
{
    TU_CHILD_CHECK(kosvmm_channel_send(c, "r", 1) == rcOk); /* up and running */
    for (;;) {
        Handle h, cl;
        void *m, *cm;
        int mode;
        TU_CHILD_CHECK(kosvmm_channel_recv(c, &h, &mode, sizeof mode, RTL_NULL) == rcOk);
        TU_CHILD_CHECK(KnPmmMdlMap(h, 0, PAGES * P(), RTL_NULL, mode ? RW : R, &m) == rcOk);
        TU_CHILD_CHECK(((unsigned char *)m)[5] == pattern(0, 5));
        if (mode)
            memset(pg(m, PAGES - 1), MARK, P());
        TU_CHILD_CHECK(KnPmmMdlClone(h, P(), P(), &cl) == rcOk);
        TU_CHILD_CHECK(KnPmmMdlMap(cl, 0, P(), RTL_NULL, R, &cm) == rcOk);
        TU_CHILD_CHECK(((unsigned char *)cm)[7] == pattern(1, 7));
        TU_CHILD_CHECK(KnVmUnmap(cm, P()) == rcOk && KnVmUnmap(m, PAGES * P()) == rcOk);
        TU_CHILD_CHECK(KnHandleClose(cl) == rcOk && KnHandleClose(h) == rcOk);
        TU_CHILD_CHECK(kosvmm_channel_send(c, "k", 1) == rcOk);
    }
}

/* The sender's side is intact: the pattern, the last page as a killed writer may have left it
 * (each byte either the pattern or MARK), the handle maps, writes, clones; Query agrees. */
static void sender_intact(Handle h, unsigned char *va)
{
    for (size_t p = 0; p < PAGES - 1; p++)
        for (size_t i = 0; i < P(); i += 61)
            ck_assert_uint_eq(va[p * P() + i], pattern(p, i));
    for (size_t i = 0; i < P(); i++) {
        unsigned char b = va[(PAGES - 1) * P() + i];
        ck_assert_msg(b == pattern(PAGES - 1, i) || b == MARK, "last page byte %zu: %#x", i, b);
    }
    void *m;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, PAGES * P(), RTL_NULL, RW, &m), rcOk);
    VmQueryInfo q = tu_query(m);
    ck_assert_uint_eq(q.state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_ne(q.attributes & VMM_PAGE_ATTR_MDL, 0);
    ck_assert_uint_eq(q.protection, RW);
    ck_assert_uint_eq(q.regionSize, PAGES * P());
    tu_assert_perms(m, "rw-s");
    /* restore the last page through the new mapping: the original sees it */
    for (size_t i = 0; i < P(); i++)
        pg(m, PAGES - 1)[i] = (char)pattern(PAGES - 1, i);
    ck_assert_uint_eq(va[(PAGES - 1) * P() + 3], pattern(PAGES - 1, 3));
    Handle c;
    ck_assert_uint_eq(KnPmmMdlClone(h, 0, P(), &c), rcOk);
    void *cm;
    ck_assert_uint_eq(KnPmmMdlMap(c, 0, P(), RTL_NULL, R, &cm), rcOk);
    ck_assert_uint_eq(((unsigned char *)cm)[9], pattern(0, 9));
    ck_assert_uint_eq(KnVmUnmap(cm, P()), rcOk);
    ck_assert_uint_eq(KnHandleClose(c), rcOk);
    ck_assert_uint_eq(KnVmUnmap(m, PAGES * P()), rcOk);
}

/* A new peer gets the handle and sees the contents: the buffer is still transferable. */
static void transfer_to_new_peer(Handle h)
{
    kosvmm_channel *a, *b;
    pid_t child = tu_fork_peer(&a, &b);
    if (child == 0) {
        Handle got;
        void *m;
        TU_CHILD_CHECK(kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL) == rcOk);
        TU_CHILD_CHECK(KnPmmMdlMap(got, 0, PAGES * P(), RTL_NULL, R, &m) == rcOk);
        for (size_t p = 0; p < PAGES; p++)
            TU_CHILD_CHECK(((unsigned char *)m)[p * P() + 11] == pattern(p, 11));
        TU_CHILD_CHECK(kosvmm_channel_send(b, "k", 1) == rcOk);
        _exit(0);
    }
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
    char k;
    ck_assert_uint_eq(kosvmm_channel_recv(a, RTL_NULL, &k, 1, RTL_NULL), rcOk);
    tu_wait_child_ok(child);
    kosvmm_channel_close(a);
}

/*
 * ROUNDS times: a receiver is sent a burst of handles (read-only and read-write) and killed after
 * a random number of them, plus a random delay, so that it dies at different points: before
 * receiving, with handles queued, mid-receive, while mapping, while writing through a mapping,
 * while cloning, between messages, idle after the last.
 * After each death the sender's buffer and handle are intact and its descriptors are back at
 * their baseline; every tenth round the handle goes to a new peer.
 */
START_TEST(receiver_killed_at_random_points)
{
    unsigned seed = seed_once();
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreate(PAGES * P(), RW, &h), rcOk);
    unsigned char *va;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, PAGES * P(), RTL_NULL, RW, (void **)&va), rcOk);
    for (size_t p = 0; p < PAGES; p++)
        for (size_t i = 0; i < P(); i++)
            va[p * P() + i] = pattern(p, i);
    transfer_to_new_peer(h); /* makes h's revocation word and the buffer's read-only description:
                              * descriptors counted after this */
    int base = tu_fd_count();
    uint32_t handles = kvmm_handle_count();
    kosvmm_stats s0 = tu_stats();

    int killed[3] = {0, 0, 0}; /* before its first handle was done, mid-burst, after the last */
    for (int round = 0; round < ROUNDS; round++) {
        kosvmm_channel *a, *b;
        pid_t child = tu_fork_peer(&a, &b);
        if (child == 0) {
            greedy_receiver(b);
        }
        char ready;
        ck_assert_uint_eq(kosvmm_channel_recv(a, RTL_NULL, &ready, 1, RTL_NULL), rcOk);
        ck_assert_int_eq(ready, 'r');
        int burst = 1 + (int)(rand_r(&seed) % 24);
        for (int i = 0; i < burst; i++) {
            int mode = (int)(rand_r(&seed) % 2);
            ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, mode ? RW : R, &mode, sizeof mode), rcOk);
        }
        /* Where it dies: after a random number of handles done, plus 0 .. 400 us into the next
         * one (receiving, importing, mapping, writing, cloning), or idle after the last. */
        int target = (int)(rand_r(&seed) % (unsigned)(burst + 1)), acks = 0;
        Retcode rc;
        char k;
        for (; acks < target; acks++) {
            ck_assert_uint_eq(kosvmm_channel_recv(a, RTL_NULL, &k, 1, RTL_NULL), rcOk);
            ck_assert_int_eq(k, 'k');
        }
        usleep(rand_r(&seed) % 400);
        kill_and_reap(child);
        /* the dead end: sends and receives say so; acknowledgements it made may still be read */
        while ((rc = kosvmm_channel_recv(a, RTL_NULL, &k, 1, RTL_NULL)) == rcOk) {
            ck_assert_int_eq(k, 'k');
            acks++;
        }
        ck_assert_int_le(acks, burst);
        killed[acks == 0 ? 0 : acks < burst ? 1 : 2]++;
        ck_assert_uint_eq(rc, rcResourceNotFound);
        ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcResourceNotFound);
        ck_assert_uint_eq(kosvmm_channel_close(a), rcOk);
        ck_assert_int_eq(tu_fd_count(), base);
        ck_assert_uint_eq(kvmm_handle_count(), handles);
        sender_intact(h, va);
        if (round % 10 == 9)
            transfer_to_new_peer(h);
    }
    fprintf(stderr, "receiver_killed_at_random_points: killed before any handle done %d, mid-burst %d, after all %d\n",
            killed[0], killed[1], killed[2]);
    kosvmm_stats s1 = tu_stats();
    ck_assert_uint_eq(s1.regions, s0.regions);
    ck_assert_uint_eq(s1.committed_bytes, s0.committed_bytes);
    ck_assert_uint_eq(KnVmUnmap(va, PAGES * P()), rcOk);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
    ck_assert_int_eq(tu_fd_count(), base - 3); /* h, its revocation page, the read-only description */
}
END_TEST

/* ---- the sender dies ------------------------------------------------------------------------- */

/* Sends forever: the buffer read-write, a read-only clone of its second page, alternately, each
 * with its kind as payload (blocks when the receiver's queue is full). */
static void endless_sender(kosvmm_channel *c)
{
    Handle h, half;
    void *m;
    TU_CHILD_CHECK(KnPmmMdlCreate(PAGES * P(), RW, &h) == rcOk);
    TU_CHILD_CHECK(KnPmmMdlMap(h, 0, PAGES * P(), RTL_NULL, RW, &m) == rcOk);
    for (size_t p = 0; p < PAGES; p++)
        for (size_t i = 0; i < P(); i++)
            pg(m, p)[i] = (char)pattern(p, i);
    TU_CHILD_CHECK(KnPmmMdlClone(h, P(), P(), &half) == rcOk);
    for (int i = 0;; i++) {
        int kind = i % 2;
        TU_CHILD_CHECK(kosvmm_channel_send_handle(c, kind ? half : h, kind ? R : RW | T, &kind, sizeof kind) == rcOk);
    }
}

#define KEEP 8

/*
 * ROUNDS times: a sender streams handles; this process receives a random number of them and maps
 * them, then the sender is killed after a random delay (mid-send, blocked on a full queue, ...).
 * The messages it queued still arrive, then rcResourceNotFound. Every mapping made before or after
 * the death stays valid: readable, writable where the rights allow (and the writes are shared by
 * all mappings of the buffer); every received handle maps again and clones. Closing everything
 * returns descriptors, handles and revocation pages to the baseline.
 */
START_TEST(sender_killed_at_random_points)
{
    unsigned seed = seed_once();
    tu_start_lazy_engine();
    int base = tu_fd_count();
    long maps0 = tu_maps_lines() - (long)kvmm_mdl_rpage_cached();
    kosvmm_stats s0 = tu_stats();
    for (int round = 0; round < ROUNDS; round++) {
        kosvmm_channel *a, *b;
        pid_t child = tu_fork_peer(&b, &a);
        if (child == 0) {
            endless_sender(a);
        }
        Handle got[KEEP];
        int kinds[KEEP];
        void *maps[KEEP];
        int n = 0, before = (int)(rand_r(&seed) % KEEP);
        for (; n < before; n++) { /* mapped while the sender lives */
            ck_assert_uint_eq(kosvmm_channel_recv(b, &got[n], &kinds[n], sizeof kinds[n], RTL_NULL), rcOk);
            ck_assert_uint_eq(KnPmmMdlMap(got[n], 0, kinds[n] ? P() : PAGES * P(), RTL_NULL, kinds[n] ? R : RW,
                                          &maps[n]),
                              rcOk);
        }
        usleep(rand_r(&seed) % 2000);
        kill_and_reap(child);
        /* the queue it left: whole messages, each a working handle, then the end */
        Retcode rc;
        int drained = 0;
        for (;;) {
            Handle h;
            int kind;
            rc = kosvmm_channel_recv(b, &h, &kind, sizeof kind, RTL_NULL);
            if (rc != rcOk)
                break;
            drained++;
            if (n < KEEP) {
                got[n] = h;
                kinds[n] = kind;
                ck_assert_uint_eq(KnPmmMdlMap(h, 0, kind ? P() : PAGES * P(), RTL_NULL, kind ? R : RW, &maps[n]),
                                  rcOk);
                n++;
            } else {
                ck_assert_uint_eq(KnHandleClose(h), rcOk);
            }
        }
        ck_assert_uint_eq(rc, rcResourceNotFound);
        ck_assert_uint_eq(kosvmm_channel_send(b, "x", 1), rcResourceNotFound);
        ck_assert_uint_eq(kosvmm_channel_close(b), rcOk);
        ck_assert_int_ge(n + drained, 0);

        /* every mapping valid; write through the read-write ones, seen by a fresh mapping */
        for (int i = 0; i < n; i++) {
            unsigned char *m = maps[i];
            size_t page = kinds[i] ? 1 : 0; /* a clone's window is the second page */
            ck_assert_uint_eq(m[13], pattern(page, 13));
            if (!kinds[i]) {
                ck_assert_uint_eq(m[P() + 13], pattern(1, 13));
                m[2 * P()] = (unsigned char)(0x80 | i);
            }
            void *again;
            ck_assert_uint_eq(KnPmmMdlMap(got[i], kinds[i] ? 0 : 2 * P(), P(), RTL_NULL, R, &again), rcOk);
            if (!kinds[i]) {
                ck_assert_uint_eq(((unsigned char *)again)[0], 0x80 | i);
            } else {
                void *x;
                ck_assert_uint_eq(KnPmmMdlMap(got[i], 0, P(), RTL_NULL, RW, &x), rcNoCapability);
            }
            ck_assert_uint_eq(KnVmUnmap(again, P()), rcOk);
            Handle c;
            ck_assert_uint_eq(KnPmmMdlClone(got[i], 0, P(), &c), rcOk);
            ck_assert_uint_eq(KnHandleClose(c), rcOk);
        }
        for (int i = 0; i < n; i++) {
            ck_assert_uint_eq(KnVmUnmap(maps[i], kinds[i] ? P() : PAGES * P()), rcOk);
            ck_assert_uint_eq(KnHandleClose(got[i]), rcOk);
        }
        ck_assert_int_eq(tu_fd_count(), base);
        ck_assert_uint_eq(kvmm_handle_count(), 0);
        ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
    }
    /* every stray "again" mapping was unmapped too */
    ck_assert_uint_eq(tu_stats().regions, s0.regions);
    /* each dead sender's revocation page may stay cached: one mapping each, bounded (suite transfer) */
    ck_assert_int_le(tu_maps_lines() - (long)kvmm_mdl_rpage_cached(), maps0 + MAPS_SLACK);
}
END_TEST

/* ---- messages in flight when a peer dies --------------------------------------------------------- */

#define INFLIGHT 32

/*
 * A peer that sends INFLIGHT handle messages (and a clone's, with two revocation pages) and dies
 * with them queued: the survivor reads some (each a working handle) and closes the channel with the
 * rest unread. The unread descriptors were never installed here and the read ones are closed with
 * their handles: the survivor's descriptors return to the baseline. The reverse direction: the
 * survivor's own messages queued to a peer that dies unread are discarded by the kernel, and the
 * survivor's descriptors and handle are unaffected.
 */
START_TEST(peer_dies_with_messages_in_flight)
{
    unsigned seed = seed_once();
    int base = tu_fd_count();
    for (int round = 0; round < 10; round++) {
        kosvmm_channel *a, *b;
        pid_t child = tu_fork_peer(&b, &a);
        if (child == 0) {
            Handle h, c;
            TU_CHILD_CHECK(KnPmmMdlCreate(P(), RW, &h) == rcOk && KnPmmMdlClone(h, 0, P(), &c) == rcOk);
            for (int i = 0; i < INFLIGHT; i++)
                TU_CHILD_CHECK(kosvmm_channel_send_handle(a, i % 2 ? c : h, R, &i, sizeof i) == rcOk);
            TU_CHILD_CHECK(kosvmm_channel_send(a, "end", 3) == rcOk);
            raise(SIGKILL);
        }
        char end[4];
        int status;
        ck_assert_int_eq(waitpid(child, &status, 0), child);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %#x", status);
        int read = (int)(rand_r(&seed) % INFLIGHT);
        for (int i = 0; i < read; i++) {
            Handle h;
            int seq;
            ck_assert_uint_eq(kosvmm_channel_recv(b, &h, &seq, sizeof seq, RTL_NULL), rcOk);
            ck_assert_int_eq(seq, i);
            void *m;
            ck_assert_uint_eq(KnPmmMdlMap(h, 0, P(), RTL_NULL, R, &m), rcOk);
            ck_assert_uint_eq(KnVmUnmap(m, P()), rcOk);
            ck_assert_uint_eq(KnHandleClose(h), rcOk);
        }
        if (round == 0) { /* once, all of them: the end marker, then the end of the channel */
            for (int i = read; i < INFLIGHT; i++) {
                Handle h;
                int seq;
                ck_assert_uint_eq(kosvmm_channel_recv(b, &h, &seq, sizeof seq, RTL_NULL), rcOk);
                ck_assert_int_eq(seq, i);
                ck_assert_uint_eq(KnHandleClose(h), rcOk);
            }
            Handle none;
            ck_assert_uint_eq(kosvmm_channel_recv(b, &none, end, sizeof end, RTL_NULL), rcOk);
            ck_assert_uint_eq(none, INVALID_HANDLE);
            ck_assert_uint_eq(kosvmm_channel_recv(b, &none, end, sizeof end, RTL_NULL), rcResourceNotFound);
        }
        ck_assert_uint_eq(kosvmm_channel_close(b), rcOk);
        ck_assert_int_eq(tu_fd_count(), base);
        ck_assert_uint_eq(kvmm_handle_count(), 0);
        ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
    }

    /* the reverse: our messages queued to a peer that dies without reading them */
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreate(P(), RW, &h), rcOk);
    void *m;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P(), RTL_NULL, RW, &m), rcOk);
    memset(m, 0x42, P());
    /* h's revocation word (a page, a descriptor) and the buffer's read-only description (made by
     * the first read-only transfer, kept while h lives) exist before the counts below */
    {
        kosvmm_channel *a, *b;
        Handle warm;
        ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
        ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
        ck_assert_uint_eq(kosvmm_channel_recv(b, &warm, RTL_NULL, 0, RTL_NULL), rcOk);
        ck_assert_uint_eq(KnHandleClose(warm), rcOk);
        kosvmm_channel_close(a);
        kosvmm_channel_close(b);
    }
    for (int round = 0; round < 5; round++) {
        kosvmm_channel *a, *b;
        pid_t child = tu_fork_peer(&a, &b);
        if (child == 0) {
            pause(); /* never reads */
            _exit(0);
        }
        int here = tu_fd_count();
        for (int i = 0; i < INFLIGHT; i++)
            ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, i % 2 ? R : RW, &i, sizeof i), rcOk);
        /* the queued datagrams hold their own references; the channel keeps the descriptor of its
         * feedback page (made by its first handle message) until the receiver has the page */
        ck_assert_int_eq(tu_fd_count(), here + 1);
        kill_and_reap(child);
        ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcResourceNotFound);
        ck_assert_uint_eq(kosvmm_channel_close(a), rcOk);
        ck_assert_uint_eq(((unsigned char *)m)[P() - 1], 0x42);
        void *again;
        ck_assert_uint_eq(KnPmmMdlMap(h, 0, P(), RTL_NULL, RW, &again), rcOk);
        ck_assert_uint_eq(KnVmUnmap(again, P()), rcOk);
    }
    ck_assert_uint_eq(KnVmUnmap(m, P()), rcOk);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_int_eq(tu_fd_count(), base);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
}
END_TEST

/*
 * The io_uring server when a peer dies with handle messages in flight: every message that reached
 * the socket is reported (a working handle each), then the peer's CLOSED; a second peer killed
 * with messages still queued when the server is closed leaves nothing behind either.
 */
START_TEST(server_peer_killed_with_messages_in_flight)
{
    char name[64];
    snprintf(name, sizeof name, "kosvmm-peers-%d", (int)getpid());
    int base = tu_fd_count();
    kosvmm_channel_server *srv;
    ck_assert_uint_eq(kosvmm_channel_listen(name, &srv), rcOk);
    pid_t pids[2];
    for (int k = 0; k < 2; k++) {
        pids[k] = fork();
        ck_assert_int_ge(pids[k], 0);
        if (pids[k] == 0) {
            kosvmm_channel *c;
            Handle h;
            TU_CHILD_CHECK(kosvmm_channel_connect(name, &c) == rcOk && KnPmmMdlCreate(P(), RW, &h) == rcOk);
            for (int i = 0; i < INFLIGHT; i++)
                TU_CHILD_CHECK(kosvmm_channel_send_handle(c, h, R, &i, sizeof i) == rcOk);
            raise(SIGKILL);
        }
        int status;
        ck_assert_int_eq(waitpid(pids[k], &status, 0), pids[k]);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "peer status %#x", status);
    }
    /* both died with everything queued; take events until both are closed or the first is */
    static kosvmm_channel_event ev;
    int messages = 0, closed = 0;
    while (closed < 1) {
        Retcode rc = kosvmm_channel_server_wait(srv, 10000, &ev);
        if (rc == rcUnimplemented && messages == 0 && closed == 0) {
            /* io_uring refused (seccomp, as container runtimes do): documented, nothing to test */
            fprintf(stderr, "server_peer_killed_with_messages_in_flight: io_uring refused, not tested\n");
            break;
        }
        ck_assert_uint_eq(rc, rcOk);
        if (ev.type == KOSVMM_CHANNEL_EVENT_MESSAGE) {
            ck_assert_uint_ne(ev.handle, INVALID_HANDLE);
            void *m;
            ck_assert_uint_eq(KnPmmMdlMap(ev.handle, 0, P(), RTL_NULL, R, &m), rcOk);
            ck_assert_uint_eq(KnVmUnmap(m, P()), rcOk);
            ck_assert_uint_eq(KnHandleClose(ev.handle), rcOk);
            messages++;
        } else if (ev.type == KOSVMM_CHANNEL_EVENT_CLOSED) {
            closed++;
        } else {
            ck_assert_uint_eq(ev.type, KOSVMM_CHANNEL_EVENT_CONNECTED);
        }
    }
    if (closed) /* all of the first peer's messages came before its CLOSED */
        ck_assert_int_ge(messages, INFLIGHT);
    ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
    ck_assert_int_eq(tu_fd_count(), base);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("peers");
    TCase *tc = tcase_create("death");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, receiver_killed_at_random_points);
    tcase_add_test(tc, sender_killed_at_random_points);
    tcase_add_test(tc, peer_dies_with_messages_in_flight);
    tcase_add_test(tc, server_peer_killed_with_messages_in_flight);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
