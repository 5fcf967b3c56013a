/* SPDX-License-Identifier: MIT */
/* tests/test_policy.c — the process policy: quotas (exact, also under threads), W^X, denied methods, audit lines, policy files and KOSVMM_POLICY. */
#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <errno.h>
#include <fcntl.h>
#include <kosvmm/kosvmm.h>
#include <pthread.h>
#include <rtl/retcode_hr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define RX (VMM_FLAG_READ | VMM_FLAG_EXECUTE)
#define RWX (VMM_FLAG_READ | VMM_FLAG_WRITE | VMM_FLAG_EXECUTE)
#define RESERVE_RW (VMM_FLAG_RESERVE | RW)
#define SENTINEL ((Handle)0x5a5a5a5au)

static size_t P;
static const char *self_exe;

static void setup(void)
{
    P = tu_page();
}

static kosvmm_policy open_policy(void)
{
    kosvmm_policy p = {sizeof(kosvmm_policy), 0, KOSVMM_UNLIMITED, KOSVMM_UNLIMITED, KOSVMM_UNLIMITED, KOSVMM_UNLIMITED,
                       KOSVMM_UNLIMITED, 0, 0, -1, 0};
    return p;
}

static void set_policy(kosvmm_policy p)
{
    ck_assert_uint_eq(kosvmm_set_policy(&p), rcOk);
}

static kosvmm_usage usage(void)
{
    kosvmm_usage u = {.size = sizeof(kosvmm_usage)};
    ck_assert_uint_eq(kosvmm_get_usage(&u), rcOk);
    return u;
}

static void assert_policy_eq(kosvmm_policy a, kosvmm_policy b)
{
    ck_assert_uint_eq(a.max_reserved_bytes, b.max_reserved_bytes);
    ck_assert_uint_eq(a.max_committed_bytes, b.max_committed_bytes);
    ck_assert_uint_eq(a.max_mdl_buffers, b.max_mdl_buffers);
    ck_assert_uint_eq(a.max_mdl_bytes, b.max_mdl_bytes);
    ck_assert_uint_eq(a.max_handles, b.max_handles);
    ck_assert_uint_eq(a.deny, b.deny);
    ck_assert_uint_eq(a.w_xor_x, b.w_xor_x);
    ck_assert_int_eq(a.audit_fd, b.audit_fd);
    ck_assert_uint_eq(a.locked, b.locked);
}

static kosvmm_policy get_policy(void)
{
    kosvmm_policy p = {.size = sizeof(kosvmm_policy)};
    ck_assert_uint_eq(kosvmm_get_policy(&p), rcOk);
    return p;
}

/* A pipe whose write end becomes the audit fd; returns the read end (non-blocking). */
static int audit_pipe(kosvmm_policy *p)
{
    int fds[2];
    ck_assert_int_eq(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    p->audit_fd = fds[1];
    return fds[0];
}

static void read_audit(int fd, char *buf, size_t cap)
{
    ssize_t n = read(fd, buf, cap - 1);
    buf[n > 0 ? n : 0] = '\0';
}

static char *write_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/kosvmm-policy-%d-XXXXXX", (int)getpid());
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    size_t len = strlen(text);
    ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

/* ---- the API itself ------------------------------------------------------------------------ */

START_TEST(defaults_and_bad_arguments)
{
    kosvmm_policy p = get_policy();
    assert_policy_eq(p, open_policy());
    ck_assert_uint_eq(kosvmm_get_policy(RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_get_usage(RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_set_policy(RTL_NULL), rcInvalidArgument);
    kosvmm_policy bad[4];
    for (int i = 0; i < 4; i++)
        bad[i] = open_policy();
    bad[0].deny = KOSVMM_METHODS_ALL + 1;
    bad[1].w_xor_x = 2;
    bad[2].locked = 7;
    bad[3].audit_fd = -2;
    for (int i = 0; i < 4; i++) {
        bad[i].max_handles = 1; /* would matter, if it were taken */
        ck_assert_uint_eq(kosvmm_set_policy(&bad[i]), rcInvalidArgument);
        assert_policy_eq(get_policy(), open_policy());
    }
    p.max_committed_bytes = 12345;
    p.deny = KOSVMM_METHOD_QUERY;
    set_policy(p);
    assert_policy_eq(get_policy(), p);
}
END_TEST

START_TEST(locked_policy_stays)
{
    kosvmm_policy p = open_policy();
    p.max_handles = 5;
    p.locked = 1;
    set_policy(p);
    kosvmm_policy q = open_policy();
    ck_assert_uint_eq(kosvmm_set_policy(&q), rcSecurityDisallow);
    const char *path = write_file("max_handles = 9\n");
    char err[256] = "";
    ck_assert_uint_eq(kosvmm_load_policy(path, err, sizeof err), rcSecurityDisallow);
    ck_assert_ptr_nonnull(strstr(err, "locked"));
    unlink(path);
    assert_policy_eq(get_policy(), p);
}
END_TEST

/* ---- quotas ------------------------------------------------------------------------------- */

START_TEST(reserved_quota)
{
    kosvmm_policy p = open_policy();
    p.max_reserved_bytes = 16 * P;
    set_policy(p);
    char *a = KnVmAllocate(RTL_NULL, 10 * P, RESERVE_RW);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(usage().reserved_bytes, 10 * P);
    /* Guard pages are not counted, as in the statistics. */
    char *b = KnVmAllocate(RTL_NULL, 6 * P, RESERVE_RW | VMM_FLAG_LOW_GUARD | VMM_FLAG_HIGH_GUARD);
    ck_assert_ptr_nonnull(b);
    long after_two = tu_maps_lines();
    ck_assert_ptr_null(KnVmAllocate(RTL_NULL, P, RESERVE_RW));
    ck_assert_uint_eq(kosvmm_last_error(), rcQuotaExceeded);
    ck_assert_int_eq(tu_maps_lines(), after_two);
    ck_assert_uint_eq(usage().reserved_bytes, 16 * P);
    ck_assert_uint_eq(usage().quota_refusals, 1);
    /* Freeing part of a region gives that part back; an MDL mapping is charged too. */
    ck_assert_uint_eq(KnVmUnmap(a + 6 * P, 4 * P), rcOk);
    Handle h = SENTINEL;
    ck_assert_uint_eq(KnPmmMdlCreate(4 * P, RW, &h), rcOk);
    void *m = RTL_NULL;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, 4 * P, RTL_NULL, RW, &m), rcOk);
    ck_assert_uint_eq(usage().reserved_bytes, 16 * P);
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P, RTL_NULL, RW, &m), rcQuotaExceeded);
    ck_assert_uint_eq(KnVmUnmap(m, 4 * P), rcOk);
    ck_assert_uint_eq(KnVmUnmap(a, 6 * P), rcOk);
    ck_assert_uint_eq(KnVmUnmap(b, 6 * P), rcOk);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_uint_eq(usage().reserved_bytes, 0);
    ck_assert_uint_eq(tu_stats().regions, 0);
}
END_TEST

