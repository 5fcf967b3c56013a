/* SPDX-License-Identifier: MIT */
/* tests/header_use.cpp — header_use.inc compiled as C++. */
#include "header_use.inc"
