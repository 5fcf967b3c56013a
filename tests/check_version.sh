#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/check_version.sh — the project version, the .pc file, the soname, the file name, version.h and kosvmm_version() agree.
# usage: check_version.sh VERSION SOVERSION LIBRARY PCFILE PRINTER
set -eu
version=$1 soversion=$2 lib=$3 pc=$4 printer=$5
fail=0
check() {  # check WHAT GOT WANT
    if [ "$2" = "$3" ]; then echo "ok   $1: $2"; else echo "FAIL $1: '$2', expected '$3'"; fail=1; fi
}
major=${version%%.*} rest=${version#*.}
minor=${rest%%.*} patch=${rest#*.}

check "pkg-config Version" "$(sed -n 's/^Version: *//p' "$pc")" "$version"
check "soname" "$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')" "libkosvmm.so.$soversion"
check "soversion is the major version" "$soversion" "$major"
real=$(basename "$(readlink -f "$lib")")
check "library file" "$real" "libkosvmm.so.$version"

out=$("$printer")
field() { echo "$out" | sed -n "s/^$1 //p"; }
check "version.h MAJOR.MINOR.PATCH" "$(field header-parts)" "$major.$minor.$patch"
check "version.h KOSVMM_VERSION_STRING" "$(field header-string)" "$version"
check "version.h KOSVMM_VERSION_NUMBER" "$(field header-number)" "$((major * 10000 + minor * 100 + patch))"
check "KOSVMM_CHECK_VERSION (this, next patch)" "$(field check-version)" "1 0"
check "kosvmm_version()" "$(field runtime)" "$version"
# The printer must have loaded the library checked above, not one installed elsewhere.
check "library loaded" "$(ldd "$printer" | sed -n 's/.*libkosvmm\.so[^ ]* => \([^ ]*\).*/\1/p' | xargs -r readlink -f)" \
    "$(readlink -f "$lib")"
exit $fail
