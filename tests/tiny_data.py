"""Tiny data sets for the Python tests, in the layouts kdcl reads: 8x8 grey
IDX (3 classes) and 32x32 colour CIFAR-10 binary batches (10 classes), with
labels the pixels carry, so a short training learns something."""
import os
import shutil
import struct

import numpy as np


def write_idx(d, n_train=120, n_test=48, side=8, seed=1):
    """3 classes on 8x8 grey images: which third of the columns is bright."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 3, n).astype(np.uint8)
        x = rng.integers(0, 90, (n, side, side))
        for i in range(n):
            c0 = y[i] * side // 3
            x[i, :, c0:c0 + side // 3] += 120
        x = np.clip(x, 0, 255).astype(np.uint8)
        with open(os.path.join(d, f"{prefix}-images-idx3-ubyte"), "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, side, side) + x.tobytes())
        with open(os.path.join(d, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
            f.write(struct.pack(">II", 0x801, n) + y.tobytes())


def write_cifar(d, per_batch=8, n_test=24, seed=2):
    """10 classes on 32x32 colour images (CIFAR-10 binary records, CHW planes):
    channel (label % 3) bright in a band picked by the label."""
    rng = np.random.default_rng(seed)

    def records(n):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 100, (n, 3, 32, 32))
        for i in range(n):
            b = (y[i] // 3) * 8
            x[i, y[i] % 3, b:b + 8, :] += 140
        x = np.clip(x, 0, 255).astype(np.uint8)
        return b"".join(bytes([y[i]]) + x[i].tobytes() for i in range(n))

    for k in range(1, 6):
        with open(os.path.join(d, f"data_batch_{k}.bin"), "wb") as f:
            f.write(records(per_batch))
    with open(os.path.join(d, "test_batch.bin"), "wb") as f:
        f.write(records(n_test))


def make_datasets(tmp):
    """A fresh directory tmp with the two tiny datasets: {"idx": dir, "cifar": dir}."""
    shutil.rmtree(tmp, ignore_errors=True)
    dirs = {"idx": os.path.join(tmp, "idx"), "cifar": os.path.join(tmp, "cifar")}
    for d in dirs.values():
        os.makedirs(d)
    write_idx(dirs["idx"])
    write_cifar(dirs["cifar"])
    return dirs


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_images(d):
    """The test split as uint8 [n, C, H, W] (kdcl's reading of either layout)."""
    p = os.path.join(d, "t10k-images-idx3-ubyte")
    if os.path.exists(p):
        raw = read(p)
        _, n, h, w = struct.unpack(">IIII", raw[:16])
        return np.frombuffer(raw[16:], np.uint8).reshape(n, 1, h, w)
    raw = read(os.path.join(d, "test_batch.bin"))
    rec = np.frombuffer(raw, np.uint8).reshape(-1, 3073)
    return rec[:, 1:].reshape(-1, 3, 32, 32)
