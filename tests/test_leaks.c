/* SPDX-License-Identifier: MIT */
/* tests/test_leaks.c — long create/map/transfer/close cycles leave descriptors, mappings, resident memory and kosvmm's counters at their baseline. */
#include "testutil.h"

#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "handle_table.h"
#include "mdl_memfd/channel_impl.h"
#include "mdl_memfd/mdl_internal.h"

#define R VMM_FLAG_READ
#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define T KOSVMM_RIGHT_TRANSFER

/*
 * Slack. Descriptors, kosvmm's counters and handles must come back exactly. Resident memory may
 * not: malloc keeps freed chunks (glibc trims only above its threshold) and ASan holds freed
 * blocks in its quarantine (up to 256 MiB) and maps allocator regions as that fills, so
 * VmRSS and the mapping count get a slack: 4 MiB / 8 mappings normally, 96 MiB / 512 mappings
 * under ASan. Every cycle touches several hundred KiB of kosvmm memory and makes several
 * mappings, so leaking even one cycle's worth in ten would exceed either bound by far.
 * RssShmem is the MDL buffers' memory (and nothing an allocator uses): 256 kB.
 */
#define RSS_SLACK_KB (TU_SANITIZED ? 96L * 1024 : 4L * 1024)
#define MAPS_SLACK (TU_SANITIZED ? 512L : 8L)
#define SHMEM_SLACK_KB 256L

#define MIN_CYCLES 500
#define MAX_CYCLES 5000
#define SECONDS 3.0

static size_t P(void)
{
    return tu_page();
}

static char *pg(void *base, size_t i)
{
    return (char *)base + i * tu_page();
}

typedef struct usage {
    int fds;
    long maps, rss_kb, shmem_kb;
    uint32_t handles, rpages;
    kosvmm_stats st;
} usage;

static usage measure(void)
{
    /* Cached revocation pages of peers are one mapping each, bounded (suite transfer): not a leak. */
    usage u = {tu_fd_count(), tu_maps_lines() - (long)kvmm_mdl_rpage_cached(), tu_status_kb("VmRSS:"),
               tu_status_kb("RssShmem:"),
               kvmm_handle_count(), kvmm_mdl_rpage_count(), tu_stats()};
    ck_assert_int_ge(u.rss_kb, 0);
    ck_assert_int_ge(u.shmem_kb, 0);
    return u;
}

static void assert_baseline(const usage *b, const char *what, int cycles)
{
    usage a = measure();
    ck_assert_msg(a.fds == b->fds, "%s, %d cycles: %d descriptors, %d before", what, cycles, a.fds, b->fds);
    ck_assert_msg(a.handles == b->handles, "%s: %u handles, %u before", what, a.handles, b->handles);
    ck_assert_msg(a.rpages == b->rpages, "%s: %u revocation pages, %u before", what, a.rpages, b->rpages);
    ck_assert_msg(a.st.regions == b->st.regions && a.st.reserved_bytes == b->st.reserved_bytes &&
                      a.st.committed_bytes == b->st.committed_bytes && a.st.locked_bytes == b->st.locked_bytes &&
                      a.st.lazy_bytes == b->st.lazy_bytes && a.st.pinned_bytes == b->st.pinned_bytes,
                  "%s: kosvmm counters not back: regions %llu/%llu committed %llu/%llu pinned %llu/%llu", what,
                  (unsigned long long)a.st.regions, (unsigned long long)b->st.regions,
                  (unsigned long long)a.st.committed_bytes, (unsigned long long)b->st.committed_bytes,
                  (unsigned long long)a.st.pinned_bytes, (unsigned long long)b->st.pinned_bytes);
    ck_assert_msg(a.maps <= b->maps + MAPS_SLACK, "%s, %d cycles: %ld mappings, %ld before", what, cycles, a.maps,
                  b->maps);
    ck_assert_msg(a.rss_kb <= b->rss_kb + RSS_SLACK_KB, "%s, %d cycles: VmRSS %ld kB, %ld kB before", what, cycles,
                  a.rss_kb, b->rss_kb);
    ck_assert_msg(a.shmem_kb <= b->shmem_kb + SHMEM_SLACK_KB, "%s, %d cycles: RssShmem %ld kB, %ld kB before", what,
                  cycles, a.shmem_kb, b->shmem_kb);
    ck_assert_int_eq(tu_vmlck_kb(), 0);
}

