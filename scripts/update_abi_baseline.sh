#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/update_abi_baseline.sh — regenerate abi/libkosvmm.abi, the ABI that scripts/check_abi.sh compares against.
#
# Run it when the ABI changes on purpose (docs/ABI.md says when): after an export is added to
# lib/kosvmm.map, after a versioned public struct grows, when the soversion is raised. It builds the
# library alone, as a release build with debug information (abidw reads the types from DWARF), into
# BUILDDIR (default build-lib/), and writes the baseline from its libkosvmm.so.0. Commit the result
# with the change that made it necessary.
set -euo pipefail
cd "$(dirname "$0")/.."
builddir=${1:-build-lib}
scripts/build_library_only.sh "$builddir"
mkdir -p abi
# Only the types declared in include/ (the public headers) are recorded; hash type ids and no paths or
# source locations keep the file the same whatever directory it was built in.
abidw --headers-dir include --drop-private-types --no-corpus-path --no-comp-dir-path --no-show-locs \
    --type-id-style hash --out-file abi/libkosvmm.abi "$builddir/libkosvmm.so.0"
echo "abi/libkosvmm.abi: $(grep -c '<elf-symbol ' abi/libkosvmm.abi) ELF symbols, $(grep -c '<function-decl ' abi/libkosvmm.abi) function declarations"
