/* SPDX-License-Identifier: MIT */
/* kosvmm/kosvmm.h — host-only additions of kosvmm: last error, statistics. Never part of the SDK headers. */
#ifndef KOSVMM_KOSVMM_H
#define KOSVMM_KOSVMM_H

#include <rtl/types.h>
#include <rtl/retcode.h>
#include <handle/handletype.h>
#include <kosvmm/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Why the last KnVmAllocate or EntityInitFromSegEx of the calling thread returned RTL_NULL (rcOk
 * after a success). Thread-local, so it behaves like errno.
 */
Retcode kosvmm_last_error(void);

/*
 * Extensible structs. kosvmm_stats, kosvmm_lazy_config, kosvmm_policy and kosvmm_usage may gain
 * fields in later releases without breaking programs built against this one (and a program built
 * against a later kosvmm still runs with this one). The rule, as Linux has it for clone3 and
 * openat2:
 *   - each struct begins with `size`, which the caller sets to sizeof the struct it was compiled
 *     with before passing it, e.g. `kosvmm_stats st = {.size = sizeof st};` in C, or
 *     `kosvmm_stats st = {}; st.size = sizeof st;` in C++;
 *   - fields are only ever appended; `reserved` fields are zero and may gain a meaning later;
 *   - a size is accepted when it is a multiple of the struct's alignment (8; 4 for
 *     kosvmm_lazy_config), at least KOSVMM_<NAME>_SIZE_MIN (`size`, its padding and the first
 *     field) and at most KOSVMM_STRUCT_SIZE_MAX. Any other size is rcInvalidArgument, checked
 *     before anything else, and then nothing is read or written;
 *   - get calls (kosvmm_get_stats, kosvmm_get_lazy_config, kosvmm_get_policy, kosvmm_get_usage)
 *     write the fields that lie wholly within size, zero the bytes past the fields this kosvmm
 *     knows (fields of a newer kosvmm read as 0), and set size to the number of bytes they filled
 *     (the smaller of the caller's size and this kosvmm's): a field is valid when it lies wholly
 *     within the size returned;
 *   - set calls (kosvmm_set_lazy_config, kosvmm_set_policy) read the fields within size; a field
 *     past size keeps its current value (a program built before the field existed does not touch
 *     it); bytes past the fields this kosvmm knows must be zero, else rcInvalidArgument (the caller
 *     asks for a setting this kosvmm does not have), and reserved fields must be zero.
 */
#define KOSVMM_STRUCT_SIZE_MAX 4096u

