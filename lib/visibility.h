/* SPDX-License-Identifier: MIT */
/* lib/visibility.h — marks the public entry points; everything else is hidden (-fvisibility=hidden). */
#ifndef KVMM_VISIBILITY_H
#define KVMM_VISIBILITY_H

#define KVMM_PUBLIC __attribute__((visibility("default")))

#endif
