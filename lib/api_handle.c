/* SPDX-License-Identifier: MIT */
/* lib/api_handle.c — the handle_api.h entry points over the handle table. */
#include <coresrv/handle/handle_api.h>

#include <errno.h>

#include "errors.h"
#include "handle_table.h"
#include "policy.h"
#include "visibility.h"

KVMM_PUBLIC Retcode KnHandleClose(Handle handle)
{
    return kvmm_retcode(kvmm_handle_close(handle));
}

KVMM_PUBLIC Retcode KnHandleRevokeEx(Handle handle, rtl_bool close)
{
    int rc = kvmm_policy_enter(KVMM_M_HANDLE_REVOKE);
    return kvmm_retcode(rc ? rc : kvmm_handle_revoke(handle, close != rtl_false));
}

KVMM_PUBLIC Retcode KnHandleRevoke(Handle handle)
{
    return KnHandleRevokeEx(handle, rtl_true);
}

KVMM_PUBLIC Retcode KnHandleRevokeSubtree(Handle handle, Handle badge)
{
    int rc = kvmm_policy_enter(KVMM_M_HANDLE_REVOKE);
    if (rc == 0)
        rc = kvmm_handle_check(handle);
    /* kosvmm has no resource transfer context objects (no KnHandleCreateBadge; channel transfers
     * carry none), so no value can name one: every badge is an invalid argument. */
    if (rc == 0)
        rc = -EINVAL;
    (void)badge;
    return kvmm_retcode(rc);
}
