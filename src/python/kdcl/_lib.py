"""The shared library libkdcl and the C declarations the package calls
(ctypes). Structs are mirrored only where they are plain numbers; options,
datasets and devices go through the library's own entry points for bindings
(kdcl_train_opts_set, kdcl_dataset_from_arrays, kdcl_devices_json)."""
import ctypes
import ctypes.util
import os

from . import _config

c_size = ctypes.c_size_t
c_int = ctypes.c_int
c_float = ctypes.c_float
c_double = ctypes.c_double
c_char_p = ctypes.c_char_p
c_void_p = ctypes.c_void_p
P = ctypes.POINTER


def _candidates():
    env = os.environ.get("KDCL_LIBRARY")
    if env:
        return [env]
    out = [p for p in getattr(_config, "LIBRARIES", ()) if p and os.path.exists(p)]
    found = ctypes.util.find_library("kdcl")
    if found:
        out.append(found)
    return out


def _load():
    tried = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path}: {e}")
    raise ImportError("kdcl: cannot load the shared library libkdcl ("
                      + ("; ".join(tried) if tried else "not found") +
                      "); set KDCL_LIBRARY to its path")


lib = _load()


class EpochStats(ctypes.Structure):
    # kdcl_epoch_stats of include/kdcl/train.h, field for field (the library writes it whole)
    _fields_ = [("epoch", c_size), ("train_loss", c_double), ("train_error", c_double),
                ("val_loss", c_double), ("val_error", c_double), ("val_errors", c_size),
                ("lr", c_double), ("momentum", c_double), ("seconds", c_double),
                ("samples_per_s", c_double), ("epochs", c_size), ("tag", c_char_p),
                ("resync_diff", c_double), ("resync_rank", c_int)]


class EvalResult(ctypes.Structure):
    _fields_ = [("n", c_size), ("errors", c_size), ("loss", c_double), ("n_classes", c_size),
                ("confusion", P(ctypes.c_int32))]


class ModelSpec(ctypes.Structure):
    _fields_ = [("layers", c_void_p), ("n", c_size), ("in_features", c_size)]


class OnnxOpts(ctypes.Structure):
    _fields_ = [("softmax_T", c_double), ("input", c_int), ("meta_keys", P(c_char_p)),
                ("meta_values", P(c_char_p)), ("n_meta", c_size)]


class DistillOpts(ctypes.Structure):
    _fields_ = [("T", c_float), ("alpha", c_float), ("mode", c_int), ("targets", c_int)]


ON_EPOCH = ctypes.CFUNCTYPE(c_int, c_void_p, P(EpochStats))

KDCL_F32, KDCL_U8 = 0, 1
LAYOUT_HWC, LAYOUT_CHW = 0, 1

_SIGS = {
    "kdcl_last_error": (c_char_p, []),
    "kdcl_status_name": (c_char_p, [c_int]),
    "kdcl_clear_error": (None, []),
    "kdcl_devices_json": (c_int, [c_char_p, c_size, P(c_size)]),
    "kdcl_ctx_create": (c_int, [c_char_p, P(c_void_p)]),
    "kdcl_ctx_destroy": (None, [c_void_p]),
    "kdcl_ctx_device_json": (c_int, [c_void_p, c_char_p, c_size, P(c_size)]),
    "kdcl_dataset_create": (c_void_p, []),
    "kdcl_dataset_destroy": (None, [c_void_p]),
    "kdcl_dataset_from_arrays": (c_int, [c_void_p, c_void_p, c_size, c_size, c_size, c_size,
                                         c_int, c_size, c_void_p]),
    "kdcl_dataset_load_split": (c_int, [c_char_p, c_char_p, c_void_p]),
    "kdcl_dataset_shape": (None, [c_void_p, P(c_size), P(c_size), P(c_size), P(c_size),
                                  P(c_size)]),
    "kdcl_dataset_to_arrays": (None, [c_void_p, c_int, c_void_p, c_void_p]),
    "kdcl_dataset_channel_stats": (c_int, [c_void_p, P(c_float), P(c_float)]),
    "kdcl_dataset_split_val": (c_int, [c_void_p, c_size, ctypes.c_uint64, c_void_p, c_void_p]),
    "kdcl_model_spec_parse": (c_int, [c_char_p, c_size, P(ModelSpec)]),
    "kdcl_model_spec_free": (None, [P(ModelSpec)]),
    "kdcl_model_spec_add_dropout": (c_int, [P(ModelSpec), c_float, c_float]),
    "kdcl_model_create": (c_int, [c_void_p, P(ModelSpec), c_size, c_size, c_size, c_size,
                                  P(c_void_p)]),
    "kdcl_model_init": (c_int, [c_void_p, ctypes.c_uint64]),
    "kdcl_model_destroy": (None, [c_void_p]),
    "kdcl_model_load_fit": (c_int, [c_void_p, c_char_p, c_size, c_size, P(c_void_p), c_void_p]),
    "kdcl_model_save": (c_int, [c_void_p, c_char_p, P(c_char_p), P(c_char_p), c_size]),
    "kdcl_model_input_shape": (None, [c_void_p, P(c_size), P(c_size), P(c_size)]),
    "kdcl_model_classes": (c_size, [c_void_p]),
    "kdcl_model_max_batch": (c_size, [c_void_p]),
    "kdcl_model_n_params": (c_size, [c_void_p]),
    "kdcl_model_describe": (None, [c_void_p, c_char_p, c_size]),
    "kdcl_model_input_norm": (None, [c_void_p, P(c_float), P(c_float)]),
    "kdcl_model_set_input_norm": (c_int, [c_void_p, P(c_float), P(c_float)]),
    "kdcl_model_predict": (c_int, [c_void_p, c_void_p, c_int, c_int, c_size, c_size, c_size,
                                   c_size, c_void_p]),
    "kdcl_evaluate": (c_int, [c_void_p, c_void_p, c_int, P(EvalResult)]),
    "kdcl_eval_result_free": (None, [P(EvalResult)]),
    "kdcl_onnx_available": (c_int, []),
    "kdcl_model_export_onnx": (c_int, [c_void_p, c_char_p, P(OnnxOpts)]),
    "kdcl_train_opts_create": (c_void_p, []),
    "kdcl_train_opts_destroy": (None, [c_void_p]),
    "kdcl_train_opts_set": (c_int, [c_void_p, c_char_p, c_char_p]),
    "kdcl_train_opts_set_val": (None, [c_void_p, c_void_p]),
    "kdcl_train_opts_set_on_epoch": (None, [c_void_p, ON_EPOCH, c_void_p]),
    "kdcl_train": (c_int, [c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, P(EpochStats)]),
    "kdcl_distill_models": (c_int, [c_void_p, P(c_void_p), c_size, c_int, c_void_p, c_void_p,
                                    P(DistillOpts), P(EpochStats)]),
}

for _name, (_res, _args) in _SIGS.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args
