/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/channel_wire.c — one channel message as one SEQPACKET datagram: send, receive, validate, never leak an fd. */
#include "channel_wire.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

static void desc_clear(struct kvmm_mdl_export *d)
{
    memset(d, 0, sizeof *d);
    d->buffer_fd = -1;
    for (int i = 0; i < KVMM_MDL_MAX_REVOKE; i++)
        d->revoke_fd[i] = -1;
}

static int send_errno(int err)
{
    switch (err) {
    case EPIPE:
    case ECONNRESET:
    case ENOTCONN:
    case ECONNREFUSED:
        return -ENOENT;
    case ETOOMANYREFS: /* descriptors in flight beyond RLIMIT_NOFILE */
        return -EDQUOT;
    case ENOMEM:
    case ENOBUFS:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

int kvmm_wire_send(int sock, const struct kvmm_mdl_export *desc, const void *payload, size_t size)
{
    if (size > KVMM_WIRE_MAX_PAYLOAD || (size && !payload))
        return -EINVAL;
    if (desc && desc->revoke_count > KVMM_MDL_MAX_REVOKE)
        return -EINVAL;

    struct kvmm_wire_header h = {
        .magic = KVMM_WIRE_MAGIC,
        .version = KVMM_WIRE_VERSION,
        .kind = desc ? KVMM_WIRE_KIND_HANDLE : KVMM_WIRE_KIND_DATA,
        .payload_size = (uint32_t)size,
    };
    struct {
        _Alignas(struct cmsghdr) char buf[CMSG_SPACE(sizeof(int) * KVMM_WIRE_MAX_FDS)];
    } control;
    struct iovec iov[2] = {{&h, sizeof h}, {(void *)payload, size}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = size ? 2 : 1};

    if (desc) {
        int fds[KVMM_WIRE_MAX_FDS];
        h.nfds = 1 + desc->revoke_count;
        h.buffer_size = desc->buffer_size;
        h.offset = desc->offset;
        h.length = desc->length;
        h.rights = desc->rights;
        h.revoke_count = desc->revoke_count;
        fds[0] = desc->buffer_fd;
        for (uint32_t i = 0; i < desc->revoke_count; i++) {
            h.revoke_slot[i] = desc->revoke_slot[i];
            fds[1 + i] = desc->revoke_fd[i];
        }
        memset(&control, 0, sizeof control);
        m.msg_control = control.buf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * h.nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * h.nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * h.nfds);
    }

    ssize_t n;
    do
        n = sendmsg(sock, &m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return send_errno(errno);
    /* SEQPACKET sends a datagram whole or not at all; anything else is not a channel socket. */
    return (size_t)n == sizeof h + size ? 0 : -EIO;
}

void kvmm_wire_rxbuf_prepare(struct kvmm_wire_rxbuf *rx)
{
    rx->iov.iov_base = rx->data.bytes;
    rx->iov.iov_len = sizeof rx->data.bytes;
    memset(&rx->msg, 0, sizeof rx->msg);
    rx->msg.msg_iov = &rx->iov;
    rx->msg.msg_iovlen = 1;
    rx->msg.msg_control = rx->control.buf;
    rx->msg.msg_controllen = sizeof rx->control.buf;
}

/*
 * Takes every descriptor out of the control part: up to KVMM_WIRE_MAX_FDS into fds, any beyond
 * closed at once. Returns false if anything but SCM_RIGHTS was there or descriptors overflowed.
 * With MSG_CTRUNC the kernel has already installed the descriptors that fitted and reports them in
 * the (shortened) last cmsg, so they are found here and closed by the caller like the others.
 */
static bool collect_fds(struct msghdr *m, int *fds, unsigned *count)
{
    bool ok = true;
    *count = 0;
    if (!m->msg_control || m->msg_controllen < sizeof(struct cmsghdr))
        return true;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            ok = false;  /* nothing this protocol asked for (no SO_PASSCRED): refuse */
            continue;
        }
        if (c->cmsg_len < CMSG_LEN(0))
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof fd, sizeof fd);
            if (*count < KVMM_WIRE_MAX_FDS) {
                fds[(*count)++] = fd;
            } else {
                close(fd);
                ok = false;
            }
        }
    }
    return ok;
}

