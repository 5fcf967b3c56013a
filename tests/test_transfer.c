/* SPDX-License-Identifier: MIT */
/* tests/test_transfer.c — the handle-transfer fast path: lent descriptors, the per-buffer read-only description, the revocation-page cache. */
#include "testutil.h"

#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "handle_table.h"
#include "mdl_memfd/mdl_internal.h"

#define R VMM_FLAG_READ
#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define CACHE_MAX 8 /* RPAGE_CACHE_MAX in src/mdl_memfd/mdl_revoke.c */
/* Mapping counts are exact without sanitizers; ASan's and TSan's allocators map memory of their own
 * meanwhile. */
#if TU_SANITIZED || defined(__SANITIZE_THREAD__)
#define MAPS_EQ(now, before) ((now) <= (before) + 64)
#else
#define MAPS_EQ(now, before) ((now) == (before))
#endif

static size_t P(void)
{
    return tu_page();
}

/* The access mode of the description behind a handle of this process. */
static int handle_accmode(Handle h)
{
    struct kvmm_mdl *o;
    uint32_t rights;
    ck_assert_int_eq(kvmm_mdl_get(h, &o, &rights), 0);
    int fl = fcntl(o->fd, F_GETFL);
    void *w = mmap(NULL, P(), PROT_READ | PROT_WRITE, MAP_SHARED, o->fd, 0);
    int err = errno;
    if (w != MAP_FAILED)
        munmap(w, P());
    kvmm_mdl_put(o);
    ck_assert_int_ge(fl, 0);
    /* the kernel agrees with the mode: no writable shared mapping of a read-only description */
    ck_assert_int_eq(w == MAP_FAILED, (fl & O_ACCMODE) == O_RDONLY);
    if (w == MAP_FAILED)
        ck_assert_int_eq(err, EACCES);
    return fl & O_ACCMODE;
}

/*
 * A read-only copy of a writable handle travels as the buffer's read-only description, made by the
 * first such send and kept (one descriptor) while a handle to the buffer lives here: later sends
 * of the handle or of its clones make no descriptor, sends with WRITE lend the handle's own, and
 * closing the last handle gives the descriptor back. Every copy received is read-only for the
 * kernel, and writes through the sender's mapping are visible in it.
 */
START_TEST(read_only_description_once_per_buffer)
{
    int base = tu_fd_count();
    Handle h, clone;
    ck_assert_uint_eq(KnPmmMdlCreate(2 * P(), RW, &h), rcOk);
    ck_assert_uint_eq(KnPmmMdlClone(h, P(), P(), &clone), rcOk);
    unsigned char *m;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, 2 * P(), RTL_NULL, RW, (void **)&m), rcOk);
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    int held = tu_fd_count();
    for (int i = 0; i < 6; i++) {
        Handle src = i % 3 == 2 ? clone : h;
        uint32_t mask = i % 3 == 1 ? RW : R;
        m[P() + 7] = (unsigned char)(0x30 + i);
        ck_assert_uint_eq(kosvmm_channel_send_handle(a, src, mask, RTL_NULL, 0), rcOk);
        /* the read-only description, from the first send on; with the first, the channel's feedback
         * page, whose descriptor it keeps until the receiver has the page (the second send sees that) */
        ck_assert_int_eq(tu_fd_count(), held + 1 + (i == 0));
        Handle got;
        ck_assert_uint_eq(kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL), rcOk);
        ck_assert_int_eq(handle_accmode(got), mask == RW ? O_RDWR : O_RDONLY);
        void *r;
        ck_assert_uint_eq(KnPmmMdlMap(got, 0, P(), RTL_NULL, RW, &r), mask == RW ? rcOk : rcNoCapability);
        if (mask == RW)
            ck_assert_uint_eq(KnVmUnmap(r, P()), rcOk);
        rtl_size_t off = src == clone ? 0 : P();
        ck_assert_uint_eq(KnPmmMdlMap(got, off, P(), RTL_NULL, R, &r), rcOk);
        ck_assert_uint_eq(((unsigned char *)r)[7], 0x30 + i);
        ck_assert_uint_eq(KnVmUnmap(r, P()), rcOk);
        ck_assert_uint_eq(KnHandleClose(got), rcOk);
    }
    ck_assert_uint_eq(KnVmUnmap(m, 2 * P()), rcOk);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_int_eq(tu_fd_count(), held + 1 - 1); /* h's fd is gone, the clone keeps the description */
    ck_assert_uint_eq(KnHandleClose(clone), rcOk);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
    ck_assert_int_eq(tu_fd_count(), base);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
}
END_TEST

