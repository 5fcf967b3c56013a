/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/channel.c — channels: socketpair / abstract-name connect, handle and payload messages, peer credentials. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "channel_impl.h"
#include "errors.h"
#include "policy.h"
#include "visibility.h"

#define KNOWN_RIGHTS (KVMM_RIGHT_READ | KVMM_RIGHT_WRITE | KVMM_RIGHT_EXECUTE | KVMM_RIGHT_TRANSFER)

static int channel_new(int fd, kosvmm_channel **out)
{
    kosvmm_channel *ch = malloc(sizeof *ch);
    if (!ch)
        return -ENOMEM;
    ch->fd = fd;
    ch->server = NULL;
    *out = ch;
    return 0;
}

/* Running out of descriptors is a quota (rcQuotaExceeded), not an unexpected failure. */
static int fd_quota(int rc)
{
    return rc == -EMFILE || rc == -ENFILE ? -EDQUOT : rc;
}

static int socket_errno(int err)
{
    return err == EMFILE || err == ENFILE ? -EDQUOT : err == ENOMEM || err == ENOBUFS ? -ENOMEM : -EIO;
}

KVMM_PUBLIC Retcode kosvmm_channel_pair(kosvmm_channel **a, kosvmm_channel **b)
{
    if (!a || !b)
        return rcInvalidArgument;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return kvmm_retcode(socket_errno(errno));
    kosvmm_channel *ca, *cb;
    if (channel_new(sv[0], &ca) == 0) {
        if (channel_new(sv[1], &cb) == 0) {
            *a = ca;
            *b = cb;
            return rcOk;
        }
        free(ca);
    }
    close(sv[0]);
    close(sv[1]);
    return rcOutOfMemory;
}

int kvmm_channel_address(const char *name, struct sockaddr_un *sa, socklen_t *len)
{
    if (!name)
        return -EINVAL;
    size_t n = strlen(name);
    if (n == 0 || n > sizeof sa->sun_path - 1)
        return -EINVAL;
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path + 1, name, n);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    return 0;
}

static int channel_connect(const char *name, kosvmm_channel **out)
{
    struct sockaddr_un sa;
    socklen_t len;
    int rc = kvmm_channel_address(name, &sa, &len);
    if (rc || !out)
        return -EINVAL;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return socket_errno(errno);
    int r;
    do
        r = connect(fd, (struct sockaddr *)&sa, len);
    while (r != 0 && errno == EINTR);
    if (r != 0) {
        int err = errno;
        close(fd);
        return err == ECONNREFUSED || err == ENOENT ? -ENOENT : socket_errno(err);
    }
    if ((rc = channel_new(fd, out)))
        close(fd);
    return rc;
}

KVMM_PUBLIC Retcode kosvmm_channel_connect(const char *name, kosvmm_channel **channel)
{
    return kvmm_retcode(channel_connect(name, channel));
}

static int channel_from_fd(int fd, kosvmm_channel **out)
{
    int type, domain;
    socklen_t len = sizeof type;
    if (fd < 0 || !out)
        return -EINVAL;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_SEQPACKET)
        return -EINVAL;
    len = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_UNIX)
        return -EINVAL;
    int rc = channel_new(fd, out);
    if (rc == 0)
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC); /* inherited without it, so it could be passed on */
    return rc;
}

KVMM_PUBLIC Retcode kosvmm_channel_from_fd(int fd, kosvmm_channel **channel)
{
    return kvmm_retcode(channel_from_fd(fd, channel));
}

KVMM_PUBLIC int kosvmm_channel_fd(const kosvmm_channel *channel)
{
    return channel ? channel->fd : -1;
}

KVMM_PUBLIC Retcode kosvmm_channel_close(kosvmm_channel *channel)
{
    if (!channel)
        return rcInvalidArgument;
    if (channel->server)
        return rcInvalidOperation;
    close(channel->fd);
    free(channel);
    return rcOk;
}