static void close_fds(const int *fds, unsigned count)
{
    for (unsigned i = 0; i < count; i++)
        close(fds[i]);
}

static bool header_valid(const struct kvmm_wire_header *h, size_t n, unsigned nfds)
{
    if (n < sizeof *h || h->magic != KVMM_WIRE_MAGIC || h->version != KVMM_WIRE_VERSION)
        return false;
    if (h->payload_size > KVMM_WIRE_MAX_PAYLOAD || h->payload_size != n - sizeof *h)
        return false;
    if (h->nfds != nfds)
        return false;
    switch (h->kind) {
    case KVMM_WIRE_KIND_DATA:
        return nfds == 0;
    case KVMM_WIRE_KIND_HANDLE:
        return h->revoke_count <= KVMM_MDL_MAX_REVOKE && nfds == 1 + h->revoke_count;
    default:
        return false;
    }
}

int kvmm_wire_parse(struct kvmm_wire_rxbuf *rx, ssize_t n, struct kvmm_wire_msg *out, size_t capacity)
{
    int fds[KVMM_WIRE_MAX_FDS];
    unsigned nfds;
    bool fds_ok = collect_fds(&rx->msg, fds, &nfds);

    if (n <= 0) {
        close_fds(fds, nfds);
        return n == 0 && nfds == 0 ? -ENOENT : -EPERM;
    }
    const struct kvmm_wire_header *h = &rx->data.header;
    /* A well-formed message whose descriptors fitted the buffer yet arrived cut short: the kernel
     * could not install them all here (RLIMIT_NOFILE), which is this process's quota, not forgery. */
    if (fds_ok && (rx->msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == MSG_CTRUNC && (size_t)n >= sizeof *h &&
        h->magic == KVMM_WIRE_MAGIC && h->version == KVMM_WIRE_VERSION && h->nfds <= KVMM_WIRE_MAX_FDS &&
        nfds < h->nfds) {
        close_fds(fds, nfds);
        return -EDQUOT;
    }
    if (!fds_ok || (rx->msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || !header_valid(h, (size_t)n, nfds)) {
        close_fds(fds, nfds);
        return -EPERM;
    }
    if (h->payload_size > capacity) {
        close_fds(fds, nfds);
        return -EINVAL;
    }

    desc_clear(&out->desc);
    out->kind = h->kind;
    out->payload = rx->data.bytes + sizeof *h;
    out->payload_size = h->payload_size;
    if (h->kind == KVMM_WIRE_KIND_HANDLE) {
        out->desc.buffer_fd = fds[0];
        out->desc.buffer_size = h->buffer_size;
        out->desc.offset = h->offset;
        out->desc.length = h->length;
        out->desc.rights = h->rights;
        out->desc.revoke_count = h->revoke_count;
        for (uint32_t i = 0; i < h->revoke_count; i++) {
            out->desc.revoke_fd[i] = fds[1 + i];
            out->desc.revoke_slot[i] = h->revoke_slot[i];
        }
    }
    return 0;
}

int kvmm_wire_recv(int sock, struct kvmm_wire_rxbuf *rx, struct kvmm_wire_msg *out, size_t capacity)
{
    ssize_t n;
    kvmm_wire_rxbuf_prepare(rx);
    do
        n = recvmsg(sock, &rx->msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        /* A failed recvmsg installs no descriptors. */
        int err = errno;
        return err == ECONNRESET || err == ENOTCONN ? -ENOENT
               : err == ENOMEM || err == ENOBUFS   ? -ENOMEM
               : err == EMFILE || err == ENFILE    ? -EDQUOT
                                                   : -EIO;
    }
    return kvmm_wire_parse(rx, n, out, capacity);
}

void kvmm_wire_msg_close(struct kvmm_wire_msg *m)
{
    if (m->kind != KVMM_WIRE_KIND_HANDLE)
        return;
    if (m->desc.buffer_fd >= 0)
        close(m->desc.buffer_fd);
    for (uint32_t i = 0; i < m->desc.revoke_count && i < KVMM_MDL_MAX_REVOKE; i++)
        if (m->desc.revoke_fd[i] >= 0)
            close(m->desc.revoke_fd[i]);
    desc_clear(&m->desc);
}
