/* SPDX-License-Identifier: MIT */
/* src/entity/entity_api.c — EntityInitFromSegEx, EntityRun, EntityWait, EntityFree: an entity is a stub process fed its segments over a channel. */
#include <coresrv/elf/elf_api.h>
#include <coresrv/entity/entity_api.h>
#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <errno.h>
#include <kosvmm/kosvmm.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "entity/elf_parse.h"
#include "entity/entity_proc.h"
#include "entity/entity_wire.h"
#include "errors.h"
#include "visibility.h"

#ifndef KVMM_ENTITY_STUB_DEFAULT
#define KVMM_ENTITY_STUB_DEFAULT "/usr/lib/kosvmm/kosvmm-entity-stub"
#endif

enum entity_state { E_STOPPED, E_RUNNING, E_EXITED, E_FAILED };

struct Entity {
    struct Entity *next;
    pid_t owner;
    enum entity_state state;
    int pidfd;          /* -1 once reaped */
    kosvmm_channel *ch; /* RTL_NULL once running */
    rtl_uint32_t exit_code;
};

/* Live entities: a stale or foreign pointer is refused, never dereferenced beyond the lookup. */
static pthread_mutex_t entities_lock = PTHREAD_MUTEX_INITIALIZER;
static struct Entity *entities;

static struct Entity *lookup(const Entity *e, int unlink)
{
    pthread_mutex_lock(&entities_lock);
    struct Entity **p = &entities;
    while (*p && *p != e)
        p = &(*p)->next;
    struct Entity *found = *p;
    if (found && unlink)
        *p = found->next;
    pthread_mutex_unlock(&entities_lock);
    return found;
}

static int string_ok(const char *s)
{
    return s && strnlen(s, KOSVMM_ENTITY_STRING_MAX + 1) <= KOSVMM_ENTITY_STRING_MAX;
}

/* Counts a RTL_NULL-terminated list of at most max strings; -1 when one is bad. */
static int count_strings(const char *const *list, unsigned max, int need_equals)
{
    unsigned n = 0;
    while (n < max && list[n]) {
        if (!string_ok(list[n]) || (need_equals && !strchr(list[n], '=')))
            return -1;
        n++;
    }
    return list[max] ? -1 : (int)n;
}

static int check_info(const EntityInfo *info, const char *name, int *nargs, int *nenvs)
{
    if (!info || !string_ok(info->eiid) || !info->eiid[0] || (name && !string_ok(name)))
        return -EINVAL;
    if (info->max_endpoints && !info->endpoints)
        return -EINVAL;
    for (nk_iid_t i = 0; i < info->max_endpoints; i++)
        if (!info->endpoints[i].name)
            return -EINVAL;
    if ((unsigned)info->flags & ~(unsigned)ENTITY_FLAG_DUMPABLE)
        return -EINVAL;
    if ((*nargs = count_strings(info->args, ENTITY_ARGS_MAX, 0)) < 0 ||
        (*nenvs = count_strings(info->envs, ENTITY_ENV_MAX, 1)) < 0)
        return -EINVAL;
    return 0;
}

static int check_segs(const VmSeg *segs, size_t n, uintptr_t entry)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (!segs || n == 0 || n > KOSVMM_ELF_MAX_SEGS)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        uintptr_t a = (uintptr_t)segs[i].loadAddr, end;
        if (!a || (a & (page - 1)) || segs[i].size == 0 || (segs[i].size & (page - 1)) ||
            __builtin_add_overflow(a, segs[i].size, &end) || !(segs[i].flags & VMM_FLAG_READ) ||
            (segs[i].flags & ~(rtl_uint32_t)VMM_FLAG_RWX_MASK))
            return -EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            uintptr_t a = (uintptr_t)segs[i].loadAddr, b = (uintptr_t)segs[j].loadAddr;
            if (a < b + segs[j].size && b < a + segs[i].size)
                return -EEXIST;
        }
    for (size_t i = 0; i < n; i++) {
        uintptr_t a = (uintptr_t)segs[i].loadAddr;
        if ((segs[i].flags & VMM_FLAG_EXECUTE) && entry >= a && entry - a < segs[i].size)
            return 0;
    }
    return -EINVAL;
}

static Retcode send_string(kosvmm_channel *ch, uint32_t kind, const char *s)
{
    struct kvmm_ew_str m = {.h = {KVMM_ENTITY_WIRE_MAGIC, kind}};
    size_t len = strlen(s) + 1;
    memcpy(m.s, s, len);
    return kosvmm_channel_send(ch, &m, sizeof m.h + len);
}

/* Everything the stub needs before READY. A send the stub's death broke is not the reason: the
 * reason is its READY (a mapping failure) or its exit status, which the caller reads next. */
