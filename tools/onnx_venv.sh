#!/usr/bin/env bash
# A Python virtual environment for the ONNX and PyTorch tools and tests:
#   tools/onnx_venv.sh [DIR]          numpy, onnx, onnxruntime, safetensors
#   tools/onnx_venv.sh --torch [DIR]  the same plus PyTorch (CPU build)
# DIR defaults to build/onnx-venv, where `meson test` (tests/test_onnx_runtime.py,
# through $KDCL_TEST_PYTHON) finds it; without it that test is skipped.
# Idempotent: packages already installed are left as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
torch=0
if [ "${1:-}" = --torch ]; then
    torch=1
    shift
fi
dir=${1:-build/onnx-venv}
bash tools/ensure_packages.sh python3-venv python3-pip
if [ ! -x "$dir/bin/python" ]; then
    echo "== creating $dir"
    python3 -m venv "$dir"
fi
"$dir/bin/python" -m pip install --quiet --upgrade pip
"$dir/bin/python" -m pip install --quiet numpy onnx onnxruntime safetensors
if [ $torch = 1 ]; then
    "$dir/bin/python" -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
fi
"$dir/bin/python" - <<'PY'
import numpy, onnx, onnxruntime
print(f"numpy {numpy.__version__}, onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}")
try:
    import torch
    print(f"torch {torch.__version__}")
except ImportError:
    pass
PY
echo "python: $dir/bin/python"
