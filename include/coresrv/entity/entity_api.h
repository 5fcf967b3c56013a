/* SPDX-License-Identifier: MIT */
/* coresrv/entity/entity_api.h — processes (entities) started from VmSegs: EntityInitFromSegEx, EntityRun, EntityWait, EntityFree. */
#ifndef KOSVMM_CORESRV_ENTITY_ENTITY_API_H
#define KOSVMM_CORESRV_ENTITY_ENTITY_API_H

#include <rtl/types.h>
#include <rtl/retcode.h>
#include <coresrv/vmm/vmm_types.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The process description, as KasperskyOS CE documents it (if_connection.h there). kosvmm's
 * choices for what the documentation leaves open: nk_iid_t is 32 bits; ENTITY_ARGS_MAX and
 * ENTITY_ENV_MAX are 32, and the slot after the last one must stay RTL_NULL; args[] are the
 * arguments after the program name (argv[1], argv[2], ...), envs[] "NAME=VALUE" strings, each
 * list ending at its first RTL_NULL; every string at most KOSVMM_ENTITY_STRING_MAX bytes.
 */
#ifndef KOSVMM_NK_IID_T_DEFINED
#define KOSVMM_NK_IID_T_DEFINED
typedef rtl_uint32_t nk_iid_t;
#endif

#define ENTITY_ARGS_MAX 32
#define ENTITY_ENV_MAX 32
#define KOSVMM_ENTITY_STRING_MAX 4000u

typedef struct EndpointInfo {
    char *name;        /* fully qualified name of the endpoint */
    nk_iid_t riid;     /* endpoint ID */
    char *iface_name;  /* name of the interface the endpoint implements */
} EndpointInfo;

typedef enum {
    ENTITY_FLAGS_NONE = 0,
    ENTITY_FLAG_DUMPABLE = 1   /* KasperskyOS: the process is reset on an unhandled exception */
} EntityFlags;

struct nk_component_node;

typedef struct EntityInfo {
    const char *eiid;                      /* process class name */
    nk_iid_t max_endpoints;                /* entries in endpoints */
    const EndpointInfo *endpoints;         /* the process's endpoints (RTL_NULL when none) */
    const char *args[ENTITY_ARGS_MAX + 1]; /* arguments passed at start */
    const char *envs[ENTITY_ENV_MAX + 1];  /* environment passed at start */
    EntityFlags flags;
    const struct nk_component_node *componentTree;
} EntityInfo;

/* An entity (process) made by EntityInitFromSegEx. Opaque. */
typedef struct Entity Entity;

/* EntityWait's timeout is in milliseconds; this one waits for as long as it takes. */
#ifndef INFINITE_TIMEOUT
#define INFINITE_TIMEOUT ((rtl_uint32_t)0xFFFFFFFFu)
#endif

/*
 * Linux realisation. The new process is a small helper program of kosvmm, the stub
 * (kosvmm-entity-stub, in <libdir>/kosvmm; the environment variable KOSVMM_ENTITY_STUB names
 * another, e.g. in a build tree), started with an empty environment and the caller's standard
 * input, output and error (no other descriptor). The segments' MDL handles travel to it over a
 * kosvmm channel, without the transfer right, and it maps each at its load address with
 * KnPmmMdlMap, refusing to replace anything (its own code, libraries, stack). At EntityRun it
 * builds a System V initial stack (argc, argv = name then info->args, envp = info->envs, an
 * auxiliary vector with AT_PHDR/AT_PHENT/AT_PHNUM when hdrData locates the program headers,
 * AT_PAGESZ, AT_ENTRY, AT_RANDOM, AT_UID...), sets its name (prctl PR_SET_NAME) to the process
 * name, resets every signal to its default disposition, unblocks them, closes the channel and
 * jumps to entry. The program then replaces the stub; it should end with exit_group (the exit
 * code) or die of a signal. The stub's own mappings stay in its address space, unused.
 *
 * The host's signal handling is untouched: kosvmm installs no handler and changes no mask (signals
 * are blocked only around the clone itself), creates the child with clone(CLONE_PIDFD), and waits
 * for it through the pidfd only (poll, waitid(P_PIDFD)), never with waitpid(-1). Once the stub
 * has exec'd it is an ordinary child (execve restores SIGCHLD as its exit signal), so the host
 * does receive SIGCHLD when it ends; a host that sets SIGCHLD to SIG_IGN, or reaps every child
 * with waitpid(-1), takes the exit code away (EntityWait: rcResourceNotFound). An Entity belongs
 * to the process that created it (a fork child gets rcInvalidOperation); one thread at a time
 * may use it. A running entity outlives a host that dies without EntityFree; a stopped one exits
 * once its host is gone.
 */

