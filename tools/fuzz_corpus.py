#!/usr/bin/env python3
"""Seed corpora for the libFuzzer harnesses of tests/fuzz (used by tools/fuzz.sh).

    tools/fuzz_corpus.py --build BUILD_FUZZ_DIR --out CORPUS_DIR [--kdcl KDCL] [--data DIR]

Writes CORPUS_DIR/<target>/ for every harness, from small valid files: IDX files
(synthetic, plus the first examples of Fashion-MNIST when --data or
/usr/share/datasets/fashion-mnist has it), CIFAR records, PNG/JPEG/BMP images
(written by BUILD_FUZZ_DIR/tests/fuzz/fuzz_seeds with libpng, libjpeg-turbo and
stb), checkpoints written by `kdcl train` (KDCL, default BUILD_FUZZ_DIR/src/cli/kdcl)
on a tiny dataset, safetensors files, clusters JSON, a GEMM tuning file and
architecture specs (strings and their kdcl.model JSON). Each seed carries the
leading mode bytes its harness expects (see the comment at the top of each
tests/fuzz/fuzz_<target>.c). Existing corpus files are kept: libFuzzer adds to them.
"""
import argparse
import gzip
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

TARGETS = ["idx", "idx_gz", "cifar", "image", "imagefolder", "safetensors", "checkpoint",
           "clusters", "tuning", "spec", "spec_json", "train_state"]


def put(out, target, data):
    """Store one seed under its content hash (as libFuzzer names corpus files)."""
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def idx_images(imgs, rows, cols):
    return struct.pack(">IIII", 0x803, len(imgs), rows, cols) + b"".join(imgs)


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


def fashion(data_dir, n):
    """The first n images and labels of Fashion-MNIST's test split, or None."""
    ip = os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")
    lp = os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz")
    if not (os.path.exists(ip) and os.path.exists(lp)):
        return None
    with gzip.open(ip) as f:
        head = f.read(16 + 784 * n)
    with gzip.open(lp) as f:
        lab = f.read(8 + n)
    return [head[16 + 784 * i:16 + 784 * (i + 1)] for i in range(n)], list(lab[8:])


def seeds_idx(out, data_dir):
    small = [bytes([(i * 7 + k) & 255 for k in range(4)]) for i in range(3)]
    pairs = [(idx_labels([0, 1, 2]), idx_images(small, 2, 2)),
             (idx_labels([9]), idx_images([bytes(range(12))], 3, 4))]
    real = fashion(data_dir, 4)
    if real:
        pairs.append((idx_labels(real[1]), idx_images(real[0], 28, 28)))
    for lab, img in pairs:
        put(out, "idx", struct.pack("<H", len(lab)) + lab + img)
    # idx_gz: the fixed labels file holds 3 labels
    for img in [idx_images(small, 2, 2)] + ([idx_images(real[0][:3], 28, 28)] if real else []):
        put(out, "idx_gz", bytes([0]) + img)                 # the harness compresses it
        put(out, "idx_gz", bytes([1]) + gzip.compress(img))  # gzip bytes as they are
        put(out, "idx_gz", bytes([1]) + gzip.compress(img, 1) + gzip.compress(b""))


def seeds_cifar(out):
    rec10 = bytes([3]) + bytes((i * 5) & 255 for i in range(3072))
    rec100 = bytes([4, 41]) + bytes((i * 3) & 255 for i in range(3072))
    names10 = "\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                         "ship", "truck"]).encode() + b"\n"
    put(out, "cifar", bytes([0]) + rec10)
    put(out, "cifar", bytes([0]) + rec10 * 2)
    put(out, "cifar", bytes([8]) + rec10)                       # gzip
    put(out, "cifar", bytes([4, len(names10)]) + names10 + rec10)  # with class names
    put(out, "cifar", bytes([1]) + rec100)                      # CIFAR-100 coarse
    put(out, "cifar", bytes([3]) + rec100)                      # CIFAR-100 fine
    put(out, "cifar", bytes([7, 5]) + b"a\nb\nc" + rec100)


def seeds_images(out, build):
    tool = os.path.join(build, "tests", "fuzz", "fuzz_seeds")
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([tool, d], check=True)
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                img = f.read()
            for mode in (0x00, 0x9b):   # image: output sizes (1x1 grey first; 28x39)
                put(out, "image", bytes([mode]) + img)
            for mode in (0x01, 0x40, 0x3e):  # imagefolder: RGB 1x1, grey + skip, grey 32x32
                put(out, "imagefolder", bytes([mode]) + img)


