/* SPDX-License-Identifier: MIT */
/* rtl/retcode_hr.h — human-readable printing of a Retcode: printf("..." RETCODE_HR_FMT, RETCODE_HR_PARAMS(rc)). */
#ifndef KOSVMM_RTL_RETCODE_HR_H
#define KOSVMM_RTL_RETCODE_HR_H

#include <rtl/retcode.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The SDK name of rc ("rcOutOfMemory"), or "rcUnknown" for a value no kosvmm call returns. */
const char *rtl_retcode_name(Retcode rc);

#ifdef __cplusplus
}
#endif

#define RETCODE_HR_FMT         "%s (0x%08x)"
#define RETCODE_HR_PARAMS(rc)  rtl_retcode_name(rc), (unsigned)(rc)

#endif /* KOSVMM_RTL_RETCODE_HR_H */
