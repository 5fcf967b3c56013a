/* SPDX-License-Identifier: MIT */
/* lib/ext_struct.c — the extensible-struct rule of kosvmm.h: a caller-set size, fields only appended. */
#include "ext_struct.h"

#include <errno.h>
#include <kosvmm/kosvmm.h>
#include <string.h>

uint32_t kvmm_ext_size(const void *user)
{
    uint32_t size;
    memcpy(&size, user, sizeof size);
    return size;
}

/* A size that is not a multiple of the alignment would end inside a field; one below the minimum
 * carries no field; one above the maximum is garbage, not a struct from any release. */
int kvmm_ext_check(uint32_t size, size_t min, size_t align)
{
    return size >= min && size <= KOSVMM_STRUCT_SIZE_MAX && size % align == 0 ? 0 : -EINVAL;
}

void kvmm_ext_out(void *user, const void *lib, size_t lib_size)
{
    size_t size = kvmm_ext_size(user);
    uint32_t n = (uint32_t)(size < lib_size ? size : lib_size);
    memcpy(user, lib, n);
    memset((char *)user + n, 0, size - n);
    memcpy(user, &n, sizeof n);
}

int kvmm_ext_in(void *lib, const void *user, size_t lib_size)
{
    size_t size = kvmm_ext_size(user);
    for (size_t i = lib_size; i < size; i++)
        if (((const unsigned char *)user)[i])
            return -EINVAL;
    uint32_t keep = kvmm_ext_size(lib);
    memcpy(lib, user, size < lib_size ? size : lib_size);
    memcpy(lib, &keep, sizeof keep);
    return 0;
}