KVMM_PUBLIC Retcode kosvmm_channel_peer_cred(const kosvmm_channel *channel, kosvmm_peer_cred *cred)
{
    if (!channel || !cred)
        return rcInvalidArgument;
    struct ucred uc;
    socklen_t len = sizeof uc;
    if (getsockopt(channel->fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0)
        return kvmm_retcode(errno == ENOTCONN ? -ENOENT : -EIO);
    cred->pid = uc.pid;
    cred->uid = uc.uid;
    cred->gid = uc.gid;
    return rcOk;
}

KVMM_PUBLIC Retcode kosvmm_channel_send(kosvmm_channel *channel, const void *payload, rtl_size_t size)
{
    if (!channel)
        return rcInvalidArgument;
    return kvmm_retcode(kvmm_wire_send(channel->fd, NULL, payload, size));
}

static int send_handle(kosvmm_channel *channel, Handle handle, uint32_t mask, const void *payload, size_t size)
{
    int denied = kvmm_policy_enter(KVMM_M_HANDLE_TRANSFER);
    if (denied)
        return denied;
    if (!channel || (mask & ~KNOWN_RIGHTS) || size > KVMM_WIRE_MAX_PAYLOAD || (size && !payload))
        return -EINVAL;
    struct kvmm_mdl_export e;
    int rc = kvmm_mdl_export(handle, mask, &e);
    if (rc)
        return fd_quota(rc);
    rc = kvmm_wire_send(channel->fd, &e, payload, size);
    kvmm_mdl_export_close(&e); /* the datagram holds its own references to the files */
    return rc;
}

KVMM_PUBLIC Retcode kosvmm_channel_send_handle(kosvmm_channel *channel, Handle handle, rtl_uint32_t mask,
                                               const void *payload, rtl_size_t size)
{
    return kvmm_retcode(send_handle(channel, handle, mask, payload, size));
}

int kvmm_channel_deliver(struct kvmm_wire_msg *m, Handle *handle)
{
    if (m->kind != KVMM_WIRE_KIND_HANDLE) {
        if (handle)
            *handle = INVALID_HANDLE;
        return 0;
    }
    if (!handle) {
        kvmm_wire_msg_close(m);
        return -EOPNOTSUPP;
    }
    int denied = kvmm_policy_enter(KVMM_M_HANDLE_RECEIVE);
    if (denied) {
        kvmm_wire_msg_close(m);
        return denied;
    }
    int rc = kvmm_mdl_import(&m->desc, handle); /* owns the descriptors from here, success or not */
    for (int i = 0; i < KVMM_MDL_MAX_REVOKE; i++)
        m->desc.revoke_fd[i] = -1;
    m->desc.buffer_fd = -1;
    return fd_quota(rc);
}

static int channel_recv(kosvmm_channel *channel, Handle *handle, void *payload, size_t capacity, size_t *size)
{
    if (!channel || (capacity && !payload))
        return -EINVAL;
    if (channel->server)
        return -EOPNOTSUPP;
    struct kvmm_wire_rxbuf rx; /* header + largest payload: 4 KiB of stack, no allocation per message */
    struct kvmm_wire_msg m;
    Handle h;
    int rc = kvmm_wire_recv(channel->fd, &rx, &m, capacity);
    if (rc == 0)
        rc = kvmm_channel_deliver(&m, handle ? &h : NULL);
    if (rc)
        return rc;
    if (m.payload_size)
        memcpy(payload, m.payload, m.payload_size);
    if (handle)
        *handle = h;
    if (size)
        *size = m.payload_size;
    return 0;
}

KVMM_PUBLIC Retcode kosvmm_channel_recv(kosvmm_channel *channel, Handle *handle, void *payload, rtl_size_t capacity,
                                        rtl_size_t *size)
{
    return kvmm_retcode(channel_recv(channel, handle, payload, capacity, size));
}
