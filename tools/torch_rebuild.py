#!/usr/bin/env python3
"""Rebuild a kdcl checkpoint as a PyTorch module, without kdcl, and compare
its test errors with `kdcl eval`.

The checkpoint's "kdcl.model" metadata is a JSON list of layers, each
{"type": <torch.nn class>, "args": {<constructor keyword arguments>}}, and a
residual block {"type": "Residual", "body": [...], "shortcut": [...] | null};
its tensors are exactly the state_dict() of the torch.nn.Sequential built from
that list. The input transform is x = (pixel / 255 - mean[c]) / std[c] with
"kdcl.input_mean" / "kdcl.input_std", images in NCHW (or HWC-flattened for
"kdcl.input_layout": "HWC", kdcl's older MLP checkpoints). Older MLP files
(layers.<i>.weight / .bias) are rebuilt as Flatten + Linear/ReLU layers.

usage: torch_rebuild.py MODEL.safetensors [--data DIR] [--split test]
                        [--kdcl build/src/cli/kdcl] [--device D]
Exit status 0 when the error counts agree within 0.05% of the examples
(predictions on near-ties may round either way in float32; the difference is
printed) or --kdcl is not given, 1 when they differ by more, 2 on bad input. Needs torch and safetensors (pip).
"""
import argparse
import gzip
import json
import os
import struct
import subprocess
import sys


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if n > 100_000_000:
            raise ValueError(f"{path}: header of {n} bytes")
        return json.loads(f.read(n))


def build(layers, nn, torch):
    mods = []
    for i, spec in enumerate(layers):
        t = spec.get("type")
        if t == "Residual":
            body = build(spec["body"], nn, torch)
            sc = spec.get("shortcut")
            shortcut = build(sc, nn, torch) if sc else None
            mods.append(Residual(body, shortcut, nn))
            continue
        cls = getattr(nn, t, None)
        if cls is None or t not in ALLOWED:
            raise ValueError(f"layer {i}: unknown type {t!r}")
        args = dict(spec.get("args", {}))
        for k in ("kernel_size", "stride", "padding"):
            if isinstance(args.get(k), list):
                args[k] = tuple(args[k])
        mods.append(cls(**args))
    return nn.Sequential(*mods)


ALLOWED = {"Linear", "Conv2d", "ReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "BatchNorm1d", "BatchNorm2d", "Dropout", "Flatten"}


def Residual(body, shortcut, nn):
    class _Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body
            self.shortcut = shortcut

        def forward(self, x):
            return self.body(x) + (self.shortcut(x) if self.shortcut is not None else x)

    return _Residual()


def legacy_layers(tensors, meta):
    sizes = []
    i = 0
    while f"layers.{i}.weight" in tensors:
        out_f, in_f = tensors[f"layers.{i}.weight"].shape
        if i == 0:
            sizes.append(in_f)
        sizes.append(out_f)
        i += 1
    layers = [{"type": "Flatten", "args": {}}]
    for k in range(len(sizes) - 1):
        layers.append({"type": "Linear", "args": {"in_features": sizes[k],
                                                  "out_features": sizes[k + 1], "bias": True}})
        if k + 2 < len(sizes):
            layers.append({"type": "ReLU", "args": {}})
    renamed = {}
    lin = 0
    for idx, l in enumerate(layers):
        if l["type"] == "Linear":
            renamed[f"{idx}.weight"] = tensors[f"layers.{lin}.weight"]
            renamed[f"{idx}.bias"] = tensors[f"layers.{lin}.bias"]
            lin += 1
    return layers, renamed


def load_idx(data, split):
    pre = "train" if split == "train" else "t10k"
    def opener(name):
        for cand in (name + ".gz", name):
            p = os.path.join(data, cand)
            if os.path.exists(p):
                return gzip.open(p, "rb") if cand.endswith(".gz") else open(p, "rb")
        raise FileNotFoundError(os.path.join(data, name))
    with opener(f"{pre}-images-idx3-ubyte") as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            raise ValueError("bad IDX image magic")
        images = f.read(n * h * w)
    with opener(f"{pre}-labels-idx1-ubyte") as f:
        magic, m = struct.unpack(">II", f.read(8))
        if magic != 2049 or m != n:
            raise ValueError("bad IDX label file")
        labels = f.read(m)
    return images, labels, n, 1, h, w


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--data", default=os.environ.get("KDCL_DATA",
                                                     "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--split", default="test", choices=["test", "train"])
    ap.add_argument("--kdcl", help="kdcl executable: compare with `kdcl eval --json`")
    ap.add_argument("--device", help="OpenCL device for kdcl eval")
    a = ap.parse_args()
    try:
        import torch
        from safetensors.torch import load_file
    except ImportError as e:
        print(f"torch_rebuild: needs torch and safetensors ({e})", file=sys.stderr)
        return 2
    nn = torch.nn
    try:
        header = read_header(a.model)
        meta = header.get("__metadata__", {})
        tensors = load_file(a.model)
        if "kdcl.model" in meta:
            layers = json.loads(meta["kdcl.model"])
            c, h, w = json.loads(meta["kdcl.input_shape"])
            mean = json.loads(meta.get("kdcl.input_mean", json.dumps([0.0] * c)))
            std = json.loads(meta.get("kdcl.input_std", json.dumps([1.0] * c)))
            hwc = meta.get("kdcl.input_layout") == "HWC"
            state = tensors
        else:
            layers, state = legacy_layers(tensors, meta)
            c, mean, std, hwc = 1, [0.0], [1.0], True
        model = build(layers, nn, torch)
        model.load_state_dict(state, strict=True)
    except Exception as e:  # one clear line for any malformed checkpoint
        print(f"torch_rebuild: {a.model}: {e}", file=sys.stderr)
        return 2
    model.eval()
    images, labels, n, dc, dh, dw = load_idx(a.data, a.split)
    x = torch.frombuffer(bytearray(images), dtype=torch.uint8).float().view(n, dc, dh, dw)
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    errors = 0
    with torch.no_grad():
        for s in range(0, n, 1000):
            xb = (x[s:s + 1000] / 255.0 - mean_t) / std_t
            if hwc:
                xb = xb.permute(0, 2, 3, 1)
            errors += int((model(xb).argmax(1) != y[s:s + 1000]).sum())
    print(f"PyTorch {torch.__version__}: {errors} errors of {n} "
          f"({100.0 * errors / n:.2f}%) with the module rebuilt from {a.model}")
    print(model)
    if not a.kdcl:
        return 0
    cmd = [a.kdcl, "eval", "--model", a.model, "--data", a.data, "--split", a.split, "--json"]
    if a.device:
        cmd += ["--device", a.device]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"torch_rebuild: kdcl eval failed: {out.stderr.strip()}", file=sys.stderr)
        return 2
    ke = json.loads(out.stdout)["errors"]
    print(f"kdcl eval: {ke} errors; difference {errors - ke:+d}")
    return 0 if abs(ke - errors) <= max(1, n // 2000) else 1


if __name__ == "__main__":
    sys.exit(main())
