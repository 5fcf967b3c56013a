#!/bin/sh
# SPDX-License-Identifier: MIT
# scripts/check_layers.sh — fails when an include or a symbol runs against kosvmm's layering (HACKING.md, "Layers").
#
#   scripts/check_layers.sh [SOURCE_ROOT [STATIC_ARCHIVE]]
#   scripts/check_layers.sh --self-test
#
# Include rules (on the sources):
#   1. lib/ is the core: no file in lib/ includes a header of src/ (the engines plug in below the
#      API through interfaces lib/ owns: lib/lazy.h, lib/fork.h, the handle ops).
#   2. One engine does not include another's headers (src/uffd <-> src/mdl_memfd).
#   3. Inside src/mdl_memfd the channel transport (channel*.c|h) sees only mdl.h of the MDL code.
#   4. Only lib/os_linux.c calls mmap, munmap, mprotect or madvise: the rest goes through lib/os.h.
# Symbol rules (on the static archive, when given): the object files of src/mdl_memfd reference
# each other without a circle (a file that needs another's functions is not needed by it), and the
# channel's objects need no kvmm_mdl_* function that mdl.h does not declare.
set -eu

if [ "${1:-}" = "--self-test" ]; then
    # The checks must catch what they are for: a tree with one violation of each include rule.
    t=$(mktemp -d)
    trap 'rm -rf "$t"' EXIT
    mkdir -p "$t/lib" "$t/src/uffd" "$t/src/mdl_memfd"
    : > "$t/src/uffd/uffd.h"; : > "$t/src/mdl_memfd/mdl.h"; : > "$t/src/mdl_memfd/mdl_internal.h"
    : > "$t/lib/ok.h"
    printf '#include "ok.h"\n' > "$t/lib/ok.c"
    "$0" "$t" >/dev/null || { echo "self-test: a clean tree was refused"; exit 1; }
    for bad in 'lib/a.c:#include "uffd/uffd.h"' 'lib/b.h:#include <mdl_memfd/mdl.h>' \
               'src/uffd/c.c:#include "mdl_memfd/mdl.h"' 'src/mdl_memfd/channel_x.c:#include "mdl_internal.h"' \
               'src/uffd/d.c:static void f(void) { munmap(0, 0); }'; do
        file=${bad%%:*}
        printf '%s\n' "${bad#*:}" > "$t/$file"
        if "$0" "$t" >/dev/null 2>&1; then
            echo "self-test: not caught: $file: ${bad#*:}"
            exit 1
        fi
        rm "$t/$file"
    done
    echo "self-test: every rule catches its violation"
    exit 0
fi

root=${1:-$(dirname "$0")/..}
archive=${2:-}
exec python3 - "$root" "$archive" <<'PY'
import os, re, subprocess, sys

root, archive = sys.argv[1], sys.argv[2]
inc = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)
errors, checked = [], 0

def includes(path):
    with open(path, encoding='utf-8', errors='replace') as f:
        return inc.findall(f.read())

def resolve_src(name, here):
    """The src/ file an include names (the build searches the including dir, lib/ and src/), or None."""
    for cand in (os.path.join(here, name), os.path.join(root, 'src', name)):
        if os.path.isfile(cand) and os.path.realpath(cand).startswith(os.path.realpath(os.path.join(root, 'src')) + os.sep):
            return os.path.relpath(os.path.realpath(cand), os.path.realpath(root))
    return None

def sources(d):
    for dirpath, _, files in os.walk(os.path.join(root, d)):
        for fn in sorted(files):
            if fn.endswith(('.c', '.h')):
                yield os.path.join(dirpath, fn)

for path in sources('lib'):
    checked += 1
    for name in includes(path):
        if os.path.isfile(os.path.join(root, 'lib', name)) and not os.path.isfile(os.path.join(root, 'src', name)):
            continue
        target = resolve_src(name, os.path.join(root, 'src'))
        if target:
            errors.append(f'{os.path.relpath(path, root)}: includes {name} ({target}): lib/ must not depend on src/')

