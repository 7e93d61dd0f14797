#!/usr/bin/env python3
"""A teacher trained in PyTorch, distilled by kdcl.

1. Trains a small CNN (nn.Sequential: conv + BatchNorm, a residual block,
   max pooling, dropout) on Fashion-MNIST in PyTorch (CPU, --threads
   threads), input normalised with the training set's mean/std.
2. Writes it as a kdcl checkpoint with tools/torch_to_kdcl.py and checks
   that `kdcl eval` counts the same test errors as PyTorch.
3. Trains 784-100-10 students with kdcl, on the hard labels (`kdcl train`)
   and on the PyTorch teacher's soft targets (`kdcl distill --teacher`), for
   each seed, and prints the test errors (and writes results.json).

usage: torch_teacher_demo.py [--kdcl build/src/cli/kdcl] [--data DIR]
           [--out build/torch-teacher] [--epochs 2] [--threads 1]
           [--seeds 1,2,3] [--student-epochs 10] [--T 4] [--alpha 0.1]
Needs torch and safetensors (tools/onnx_venv.sh --torch makes a virtual
environment with them).
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def run(cmd):
    print("$ " + " ".join(cmd), flush=True)
    t = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {out.returncode}: {out.stderr.strip()}")
    return out.stdout, time.time() - t


def kdcl_errors(a, model):
    out, _ = run([a.kdcl, "eval", "--model", model, "--data", a.data, "--json"])
    return json.loads(out)["errors"]


def teacher_net(torch):
    from torch_to_kdcl import Residual
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),
        Residual(nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
                               nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1, bias=False),
                               nn.BatchNorm2d(32))),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kdcl", default=os.environ.get("KDCL_EXE", "build/src/cli/kdcl"))
    ap.add_argument("--data", default=os.environ.get("KDCL_DATA",
                                                     "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--out", default="build/torch-teacher")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--student-arch", default="784-100-10")
    ap.add_argument("--student-epochs", type=int, default=10)
    ap.add_argument("--T", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.1)
    a = ap.parse_args()
    try:
        import torch
        from torch_rebuild import load_idx
        from torch_to_kdcl import save_kdcl
    except ImportError as e:
        print(f"torch_teacher_demo: needs torch and safetensors ({e})", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)

    def split(name):
        images, labels, n, c, h, w = load_idx(a.data, name)
        x = torch.frombuffer(bytearray(images), dtype=torch.uint8).view(n, c, h, w)
        return x, torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()

    xtr, ytr = split("train")
    xte, yte = split("test")
    mean = (xtr.float() / 255).mean().item()
    std = (xtr.float() / 255).std().item()

    def norm(x):
        return (x.float() / 255 - mean) / std

    # 1. the teacher, in PyTorch
    net = teacher_net(torch)
    steps = a.epochs * ((len(xtr) + 127) // 128)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=steps)
    t0 = time.time()
    for epoch in range(a.epochs):
        net.train()
        perm = torch.randperm(len(xtr))
        for s in range(0, len(xtr), 128):
            idx = perm[s:s + 128]
            loss = torch.nn.functional.cross_entropy(net(norm(xtr[idx])), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"PyTorch epoch {epoch + 1}: loss {loss.item():.4f}, {time.time() - t0:.0f} s",
              flush=True)
    train_s = time.time() - t0
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(norm(xte[s:s + 1000])).argmax(1) for s in range(0, len(xte), 1000)])
    torch_errors = int((pred != yte).sum())
    print(f"PyTorch {torch.__version__} teacher: {torch_errors} test errors, "
          f"{train_s:.0f} s of training on {a.threads} thread(s)")

    # 2. into kdcl
    teacher = os.path.join(a.out, "torch_teacher.safetensors")
    save_kdcl(net, teacher, (1, 28, 28), [mean], [std],
              meta={"trained_in": f"PyTorch {torch.__version__} (tools/torch_teacher_demo.py)",
                    "epochs": a.epochs, "torch_test_errors": torch_errors})
    kdcl_teacher = kdcl_errors(a, teacher)
    print(f"kdcl eval of the converted teacher: {kdcl_teacher} errors "
          f"(PyTorch: {torch_errors})")

    # 3. students
    common = ["--arch", a.student_arch, "--data", a.data, "--epochs", str(a.student_epochs),
              "--lr", "0.1", "--lr-decay", "0.9", "--quiet"]
    rows = []
    for seed in a.seeds.split(","):
        hard = os.path.join(a.out, f"hard_s{seed}.safetensors")
        kd = os.path.join(a.out, f"distilled_s{seed}.safetensors")
        _, th = run([a.kdcl, "train", "--seed", seed, "--out", hard] + common)
        _, tk = run([a.kdcl, "distill", "--teacher", teacher, "--T", str(a.T), "--alpha",
                     str(a.alpha), "--seed", seed, "--out", kd] + common)
        rows.append({"seed": int(seed), "hard": kdcl_errors(a, hard), "distilled":
                     kdcl_errors(a, kd), "hard_s": round(th, 1), "distilled_s": round(tk, 1)})
        print(f"seed {seed}: hard labels {rows[-1]['hard']}, distilled {rows[-1]['distilled']}",
              flush=True)
    res = {"torch": torch.__version__, "teacher_epochs": a.epochs, "threads": a.threads,
           "input_mean": mean, "input_std": std, "torch_train_seconds": round(train_s, 1),
           "torch_teacher_errors": torch_errors, "kdcl_teacher_errors": kdcl_teacher,
           "student": a.student_arch, "student_epochs": a.student_epochs, "T": a.T,
           "alpha": a.alpha, "students": rows}
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    hm = sum(r["hard"] for r in rows) / len(rows)
    dm = sum(r["distilled"] for r in rows) / len(rows)
    print(f"\nteacher: PyTorch {torch_errors} errors, kdcl eval {kdcl_teacher}\n"
          f"{a.student_arch} students, seeds {a.seeds}: hard labels "
          f"{', '.join(str(r['hard']) for r in rows)} (mean {hm:.1f}); distilled "
          f"{', '.join(str(r['distilled']) for r in rows)} (mean {dm:.1f})")
    return 0 if abs(kdcl_teacher - torch_errors) <= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