/*
 * Runs cycle a few times to warm up (the lazy engine's thread and ring, malloc's arenas, the first
 * revocation page are made once and stay: they belong in the baseline), measures, runs it at
 * least MIN_CYCLES and until SECONDS have passed (at most MAX_CYCLES), and checks the baseline.
 */
static int run_cycles(void (*cycle)(int), const char *what)
{
    tu_start_lazy_engine();
    for (int i = 0; i < 5; i++)
        cycle(i);
    usage b = measure();
    double t0 = tu_now();
    int n = 0;
    while (n < MAX_CYCLES && (n < MIN_CYCLES || tu_now() - t0 < SECONDS))
        cycle(n++);
    assert_baseline(&b, what, n);
    fprintf(stderr, "test_leaks: %s: %d cycles in %.1f s\n", what, n, tu_now() - t0);
    return n;
}

/* ---- VM regions of every kind ---------------------------------------------------------------- */

static void vm_cycle(int i)
{
    const int rw = VMM_FLAG_RESERVE | RW;
    /* reserve, scattered commits (splits), protect, decommit, reset, partial unmaps */
    char *a = KnVmAllocate(RTL_NULL, 32 * P(), rw);
    ck_assert_ptr_nonnull(a);
    for (size_t k = 1; k < 32; k += 3)
        ck_assert_uint_eq(KnVmCommit(pg(a, k), P(), VMM_FLAG_LOCKED), rcOk);
    for (size_t k = 1; k < 32; k += 3)
        pg(a, k)[0] = (char)i;
    ck_assert_uint_eq(KnVmProtect(pg(a, 4), 8 * P(), R), rcOk);
    ck_assert_uint_eq(KnVmDecommit(pg(a, 10), 4 * P()), rcOk);
    ck_assert_uint_eq(KnVmReset(pg(a, 16), 8 * P()), rcOk);
    pg(a, 17)[1] = 1;
    ck_assert_uint_eq(KnVmUnmap(pg(a, 12), 4 * P()), rcOk); /* middle: two regions now */
    ck_assert_uint_eq(KnVmUnmap(a, 2 * P()), rcOk);         /* front */
    ck_assert_uint_eq(KnVmUnmap(pg(a, 30), 2 * P()), rcOk); /* end */
    ck_assert_uint_eq(KnVmUnmap(pg(a, 2), 10 * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(pg(a, 16), 14 * P()), rcOk);

    /* lazy commit, every page touched: the engine's faults and fills */
    char *l = KnVmAllocate(RTL_NULL, 64 * P(), rw | VMM_FLAG_COMMIT);
    ck_assert_ptr_nonnull(l);
    for (size_t k = 0; k < 64; k++)
        pg(l, k)[k] = (char)k;
    ck_assert_int_eq(pg(l, 63)[63], 63);
    ck_assert_uint_eq(KnVmUnmap(l, 64 * P()), rcOk);

    /* full commits: at allocation (pinned when allowed) and later into a LOCKED reservation */
    char *f = KnVmAllocate(RTL_NULL, 16 * P(), rw | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED);
    ck_assert_ptr_nonnull(f);
    char *lr = KnVmAllocate(RTL_NULL, 16 * P(), rw | VMM_FLAG_LOCKED);
    ck_assert_ptr_nonnull(lr);
    ck_assert_uint_eq(KnVmCommit(pg(lr, 4), 8 * P(), VMM_FLAG_LOCKED), rcOk);
    ck_assert_uint_eq(KnVmUnmap(f, 16 * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(lr, 16 * P()), rcOk);

    /* guard pages, lazily committed in between */
    char *g = KnVmAllocate(RTL_NULL, 8 * P(), rw | VMM_FLAG_COMMIT | VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD);
    ck_assert_ptr_nonnull(g);
    memset(g, 0x55, 8 * P());
    ck_assert_uint_eq(KnVmUnmap(g, 8 * P()), rcOk);

    /* a fixed address just freed (anything else may take it meanwhile: then rcAlreadyExists) */
    char *x = KnVmAllocate(RTL_NULL, 4 * P(), VMM_FLAG_RESERVE);
    ck_assert_ptr_nonnull(x);
    ck_assert_uint_eq(KnVmUnmap(x, 4 * P()), rcOk);
    char *y = KnVmAllocate(x, 4 * P(), rw | VMM_FLAG_COMMIT);
    if (y) {
        ck_assert_ptr_eq(y, x);
        y[0] = 1;
        ck_assert_uint_eq(KnVmUnmap(y, 4 * P()), rcOk);
    } else {
        ck_assert_uint_eq(kosvmm_last_error(), rcAlreadyExists);
    }
}

START_TEST(vm_regions_cycles)
{
    int n = run_cycles(vm_cycle, "VM regions");
    ck_assert_int_ge(n, MIN_CYCLES);
}
END_TEST

/* ---- MDL buffers -------------------------------------------------------------------------------- */

static void mdl_cycle(int i)
{
    const size_t size = 32 * P();
    Handle h, c, c2, ro, fv;
    void *m, *cm, *rm, *x;
    ck_assert_uint_eq(KnPmmMdlCreate(size, RW, &h), rcOk);
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, size, RTL_NULL, RW, &m), rcOk);
    memset(m, i & 0x7F, size);
    ck_assert_uint_eq(KnPmmMdlClone(h, 8 * P(), 8 * P(), &c), rcOk);
    ck_assert_uint_eq(KnPmmMdlClone(c, 0, P(), &c2), rcOk);
    ck_assert_uint_eq(KnPmmMdlMap(c, 0, 8 * P(), RTL_NULL, R, &cm), rcOk);
    ck_assert_int_eq(((char *)cm)[5], i & 0x7F);
    /* revoking the clone stops its clone; the mapping stays */
    ck_assert_uint_eq(KnHandleRevoke(c), rcOk);
    ck_assert_uint_eq(KnPmmMdlMap(c2, 0, P(), RTL_NULL, R, &x), rcHandleRevoked);
    ck_assert_int_eq(((char *)cm)[P()], i & 0x7F);

    char src[64];
    memset(src, 0x2A, sizeof src);
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(4 * P(), R, src, sizeof src, &ro), rcOk);
    ck_assert_uint_eq(KnPmmMdlMap(ro, 0, 4 * P(), RTL_NULL, R, &rm), rcOk);
    ck_assert_int_eq(((char *)rm)[63], 0x2A);

    /* committed memory turned into a buffer in place, then freed */
    char *v = KnVmAllocate(RTL_NULL, 16 * P(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | RW);
    ck_assert_ptr_nonnull(v);
    memset(v, 0x11, 8 * P());
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(v, 16 * P(), RW, &fv), rcOk);
    ck_assert_int_eq(v[8 * P() - 1], 0x11);

    ck_assert_uint_eq(KnVmUnmap(m, size), rcOk);
    ck_assert_uint_eq(KnVmUnmap(cm, 8 * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(rm, 4 * P()), rcOk);
    ck_assert_uint_eq(KnVmUnmap(v, 16 * P()), rcOk);
    ck_assert_uint_eq(KnHandleClose(c2), rcOk);
    ck_assert_uint_eq(KnHandleClose(c), rcInvalidArgument); /* KnHandleRevoke closed it */
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_uint_eq(KnHandleClose(ro), rcOk);
    ck_assert_uint_eq(KnHandleClose(fv), rcOk);
}

