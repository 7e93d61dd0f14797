#!/usr/bin/env python3
"""Training through the Python package against the CLI: `kdcl train` and
kdcl.train() with the same architecture, data, epochs, batch, learning rate
and seed on the same device, one run each, back to back; prints each one's
samples/s (the examples of all epochs over their training seconds, as the
library measures an epoch) and Python's relative to the CLI's.

  PYTHONPATH=build/src/python python3 tools/python_overhead.py \\
      [--kdcl build/src/cli/kdcl] [--device pocl] [--arch 784-800-800-10] \\
      [--epochs 3] [--batch 128] [--data DIR]
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
    a = ap.parse_args()

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
            cli = [json.loads(line) for line in f]

    print(f"Python:  kdcl.train(kdcl.Model({a.arch!r}, ...), epochs={a.epochs}, "
          f"batch={a.batch}, lr={a.lr}, seed=1)")
    ctx = kdcl.Context(a.device)
    train = kdcl.Dataset.load(a.data, "train")
    m = kdcl.Model(a.arch, train.shape, max(10, train.n_classes), context=ctx, seed=1)
    py = kdcl.train(m, train, epochs=a.epochs, batch=a.batch, lr=a.lr, seed=1)

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
