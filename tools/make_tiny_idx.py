#!/usr/bin/env python3
"""Write a tiny IDX data set (MNIST file names) for quick runs of the kdcl CLI.

    python3 tools/make_tiny_idx.py DIR [--train N] [--test N]

8x8 grey images, 3 classes (which pair of columns is bright, plus noise), as
tests/test_cli.c makes them: DIR/train-images-idx3-ubyte.gz (gzip),
DIR/train-labels-idx1-ubyte (raw) and the same for t10k. Deterministic.
Used by tools/sanitize.sh and tools/oclgrind_check.sh.
"""
import argparse
import gzip
import os
import random
import struct


def write_split(d, prefix, n, seed):
    r = random.Random(seed)
    img = bytearray(struct.pack(">IIII", 0x803, n, 8, 8))
    lab = bytearray(struct.pack(">II", 0x801, n))
    for _ in range(n):
        c = r.randrange(3)
        lab.append(c)
        img += bytes(r.randrange(100) + (120 if (p % 8) // 3 == c else 0) for p in range(64))
    with gzip.open(os.path.join(d, f"{prefix}-images-idx3-ubyte.gz"), "wb") as f:
        f.write(bytes(img))
    with open(os.path.join(d, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
        f.write(bytes(lab))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--train", type=int, default=120)
    ap.add_argument("--test", type=int, default=60)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    write_split(a.dir, "train", a.train, 1)
    write_split(a.dir, "t10k", a.test, 2)


if __name__ == "__main__":
    main()
