#!/usr/bin/env python3
"""Write a PyTorch network as a kdcl checkpoint (the reverse of torch_rebuild.py).

The network is a torch.nn.Sequential of the layers kdcl has: Linear, Conv2d
(groups 1, dilation 1, zero padding given as numbers), MaxPool2d / AvgPool2d
(no ceil_mode, dilation 1; AvgPool2d with count_include_pad=True and no
divisor_override), AdaptiveAvgPool2d(1), BatchNorm1d / BatchNorm2d (affine,
with running statistics), ReLU, Dropout, Flatten (start_dim 1, end_dim -1),
and residual blocks: a module with a `body` (nn.Sequential) and a `shortcut`
(nn.Sequential, or None for the identity) whose forward is
body(x) + shortcut(x) (the class `Residual` below is one). Nested
nn.Sequential containers are flattened. The checkpoint holds the tensors
under the names of kdcl's state_dict (0.weight, 4.body.0.weight, ...), the
"kdcl.model" JSON (README, "Checkpoints in PyTorch"), the input shape and
the input transform x = (pixel / 255 - mean[c]) / std[c] the network was
trained with. After writing, the network is rebuilt from the file alone
(torch_rebuild.build) and its outputs compared with the original's on random
inputs; the file is written to a temporary name and renamed, so a failure
leaves nothing behind.

As a library:
    from torch_to_kdcl import save_kdcl
    save_kdcl(model, "teacher.safetensors", input_shape=(1, 28, 28),
              mean=[0.2860], std=[0.3530], meta={"trained_by": "my_script.py"})
From the command line, on a module saved whole with torch.save(model, PATH):
    torch_to_kdcl.py MODEL.pt OUT.safetensors --input-shape 1,28,28
                     [--mean 0.2860] [--std 0.3530]
Needs torch and safetensors (pip). Exit status 0, or 2 with one line naming
the problem (an unsupported layer, an argument kdcl does not support, a
network that does not fit the input shape).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

FORMAT = "kdcl-model-2"


class ConversionError(ValueError):
    pass


def _pair(v, what):
    if isinstance(v, str):
        raise ConversionError(f"{what}={v!r}: kdcl needs numbers")
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ConversionError(f"{what}={v!r}: kdcl needs 2-D values")
        return [int(v[0]), int(v[1])]
    return [int(v), int(v)]


def _residual_parts(mod, nn):
    body = getattr(mod, "body", None)
    if not isinstance(body, nn.Sequential):
        return None
    shortcut = getattr(mod, "shortcut", None)
    if shortcut is not None and not isinstance(shortcut, nn.Sequential):
        return None
    names = {n for n, _ in mod.named_children()}
    if names - {"body", "shortcut"}:
        return None
    return body, shortcut


def _flatten(seq, nn):
    out = []
    for m in seq:
        if isinstance(m, nn.Sequential):
            out.extend(_flatten(m, nn))
        else:
            out.append(m)
    return out


def _layer(mod, where, nn, torch):
    """kdcl.model JSON of one module and its tensors {suffix: tensor}."""
    t = type(mod)
    if isinstance(mod, nn.Linear):
        return ({"type": "Linear", "args": {"in_features": mod.in_features,
                                            "out_features": mod.out_features,
                                            "bias": mod.bias is not None}},
                {"weight": mod.weight, **({"bias": mod.bias} if mod.bias is not None else {})})
    if isinstance(mod, nn.Conv2d):
        if mod.groups != 1 or tuple(mod.dilation) != (1, 1) or mod.padding_mode != "zeros":
            raise ConversionError(f"{where}: Conv2d with groups={mod.groups}, dilation="
                                  f"{mod.dilation}, padding_mode={mod.padding_mode!r} (kdcl: 1, "
                                  "1, 'zeros')")
        return ({"type": "Conv2d", "args": {
            "in_channels": mod.in_channels, "out_channels": mod.out_channels,
            "kernel_size": _pair(mod.kernel_size, f"{where}: kernel_size"),
            "stride": _pair(mod.stride, f"{where}: stride"),
            "padding": _pair(mod.padding, f"{where}: padding"),
            "bias": mod.bias is not None}},
            {"weight": mod.weight, **({"bias": mod.bias} if mod.bias is not None else {})})
    if isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
        name = "MaxPool2d" if isinstance(mod, nn.MaxPool2d) else "AvgPool2d"
        if mod.ceil_mode:
            raise ConversionError(f"{where}: {name} with ceil_mode=True (kdcl: False)")
        args = {"kernel_size": _pair(mod.kernel_size, f"{where}: kernel_size"),
                "stride": None if mod.stride is None else _pair(mod.stride, f"{where}: stride"),
                "padding": _pair(mod.padding, f"{where}: padding")}
        if args["stride"] == args["kernel_size"]:
            args["stride"] = None
        if name == "MaxPool2d":
            if _pair(mod.dilation, "dilation") != [1, 1] or mod.return_indices:
                raise ConversionError(f"{where}: MaxPool2d with dilation {mod.dilation} or "
                                      "return_indices (kdcl: 1, False)")
        else:
            if not mod.count_include_pad or mod.divisor_override is not None:
                raise ConversionError(f"{where}: AvgPool2d with count_include_pad=False or a "
                                      "divisor_override (kdcl divides by the kernel size, "
                                      "padding included)")
            args["count_include_pad"] = True
        return {"type": name, "args": args}, {}
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        if _pair(mod.output_size, f"{where}: output_size") != [1, 1]:
            raise ConversionError(f"{where}: AdaptiveAvgPool2d({mod.output_size}) (kdcl: 1)")
        return {"type": "AdaptiveAvgPool2d", "args": {"output_size": 1}}, {}
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        name = "BatchNorm1d" if isinstance(mod, nn.BatchNorm1d) else "BatchNorm2d"
        if not mod.affine or not mod.track_running_stats or mod.momentum is None:
            raise ConversionError(f"{where}: {name} needs affine=True, track_running_stats=True "
                                  "and a momentum (not None)")
        nbt = mod.num_batches_tracked
        return ({"type": name, "args": {"num_features": mod.num_features, "eps": mod.eps,
                                        "momentum": mod.momentum}},
                {"weight": mod.weight, "bias": mod.bias, "running_mean": mod.running_mean,
                 "running_var": mod.running_var,
                 "num_batches_tracked": nbt if nbt is not None else torch.tensor(0)})
    if isinstance(mod, nn.ReLU):
        return {"type": "ReLU", "args": {}}, {}
    if isinstance(mod, nn.Dropout):
        return {"type": "Dropout", "args": {"p": mod.p}}, {}
    if isinstance(mod, nn.Flatten):
        if mod.start_dim != 1 or mod.end_dim != -1:
            raise ConversionError(f"{where}: Flatten({mod.start_dim}, {mod.end_dim}) (kdcl: 1, -1)")
        return {"type": "Flatten", "args": {}}, {}
    raise ConversionError(f"{where}: {t.__name__} is not a layer kdcl has (Linear, Conv2d, "
                          "MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), BatchNorm1d/2d, ReLU, "
                          "Dropout, Flatten, residual blocks with body/shortcut)")


def _walk(mods, prefix, where, nn, torch, tensors):
    layers = []
    for i, m in enumerate(_flatten(mods, nn)):
        w = f"{where}layer {i}"
        parts = _residual_parts(m, nn) if not isinstance(m, nn.Sequential) else None
        if parts is not None:
            body, shortcut = parts
            layers.append({"type": "Residual",
                           "body": _walk(body, f"{prefix}{i}.body.", f"{w} body ", nn, torch,
                                         tensors),
                           "shortcut": (_walk(shortcut, f"{prefix}{i}.shortcut.",
                                              f"{w} shortcut ", nn, torch, tensors)
                                        if shortcut is not None and len(shortcut) else None)})
            continue
        spec, ts = _layer(m, w, nn, torch)
        layers.append(spec)
        for k, v in ts.items():
            v = v.detach().to("cpu")
            v = v.to(torch.int64) if k == "num_batches_tracked" else v.to(torch.float32)
            if k != "num_batches_tracked" and not torch.isfinite(v).all():
                raise ConversionError(f"{w}: {k} contains NaN/Inf")
            tensors[f"{prefix}{i}.{k}"] = v.contiguous().clone()
    return layers


def convert(model, input_shape, mean=None, std=None, meta=None):
    """(tensors, metadata) of a kdcl checkpoint for `model` on [C, H, W] inputs."""
    import torch
    nn = torch.nn
    if not isinstance(model, nn.Sequential):
        raise ConversionError(f"the network must be a torch.nn.Sequential, not "
                              f"{type(model).__name__}")
    c, h, w = (int(v) for v in input_shape)
    if not (1 <= c <= 4 and h >= 1 and w >= 1):
        raise ConversionError(f"input shape {list(input_shape)}: kdcl takes 1..4 channels")
    mean = [0.0] * c if mean is None else [float(v) for v in mean]
    std = [1.0] * c if std is None else [float(v) for v in std]
    if len(mean) == 1 and c > 1:
        mean *= c
    if len(std) == 1 and c > 1:
        std *= c
    if len(mean) != c or len(std) != c or not all(s > 0 for s in std):
        raise ConversionError(f"--mean/--std need {c} values (std > 0), got {mean} / {std}")
    tensors = {}
    layers = _walk(model, "", "", nn, torch, tensors)
    md = {"format": FORMAT, "kdcl.model": json.dumps(layers),
          "kdcl.input_shape": json.dumps([c, h, w]),
          "kdcl.input_mean": json.dumps(mean), "kdcl.input_std": json.dumps(std),
          "source": f"PyTorch {torch.__version__}, converted by tools/torch_to_kdcl.py"}
    for k, v in (meta or {}).items():
        if k not in md:
            md[str(k)] = str(v)
    return tensors, md


def _check_rebuild(model, tensors, md, input_shape):
    """The module rebuilt from the file's JSON and tensors computes what the original does."""
    import torch
    import torch_rebuild
    rebuilt = torch_rebuild.build(json.loads(md["kdcl.model"]), torch.nn, torch)
    rebuilt.load_state_dict(tensors, strict=True)
    was = model.training
    model.eval()
    rebuilt.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn((4, *input_shape), generator=g)
    try:
        with torch.no_grad():
            want = model(x)
            got = rebuilt(x)
    except RuntimeError as e:
        raise ConversionError(f"the network does not run on inputs {list(input_shape)}: "
                              f"{str(e).splitlines()[0]}")
    finally:
        model.train(was)
    if want.dim() != 2:
        raise ConversionError(f"the network's output has shape {list(want.shape)}; kdcl needs "
                              "[N, classes] (end with Flatten and Linear)")
    err = (want - got).abs().max().item()
    tol = 1e-4 * max(1.0, want.abs().max().item())
    if not err <= tol:
        raise ConversionError(f"the rebuilt network differs from the original by {err:g} (a "
                              "residual block whose forward is not body(x) + shortcut(x)?)")


