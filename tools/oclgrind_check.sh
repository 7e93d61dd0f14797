#!/usr/bin/env bash
# Every kernel of cl/ under oclgrind, the OpenCL simulator that checks each
# memory access of a kernel.
#
#   bash tools/oclgrind_check.sh [--uninitialized]
#
# Installs what is missing (Debian 12, as root: the build's packages and
# oclgrind), builds the test binary and the CLI in build-oclgrind/ (build/ is
# left alone), then runs under oclgrind with its checks for
#   out-of-bounds accesses (global, local, private; always on in oclgrind),
#   data races between work-items (--data-races),
#   OpenCL API errors (--check-api):
#  1. tests/test_kernels_checked: each of the kernels of cl/*.cl launched at
#     least once on tiny shapes (the test fails if one is not), plus the
#     CLBlast GEMM kernels kdcl uses; twice: kernels built as a driver builds
#     them (-O2) and unoptimised (-O0: every access of the source is kept);
#  2. the kdcl CLI on a tiny IDX data set: train (MLP, CNN), eval, distill,
#     specialists cluster / train / eval, so the kernels also run in the
#     sequences a real run enqueues.
# Prints, per kernel program, the number of reports (must be 0) and exits
# non-zero on any report, failure or crash.
#
# Uninitialised reads (--uninitialized): not part of the default run, because
# oclgrind 21.10 (Debian 12) cannot check kdcl's kernels for them: its
# Uninitialized plugin crashes (SIGSEGV in Uninitialized::instructionExecuted)
# on kernels built with optimisation, whose IR holds shufflevector masks with
# undefined lanes (the plugin compares mask elements with
# llvm::Value::UndefValueVal instead of -1), and at -O0 it reports
# uninitialised values in plain vector code that reads only initialised data
# (e.g. float16 -> .lo + .hi -> float8 -> ... -> float2 summed). The option
# runs that pass anyway (-O0) and counts it like the others, for an oclgrind
# that has these fixed.
#
# Bounded in time: each oclgrind run under `timeout` (10 min for a test pass,
# 5 min per CLI command). Measured on 2 shared CPU cores: build 11 s (-j1:
# the library, the test and the CLI only), test passes 5 s, CLI 12 s: about
# 30 s in all (the --uninitialized pass adds 11 s). OCLGRIND_JOBS sets the
# build's parallelism (default: all cores). KDCL_KERNEL_DIR, when set, checks
# the kernels of that folder instead of the built-in copies. Logs go to
# build-oclgrind/oclgrind/.
set -euo pipefail
cd "$(dirname "$0")/.."
t_start=$SECONDS
uninit=0
case "${1:-}" in
"") ;;
--uninitialized) uninit=1 ;;
*)
    echo "usage: $0 [--uninitialized]" >&2
    exit 2
    ;;
esac

packages=(build-essential meson ninja-build pkg-config python3 ocl-icd-opencl-dev opencl-headers
    libclblast-dev check zlib1g-dev libpng-dev libjpeg62-turbo-dev libcjson-dev libstb-dev oclgrind)
bash tools/ensure_packages.sh "${packages[@]}"

bdir=build-oclgrind
out=$bdir/oclgrind
if [ ! -f $bdir/build.ninja ]; then
    echo "== configuring $bdir"
    meson setup $bdir --buildtype=release >/dev/null
fi
echo "== building the test binary and the CLI in $bdir"
t0=$SECONDS
timeout 1200 ninja -C $bdir -j"${OCLGRIND_JOBS:-$(nproc)}" tests/test_kernels_checked \
    src/cli/kdcl >/dev/null
t_build=$((SECONDS - t0))
rm -rf "$out"
mkdir -p "$out/tmp"

# Kernel name -> program, from the sources (the test checks the same list).
declare -A prog_of
programs=()
for f in cl/*.cl; do
    p=$(basename "$f")
    programs+=("$p")
    while read -r k; do prog_of[$k]=$p; done < <(sed -n 's/.*__kernel void \([A-Za-z_0-9]*\)(.*/\1/p' "$f")
