/* SPDX-License-Identifier: MIT */
/* tests/test_channel.c — channels: pair and named connect, payloads, handle transfer and narrowing, forged messages, io_uring server, no fd leaks. */
#include "testutil.h"

#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mdl_memfd/channel_wire.h"

#define MAXP KOSVMM_CHANNEL_MAX_PAYLOAD
#define RW (VMM_FLAG_READ | VMM_FLAG_WRITE)

/* A name no other test process uses at the same time (meson runs suites in parallel). */
static const char *unique_name(const char *what)
{
    static char name[64];
    snprintf(name, sizeof name, "kosvmm-test-%d-%s", (int)getpid(), what);
    return name;
}

static struct kvmm_wire_header header(uint16_t kind, uint32_t nfds, uint32_t payload)
{
    struct kvmm_wire_header h = {.magic = KVMM_WIRE_MAGIC, .version = KVMM_WIRE_VERSION, .kind = kind,
                                 .nfds = nfds, .payload_size = payload};
    if (kind == KVMM_WIRE_KIND_HANDLE && nfds > 0)
        h.revoke_count = nfds - 1;
    return h;
}

static void open_dummies(int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fds[i], 0);
    }
}

static void close_all(const int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/* ---- pair, payloads, names, credentials ---- */

START_TEST(pair_payload_sizes)
{
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    static unsigned char out[MAXP + 1], in[MAXP];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (unsigned char)(i * 7 + 1);
    const size_t sizes[] = {0, 1, 100, MAXP};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        ck_assert_uint_eq(kosvmm_channel_send(a, out, sizes[k]), rcOk);
        Handle h = 123;
        rtl_size_t got = 999999;
        ck_assert_uint_eq(kosvmm_channel_recv(b, &h, in, sizeof in, &got), rcOk);
        ck_assert_uint_eq(h, INVALID_HANDLE); /* payload-only */
        ck_assert_uint_eq(got, sizes[k]);
        ck_assert_int_eq(memcmp(in, out, sizes[k]), 0);
    }
    /* max + 1 is refused before anything is sent */
    ck_assert_uint_eq(kosvmm_channel_send(a, out, MAXP + 1), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_send(a, RTL_NULL, 1), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_send(RTL_NULL, out, 1), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_send(a, RTL_NULL, 0), rcOk);
    ck_assert_uint_eq(kosvmm_channel_recv(b, RTL_NULL, RTL_NULL, 0, RTL_NULL), rcOk);

    /* a message longer than the receiver's capacity is dropped; the next one still arrives */
    ck_assert_uint_eq(kosvmm_channel_send(a, out, 64), rcOk);
    ck_assert_uint_eq(kosvmm_channel_send(a, out, 8), rcOk);
    memset(in, 0xEE, sizeof in);
    rtl_size_t got = 999;
    ck_assert_uint_eq(kosvmm_channel_recv(b, RTL_NULL, in, 16, &got), rcInvalidArgument);
    ck_assert_uint_eq(got, 999);      /* no output on failure */
    ck_assert_uint_eq(in[0], 0xEE);
    ck_assert_uint_eq(kosvmm_channel_recv(b, RTL_NULL, in, 16, &got), rcOk);
    ck_assert_uint_eq(got, 8);
    ck_assert_uint_eq(kosvmm_channel_recv(b, RTL_NULL, RTL_NULL, 16, &got), rcInvalidArgument);

    ck_assert_uint_eq(kosvmm_channel_close(a), rcOk);
    /* the peer's end closed: the receiver learns it, the sender too */
    ck_assert_uint_eq(kosvmm_channel_recv(b, RTL_NULL, in, sizeof in, &got), rcResourceNotFound);
    ck_assert_uint_eq(kosvmm_channel_send(b, out, 1), rcResourceNotFound);
    ck_assert_uint_eq(kosvmm_channel_close(b), rcOk);
    ck_assert_uint_eq(kosvmm_channel_close(RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_pair(RTL_NULL, &b), rcInvalidArgument);
}
END_TEST

START_TEST(pair_is_cloexec_seqpacket)
{
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    int fd = kosvmm_channel_fd(a);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    int type;
    socklen_t len = sizeof type;
    ck_assert_int_eq(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len), 0);
    ck_assert_int_eq(type, SOCK_SEQPACKET);
    ck_assert_int_eq(kosvmm_channel_fd(RTL_NULL), -1);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
}
END_TEST

