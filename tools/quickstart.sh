#!/usr/bin/env bash
# kdcl quick start: installs what is missing (Debian 12, as root), builds, and
#   tools/quickstart.sh demo   runs the demo on Fashion-MNIST and prints the results
#   tools/quickstart.sh test   runs the whole test suite (Check) and prints its summary
# Both are idempotent: with everything installed and built they go straight to the work.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-}
case "$what" in
demo | test) ;;
*)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac

packages=(build-essential meson ninja-build pkg-config python3 ocl-icd-opencl-dev opencl-headers
    libclblast-dev pocl-opencl-icd check zlib1g-dev libpng-dev libjpeg62-turbo-dev libcjson-dev libstb-dev
    dataset-fashion-mnist clinfo libopenmpi-dev openmpi-bin)
# ONNX export (kdcl export --onnx): protobuf-c on ONNX's onnx.proto
packages+=(libprotobuf-c-dev protobuf-c-compiler)
# the Python package's tests (src/python, tests/test_python.py)
packages+=(python3-numpy)
bash tools/ensure_packages.sh "${packages[@]}"

if [ ! -f build/build.ninja ]; then
    echo "== configuring (meson, release${CI:+, warnings are errors})"
    meson setup build --buildtype=release ${CI:+-Dwerror=true} >/dev/null
fi
echo "== building"
ninja -C build -j"$(nproc)" >/dev/null || ninja -C build -j1

kdcl=build/src/cli/kdcl

if [ "$what" = demo ]; then
    exec bash tools/demo.sh "${KDCL_DEMO_DIR:-build/demo}"
fi

# test: the whole suite on the default OpenCL device (KDCL_DEVICE selects
# another), then again on Intel's OpenCL CPU runtime (tools/intel_ocl.sh: from
# PyPI into build/intel-ocl; KDCL_INTEL_OCL=0 leaves it out). Each pass prints
# its suites and a summary named by its device; the last line counts both.
# Intel's pass is skipped, loudly, only when its packages cannot be
# downloaded; failing to install with the index reachable is a failure.
rc=0
passes=0
total_ok=0
total_failed=0
skipped=""

# the device a spec selects, as "name (platform)"
device_of() {
    { "$kdcl" devices ${1:+--device "$1"} 2>/dev/null || true; } |
        awk '/^\*/ { sub(/^\* [0-9]+:[0-9]+  /, ""); name = $0; want = 1; next }
             want && /^    platform / { sub(/^    platform +/, ""); sub(/ \(.*/, "");
                                        print name " (" $0 ")"; exit }'
}

# run_suite TAG SPEC: the suite on the device SPEC selects (with the
# environment the caller exports), log build/meson-logs/testlog-TAG.txt
run_suite() {
    local tag=$1 spec=$2 dev
    dev=$(device_of "$spec")
    if [ -z "$dev" ]; then
        echo "== $tag: no device for '${spec:-the default}':"
        "$kdcl" devices ${spec:+--device "$spec"} 2>&1 | tail -n 3 || true
        rc=1
        total_failed=$((total_failed + 1))
        return
    fi
    echo "== test suite on $dev"
    set +e
    KDCL_DEVICE=$spec meson test -C build --print-errorlogs --num-processes 1 \
        --logbase "testlog-$tag" >"build/meson-test-$tag.out" 2>&1
    local r=$?
    set -e
    grep -E "^ *[0-9]+/[0-9]+ " "build/meson-test-$tag.out" | sed "s/^/[$tag] /" || true
    local log=build/meson-logs/testlog-$tag.txt
    if [ $r -ne 0 ]; then
        rc=1
        echo "== [$tag] failures (full log: $log):"
        grep -E "FAIL|TIMEOUT|:F:|:E:" "build/meson-test-$tag.out" || true
    fi
    # Check's own per-suite lines, then the pass's summary
    grep -E "^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+" "$log" |
        sed "s/^/[$tag] /" || true
    local counts
    counts=$(awk '/^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+/ {
                     gsub(",", ""); c += $3; f += $5 + $7 }
                  END { printf "%d %d\n", c - f, f }' "$log")
    local ok=${counts% *} failed=${counts#* }
    # a suite that crashed or timed out before Check's summary counts as one failure
    if [ $r -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
    echo "== $tag on $dev: $ok passed, $failed failed"
    total_ok=$((total_ok + ok))
    total_failed=$((total_failed + failed))
    passes=$((passes + 1))
}

first=device
device_of "${KDCL_DEVICE:-}" | grep -q "(Portable Computing Language)" && first=pocl
run_suite $first "${KDCL_DEVICE:-}"

if [ "${KDCL_INTEL_OCL:-1}" != 0 ] && ! device_of "${KDCL_DEVICE:-}" | grep -q "(Intel(R) OpenCL)"; then
    set +e
    bash tools/intel_ocl.sh setup
    irc=$?
    set -e
    if [ $irc -eq 0 ]; then
        eval "$(bash tools/intel_ocl.sh env)"
        export OCL_ICD_VENDORS
        run_suite intel intel:cpu
        unset OCL_ICD_VENDORS
    elif [ $irc -eq 3 ]; then
        skipped="Intel's OpenCL CPU runtime (its packages could not be downloaded)"
        echo "==== SKIPPED: the test suite on $skipped; only the first pass counts"
    else
        echo "== Intel's OpenCL CPU runtime: tools/intel_ocl.sh setup failed (exit $irc)"
        rc=1
        total_failed=$((total_failed + 1))
    fi
fi
echo "$total_ok passed, $total_failed failed ($passes device$([ $passes = 1 ] || echo s)${skipped:+; skipped: $skipped})"
exit $rc
