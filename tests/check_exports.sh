#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/check_exports.sh — fails if the shared library exports anything but the names in the version script.
set -eu
lib=$1 map=$2
want=$(sed -n '/global:/,/local:/p' "$map" | tr ' ;' '\n\n' | grep -E '^[A-Za-z_][A-Za-z0-9_]*$' | grep -v -e global -e local | sort)
have=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRV]$/ {sub(/@.*/, "", $3); print $3}' | grep -v '^KOSVMM_' | sort -u)
if [ "$want" != "$have" ]; then
    echo "exported symbols differ from $map:"
    printf 'want:\n%s\nhave:\n%s\n' "$want" "$have"; exit 1
fi
echo "exports: $(echo "$have" | wc -l) symbols, all public"
