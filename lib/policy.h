/* SPDX-License-Identifier: MIT */
/* lib/policy.h — the process's security policy: denied methods, W^X and quotas, checked at the API boundary. */
#ifndef KVMM_POLICY_H
#define KVMM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * KasperskyOS puts a security module between a process and the vmm.VMM endpoint; here the
 * library itself plays that part. Every entry point calls kvmm_policy_enter with its method
 * first (a denied method is refused before its arguments are even looked at, as the security
 * module refuses the IPC call before the kernel handler runs), then validates its arguments,
 * then charges the quotas the call would use before it changes anything. Checks and charges
 * return 0 or a negative errno: -EPERM (rcSecurityDisallow) or -EDQUOT (rcQuotaExceeded), after
 * writing one audit line when auditing is on.
 *
 * Usage is counted from the first call whatever the policy says, so a limit set later applies
 * to what already exists. Charges are exact: a call charges what it may add before it acts and
 * settles the difference once it knows what it really did (kvmm_quota_settle), so two threads
 * can never both pass a limit that only one of them fits under.
 */

/* Bit numbers of the KOSVMM_METHOD_* values of kosvmm.h. */
enum kvmm_method {
    KVMM_M_ALLOCATE, KVMM_M_COMMIT, KVMM_M_DECOMMIT, KVMM_M_PROTECT, KVMM_M_RESET, KVMM_M_FREE,
    KVMM_M_QUERY, KVMM_M_MDL_CREATE, KVMM_M_MDL_CREATE_FROM_VM, KVMM_M_MDL_GET_SIZE, KVMM_M_MDL_MAP,
    KVMM_M_MDL_CLONE, KVMM_M_SEG_INIT, KVMM_M_HANDLE_REVOKE, KVMM_M_HANDLE_TRANSFER,
    KVMM_M_HANDLE_RECEIVE, KVMM_M_COUNT
};

enum kvmm_quota {
    KVMM_Q_RESERVED,     /* bytes of address space in regions (MDL mappings included) */
    KVMM_Q_COMMITTED,    /* private committed bytes: lazy (in full) and locked */
    KVMM_Q_MDL_BUFFERS,  /* MDL buffers this process holds a handle to */
    KVMM_Q_MDL_BYTES,    /* their sizes */
    KVMM_Q_HANDLES,      /* open handles */
    KVMM_Q_COUNT
};

/* The method name used in policy files and audit lines ("Allocate", "MdlMap", ...). */
const char *kvmm_method_name(enum kvmm_method m);
/* The method named name (case-sensitive), or -1. */
int kvmm_method_by_name(const char *name, size_t len);

/* Records m as the calling thread's current method (for audit lines) and checks it is allowed. */
int kvmm_policy_enter(enum kvmm_method m);
/* Checks that m, used on behalf of the current method, is allowed (a call built on another). */
int kvmm_policy_allows(enum kvmm_method m);
/* Under W^X, refuses a protection holding both VMM_FLAG_WRITE and VMM_FLAG_EXECUTE. */
int kvmm_policy_wx(int prot);

/* Adds n to q's usage unless that passes q's limit: 0, or -EDQUOT and nothing charged. */
int kvmm_quota_charge(enum kvmm_quota q, uint64_t n);
/* Both or neither. */
int kvmm_quota_charge2(enum kvmm_quota q1, uint64_t n1, enum kvmm_quota q2, uint64_t n2);
void kvmm_quota_uncharge(enum kvmm_quota q, uint64_t n);
/* A call charged `charged` and then changed usage by `actual`: corrects the count. */
void kvmm_quota_settle(enum kvmm_quota q, uint64_t charged, int64_t actual);

/* policy_file.c: parses the policy file at path into *p (which holds the defaults on entry). An
 * audit path in it is opened (append, 0600, close-on-exec) into *audit_file, which the caller
 * owns; p->audit_fd is set to it. 0, or -ENOENT (the file or its audit path cannot be opened or
 * read) or -EINVAL (malformed), with "path[:line]: why" in err; nothing is left open then. */
struct kosvmm_policy;
int kvmm_policy_parse_file(const char *path, struct kosvmm_policy *p, int *audit_file, char *err,
                           size_t err_size);

/* For fork(): the policy lock (held while an audit line is written), taken last. */
void kvmm_policy_fork_prepare(void);
void kvmm_policy_fork_release(void);

#endif
