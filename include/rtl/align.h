/* SPDX-License-Identifier: MIT */
/* rtl/align.h — rounding to an alignment: rtl_align_up, rtl_align_down, rtl_is_aligned. */
#ifndef KOSVMM_RTL_ALIGN_H
#define KOSVMM_RTL_ALIGN_H

#include <rtl/types.h>

/*
 * align must be a non-zero power of two (PAGE_SIZE, 16, ...); for any other value the results
 * are meaningless. Functions rather than macros: x is evaluated once, and the mask is computed
 * at the full width of rtl_uintptr_t, so an alignment held in a narrower type cannot clear high
 * bits of x. rtl_align_up wraps to 0 when x lies within align - 1 of the top of the address
 * space; callers that take x from outside check for that (rtl_align_up(x, a) < x).
 */
static inline rtl_uintptr_t rtl_align_up(rtl_uintptr_t x, rtl_uintptr_t align)
{
    return (x + (align - 1)) & ~(align - 1);
}

static inline rtl_uintptr_t rtl_align_down(rtl_uintptr_t x, rtl_uintptr_t align)
{
    return x & ~(align - 1);
}

static inline rtl_bool rtl_is_aligned(rtl_uintptr_t x, rtl_uintptr_t align)
{
    return (x & (align - 1)) == 0;
}

#endif /* KOSVMM_RTL_ALIGN_H */