START_TEST(committed_quota_counts_lazy_in_full)
{
    kosvmm_policy p = open_policy();
    p.max_committed_bytes = 16 * P;
    set_policy(p);
    char *a = KnVmAllocate(RTL_NULL, 64 * P, RESERVE_RW);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(KnVmCommit(a, 8 * P, 0), rcOk);
    /* Overlapping commits charge only the pages that were reserved. */
    ck_assert_uint_eq(KnVmCommit(a + 4 * P, 12 * P, 0), rcOk);
    ck_assert_uint_eq(usage().committed_bytes, 16 * P);
    /* Untouched lazy pages count: a touch the process controls makes them RAM. */
    ck_assert_int_eq(tu_resident_pages(a, 16 * P), 0);
    ck_assert_uint_eq(KnVmCommit(a + 16 * P, P, 0), rcQuotaExceeded);
    VmQueryInfo q = tu_query(a + 16 * P);
    ck_assert_uint_eq(q.state, VMM_PAGE_STATE_RESERVED);
    tu_assert_perms(a + 16 * P, "---p");
    /* Reset of reserved pages commits them (lazily), so it is charged too; protect is free. */
    ck_assert_uint_eq(KnVmDecommit(a, 8 * P), rcOk);
    ck_assert_uint_eq(usage().committed_bytes, 8 * P);
    ck_assert_uint_eq(KnVmReset(a + 32 * P, 9 * P), rcQuotaExceeded);
    ck_assert_uint_eq(tu_query(a + 32 * P).state, VMM_PAGE_STATE_RESERVED);
    ck_assert_uint_eq(KnVmReset(a + 32 * P, 8 * P), rcOk);
    ck_assert_uint_eq(tu_query(a + 32 * P).state, VMM_PAGE_STATE_COMMITTED);
    ck_assert_uint_eq(KnVmProtect(a + 8 * P, 8 * P, VMM_FLAG_READ), rcOk);
    ck_assert_uint_eq(usage().committed_bytes, 16 * P);
    /* A committed allocation is charged whole; freeing gives back what was committed. */
    ck_assert_ptr_null(KnVmAllocate(RTL_NULL, P, RESERVE_RW | VMM_FLAG_COMMIT));
    ck_assert_uint_eq(kosvmm_last_error(), rcQuotaExceeded);
    ck_assert_uint_eq(KnVmUnmap(a + 32 * P, 32 * P), rcOk);
    ck_assert_uint_eq(usage().committed_bytes, 8 * P);
    char *b = KnVmAllocate(RTL_NULL, 8 * P, RESERVE_RW | VMM_FLAG_COMMIT | VMM_FLAG_LOCKED);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(usage().committed_bytes, 16 * P);
    ck_assert_uint_eq(KnVmUnmap(b, 8 * P), rcOk);
    ck_assert_uint_eq(KnVmUnmap(a, 32 * P), rcOk);
    ck_assert_uint_eq(usage().committed_bytes, 0);
    ck_assert_uint_eq(usage().quota_refusals, 3);
}
END_TEST

START_TEST(limit_below_usage_keeps_what_exists)
{
    char *a = KnVmAllocate(RTL_NULL, 8 * P, RESERVE_RW | VMM_FLAG_COMMIT);
    ck_assert_ptr_nonnull(a);
    kosvmm_policy p = open_policy();
    p.max_committed_bytes = 4 * P;
    set_policy(p);
    memset(a, 1, 8 * P); /* still usable */
    ck_assert_uint_eq(KnVmDecommit(a, 2 * P), rcOk);
    ck_assert_uint_eq(KnVmCommit(a, P, 0), rcQuotaExceeded);
    ck_assert_uint_eq(KnVmDecommit(a, 8 * P), rcOk);
    ck_assert_uint_eq(KnVmCommit(a, 4 * P, 0), rcOk);
    ck_assert_uint_eq(KnVmUnmap(a, 8 * P), rcOk);
}
END_TEST

struct racer {
    char *base;
    int pages, ok;
};

static void *race_commits(void *arg)
{
    struct racer *r = arg;
    for (int i = 0; i < r->pages; i++)
        if (KnVmCommit(r->base + (size_t)i * P, P, 0) == rcOk)
            r->ok++;
    return NULL;
}