def safetensors(tensors, meta=None):
    """tensors: [(name, dtype, shape, bytes)]; meta: {str: str}."""
    header, off, blobs = {}, 0, []
    if meta:
        header["__metadata__"] = meta
    for name, dt, shape, data in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def seeds_safetensors(out):
    put(out, "safetensors", safetensors([]))
    put(out, "safetensors", safetensors([], {"k": "v"}))
    put(out, "safetensors", safetensors([
        ("a", "F32", [2, 3], f32([1, 2, 3, 4, 5, 6])),
        ("b", "F16", [2], b"\x00\x3c\x00\xc0"),
        ("c", "BF16", [], b"\x80\x3f"),
        ("d", "I64", [1], struct.pack("<q", 7)),
        ("e", "U8", [0, 4], b""),
        ("f", "BOOL", [3], b"\x01\x00\x01"),
        ("g", "I32", [1, 1, 1], struct.pack("<i", -3)),
        ("h", "F64", [1], struct.pack("<d", 0.5)),
    ], {"format": "pt", "note": "seed"}))


def legacy_checkpoint():
    """An earlier kdcl MLP checkpoint: layers.<i>.weight / .bias, "arch" metadata."""
    w0, b0 = f32([0.01 * i for i in range(4 * 3)]), f32([0.0, 0.1, 0.2])
    w1, b1 = f32([0.02 * i for i in range(3 * 2)]), f32([0.0, -0.1])
    return safetensors([("layers.0.weight", "F32", [3, 4], w0), ("layers.0.bias", "F32", [3], b0),
                        ("layers.1.weight", "F32", [2, 3], w1), ("layers.1.bias", "F32", [2], b1)],
                       {"arch": "4-3-2", "input_scale": "0.003921569", "input_shift": "0"})


ARCHS = ["36-5-3", "conv(2,3,p=1),relu,maxpool(2),flatten,linear(K)",
         "conv(2,3),bn,relu,res(conv(2,3,p=1),bn,relu),avgpool(2),flatten,dropout(0.5),linear(K)",
         "conv(3,3,s=2,bias=0),res(conv(4,1);conv(4,1,bias=0)),gap,flatten,bn,linear(4),relu,linear(K)"]


def checkpoints(kdcl, work):
    """Checkpoints written by `kdcl train` on a tiny 6x6 IDX dataset: {arch: bytes}."""
    data = os.path.join(work, "data")
    os.makedirs(data, exist_ok=True)
    for prefix, n in (("train", 24), ("t10k", 6)):
        imgs = [bytes(((i * 29 + p * 7) & 255) for p in range(36)) for i in range(n)]
        with open(os.path.join(data, prefix + "-images-idx3-ubyte"), "wb") as f:
            f.write(idx_images(imgs, 6, 6))
        with open(os.path.join(data, prefix + "-labels-idx1-ubyte"), "wb") as f:
            f.write(idx_labels([i % 3 for i in range(n)]))
    got = {}
    for k, arch in enumerate(ARCHS):
        path = os.path.join(work, "m%d.safetensors" % k)
        args = [kdcl, "train", "--data", data, "--arch", arch, "--epochs", "1", "--batch", "8",
                "--out", path, "--quiet"] + (["--normalize"] if k == 1 else [])
        # a sanitizer build of kdcl: the OpenCL stack's process-lifetime allocations are
        # not kdcl's leaks
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
        r = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env=env)
        if r.returncode != 0:
            print("fuzz_corpus: kdcl train --arch %s failed (%s); that checkpoint seed is missing"
                  % (arch, r.stderr.strip()), file=sys.stderr)
            continue
        with open(path, "rb") as f:
            got[arch] = f.read()
    return got


def st_meta(blob):
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]).get("__metadata__", {})


def seeds_checkpoint(out, kdcl, work):
    cks = checkpoints(kdcl, work)
    put(out, "checkpoint", legacy_checkpoint())
    put(out, "safetensors", legacy_checkpoint())
    for blob in cks.values():
        put(out, "checkpoint", blob)
        put(out, "safetensors", blob)
    return cks


def seeds_spec(out, cks):
    shapes = [(1, 6, 6), (1, 28, 28), (3, 32, 32), (1, 1, 36)]
    texts = ARCHS + ["lenet5", "cnn-small", "cnn-medium", "resnet20", "784-1200-1200-10",
                     "conv(6,5,p=2),relu,maxpool(2),conv(16,5),relu,maxpool(2),flatten,"
                     "linear(120),relu,linear(84),relu,linear(K)",
                     "conv(8,3x5,s=1x2,p=1x2),bn(eps=0.001,m=0.2),relu,avgpool(3,s=2,p=1),gap,"
                     "flatten,linear(classes,bias=0)",
                     "res(res(conv(2,1),relu;conv(2,1)),relu),flatten,linear(K)"]
    for t in texts:
        for ncls, (c, h, w) in ((10, shapes[2]), (3, shapes[0]), (10, shapes[1])):
            put(out, "spec", bytes([ncls - 1, c - 1, h - 1, w - 1]) + t.encode())
    for blob in cks.values():
        meta = st_meta(blob)
        model = meta.get("kdcl.model")
        if not model:
            continue
        c, h, w = json.loads(meta.get("kdcl.input_shape", "[1, 6, 6]"))
        put(out, "spec_json", bytes([2, c - 1, h - 1, w - 1]) + model.encode())
        put(out, "spec_json", bytes([0x82, c - 1, h - 1, w - 1]) + model.encode())  # via @FILE
    put(out, "spec_json", bytes([0, 0, 5, 5]) + json.dumps([
        {"type": "Flatten", "args": {}},
        {"type": "Linear", "args": {"in_features": 36, "out_features": 3, "bias": True}}]).encode())