/* A snapshot of process-wide counters. Byte counts cover usable pages only (no guard pages). */
typedef struct kosvmm_stats {
    rtl_uint32_t size;               /* set by the caller: sizeof(kosvmm_stats), see above */
    rtl_uint32_t reserved;           /* written as 0 */
    rtl_uint64_t regions;            /* regions currently allocated */
    rtl_uint64_t reserved_bytes;     /* bytes in regions, any state */
    rtl_uint64_t committed_bytes;    /* committed bytes: lazy, full and MDL mappings */
    rtl_uint64_t lazy_bytes;         /* of which lazily committed */
    rtl_uint64_t locked_bytes;       /* of which fully committed (populated at commit) */
    rtl_uint64_t pinned_bytes;       /* of which pinned with mlock */
    rtl_uint64_t pin_refusals;       /* mlock calls refused (no CAP_IPC_LOCK, RLIMIT_MEMLOCK too low) */
    rtl_uint64_t kernel_refusals;    /* kernel calls refused while changing memory (ENOMEM at
                                        vm.max_map_count, out of RAM), whole or part-way */
    rtl_uint32_t guard_mechanism;    /* KOSVMM_GUARD_* used for guard pages */
    rtl_uint32_t lazy_engine;        /* KOSVMM_ENGINE_* that new lazy commits get now */
    rtl_uint32_t lazy_window;        /* pages the last userfaultfd fault filled around itself */
    rtl_uint64_t uffd_faults;        /* faults served by the userfaultfd handler */
    rtl_uint64_t uffd_pages_filled;  /* pages it filled (faulting pages, neighbours, read-ahead) */
    rtl_uint64_t uffd_readahead_pages; /* of which filled in the background: the rest of a window
                                          past its first chunk, and read-ahead */
    rtl_uint64_t uffd_fill_ns;       /* time spent in UFFDIO_COPY / UFFDIO_ZEROPAGE */
    rtl_uint64_t thp_bytes;          /* bytes of full commits advised for transparent huge pages
                                        (2 MiB-aligned extents; cumulative) */
    rtl_uint64_t uffd_overcommits;   /* lazy faults the handler could not back (the kernel had no
                                        memory for the page: a cgroup limit with nothing to kill).
                                        Each is reported on stderr ("kosvmm: Unhandled Overcommit:
                                        ... page ... region ...") and answered with SIGBUS to the
                                        faulting thread, instead of a fault retried forever */
    rtl_uint64_t uffd_zero_pages;    /* of uffd_pages_filled, pages a read fault mapped to the shared
                                        zero page (no memory until written; a write then takes the
                                        kernel's copy-on-write fault, not the handler) */
    rtl_uint64_t uffd_huge_moves;    /* 2 MiB extents of sequential streams filled at once by moving
                                        a pre-zeroed transparent huge page into place (UFFDIO_MOVE,
                                        Linux 6.8+; KOSVMM_UFFD_MOVE=0 turns it off) */
    rtl_uint64_t uffd_staged_pages;  /* pages of huge pages the handler zeroed ahead of need, while
                                        no fault waited */
    rtl_uint64_t uffd_kernel_extents; /* 2 MiB extents of sequential write streams handed to the
                                        kernel's own huge-page faults (MADV_HUGEPAGE, unregistered
                                        from userfaultfd; KOSVMM_UFFD_HANDOFF=0 turns it off) */
    rtl_uint64_t uffd_collapsed_extents; /* of those, extents that already had pages (where a
                                        stream began), made one huge page in place (MADV_COLLAPSE) */
} kosvmm_stats;

#define KOSVMM_STATS_SIZE_MIN 16u    /* size, reserved, regions */

#define KOSVMM_GUARD_PROT_NONE     0u  /* guard page = a PROT_NONE page of the reservation */
#define KOSVMM_GUARD_MADV_INSTALL  1u  /* MADV_GUARD_INSTALL markers (Linux 6.13+), robust to mprotect */

/* Fills *stats as the extensible-struct rule says. Returns rcOk, or rcInvalidArgument when stats is
 * RTL_NULL or stats->size is not accepted. */
Retcode kosvmm_get_stats(kosvmm_stats *stats);

/*
 * Lazy commit engines. The SDK says a lazy page is committed on first access "together with
 * several pages before and after" it; KOSVMM_ENGINE_UFFD does that with a userfaultfd handler
 * thread (at least one page before and one after the first fault, see coresrv/vmm/vmm_api.h; a
 * read maps the shared zero page there instead of memory), KOSVMM_ENGINE_KERNEL leaves it to Linux
 * demand paging, which cannot: one page per fault. Both give the same visible semantics: lazy
 * pages read as zero until written.
 *
 * fork(): the child gets the parent's pages as they are (copy-on-write); lazy pages the parent
 * never touched read as zero in the child and fault like ordinary memory there (its mappings are
 * not registered with the parent's userfaultfd, and the child never waits for the parent's
 * handler). kosvmm keeps working in the child: its own engine starts at its first lazy commit.
 * At exit or unload the handler stops and every range is unregistered, so a destructor that
 * touches lazy memory afterwards still works.
 */
#define KOSVMM_ENGINE_KERNEL  0u
#define KOSVMM_ENGINE_UFFD    1u

