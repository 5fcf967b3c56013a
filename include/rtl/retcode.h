/* SPDX-License-Identifier: MIT */
/* rtl/retcode.h — the Retcode type, its field layout and the SDK's return-code names. */
#ifndef KOSVMM_RTL_RETCODE_H
#define KOSVMM_RTL_RETCODE_H

#include <rtl/types.h>

/*
 * As in the KasperskyOS SDK, Retcode is a signed 32-bit integer: rcOk is 0 and every error code
 * is negative, so `rc < 0`, `rc != rcOk` and RC_FAILED(rc) all detect a failure.
 *
 * An error code is a structure of fields, named as the SDK documents them (Severity, Customer,
 * Space, Facility, Code). The SDK documentation does not publish the field widths nor the
 * numeric values of the names; these are kosvmm's (source compatibility, not binary):
 *
 *   bit  31     Severity  1 = error (the sign bit), 0 = success
 *   bit  30     Customer  1 = defined by the solution's developers, 0 = by the SDK (kosvmm)
 *   bits 29..24 Space     global ID: RC_SPACE_GENERAL, RC_SPACE_KERNEL, RC_SPACE_DRIVERS, ...
 *   bits 23..16 Facility  local ID within the space
 *   bits 15..0  Code      the error itself
 *
 * Every name below is a generic error (RC_SPACE_GENERAL, facility 0) with a distinct Code, so a
 * switch over all of them compiles. The values are built in int arithmetic without casts, so they
 * are integer constant expressions (case labels, static initialisers) in C and C++ alike.
 */
typedef rtl_int32_t Retcode;

#define RC_SEVERITY_SHIFT      31
#define RC_CUSTOMER_SHIFT      30
#define RC_SPACE_SHIFT         24
#define RC_FACILITY_SHIFT      16
#define RC_CUSTOMER_MASK       0x1
#define RC_SPACE_MASK          0x3F
#define RC_FACILITY_MASK       0xFF
#define RC_CODE_MASK           0xFFFF

/* The Severity bit, as a (negative) int: OR-ing it in makes a value negative without a cast. */
#define RC_FAIL_BIT            (-0x7FFFFFFF - 1)

#define RC_SPACE_GENERAL       0   /* generic errors, usable by any API */
#define RC_SPACE_KERNEL        1   /* errors specific to the kernel */
#define RC_SPACE_DRIVERS       2   /* errors specific to drivers */

/* An error code from its fields (customer 0 or 1). */
#define RC_MAKE_RETCODE(customer, space, facility, code)                                 \
    (RC_FAIL_BIT | (((customer) & RC_CUSTOMER_MASK) << RC_CUSTOMER_SHIFT) |              \
     (((space) & RC_SPACE_MASK) << RC_SPACE_SHIFT) |                                     \
     (((facility) & RC_FACILITY_MASK) << RC_FACILITY_SHIFT) | ((code) & RC_CODE_MASK))
/* A generic SDK error code (RC_SPACE_GENERAL, facility 0). */
#define RC_MAKE_ERROR(code)    RC_MAKE_RETCODE(0, RC_SPACE_GENERAL, 0, code)

/* The fields of rc (0 for every field of rcOk). */
#define RC_GET_SEVERITY(rc)    (((rc) >> RC_SEVERITY_SHIFT) & 0x1)
#define RC_GET_CUSTOMER(rc)    (((rc) >> RC_CUSTOMER_SHIFT) & RC_CUSTOMER_MASK)
#define RC_GET_SPACE(rc)       (((rc) >> RC_SPACE_SHIFT) & RC_SPACE_MASK)
#define RC_GET_FACILITY(rc)    (((rc) >> RC_FACILITY_SHIFT) & RC_FACILITY_MASK)
#define RC_GET_CODE(rc)        ((rc) & RC_CODE_MASK)

#define RC_SUCCEEDED(rc)       (((rc) & RC_FAIL_BIT) == 0)
#define RC_FAILED(rc)          (((rc) & RC_FAIL_BIT) != 0)

#define rcOk                   0
#define rcFail                 RC_MAKE_ERROR(1)   /* unexpected failure */
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
#define rcNotConnected         RC_MAKE_ERROR(13)  /* no peer on the other end */
#define rcBufferTooSmall       RC_MAKE_ERROR(14)  /* the output does not fit the caller's buffer */
#define rcInternalError        RC_MAKE_ERROR(15)  /* an inconsistency inside the callee */
#define rcTransferError        RC_MAKE_ERROR(16)  /* a message or handle could not be sent */
#define rcReceiveError         RC_MAKE_ERROR(17)  /* a message or handle could not be received */
#define rcSourceFault          RC_MAKE_ERROR(18)  /* the source memory is not readable */
#define rcTargetFault          RC_MAKE_ERROR(19)  /* the target memory is not writable */
#define rcIpcInterrupt         RC_MAKE_ERROR(20)  /* a blocking call was interrupted */
#define rcRestart              RC_MAKE_ERROR(21)  /* interrupted before it did anything: call again */
#define rcNotReady             RC_MAKE_ERROR(22)  /* not ready yet, or would block */
#define rcBufferTooLarge       RC_MAKE_ERROR(23)  /* the input exceeds what the callee accepts */
#define rcTimeout              RC_MAKE_ERROR(24)  /* the timeout expired */
#define rcFutexWouldBlock      RC_MAKE_ERROR(25)  /* the futex word did not hold the expected value */
#define rcAbort                RC_MAKE_ERROR(26)  /* the operation was cancelled */
#define rcInvalidThreadState   RC_MAKE_ERROR(27)  /* the thread is not in a state that allows it */
#define rcDeviceNotFound       RC_MAKE_ERROR(28)  /* no such device */

#endif /* KOSVMM_RTL_RETCODE_H */
