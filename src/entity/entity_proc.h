/* SPDX-License-Identifier: MIT */
/* src/entity/entity_proc.h — the entity's Linux process: started with a pidfd and no exit signal, killed and reaped through it. */
#ifndef KVMM_ENTITY_PROC_H
#define KVMM_ENTITY_PROC_H

#include <stdint.h>
#include <sys/types.h>

/* Starts stub with channel_fd as its descriptor 3 and an empty environment. 0 and the pidfd, or
 * a negative errno (-EDQUOT: out of descriptors or processes, -ENOMEM, -ENOSYS: no CLONE_PIDFD,
 * -EPERM: refused by seccomp or an LSM); no child then. Exec failures show later, as the
 * child's exit status KVMM_ENTITY_EXEC_FAILED + errno. */
int kvmm_entity_spawn(const char *stub, int channel_fd, int *pidfd);

/* Waits (timeout_ms < 0: forever) for the child to end and reaps it. 0 and the status as the
 * exit code EntityWait reports, -ETIMEDOUT, or another negative errno. */
int kvmm_entity_reap(int pidfd, int64_t timeout_ms, uint32_t *code);

/* SIGKILL, reap, close the pidfd: nothing of the child remains. */
void kvmm_entity_kill(int pidfd);

#endif