/*
 * fork: the child inherits the buffer's read-only description with the handle; what it sends with
 * it is still read-only for the receiver, and closing the child's handle closes the child's copy
 * of the description, not the parent's.
 */
START_TEST(read_only_description_after_fork)
{
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreate(P(), RW, &h), rcOk);
    unsigned char *m;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P(), RTL_NULL, RW, (void **)&m), rcOk);
    m[3] = 0x5A;
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk); /* makes the description */
    Handle first;
    ck_assert_uint_eq(kosvmm_channel_recv(b, &first, RTL_NULL, 0, RTL_NULL), rcOk);
    ck_assert_uint_eq(KnHandleClose(first), rcOk);
    int parent_fds = tu_fd_count();
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        int fds = tu_fd_count();
        TU_CHILD_CHECK(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0) == rcOk);
        TU_CHILD_CHECK(tu_fd_count() == fds);
        TU_CHILD_CHECK(KnVmUnmap(m, P()) == rcOk);
        TU_CHILD_CHECK(KnHandleClose(h) == rcOk);
        TU_CHILD_CHECK(tu_fd_count() == fds - 3); /* the handle, its revocation page, the description */
        _exit(0);
    }
    tu_wait_child_ok(child);
    Handle got;
    ck_assert_uint_eq(kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL), rcOk);
    ck_assert_int_eq(handle_accmode(got), O_RDONLY);
    void *r;
    ck_assert_uint_eq(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &r), rcOk);
    ck_assert_uint_eq(((unsigned char *)r)[3], 0x5A);
    ck_assert_uint_eq(KnVmUnmap(r, P()), rcOk);
    ck_assert_uint_eq(KnHandleClose(got), rcOk);
    ck_assert_int_eq(tu_fd_count(), parent_fds);
    /* the parent's description survived the child's close; this send sees that b has the channel's
     * feedback page (the first send made it) and closes its descriptor */
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
    ck_assert_int_eq(tu_fd_count(), parent_fds - 1);
    ck_assert_uint_eq(kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL), rcOk);
    ck_assert_int_eq(handle_accmode(got), O_RDONLY);
    ck_assert_uint_eq(KnHandleClose(got), rcOk);
    ck_assert_uint_eq(KnVmUnmap(m, P()), rcOk);
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
}
END_TEST

/* A peer process: creates a buffer holding tag, sends `sends` read-only copies of it on ch (each
 * after a 'g' from the other side); on 'r' revokes its handle and answers 'd'; on 'x' sends a copy,
 * revokes its handle and exits; on 'q' exits. */
static void peer(kosvmm_channel *ch, unsigned char tag, int sends)
{
    Handle h;
    unsigned char *m;
    TU_CHILD_CHECK(KnPmmMdlCreate(P(), RW, &h) == rcOk);
    TU_CHILD_CHECK(KnPmmMdlMap(h, 0, P(), RTL_NULL, RW, (void **)&m) == rcOk);
    m[0] = tag;
    for (;;) {
        char c;
        TU_CHILD_CHECK(kosvmm_channel_recv(ch, RTL_NULL, &c, 1, RTL_NULL) == rcOk);
        if (c == 'g' && sends-- > 0) {
            TU_CHILD_CHECK(kosvmm_channel_send_handle(ch, h, R, RTL_NULL, 0) == rcOk);
        } else if (c == 'r') {
            TU_CHILD_CHECK(KnHandleRevoke(h) == rcOk);
            TU_CHILD_CHECK(kosvmm_channel_send(ch, "d", 1) == rcOk);
        } else if (c == 'x') {
            TU_CHILD_CHECK(kosvmm_channel_send_handle(ch, h, R, RTL_NULL, 0) == rcOk);
            TU_CHILD_CHECK(KnHandleRevoke(h) == rcOk);
            _exit(0);
        } else if (c == 'q') {
            _exit(0);
        }
    }
}

