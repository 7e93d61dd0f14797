#!/usr/bin/env python3
"""The Python package kdcl (src/python) over the shared library: devices,
datasets from numpy arrays and their validation, models (predict, save /
load, evaluate against `kdcl eval`), training and distillation with the
per-epoch callback and early stopping, ONNX export, and every kind of bad
input raising an exception (kdcl.Error with the library's message, or
TypeError / ValueError), never crashing.

Needs PYTHONPATH with build/src/python (meson sets it), $KDCL_EXE and
$KDCL_TEST_TMP. Skipped (exit 77) when no python3 at hand has numpy
(tests/python_env.py tries the others of PATH and the system's).
"""
import json
import os
import shutil
import subprocess
import sys
import unittest

from python_env import reexec_or_skip

if os.environ.get("KDCL_TEST_SANITIZED"):
    # a libkdcl.so built with AddressSanitizer loads only into a process that
    # starts with the sanitizer's runtime, which python3 does not
    print("a sanitizer build: libkdcl.so does not load into python3; skipped")
    sys.exit(77)

try:
    import numpy as np
except ImportError as e:
    reexec_or_skip(f"needs numpy ({e}; Debian: python3-numpy)", search=True)

import kdcl  # noqa: E402
from tiny_data import write_idx  # noqa: E402

KDCL = os.environ.get("KDCL_EXE")
TMP = os.path.join(os.environ.get("KDCL_TEST_TMP", "/tmp"), "python")