typedef struct kosvmm_lazy_config {
    rtl_uint32_t size;            /* set by the caller: sizeof(kosvmm_lazy_config), see kosvmm_stats */
    rtl_uint32_t engine;          /* KOSVMM_ENGINE_* wanted; UFFD falls back to KERNEL when no
                                     usable userfaultfd exists (see kosvmm_stats.lazy_engine) */
    rtl_uint32_t window_min;      /* pages filled per fault on random access, >= 1, from the
                                     faulting page on; a fault that starts a stream also fills
                                     the page on its other side (the SDK's "before and after") */
    rtl_uint32_t window_max;      /* pages filled per fault on a stream, <= 4096, >= window_min */
    rtl_uint32_t readahead;       /* 1: on a stream, fill the next window before it is touched */
    rtl_uint32_t user_mode_only;  /* 1: allow UFFD_USER_MODE_ONLY, which lets unprivileged processes
                                     use userfaultfd under vm.unprivileged_userfaultfd=0, but makes
                                     system calls that write into untouched lazy memory (read(2),
                                     recv, io_uring reads) fail with EFAULT */
} kosvmm_lazy_config;

#define KOSVMM_LAZY_CONFIG_SIZE_MIN 8u  /* size, engine */

/*
 * The configuration new lazy commits get. Defaults: engine UFFD, window 1..512, readahead 1,
 * user_mode_only 0; the environment overrides them when the library is loaded (README.md,
 * ENVIRONMENT): KOSVMM_ENGINE=uffd|kernel (any case), KOSVMM_WINDOW_MIN=n, KOSVMM_WINDOW_MAX=n
 * (1..4096, min <= max), KOSVMM_READAHEAD and KOSVMM_UFFD_USER_MODE_ONLY (1/yes/true/on or
 * 0/no/false/off). Each invalid variable is warned about on stderr and ignored alone. A region keeps
 * the engine it got at its first lazy commit. When the uffd engine is wanted but userfaultfd is not
 * usable, lazy commits fall back to kernel demand paging; that is said once on stderr when
 * KOSVMM_ENGINE=uffd asked for uffd by name, otherwise only under KOSVMM_VERBOSE=1.
 * Both calls follow the extensible-struct rule (see kosvmm_stats); kosvmm_set_lazy_config:
 * rcInvalidArgument for a NULL pointer, a size not accepted, an unknown engine or bad window
 * bounds, and then nothing changes.
 */
Retcode kosvmm_get_lazy_config(kosvmm_lazy_config *config);
Retcode kosvmm_set_lazy_config(const kosvmm_lazy_config *config);

