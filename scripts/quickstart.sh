#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/quickstart.sh — install what is missing, build and run kosvmm: `quickstart.sh demo` or `quickstart.sh test`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PACKAGES=(meson ninja-build pkg-config gcc g++ liburing-dev check gnuplot-nox scdoc mandoc)
# The project's own builds treat warnings as errors; users' builds do not (meson.build's defaults).
WERROR=-Dwerror=true
DEMOS=(mdl_stream vmm_tour)   # mdl_stream first: the main demo (two processes, an MDL ring, a read-only handle)
UNPRIV_UID=65534            # nobody: exists on every Debian system, owns nothing
TEST_TIMEOUT=300            # per executable in the unprivileged run; Check also times out each test itself

passed=0 failed=0 skipped=0
summary=()

usage() {
    echo "usage: $0 demo|test" >&2
    echo "  demo  build (debugoptimized) and run the example programs" >&2
    echo "  test  run the suite in a normal and an ASan+UBSan build (each also with userfaultfd and io_uring" >&2
    echo "        blocked), under TSan, once more unprivileged, then smoke tests" >&2
    exit 2
}

log() { printf '\n=== %s\n' "$*"; }

# Without dpkg (not Debian) fall back to asking for the tools and libraries themselves.
package_missing() {
    if command -v dpkg >/dev/null 2>&1; then
        [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" != "install ok installed" ]
        return
    fi
    case $1 in
        ninja-build) ! command -v ninja >/dev/null 2>&1 ;;
        liburing-dev) ! pkg-config --exists liburing 2>/dev/null ;;
        check) ! pkg-config --exists check 2>/dev/null ;;
        *) ! command -v "$1" >/dev/null 2>&1 ;;
    esac
}

ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        if package_missing "$p"; then missing+=("$p"); fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${missing[*]}" >&2
        echo "install them as root: apt-get install -y --no-install-recommends ${PACKAGES[*]}" >&2
        exit 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${PACKAGES[@]}"
}

# A build dir left by another meson version or other options is reconfigured; if that fails it is wiped.
configure() {
    local dir=$1; shift
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" "$@" || meson setup --wipe "$dir" "$@"
    else
        meson setup "$dir" "$@"
    fi
}

# Each line carries the seconds since the previous one, so a run near CI's 20-minute limit shows
# which step grew.
step_start=$SECONDS
record() {  # record NAME PASSED FAILED SKIPPED
    passed=$((passed + $2)) failed=$((failed + $3)) skipped=$((skipped + $4))
    summary+=("$(printf '%-34s %3d passed, %d failed, %d skipped  %4d s' "$1" "$2" "$3" "$4" $((SECONDS - step_start)))")
    step_start=$SECONDS
}