START_TEST(quota_is_exact_under_threads)
{
    enum { THREADS = 4, PAGES = 512, LIMIT = 300 };
    kosvmm_policy p = open_policy();
    p.max_committed_bytes = LIMIT * P;
    set_policy(p);
    pthread_t t[THREADS];
    struct racer r[THREADS];
    char *regions[THREADS];
    for (int i = 0; i < THREADS; i++) {
        regions[i] = KnVmAllocate(RTL_NULL, PAGES * P, RESERVE_RW);
        ck_assert_ptr_nonnull(regions[i]);
        r[i] = (struct racer){regions[i], PAGES, 0};
    }
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, race_commits, &r[i]), 0);
    int total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        total += r[i].ok;
    }
    /* Exactly the limit: never more, and no commit refused while room was left. */
    ck_assert_int_eq(total, LIMIT);
    ck_assert_uint_eq(usage().committed_bytes, (uint64_t)LIMIT * P);
    ck_assert_uint_eq(tu_stats().committed_bytes, (uint64_t)LIMIT * P);
    for (int i = 0; i < THREADS; i++)
        ck_assert_uint_eq(KnVmUnmap(regions[i], PAGES * P), rcOk);
    ck_assert_uint_eq(usage().committed_bytes, 0);
}
END_TEST

START_TEST(mdl_quotas_count_buffers_once)
{
    kosvmm_policy p = open_policy();
    p.max_mdl_buffers = 2;
    p.max_mdl_bytes = 6 * P;
    set_policy(p);
    Handle a = SENTINEL, b = SENTINEL, c = SENTINEL, x = SENTINEL;
    ck_assert_uint_eq(KnPmmMdlCreate(4 * P, RW, &a), rcOk);
    /* A clone is the same buffer: no new buffer, no new bytes. */
    ck_assert_uint_eq(KnPmmMdlClone(a, 0, 2 * P, &c), rcOk);
    int fds = tu_fd_count(); /* a, c, and a's revocation word page, made by the clone */
    ck_assert_uint_eq(usage().mdl_buffers, 1);
    ck_assert_uint_eq(usage().mdl_bytes, 4 * P);
    ck_assert_uint_eq(KnPmmMdlCreate(3 * P, RW, &x), rcQuotaExceeded); /* bytes */
    ck_assert_uint_eq(x, SENTINEL);
    ck_assert_uint_eq(KnPmmMdlCreate(2 * P, RW, &b), rcOk);
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(P, RW, "x", 1, &x), rcQuotaExceeded); /* buffers */
    ck_assert_int_eq(tu_fd_count(), fds + 1);
    /* The buffer is given back when its last handle here closes. */
    ck_assert_uint_eq(KnHandleClose(a), rcOk);
    ck_assert_uint_eq(usage().mdl_buffers, 2);
    ck_assert_uint_eq(KnHandleClose(c), rcOk);
    ck_assert_uint_eq(usage().mdl_buffers, 1);
    ck_assert_uint_eq(usage().mdl_bytes, 2 * P);
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(P, RW, "x", 1, &x), rcOk);
    ck_assert_uint_eq(KnHandleClose(x), rcOk);
    ck_assert_uint_eq(KnHandleClose(b), rcOk);
    ck_assert_uint_eq(usage().mdl_buffers, 0);
    ck_assert_uint_eq(usage().mdl_bytes, 0);
    ck_assert_int_eq(tu_fd_count(), fds - 3);
}
END_TEST

START_TEST(create_from_vm_moves_committed_to_mdl)
{
    kosvmm_policy p = open_policy();
    p.max_mdl_bytes = 4 * P;
    set_policy(p);
    char *a = KnVmAllocate(RTL_NULL, 8 * P, RESERVE_RW | VMM_FLAG_COMMIT);
    ck_assert_ptr_nonnull(a);
    memset(a, 7, 8 * P);
    Handle h = SENTINEL;
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(a, 6 * P, RW, &h), rcQuotaExceeded);
    ck_assert_uint_eq(tu_query(a).attributes & VMM_PAGE_ATTR_MDL, 0);
    ck_assert_uint_eq(usage().committed_bytes, 8 * P);
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(a, 4 * P, RW, &h), rcOk);
    ck_assert_uint_ne(tu_query(a).attributes & VMM_PAGE_ATTR_MDL, 0);
    ck_assert_uint_eq(usage().committed_bytes, 4 * P);
    ck_assert_uint_eq(usage().mdl_bytes, 4 * P);
    ck_assert_int_eq(a[0], 7);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_uint_eq(KnVmUnmap(a, 8 * P), rcOk);
    kosvmm_usage u = usage();
    ck_assert_uint_eq(u.committed_bytes + u.mdl_bytes + u.reserved_bytes, 0);
}
END_TEST

START_TEST(handle_quota)
{
    kosvmm_policy p = open_policy();
    p.max_handles = 2;
    set_policy(p);
    Handle a, b, c = SENTINEL;
    ck_assert_uint_eq(KnPmmMdlCreate(P, RW, &a), rcOk);
    ck_assert_uint_eq(KnPmmMdlClone(a, 0, P, &b), rcOk);
    int fds = tu_fd_count();
    ck_assert_uint_eq(KnPmmMdlClone(a, 0, P, &c), rcQuotaExceeded);
    ck_assert_uint_eq(c, SENTINEL);
    ck_assert_int_eq(tu_fd_count(), fds);
    ck_assert_uint_eq(usage().handles, 2);
    ck_assert_uint_eq(KnHandleClose(b), rcOk);
    ck_assert_uint_eq(KnPmmMdlClone(a, 0, P, &c), rcOk);
    ck_assert_uint_eq(KnHandleClose(c), rcOk);
    ck_assert_uint_eq(KnHandleClose(a), rcOk);
    ck_assert_uint_eq(usage().handles, 0);
}
END_TEST

