/* SPDX-License-Identifier: MIT */
/* lib/page_check.h — whether the host's page size agrees with hal/page.h (checked at load). */
#ifndef KVMM_PAGE_CHECK_H
#define KVMM_PAGE_CHECK_H

#include <stdbool.h>
#include <stddef.h>

/* Whether a host page of host bytes is hal/page.h's PAGE_SIZE. */
bool kvmm_page_size_matches(size_t host);

#endif
