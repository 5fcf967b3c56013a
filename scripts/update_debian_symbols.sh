#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/update_debian_symbols.sh — regenerate debian/libkosvmm0.symbols from a fresh library-only build.
#
# Run it after adding an export to lib/kosvmm.map (docs/ABI.md). Symbols already listed keep the
# version that introduced them; new ones get the version of debian/changelog's top entry; a symbol
# that disappeared makes dpkg-gensymbols report it (and the package build would fail on it).
set -euo pipefail
cd "$(dirname "$0")/.."
builddir=${1:-build-lib}
scripts/build_library_only.sh "$builddir" >/dev/null
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$builddir" --no-rebuild --quiet --destdir "$stage"
version=$(dpkg-parsechangelog -S Version)
lib=$(find "$stage" -name 'libkosvmm.so.0.*' -type f -print -quit)
dpkg-gensymbols -plibkosvmm0 -P"$stage" -v"$version" -e"$lib" -Odebian/libkosvmm0.symbols -c1
echo "debian/libkosvmm0.symbols: $(grep -c '@KOSVMM' debian/libkosvmm0.symbols) symbols"
