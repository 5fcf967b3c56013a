/* SPDX-License-Identifier: MIT */
/* rtl/types.h — KasperskyOS runtime-library basic types (rtl_size_t, rtl_uint32_t, RTL_NULL, ...). */
#ifndef KOSVMM_RTL_TYPES_H
#define KOSVMM_RTL_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include <rtl/stdbool.h>

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

/* nullptr exists from C++11 on; C++98 gets the compiler's NULL (g++: __null), C gets (void *)0. */
#ifndef RTL_NULL
#  if defined(__cplusplus) && __cplusplus >= 201103L
#    define RTL_NULL nullptr
#  elif defined(__cplusplus)
#    define RTL_NULL NULL
#  else
#    define RTL_NULL ((void *)0)
#  endif
#endif

/* kosvmm's own helper for its public macros: a C cast in C, static_cast in C++, so that C++
 * code built with -Wold-style-cast stays free of warnings from kosvmm's headers. */
#ifdef __cplusplus
#  define KOSVMM_CAST(type, value) (static_cast<type>(value))
#else
#  define KOSVMM_CAST(type, value) ((type)(value))
#endif

#endif /* KOSVMM_RTL_TYPES_H */
