/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/channel_impl.h — what the blocking channel code and the io_uring server share. */
#ifndef KVMM_CHANNEL_IMPL_H
#define KVMM_CHANNEL_IMPL_H

#include <kosvmm/kosvmm.h>
#include <sys/un.h>

#include "channel_wire.h"

struct kosvmm_channel {
    int fd;
    struct kosvmm_channel_server *server; /* non-NULL: accepted by that server's ring, which reads it */
};

/* Turns a parsed message into what the caller sees: a handle message becomes a handle of this
 * process (import takes the descriptors in every case), or is dropped with -EOPNOTSUPP when handle
 * is NULL; a payload-only message gives INVALID_HANDLE. */
int kvmm_channel_deliver(struct kvmm_wire_msg *m, Handle *handle);

/* Fills an abstract address: sun_path[0] = 0, then the name's bytes, no terminator.
 * -EINVAL for NULL, an empty name or one longer than 107 bytes. */
int kvmm_channel_address(const char *name, struct sockaddr_un *sa, socklen_t *len);

#endif
