/* SPDX-License-Identifier: MIT */
/* lib/errors.h — the one place negative errno becomes a Retcode, at the API boundary. */
#ifndef KVMM_ERRORS_H
#define KVMM_ERRORS_H

#include <rtl/retcode.h>

/*
 * Internal code speaks 0 or negative errno; kvmm_retcode gives each its Retcode through one
 * table, errno_map in lib/errors.c, which is the reference. In short:
 *
 *   errno                 Retcode              why
 *   EINVAL, EBADF         rcInvalidArgument    malformed argument, bad descriptor or handle value
 *   ENOMEM                rcOutOfMemory        RAM, kernel map entries
 *   ENOENT                rcResourceNotFound   no region / object / peer
 *   EEXIST                rcAlreadyExists      a fixed address or name already taken
 *   EOPNOTSUPP            rcInvalidOperation   valid call, wrong state or object kind
 *   EACCES                rcNoCapability       the handle's rights forbid it
 *   EPERM                 rcSecurityDisallow   the policy forbids it
 *   EKEYREVOKED           rcHandleRevoked      the handle or an origin was revoked
 *   EDQUOT, EMFILE,       rcQuotaExceeded      a configured limit: the policy's quotas, and
 *   ENFILE                                     RLIMIT_NOFILE / fs.file-max (each handle is a fd)
 *   ENOSYS                rcUnimplemented      the host kernel lacks the mechanism
 *   EBUSY                 rcBusy               transiently busy, retry
 *   ENOTCONN              rcNotConnected
 *   ERANGE                rcBufferTooSmall     the result does not fit the caller's buffer
 *   E2BIG, EMSGSIZE       rcBufferTooLarge     the input is larger than accepted
 *   ENOTRECOVERABLE       rcInternalError      kosvmm's own state is inconsistent
 *   EINTR                 rcIpcInterrupt
 *   EAGAIN                rcNotReady           would block
 *   ETIMEDOUT             rcTimeout
 *   ECANCELED             rcAbort
 *   ENODEV, ENXIO         rcDeviceNotFound
 *   anything else         rcFail
 *
 * The SDK's other names (rcTransferError, rcReceiveError, rcSourceFault, rcTargetFault,
 * rcRestart, rcFutexWouldBlock, rcInvalidThreadState) have no Linux errno that means them, so no
 * kosvmm call returns them: they exist for source compatibility.
 */
Retcode kvmm_retcode(int neg_errno);

/* Sets what kosvmm_last_error() reports to the calling thread: for the calls that return a
 * pointer (KnVmAllocate, EntityInitFromSegEx), set on success (rcOk) and on failure. */
void kvmm_set_last_error(Retcode rc);

#endif
