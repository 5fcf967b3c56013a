/* SPDX-License-Identifier: MIT */
/* lib/policy.c — the process's security policy: denied methods, W^X, exact quota charges and the audit line. */
#include "policy.h"

#include <errno.h>
#include <fcntl.h>
#include <kosvmm/kosvmm.h>
#include <pthread.h>
#include <rtl/retcode_hr.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vmm/flags.h>

#include "errors.h"
#include "fork.h"
#include "visibility.h"

static const char *const method_names[KVMM_M_COUNT] = {
    "Allocate", "Commit", "Decommit", "Protect", "Reset", "Free", "Query", "MdlCreate",
    "MdlCreateFromVm", "MdlGetSize", "MdlMap", "MdlClone", "SegInit", "HandleRevoke",
    "HandleTransfer", "HandleReceive",
};

static const char *const quota_rules[KVMM_Q_COUNT] = {
    "max_reserved_bytes", "max_committed_bytes", "max_mdl_buffers", "max_mdl_bytes", "max_handles",
};

/*
 * Readers load single fields with atomics and take no lock: a policy check is on every call's
 * path. The mutex orders writers, and is held while an audit line is written so that an audit
 * file replaced by a new policy is never closed under a writer (which could then write into
 * whatever file reused the number).
 */
static struct {
    pthread_mutex_t lock;
    uint64_t limit[KVMM_Q_COUNT];
    uint64_t used[KVMM_Q_COUNT];
    uint32_t deny, w_xor_x, locked;
    int audit_fd;
    int owned_fd;   /* the audit file kosvmm opened itself (from a policy file), else -1 */
    uint64_t refusals, denials;
} pol = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .limit = {KOSVMM_UNLIMITED, KOSVMM_UNLIMITED, KOSVMM_UNLIMITED, KOSVMM_UNLIMITED, KOSVMM_UNLIMITED},
    .audit_fd = -1,
    .owned_fd = -1,
};

static __thread int current_method = -1;

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

const char *kvmm_method_name(enum kvmm_method m)
{
    return (unsigned)m < KVMM_M_COUNT ? method_names[m] : "?";
}

int kvmm_method_by_name(const char *name, size_t len)
{
    for (int m = 0; m < KVMM_M_COUNT; m++)
        if (strlen(method_names[m]) == len && memcmp(method_names[m], name, len) == 0)
            return m;
    return -1;
}

/* One line, one write(2): lines from several threads never interleave. */
static void audit(Retcode verdict, const char *rule, const char *fmt, ...)
{
    if (LOAD(pol.audit_fd) < 0)
        return;
    char line[512], detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    int n = snprintf(line, sizeof line,
                     "kosvmm-audit: pid=%d tid=%d uid=%u comm=%s method=%s verdict=%s rule=%s detail=%s\n",
                     (int)getpid(), (int)gettid(), (unsigned)getuid(), program_invocation_short_name,
                     current_method >= 0 ? method_names[current_method] : "?", rtl_retcode_name(verdict),
                     rule, detail);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line) { /* a long detail is cut, the line still ends */
        n = sizeof line - 1;
        line[n - 1] = '\n';
    }
    pthread_mutex_lock(&pol.lock);
    if (pol.audit_fd >= 0) {
        ssize_t w;
        do
            w = write(pol.audit_fd, line, (size_t)n);
        while (w < 0 && errno == EINTR);
    }
    pthread_mutex_unlock(&pol.lock);
}

static int deny(const char *rule, const char *fmt, const char *what)
{
    __atomic_add_fetch(&pol.denials, 1, __ATOMIC_RELAXED);
    audit(rcSecurityDisallow, rule, fmt, what);
    return -EPERM;
}

int kvmm_policy_allows(enum kvmm_method m)
{
    if (!(LOAD(pol.deny) & (1u << m)))
        return 0;
    return deny("deny", "method %s is denied", method_names[m]);
}

int kvmm_policy_enter(enum kvmm_method m)
{
    current_method = (int)m;
    return kvmm_policy_allows(m);
}

