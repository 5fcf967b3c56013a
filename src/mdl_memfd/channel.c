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
#include "fork.h"
#include "policy.h"
#include "visibility.h"

#define KNOWN_RIGHTS (KVMM_RIGHT_READ | KVMM_RIGHT_WRITE | KVMM_RIGHT_EXECUTE | KVMM_RIGHT_TRANSFER)

static unsigned long fork_epoch;                                 /* bumped in every fork child */
static pthread_mutex_t remake_lock = PTHREAD_MUTEX_INITIALIZER; /* a leaf: nothing is taken under it */

static void fork_prepare(void)
{
    pthread_mutex_lock(&remake_lock);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&remake_lock);
}

static void fork_child(void)
{
    __atomic_add_fetch(&fork_epoch, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&remake_lock);
}

static const struct kvmm_fork_hooks fork_hooks = {fork_prepare, fork_parent, fork_child};

__attribute__((constructor)) static void register_fork_hooks(void)
{
    kvmm_fork_register(&fork_hooks, KVMM_FORK_RANK_CHANNEL);
}

void kvmm_channel_init(kosvmm_channel *ch, int fd, struct kosvmm_channel_server *server)
{
    kvmm_fork_guard(); /* the epoch must move in a fork child */
    memset(ch, 0, sizeof *ch);
    ch->fd = fd;
    ch->server = server;
    ch->epoch = __atomic_load_n(&fork_epoch, __ATOMIC_ACQUIRE);
    kvmm_wire_txtable_init(&ch->tx);
    pthread_mutex_init(&ch->tx_lock, NULL);
    pthread_mutex_init(&ch->rx_lock, NULL);
}

void kvmm_channel_fini(kosvmm_channel *ch)
{
    kvmm_channel_fork_check(ch);
    kvmm_wire_txtable_clear(&ch->tx);
    kvmm_wire_rxtable_clear(&ch->rx);
    pthread_mutex_destroy(&ch->tx_lock);
    pthread_mutex_destroy(&ch->rx_lock);
}

void kvmm_channel_fork_check(kosvmm_channel *ch)
{
    unsigned long e = __atomic_load_n(&fork_epoch, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&ch->epoch, __ATOMIC_ACQUIRE) == e)
        return;
    pthread_mutex_lock(&remake_lock);
    if (ch->epoch != e) {
        /* Only this thread exists in the child of the fork that left them stale: no owner to wait for. */
        pthread_mutex_init(&ch->tx_lock, NULL);
        pthread_mutex_init(&ch->rx_lock, NULL);
        ch->tx.off = true;
        __atomic_store_n(&ch->epoch, e, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&remake_lock);
}

uint32_t kvmm_channel_table_pages(const kosvmm_channel *ch)
{
    uint32_t n = 0;
    for (unsigned j = 0; j < KVMM_WIRE_TABLE; j++)
        n += ch->rx.page[j] != NULL;
    return n;
}

static void unlock_mutex(void *mutex)
{
    pthread_mutex_unlock(mutex);
}

static int channel_new(int fd, kosvmm_channel **out)
{
    kosvmm_channel *ch = malloc(sizeof *ch);
    if (!ch)
        return -ENOMEM;
    kvmm_channel_init(ch, fd, NULL);
    *out = ch;
    return 0;
}

/* What a failed socket call means here: out of descriptors (-EMFILE/-ENFILE, a quota to
 * kvmm_retcode), out of memory, or an unexpected failure. */
static int socket_errno(int err)
{
    return err == EMFILE || err == ENFILE ? -err : err == ENOMEM || err == ENOBUFS ? -ENOMEM : -EIO;
}

static int channel_pair(kosvmm_channel **a, kosvmm_channel **b)
{
    if (!a || !b)
        return -EINVAL;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return socket_errno(errno);
    kosvmm_channel *ca, *cb;
    if (channel_new(sv[0], &ca) == 0) {
        if (channel_new(sv[1], &cb) == 0) {
            *a = ca;
            *b = cb;
            return 0;
        }
        free(ca);
    }
    close(sv[0]);
    close(sv[1]);
    return -ENOMEM;
}