/*
 * Policy: what a KasperskyOS security policy decides about the vmm.VMM endpoint, for this
 * process. The endpoint's documentation names each method's danger ("exhaust the RAM", "exhaust
 * the kernel memory by creating a multitude of objects", "create shared memory concealed from the
 * security module"); a policy bounds them with quotas, refuses writable+executable memory (W^X,
 * as KasperskyOS 1.4 does), and denies methods outright.
 *
 * Results, for every call the policy covers, checked in this order and before anything changes:
 *   rcSecurityDisallow  the method is denied (before the arguments are looked at, as the security
 *                       module refuses an IPC call before the kernel sees it);
 *   (the call's own argument errors);
 *   rcSecurityDisallow  W^X is on and the protection holds both VMM_FLAG_WRITE and VMM_FLAG_EXECUTE;
 *   (the call's own state errors: unknown region or handle, rights, revocation);
 *   rcQuotaExceeded     the call would take a usage above its limit.
 * A call built on another needs both allowed: KnVmSegInitFromBuf needs SegInit and MdlCreate,
 * KnVmSegInitFromVm needs SegInit and MdlCreateFromVm, KnPmmMdlCreateFromBuf is MdlCreate.
 * Closing a handle (KnHandleClose) and the kosvmm_* calls other than sending and receiving handles
 * are never denied.
 *
 * What the quotas count (kosvmm_get_usage reports it):
 *   reserved   bytes of address space in kosvmm regions, whatever their state, MDL mappings
 *              included (guard pages not counted);
 *   committed  private committed bytes: locked and lazy commits both count in full, since a lazy
 *              page becomes RAM on a touch the process controls. MDL mappings are not private
 *              (their memory is counted once, as MDL bytes, by the process holding the buffer);
 *              KnPmmMdlCreateFromVm moves its pages from committed to MDL bytes;
 *   MDL buffers / MDL bytes  buffers this process holds at least one handle to (created, cloned
 *              or received; a clone or a second copy of a buffer already held costs nothing), and
 *              their sizes. A mapping outlives its handles and keeps the memory: it stays counted
 *              as reserved bytes;
 *   handles    open handles (every kind).
 * Lowering a limit below the current usage is allowed: what exists stays, growth is refused.
 *
 * The policy of the process comes from the file named by the environment variable KOSVMM_POLICY
 * (read when the library is loaded; ignored in set-user-ID and set-group-ID programs, like every
 * secure_getenv variable) and from kosvmm_set_policy / kosvmm_load_policy. A malformed file is
 * reported on stderr with its line number, and the process then runs with every covered method
 * denied and the policy locked ("fail closed"): a policy that cannot be read is never "no policy".
 *
 * File format: one `key = value` per line; `#` starts a comment; blank lines are ignored; keys
 * and method names are case-sensitive; each key at most once.
 *   max_reserved_bytes | max_committed_bytes | max_mdl_bytes = <n>[K|M|G|T] | unlimited
 *   max_mdl_buffers | max_handles = <n> | unlimited
 *   deny = <Method>[, <Method>...]      (the names below; may be given once, as one list)
 *   w_xor_x = yes | no
 *   audit = off | stderr | <absolute path>   (appended to; created 0600)
 *   locked = yes | no                   (yes: kosvmm_set_policy/kosvmm_load_policy are refused)
 *
 * Audit: each refusal writes one line with one write(2) (whole lines, even from many threads):
 *   kosvmm-audit: pid=<pid> tid=<tid> uid=<uid> comm=<name> method=<Method> verdict=<rc name>
 *   rule=<key> detail=<what was asked against what is allowed>
 */
#define KOSVMM_UNLIMITED KOSVMM_CAST(rtl_uint64_t, -1)

/* Methods, named as the vmm.VMM endpoint names them (Free is KnVmUnmap and KnVmFree); Reset, SegInit and the
 * handle calls are kosvmm's own names for the other calls of vmm_api.h and handle transfer. */
#define KOSVMM_METHOD_ALLOCATE            (1u << 0)   /* "Allocate"        KnVmAllocate */
#define KOSVMM_METHOD_COMMIT              (1u << 1)   /* "Commit"          KnVmCommit */
#define KOSVMM_METHOD_DECOMMIT            (1u << 2)   /* "Decommit"        KnVmDecommit */
#define KOSVMM_METHOD_PROTECT             (1u << 3)   /* "Protect"         KnVmProtect */
#define KOSVMM_METHOD_RESET               (1u << 4)   /* "Reset"           KnVmReset */
#define KOSVMM_METHOD_FREE                (1u << 5)   /* "Free"            KnVmUnmap, KnVmFree */
#define KOSVMM_METHOD_QUERY               (1u << 6)   /* "Query"           KnVmQuery */
#define KOSVMM_METHOD_MDL_CREATE          (1u << 7)   /* "MdlCreate"       KnPmmMdlCreate, ...FromBuf */
#define KOSVMM_METHOD_MDL_CREATE_FROM_VM  (1u << 8)   /* "MdlCreateFromVm" KnPmmMdlCreateFromVm */
#define KOSVMM_METHOD_MDL_GET_SIZE        (1u << 9)   /* "MdlGetSize"      KnPmmMdlGetSize */
#define KOSVMM_METHOD_MDL_MAP             (1u << 10)  /* "MdlMap"          KnPmmMdlMap */
#define KOSVMM_METHOD_MDL_CLONE           (1u << 11)  /* "MdlClone"        KnPmmMdlClone */
#define KOSVMM_METHOD_SEG_INIT            (1u << 12)  /* "SegInit"         KnVmSegInitFromVm, ...FromBuf */
#define KOSVMM_METHOD_HANDLE_REVOKE       (1u << 13)  /* "HandleRevoke"    KnHandleRevoke, ...Ex,
                                                         ...Subtree */
