#!/usr/bin/env python3
"""tools/torch_to_kdcl.py: PyTorch networks of every layer type kdcl has
(nested Sequentials, residual blocks with identity and projection shortcuts,
BatchNorm with moved running statistics, 1 and 3 channels) written as kdcl
checkpoints, whose `kdcl eval --logits` equal PyTorch's logits of the
original network on the same images; unsupported layers and arguments are
refused with one line and no file; the command-line form on a saved module.

Skipped (exit 77) when torch or safetensors cannot be imported, here or in
$KDCL_TEST_PYTHON / $KDCL_TEST_VENV_PYTHON (tests/python_env.py), or when $KDCL_EXE is not set.
"""
import os
import subprocess
import sys
import unittest

from python_env import SKIP, reexec_or_skip  # noqa: E402

try:
    import numpy as np
    import torch
    import safetensors  # noqa: F401
except ImportError as e:
    reexec_or_skip(f"needs numpy, torch and safetensors ({e}); tools/onnx_venv.sh --torch "
                   "makes build/onnx-venv with them")

ROOT = os.environ.get("KDCL_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), ".."))
TOOLS = os.path.join(ROOT, "tools")
sys.path.insert(0, TOOLS)
from torch_to_kdcl import ConversionError, Residual, save_kdcl  # noqa: E402
import tiny_data as data  # noqa: E402

KDCL = os.environ.get("KDCL_EXE")
TMP = os.path.join(os.environ.get("KDCL_TEST_TMP", "/tmp"), "torch_to_kdcl")
nn = torch.nn


def nets():
    """(name, data set, network, input shape, mean, std)"""
    torch.manual_seed(3)
    grey = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(1, 1), bias=False),
                      nn.ReLU()),
        nn.AvgPool2d(3, stride=1, padding=1), nn.Flatten(),
        nn.Linear(6 * 4 * 3, 10, bias=False), nn.BatchNorm1d(10), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(10, 3))
    rgb = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        Residual(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                               nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, bias=False),
                               nn.BatchNorm2d(8))),
        nn.ReLU(),
        Residual(nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
                               nn.BatchNorm2d(16)),
                 nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))),
        nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10))
    mlp = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 12), nn.ReLU(),
                        nn.Linear(12, 3))
    return [("grey_cnn", "idx", grey, (1, 8, 8), [0.3], [0.4]),
            ("rgb_residual", "cifar", rgb, (3, 32, 32), [0.2, 0.3, 0.4], [0.5, 0.25, 0.3]),
            ("mlp", "idx", mlp, (1, 8, 8), None, None)]


class TorchToKdcl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not KDCL or not os.path.exists(KDCL):
            raise unittest.SkipTest("KDCL_EXE is not set to the kdcl executable")
        cls.dirs = data.make_datasets(TMP)

    def kdcl(self, *args):
        r = subprocess.run([KDCL] + [str(a) for a in args], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, f"kdcl {args}: {r.stderr}")
        return r

    def test_logits_equal_pytorch(self):
        for name, ds, net, shape, mean, std in nets():
            with self.subTest(net=name):
                net.train()
                with torch.no_grad():  # move the BatchNorm statistics off 0 / 1
                    for _ in range(3):
                        net(torch.randn(16, *shape) * 2 + 0.5)
                path = os.path.join(TMP, name + ".safetensors")
                save_kdcl(net, path, shape, mean, std)
                lg = os.path.join(TMP, name + ".npy")
                self.kdcl("eval", "--model", path, "--data", self.dirs[ds], "--logits", lg)
                got = np.load(lg)
                x = torch.from_numpy(data.test_images(self.dirs[ds]).astype(np.float32))
                m = torch.tensor(mean or [0.0] * shape[0]).view(1, -1, 1, 1)
                s = torch.tensor(std or [1.0] * shape[0]).view(1, -1, 1, 1)
                net.eval()
                with torch.no_grad():
                    want = net((x / 255 - m) / s).numpy()
                tol = 1e-4 * max(1.0, float(np.abs(want).max()))
                np.testing.assert_allclose(got, want, rtol=0, atol=tol)

    def test_refused(self):
        bad = [
            ("Sigmoid", nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.Sigmoid())),
            ("dilation", nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2), nn.Flatten(),
                                     nn.Linear(32, 3))),
            ("count_include_pad", nn.Sequential(nn.AvgPool2d(2, padding=1,
                                                             count_include_pad=False),
                                                nn.Flatten(), nn.Linear(25, 3))),
            ("ceil_mode", nn.Sequential(nn.MaxPool2d(3, ceil_mode=True), nn.Flatten(),
                                        nn.Linear(9, 3))),
            ("must be a torch.nn.Sequential", nn.Linear(64, 3)),
            ("does not run", nn.Sequential(nn.Flatten(), nn.Linear(50, 3))),
            ("output", nn.Sequential(nn.Conv2d(1, 2, 3))),
        ]
        for needle, net in bad:
            with self.subTest(case=needle):
                path = os.path.join(TMP, "bad.safetensors")
                with self.assertRaises(ConversionError) as cm:
                    save_kdcl(net, path, (1, 8, 8))
                self.assertIn(needle, str(cm.exception))
                self.assertFalse(os.path.exists(path))
        self.assertEqual([f for f in os.listdir(TMP) if ".tmp." in f], [])

    def test_command_line(self):
        net = nets()[0][2]
        pt = os.path.join(TMP, "module.pt")
        torch.save(net, pt)
        out = os.path.join(TMP, "cli.safetensors")
        tool = [sys.executable, os.path.join(TOOLS, "torch_to_kdcl.py")]
        r = subprocess.run(tool + [pt, out, "--input-shape", "1,8,8", "--mean", "0.3",
                                   "--std", "0.4"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.kdcl("eval", "--model", out, "--data", self.dirs["idx"], "--json")
        os.remove(out)
        for args, needle in (([pt, out, "--input-shape", "8,8"], "C,H,W"),
                             ([pt, out, "--input-shape", "3,8,8"], "does not run"),
                             ([pt + ".missing", out, "--input-shape", "1,8,8"], "missing")):
            r = subprocess.run(tool + args, capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn(needle, r.stderr)
            self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    if not KDCL or not os.path.exists(KDCL):
        print("skipped: KDCL_EXE is not set to the kdcl executable")
        sys.exit(SKIP)
    print(f"torch {torch.__version__}")
    r = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if r.wasSuccessful() else 1)
