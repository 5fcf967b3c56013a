/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/channel_wire.h — the channel's wire format and its raw send/receive on a SOCK_SEQPACKET socket. */
#ifndef KVMM_CHANNEL_WIRE_H
#define KVMM_CHANNEL_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "mdl_memfd/mdl.h"

/*
 * One channel message is one SOCK_SEQPACKET datagram: a fixed header, then payload_size bytes of
 * caller payload. A handle message also carries 1 + revoke_count descriptors in one SCM_RIGHTS
 * control message, in this order: the buffer memfd, then the revocation pages. The header's kind
 * (not the presence of descriptors) says which kind it is, so a receiver can refuse a datagram
 * whose descriptors do not match what its header announces. Both ends are on one host, so fields
 * are in host byte order.
 */
#define KVMM_WIRE_MAGIC        0x4843564bu /* "KVCH" */
#define KVMM_WIRE_VERSION      1u
#define KVMM_WIRE_KIND_DATA    0u          /* payload only, no descriptors */
#define KVMM_WIRE_KIND_HANDLE  1u          /* a handle description + its descriptors, and payload */
#define KVMM_WIRE_MAX_PAYLOAD  4096u       /* = KOSVMM_CHANNEL_MAX_PAYLOAD */
#define KVMM_WIRE_MAX_FDS      (1 + KVMM_MDL_MAX_REVOKE)

struct kvmm_wire_header {
    uint32_t magic;
    uint16_t version;
    uint16_t kind;                 /* KVMM_WIRE_KIND_* */
    uint32_t nfds;                 /* descriptors in the SCM_RIGHTS part: 0, or 1 + revoke_count */
    uint32_t payload_size;         /* bytes after the header, <= KVMM_WIRE_MAX_PAYLOAD */
    /* KIND_HANDLE: struct kvmm_mdl_export without its descriptors; zero for KIND_DATA */
    uint64_t buffer_size, offset, length;
    uint32_t rights, revoke_count;
    uint32_t revoke_slot[KVMM_MDL_MAX_REVOKE];
};

/* A received, validated message. For KIND_HANDLE, desc holds descriptors the message owns. */
struct kvmm_wire_msg {
    uint16_t kind;
    struct kvmm_mdl_export desc;   /* KIND_HANDLE only; every fd -1 otherwise */
    const unsigned char *payload;  /* payload_size bytes inside the receive buffer */
    size_t payload_size;
};

/*
 * Receive buffers for one recvmsg: kept in one struct because the asynchronous server leaves a
 * recvmsg pending on its ring that points into them. The control part has room for exactly
 * KVMM_WIRE_MAX_FDS descriptors, so a datagram with more arrives with MSG_CTRUNC; the data part has
 * room for a header and the largest payload, so a longer datagram arrives with MSG_TRUNC.
 */
struct kvmm_wire_rxbuf {
    struct msghdr msg;
    struct iovec iov;
    struct {
        _Alignas(struct cmsghdr) char buf[CMSG_SPACE(sizeof(int) * KVMM_WIRE_MAX_FDS)];
    } control;
    union {
        unsigned char bytes[sizeof(struct kvmm_wire_header) + KVMM_WIRE_MAX_PAYLOAD];
        struct kvmm_wire_header header;
    } data;
};

/* Sends one message: KIND_HANDLE with desc's descriptors when desc is non-NULL, else KIND_DATA.
 * Never raises SIGPIPE. 0; -EINVAL (size > KVMM_WIRE_MAX_PAYLOAD, payload NULL with size, too many
 * revocation fds); -ENOENT when the peer has closed its end; -EDQUOT when the kernel refuses more
 * descriptors in flight; -ENOMEM; -EIO otherwise. desc's descriptors stay the caller's. */
int kvmm_wire_send(int sock, const struct kvmm_mdl_export *desc, const void *payload, size_t size);

/* Points rx's msghdr at its own buffers, ready for recvmsg(..., MSG_CMSG_CLOEXEC). */
void kvmm_wire_rxbuf_prepare(struct kvmm_wire_rxbuf *rx);

/*
 * Validates what recvmsg returned into rx (n: its result, >= 0; rx->msg.msg_flags as the kernel set
 * them) and fills *out, whose payload points into rx. Every descriptor the datagram
 * carried is either handed to out->desc (success, KIND_HANDLE) or closed (every other outcome).
 *   -ENOENT  n == 0: the peer closed its end (a zero-length datagram is never sent by this protocol);
 *   -EPERM   the datagram broke the protocol: MSG_TRUNC, MSG_CTRUNC, another control message type,
 *            short or wrong header, unknown version or kind, descriptors not as announced;
 *   -EINVAL  a valid message whose payload is longer than capacity (dropped);
 *   -EDQUOT  a well-formed message whose descriptors could not all be installed here
 *            (RLIMIT_NOFILE reached: the kernel cut the control part short).
 */
int kvmm_wire_parse(struct kvmm_wire_rxbuf *rx, ssize_t n, struct kvmm_wire_msg *out, size_t capacity);

/* Blocking receive of one message into rx: recvmsg with MSG_CMSG_CLOEXEC (EINTR retried), then
 * kvmm_wire_parse. Also -ENOENT on ECONNRESET, -ENOMEM / -EDQUOT / -EIO for other socket errors. */
int kvmm_wire_recv(int sock, struct kvmm_wire_rxbuf *rx, struct kvmm_wire_msg *out, size_t capacity);

/* Closes the descriptors a received message still owns. */
void kvmm_wire_msg_close(struct kvmm_wire_msg *m);

#endif