static pid_t start_peer(kosvmm_channel **mine, unsigned char tag, int sends)
{
    kosvmm_channel *theirs;
    ck_assert_uint_eq(kosvmm_channel_pair(mine, &theirs), rcOk);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        kosvmm_channel_close(*mine);
        peer(theirs, tag, sends);
    }
    kosvmm_channel_close(theirs);
    return pid;
}

static Handle fetch(kosvmm_channel *ch, unsigned char tag)
{
    Handle got;
    ck_assert_uint_eq(kosvmm_channel_send(ch, "g", 1), rcOk);
    ck_assert_uint_eq(kosvmm_channel_recv(ch, &got, RTL_NULL, 0, RTL_NULL), rcOk);
    void *r;
    ck_assert_uint_eq(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &r), rcOk);
    ck_assert_uint_eq(((unsigned char *)r)[0], tag);
    ck_assert_uint_eq(KnVmUnmap(r, P()), rcOk);
    return got;
}

static void stop_peer(kosvmm_channel *ch, pid_t pid)
{
    ck_assert_uint_eq(kosvmm_channel_send(ch, "q", 1), rcOk);
    tu_wait_child_ok(pid);
    kosvmm_channel_close(ch);
}

/*
 * A peer's revocation page stays mapped after the last handle using it closes, and the next handle
 * it sends finds it there: no new mapping, no descriptor kept in between. A revocation by the peer
 * still reaches the copy received through the cached page.
 */
START_TEST(revocation_page_cached_per_peer)
{
    kosvmm_channel *ch;
    pid_t pid = start_peer(&ch, 0x11, 3);
    Handle got = fetch(ch, 0x11);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 1);
    ck_assert_uint_eq(kvmm_mdl_rpage_cached(), 0);
    int fds = tu_fd_count();
    ck_assert_uint_eq(KnHandleClose(got), rcOk);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
    ck_assert_uint_eq(kvmm_mdl_rpage_cached(), 1);
    ck_assert_int_eq(tu_fd_count(), fds - 2); /* the buffer's and the page's descriptors: none kept */
    long maps = tu_maps_lines();
    got = fetch(ch, 0x11);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 1);
    ck_assert_uint_eq(kvmm_mdl_rpage_cached(), 0);
    ck_assert(MAPS_EQ(tu_maps_lines(), maps)); /* the page was not mapped again */
    ck_assert_int_eq(tu_fd_count(), fds);
    /* its word still works: the peer revokes, our copy sees it */
    char d;
    ck_assert_uint_eq(kosvmm_channel_send(ch, "r", 1), rcOk);
    ck_assert_uint_eq(kosvmm_channel_recv(ch, RTL_NULL, &d, 1, RTL_NULL), rcOk);
    void *r;
    ck_assert_uint_eq(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &r), rcHandleRevoked);
    ck_assert_uint_eq(KnHandleClose(got), rcOk);
    ck_assert_uint_eq(kvmm_mdl_rpage_cached(), 1);
    stop_peer(ch, pid);
    ck_assert_uint_eq(kvmm_mdl_rpage_cached(), 1); /* a dead peer's page: one mapping, no descriptor */
    ck_assert_uint_eq(kvmm_handle_count(), 0);
}
END_TEST

/*
 * More peers than the cache holds: it keeps the most recent CACHE_MAX pages and unmaps the rest, so
 * mappings stay bounded and no descriptor is kept, also once the peers are gone.
 */
START_TEST(revocation_page_cache_is_bounded)
{
    const int peers = CACHE_MAX + 4;
    int fds = tu_fd_count();
    long maps = -1;
    for (int i = 0; i < peers; i++) {
        kosvmm_channel *ch;
        pid_t pid = start_peer(&ch, (unsigned char)(0x40 + i), 1);
        Handle got = fetch(ch, (unsigned char)(0x40 + i));
        stop_peer(ch, pid);
        ck_assert_uint_eq(KnHandleClose(got), rcOk);
        ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
        ck_assert_uint_eq(kvmm_mdl_rpage_cached(), i + 1 < CACHE_MAX ? (uint32_t)(i + 1) : CACHE_MAX);
        ck_assert_int_eq(tu_fd_count(), fds);
        if (i + 1 == CACHE_MAX)
            maps = tu_maps_lines();
        else if (i + 1 > CACHE_MAX) {
            long now = tu_maps_lines();
            ck_assert(now <= maps || MAPS_EQ(now, maps)); /* full: each new page evicts one */
        }
    }
    ck_assert_uint_eq(kvmm_handle_count(), 0);
}
END_TEST