# Runs `meson test` in a build dir (any further arguments go to it: --suite ..., or a command such as
# setarch in front of it with RUN_PREFIX) and adds meson's own Ok/Fail/Skipped counts to the totals.
run_meson_suite() {
    local name=$1 dir=$2 out rc=0 ok fail skip
    shift 2
    out=$(mktemp)
    log "$name: ${RUN_PREFIX:+$RUN_PREFIX }meson test -C $dir $*"
    ${RUN_PREFIX:-} meson test -C "$dir" --print-errorlogs "$@" 2>&1 | tee "$out" || rc=$?
    ok=$(awk '/^Ok:/ {print $2}' "$out")
    skip=$(awk '/^Skipped:/ {print $2}' "$out")
    fail=$(awk '/^(Fail|Timeout|Unexpected Pass):/ {n += $NF} END {print n + 0}' "$out")
    rm -f "$out"
    if [ -z "$ok" ]; then   # no summary at all: meson itself failed (build error, bad option)
        ok=0 skip=0 fail=1
    elif [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
        fail=1
    fi
    record "$name" "$ok" "$fail" "${skip:-0}"
}

# One step that is either fine or not, counted like a test so the final line covers everything that ran.
run_step() {
    local name=$1; shift
    log "$name: $*"
    if "$@"; then record "$name" 1 0 0; else record "$name" 0 1 0; fi
}

build() {
    local dir=$1; shift
    configure "$dir" "$@" && ninja -C "$dir"
}

# `meson test` as another user would need write access to meson-logs, so the unprivileged run executes the
# test programs directly, from a copy that user can read even if the checkout lives in /root.
run_unprivileged() {
    local name="unprivileged (uid $UNPRIV_UID)" tmp t rc ok=0 fail=0 skip=0
    if [ "$(id -u)" -ne 0 ]; then
        echo "note: not root, so the two meson runs above already ran unprivileged; skipping the extra run"
        return 0
    fi
    tmp=$(mktemp -d)
    for t in build/tests/test_*; do   # skips the test_*.p object dirs meson keeps next to the programs
        if [ -f "$t" ] && [ -x "$t" ]; then cp "$t" "$tmp"/; fi
    done
    # test_entity starts its processes through the stub; it looks for a copy beside itself.
    if [ -x build/kosvmm-entity-stub ]; then cp build/kosvmm-entity-stub "$tmp"/; fi
    chmod 755 "$tmp"
    log "$name: each build/tests/test_* via setpriv, ${TEST_TIMEOUT}s limit each, two at a time"
    # Two at a time, like meson test: the suites mostly wait on forks and faults, and one after the
    # other they were the longest serial stretch of the CI run. Each writes its log and exit status
    # to files; the results are read back in name order so the output stays stable.
    printf '%s\0' "$tmp"/test_* | UNPRIV_UID=$UNPRIV_UID TEST_TIMEOUT=$TEST_TIMEOUT xargs -0 -r -n 1 -P 2 sh -c '
        t=$1
        [ -f "$t" ] || exit 0
        rc=0
        (cd "$(dirname "$t")" && env -i PATH=/usr/bin:/bin TMPDIR=/tmp HOME=/ \
            setpriv --reuid="$UNPRIV_UID" --regid="$UNPRIV_UID" --clear-groups --inh-caps=-all \
            timeout --kill-after=10 "$TEST_TIMEOUT" "$t") >"$t.log" 2>&1 || rc=$?
        echo "$rc" >"$t.rc"' sh
    for t in "$tmp"/test_*; do
        [ -f "$t.rc" ] || continue
        rc=$(cat "$t.rc")
        case $rc in
            0) ok=$((ok + 1)); echo "  ok    $(basename "$t")" ;;
            77) skip=$((skip + 1)); echo "  skip  $(basename "$t")" ;;
            *) fail=$((fail + 1)); echo "  FAIL  $(basename "$t") (exit $rc)"; cat "$t.log" ;;
        esac
    done
    rm -rf "$tmp"
    record "$name" "$ok" "$fail" "$skip"
}

# ThreadSanitizer over every unit suite it can run (tests/meson.build puts the others, and why, in
# suite 'no-tsan'); the hostile-environment runs are covered by the two builds above. Any report fails
# the run: halt_on_error/abort_on_error; handle_segv=0 as for ASan (the suites fault on purpose);
# die_after_fork=0 because suites fork multi-threaded processes whose children start kosvmm's fault
# handler thread, which TSan refuses by default.
run_tsan() {
    local rnd_bits
    run_step "build (build-tsan/)" build build-tsan $WERROR -Db_sanitize=thread -Db_lundef=false
    # GCC 12's TSan knows only the memory layout of up to 28 bits of mmap randomisation; kernels and
    # distributions now default to more (vm.mmap_rnd_bits=32), and TSan then dies at start with
    # "unexpected memory mapping". Running without address randomisation (setarch -R, inherited by
    # every test process) needs no privilege and changes nothing outside this run.
    rnd_bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 0)
    local RUN_PREFIX=
    if [ "$rnd_bits" -gt 28 ]; then
        RUN_PREFIX="setarch $(uname -m) -R"
        echo "vm.mmap_rnd_bits=$rnd_bits: running the TSan suites with $RUN_PREFIX"
    fi
    TSAN_OPTIONS=halt_on_error=1:abort_on_error=1:second_deadlock_stack=1:handle_segv=0:die_after_fork=0 \
        run_meson_suite "meson test (build-tsan/)" build-tsan --suite unit --no-suite no-tsan --no-suite huge-off
}

# The SDK-path headers must sit under <includedir>/kosvmm/sdk/: nothing but kosvmm/ may appear in the
# include directory itself (rtl/, vmm/, handle/ are generic names another package may own).
headers_contained() {  # headers_contained INCLUDEDIR
    local stray
    [ -f "$1/kosvmm/kosvmm.h" ] && [ -f "$1/kosvmm/sdk/coresrv/vmm/vmm_api.h" ] \
        || { echo "headers missing under $1/kosvmm/"; return 1; }
    stray=$(find "$1" -mindepth 1 -maxdepth 1 ! -name kosvmm)
    [ -z "$stray" ] || { echo "installed beside $1/kosvmm/:"; echo "$stray"; return 1; }
}

