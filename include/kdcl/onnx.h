/* ONNX export of a model (inference form), for deployment with any ONNX
 * runtime.
 *
 * The graph takes raw pixels, float 0..255 (or uint8 with
 * KDCL_ONNX_INPUT_U8, cast to float first), shape [N, C, H, W], or
 * [N, C*H*W] for a model whose first layer is Flatten (an MLP: the pixels in
 * the model's own order, CHW, or HWC for older "kdcl.input_layout": "HWC"
 * checkpoints); N is a dynamic dimension named "N". Its first nodes are the
 * model's input transform (kdcl_model_input_norm), computed as kdcl computes
 * it: x = pixel * (1 / (255 std[c])) + (-mean[c] / std[c]), i.e.
 * (pixel / 255 - mean[c]) / std[c] (a Mul and an Add). Then one node per
 * layer, in inference form:
 *   Linear      Gemm (transB = 1; no C input without a bias)
 *   Conv2d      Conv (pads, strides, group 1)
 *   MaxPool2d   MaxPool (ceil_mode 0; padding never wins, as in kdcl)
 *   AvgPool2d   AveragePool, count_include_pad = 1 (kdcl's and PyTorch's
 *               default: padding counts in the divisor)
 *   AdaptiveAvgPool2d(1)  GlobalAveragePool
 *   BatchNorm1d/2d  BatchNormalization with the running statistics
 *   ReLU        Relu
 *   Flatten     Flatten (axis 1)
 *   Dropout     nothing (the identity at inference)
 *   Residual    the body's and the shortcut's nodes, then Add
 * Initializers are named as the checkpoint's tensors ("3.weight",
 * "4.body.0.weight", ...). The output is "logits" [N, K], or with
 * softmax_T > 0 "probabilities" = Softmax(logits / T) [N, K]. Opset 17
 * (IR version 8). The model's metadata_props hold "kdcl.model" (the
 * checkpoint's architecture JSON), "kdcl.version", "kdcl.input_shape",
 * "kdcl.input_mean", "kdcl.input_std", "kdcl.input_layout",
 * "kdcl.input_transform", "kdcl.output" and "kdcl.softmax_T", plus the
 * caller's pairs.
 *
 * The protobuf is written with protobuf-c from ONNX's own onnx.proto
 * (src/onnx/); a build without protobuf-c (meson -Donnx=disabled, or the
 * library not found) has the function but it fails with
 * KDCL_ERR_INVALID_ARG ("built without ONNX support"). */
#ifndef KDCL_ONNX_H
#define KDCL_ONNX_H

#include <stddef.h>

#include "kdcl/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KDCL_ONNX_OPSET 17
#define KDCL_ONNX_IR_VERSION 8

typedef enum kdcl_onnx_input {
    KDCL_ONNX_INPUT_F32 = 0, /* float pixels 0..255 */
    KDCL_ONNX_INPUT_U8 = 1   /* uint8 pixels, Cast to float in the graph */
} kdcl_onnx_input;

typedef struct kdcl_onnx_opts {
    /* > 0: the output is Softmax(logits / softmax_T) ("probabilities");
     * 0: the logits. Must be finite. */
    double softmax_T;
    kdcl_onnx_input input;
    /* Extra metadata_props (e.g. a checkpoint's own metadata); keys the
     * exporter sets itself are skipped. */
    const char *const *meta_keys;
    const char *const *meta_values;
    size_t n_meta;
} kdcl_onnx_opts;

/* 1 when the library was built with ONNX export (protobuf-c), else 0. */
KDCL_API int kdcl_onnx_available(void);

/* Write the model as an ONNX file at `path` (opts may be NULL: logits, float
 * input). The file is written atomically (a temporary file renamed over
 * `path`): on any failure (bad options, a layer without an ONNX mapping, a
 * model over protobuf's 2 GiB limit, an I/O error) nothing is left at
 * `path` and an existing file there is untouched. Parameters are read from
 * the device (the model's last uploaded or trained values). */
KDCL_API kdcl_status kdcl_model_export_onnx(kdcl_model *m, const char *path, const kdcl_onnx_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
