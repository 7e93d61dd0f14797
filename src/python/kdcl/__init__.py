"""kdcl from Python: knowledge distillation on OpenCL devices.

A thin layer over the shared library libkdcl (ctypes), numpy arrays in and
out::

    import kdcl
    ctx = kdcl.Context("pocl")                         # as kdcl's --device
    train = kdcl.Dataset.load("/usr/share/datasets/fashion-mnist")
    test = kdcl.Dataset.load("/usr/share/datasets/fashion-mnist", "test")
    teacher = kdcl.Model("784-800-800-10", (1, 28, 28), 10, context=ctx)
    kdcl.train(teacher, train, epochs=5, lr=0.1)
    student = kdcl.Model("784-300-10", (1, 28, 28), 10, context=ctx)
    hist = kdcl.distill(student, teacher, train, T=4, alpha=0.1, epochs=5,
                        on_epoch=lambda m: print(m["epoch"], m["train_loss"]))
    print(student.evaluate(test).errors)
    logits = student.predict(x_uint8)                  # [N, 10] float32

Errors of the library raise kdcl.Error with its message (and .status, the
status name such as "KDCL_ERR_INVALID_ARG"); wrong Python types raise
TypeError, wrong shapes or layouts ValueError. A closed context closes its
models; using a closed model or context raises kdcl.Error.

Training options are named as kdcl train's flags ('_' for '-'): epochs,
batch, lr, lr_decay, momentum (A or (A, B, EPOCHS)), weight_decay, max_norm,
jitter, crop, flip, optimizer, schedule, warmup, seed; plus val (a Dataset,
or a number of training examples held out as kdcl's --val N), normalize
(--normalize: the training images' per-channel mean and std as the model's
input transform) and on_epoch.

on_epoch(metrics) is called after every epoch with a dict: epoch,
train_loss, train_error, val_loss, val_error, val_errors (None without a
validation set), lr, momentum, seconds, samples_per_s. Returning False (not
None) or raising kdcl.StopTraining stops the training after that epoch; any
other exception stops it and is raised again from train() / distill().
"""
import json
import math
import os
import weakref

import numpy as np

from . import _lib
from ._lib import lib

__all__ = ["Error", "StopTraining", "devices", "Context", "default_context", "Dataset", "Model",
           "EvalResult", "train", "distill", "onnx_available"]


class Error(RuntimeError):
    """A failure reported by libkdcl: str(e) is the library's message,
    e.status the status name ("KDCL_ERR_IO", ...)."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class StopTraining(Exception):
    """Raise from an on_epoch callback to stop training after that epoch."""


def _check(status):
    if status:
        msg = (lib.kdcl_last_error() or b"").decode("utf-8", "replace")
        name = (lib.kdcl_status_name(status) or b"").decode()
        raise Error(msg or name, name)


def _json_call(fn, *args):
    needed = _lib.c_size(0)
    _check(fn(*args, None, 0, _lib.ctypes.byref(needed)))
    buf = _lib.ctypes.create_string_buffer(needed.value)
    _check(fn(*args, buf, needed.value, _lib.ctypes.byref(needed)))
    return json.loads(buf.value.decode("utf-8", "replace"))


def _path(p):
    if not isinstance(p, (str, bytes)) and not hasattr(p, "__fspath__"):
        raise TypeError(f"expected a path, got {type(p).__name__}")
    p = os.fsencode(p)
    if b"\0" in p:
        raise ValueError("a path with a NUL character")
    return p


def devices():
    """Every OpenCL device: a list of dicts (id "P:D", name, platform, vendor,
    type, compute_units, global_mem, max_alloc, ...)."""
    return _json_call(lib.kdcl_devices_json)


def onnx_available():
    """True when libkdcl was built with ONNX export."""
    return bool(lib.kdcl_onnx_available())


class _Owned:
    """A library object this Python object owns (its handle _h): freed by
    close(), at the end of a with block, or when it is garbage-collected."""

    _h = None

    @property
    def closed(self):
        return self._h is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if self._h is not None:
                self.close()
        except Exception:
            pass


class Context(_Owned):
    """An OpenCL device with its queue and kernels. device: as kdcl's
    --device ("pocl", "intel", "cpu", "gpu", "0:0", a name; None: $KDCL_DEVICE,
    else the first GPU, else the first device). close() (or a with block)
    frees it and closes the models made on it."""

    def __init__(self, device=None):
        if device is not None and not isinstance(device, str):
            raise TypeError(f"device must be a string such as 'pocl' or '0:0', got "
                            f"{type(device).__name__}")
        self._h = None
        self._children = weakref.WeakSet()
        h = _lib.c_void_p()
        _check(lib.kdcl_ctx_create(device.encode() if device is not None else None,
                                   _lib.ctypes.byref(h)))
        self._h = h
        self.device = _json_call(lib.kdcl_ctx_device_json, h)

    def _handle(self):
        if self._h is None:
            raise Error("the context is closed", "KDCL_ERR_INVALID_ARG")
        return self._h

    def close(self):
        """Free the context; models made on it are closed first."""
        if self._h is None:
            return
        for m in list(self._children):
            m._close("its context was closed")
        lib.kdcl_ctx_destroy(self._h)
        self._h = None

    def __repr__(self):
        if self._h is None:
            return "<kdcl.Context closed>"
        return f"<kdcl.Context {self.device['id']} {self.device['name']!r}>"


_default_ctx = None


def default_context():
    """The context models get when none is given (made on first use, from
    $KDCL_DEVICE or the default rule)."""
    global _default_ctx
    if _default_ctx is None or _default_ctx.closed:
        _default_ctx = Context()
    return _default_ctx


def _image_shape(x, what):
    """x: a C-contiguous numpy array [N, H, W] or [N, C, H, W] -> (n, c, h, w)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, got {type(x).__name__}")
    if x.ndim == 3:
        n, h, w = x.shape
        c = 1
    elif x.ndim == 4:
        n, c, h, w = x.shape
    else:
        raise ValueError(f"{what} must have shape [N, H, W] or [N, C, H, W], got {x.shape}")
    if not x.flags["C_CONTIGUOUS"]:
        raise ValueError(f"{what} must be C-contiguous (use np.ascontiguousarray)")
    return n, c, h, w


