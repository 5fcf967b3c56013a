#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/build_library_only.sh — build libkosvmm alone (no tests, benchmarks or examples) as a release build, with Check hidden.
#
# Proves that a library-only build needs nothing but liburing and threads: meson sees a pkg-config
# search path holding liburing.pc alone, so Check or any other package cannot be found (and meson's
# CMake lookup finds no Check either: Debian's check ships no CMake package). The build is release
# (-O3) with debug information (-g: abidw reads the types from DWARF): the one scripts/update_abi_baseline.sh records and
# scripts/check_abi.sh compares. Usage: build_library_only.sh [BUILDDIR [MESON-OPTION...]].
set -euo pipefail
cd "$(dirname "$0")/.."
builddir=${1:-build-lib}
[ $# -gt 0 ] && shift
pcdir=$(mktemp -d)
trap 'rm -rf "$pcdir"' EXIT
ln -s "$(pkg-config --variable=pcfiledir liburing)/liburing.pc" "$pcdir/"
# Warnings are errors here as in every project build: this is the -O3 build that CI compiles, so
# it is where a warning only the optimiser sees would show first.
opts=(-Doptimization=3 -Ddebug=true -Dwerror=true -Dtests=disabled -Dbench=disabled -Dexamples=disabled "$@")
if [ -f "$builddir/build.ninja" ]; then
    PKG_CONFIG_LIBDIR=$pcdir PKG_CONFIG_PATH= meson setup --reconfigure "$builddir" "${opts[@]}" \
        || PKG_CONFIG_LIBDIR=$pcdir PKG_CONFIG_PATH= meson setup --wipe "$builddir" "${opts[@]}"
else
    PKG_CONFIG_LIBDIR=$pcdir PKG_CONFIG_PATH= meson setup "$builddir" "${opts[@]}"
fi
if grep -q 'dependency check' "$builddir/meson-logs/meson-log.txt"; then
    echo "$builddir: a library-only build looked up Check" >&2; exit 1
fi
ninja -C "$builddir"