START_TEST(from_fd_checks_the_socket)
{
    kosvmm_channel *c;
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    ck_assert_uint_eq(kosvmm_channel_from_fd(p[0], &c), rcInvalidArgument);
    int s[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
    ck_assert_uint_eq(kosvmm_channel_from_fd(s[0], &c), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_from_fd(-1, &c), rcInvalidArgument);
    close_all(p, 2);
    close_all(s, 2);

    /* an inherited end (no FD_CLOEXEC) is accepted and made close-on-exec again */
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, s), 0);
    ck_assert_uint_eq(kosvmm_channel_from_fd(s[0], RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_from_fd(s[0], &c), rcOk);
    ck_assert_int_eq(fcntl(s[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    ck_assert_int_eq(write(s[1], "x", 1), 1); /* not a protocol message: refused, not crashed */
    ck_assert_uint_eq(kosvmm_channel_recv(c, RTL_NULL, RTL_NULL, 0, RTL_NULL), rcSecurityDisallow);
    ck_assert_uint_eq(kosvmm_channel_close(c), rcOk);
    close(s[1]);
}
END_TEST

START_TEST(named_connect_accept)
{
    const char *name = unique_name("named");
    kosvmm_channel_server *srv, *dup;
    kosvmm_channel *cl, *pe;
    ck_assert_uint_eq(kosvmm_channel_connect(name, &cl), rcResourceNotFound);
    ck_assert_uint_eq(kosvmm_channel_listen(name, &srv), rcOk);
    ck_assert_uint_eq(kosvmm_channel_listen(name, &dup), rcAlreadyExists);
    ck_assert_uint_eq(kosvmm_channel_connect(name, &cl), rcOk);
    ck_assert_uint_eq(kosvmm_channel_accept(srv, &pe), rcOk);

    ck_assert_uint_eq(kosvmm_channel_send(cl, "ping", 4), rcOk);
    char buf[8];
    rtl_size_t n;
    ck_assert_uint_eq(kosvmm_channel_recv(pe, RTL_NULL, buf, sizeof buf, &n), rcOk);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(memcmp(buf, "ping", 4), 0);
    ck_assert_uint_eq(kosvmm_channel_send(pe, "pong", 4), rcOk);
    ck_assert_uint_eq(kosvmm_channel_recv(cl, RTL_NULL, buf, sizeof buf, &n), rcOk);
    ck_assert_int_eq(memcmp(buf, "pong", 4), 0);

    /* an accepted channel outlives its server */
    ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
    ck_assert_uint_eq(kosvmm_channel_send(cl, "x", 1), rcOk);
    ck_assert_uint_eq(kosvmm_channel_recv(pe, RTL_NULL, buf, sizeof buf, &n), rcOk);
    ck_assert_uint_eq(kosvmm_channel_close(cl), rcOk);
    ck_assert_uint_eq(kosvmm_channel_close(pe), rcOk);
    ck_assert_uint_eq(kosvmm_channel_connect(name, &cl), rcResourceNotFound);
}
END_TEST

START_TEST(bad_names)
{
    char long_name[200];
    memset(long_name, 'n', sizeof long_name);
    long_name[108] = '\0'; /* one byte more than an abstract address holds */
    kosvmm_channel_server *srv;
    kosvmm_channel *c;
    ck_assert_uint_eq(kosvmm_channel_listen(RTL_NULL, &srv), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_listen("", &srv), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_listen(long_name, &srv), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_listen("x", RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_connect(long_name, &c), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_connect("", &c), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_connect("x", RTL_NULL), rcInvalidArgument);
    long_name[107] = '\0'; /* the longest allowed */
    long_name[0] = 'k';
    snprintf(long_name + 1, 12, "%010d", (int)getpid());
    long_name[11] = 'n';
    ck_assert_uint_eq(kosvmm_channel_listen(long_name, &srv), rcOk);
    ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
    ck_assert_uint_eq(kosvmm_channel_server_close(RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_accept(RTL_NULL, &c), rcInvalidArgument);
}
END_TEST

START_TEST(peer_credentials)
{
    kosvmm_channel *a, *b;
    kosvmm_peer_cred cred;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    ck_assert_uint_eq(kosvmm_channel_peer_cred(a, &cred), rcOk);
    ck_assert_int_eq(cred.pid, getpid());
    ck_assert_uint_eq(cred.uid, getuid());
    ck_assert_uint_eq(cred.gid, getgid());
    ck_assert_uint_eq(kosvmm_channel_peer_cred(a, RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_peer_cred(RTL_NULL, &cred), rcInvalidArgument);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);

    /* a connecting child is seen with its own pid */
    const char *name = unique_name("cred");
    kosvmm_channel_server *srv;
    ck_assert_uint_eq(kosvmm_channel_listen(name, &srv), rcOk);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        kosvmm_channel *c;
        char x;
        if (kosvmm_channel_connect(name, &c) != rcOk)
            _exit(1);
        kosvmm_channel_recv(c, RTL_NULL, &x, 1, RTL_NULL); /* stay connected until told */
        _exit(0);
    }
    kosvmm_channel *pe;
    ck_assert_uint_eq(kosvmm_channel_accept(srv, &pe), rcOk);
    ck_assert_uint_eq(kosvmm_channel_peer_cred(pe, &cred), rcOk);
    ck_assert_int_eq(cred.pid, child);
    ck_assert_uint_eq(kosvmm_channel_send(pe, "x", 1), rcOk);
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    kosvmm_channel_close(pe);
    kosvmm_channel_server_close(srv);
}
END_TEST

/* ---- forged datagrams: rejected, every descriptor closed ---- */

/* Sends one forged datagram from a's raw socket and expects b's receive to refuse it with rc and
 * leave exactly the descriptors there were before the dummies were opened. */
static void expect_rejected(const void *data, size_t len, int nfds, Retcode want)
{
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    int base = tu_fd_count();
    int fds[32];
    open_dummies(fds, nfds);
    tu_raw_send(kosvmm_channel_fd(a), data, len, fds, nfds);
    close_all(fds, nfds); /* the datagram holds its own references now */
    Handle h = 77;
    unsigned char buf[MAXP];
    ck_assert_uint_eq(kosvmm_channel_recv(b, &h, buf, sizeof buf, RTL_NULL), want);
    ck_assert_uint_eq(h, 77);
    ck_assert_int_eq(tu_fd_count(), base);
    /* the channel still works afterwards */
    ck_assert_uint_eq(kosvmm_channel_send(a, "ok", 2), rcOk);
    ck_assert_uint_eq(kosvmm_channel_recv(b, &h, buf, sizeof buf, RTL_NULL), rcOk);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
}

START_TEST(forged_too_many_fds_ctrunc)
{
    /* 20 descriptors do not fit the receiver's control buffer: MSG_CTRUNC; those that fitted are closed */
    struct kvmm_wire_header h = header(KVMM_WIRE_KIND_HANDLE, 20, 0);
    expect_rejected(&h, sizeof h, 20, rcSecurityDisallow);
}
END_TEST

START_TEST(forged_one_fd_too_many)
{
    /* 10 descriptors fit the control buffer exactly, but are one more than a handle ever has */
    struct kvmm_wire_header h = header(KVMM_WIRE_KIND_HANDLE, 10, 0);
    expect_rejected(&h, sizeof h, 10, rcSecurityDisallow);
}
END_TEST

START_TEST(forged_fds_not_as_announced)
{
    struct kvmm_wire_header h = header(KVMM_WIRE_KIND_HANDLE, 3, 0);
    expect_rejected(&h, sizeof h, 2, rcSecurityDisallow); /* header says 3, 2 arrive */
    h = header(KVMM_WIRE_KIND_DATA, 0, 0);
    expect_rejected(&h, sizeof h, 1, rcSecurityDisallow); /* payload-only with a descriptor */
    h = header(KVMM_WIRE_KIND_HANDLE, 0, 0);
    expect_rejected(&h, sizeof h, 0, rcSecurityDisallow); /* a handle without its memfd */
    h = header(KVMM_WIRE_KIND_HANDLE, 2, 0);
    h.revoke_count = 5;                                    /* nfds disagrees with revoke_count */
    expect_rejected(&h, sizeof h, 2, rcSecurityDisallow);
}
END_TEST

START_TEST(forged_bad_headers)
{
    struct kvmm_wire_header h = header(KVMM_WIRE_KIND_HANDLE, 2, 0);
    h.magic ^= 1;
    expect_rejected(&h, sizeof h, 2, rcSecurityDisallow);
    h = header(KVMM_WIRE_KIND_HANDLE, 2, 0);
    h.version = KVMM_WIRE_VERSION + 1;
    expect_rejected(&h, sizeof h, 2, rcSecurityDisallow);
    h = header(7, 2, 0);
    expect_rejected(&h, sizeof h, 2, rcSecurityDisallow);
    h = header(KVMM_WIRE_KIND_HANDLE, 2, 10); /* says 10 payload bytes, none follow */
    expect_rejected(&h, sizeof h, 2, rcSecurityDisallow);
    h = header(KVMM_WIRE_KIND_HANDLE, 2, 0);
    expect_rejected(&h, sizeof h - 1, 2, rcSecurityDisallow); /* short header */
    expect_rejected("", 0, 1, rcSecurityDisallow);            /* empty datagram carrying a descriptor */
}
END_TEST

START_TEST(forged_oversized_datagram)
{
    /* longer than header + max payload: arrives with MSG_TRUNC */
    static unsigned char big[sizeof(struct kvmm_wire_header) + MAXP + 100];
    struct kvmm_wire_header h = header(KVMM_WIRE_KIND_HANDLE, 1, MAXP + 100);
    memcpy(big, &h, sizeof h);
    expect_rejected(big, sizeof big, 1, rcSecurityDisallow);
}
END_TEST

START_TEST(handle_message_refused_without_handle_out)
{
    /* a well-formed handle message to a receiver that accepts payload only: dropped, not imported */
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    int base = tu_fd_count();
    int fds[2];
    open_dummies(fds, 2);
    struct kvmm_mdl_export e = {.buffer_fd = fds[0], .buffer_size = 4096, .length = 4096,
                                .rights = KVMM_RIGHT_READ, .revoke_count = 1, .revoke_fd = {fds[1]}};
    ck_assert_int_eq(kvmm_wire_send(kosvmm_channel_fd(a), NULL, &e, "p", 1), 0);
    close_all(fds, 2);
    char buf[4];
    rtl_size_t n = 99;
    ck_assert_uint_eq(kosvmm_channel_recv(b, RTL_NULL, buf, sizeof buf, &n), rcInvalidOperation);
    ck_assert_uint_eq(n, 99);
    ck_assert_int_eq(tu_fd_count(), base);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
}
END_TEST

START_TEST(wire_round_trip_plain_fds)
{
    enum { WIRE_FDS = 1 + KVMM_MDL_MAX_REVOKE }; /* no table: every page INLINE, no feedback page */
    /* the wire layer alone, with plain descriptors: order and numbers arrive as sent */
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    int base = tu_fd_count();
    int fds[WIRE_FDS];
    open_dummies(fds, WIRE_FDS);
    struct kvmm_mdl_export e = {.buffer_fd = fds[0], .buffer_size = 1 << 20, .offset = 4096, .length = 8192,
                                .rights = KVMM_RIGHT_READ | KVMM_RIGHT_TRANSFER,
                                .revoke_count = KVMM_MDL_MAX_REVOKE};
    for (int i = 0; i < KVMM_MDL_MAX_REVOKE; i++) {
        e.revoke_fd[i] = fds[1 + i];
        e.revoke_slot[i] = (uint32_t)(100 + i);
    }
    ck_assert_int_eq(kvmm_wire_send(sv[0], NULL, &e, "abc", 3), 0);
    e.revoke_count = KVMM_MDL_MAX_REVOKE + 1;
    ck_assert_int_eq(kvmm_wire_send(sv[0], NULL, &e, "abc", 3), -EINVAL);
    ck_assert_int_eq(kvmm_wire_send(sv[0], NULL, NULL, "abc", KVMM_WIRE_MAX_PAYLOAD + 1), -EINVAL);
    close_all(fds, WIRE_FDS);

    struct kvmm_wire_rxbuf rx;
    struct kvmm_wire_msg m;
    ck_assert_int_eq(kvmm_wire_recv(sv[1], &rx, NULL, &m, 16), 0);
    ck_assert_uint_eq(m.kind, KVMM_WIRE_KIND_HANDLE);
    ck_assert_uint_eq(m.payload_size, 3);
    ck_assert_int_eq(memcmp(m.payload, "abc", 3), 0);
    ck_assert_uint_eq(m.desc.buffer_size, 1 << 20);
    ck_assert_uint_eq(m.desc.offset, 4096);
    ck_assert_uint_eq(m.desc.length, 8192);
    ck_assert_uint_eq(m.desc.revoke_count, KVMM_MDL_MAX_REVOKE);
    ck_assert_uint_eq(m.desc.revoke_slot[3], 103);
    ck_assert_int_eq(fcntl(m.desc.buffer_fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC); /* MSG_CMSG_CLOEXEC */
    ck_assert_int_eq(tu_fd_count(), base + WIRE_FDS);
    kvmm_wire_msg_close(&m);
    ck_assert_int_eq(tu_fd_count(), base);
    close_all(sv, 2);
}
END_TEST

/* ---- the io_uring server ---- */

#define PEERS 4
#define PER_PEER 50

static void peer_child(const char *name, int index)
{
    kosvmm_channel *c;
    if (kosvmm_channel_connect(name, &c) != rcOk)
        _exit(10);
    for (int i = 0; i < PER_PEER; i++) {
        int msg[2] = {index, i};
        if (kosvmm_channel_send(c, msg, sizeof msg) != rcOk)
            _exit(11);
    }
    /* one forged datagram among the good ones: reported as REJECTED, the peer stays connected */
    struct kvmm_wire_header h = header(KVMM_WIRE_KIND_DATA, 0, 0);
    h.version = 9;
    if (send(kosvmm_channel_fd(c), &h, sizeof h, MSG_NOSIGNAL) != (ssize_t)sizeof h)
        _exit(12);
    char reply[8];
    rtl_size_t n;
    if (kosvmm_channel_recv(c, RTL_NULL, reply, sizeof reply, &n) != rcOk || n != 4 || memcmp(reply, "done", 4))
        _exit(13);
    kosvmm_channel_close(c);
    _exit(0);
}

START_TEST(server_many_peers_uring)
{
    const char *name = unique_name("uring");
    kosvmm_channel_server *srv;
    ck_assert_uint_eq(kosvmm_channel_listen(name, &srv), rcOk);
    if (tu_server_wait_unimplemented(srv)) { /* io_uring blocked: the documented answer is all there is */
        ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
        return;
    }
    int base = tu_fd_count();
    pid_t pids[PEERS];
    for (int i = 0; i < PEERS; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0)
            peer_child(name, i);
    }
    static kosvmm_channel_event ev;
    int connected = 0, closed = 0, rejected = 0, next[PEERS] = {0};
    while (closed < PEERS) {
        Retcode rc = kosvmm_channel_server_wait(srv, 20000, &ev);
        ck_assert_uint_eq(rc, rcOk);
        switch (ev.type) {
        case KOSVMM_CHANNEL_EVENT_CONNECTED: {
            kosvmm_peer_cred cred;
            ck_assert_uint_eq(kosvmm_channel_peer_cred(ev.peer, &cred), rcOk);
            int known = 0;
            for (int i = 0; i < PEERS; i++)
                known |= cred.pid == pids[i];
            ck_assert(known);
            ck_assert_int_eq(fcntl(kosvmm_channel_fd(ev.peer), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
            connected++;
            /* server-owned peers: no blocking receive, no close */
            ck_assert_uint_eq(kosvmm_channel_recv(ev.peer, RTL_NULL, RTL_NULL, 0, RTL_NULL), rcInvalidOperation);
            ck_assert_uint_eq(kosvmm_channel_close(ev.peer), rcInvalidOperation);
            break;
        }
        case KOSVMM_CHANNEL_EVENT_MESSAGE: {
            int msg[2];
            ck_assert_uint_eq(ev.size, sizeof msg);
            ck_assert_uint_eq(ev.handle, INVALID_HANDLE);
            memcpy(msg, ev.payload, sizeof msg);
            ck_assert(msg[0] >= 0 && msg[0] < PEERS);
            ck_assert_int_eq(msg[1], next[msg[0]]); /* in order per peer */
            next[msg[0]]++;
            break;
        }
        case KOSVMM_CHANNEL_EVENT_REJECTED:
            ck_assert_uint_eq(ev.rc, rcSecurityDisallow);
            rejected++;
            ck_assert_uint_eq(kosvmm_channel_send(ev.peer, "done", 4), rcOk); /* replies go straight out */
            break;
        case KOSVMM_CHANNEL_EVENT_CLOSED:
            closed++;
            break;
        default:
            ck_abort_msg("unknown event %u", ev.type);
        }
    }
    ck_assert_int_eq(connected, PEERS);
    ck_assert_int_eq(rejected, PEERS);
    for (int i = 0; i < PEERS; i++) {
        ck_assert_int_eq(next[i], PER_PEER);
        int status;
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "peer %d status %d", i, status);
    }
    /* nothing more: a timeout leaves the event untouched */
    ev.type = 99;
    ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 50, &ev), rcBusy);
    ck_assert_uint_eq(ev.type, 99);
    ck_assert_uint_eq(kosvmm_channel_accept(srv, RTL_NULL), rcInvalidArgument);
    kosvmm_channel *c;
    ck_assert_uint_eq(kosvmm_channel_accept(srv, &c), rcInvalidOperation); /* the ring accepts now */
    ck_assert_uint_eq(kosvmm_channel_server_wait(RTL_NULL, 0, &ev), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 0, RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
    ck_assert_int_eq(tu_fd_count(), base - 1); /* the listening socket went too */
}
END_TEST

START_TEST(server_disconnect_and_close_with_unread_fds)
{
    const char *name = unique_name("drain");
    kosvmm_channel_server *srv;
    int base = tu_fd_count();
    ck_assert_uint_eq(kosvmm_channel_listen(name, &srv), rcOk);
    if (tu_server_wait_unimplemented(srv)) { /* io_uring blocked: the documented answer is all there is */
        ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
        return;
    }
    kosvmm_channel *c1, *c2;
    static kosvmm_channel_event ev;
    kosvmm_channel *peers[2];
    /* one at a time, so peers[i] is the server's end of ci */
    ck_assert_uint_eq(kosvmm_channel_connect(name, &c1), rcOk);
    ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 5000, &ev), rcOk);
    ck_assert_uint_eq(ev.type, KOSVMM_CHANNEL_EVENT_CONNECTED);
    peers[0] = ev.peer;
    ck_assert_uint_eq(kosvmm_channel_connect(name, &c2), rcOk);
    ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 5000, &ev), rcOk);
    ck_assert_uint_eq(ev.type, KOSVMM_CHANNEL_EVENT_CONNECTED);
    peers[1] = ev.peer;

    ck_assert_uint_eq(kosvmm_channel_server_disconnect(srv, c1), rcInvalidArgument); /* not the server's */
    ck_assert_uint_eq(kosvmm_channel_server_disconnect(srv, RTL_NULL), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_server_disconnect(srv, peers[0]), rcOk);
    ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 5000, &ev), rcOk);
    ck_assert_uint_eq(ev.type, KOSVMM_CHANNEL_EVENT_CLOSED);
    ck_assert_ptr_eq(ev.peer, peers[0]);
    char x;
    ck_assert_uint_eq(kosvmm_channel_recv(c1, RTL_NULL, &x, 1, RTL_NULL), rcResourceNotFound);

    /* descriptors that reached the ring but were never reported are closed by server_close */
    int fds[3];
    open_dummies(fds, 3);
    struct kvmm_wire_header h = header(KVMM_WIRE_KIND_HANDLE, 3, 0);
    tu_raw_send(kosvmm_channel_fd(c2), &h, sizeof h, fds, 3); /* completes on the ring */
    tu_raw_send(kosvmm_channel_fd(c2), &h, sizeof h, fds, 3); /* waits in the socket's queue */
    close_all(fds, 3);
    usleep(100 * 1000); /* let the pending recvmsg complete on the ring, installing the descriptors */
    ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
    kosvmm_channel_close(c1);
    kosvmm_channel_close(c2);
    ck_assert_int_eq(tu_fd_count(), base);
}
END_TEST

