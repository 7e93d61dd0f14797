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

# test: the whole suite on the default OpenCL device (KDCL_DEVICE selects another)
set +e
meson test -C build --print-errorlogs --num-processes 1 >build/meson-test.out 2>&1
rc=$?
set -e
grep -E "^ *[0-9]+/[0-9]+ " build/meson-test.out || true
if [ $rc -ne 0 ]; then
    echo "== failures (full log: build/meson-logs/testlog.txt):"
    grep -E "FAIL|TIMEOUT|:F:|:E:" build/meson-test.out || true
fi
# Check's own per-suite lines, then one total line
log=build/meson-logs/testlog.txt
grep -E "^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+" "$log" || true
awk '/^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+/ {
        gsub(",", ""); c += $3; f += $5 + $7 }
     END { printf "%d passed, %d failed\n", c - f, f }' "$log"
exit $rc
