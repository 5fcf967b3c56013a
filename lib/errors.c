/* SPDX-License-Identifier: MIT */
/* lib/errors.c — the one place negative errno becomes a Retcode, and Retcode names for printing. */
#include "errors.h"

#include <errno.h>
#include <rtl/retcode_hr.h>

#include "visibility.h"

/* The errno -> Retcode table (lib/errors.h explains each row). */
static const struct {
    int err;
    Retcode rc;
} errno_map[] = {
    {EINVAL, rcInvalidArgument},     {EBADF, rcInvalidArgument},
    {ENOMEM, rcOutOfMemory},
    {ENOENT, rcResourceNotFound},
    {EEXIST, rcAlreadyExists},
    {EOPNOTSUPP, rcInvalidOperation},
    {EACCES, rcNoCapability},
    {EPERM, rcSecurityDisallow},
    {EKEYREVOKED, rcHandleRevoked},
    {EDQUOT, rcQuotaExceeded},       {EMFILE, rcQuotaExceeded},     {ENFILE, rcQuotaExceeded},
    {ENOSYS, rcUnimplemented},
    {EBUSY, rcBusy},
    {ENOTCONN, rcNotConnected},
    {ERANGE, rcBufferTooSmall},
    {E2BIG, rcBufferTooLarge},       {EMSGSIZE, rcBufferTooLarge},
    {ENOTRECOVERABLE, rcInternalError},
    {EINTR, rcIpcInterrupt},
    {EAGAIN, rcNotReady},
    {ETIMEDOUT, rcTimeout},
    {ECANCELED, rcAbort},
    {ENODEV, rcDeviceNotFound},      {ENXIO, rcDeviceNotFound},
};

Retcode kvmm_retcode(int neg_errno)
{
    if (neg_errno == 0)
        return rcOk;
    for (size_t i = 0; i < sizeof errno_map / sizeof errno_map[0]; i++)
        if (-errno_map[i].err == neg_errno)
            return errno_map[i].rc;
    return rcFail;
}

KVMM_PUBLIC const char *rtl_retcode_name(Retcode rc)
{
    /* Indexed by RC_GET_CODE of the generic errors, which rtl/retcode.h numbers 1, 2, ... */
    static const char *const names[] = {
        "rcOk", "rcFail", "rcInvalidArgument", "rcOutOfMemory", "rcResourceNotFound",
        "rcAlreadyExists", "rcInvalidOperation", "rcNoCapability", "rcSecurityDisallow",
        "rcHandleRevoked", "rcQuotaExceeded", "rcUnimplemented", "rcBusy", "rcNotConnected",
        "rcBufferTooSmall", "rcInternalError", "rcTransferError", "rcReceiveError", "rcSourceFault",
        "rcTargetFault", "rcIpcInterrupt", "rcRestart", "rcNotReady", "rcBufferTooLarge",
        "rcTimeout", "rcFutexWouldBlock", "rcAbort", "rcInvalidThreadState", "rcDeviceNotFound",
    };
    int code = RC_GET_CODE(rc);
    if (rc == rcOk)
        return names[0];
    if (rc == RC_MAKE_ERROR(code) && code >= 1 && (size_t)code < sizeof names / sizeof names[0])
        return names[code];
    return "rcUnknown";
}
