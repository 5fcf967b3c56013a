/* SPDX-License-Identifier: MIT */
/* lib/ext_struct.h — the extensible-struct rule of kosvmm.h: a caller-set size, fields only appended. */
#ifndef KVMM_EXT_STRUCT_H
#define KVMM_EXT_STRUCT_H

#include <stddef.h>
#include <stdint.h>

/* The caller's size field (the first 4 bytes of every extensible struct). */
uint32_t kvmm_ext_size(const void *user);

/* 0 when size is accepted for a struct with this minimum and alignment, else -EINVAL. */
int kvmm_ext_check(uint32_t size, size_t min, size_t align);

/* Copies the library's struct (lib_size bytes) out to the caller's, whose size was checked: the
 * common prefix, zeros up to the caller's size, and the prefix length stored in its size field. */
void kvmm_ext_out(void *user, const void *lib, size_t lib_size);

/* Overlays the caller's struct, whose size was checked, on *lib (which holds the current values):
 * the common prefix is copied, lib's size field is left alone. -EINVAL, with *lib unchanged, when
 * the caller's bytes past lib_size are not all zero. */
int kvmm_ext_in(void *lib, const void *user, size_t lib_size);

#endif
