/* SPDX-License-Identifier: MIT */
/* tests/test_transfer.c — the handle-transfer fast path: lent descriptors, the per-buffer read-only description, the revocation-page cache and the per-channel page table. */
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "handle_table.h"
#include "mdl_memfd/channel_impl.h"
#include "mdl_memfd/mdl_internal.h"

#define R VMM_FLAG_READ
#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)
#define CACHE_MAX 8 /* RPAGE_CACHE_MAX in src/mdl_memfd/mdl_revoke.c */
/* Mapping counts are exact without sanitizers; ASan's and TSan's allocators map memory of their own
 * meanwhile. */
#if TU_SANITIZED || defined(__SANITIZE_THREAD__)
#define MAPS_EQ(now, before) ((now) <= (before) + 64)
#define MAPS_SLACK 64L
#else
#define MAPS_EQ(now, before) ((now) == (before))
#define MAPS_SLACK 0L
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

/* ---- the per-channel page table ------------------------------------------------------------------ */

/* A buffer of one page holding tag, read-write. */
static Handle tagged_buffer(unsigned char tag)
{
    Handle h;
    unsigned char *m;
    ck_assert_uint_eq(KnPmmMdlCreate(P(), RW, &h), rcOk);
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, P(), RTL_NULL, RW, (void **)&m), rcOk);
    m[0] = tag;
    ck_assert_uint_eq(KnVmUnmap(m, P()), rcOk);
    return h;
}

/* Child side: receives a handle (rcOk expected), checks its tag, returns it. */
static Handle child_fetch(kosvmm_channel *ch, unsigned char tag)
{
    Handle got;
    void *r;
    TU_CHILD_CHECK(kosvmm_channel_recv(ch, &got, RTL_NULL, 0, RTL_NULL) == rcOk);
    TU_CHILD_CHECK(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &r) == rcOk && ((unsigned char *)r)[0] == tag);
    TU_CHILD_CHECK(KnVmUnmap(r, P()) == rcOk);
    return got;
}

static void child_ack(kosvmm_channel *ch)
{
    TU_CHILD_CHECK(kosvmm_channel_send(ch, "k", 1) == rcOk);
}

static void wait_ack(kosvmm_channel *ch)
{
    char k = 0;
    ck_assert_uint_eq(kosvmm_channel_recv(ch, RTL_NULL, &k, 1, RTL_NULL), rcOk);
    ck_assert_int_eq(k, 'k');
}

/*
 * The first handle message of a channel carries the pages inline (and the feedback page), the
 * second puts the page in the receiver's table, the third names it: it carries the buffer's
 * descriptor alone, maps nothing new, and the sender's revocation still reaches the copy received
 * through the table entry.
 */
START_TEST(table_revocation_reaches_copy)
{
    Handle h = tagged_buffer(0x5C);
    kosvmm_channel *a, *b;
    pid_t child = tu_fork_peer(&a, &b);
    if (child == 0) {
        KnHandleClose(h); /* the parent's buffer reaches this process only through the channel */
        for (int i = 0; i < 2; i++) {
            TU_CHILD_CHECK(KnHandleClose(child_fetch(b, 0x5C)) == rcOk);
            child_ack(b);
        }
        TU_CHILD_CHECK(kvmm_channel_table_pages(b) == 1);
        int fds = tu_fd_count();
        long maps = tu_maps_lines();
        Handle got = child_fetch(b, 0x5C);
        TU_CHILD_CHECK(tu_fd_count() == fds + 1); /* the buffer's description, nothing else */
        TU_CHILD_CHECK(MAPS_EQ(tu_maps_lines(), maps));
        TU_CHILD_CHECK(kvmm_mdl_rpage_count() == 1);
        child_ack(b);
        char c;
        TU_CHILD_CHECK(kosvmm_channel_recv(b, RTL_NULL, &c, 1, RTL_NULL) == rcOk && c == 'r');
        void *r;
        TU_CHILD_CHECK(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &r) == rcHandleRevoked);
        TU_CHILD_CHECK(KnHandleClose(got) == rcOk);
        _exit(0);
    }
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
        wait_ack(a);
    }
    ck_assert_uint_eq(KnHandleRevoke(h), rcOk);
    ck_assert_uint_eq(kosvmm_channel_send(a, "r", 1), rcOk);
    tu_wait_child_ok(child);
    kosvmm_channel_close(a);
}
END_TEST