static Retcode feed(kosvmm_channel *ch, const EntityInfo *info, const char *name, size_t nsegs, const VmSeg *segs,
                    const struct kvmm_ew_load *load)
{
    Retcode rc = rcOk;
    for (size_t i = 0; i < nsegs && RC_SUCCEEDED(rc); i++) {
        struct kvmm_ew_seg m = {.h = {KVMM_ENTITY_WIRE_MAGIC, KVMM_EW_SEG}, .seg = segs[i]};
        rc = kosvmm_channel_send_handle(ch, segs[i].h, segs[i].flags & VMM_FLAG_RWX_MASK, &m, sizeof m);
    }
    if (RC_SUCCEEDED(rc))
        rc = send_string(ch, KVMM_EW_ARG, name);
    for (unsigned i = 0; i < load->nargs - 1 && RC_SUCCEEDED(rc); i++)
        rc = send_string(ch, KVMM_EW_ARG, info->args[i]);
    for (unsigned i = 0; i < load->nenvs && RC_SUCCEEDED(rc); i++)
        rc = send_string(ch, KVMM_EW_ENV, info->envs[i]);
    if (RC_SUCCEEDED(rc))
        rc = kosvmm_channel_send(ch, load, sizeof *load);
    return rc;
}

/* The stub's answer of the given kind: its rc, or why there is none. */
static Retcode answer(kosvmm_channel *ch, uint32_t kind, int *stub_gone)
{
    struct kvmm_ew_status st;
    rtl_size_t n;
    Retcode rc = kosvmm_channel_recv(ch, RTL_NULL, &st, sizeof st, &n);
    if (rc == rcResourceNotFound)
        *stub_gone = 1;
    if (RC_FAILED(rc))
        return rc;
    if (n != sizeof st || st.h.magic != KVMM_ENTITY_WIRE_MAGIC || st.h.kind != kind)
        return rcFail;
    return (Retcode)st.rc;
}

/* A stub that ended before READY: why, from its exit status (exec failures carry errno). */
static Retcode stub_death(int pidfd)
{
    uint32_t code = 0;
    kvmm_entity_reap(pidfd, -1, &code);
    if (KOSVMM_ENTITY_IS_KILLED(code) || code < KVMM_ENTITY_EXEC_FAILED)
        return rcResourceNotFound;
    switch (code - KVMM_ENTITY_EXEC_FAILED) {
    case ENOENT: case ENOTDIR: return rcResourceNotFound;
    case EACCES: case EPERM: case ENOEXEC: return rcNoCapability;
    case ENOMEM: case E2BIG: return rcOutOfMemory;
    case EMFILE: case ENFILE: case EAGAIN: return rcQuotaExceeded;
    default: return rcFail;
    }
}

static Retcode start(struct Entity *e, const EntityInfo *info, const char *name, size_t nsegs, const VmSeg *segs,
                     const struct kvmm_ew_load *load)
{
    const char *stub = secure_getenv("KOSVMM_ENTITY_STUB");
    if (!stub || !stub[0])
        stub = KVMM_ENTITY_STUB_DEFAULT;
    kosvmm_channel *theirs;
    Retcode rc = kosvmm_channel_pair(&e->ch, &theirs);
    if (RC_FAILED(rc))
        return rc;
    int err = kvmm_entity_spawn(stub, kosvmm_channel_fd(theirs), &e->pidfd);
    kosvmm_channel_close(theirs);
    if (err) {
        kosvmm_channel_close(e->ch);
        return kvmm_retcode(err);
    }
    int gone = 0;
    rc = feed(e->ch, info, name, nsegs, segs, load);
    if (RC_SUCCEEDED(rc) || rc == rcResourceNotFound)
        rc = answer(e->ch, KVMM_EW_READY, &gone);
    if (RC_SUCCEEDED(rc))
        return rcOk; /* stopped: the stub waits on the channel for GO */
    kosvmm_channel_close(e->ch);
    e->ch = RTL_NULL;
    if (gone) {
        /* Killed first: a stub that closed the channel without exiting must not hang us. An exit
         * already under way keeps its status. */
        syscall(SYS_pidfd_send_signal, e->pidfd, SIGKILL, NULL, 0);
        rc = stub_death(e->pidfd);
        close(e->pidfd);
    } else {
        kvmm_entity_kill(e->pidfd);
    }
    e->pidfd = -1;
    return rc;
}