/*
 * Creates the process, stopped: its segments mapped, not yet running. info->eiid is the class
 * name; name is the process name (argv[0], and the Linux thread name, cut to 15 bytes), RTL_NULL
 * for info->eiid. reserved must be RTL_NULL. segs[0..segsCount) are mapped at their loadAddr
 * with their flags; entry is where the program starts; symIndex..hdrSize are KnElfCreateVmSegEx's
 * outputs, or all 0 / RTL_NULL for segments made by hand (then no AT_PHDR is passed). The
 * segments may be freed (KnElfFreeVmSeg) as soon as this returns: the process holds its own
 * handles. Endpoints are checked, then not used: kosvmm has no IPC endpoints (flags and
 * componentTree likewise).
 *
 * Returns the entity, or RTL_NULL; kosvmm_last_error() (kosvmm/kosvmm.h) then says why. Errors,
 * in the order they are checked; on any error no process, descriptor or handle is left behind:
 *   rcInvalidArgument  info or info->eiid RTL_NULL; eiid empty; a string longer than
 *                      KOSVMM_ENTITY_STRING_MAX; max_endpoints > 0 with endpoints RTL_NULL or
 *                      an endpoint without a name; flags other than ENTITY_FLAG_DUMPABLE;
 *                      args[ENTITY_ARGS_MAX] or envs[ENTITY_ENV_MAX] not RTL_NULL; an envs
 *                      string without '='; reserved not RTL_NULL; segs RTL_NULL; segsCount 0 or
 *                      above KOSVMM_ELF_MAX_SEGS (coresrv/elf/elf_api.h); a segment with
 *                      loadAddr RTL_NULL or unaligned, size 0 or not a page multiple, loadAddr +
 *                      size overflowing, flags not READ plus WRITE/EXECUTE;
 *   rcAlreadyExists    two segments overlap;
 *   rcInvalidArgument  entry not inside a segment with VMM_FLAG_EXECUTE; hdrData RTL_NULL with
 *                      hdrSize (or a table index/size) not 0, or headers that are not those
 *                      KnElfCreateVmSegEx makes (size, class, machine), or symIndex/strIndex not
 *                      an SHT_SYMTAB/SHT_STRTAB section of symSize/strSize bytes in them;
 *   rcQuotaExceeded    no descriptor left for the channel or the pidfd (RLIMIT_NOFILE), or no
 *                      process (RLIMIT_NPROC);
 *   rcOutOfMemory      no memory for the process;
 *   rcUnimplemented    the kernel has no CLONE_PIDFD (Linux < 5.2);
 *   rcResourceNotFound the stub program cannot be found, or the stub died;
 *   rcNoCapability     the stub is not executable; a segment's handle lacks the rights its
 *                      flags ask for;
 *   rcInvalidArgument / rcHandleRevoked / rcSecurityDisallow  a segment's handle is not an MDL
 *                      handle, was revoked, or the policy refuses its transfer (HandleTransfer);
 *   rcAlreadyExists    a segment would cover a mapping of the stub (its code, libraries, stack,
 *                      or a sanitizer's shadow memory): link the image elsewhere;
 *   rcOutOfMemory      the stub could not map a segment (an address beyond user space, a
 *                      kernel limit).
 */
Entity *EntityInitFromSegEx(const EntityInfo *info, const char *name, const void *reserved, rtl_size_t segsCount,
                            rtl_uintptr_t entry, const VmSeg *segs, rtl_uint32_t symIndex, rtl_size_t symSize,
                            rtl_uint32_t strIndex, rtl_size_t strSize, const void *hdrData, rtl_size_t hdrSize);

/*
 * Starts a stopped entity: returns once the program is about to run. rcOk; rcInvalidArgument
 * for RTL_NULL or a pointer that is not a live Entity; rcInvalidOperation when the entity is
 * not stopped (already run, or its start failed) or belongs to another process; rcOutOfMemory
 * when the stub could not make the program's stack; rcResourceNotFound when the stub has died
 * (killed from outside). After a failure the entity is finished: EntityFree is all that is left.
 */
Retcode EntityRun(Entity *entity);

/*
 * Waits up to timeout milliseconds (INFINITE_TIMEOUT: no limit, 0: just look) for a running
 * entity to end, and stores its exit code in *exitCode: the exit_group status (0..255) when it
 * exited, KOSVMM_ENTITY_KILLED(signal) (kosvmm/kosvmm.h: 0x100 | signal) when a signal killed it.
 * Once ended, every later call returns the same code at once. Errors (nothing written):
 *   rcInvalidArgument   entity RTL_NULL or not a live Entity, exitCode RTL_NULL;
 *   rcInvalidOperation  never run (stopped, or its start failed), or another process's entity;
 *   rcTimeout           the timeout passed first;
 *   rcResourceNotFound  the host reaped the process itself (SIGCHLD ignored, a waitpid(-1) loop):
 *                       its exit code is lost.
 * Signals caught by the host do not end the wait early.
 */
Retcode EntityWait(Entity *entity, rtl_uint32_t timeout, rtl_uint32_t *exitCode);

/*
 * Ends the entity and frees it: a stopped one is dismissed, a running one is killed (SIGKILL)
 * and waited for, so no process, zombie or descriptor remains. RTL_NULL, a freed or unknown
 * pointer, and another process's entity are ignored.
 */
void EntityFree(Entity *entity);

#ifdef __cplusplus
}
#endif

#endif /* KOSVMM_CORESRV_ENTITY_ENTITY_API_H */