/* A handle message naming page entries: buffer fd plus the given page fds. */
static void forge_pages(int sock, const uint8_t *how, const uint8_t *index, const uint64_t *ino, uint32_t n,
                        uint64_t dev)
{
    struct kvmm_wire_header hd = {.magic = KVMM_WIRE_MAGIC, .version = KVMM_WIRE_VERSION,
                                  .kind = KVMM_WIRE_KIND_HANDLE, .buffer_size = P(), .length = P(),
                                  .rights = R, .revoke_count = n};
    int fds[4], nfds = 0;
    fds[nfds++] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    for (uint32_t i = 0; i < n; i++) {
        hd.revoke_how[i] = how[i];
        hd.revoke_index[i] = index[i];
        hd.revoke_dev[i] = dev;
        hd.revoke_ino[i] = ino[i];
        if (how[i] != KVMM_WIRE_PAGE_REF)
            fds[nfds++] = open("/dev/null", O_RDONLY | O_CLOEXEC); /* no revocation page */
    }
    hd.nfds = (uint32_t)nfds;
    tu_raw_send(sock, &hd, sizeof hd, fds, nfds);
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
}

/*
 * Forged references into the table: an empty entry, one past the table, a filled entry under
 * another identity, an INSTALL of something that is no revocation page, two INSTALLs into one
 * entry. Each is refused as a forgery with every descriptor closed and no mapping left, and the
 * channel still carries real handles afterwards (an entry a forged INSTALL emptied is installed
 * again by the sender, which learns it through the feedback page).
 */
START_TEST(table_forged_entries_refused)
{
    Handle h = tagged_buffer(0x6D);
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    for (int i = 0; i < 2; i++) { /* feedback page, then h's page into entry 0 */
        Handle got;
        ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
        ck_assert_uint_eq(kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL), rcOk);
        ck_assert_uint_eq(KnHandleClose(got), rcOk);
    }
    ck_assert_uint_eq(kvmm_channel_table_pages(b), 1);
    uint64_t dev = b->rx.dev[0], ino0 = b->rx.ino[0];
    const struct {
        uint8_t how[2], index[2];
        uint64_t ino[2];
        uint32_t n;
    } forged[] = {
        {{KVMM_WIRE_PAGE_REF}, {5}, {ino0}, 1},                                  /* empty entry */
        {{KVMM_WIRE_PAGE_REF}, {KVMM_WIRE_TABLE}, {ino0}, 1},                    /* past the table */
        {{KVMM_WIRE_PAGE_REF}, {200}, {ino0}, 1},
        {{KVMM_WIRE_PAGE_REF}, {0}, {ino0 + 1}, 1},                              /* another identity */
        {{KVMM_WIRE_PAGE_INSTALL}, {3}, {ino0}, 1},                              /* not a page */
        {{KVMM_WIRE_PAGE_INSTALL, KVMM_WIRE_PAGE_INSTALL}, {4, 4}, {ino0, ino0}, 2}, /* one entry twice */
        {{KVMM_WIRE_PAGE_INSTALL}, {0}, {ino0}, 1},                              /* over a good entry */
    };
    for (size_t k = 0; k < sizeof forged / sizeof forged[0]; k++) {
        int fds = tu_fd_count();
        long maps = tu_maps_lines();
        forge_pages(kosvmm_channel_fd(a), forged[k].how, forged[k].index, forged[k].ino, forged[k].n, dev);
        Handle got = 77;
        ck_assert_uint_eq(kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL), rcSecurityDisallow);
        ck_assert_uint_eq(got, 77);
        ck_assert_int_eq(tu_fd_count(), fds);
        ck_assert(MAPS_EQ(tu_maps_lines(), maps));
        ck_assert_uint_eq(kvmm_handle_count(), 1);
        /* the channel still works, its revocation too */
        ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
        ck_assert_uint_eq(kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL), rcOk);
        ck_assert_uint_eq(kvmm_channel_table_pages(b), 1);
        ck_assert_uint_eq(KnHandleClose(got), rcOk);
    }
    Handle got;
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
    ck_assert_uint_eq(kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL), rcOk);
    ck_assert_uint_eq(KnHandleRevoke(h), rcOk);
    void *r;
    ck_assert_uint_eq(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &r), rcHandleRevoked);
    ck_assert_uint_eq(KnHandleClose(got), rcOk);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
    ck_assert_uint_eq(kvmm_handle_count(), 0);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
}
END_TEST

