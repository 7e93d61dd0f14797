#!/usr/bin/env python3
"""Train the recipe of a kdcl checkpoint again in PyTorch, for a side-by-side
comparison: the same network (its "kdcl.model"), input transform, data,
epochs, batch size, SGD with kdcl's momentum ramp (or Adam/AdamW),
learning-rate schedule, weight decay, max-norm, translations and flips, all
read from the checkpoint's metadata. Prints the PyTorch test errors next to
the ones kdcl recorded.

usage: pytorch_recipe.py MODEL.safetensors [--data DIR] [--threads N]
                         [--seed S] [--epochs E] [--json OUT]
Needs torch and safetensors (pip); reads IDX data (MNIST / Fashion-MNIST).
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_rebuild import build, load_idx, read_header  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--data", help="dataset directory (default: the checkpoint's)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--torch-init", action="store_true",
                    help="keep PyTorch's default initialisation (default: kdcl's, He normal "
                         "std sqrt(2 / fan_in), biases 0, BatchNorm 1 / 0)")
    a = ap.parse_args()
    import torch
    import torch.nn.functional as F

    if a.threads:
        torch.set_num_threads(a.threads)
    meta = read_header(a.model).get("__metadata__", {})
    if "kdcl.model" not in meta:
        print("pytorch_recipe: the checkpoint has no kdcl.model", file=sys.stderr)
        return 2
    layers = json.loads(meta["kdcl.model"])
    mean = json.loads(meta.get("kdcl.input_mean", "[0]"))
    std = json.loads(meta.get("kdcl.input_std", "[1]"))
    g = lambda k, d: meta.get(k, d)
    epochs = a.epochs or int(g("epochs", "10"))
    batch = int(g("batch", "128"))
    lr0 = float(g("lr", "0.05"))
    decay = float(g("lr_decay", "1"))
    m0, m1, me = (float(v) for v in g("momentum", "0.5,0.9,5").split(","))
    wd = float(g("weight_decay", "0"))
    max_norm = float(g("max_norm", "0"))
    jitter = int(g("jitter", "0"))
    flip = int(g("flip", "0"))
    opt_name = g("optimizer", "sgd")
    sched = g("schedule", "exp")
    step_e, gamma, lr_min = (float(v) for v in g("schedule_args", "0,0.1,0").split(","))
    warm = int(g("warmup", "0"))
    seed = a.seed if a.seed is not None else int(g("seed", "1"))
    data = a.data or g("dataset", "/usr/share/datasets/fashion-mnist")
    torch.manual_seed(seed)
    model = build(layers, torch.nn, torch)
    if not a.torch_init:
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
                torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                if mod.bias is not None:
                    torch.nn.init.zeros_(mod.bias)
    xi, yi, n, c, h, w = load_idx(data, "train")
    xt, yt, nt, _, _, _ = load_idx(data, "test")
    X = torch.frombuffer(bytearray(xi), dtype=torch.uint8).view(n, c, h, w)
    Y = torch.frombuffer(bytearray(yi), dtype=torch.uint8).long()
    XT = torch.frombuffer(bytearray(xt), dtype=torch.uint8).view(nt, c, h, w)
    YT = torch.frombuffer(bytearray(yt), dtype=torch.uint8).long()
    mean_t = torch.tensor(mean).view(1, -1, 1, 1)
    std_t = torch.tensor(std).view(1, -1, 1, 1)
    norm = lambda u8: (u8.float() / 255.0 - mean_t) / std_t
    if opt_name in ("adam", "adamw"):
        cls = torch.optim.Adam if opt_name == "adam" else torch.optim.AdamW
        opt = cls(model.parameters(), lr=lr0, weight_decay=wd)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr0, momentum=m0, weight_decay=wd,
                              nesterov=opt_name == "nesterov")
    steps = (n + batch - 1) // batch
    constrained = [mod.weight for mod in model.modules()
                   if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d))]

    def lr_at(e, s):
        if sched == "step":
            lr = lr0 * gamma ** (e // int(step_e)) if step_e else lr0
        elif sched == "cosine":
            span = max(1, epochs - warm)
            t = min(1.0, max(0.0, (e - warm + s / steps) / span)) if e >= warm else 0.0
            lr = lr_min + (lr0 - lr_min) * 0.5 * (1 + math.cos(math.pi * t))
        else:
            lr = lr0 * decay ** e
        if warm and e < warm:
            lr *= (e * steps + s + 1) / (warm * steps)
        return lr

    t0 = time.time()
    for e in range(epochs):
        model.train()
        mom = m1 if not me or e >= me else m0 + (m1 - m0) * e / me
        for pg in opt.param_groups:
            if "momentum" in pg:
                pg["momentum"] = mom
        perm = torch.randperm(n)
        for s in range(steps):
            idx = perm[s * batch:(s + 1) * batch]
            xb = X[idx].float()
            if jitter:  # per-example translation, zero fill (kdcl's jitter / random crop)
                pad = F.pad(xb, (jitter,) * 4)
                sh = torch.randint(0, 2 * jitter + 1, (len(idx), 2))
                out = torch.empty_like(xb)
                for dy in range(2 * jitter + 1):
                    for dx in range(2 * jitter + 1):
                        sel = (sh[:, 0] == dy) & (sh[:, 1] == dx)
                        if sel.any():
                            out[sel] = pad[sel, :, dy:dy + h, dx:dx + w]
                xb = out
            if flip:
                fl = torch.rand(len(idx)) < 0.5
                xb[fl] = xb[fl].flip(3)
            xb = (xb / 255.0 - mean_t) / std_t
            for pg in opt.param_groups:
                pg["lr"] = lr_at(e, s)
            opt.zero_grad()
            F.cross_entropy(model(xb), Y[idx]).backward()
            opt.step()
            if max_norm > 0:
                with torch.no_grad():
                    for wt in constrained:
                        rows = wt.view(wt.shape[0], -1)
                        nrm = rows.norm(dim=1, keepdim=True).clamp(min=max_norm)
                        rows.mul_(max_norm / nrm)
        model.eval()
        with torch.no_grad():
            errs = sum(int((model(norm(XT[i:i + 1000])).argmax(1) != YT[i:i + 1000]).sum())
                       for i in range(0, nt, 1000))
        print(f"pytorch epoch {e + 1}/{epochs}  test errors {errs}  {time.time() - t0:.0f}s",
              flush=True)
    kd = meta.get("test_errors")
    print(f"PyTorch {torch.__version__}: {errs} test errors after {epochs} epochs "
          f"({time.time() - t0:.0f} s); kdcl's checkpoint recorded {kd}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "pytorch_errors": errs, "kdcl_errors": kd,
                       "epochs": epochs, "seconds": time.time() - t0,
                       "torch": torch.__version__}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