#define KOSVMM_METHOD_HANDLE_TRANSFER     (1u << 14)  /* "HandleTransfer"  kosvmm_channel_send_handle */
#define KOSVMM_METHOD_HANDLE_RECEIVE      (1u << 15)  /* "HandleReceive"   a handle arriving in
                                                         kosvmm_channel_recv / _server_wait: it is
                                                         dropped, its descriptors closed */
#define KOSVMM_METHODS_ALL                ((1u << 16) - 1)

typedef struct kosvmm_policy {
    rtl_uint32_t size;                 /* set by the caller: sizeof(kosvmm_policy), see kosvmm_stats */
    rtl_uint32_t reserved;             /* 0 */
    rtl_uint64_t max_reserved_bytes;   /* KOSVMM_UNLIMITED, or a limit (0 allowed: none at all) */
    rtl_uint64_t max_committed_bytes;
    rtl_uint64_t max_mdl_buffers;
    rtl_uint64_t max_mdl_bytes;
    rtl_uint64_t max_handles;
    rtl_uint32_t deny;                 /* KOSVMM_METHOD_* bits */
    rtl_uint32_t w_xor_x;              /* 1: refuse WRITE together with EXECUTE */
    rtl_int32_t  audit_fd;             /* -1: no audit; else refusals are written to this fd
                                          (2 = stderr); kosvmm never closes a caller's fd */
    rtl_uint32_t locked;               /* 1: later kosvmm_set_policy/kosvmm_load_policy fail */
} kosvmm_policy;

#define KOSVMM_POLICY_SIZE_MIN 16u     /* size, reserved, max_reserved_bytes */

/* Current usage against the limits, and how often the policy said no. */
typedef struct kosvmm_usage {
    rtl_uint32_t size;                 /* set by the caller: sizeof(kosvmm_usage), see kosvmm_stats */
    rtl_uint32_t reserved;             /* written as 0 */
    rtl_uint64_t reserved_bytes;
    rtl_uint64_t committed_bytes;
    rtl_uint64_t mdl_buffers;
    rtl_uint64_t mdl_bytes;
    rtl_uint64_t handles;
    rtl_uint64_t quota_refusals;       /* calls refused with rcQuotaExceeded by a limit above */
    rtl_uint64_t denials;              /* calls refused with rcSecurityDisallow (method or W^X) */
} kosvmm_usage;

#define KOSVMM_USAGE_SIZE_MIN 16u      /* size, reserved, reserved_bytes */

/* The policy in force (defaults: everything unlimited, nothing denied, no W^X, no audit, not
 * locked). rcInvalidArgument for RTL_NULL or a size not accepted (see kosvmm_stats). */
Retcode kosvmm_get_policy(kosvmm_policy *policy);

/* Replaces the policy (fields past policy->size keep their values, see kosvmm_stats).
 * rcInvalidArgument (RTL_NULL, a size not accepted, reserved not 0, unknown deny bits, w_xor_x or
 * locked not 0/1, audit_fd < -1) or rcSecurityDisallow (the policy in force is locked); nothing
 * changes then. */
Retcode kosvmm_set_policy(const kosvmm_policy *policy);

/*
 * Reads a policy file (format above) and puts it in force, with defaults for the keys it omits.
 * On failure nothing changes and, when error is not RTL_NULL, a one-line reason ("path:line:
 * why") is stored there (truncated to error_size, always terminated): rcInvalidArgument (RTL_NULL
 * path, malformed file), rcResourceNotFound (cannot open or read the file, or its audit path),
 * rcSecurityDisallow (locked).
 */
