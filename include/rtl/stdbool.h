/* SPDX-License-Identifier: MIT */
/* rtl/stdbool.h — the KasperskyOS runtime library's boolean type: rtl_bool, rtl_true, rtl_false. */
#ifndef KOSVMM_RTL_STDBOOL_H
#define KOSVMM_RTL_STDBOOL_H

/*
 * An int rather than C's _Bool or C++'s bool: the same size and calling convention in C99, C11,
 * C17 and every C++ standard, so a prototype taking rtl_bool (KnHandleRevokeEx) has one ABI
 * whichever language calls it. Any non-zero value means true.
 */
typedef int rtl_bool;

#define rtl_true  1
#define rtl_false 0

#endif /* KOSVMM_RTL_STDBOOL_H */
