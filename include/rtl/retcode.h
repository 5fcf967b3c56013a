/* SPDX-License-Identifier: MIT */
/* rtl/retcode.h — the Retcode type and the SDK's return-code names used by the VMM and handle APIs. */
#ifndef KOSVMM_RTL_RETCODE_H
#define KOSVMM_RTL_RETCODE_H

#include <rtl/types.h>

/*
 * Names follow the KasperskyOS SDK; numeric values are kosvmm's own (the goal is source
 * compatibility, not binary). Every failure has bit 31 set, so RC_FAILED() works on any of them.
 */
typedef rtl_uint32_t Retcode;

#define RC_FAIL_BIT            0x80000000u
#define RC_MAKE_ERROR(code)    ((Retcode)(RC_FAIL_BIT | (rtl_uint32_t)(code)))
#define RC_SUCCEEDED(rc)       (((rc) & RC_FAIL_BIT) == 0)
#define RC_FAILED(rc)          (((rc) & RC_FAIL_BIT) != 0)

#define rcOk                   ((Retcode)0)
#define rcFail                 RC_MAKE_ERROR(1)   /* unexpected failure, see errno-free logs */
#define rcInvalidArgument      RC_MAKE_ERROR(2)   /* malformed address, size, flags or pointer */
#define rcOutOfMemory          RC_MAKE_ERROR(3)   /* the kernel refused memory or map entries */
#define rcResourceNotFound     RC_MAKE_ERROR(4)   /* no region / object at that address or handle */
#define rcAlreadyExists        RC_MAKE_ERROR(5)   /* a fixed address overlaps an existing mapping */
#define rcInvalidOperation     RC_MAKE_ERROR(6)   /* valid arguments, but not allowed in this state */
#define rcNoCapability         RC_MAKE_ERROR(7)   /* the handle's rights do not allow it */
#define rcSecurityDisallow     RC_MAKE_ERROR(8)   /* denied by policy */
#define rcHandleRevoked        RC_MAKE_ERROR(9)   /* the handle (or its origin) was revoked */
#define rcQuotaExceeded        RC_MAKE_ERROR(10)  /* a configured limit would be exceeded */
#define rcUnimplemented        RC_MAKE_ERROR(11)  /* the host kernel lacks the mechanism */
#define rcBusy                 RC_MAKE_ERROR(12)  /* transiently busy, retry */

#endif /* KOSVMM_RTL_RETCODE_H */
