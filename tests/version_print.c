/* SPDX-License-Identifier: MIT */
/* tests/version_print.c — prints the header's version macros and kosvmm_version() of the loaded library. */
#include <stdio.h>

#include <kosvmm/kosvmm.h>

int main(void)
{
    /* The three numbers rebuilt here must give the header's string: the macros cannot drift apart. */
    printf("header-parts %d.%d.%d\n", KOSVMM_VERSION_MAJOR, KOSVMM_VERSION_MINOR, KOSVMM_VERSION_PATCH);
    printf("header-string %s\n", KOSVMM_VERSION_STRING);
    printf("header-number %d\n", KOSVMM_VERSION_NUMBER);
    printf("check-version %d %d\n", KOSVMM_CHECK_VERSION(KOSVMM_VERSION_MAJOR, KOSVMM_VERSION_MINOR,
                                                         KOSVMM_VERSION_PATCH),
           KOSVMM_CHECK_VERSION(KOSVMM_VERSION_MAJOR, KOSVMM_VERSION_MINOR, KOSVMM_VERSION_PATCH + 1));
    printf("runtime %s\n", kosvmm_version());
    return 0;
}
