/* lib/api_handle.c — the handle_api.h entry points over the handle table. */
#include <coresrv/handle/handle_api.h>

#include "errors.h"
#include "handle_table.h"
#include "visibility.h"

KVMM_PUBLIC Retcode KnHandleClose(Handle handle)
{
    return kvmm_retcode(kvmm_handle_close(handle));
}

KVMM_PUBLIC Retcode KnHandleRevoke(Handle handle)
{
    return kvmm_retcode(kvmm_handle_revoke(handle));
}