Retcode kosvmm_load_policy(const char *path, char *error, rtl_size_t error_size);

/* Fills *usage (see kosvmm_stats for size). rcInvalidArgument for RTL_NULL or a size not accepted. */
Retcode kosvmm_get_usage(kosvmm_usage *usage);

/*
 * Channels: moving MDL handles (and small messages) between processes.
 *
 * A channel is one end of a connected AF_UNIX SOCK_SEQPACKET socket (close-on-exec). A message is
 * one datagram: either payload only, or an MDL handle plus payload. A handle travels as its memfd
 * and revocation pages (SCM_RIGHTS) plus its window and rights, and arrives as a new handle of the
 * receiver's own table; the sender keeps its handle. Its rights are the sender's rights AND the
 * mask given to kosvmm_channel_send_handle, so a transfer can only narrow them, and the kernel
 * enforces the result (a handle without write right arrives on a read-only file description).
 *
 * Every function validates its arguments first; on failure no output is written. Results:
 *   rcInvalidArgument   NULL channel or pointer, bad name, payload larger than
 *                       KOSVMM_CHANNEL_MAX_PAYLOAD, unknown mask bits, receive capacity smaller
 *                       than the message (the message is then dropped);
 *   rcResourceNotFound  the peer has closed its end or died (send and receive), nobody listens on
 *                       the name (connect);
 *   rcAlreadyExists     the name is already listened on (listen);
 *   rcSecurityDisallow  a received datagram broke the protocol (truncated data or descriptors, other
 *                       control messages, wrong header, version or kind, descriptors not as its
 *                       header announces): it was dropped and every descriptor it carried closed;
 *   rcNoCapability      the handle lacks KOSVMM_RIGHT_TRANSFER (send), or a received description
 *                       claims more than its descriptors allow (receive);
 *   rcHandleRevoked     one of the handle's origins was revoked (send, and receive when the
 *                       revocation is already visible);
 *   rcInvalidOperation  a handle arrived where none was accepted (handle == RTL_NULL), or the call
 *                       does not apply to this channel (see kosvmm_channel_server_wait);
 *   rcOutOfMemory / rcQuotaExceeded  no memory, or no descriptors left (RLIMIT_NOFILE; on receive:
 *                       the kernel could not install all of a handle message's descriptors).
 * On any receive failure the received descriptors are closed: nothing leaks.
 *
 * Threads: a channel may be used by several threads at once; each datagram is sent whole and
 * received whole by exactly one receiver. A server is used by one thread at a time.
 */
#define KOSVMM_CHANNEL_MAX_PAYLOAD 4096u  /* bytes of caller payload per message */

typedef struct kosvmm_channel kosvmm_channel;
typedef struct kosvmm_channel_server kosvmm_channel_server;

/* Credentials of the peer process, as the kernel recorded them when the connection was made
 * (connect, or socketpair: both ends of a pair report the process that created it, even after a
 * fork, so a fork+exec child should identify itself in a message if that matters). */
typedef struct kosvmm_peer_cred {
    rtl_int32_t  pid;
    rtl_uint32_t uid;
    rtl_uint32_t gid;
} kosvmm_peer_cred;

/* A connected pair of channels (socketpair). Typically one end is kept and the other handed to a
 * child: after fork, clear FD_CLOEXEC on kosvmm_channel_fd(end) and pass the number on argv; the
 * child wraps it with kosvmm_channel_from_fd. rcInvalidArgument if a or b is RTL_NULL. */
Retcode kosvmm_channel_pair(kosvmm_channel **a, kosvmm_channel **b);

/* Connects to the server listening on name (an abstract AF_UNIX address, exactly those bytes,
 * 1..107 of them; visible to the network namespace, not the file system). */
Retcode kosvmm_channel_connect(const char *name, kosvmm_channel **channel);

