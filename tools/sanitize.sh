#!/usr/bin/env bash
# kdcl under AddressSanitizer, UndefinedBehaviorSanitizer and LeakSanitizer.
#
#   bash tools/sanitize.sh
#
# 1. installs what is missing (Debian 12, as root: the build's packages; the
#    sanitizer runtimes come with gcc),
# 2. builds build-asan/ (debugoptimized, -Db_sanitize=address,undefined,
#    -fno-sanitize-recover=all so undefined behaviour ends the process), apart
#    from build/, which it leaves alone,
# 3. runs the whole Check suite there (the CLI suite runs build-asan's kdcl),
# 4. runs the kdcl CLI on a tiny IDX data set with leak detection: train (MLP
#    and CNN), eval (one model and an ensemble), distill (cached and per-batch
#    targets), adjust-bias, specialists cluster / train / eval, and a few
#    commands that must fail cleanly (error paths leak most easily); twice:
#    kdcl's program cache empty (suppressions on), then full (no suppressions),
# then prints a summary. Exit status 0 only when every test passed and no
# sanitizer reported anything.
#
# Bounded in time: every step runs under `timeout` (build 20 min, suite 30 min
# plus as much for reruns, each CLI command 10 min). Measured on 2 shared CPU
# cores: build 45 s (-j1); suite 75 s when PoCL's kernel cache
# (~/.cache/pocl) already holds the kernels (after `meson test` of build/),
# 6 min when it is empty (CLBlast's kernels compiled under the sanitizers);
# CLI 10-15 s: 2 to 7 min in all. SANITIZE_JOBS sets the build's
# parallelism (default: all cores). Reports go to build-asan/sanitize/.
#
# Sanitizer options are below; suppressions (LeakSanitizer only, and only for
# leaks inside the OpenCL stack: PoCL, LLVM, CLBlast, ocl-icd) live in
# tools/sanitizers/lsan.supp with the reason for each.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
t_start=$SECONDS

packages=(build-essential meson ninja-build pkg-config python3 ocl-icd-opencl-dev opencl-headers
    libclblast-dev pocl-opencl-icd check zlib1g-dev libpng-dev libjpeg62-turbo-dev libcjson-dev
    libstb-dev)
bash tools/ensure_packages.sh "${packages[@]}"

bdir=build-asan
out=$bdir/sanitize
if [ ! -f $bdir/build.ninja ]; then
    echo "== configuring $bdir (address,undefined; UB not recoverable)"
    # -Dmpi=disabled: the suite's mpirun jobs stay in the normal build (the
    # MPI library's own allocations would be LeakSanitizer reports)
    meson setup $bdir --buildtype=debugoptimized -Db_sanitize=address,undefined -Dmpi=disabled \
        -Dc_args="-fno-sanitize-recover=all -fno-omit-frame-pointer" \
        -Dc_link_args=-fno-sanitize-recover=all >/dev/null
fi
echo "== building $bdir"
t0=$SECONDS
timeout 1200 ninja -C $bdir -j"${SANITIZE_JOBS:-$(nproc)}" >/dev/null
t_build=$((SECONDS - t0))
rm -rf "$out"
mkdir -p "$out"