# Installs into a staging dir and builds an outside project against the staged kosvmm.pc, as a user would.
pkgconfig_consumer() {
    local stage=$ROOT/build/pc-stage cbuild=$ROOT/build/pc-consumer pcfile pcdir libdir
    rm -rf "$stage" "$cbuild"
    meson install -C build --no-rebuild --quiet --destdir "$stage" || return 1
    pcfile=$(find "$stage" -name kosvmm.pc -print -quit)
    [ -n "$pcfile" ] || { echo "no kosvmm.pc installed"; return 1; }
    pcdir=$(dirname "$pcfile") libdir=$(dirname "$pcdir")
    headers_contained "$stage$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=includedir kosvmm)" || return 1
    # The sysroot makes pkg-config prefix every -I/-L with the staging dir, so the .pc is used unmodified.
    PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$stage pkg-config --cflags --libs kosvmm || return 1
    PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$stage meson setup "$cbuild" examples/pkgconfig_consumer \
        && ninja -C "$cbuild" && LD_LIBRARY_PATH=$libdir "$cbuild/consumer"
}

# Build only (the suites ran above): -O3 and clang must stay warning-free too, as the issue-11 GCC 12
# -O3 false positive showed; a user's build of either must never fail. The clang build also holds
# the fuzzers (-Dfuzz=true adds two targets), so the fuzz step needs no configure and library build
# of its own.
build_clang() {
    (PACKAGES=(clang libclang-rt-14-dev); ensure_packages) || return 1
    CC=clang build build-clang $WERROR -Dfuzz=true
}

