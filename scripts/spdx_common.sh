# SPDX-License-Identifier: MIT
# scripts/spdx_common.sh — shared by add_spdx.sh and check_spdx.sh: which files need an SPDX line, and which line where.
# Sourced, not run. The line is "SPDX-License-Identifier: MIT" in the file's own comment syntax, on
# line 1, or on line 2 after a shebang, or after the first line of an scdoc page (scdoc requires
# its "name(section)" preamble first and allows no comment before it).
SPDX_TEXT='SPDX-License-Identifier: MIT'

# Source files of the tree: tracked and new (not ignored) ones, by extension; fuzzer corpora are data.
spdx_files() {
    local list
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        list=$(git ls-files -co --exclude-standard)
    else
        list=$(find . -type f ! -path './.git/*' ! -path './build*' | sed 's|^\./||')
    fi
    printf '%s\n' "$list" | grep -E '\.(c|h|in|sh|build|txt|map|py|gp|scd)$' \
        | grep -v -e '^tests/fuzz/corpus/' -e '^subprojects/' | while IFS= read -r f; do
        [ -f "$f" ] && printf '%s\n' "$f"
    done
}

# The comment style of a file: c (/* */), hash (#) or scd (;).
spdx_style() {
    case $1 in
        *.c|*.h|*.map) echo c ;;
        *.scd) echo scd ;;
        *.in)   # a template: C if it reads like C (the generated header and sources), # otherwise
            if head -n 1 "$1" | grep -qE '^(/\*|//|#(include|if|ifndef|ifdef|define|pragma))'; then echo c; else echo hash; fi ;;
        *) echo hash ;;
    esac
}

spdx_line() {  # spdx_line STYLE
    case $1 in
        c) echo "/* $SPDX_TEXT */" ;;
        scd) echo "; $SPDX_TEXT" ;;
        *) echo "# $SPDX_TEXT" ;;
    esac
}

# The line number the SPDX line belongs on.
spdx_position() {  # spdx_position FILE STYLE
    if [ "$2" = scd ]; then echo 2
    elif [ "$2" = hash ] && head -c 2 "$1" | grep -q '^#!'; then echo 2
    else echo 1
    fi
}