START_TEST(server_rejects_forged_on_ring)
{
    /* the ring's recvmsg must report MSG_CTRUNC / MSG_TRUNC just like a blocking one */
    const char *name = unique_name("ringforge");
    kosvmm_channel_server *srv;
    ck_assert_uint_eq(kosvmm_channel_listen(name, &srv), rcOk);
    if (tu_server_wait_unimplemented(srv)) { /* io_uring blocked: the documented answer is all there is */
        ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
        return;
    }
    kosvmm_channel *c;
    ck_assert_uint_eq(kosvmm_channel_connect(name, &c), rcOk);
    static kosvmm_channel_event ev;
    ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 5000, &ev), rcOk);
    ck_assert_uint_eq(ev.type, KOSVMM_CHANNEL_EVENT_CONNECTED);
    int base = tu_fd_count();

    int fds[20];
    open_dummies(fds, 20);
    struct kvmm_wire_header h = header(KVMM_WIRE_KIND_HANDLE, 20, 0);
    tu_raw_send(kosvmm_channel_fd(c), &h, sizeof h, fds, 20);                 /* MSG_CTRUNC */
    static unsigned char big[sizeof(struct kvmm_wire_header) + MAXP + 1];
    h = header(KVMM_WIRE_KIND_HANDLE, 1, MAXP + 1);
    memcpy(big, &h, sizeof h);
    tu_raw_send(kosvmm_channel_fd(c), big, sizeof big, fds, 1);               /* MSG_TRUNC */
    h = header(KVMM_WIRE_KIND_DATA, 0, 0);
    tu_raw_send(kosvmm_channel_fd(c), &h, sizeof h, fds, 2);                  /* fds not announced */
    close_all(fds, 20);
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 5000, &ev), rcOk);
        ck_assert_uint_eq(ev.type, KOSVMM_CHANNEL_EVENT_REJECTED);
        ck_assert_uint_eq(ev.rc, rcSecurityDisallow);
        ck_assert_uint_eq(ev.handle, INVALID_HANDLE);
    }
    ck_assert_int_eq(tu_fd_count(), base);
    /* still connected: a good message follows */
    ck_assert_uint_eq(kosvmm_channel_send(c, "ok", 2), rcOk);
    ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 5000, &ev), rcOk);
    ck_assert_uint_eq(ev.type, KOSVMM_CHANNEL_EVENT_MESSAGE);
    ck_assert_uint_eq(ev.size, 2);
    kosvmm_channel_close(c);
    ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 5000, &ev), rcOk);
    ck_assert_uint_eq(ev.type, KOSVMM_CHANNEL_EVENT_CLOSED);
    kosvmm_channel_server_close(srv);
}
END_TEST

