#!/usr/bin/env python3
"""Training through the Python package against the CLI: `kdcl train` and
kdcl.train() with the same architecture, data, epochs, batch, learning rate
and seed on the same device, one run each, back to back; prints each one's
samples/s (the examples of all epochs over their training seconds, as the
library measures an epoch) and Python's relative to the CLI's. With --pairs
N, N such pairs, the order alternating (CLI first, then Python first, ...),
and the median of the N ratios: on a machine shared with other jobs one
run's rate swings by more than the 5% being measured.

  PYTHONPATH=build/src/python python3 tools/python_overhead.py \\
      [--kdcl build/src/cli/kdcl] [--device pocl] [--arch 784-800-800-10] \\
      [--epochs 3] [--batch 128] [--data DIR] [--pairs N]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import kdcl


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kdcl", default=os.path.join("build", "src", "cli", "kdcl"))
    ap.add_argument("--device", default=os.environ.get("KDCL_DEVICE"))
    ap.add_argument("--data", default=os.environ.get("KDCL_DATA",
                                                     "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--arch", default="784-800-800-10")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--pairs", type=int, default=1)
    a = ap.parse_args()
    if a.pairs < 1:
        ap.error("--pairs needs a positive number")
    ctx = kdcl.Context(a.device)
    train = kdcl.Dataset.load(a.data, "train")
    ratios = []
    for i in range(a.pairs):
        if a.pairs > 1:
            print(f"-- pair {i + 1} of {a.pairs} ({'CLI' if i % 2 == 0 else 'Python'} first)")
        ratios.append(pair(a, ctx, train, python_first=i % 2 == 1))
    if a.pairs > 1:
        ratios.sort()
        med = ratios[len(ratios) // 2] if len(ratios) % 2 else \
            (ratios[len(ratios) // 2 - 1] + ratios[len(ratios) // 2]) / 2
        print(f"Python / CLI over {a.pairs} pairs: median {med:.3f} ({100 * (med - 1):+.1f}%), "
              f"range {ratios[0]:.3f} - {ratios[-1]:.3f}")
    return 0


def run_cli(a):
    with tempfile.TemporaryDirectory() as tmp:
        out, metrics = os.path.join(tmp, "cli.safetensors"), os.path.join(tmp, "cli.jsonl")
        cmd = [a.kdcl, "train", "--arch", a.arch, "--data", a.data, "--epochs", str(a.epochs),
               "--batch", str(a.batch), "--lr", str(a.lr), "--seed", "1", "--quiet",
               "--out", out, "--metrics", metrics]
        if a.device:
            cmd += ["--device", a.device]
        print("CLI:    ", " ".join(cmd))
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(metrics) as f:
            return [json.loads(line) for line in f]


def run_python(a, ctx, train):
    print(f"Python:  kdcl.train(kdcl.Model({a.arch!r}, ...), epochs={a.epochs}, "
          f"batch={a.batch}, lr={a.lr}, seed=1)")
    m = kdcl.Model(a.arch, train.shape, max(10, train.n_classes), context=ctx, seed=1)
    hist = kdcl.train(m, train, epochs=a.epochs, batch=a.batch, lr=a.lr, seed=1)
    m.close()
    return hist


def pair(a, ctx, train, python_first):
    if python_first:
        py = run_python(a, ctx, train)
        cli = run_cli(a)
    else:
        cli = run_cli(a)
        py = run_python(a, ctx, train)
    n = len(train)

    def rate(hist):
        return n * len(hist) / sum(h["seconds"] for h in hist)

    r_cli, r_py = rate(cli), rate(py)
    print(f"device: {ctx.device['name']}; {a.arch}, {a.epochs} epochs of {n}, batch {a.batch}")
    print("epoch  CLI samples/s  Python samples/s")
    for c, p in zip(cli, py):
        print(f"{c['epoch']:5d}  {c['samples_per_s']:13.0f}  {p['samples_per_s']:16.0f}")
    print(f"all    {r_cli:13.0f}  {r_py:16.0f}   Python / CLI = {r_py / r_cli:.3f} "
          f"({100 * (r_py / r_cli - 1):+.1f}%)")
    print(f"final training loss: CLI {cli[-1]['loss']:.6f}, Python {py[-1]['train_loss']:.6f}")
    return r_py / r_cli


if __name__ == "__main__":
    sys.exit(main())