int kvmm_policy_wx(int prot)
{
    if (!LOAD(pol.w_xor_x) || (prot & (VMM_FLAG_WRITE | VMM_FLAG_EXECUTE)) != (VMM_FLAG_WRITE | VMM_FLAG_EXECUTE))
        return 0;
    return deny("w_xor_x", "%s", "write and execute asked together");
}

int kvmm_quota_charge(enum kvmm_quota q, uint64_t n)
{
    uint64_t limit = LOAD(pol.limit[q]), cur = LOAD(pol.used[q]);
    if (n == 0)
        return 0; /* asks for nothing: fine even above a lowered limit */
    do {
        if (limit != KOSVMM_UNLIMITED && (n > limit || cur > limit - n)) {
            __atomic_add_fetch(&pol.refusals, 1, __ATOMIC_RELAXED);
            audit(rcQuotaExceeded, quota_rules[q], "used %llu + asked %llu > limit %llu",
                  (unsigned long long)cur, (unsigned long long)n, (unsigned long long)limit);
            return -EDQUOT;
        }
    } while (!__atomic_compare_exchange_n(&pol.used[q], &cur, cur + n, true, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    return 0;
}

int kvmm_quota_charge2(enum kvmm_quota q1, uint64_t n1, enum kvmm_quota q2, uint64_t n2)
{
    int rc = kvmm_quota_charge(q1, n1);
    if (rc == 0 && (rc = kvmm_quota_charge(q2, n2)) != 0)
        kvmm_quota_uncharge(q1, n1);
    return rc;
}

void kvmm_quota_uncharge(enum kvmm_quota q, uint64_t n)
{
    __atomic_sub_fetch(&pol.used[q], n, __ATOMIC_RELAXED);
}

void kvmm_quota_settle(enum kvmm_quota q, uint64_t charged, int64_t actual)
{
    __atomic_add_fetch(&pol.used[q], (uint64_t)actual - charged, __ATOMIC_RELAXED);
}

static bool policy_valid(const kosvmm_policy *p)
{
    return (p->deny & ~KOSVMM_METHODS_ALL) == 0 && p->w_xor_x <= 1 && p->locked <= 1 && p->audit_fd >= -1;
}

/* Puts p in force; owned_fd is an audit file opened for it (closed if p cannot be applied).
 * 0, or -EPERM when the policy in force is locked. */
static int apply(const kosvmm_policy *p, int owned_fd)
{
    kvmm_fork_guard();
    pthread_mutex_lock(&pol.lock);
    if (pol.locked) {
        pthread_mutex_unlock(&pol.lock);
        if (owned_fd >= 0)
            close(owned_fd);
        return -EPERM;
    }
    const uint64_t limits[KVMM_Q_COUNT] = {p->max_reserved_bytes, p->max_committed_bytes,
                                           p->max_mdl_buffers, p->max_mdl_bytes, p->max_handles};
    for (int q = 0; q < KVMM_Q_COUNT; q++)
        STORE(pol.limit[q], limits[q]);
    STORE(pol.deny, p->deny);
    STORE(pol.w_xor_x, p->w_xor_x);
    STORE(pol.locked, p->locked);
    int old = pol.owned_fd;
    pol.owned_fd = owned_fd;
    STORE(pol.audit_fd, p->audit_fd);
    pthread_mutex_unlock(&pol.lock);
    if (old >= 0 && old != owned_fd)
        close(old);
    return 0;
}

static void get_policy(kosvmm_policy *p)
{
    pthread_mutex_lock(&pol.lock);
    kosvmm_policy out = {
        .max_reserved_bytes = pol.limit[KVMM_Q_RESERVED],
        .max_committed_bytes = pol.limit[KVMM_Q_COMMITTED],
        .max_mdl_buffers = pol.limit[KVMM_Q_MDL_BUFFERS],
        .max_mdl_bytes = pol.limit[KVMM_Q_MDL_BYTES],
        .max_handles = pol.limit[KVMM_Q_HANDLES],
        .deny = pol.deny,
        .w_xor_x = pol.w_xor_x,
        .audit_fd = pol.audit_fd,
        .locked = pol.locked,
    };
    pthread_mutex_unlock(&pol.lock);
    *p = out;
}

KVMM_PUBLIC Retcode kosvmm_get_policy(kosvmm_policy *policy)
{
    if (!policy)
        return kvmm_retcode(-EINVAL);
    get_policy(policy);
    return rcOk;
}

KVMM_PUBLIC Retcode kosvmm_set_policy(const kosvmm_policy *policy)
{
    if (!policy || !policy_valid(policy))
        return kvmm_retcode(-EINVAL);
    return kvmm_retcode(apply(policy, -1));
}

static void set_error(char *error, size_t size, const char *msg)
{
    if (error && size)
        snprintf(error, size, "%s", msg);
}

/* Parses path and opens its audit file: the whole policy or nothing. */
static int load(const char *path, char *error, size_t error_size)
{
    char err[320] = "";
    kosvmm_policy p = {KOSVMM_UNLIMITED, KOSVMM_UNLIMITED, KOSVMM_UNLIMITED, KOSVMM_UNLIMITED,
                       KOSVMM_UNLIMITED, 0, 0, -1, 0};
    int owned = -1;
    int rc = kvmm_policy_parse_file(path, &p, &owned, err, sizeof err);
    if (rc == 0 && (rc = apply(&p, owned)) == -EPERM)
        snprintf(err, sizeof err, "%s: the policy in force is locked", path);
    if (rc)
        set_error(error, error_size, err);
    return rc;
}

KVMM_PUBLIC Retcode kosvmm_load_policy(const char *path, char *error, rtl_size_t error_size)
{
    if (!path) {
        set_error(error, error_size, "no path");
        return kvmm_retcode(-EINVAL);
    }
    return kvmm_retcode(load(path, error, error_size));
}

KVMM_PUBLIC Retcode kosvmm_get_usage(kosvmm_usage *usage)
{
    if (!usage)
        return kvmm_retcode(-EINVAL);
    kosvmm_usage u = {
        .reserved_bytes = LOAD(pol.used[KVMM_Q_RESERVED]),
        .committed_bytes = LOAD(pol.used[KVMM_Q_COMMITTED]),
        .mdl_buffers = LOAD(pol.used[KVMM_Q_MDL_BUFFERS]),
        .mdl_bytes = LOAD(pol.used[KVMM_Q_MDL_BYTES]),
        .handles = LOAD(pol.used[KVMM_Q_HANDLES]),
        .quota_refusals = LOAD(pol.refusals),
        .denials = LOAD(pol.denials),
    };
    *usage = u;
    return rcOk;
}

void kvmm_policy_fork_prepare(void)
{
    pthread_mutex_lock(&pol.lock);
}

void kvmm_policy_fork_release(void)
{
    pthread_mutex_unlock(&pol.lock);
}

/*
 * KOSVMM_POLICY is read before main, so no call ever runs under a weaker policy than the one
 * deployed. A file that cannot be read or parsed must not mean "no policy": every covered method
 * is then denied, and the policy locked so the program cannot talk itself out of it.
 */
__attribute__((constructor)) static void load_env_policy(void)
{
    const char *path = secure_getenv("KOSVMM_POLICY");
    if (!path || !*path)
        return;
    char err[384];
    if (load(path, err, sizeof err) == 0)
        return;
    kosvmm_policy closed = {KOSVMM_UNLIMITED, KOSVMM_UNLIMITED, KOSVMM_UNLIMITED, KOSVMM_UNLIMITED,
                            KOSVMM_UNLIMITED, KOSVMM_METHODS_ALL, 1, 2, 1};
    apply(&closed, -1);
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "kosvmm: KOSVMM_POLICY: %s; every kosvmm call the policy covers is denied "
                     "(rcSecurityDisallow) and the policy is locked\n", err);
    if (n > 0)
        (void)!write(STDERR_FILENO, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}
