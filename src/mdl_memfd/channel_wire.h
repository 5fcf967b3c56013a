/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/channel_wire.h — the channel's wire format and its raw send/receive on a SOCK_SEQPACKET socket. */
#ifndef KVMM_CHANNEL_WIRE_H
#define KVMM_CHANNEL_WIRE_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "mdl_memfd/mdl.h"

/*
 * One channel message is one SOCK_SEQPACKET datagram: a header (the first KVMM_WIRE_DATA_HEADER
 * bytes of it for a payload-only message), then payload_size bytes of
 * caller payload. A handle message also carries descriptors in one SCM_RIGHTS control message, in
 * this order: the buffer memfd, then the revocation pages sent with it (INLINE and INSTALL words,
 * in word order). The header's kind (not the presence of descriptors) says which kind it is, so a
 * receiver can refuse a datagram whose descriptors do not match what its header announces. Both
 * ends are on one host, so fields are in host byte order.
 *
 * Revocation pages: a sender hands out the words of a handful of pages, so a channel sends a page's
 * fd once (INSTALL into an entry of the receiver's per-channel table) and names the entry
 * afterwards (REF): the receiver keeps the page mapped, with its fd, until the channel closes or the
 * sender installs another page there. Each INSTALL and REF also names the page's identity
 * (dev, ino), and the receiver refuses a message whose names do not match its table, so a table
 * out of step with its sender (two senders on one socket end) refuses messages rather than binding
 * words to the wrong page. INLINE sends the fd without the table (a fork child on an inherited
 * channel, whose parent may still use the table).
 */
#define KVMM_WIRE_MAGIC        0x4843564bu /* "KVCH" */
#define KVMM_WIRE_VERSION      2u
#define KVMM_WIRE_KIND_DATA    0u          /* payload only, no descriptors */
#define KVMM_WIRE_KIND_HANDLE  1u          /* a handle description + its descriptors, and payload */
#define KVMM_WIRE_MAX_PAYLOAD  4096u       /* = KOSVMM_CHANNEL_MAX_PAYLOAD */
#define KVMM_WIRE_MAX_FDS      (2 + KVMM_MDL_MAX_REVOKE) /* buffer, pages, feedback page */
#define KVMM_WIRE_TABLE        KVMM_MDL_MAX_REVOKE /* pages per channel table: one message's words fit */

#define KVMM_WIRE_PAGE_INLINE  0u          /* the page's fd is in the message, the table untouched */
#define KVMM_WIRE_PAGE_INSTALL 1u          /* the page's fd is in the message: into entry revoke_index */
#define KVMM_WIRE_PAGE_REF     2u          /* the page of entry revoke_index, no fd */

#define KVMM_WIRE_FLAG_FEEDBACK 1u         /* the last fd is the sender's feedback page */

/* The feedback page's words: the receiver stores into them, the sender loads them. */
#define KVMM_WIRE_FB_ATTACHED  0           /* nonzero: the receiver has the page (and a table) */
#define KVMM_WIRE_FB_LOST      1           /* bit j: entry j holds nothing (an INSTALL failed there) */

struct kvmm_wire_header {
    uint32_t magic;
    uint16_t version;
    uint16_t kind;                 /* KVMM_WIRE_KIND_* */
    uint32_t nfds;                 /* descriptors in the SCM_RIGHTS part: 0, or 1 + pages sent with it */
    uint32_t payload_size;         /* bytes after the header, <= KVMM_WIRE_MAX_PAYLOAD */
    uint32_t flags, reserved;      /* KVMM_WIRE_FLAG_* (KIND_HANDLE only) */
    /* KIND_HANDLE: struct kvmm_mdl_export without its descriptors; zero for KIND_DATA */
    uint64_t buffer_size, offset, length;
    uint32_t rights, revoke_count;
    uint32_t revoke_slot[KVMM_MDL_MAX_REVOKE];
    uint8_t revoke_how[KVMM_MDL_MAX_REVOKE];   /* KVMM_WIRE_PAGE_* */
    uint8_t revoke_index[KVMM_MDL_MAX_REVOKE]; /* INSTALL, REF: the table entry */
    uint64_t revoke_dev[KVMM_MDL_MAX_REVOKE], revoke_ino[KVMM_MDL_MAX_REVOKE]; /* INSTALL, REF */
};

/*
 * A receiver that could not apply an INSTALL (out of descriptors or address space) must tell its
 * sender, or every later message naming that entry would be refused: a message cannot carry the
 * news back, so the sender gives the receiver a feedback page once, sending every page INLINE
 * until the receiver stores ATTACHED there, and loads LOST before each handle message to install
 * such entries again. Messages already in flight behind a lost INSTALL are refused with it.
 */

