/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/channel_server.c — a channel server: blocking accept, or one io_uring accepting and receiving from every peer. */
#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "channel_impl.h"
#include "errors.h"
#include "visibility.h"

#define RING_ENTRIES 64
#define LISTEN_BACKLOG 128
/* user_data of the ring's requests: a peer pointer for a recvmsg (never this small), or a tag. */
#define TAG_ACCEPT ((uint64_t)1)
#define TAG_CANCEL ((uint64_t)2)

struct server_peer {
    kosvmm_channel ch;             /* first member: the public kosvmm_channel * is &peer->ch */
    struct kvmm_wire_rxbuf rx;     /* a pending recvmsg points into it: the peer may not move */
    struct server_peer *next;
    bool armed;                    /* a recvmsg for it is on the ring */
    bool rearm;                    /* none could be queued: armed at the next call */
};

struct kosvmm_channel_server {
    int fd;
    bool ring_started;
    bool accept_armed;
    unsigned pending;              /* accept/recvmsg requests on the ring, not yet completed */
    struct io_uring ring;
    struct server_peer *peers;     /* live peers */
    struct server_peer *closed;    /* CLOSED already reported: freed at the next call */
    unsigned unarmed;              /* live peers without a recvmsg on the ring (armed again at the next call) */
};

/* Out of descriptors (-EMFILE/-ENFILE: a quota to kvmm_retcode) or else out of memory. */
static int fd_errno(int err)
{
    return err == EMFILE || err == ENFILE ? -err : -ENOMEM;
}

static int listen_on(const char *name, kosvmm_channel_server **server)
{
    struct sockaddr_un sa;
    socklen_t len;
    if (!server || kvmm_channel_address(name, &sa, &len))
        return -EINVAL;
    kosvmm_channel_server *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        int err = errno;
        free(s);
        return fd_errno(err);
    }
    if (bind(s->fd, (struct sockaddr *)&sa, len) != 0 || listen(s->fd, LISTEN_BACKLOG) != 0) {
        int err = errno;
        close(s->fd);
        free(s);
        return err == EADDRINUSE ? -EEXIST : -EIO;
    }
    *server = s;
    return 0;
}

KVMM_PUBLIC Retcode kosvmm_channel_listen(const char *name, kosvmm_channel_server **server)
{
    return kvmm_retcode(listen_on(name, server));
}

static int accept_peer(kosvmm_channel_server *server, kosvmm_channel **peer)
{
    if (!server || !peer)
        return -EINVAL;
    if (server->ring_started) /* the ring's own accept would race with this one */
        return -EOPNOTSUPP;
    int fd;
    do
        fd = accept4(server->fd, NULL, NULL, SOCK_CLOEXEC);
    while (fd < 0 && (errno == EINTR || errno == ECONNABORTED));
    if (fd < 0)
        return fd_errno(errno);
    kosvmm_channel *ch = malloc(sizeof *ch);
    if (!ch) {
        close(fd);
        return -ENOMEM;
    }
    kvmm_channel_init(ch, fd, NULL);
    *peer = ch;
    return 0;
}

KVMM_PUBLIC Retcode kosvmm_channel_accept(kosvmm_channel_server *server, kosvmm_channel **peer)
{
    return kvmm_retcode(accept_peer(server, peer));
}

/* A free submission slot: a full queue is flushed to the kernel once, which frees it unless the
 * submit fails (io_uring_enter refused, the ring dying) or the kernel takes nothing (completion
 * queue backpressure). Then NULL: retrying would spin, since nothing here reaps completions. */
static struct io_uring_sqe *get_sqe(kosvmm_channel_server *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    if (!sqe && io_uring_submit(&s->ring) > 0)
        sqe = io_uring_get_sqe(&s->ring);
    return sqe;
}

static int arm_accept(kosvmm_channel_server *s)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe)
        return -EIO;
    io_uring_prep_accept(sqe, s->fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, TAG_ACCEPT);
    s->accept_armed = true;
    s->pending++;
    return 0;
}

/* A peer that cannot be armed now is counted and armed at the next call. */
static int arm_recv(kosvmm_channel_server *s, struct server_peer *p)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe) {
        if (!p->rearm)
            s->unarmed++;
        p->rearm = true;
        return -EIO;
    }
    kvmm_wire_rxbuf_prepare(&p->rx);
    io_uring_prep_recvmsg(sqe, p->ch.fd, &p->rx.msg, MSG_CMSG_CLOEXEC);
    io_uring_sqe_set_data(sqe, p);
    p->armed = true;
    s->pending++;
    return 0;
}

