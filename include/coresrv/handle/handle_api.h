/* SPDX-License-Identifier: MIT */
/* coresrv/handle/handle_api.h — closing and revoking handles (KasperskyOS handle API subset). */
#ifndef KOSVMM_CORESRV_HANDLE_HANDLE_API_H
#define KOSVMM_CORESRV_HANDLE_HANDLE_API_H

#include <handle/handletype.h>
#include <rtl/retcode.h>
#include <rtl/stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Handles form an inheritance tree, as on KasperskyOS: a clone (KnPmmMdlClone) and a copy sent to
 * another process (kosvmm_channel_send_handle) are descendants of the handle they came from.
 *
 * Revoking a handle revokes its descendants: they stay allocated (their owners close them with
 * KnHandleClose), but every later call given one of them, or one of their own descendants, in
 * this process or another, fails with rcHandleRevoked. A revocation reaches only the descendants
 * that exist when it happens. Neither closing nor revoking breaks a mapping made before; it stays
 * valid until KnVmUnmap. A call given a handle that is itself revoked fails with rcHandleRevoked
 * and changes nothing (close it with KnHandleClose).
 *
 * Revocation is enforced by kosvmm: a process that bypasses kosvmm keeps what the file
 * descriptors it received allow (see SECURITY.md).
 */

/*
 * KnHandleClose: frees the handle slot of this process. Its descendants are not affected. Never
 * breaks an existing mapping made through the handle. Returns rcOk; rcInvalidArgument for
 * INVALID_HANDLE, a value that was never issued, or one already closed (slots are
 * generation-checked, so a stale value never reaches another object). A revoked handle closes
 * like any other.
 */
Retcode KnHandleClose(Handle handle);

/*
 * KnHandleRevoke: revokes the descendants of handle and closes handle (KasperskyOS CE 1.3/1.4),
 * under one lock: no other thread sees handle open with its descendants revoked. The same as
 * KnHandleRevokeEx(handle, rtl_true). Returns rcOk; rcInvalidArgument for a value that is not an
 * open handle of this process (as for KnHandleClose, so revoking twice gives rcInvalidArgument
 * the second time); rcHandleRevoked when handle itself is revoked (nothing changes);
 * rcSecurityDisallow when the policy denies HandleRevoke (checked first).
 */
Retcode KnHandleRevoke(Handle handle);

/*
 * KnHandleRevokeEx: revokes the descendants of handle, then closes handle when close is rtl_true
 * (any non-zero value counts as true), or leaves it open and usable when close is rtl_false:
 * descendants made from it afterwards are live. Results as for KnHandleRevoke.
 */
Retcode KnHandleRevokeEx(Handle handle, rtl_bool close);

/*
 * KnHandleRevokeSubtree: on KasperskyOS, revokes only the subtree rooted at the copy of handle
 * made by the transfer associated with badge, a resource transfer context object. kosvmm has no
 * such objects (there is no KnHandleCreateBadge, and kosvmm_channel_send_handle carries no
 * badge), so no badge value can be valid. Checks, in this order, and nothing changes on any:
 *   rcSecurityDisallow  the policy denies HandleRevoke;
 *   rcInvalidArgument   handle is not an open handle of this process;
 *   rcHandleRevoked     handle itself is revoked;
 *   rcInvalidArgument   badge (always: see above).
 * To revoke what derives from a handle, use KnHandleRevokeEx(handle, rtl_false).
 */
Retcode KnHandleRevokeSubtree(Handle handle, Handle badge);

#ifdef __cplusplus
}
#endif

#endif /* KOSVMM_CORESRV_HANDLE_HANDLE_API_H */