/* ---- handles: transfer, narrowing, no leaks ---- */

#define R VMM_FLAG_READ
#define T KOSVMM_RIGHT_TRANSFER

static Handle new_buffer(size_t size, unsigned char fill, void **va)
{
    Handle h;
    ck_assert_uint_eq(KnPmmMdlCreate(size, RW, &h), rcOk);
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, size, RTL_NULL, RW, va), rcOk);
    memset(*va, fill, size);
    /* The first export gives the handle its revocation word, on a page this process keeps open for
     * good: do it now, so descriptor counts taken after this see only what transfers add. */
    struct kvmm_mdl_export e;
    ck_assert_int_eq(kvmm_mdl_export(h, KVMM_RIGHT_READ, &e), 0);
    kvmm_mdl_export_close(&e);
    return h;
}

/* Sends h over the pair with mask and returns what arrives. */
static Handle pass(kosvmm_channel *a, kosvmm_channel *b, Handle h, uint32_t mask)
{
    Handle got = INVALID_HANDLE;
    char buf[8];
    rtl_size_t n;
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, mask, "seg", 3), rcOk);
    ck_assert_uint_eq(kosvmm_channel_recv(b, &got, buf, sizeof buf, &n), rcOk);
    ck_assert_uint_ne(got, INVALID_HANDLE);
    ck_assert_uint_ne(got, h); /* a new handle of the receiving table */
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(memcmp(buf, "seg", 3), 0);
    return got;
}