/*
 * A refused import leaves no mapping behind: a handle whose word is already set when it arrives
 * is refused (rcHandleRevoked) after its page was mapped, and that page is unmapped, not cached.
 */
START_TEST(refused_import_caches_nothing)
{
    kosvmm_channel *ch;
    pid_t pid = start_peer(&ch, 0x22, 1);
    /* the peer sends a handle, revokes it and exits: the word is set before we receive */
    ck_assert_uint_eq(kosvmm_channel_send(ch, "x", 1), rcOk);
    tu_wait_child_ok(pid);
    int fds = tu_fd_count();
    long maps = tu_maps_lines();
    Handle got = (Handle)0x5eed;
    ck_assert_uint_eq(kosvmm_channel_recv(ch, &got, RTL_NULL, 0, RTL_NULL), rcHandleRevoked);
    ck_assert_uint_eq(got, (Handle)0x5eed);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
    ck_assert_uint_eq(kvmm_mdl_rpage_cached(), 0);
    ck_assert(MAPS_EQ(tu_maps_lines(), maps));
    ck_assert_int_eq(tu_fd_count(), fds);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
    kosvmm_channel_close(ch);
}
END_TEST

/*
 * fork: the child inherits the cache, whose mappings it inherits too (MAP_SHARED of the peer's
 * page, so the same inode): a handle the peer sends it finds the page there, and the peer's
 * revocation reaches the child's copy. The parent's cache is not touched by what the child does.
 */
START_TEST(revocation_page_cache_after_fork)
{
    kosvmm_channel *ch;
    pid_t pid = start_peer(&ch, 0x33, 2);
    ck_assert_uint_eq(KnHandleClose(fetch(ch, 0x33)), rcOk);
    ck_assert_uint_eq(kvmm_mdl_rpage_cached(), 1);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        TU_CHILD_CHECK(kvmm_mdl_rpage_cached() == 1 && kvmm_mdl_rpage_count() == 0);
        long maps = tu_maps_lines();
        int fds = tu_fd_count();
        Handle got;
        void *r;
        TU_CHILD_CHECK(kosvmm_channel_send(ch, "g", 1) == rcOk);
        TU_CHILD_CHECK(kosvmm_channel_recv(ch, &got, RTL_NULL, 0, RTL_NULL) == rcOk);
        TU_CHILD_CHECK(kvmm_mdl_rpage_cached() == 0 && kvmm_mdl_rpage_count() == 1);
        TU_CHILD_CHECK(MAPS_EQ(tu_maps_lines(), maps));
        TU_CHILD_CHECK(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &r) == rcOk && ((unsigned char *)r)[0] == 0x33);
        TU_CHILD_CHECK(KnVmUnmap(r, P()) == rcOk);
        char d;
        TU_CHILD_CHECK(kosvmm_channel_send(ch, "r", 1) == rcOk);
        TU_CHILD_CHECK(kosvmm_channel_recv(ch, RTL_NULL, &d, 1, RTL_NULL) == rcOk && d == 'd');
        TU_CHILD_CHECK(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &r) == rcHandleRevoked);
        TU_CHILD_CHECK(KnHandleClose(got) == rcOk);
        TU_CHILD_CHECK(kvmm_mdl_rpage_cached() == 1 && tu_fd_count() == fds);
        _exit(0);
    }
    tu_wait_child_ok(child);
    ck_assert_uint_eq(kvmm_mdl_rpage_cached(), 1);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
    stop_peer(ch, pid);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("transfer");
    TCase *tc = tcase_create("descriptions");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, read_only_description_once_per_buffer);
    tcase_add_test(tc, read_only_description_after_fork);
    suite_add_tcase(s, tc);
    tc = tcase_create("page_cache");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, revocation_page_cached_per_peer);
    tcase_add_test(tc, revocation_page_cache_is_bounded);
    tcase_add_test(tc, refused_import_caches_nothing);
    tcase_add_test(tc, revocation_page_cache_after_fork);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
