#!/usr/bin/env python3
"""The workloads of `kdcl bench` in PyTorch eager mode, as a reference point.

    tools/pytorch_bench.py [--device cpu|cuda] [--json OUT] [--threads N] [--quick] [--reps N]

Measures, on synthetic data (random 28x28 u8 images, 10 classes):
  - GEMM GFLOP/s (torch.matmul) at the shapes of a 784-1200-1200-10 training
    step, row-major with the same transposes as kdcl (forward X W^T, weight
    gradients dY^T X, input gradients dY W) for B = 128 and 1024, plus 1024^3
    (and 4096^3 on CUDA);
  - training samples/s (SGD with momentum 0.9, cross-entropy) of the teacher
    784-1200-1200-10 (dropout 0.2 on the input / 0.5 on hidden units, max-norm
    3.5 on each unit's incoming weights) and the student 784-800-800-10 (no
    dropout) at B = 128 and 1024, one "epoch" of n examples per repetition;
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
        shapes = []
        for B in ((128,) if self.quick else (128, 1024)):
            shapes += [
                ("fwd_in", "fwd X*W1^T", B, B, 1200, 784, "NT"),
                ("fwd_hid", "fwd H1*W2^T", B, B, 1200, 1200, "NT"),
                ("fwd_out", "fwd H2*W3^T", B, B, 10, 1200, "NT"),
                ("dw_in", "dW1 = dY1^T*X", B, 1200, 784, B, "TN"),
                ("dw_hid", "dW2 = dY2^T*H1", B, 1200, 1200, B, "TN"),
                ("dw_out", "dW3 = dY3^T*H2", B, 10, 1200, B, "TN"),
                ("dx_hid", "dH1 = dY2*W2", B, B, 1200, 1200, "NN"),
                ("dx_out", "dH2 = dY3*W3", B, B, 1200, 10, "NN"),
            ]
        if not self.quick:
            shapes.append(("sq1024", "square 1024^3", None, 1024, 1024, 1024, "NN"))
            if self.device.type == "cuda":
                shapes.append(("sq4096", "square 4096^3", None, 4096, 4096, 4096, "NN"))
        return shapes

    def time_gemms(self, make, mm, variant):
        """Time mm(A, B) with (A, B) = make(m, n, k, trans) at every shape; returns
        the result entries (printed as they come)."""
        out = []
        for name, label, B, m, n, k, tr in self.gemm_shapes():
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
            rid = f"gemm.{name}.b{B}" if B else f"gemm.{name}"
            dims = f"{m}x{n}x{k}"
            lab = f"GEMM {label} B={B} ({dims} {tr})" if B else f"GEMM {label}"
            out.append(entry(rid, lab, "gemm", "GFLOP/s", st, m=m, n=n, k=k, trans=tr, batch=B,
                             variant=variant))
            print(f"  {label:16s} {dims:20s} {tr}  {st['median']:8.1f} "
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

    def data(self, n):
        torch = self.torch
        g = torch.Generator().manual_seed(20240601)
        x = torch.randint(0, 256, (n, 784), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 10, (n,), dtype=torch.int64, generator=g)
        return x.to(self.device), y.to(self.device)

    # ---------------------------------------------------------------- training
    def train(self, X, Y):
        torch = self.torch
        F = torch.nn.functional
        print("\nTraining (SGD momentum 0.9, cross-entropy), samples/s median [min-max]")
        configs = [("teacher", TEACHER, 0.2, 0.5, 3.5), ("student", STUDENT, 0.0, 0.0, 0.0)]
        for name, sizes, din, dh, max_norm in configs:
            for B in ((128,) if self.quick else (128, 1024)):
                model = self.mlp(sizes, din, dh, 3)
                model.train()
                opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
                linears = [m for m in model if isinstance(m, torch.nn.Linear)]

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
                # (the first step alone, with cuBLAS's start-up, would make them tiny)
                rate, _ = epoch(min(X.shape[0], 8 * B), 1)
                n = max(B, min(X.shape[0], int(rate * self.target) // B * B))
                seeds = iter(range(2, 1000))
                st = self.repeat(lambda: epoch(n, next(seeds)), self.work_cap)
                arch = "-".join(map(str, sizes))
                e = self.add(f"train.{name}.b{B}", f"train {name} {arch} B={B}", "train",
                             "samples/s", st, arch=arch, batch=B, examples=n,
                             dropout=[din, dh], max_norm=max_norm)
                if name == "teacher":
                    ms = 1e3 * B / st["median"]
                    self.add(f"step.teacher.b{B}",
                             f"teacher training step B={B} (wall ms, from the epoch rate)",
                             "step", "ms", {"median": ms, "min": 1e3 * B / st["max"],
                                            "max": 1e3 * B / st["min"], "reps": st["reps"]},
                             better="lower", arch=arch, batch=B)
                print(f"  {name:8s} {arch:17s} B={B:<5d} {st['median']:10.0f} "
                      f"[{st['min']:.0f}-{st['max']:.0f}]  (epochs of {n})")
                del e, model, opt

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
    b.train(X, Y)
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
            "errors": [],
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