/* A payload-only message carries the header only up to here: every system call's copy counts
 * when both ends share one CPU, and the rest describes a handle. */
#define KVMM_WIRE_DATA_HEADER offsetof(struct kvmm_wire_header, buffer_size)

/* The sender's view of the receiver's table; guarded by the caller (one send at a time). */
struct kvmm_wire_txtable {
    bool off;                      /* INLINE only (a fork child on an inherited channel) */
    int fb_fd;                     /* the feedback page (read-write description), or -1 */
    uint32_t *fb;                  /* its mapping, or NULL */
    uint32_t clock;
    uint64_t dev[KVMM_WIRE_TABLE], ino[KVMM_WIRE_TABLE];
    uint32_t stamp[KVMM_WIRE_TABLE]; /* 0: empty, else last use (least recent is replaced) */
};

/* The receiver's table: referenced pages; guarded by the caller (one receive at a time). */
struct kvmm_wire_rxtable {
    struct kvmm_mdl_rpage *page[KVMM_WIRE_TABLE];
    uint64_t dev[KVMM_WIRE_TABLE], ino[KVMM_WIRE_TABLE];
    bool lost[KVMM_WIRE_TABLE];    /* an INSTALL that could not be applied here */
    uint32_t *fb;                  /* the sender's feedback page, mapped, or NULL */
    uint64_t fb_dev, fb_ino;
};

/* A sender's table: empty, without a feedback page; and what it holds, released. */
void kvmm_wire_txtable_init(struct kvmm_wire_txtable *t);
void kvmm_wire_txtable_clear(struct kvmm_wire_txtable *t);
/* Drops every page of a receiver's table and its feedback mapping. */
void kvmm_wire_rxtable_clear(struct kvmm_wire_rxtable *t);

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

/* Sends one message: KIND_HANDLE with desc's descriptors when desc is non-NULL, else KIND_DATA;
 * with tx (may be NULL: every page INLINE), pages the receiver has are named, not sent, and tx
 * learns the pages this message installs (only if it was sent). Never raises SIGPIPE. 0; -EINVAL (size > KVMM_WIRE_MAX_PAYLOAD, payload NULL with size, too many
 * revocation fds); -ENOENT when the peer has closed its end; -EDQUOT when the kernel refuses more
 * descriptors in flight; -ENOMEM; -EIO otherwise. desc's descriptors stay the caller's. */
int kvmm_wire_send(int sock, struct kvmm_wire_txtable *tx, const struct kvmm_mdl_export *desc, const void *payload,
                   size_t size);

/* Points rx's msghdr at its own buffers, ready for recvmsg(..., MSG_CMSG_CLOEXEC). */
void kvmm_wire_rxbuf_prepare(struct kvmm_wire_rxbuf *rx);

/*
 * Validates what recvmsg returned into rx (n: its result, >= 0; rx->msg.msg_flags as the kernel set
 * them) against table (NULL: none, so INSTALL and REF are refused) and fills *out, whose payload
 * points into rx. Every descriptor the datagram carried is either handed to out->desc (success,
 * KIND_HANDLE), kept in table (its INSTALLs, once the message is valid: also when it is then dropped
 * with -EINVAL, since the sender counts on them) or closed (every other outcome). out->desc holds its
 * own references to the pages it names.
 *   -ENOENT  n == 0: the peer closed its end (a zero-length datagram is never sent by this protocol);
 *   -EPERM   the datagram broke the protocol: MSG_TRUNC, MSG_CTRUNC, another control message type,
 *            short or wrong header, unknown version or kind, descriptors not as announced, a page
 *            entry that is empty or holds another page, a page fd that is not a revocation page;
 *   -EINVAL  a valid message whose payload is longer than capacity (dropped);
 *   -EDQUOT  a well-formed message whose descriptors could not all be installed here
 *            (RLIMIT_NOFILE reached: the kernel cut the control part short); the entries it
 *            installs are then lost, and later messages naming them get -EDQUOT too.
 */
int kvmm_wire_parse(struct kvmm_wire_rxbuf *rx, ssize_t n, struct kvmm_wire_rxtable *table, struct kvmm_wire_msg *out,
                    size_t capacity);

/* Blocking receive of one message into rx: recvmsg with MSG_CMSG_CLOEXEC (EINTR retried), then
 * kvmm_wire_parse. Also -ENOENT on ECONNRESET, -ENOMEM / -EDQUOT / -EIO for other socket errors. */
int kvmm_wire_recv(int sock, struct kvmm_wire_rxbuf *rx, struct kvmm_wire_rxtable *table, struct kvmm_wire_msg *out,
                   size_t capacity);

/* Closes the descriptors a received message still owns and drops its page references. */
void kvmm_wire_msg_close(struct kvmm_wire_msg *m);

#endif