START_TEST(handle_narrowing)
{
    size_t size = 4 * tu_page();
    void *va, *ro;
    Handle h = new_buffer(size, 0x5A, &va);
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);

    /* sent read-write, mask READ: the receiver may read, not write */
    Handle r1 = pass(a, b, h, R | T);
    void *x;
    ck_assert_uint_eq(KnPmmMdlMap(r1, 0, size, RTL_NULL, RW, &x), rcNoCapability);
    ck_assert_uint_eq(KnPmmMdlMap(r1, 0, size, RTL_NULL, R, &ro), rcOk);
    ck_assert_uint_eq(((unsigned char *)ro)[size - 1], 0x5A);
    ((unsigned char *)va)[10] = 0xC3; /* the same memory: writes through the original show */
    ck_assert_uint_eq(((unsigned char *)ro)[10], 0xC3);
    /* the kernel agrees: the mapping cannot be made writable behind kosvmm's back */
    ck_assert_int_ne(mprotect(ro, size, PROT_READ | PROT_WRITE), 0);
    ck_assert_int_eq(errno, EACCES);

    /* a mask cannot widen: passing the read-only handle on with every right stays read-only */
    Handle r2 = pass(b, a, r1, RW | VMM_FLAG_EXECUTE | T);
    ck_assert_uint_eq(KnPmmMdlMap(r2, 0, size, RTL_NULL, RW, &x), rcNoCapability);

    /* without TRANSFER in the mask, the receiver cannot pass it on */
    Handle r3 = pass(a, b, h, RW);
    ck_assert_uint_eq(KnPmmMdlMap(r3, 0, size, RTL_NULL, RW, &x), rcOk); /* RW kept */
    ck_assert_uint_eq(kosvmm_channel_send_handle(b, r3, RW | T, RTL_NULL, 0), rcNoCapability);

    /* bad arguments and bad handles: nothing is sent */
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, 0x8000, RTL_NULL, 0), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 1), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, "x", MAXP + 1), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_send_handle(RTL_NULL, h, R, RTL_NULL, 0), rcInvalidArgument);
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, INVALID_HANDLE, R, RTL_NULL, 0), rcInvalidArgument);
    ck_assert_uint_eq(KnHandleClose(r2), rcOk);
    ck_assert_uint_eq(kosvmm_channel_send_handle(b, r2, R, RTL_NULL, 0), rcInvalidArgument); /* closed */
    ck_assert_uint_eq(KnHandleRevoke(r3), rcOk); /* and closed */
    ck_assert_uint_eq(kosvmm_channel_send_handle(b, r3, R, RTL_NULL, 0), rcInvalidArgument);
    Handle r4 = pass(a, b, h, R | T);
    ck_assert_uint_eq(KnHandleRevokeEx(h, rtl_false), rcOk); /* r4 revoked, h kept */
    ck_assert_uint_eq(kosvmm_channel_send_handle(b, r4, R, RTL_NULL, 0), rcHandleRevoked);
    Handle r5 = pass(a, b, h, R); /* a copy made afterwards is live */
    ck_assert_uint_eq(KnPmmMdlMap(r5, 0, size, RTL_NULL, R, &x), rcOk);
    ck_assert_uint_eq(kosvmm_channel_send(a, "end", 3), rcOk);
    Handle none;
    ck_assert_uint_eq(kosvmm_channel_recv(b, &none, RTL_NULL, 8, RTL_NULL), rcInvalidArgument); /* NULL payload */
    ck_assert_uint_eq(kosvmm_channel_recv(b, &none, x = (char[8]){0}, 8, RTL_NULL), rcOk);
    ck_assert_uint_eq(none, INVALID_HANDLE);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
}
END_TEST