def _as_u8_images(x, what):
    """x: uint8 [N, H, W] or [N, C, H, W], C-contiguous -> (n, c, h, w)."""
    if isinstance(x, np.ndarray) and x.dtype != np.uint8:
        raise TypeError(f"{what} must be uint8 pixels, got dtype {x.dtype}")
    return _image_shape(x, what)


class Dataset(_Owned):
    """Examples held on the host: uint8 images and int32 labels (kdcl's
    kdcl_dataset). Independent of any context."""

    def __init__(self, _handle=None):
        self._h = None
        if _handle is None:
            raise TypeError("use Dataset.from_numpy(x, y) or Dataset.load(dir)")
        self._h = _handle

    @staticmethod
    def _new():
        h = lib.kdcl_dataset_create()
        if not h:
            raise MemoryError("kdcl: out of host memory")
        return h

    @classmethod
    def from_numpy(cls, x, y, n_classes=None):
        """x: uint8 [N, H, W] (grey) or [N, C, H, W] (C <= 4), C-contiguous;
        y: N integer labels in [0, n_classes) (n_classes None: max + 1).
        The arrays are copied."""
        n, c, h, w = _as_u8_images(x, "x")
        if not isinstance(y, np.ndarray):
            y = np.asarray(y)
        if y.dtype.kind not in "iu":
            raise TypeError(f"y must hold integer labels, got dtype {y.dtype}")
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"y must have shape [{n}] (one label per image), got {y.shape}")
        if n and (y.min() < 0 or y.max() > np.iinfo(np.int32).max):
            raise ValueError(f"labels must be in [0, 2^31), got {y.min()}..{y.max()}")
        y32 = np.ascontiguousarray(y, dtype=np.int32)
        if n_classes is not None and (not isinstance(n_classes, (int, np.integer))
                                      or n_classes < 1):
            raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
        ds = cls._new()
        s = lib.kdcl_dataset_from_arrays(x.ctypes.data, y32.ctypes.data, n, c, h, w,
                                         _lib.LAYOUT_CHW, int(n_classes or 0), ds)
        if s:
            lib.kdcl_dataset_destroy(ds)
            _check(s)
        return cls(ds)

    @classmethod
    def load(cls, directory, split="train"):
        """A split ("train", "test") of a directory in any format kdcl's
        --data reads (IDX, CIFAR binary, image folders)."""
        if not isinstance(split, str):
            raise TypeError("split must be a string")
        ds = cls._new()
        s = lib.kdcl_dataset_load_split(_path(directory), split.encode(), ds)
        if s:
            lib.kdcl_dataset_destroy(ds)
            _check(s)
        return cls(ds)

    def _handle(self):
        if self._h is None:
            raise Error("the dataset is closed", "KDCL_ERR_INVALID_ARG")
        return self._h

    def _shape(self):
        v = [_lib.c_size() for _ in range(5)]
        lib.kdcl_dataset_shape(self._handle(), *[_lib.ctypes.byref(a) for a in v])
        return [a.value for a in v]

    def __len__(self):
        return self._shape()[0]

    @property
    def shape(self):
        """(C, H, W) of one example."""
        _, c, h, w, _ = self._shape()
        return (c, h, w)

    @property
    def n_classes(self):
        return self._shape()[4]

    def numpy(self):
        """Copies of the examples: (uint8 [N, C, H, W], int32 [N])."""
        n, c, h, w, _ = self._shape()
        x = np.empty((n, c, h, w), np.uint8)
        y = np.empty((n,), np.int32)
        lib.kdcl_dataset_to_arrays(self._handle(), _lib.LAYOUT_CHW, x.ctypes.data, y.ctypes.data)
        return x, y

    def split(self, n_val, seed=1):
        """(train, val): the last n_val examples of a seeded permutation held
        out, as kdcl's --val N (both keep the original order)."""
        a, b = self._new(), self._new()
        s = lib.kdcl_dataset_split_val(self._handle(), int(n_val), int(seed), a, b)
        if s:
            lib.kdcl_dataset_destroy(a)
            lib.kdcl_dataset_destroy(b)
            _check(s)
        return Dataset(a), Dataset(b)

    def channel_stats(self):
        """Per-channel (mean, std) of the pixels / 255 (float32 arrays)."""
        c = self.shape[0]
        mean = (_lib.c_float * 4)()
        std = (_lib.c_float * 4)()
        _check(lib.kdcl_dataset_channel_stats(self._handle(), mean, std))
        return np.array(mean[:c], np.float32), np.array(std[:c], np.float32)

    def close(self):
        if self._h is not None:
            lib.kdcl_dataset_destroy(self._h)
            self._h = None

    def __repr__(self):
        if self._h is None:
            return "<kdcl.Dataset closed>"
        n, c, h, w, k = self._shape()
        return f"<kdcl.Dataset {n} x {c}x{h}x{w}, {k} classes>"