def seeds_clusters(out):
    def doc(K, clusters, names=None, conf=False):
        d = {"format": "kdcl-clusters", "version": 1, "classes": K, "generalist": "g.safetensors",
             "kmeans": {"M": len(clusters), "restarts": 10, "max_iter": 100, "overlap": 1,
                        "points": "correlation columns", "seed": 1, "inertia": 0.5},
             "clusters": []}
        for m, cl in enumerate(clusters):
            c = {"id": m, "classes": cl}
            if names:
                c["names"] = [names[k] for k in cl]
            if conf:
                c["confusion"] = [[float(a == b) * 10 for b in cl] for a in cl]
                c["train_examples"] = 10 * len(cl)
                c["within_errors"] = 0
            d["clusters"].append(c)
        if conf:
            d["covariance"] = [[0.1 if i == j else 0.01 for j in range(K)] for i in range(K)]
        return json.dumps(d, indent=2).encode() + b"\n"
    put(out, "clusters", bytes([4]) + doc(4, [[0, 1], [2, 3]]))
    put(out, "clusters", bytes([0]) + doc(5, [[0, 3], [1, 2, 4], [3, 4]], list("abcde"), True))
    put(out, "clusters", bytes([1]) + doc(1, [[0]]))


def seeds_tuning(out):
    xgemm = {"GEMMK": 0, "KREG": 1, "KWG": 16, "KWI": 2, "MDIMA": 8, "MDIMC": 8, "MWG": 32,
             "NDIMB": 8, "NDIMC": 8, "NWG": 32, "SA": 0, "SB": 0, "STRM": 0, "STRN": 0, "VWM": 1,
             "VWN": 1}
    direct = {"KWID": 2, "MDIMAD": 8, "MDIMCD": 8, "NDIMBD": 8, "NDIMCD": 8, "PADA": 1,
              "PADB": 1, "VWMD": 1, "VWND": 1, "WGD": 16}
    doc = {"device": "pthread-cpu", "platform": "Portable Computing Language",
           "kernels": {"Xgemm": xgemm, "XgemmDirect": direct,
                       "GemmRoutine": {"XGEMM_MIN_INDIRECT_SIZE": 448}}}
    put(out, "tuning", json.dumps(doc, indent=2).encode() + b"\n")
    put(out, "tuning", json.dumps({"kernels": {"GemmRoutine": {"XGEMM_MIN_INDIRECT_SIZE": 0}}}).encode())


def seeds_train_state(out, build):
    """States of the harness's own tiny run (within an epoch and at the end),
    written by the harness itself (KDCL_FUZZ_SEED), so that the fuzzer starts
    from files that pass the option checks and reach the resume path."""
    exe = os.path.join(build, "tests", "fuzz", "fuzz_train_state")
    with tempfile.TemporaryDirectory() as work:
        env = dict(os.environ, KDCL_FUZZ_SEED=work)
        r = subprocess.run([exe, "-runs=0"], env=env, capture_output=True, text=True)
        names = sorted(f for f in os.listdir(work) if f.endswith(".state.safetensors"))
        if r.returncode != 0 or len(names) != 2:
            print("fuzz_corpus: fuzz_train_state could not write its seeds (%s)"
                  % r.stderr.strip()[-300:], file=sys.stderr)
        for f in names:
            with open(os.path.join(work, f), "rb") as fh:
                put(out, "train_state", fh.read())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="the -Dfuzzing=true build directory")
    ap.add_argument("--out", required=True, help="corpus directory (one sub-directory a target)")
    ap.add_argument("--kdcl", help="kdcl CLI to write checkpoints (default BUILD/src/cli/kdcl)")
    ap.add_argument("--data", default=os.environ.get("KDCL_DATA") or
                    "/usr/share/datasets/fashion-mnist",
                    help="a Fashion-MNIST/MNIST IDX directory for real seeds (optional)")
    a = ap.parse_args()
    kdcl = a.kdcl or os.path.join(a.build, "src", "cli", "kdcl")
    os.makedirs(a.out, exist_ok=True)
    seeds_idx(a.out, a.data)
    seeds_cifar(a.out)
    seeds_images(a.out, a.build)
    seeds_safetensors(a.out)
    with tempfile.TemporaryDirectory() as work:
        cks = seeds_checkpoint(a.out, kdcl, work)
    seeds_spec(a.out, cks)
    seeds_clusters(a.out)
    seeds_tuning(a.out)
    seeds_train_state(a.out, a.build)
    for t in TARGETS:
        d = os.path.join(a.out, t)
        print("%-12s %4d seeds" % (t, len(os.listdir(d)) if os.path.isdir(d) else 0))


if __name__ == "__main__":
    main()