/* Arms what a failed submission left unarmed. */
static int rearm(kosvmm_channel_server *s)
{
    int rc;
    if (!s->accept_armed && (rc = arm_accept(s)))
        return rc;
    for (struct server_peer *p = s->peers; p && s->unarmed; p = p->next) {
        if (!p->rearm)
            continue;
        p->rearm = false;
        s->unarmed--;
        if ((rc = arm_recv(s, p)))
            return rc;
    }
    return 0;
}

static void free_closed(kosvmm_channel_server *s)
{
    while (s->closed) {
        struct server_peer *p = s->closed;
        s->closed = p->next;
        kvmm_channel_fini(&p->ch);
        close(p->ch.fd);
        free(p);
    }
}

static void unlink_peer(kosvmm_channel_server *s, struct server_peer *p)
{
    if (p->rearm) {
        p->rearm = false;
        s->unarmed--;
    }
    for (struct server_peer **pp = &s->peers; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    p->next = s->closed;
    s->closed = p;
}

static bool owns(const kosvmm_channel_server *s, const kosvmm_channel *ch)
{
    for (const struct server_peer *p = s->peers; p; p = p->next)
        if (&p->ch == ch)
            return true;
    return false;
}

/* 1: an event was produced; 0: nothing to report (the request was re-armed); <0: an error to return. */
static int on_accept(kosvmm_channel_server *s, int res, kosvmm_channel_event *ev)
{
    s->accept_armed = false;
    if (res < 0) {
        if (res == -EINTR || res == -ECONNABORTED || res == -EAGAIN)
            return arm_accept(s);
        /* Re-armed at the next call, so a full descriptor table does not spin here. */
        return res == -EMFILE || res == -ENFILE ? res : -ENOMEM;
    }
    arm_accept(s); /* else armed at the next call */
    struct server_peer *p = calloc(1, sizeof *p);
    if (!p) {
        close(res);
        return -ENOMEM;
    }
    kvmm_channel_init(&p->ch, res, s);
    p->next = s->peers;
    s->peers = p;
    arm_recv(s, p);
    memset(ev, 0, offsetof(kosvmm_channel_event, payload));
    ev->type = KOSVMM_CHANNEL_EVENT_CONNECTED;
    ev->peer = &p->ch;
    ev->handle = INVALID_HANDLE;
    return 1;
}

static int on_recv(kosvmm_channel_server *s, struct server_peer *p, int res, kosvmm_channel_event *ev)
{
    p->armed = false;
    int rc;
    struct kvmm_wire_msg m;
    Handle h = INVALID_HANDLE;
    if (res == -EINTR || res == -EAGAIN)
        return arm_recv(s, p);
    /* Only the thread in kosvmm_channel_server_wait receives on a server's peers: no lock. */
    rc = res < 0 ? -ENOENT : kvmm_wire_parse(&p->rx, res, &p->ch.rx, &m, KOSVMM_CHANNEL_MAX_PAYLOAD);
    memset(ev, 0, offsetof(kosvmm_channel_event, payload));
    ev->peer = &p->ch;
    ev->handle = INVALID_HANDLE;
    if (rc == -ENOENT) {
        ev->type = KOSVMM_CHANNEL_EVENT_CLOSED;
        unlink_peer(s, p);
        return 1;
    }
    if (rc == 0)
        rc = kvmm_channel_deliver(&m, &h);
    if (rc == 0) {
        ev->type = KOSVMM_CHANNEL_EVENT_MESSAGE;
        ev->handle = h;
        ev->size = m.payload_size;
        memcpy(ev->payload, m.payload, m.payload_size); /* before the buffer is handed back to the ring */
    } else {
        ev->type = KOSVMM_CHANNEL_EVENT_REJECTED;
        ev->rc = kvmm_retcode(rc);
    }
    arm_recv(s, p);
    return 1;
}

static int start_ring(kosvmm_channel_server *s)
{
    int rc = io_uring_queue_init(RING_ENTRIES, &s->ring, 0);
    if (rc)
        return rc == -ENOMEM ? -ENOMEM : -ENOSYS; /* EPERM under io_uring_disabled, ENOSYS on old kernels */
    s->ring_started = true;
    return 0;
}

static int remaining_ms(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ms = (deadline->tv_sec - now.tv_sec) * 1000LL + (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms < 0 ? 0 : (int)ms;
}

static int server_wait(kosvmm_channel_server *s, int timeout_ms, kosvmm_channel_event *ev)
{
    if (!s || !ev)
        return -EINVAL;
    free_closed(s);
    int rc;
    if (!s->ring_started && (rc = start_ring(s)))
        return rc;
    if ((rc = rearm(s)))
        return rc;

    struct timespec deadline = {0};
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
    }
    for (;;) {
        struct io_uring_cqe *cqe;
        io_uring_submit(&s->ring);
        if (timeout_ms < 0) {
            rc = io_uring_wait_cqe(&s->ring, &cqe);
        } else {
            int ms = remaining_ms(&deadline);
            struct __kernel_timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long long)(ms % 1000) * 1000000};
            rc = io_uring_wait_cqe_timeout(&s->ring, &cqe, &ts);
        }
        if (rc == -ETIME)
            return -EBUSY;
        if (rc == -EINTR || rc == -EAGAIN)
            continue;
        if (rc)
            return -EIO;
        uint64_t tag = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&s->ring, cqe);
        if (tag == TAG_CANCEL)
            continue;
        s->pending--;
        rc = tag == TAG_ACCEPT ? on_accept(s, res, ev) : on_recv(s, (struct server_peer *)(uintptr_t)tag, res, ev);
        if (rc > 0)
            return 0;
        if (rc < 0)
            return rc;
    }
}