# The options, for every process below (meson test keeps options already set).
#  detect_leaks=1                 LeakSanitizer at exit (the default on x86-64 Linux; said
#                                 here so that it is never off by accident)
#  detect_stack_use_after_return, check_initialization_order, strict_init_order,
#  strict_string_checks           stricter than the defaults; PoCL's LLVM-compiled kernels
#                                 are not instrumented, so they do not change its behaviour
#  halt_on_error, exitcode=66     the first report ends the process with status 66
#  intercept_tls_get_addr=0       LeakSanitizer does not track dynamic TLS (the
#                                 thread-locals of dlopen'ed libraries): with it on, its
#                                 tracer read a stale block of the OpenCL stack's (PoCL is
#                                 dlopen'ed by ocl-icd) at exit, "DTLS 7 at
#                                 0x9bf-0x800001ac1", and died with "Tracer caught signal
#                                 11" in 3 of 40 runs of kdcl distill (0 of 60 with it
#                                 off). kdcl has no dynamic TLS of its own, so this can
#                                 only add reports (memory held by those libraries'
#                                 thread-locals), never hide one of kdcl's leaks.
# PoCL and its LLVM JIT need no other option (no protect_shadow_gap=0, no
# use_sigaltstack=0): the whole suite runs with these settings.
export ASAN_OPTIONS="intercept_tls_get_addr=0:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:strict_string_checks=1:halt_on_error=1:exitcode=66:print_summary=1"
export LSAN_OPTIONS="suppressions=$root/tools/sanitizers/lsan.supp:print_suppressions=0:exitcode=66"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:print_summary=1:exitcode=66"
report_re='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer'
# LeakSanitizer's own failure, not a report about kdcl: its tracer thread
# crashing while it scans the threads at exit ("Tracer caught signal 11 ...
# LeakSanitizer has encountered a fatal error"; a known open issue of the
# sanitizers, google/sanitizers#1353). intercept_tls_get_addr=0 above removed
# the cause seen here; should it still happen, a run that ends so with no
# report is run once more, and the summary counts these reruns.
tracer_re='LeakSanitizer has encountered a fatal error'
reruns=0

