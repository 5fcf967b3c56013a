/* SPDX-License-Identifier: MIT */
/* lib/errors.h — the one place negative errno becomes a Retcode, at the API boundary. */
#ifndef KVMM_ERRORS_H
#define KVMM_ERRORS_H

#include <rtl/retcode.h>

/*
 * Internal code speaks negative errno; these are the meanings kosvmm gives them:
 *   -EINVAL  rcInvalidArgument    -ENOENT      rcResourceNotFound   -EEXIST  rcAlreadyExists
 *   -ENOMEM  rcOutOfMemory        -EOPNOTSUPP  rcInvalidOperation   -EACCES  rcNoCapability
 *   -EPERM   rcSecurityDisallow   -EKEYREVOKED rcHandleRevoked      -EDQUOT  rcQuotaExceeded
 *   -ENOSYS  rcUnimplemented      -EBUSY       rcBusy               other    rcFail
 */
Retcode kvmm_retcode(int neg_errno);

#endif
