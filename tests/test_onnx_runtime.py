#!/usr/bin/env python3
"""ONNX export against onnxruntime: for models of every layer type trained
briefly by `kdcl train` on tiny data sets (8x8 grey IDX, 32x32 colour CIFAR
binary), `kdcl export --onnx` passes onnx.checker (full check) and
onnxruntime's logits (float and uint8 input) and softmax(logits / T) equal
`kdcl eval --logits`' within float32 rounding, with the same predictions.

Skipped (exit 77, meson's skip) when numpy, onnx or onnxruntime cannot be
imported, here or in $KDCL_TEST_PYTHON / $KDCL_TEST_VENV_PYTHON
(tests/python_env.py), or when kdcl was built without ONNX support.
Needs $KDCL_EXE (the kdcl executable) and $KDCL_TEST_TMP.
"""
import json
import os
import struct
import subprocess
import sys
import unittest

from python_env import SKIP, reexec_or_skip  # noqa: E402

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
except ImportError as e:
    reexec_or_skip(f"needs numpy, onnx and onnxruntime ({e}); tools/onnx_venv.sh makes "
                   "build/onnx-venv with them")

from tiny_data import make_datasets, test_images, read  # noqa: E402

KDCL = os.environ.get("KDCL_EXE")
TMP = os.path.join(os.environ.get("KDCL_TEST_TMP", "/tmp"), "onnx_runtime")


def kdcl(*args, check=True):
    r = subprocess.run([KDCL] + [str(a) for a in args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"kdcl {' '.join(map(str, args))}: exit {r.returncode}: {r.stderr}")
    return r


# (name, data set, architecture, extra training options)
CASES = [
    ("mlp_dropout", "idx", "64-16-3", ["--dropout", "0.2,0.3", "--normalize"]),
    ("cnn_pools_bn", "idx",
     "conv(4,3,p=1),relu,maxpool(2),conv(6,3,bias=0),bn,relu,avgpool(2,s=1,p=1),flatten,"
     "linear(8,bias=0),bn,relu,dropout(0.3),linear(K)", ["--normalize"]),
    ("windows", "idx",
     "conv(4,3x5,s=2x1,p=1x2),bn(eps=0.001,m=0.2),relu,avgpool(3,s=1,p=1),maxpool(2),"
     "maxpool(3,s=1,p=1),flatten,linear(K)", []),
    ("residual", "idx",
     "conv(4,3,p=1),bn,relu,res(conv(4,3,p=1,bias=0),bn,relu,conv(4,3,p=1,bias=0),bn),relu,"
     "res(conv(8,3,s=2,p=1,bias=0),bn;conv(8,1,s=2,bias=0),bn),relu,gap,flatten,linear(K)",
     ["--normalize"]),
    ("residual_rgb", "cifar",
     "conv(4,3,p=1),bn,relu,res(conv(8,3,s=2,p=1,bias=0),bn,relu,conv(8,3,p=1,bias=0),bn;"
     "conv(8,1,s=2,bias=0),bn),relu,avgpool(2),gap,flatten,linear(K)", ["--normalize"]),
    ("mlp_rgb", "cifar", "flatten,linear(16),relu,linear(K)", ["--normalize"]),
]


class OnnxRuntimeParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not KDCL or not os.path.exists(KDCL):
            raise unittest.SkipTest("KDCL_EXE is not set to the kdcl executable")
        cls.data = make_datasets(TMP)

    def run_case(self, name, data, arch, opts):
        d = self.data[data]
        ck = os.path.join(TMP, name + ".safetensors")
        kdcl("train", "--arch", arch, "--data", d, "--epochs", 1, "--batch", 16, "--lr", 0.02,
             "--quiet", "--out", ck, *opts)
        lg = os.path.join(TMP, name + ".npy")
        ev = json.loads(kdcl("eval", "--model", ck, "--data", d, "--json", "--logits", lg).stdout)
        want = np.load(lg).astype(np.float64)
        x = test_images(d)
        self.assertEqual(want.shape[0], len(x))
        tol = 1e-4 * max(1.0, float(np.abs(want).max()))
        top2 = np.sort(want, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 4 * tol  # predictions that rounding cannot flip
        T = 2.5
        for variant, extra in (("float", []), ("uint8", ["--input", "uint8"]),
                               ("softmax", ["--softmax-T", T])):
            with self.subTest(model=name, variant=variant):
                path = os.path.join(TMP, f"{name}.{variant}.onnx")
                kdcl("export", "--onnx", path, "--model", ck, *extra)
                m = onnx.load(path)
                onnx.checker.check_model(m, full_check=True)
                self.assertGreaterEqual(m.opset_import[0].version, 17)
                meta = {p.key: p.value for p in m.metadata_props}
                self.assertEqual(json.loads(meta["kdcl.model"]),
                                 json.loads(self.ckpt_meta(ck)["kdcl.model"]))
                so = ort.SessionOptions()
                so.intra_op_num_threads = 1
                sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                inp = sess.get_inputs()[0]
                xb = x.reshape(len(x), -1) if len(inp.shape) == 2 else x
                xb = xb.astype(np.uint8 if variant == "uint8" else np.float32)
                # the batch dimension is dynamic: all at once, then one by one
                out = sess.run(None, {inp.name: xb})[0].astype(np.float64)
                one = np.concatenate([sess.run(None, {inp.name: xb[i:i + 1]})[0]
                                      for i in range(3)])
                np.testing.assert_allclose(one, out[:3], rtol=0, atol=tol)
                if variant == "softmax":
                    z = want / T
                    p = np.exp(z - z.max(1, keepdims=True))
                    p /= p.sum(1, keepdims=True)
                    np.testing.assert_allclose(out, p, rtol=0, atol=1e-5)
                else:
                    np.testing.assert_allclose(out, want, rtol=0, atol=tol,
                                               err_msg=f"{name} {variant}: logits differ")
                    self.assertTrue(np.array_equal(out.argmax(1)[clear], want.argmax(1)[clear]))
                    if variant == "float":
                        labels = self.labels(d)
                        ort_err = int((out.argmax(1) != labels).sum())
                        if clear.all():
                            self.assertEqual(ort_err, ev["errors"])

    @staticmethod
    def ckpt_meta(path):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            return json.loads(f.read(n))["__metadata__"]

    @staticmethod
    def labels(d):
        p = os.path.join(d, "t10k-labels-idx1-ubyte")
        if os.path.exists(p):
            return np.frombuffer(read(p)[8:], np.uint8)
        raw = read(os.path.join(d, "test_batch.bin"))
        return np.frombuffer(raw, np.uint8).reshape(-1, 3073)[:, 0]


def make_test(case):
    def t(self):
        self.run_case(*case)
    return t


for c in CASES:
    setattr(OnnxRuntimeParity, f"test_{c[0]}", make_test(c))


if __name__ == "__main__":
    if not KDCL or not os.path.exists(KDCL):
        print("skipped: KDCL_EXE is not set to the kdcl executable")
        sys.exit(SKIP)
    probe = subprocess.run([KDCL, "export", "--onnx", os.devnull + "/x", "--model", "x"],
                           capture_output=True, text=True)
    if "without ONNX support" in probe.stderr:
        print("skipped: kdcl was built without ONNX support")
        sys.exit(SKIP)
    print(f"numpy {np.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    r = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if r.wasSuccessful() else 1)