/* A handle arriving over quota is refused, its descriptors closed; one already held is free. */
START_TEST(received_handles_are_charged)
{
    kosvmm_channel *x, *y;
    ck_assert_uint_eq(kosvmm_channel_pair(&x, &y), rcOk);
    Handle a, b;
    ck_assert_uint_eq(KnPmmMdlCreate(2 * P, RW, &a), rcOk);
    ck_assert_uint_eq(KnPmmMdlCreate(2 * P, RW, &b), rcOk);
    kosvmm_policy p = open_policy();
    p.max_mdl_buffers = 2;
    set_policy(p);
    /* A copy of a buffer this process holds already: no new buffer. */
    Handle got = SENTINEL;
    ck_assert_uint_eq(kosvmm_channel_send_handle(x, a, KOSVMM_RIGHT_READ, RTL_NULL, 0), rcOk);
    int fds = tu_fd_count(); /* with a's revocation word page, made for its first export */
    ck_assert_uint_eq(kosvmm_channel_recv(y, &got, RTL_NULL, 0, RTL_NULL), rcOk);
    ck_assert_uint_eq(usage().mdl_buffers, 2);
    ck_assert_uint_eq(KnHandleClose(got), rcOk);
    ck_assert_int_eq(tu_fd_count(), fds);
    /* A new buffer over quota (made in a child, which has its own policy). */
    pid_t pid = fork();
    if (pid == 0) {
        Handle c;
        kosvmm_policy open = open_policy();
        _exit(kosvmm_set_policy(&open) == rcOk && KnPmmMdlCreate(P, RW, &c) == rcOk &&
                      kosvmm_channel_send_handle(x, c, KOSVMM_RIGHT_READ | KOSVMM_RIGHT_WRITE | KOSVMM_RIGHT_TRANSFER, RTL_NULL, 0) == rcOk
                  ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_int_eq(status, 0);
    got = SENTINEL;
    ck_assert_uint_eq(kosvmm_channel_recv(y, &got, RTL_NULL, 0, RTL_NULL), rcQuotaExceeded);
    ck_assert_uint_eq(got, SENTINEL);
    ck_assert_int_eq(tu_fd_count(), fds);
    ck_assert_uint_eq(usage().mdl_buffers, 2);
    KnHandleClose(a);
    KnHandleClose(b);
    kosvmm_channel_close(x);
    kosvmm_channel_close(y);
}
END_TEST

/* ---- W^X and denied methods ---------------------------------------------------------------- */

START_TEST(w_xor_x_everywhere)
{
    Handle rwx_buf;
    ck_assert_uint_eq(KnPmmMdlCreate(P, RWX, &rwx_buf), rcOk); /* before W^X */
    kosvmm_policy p = open_policy();
    p.w_xor_x = 1;
    set_policy(p);
    tu_start_lazy_engine(); /* its thread and buffers are not this test's mappings */
    long lines = tu_maps_lines();
    ck_assert_ptr_null(KnVmAllocate(RTL_NULL, P, VMM_FLAG_RESERVE | RWX));
    ck_assert_uint_eq(kosvmm_last_error(), rcSecurityDisallow);
    char *a = KnVmAllocate(RTL_NULL, 2 * P, RESERVE_RW | VMM_FLAG_COMMIT);
    ck_assert_ptr_nonnull(a);
    a[0] = 1;
    ck_assert_uint_eq(KnVmProtect(a, P, RWX), rcSecurityDisallow);
    tu_assert_perms(a, "rw-p");
    /* Writable, then executable: each alone is fine (the JIT pattern W^X allows). */
    ck_assert_uint_eq(KnVmProtect(a, P, RX), rcOk);
    tu_assert_perms(a, "r-xp");
    Handle h = SENTINEL;
    ck_assert_uint_eq(KnPmmMdlCreate(P, RWX, &h), rcSecurityDisallow);
    ck_assert_uint_eq(KnPmmMdlCreateFromBuf(P, RWX, "x", 1, &h), rcSecurityDisallow);
    ck_assert_uint_eq(KnPmmMdlCreateFromVm(a + P, P, RWX, &h), rcSecurityDisallow);
    ck_assert_uint_eq(h, SENTINEL);
    void *m = RTL_NULL;
    ck_assert_uint_eq(KnPmmMdlMap(rwx_buf, 0, P, RTL_NULL, RWX, &m), rcSecurityDisallow);
    ck_assert_ptr_null(m);
    ck_assert_uint_eq(KnPmmMdlMap(rwx_buf, 0, P, RTL_NULL, RX, &m), rcOk);
    VmSeg seg;
    memset(&seg, 0, sizeof seg);
    ck_assert_uint_eq(KnVmSegInitFromBuf(&seg, (void *)0x400000, 0, P, RWX, 0, RTL_NULL, 0, "x", 1),
                      rcSecurityDisallow);
    ck_assert_uint_eq(usage().denials, 7);
    ck_assert_uint_eq(KnVmUnmap(m, P), rcOk);
    ck_assert_uint_eq(KnVmUnmap(a, 2 * P), rcOk);
    ck_assert_uint_eq(KnHandleClose(rwx_buf), rcOk);
    ck_assert_int_eq(tu_maps_lines(), lines);
}
END_TEST

/* Every covered method, denied alone: refused before its arguments are looked at, nothing changes. */
START_TEST(each_method_denied)
{
    char *a = KnVmAllocate(RTL_NULL, 4 * P, RESERVE_RW | VMM_FLAG_COMMIT);
    ck_assert_ptr_nonnull(a);
    memset(a, 3, 4 * P);
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreate(P, RW, &h), rcOk);
    kosvmm_channel *x, *y;
    ck_assert_uint_eq(kosvmm_channel_pair(&x, &y), rcOk);
    /* h's first export makes its revocation word page (an fd kept while h lives) and the channel's
     * feedback page, the second closes the latter's descriptor (y has the page): before counting. */
    for (int i = 0; i < 2; i++) {
        Handle warm;
        ck_assert_uint_eq(kosvmm_channel_send_handle(x, h, KOSVMM_RIGHT_READ, RTL_NULL, 0), rcOk);
        ck_assert_uint_eq(kosvmm_channel_recv(y, &warm, RTL_NULL, 0, RTL_NULL), rcOk);
        ck_assert_uint_eq(KnHandleClose(warm), rcOk);
    }
    kosvmm_policy p = open_policy();
    int pipe_r = audit_pipe(&p);
    int fds = tu_fd_count();
    long lines = tu_maps_lines();
    VmSeg seg;
    VmQueryInfo info;
    rtl_size_t size = 77;
    void *m = RTL_NULL;
    Handle out = SENTINEL;
    for (int bit = 0; bit < 16; bit++) {
        p.deny = 1u << bit;
        set_policy(p);
        Retcode rc = rcOk;
        switch (1u << bit) {
        case KOSVMM_METHOD_ALLOCATE:
            ck_assert_ptr_null(KnVmAllocate(RTL_NULL, P, RESERVE_RW));
            rc = kosvmm_last_error();
            break;
        case KOSVMM_METHOD_COMMIT: rc = KnVmCommit(a, P, 0); break;
        case KOSVMM_METHOD_DECOMMIT: rc = KnVmDecommit(a, P); break;
        case KOSVMM_METHOD_PROTECT: rc = KnVmProtect(a, P, VMM_FLAG_READ); break;
        case KOSVMM_METHOD_RESET: rc = KnVmReset(a, P); break;
        case KOSVMM_METHOD_FREE: rc = KnVmUnmap(a, P); break;
        case KOSVMM_METHOD_QUERY:
            memset(&info, 0xab, sizeof info);
            rc = KnVmQuery(a, &info);
            ck_assert_uint_eq(((unsigned char *)&info)[0], 0xab);
            break;
        case KOSVMM_METHOD_MDL_CREATE: rc = KnPmmMdlCreateFromBuf(P, RW, "x", 1, &out); break;
        case KOSVMM_METHOD_MDL_CREATE_FROM_VM: rc = KnPmmMdlCreateFromVm(a, P, RW, &out); break;
        case KOSVMM_METHOD_MDL_GET_SIZE:
            rc = KnPmmMdlGetSize(h, &size);
            ck_assert_uint_eq(size, 77);
            break;
        case KOSVMM_METHOD_MDL_MAP: rc = KnPmmMdlMap(h, 0, P, RTL_NULL, RW, &m); break;
        case KOSVMM_METHOD_MDL_CLONE: rc = KnPmmMdlClone(h, 0, P, &out); break;
        case KOSVMM_METHOD_SEG_INIT:
            rc = KnVmSegInitFromBuf(&seg, (void *)0x400000, 0, P, RW, 0, RTL_NULL, 0, RTL_NULL, 0);
            break;
        case KOSVMM_METHOD_HANDLE_REVOKE: rc = KnHandleRevoke(h); break;
        case KOSVMM_METHOD_HANDLE_TRANSFER:
            rc = kosvmm_channel_send_handle(x, h, KOSVMM_RIGHT_READ, RTL_NULL, 0);
            break;
        case KOSVMM_METHOD_HANDLE_RECEIVE: {
            kosvmm_policy open = p;
            open.deny = 0;
            set_policy(open);
            ck_assert_uint_eq(kosvmm_channel_send_handle(x, h, KOSVMM_RIGHT_READ, RTL_NULL, 0), rcOk);
            set_policy(p);
            rc = kosvmm_channel_recv(y, &out, RTL_NULL, 0, RTL_NULL);
            break;
        }
        }
        ck_assert_msg(rc == rcSecurityDisallow, "method bit %d: %s", bit, rtl_retcode_name(rc));
        /* Denied before validation: bad arguments get the same answer. */
        if ((1u << bit) == KOSVMM_METHOD_COMMIT)
            ck_assert_uint_eq(KnVmCommit((char *)a + 1, 0, 0), rcSecurityDisallow);
        char line[1024];
        /* The other calls of the same method: each refused, each audited. */
        if ((1u << bit) == KOSVMM_METHOD_FREE) {
            read_audit(pipe_r, line, sizeof line);
            ck_assert_int_eq(KnVmFree(a), rcSecurityDisallow);
        }
        if ((1u << bit) == KOSVMM_METHOD_HANDLE_REVOKE) {
            read_audit(pipe_r, line, sizeof line);
            ck_assert_int_eq(KnHandleRevokeEx(h, rtl_false), rcSecurityDisallow);
            read_audit(pipe_r, line, sizeof line);
            ck_assert_int_eq(KnHandleRevokeSubtree(h, INVALID_HANDLE), rcSecurityDisallow);
        }
        read_audit(pipe_r, line, sizeof line);
        ck_assert_msg(strstr(line, "verdict=rcSecurityDisallow rule=deny") != NULL, "%s", line);
    }
    ck_assert_uint_eq(out, SENTINEL);
    ck_assert_ptr_null(m);
    p.deny = 0;
    set_policy(p);
    ck_assert_int_eq(tu_fd_count(), fds);
    ck_assert_int_eq(tu_maps_lines(), lines);
    for (size_t i = 0; i < 4 * P; i++)
        ck_assert_int_eq(a[i], 3);
    tu_assert_perms(a, "rw-p");
    ck_assert_uint_eq(KnPmmMdlGetSize(h, &size), rcOk); /* not revoked */
    /* one per method, the bad-arguments Commit, KnVmFree, KnHandleRevokeEx and ...Subtree */
    ck_assert_uint_eq(usage().denials, 20);
    /* Closing is never denied: giving resources back is not a danger. */
    p.deny = KOSVMM_METHODS_ALL;
    set_policy(p);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_uint_eq(kosvmm_channel_close(x), rcOk);
    ck_assert_uint_eq(kosvmm_channel_close(y), rcOk);
}
END_TEST

START_TEST(audit_line_says_who_what_why)
{
    kosvmm_policy p = open_policy();
    int r = audit_pipe(&p);
    p.max_committed_bytes = 2 * P;
    set_policy(p);
    char *a = KnVmAllocate(RTL_NULL, 4 * P, RESERVE_RW);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(KnVmCommit(a, 3 * P, 0), rcQuotaExceeded);
    char line[1024], want[128];
    read_audit(r, line, sizeof line);
    snprintf(want, sizeof want, "kosvmm-audit: pid=%d tid=", (int)getpid());
    ck_assert_msg(strncmp(line, want, strlen(want)) == 0, "%s", line);
    snprintf(want, sizeof want, " uid=%u comm=", (unsigned)getuid());
    ck_assert_ptr_nonnull(strstr(line, want));
    snprintf(want, sizeof want, "method=Commit verdict=rcQuotaExceeded rule=max_committed_bytes "
                                "detail=used 0 + asked %zu > limit %zu\n", 3 * P, 2 * P);
    ck_assert_msg(strstr(line, want) != NULL, "%s", line);
    ck_assert_ptr_eq(strchr(line, '\n'), line + strlen(line) - 1); /* one line */
    /* Audit off: nothing is written. */
    p.audit_fd = -1;
    set_policy(p);
    ck_assert_uint_eq(KnVmCommit(a, 3 * P, 0), rcQuotaExceeded);
    ck_assert_int_eq(read(r, line, sizeof line), -1);
    ck_assert_int_eq(errno, EAGAIN);
    KnVmUnmap(a, 4 * P);
}
END_TEST

/* KnVmSegInitFromVm is built on MdlCreateFromVm: its audit lines name the method the program
 * called (SegInit), whether the inner step is refused by a quota or by a denied method. */
START_TEST(segment_from_vm_audits_as_seg_init)
{
    kosvmm_policy p = open_policy();
    int r = audit_pipe(&p);
    p.max_mdl_buffers = 0;
    set_policy(p);
    char *a = KnVmAllocate(RTL_NULL, 2 * P, RESERVE_RW | VMM_FLAG_COMMIT);
    ck_assert_ptr_nonnull(a);
    VmSeg seg;
    char line[1024];
    ck_assert_uint_eq(KnVmSegInitFromVm(&seg, (void *)(uintptr_t)0x400000, a, 2 * P, RW), rcQuotaExceeded);
    read_audit(r, line, sizeof line);
    ck_assert_msg(strstr(line, "method=SegInit verdict=rcQuotaExceeded rule=max_mdl_buffers") != NULL, "%s", line);
    p.max_mdl_buffers = KOSVMM_UNLIMITED;
    p.deny = KOSVMM_METHOD_MDL_CREATE_FROM_VM;
    set_policy(p);
    ck_assert_uint_eq(KnVmSegInitFromVm(&seg, (void *)(uintptr_t)0x400000, a, 2 * P, RW), rcSecurityDisallow);
    read_audit(r, line, sizeof line);
    ck_assert_msg(strstr(line, "method=SegInit verdict=rcSecurityDisallow rule=deny "
                               "detail=method MdlCreateFromVm is denied") != NULL, "%s", line);
    ck_assert_uint_eq(tu_query(a).attributes & VMM_PAGE_ATTR_MDL, 0); /* nothing changed */
    p.audit_fd = -1;
    p.deny = 0;
    set_policy(p);
    close(r);
    ck_assert_uint_eq(KnVmUnmap(a, 2 * P), rcOk);
}
END_TEST

/* ---- policy files ---------------------------------------------------------------------------- */

START_TEST(file_with_every_key)
{
    char audit[64];
    snprintf(audit, sizeof audit, "/tmp/kosvmm-audit-%d.log", (int)getpid());
    char text[1024];
    snprintf(text, sizeof text,
             "# a policy\n"
             "\n"
             "max_reserved_bytes = 1G   # address space\n"
             "max_committed_bytes=512M\n"
             "  max_mdl_buffers = 64\n"
             "max_mdl_bytes = 3T\n"
             "max_handles = unlimited\n"
             "deny = MdlCreateFromVm, HandleTransfer Query\n"
             "w_xor_x = yes\n"
             "audit = %s\n"
             "locked = no", audit);
    const char *path = write_file(text);
    char err[256] = "untouched";
    ck_assert_uint_eq(kosvmm_load_policy(path, err, sizeof err), rcOk);
    ck_assert_str_eq(err, "untouched");
    kosvmm_policy p = get_policy();
    ck_assert_uint_eq(p.max_reserved_bytes, 1ull << 30);
    ck_assert_uint_eq(p.max_committed_bytes, 512ull << 20);
    ck_assert_uint_eq(p.max_mdl_buffers, 64);
    ck_assert_uint_eq(p.max_mdl_bytes, 3ull << 40);
    ck_assert_uint_eq(p.max_handles, KOSVMM_UNLIMITED);
    ck_assert_uint_eq(p.deny, KOSVMM_METHOD_MDL_CREATE_FROM_VM | KOSVMM_METHOD_HANDLE_TRANSFER | KOSVMM_METHOD_QUERY);
    ck_assert_uint_eq(p.w_xor_x, 1);
    ck_assert_uint_eq(p.locked, 0);
    ck_assert_int_ge(p.audit_fd, 3);
    VmQueryInfo info;
    ck_assert_uint_eq(KnVmQuery(&info, &info), rcSecurityDisallow);
    /* The audit file is the policy's: a new policy closes it. */
    int fds = tu_fd_count();
    set_policy(open_policy());
    ck_assert_int_eq(tu_fd_count(), fds - 1);
    int fd = open(audit, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    char line[512];
    read_audit(fd, line, sizeof line);
    close(fd);
    ck_assert_ptr_nonnull(strstr(line, "method=Query verdict=rcSecurityDisallow rule=deny"));
    unlink(audit);
    unlink(path);
}
END_TEST

/* kosvmm_get_policy -> change a limit -> kosvmm_set_policy keeps the policy file's audit file: the
 * policy still names it, so it stays open and owned, and audit lines keep reaching it (not a file
 * that reused its number). */
START_TEST(file_audit_survives_get_set_round_trip)
{
    char audit[64];
    snprintf(audit, sizeof audit, "/tmp/kosvmm-audit-rt-%d.log", (int)getpid());
    char text[256];
    snprintf(text, sizeof text, "audit = %s\n", audit);
    const char *path = write_file(text);
    int fds = tu_fd_count();
    ck_assert_uint_eq(kosvmm_load_policy(path, RTL_NULL, 0), rcOk);
    ck_assert_int_eq(tu_fd_count(), fds + 1);
    kosvmm_policy p = get_policy();
    ck_assert_int_ge(p.audit_fd, 3);
    p.max_committed_bytes = 2 * P;
    set_policy(p);
    assert_policy_eq(get_policy(), p);
    ck_assert_int_eq(tu_fd_count(), fds + 1);
    ck_assert_int_ne(fcntl(p.audit_fd, F_GETFD), -1);
    /* A file opened now would get the audit file's number had it been closed. */
    char decoy[64];
    snprintf(decoy, sizeof decoy, "/tmp/kosvmm-decoy-%d.log", (int)getpid());
    int d = open(decoy, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(d, 0);
    char *a = KnVmAllocate(RTL_NULL, 4 * P, RESERVE_RW);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(KnVmCommit(a, 3 * P, 0), rcQuotaExceeded);
    char line[512];
    int fd = open(audit, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    read_audit(fd, line, sizeof line);
    close(fd);
    ck_assert_msg(strstr(line, "method=Commit verdict=rcQuotaExceeded") != NULL, "audit file: '%s'", line);
    ck_assert_int_eq(pread(d, line, sizeof line, 0), 0); /* from the start: writes moved the offset */
    close(d);
    /* A policy without it still closes it, once. */
    set_policy(open_policy());
    ck_assert_int_eq(tu_fd_count(), fds);
    ck_assert_uint_eq(KnVmUnmap(a, 4 * P), rcOk);
    unlink(decoy);
    unlink(audit);
    unlink(path);
}
END_TEST

static const struct {
    const char *text;
    const char *why; /* part of the message after "path:line: " */
    int line;
} malformed[] = {
    {"max_handles = 3\nmax_handle = 4\n", "unknown key 'max_handle'", 2},
    {"max_handles 3\n", "expected 'key = value'", 1},
    {"= 3\n", "expected 'key = value'", 1},
    {"max_handles =\n", "has no value", 1},
    {"max_handles = 3\nmax_handles = 3\n", "given twice", 2},
    {"max_handles = 3K\n", "bad count", 1},
    {"max_reserved_bytes = 3P\n", "bad size", 1},
    {"max_reserved_bytes = -1\n", "expected a number", 1},
    {"max_reserved_bytes = 99999999999999999999\n", "number too large", 1},
    {"max_reserved_bytes = 17000000T\n", "number too large", 1},
    {"max_reserved_bytes = 18446744073709551615\n", "number too large", 1},
    {"deny = Commit, Frobnicate\n", "unknown method 'Frobnicate'", 1},
    {"deny = commit\n", "unknown method 'commit'", 1},
    {"w_xor_x = true\n", "expected 'yes' or 'no'", 1},
    {"audit = relative.log\n", "absolute path", 1},
    {"audit = /nonexistent-dir/x.log\n", "cannot open audit file", 1},
    {"\n\n# ok\nlocked = maybe\n", "expected 'yes' or 'no'", 4},
};

START_TEST(malformed_files_change_nothing)
{
    kosvmm_policy before = open_policy();
    before.max_handles = 1000;
    set_policy(before);
    int fds = tu_fd_count();
    const char *path = write_file(malformed[_i].text);
    char err[256] = "", want[160];
    Retcode expect = strstr(malformed[_i].why, "cannot open") ? rcResourceNotFound : rcInvalidArgument;
    ck_assert_uint_eq(kosvmm_load_policy(path, err, sizeof err), expect);
    snprintf(want, sizeof want, "%s:%d: ", path, malformed[_i].line);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "got '%s', want '%s...'", err, want);
    ck_assert_msg(strstr(err, malformed[_i].why) != NULL, "got '%s', want '%s'", err, malformed[_i].why);
    assert_policy_eq(get_policy(), before);
    ck_assert_int_eq(tu_fd_count(), fds);
    /* Without an error buffer the result is the same. */
    ck_assert_uint_eq(kosvmm_load_policy(path, RTL_NULL, 0), expect);
    unlink(path);
}
END_TEST

START_TEST(unreadable_files)
{
    char err[256];
    ck_assert_uint_eq(kosvmm_load_policy("/nonexistent/policy", err, sizeof err), rcResourceNotFound);
    ck_assert_str_eq(err, "/nonexistent/policy: cannot open: No such file or directory");
    ck_assert_uint_eq(kosvmm_load_policy(RTL_NULL, err, sizeof err), rcInvalidArgument);
    /* A directory opens but cannot be read. */
    ck_assert_uint_eq(kosvmm_load_policy("/tmp", err, sizeof err), rcResourceNotFound);
    ck_assert_ptr_nonnull(strstr(err, "cannot read"));
    /* Binary data is not a policy. */
    char bin[] = "max_handles = 1\n\0\n";
    char path[] = "/tmp/kosvmm-policy-bin-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_eq(write(fd, bin, sizeof bin), (ssize_t)sizeof bin);
    close(fd);
    ck_assert_uint_eq(kosvmm_load_policy(path, err, 8), rcInvalidArgument);
    ck_assert_uint_eq(strlen(err), 7); /* truncated, terminated */
    unlink(path);
    assert_policy_eq(get_policy(), open_policy());
}
END_TEST

/* ---- KOSVMM_POLICY, read before main: checked in a fresh process (this program, re-executed) ---- */

static int child_report(void)
{
    kosvmm_policy p = {.size = sizeof(kosvmm_policy)};
    if (kosvmm_get_policy(&p) != rcOk)
        return 10;
    void *a = KnVmAllocate(RTL_NULL, 4096, RESERVE_RW);
    printf("handles=%llu deny=%u locked=%u alloc=%s\n", (unsigned long long)p.max_handles, p.deny,
           p.locked, a ? "ok" : rtl_retcode_name(kosvmm_last_error()));
    return 0;
}

static void run_child(const char *policy_text, char *out, size_t cap, char *err, size_t err_cap)
{
    const char *path = policy_text ? write_file(policy_text) : "/nonexistent/kosvmm.policy";
    int o[2], e[2];
    ck_assert_int_eq(pipe(o), 0);
    ck_assert_int_eq(pipe(e), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(o[1], 1);
        dup2(e[1], 2);
        setenv("KOSVMM_POLICY", path, 1);
        execl(self_exe, self_exe, "--report-policy", (char *)NULL);
        _exit(127);
    }
    close(o[1]);
    close(e[1]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_int_eq(status, 0);
    ssize_t n = read(o[0], out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
    n = read(e[0], err, err_cap - 1);
    err[n > 0 ? n : 0] = '\0';
    close(o[0]);
    close(e[0]);
    if (policy_text)
        unlink(path);
}

START_TEST(environment_policy)
{
    char out[256], err[512];
    run_child("max_handles = 7\ndeny = Allocate\n", out, sizeof out, err, sizeof err);
    ck_assert_str_eq(out, "handles=7 deny=1 locked=0 alloc=rcSecurityDisallow\n");
    ck_assert_str_eq(err, "");
}
END_TEST

START_TEST(environment_policy_malformed_fails_closed)
{
    char out[256], err[512];
    run_child("max_handles = 7\nmax_handles = 8\n", out, sizeof out, err, sizeof err);
    ck_assert_str_eq(out, "handles=18446744073709551615 deny=65535 locked=1 alloc=rcSecurityDisallow\n");
    ck_assert_msg(strstr(err, "kosvmm: KOSVMM_POLICY: /tmp/kosvmm-policy-") == err, "%s", err);
    ck_assert_msg(strstr(err, ":2: 'max_handles' given twice; every kosvmm call the policy covers is denied") != NULL,
                  "%s", err);
    run_child(NULL, out, sizeof out, err, sizeof err);
    ck_assert_str_eq(out, "handles=18446744073709551615 deny=65535 locked=1 alloc=rcSecurityDisallow\n");
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/kosvmm.policy: cannot open"));
}
END_TEST

static Suite *policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = tcase_create("api");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, defaults_and_bad_arguments);
    tcase_add_test(tc, locked_policy_stays);
    suite_add_tcase(s, tc);

    tc = tcase_create("quotas");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, reserved_quota);
    tcase_add_test(tc, committed_quota_counts_lazy_in_full);
    tcase_add_test(tc, limit_below_usage_keeps_what_exists);
    tcase_add_test(tc, quota_is_exact_under_threads);
    tcase_add_test(tc, mdl_quotas_count_buffers_once);
    tcase_add_test(tc, create_from_vm_moves_committed_to_mdl);
    tcase_add_test(tc, handle_quota);
    tcase_add_test(tc, received_handles_are_charged);
    suite_add_tcase(s, tc);

    tc = tcase_create("rules");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, w_xor_x_everywhere);
    tcase_add_test(tc, each_method_denied);
    tcase_add_test(tc, audit_line_says_who_what_why);
    tcase_add_test(tc, segment_from_vm_audits_as_seg_init);
    suite_add_tcase(s, tc);

    tc = tcase_create("files");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, file_with_every_key);
    tcase_add_test(tc, file_audit_survives_get_set_round_trip);
    tcase_add_loop_test(tc, malformed_files_change_nothing, 0, (int)(sizeof malformed / sizeof malformed[0]));
    tcase_add_test(tc, unreadable_files);
    tcase_add_test(tc, environment_policy);
    tcase_add_test(tc, environment_policy_malformed_fails_closed);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--report-policy") == 0)
        return child_report();
    self_exe = "/proc/self/exe";
    (void)argc;
    return tu_run(policy_suite());
}