/* Wraps an inherited socket descriptor, which must be an AF_UNIX SOCK_SEQPACKET socket
 * (rcInvalidArgument otherwise). Sets FD_CLOEXEC again. The channel owns fd only on success. */
Retcode kosvmm_channel_from_fd(int fd, kosvmm_channel **channel);

/* The socket descriptor of a channel, still owned by it (-1 for RTL_NULL). For poll(2), and for
 * handing one end of a pair to a child; do not read or write it directly. */
int kosvmm_channel_fd(const kosvmm_channel *channel);

/* Closes the channel and frees it. Messages in flight to this end are discarded by the kernel
 * (with their descriptors). rcInvalidOperation for a peer owned by a server (it closes its own). */
Retcode kosvmm_channel_close(kosvmm_channel *channel);

/* The peer's pid/uid/gid (SO_PEERCRED). */
Retcode kosvmm_channel_peer_cred(const kosvmm_channel *channel, kosvmm_peer_cred *cred);

/* Sends size bytes of payload only (size may be 0; payload may be RTL_NULL only then).
 * Blocks while the peer's receive queue is full. Never raises SIGPIPE. */
Retcode kosvmm_channel_send(kosvmm_channel *channel, const void *payload, rtl_size_t size);

/* Sends handle with rights (its rights AND mask), plus payload as above. mask holds
 * KOSVMM_RIGHT_READ/WRITE/EXECUTE/TRANSFER bits only; leaving TRANSFER out stops the receiver
 * from passing the handle on. The sender's handle is unchanged and stays the sender's.
 * The datagram carries the handle's own descriptors (the kernel takes its own references), so a
 * send makes no descriptor, except the first read-only send of a buffer from a writable handle:
 * it makes the buffer's read-only description, kept (one descriptor) until the last handle to
 * the buffer in this process closes; without room for it the send fails with rcQuotaExceeded. */
Retcode kosvmm_channel_send_handle(kosvmm_channel *channel, Handle handle, rtl_uint32_t mask,
                                   const void *payload, rtl_size_t size);

/*
 * Receives one message, blocking until one arrives. The payload is copied to
 * payload[0..capacity) and its length stored in *size (size may be RTL_NULL). How to tell the
 * kinds apart: *handle is the received handle (a new handle of this process, to be closed with
 * KnHandleClose) for a handle message, INVALID_HANDLE for a payload-only one. With handle ==
 * RTL_NULL the caller accepts payload-only messages: a handle message is then dropped (nothing is
 * imported, its descriptors closed) and the call fails with rcInvalidOperation.
 * A message is consumed even when the call fails. Use capacity KOSVMM_CHANNEL_MAX_PAYLOAD to never
 * see rcInvalidArgument for a long message.
 */
Retcode kosvmm_channel_recv(kosvmm_channel *channel, Handle *handle, void *payload, rtl_size_t capacity,
                            rtl_size_t *size);

/* Listens on name (as in kosvmm_channel_connect). The server socket is close-on-exec. */
Retcode kosvmm_channel_listen(const char *name, kosvmm_channel_server **server);

/* The simple case: blocks until one peer connects and returns it as a channel the caller owns.
 * rcInvalidOperation once kosvmm_channel_server_wait has been used on this server. */
Retcode kosvmm_channel_accept(kosvmm_channel_server *server, kosvmm_channel **peer);

/* What kosvmm_channel_server_wait reports. */
#define KOSVMM_CHANNEL_EVENT_CONNECTED 1u  /* a new peer: event.peer */
#define KOSVMM_CHANNEL_EVENT_MESSAGE   2u  /* a message from event.peer: handle, size, payload */
#define KOSVMM_CHANNEL_EVENT_REJECTED  3u  /* a message from event.peer was dropped; rc says why */
#define KOSVMM_CHANNEL_EVENT_CLOSED    4u  /* event.peer hung up (or was disconnected) */

