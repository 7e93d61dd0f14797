#!/usr/bin/env python3
"""Load a kdcl checkpoint into PyTorch nn.Linear layers unchanged and count its
test errors there; compare with `kdcl eval --json`.

    python3 tools/pytorch_check.py MODEL.safetensors DATA_DIR [--kdcl build/src/cli/kdcl]

Needs torch, safetensors and numpy (pip install torch safetensors numpy); the
kdcl test suite does not.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file


def read_idx(path):
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(dirname, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(dirname, name)
        if os.path.exists(p):
            return p
    sys.exit(f"{dirname}: no {stem}[.gz]")


class MLP(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = torch.relu(x)
        return x


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--kdcl", default="build/src/cli/kdcl")
    a = ap.parse_args()

    with safe_open(a.model, framework="pt") as f:
        meta = f.metadata() or {}
    sizes = [int(s) for s in meta["arch"].split("-")]
    scale = float(meta.get("input_scale", 1 / 255))
    shift = float(meta.get("input_shift", 0))

    # the three lines the README documents
    sd = load_file(a.model)
    m = MLP(sizes)
    m.load_state_dict(sd)  # strict: every name and shape must match nn.Linear's

    x = read_idx(find(a.data, "t10k-images-idx3-ubyte")).reshape(-1, sizes[0]).astype(np.float32)
    y = read_idx(find(a.data, "t10k-labels-idx1-ubyte")).astype(np.int64)
    with torch.no_grad():
        logits = m(torch.from_numpy(x * np.float32(scale) + np.float32(shift)))
    errors = int((logits.argmax(1).numpy() != y).sum())
    print(f"pytorch {torch.__version__}: {errors} test errors of {len(y)} ({a.model}, arch {meta['arch']})")

    if os.path.exists(a.kdcl):
        out = subprocess.run([a.kdcl, "eval", "--model", a.model, "--data", a.data, "--json"],
                             check=True, capture_output=True, text=True).stdout
        k = json.loads(out)["errors"]
        print(f"kdcl eval:     {k} test errors ({'same' if k == errors else 'DIFFERENT'})")
        if k != errors:
            sys.exit(1)


if __name__ == "__main__":
    main()
