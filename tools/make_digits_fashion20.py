#!/usr/bin/env python3
"""Write a 20-class IDX dataset: MNIST digits (labels 0-9) and Fashion-MNIST
items (labels 10-19) as one problem, 120000 training and 20000 test images of
28x28. Two confusable groups of classes live inside one label space, which is
what class clustering for specialists needs; kdcl reads the result like MNIST.

    tools/make_digits_fashion20.py MNIST_DIR FASHION_DIR OUT_DIR

Both inputs are IDX files (raw or .gz, the canonical names). Writes
OUT_DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz and class_names.txt.
Standard library only.
"""
import gzip
import os
import struct
import sys

DIGITS = [str(d) for d in range(10)]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]


def read_idx(directory, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            return path, data
    sys.exit(f"make_digits_fashion20: no {stem}[.gz] in {directory}")


def split(directory, prefix):
    ipath, images = read_idx(directory, f"{prefix}-images-idx3-ubyte")
    lpath, labels = read_idx(directory, f"{prefix}-labels-idx1-ubyte")
    magic, n, rows, cols = struct.unpack(">IIII", images[:16])
    lmagic, ln = struct.unpack(">II", labels[:8])
    if magic != 0x803 or lmagic != 0x801 or n != ln or (rows, cols) != (28, 28):
        sys.exit(f"make_digits_fashion20: {ipath} / {lpath} are not a 28x28 IDX pair")
    if len(images) != 16 + n * 784 or len(labels) != 8 + n:
        sys.exit(f"make_digits_fashion20: {ipath} / {lpath} are truncated")
    return n, images[16:], labels[8:]


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    mnist, fashion, out = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    for prefix in ("train", "t10k"):
        n1, i1, l1 = split(mnist, prefix)
        n2, i2, l2 = split(fashion, prefix)
        n = n1 + n2
        labels = bytes(l1) + bytes(b + 10 for b in l2)
        with gzip.open(os.path.join(out, f"{prefix}-images-idx3-ubyte.gz"), "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, 28, 28) + i1 + i2)
        with gzip.open(os.path.join(out, f"{prefix}-labels-idx1-ubyte.gz"), "wb") as f:
            f.write(struct.pack(">II", 0x801, n) + labels)
        print(f"{prefix}: {n1} digits + {n2} fashion items")
    with open(os.path.join(out, "class_names.txt"), "w") as f:
        f.write("\n".join(DIGITS + FASHION) + "\n")


if __name__ == "__main__":
    main()