# mandoc's lint of every page scdoc generated. scdoc 1.11 starts every paragraph with .P, also
# right after .SH, which mandoc reports as "skipping paragraph macro"; those come from the generator,
# not the page, so they alone are not failures. Anything else at warning level or above fails.
man_lint() {
    local p out rc=0 n=0 links=0
    for p in build/man/*.[37]; do
        [ -f "$p" ] || continue
        # The alias pages (man/aliases) hold one `.so` line, which mandoc cannot resolve outside
        # an installed tree; tests/check_man.sh checks that each names an existing page.
        if [ "$(head -c 4 "$p")" = ".so " ]; then links=$((links + 1)); continue; fi
        n=$((n + 1))
        out=$(mandoc -T lint -W warning "$p" 2>&1 | grep -v -E 'WARNING: skipping paragraph macro: PP (empty|after SH)$' || true)
        if [ -n "$out" ]; then echo "$out"; rc=1; fi
    done
    [ "$n" -gt 0 ] || { echo "no generated man pages in build/man (is scdoc installed?)"; return 1; }
    echo "mandoc lint: $n pages ($links alias links not linted)"
    return $rc
}

# A parent project with its own (meson's default) options using kosvmm from subprojects/, as the
# README shows: the library must configure and build there, without werror and whatever else the
# parent chooses. Only the parent's program and what it needs are built.
subproject_parent() {
    local dir=$ROOT/build/subproject-parent
    rm -rf "$dir"
    mkdir -p "$dir/subprojects"
    cp examples/subproject_parent/meson.build examples/subproject_parent/parent.c "$dir"/
    ln -s "$ROOT" "$dir/subprojects/kosvmm"
    meson setup --force-fallback-for=kosvmm "$dir/build" "$dir" && ninja -C "$dir/build" parent && "$dir/build/parent"
}

# The release tarball: `meson dist` from the committed tree (--allow-dirty: a developer's edits are
# simply not in it), then a fresh configure and build of the extracted tarball. The suites are not
# run again here; `meson dist` without --no-tests does that, at the cost of a whole test run.
dist_tarball() {
    local dist=build/meson-dist tarball tmp
    rm -rf "$dist"
    meson dist -C build --no-tests --allow-dirty --formats xztar || return 1
    tarball=$(ls "$dist"/kosvmm-*.tar.xz) || return 1
    tmp=$(mktemp -d)
    # Configuring checks every file the build names (meson's files() refuses a missing one), tests
    # and examples included; building the library and the stub then proves the tarball compiles.
    # The whole tree is not built again: the same committed files were built four times above.
    tar -C "$tmp" -xJf "$tarball" && meson setup "$tmp/build" "$tmp"/kosvmm-* $WERROR \
        && meson compile -C "$tmp/build" kosvmm:shared_library kosvmm:static_library kosvmm-entity-stub \
        || { rm -rf "$tmp"; return 1; }
    echo "$(basename "$tarball"): configures, and the library builds"
    rm -rf "$tmp"
}

# Copies the source tree as git sees it (tracked and new files, nothing ignored such as build dirs) into DEST.
copy_tree() {  # copy_tree DEST
    mkdir -p "$1"
    git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
        [ -e "$f" ] && printf '%s\0' "$f"   # a tracked file deleted in the work tree is left out
    done | tar --null -T - -cf - | tar -xf - -C "$1"
}

# The library alone, without Check anywhere in sight (scripts/build_library_only.sh hides it), then
# its exported ABI against the committed baseline (docs/ABI.md): added functions pass, breaks fail.
library_only() {
    scripts/build_library_only.sh build-lib
}
abi_check() {
    (PACKAGES=(abigail-tools); ensure_packages) || return 1
    scripts/check_abi.sh build-lib
}

# Builds the Debian packages from a copy of the tree: dpkg-buildpackage writes into the parent of the
# source directory, and CI's checkout sits in a folder whose parent is not ours, so the copy and every
# result live in a temporary directory and the checkout stays clean. nocheck: the suites already ran
# above, in three builds. Then lintian (errors fail), and as root: install the three packages, build
# examples/pkgconfig_consumer against the installed libkosvmm-dev, run it and an installed demo,
# and purge the packages again, whatever happened.
debian_packages() {
    (PACKAGES=(debhelper dpkg-dev lintian scdoc pkgconf); ensure_packages) || return 1
    local work rc=0 version
    work=$(mktemp -d)
    version=$(dpkg-parsechangelog -S Version)
    copy_tree "$work/kosvmm-$version" || { rm -rf "$work"; return 1; }
    if ! (cd "$work/kosvmm-$version" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
            dpkg-buildpackage -us -uc -b -Pnocheck) >"$work/build.log" 2>&1; then
        tail -n 60 "$work/build.log"; rm -rf "$work"; return 1
    fi
    ls "$work"/*.deb
    lintian --fail-on error "$work"/*.changes || rc=1
    if [ "$(id -u)" -ne 0 ]; then
        echo "note: not root, so the packages are built and checked but not installed"
    elif [ "$rc" -eq 0 ]; then
        apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 \
            "$work/libkosvmm0_${version}_"*.deb "$work/libkosvmm-dev_${version}_"*.deb \
            "$work/kosvmm-tools_${version}_"*.deb || rc=1
        if [ "$rc" -eq 0 ]; then
            # Only include/kosvmm/ may be shipped below /usr/include (the SDK paths sit in kosvmm/sdk/).
            if dpkg -L libkosvmm-dev | grep '^/usr/include/.' | grep -v '^/usr/include/kosvmm\(/\|$\)'; then
                echo "libkosvmm-dev ships headers outside /usr/include/kosvmm/"; rc=1
            fi
            (unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
             pkg-config --cflags --libs kosvmm \
                && meson setup "$work/consumer" examples/pkgconfig_consumer \
                && ninja -C "$work/consumer" && "$work/consumer/consumer") || rc=1
            /usr/libexec/kosvmm/vmm_tour >/dev/null || { echo "installed vmm_tour failed"; rc=1; }
            # The SDK's Einit path as installed: the runner finds the stub where libkosvmm0 put it.
            /usr/libexec/kosvmm/elf_loader /usr/libexec/kosvmm/elf_images >/dev/null \
                || { echo "installed elf_loader failed"; rc=1; }
        fi
        apt-get purge -y -o DPkg::Lock::Timeout=300 libkosvmm0 libkosvmm-dev kosvmm-tools || rc=1
    fi
    rm -rf "$work"
    return "$rc"
}

demo() {
    ensure_packages
    log "configure and build (build/, debugoptimized: -O2 -g)"
    build build
    local d rc=0
    for d in "${DEMOS[@]}"; do
        log "build/examples/$d"
        "build/examples/$d"
    done
    # The SDK's Einit path end to end: each image of elf_images/ through KnElfCreateVmSegEx,
    # EntityInitFromSegEx, EntityRun and EntityWait; the runner checks each result (hello exits 42,
    # args 0, fault dies of SIGSEGV) and fails the demo if one differs.
    if [ -x build/examples/elf_loader ]; then
        log "build/examples/elf_loader --stub build/kosvmm-entity-stub build/examples/elf_images"
        build/examples/elf_loader --stub build/kosvmm-entity-stub build/examples/elf_images || rc=$?
        [ "$rc" -eq 0 ] || { echo "elf_loader: an image did not end as expected (exit status $rc)" >&2; return 1; }
    fi
    if [ -x build/bench/kosvmm-bench-lazy ]; then
        log "build/bench/kosvmm-bench-lazy --quick   (a short run of the lazy-faulting benchmark)"
        build/bench/kosvmm-bench-lazy --quick
    fi
}

# The fuzzers (tests/fuzz/), built by build_clang: with ASan+UBSan from the committed seed corpora,
# the model-based fuzzer 45 s, the ELF parser 20 s. New inputs go to build-clang/corpus and
# build-clang/corpus_elf (the first corpus directory), so tests/fuzz/corpus* stay as committed. A
# disagreement with the model, a read outside an ELF image or anything left behind aborts a fuzzer:
# the input is saved under build-clang/artifacts/ and the step fails.
fuzz_smoke() (   # a subshell: the sanitizer options exported here stay here
    local b=build-clang
    [ -x $b/tests/fuzz/fuzz_vmm ] && [ -x $b/tests/fuzz/fuzz_elf ] || { echo "no fuzzers in $b/ (did its build fail?)"; return 1; }
    mkdir -p $b/corpus $b/corpus_elf $b/artifacts
    export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:handle_segv=0
    export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1:handle_segv=0
    $b/tests/fuzz/fuzz_vmm -max_total_time=45 -max_len=4096 -print_final_stats=1 \
        -artifact_prefix=$b/artifacts/ $b/corpus tests/fuzz/corpus || return 1
    $b/tests/fuzz/fuzz_elf -max_total_time=20 -max_len=16384 -print_final_stats=1 \
        -artifact_prefix=$b/artifacts/ $b/corpus_elf tests/fuzz/corpus_elf
)

test_all() {
    local start=$SECONDS
    ensure_packages
    log "packages ready ($((SECONDS - start)) s)"
    step_start=$SECONDS

    run_step "SPDX lines" scripts/check_spdx.sh
    run_step "build (build/)" build build $WERROR
    run_meson_suite "meson test (build/)" build

    # Reports must fail the run; handle_segv=0 because the suites fault on guard and protected pages on purpose.
    export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:handle_segv=0:print_summary=1
    export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1:handle_segv=0
    run_step "build (build-asan/)" build build-asan $WERROR -Db_sanitize=address,undefined -Db_lundef=false
    run_meson_suite "meson test (build-asan/)" build-asan --no-suite fallback --no-suite no-uring
    run_meson_suite "meson test (build-asan/, hostile)" build-asan --suite hostile-sanitized
    unset ASAN_OPTIONS UBSAN_OPTIONS

    run_tsan

    run_unprivileged
    run_step "bench smoke" build/bench/kosvmm-bench-core --quick
    run_step "lazy bench smoke" build/bench/kosvmm-bench-lazy --quick --csv build/bench/lazy-smoke.csv
    # The chart script on that CSV and on the committed one, so neither drifts from the benchmark.
    run_step "lazy chart smoke" gnuplot -e "csv='build/bench/lazy-smoke.csv'; png='build/bench/lazy-smoke.png'" \
        bench/plot_lazy.gp
    run_step "lazy chart of docs/" gnuplot -e "csv='docs/lazy_bench.csv'; png='build/bench/lazy-docs.png'" \
        bench/plot_lazy.gp
    run_step "alloc bench smoke" build/bench/kosvmm-bench-alloc --quick
    run_step "demo smoke" build/examples/vmm_tour
    run_step "pkg-config consumer" pkgconfig_consumer
    run_step "man lint (mandoc)" man_lint
    run_step "build (build-release/, -O3)" build build-release $WERROR -Dbuildtype=release
    run_step "build (build-clang/, with fuzzers)" build_clang
    run_step "fuzz (build-clang/, 45 s + 20 s)" fuzz_smoke
    run_step "subproject parent" subproject_parent
    run_step "dist tarball builds" dist_tarball
    run_step "library-only build (build-lib/)" library_only
    run_step "ABI (abidiff, abi/libkosvmm.abi)" abi_check
    run_step "Debian packages" debian_packages

    log "summary ($((SECONDS - start)) s)"
    printf '%s\n' "${summary[@]}"
    echo "$passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
}

[ $# -eq 1 ] || usage
case $1 in
    demo) demo ;;
    test) test_all ;;
    *) usage ;;
esac