/*
 * A reconnecting peer starts from empty tables: each accepted connection is a channel of its own,
 * and a new channel object over the same socket end (kosvmm_channel_from_fd) hands over a new
 * feedback page, on which the receiver drops the old table. Handles keep arriving intact.
 */
START_TEST(table_not_inherited_on_reconnect)
{
    char name[64];
    snprintf(name, sizeof name, "kosvmm-test-%d-table", (int)getpid());
    kosvmm_channel_server *srv;
    ck_assert_uint_eq(kosvmm_channel_listen(name, &srv), rcOk);
    Handle h = tagged_buffer(0x7E);
    for (int conn = 0; conn < 3; conn++) {
        kosvmm_channel *c, *p;
        ck_assert_uint_eq(kosvmm_channel_connect(name, &c), rcOk);
        ck_assert_uint_eq(kosvmm_channel_accept(srv, &p), rcOk);
        ck_assert_uint_eq(kvmm_channel_table_pages(p), 0);
        for (int i = 0; i < 3; i++) {
            Handle got;
            void *r;
            ck_assert_uint_eq(kosvmm_channel_send_handle(c, h, R, RTL_NULL, 0), rcOk);
            ck_assert_uint_eq(kosvmm_channel_recv(p, &got, RTL_NULL, 0, RTL_NULL), rcOk);
            ck_assert_uint_eq(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &r), rcOk);
            ck_assert_uint_eq(((unsigned char *)r)[0], 0x7E);
            ck_assert_uint_eq(KnVmUnmap(r, P()), rcOk);
            ck_assert_uint_eq(KnHandleClose(got), rcOk);
        }
        ck_assert_uint_eq(kvmm_channel_table_pages(p), 1);
        /* the same socket end under a new object: its first message resets the receiver's table */
        kosvmm_channel *c2;
        int fd2 = dup(kosvmm_channel_fd(c));
        ck_assert_int_ge(fd2, 0);
        ck_assert_uint_eq(kosvmm_channel_from_fd(fd2, &c2), rcOk);
        ck_assert_uint_eq(kosvmm_channel_close(c), rcOk);
        Handle got;
        ck_assert_uint_eq(kosvmm_channel_send_handle(c2, h, R, RTL_NULL, 0), rcOk);
        ck_assert_uint_eq(kosvmm_channel_recv(p, &got, RTL_NULL, 0, RTL_NULL), rcOk);
        ck_assert_uint_eq(kvmm_channel_table_pages(p), 0);
        ck_assert_uint_eq(KnHandleClose(got), rcOk);
        ck_assert_uint_eq(kosvmm_channel_send_handle(c2, h, R, RTL_NULL, 0), rcOk);
        ck_assert_uint_eq(kosvmm_channel_recv(p, &got, RTL_NULL, 0, RTL_NULL), rcOk);
        ck_assert_uint_eq(kvmm_channel_table_pages(p), 1);
        ck_assert_uint_eq(KnHandleClose(got), rcOk);
        ck_assert_uint_eq(kosvmm_channel_close(c2), rcOk);
        ck_assert_uint_eq(kosvmm_channel_close(p), rcOk);
    }
    ck_assert_uint_eq(KnHandleClose(h), rcOk);
    ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
    ck_assert_uint_eq(kvmm_mdl_rpage_count(), 0);
}
END_TEST

/*
 * A sender whose every buffer has a revocation page of its own (each closed before the next is
 * made): the receiver's table keeps at most KVMM_WIRE_TABLE pages, one descriptor and one mapping
 * each, however many pages pass, and gives them all back when the channel closes.
 */