START_TEST(receiver_in_another_process_cannot_write)
{
    size_t size = 2 * tu_page();
    void *va;
    Handle h = new_buffer(size, 0x11, &va);
    kosvmm_channel *a, *b;
    pid_t child = tu_fork_peer(&a, &b);
    if (child == 0) {
        Handle got;
        void *ro, *x;
        if (kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL) != rcOk)
            _exit(10);
        if (KnPmmMdlMap(got, 0, size, RTL_NULL, RW, &x) != rcNoCapability)
            _exit(11);
        if (KnPmmMdlMap(got, 0, size, RTL_NULL, R, &ro) != rcOk || ((unsigned char *)ro)[0] != 0x11)
            _exit(12);
        if (mprotect(ro, size, PROT_READ | PROT_WRITE) == 0 || errno != EACCES)
            _exit(13);
        /* the parent's write after the transfer is visible here: one buffer, two processes */
        kosvmm_channel_send(b, "r", 1);
        char c;
        kosvmm_channel_recv(b, RTL_NULL, &c, 1, RTL_NULL);
        _exit(((unsigned char *)ro)[1] == 0x22 ? 0 : 14);
    }
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
    char c;
    ck_assert_uint_eq(kosvmm_channel_recv(a, RTL_NULL, &c, 1, RTL_NULL), rcOk);
    ((unsigned char *)va)[1] = 0x22;
    ck_assert_uint_eq(kosvmm_channel_send(a, "w", 1), rcOk);
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    kosvmm_channel_close(a);
}
END_TEST