KVMM_PUBLIC Entity *EntityInitFromSegEx(const EntityInfo *info, const char *name, const void *reserved,
                                        rtl_size_t segsCount, rtl_uintptr_t entry, const VmSeg *segs,
                                        rtl_uint32_t symIndex, rtl_size_t symSize, rtl_uint32_t strIndex,
                                        rtl_size_t strSize, const void *hdrData, rtl_size_t hdrSize)
{
    int nargs, nenvs, err;
    struct kvmm_elf_hdr_view view = {0};
    if ((err = check_info(info, name, &nargs, &nenvs)) || (reserved && (err = -EINVAL)) ||
        (err = check_segs(segs, segsCount, entry))) {
        kvmm_set_last_error(kvmm_retcode(err));
        return RTL_NULL;
    }
    if (hdrData ? kvmm_elf_headers_check(hdrData, hdrSize, symIndex, symSize, strIndex, strSize, &view) != 0
                : (hdrSize || symIndex || symSize || strIndex || strSize)) {
        kvmm_set_last_error(rcInvalidArgument);
        return RTL_NULL;
    }
    if (!name)
        name = info->eiid;
    struct kvmm_ew_load load = {.h = {KVMM_ENTITY_WIRE_MAGIC, KVMM_EW_LOAD}, .entry = entry, .phdr = view.phdr,
                                .phnum = view.phnum, .nsegs = (uint32_t)segsCount, .nargs = (uint32_t)nargs + 1,
                                .nenvs = (uint32_t)nenvs};
    strncpy(load.name, name, sizeof load.name - 1);

    struct Entity *e = calloc(1, sizeof *e);
    if (!e) {
        kvmm_set_last_error(rcOutOfMemory);
        return RTL_NULL;
    }
    e->owner = getpid();
    e->pidfd = -1;
    Retcode rc = start(e, info, name, segsCount, segs, &load);
    if (RC_FAILED(rc)) {
        free(e);
        kvmm_set_last_error(rc);
        return RTL_NULL;
    }
    e->state = E_STOPPED;
    pthread_mutex_lock(&entities_lock);
    e->next = entities;
    entities = e;
    pthread_mutex_unlock(&entities_lock);
    kvmm_set_last_error(rcOk);
    return e;
}

/* The entity if e is a live one of this process; else why not. */
static Retcode own(Entity *e, struct Entity **out)
{
    struct Entity *found = e ? lookup(e, 0) : RTL_NULL;
    if (!found)
        return rcInvalidArgument;
    if (found->owner != getpid())
        return rcInvalidOperation;
    *out = found;
    return rcOk;
}

KVMM_PUBLIC Retcode EntityRun(Entity *entity)
{
    struct Entity *e;
    Retcode rc = own(entity, &e);
    if (RC_FAILED(rc))
        return rc;
    if (e->state != E_STOPPED)
        return rcInvalidOperation;
    struct kvmm_ew_hdr go = {KVMM_ENTITY_WIRE_MAGIC, KVMM_EW_GO};
    int gone = 0;
    rc = kosvmm_channel_send(e->ch, &go, sizeof go);
    if (RC_SUCCEEDED(rc))
        rc = answer(e->ch, KVMM_EW_STARTED, &gone);
    kosvmm_channel_close(e->ch);
    e->ch = RTL_NULL;
    if (RC_FAILED(rc)) {
        kvmm_entity_kill(e->pidfd);
        e->pidfd = -1;
        e->state = E_FAILED;
        return rc;
    }
    e->state = E_RUNNING;
    return rcOk;
}

KVMM_PUBLIC Retcode EntityWait(Entity *entity, rtl_uint32_t timeout, rtl_uint32_t *exitCode)
{
    struct Entity *e;
    Retcode rc = own(entity, &e);
    if (RC_FAILED(rc) || !exitCode)
        return RC_FAILED(rc) ? rc : rcInvalidArgument;
    if (e->state == E_RUNNING) {
        uint32_t code;
        int err = kvmm_entity_reap(e->pidfd, timeout == INFINITE_TIMEOUT ? -1 : (int64_t)timeout, &code);
        if (err == -ETIMEDOUT)
            return rcTimeout;
        if (err)
            return kvmm_retcode(err);
        close(e->pidfd);
        e->pidfd = -1;
        e->exit_code = code;
        e->state = E_EXITED;
    }
    if (e->state != E_EXITED)
        return rcInvalidOperation;
    *exitCode = e->exit_code;
    return rcOk;
}

KVMM_PUBLIC void EntityFree(Entity *entity)
{
    struct Entity *e = entity ? lookup(entity, 0) : RTL_NULL;
    /* Another process's entity (a fork child's copy) is left alone: its pidfd still names the
     * parent's child, which must not be killed from here. */
    if (!e || e->owner != getpid() || !lookup(entity, 1))
        return;
    if (e->ch)
        kosvmm_channel_close(e->ch); /* a stopped stub sees the end and leaves */
    if (e->pidfd >= 0)
        kvmm_entity_kill(e->pidfd);
    free(e);
}
