/* SPDX-License-Identifier: MIT */
/* rtl/types.h — KasperskyOS runtime-library basic types (rtl_size_t, rtl_uint32_t, RTL_NULL, ...). */
#ifndef KOSVMM_RTL_TYPES_H
#define KOSVMM_RTL_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef int8_t    rtl_int8_t;
typedef uint8_t   rtl_uint8_t;
typedef int16_t   rtl_int16_t;
typedef uint16_t  rtl_uint16_t;
typedef int32_t   rtl_int32_t;
typedef uint32_t  rtl_uint32_t;
typedef int64_t   rtl_int64_t;
typedef uint64_t  rtl_uint64_t;
typedef size_t    rtl_size_t;
typedef ptrdiff_t rtl_ptrdiff_t;
typedef intptr_t  rtl_intptr_t;
typedef uintptr_t rtl_uintptr_t;
typedef int       rtl_bool;

#ifndef RTL_NULL
#  ifdef __cplusplus
#    define RTL_NULL nullptr
#  else
#    define RTL_NULL ((void *)0)
#  endif
#endif

#define rtl_true  1
#define rtl_false 0

#endif /* KOSVMM_RTL_TYPES_H */