engines = [d for d in sorted(os.listdir(os.path.join(root, 'src'))) if os.path.isdir(os.path.join(root, 'src', d))] \
    if os.path.isdir(os.path.join(root, 'src')) else []
for eng in engines:
    for path in sources(os.path.join('src', eng)):
        checked += 1
        rel = os.path.relpath(path, root)
        for name in includes(path):
            target = resolve_src(name, os.path.dirname(path))
            if not target:
                continue
            owner = target.split(os.sep)[1]
            if owner != eng:
                errors.append(f'{rel}: includes {name} ({target}): one engine must not include another\'s headers')
            elif eng == 'mdl_memfd' and os.path.basename(path).startswith('channel') \
                    and not os.path.basename(target).startswith('channel') and os.path.basename(target) != 'mdl.h':
                errors.append(f'{rel}: includes {name}: the channel transport may use only mdl.h of the MDL code')

raw = re.compile(r'\b(mmap|munmap|mprotect|madvise)\s*\(')
for d in ('lib', 'src'):
    for path in sources(d):
        rel = os.path.relpath(path, root)
        if rel == os.path.join('lib', 'os_linux.c') or not path.endswith('.c'):
            continue
        with open(path, encoding='utf-8', errors='replace') as f:
            for no, line in enumerate(f, 1):
                code = line.split('//')[0]
                if raw.search(code) and not code.lstrip().startswith(('*', '/*')):
                    errors.append(f'{rel}:{no}: calls {raw.search(code).group(1)} directly: use lib/os.h')

cycles = 0
if archive:
    # Which src/mdl_memfd object defines each symbol, and which symbols each one needs.
    out = subprocess.run(['nm', '-A', archive], capture_output=True, text=True, check=True).stdout
    defs, needs = {}, {}
    for line in out.splitlines():
        m = re.match(r'^[^:]*:([^:]+):\s*(?:[0-9a-fA-F]+)?\s+([A-Za-z])\s+(\S+)$', line)
        if not m:
            continue
        obj, kind, sym = m.groups()
        if 'mdl_memfd' not in obj:
            continue
        if kind == 'U':
            needs.setdefault(obj, set()).add(sym)
        elif kind.isupper():
            defs[sym] = obj
    # The channel transport's objects need of the MDL code only what mdl.h declares.
    mdl_h = os.path.join(root, 'src', 'mdl_memfd', 'mdl.h')
    if os.path.isfile(mdl_h):
        with open(mdl_h) as f:
            declared = set(re.findall(r'\b(kvmm_mdl_\w+)\s*\(', f.read()))
        for o, syms in sorted(needs.items()):
            if 'channel' in o:
                for sym in sorted(syms):
                    if sym.startswith('kvmm_mdl_') and sym not in declared:
                        errors.append(f'{o}: needs {sym}, which mdl.h does not declare: the channel uses only mdl.h')
    graph = {o: {defs[s] for s in syms if s in defs and defs[s] != o} for o, syms in needs.items()}
    state = {}
    def visit(o, stack):
        global cycles
        state[o] = 1
        for n in sorted(graph.get(o, ())):
            if state.get(n) == 1:
                ring = stack[stack.index(n):] + [n]
                errors.append('src/mdl_memfd objects in a circle: ' + ' -> '.join(ring))
                cycles += 1
            elif n not in state:
                visit(n, stack + [n])
        state[o] = 2
    for o in sorted(graph):
        if o not in state:
            visit(o, [o])
    if not graph:
        errors.append(f'{archive}: no src/mdl_memfd objects found: is this the static archive?')

for e in errors:
    print(e)
if checked == 0:
    print(f'{root}: no sources found under lib/ or src/')
    sys.exit(1)
print(f'check_layers: {checked} files' + (f', {archive} objects' if archive else '') +
      (': ok' if not errors else f': {len(errors)} violations'))
sys.exit(1 if errors else 0)
PY
