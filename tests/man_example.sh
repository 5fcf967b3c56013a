#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/man_example.sh — prints the C code of a man page's EXAMPLE section (its first ``` block) as a source file.
# usage: man_example.sh PAGE.scd  (scdoc keeps a literal block's text as written; the page writes
# a C backslash as \\ so that roff shows one, hence the one substitution)
set -eu
awk '
    /^# / { in_example = ($0 == "# EXAMPLE"); next }
    in_example && /^```/ { if (inside) exit; inside = 1; next }
    inside { gsub(/\\\\/, "\\"); print }
' "$1"