START_TEST(mdl_cycles)
{
    run_cycles(mdl_cycle, "MDL buffers");
    ck_assert_uint_eq(kvmm_handle_count(), 0);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
}
END_TEST

/* ---- transfer to a forked child and back ----------------------------------------------------- */

/* The child: receives a read-write handle, writes through it, sends back a read-only clone of its
 * second half, closes everything. A payload-only message carries a command: 'b' take the baseline,
 * 'c' compare with it, 'q' quit. Its own descriptors and mappings must come back too. */
static void transfer_child(kosvmm_channel *c)
{
    usage base = {0};
    bool have_base = false;
    for (;;) {
        Handle h = INVALID_HANDLE;
        char cmd[8];
        rtl_size_t n;
        TU_CHILD_CHECK(kosvmm_channel_recv(c, &h, cmd, sizeof cmd, &n) == rcOk);
        if (h == INVALID_HANDLE) {
            TU_CHILD_CHECK(n == 1);
            if (cmd[0] == 'q')
                _exit(0);
            int fds = tu_fd_count();
            long maps = tu_maps_lines() - (long)kvmm_mdl_rpage_cached(), rss = tu_status_kb("VmRSS:");
            if (cmd[0] == 'b') {
                base.fds = fds;
                base.maps = maps;
                base.rss_kb = rss;
                have_base = true;
            } else {
                TU_CHILD_CHECK(have_base);
                if (fds != base.fds || maps > base.maps + MAPS_SLACK || rss > base.rss_kb + RSS_SLACK_KB)
                    fprintf(stderr, "child: fds %d/%d maps %ld/%ld VmRSS %ld/%ld kB\n", fds, base.fds, maps,
                            base.maps, rss, base.rss_kb);
                TU_CHILD_CHECK(fds == base.fds);
                TU_CHILD_CHECK(maps <= base.maps + MAPS_SLACK);
                TU_CHILD_CHECK(rss <= base.rss_kb + RSS_SLACK_KB);
                /* the pages the channel's table keeps (each cycle's buffer has a new one) */
                TU_CHILD_CHECK(kvmm_handle_count() == 0 && kvmm_mdl_rpage_count() == kvmm_channel_table_pages(c));
            }
            TU_CHILD_CHECK(kosvmm_channel_send(c, "k", 1) == rcOk);
            continue;
        }
        rtl_size_t size;
        void *m;
        Handle half;
        TU_CHILD_CHECK(KnPmmMdlGetSize(h, &size) == rcOk);
        TU_CHILD_CHECK(KnPmmMdlMap(h, 0, size, RTL_NULL, RW, &m) == rcOk);
        TU_CHILD_CHECK(((unsigned char *)m)[0] == (unsigned char)cmd[0]);
        memset((char *)m + size / 2, cmd[0] ^ 0xFF, size / 2);
        TU_CHILD_CHECK(KnPmmMdlClone(h, size / 2, size / 2, &half) == rcOk);
        TU_CHILD_CHECK(kosvmm_channel_send_handle(c, half, R, RTL_NULL, 0) == rcOk);
        TU_CHILD_CHECK(KnVmUnmap(m, size) == rcOk);
        TU_CHILD_CHECK(KnHandleClose(half) == rcOk && KnHandleClose(h) == rcOk);
    }
}