typedef struct kosvmm_channel_event {
    rtl_uint32_t    type;     /* KOSVMM_CHANNEL_EVENT_* */
    Retcode         rc;       /* REJECTED: as kosvmm_channel_recv would have failed; else rcOk */
    kosvmm_channel *peer;     /* owned by the server, see kosvmm_channel_server_wait */
    Handle          handle;   /* MESSAGE: the received handle (caller closes it), or INVALID_HANDLE */
    rtl_size_t      size;     /* MESSAGE: payload bytes */
    rtl_uint8_t     payload[KOSVMM_CHANNEL_MAX_PAYLOAD];
} kosvmm_channel_event;

/*
 * The asynchronous case: accepts peers and receives from all of them at once through one io_uring
 * (an accept and one recvmsg per peer always pending), and returns the next event. timeout_ms < 0
 * waits forever; on timeout the result is rcBusy and *event is untouched. The first call starts
 * the ring (rcUnimplemented if the kernel refuses io_uring). Peers it accepted are owned by the
 * server: send to them and read their credentials freely, but do not receive on them or close them
 * (rcInvalidOperation); kosvmm_channel_server_disconnect ends one. A peer stays valid until the
 * call after the one that reported its CLOSED event.
 */
Retcode kosvmm_channel_server_wait(kosvmm_channel_server *server, int timeout_ms, kosvmm_channel_event *event);

/* Hangs up on a peer owned by the server; its CLOSED event follows from kosvmm_channel_server_wait. */
Retcode kosvmm_channel_server_disconnect(kosvmm_channel_server *server, kosvmm_channel *peer);

/* Stops listening, closes every peer the server owns (messages not yet reported are dropped, their
 * descriptors closed) and frees it. Channels returned by kosvmm_channel_accept stay open. */
Retcode kosvmm_channel_server_close(kosvmm_channel_server *server);

/*
 * Rights of an MDL handle (KnPmmMdl* in coresrv/vmm/vmm_api.h): the protections it may be mapped
 * with, bounded by the prot its buffer was created with, and whether it may be sent to another
 * process. A handle from KnPmmMdlCreate, KnPmmMdlCreateFromBuf or KnPmmMdlCreateFromVm has the
 * creation prot plus TRANSFER; a clone has its origin's rights; a transferred copy has the
 * sender's rights AND the send mask. Without WRITE the handle is backed by a read-only file
 * description, so the kernel refuses writable mappings of it (EXECUTE is enforced by kosvmm only:
 * Linux lets any readable memfd be mapped executable).
 */
/*
 * Entities (coresrv/entity/entity_api.h). EntityWait's exit code for a process a signal killed
 * (a Linux exit status is 0..255, so the two never meet); KOSVMM_ENTITY_SIGNAL gives the signal.
 * The stub program that becomes each entity is <libdir>/kosvmm/kosvmm-entity-stub, or the
 * file the environment variable KOSVMM_ENTITY_STUB names (read at each EntityInitFromSegEx,
 * ignored in set-user-ID and set-group-ID programs).
 */
#define KOSVMM_ENTITY_KILLED(sig)    (0x100u | (rtl_uint32_t)(sig))
#define KOSVMM_ENTITY_IS_KILLED(c)   (((c) & 0x100u) != 0)
#define KOSVMM_ENTITY_SIGNAL(c)      ((c) & 0xffu)

#define KOSVMM_RIGHT_READ      0x001u  /* = VMM_FLAG_READ: may be mapped readable */
#define KOSVMM_RIGHT_WRITE     0x002u  /* = VMM_FLAG_WRITE: may be mapped writable */
#define KOSVMM_RIGHT_EXECUTE   0x004u  /* = VMM_FLAG_EXECUTE: may be mapped executable */
#define KOSVMM_RIGHT_TRANSFER  0x100u  /* may be sent to another process */

#ifdef __cplusplus
}
#endif

#endif /* KOSVMM_KOSVMM_H */
