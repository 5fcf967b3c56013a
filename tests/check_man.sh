#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/check_man.sh — every exported function has a man page or an alias; pages are listed, complete and named right.
# usage: check_man.sh MAP MANDIR PAGE... (PAGE: the names man/meson.build builds, e.g. KnVmAllocate.3)
# Plain text only, so it runs where scdoc is missing too.
set -eu
map=$1 dir=$2
shift 2
fail=0
bad() { echo "FAIL $*"; fail=1; }

# Exported names: the identifiers of the map's global: lists (every version node), without comments,
# node names (before '{' or after '}') and the local: catch-all.
exports=$(sed -e 's#/\*.*\*/##g' "$map" | tr '\n' ' ' | sed -e 's/}[^;]*;/ /g' -e 's/[A-Za-z0-9_.]* *{/ /g' \
    -e 's/local: *\*;//g' | tr ' ;:' '\n\n\n' | grep -E '^[A-Za-z_][A-Za-z0-9_]*$' | grep -vx -e global -e local | sort -u)
[ -n "$exports" ] || { bad "no exported names found in $map"; exit 1; }

aliases=$(sed -e 's/#.*//' "$dir/aliases" | awk 'NF')
# The NAME section of a page: the lines between '# NAME' and the next heading.
name_section() { sed -n '/^# NAME/,/^# /p' "$dir/$1.scd"; }

# Pages listed in man/meson.build against the files present.
for p in "$@"; do
    [ -f "$dir/$p.scd" ] || bad "$p is listed in man/meson.build but $dir/$p.scd does not exist"
done
for f in "$dir"/*.scd; do
    p=$(basename "$f" .scd)
    case " $* " in *" $p "*) ;; *) bad "$p.scd exists but is not listed in man/meson.build (it would not be built)";; esac
done

# Each page: its title line, and the sections every page needs.
for p in "$@"; do
    [ -f "$dir/$p.scd" ] || continue
    name=${p%.*} section=${p##*.}
    head -n 1 "$dir/$p.scd" | grep -q "^$name($section)" || bad "$p.scd: first line must be '$name($section)'"
    if [ "$section" = 3 ]; then
        need="NAME|SYNOPSIS|DESCRIPTION|RETURN VALUE|ERRORS|HOST DIFFERENCES|EXAMPLE|SEE ALSO"
    else
        need="NAME|DESCRIPTION|SEE ALSO"
    fi
    IFS='|'
    for s in $need; do
        grep -qx "# $s" "$dir/$p.scd" || bad "$p.scd: no '# $s' section"
    done
    unset IFS
    name_section "$p" | grep -qw -- "$name" || bad "$p.scd: NAME section does not name $name"
done

# Aliases: the page exists and names the alias in its NAME section; an alias is not also a page.
echo "$aliases" | while read -r alias page rest; do
    [ -n "${alias:-}" ] || continue
    [ -z "${rest:-}" ] || bad "aliases: '$alias $page $rest': one alias and one page per line"
    if [ ! -f "$dir/$page.3.scd" ]; then
        bad "aliases: $alias -> $page, but $dir/$page.3.scd does not exist"
    elif ! name_section "$page.3" | grep -qw -- "$alias"; then
        bad "aliases: $alias -> $page, but the NAME section of $page.3.scd does not name $alias"
    fi
    [ ! -f "$dir/$alias.3.scd" ] || bad "aliases: $alias has its own page too"
done > "${TMPDIR:-/tmp}/check_man.$$" || true
if [ -s "${TMPDIR:-/tmp}/check_man.$$" ]; then cat "${TMPDIR:-/tmp}/check_man.$$"; fail=1; fi
rm -f "${TMPDIR:-/tmp}/check_man.$$"

# Every export: a page of its own or an alias.
missing=0
for sym in $exports; do
    if [ -f "$dir/$sym.3.scd" ]; then continue; fi
    if echo "$aliases" | awk -v s="$sym" '$1 == s {found = 1} END {exit !found}'; then continue; fi
    bad "$sym is exported ($map) but has no man page ($dir/$sym.3.scd) and no line in $dir/aliases"
    missing=$((missing + 1))
done
echo "man: $(echo "$exports" | wc -l) exported functions, $missing without a page; $# pages, $(echo "$aliases" | awk 'NF' | wc -l) aliases"
exit $fail