START_TEST(forged_description_claims_write)
{
    /* a sender that describes a read-only descriptor as writable: the import refuses it */
    size_t size = tu_page();
    void *va;
    Handle h = new_buffer(size, 0, &va);
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    int base = tu_fd_count();
    struct kvmm_mdl_export e;
    ck_assert_int_eq(kvmm_mdl_export(h, KVMM_RIGHT_READ, &e), 0);
    e.rights |= KVMM_RIGHT_WRITE;
    ck_assert_int_eq(kvmm_wire_send(kosvmm_channel_fd(a), NULL, &e, RTL_NULL, 0), 0);
    kvmm_mdl_export_close(&e);
    Handle got = 5;
    ck_assert_uint_eq(kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL), rcNoCapability);
    ck_assert_uint_eq(got, 5);
    ck_assert_int_eq(tu_fd_count(), base);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
}
END_TEST

START_TEST(receiver_out_of_descriptors)
{
    /* a genuine handle message (memfd + revocation page) to a receiver that can install none, or
     * only the first, of its descriptors: a quota failure, not a forgery, and nothing leaks */
    size_t size = tu_page();
    void *va;
    Handle h = new_buffer(size, 3, &va);
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    for (int room = 0; room < 2; room++) {
        ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
        int base = tu_fd_count();
        int low = dup(0); /* the lowest free number: every one below it is taken */
        ck_assert_int_ge(low, 0);
        close(low);
        struct rlimit old, lim;
        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
        lim = old;
        lim.rlim_cur = (rlim_t)(low + room); /* the soft limit only, so it can be restored */
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
        Handle got = 9;
        Retcode rc = kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL);
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
        ck_assert_uint_eq(rc, rcQuotaExceeded);
        ck_assert_uint_eq(got, 9);
        ck_assert_int_eq(tu_fd_count(), base);
    }
    /* with room again, the next one arrives */
    ck_assert_uint_eq(kosvmm_channel_send_handle(a, h, R, RTL_NULL, 0), rcOk);
    Handle got;
    ck_assert_uint_eq(kosvmm_channel_recv(b, &got, RTL_NULL, 0, RTL_NULL), rcOk);
    ck_assert_uint_eq(KnHandleClose(got), rcOk);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
}
END_TEST

START_TEST(thousand_transfers_no_leak)
{
    size_t size = tu_page();
    void *va;
    Handle h = new_buffer(size, 7, &va);
    kosvmm_channel *a, *b;
    ck_assert_uint_eq(kosvmm_channel_pair(&a, &b), rcOk);
    int base = tu_fd_count();
    for (int i = 0; i < 1000; i++) {
        Handle got = pass(a, b, h, i % 2 ? R : RW | T);
        if (i % 100 == 0) { /* now and then map it too: mappings must not pin descriptors either */
            void *m;
            ck_assert_uint_eq(KnPmmMdlMap(got, 0, size, RTL_NULL, R, &m), rcOk);
            ck_assert_uint_eq(((unsigned char *)m)[0], 7);
            ck_assert_uint_eq(KnVmUnmap(m, size), rcOk);
        }
        ck_assert_uint_eq(KnHandleClose(got), rcOk);
        ck_assert_uint_eq(kosvmm_channel_send(a, &i, sizeof i), rcOk); /* payload-only in between */
        int j;
        Handle none;
        ck_assert_uint_eq(kosvmm_channel_recv(b, &none, &j, sizeof j, RTL_NULL), rcOk);
        ck_assert_uint_eq(none, INVALID_HANDLE);
        ck_assert_int_eq(j, i);
    }
    ck_assert_int_eq(tu_fd_count(), base);
    kosvmm_channel_close(a);
    kosvmm_channel_close(b);
}
END_TEST

START_TEST(peer_killed_mid_transfer)
{
    size_t size = tu_page();
    void *va;
    Handle h = new_buffer(size, 1, &va);
    int base = tu_fd_count();
    kosvmm_channel *a, *b;
    pid_t child = tu_fork_peer(&a, &b);
    if (child == 0) {
        for (int i = 0; i < 5; i++) {
            Handle got;
            char buf[8];
            if (kosvmm_channel_recv(b, &got, buf, sizeof buf, RTL_NULL) != rcOk)
                _exit(1);
        }
        raise(SIGKILL); /* dies with handles open and messages still queued */
    }
    /* the sender keeps sending until the kernel says the peer is gone: no SIGPIPE, no crash */
    Retcode rc = rcOk;
    int sent = 0;
    while (rc == rcOk && sent < 100000) {
        rc = kosvmm_channel_send_handle(a, h, R, "data", 4);
        sent++;
    }
    ck_assert_uint_eq(rc, rcResourceNotFound);
    ck_assert_int_ge(sent, 5);
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %#x", status);
    ck_assert_uint_eq(kosvmm_channel_send(a, "x", 1), rcResourceNotFound);
    char c;
    ck_assert_uint_eq(kosvmm_channel_recv(a, RTL_NULL, &c, 1, RTL_NULL), rcResourceNotFound);
    ck_assert_uint_eq(kosvmm_channel_close(a), rcOk);
    ck_assert_int_eq(tu_fd_count(), base);
    /* and the handle is as good as before */
    void *m;
    ck_assert_uint_eq(KnPmmMdlMap(h, 0, size, RTL_NULL, RW, &m), rcOk);
    ck_assert_uint_eq(((unsigned char *)m)[0], 1);
}
END_TEST

static void handle_peer_child(const char *name, int index)
{
    kosvmm_channel *c;
    Handle h;
    void *va;
    if (kosvmm_channel_connect(name, &c) != rcOk || KnPmmMdlCreate(tu_page(), RW, &h) != rcOk ||
        KnPmmMdlMap(h, 0, tu_page(), RTL_NULL, RW, &va) != rcOk)
        _exit(10);
    memset(va, 0x40 + index, tu_page());
    if (kosvmm_channel_send_handle(c, h, R, &index, sizeof index) != rcOk)
        _exit(11);
    char ok;
    if (kosvmm_channel_recv(c, RTL_NULL, &ok, 1, RTL_NULL) != rcOk) /* stay alive until the server mapped it */
        _exit(12);
    _exit(0);
}