START_TEST(table_is_bounded)
{
    kosvmm_channel *a, *b;
    pid_t child = tu_fork_peer(&a, &b);
    const int buffers = 3 * KVMM_WIRE_TABLE;
    if (child == 0) {
        int fds0 = tu_fd_count();
        long maps0 = tu_maps_lines();
        for (int i = 0; i < buffers; i++) {
            for (int k = 0; k < 2; k++)
                TU_CHILD_CHECK(KnHandleClose(child_fetch(b, (unsigned char)i)) == rcOk);
            uint32_t pages = kvmm_channel_table_pages(b);
            TU_CHILD_CHECK(pages <= KVMM_WIRE_TABLE && kvmm_mdl_rpage_count() == pages);
            /* the table's pages (descriptor + mapping each) and the feedback page's mapping */
            TU_CHILD_CHECK(tu_fd_count() == fds0 + (int)pages);
            TU_CHILD_CHECK(tu_maps_lines() - (long)kvmm_mdl_rpage_cached() <= maps0 + (long)pages + 1 + MAPS_SLACK);
            child_ack(b);
        }
        TU_CHILD_CHECK(kvmm_channel_table_pages(b) == KVMM_WIRE_TABLE);
        TU_CHILD_CHECK(kosvmm_channel_close(b) == rcOk);
        TU_CHILD_CHECK(tu_fd_count() == fds0 - 1 && kvmm_mdl_rpage_count() == 0);
        _exit(0);
    }
    for (int i = 0; i < buffers; i++) {
        Handle h = tagged_buffer((unsigned char)i);
        for (int k = 0; k < 2; k++) /* the second would name the page if the first installed it */
            ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
        ck_assert_uint_eq(KnHandleClose(h), rcOk); /* its page goes: the next buffer gets a new one */
        wait_ack(a);
    }
    tu_wait_child_ok(child);
    kosvmm_channel_close(a);
}
END_TEST

/*
 * A receiver that runs out of descriptors while an INSTALL arrives loses that entry; it tells the
 * sender through the feedback page, so the next message installs the page again and arrives,
 * and the sender's revocation reaches the copy.
 */
START_TEST(table_lost_install_is_installed_again)
{
    kosvmm_channel *a, *b;
    pid_t child = tu_fork_peer(&a, &b);
    if (child == 0) {
        TU_CHILD_CHECK(KnHandleClose(child_fetch(b, 1)) == rcOk); /* feedback page */
        child_ack(b);
        TU_CHILD_CHECK(KnHandleClose(child_fetch(b, 1)) == rcOk); /* page 1 installed */
        child_ack(b);
        /* the next message installs page 2 with room for the buffer's descriptor only */
        int fds = tu_fd_count();
        int low = dup(0);
        TU_CHILD_CHECK(low >= 0 && close(low) == 0);
        struct rlimit old, lim;
        TU_CHILD_CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
        lim = old;
        lim.rlim_cur = (rlim_t)(low + 1);
        TU_CHILD_CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0);
        Handle got = 9;
        Retcode rc = kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL);
        TU_CHILD_CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
        TU_CHILD_CHECK(rc == rcQuotaExceeded && got == 9 && tu_fd_count() == fds);
        child_ack(b);
        got = child_fetch(b, 2);
        child_ack(b);
        char c;
        TU_CHILD_CHECK(kosvmm_channel_recv(b, RTL_NULL, &c, 1, RTL_NULL) == rcOk && c == 'r');
        void *r;
        TU_CHILD_CHECK(KnPmmMdlMap(got, 0, P(), RTL_NULL, R, &r) == rcHandleRevoked);
        TU_CHILD_CHECK(KnHandleClose(got) == rcOk);
        _exit(0);
    }
    Handle h1 = tagged_buffer(1);
    for (int i = 0; i < 2; i++) {
        ck_assert_uint_eq(kosvmm_channel_send_handle(a, h1, R, RTL_NULL, 0), rcOk);
        wait_ack(a);
    }
    ck_assert_uint_eq(KnHandleClose(h1), rcOk); /* page 1 goes: h2's word is on a new page */
    Handle h2 = tagged_buffer(2);
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h2, R, RTL_NULL, 0), rcOk);
    wait_ack(a);
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h2, R, RTL_NULL, 0), rcOk);
    wait_ack(a);
    ck_assert_uint_eq(KnHandleRevoke(h2), rcOk);
    ck_assert_uint_eq(kosvmm_channel_send(a, "r", 1), rcOk);
    tu_wait_child_ok(child);
    kosvmm_channel_close(a);
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
    tc = tcase_create("channel_table");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, table_revocation_reaches_copy);
    tcase_add_test(tc, table_forged_entries_refused);
    tcase_add_test(tc, table_not_inherited_on_reconnect);
    tcase_add_test(tc, table_is_bounded);
    tcase_add_test(tc, table_lost_install_is_installed_again);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