done
n_kernels=${#prog_of[@]}

# KDCL_AUTOTUNE=0: the simulator is a device without shipped GEMM parameters,
# and timing CLBlast's kernels on it (the automatic tuning on first use) would
# take hours; the suites run with it too
export CK_FORK=no KDCL_NO_CACHE=1 KDCL_TEST_TMP=$PWD/$out/tmp KDCL_SOURCE_ROOT=$PWD \
    KDCL_EXE=$PWD/$bdir/src/cli/kdcl KDCL_AUTOTUNE=0
unset KDCL_DEVICE # oclgrind's simulator is the only device under oclgrind
checks=(--check-api --data-races --max-errors 100000)

declare -A reports # program (or "CLBlast", "API/other") -> count
for p in "${programs[@]}"; do reports[$p]=0; done
reports[CLBlast]=0
reports[API/other]=0
total=0
failures=()

# Count the reports of one log: every line oclgrind starts in column 0 is
# one message (its details are indented); attributed by its "Kernel:" line.
count_log() {
    local log=$1 name k p
    [ -s "$log" ] || return 0
    while IFS=$'\t' read -r name k; do
        if [ -n "$k" ] && [ -n "${prog_of[$k]:-}" ]; then
            p=${prog_of[$k]}
        elif [ -n "$k" ]; then
            p=CLBlast
        else
            p=API/other
        fi
        reports[$p]=$((reports[$p] + 1))
        total=$((total + 1))
    done < <(awk '/^[^ \t]/ { if (h != "") print h "\t" k; h = $0; k = ""; next }
                 /^\tKernel: / { k = $2 }
                 END { if (h != "") print h "\t" k }' "$log")
}

# run_pass NAME TIMEOUT [oclgrind options --] COMMAND...
run_pass() {
    local name=$1 limit=$2
    shift 2
    local opts=()
    while [ "$1" != -- ]; do
        opts+=("$1")
        shift
    done
    shift
    local rc=0 t0=$SECONDS
    timeout "$limit" oclgrind "${checks[@]}" "${opts[@]}" --log "$out/$name.log" "$@" \
        >"$out/$name.out" 2>&1 || rc=$?
    local before=$total
    count_log "$out/$name.log"
    local n=$((total - before))
    if [ $rc -ne 0 ]; then failures+=("$name (exit status $rc)"); fi
    printf '  %-24s exit %-3s reports %-5s %ss\n' "$name" "$rc" "$n" "$((SECONDS - t0))"
}

echo "== oclgrind ${checks[*]}"
t0=$SECONDS
test_bin=$bdir/tests/test_kernels_checked
run_pass kernels-O2 600 -- "$test_bin"
run_pass kernels-O0 600 --build-options -O0 -- "$test_bin"
if [ $uninit = 1 ]; then
    run_pass kernels-O0-uninitialized 600 --uninitialized --build-options -O0 -- "$test_bin"
fi
t_kernels=$((SECONDS - t0))
coverage=$(grep -E "^  all: [0-9]+/[0-9]+ kernels" "$out/kernels-O2.out" | sed 's/^  all: //' || true)

t0=$SECONDS
data=$out/tiny
python3 tools/make_tiny_idx.py "$data" --train 60 --test 30
k=$PWD/$bdir/src/cli/kdcl
m=$out/mlp.safetensors
c=$out/cnn.safetensors
run_pass cli-train-mlp 300 -- "$k" train --data "$data" --arch 64-8-3 --epochs 1 --batch 20 \
    --dropout 0.1,0.2 --max-norm 3 --jitter 1 --val 20 --quiet --out "$m"
run_pass cli-train-cnn 300 -- "$k" train --data "$data" \
    --arch 'conv(2,3,p=1),bn,relu,maxpool(2),flatten,linear(K)' --epochs 1 --batch 20 \
    --optimizer adam --lr 0.01 --quiet --out "$c"
run_pass cli-eval 300 -- "$k" eval --model "$m,$c" --data "$data"
run_pass cli-distill 300 -- "$k" distill --data "$data" --teacher "$m" --arch 64-8-3 --T 3 \
    --epochs 1 --batch 20 --quiet --out "$out/student.safetensors"
run_pass cli-spec-cluster 300 -- "$k" specialists cluster --data "$data" --model "$m" \
    --clusters 2 --out "$out/clusters.json"
run_pass cli-spec-train 300 -- "$k" specialists train --data "$data" --model "$m" \
    --clusters "$out/clusters.json" --min-size 1 --epochs 1 --batch 20 --quiet \
    --out "$out/specs"
run_pass cli-spec-eval 300 -- "$k" specialists eval --data "$data" --model "$m" \
    --specialists "$out/specs"
t_cli=$((SECONDS - t0))

echo "== reports per kernel program (out-of-bounds, data races, API errors)"
for p in "${programs[@]}"; do
    nk=0
    for kk in "${!prog_of[@]}"; do [ "${prog_of[$kk]}" = "$p" ] && nk=$((nk + 1)); done
    printf '  %-16s %2d kernels   reports: %s\n' "$p" "$nk" "${reports[$p]}"
done
printf '  %-16s              reports: %s\n' "CLBlast kernels" "${reports[CLBlast]}"
printf '  %-16s              reports: %s\n' "API, other" "${reports[API/other]}"
echo "== summary"
echo "  kernels launched under oclgrind: ${coverage:-unknown} (cl/*.cl declares $n_kernels)"
echo "  reports: $total"
echo "  time: build ${t_build}s, test passes ${t_kernels}s, CLI ${t_cli}s, total $((SECONDS - t_start))s"
echo "  logs: $out/"
status=0
if [ "${coverage%% *}" != "$n_kernels/$n_kernels" ]; then
    echo "  coverage: the test did not launch all $n_kernels kernels (see $out/kernels-O2.out)"
    status=1
fi
if [ ${#failures[@]} -gt 0 ]; then
    printf '  failed: %s\n' "${failures[@]}"
    status=1
fi
[ $total -eq 0 ] || status=1
if [ $status -ne 0 ]; then
    echo "oclgrind check: FAILED"
    exit 1
fi
echo "oclgrind check: clean"