START_TEST(server_receives_handles)
{
    const char *name = unique_name("handles");
    kosvmm_channel_server *srv;
    ck_assert_uint_eq(kosvmm_channel_listen(name, &srv), rcOk);
    if (tu_server_wait_unimplemented(srv)) { /* io_uring blocked: the documented answer is all there is */
        ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
        return;
    }
    int base = tu_fd_count();
    pid_t pids[PEERS];
    for (int i = 0; i < PEERS; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0)
            handle_peer_child(name, i);
    }
    static kosvmm_channel_event ev;
    int got = 0, closed = 0;
    while (closed < PEERS) {
        ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 20000, &ev), rcOk);
        if (ev.type == KOSVMM_CHANNEL_EVENT_MESSAGE) {
            int index;
            ck_assert_uint_eq(ev.size, sizeof index);
            memcpy(&index, ev.payload, sizeof index);
            ck_assert_uint_ne(ev.handle, INVALID_HANDLE);
            void *m, *x;
            ck_assert_uint_eq(KnPmmMdlMap(ev.handle, 0, tu_page(), RTL_NULL, RW, &x), rcNoCapability);
            ck_assert_uint_eq(KnPmmMdlMap(ev.handle, 0, tu_page(), RTL_NULL, R, &m), rcOk);
            ck_assert_uint_eq(((unsigned char *)m)[100], 0x40 + index);
            ck_assert_uint_eq(KnVmUnmap(m, tu_page()), rcOk);
            ck_assert_uint_eq(KnHandleClose(ev.handle), rcOk);
            ck_assert_uint_eq(kosvmm_channel_send(ev.peer, "k", 1), rcOk);
            got++;
        } else if (ev.type == KOSVMM_CHANNEL_EVENT_CLOSED) {
            closed++;
        } else {
            ck_assert_uint_eq(ev.type, KOSVMM_CHANNEL_EVENT_CONNECTED);
        }
    }
    ck_assert_int_eq(got, PEERS);
    for (int i = 0; i < PEERS; i++) {
        int status;
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "peer %d status %#x", i, status);
    }
    ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
    ck_assert_int_eq(tu_fd_count(), base - 1);
}
END_TEST

/* The server's ring stops working (io_uring_enter refused from now on, as a seccomp filter installed
 * later or a dying ring answers) while more requests are pending than its submission queue holds:
 * closing the server must neither spin on the failing submit nor leak a descriptor. */
START_TEST(server_close_when_submit_fails)
{
    const char *name = unique_name("submitfail");
    kosvmm_channel_server *srv;
    int base = tu_fd_count();
    ck_assert_uint_eq(kosvmm_channel_listen(name, &srv), rcOk);
    if (tu_server_wait_unimplemented(srv)) { /* io_uring blocked: the documented answer is all there is */
        ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
        return;
    }
    enum { N = 80 }; /* more armed receives than the ring's 64 submission entries */
    static kosvmm_channel *c[N];
    static kosvmm_channel_event ev;
    for (int i = 0; i < N; i++) {
        ck_assert_uint_eq(kosvmm_channel_connect(name, &c[i]), rcOk);
        ck_assert_uint_eq(kosvmm_channel_server_wait(srv, 5000, &ev), rcOk);
        ck_assert_uint_eq(ev.type, KOSVMM_CHANNEL_EVENT_CONNECTED);
    }
    ck_assert_int_eq(tu_block_io_uring(EPERM), 0);
    /* The ring cannot take requests any more: a clear error, not a spin. */
    ck_assert_uint_ne(kosvmm_channel_server_wait(srv, 100, &ev), rcOk);
    ck_assert_uint_eq(kosvmm_channel_server_close(srv), rcOk);
    for (int i = 0; i < N; i++)
        ck_assert_uint_eq(kosvmm_channel_close(c[i]), rcOk);
    ck_assert_int_eq(tu_fd_count(), base);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("channel");

    TCase *tc = tcase_create("basics");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, pair_payload_sizes);
    tcase_add_test(tc, pair_is_cloexec_seqpacket);
    tcase_add_test(tc, from_fd_checks_the_socket);
    tcase_add_test(tc, named_connect_accept);
    tcase_add_test(tc, bad_names);
    tcase_add_test(tc, peer_credentials);
    suite_add_tcase(s, tc);

    tc = tcase_create("forged");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, forged_too_many_fds_ctrunc);
    tcase_add_test(tc, forged_one_fd_too_many);
    tcase_add_test(tc, forged_fds_not_as_announced);
    tcase_add_test(tc, forged_bad_headers);
    tcase_add_test(tc, forged_oversized_datagram);
    tcase_add_test(tc, handle_message_refused_without_handle_out);
    tcase_add_test(tc, wire_round_trip_plain_fds);
    suite_add_tcase(s, tc);

    tc = tcase_create("handles");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, handle_narrowing);
    tcase_add_test(tc, receiver_in_another_process_cannot_write);
    tcase_add_test(tc, forged_description_claims_write);
    tcase_add_test(tc, receiver_out_of_descriptors);
    tcase_add_test(tc, thousand_transfers_no_leak);
    tcase_add_test(tc, peer_killed_mid_transfer);
    suite_add_tcase(s, tc);

    tc = tcase_create("server");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, server_many_peers_uring);
    tcase_add_test(tc, server_rejects_forged_on_ring);
    tcase_add_test(tc, server_disconnect_and_close_with_unread_fds);
    tcase_add_test(tc, server_receives_handles);
    suite_add_tcase(s, tc);

    tc = tcase_create("server_failing_ring");
    tcase_set_timeout(tc, 20); /* a spinning close ends here */
    tcase_add_test(tc, server_close_when_submit_fails);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tu_run(suite());
}
