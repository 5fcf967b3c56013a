/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/channel_impl.h — what the blocking channel code and the io_uring server share. */
#ifndef KVMM_CHANNEL_IMPL_H
#define KVMM_CHANNEL_IMPL_H

#include <kosvmm/kosvmm.h>
#include <pthread.h>
#include <sys/un.h>

#include "channel_wire.h"

/*
 * A channel end and the revocation-page tables of its two directions. The table of a direction is
 * state shared with the other end, so a handle send (choosing entries, sendmsg, learning the
 * entries) and a receive (recvmsg, applying the entries) each run whole under their lock, in the
 * order the datagrams travel. fork() may copy a lock another thread held: the child re-makes the
 * locks at its first use of the channel (epoch), and sends every page INLINE on channels it
 * inherited, since the parent may still be filling the receiver's table through the same socket.
 */
struct kosvmm_channel {
    int fd;
    struct kosvmm_channel_server *server; /* non-NULL: accepted by that server's ring, which reads it */
    unsigned long epoch;                  /* the fork epoch the locks were made in (atomic) */
    pthread_mutex_t tx_lock, rx_lock;     /* rank: above every lock of lib/fork.h (they are taken under them) */
    struct kvmm_wire_txtable tx;
    struct kvmm_wire_rxtable rx;
};

/* A new channel end over fd (zeroed tables, fresh locks) / what it holds besides fd, released. */
void kvmm_channel_init(kosvmm_channel *ch, int fd, struct kosvmm_channel_server *server);
void kvmm_channel_fini(kosvmm_channel *ch);
/* Makes ch's locks usable in a fork child (the first call there per channel); cheap otherwise. */
void kvmm_channel_fork_check(kosvmm_channel *ch);
/* Pages in ch's receive table (for tests: they are referenced, so kvmm_mdl_rpage_count has them). */
uint32_t kvmm_channel_table_pages(const kosvmm_channel *ch);

/* Turns a parsed message into what the caller sees: a handle message becomes a handle of this
 * process (import takes the descriptors in every case), or is dropped with -EOPNOTSUPP when handle
 * is NULL; a payload-only message gives INVALID_HANDLE. */
int kvmm_channel_deliver(struct kvmm_wire_msg *m, Handle *handle);

/* Fills an abstract address: sun_path[0] = 0, then the name's bytes, no terminator.
 * -EINVAL for NULL, an empty name or one longer than 107 bytes. */
int kvmm_channel_address(const char *name, struct sockaddr_un *sa, socklen_t *len);

#endif
