#!/usr/bin/env python3
"""Export kdcl checkpoints to ONNX and check them against kdcl itself.

For each checkpoint: `kdcl export --onnx` (float input, uint8 input, and
softmax(logits / T) output), onnx.checker.check_model (full check, with shape
inference), then onnxruntime over a dataset split (IDX or CIFAR binary, the
layouts kdcl reads) compared with `kdcl eval --json --logits`: test errors of
both, predictions that differ, max |logit difference| (and max |probability
difference| of the softmax export against softmax(kdcl logits / T)).

usage: onnx_check.py MODEL.safetensors [MORE...] [--kdcl build/src/cli/kdcl]
                     [--data DIR] [--split test] [--device D] [--softmax-T 2]
                     [--threads 1] [--keep DIR] [--json OUT.json]
Exit status 0 when, for every checkpoint and every export, onnxruntime's error
count equals kdcl's; 1 when one differs; 2 on bad input or a failed command.
Needs numpy, onnx and onnxruntime (tools/onnx_venv.sh makes a virtual
environment with them).
"""
import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import time


def read_idx(data, split):
    pre = "train" if split == "train" else "t10k"

    def opener(name):
        for cand in (name + ".gz", name):
            p = os.path.join(data, cand)
            if os.path.exists(p):
                return gzip.open(p, "rb") if cand.endswith(".gz") else open(p, "rb")
        return None

    fi, fl = opener(f"{pre}-images-idx3-ubyte"), opener(f"{pre}-labels-idx1-ubyte")
    if fi is None or fl is None:
        return None
    with fi, fl:
        magic, n, h, w = struct.unpack(">IIII", fi.read(16))
        if magic != 2051:
            raise ValueError(f"{data}: bad IDX image magic")
        images = fi.read(n * h * w)
        magic, m = struct.unpack(">II", fl.read(8))
        if magic != 2049 or m != n:
            raise ValueError(f"{data}: bad IDX label file")
        labels = fl.read(m)
    return images, labels, n, 1, h, w, "HWC"


def read_cifar10(data, split):
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    paths = [os.path.join(data, f) for f in names]
    if not all(os.path.exists(p) for p in paths):
        return None
    raw = b"".join(open(p, "rb").read() for p in paths)
    rec = 1 + 3 * 32 * 32
    if len(raw) % rec:
        raise ValueError(f"{data}: CIFAR records of {rec} bytes expected")
    n = len(raw) // rec
    labels = bytes(raw[i * rec] for i in range(n))
    images = b"".join(raw[i * rec + 1:(i + 1) * rec] for i in range(n))
    return images, labels, n, 3, 32, 32, "CHW"


def load_split(data, split):
    """images as uint8 [n, C, H, W], labels [n]"""
    import numpy as np
    got = read_idx(data, split) or read_cifar10(data, split)
    if got is None:
        raise FileNotFoundError(f"{data}: no IDX or CIFAR-10 binary {split} split")
    images, labels, n, c, h, w, layout = got
    x = np.frombuffer(images, dtype=np.uint8)
    x = x.reshape(n, h, w, c).transpose(0, 3, 1, 2) if layout == "HWC" else x.reshape(n, c, h, w)
    return np.ascontiguousarray(x), np.frombuffer(labels, dtype=np.uint8).astype(np.int64)


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {out.returncode}: {out.stderr.strip()}")
    return out.stdout


def ort_outputs(path, x, meta, threads, batch=1000):
    """Run an exported model over uint8 images x [n, C, H, W] in batches."""
    import numpy as np
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = np.uint8 if inp.type == "tensor(uint8)" else np.float32
    outs = []
    for s in range(0, len(x), batch):
        xb = x[s:s + batch]
        if len(inp.shape) == 2:  # an MLP: the pixels flattened in the model's order
            if meta.get("kdcl.input_layout") == "HWC":
                xb = xb.transpose(0, 2, 3, 1)
            xb = xb.reshape(len(xb), -1)
        outs.append(sess.run(None, {inp.name: np.ascontiguousarray(xb).astype(dtype)})[0])
    return np.concatenate(outs)