echo "== the whole suite under the sanitizers"
t0=$SECONDS
set +e
timeout 1800 meson test -C $bdir --num-processes 1 --print-errorlogs >"$out/meson-test.out" 2>&1
suite_rc=$?
set -e
grep -E "^ *[0-9]+/[0-9]+ " "$out/meson-test.out" || true
log=$bdir/meson-logs/testlog.txt
# Failed tests whose log holds LeakSanitizer's tracer crash and no report: run again.
tracer_only=$(awk -v rre="$report_re" -v tre="$tracer_re" '
    function flush() { if (name != "" && failed && tracer && !report) print name }
    /^test: / { flush(); name = $2; failed = 0; tracer = 0; report = 0; next }
    /^result: / { failed = ($0 !~ /exit status 0$/) }
    $0 ~ tre { tracer = 1 }
    $0 ~ rre { report = 1 }
    END { flush() }' "$log")
if [ $suite_rc -ne 0 ] && [ -n "$tracer_only" ]; then
    echo "== LeakSanitizer's tracer crashed in: $tracer_only; running them again"
    reruns=$((reruns + $(echo "$tracer_only" | wc -w)))
    mkdir -p "$out/rerun"
    # shellcheck disable=SC2086
    timeout 1800 meson test -C $bdir --num-processes 1 --print-errorlogs --logbase rerun \
        $tracer_only >"$out/meson-rerun.out" 2>&1 || true
    # the suite passes when every failure was such a crash and the reruns pass
    n_failed=$(grep -cE "^ *[0-9]+/[0-9]+ .* (FAIL|TIMEOUT)" "$out/meson-test.out" || true)
    if [ "$n_failed" = "$(echo "$tracer_only" | wc -w)" ] &&
        ! grep -qE "^ *[0-9]+/[0-9]+ .* (FAIL|TIMEOUT)" "$out/meson-rerun.out"; then
        suite_rc=0
    fi
    grep -E "^ *[0-9]+/[0-9]+ " "$out/meson-rerun.out" | sed 's/^/  rerun /' || true
fi
t_suite=$((SECONDS - t0))
suite_reports=$(cat "$log" $bdir/meson-logs/rerun.txt 2>/dev/null | grep -cE "$report_re" || true)
suite_line=$(awk '/^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+/ {
        gsub(",", ""); c += $3; f += $5 + $7 }
     END { printf "%d passed, %d failed", c - f, f }' "$log")

echo "== the kdcl CLI on a tiny data set (leak detection on)"
t0=$SECONDS
kdcl=$bdir/src/cli/kdcl
data=$out/tiny
python3 tools/make_tiny_idx.py "$data"
cli_ok=0
cli_fail=0
cli_supp=0
cli_failed=()
# cli NAME WANT ARGS...: WANT 0 = must succeed, 1 = must fail with status 1 or 2
cli() {
    local name=$pass-$1 want=$2
    shift 2
    local rc=0 t=$SECONDS
    timeout 600 "$kdcl" "$@" >"$out/$name.out" 2>"$out/$name.err" || rc=$?
    if [ $rc -ne 0 ] && grep -q "$tracer_re" "$out/$name.err" &&
        ! grep -qE "$report_re" "$out/$name.err"; then
        mv "$out/$name.err" "$out/$name.tracer-crash.err"
        reruns=$((reruns + 1))
        rc=0
        timeout 600 "$kdcl" "$@" >"$out/$name.out" 2>"$out/$name.err" || rc=$?
    fi
    if grep -q "^Suppressions used:" "$out/$name.err"; then cli_supp=$((cli_supp + 1)); fi
    local bad=""
    if grep -qE "$report_re" "$out/$name.err"; then
        bad="sanitizer report"
    elif [ "$want" = 0 ] && [ $rc -ne 0 ]; then
        bad="exit status $rc"
    elif [ "$want" = 1 ] && [ $rc -ne 1 ] && [ $rc -ne 2 ]; then
        bad="exit status $rc (expected 1 or 2)"
    fi
    if [ -n "$bad" ]; then
        cli_fail=$((cli_fail + 1))
        cli_failed+=("$name")
        printf '  FAIL %-28s %s (%s.err)\n' "$name" "$bad" "$out/$name"
        grep -E -A12 "$report_re" "$out/$name.err" | head -40 | sed 's/^/       /' || true
    else
        cli_ok=$((cli_ok + 1))
        printf '  ok   %-24s %4ss  %s\n' "$name" "$((SECONDS - t))" "kdcl $*" | cut -c1-150
    fi
}
cli_paths() {
    local m=$out/$pass-mlp.safetensors c=$out/$pass-cnn.safetensors
    local s=$out/$pass-student.safetensors x=$out/$pass-x.safetensors
    cli train-mlp 0 train --data "$data" --arch 64-16-3 --epochs 2 --batch 20 --lr 0.05 \
        --dropout 0.1,0.2 --max-norm 3 --jitter 1 --val 20 --seed 3 \
        --metrics "$out/$pass-mlp.jsonl" --out "$m"
    cli train-cnn 0 train --data "$data" \
        --arch 'conv(4,3,p=1),bn,relu,maxpool(2),res(conv(4,3,p=1),bn),relu,avgpool(2),flatten,linear(K)' \
        --epochs 1 --batch 20 --optimizer adam --lr 0.01 --quiet --out "$c"
    local r=$out/$pass-resumed.safetensors
    local ra=(--data "$data" --arch 64-16-3 --epochs 2 --batch 20 --optimizer adam --lr 0.01
        --state-every 2 --quiet)
    cli train-keep-state 0 train "${ra[@]}" --keep-state --out "$r"
    cli fail-resume-option 1 train "${ra[@]}" --lr 0.02 --resume --out "$r"
    cli train-resume 0 train "${ra[@]}" --resume --out "$r"
    cli eval 0 eval --model "$m" --data "$data" --json
    cli eval-ensemble 0 eval --model "$m,$c" --data "$data"
    cli distill-cached 0 distill --data "$data" --teacher "$m" --arch 64-8-3 --T 3 --epochs 1 \
        --batch 20 --targets cached --quiet --out "$s"
    cli distill-batch 0 distill --data "$data" --teacher "$m,$c" --arch 64-8-3 --T 2 --flip \
        --epochs 1 --batch 20 --targets batch --quiet --out "$s"
    cli adjust-bias 0 adjust-bias --model "$s" --data "$data" --classes 0 --search --val 20 \
        --range -1,1,0.5 --out "$out/$pass-adjusted.safetensors"
    cli spec-cluster 0 specialists cluster --data "$data" --model "$m" --clusters 2 \
        --out "$out/$pass-clusters.json"
    cli spec-train 0 specialists train --data "$data" --model "$m" \
        --clusters "$out/$pass-clusters.json" --min-size 1 --jobs 2 --epochs 1 --batch 20 --quiet \
        --out "$out/$pass-specs"
    cli spec-train-resume 0 specialists train --data "$data" --model "$m" \
        --clusters "$out/$pass-clusters.json" --min-size 1 --jobs 2 --epochs 1 --batch 20 --quiet \
        --resume --out "$out/$pass-specs"
    cli spec-eval 0 specialists eval --data "$data" --model "$m" --specialists "$out/$pass-specs" \
        --json "$out/$pass-spec_eval.json"
    head -c 100 "$m" >"$out/$pass-truncated.safetensors"
    cli fail-truncated 1 eval --model "$out/$pass-truncated.safetensors" --data "$data"
    cli fail-arch 1 train --data "$data" --arch 64-abc-3 --out "$x"
    cli fail-input-size 1 train --data "$data" --arch 65-8-3 --epochs 1 --out "$x"
    cli fail-no-data 1 train --data "$out/no/such/dir" --out "$x"
    cli fail-teacher 1 distill --data "$data" --teacher "$out/$pass-truncated.safetensors" \
        --out "$x"
}
# Two passes over the same commands, with kdcl's program binary cache in a
# fresh folder: "first" (kdcl builds every program from source and stores
# it; where PoCL compiles a kernel its compiler leaks, suppressed by
# lsan.supp) and "again" (kdcl loads its cached binaries and PoCL has every
# kernel in its own cache, so nothing is compiled) with no suppressions at
# all, so that an OpenCL object kdcl fails to release (allocated inside PoCL,
# which lsan.supp's entries would hide) still shows.
export KDCL_CACHE_DIR=$PWD/$out/kdcl-cache
mkdir -p "$KDCL_CACHE_DIR"
pass=first
lsan_supp=$LSAN_OPTIONS
export LSAN_OPTIONS="${lsan_supp/print_suppressions=0/print_suppressions=1}"
cli_paths
pass=again
export LSAN_OPTIONS="print_suppressions=0:exitcode=66"
cli_paths
export LSAN_OPTIONS=$lsan_supp
unset KDCL_CACHE_DIR
t_cli=$((SECONDS - t0))

echo "== summary"
echo "  build:  ${t_build}s ($bdir, address+undefined+leak)"
printf '  suite:  %s (%s tests), %s sanitizer report lines, %ss\n' "$suite_line" \
    "$(grep -cE '^ *[0-9]+/[0-9]+ ' "$out/meson-test.out" || true)" "$suite_reports" "$t_suite"
printf '  CLI:    %d ok, %d failed%s, %ss\n' "$cli_ok" "$cli_fail" \
    "${cli_failed[*]:+ (${cli_failed[*]})}" "$t_cli"
printf '          %d first-pass runs had leaks of the OpenCL stack suppressed (tools/sanitizers/lsan.supp)\n' \
    "$cli_supp"
echo "  reruns after LeakSanitizer's tracer crashed (no report): $reruns"
echo "  total:  $((SECONDS - t_start))s; reports and logs in $out/ and $log"
if [ $suite_rc -ne 0 ] || [ "$suite_reports" != 0 ] || [ $cli_fail -ne 0 ]; then
    if [ $suite_rc -ne 0 ]; then grep -E "FAIL|TIMEOUT" "$out/meson-test.out" | sed 's/^/  /' || true; fi
    echo "sanitize: FAILED"
    exit 1
fi
echo "sanitize: clean"
