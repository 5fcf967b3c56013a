/* SPDX-License-Identifier: MIT */
/* coresrv/handle/handle_api.h — closing and revoking handles (KasperskyOS handle API subset). */
#ifndef KOSVMM_CORESRV_HANDLE_HANDLE_API_H
#define KOSVMM_CORESRV_HANDLE_HANDLE_API_H

#include <handle/handletype.h>
#include <rtl/retcode.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * KnHandleClose: frees the handle slot of this process. Never breaks an existing mapping made
 * through the handle. Returns rcOk; rcInvalidArgument for INVALID_HANDLE, a value that was never
 * issued, or one already closed (slots are generation-checked, so a stale value never reaches
 * another object).
 */
Retcode KnHandleClose(Handle handle);

/*
 * KnHandleRevoke: the handle stays allocated, but every later call given it, or any handle derived
 * from it, fails with rcHandleRevoked. Mappings that already exist stay valid until unmapped.
 * Returns rcOk; rcInvalidArgument as for KnHandleClose; rcHandleRevoked if already revoked.
 */
Retcode KnHandleRevoke(Handle handle);

#ifdef __cplusplus
}
#endif

#endif /* KOSVMM_CORESRV_HANDLE_HANDLE_API_H */
