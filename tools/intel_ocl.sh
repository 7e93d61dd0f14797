#!/usr/bin/env bash
# Intel's OpenCL CPU runtime beside the system's OpenCL drivers, without
# touching the system: the PyPI packages intel-opencl-rt and
# intel-cmplr-lib-rt go into a virtual environment of their own, and an ICD
# directory names Intel's libintelocl.so next to copies of the system's .icd
# files. The runtime runs on x86-64 CPUs of any vendor (AMD's included).
#
#   tools/intel_ocl.sh setup   install (idempotent) and check that the platform loads
#   tools/intel_ocl.sh env     print the export line that adds it to a shell:
#                                eval "$(tools/intel_ocl.sh env)"; kdcl devices
#   tools/intel_ocl.sh run CMD...   run CMD with it added (setup first)
#
# Where: $KDCL_INTEL_OCL_DIR, default build/intel-ocl (venv/: the packages,
# about 850 MB; vendors/: the ICD directory). OCL_ICD_VENDORS=vendors/ is all
# it takes: the library finds its own dependencies (RUNPATH), and
# LD_LIBRARY_PATH must not point into venv/lib, which holds Intel's own
# libOpenCL.so.1 that would replace the system's ICD loader.
# Version: $KDCL_INTEL_OCL_VERSION, default the one kdcl's suite was checked with.
#
# Exit status of setup: 0 ready; 3 the packages cannot be downloaded (no
# network or no PyPI: nothing else is wrong, the caller may skip); 1 anything
# else (installed but does not load, pip failed with PyPI reachable, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${KDCL_INTEL_OCL_DIR:-build/intel-ocl}
version=${KDCL_INTEL_OCL_VERSION:-2026.2.0}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
venv=$dir/venv
vendors=$dir/vendors
lib=$venv/lib/libintelocl.so

say() { echo "intel_ocl: $*" >&2; }

pypi_reachable() {
    # the index pip would use (PIP_INDEX_URL, else PyPI), within 20 s
    python3 - "${PIP_INDEX_URL:-https://pypi.org/simple}" <<'EOF'
import sys, urllib.request
url = sys.argv[1].rstrip("/") + "/intel-opencl-rt/"
try:
    urllib.request.urlopen(url, timeout=20).read(1)
except Exception as e:
    print(f"{url}: {e}", file=sys.stderr)
    sys.exit(1)
EOF
}

write_icds() {
    rm -rf "$vendors.new"
    mkdir -p "$vendors.new"
    echo "$lib" >"$vendors.new/intel-cpu-kdcl.icd"
    # the system's drivers too, so that everything is listed side by side
    if [ -d /etc/OpenCL/vendors ]; then
        for f in /etc/OpenCL/vendors/*.icd; do
            [ -e "$f" ] || continue
            # another Intel CPU runtime already registered would be a second "intel"
            grep -q "libintelocl" "$f" && continue
            cp "$f" "$vendors.new/"
        done
    fi
    rm -rf "$vendors"
    mv "$vendors.new" "$vendors"
}

check_loads() {
    # the platform must come up through the ICD loader
    local out
    if command -v clinfo >/dev/null; then
        out=$(OCL_ICD_VENDORS="$vendors" clinfo -l 2>&1) || true
        if ! grep -q "Intel(R) OpenCL" <<<"$out"; then
            say "installed in $venv, but the ICD loader does not list Intel's platform:"
            echo "$out" >&2
            return 1
        fi
    fi
    return 0
}

setup() {
    if [ -f "$lib" ] && [ -f "$dir/version" ] && [ "$(cat "$dir/version")" = "$version" ]; then
        write_icds
        check_loads
        return
    fi
    command -v python3 >/dev/null || bash tools/ensure_packages.sh python3
    python3 -c "import venv, ensurepip" 2>/dev/null || bash tools/ensure_packages.sh python3-venv
    if ! pypi_reachable; then
        say "cannot download intel-opencl-rt $version: the package index is unreachable"
        return 3
    fi
    say "installing intel-opencl-rt and intel-cmplr-lib-rt $version into $venv"
    rm -rf "$venv" "$dir/version"
    python3 -m venv "$venv"
    if ! "$venv/bin/pip" install --disable-pip-version-check -q \
        "intel-opencl-rt==$version" "intel-cmplr-lib-rt==$version"; then
        say "pip could not install intel-opencl-rt $version (the index was reachable)"
        return 1
    fi
    if [ ! -f "$lib" ]; then
        say "the packages installed no $lib"
        return 1
    fi
    echo "$version" >"$dir/version"
    write_icds
    check_loads
}

case "${1:-}" in
setup)
    setup
    say "ready: OCL_ICD_VENDORS=$vendors (kdcl --device intel)"
    ;;
env)
    [ -f "$lib" ] || {
        say "not installed: run tools/intel_ocl.sh setup"
        exit 1
    }
    echo "export OCL_ICD_VENDORS=$vendors"
    ;;
run)
    shift
    [ $# -gt 0 ] || {
        echo "usage: $0 run CMD..." >&2
        exit 2
    }
    setup
    OCL_ICD_VENDORS=$vendors exec "$@"
    ;;
*)
    echo "usage: $0 setup|env|run CMD..." >&2
    exit 2
    ;;
esac
