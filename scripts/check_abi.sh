#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/check_abi.sh — compare a built libkosvmm.so.0 with the committed baseline abi/libkosvmm.abi; fail on a break.
#
# abidiff's exit status is a bit field (libabigail's abidiff(1)): 1 error, 2 usage error, 4 the ABI
# changed, 8 the change is incompatible (a function or variable removed, a symbol's version or type
# changed). Added functions are fine (docs/ABI.md): they are left out of the report, and a change
# that is only additions sets no bit. Bit 4 alone (a public type changed in a way abidiff cannot
# call incompatible, such as a struct growing) fails too, since docs/ABI.md allows such a change only
# together with a new baseline (scripts/update_abi_baseline.sh) in the same commit.
# Usage: check_abi.sh [BUILDDIR]  (default build-lib/, from scripts/build_library_only.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
lib=${1:-build-lib}/libkosvmm.so.0
[ -f "$lib" ] || { echo "check_abi: $lib not built (scripts/build_library_only.sh)" >&2; exit 1; }
rc=0
abidiff --no-added-syms --no-show-locs abi/libkosvmm.abi "$lib" || rc=$?
if [ $((rc & 3)) -ne 0 ]; then
    echo "check_abi: abidiff failed (exit $rc)"; exit 1
elif [ $((rc & 8)) -ne 0 ]; then
    echo "check_abi: INCOMPATIBLE ABI change against abi/libkosvmm.abi (exit $rc): see docs/ABI.md"; exit 1
elif [ $((rc & 4)) -ne 0 ]; then
    echo "check_abi: public types changed against abi/libkosvmm.abi (exit $rc): if docs/ABI.md allows it,"
    echo "           regenerate the baseline with scripts/update_abi_baseline.sh in the same commit"; exit 1
fi
echo "check_abi: $lib keeps the ABI of abi/libkosvmm.abi (new functions allowed)"