class EvalResult:
    """Test-mode evaluation: errors of n examples, error_rate, mean
    cross-entropy loss."""

    def __init__(self, n, errors, loss):
        self.n, self.errors, self.loss = n, errors, loss
        self.error_rate = errors / n if n else float("nan")

    def __repr__(self):
        return (f"EvalResult(errors={self.errors}, n={self.n}, "
                f"error_rate={self.error_rate:.4f}, loss={self.loss:.4f})")


class Model(_Owned):
    """A network on a context. Model(arch, input_shape, classes): arch as
    kdcl's --arch ("784-800-800-10", "lenet5", "cnn-small", "resnet20", a
    layer list such as "conv(32,5,p=2),relu,maxpool(2),flatten,linear(K)",
    or "@file.json"); input_shape (H, W) or (C, H, W). Weights drawn from
    seed (He initialisation); dropout P or (P_in, P_hidden) as kdcl's
    --dropout. max_batch bounds predict's and training's batches (halved
    down to 128 while it does not fit the device)."""

    def __init__(self, arch, input_shape, classes, *, context=None, seed=1, dropout=None,
                 max_batch=1000, _handle=None):
        self._h = None
        self._why = "the model is closed"
        self.context = context if context is not None else default_context()
        if not isinstance(self.context, Context):
            raise TypeError("context must be a kdcl.Context")
        ch = self.context._handle()
        if _handle is not None:
            self._h = _handle
            self.context._children.add(self)
            return
        if not isinstance(arch, str):
            raise TypeError(f"arch must be a string such as '784-800-10' or 'lenet5', got "
                            f"{type(arch).__name__}")
        shape = tuple(int(v) for v in input_shape)
        if len(shape) == 2:
            shape = (1,) + shape
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"input_shape must be (H, W) or (C, H, W), got {input_shape!r}")
        if not isinstance(classes, (int, np.integer)) or classes < 1:
            raise ValueError(f"classes must be a positive integer, got {classes!r}")
        spec = _lib.ModelSpec()
        _check(lib.kdcl_model_spec_parse(arch.encode(), int(classes), _lib.ctypes.byref(spec)))
        try:
            if dropout is not None:
                d = (0.0, float(dropout)) if np.isscalar(dropout) else tuple(map(float, dropout))
                _check(lib.kdcl_model_spec_add_dropout(_lib.ctypes.byref(spec), d[0], d[1]))
            h = _lib.c_void_p()
            b = int(max_batch)
            while True:
                s = lib.kdcl_model_create(ch, _lib.ctypes.byref(spec), shape[0], shape[1],
                                          shape[2], b, _lib.ctypes.byref(h))
                if s != 7 or b <= 128:  # KDCL_ERR_OOM: a smaller batch
                    break
                b = max(128, b // 2)
            _check(s)
        finally:
            lib.kdcl_model_spec_free(_lib.ctypes.byref(spec))
        s = lib.kdcl_model_init(h, int(seed))
        if s:
            lib.kdcl_model_destroy(h)
            _check(s)
        self._h = h
        self.context._children.add(self)

    @classmethod
    def load(cls, path, context=None, max_batch=1000):
        """A checkpoint (safetensors) written by kdcl or Model.save."""
        ctx = context if context is not None else default_context()
        h = _lib.c_void_p()
        _check(lib.kdcl_model_load_fit(ctx._handle(), _path(path), int(max_batch), 1,
                                       _lib.ctypes.byref(h), None))
        return cls(None, None, None, context=ctx, _handle=h)

    def _handle(self):
        if self._h is None:
            raise Error(self._why, "KDCL_ERR_INVALID_ARG")
        self.context._handle()
        return self._h

    def _close(self, why):
        if self._h is not None:
            lib.kdcl_model_destroy(self._h)
            self._h = None
            self._why = f"the model is closed ({why})"

    def close(self):
        """Free the model's device memory; using it afterwards raises kdcl.Error."""
        self._close("close() was called")

    @property
    def input_shape(self):
        """(C, H, W)."""
        v = [_lib.c_size() for _ in range(3)]
        lib.kdcl_model_input_shape(self._handle(), *[_lib.ctypes.byref(a) for a in v])
        return tuple(a.value for a in v)

    @property
    def classes(self):
        return lib.kdcl_model_classes(self._handle())

    @property
    def max_batch(self):
        return lib.kdcl_model_max_batch(self._handle())

    @property
    def n_params(self):
        return lib.kdcl_model_n_params(self._handle())

    @property
    def arch(self):
        """The architecture ("784-800-10", or the layer list)."""
        buf = _lib.ctypes.create_string_buffer(4096)
        lib.kdcl_model_describe(self._handle(), buf, len(buf))
        return buf.value.decode()

    @property
    def input_norm(self):
        """(mean, std) per channel of the input transform
        x = (pixel / 255 - mean) / std."""
        c = self.input_shape[0]
        mean = (_lib.c_float * 4)()
        std = (_lib.c_float * 4)()
        lib.kdcl_model_input_norm(self._handle(), mean, std)
        return np.array(mean[:c], np.float32), np.array(std[:c], np.float32)

    def set_input_norm(self, mean, std):
        c = self.input_shape[0]
        m = np.broadcast_to(np.asarray(mean, np.float32), (c,))
        s = np.broadcast_to(np.asarray(std, np.float32), (c,))
        _check(lib.kdcl_model_set_input_norm(self._handle(), (_lib.c_float * c)(*m),
                                             (_lib.c_float * c)(*s)))

    def normalize_input(self, x):
        """uint8 images -> the float32 input the model computes from them."""
        n, c, h, w = _as_u8_images(x, "x")
        mean, std = self.input_norm
        xf = x.reshape(n, c, h, w).astype(np.float32) / np.float32(255)
        return ((xf - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)

    def predict(self, x):
        """Test-mode logits, float32 [N, classes]. x: uint8 pixels [N, H, W]
        / [N, C, H, W] (the model's input transform applied), or float32
        [N, C, H, W] already transformed (see normalize_input)."""
        h = self._handle()
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy array, got {type(x).__name__}")
        if x.dtype == np.uint8:
            kind = _lib.KDCL_U8
        elif x.dtype == np.float32:
            kind = _lib.KDCL_F32
        else:
            raise TypeError(f"x must be uint8 pixels or float32 normalised inputs, got dtype "
                            f"{x.dtype}")
        n, c, hh, ww = _image_shape(x, "x")
        out = np.empty((n, lib.kdcl_model_classes(h)), np.float32)
        _check(lib.kdcl_model_predict(h, x.ctypes.data, kind, _lib.LAYOUT_CHW, n, c, hh, ww,
                                      out.ctypes.data))
        return out

    def evaluate(self, ds):
        """Test-mode errors and mean cross-entropy over a Dataset."""
        if not isinstance(ds, Dataset):
            raise TypeError("evaluate needs a kdcl.Dataset")
        r = _lib.EvalResult()
        _check(lib.kdcl_evaluate(self._handle(), ds._handle(), 0, _lib.ctypes.byref(r)))
        out = EvalResult(r.n, r.errors, r.loss)
        lib.kdcl_eval_result_free(_lib.ctypes.byref(r))
        return out

    def save(self, path, metadata=None):
        """Write a safetensors checkpoint (as kdcl train's), with metadata
        (str -> str) added."""
        meta = dict(metadata or {})
        keys = (_lib.c_char_p * max(1, len(meta)))(*[str(k).encode() for k in meta])
        vals = (_lib.c_char_p * max(1, len(meta)))(*[str(v).encode() for v in meta.values()])
        _check(lib.kdcl_model_save(self._handle(), _path(path), keys, vals, len(meta)))

    def export_onnx(self, path, softmax_T=None, input="float32", metadata=None):
        """Write the model as ONNX (opset 17, inference form, raw pixels in,
        the input transform its first nodes): logits out, or with softmax_T
        Softmax(logits / T). input: "float32" (0..255) or "uint8". A layer
        without an ONNX mapping raises kdcl.Error and writes nothing."""
        if input not in ("float32", "uint8"):
            raise ValueError(f"input must be 'float32' or 'uint8', got {input!r}")
        if softmax_T is not None and not (isinstance(softmax_T, (int, float))
                                          and math.isfinite(softmax_T) and softmax_T > 0):
            raise ValueError(f"softmax_T must be a positive number or None, got {softmax_T!r}")
        meta = dict(metadata or {})
        keys = (_lib.c_char_p * max(1, len(meta)))(*[str(k).encode() for k in meta])
        vals = (_lib.c_char_p * max(1, len(meta)))(*[str(v).encode() for v in meta.values()])
        o = _lib.OnnxOpts(float(softmax_T or 0), 1 if input == "uint8" else 0, keys, vals,
                          len(meta))
        _check(lib.kdcl_model_export_onnx(self._handle(), _path(path), _lib.ctypes.byref(o)))

    def __repr__(self):
        if self._h is None:
            return "<kdcl.Model closed>"
        return f"<kdcl.Model {self.arch} {self.input_shape} -> {self.classes}>"


# ---- training ----

def _stats_dict(st, has_val):
    d = {k: getattr(st, k) for k in ("epoch", "train_loss", "train_error", "val_loss",
                                      "val_error", "val_errors", "lr", "momentum", "seconds",
                                      "samples_per_s")}
    if not has_val:
        d["val_loss"] = d["val_error"] = d["val_errors"] = None
    return d


def _opt_text(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (tuple, list)):
        return ",".join(_opt_text(a) for a in v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


class _Run:
    """Options and callback of one train()/distill() call."""

    def __init__(self, model, ds, opts):
        if not isinstance(model, Model):
            raise TypeError("the model must be a kdcl.Model")
        if not isinstance(ds, Dataset):
            raise TypeError("the data must be a kdcl.Dataset")
        self.keep = []  # datasets made here, alive for the call
        self.on_epoch = opts.pop("on_epoch", None)
        if self.on_epoch is not None and not callable(self.on_epoch):
            raise TypeError("on_epoch must be callable")
        self.verbose = bool(opts.pop("verbose", False))
        normalize = bool(opts.pop("normalize", False))
        val = opts.pop("val", None)
        self.o = lib.kdcl_train_opts_create()
        if not self.o:
            raise MemoryError("kdcl: out of host memory")
        try:
            for k, v in opts.items():
                if v is None:
                    continue
                _check(lib.kdcl_train_opts_set(self.o, k.encode(), _opt_text(v).encode()))
            self.ds = ds
            if isinstance(val, (int, np.integer)) and not isinstance(val, bool):
                if val > 0:
                    seed = int(opts.get("seed", 1))
                    self.ds, val = ds.split(int(val), seed)
                    self.keep += [self.ds, val]
                else:
                    val = None
            elif val is not None and not isinstance(val, Dataset):
                raise TypeError("val must be a kdcl.Dataset or a number of examples")
            self.val = val
            if val is not None:
                lib.kdcl_train_opts_set_val(self.o, val._handle())
            if normalize:
                mean, std = self.ds.channel_stats()
                model.set_input_norm(mean, std)
            self.history = []
            self.error = None
            self.cb = _lib.ON_EPOCH(self._on_epoch)
            lib.kdcl_train_opts_set_on_epoch(self.o, self.cb, None)
        except BaseException:
            lib.kdcl_train_opts_destroy(self.o)
            raise

    def _on_epoch(self, _user, st):
        try:
            m = _stats_dict(st.contents, self.val is not None)
            self.history.append(m)
            if self.verbose:
                line = (f"epoch {m['epoch']:3d}  loss {m['train_loss']:.4f}  "
                        f"train err {100 * m['train_error']:.2f}%")
                if m["val_error"] is not None:
                    line += f"  val err {100 * m['val_error']:.2f}% ({m['val_errors']})"
                print(line + f"  lr {m['lr']:.4g}  {m['seconds']:.1f}s  "
                      f"{m['samples_per_s']:.0f} samples/s", flush=True)
            if self.on_epoch is not None and self.on_epoch(dict(m)) is False:
                return 1
            return 0
        except StopTraining:
            return 1
        except BaseException as e:  # raised again once the library returns
            self.error = e
            return 1

    def finish(self, status):
        lib.kdcl_train_opts_destroy(self.o)
        self.o = None
        if self.error is not None:
            raise self.error
        _check(status)
        return self.history


def train(model, ds, **opts):
    """Train model on ds with cross-entropy (kdcl train's loop). Options as
    kdcl train's flags (see the module's help). Returns the list of per-epoch
    metrics dicts."""
    run = _Run(model, ds, opts)
    last = _lib.EpochStats()
    try:
        s = lib.kdcl_train(model._handle(), run.ds._handle(), run.o, None, None,
                           _lib.ctypes.byref(last))
    except BaseException:
        lib.kdcl_train_opts_destroy(run.o)
        raise
    return run.finish(s)


def distill(student, teachers, ds, T=20.0, alpha=0.1, loss="kl", ensemble="prob",
            targets="auto", **opts):
    """Train student on the soft targets of teachers (a Model, a checkpoint
    path, or a list of them; several are averaged as kdcl distill's
    --ensemble prob|logit) at temperature T, with weight alpha on the
    hard-label cross-entropy: L = (1-alpha) T^2 KL(p_T || q_T) + alpha CE
    (loss "kl"), or logit matching (loss "logits"). targets: "auto",
    "cached" or "batch" (--targets). Other options as train(). Returns the
    per-epoch metrics."""
    if not isinstance(student, Model):
        raise TypeError("the student must be a kdcl.Model")
    if isinstance(teachers, (Model, str)) or hasattr(teachers, "__fspath__"):
        teachers = [teachers]
    modes = {"kl": 0, "logits": 1}
    ens = {"prob": 0, "logit": 1}
    tgt = {"auto": 0, "cached": 1, "batch": 2}
    for name, v, allowed in (("loss", loss, modes), ("ensemble", ensemble, ens),
                             ("targets", targets, tgt)):
        if v not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {v!r}")
    loaded = []
    try:
        ms = []
        for t in teachers:
            if isinstance(t, Model):
                ms.append(t)
            else:
                m = Model.load(t, context=student.context, max_batch=student.max_batch)
                loaded.append(m)
                ms.append(m)
        if not ms:
            raise ValueError("distill needs at least one teacher")
        handles = (_lib.c_void_p * len(ms))(*[m._handle().value for m in ms])
        d = _lib.DistillOpts(float(T), float(alpha), modes[loss], tgt[targets])
        run = _Run(student, ds, opts)
        last = _lib.EpochStats()
        try:
            s = lib.kdcl_distill_models(student._handle(), handles, len(ms), ens[ensemble],
                                        run.ds._handle(), run.o, _lib.ctypes.byref(d),
                                        _lib.ctypes.byref(last))
        except BaseException:
            lib.kdcl_train_opts_destroy(run.o)
            raise
        return run.finish(s)
    finally:
        for m in loaded:
            m.close()
