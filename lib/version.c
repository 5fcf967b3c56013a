/* SPDX-License-Identifier: MIT */
/* lib/version.c — kosvmm_version(): the version of the library loaded, from the header it was built with. */
#include <kosvmm/version.h>

#include "visibility.h"

KVMM_PUBLIC const char *kosvmm_version(void)
{
    return KOSVMM_VERSION_STRING;
}
