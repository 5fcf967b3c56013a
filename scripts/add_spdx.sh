#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/add_spdx.sh — add "SPDX-License-Identifier: MIT" as the first comment line of every source file that lacks it.
#
# Idempotent: a file with an SPDX-License-Identifier in its first lines is left alone, so it can be
# re-run after merging branches. The files and the line per comment syntax are in spdx_common.sh;
# scripts/check_spdx.sh (run in CI) verifies the result.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/spdx_common.sh
added=0
while IFS= read -r f; do
    if head -n 3 "$f" | grep -qE '^(/\*|//|#|;) ?SPDX-License-Identifier:'; then continue; fi
    style=$(spdx_style "$f")
    line=$(spdx_line "$style")
    if [ ! -s "$f" ]; then
        printf '%s\n' "$line" > "$f"
    elif [ "$(spdx_position "$f" "$style")" = 2 ]; then
        sed -i "1a\\$line" "$f"
    else
        sed -i "1i\\$line" "$f"
    fi
    echo "added: $f"
    added=$((added + 1))
done < <(spdx_files)
echo "add_spdx: $added file(s) changed"
