/* SPDX-License-Identifier: MIT */
/* lib/api_handle.c — the handle_api.h entry points over the handle table. */
#include <coresrv/handle/handle_api.h>

#include "errors.h"
#include "handle_table.h"
#include "policy.h"
#include "visibility.h"

KVMM_PUBLIC Retcode KnHandleClose(Handle handle)
{
    return kvmm_retcode(kvmm_handle_close(handle));
}

KVMM_PUBLIC Retcode KnHandleRevoke(Handle handle)
{
    int rc = kvmm_policy_enter(KVMM_M_HANDLE_REVOKE);
    return kvmm_retcode(rc ? rc : kvmm_handle_revoke(handle));
}