KVMM_PUBLIC Retcode kosvmm_channel_pair(kosvmm_channel **a, kosvmm_channel **b)
{
    return kvmm_retcode(channel_pair(a, b));
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

static int channel_close(kosvmm_channel *channel)
{
    if (!channel)
        return -EINVAL;
    if (channel->server)
        return -EOPNOTSUPP;
    kvmm_channel_fini(channel);
    close(channel->fd);
    free(channel);
    return 0;
}

KVMM_PUBLIC Retcode kosvmm_channel_close(kosvmm_channel *channel)
{
    return kvmm_retcode(channel_close(channel));
}

static int peer_cred(const kosvmm_channel *channel, kosvmm_peer_cred *cred)
{
    if (!channel || !cred)
        return -EINVAL;
    struct ucred uc;
    socklen_t len = sizeof uc;
    if (getsockopt(channel->fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0)
        return errno == ENOTCONN ? -ENOENT : -EIO;
    cred->pid = uc.pid;
    cred->uid = uc.uid;
    cred->gid = uc.gid;
    return 0;
}

KVMM_PUBLIC Retcode kosvmm_channel_peer_cred(const kosvmm_channel *channel, kosvmm_peer_cred *cred)
{
    return kvmm_retcode(peer_cred(channel, cred));
}

static int channel_send(kosvmm_channel *channel, const void *payload, size_t size)
{
    return channel ? kvmm_wire_send(channel->fd, NULL, NULL, payload, size) : -EINVAL;
}

KVMM_PUBLIC Retcode kosvmm_channel_send(kosvmm_channel *channel, const void *payload, rtl_size_t size)
{
    return kvmm_retcode(channel_send(channel, payload, size));
}

static int send_handle(kosvmm_channel *channel, Handle handle, uint32_t mask, const void *payload, size_t size)
{
    int denied = kvmm_policy_enter(KVMM_M_HANDLE_TRANSFER);
    if (denied)
        return denied;
    if (!channel || (mask & ~KNOWN_RIGHTS) || size > KVMM_WIRE_MAX_PAYLOAD || (size && !payload))
        return -EINVAL;
    struct kvmm_mdl_export e;
    struct kvmm_mdl *lender;
    /* The handle's own descriptors go into the datagram: sendmsg takes its own references to the
     * files, so nothing needs to be duplicated for it and closed after. */
    int rc = kvmm_mdl_export_lent(handle, mask, &e, &lender);
    if (rc)
        return rc;
    kvmm_channel_fork_check(channel);
    /* sendmsg is a cancellation point: a cancelled sender must not keep the channel locked. */
    pthread_mutex_lock(&channel->tx_lock);
    pthread_cleanup_push(unlock_mutex, &channel->tx_lock);
    rc = kvmm_wire_send(channel->fd, &channel->tx, &e, payload, size);
    pthread_cleanup_pop(1);
    kvmm_mdl_export_return(lender);
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
    int rc = kvmm_mdl_import(&m->desc, handle); /* owns the descriptors and pages from here, success or not */
    for (int i = 0; i < KVMM_MDL_MAX_REVOKE; i++) {
        m->desc.revoke_fd[i] = -1;
        m->desc.revoke_page[i] = NULL;
    }
    m->desc.buffer_fd = -1;
    return rc;
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
    int rc;
    kvmm_channel_fork_check(channel);
    /* recvmsg is a cancellation point: a cancelled receiver must not keep the channel locked. */
    pthread_mutex_lock(&channel->rx_lock);
    pthread_cleanup_push(unlock_mutex, &channel->rx_lock);
    rc = kvmm_wire_recv(channel->fd, &rx, &channel->rx, &m, capacity);
    pthread_cleanup_pop(1);
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
