/* SPDX-License-Identifier: MIT */
/* lib/errors.c — the one place negative errno becomes a Retcode, and Retcode names for printing. */
#include "errors.h"

#include <errno.h>
#include <rtl/retcode_hr.h>

#include "visibility.h"

Retcode kvmm_retcode(int neg_errno)
{
    switch (neg_errno) {
    case 0:            return rcOk;
    case -EINVAL:      return rcInvalidArgument;
    case -EBADF:       return rcInvalidArgument;
    case -ENOMEM:      return rcOutOfMemory;
    case -ENOENT:      return rcResourceNotFound;
    case -EEXIST:      return rcAlreadyExists;
    case -EOPNOTSUPP:  return rcInvalidOperation;
    case -EACCES:      return rcNoCapability;
    case -EPERM:       return rcSecurityDisallow;
    case -EKEYREVOKED: return rcHandleRevoked;
    case -EDQUOT:      return rcQuotaExceeded;
    case -ENOSYS:      return rcUnimplemented;
    case -EBUSY:       return rcBusy;
    default:           return rcFail;
    }
}

KVMM_PUBLIC const char *rtl_retcode_name(Retcode rc)
{
    static const char *const names[] = {
        "rcOk", "rcFail", "rcInvalidArgument", "rcOutOfMemory", "rcResourceNotFound",
        "rcAlreadyExists", "rcInvalidOperation", "rcNoCapability", "rcSecurityDisallow",
        "rcHandleRevoked", "rcQuotaExceeded", "rcUnimplemented", "rcBusy",
    };
    rtl_uint32_t code = rc & ~RC_FAIL_BIT;
    if (rc == rcOk)
        return names[0];
    if (RC_FAILED(rc) && code >= 1 && code < sizeof names / sizeof names[0])
        return names[code];
    return "rcUnknown";
}