static kosvmm_channel *parent_end;

static void transfer_cycle(int i)
{
    const size_t size = 16 * P();
    Handle h, back;
    void *m, *bm;
    char tag = (char)(i % 200 + 1);
    ck_assert_uint_eq(KnPmmMdlCreate(size, RW, &h), rcOk);
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, size / 2, RTL_NULL, RW, &m), rcOk);
    memset(m, tag, size / 2);
    ck_assert_uint_eq(kosvmm_channel_send_handle(parent_end, h, RW | T, &tag, 1), rcOk);
    ck_assert_uint_eq(kosvmm_channel_recv(parent_end, &back, RTL_NULL, 0, RTL_NULL), rcOk);
    ck_assert_uint_ne(back, INVALID_HANDLE);
    ck_assert_uint_eq(KnPmmMdlMap(back, 0, size / 2, RTL_NULL, R, &bm), rcOk);
    ck_assert_int_eq(((char *)bm)[size / 2 - 1], (char)(tag ^ 0xFF));
    ck_assert_uint_eq(KnPmmMdlMap(back, 0, P(), RTL_NULL, RW, &bm), rcNoCapability);
    ck_assert_uint_eq(KnVmUnmap(bm, size / 2), rcOk);
    ck_assert_uint_eq(KnVmUnmap(m, size / 2), rcOk);
    ck_assert_uint_eq(KnHandleClose(back), rcOk);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
}

static void command(char cmd)
{
    ck_assert_uint_eq(kosvmm_channel_send(parent_end, &cmd, 1), rcOk);
    if (cmd == 'q')
        return;
    char ok;
    Handle none;
    ck_assert_uint_eq(kosvmm_channel_recv(parent_end, &none, &ok, 1, RTL_NULL), rcOk);
    ck_assert_int_eq(ok, 'k');
}

START_TEST(transfer_cycles_with_child)
{
    kosvmm_channel *a, *b;
    pid_t child = tu_fork_peer(&a, &b);
    if (child == 0) {
        transfer_child(b);
    }
    parent_end = a;
    tu_start_lazy_engine();
    /* Each cycle's buffer gets a revocation page of its own, which the child's channel table keeps
     * until the sender fills its entry again: the warm-up fills the table (bounded, no leak). */
    for (int i = 0; i < 5 + KVMM_WIRE_TABLE; i++)
        transfer_cycle(i);
    command('b');
    usage base = measure();
    double t0 = tu_now();
    int n = 0;
    while (n < MAX_CYCLES && (n < MIN_CYCLES || tu_now() - t0 < SECONDS))
        transfer_cycle(n++);
    command('c');
    assert_baseline(&base, "transfers", n);
    fprintf(stderr, "test_leaks: transfers: %d cycles in %.1f s\n", n, tu_now() - t0);
    command('q');
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    kosvmm_channel_close(a);
}
END_TEST

