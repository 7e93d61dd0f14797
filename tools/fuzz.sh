#!/usr/bin/env bash
# Fuzz every parser of user input (tests/fuzz) with libFuzzer + ASan + UBSan.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]
#
# Installs clang-14 and libclang-rt-14-dev when missing (Debian 12, as root),
# configures and builds build-fuzz (clang, -Dfuzzing=true), makes the seed
# corpora (tools/fuzz_corpus.py) and runs each target for SECONDS (default 20)
# with -max_total_time, one after the other. Prints per target the executions,
# executions per second, crashes and corpus size; exits non-zero if any target
# crashed (the reproducer is kept in build-fuzz/crashes/<target>/), hung past
# its -timeout or failed to start.
#
# Environment: FUZZ_DIR (build dir, default build-fuzz), FUZZ_CORPUS (default
# FUZZ_DIR/corpus; kept between runs and grown), FUZZ_ARGS (extra libFuzzer
# flags), KDCL_DEVICE (the checkpoint target's OpenCL device).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-20}
shift || true
case "$secs" in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac
all=(idx idx_gz cifar image imagefolder safetensors checkpoint clusters tuning spec spec_json
    train_state)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

# clang-14 with libFuzzer and the sanitizer runtimes, plus what the library builds with
packages=(clang-14 libclang-rt-14-dev meson ninja-build pkg-config python3 ocl-icd-opencl-dev
    opencl-headers libclblast-dev pocl-opencl-icd zlib1g-dev libpng-dev libjpeg62-turbo-dev
    libcjson-dev libstb-dev)
bash tools/ensure_packages.sh "${packages[@]}"

dir=${FUZZ_DIR:-build-fuzz}
if [ ! -f "$dir/build.ninja" ]; then
    echo "== configuring $dir (clang-14, -Dfuzzing=true)"
    # -Dmpi=disabled: the harnesses never start MPI; its library stays out of them
    CC=clang-14 meson setup "$dir" -Dfuzzing=true -Db_lundef=false -Dtests=false -Dmpi=disabled \
        --buildtype=debugoptimized -Dwerror=true >/dev/null
fi
echo "== building $dir"
jobs=$(nproc)
ninja -C "$dir" -j"$jobs" >/dev/null || ninja -C "$dir" -j1

corpus=${FUZZ_CORPUS:-$dir/corpus}
echo "== seed corpora in $corpus"
python3 tools/fuzz_corpus.py --build "$dir" --out "$corpus" >/dev/null

supp=$(pwd)/tests/fuzz/lsan.supp
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=0
printf '%-12s %12s %10s %8s %8s  %s\n' target executions exec/s crashes corpus result
for t in "${targets[@]}"; do
    exe=$dir/tests/fuzz/fuzz_$t
    if [ ! -x "$exe" ]; then
        echo "no such target: $t (one of: ${all[*]})" >&2
        failed=1
        continue
    fi
    mkdir -p "$corpus/$t" "$dir/crashes/$t"
    log=$dir/fuzz-$t.log
    stamp=$dir/crashes/$t/.started
    touch "$stamp"
    set +e
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    "$exe" "$corpus/$t" -max_total_time="$secs" -print_final_stats=1 -timeout=25 \
        -rss_limit_mb=2048 -malloc_limit_mb=2048 -artifact_prefix="$dir/crashes/$t/" \
        ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    # reproducers written by this run (slow units are not failures)
    crashes=$(find "$dir/crashes/$t" -type f \( -name 'crash-*' -o -name 'leak-*' \
        -o -name 'timeout-*' -o -name 'oom-*' \) -newer "$stamp" | wc -l)
    size=$(find "$corpus/$t" -type f | wc -l)
    result=ok
    if [ "$rc" -ne 0 ] || [ "${crashes:-0}" -ne 0 ]; then
        result="FAILED (exit $rc; log $log)"
        failed=1
        grep -E "^==[0-9]+==ERROR|^SUMMARY|runtime error|^artifact_prefix|Test unit written" "$log" |
            head -5 | sed 's/^/    /'
    fi
    printf '%-12s %12s %10s %8s %8s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "${crashes:-0}" "$size" "$result"
done
exit $failed