KVMM_PUBLIC Retcode kosvmm_channel_server_wait(kosvmm_channel_server *server, int timeout_ms,
                                               kosvmm_channel_event *event)
{
    return kvmm_retcode(server_wait(server, timeout_ms, event));
}

static int disconnect(kosvmm_channel_server *server, kosvmm_channel *peer)
{
    if (!server || !peer || !owns(server, peer))
        return -EINVAL;
    /* The pending recvmsg then completes with 0 bytes, which reports CLOSED like a hang-up. */
    shutdown(peer->fd, SHUT_RDWR);
    return 0;
}

KVMM_PUBLIC Retcode kosvmm_channel_server_disconnect(kosvmm_channel_server *server, kosvmm_channel *peer)
{
    return kvmm_retcode(disconnect(server, peer));
}

static int cancel(kosvmm_channel_server *s, uint64_t target)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe)
        return -EIO;
    io_uring_prep_cancel64(sqe, target, 0);
    io_uring_sqe_set_data64(sqe, TAG_CANCEL);
    return 0;
}

/* Cancels every pending request and reaps them all before the buffers they point into are freed;
 * a recvmsg or accept that completed anyway has installed descriptors, which are closed here.
 * A ring that takes no more requests is closed as it is, which cancels what is left. */
static void drain_ring(kosvmm_channel_server *s)
{
    int rc = s->accept_armed ? cancel(s, TAG_ACCEPT) : 0;
    for (struct server_peer *p = s->peers; p && rc == 0; p = p->next)
        if (p->armed)
            rc = cancel(s, (uint64_t)(uintptr_t)p);
    while (s->pending && rc == 0) {
        struct io_uring_cqe *cqe;
        io_uring_submit(&s->ring);
        int w = io_uring_wait_cqe(&s->ring, &cqe);
        if (w == -EINTR || w == -EAGAIN)
            continue;
        if (w)
            break; /* the ring is unusable; closing it below cancels what is left */
        uint64_t tag = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&s->ring, cqe);
        if (tag == TAG_CANCEL)
            continue;
        s->pending--;
        if (tag == TAG_ACCEPT) {
            if (res >= 0)
                close(res);
        } else if (res >= 0) {
            struct server_peer *p = (struct server_peer *)(uintptr_t)tag;
            struct kvmm_wire_msg m;
            if (kvmm_wire_parse(&p->rx, res, &p->ch.rx, &m, KOSVMM_CHANNEL_MAX_PAYLOAD) == 0)
                kvmm_wire_msg_close(&m);
        }
    }
    io_uring_queue_exit(&s->ring);
}

static int server_close(kosvmm_channel_server *server)
{
    if (!server)
        return -EINVAL;
    if (server->ring_started)
        drain_ring(server);
    while (server->peers)
        unlink_peer(server, server->peers);
    free_closed(server);
    close(server->fd);
    free(server);
    return 0;
}

KVMM_PUBLIC Retcode kosvmm_channel_server_close(kosvmm_channel_server *server)
{
    return kvmm_retcode(server_close(server));
}