def save_kdcl(model, path, input_shape, mean=None, std=None, meta=None):
    """Write `model` as a kdcl checkpoint at `path` (atomically)."""
    from safetensors.torch import save_file
    tensors, md = convert(model, input_shape, mean, std, meta)
    _check_rebuild(model, tensors, md, input_shape)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        save_file(tensors, tmp, metadata=md)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return md


def Residual(body, shortcut=None):
    """A residual block kdcl understands: body(x) + (shortcut(x) or x)."""
    import torch

    class _Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body
            self.shortcut = shortcut

        def forward(self, x):
            return self.body(x) + (self.shortcut(x) if self.shortcut is not None else x)

    return _Residual()


def _floats(s):
    return [float(v) for v in s.split(",")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("module", help="a module saved with torch.save(model, PATH)")
    ap.add_argument("out")
    ap.add_argument("--input-shape", required=True, help="C,H,W")
    ap.add_argument("--mean", type=_floats, help="per-channel mean of pixel / 255 (default 0)")
    ap.add_argument("--std", type=_floats, help="per-channel std of pixel / 255 (default 1)")
    a = ap.parse_args()
    try:
        import torch
        import safetensors  # noqa: F401
    except ImportError as e:
        print(f"torch_to_kdcl: needs torch and safetensors ({e})", file=sys.stderr)
        return 2
    try:
        shape = [int(v) for v in a.input_shape.split(",")]
        if len(shape) != 3:
            raise ValueError
    except ValueError:
        print(f"torch_to_kdcl: --input-shape must be C,H,W, got {a.input_shape!r}", file=sys.stderr)
        return 2
    try:
        model = torch.load(a.module, map_location="cpu", weights_only=False)
        md = save_kdcl(model, a.out, shape, a.mean, a.std)
    except Exception as e:  # one clear line, nothing written
        print(f"torch_to_kdcl: {a.module}: {e}", file=sys.stderr)
        return 2
    n = sum(1 for _ in json.loads(md["kdcl.model"]))
    print(f"wrote {a.out}: {n} layers, input {shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
