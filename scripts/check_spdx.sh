#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/check_spdx.sh — fail if a source file lacks "SPDX-License-Identifier: MIT" where spdx_common.sh puts it.
# scripts/add_spdx.sh adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/spdx_common.sh
missing=0 total=0
while IFS= read -r f; do
    total=$((total + 1))
    style=$(spdx_style "$f")
    pos=$(spdx_position "$f" "$style")
    if [ "$(sed -n "${pos}p" "$f")" != "$(spdx_line "$style")" ]; then
        echo "no SPDX line: $f (line $pos should be '$(spdx_line "$style")')"
        missing=$((missing + 1))
    fi
done < <(spdx_files)
if [ "$missing" -gt 0 ]; then
    echo "check_spdx: $missing of $total source files lack the SPDX line: run scripts/add_spdx.sh"
    exit 1
fi
echo "check_spdx: all $total source files carry '$SPDX_TEXT'"