/* ---- channel servers ------------------------------------------------------------------------------ */

static char server_name[64];
static bool have_uring; /* kosvmm_channel_server_wait works (io_uring not refused, e.g. by seccomp) */

static void server_cycle(int i)
{
    snprintf(server_name, sizeof server_name, "kosvmm-leaks-%d-%d", (int)getpid(), i);
    kosvmm_channel_server *srv;
    kosvmm_channel *cl, *pe;
    ck_assert_uint_eq(kosvmm_channel_listen(server_name, &srv), rcOk);
    ck_assert_uint_eq(kosvmm_channel_connect(server_name, &cl), rcOk);
    if (i % 2 == 0 || !have_uring) {
        /* the simple case: accept, a handle each way, close */
        ck_assert_uint_eq(kosvmm_channel_accept(srv, &pe), rcOk);
        Handle h, got;
        ck_assert_uint_eq(KnPmmMdlCreate(P(), RW, &h), rcOk);
        ck_assert_uint_eq(kosvmm_channel_send_handle(cl, h, R, "a", 1), rcOk);
        char buf[4];
        ck_assert_uint_eq(kosvmm_channel_recv(pe, &got, buf, sizeof buf, RTL_NULL), rcOk);
        ck_assert_uint_eq(KnHandleClose(got), rcOk);
        ck_assert_uint_eq(KnHandleClose(h), rcOk);
        ck_assert_uint_eq(kosvmm_channel_close(pe), rcOk);
        ck_assert_uint_eq(kosvmm_channel_close(cl), rcOk);
        ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
        return;
    }
    /* the io_uring server: connected, a handle message, closed; then a peer left connected with
     * an unread handle message when the server closes */
    static kosvmm_channel_event ev;
    ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 5000, &ev), rcOk);
    ck_assert_uint_eq(ev.type, KOSVMM_CHANNEL_EVENT_CONNECTED);
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreate(P(), RW, &h), rcOk);
    ck_assert_uint_eq(kosvmm_channel_send_handle(cl, h, R, "m", 1), rcOk);
    ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 5000, &ev), rcOk);
    ck_assert_uint_eq(ev.type, KOSVMM_CHANNEL_EVENT_MESSAGE);
    ck_assert_uint_ne(ev.handle, INVALID_HANDLE);
    ck_assert_uint_eq(KnHandleClose(ev.handle), rcOk);
    kosvmm_channel *cl2;
    ck_assert_uint_eq(kosvmm_channel_connect(server_name, &cl2), rcOk);
    ck_assert_uint_eq(kosvmm_channel_close(cl), rcOk);
    int closed = 0, connected = 0;
    while (!closed || !connected) {
        ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 5000, &ev), rcOk);
        closed += ev.type == KOSVMM_CHANNEL_EVENT_CLOSED;
        connected += ev.type == KOSVMM_CHANNEL_EVENT_CONNECTED;
    }
    ck_assert_uint_eq(kosvmm_channel_send_handle(cl2, h, R, "u", 1), rcOk);
    ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
    ck_assert_uint_eq(kosvmm_channel_close(cl2), rcOk);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
}

START_TEST(channel_server_cycles)
{
    /* Where io_uring is refused the server answers rcUnimplemented (documented): the accept
     * path is then cycled alone. */
    snprintf(server_name, sizeof server_name, "kosvmm-leaks-%d-probe", (int)getpid());
    kosvmm_channel_server *srv;
    static kosvmm_channel_event ev;
    ck_assert_uint_eq(kosvmm_channel_listen(server_name, &srv), rcOk);
    Retcode rc = kosvmm_channel_server_wait(srv, 0, &ev);
    ck_assert_msg(rc == rcBusy || rc == rcUnimplemented, "server_wait probe: %#x", (unsigned)rc);
    ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
    have_uring = rc == rcBusy;
    if (!have_uring)
        fprintf(stderr, "test_leaks: io_uring refused: the io_uring server's cycles are not run\n");
    run_cycles(server_cycle, "channel servers");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("leaks");
    TCase *tc = tcase_create("cycles");
    /* each test runs about SECONDS (more under ASan or on a loaded machine) */
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, vm_regions_cycles);
    tcase_add_test(tc, mdl_cycles);
    tcase_add_test(tc, transfer_cycles_with_child);
    tcase_add_test(tc, channel_server_cycles);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
