/* SPDX-License-Identifier: MIT */
/* handle/handletype.h — the Handle type of KasperskyOS and its invalid value. */
#ifndef KOSVMM_HANDLE_HANDLETYPE_H
#define KOSVMM_HANDLE_HANDLETYPE_H

#include <rtl/types.h>

/* A per-process handle value: table slot and generation packed together, so a closed or forged
 * value is recognised as such rather than naming another object. */
typedef rtl_uint32_t Handle;

#define INVALID_HANDLE ((Handle)0xFFFFFFFFu)

#endif /* KOSVMM_HANDLE_HANDLETYPE_H */