def check_one(a, model, workdir):
    import numpy as np
    import onnx
    base = os.path.splitext(os.path.basename(model))[0]
    res = {"model": model}
    logits_npy = os.path.join(workdir, base + ".kdcl_logits.npy")
    cmd = [a.kdcl, "eval", "--model", model, "--data", a.data, "--split", a.split, "--json",
           "--logits", logits_npy]
    if a.device:
        cmd += ["--device", a.device]
    ev = json.loads(run(cmd))
    kl = np.load(logits_npy)
    res.update(arch=ev["arch"], examples=ev["examples"], kdcl_errors=ev["errors"],
               device=ev["device"])
    x, y = load_split(a.data, a.split)
    if len(y) != ev["examples"] or kl.shape[0] != len(y):
        raise RuntimeError(f"{model}: kdcl evaluated {ev['examples']} examples, the split has {len(y)}")
    variants = [("float", []), ("uint8", ["--input", "uint8"]),
                (f"softmax_T{a.softmax_T:g}", ["--softmax-T", repr(a.softmax_T)])]
    for name, extra in variants:
        onnx_path = os.path.join(workdir, f"{base}.{name}.onnx")
        cmd = [a.kdcl, "export", "--onnx", onnx_path, "--model", model] + extra
        if a.device:
            cmd += ["--device", a.device]
        run(cmd)
        m = onnx.load(onnx_path)
        onnx.checker.check_model(m, full_check=True)
        meta = {p.key: p.value for p in m.metadata_props}
        t0 = time.time()
        out = ort_outputs(onnx_path, x, meta, a.threads)
        secs = time.time() - t0
        pred = out.argmax(1)
        v = {"onnx": onnx_path, "bytes": os.path.getsize(onnx_path), "nodes": len(m.graph.node),
             "opset": m.opset_import[0].version, "ort_errors": int((pred != y).sum()),
             "pred_differ": int((pred != kl.argmax(1)).sum()), "ort_seconds": round(secs, 2)}
        if name.startswith("softmax"):
            z = kl.astype(np.float64) / a.softmax_T
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            v["max_abs_prob_diff"] = float(np.abs(out - p).max())
        else:
            v["max_abs_logit_diff"] = float(np.abs(out - kl).max())
            v["max_abs_logit"] = float(np.abs(kl).max())
        res[name] = v
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--kdcl", default=os.environ.get("KDCL_EXE", "build/src/cli/kdcl"))
    ap.add_argument("--data", default=os.environ.get("KDCL_DATA",
                                                     "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--split", default="test", choices=["test", "train"])
    ap.add_argument("--device", help="OpenCL device for kdcl")
    ap.add_argument("--softmax-T", type=float, default=2.0, dest="softmax_T")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--keep", help="directory for the ONNX files and logits (default: a temporary one)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    try:
        import numpy  # noqa: F401
        import onnx
        import onnxruntime
    except ImportError as e:
        print(f"onnx_check: needs numpy, onnx and onnxruntime ({e}); tools/onnx_venv.sh "
              "makes a virtual environment with them", file=sys.stderr)
        return 2
    if not (a.softmax_T > 0):
        print("onnx_check: --softmax-T must be > 0", file=sys.stderr)
        return 2
    print(f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, numpy "
          f"{numpy.__version__}; {a.data} [{a.split}]")
    results, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        workdir = a.keep or tmp
        os.makedirs(workdir, exist_ok=True)
        for model in a.models:
            try:
                r = check_one(a, model, workdir)
            except Exception as e:  # one clear line per failing checkpoint
                print(f"onnx_check: {model}: {e}", file=sys.stderr)
                return 2
            results.append(r)
            arch = r["arch"] if len(r["arch"]) <= 60 else r["arch"][:57] + "..."
            print(f"\n{model} ({arch}), {r['examples']} examples, kdcl on {r['device']}: "
                  f"{r['kdcl_errors']} errors")
            for name in [k for k in r if isinstance(r[k], dict)]:
                v = r[name]
                same = v["ort_errors"] == r["kdcl_errors"]
                ok &= same
                diff = (f"max |logit diff| {v['max_abs_logit_diff']:.3g} (max |logit| "
                        f"{v['max_abs_logit']:.3g})" if "max_abs_logit_diff" in v
                        else f"max |prob diff| {v['max_abs_prob_diff']:.3g}")
                print(f"  onnxruntime {name:<12} {v['ort_errors']:6d} errors "
                      f"({'same' if same else 'DIFFERENT'}), {v['pred_differ']} predictions "
                      f"differ, {diff}; {v['nodes']} nodes, opset {v['opset']}, "
                      f"{v['bytes'] / 1e6:.2f} MB, {v['ort_seconds']} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                       "data": a.data, "split": a.split, "results": results}, f, indent=1)
    print("\nall error counts equal" if ok else "\nerror counts DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
