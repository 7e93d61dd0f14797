#!/usr/bin/env python3
"""The workloads of `kdcl bench` in PyTorch eager mode, as a reference point.

    tools/pytorch_bench.py [--device cpu|cuda] [--json OUT] [--threads N] [--quick] [--reps N]

Measures, on synthetic data (random u8 images, 10 classes: 1x28x28, and
3x32x32 for ResNet-20):
  - GEMM GFLOP/s (torch.matmul) at the products of a 784-1200-1200-10 training
    step as kdcl runs them (kdcl_model_gemm_shapes: forward X W^T, weight
    gradients dY^T X, input gradients dY W except for the first layer, all
    row-major with the same transposes) for B = 128 and 1024, plus 1024^3
    (and 4096^3 on CUDA); result ids gemm.<m>x<n>x<k>.<NT|TN|NN> as kdcl's;
  - training samples/s (SGD with momentum 0.9, cross-entropy) of the teacher
    784-1200-1200-10 (dropout 0.2 on the input / 0.5 on hidden units, max-norm
    3.5 on each unit's incoming weights) and the student 784-800-800-10 (no
    dropout) at B = 128 and 1024, and of LeNet-5 (1x28x28) and the CIFAR
    ResNet-20 (3x32x32, option-B projection shortcuts: 1x1 conv stride 2 +
    BatchNorm) at B = 128, the same layers as kdcl's "lenet5" and "resnet20"
    presets, one "epoch" of n examples per repetition;
  - inference images/s (eval mode, softmax) of the teacher, a 10-teacher
    ensemble (softmax average) and the student at B = 1024;
  - on CPU, when NumPy is importable (and not --no-numpy), the same GEMM shapes
    through numpy.matmul, i.e. the BLAS NumPy is built with (OpenBLAS for the
    PyPI wheels and Debian's python3-numpy), as a second column: the reference
    for "GEMM at half of OpenBLAS on the same cores".
Each figure is the median [min-max] over up to --reps repetitions after a
warm-up. With --json, writes the kdcl-bench-1 schema of `kdcl bench` (the
same result ids where the workloads overlap), so tools/bench_compare.py can
put kdcl and PyTorch side by side. Exits 2 when torch cannot be imported.
"""
import argparse
import datetime
import json
import math
import os
import platform
import socket
import statistics
import sys
import time

SCHEMA = "kdcl-bench-1"
TEACHER = [784, 1200, 1200, 10]
STUDENT = [784, 800, 800, 10]
CLASSES = 10


def mlp_gemm_shapes(sizes, B, dropout=True):
    """The products of one training step of the MLP `sizes` at batch B, as
    kdcl_model_gemm_shapes lists them for its "A-B-...-K" model: Flatten,
    [Dropout,] then Linear layers with ReLU [and Dropout] between, each named
    by its index in that torch.nn.Sequential. Returns (what, m, n, k, trans)."""
    out = []
    idx, step = (2, 3) if dropout else (1, 2)
    for i in range(len(sizes) - 1):
        fan_in, fan_out = sizes[i], sizes[i + 1]
        out.append((f"{idx} Linear forward", B, fan_out, fan_in, "NT"))
        out.append((f"{idx} Linear dW", fan_out, fan_in, B, "TN"))
        if i > 0:  # no input gradient for the first layer
            out.append((f"{idx} Linear dX", B, fan_in, fan_out, "NN"))
        idx += step
    return out


def entry(rid, label, kind, unit, st, better="higher", **extra):
    """One result of the kdcl-bench-1 schema."""
    e = {"id": rid, "label": label, "kind": kind, "unit": unit, "better": better}
    e.update(st)
    e.update(extra)
    return e


def stat(values):
    v = sorted(values)
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "reps": len(v)}