def stripes(n, seed=0, side=8, channels=None):
    """n images of 3 classes: which third of the columns is bright."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    shape = (n, side, side) if channels is None else (n, channels, side, side)
    x = rng.integers(0, 90, shape)
    for i in range(n):
        c0 = y[i] * side // 3
        x[i, ..., c0:c0 + side // 3] += 120
    return np.clip(x, 0, 255).astype(np.uint8), y


class PythonPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(TMP, ignore_errors=True)
        os.makedirs(TMP)
        cls.ctx = kdcl.Context(os.environ.get("KDCL_DEVICE") or None)
        cls.x, cls.y = stripes(240)
        cls.ds = kdcl.Dataset.from_numpy(cls.x, cls.y)
        cls.xt, cls.yt = stripes(60, seed=5)
        cls.test = kdcl.Dataset.from_numpy(cls.xt, cls.yt)

    @classmethod
    def tearDownClass(cls):
        cls.ctx.close()

    def mlp(self, arch="64-16-3", seed=1):
        return kdcl.Model(arch, (8, 8), 3, context=self.ctx, seed=seed)

    def path(self, name):
        return os.path.join(TMP, name)

    # ---- devices and contexts ----

    def test_devices(self):
        devs = kdcl.devices()
        self.assertGreaterEqual(len(devs), 1)
        for d in devs:
            for k in ("id", "name", "platform", "type", "global_mem", "max_alloc"):
                self.assertIn(k, d)
        d0 = devs[0]
        with kdcl.Context(d0["id"]) as c:
            self.assertEqual(c.device["id"], d0["id"])
            self.assertEqual(c.device["name"], d0["name"])
        self.assertTrue(c.closed)
        self.assertEqual(self.ctx.device["id"],
                         [d for d in devs if d["name"] == self.ctx.device["name"]][0]["id"])

    def test_bad_device(self):
        with self.assertRaises(kdcl.Error) as e:
            kdcl.Context("no-such-device-xyz")
        self.assertIn("no-such-device-xyz", str(e.exception))
        self.assertEqual(e.exception.status, "KDCL_ERR_NO_DEVICE")
        with self.assertRaises(TypeError):
            kdcl.Context(3)

    # ---- datasets ----

    def test_dataset_from_numpy(self):
        self.assertEqual(len(self.ds), 240)
        self.assertEqual(self.ds.shape, (1, 8, 8))
        self.assertEqual(self.ds.n_classes, 3)
        x, y = self.ds.numpy()
        np.testing.assert_array_equal(x[:, 0], self.x)
        np.testing.assert_array_equal(y, self.y)
        # colour images [N, C, H, W] survive the trip to kdcl's HWC and back
        xc, yc = stripes(10, channels=3)
        dc = kdcl.Dataset.from_numpy(xc, yc, n_classes=5)
        self.assertEqual(dc.shape, (3, 8, 8))
        self.assertEqual(dc.n_classes, 5)
        x2, y2 = dc.numpy()
        np.testing.assert_array_equal(x2, xc)
        np.testing.assert_array_equal(y2, yc)
        # the arrays were copied
        xs = self.x.copy()
        d = kdcl.Dataset.from_numpy(xs, self.y)
        xs[:] = 0
        np.testing.assert_array_equal(d.numpy()[0][:, 0], self.x)
        tr, va = self.ds.split(40, seed=3)
        self.assertEqual((len(tr), len(va)), (200, 40))

    def test_dataset_validation(self):
        x, y = self.x, self.y
        with self.assertRaises(TypeError):
            kdcl.Dataset.from_numpy(x.astype(np.float32), y)
        with self.assertRaises(TypeError):
            kdcl.Dataset.from_numpy(x.tolist(), y)
        with self.assertRaises(ValueError):
            kdcl.Dataset.from_numpy(x.reshape(240, 64), y)
        with self.assertRaises(ValueError):
            kdcl.Dataset.from_numpy(x[:, :, ::2], y)  # not contiguous
        with self.assertRaises(ValueError):
            kdcl.Dataset.from_numpy(x, y[:-1])
        with self.assertRaises(TypeError):
            kdcl.Dataset.from_numpy(x, y.astype(np.float32))
        with self.assertRaises(ValueError):
            kdcl.Dataset.from_numpy(x, -y - 1)
        with self.assertRaises(kdcl.Error) as e:  # the library checks the labels
            kdcl.Dataset.from_numpy(x, y, n_classes=2)
        self.assertIn("outside [0, 2)", str(e.exception))
        with self.assertRaises(kdcl.Error) as e:
            kdcl.Dataset.from_numpy(np.zeros((2, 5, 4, 4), np.uint8), np.zeros(2, int))
        self.assertIn("channels 1..4", str(e.exception))
        with self.assertRaises(kdcl.Error) as e:
            kdcl.Dataset.load(self.path("no-such-dir"))
        self.assertIn("no-such-dir", str(e.exception))
        with self.assertRaises(TypeError):
            kdcl.Dataset()

    # ---- models ----

    def test_predict_shape_and_inputs(self):
        m = self.mlp()
        p = m.predict(self.xt)
        self.assertEqual(p.shape, (60, 3))
        self.assertEqual(p.dtype, np.float32)
        self.assertTrue(np.isfinite(p).all())
        np.testing.assert_array_equal(m.predict(self.xt[:, None]), p)  # [N, 1, H, W]
        # a CNN on colour images with a per-channel input transform: raw
        # uint8 and the float32 it normalises to give the same logits
        xc, _ = stripes(20, channels=3)
        c = kdcl.Model("conv(4,3,p=1),relu,maxpool(2),flatten,linear(K)", (3, 8, 8), 3,
                       context=self.ctx)
        c.set_input_norm([0.2, 0.3, 0.4], [0.5, 0.25, 2.0])
        pu = c.predict(xc)
        pf = c.predict(c.normalize_input(xc))
        self.assertEqual(pu.shape, (20, 3))
        np.testing.assert_allclose(pu, pf, rtol=1e-5, atol=1e-5)
        self.assertFalse(np.allclose(pu, c.predict(xc.astype(np.float32))))
        # more examples than the model's batch: predicted in several batches
        b = kdcl.Model("64-8-3", (8, 8), 3, context=self.ctx, max_batch=7)
        np.testing.assert_allclose(b.predict(self.xt), np.concatenate(
            [b.predict(self.xt[i:i + 5]) for i in range(0, 60, 5)]), rtol=1e-6, atol=1e-6)

    def test_save_load_identical(self):
        m = self.mlp("64-12-3", seed=4)
        kdcl.train(m, self.ds, epochs=1, batch=32, lr=0.05)
        p = self.path("roundtrip.safetensors")
        m.save(p, metadata={"note": "from python"})
        m2 = kdcl.Model.load(p, context=self.ctx)
        self.assertEqual(m2.classes, 3)
        self.assertEqual(m2.arch, m.arch)
        np.testing.assert_array_equal(m2.predict(self.xt), m.predict(self.xt))
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            meta = json.loads(f.read(n))["__metadata__"]
        self.assertEqual(meta["note"], "from python")

    # ---- training ----

    def test_train_error_drops(self):
        m = self.mlp(seed=2)
        before = m.evaluate(self.test)
        hist = kdcl.train(m, self.ds, epochs=4, batch=32, lr=0.1, val=self.test)
        after = m.evaluate(self.test)
        self.assertEqual([h["epoch"] for h in hist], [1, 2, 3, 4])
        for k in ("train_loss", "train_error", "val_error", "val_errors", "lr", "seconds",
                  "samples_per_s"):
            self.assertIn(k, hist[0])
        self.assertLess(after.errors, before.errors)
        self.assertLessEqual(after.error_rate, 0.1)
        self.assertEqual(hist[-1]["val_errors"], after.errors)
        self.assertLess(hist[-1]["train_loss"], hist[0]["train_loss"])
        self.assertAlmostEqual(after.error_rate, after.errors / 60)

    def test_options_named_as_flags(self):
        m = self.mlp(seed=3)
        hist = kdcl.train(m, self.ds, epochs=3, batch=40, lr=0.02, optimizer="adam",
                          schedule="step:1:0.5", momentum=(0.5, 0.9, 2), weight_decay=1e-4,
                          jitter=1, flip=True, seed=9, normalize=True, val=40)
        self.assertEqual(len(hist), 3)
        np.testing.assert_allclose([h["lr"] for h in hist], [0.02, 0.01, 0.005], rtol=1e-6)
        self.assertIsNotNone(hist[0]["val_error"])
        mean, std = m.input_norm
        self.assertGreater(float(mean[0]), 0.1)  # normalize=True set the data's statistics
        with self.assertRaises(kdcl.Error) as e:
            kdcl.train(m, self.ds, lr=-1)
        self.assertIn("lr needs a positive number", str(e.exception))
        with self.assertRaises(kdcl.Error) as e:
            kdcl.train(m, self.ds, no_such_option=1)
        self.assertIn("unknown training option", str(e.exception))
        with self.assertRaises(kdcl.Error) as e:
            kdcl.train(m, self.ds, batch=1000)
        self.assertIn("larger than the 240 training examples", str(e.exception))

    def test_on_epoch_and_early_stop(self):
        seen = []
        m = self.mlp(seed=5)
        hist = kdcl.train(m, self.ds, epochs=5, batch=32, on_epoch=seen.append)
        self.assertEqual([s["epoch"] for s in seen], [1, 2, 3, 4, 5])
        self.assertEqual(seen, hist)
        # return False: stops after that epoch
        calls = []

        def stop_at_2(metrics):
            calls.append(metrics["epoch"])
            return metrics["epoch"] < 2

        hist = kdcl.train(m, self.ds, epochs=10, batch=32, on_epoch=stop_at_2)
        self.assertEqual(calls, [1, 2])
        self.assertEqual(len(hist), 2)

        def stop_raise(metrics):
            if metrics["epoch"] == 3:
                raise kdcl.StopTraining()

        self.assertEqual(len(kdcl.train(m, self.ds, epochs=10, batch=32,
                                        on_epoch=stop_raise)), 3)

        # another exception stops the training and comes out of train()
        def broken(metrics):
            raise ZeroDivisionError("in the callback")

        with self.assertRaises(ZeroDivisionError):
            kdcl.train(m, self.ds, epochs=10, batch=32, on_epoch=broken)
        with self.assertRaises(TypeError):
            kdcl.train(m, self.ds, epochs=1, on_epoch=3)
        # the model is still usable
        self.assertEqual(m.predict(self.xt).shape, (60, 3))

    def test_distill(self):
        teacher = self.mlp("64-32-3", seed=6)
        kdcl.train(teacher, self.ds, epochs=4, batch=32, lr=0.1)
        tp = self.path("teacher.safetensors")
        teacher.save(tp)
        student = self.mlp("64-6-3", seed=7)
        seen = []
        hist = kdcl.distill(student, teacher, self.ds, T=4, alpha=0.2, epochs=4, batch=32,
                            lr=0.1, on_epoch=seen.append)
        self.assertEqual(len(hist), 4)
        self.assertEqual(seen, hist)
        self.assertLessEqual(student.evaluate(self.test).error_rate, 0.2)
        # teachers as checkpoint paths, an ensemble of two, early stop
        s2 = self.mlp("64-6-3", seed=8)
        hist = kdcl.distill(s2, [tp, teacher], self.ds, T=2, epochs=5, batch=32,
                            ensemble="logit", on_epoch=lambda m: m["epoch"] < 2)
        self.assertEqual(len(hist), 2)
        with self.assertRaises(ValueError):
            kdcl.distill(s2, teacher, self.ds, loss="nope")
        with self.assertRaises(kdcl.Error) as e:
            kdcl.distill(s2, teacher, self.ds, T=-1, epochs=1)
        self.assertIn("temperature", str(e.exception))
        with self.assertRaises(kdcl.Error) as e:
            kdcl.distill(s2, s2, self.ds, epochs=1)
        self.assertIn("the student", str(e.exception))
        other = kdcl.Model("64-6-4", (8, 8), 4, context=self.ctx)
        with self.assertRaises(kdcl.Error):
            kdcl.distill(s2, other, self.ds, epochs=1)

    def test_evaluate_matches_cli(self):
        if not KDCL or not os.path.exists(KDCL):
            self.skipTest("KDCL_EXE is not set to the kdcl executable")
        d = self.path("idx")
        os.makedirs(d, exist_ok=True)
        write_idx(d)
        train = kdcl.Dataset.load(d)
        test = kdcl.Dataset.load(d, "test")
        self.assertEqual((len(train), len(test)), (120, 48))

        def cli_eval(ck):
            r = subprocess.run([KDCL, "eval", "--model", ck, "--data", d, "--json"],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            return json.loads(r.stdout)

        # trained in Python, evaluated by both
        m = kdcl.Model("64-10-3", (8, 8), 3, context=self.ctx, seed=3)
        kdcl.train(m, train, epochs=1, batch=16, lr=0.01)
        ck = self.path("py.safetensors")
        m.save(ck)
        ev = cli_eval(ck)
        mine = m.evaluate(test)
        self.assertEqual(mine.errors, ev["errors"])
        self.assertEqual(mine.n, ev["examples"])
        self.assertAlmostEqual(mine.loss, ev["loss"], places=4)
        # trained by the CLI, loaded and evaluated in Python
        ck2 = self.path("cli.safetensors")
        r = subprocess.run([KDCL, "train", "--arch", "64-10-3", "--data", d, "--epochs", "1",
                            "--batch", "16", "--lr", "0.01", "--quiet", "--out", ck2],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(kdcl.Model.load(ck2, context=self.ctx).evaluate(test).errors,
                         cli_eval(ck2)["errors"])

    def test_onnx_export(self):
        m = kdcl.Model("conv(4,3,p=1),bn,relu,maxpool(2),flatten,linear(K)", (8, 8), 3,
                       context=self.ctx)
        p = self.path("m.onnx")
        if not kdcl.onnx_available():
            with self.assertRaises(kdcl.Error) as e:
                m.export_onnx(p)
            self.assertIn("without ONNX support", str(e.exception))
            self.assertFalse(os.path.exists(p))
            return
        m.export_onnx(p, softmax_T=2.0, input="uint8", metadata={"by": "test"})
        with open(p, "rb") as f:
            data = f.read()
        self.assertIn(b"kdcl.model", data)
        self.assertIn(b"probabilities", data)
        try:
            import onnx
        except ImportError:
            onnx = None
        if onnx is not None:
            onnx.checker.check_model(onnx.load(p), full_check=True)
        bad = self.path("bad.onnx")
        with self.assertRaises(kdcl.Error) as e:  # the library's range check
            m.export_onnx(bad, softmax_T=1e-40)
        self.assertIn("softmax temperature", str(e.exception))
        self.assertFalse(os.path.exists(bad))
        with self.assertRaises(kdcl.Error):
            m.export_onnx(self.path("no-such-dir/x.onnx"))
        with self.assertRaises(ValueError):
            m.export_onnx(bad, softmax_T=-1)
        with self.assertRaises(ValueError):
            m.export_onnx(bad, input="int8")
        self.assertFalse(os.path.exists(bad))

    # ---- bad input: exceptions, never a crash ----

    def test_bad_models_and_inputs(self):
        with self.assertRaises(kdcl.Error) as e:
            kdcl.Model("64-16-nope", (8, 8), 3, context=self.ctx)
        self.assertIn("nope", str(e.exception))
        with self.assertRaises(kdcl.Error):  # 64 inputs named, 100 given
            kdcl.Model("64-16-3", (10, 10), 3, context=self.ctx)
        with self.assertRaises(ValueError):
            kdcl.Model("64-16-3", (8,), 3, context=self.ctx)
        with self.assertRaises(TypeError):
            kdcl.Model(64, (8, 8), 3, context=self.ctx)
        with self.assertRaises(kdcl.Error) as e:
            kdcl.Model.load(self.path("missing.safetensors"), context=self.ctx)
        self.assertIn("missing.safetensors", str(e.exception))
        m = self.mlp()
        with self.assertRaises(TypeError):
            m.predict(self.xt.astype(np.float64))
        with self.assertRaises(TypeError):
            m.predict(self.xt.tolist())
        with self.assertRaises(ValueError):
            m.predict(self.xt.reshape(60, 64))
        with self.assertRaises(ValueError):
            m.predict(self.xt[:, :, ::2])
        with self.assertRaises(kdcl.Error) as e:  # a shape the model does not take
            m.predict(np.zeros((2, 3, 9, 9), np.uint8))
        self.assertIn("do not fit", str(e.exception))
        wide = kdcl.Dataset.from_numpy(np.zeros((10, 8, 8), np.uint8), np.arange(10))
        with self.assertRaises(kdcl.Error) as e:  # 10 classes for 3 outputs
            kdcl.train(m, wide, epochs=1, batch=5)
        self.assertIn("10 classes", str(e.exception))
        with self.assertRaises(kdcl.Error):
            m.evaluate(wide)
        with self.assertRaises(TypeError):
            m.evaluate(self.x)
        with self.assertRaises(TypeError):
            kdcl.train(m, self.x, epochs=1)
        # a model used after close()
        m.close()
        m.close()  # twice is fine
        for call in (lambda: m.predict(self.xt), lambda: m.evaluate(self.test),
                     lambda: kdcl.train(m, self.ds, epochs=1), lambda: m.save(self.path("c")),
                     lambda: m.classes, lambda: m.export_onnx(self.path("c.onnx"))):
            with self.assertRaises(kdcl.Error) as e:
                call()
            self.assertIn("closed", str(e.exception))

    def test_closed_context(self):
        c = kdcl.Context(os.environ.get("KDCL_DEVICE") or None)
        m = kdcl.Model("64-8-3", (8, 8), 3, context=c)
        m.save(self.path("ctx.safetensors"))
        c.close()
        self.assertTrue(m.closed)
        with self.assertRaises(kdcl.Error) as e:
            m.predict(self.xt)
        self.assertIn("context was closed", str(e.exception))
        with self.assertRaises(kdcl.Error) as e:
            kdcl.Model("64-8-3", (8, 8), 3, context=c)
        self.assertIn("context is closed", str(e.exception))
        with self.assertRaises(kdcl.Error):
            kdcl.Model.load(self.path("ctx.safetensors"), context=c)
        with self.assertRaises(kdcl.Error):
            kdcl.distill(self.mlp(), m, self.ds, epochs=1)
        # a dataset closed by hand
        d = kdcl.Dataset.from_numpy(self.x, self.y)
        d.close()
        with self.assertRaises(kdcl.Error):
            len(d)
        with self.assertRaises(kdcl.Error):
            kdcl.train(self.mlp(), d, epochs=1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
