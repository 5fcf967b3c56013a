/* SPDX-License-Identifier: MIT */
/* lib/fork.h — keeps kosvmm usable in a forked child: no lock is held across fork(). */
#ifndef KVMM_FORK_H
#define KVMM_FORK_H

/* Installs the pthread_atfork handlers once; cheap after the first call. */
void kvmm_fork_guard(void);

#endif