class Bench:
    def __init__(self, torch, device, reps, quick):
        self.torch = torch
        self.device = device
        self.reps = reps
        self.quick = quick
        self.min_reps = 1 if quick else min(reps, 3)
        self.gemm_cap = 0.3 if quick else 1.5
        self.work_cap = 0.5 if quick else 4.0
        self.target = 0.05 if quick else 0.8
        self.results = []
        self.errors = []

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def now(self):
        self.sync()
        return time.perf_counter()

    def add(self, rid, label, kind, unit, st, better="higher", **extra):
        e = entry(rid, label, kind, unit, st, better, **extra)
        self.results.append(e)
        return e

    def repeat(self, fn, cap):
        """Call fn() (returns (value, seconds)) until reps, or min_reps and cap seconds."""
        vals, used = [], 0.0
        while len(vals) < self.reps:
            v, sec = fn()
            vals.append(v)
            used += sec
            if len(vals) >= self.min_reps and used >= cap:
                break
        return stat(vals)

    # ---------------------------------------------------------------- GEMM
    def gemm_shapes(self):
        """(id, label, batch, m, n, k, trans): the teacher's products at B = 128
        (and 1024), distinct ones only, then the square references."""
        shapes, seen = [], set()
        for B in ((128,) if self.quick else (128, 1024)):
            for what, m, n, k, tr in mlp_gemm_shapes(TEACHER, B):
                rid = f"gemm.{m}x{n}x{k}.{tr}"
                if rid not in seen:
                    seen.add(rid)
                    shapes.append((rid, f"teacher {what}", B, m, n, k, tr))
        if not self.quick:
            shapes.append(("gemm.sq1024", "square 1024^3", None, 1024, 1024, 1024, "NN"))
            if self.device.type == "cuda":
                shapes.append(("gemm.sq4096", "square 4096^3", None, 4096, 4096, 4096, "NN"))
        return shapes

    def time_gemms(self, make, mm, variant):
        """Time mm(A, B) with (A, B) = make(m, n, k, trans) at every shape; returns
        the result entries (printed as they come)."""
        out = []
        for rid, label, B, m, n, k, tr in self.gemm_shapes():
            A, Bm = make(m, n, k, tr)
            mm(A, Bm)  # warm-up
            flops = 2.0 * m * n * k

            def once():
                if self.device.type == "cuda" and variant == "torch":
                    # device time between two events, as kdcl's bench measures it
                    # (a host clock would add the launch latency to small products)
                    ev = [self.torch.cuda.Event(enable_timing=True) for _ in range(2)]
                    ev[0].record()
                    mm(A, Bm)
                    ev[1].record()
                    ev[1].synchronize()
                    dt = ev[0].elapsed_time(ev[1]) * 1e-3
                    return flops / dt * 1e-9, dt
                t0 = self.now()
                mm(A, Bm)
                dt = self.now() - t0
                return flops / dt * 1e-9, dt

            st = self.repeat(once, self.gemm_cap)
            dims = f"{m}x{n}x{k}"
            lab = f"GEMM {label} B={B} ({dims} {tr})" if B else f"GEMM {label}"
            out.append(entry(rid, lab, "gemm", "GFLOP/s", st, m=m, n=n, k=k, trans=tr, batch=B,
                             variant=variant))
            print(f"  {label:28s} {dims:20s} {tr}  {st['median']:8.1f} "
                  f"[{st['min']:.1f}-{st['max']:.1f}]")
        return out

    def gemm(self):
        torch = self.torch

        def make(m, n, k, tr):  # stored operands as kdcl stores them (row-major)
            a = torch.full((k, m) if tr[0] == "T" else (m, k), 0.01, device=self.device)
            b = torch.full((n, k) if tr[1] == "T" else (k, n), 0.02, device=self.device)
            return (a.t() if tr[0] == "T" else a), (b.t() if tr[1] == "T" else b)

        print(f"\nGEMM fp32 (torch.matmul), GFLOP/s median [min-max]")
        self.results += self.time_gemms(make, torch.matmul, "torch")

    def gemm_numpy(self, np):
        """The same shapes through numpy.matmul (NumPy's BLAS); returns the results."""

        def make(m, n, k, tr):
            a = np.full((k, m) if tr[0] == "T" else (m, k), 0.01, dtype=np.float32)
            b = np.full((n, k) if tr[1] == "T" else (k, n), 0.02, dtype=np.float32)
            return (a.T if tr[0] == "T" else a), (b.T if tr[1] == "T" else b)

        print(f"\nGEMM fp32 (numpy.matmul, {numpy_blas(np)}), GFLOP/s median [min-max]")
        return self.time_gemms(make, np.matmul, "numpy")

    # ---------------------------------------------------------------- models
    def mlp(self, sizes, drop_in, drop_hidden, seed):
        nn = self.torch.nn
        self.torch.manual_seed(seed)
        layers = []
        if drop_in > 0:
            layers.append(nn.Dropout(drop_in))
        for i in range(len(sizes) - 1):
            lin = nn.Linear(sizes[i], sizes[i + 1])
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
            nn.init.zeros_(lin.bias)
            layers.append(lin)
            if i + 2 < len(sizes):
                layers.append(nn.ReLU())
                if drop_hidden > 0:
                    layers.append(nn.Dropout(drop_hidden))
        return nn.Sequential(*layers).to(self.device)

    def he_init(self, model):
        """kdcl's initialisation: He normal (fan-in) weights, zero biases,
        BatchNorm weight 1 / bias 0 (PyTorch's default)."""
        nn = self.torch.nn
        for mod in model.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
        return model.to(self.device)

    def lenet5(self, seed):
        """kdcl's "lenet5" preset: conv(6,5,p=2),relu,maxpool(2),conv(16,5),relu,
        maxpool(2),flatten,linear(120),relu,linear(84),relu,linear(K) on 1x28x28."""
        nn = self.torch.nn
        self.torch.manual_seed(seed)
        return self.he_init(nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, CLASSES)))

    def resnet20(self, seed):
        """kdcl's "resnet20" preset (He et al. 2016, CIFAR ResNet-20 with
        projection shortcuts, option B): conv(16,3,p=1,bias=0),bn,relu, three
        stages of three blocks res(conv(C,3,s,p=1,bias=0),bn,relu,
        conv(C,3,p=1,bias=0),bn[;conv(C,1,s=2,bias=0),bn]),relu with C = 16, 32,
        64 (stride 2 and the projection in the first block of stages 2 and 3),
        then gap,flatten,linear(K); on 3x32x32."""
        torch = self.torch
        nn = torch.nn

        class Residual(nn.Module):  # body(x) + shortcut(x), identity without one
            def __init__(self, body, shortcut=None):
                super().__init__()
                self.body = body
                self.shortcut = shortcut

            def forward(self, x):
                return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

        torch.manual_seed(seed)
        layers = [nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
        c_in = 16
        for stage in range(3):
            c = 16 << stage
            for blk in range(3):
                down = stage > 0 and blk == 0
                s = 2 if down else 1
                body = nn.Sequential(
                    nn.Conv2d(c_in, c, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(c),
                    nn.ReLU(), nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
                shortcut = nn.Sequential(nn.Conv2d(c_in, c, 1, stride=2, bias=False),
                                         nn.BatchNorm2d(c)) if down else None
                layers += [Residual(body, shortcut), nn.ReLU()]
                c_in = c
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, CLASSES)]
        return self.he_init(nn.Sequential(*layers))

    def data(self, n, shape=(784,), seed=20240601):
        """n random u8 examples of `shape` and labels in 0..9."""
        torch = self.torch
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, 256, (n,) + tuple(shape), dtype=torch.uint8, generator=g)
        y = torch.randint(0, CLASSES, (n,), dtype=torch.int64, generator=g)
        return x.to(self.device), y.to(self.device)

    # ---------------------------------------------------------------- training
    def train_model(self, model, X, Y, B, max_norm):
        """Time training epochs of `model` on (X, Y) at batch B; returns the stats
        and the examples per timed epoch."""
        torch = self.torch
        F = torch.nn.functional
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]

        def epoch(n, seed):
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            perm = perm.to(self.device)
            t0 = self.now()
            total = torch.zeros((), device=self.device)
            for s in range(0, n, B):
                idx = perm[s:s + B]
                x = X[idx].float().mul_(1.0 / 255.0)
                loss = F.cross_entropy(model(x), Y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if max_norm > 0:
                    with torch.no_grad():
                        for lin in linears:
                            w = lin.weight
                            norms = w.norm(dim=1, keepdim=True)
                            w.mul_(torch.clamp(max_norm / (norms + 1e-12), max=1.0))
                total += loss.detach()
            float(total)  # one host sync per epoch, like kdcl's loss check
            dt = self.now() - t0
            return n / dt, dt

        epoch(B, 1)  # warm-up: one step (library start-up, allocations)
        # the rate that sizes the timed epochs: a few steps after the warm-up
        # (the first step alone, with cuBLAS's start-up, would make them tiny),
        # unless one step already says they would take over 2 s (big models on a CPU)
        rate, _ = epoch(B, 1)
        if 8 * B / rate <= 2.0:
            rate, _ = epoch(min(X.shape[0], 8 * B), 1)
        n = max(B, min(X.shape[0], int(rate * self.target) // B * B))
        seeds = iter(range(2, 1000))
        return self.repeat(lambda: epoch(n, next(seeds)), self.work_cap), n

    def train(self, X, Y, X32, Y32):
        print("\nTraining (SGD momentum 0.9, cross-entropy), samples/s median [min-max]")
        configs = [("teacher", TEACHER, 0.2, 0.5, 3.5), ("student", STUDENT, 0.0, 0.0, 0.0)]
        runs = []
        for name, sizes, din, dh, max_norm in configs:
            for B in ((128,) if self.quick else (128, 1024)):
                arch = "-".join(map(str, sizes))
                runs.append((name, arch, lambda s=sizes, a=din, b=dh: self.mlp(s, a, b, 3),
                             X, Y, B, max_norm, [din, dh], [1, 28, 28],
                             "dropout %.1f/%.1f%s" % (din, dh, ", max-norm 3.5" if max_norm
                                                      else "") if din or dh else "no dropout"))
        # the small student: its steps are bound by per-step overhead, not arithmetic
        runs.append(("small", "784-100-10", lambda: self.mlp([784, 100, 10], 0.0, 0.0, 3), X, Y,
                     128, 0.0, [0.0, 0.0], [1, 28, 28], "no dropout"))
        n28 = X.shape[0]
        runs.append(("lenet5", "lenet5", lambda: self.lenet5(3), X.view(n28, 1, 28, 28), Y, 128,
                     0.0, [0.0, 0.0], [1, 28, 28], "1x28x28 input"))
        runs.append(("resnet20", "resnet20", lambda: self.resnet20(3), X32, Y32, 128, 0.0,
                     [0.0, 0.0], [3, 32, 32], "3x32x32 input"))
        for name, arch, make, Xs, Ys, B, max_norm, dropout, shape, regime in runs:
            try:
                model = make()
                st, n = self.train_model(model, Xs, Ys, B, max_norm)
            except (RuntimeError, MemoryError) as ex:  # report, keep going
                msg = f"training {name} B={B}: {ex}"
                print(f"  {name:8s} {arch:17s} B={B:<5d} {regime:28s} FAILED: {ex}")
                print(f"pytorch_bench.py: {msg}", file=sys.stderr)
                self.errors.append(msg)
                continue
            self.add(f"train.{name}.b{B}", f"train {name} {arch} B={B}", "train",
                     "samples/s", st, arch=arch, batch=B, examples=n, dropout=dropout,
                     max_norm=max_norm, input=shape)
            if name != "student":
                ms = 1e3 * B / st["median"]
                self.add(f"step.{name}.b{B}",
                         f"{name} training step B={B} (wall ms, from the epoch rate)",
                         "step", "ms", {"median": ms, "min": 1e3 * B / st["max"],
                                        "max": 1e3 * B / st["min"], "reps": st["reps"]},
                         better="lower", arch=arch, batch=B)
            print(f"  {name:8s} {arch:17s} B={B:<5d} {regime:28s} {st['median']:10.0f} "
                  f"[{st['min']:.0f}-{st['max']:.0f}]  (epochs of {n})")
            del model

    # ---------------------------------------------------------------- inference
    def infer(self, X, Y):
        torch = self.torch
        B = 128 if self.quick else 1024
        print(f"\nInference (eval mode, softmax), images/s median [min-max], B={B}")
        for name, sizes, members in (("teacher", TEACHER, 1), ("ensemble10", TEACHER, 10),
                                     ("student", STUDENT, 1)):
            models = [self.mlp(sizes, 0.0, 0.0, 100 + i).eval() for i in range(members)]

            def run(n):
                errors = torch.zeros((), dtype=torch.int64, device=self.device)
                t0 = self.now()
                with torch.no_grad():
                    for s in range(0, n, B):
                        x = X[s:s + B].float().mul_(1.0 / 255.0)
                        p = sum(torch.softmax(m(x), dim=1) for m in models) / members
                        errors += (p.argmax(dim=1) != Y[s:s + B]).sum()
                int(errors)
                dt = self.now() - t0
                return n / dt, dt

            run(min(B, X.shape[0]))  # warm-up
            rate, _ = run(min(8 * B, X.shape[0]))
            unit = B if rate * self.target >= B else 128
            n = max(unit, min(X.shape[0], int(rate * self.target) // unit * unit))
            st = self.repeat(lambda: run(n), self.work_cap)
            arch = "-".join(map(str, sizes))
            batch = min(B, n)
            self.add(f"infer.{name}.b{B}",
                     f"infer {name} {arch}{' x10' if members > 1 else ''} B={batch}", "infer",
                     "images/s", st, arch=arch, batch=batch, examples=n, members=members)
            print(f"  {name:10s} {arch:17s} B={batch:<5d} {st['median']:10.0f} "
                  f"[{st['min']:.0f}-{st['max']:.0f}]  ({n} images per rep)")
            del models


def finite(o):
    """NaN / Inf -> None (JSON null), recursively."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite(v) for v in o]
    return o


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def numpy_blas(np):
    """Name and version of the BLAS NumPy was built with, as far as it says."""
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no mode="dicts"
        return "BLAS"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--json", help="write the results here (schema kdcl-bench-1)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    ap.add_argument("--quick", action="store_true", help="smoke run: B = 128 only, 1 rep")
    ap.add_argument("--reps", type=int, help="repetitions per workload (default 5, quick 1)")
    ap.add_argument("--no-numpy", action="store_true",
                    help="skip the numpy.matmul GEMM column on CPU")
    a = ap.parse_args()
    if a.threads is not None and a.threads < 1:
        ap.error("--threads needs a positive integer")
    if a.reps is not None and not 1 <= a.reps <= 64:
        ap.error("--reps needs an integer in 1..64")
    try:
        import torch
    except ImportError as e:
        print(f"pytorch_bench.py: PyTorch is not importable ({e}); install it "
              "(pip install torch) to run the PyTorch reference", file=sys.stderr)
        return 2
    if a.device == "cuda" and not torch.cuda.is_available():
        print("pytorch_bench.py: --device cuda but torch.cuda.is_available() is False",
              file=sys.stderr)
        return 2
    if a.threads:
        torch.set_num_threads(a.threads)
    reps = a.reps or (1 if a.quick else 5)
    dev = torch.device(a.device)
    t_start = time.perf_counter()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(0)
        label = f"PyTorch {torch.__version__} {name}"
        driver = f"CUDA {torch.version.cuda}"
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 like kdcl
        torch.backends.cudnn.allow_tf32 = False
    else:
        name = cpu_model()
        label = f"PyTorch {torch.__version__} CPU ({torch.get_num_threads()} threads)"
        driver = ""
    host = {"hostname": socket.gethostname(), "cpu_model": cpu_model(),
            "cpus": os.cpu_count(), "os": f"{platform.system()} {platform.release()} "
                                          f"{platform.machine()}",
            "loadavg_start": loadavg()}
    print(f"pytorch_bench {label}, {date}, host {host['hostname']} ({host['cpu_model']}, "
          f"{host['cpus']} CPUs, load {host['loadavg_start']})")
    b = Bench(torch, dev, reps, a.quick)
    b.gemm()
    np_results, np = [], None
    if dev.type == "cpu" and not a.no_numpy:
        try:
            import numpy as np
        except ImportError:
            print("(NumPy not importable: no numpy.matmul column)")
        if np is not None:
            np_results = b.gemm_numpy(np)
    X, Y = b.data(2048 if a.quick else 16384)
    X32, Y32 = b.data(1024 if a.quick else 8192, (3, 32, 32), 20240602)
    b.train(X, Y, X32, Y32)
    b.infer(X, Y)
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else None
    host["loadavg_end"] = loadavg()
    secs = time.perf_counter() - t_start
    print(f"\ntotal {secs:.1f} s")
    out = {
        "schema": SCHEMA,
        "tool": "pytorch",
        "torch_version": torch.__version__,
        "date": date,
        "host": host,
        "options": {"quick": a.quick, "reps": reps, "threads": torch.get_num_threads()},
        "seconds": secs,
        "devices": [{
            "label": label,
            "device": name,
            "platform": "PyTorch eager",
            "driver": driver,
            "type": "GPU" if dev.type == "cuda" else "CPU",
            "gemm_tuning": "torch (cuBLAS)" if dev.type == "cuda" else "torch (CPU BLAS)",
            "gemm_default_tuning": None,
            "results": b.results,
            "kernel_profile": [],
            "distill": None,
            "memory": {"peak_bytes": peak},
            "seconds": secs,
            "errors": b.errors,
        }],
    }
    if np_results:
        threads = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") \
            or str(os.cpu_count())
        out["devices"].append({
            "label": f"NumPy {np.__version__} {numpy_blas(np)} CPU ({threads} threads)",
            "device": name,
            "platform": "NumPy",
            "driver": numpy_blas(np),
            "type": "CPU",
            "gemm_tuning": numpy_blas(np),
            "gemm_default_tuning": None,
            "results": np_results,
            "kernel_profile": [],
            "distill": None,
            "memory": {"peak_bytes": None},
            "seconds": None,
            "errors": [],
        })
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(finite(out), f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, a.json)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
